"""Benchmark rediscache against RedisVL on the same data and server, in one run (by hand).

    PYTHONPATH=. python benchmarks/bench_redisvl.py [--url URL] [--data DIR] [--n N]
                                                    [--calls C] [--json PATH]

Both sides hold the same ``n`` rows (vector, category tag, month numeric, name) under the same
schema: HNSW, cosine, FLOAT32, M 16, EF_CONSTRUCTION 200, EF_RUNTIME 100, hash storage, each
under its own prefix (the rediscache space ``bench_rvl``, the RedisVL index ``rvl_bench``).
RedisVL uses the hub's own client (RESP2, bytes replies: also what RedisVL sets up itself).

* load: ``space.put_many`` (chunks of 1,000) then ``SearchIndex.load`` of the same rows (its
  default pipeline batch), each until FT.INFO reports nothing left to index -> rows/s.
* memory: INFO used_memory before loading, after rediscache's load and after RedisVL's
  (deltas; the Lua VM's share shown apart), cross-checked by what each drop frees at the end;
  and FT.INFO vector_index_sz_mb / total_index_memory_sz_mb of each index.
* latency, median and p99 per call, the sides alternating in blocks (bench_core's ``measure``):
  fetch of 100 keys (RedisVL has no public batch fetch: ``fetch`` per id, and its PRIVATE
  storage helper given all 100 keys, labelled so), KNN k=10, KNN k=10 filtered on category,
  and 100 KNN queries (``batch_query`` at batch_size 100 and at its default 10).
  RedisVL's query objects are built inside the timed call (as a caller would) from the same
  numpy query rows that rediscache gets; both ask for EF_RUNTIME 100 in the query itself.
* overlap: the top-10 ids both sides return for the first queries (a sanity check).

Data: the dev set ``../shared/data/dev`` (never its ``text``) or the bundled sample. Without
``--url`` a private embedded server is started and stopped. Both sides are dropped before and
after. A quick check takes seconds: ``--n 2000 --calls 100``. Not part of the test suite.
"""

from __future__ import annotations

import gc
import importlib.metadata
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import redis

import rediscache

try:
    # RedisVL ships no type information: its names are Any here.
    from redisvl.index import SearchIndex  # type: ignore[import-untyped]
    from redisvl.query import VectorQuery  # type: ignore[import-untyped]
    from redisvl.query.filter import Tag  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - the benchmark needs it
    raise SystemExit("bench_redisvl needs RedisVL: pip install redisvl") from None

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import bench_core as bc  # noqa: E402

SPACE = "bench_rvl"
RVL_INDEX = "rvl_bench"
RVL_VECTOR = "embedding"
RVL_RETURN = ["category", "month", "name"]
HNSW = {"M": 16, "EF_CONSTRUCTION": 200, "EF_RUNTIME": 100}
EF = HNSW["EF_RUNTIME"]
#: Every VectorQuery: the rediscache hit's fields (id, distance, metadata), EF_RUNTIME per query.
RVL_QUERY = {"vector_field_name": RVL_VECTOR, "return_fields": RVL_RETURN, "ef_runtime": EF}
RVL_QUERY["num_results"] = bc.K
#: Keys per fetch and queries per batch.
BATCH = 100
#: Queries compared for the top-10 overlap.
OVERLAP_QUERIES = 20
MB = 1024 * 1024
#: FT.INFO fields reported for each index.
INDEX_FIELDS = ("num_docs", "vector_index_sz_mb", "total_index_memory_sz_mb")


def rvl_schema() -> dict[str, Any]:
    """The RedisVL schema matching the rediscache space."""
    attrs: dict[str, Any] = {"dims": bc.DIM, "algorithm": "hnsw", "distance_metric": "cosine"}
    attrs |= {"datatype": "float32", "m": HNSW["M"], "ef_construction": HNSW["EF_CONSTRUCTION"]}
    fields: list[dict[str, Any]] = [
        {"name": "category", "type": "tag"},
        {"name": "month", "type": "numeric"},
    ]
    fields.append({"name": RVL_VECTOR, "type": "vector", "attrs": attrs | {"ef_runtime": EF}})
    index = {"name": RVL_INDEX, "prefix": RVL_INDEX, "storage_type": "hash"}
    return {"index": index, "fields": fields}


