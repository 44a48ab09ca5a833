"""Benchmark search and get_many throughput on a Redis Cluster of 1, 2 and 3 shards (by hand).

    PYTHONPATH=. python benchmarks/bench_cluster.py [--shards 1,2,3] [--workers 4]
                                                    [--seconds 3] [--rounds 3] [--json PATH]

For each shard count it starts a local cluster (rediscache.cluster, no replicas) in a
temporary directory and loads the 20,000 dev vectors (../shared/data/dev; the bundled 2,000
without it) into six cosine HNSW spaces of equal size, named so that they spread evenly over
the shards (two per shard at three shards, three at two). Then, in ``--rounds`` rounds of
alternating order, ``--workers`` client processes run for ``--seconds`` each:

* search: ``space.search(q, 10)`` of a random held-out query in a random space, against raw
  redis-py (``RedisCluster.execute_command("FT.SEARCH", ...)`` with the same query and
  returned fields) measured in the same run;
* get_many: ``space.get_many(100 random keys)`` of a random space, against a RedisCluster
  pipeline of 100 HGET.

Prints the median throughput over rounds (operations per second, all workers) and the ratio
rediscache / raw, recall@10 (numpy exact top-10 within each space), and the work per shard
during the rediscache search runs: its share of the queries, Redis commands per query and
server CPU time per query (INFO commandstats, INFO cpu: used_cpu_user + used_cpu_sys). This
machine has 2 shared cores: shards, workers and client share them, so throughput cannot
grow with shards here; the per-shard work is what carries over to separate machines
(docs/scale.md).
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
import redis
import redis.cluster
from redis.crc import key_slot

import rediscache
from rediscache import cluster

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_core import DIM, K, _search_args, load_bundled, load_dev, say  # noqa: E402

DEV = HERE.parent.parent / "shared" / "data" / "dev"
SPACES = 6
GET_MANY = 100


def dev_or_bundled() -> Any:
    """The 20,000 dev vectors (../shared/data/dev), or the package's 2,000 without them."""
    if (DEV / "vectors.npy").is_file():
        data = load_dev(DEV, 20_000)
        say(f"data: the dev set ({len(data.vectors):,} vectors)")
    else:
        data = load_bundled(2_000)
        say(f"data: the bundled sample ({len(data.vectors):,} vectors; ../shared is absent)")
    return data


def spread_names(count: int = SPACES) -> list[str]:
    """Space names whose slots spread evenly over 2 and over 3 equal slot ranges."""
    names: list[str] = []
    per2: dict[int, int] = {}
    per3: dict[int, int] = {}
    j = 0
    while len(names) < count:
        name = f"bench-s{j}"
        j += 1
        slot = key_slot(f"{{{name}}}".encode())
        two, three = slot * 2 // 16384, slot * 3 // 16384
        if per2.get(two, 0) < count // 2 and per3.get(three, 0) < count // 3:
            names.append(name)
            per2[two] = per2.get(two, 0) + 1
            per3[three] = per3.get(three, 0) + 1
    return names


def _worker(args: tuple[str, str, str, float, int, list[str], Any, Any]) -> int:
    """Operations done by one client process in ``seconds`` (after a common start)."""
    url, mode, op, seconds, seed, names, queries, sizes = args
    rng = np.random.default_rng(seed)
    done = 0
    if mode == "rc":
        hub = rediscache.connect(url)
        spaces = [hub.space(n) for n in names]
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            s = int(rng.integers(len(spaces)))
            if op == "search":
                spaces[s].search(queries[int(rng.integers(len(queries)))], K)
            else:
                keys = [str(int(i)) for i in rng.integers(0, sizes[s], GET_MANY)]
                spaces[s].get_many(keys)
            done += 1
        hub.close()
        return done
    client = redis.cluster.RedisCluster.from_url(url.replace("+cluster", ""), protocol=2)
    indexes = [rediscache.keys.SpaceKeys.for_space(n).index for n in names]
    docs = [rediscache.keys.SpaceKeys.for_space(n).gen(1).doc_prefix for n in names]
    blobs = [q.astype("<f4").tobytes() for q in queries]
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        s = int(rng.integers(len(names)))
        if op == "search":
            head, tail = _search_args(indexes[s], K, 100)
            client.execute_command("FT.SEARCH", *head, blobs[int(rng.integers(len(blobs)))], *tail)
        else:
            pipe = client.pipeline(transaction=False)
            for i in rng.integers(0, sizes[s], GET_MANY):
                pipe.hget(f"{docs[s]}{int(i)}", "vec")
            pipe.execute()
        done += 1
    client.close()
    return done


def _node_work(nodes: list[redis.Redis]) -> list[tuple[int, float, int]]:
    """Per node: commands processed so far, server CPU seconds, FT.SEARCH calls."""
    out = []
    for node in nodes:
        stats = node.info("commandstats")
        calls = sum(int(v["calls"]) for v in stats.values())
        cpu = node.info("cpu")
        searches = int(stats.get("cmdstat_FT.SEARCH", {}).get("calls", 0))
        out.append((calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), searches))
    return out


def run_shards(shards: int, data: Any, args: argparse.Namespace) -> dict[str, Any]:
    names = spread_names()
    with tempfile.TemporaryDirectory() as tmp:
        info, _ = cluster.start(Path(tmp) / "cl", primaries=shards)
        try:
            return _measure(info, names, data, shards, args)
        finally:
            cluster.stop(Path(tmp) / "cl")


