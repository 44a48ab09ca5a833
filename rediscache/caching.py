"""Read-through caching: ``get_or_compute`` in front of a slower source of embeddings.

A feature-store cache keeps embeddings that an expensive function (an embedding model, a
warehouse query) produces. ``space.get_or_compute(keys, compute)`` finds the cached ones in
one round trip, calls ``compute(missing_keys)`` for the others, stores them (with the space's
or the call's time to live) and returns every vector in input order.

No stampede: concurrent callers missing the same key compute it once. Within a process,
callers wait for the thread already computing a key; across processes, a caller takes a short
Redis lock per key (``SET NX PX``) before computing it, and a caller finding a key locked
waits for the value to appear (up to ``lock_seconds``) instead of computing it again.

Redis outages: ``on_error="raise"`` (default) lets the error through; ``on_error="compute"``
fails open: the vectors are computed and returned without caching.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import redis

from .codec import check_keys, ttl_to_ms
from .errors import InvalidInputError, ServerError

if TYPE_CHECKING:
    from .codec import VectorCodec
    from .hub import Hub
    from .keys import SpaceKeys

__all__ = ["Caching", "ComputeFn"]

#: Turns missing keys into their vectors: an (n, dim) array-like in the order given.
ComputeFn = Callable[[list[str]], Any]

#: Default lifetime of a compute lock, and longest wait for another caller's value.
LOCK_SECONDS = 10.0


class _InFlight:
    """Keys being computed by threads of this process, with an event each."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: dict[str, threading.Event] = {}

    def claim(self, keys: list[str]) -> tuple[list[str], list[threading.Event]]:
        """Keys this caller must compute (now claimed), and events of keys others compute."""
        mine: list[str] = []
        waits: list[threading.Event] = []
        with self.lock:
            for key in keys:
                event = self.events.get(key)
                if event is None:
                    self.events[key] = threading.Event()
                    mine.append(key)
                else:
                    waits.append(event)
        return mine, waits

    def release(self, keys: list[str]) -> None:
        with self.lock:
            for key in keys:
                event = self.events.pop(key, None)
                if event is not None:
                    event.set()


_OUTAGE = (redis.ConnectionError, redis.TimeoutError, ServerError)
_REGISTRY: dict[str, _InFlight] = {}
_REGISTRY_LOCK = threading.Lock()