def drop_rvl(index: Any, client: redis.Redis) -> None:
    """Drop the RedisVL index with its documents, then any stray key under its prefix."""
    if index.exists():
        index.delete(drop=True)
    stray = list(client.scan_iter(match=f"{RVL_INDEX}:*", count=1000))
    for start in range(0, len(stray), 1000):
        client.unlink(*stray[start : start + 1000])


def ft_info(client: redis.Redis, index: str) -> dict[str, Any]:
    """FT.INFO as a dict with str keys (RESP2 reply)."""
    reply = client.execute_command("FT.INFO", index)
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in zip(reply[::2], reply[1::2])}


def num(info: dict[str, Any], field: str) -> float:
    """A numeric FT.INFO field (0.0 when absent)."""
    return float(info.get(field, 0))


def wait_indexed(client: redis.Redis, index: str, n: int) -> None:
    """Until FT.INFO of ``index`` shows ``indexing`` 0 and ``n`` documents."""
    deadline = time.monotonic() + 600
    while True:
        info = ft_info(client, index)
        if num(info, "indexing") == 0 and num(info, "num_docs") >= n:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{index}: {num(info, 'num_docs'):.0f} of {n} indexed after 600s")
        time.sleep(0.1)


def used_memory(client: redis.Redis) -> tuple[int, int]:
    """INFO memory used_memory and the part of it held by Lua VMs, in bytes."""
    info = client.info("memory")
    return int(info["used_memory"]), int(info.get("used_memory_vm_eval", 0))


def ids_of(docs: Sequence[dict[str, Any]]) -> list[str]:
    """Row ids of RedisVL result documents (``<prefix>:<id>``)."""
    return [str(d["id"]).split(":", 1)[1] for d in docs]


