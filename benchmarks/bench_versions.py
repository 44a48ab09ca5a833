"""Benchmark versions: snapshot, the first write after it, rollback, memory and search (by hand).

    PYTHONPATH=. python benchmarks/bench_versions.py [--url URL] [--data DIR]
                                                     [--sizes 1000,20000,100000] [--calls C]
                                                     [--json PATH]

For each size, on one server, in one run:

* snapshot of an unchanged space (median / p99 over 50 calls) and used_memory before/after;
* the first write after a snapshot, which copies the live generation for the version, and the
  time until the version's own index has indexed the copy (background), with used_memory;
* rollback, alternating between two versions (median / p99): the switch readers see;
* search k=10: the live space (through the alias), an old version (``space.at(v)``: its own
  index plus a state check in the same round trip), and raw FT.SEARCH on the live index as
  the unversioned baseline, in alternating blocks (bench_core's ``measure``).

Data: the 20k dev vectors of ``../shared/data/dev`` (or the bundled 2k sample). Sizes above
what the data has are grown with copies of the data plus Gaussian noise (sigma 0.01, then
renormalized); the table says so. Spaces ``bv<size>`` are dropped before and after.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import rediscache

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_core import (  # noqa: E402
    DIM,
    K,
    Timing,
    _search_args,
    grid,
    load_bundled,
    load_dev,
    measure,
    open_hub,
    say,
)

Vectors = npt.NDArray[np.float32]
SNAPSHOTS = 50
ROLLBACKS = 200
LOAD_CHUNK = 1000


@dataclass(frozen=True)
class SizeResult:
    """Everything measured at one size."""

    n: int
    grown: bool
    load_s: float
    memory_mb: float
    snapshot: Timing
    snapshot_raw: Timing
    memory_after_snapshots_mb: float
    first_write_s: float
    version_index_s: float
    memory_after_copy_mb: float
    rollback: Timing
    rollback_raw: Timing
    search_live: Timing
    search_version: Timing
    search_raw: Timing


def grow(vectors: Vectors, n: int, seed: int = 0) -> tuple[Vectors, bool]:
    """``n`` rows: the data itself, then noisy unit-length copies of it."""
    if n <= len(vectors):
        return vectors[:n], False
    rng = np.random.default_rng(seed)
    parts = [vectors]
    have = len(vectors)
    while have < n:
        take = min(len(vectors), n - have)
        noisy = vectors[:take] + rng.normal(scale=0.01, size=(take, vectors.shape[1]))
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        parts.append(noisy.astype(np.float32))
        have += take
    return np.ascontiguousarray(np.vstack(parts)), True


def used_mb(hub: rediscache.Hub) -> float:
    """used_memory of the server in MB."""
    return float(hub.client.info("memory")["used_memory"]) / 1e6


def wait_indexed(hub: rediscache.Hub, index: str) -> None:
    """Until ``index`` has indexed everything."""
    while True:
        reply = hub.client.execute_command("FT.INFO", index)
        info = dict(zip(reply[::2], reply[1::2]))
        if int(info[b"indexing"]) == 0 and float(info[b"percent_indexed"]) >= 1:
            return
        time.sleep(0.05)


def run_size(
    hub: rediscache.Hub, vectors: Vectors, queries: Vectors, n: int, calls: int
) -> SizeResult:
    """All measurements at ``n`` vectors."""
    name = f"bv{n}"
    hub.drop_space(name, missing_ok=True)
    rows, grown = grow(vectors, n)
    keys = [str(i) for i in range(n)]
    space = hub.create_space(name, DIM, metric="cosine", fields={"half": "tag"})
    try:
        t0 = time.perf_counter()
        for s in range(0, n, LOAD_CHUNK):
            e = min(s + LOAD_CHUNK, n)
            space.put_many(keys[s:e], rows[s:e], [{"half": "a"}] * (e - s))
        load_s = time.perf_counter() - t0
        say(f"  loaded {n} in {load_s:.1f} s")
        mem0 = used_mb(hub)

        client = hub.client
        scratch = f"rc:{{{name}}}:bench-raw"
        # Baselines: recording a version is at least one hash write; a switch is at least
        # one FT.ALIASUPDATE. The sides alternate in blocks (measure).
        t = measure(
            {
                "ours": lambda i: space.snapshot(),
                "raw": lambda i: client.hset(scratch, str(i), '{"label": null}'),
            },
            SNAPSHOTS,
            block=10,
            warmup=0,
        )
        snap, snap_raw = t["ours"], t["raw"]
        client.delete(scratch)
        mem1 = used_mb(hub)
        space.prune_versions(0)
        old = space.snapshot("old")

        t0 = time.perf_counter()
        space.put("probe", rows[0], {"half": "b"})  # copies the generation for "old"
        first_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        view = space.at(old)
        view.search(queries[0], K)  # waits for the version's index
        index_s = time.perf_counter() - t0
        mem2 = used_mb(hub)
        say(f"  first write {first_write:.2f} s, version index {index_s:.1f} s")

        new = space.snapshot("new")
        targets = (old, new)
        live_index = space.live_keys.index
        indexes = (space.at(old).gen_keys.index, live_index)
        alias = f"rc:{{{name}}}:bench-alias"
        client.execute_command("FT.ALIASADD", alias, live_index)
        try:
            t = measure(
                {
                    "ours": lambda i: space.rollback(targets[i % 2]),
                    "raw": lambda i: client.execute_command(
                        "FT.ALIASUPDATE", alias, indexes[i % 2]
                    ),
                },
                ROLLBACKS,
                block=20,
                warmup=0,
            )
        finally:
            client.execute_command("FT.ALIASDEL", alias)
        rollback, rollback_raw = t["ours"], t["raw"]
        space.rollback(new)

        head, tail = _search_args(space.live_keys.index, K, 100)
        blobs = [q.astype("<f4").tobytes() for q in queries]
        nq = len(queries)
        t = measure(
            {
                "live": lambda i: space.search(queries[i % nq], K),
                "version": lambda i: view.search(queries[i % nq], K),
                "raw": lambda i: client.execute_command("FT.SEARCH", *head, blobs[i % nq], *tail),
            },
            calls,
        )
        return SizeResult(
            n=n,
            grown=grown,
            load_s=load_s,
            memory_mb=mem0,
            snapshot=snap,
            snapshot_raw=snap_raw,
            memory_after_snapshots_mb=mem1,
            first_write_s=first_write,
            version_index_s=index_s,
            memory_after_copy_mb=mem2,
            rollback=rollback,
            rollback_raw=rollback_raw,
            search_live=t["live"],
            search_version=t["version"],
            search_raw=t["raw"],
        )
    finally:
        hub.drop_space(name, missing_ok=True)


def table(results: Sequence[SizeResult]) -> str:
    """The results as a plain-text table (one column per size)."""
    head = ["", *(f"{r.n:,}" + (" (grown)" if r.grown else "") for r in results)]

    def line(label: str, fmt: Any) -> list[str]:
        return [label, *(fmt(r) for r in results)]

    body = [
        line("used_memory, MB", lambda r: f"{r.memory_mb:,.0f}"),
        line(
            "snapshot median / p99, us",
            lambda r: f"{r.snapshot.median_us:,.0f} / {r.snapshot.p99_us:,.0f}",
        ),
        line(
            "  raw HSET median / p99, us (ratio)",
            lambda r: (
                f"{r.snapshot_raw.median_us:,.0f} / {r.snapshot_raw.p99_us:,.0f} "
                f"(x{r.snapshot.median_us / r.snapshot_raw.median_us:.2f})"
            ),
        ),
        line(
            f"used_memory after {SNAPSHOTS} snapshots, MB",
            lambda r: (
                f"{r.memory_after_snapshots_mb:,.0f} "
                f"({r.memory_after_snapshots_mb - r.memory_mb:+,.1f})"
            ),
        ),
        line("first write after a snapshot (copy), s", lambda r: f"{r.first_write_s:.2f}"),
        line("version index built (background), s", lambda r: f"{r.version_index_s:.1f}"),
        line(
            "used_memory with the copy, MB",
            lambda r: (
                f"{r.memory_after_copy_mb:,.0f} (x{r.memory_after_copy_mb / r.memory_mb:.2f})"
            ),
        ),
        line(
            "rollback median / p99, us",
            lambda r: f"{r.rollback.median_us:,.0f} / {r.rollback.p99_us:,.0f}",
        ),
        line(
            "  raw FT.ALIASUPDATE median / p99, us (ratio)",
            lambda r: (
                f"{r.rollback_raw.median_us:,.0f} / {r.rollback_raw.p99_us:,.0f} "
                f"(x{r.rollback.median_us / r.rollback_raw.median_us:.2f})"
            ),
        ),
        line(
            "search raw FT.SEARCH median / p99, us",
            lambda r: f"{r.search_raw.median_us:,.0f} / {r.search_raw.p99_us:,.0f}",
        ),
        line(
            "search live (alias), ratio to raw",
            lambda r: (
                f"{r.search_live.median_us:,.0f} "
                f"(x{r.search_live.median_us / r.search_raw.median_us:.2f})"
            ),
        ),
        line(
            "search old version, ratio to raw",
            lambda r: (
                f"{r.search_version.median_us:,.0f} "
                f"(x{r.search_version.median_us / r.search_raw.median_us:.2f})"
            ),
        ),
    ]
    return grid(head, body)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every size, print the table, optionally write JSON."""
    here = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description="rediscache versions benchmark")
    p.add_argument("--url", help="redis:// URL (default: a private embedded server)")
    p.add_argument("--data", type=Path, default=here.parent / "shared" / "data" / "dev")
    p.add_argument("--sizes", default="1000,20000,100000", help="comma-separated sizes")
    p.add_argument("--calls", type=int, default=1000, help="searches per side (default 1000)")
    p.add_argument("--json", type=Path, help="also write the results to this file")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if (args.data / "vectors.npy").is_file():
        data = load_dev(args.data, max(sizes))
    else:
        say(f"{args.data} not found: using the bundled sample (grown with noise)")
        data = load_bundled(max(sizes))
    say(f"data: {data.source}")
    results = []
    with open_hub(args.url) as (hub, where):
        # a version's index at 100k takes minutes to build here: "version index s" times it
        hub.index_wait = 1800.0
        say(f"server: {where}, {hub.server_versions()}")
        for n in sizes:
            say(f"size {n:,} ...")
            results.append(run_size(hub, data.vectors, data.queries[:200], n, args.calls))
    say("")
    say(table(results))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