def _inflight_for(prefix: str) -> _InFlight:
    """The process-wide in-flight table of a space (shared by all its Space objects)."""
    with _REGISTRY_LOCK:
        table = _REGISTRY.get(prefix)
        if table is None:
            table = _REGISTRY[prefix] = _InFlight()
        return table


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
            InvalidInputError: bad keys, or ``compute`` returned the wrong shape or bad values.
            ServerError / redis errors: Redis failed and ``on_error="raise"``.
        """
        key_list = check_keys(keys)
        if on_error not in ("raise", "compute"):
            raise InvalidInputError("on_error must be 'raise' or 'compute'")
        lock_ms = ttl_to_ms(lock_seconds, "lock_seconds")
        if lock_ms == 0:
            raise InvalidInputError("lock_seconds must be positive")
        try:
            out = self.get_many(key_list, missing="nan")
        except _OUTAGE:
            if on_error == "raise":
                raise
            return _computed(self.codec, key_list, compute)
        missing = [key_list[i] for i in np.flatnonzero(np.isnan(out[:, 0]))] if len(out) else []
        self.hub._metrics.count(
            "get_or_compute", hits=len(key_list) - len(missing), misses=len(missing)
        )
        if not missing:
            return out
        fresh = self._fill(missing, compute, ttl, on_error, lock_ms)
        for i, key in enumerate(key_list):
            if key in fresh:
                out[i] = fresh[key]
        return out

    def _fill(
        self,
        missing: list[str],
        compute: ComputeFn,
        ttl: float | None,
        on_error: str,
        lock_ms: int,
    ) -> dict[str, npt.NDArray[Any]]:
        """Vectors of ``missing``: computed here (under locks) or waited for."""
        unique = list(dict.fromkeys(missing))
        inflight = _inflight_for(self.keys.prefix)
        mine, waits = inflight.claim(unique)
        found: dict[str, npt.NDArray[Any]] = {}
        try:
            if mine:
                found.update(self._compute_locked(mine, compute, ttl, on_error, lock_ms))
        finally:
            inflight.release(mine)
        deadline = time.monotonic() + lock_ms / 1000
        for event in waits:
            event.wait(max(0.0, deadline - time.monotonic()))
        rest = [k for k in unique if k not in found]
        if rest:  # computed by other threads (or, if they failed, by us now)
            found.update(self._read_or_compute(rest, compute, ttl, on_error, lock_ms))
        return found

    def _compute_locked(
        self,
        keys: list[str],
        compute: ComputeFn,
        ttl: float | None,
        on_error: str,
        lock_ms: int,
    ) -> dict[str, npt.NDArray[Any]]:
        token = uuid.uuid4().hex
        locks = [self.keys.compute_lock(k) for k in keys]
        try:
            pipe = self._client.pipeline(transaction=False)
            for lock in locks:
                pipe.set(lock, token, nx=True, px=lock_ms)
            got = pipe.execute()
        except _OUTAGE:
            if on_error == "raise":
                raise
            return dict(zip(keys, _computed(self.codec, keys, compute)))
        mine = [k for k, ok in zip(keys, got) if ok]
        others = [k for k, ok in zip(keys, got) if not ok]
        found: dict[str, npt.NDArray[Any]] = {}
        try:
            if mine:
                vectors = _computed(self.codec, mine, compute)
                found.update(zip(mine, vectors))
                try:
                    self.put_many(mine, vectors, ttl=ttl)
                except _OUTAGE:
                    if on_error == "raise":
                        raise
        finally:
            if mine:
                with contextlib.suppress(*_OUTAGE):  # the locks expire by themselves
                    self._client.delete(*(self.keys.compute_lock(k) for k in mine))
        if others:
            found.update(self._wait_for(others, compute, ttl, on_error, lock_ms))
        return found

    def _wait_for(
        self,
        keys: list[str],
        compute: ComputeFn,
        ttl: float | None,
        on_error: str,
        lock_ms: int,
    ) -> dict[str, npt.NDArray[Any]]:
        """Poll for keys another process is computing; compute what never shows up."""
        deadline = time.monotonic() + lock_ms / 1000
        pause = 0.001
        found: dict[str, npt.NDArray[Any]] = {}
        pending = list(keys)
        while pending and time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
            try:
                rows = self.get_many(pending, missing="nan")
            except _OUTAGE:
                if on_error == "raise":
                    raise
                break
            for key, row in zip(pending, rows):
                if not np.isnan(row[0]):
                    found[key] = row
            pending = [k for k in pending if k not in found]
        if pending:
            vectors = _computed(self.codec, pending, compute)
            found.update(zip(pending, vectors))
            try:
                self.put_many(pending, vectors, ttl=ttl)
            except _OUTAGE:
                if on_error == "raise":
                    raise
        return found

    def _read_or_compute(
        self,
        keys: list[str],
        compute: ComputeFn,
        ttl: float | None,
        on_error: str,
        lock_ms: int,
    ) -> dict[str, npt.NDArray[Any]]:
        try:
            rows = self.get_many(keys, missing="nan")
        except _OUTAGE:
            if on_error == "raise":
                raise
            return dict(zip(keys, _computed(self.codec, keys, compute)))
        found = {k: r for k, r in zip(keys, rows) if not np.isnan(r[0])}
        rest = [k for k in keys if k not in found]
        if rest:
            found.update(self._compute_locked(rest, compute, ttl, on_error, lock_ms))
        return found


def _computed(codec: VectorCodec, keys: list[str], compute: ComputeFn) -> npt.NDArray[Any]:
    """``compute(keys)`` checked: (len(keys), dim) finite numbers."""
    arr = codec.as_matrix(compute(list(keys)), f"compute({len(keys)} keys) result")
    if arr.shape[0] != len(keys):
        raise InvalidInputError(f"compute got {len(keys)} keys but returned {arr.shape[0]} vectors")
    return arr