class Run:
    """Both sides loaded with the same rows, and what was measured on them."""

    def __init__(self, hub: rediscache.Hub, data: bc.Dataset, calls: int) -> None:
        self.hub, self.data, self.calls = hub, data, calls
        self.client: redis.Redis = hub.client
        self.rvl: Any = SearchIndex.from_dict(rvl_schema(), redis_client=self.client)
        self.drop()
        self.space = hub.create_space(SPACE, bc.DIM, metric="cosine", fields=bc.FIELDS, hnsw=HNSW)
        self.rvl.create()
        self.rc_index = self.space.live_keys.index
        self.queries = data.queries
        self.rows: list[bc.Row] = []
        self.load_stats: dict[str, Any] = {}
        self.memory: dict[str, Any] = {}
        self.overlap: dict[str, float] = {}
        categories = {m["category"] for m in data.metadata}
        self.category = bc.FILTER_CATEGORY if bc.FILTER_CATEGORY in categories else min(categories)

    def drop(self) -> None:
        """Remove both sides (the space with all its keys; the index with its documents)."""
        self.hub.drop_space(SPACE, missing_ok=True)
        drop_rvl(self.rvl, self.client)

    # ------------------------------------------------------------ load and memory

    def load(self) -> None:
        """Each side loads all rows, one after the other, timed until fully indexed."""
        d, n = self.data, len(self.data.keys)
        blobs = [v.astype("<f4").tobytes() for v in d.vectors]
        objects = [{**meta, RVL_VECTOR: blob} for meta, blob in zip(d.metadata, blobs)]
        rvl_keys = [self.rvl.key(k) for k in d.keys]

        def put_many(c: int = bc.CHUNK) -> None:
            for j in range(0, n, c):
                self.space.put_many(d.keys[j : j + c], d.vectors[j : j + c], d.metadata[j : j + c])

        gc.collect()
        base = used_memory(self.client)
        rc_s = self._timed(put_many, self.rc_index)
        after_rc = used_memory(self.client)
        rvl_s = self._timed(lambda: self.rvl.load(objects, keys=rvl_keys), RVL_INDEX)
        after_rvl = used_memory(self.client)
        self.load_stats = {"rows": n, "rediscache_s": rc_s, "redisvl_s": rvl_s}
        self.load_stats |= {"rediscache_rows_per_s": n / rc_s, "redisvl_rows_per_s": n / rvl_s}
        self.load_stats["ratio_rc_over_rvl"] = rvl_s / rc_s
        self.load_stats["how"] = (
            f"rediscache first: put_many in chunks of {bc.CHUNK}; then one RedisVL "
            "SearchIndex.load(dicts, vector as float32 bytes, keys=...) at its default pipeline "
            "batch (dicts and keys built untimed); each timed until FT.INFO indexing is 0"
        )
        self.memory = {"used_memory_before": base[0]}
        for side, (m0, lua0), (m1, lua1), index in (
            ("rediscache", base, after_rc, self.rc_index),
            ("redisvl", after_rc, after_rvl, RVL_INDEX),
        ):
            info = ft_info(self.client, index)
            self.memory[side] = {
                "used_memory_load_delta": m1 - m0,
                "lua_vm_load_delta": lua1 - lua0,
                **{f: num(info, f) for f in INDEX_FIELDS},
            }

    def _timed(self, write: Callable[[], object], index: str) -> float:
        t0 = time.perf_counter()
        write()
        wait_indexed(self.client, index, len(self.data.keys))
        return time.perf_counter() - t0

    def drop_measured(self) -> None:
        """Drop each side in turn, recording how much used_memory each drop frees."""
        before = used_memory(self.client)[0]
        self.hub.drop_space(SPACE, missing_ok=True)
        time.sleep(0.5)  # let anything freed in the background go before reading INFO
        mid = used_memory(self.client)[0]
        drop_rvl(self.rvl, self.client)
        time.sleep(0.5)
        self.memory["rediscache"]["drop_freed"] = before - mid
        self.memory["redisvl"]["drop_freed"] = mid - used_memory(self.client)[0]

    # ------------------------------------------------------------ latency

    def _row(self, op: str, baseline: str, ours: bc.Timing, theirs: bc.Timing) -> None:
        self.rows.append(bc.latency_row(op, baseline, ours, theirs))

    def _vq(self, q: Any, *, filtered: bool = False) -> Any:
        flt = Tag("category") == self.category if filtered else None
        return VectorQuery(vector=q, filter_expression=flt, **RVL_QUERY)

    def fetch(self) -> None:
        """get_many(100 keys) vs SearchIndex.fetch per id, and RedisVL's internal batch get."""
        order = np.random.default_rng(7).permutation(len(self.data.keys))
        keys = [self.data.keys[int(i)] for i in order]
        batches = [keys[j : j + BATCH] for j in range(0, len(keys) - BATCH + 1, BATCH)]
        rvl_batches = [[self.rvl.key(k) for k in b] for b in batches]
        nb, space, rvl, client = len(batches), self.space, self.rvl, self.client

        def ours(i: int) -> object:
            return space.get_many(batches[i % nb])

        def per_id(i: int) -> object:
            docs = [rvl.fetch(k) for k in batches[i % nb]]
            return np.stack([np.frombuffer(doc[RVL_VECTOR], dtype="<f4") for doc in docs])

        def batched(i: int) -> object:
            # Not public API: the storage helper behind fetch, here given all 100 keys at once.
            docs = rvl._storage.get(client, rvl_batches[i % nb])
            return np.stack([np.frombuffer(doc[RVL_VECTOR], dtype="<f4") for doc in docs])

        for side in (per_id, batched):
            if not np.array_equal(np.asarray(ours(0)), np.asarray(side(0))):
                raise SystemExit("fetch: rediscache and RedisVL returned different vectors")
        t = bc.measure({"rc": ours, "fetch": per_id, "batch": batched}, self.calls, block=10)
        op, what = f"fetch {BATCH} keys", "+ np.frombuffer of each embedding"
        self._row(op, f"SearchIndex.fetch(id) x{BATCH} {what}", t["rc"], t["fetch"])
        private = f"index._storage.get(client, {BATCH} keys): PRIVATE, pipelined HGETALL"
        self._row(f"{op} (internal batch)", f"{private} {what}", t["rc"], t["batch"])

    def search(self) -> None:
        """search k=10, unfiltered and with a tag filter, vs VectorQuery through index.query."""
        qs, nq, space, rvl = self.queries, len(self.queries), self.space, self.rvl
        flt = {"category": self.category}
        for filtered in (False, True):

            def ours(i: int, filtered: bool = filtered) -> object:
                return space.search(qs[i % nq], bc.K, filter=flt if filtered else None)

            def theirs(i: int, filtered: bool = filtered) -> object:
                return rvl.query(self._vq(qs[i % nq], filtered=filtered))

            t = bc.measure({"rc": ours, "rvl": theirs}, self.calls)
            tag = f" {{category: {self.category}}}" if filtered else ""
            text = f", filter_expression=Tag('category') == {self.category!r}" if filtered else ""
            call = f"VectorQuery(num_results={bc.K}, ef_runtime={EF}, return_fields={RVL_RETURN}"
            self._row(f"search k={bc.K}{tag}", f"index.query({call}{text}))", t["rc"], t["rvl"])

    def batch(self) -> None:
        """search_many(100 queries) vs SearchIndex.batch_query (batch_size 100 and default)."""
        qs = self.queries
        qb = [qs[j : j + BATCH] for j in range(0, len(qs) - BATCH + 1, BATCH)]
        nb, space, rvl = len(qb), self.space, self.rvl

        def ours(i: int) -> object:
            return space.search_many(qb[i % nb], bc.K)

        def full(i: int) -> object:
            return rvl.batch_query([self._vq(q) for q in qb[i % nb]], batch_size=BATCH)

        def default(i: int) -> object:
            return rvl.batch_query([self._vq(q) for q in qb[i % nb]])

        t = bc.measure({"rc": ours, "full": full, "default": default}, self.calls, block=10)
        op = f"search_many({BATCH}) k={bc.K}"
        call = f"index.batch_query({BATCH} VectorQuery"
        self._row(op, f"{call}, batch_size={BATCH})", t["rc"], t["full"])
        default_text = f"{call}) at its default batch_size=10 (10 pipelines)"
        self._row(f"{op} vs default batch", default_text, t["rc"], t["default"])

    def check_overlap(self) -> None:
        """Mean share of common top-10 ids (rediscache vs RedisVL) over the first queries."""
        qs = self.queries[:OVERLAP_QUERIES]
        flt = {"category": self.category}
        for name, filtered in (("knn", False), ("filtered knn", True)):
            shared = 0
            for q in qs:
                ours = {h.key for h in self.space.search(q, bc.K, filter=flt if filtered else None)}
                docs = self.rvl.query(self._vq(q, filtered=filtered))
                if filtered and any(doc["category"] != self.category for doc in docs):
                    raise SystemExit("RedisVL's filtered query returned another category")
                shared += len(ours & set(ids_of(docs)))
            self.overlap[name] = shared / (bc.K * len(qs))
        many = self.space.search_many(qs, bc.K)
        batch = self.rvl.batch_query([self._vq(q) for q in qs], batch_size=BATCH)
        shared = sum(len({h.key for h in a} & set(ids_of(b))) for a, b in zip(many, batch))
        self.overlap["batch"] = shared / (bc.K * len(qs))


