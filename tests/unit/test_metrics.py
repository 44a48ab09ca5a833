"""rediscache.metrics: calls recorded from many threads without a lock on their path."""

from __future__ import annotations

import threading

from rediscache.metrics import DRAIN, WINDOW, Metrics


def test_every_call_recorded_by_many_threads_is_counted() -> None:
    """Eight threads record 5,000 calls each (many drains of the inbox meanwhile), with
    inner-cache counts between them: a snapshot counts every call, hit and error, once."""
    metrics = Metrics()
    per_thread = 5000

    def work(t: int) -> None:
        for i in range(per_thread):
            metrics.record("get", 1e-4, error=i % 10 == 0, hits=1, misses=i % 2)
            if i % 100 == 0:
                metrics.count("get", hits=2)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = metrics.snapshot()["get"]
    calls = 8 * per_thread
    assert calls > DRAIN * 100
    assert stats.calls == calls and stats.errors == calls // 10
    assert stats.hits == calls + 8 * (per_thread // 100) * 2 and stats.misses == calls // 2
    assert abs(stats.p50_us - 100.0) < 1e-6 and abs(stats.mean_us - 100.0) < 1e-6


def test_a_snapshot_sees_calls_not_yet_drained_and_reset_starts_afresh() -> None:
    metrics = Metrics()
    for i in range(DRAIN - 1):  # fewer than a drain: all still in the inbox
        metrics.record("search", (i + 1) * 1e-6)
    metrics.count("get_many", hits=3)
    first = metrics.snapshot(reset=True)
    assert first["search"].calls == DRAIN - 1 and first["search"].p99_us > first["search"].p50_us
    assert first["get_many"].calls == 0 and first["get_many"].hits == 3
    assert metrics.snapshot() == {}
    for _ in range(WINDOW + 10):
        metrics.record("search", 2e-6)
    again = metrics.snapshot()["search"]
    assert again.calls == WINDOW + 10 and abs(again.p99_us - 2.0) < 1e-6
