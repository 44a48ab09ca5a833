"""Benchmark high availability on a local primary with replicas and Sentinels (by hand).

    PYTHONPATH=. python benchmarks/bench_availability.py [--replicas 2] [--rounds 3]
        [--calls 2000] [--down-after-ms 5000] [--behind 1.0] [--cluster-rounds 2]
        [--json PATH]

It starts a local set (rediscache.ha: a primary, ``--replicas`` replicas, 3 Sentinels) in a
temporary directory and measures, in the same run:

1. What a durable write costs. ``--calls`` calls each, alternating in rounds: raw redis-py
   ``HSET`` of one 384-d float32 vector (the baseline), raw ``HSET`` + ``WAIT 1`` in one
   pipeline, and rediscache ``put`` with ``hub.durability`` None, ``Durability(replicas=1)``,
   ``Durability(replicas=N)`` and ``Durability(replicas=1, aof=True)`` (WAITAOF: the nodes run
   appendfsync everysec, so an AOF wait lasts until the next fsync, up to a second). Medians
   and p99 in microseconds, and each median as a ratio of the raw HSET's.

2. What a failover costs callers. ``--rounds`` times: two writer threads (one plain, one
   durable with ``Durability(replicas=1)``) and one reader (``get_many`` of 2 keys and a
   k=10 search) run; the primary is killed with SIGKILL; the script reports the seconds from
   the kill to the first write and the first read that began after it and succeeded, the
   errors callers saw by type, and how many acknowledged writes are missing afterwards,
   plain and durable. The killed node is started again (it rejoins as a replica) before the
   next round.

This machine has 2 shared cores: the three data nodes, three Sentinels and the client share
them; failover times here are dominated by Sentinel's down-after-milliseconds (5 s in the
local set) plus the election.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis

import rediscache
from rediscache import cluster, ha

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_core import say  # noqa: E402

DIM = 384


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_us": round(statistics.median(ordered) * 1e6, 1),
        "p99_us": round(ordered[int(0.99 * (len(ordered) - 1))] * 1e6, 1),
    }


def durable_cost(info: ha.HAInfo, calls: int, rounds: int, replicas: int) -> dict[str, Any]:
    """Latency of one write under each durability, against raw redis-py in the same run."""
    vec = np.random.default_rng(0).standard_normal(DIM).astype(np.float32)
    raw = info.primary_client(protocol=2)
    hub = rediscache.connect(info.url)
    space = hub.create_space("bench-durable", DIM, algorithm="flat")
    modes: dict[str, Any] = {
        "none": None,
        "wait1": rediscache.Durability(replicas=1, timeout=3.0),
        f"wait{replicas}": rediscache.Durability(replicas=replicas, timeout=3.0),
        "waitaof1": rediscache.Durability(replicas=1, aof=True, timeout=3.0),
    }
    samples: dict[str, list[float]] = {"raw_hset": [], "raw_hset_wait1": []}
    samples.update({f"put_{m}": [] for m in modes})
    blob = vec.tobytes()
    per = max(1, calls // rounds)
    for r in range(rounds):
        order = list(samples)
        for name in order if r % 2 == 0 else order[::-1]:  # alternating between rounds
            for i in range(per if "aof" not in name else max(1, per // 20)):
                key = f"k{i % 500}"
                t0 = time.perf_counter()
                if name == "raw_hset":
                    raw.hset(f"rawbench:{key}", "v", blob)
                elif name == "raw_hset_wait1":
                    pipe = raw.pipeline(transaction=False)
                    pipe.hset(f"rawbench:{key}", "v", blob)
                    pipe.execute_command("WAIT", 1, 5000)
                    pipe.execute()
                else:
                    hub.durability = modes[name.removeprefix("put_")]
                    space.put(key, vec)
                samples[name].append(time.perf_counter() - t0)
            hub.durability = None
    base = statistics.median(samples["raw_hset"])
    out = {}
    for name, got in samples.items():
        out[name] = {**_stats(got), "ratio_to_raw_hset": round(statistics.median(got) / base, 2),
                     "calls": len(got)}  # fmt: skip
    hub.drop_space("bench-durable")
    hub.close()
    raw.delete(*[f"rawbench:k{i}" for i in range(500)])
    raw.close()
    return out


def failover_round(info: ha.HAInfo, lagging: float = 0.0) -> dict[str, Any]:
    """One kill of the set's primary under two writers and a reader. ``lagging``: the
    replicas are stopped (SIGSTOP) that many seconds before the kill and continued right
    after it, as replicas that fell behind would be: what they had not received is lost."""
    victim = info.nodes[info.primary].pid
    behind = [n.pid for i, n in enumerate(info.nodes) if i != info.primary] if lagging else []
    return kill_round(info.url, lambda hub, name: victim, behind, lagging)


def cluster_round(url: str, nodes: list[Any]) -> dict[str, Any]:
    """One kill of the cluster primary holding the writers' space."""

    def victim(hub: rediscache.Hub, name: str) -> int:
        port = hub.node_client(name).connection_pool.connection_kwargs["port"]
        return int(next(n.pid for n in nodes if n.port == port))

    return kill_round(url, victim, [], 0.0)