# ---------------------------------------------------------------- report


def report(run: Run, n: int, calls: int, machine: str) -> str:
    """The latency table, the load rates, the memory table and the overlap, as text."""
    head = ("op", "rediscache median us", "p99", "RedisVL median us", "p99", "ratio rc/rvl")
    cols = ("rc_median", "rc_p99", "raw_median", "raw_p99")
    body = [
        (r.op, *(f"{getattr(r, c) or 0:,.1f}" for c in cols), f"{r.ratio:.3f}") for r in run.rows
    ]
    ls, mem, per = run.load_stats, run.memory, 10_000 / n / MB
    lines = [
        f"rediscache vs RedisVL, {n} vectors, {calls} calls per side; {machine}",
        "ratio = rediscache median / RedisVL median (below 1: rediscache faster)",
        "",
        bc.grid(head, body),
        "",
        "RedisVL calls:",
        *(f"  {r.op}: {r.baseline}" for r in run.rows),
        "",
        f"load: rediscache {ls['rediscache_rows_per_s']:,.0f} rows/s ({ls['rediscache_s']:.1f}s)"
        f", RedisVL {ls['redisvl_rows_per_s']:,.0f} rows/s ({ls['redisvl_s']:.1f}s), ratio "
        f"rc/rvl {ls['ratio_rc_over_rvl']:.3f} (throughput, higher is better)",
        f"  {ls['how']}",
        "",
        f"memory per 10k vectors, MB (2^20 bytes), {n} vectors on each side:",
    ]
    mem_head = ["side", "used_memory +load", "of it Lua VM", "+load w/o Lua", "-drop"]
    mem_head += ["FT.INFO vector_index_sz_mb", "total_index_memory_sz_mb"]
    mem_body = []
    for side, label in (("rediscache", "rediscache"), ("redisvl", "RedisVL")):
        m = mem[side]
        grown, lua = m["used_memory_load_delta"], m["lua_vm_load_delta"]
        cells = (grown, lua, grown - lua, m.get("drop_freed", 0))
        cells += tuple(m[f] * MB for f in INDEX_FIELDS[1:])
        mem_body.append((label, *(f"{v * per:,.2f}" for v in cells)))
    lua_mb = mem["rediscache"]["lua_vm_load_delta"] / MB
    lines += [
        bc.grid(mem_head, mem_body),
        "  +load: growth of INFO used_memory over each side's load (rediscache loaded first, "
        "both indexes created empty beforehand, nothing else on the server"
        " unless --url); -drop: used_memory freed by dropping that side after all the "
        "measurements (a cross-check)",
        f"  Lua VM: growth of used_memory_vm_eval, which used_memory includes: the write "
        f"script's working set ({lua_mb:.1f} MB here), a fixed cost however many rows, so "
        "scaling it per 10k overstates it at small n; dropping the space does not free it",
        "  FT.INFO: the index structures only (the hashes are not in them); on RediSearch 2.10 "
        "total_index_memory_sz_mb leaves out the vector index",
        "",
        f"overlap of top-{bc.K} ids (rediscache vs RedisVL), first {OVERLAP_QUERIES} queries: "
        + ", ".join(f"{k} {v:.3f}" for k, v in run.overlap.items()),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Load both sides, measure, print the tables, optionally write JSON."""
    args = bc.parse_args(argv, "rediscache vs RedisVL on the same server", calls=1000)
    data = bc.load_data(args)
    n = len(data.keys)

    with bc.open_hub(args.url) as (hub, where):
        versions = hub.server_versions() | {"redis-py": redis.__version__, "numpy": np.__version__}
        versions |= {
            "redisvl": importlib.metadata.version("redisvl"),
            "python": platform.python_version(),
        }
        versions["rediscache"] = rediscache.__version__
        transport = (
            "unix socket" if hub.client.connection_pool.connection_kwargs.get("path") else "tcp"
        )
        machine = (
            f"{len(os.sched_getaffinity(0))} usable cores, {os.cpu_count()} online; client and "
            f"server on the same box over {transport} ({where})"
        )
        bc.say(f"machine: {machine}")
        bc.say("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
        run = Run(hub, data, args.calls)
        try:
            bc.say(f"loading {n} rows into each side ...")
            run.load()
            gc.collect()
            gc.freeze()
            for step in (run.fetch, run.search, run.batch, run.check_overlap):
                bc.say(f"{step.__name__} ...")
                step()
            run.drop_measured()
        finally:
            run.drop()

    bc.say()
    bc.say(report(run, n, args.calls, machine))
    if args.json is not None:
        payload = {"data": data.source, "calls": args.calls, "machine": machine, "n": n}
        payload |= {"versions": versions, "rows": [asdict(r) for r in run.rows]}
        payload |= {"load": run.load_stats, "memory": run.memory, "overlap": run.overlap}
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        bc.say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