def _measure(
    info: cluster.ClusterInfo, names: list[str], data: Any, shards: int, args: argparse.Namespace
) -> dict[str, Any]:
    hub = rediscache.connect(info.url)
    parts = np.array_split(np.arange(len(data.vectors)), SPACES)
    sizes = [len(p) for p in parts]
    t0 = time.perf_counter()
    spaces = []
    for name, rows in zip(names, parts, strict=True):
        space = hub.create_space(name, DIM, metric="cosine")
        vecs = data.vectors[rows]
        for s in range(0, len(rows), 1000):
            space.put_many([str(i) for i in range(s, min(s + 1000, len(rows)))], vecs[s : s + 1000])
        spaces.append(space)
    for space in spaces:
        while space.info().indexing:
            time.sleep(0.1)
    load_s = time.perf_counter() - t0
    homes = [hub.node_client(n).connection_pool.connection_kwargs["port"] for n in names]
    spread = sorted(homes.count(p) for p in set(homes))
    say(f"{shards} shard(s): loaded {len(data.vectors):,} vectors in {load_s:.1f} s; "
        f"spaces per node {spread}")  # fmt: skip
    # recall@10: each space's answers against its exact top-10 (cosine, numpy)
    queries = data.queries[: args.queries]
    found = total = 0
    for space, rows in zip(spaces, parts, strict=True):
        vecs = data.vectors[rows]
        sims = queries @ vecs.T / np.linalg.norm(vecs, axis=1)
        truth = np.argsort(-sims, axis=1)[:, :K]
        for q, want in zip(queries, truth, strict=True):
            got = {h.key for h in space.search(q, K)}
            found += len(got & {str(int(i)) for i in want})
            total += K
    recall = found / total
    nodes = [hub._nodes.client(w) for w in hub._nodes.primaries()]  # type: ignore[union-attr]
    ctx = multiprocessing.get_context("fork")
    results: dict[str, dict[str, list[float]]] = {}
    work: list[list[tuple[int, float, int]]] = []
    with ctx.Pool(args.workers) as pool:
        for r in range(args.rounds):
            for op in ("search", "get_many"):
                order = ("rc", "raw") if r % 2 == 0 else ("raw", "rc")
                for mode in order:
                    before = _node_work(nodes)
                    jobs = [
                        (info.url, mode, op, args.seconds, 1000 * r + w, names, queries, sizes)
                        for w in range(args.workers)
                    ]
                    ops = sum(pool.map(_worker, jobs))
                    after = _node_work(nodes)
                    results.setdefault(op, {}).setdefault(mode, []).append(ops / args.seconds)
                    if op == "search" and mode == "rc":
                        work.append([
                            (a[0] - b[0], a[1] - b[1], a[2] - b[2])
                            for a, b in zip(after, before, strict=True)
                        ])  # fmt: skip
    hub.close()
    out: dict[str, Any] = {"shards": shards, "load_s": load_s, "recall_at_10": recall}
    for op, modes in results.items():
        rc, raw = statistics.median(modes["rc"]), statistics.median(modes["raw"])
        ratios = [a / b for a, b in zip(modes["rc"], modes["raw"], strict=True)]
        out[op] = {"rc_ops_s": rc, "raw_ops_s": raw, "ratio": statistics.median(ratios)}
    per_shard = []
    for i in range(len(nodes)):
        cmds = sum(w[i][0] for w in work)
        cpu = sum(w[i][1] for w in work)
        searches = sum(w[i][2] for w in work)
        per_shard.append({"searches": searches, "commands": cmds, "cpu_s": cpu})
    queries_run = sum(s["searches"] for s in per_shard) or 1
    for s in per_shard:
        s["share"] = s["searches"] / queries_run
        s["commands_per_query"] = s["commands"] / max(1, s["searches"])
        s["cpu_us_per_query"] = 1e6 * s["cpu_s"] / max(1, s["searches"])
    out["per_shard"] = per_shard
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", default="1,2,3")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    data = dev_or_bundled()
    rows = [run_shards(int(s), data, args) for s in args.shards.split(",")]
    say("")
    say("shards  search/s  raw/s  ratio  get_many/s  raw/s  ratio  recall@10")
    for r in rows:
        s, g = r["search"], r["get_many"]
        say(f"{r['shards']:>6}  {s['rc_ops_s']:8.0f}  {s['raw_ops_s']:5.0f}  {s['ratio']:5.2f}"
            f"  {g['rc_ops_s']:10.0f}  {g['raw_ops_s']:5.0f}  {g['ratio']:5.2f}"
            f"  {r['recall_at_10']:9.3f}")  # fmt: skip
    say("")
    say("per shard during rediscache searches: share of queries, commands/query, "
        "server CPU us/query")  # fmt: skip
    for r in rows:
        cells = [
            f"{s['share']:.2f} / {s['commands_per_query']:.2f} / {s['cpu_us_per_query']:.0f}"
            for s in r["per_shard"]
        ]
        say(f"{r['shards']:>6}  " + "   ".join(cells))
    if args.json:
        args.json.write_text(json.dumps({"workers": args.workers, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
