"""Benchmark one partitioned space against one ordinary space on a Redis Cluster (by hand).

    PYTHONPATH=. python benchmarks/bench_partitioned.py [--shards 1,2,3] [--partitions 3]
        [--workers 4] [--seconds 3] [--rounds 3] [--json PATH]

For each shard count it starts a local cluster (rediscache.cluster, no replicas) in a
temporary directory and loads the 20,000 dev vectors (../shared/data/dev; the bundled 2,000
without it) twice: into one ordinary cosine HNSW space (on one shard) and into one space of
``--partitions`` partitions (spread over the shards). Then, in ``--rounds`` rounds of
alternating order, ``--workers`` client processes run for ``--seconds`` each:

* search: ``space.search(q, 10)`` of a random held-out query;
* get_many: ``space.get_many(100 random keys)``;

on each space, measured in the same run. It prints the median throughput over rounds
(operations per second, all workers) and the ratio partitioned / ordinary; the latency of
one client (median and p99 over 500 calls each, alternating); recall@10 of each space
against the dev set's exact top-10 (all 200 held-out queries); and the server work per
search of each space: Redis commands and server CPU time per query, summed over the shards
(INFO commandstats, INFO cpu). This machine has 2 shared cores: shards, workers and
client share them, so a partitioned space cannot be faster here; the work per query and
where it runs is what carries over to separate machines (docs/scale.md).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import rediscache
from rediscache import cluster

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_cluster import GET_MANY, _node_work, dev_or_bundled  # noqa: E402
from bench_core import DIM, K, say  # noqa: E402

NAMES = {"ordinary": "bench-one", "partitioned": "bench-parts"}


def _worker(args: tuple[str, str, str, float, int, Any, int]) -> int:
    """Operations done by one client process in ``seconds``."""
    url, which, op, seconds, seed, queries, size = args
    rng = np.random.default_rng(seed)
    hub = rediscache.connect(url)
    space = hub.space(NAMES[which])
    done = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if op == "search":
            space.search(queries[int(rng.integers(len(queries)))], K)
        else:
            space.get_many([str(int(i)) for i in rng.integers(0, size, GET_MANY)])
        done += 1
    hub.close()
    return done


def _latency(hub: rediscache.Hub, queries: Any, size: int) -> dict[str, Any]:
    """Median and p99 (us) of one client's search and get_many(100) on each space,
    alternating calls of the two spaces."""
    rng = np.random.default_rng(7)
    spaces = {w: hub.space(n) for w, n in NAMES.items()}
    times: dict[str, dict[str, list[float]]] = {}
    for op in ("search", "get_many"):
        for i in range(1000):
            which = ("ordinary", "partitioned")[i % 2]
            if op == "search":
                q = queries[int(rng.integers(len(queries)))]
                t = time.perf_counter()
                spaces[which].search(q, K)
            else:
                keys = [str(int(j)) for j in rng.integers(0, size, GET_MANY)]
                t = time.perf_counter()
                spaces[which].get_many(keys)
            times.setdefault(op, {}).setdefault(which, []).append(time.perf_counter() - t)
    return {
        op: {
            w: {"median_us": 1e6 * float(np.median(v)), "p99_us": 1e6 * float(np.percentile(v, 99))}
            for w, v in by.items()
        }
        for op, by in times.items()
    }


def run_shards(shards: int, data: Any, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        info, _ = cluster.start(Path(tmp) / "cl", primaries=shards)
        try:
            return _measure(info, data, shards, args)
        finally:
            cluster.stop(Path(tmp) / "cl")


def _measure(
    info: cluster.ClusterInfo, data: Any, shards: int, args: argparse.Namespace
) -> dict[str, Any]:
    hub = rediscache.connect(info.url)
    keys = [str(i) for i in range(len(data.vectors))]
    loads = {}
    for which, name in NAMES.items():
        parts = args.partitions if which == "partitioned" else 1
        t0 = time.perf_counter()
        space = hub.create_space(name, DIM, metric="cosine", partitions=parts)
        for s in range(0, len(keys), 1000):
            space.put_many(keys[s : s + 1000], data.vectors[s : s + 1000])
        while space.info().indexing:
            time.sleep(0.1)
        loads[which] = time.perf_counter() - t0
    parted = hub.space(NAMES["partitioned"])
    homes = sorted({hub._driver.nodes.address(f"rc:{{{p}}}:cfg") for p in parted.config.partitions})  # type: ignore[attr-defined]
    say(f"{shards} shard(s): loaded {len(keys):,} vectors in {loads['ordinary']:.1f} s "
        f"(one space), {loads['partitioned']:.1f} s ({args.partitions} partitions on "
        f"{len(homes)} node(s))")  # fmt: skip
    queries = data.queries
    truth = data.gt_ids
    if truth is None:  # the bundled sample: exact top-10 by numpy (cosine)
        unit = data.vectors / np.linalg.norm(data.vectors, axis=1, keepdims=True)
        truth = np.argsort(-(queries @ unit.T), axis=1)[:, :K]
    recall: dict[str, float] = {}
    for which, name in NAMES.items():
        results = hub.space(name).search_many(queries, K)
        recall[which] = float(np.mean([
            len({int(h.key) for h in hits} & set(row[:K].tolist())) / K
            for hits, row in zip(results, truth, strict=True)
        ]))  # fmt: skip
    latency = _latency(hub, queries, len(keys))
    nodes = [hub._nodes.client(w) for w in hub._nodes.primaries()]  # type: ignore[union-attr]
    ctx = multiprocessing.get_context("fork")
    results: dict[str, dict[str, list[float]]] = {}
    work: dict[str, list[tuple[int, float, int]]] = {}
    with ctx.Pool(args.workers) as pool:
        for r in range(args.rounds):
            for op in ("search", "get_many"):
                order = ("ordinary", "partitioned") if r % 2 == 0 else ("partitioned", "ordinary")
                for which in order:
                    before = _node_work(nodes)
                    jobs = [(info.url, which, op, args.seconds, 1000 * r + w, queries, len(keys))
                            for w in range(args.workers)]  # fmt: skip
                    ops = sum(pool.map(_worker, jobs))
                    after = _node_work(nodes)
                    results.setdefault(op, {}).setdefault(which, []).append(ops / args.seconds)
                    if op == "search":
                        cmds = sum(a[0] - b[0] for a, b in zip(after, before, strict=True))
                        cpu = sum(a[1] - b[1] for a, b in zip(after, before, strict=True))
                        w = work.setdefault(which, [])
                        w.append((cmds, cpu, ops))
    hub.close()
    out: dict[str, Any] = {"shards": shards, "partitions": args.partitions, "load_s": loads,
                           "recall_at_10": recall, "latency": latency}  # fmt: skip
    for op, by in results.items():
        one, parts = statistics.median(by["ordinary"]), statistics.median(by["partitioned"])
        ratios = [b / a for a, b in zip(by["ordinary"], by["partitioned"], strict=True)]
        out[op] = {"ordinary_ops_s": one, "partitioned_ops_s": parts,
                   "ratio": statistics.median(ratios)}  # fmt: skip
    out["per_query"] = {
        which: {
            "commands": sum(c for c, _, _ in w) / max(1, sum(n for _, _, n in w)),
            "cpu_us": 1e6 * sum(c for _, c, _ in w) / max(1, sum(n for _, _, n in w)),
        }
        for which, w in work.items()
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", default="1,2,3")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    data = dev_or_bundled()
    rows = [run_shards(int(s), data, args) for s in args.shards.split(",")]
    say("")
    say(f"one space vs one space of {args.partitions} partitions (ratio: partitioned / one)")
    say("shards  search/s one  parts  ratio  get_many/s one  parts  ratio  recall one  parts")
    for r in rows:
        s, g, rc = r["search"], r["get_many"], r["recall_at_10"]
        say(f"{r['shards']:>6}  {s['ordinary_ops_s']:12.0f}  {s['partitioned_ops_s']:5.0f}"
            f"  {s['ratio']:5.2f}  {g['ordinary_ops_s']:14.0f}  {g['partitioned_ops_s']:5.0f}"
            f"  {g['ratio']:5.2f}  {rc['ordinary']:10.3f}  {rc['partitioned']:5.3f}")  # fmt: skip
    say("")
    say(
        "one client, median / p99 us: search one, parts; get_many(100) one, parts; "
        "server work per search (commands, CPU us over all shards): one, parts"
    )
    for r in rows:
        lat, pq = r["latency"], r["per_query"]
        cells = [f"{lat[op][w]['median_us']:.0f}/{lat[op][w]['p99_us']:.0f}"
                 for op in ("search", "get_many") for w in ("ordinary", "partitioned")]  # fmt: skip
        work = [
            f"{pq[w]['commands']:.2f}, {pq[w]['cpu_us']:.0f}" for w in ("ordinary", "partitioned")
        ]
        say(f"{r['shards']:>6}  " + "  ".join(cells) + "   " + "  ".join(work))
    if args.json:
        args.json.write_text(json.dumps({"workers": args.workers, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