def kill_round(url: str, victim_of: Any, behind: list[int], lagging: float) -> dict[str, Any]:
    """Two writers (one durable) and a reader on a new space; the process
    ``victim_of(hub, space name)`` killed with SIGKILL (``behind`` stopped ``lagging``
    seconds before); what callers saw."""
    plain_hub = rediscache.connect(url)
    durable_hub = rediscache.connect(url)
    durable_hub.durability = rediscache.Durability(replicas=1, timeout=3.0)
    name = f"bench-fo-{os.urandom(3).hex()}"
    space = plain_hub.create_space(name, DIM, algorithm="flat")
    rng = np.random.default_rng(1)
    space.put_many([f"s{i}" for i in range(100)], rng.standard_normal((100, DIM)))
    spaces = {"plain": space, "durable": durable_hub.space(name)}
    acked: dict[str, list[str]] = {"plain": [], "durable": []}
    texts: list[str] = []  # what the errors said, with when (seconds after the kill)
    errors: dict[str, int] = {}
    first: dict[str, float] = {}
    killed: list[float] = []
    stop = threading.Event()
    lock = threading.Lock()

    def note(kind: str, began: float) -> None:
        if killed and began > killed[0] and kind not in first:
            first[kind] = time.monotonic() - killed[0]

    def write(kind: str) -> None:
        i = 0
        while not stop.is_set():
            key, began = f"{kind}{i}", time.monotonic()
            try:
                spaces[kind].put(key, np.ones(DIM, np.float32))
                acked[kind].append(key)
                note("write", began)
            except rediscache.RediscacheError as exc:
                with lock:
                    label = f"{kind} write: {type(exc).__name__}"
                    errors[label] = errors.get(label, 0) + 1
                    texts.append(f"{time.monotonic() - killed[0] if killed else -1:.2f} s: {exc}")
            i += 1

    def read() -> None:
        q = rng.standard_normal(DIM)
        while not stop.is_set():
            began = time.monotonic()
            try:
                space.get_many(["s1", "s2"])
                space.search(q, 10)
                note("read", began)
            except rediscache.RediscacheError as exc:
                with lock:
                    label = f"read: {type(exc).__name__}"
                    errors[label] = errors.get(label, 0) + 1

    threads = [threading.Thread(target=write, args=(k,)) for k in ("plain", "durable")]
    threads.append(threading.Thread(target=read))
    for t in threads:
        t.start()
    time.sleep(2.0)
    for pid in behind:
        os.kill(pid, signal.SIGSTOP)
    time.sleep(lagging)
    os.kill(victim_of(plain_hub, name), signal.SIGKILL)
    killed.append(time.monotonic())
    for pid in behind:
        os.kill(pid, signal.SIGCONT)
    deadline = time.monotonic() + 60
    while len(first) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    lost = {k: sum(1 for key in keys if space.get(key) is None) for k, keys in acked.items()}
    plain_hub.drop_space(name)
    plain_hub.close()
    durable_hub.close()
    return {
        "replicas_behind_s": lagging,
        "first_write_s": round(first.get("write", float("nan")), 2),
        "first_read_s": round(first.get("read", float("nan")), 2),
        "errors": errors,
        "acked": {k: len(v) for k, v in acked.items()},
        "lost": lost,
        "messages": texts[:6],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--down-after-ms", type=int, default=ha.DOWN_AFTER_MS)
    parser.add_argument("--behind", type=float, default=1.0,
                        help="seconds the replicas fall behind before the last kill")  # fmt: skip
    parser.add_argument("--cluster-rounds", type=int, default=2,
                        help="kills of a cluster primary (0: none)")  # fmt: skip
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ha-") as tmp:
        root = Path(tmp) / "set"
        say(f"starting a primary, {args.replicas} replicas and 3 Sentinels in {root}")
        info, _ = ha.start(
            root, replicas=args.replicas, sentinels=3, down_after_ms=args.down_after_ms
        )
        try:
            say("durable write latency...")
            cost = durable_cost(info, args.calls, 4, args.replicas)
            for name, row in cost.items():
                say(f"  {name:<16} median {row['median_us']:>8} us  p99 {row['p99_us']:>8} us  "
                    f"{row['ratio_to_raw_hset']}x raw HSET ({row['calls']} calls)")  # fmt: skip
            rounds = []
            for r in range(args.rounds):
                info, _ = ha.start(root, replicas=args.replicas, sentinels=3)
                got = failover_round(info)
                rounds.append(got)
                say(f"failover round {r + 1}: {json.dumps(got)}")
            info, _ = ha.start(root, replicas=args.replicas, sentinels=3)
            behind = failover_round(info, lagging=args.behind)
            say(f"failover with the replicas {args.behind:g} s behind: {json.dumps(behind)}")
        finally:
            ha.stop(root)
        clustered = []
        if args.cluster_rounds:
            croot = Path(tmp) / "cluster"
            say(f"starting a cluster of 3 primaries with a replica each in {croot}")
            try:
                for r in range(args.cluster_rounds):
                    cinfo, _ = cluster.start(croot, primaries=3, replicas=1)
                    got = cluster_round(cinfo.url, list(cinfo.nodes))
                    clustered.append(got)
                    say(f"cluster failover round {r + 1}: {json.dumps(got)}")
            finally:
                cluster.stop(croot)
    report = {
        "machine": os.uname().nodename,
        "cpus": os.cpu_count(),
        "redis_py": redis.__version__,
        "down_after_ms": args.down_after_ms,
        "replicas": args.replicas,
        "durable_cost": cost,
        "failover": rounds,
        "failover_replicas_behind": behind,
        "cluster_failover": clustered,
        "first_write_s_median": statistics.median(r["first_write_s"] for r in rounds),
        "first_read_s_median": statistics.median(r["first_read_s"] for r in rounds),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
