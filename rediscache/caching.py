"""Read-through caching: ``get_or_compute`` in front of a slower source of embeddings.

A feature-store cache keeps embeddings that an expensive function (an embedding model, a
warehouse query) produces. ``space.get_or_compute(keys, compute)`` finds the cached ones in
one round trip, calls ``compute(missing_keys)`` for the others, stores them (with the space's
or the call's time to live) and returns every vector in input order.

No stampede: concurrent callers missing the same key compute it once. Within a process,
callers wait for the thread (or asyncio task) already computing a key; across processes, a
caller takes a short Redis lock per key (``SET NX PX``) before computing it, and a caller
finding a key locked waits for the value to appear (up to ``lock_seconds``) instead of
computing it again.

Redis outages: ``on_error="raise"`` (default) lets the error through; ``on_error="compute"``
fails open: the vectors are computed and returned without caching.

The algorithm is written once, as a generator (``Caching._cache_flow``) that yields each
piece of I/O it needs as an *effect* (:class:`Read`, :class:`Store`, :class:`Send`,
:class:`Compute`, :class:`Sleep`, :class:`WaitFlights`) and receives its result, or its
exception at the ``yield``. :func:`drive` performs the effects on a sync space;
:mod:`rediscache.asyncio` performs the same flow's effects with ``await``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
import time
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, NamedTuple, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import redis

from .codec import check_keys, ttl_to_ms
from .errors import InvalidInputError, ServerError

if TYPE_CHECKING:
    from .codec import VectorCodec
    from .hub import Hub
    from .keys import SpaceKeys

__all__ = [
    "Caching",
    "Compute",
    "ComputeFn",
    "Effect",
    "Flow",
    "InFlight",
    "Read",
    "Send",
    "Sleep",
    "Store",
    "WaitFlights",
    "drive",
]

#: Turns missing keys into their vectors: an (n, dim) array-like in the order given.
ComputeFn = Callable[[list[str]], Any]

#: Default lifetime of a compute lock, and longest wait for another caller's value.
LOCK_SECONDS = 10.0


T = TypeVar("T")
X = TypeVar("X")


class _Settable(Protocol):
    def set(self) -> None: ...


E = TypeVar("E", bound=_Settable)


class InFlight(Generic[E]):
    """Keys being computed in this process, with an event each (``threading.Event`` for
    threads, ``asyncio.Event`` for tasks of one event loop)."""

    def __init__(self, new_event: Callable[[], E]) -> None:
        self.lock = threading.Lock()
        self.events: dict[str, E] = {}
        self._new_event = new_event

    def claim(self, keys: list[str]) -> tuple[list[str], list[E]]:
        """Keys this caller must compute (now claimed), and events of keys others compute."""
        mine: list[str] = []
        waits: list[E] = []
        with self.lock:
            for key in keys:
                event = self.events.get(key)
                if event is None:
                    self.events[key] = self._new_event()
                    mine.append(key)
                else:
                    waits.append(event)
        return mine, waits

    def release(self, keys: list[str]) -> None:
        """Un-claim ``keys`` and wake whoever waits for them."""
        with self.lock:
            for key in keys:
                event = self.events.pop(key, None)
                if event is not None:
                    event.set()


_OUTAGE = (redis.ConnectionError, redis.TimeoutError, ServerError)
_REGISTRY: dict[str, InFlight[threading.Event]] = {}
_REGISTRY_LOCK = threading.Lock()


def _inflight_for(prefix: str) -> InFlight[threading.Event]:
    """The process-wide in-flight table of a space (shared by all its Space objects)."""
    with _REGISTRY_LOCK:
        table = _REGISTRY.get(prefix)
        if table is None:
            table = _REGISTRY[prefix] = InFlight(threading.Event)
        return table


# --------------------------------------------------------------------------- effects


class Read(NamedTuple):
    """Effect: ``get_many(keys, missing="nan")``; result: the (n, dim) array."""

    keys: list[str]


class Store(NamedTuple):
    """Effect: ``put_many(keys, vectors, ttl=ttl)``; result: rows written."""

    keys: list[str]
    vectors: npt.NDArray[Any]
    ttl: float | None


class Send(NamedTuple):
    """Effect: the commands in one pipelined round trip (no transaction); result: replies."""

    commands: list[tuple[Any, ...]]


class Compute(NamedTuple):
    """Effect: ``compute(keys)``; result: what it returned (awaited first, for async)."""

    keys: list[str]


class Sleep(NamedTuple):
    """Effect: pause ``seconds``."""

    seconds: float


class WaitFlights(NamedTuple):
    """Effect: wait until every event is set or the ``time.monotonic()`` deadline passed."""

    events: list[Any]
    deadline: float


#: What a caching flow yields.
Effect = Read | Store | Send | Compute | Sleep | WaitFlights
#: A caching flow: yields effects, is sent their results, returns ``T``.
Flow = Generator[Effect, Any, T]


def drive(flow: Generator[X, Any, T], perform: Callable[[X], Any]) -> T:
    """Run ``flow`` to its result, performing each effect it yields with ``perform`` (a
    caching flow's effects here; ``ftsearch.search_rounds``' rounds too).

    An exception raised while performing an effect is thrown into the flow at its ``yield``,
    so the flow's own ``except`` and ``finally`` clauses (fail open, unlock, release the
    in-flight claims) run exactly as in straight-line code.
    """
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.send(reply) if error is None else flow.throw(error)
        except StopIteration as stop:
            result: T = stop.value
            return result
        reply, error = None, None
        try:
            reply = perform(effect)
        except BaseException as exc:  # handed to the flow, which re-raises what it does not handle
            error = exc


def check_compute(compute: object) -> ComputeFn:
    """``compute`` if it is callable, else InvalidInputError."""
    if not callable(compute):
        raise InvalidInputError(
            f"compute must be a function of a list of keys, got {type(compute).__name__}"
        )
    return compute


class Caching:
    """The read-through cache operations, mixed into :class:`rediscache.Space`."""

    if TYPE_CHECKING:  # provided by Space
        hub: Hub
        keys: SpaceKeys
        codec: VectorCodec
        _client: redis.Redis

        def get_many(
            self,
            keys: Sequence[str],
            *,
            missing: Literal["raise", "nan"] = "raise",
            refresh_ttl: bool | float = False,
        ) -> npt.NDArray[Any]: ...

        def put_many(
            self,
            keys: Sequence[str],
            vectors: Any,
            metadata: Sequence[Mapping[str, Any] | None] | None = None,
            *,
            ttl: float | None = None,
        ) -> int: ...

        def _ttl_ms(self, ttl: object) -> int | None: ...

    def get_or_compute(
        self,
        keys: Sequence[str],
        compute: ComputeFn,
        *,
        ttl: float | None = None,
        on_error: Literal["raise", "compute"] = "raise",
        lock_seconds: float = LOCK_SECONDS,
    ) -> npt.NDArray[Any]:
        """Vectors of ``keys`` in input order: cached ones from the space, the others from
        ``compute(missing_keys)`` (an (n, dim) array-like in that order), stored with ``ttl``
        (default: the space's ``ttl``) before they are returned.

        Round trips: one when every key is cached; otherwise one to lock the missing keys,
        one write per 1,000 computed rows and one to unlock. Concurrent callers missing the
        same key call ``compute`` for it once (see the module docstring); a caller waits at
        most ``lock_seconds`` for another's value before computing it itself.

        ``on_error="compute"``: when Redis is unreachable or fails, compute every key and
        return the vectors without caching them (fail open); ``"raise"`` re-raises.

        Raises:
            InvalidInputError: bad keys, or ``compute`` returned the wrong shape or bad values
                (or an awaitable: async compute functions need :mod:`rediscache.asyncio`).
            ServerError / redis errors: Redis failed and ``on_error="raise"``.
        """
        flow = self._cache_flow(
            keys,
            ttl=ttl,
            on_error=on_error,
            lock_seconds=lock_seconds,
            inflight=_inflight_for(self.keys.prefix),
        )
        return drive(flow, functools.partial(self._perform_effect, check_compute(compute)))

    def _perform_effect(self, compute: ComputeFn, effect: Effect) -> Any:
        """Perform one effect of a caching flow on this (sync) space."""
        if isinstance(effect, Read):
            return self.get_many(effect.keys, missing="nan")
        if isinstance(effect, Store):
            return self.put_many(effect.keys, effect.vectors, ttl=effect.ttl)
        if isinstance(effect, Send):
            pipe = self._client.pipeline(transaction=False)
            for command in effect.commands:
                pipe.execute_command(*command)
            return pipe.execute()
        if isinstance(effect, Compute):
            result = compute(effect.keys)
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()  # never awaited: close it rather than leave a warning
                raise InvalidInputError(
                    "compute returned an awaitable: async compute functions need an AsyncSpace "
                    "(rediscache.asyncio); a Space calls compute synchronously"
                )
            return result
        if isinstance(effect, Sleep):
            time.sleep(effect.seconds)
            return None
        for event in effect.events:
            event.wait(max(0.0, effect.deadline - time.monotonic()))
        return None

    # ------------------------------------------------------------ the flow (no I/O)

    def _cache_flow(
        self,
        keys: Sequence[str],
        *,
        ttl: float | None,
        on_error: str,
        lock_seconds: float,
        inflight: InFlight[Any],
    ) -> Flow[npt.NDArray[Any]]:
        """The whole of :meth:`get_or_compute`, yielding its I/O as effects."""
        key_list = check_keys(keys)
        if on_error not in ("raise", "compute"):
            raise InvalidInputError("on_error must be 'raise' or 'compute'")
        self._ttl_ms(ttl)  # refused before anything is computed
        lock_ms = ttl_to_ms(lock_seconds, "lock_seconds")
        if lock_ms == 0:
            raise InvalidInputError("lock_seconds must be positive")
        try:
            out: npt.NDArray[Any] = yield Read(key_list)
        except _OUTAGE:
            if on_error == "raise":
                raise
            return (yield from self._computed(key_list))
        missing = [key_list[i] for i in np.flatnonzero(np.isnan(out[:, 0]))] if len(out) else []
        self.hub._metrics.count(
            "get_or_compute", hits=len(key_list) - len(missing), misses=len(missing)
        )
        if not missing:
            return out
        fresh = yield from self._fill(missing, ttl, on_error, lock_ms, inflight)
        for i, key in enumerate(key_list):
            if key in fresh:
                out[i] = fresh[key]
        return out

    def _computed(self, keys: list[str]) -> Flow[npt.NDArray[Any]]:
        """``compute(keys)`` checked like a write ((len(keys), dim), storable), as a read
        will return it once stored (rounded in float16/bfloat16 spaces), so that a miss and
        the next hit give the same values."""
        result = yield Compute(list(keys))
        arr = self.codec.as_matrix(result, f"compute({len(keys)} keys) result")
        if arr.shape[0] != len(keys):
            raise InvalidInputError(
                f"compute got {len(keys)} keys but returned {arr.shape[0]} vectors"
            )
        return self.codec.as_stored(arr)

    def _fill(
        self,
        missing: list[str],
        ttl: float | None,
        on_error: str,
        lock_ms: int,
        inflight: InFlight[Any],
    ) -> Flow[dict[str, npt.NDArray[Any]]]:
        """Vectors of ``missing``: computed here (under locks) or waited for."""
        unique = list(dict.fromkeys(missing))
        mine, waits = inflight.claim(unique)
        found: dict[str, npt.NDArray[Any]] = {}
        try:
            if mine:
                found.update((yield from self._compute_locked(mine, ttl, on_error, lock_ms)))
        finally:
            inflight.release(mine)
        if waits:
            yield WaitFlights(waits, time.monotonic() + lock_ms / 1000)
        rest = [k for k in unique if k not in found]
        if rest:  # computed by other callers (or, if they failed, by us now)
            found.update((yield from self._read_or_compute(rest, ttl, on_error, lock_ms)))
        return found

    def _compute_locked(
        self, keys: list[str], ttl: float | None, on_error: str, lock_ms: int
    ) -> Flow[dict[str, npt.NDArray[Any]]]:
        token = uuid.uuid4().hex
        locks = [self.keys.compute_lock(k) for k in keys]
        try:
            got = yield Send([("SET", lock, token, "NX", "PX", lock_ms) for lock in locks])
        except _OUTAGE:
            if on_error == "raise":
                raise
            return dict(zip(keys, (yield from self._computed(keys))))
        mine = [k for k, ok in zip(keys, got) if ok]
        others = [k for k, ok in zip(keys, got) if not ok]
        found: dict[str, npt.NDArray[Any]] = {}
        try:
            if mine:
                vectors = yield from self._computed(mine)
                found.update(zip(mine, vectors))
                try:
                    yield Store(mine, vectors, ttl)
                except _OUTAGE:
                    if on_error == "raise":
                        raise
        finally:
            if mine:
                with contextlib.suppress(*_OUTAGE):  # the locks expire by themselves
                    yield Send([("DEL", *(self.keys.compute_lock(k) for k in mine))])
        if others:
            found.update((yield from self._wait_for(others, ttl, on_error, lock_ms)))
        return found

    def _wait_for(
        self, keys: list[str], ttl: float | None, on_error: str, lock_ms: int
    ) -> Flow[dict[str, npt.NDArray[Any]]]:
        """Poll for keys another process is computing; compute what never shows up."""
        deadline = time.monotonic() + lock_ms / 1000
        pause = 0.001
        found: dict[str, npt.NDArray[Any]] = {}
        pending = list(keys)
        while pending and time.monotonic() < deadline:
            yield Sleep(pause)
            pause = min(pause * 2, 0.05)
            try:
                rows = yield Read(pending)
            except _OUTAGE:
                if on_error == "raise":
                    raise
                break
            for key, row in zip(pending, rows):
                if not np.isnan(row[0]):
                    found[key] = row
            pending = [k for k in pending if k not in found]
        if pending:
            vectors = yield from self._computed(pending)
            found.update(zip(pending, vectors))
            try:
                yield Store(pending, vectors, ttl)
            except _OUTAGE:
                if on_error == "raise":
                    raise
        return found

    def _read_or_compute(
        self, keys: list[str], ttl: float | None, on_error: str, lock_ms: int
    ) -> Flow[dict[str, npt.NDArray[Any]]]:
        try:
            rows = yield Read(keys)
        except _OUTAGE:
            if on_error == "raise":
                raise
            return dict(zip(keys, (yield from self._computed(keys))))
        found = {k: r for k, r in zip(keys, rows) if not np.isnan(r[0])}
        rest = [k for k in keys if k not in found]
        if rest:
            found.update((yield from self._compute_locked(rest, ttl, on_error, lock_ms)))
        return found
