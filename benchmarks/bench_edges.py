"""What the answers at the edges cost (run by hand): expiry and search, paging, the hot
cache's staleness window, and the largest script calls.

    PYTHONPATH=. python benchmarks/bench_edges.py [--data DIR] [--calls C] [--json PATH]

On the dev embeddings (20,000 x 384, cosine, HNSW at the defaults), one private embedded
server, medians and p99 per call, sides alternating in blocks (bench_core.measure):

* expiry and search: ``search`` k=10 in a space with a ttl (each hit's document is loaded
  to tell expired from live) against the same data in a space without, and both against raw
  FT.SEARCH; then the first and the next search after 10 / 100 / 1,000 entries nearest to the
  query expired (the first one deletes them and asks again). For the record, the design not
  taken: an indexed expiry field filtered in the query (RediSearch's default hybrid policy,
  and BATCHES forced), and what keeping that field right costs a read with refresh_ttl
  (an HSET re-indexes the document) against the PEXPIRE it takes now.
* paging: a page at offset 490 with ef=500 (what consistent pages need) against the first
  page at the default ef.
* the hot cache: how long after another client's write a hit can still return the old value
  (the invalidation's delivery), with an idle reader and with a reader thread busy in Python.
* the largest calls: server time of one call at each limit (write.lua chunk in HNSW and FLAT,
  gather.lua, combine.lua, update_mean.lua: INFO commandstats), and the latency they add to
  another client's HGET (a separate process) while they run back to back.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis

import rediscache
from rediscache import operations

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_core import (  # noqa: E402
    grid,
    latency_row,
    load_bundled,
    load_dev,
    measure,
    open_hub,
    say,
)

K = 10


def _raw_search(client: redis.Redis, index: str, query: str, blob: bytes, fields: list[str]) -> Any:
    return client.execute_command(
        "FT.SEARCH", index, query, "PARAMS", 2, "vec", blob, "SORTBY", "__dist", "ASC",
        "LIMIT", 0, K, "RETURN", len(fields), *fields, "DIALECT", 2,
    )  # fmt: skip


def _server_usec(client: redis.Redis, command: str) -> tuple[int, int]:
    stats = client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def expiry_part(
    hub: rediscache.Hub, data: Any, calls: int, rows: list[Any], out: dict[str, Any]
) -> None:
    """Search in a space with a ttl against one without, and after expiries near the query."""
    client = hub.client
    plain = hub.create_space("edge_plain", 384)
    cache = hub.create_space("edge_cache", 384, ttl=3600)
    for space in (plain, cache):
        space.put_many(data.keys, data.vectors, data.metadata)
    queries = data.queries[:200]
    blobs = [q.astype(np.float32).tobytes() for q in queries]
    nq = len(queries)
    knn = f"*=>[KNN {K} @vec $vec EF_RUNTIME 100 AS __dist]"
    for meta, fields in ((True, ["__dist", "meta"]), (False, ["__dist"])):
        t = measure(
            {
                "cache": lambda i, m=meta: cache.search(queries[i % nq], K, with_metadata=m),
                "plain": lambda i, m=meta: plain.search(queries[i % nq], K, with_metadata=m),
                "raw": lambda i, f=fields: _raw_search(
                    client, plain.keys.index, knn, blobs[i % nq], f
                ),
            },
            calls,
        )
        label = "with metadata" if meta else "without metadata"
        rows.append(latency_row(f"search k=10 {label}, space with ttl", "same, no ttl",
                                t["cache"], t["plain"]))  # fmt: skip
        rows.append(latency_row(f"search k=10 {label}, space with ttl", "raw FT.SEARCH",
                                t["cache"], t["raw"]))  # fmt: skip
        rows.append(latency_row(f"search k=10 {label}, space without ttl", "raw FT.SEARCH",
                                t["plain"], t["raw"]))  # fmt: skip

    # expired entries nearest to the query: the first search deletes them and asks again
    runs: dict[str, Any] = {}
    rng = np.random.default_rng(0)
    for n in (10, 100, 1000):
        probes = list(range(20))
        keys, vecs = [], []
        for qi in probes:
            q = queries[qi] / np.linalg.norm(queries[qi])
            near = q + 0.01 * rng.standard_normal((n, 384)).astype(np.float32)
            keys += [f"gone-{n}-{qi}-{j}" for j in range(n)]
            vecs.append(near)
        cache.put_many(keys, np.concatenate(vecs), ttl=0.5)
        time.sleep(1.0)
        first, then, leaked = [], [], 0
        for qi in probes:
            t0 = time.perf_counter()
            hits = cache.search(queries[qi], K)
            first.append((time.perf_counter() - t0) * 1e6)
            leaked += sum(h.key.startswith("gone") for h in hits) + (K - len(hits))
            t0 = time.perf_counter()
            cache.search(queries[qi], K)
            then.append((time.perf_counter() - t0) * 1e6)
        runs[str(n)] = {
            "first_median_us": statistics.median(first),
            "first_max_us": max(first),
            "next_median_us": statistics.median(then),
            "expired_or_missing_hits": leaked,
        }
        say(f"  {n} expired nearest to each of 20 queries: first search median "
            f"{statistics.median(first):,.0f} us (max {max(first):,.0f}), the next "
            f"{statistics.median(then):,.0f} us; expired or missing hits: {leaked}")  # fmt: skip
    out["expired_near_query"] = runs

    # the design not taken: an indexed expiry field (raw index over raw keys)
    raw_index, prefix = "edge_raw_idx", "edge_raw:"
    client.execute_command(
        "FT.CREATE", raw_index, "ON", "HASH", "PREFIX", 1, prefix, "SCHEMA",
        "vec", "VECTOR", "HNSW", 12, "TYPE", "FLOAT32", "DIM", 384, "DISTANCE_METRIC", "COSINE",
        "M", 16, "EF_CONSTRUCTION", 200, "EF_RUNTIME", 100, "__exp", "NUMERIC",
    )  # fmt: skip
    try:
        now = int(time.time() * 1000)
        pipe = client.pipeline(transaction=False)
        for key, vec in zip(data.keys, data.vectors):
            pipe.hset(prefix + key, mapping={"vec": vec.tobytes(), "__exp": now + 3_600_000})
            if len(pipe) >= 1000:
                pipe.execute()
        pipe.execute()
        while int(
            dict(zip(*[iter(client.execute_command("FT.INFO", raw_index))] * 2))[b"indexing"]
        ):
            time.sleep(0.2)
        flt = f"(-@__exp:[-inf {now}])"
        t = measure(
            {
                "plain": lambda i: _raw_search(client, raw_index, knn, blobs[i % nq], ["__dist"]),
                "default": lambda i: _raw_search(
                    client, raw_index, f"{flt}=>[KNN {K} @vec $vec EF_RUNTIME 100 AS __dist]",
                    blobs[i % nq], ["__dist"]),
                "batches": lambda i: _raw_search(
                    client, raw_index,
                    f"{flt}=>[KNN {K} @vec $vec EF_RUNTIME 100 HYBRID_POLICY BATCHES AS __dist]",
                    blobs[i % nq], ["__dist"]),
            },
            min(calls, 500),
        )  # fmt: skip
        rows.append(latency_row("not taken: expiry-field filter, default policy", "raw FT.SEARCH",
                                t["default"], t["plain"]))  # fmt: skip
        rows.append(latency_row("not taken: expiry-field filter, BATCHES", "raw FT.SEARCH",
                                t["batches"], t["plain"]))  # fmt: skip
        docs = [prefix + k for k in data.keys]
        half = len(docs) // 2
        t = measure(
            {
                "hset": lambda i: client.hset(docs[i % half], "__exp", now + 7_200_000),
                "pexpire": lambda i: client.pexpire(docs[half + i % half], 7_200_000),
            },
            300,
            warmup=0,
        )
        rows.append(latency_row("not taken: refresh keeping __exp (HSET)", "PEXPIRE",
                                t["hset"], t["pexpire"]))  # fmt: skip
    finally:
        client.execute_command("FT.DROPINDEX", raw_index, "DD")


def paging_part(hub: rediscache.Hub, data: Any, calls: int, rows: list[Any]) -> None:
    """A deep consistent page against the first page."""
    space = hub.space("edge_plain")
    queries = data.queries[:200]
    nq = len(queries)
    t = measure(
        {
            "deep": lambda i: space.search(queries[i % nq], K, offset=490, ef=500),
            "first": lambda i: space.search(queries[i % nq], K),
        },
        min(calls, 500),
    )
    rows.append(latency_row("page at offset 490, ef=500", "first page, default ef",
                            t["deep"], t["first"]))  # fmt: skip


def hot_cache_part(hub: rediscache.Hub, data: Any, out: dict[str, Any]) -> None:
    """Time from another client's acknowledged write until the hot cache stops serving the
    old value: with an idle reader and with a reader thread busy in Python, lookups applying
    waiting invalidations themselves (as shipped) or leaving them to the listener thread."""
    space = hub.space("edge_plain")
    pool = hub.client.connection_pool
    other = redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, **pool.connection_kwargs
        )
    )
    writer = rediscache.connect(client=other).space("edge_plain")
    keys = data.keys[:50]
    results: dict[str, Any] = {}
    try:
        for drain in (True, False):
            cache = space.enable_hot_cache()
            time.sleep(0.2)
            if not drain:
                cache._fd = None  # lookups leave the socket to the listener thread
            for busy_reader in (False, True):
                mode = ("lookups drain" if drain else "listener only") + (
                    ", busy reader thread" if busy_reader else ", idle reader"
                )
                stop = threading.Event()
                busy = threading.Thread(target=_spin, args=(space, keys, stop), daemon=True)
                if busy_reader:
                    busy.start()
                delays = []
                for i in range(200):
                    key = keys[0]
                    space.get(key)  # cached
                    new = data.vectors[100 + i]
                    writer.put(key, new)
                    acked = time.perf_counter()  # the writer saw its write done
                    # the window: until the start of the last lookup that still returned the
                    # old value (0 when the first lookup after the ack saw the new one)
                    last_stale = acked
                    while True:
                        began = time.perf_counter()
                        if np.array_equal(space.get(key), new):
                            break
                        last_stale = began
                    delays.append((last_stale - acked) * 1e3)
                stop.set()
                if busy.is_alive():
                    busy.join()
                med, p99 = statistics.median(delays), float(np.percentile(delays, 99))
                results[mode] = {"median_ms": med, "p99_ms": p99, "max_ms": max(delays)}
                say(f"  hot cache, {mode}: a lookup returned the old value up to {med:.3f} ms "
                    f"(median), {p99:.3f} (p99), {max(delays):.3f} ms (max) after the "
                    "acknowledged write")  # fmt: skip
            space.disable_hot_cache()
    finally:
        space.disable_hot_cache()
        other.close()
    out["hot_cache_staleness"] = results


def _spin(space: Any, keys: list[str], stop: threading.Event) -> None:
    i = 0
    while not stop.is_set():
        space.get(keys[1 + i % 49])
        i += 1


def _reader(where: tuple[str, str], key: str, seconds: float, q: Any) -> None:
    client = redis.Redis(unix_socket_path=where[0], password=where[1])
    lat = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        client.hget(key, "vec")
        lat.append((time.perf_counter() - t0) * 1e3)
        time.sleep(0.001)
    q.put(lat)


def limits_part(hub: rediscache.Hub, data: Any, out: dict[str, Any]) -> None:
    """Server time of the largest call of each script, and what it costs another client."""
    client = hub.client
    dim = 384
    flat = hub.create_space("edge_flat", dim, algorithm="flat")
    flat.put_many(data.keys, data.vectors)
    hnsw = hub.space("edge_plain")
    g_keys = data.keys[: operations.GATHER_FLOATS // dim]
    c_keys = data.keys[: operations.COMPUTE_FLOATS // dim]
    rows_hnsw = hnsw._parts.writes.pacer.rows()
    rng = np.random.default_rng(3)
    cases = {
        f"write.lua, {rows_hnsw} rows into HNSW": lambda: hnsw.put_many(
            [f"w{j}" for j in range(rows_hnsw)], rng.standard_normal((rows_hnsw, dim))),
        f"write.lua, {flat._parts.writes.pacer.rows()} rows into FLAT": lambda: flat.put_many(
            [f"w{j}" for j in range(1000)], rng.standard_normal((1000, dim))),
        f"gather.lua, {len(g_keys):,} keys (average)": lambda: flat.average(g_keys),
        f"combine.lua, {len(c_keys):,} keys (average into=)": lambda: flat.average(
            c_keys, into="avg"),
        f"update_mean.lua, {len(c_keys) - 2:,} keys": lambda: flat.update_mean(
            "um", c_keys[: len(c_keys) - 2]),
    }  # fmt: skip
    assert hub.server is not None and hub.server.unix_socket
    where = (hub.server.unix_socket, hub.server.password)
    probe = flat.live_keys.doc(data.keys[0])
    results: dict[str, Any] = {}
    ctx = mp.get_context("spawn")
    for name, call in cases.items():
        call()  # warm (script load, first write)
        c0, u0 = _server_usec(client, "evalsha")
        n = 5
        for _ in range(n):
            call()
        c1, u1 = _server_usec(client, "evalsha")
        per_call_ms = (u1 - u0) / max(1, c1 - c0) / 1e3
        q = ctx.Queue()
        proc = ctx.Process(target=_reader, args=(where, probe, 3.0, q))
        proc.start()
        time.sleep(0.5)
        end = time.perf_counter() + 2.0
        while time.perf_counter() < end:
            call()
        lat = q.get()
        proc.join()
        results[name] = {
            "server_ms_per_call": per_call_ms,
            "other_client_hget_p50_ms": float(np.median(lat)),
            "other_client_hget_p99_ms": float(np.percentile(lat, 99)),
            "other_client_hget_max_ms": float(np.max(lat)),
        }
        say(f"  {name}: {per_call_ms:.1f} ms of server time per call; another client's HGET "
            f"meanwhile p50 {np.median(lat):.2f} ms, p99 {np.percentile(lat, 99):.2f}, "
            f"max {np.max(lat):.2f} ms")  # fmt: skip
    q = ctx.Queue()
    proc = ctx.Process(target=_reader, args=(where, probe, 2.0, q))
    proc.start()
    lat = q.get()
    proc.join()
    results["idle (baseline)"] = {
        "other_client_hget_p50_ms": float(np.median(lat)),
        "other_client_hget_p99_ms": float(np.percentile(lat, 99)),
        "other_client_hget_max_ms": float(np.max(lat)),
    }
    say(f"  idle: another client's HGET p50 {np.median(lat):.2f} ms, p99 "
        f"{np.percentile(lat, 99):.2f}, max {np.max(lat):.2f} ms")  # fmt: skip
    out["largest_calls"] = results


def main() -> int:
    """Run every part and print what it measured."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "dev")
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    data = (
        load_dev(args.data, 20_000) if (args.data / "vectors.npy").is_file() else load_bundled(2000)
    )
    say(f"data: {data.source}")
    rows: list[Any] = []
    out: dict[str, Any] = {"data": data.source}
    with open_hub(None) as (hub, where):
        say(f"server: {where}")
        try:
            say("expiry and search ...")
            expiry_part(hub, data, args.calls, rows, out)
            say("paging ...")
            paging_part(hub, data, args.calls, rows)
            say("hot cache staleness ...")
            hot_cache_part(hub, data, out)
            say("largest calls ...")
            limits_part(hub, data, out)
        finally:
            for name in ("edge_plain", "edge_cache", "edge_flat"):
                hub.drop_space(name, missing_ok=True)
    say(grid(
        ["op", "median us", "p99 us", "baseline", "median us", "p99 us", "ratio"],
        [[r.op, f"{r.rc_median:,.1f}", f"{r.rc_p99:,.1f}", r.baseline, f"{r.raw_median:,.1f}",
          f"{r.raw_p99:,.1f}", f"{r.ratio:.3f}"] for r in rows],
    ))  # fmt: skip
    out["rows"] = [r.__dict__ for r in rows]
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
