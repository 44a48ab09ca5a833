"""Serving-path speed: hot cache, get_or_compute, metrics overhead, asyncio (run by hand).

    PYTHONPATH=. python benchmarks/bench_serving.py [--url URL] [--data DIR] [--calls C]
                                                    [--json PATH]

On the dev embeddings (the first 5,000), one embedded server, sides alternating in blocks
(bench_core.measure), medians and p99 per call:

* a hot-cache hit (``space.get`` of a cached key) against a raw ``HGET`` (target <= 0.2x);
* ``get_or_compute`` of 100 keys that are all cached against ``get_many`` of the same keys
  (target <= 1.2x);
* the cost of the public-call boundary (errors, retries, metrics): ``space.get`` against its
  flow run on the same driver without it;
* asyncio: ``AsyncSpace.get_many(100)`` against the sync ``get_many(100)`` for one client
  (target <= 1.3x; both timed inside a running event loop, bench_core.measure_async, as an
  asyncio application awaits: until 2026-12-02 each async call entered the loop with
  ``run_until_complete``, which an application inside its loop does not pay), and the
  throughput of 32 concurrent get_many(100) requests: 32 asyncio tasks on one AsyncSpace
  against 32 threads sharing one sync Space (target: async higher).
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

import rediscache
from rediscache.space import Space

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_core import (  # noqa: E402
    DIM,
    grid,
    latency_row,
    load_bundled,
    load_dev,
    measure,
    measure_async,
    open_hub,
    say,
)

N = 5000
SPACE = "bench_serving"
CONCURRENCY = 32
REQUESTS = 1600


def throughput_sync(space: Space, batches: list[list[str]]) -> float:
    """Requests per second of REQUESTS get_many calls from CONCURRENCY threads."""
    done = [0]
    lock = threading.Lock()

    def work(i: int) -> None:
        space.get_many(batches[i % len(batches)])
        with lock:
            done[0] += 1

    t0 = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(work, range(REQUESTS)))
    return REQUESTS / (time.perf_counter() - t0)


async def throughput_async(space: Any, batches: list[list[str]]) -> float:
    """Requests per second of REQUESTS get_many calls, CONCURRENCY tasks at a time."""
    queue = list(range(REQUESTS))

    async def worker() -> None:
        while queue:
            i = queue.pop()
            await space.get_many(batches[i % len(batches)])

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return REQUESTS / (time.perf_counter() - t0)


def main() -> int:
    """Run the measurements and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="redis:// URL (default: a private embedded server)")
    p.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "dev")
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    data = load_dev(args.data, N) if (args.data / "vectors.npy").is_file() else load_bundled(N)
    rows = []
    extra: dict[str, Any] = {}
    with open_hub(args.url) as (hub, where):
        hub.drop_space(SPACE, missing_ok=True)
        space = hub.create_space(SPACE, DIM)
        try:
            space.put_many(data.keys, data.vectors)
            keys = data.keys
            batches = [keys[i : i + 100] for i in range(0, len(keys) - 99, 100)]
            client = hub.client
            docs = [space.live_keys.doc(k) for k in keys[:100]]

            # hot cache hit vs HGET
            cached = hub.space(SPACE)
            cache = cached.enable_hot_cache()
            for k in keys[:100]:
                cached.get(k)
            t = measure(
                {
                    "hit": lambda i: cached.get(keys[i % 100]),
                    "hget": lambda i: client.hget(docs[i % 100], "vec"),
                },
                args.calls,
            )
            rows.append(
                latency_row("hot-cache hit (get)", "HGET <doc> vec", t["hit"], t["hget"], 0.2)
            )
            extra["hot_cache"] = cache.stats().__dict__
            cached.disable_hot_cache()

            # get_or_compute, all hits, vs get_many
            def never(missing: list[str]) -> Any:
                raise AssertionError("all keys are cached")

            t = measure(
                {
                    "goc": lambda i: space.get_or_compute(batches[i % len(batches)], never),
                    "gm": lambda i: space.get_many(batches[i % len(batches)]),
                },
                args.calls,
                block=20,
            )
            rows.append(
                latency_row("get_or_compute(100), all hits", "space.get_many(100)", t["goc"],
                            t["gm"], 1.2)
            )  # fmt: skip

            # metrics overhead
            # the same flow run on the same driver without the public-call boundary
            # (rediscache.guard.guarded: error mapping, retries, timing and counting)
            run, reads = space._driver.run, space._parts.reads
            t = measure(
                {
                    "with": lambda i: space.get(keys[i % len(keys)]),
                    "without": lambda i: run(reads.get(keys[i % len(keys)])),
                },
                args.calls,
            )
            rows.append(latency_row("get with metrics", "its flow without the call boundary",
                                    t["with"], t["without"]))  # fmt: skip

            # asyncio
            if hasattr(rediscache, "AsyncHub"):
                extra.update(asyncio_part(args, where, batches, space, rows))
            else:
                say("rediscache.AsyncHub is not available: the asyncio part is skipped")
        finally:
            hub.drop_space(SPACE, missing_ok=True)
    say(grid(
        ["op", "median us", "p99 us", "baseline median us", "p99 us", "ratio", "target", "met"],
        [[r.op, f"{r.rc_median:,.1f}", f"{r.rc_p99:,.1f}", f"{r.raw_median:,.1f}",
          f"{r.raw_p99:,.1f}", f"{r.ratio:.3f}", r.target or "-",
          "-" if r.met is None else ("yes" if r.met else "NO")] for r in rows],
    ))  # fmt: skip
    for key, value in extra.items():
        say(f"{key}: {value}")
    if args.json:
        payload = {"rows": [r.__dict__ for r in rows], **extra}
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return 0


def asyncio_part(
    args: argparse.Namespace, where: str, batches: list[list[str]], space: Space, rows: list[Any]
) -> dict[str, Any]:
    """Async get_many latency against sync, and throughput at 32 concurrent requests."""
    loop = asyncio.new_event_loop()
    try:
        ahub = loop.run_until_complete(_async_hub(space, args.url))
        aspace = loop.run_until_complete(ahub.space(SPACE))
        nb = len(batches)
        sides = {  # timed inside the running loop, as an asyncio application awaits
            "async": lambda i: aspace.get_many(batches[i % nb]),
            "sync": lambda i: space.get_many(batches[i % nb]),
        }
        t = loop.run_until_complete(measure_async(sides, args.calls, block=20))
        rows.append(latency_row("async get_many(100), one client", "sync get_many(100)",
                                t["async"], t["sync"], 1.3))  # fmt: skip
        sync_rate = throughput_sync(space, batches)
        async_rate = loop.run_until_complete(throughput_async(aspace, batches))
        loop.run_until_complete(ahub.close())
    finally:
        loop.close()
    say(f"32 concurrent get_many(100): async {async_rate:,.0f} req/s, threads {sync_rate:,.0f}")
    return {
        "throughput_32": {
            "async_req_s": async_rate,
            "sync_threads_req_s": sync_rate,
            "ratio": async_rate / sync_rate,
            "met": async_rate > sync_rate,
        }
    }


async def _async_hub(space: Space, url: str | None) -> Any:
    """An AsyncHub on the same server as ``space``'s hub, made as the docs make one
    (``connect_async(url)``): it owns its client and keeps a few connections between calls,
    as the sync hub made from a URL does. (Until 2026-12-02 it was made on a redis.asyncio
    client passed in, and a hub on a client passed in keeps none: each asyncio call took a
    connection from the pool, about 20 us, which the sync side did not.)"""
    if url is None:
        info = space.hub.server
        assert info is not None
        url = info.url
    return await rediscache.connect_async(url)


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
