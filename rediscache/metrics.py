"""Per-operation counters and latency summaries, cheap enough to leave on.

Every :class:`~rediscache.Space` data-plane call is timed (``time.perf_counter``) and
counted (one tuple appended to an inbox, folded into the counters every :data:`DRAIN` calls
and at each snapshot; :mod:`rediscache.drive` and :mod:`rediscache.guard`) under its
operation name in its hub's :class:`Metrics`: calls, errors, hits and misses (for reads), and
the latency of the last :data:`WINDOW` calls, from which :meth:`Metrics.snapshot` computes p50
and p99. Read them with ``hub.metrics()``; ``hub.metrics(reset=True)`` starts a new window.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DRAIN", "HIT_OPS", "WINDOW", "Metrics", "OpStats", "hits_of"]

#: Latencies kept per operation for the percentiles (the most recent calls).
WINDOW = 2048
#: Calls recorded between two folds of the inbox into the counters (:class:`Metrics`).
DRAIN = 256


@dataclass(frozen=True)
class OpStats:
    """One operation's counters since the last reset, and its latency over the recent calls
    (microseconds; 0 when there were none)."""

    calls: int
    errors: int
    hits: int
    misses: int
    p50_us: float
    p99_us: float
    mean_us: float


class _Op:
    __slots__ = ("calls", "errors", "hits", "misses", "samples", "total")

    def __init__(self) -> None:
        self.calls = self.errors = self.hits = self.misses = 0
        self.total = 0.0
        self.samples: deque[float] = deque(maxlen=WINDOW)


class Metrics:
    """Thread-safe counters and latency windows per operation name.

    A call is recorded by appending one tuple to an inbox (a ``deque``, whose ``append`` is
    atomic in CPython: no lock on the call's path); the inbox is folded into the
    per-operation counters under a lock when it holds :data:`DRAIN` entries and whenever
    :meth:`snapshot` reads them, so every call recorded before a snapshot is in it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: dict[str, _Op] = {}
        #: (op, seconds or None for a count without a call, error, hits, misses)
        self._inbox: deque[tuple[str, float | None, bool, int, int]] = deque()

    def record(
        self, op: str, seconds: float, error: bool = False, hits: int = 0, misses: int = 0
    ) -> None:
        """Count one call of ``op`` that took ``seconds``."""
        inbox = self._inbox
        inbox.append((op, seconds, error, hits, misses))
        if len(inbox) >= DRAIN:
            self._drain()

    def count(self, op: str, *, hits: int = 0, misses: int = 0) -> None:
        """Add hits and misses to ``op`` without counting a call (for inner caches)."""
        inbox = self._inbox
        inbox.append((op, None, False, hits, misses))
        if len(inbox) >= DRAIN:
            self._drain()

    def _drain(self) -> None:
        with self._lock:
            self._fold()

    def _fold(self) -> None:
        """Fold the inbox into the counters, under the lock (entries appended meanwhile by
        other threads are folded too, or by the next fold)."""
        inbox, ops = self._inbox, self._ops
        while True:
            try:
                op, seconds, error, hits, misses = inbox.popleft()
            except IndexError:
                return
            entry = ops.get(op)
            if entry is None:
                entry = ops[op] = _Op()
            entry.hits += hits
            entry.misses += misses
            if seconds is not None:
                entry.calls += 1
                entry.errors += error
                entry.total += seconds
                entry.samples.append(seconds)

    def snapshot(self, *, reset: bool = False) -> dict[str, OpStats]:
        """Every operation's :class:`OpStats`; ``reset`` clears the counters afterwards."""
        with self._lock:
            self._fold()
            ops = {name: (e.calls, e.errors, e.hits, e.misses, e.total, list(e.samples))
                   for name, e in self._ops.items()}  # fmt: skip
            if reset:
                self._ops = {}
        out = {}
        for name, (calls, errors, hits, misses, total, samples) in sorted(ops.items()):
            if samples:
                p50, p99 = np.percentile(np.asarray(samples) * 1e6, [50, 99])
            else:
                p50 = p99 = 0.0
            mean = total / calls * 1e6 if calls else 0.0
            out[name] = OpStats(calls, errors, hits, misses, float(p50), float(p99), mean)
        return out


#: The operations whose results count hits and misses (:func:`hits_of`).
HIT_OPS = frozenset({"get", "get_many"})


def hits_of(op: str, result: Any, kwargs: dict[str, Any]) -> tuple[int, int]:
    """Hits and misses of a read's result (get: None is a miss; get_many: NaN rows); (0, 0)
    for an operation not in :data:`HIT_OPS`."""
    if op == "get":
        return (0, 1) if result is None else (1, 0)
    if op == "get_many" and isinstance(result, np.ndarray) and result.ndim == 2:
        if kwargs.get("missing") == "nan" and result.shape[0]:
            missing = int(np.isnan(result[:, 0]).sum())
            return result.shape[0] - missing, missing
        return result.shape[0], 0
    return 0, 0
