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

The algorithm is a flow (:mod:`rediscache.effects`) like every operation: the user's
``compute`` is called through the :class:`~rediscache.effects.Compute` effect (awaited when
it is async, on an asyncio space), the in-process waits through
:class:`~rediscache.effects.WaitFlights`.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import redis

from .codec import check_keys, ttl_to_ms
from .effects import Compute, Flights, Flow, InFlight, Pipeline, Sleep, WaitFlights
from .errors import InvalidInputError, ServerError
from .reads import Reads
from .target import Target
from .writes import Writes

__all__ = ["LOCK_SECONDS", "ComputeFn", "ReadThrough", "check_compute"]

#: Turns missing keys into their vectors: an (n, dim) array-like in the order given.
ComputeFn = Callable[[list[str]], Any]

#: Default lifetime of a compute lock, and longest wait for another caller's value.
LOCK_SECONDS = 10.0

_OUTAGE = (redis.ConnectionError, redis.TimeoutError, ServerError)


def check_compute(compute: object) -> ComputeFn:
    """``compute`` if it is callable, else InvalidInputError."""
    if not callable(compute):
        raise InvalidInputError(
            f"compute must be a function of a list of keys, got {type(compute).__name__}"
        )
    return compute


class ReadThrough:
    """get_or_compute on a target, reading and storing through its ``reads`` and ``writes``."""

    def __init__(self, target: Target, reads: Reads, writes: Writes) -> None:
        self.target = target
        self.reads = reads
        self.writes = writes
        self.keys = target.keys
        self.codec = target.codec

    def get_or_compute(
        self,
        keys: Sequence[str],
        compute: ComputeFn,
        *,
        ttl: float | None = None,
        on_error: Literal["raise", "compute"] = "raise",
        lock_seconds: float = LOCK_SECONDS,
    ) -> Flow[npt.NDArray[Any]]:
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
                (or, on a sync space, an awaitable: async compute functions need
                :mod:`rediscache.asyncio`, where a plain ``compute`` runs in the event loop,
                so wrap slow work in ``asyncio.to_thread``).
            ServerError / redis errors: Redis failed and ``on_error="raise"``.
        """
        compute = check_compute(compute)
        return (
            yield from self._cache_flow(
                keys, compute, ttl=ttl, on_error=on_error, lock_seconds=lock_seconds
            )
        )

    # ------------------------------------------------------------ the flow (no I/O)

    def _cache_flow(
        self,
        keys: Sequence[str],
        compute: ComputeFn,
        *,
        ttl: float | None,
        on_error: str,
        lock_seconds: float,
    ) -> Flow[npt.NDArray[Any]]:
        """The whole of :meth:`get_or_compute`."""
        key_list = check_keys(keys)
        if on_error not in ("raise", "compute"):
            raise InvalidInputError("on_error must be 'raise' or 'compute'")
        self.writes.ttl_ms(ttl)  # refused before anything is computed
        lock_ms = ttl_to_ms(lock_seconds, "lock_seconds")
        if lock_ms == 0:
            raise InvalidInputError("lock_seconds must be positive")
        inflight: InFlight[Any] = yield Flights(self.keys.prefix)
        try:
            out = yield from self.reads.get_many(key_list, missing="nan")
        except _OUTAGE:
            if on_error == "raise":
                raise
            return (yield from self._computed(compute, key_list))
        missing = [key_list[i] for i in np.flatnonzero(np.isnan(out[:, 0]))] if len(out) else []
        self.target.context.metrics.count(
            "get_or_compute", hits=len(key_list) - len(missing), misses=len(missing)
        )
        if not missing:
            return out
        fresh = yield from self._fill(compute, missing, ttl, on_error, lock_ms, inflight)
        for i, key in enumerate(key_list):
            if key in fresh:
                out[i] = fresh[key]
        return out

    def _computed(self, compute: ComputeFn, keys: list[str]) -> Flow[npt.NDArray[Any]]:
        """``compute(keys)`` checked like a write ((len(keys), dim), storable), as a read
        will return it once stored (rounded in float16/bfloat16 spaces), so that a miss and
        the next hit give the same values."""
        result = yield Compute(compute, list(keys))
        arr = self.codec.as_matrix(result, f"compute({len(keys)} keys) result")
        if arr.shape[0] != len(keys):
            raise InvalidInputError(
                f"compute got {len(keys)} keys but returned {arr.shape[0]} vectors"
            )
        return self.codec.as_stored(arr)

    def _fill(
        self,
        compute: ComputeFn,
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
                found.update(
                    (yield from self._compute_locked(compute, mine, ttl, on_error, lock_ms))
                )
        finally:
            inflight.release(mine)
        if waits:
            yield WaitFlights(waits, time.monotonic() + lock_ms / 1000)
        rest = [k for k in unique if k not in found]
        if rest:  # computed by other callers (or, if they failed, by us now)
            found.update((yield from self._read_or_compute(compute, rest, ttl, on_error, lock_ms)))
        return found

    def _compute_locked(
        self, compute: ComputeFn, keys: list[str], ttl: float | None, on_error: str, lock_ms: int
    ) -> Flow[dict[str, npt.NDArray[Any]]]:
        token = uuid.uuid4().hex
        locks = [self.keys.compute_lock(k) for k in keys]
        try:
            # each lock is read back after its SET NX: a lock is this call's when it holds
            # its token, which stays true when the pipeline is sent again after a lost
            # reply (the second SET NX answers nil for a lock the first one took)
            got = yield Pipeline(
                [
                    *[("SET", lock, token, "NX", "PX", lock_ms) for lock in locks],
                    *[("GET", lock) for lock in locks],
                ]
            )
        except _OUTAGE:
            if on_error == "raise":
                raise
            return dict(zip(keys, (yield from self._computed(compute, keys))))
        ours = [held == token.encode() for held in got[len(locks) :]]
        mine = [k for k, own in zip(keys, ours) if own]
        others = [k for k, own in zip(keys, ours) if not own]
        found: dict[str, npt.NDArray[Any]] = {}
        try:
            if mine:
                vectors = yield from self._computed(compute, mine)
                found.update(zip(mine, vectors))
                try:
                    yield from self.writes.put_many(mine, vectors, ttl=ttl)
                except _OUTAGE:
                    if on_error == "raise":
                        raise
        finally:
            if mine:
                with contextlib.suppress(*_OUTAGE):  # the locks expire by themselves
                    yield Pipeline([("DEL", *(self.keys.compute_lock(k) for k in mine))])
        if others:
            found.update((yield from self._wait_for(compute, others, ttl, on_error, lock_ms)))
        return found

    def _wait_for(
        self, compute: ComputeFn, keys: list[str], ttl: float | None, on_error: str, lock_ms: int
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
                rows = yield from self.reads.get_many(pending, missing="nan")
            except _OUTAGE:
                if on_error == "raise":
                    raise
                break
            for key, row in zip(pending, rows):
                if not np.isnan(row[0]):
                    found[key] = row
            pending = [k for k in pending if k not in found]
        if pending:
            vectors = yield from self._computed(compute, pending)
            found.update(zip(pending, vectors))
            try:
                yield from self.writes.put_many(pending, vectors, ttl=ttl)
            except _OUTAGE:
                if on_error == "raise":
                    raise
        return found

    def _read_or_compute(
        self, compute: ComputeFn, keys: list[str], ttl: float | None, on_error: str, lock_ms: int
    ) -> Flow[dict[str, npt.NDArray[Any]]]:
        try:
            rows = yield from self.reads.get_many(keys, missing="nan")
        except _OUTAGE:
            if on_error == "raise":
                raise
            return dict(zip(keys, (yield from self._computed(compute, keys))))
        found = {k: r for k, r in zip(keys, rows) if not np.isnan(r[0])}
        rest = [k for k in keys if k not in found]
        if rest:
            found.update((yield from self._compute_locked(compute, rest, ttl, on_error, lock_ms)))
        return found
