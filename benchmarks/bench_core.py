"""Benchmark rediscache's core operations against raw redis-py on the same server (run by hand).

    PYTHONPATH=. python benchmarks/bench_core.py [--url URL] [--data DIR] [--n N] [--calls C]
                                                 [--json PATH]

Each rediscache operation is timed beside the raw redis-py commands doing the same work, in the
same run, over the same connection (``hub.client``, RESP2), so the ratios compare like with like.
The sides run in alternating blocks of calls (the order rotating each block): this box has two
shared, noisy cores, and noise then falls on every side alike instead of on whichever ran last.
Medians and p99 are per call, in microseconds.

Without ``--url`` a private embedded server is started in a temporary directory and stopped at
the end. Data: the 20k real embeddings of ``../shared/data/dev`` (read at run time, the ``text``
field never used), or the sample bundled in the package when that directory is absent. The
spaces ``bench`` and ``bench_raw`` are dropped before and after. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import inspect
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt
import redis

import rediscache
from rediscache import server
from rediscache.demo import load_sample
from rediscache.keys import META_FIELD, VECTOR_FIELD
from rediscache.query import DISTANCE_FIELD

SPACE = "bench"
RAW_SPACE = "bench_raw"
DIM = 384
FIELDS = {"category": "tag", "month": "numeric"}
#: Calls per block when sides alternate; batch operations use smaller blocks.
BLOCK = 100
#: Rows per write in the put_many comparison (the library's own chunk size).
CHUNK = 1000
#: Rows written by each side in the put_many comparison: HNSW inserts run at ~3k/s.
PUT_ROWS = 5000
#: Rows both sides write untimed first: whoever writes first into a fresh server and an empty
#: index pays for allocations and page faults that the other side then does not.
WARM_ROWS = 200
#: Queries used for recall@10.
RECALL_QUERIES = 200
K = 10
FILTER_CATEGORY = "web"

Call = Callable[[int], object]
Vectors = npt.NDArray[np.float32]


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class Dataset:
    """Rows to load (key = row id as str), queries and, when known, the exact neighbours."""

    source: str
    keys: list[str]
    vectors: Vectors
    metadata: list[dict[str, Any]]
    queries: Vectors
    #: Exact top-100 row ids per query over exactly the loaded rows, or None (then computed).
    gt_ids: npt.NDArray[np.int32] | None


def load_dev(path: Path, n: int) -> Dataset:
    """The first ``n`` rows of the dev set (metadata: category, month, name; never text)."""
    all_vectors = np.load(path / "vectors.npy", mmap_mode="r")
    total = int(all_vectors.shape[0])
    n = min(n, total)
    vectors = np.ascontiguousarray(all_vectors[:n], dtype=np.float32)
    with (path / "meta.jsonl").open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in itertools.islice(fh, n)]
    metadata = [{"category": r["category"], "month": r["month"], "name": r["name"]} for r in rows]
    queries = np.ascontiguousarray(np.load(path / "queries.npy"), dtype=np.float32)
    # gt_ids ranks the whole corpus; it is the truth for a prefix of it only when n == total.
    gt = np.load(path / "gt_ids.npy") if n == total else None
    return Dataset(
        source=f"{path} ({n} of {total} rows)",
        keys=[str(i) for i in range(n)],
        vectors=vectors,
        metadata=metadata,
        queries=queries,
        gt_ids=gt,
    )


def load_bundled(n: int) -> Dataset:
    """The package's sample (2,000 rows); its own first 500 vectors serve as queries."""
    sample = load_sample()
    n = min(n, len(sample.ids))
    vectors = np.ascontiguousarray(sample.vectors[:n], dtype=np.float32)
    metadata = [
        {"category": c, "month": int(m), "name": name}
        for c, m, name in zip(sample.categories[:n], sample.months[:n], sample.names[:n])
    ]
    return Dataset(
        source=f"bundled sample rediscache/data/sample.npz ({n} rows)",
        keys=[str(int(i)) for i in sample.ids[:n]],
        vectors=vectors,
        metadata=metadata,
        queries=np.ascontiguousarray(sample.vectors[:500], dtype=np.float32),
        gt_ids=None,
    )


def exact_top(data: Dataset, queries: Vectors, k: int) -> list[list[str]]:
    """Keys of the exact ``k`` nearest loaded rows by cosine, for each query (brute force)."""
    base = data.vectors / np.linalg.norm(data.vectors, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sims = q @ base.T
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return [[data.keys[int(r)] for r in row] for row in top]


# ---------------------------------------------------------------- timing


@dataclass(frozen=True)
class Timing:
    """Per-call latency of one side, in microseconds; ``blocks``: the median of each block
    of calls in the order they ran (:func:`measure`), for paired ratios."""

    median_us: float
    p99_us: float
    calls: int
    blocks: tuple[float, ...] = ()


def timing(samples_ns: list[int], block: int | None = None) -> Timing:
    """The median and p99 of per-call latencies given in nanoseconds (and the median of
    each consecutive ``block`` of them)."""
    us = np.asarray(samples_ns, dtype=np.float64) / 1e3
    blocks: tuple[float, ...] = ()
    if block:
        blocks = tuple(float(np.median(us[i : i + block])) for i in range(0, len(us), block))
    return Timing(float(np.median(us)), float(np.percentile(us, 99)), len(samples_ns), blocks)


def paired_ratio(ours: Timing, theirs: Timing) -> float:
    """ours / theirs: the median over blocks of the ratio of the two sides' block medians
    when both were measured in the same blocks (each pair ran back to back, so a machine
    that slows down or speeds up between blocks moves both sides of a pair alike: on the
    2-core dev box, with half of its CPU time stolen by the host at times, the ratio of the
    overall medians of one run swung by 10% where the paired ratio moved a few percent);
    else the ratio of the medians."""
    if len(ours.blocks) == len(theirs.blocks) >= 6:
        return float(np.median(np.asarray(ours.blocks) / np.asarray(theirs.blocks)))
    return ours.median_us / theirs.median_us


def measure(
    sides: dict[str, Call], calls: int, *, block: int = BLOCK, warmup: int = 20
) -> dict[str, Timing]:
    """Time ``calls`` calls of each side (call ``i`` gets ``i``), alternating in blocks."""
    names = list(sides)
    for name in names:
        for i in range(min(warmup, calls)):
            sides[name](i)
    samples: dict[str, list[int]] = {name: [] for name in names}
    clock = time.perf_counter_ns
    for b, start in enumerate(range(0, calls, block)):
        stop = min(start + block, calls)
        shift = b % len(names)
        for name in names[shift:] + names[:shift]:
            fn, out = sides[name], samples[name]
            for i in range(start, stop):
                t0 = clock()
                fn(i)
                out.append(clock() - t0)
    return {name: timing(s, block) for name, s in samples.items()}


async def measure_async(
    sides: dict[str, Callable[[int], Any]], calls: int, block: int = BLOCK
) -> dict[str, Timing]:
    """:func:`measure` inside a running event loop, as an asyncio application calls: each
    side's call ``i`` returns an awaitable, awaited within the timing, or a plain value (a
    sync side run in the same loop, blocking it, as the loop's own code would); 20 calls of
    each side to warm up."""
    for fn in sides.values():
        for i in range(20):
            result = fn(i)
            if inspect.isawaitable(result):
                await result
    samples: dict[str, list[int]] = {name: [] for name in sides}
    names = list(sides)
    clock = time.perf_counter_ns
    for b, start in enumerate(range(0, calls, block)):
        shift = b % len(names)
        for name in names[shift:] + names[:shift]:
            fn, out = sides[name], samples[name]
            for i in range(start, min(start + block, calls)):
                t0 = clock()
                result = fn(i)
                if inspect.isawaitable(result):
                    await result
                out.append(clock() - t0)
    return {name: timing(s, block) for name, s in samples.items()}


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Row:
    """One line of the table: rediscache vs its baseline."""

    op: str
    baseline: str
    unit: str
    rc_median: float
    rc_p99: float | None
    raw_median: float
    raw_p99: float | None
    ratio: float
    target: str | None
    met: bool | None


def latency_row(
    op: str, baseline: str, ours: Timing, theirs: Timing, limit: float | None = None
) -> Row:
    """A latency row: ratio = rediscache / baseline (:func:`paired_ratio`), target ``<=
    limit``."""
    ratio = paired_ratio(ours, theirs)
    return Row(
        op=op,
        baseline=baseline,
        unit="us",
        rc_median=ours.median_us,
        rc_p99=ours.p99_us,
        raw_median=theirs.median_us,
        raw_p99=theirs.p99_us,
        ratio=ratio,
        target=None if limit is None else f"<= {limit:.2f}",
        met=None if limit is None else ratio <= limit,
    )


@dataclass(frozen=True)
class RecallRow:
    """recall@10 and per-query latency of ``space.search`` at one ef."""

    ef: str
    recall: float
    median_us: float
    p99_us: float


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}/s" if unit == "vec/s" else f"{value:,.1f}"


def format_table(rows: Sequence[Row]) -> str:
    """The results as a plain-text table."""
    head = ("op", "rc median us", "p99 us", "raw median us", "p99 us", "ratio", "target", "met?")
    body = [
        (
            r.op,
            _num(r.rc_median, r.unit),
            _num(r.rc_p99, r.unit),
            _num(r.raw_median, r.unit),
            _num(r.raw_p99, r.unit),
            f"{r.ratio:.3f}",
            r.target or "-",
            "-" if r.met is None else ("yes" if r.met else "NO"),
        )
        for r in rows
    ]
    return grid(head, body)


def grid(head: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A plain-text table, first column left-aligned, the others right-aligned."""
    widths = [max(len(line[c]) for line in (head, *body)) for c in range(len(head))]

    def fmt(line: Sequence[str]) -> str:
        cells = [line[0].ljust(widths[0])]
        cells += [cell.rjust(w) for cell, w in zip(line[1:], widths[1:])]
        return " | ".join(cells)

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([fmt(head), rule, *(fmt(line) for line in body)])


def say(text: str = "") -> None:
    """Print and flush (the run takes minutes; progress should show as it happens)."""
    print(text, flush=True)


# ---------------------------------------------------------------- the benchmark


def _search_args(index: str, k: int, ef: int, prefilter: str = "*") -> tuple[list[Any], list[Any]]:
    """Raw FT.SEARCH arguments before and after the vector blob: the same query as
    rediscache's, returning the distance and the metadata as fields (``RETURN __dist meta``,
    as a redis-py user writes it; rediscache asks for ``RETURN meta WITHSORTKEYS``)."""
    q = f"{prefilter}=>[KNN {k} @{VECTOR_FIELD} $vec EF_RUNTIME {ef} AS {DISTANCE_FIELD}]"
    head: list[Any] = [index, q, "PARAMS", 2, "vec"]
    tail: list[Any] = [
        "SORTBY",
        DISTANCE_FIELD,
        "ASC",
        "LIMIT",
        0,
        k,
        "RETURN",
        2,
        DISTANCE_FIELD,
        META_FIELD,
        "DIALECT",
        2,
    ]
    return head, tail


def _reply_keys(reply: list[Any], doc_prefix: str) -> list[str]:
    return [bytes(d).decode()[len(doc_prefix) :] for d in reply[1::2]]


class Bench:
    """The loaded space, the raw client and the measurements."""

    def __init__(self, hub: rediscache.Hub, data: Dataset, calls: int) -> None:
        self.hub = hub
        self.data = data
        self.calls = calls
        self.client: redis.Redis = hub.client
        hub.drop_space(SPACE, missing_ok=True)
        hub.drop_space(RAW_SPACE, missing_ok=True)
        self.space = hub.create_space(SPACE, DIM, metric="cosine", algorithm="hnsw", fields=FIELDS)
        self.raw_space = hub.create_space(
            RAW_SPACE, DIM, metric="cosine", algorithm="hnsw", fields=FIELDS
        )
        # the raw baseline searches the live generation's own index; rediscache goes through
        # the alias that rollback() switches (docs/versions.md)
        self.index = self.space.live_keys.index
        self.ef = int(self.space.config.hnsw.get("EF_RUNTIME", 100))
        # A fixed shuffle: successive calls touch unrelated keys, the same ones on every side.
        order = np.random.default_rng(7).permutation(len(data.keys))
        self.keys = [data.keys[int(i)] for i in order]
        self.docs = [self.space.live_keys.doc(k) for k in self.keys]
        self.blobs = [q.astype("<f4").tobytes() for q in data.queries]
        self.rows: list[Row] = []
        self.notes: list[str] = []

    # ------------------------------------------------------------ writing

    def _put_ours(self, start: int, stop: int) -> None:
        d = self.data
        self.space.put_many(d.keys[start:stop], d.vectors[start:stop], d.metadata[start:stop])

    def _put_raw(self, start: int, stop: int) -> None:
        d = self.data
        doc = self.raw_space.live_keys.doc
        pipe = self.client.pipeline(transaction=False)
        for i in range(start, stop):
            meta = d.metadata[i]
            pipe.hset(
                doc(d.keys[i]),
                mapping={
                    VECTOR_FIELD: d.vectors[i].tobytes(),
                    META_FIELD: msgpack.packb(meta, use_bin_type=True),
                    "category": meta["category"],
                    "month": meta["month"],
                },
            )
        pipe.execute()

    def load(self) -> None:
        """put_many vs raw pipelined HSET on the first rows, then load the rest untimed."""
        n = len(self.data.keys)
        warm = min(WARM_ROWS, n // 10)
        m = min(n, warm + PUT_ROWS)
        timed = m - warm
        say(
            f"put_many: {timed} vectors into each of {SPACE!r} and {RAW_SPACE!r}, chunks of "
            f"{CHUNK} (after {warm} untimed warm-up rows each)"
        )
        spent: dict[str, list[float]] = {"ours": [], "raw": []}
        writers: dict[str, Callable[[int, int], None]] = {
            "ours": self._put_ours,
            "raw": self._put_raw,
        }
        self._put_ours(0, warm)
        self._put_raw(0, warm)
        for c, start in enumerate(range(warm, m, CHUNK)):
            stop = min(start + CHUNK, m)
            # Alternate who writes first: both indexes grow in step, neither always goes second.
            for side in ("ours", "raw") if c % 2 == 0 else ("raw", "ours"):
                t0 = time.perf_counter()
                writers[side](start, stop)
                spent[side].append(time.perf_counter() - t0)
        self._wait_indexed(self.raw_space, m)
        ours_rate, raw_rate = timed / sum(spent["ours"]), timed / sum(spent["raw"])
        # One pass, few chunks: the spread of per-chunk ratios shows how much noise is in it.
        per_chunk = " ".join(f"{r / o:.2f}" for o, r in zip(spent["ours"], spent["raw"]))
        self.notes.append(f"put_many throughput ratio per {CHUNK}-row chunk: {per_chunk}")
        ratio = ours_rate / raw_rate
        self.rows.append(
            Row(
                op=f"put_many ({timed} vec, vec/s)",
                baseline="pipelined HSET (transaction=False), same fields, same schema",
                unit="vec/s",
                rc_median=ours_rate,
                rc_p99=None,
                raw_median=raw_rate,
                raw_p99=None,
                ratio=ratio,
                target=">= 0.90",
                met=ratio >= 0.90,
            )
        )
        if m < n:
            t0 = time.perf_counter()
            self._put_ours(m, n)
            dt = time.perf_counter() - t0
            rate = (n - m) / dt
            say(f"loaded the other {n - m} vectors with put_many in {dt:.1f}s ({rate:,.0f}/s)")
        self._wait_indexed(self.space, n)

    def _wait_indexed(self, space: rediscache.Space, expected: int) -> None:
        deadline = time.monotonic() + 600
        while True:
            info = space.info()
            if not info.indexing and info.count >= expected:
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"{space.name}: {info.count} of {expected} indexed after 600s")
            time.sleep(0.2)

    # ------------------------------------------------------------ reading

    def get(self) -> None:
        """space.get vs HGET returning bytes."""
        space, client, keys, docs, n = self.space, self.client, self.keys, self.docs, len(self.keys)
        vec = space.get(keys[0])
        raw = client.hget(docs[0], VECTOR_FIELD)
        if vec is None or not np.array_equal(vec, np.frombuffer(raw, dtype="<f4")):
            raise SystemExit("get: rediscache and raw HGET disagree")

        def ours(i: int) -> object:
            return space.get(keys[i % n])

        def theirs(i: int) -> object:
            return client.hget(docs[i % n], VECTOR_FIELD)

        t = measure({"ours": ours, "raw": theirs}, self.calls)
        self.rows.append(latency_row("get", "HGET <doc> vec (bytes)", t["ours"], t["raw"], 1.15))

    def get_many(self) -> None:
        """get_many(100) vs a pipeline of 100 HGET, and vs RedisVL's fetch per key."""
        space, client = self.space, self.client
        size = 100
        batches = [self.keys[j : j + size] for j in range(0, len(self.keys) - size + 1, size)]
        doc_batches = [self.docs[j : j + size] for j in range(0, len(self.docs) - size + 1, size)]
        nb = len(batches)

        def ours(i: int) -> object:
            return space.get_many(batches[i % nb])

        def theirs(i: int) -> object:
            pipe = client.pipeline(transaction=False)
            for d in doc_batches[i % nb]:
                pipe.hget(d, VECTOR_FIELD)
            return np.frombuffer(b"".join(pipe.execute()), dtype="<f4").reshape(-1, DIM)

        def hmget(i: int) -> object:
            pipe = client.pipeline(transaction=False)
            for d in doc_batches[i % nb]:
                pipe.hmget(d, VECTOR_FIELD, META_FIELD)
            replies = pipe.execute()
            vecs = np.frombuffer(b"".join(r[0] for r in replies), dtype="<f4").reshape(-1, DIM)
            return vecs, [msgpack.unpackb(r[1]) for r in replies]

        if not np.array_equal(np.asarray(ours(0)), np.asarray(theirs(0))):
            raise SystemExit("get_many: rediscache and the raw pipeline disagree")
        fetch, fetch_label = self._fetch_per_key(batches)
        sides = {"ours": ours, "raw": theirs, "hmget": hmget, "fetch": fetch}
        t = measure(sides, self.calls, block=10)
        self.rows.append(
            latency_row(
                "get_many(100)",
                "pipeline of 100 HGET (transaction=False) + np.frombuffer(b''.join)",
                t["ours"],
                t["raw"],
                1.3,
            )
        )
        self.rows.append(
            latency_row(
                "get_many(100) vs HMGET vec+meta",
                "pipeline of 100 HMGET vec meta + np.frombuffer + msgpack (fetches metadata too)",
                t["ours"],
                t["hmget"],
            )
        )
        self.rows.append(
            latency_row(
                "get_many(100) vs fetch-per-key",
                fetch_label,
                t["ours"],
                t["fetch"],
                0.1,
            )
        )

    def _fetch_per_key(self, batches: list[list[str]]) -> tuple[Call, str]:
        """RedisVL's ``SearchIndex.fetch`` for each key, or 100 sequential HGETALL."""
        nb = len(batches)
        prefix = self.space.live_keys.doc_prefix
        try:
            # Optional, and untyped: imported by name so the script runs without it.
            search_index: Any = importlib.import_module("redisvl.index").SearchIndex
        except ImportError:
            search_index = None
        if search_index is not None:
            schema = {
                "index": {
                    "name": self.index,
                    "prefix": prefix,
                    "key_separator": "",
                    "storage_type": "hash",
                },
                "fields": [
                    {"name": "category", "type": "tag"},
                    {"name": "month", "type": "numeric"},
                    {
                        "name": VECTOR_FIELD,
                        "type": "vector",
                        "attrs": {
                            "dims": DIM,
                            "algorithm": "hnsw",
                            "distance_metric": "cosine",
                            "datatype": "float32",
                        },
                    },
                ],
            }
            rvl = search_index.from_dict(schema, redis_client=self.client)
            probe = batches[0][0]
            if rvl.key(probe) != self.space.live_keys.doc(probe) or not rvl.fetch(probe):
                raise SystemExit("RedisVL SearchIndex does not address the bench documents")

            def fetch(i: int) -> object:
                return [rvl.fetch(k) for k in batches[i % nb]]

            return fetch, "RedisVL SearchIndex.fetch x100 (one pipelined HGETALL each)"
        self.notes.append(
            "redisvl is not installed: fetch-per-key is EMULATED as 100 sequential HGETALL "
            "(what RedisVL's SearchIndex.fetch sends per id); pip install redisvl for the real one"
        )
        client = self.client

        def emulated(i: int) -> object:
            return [client.hgetall(prefix + k) for k in batches[i % nb]]

        return emulated, "EMULATED fetch-per-key: 100 sequential HGETALL (RedisVL's pattern)"

    # ------------------------------------------------------------ search

    def search(self) -> None:
        """search k=10, unfiltered and with a tag filter, vs the same raw FT.SEARCH."""
        space, client, blobs = self.space, self.client, self.blobs
        queries, nq = self.data.queries, len(self.blobs)
        head, tail = _search_args(self.index, K, self.ef)
        self._check_same_hits("search", space.search(queries[0], K), client, head, blobs[0], tail)

        def ours(i: int) -> object:
            return space.search(queries[i % nq], K)

        def theirs(i: int) -> object:
            return client.execute_command("FT.SEARCH", *head, blobs[i % nq], *tail)

        t = measure({"ours": ours, "raw": theirs}, self.calls)
        self.rows.append(
            latency_row("search k=10", "FT.SEARCH KNN 10 (same query)", t["ours"], t["raw"], 1.2)
        )

        category = FILTER_CATEGORY
        if category not in {m["category"] for m in self.data.metadata}:
            category = max(
                {m["category"] for m in self.data.metadata},
                key=[m["category"] for m in self.data.metadata].count,
            )
        flt = {"category": category}
        fhead, ftail = _search_args(self.index, K, self.ef, f"(@category:{{{category}}})")
        first = space.search(queries[0], K, filter=flt)
        self._check_same_hits("filtered search", first, client, fhead, blobs[0], ftail)

        def ours_f(i: int) -> object:
            return space.search(queries[i % nq], K, filter=flt)

        def theirs_f(i: int) -> object:
            return client.execute_command("FT.SEARCH", *fhead, blobs[i % nq], *ftail)

        t = measure({"ours": ours_f, "raw": theirs_f}, self.calls)
        self.rows.append(
            latency_row(
                f"search k=10 {{category: {category}}}",
                f"FT.SEARCH (@category:{{{category}}})=>[KNN 10 ...]",
                t["ours"],
                t["raw"],
            )
        )

    def _check_same_hits(
        self,
        what: str,
        hits: list[rediscache.Hit],
        client: redis.Redis,
        head: list[Any],
        blob: bytes,
        tail: list[Any],
    ) -> None:
        reply = client.execute_command("FT.SEARCH", *head, blob, *tail)
        raw_keys = _reply_keys(reply, self.space.live_keys.doc_prefix)
        if [h.key for h in hits] != raw_keys:
            self.notes.append(f"{what}: rediscache and raw FT.SEARCH returned different keys")

    def search_many(self) -> None:
        """search_many(100 queries) vs a pipeline of 100 FT.SEARCH."""
        space, client = self.space, self.client
        size = 100
        queries = self.data.queries
        nq = len(queries)
        qb = [queries[j : j + size] for j in range(0, nq - size + 1, size)]
        bb = [self.blobs[j : j + size] for j in range(0, nq - size + 1, size)]
        nb = len(qb)
        head, tail = _search_args(self.index, K, self.ef)

        def ours(i: int) -> object:
            return space.search_many(qb[i % nb], K)

        def theirs(i: int) -> object:
            pipe = client.pipeline(transaction=False)
            for blob in bb[i % nb]:
                pipe.execute_command("FT.SEARCH", *head, blob, *tail)
            return pipe.execute()

        t = measure({"ours": ours, "raw": theirs}, self.calls, block=10)
        self.rows.append(
            latency_row(
                "search_many(100)",
                "pipeline of 100 FT.SEARCH (transaction=False)",
                t["ours"],
                t["raw"],
            )
        )

    def similar(self) -> None:
        """similar(key, 10) vs HGET + FT.SEARCH k=11 (its two round trips done raw)."""
        space, client, keys, docs, n = self.space, self.client, self.keys, self.docs, len(self.keys)
        head, tail = _search_args(self.index, K + 1, self.ef)

        def ours(i: int) -> object:
            return space.similar(keys[i % n], K)

        def theirs(i: int) -> object:
            blob = client.hget(docs[i % n], VECTOR_FIELD)
            return client.execute_command("FT.SEARCH", *head, blob, *tail)

        t = measure({"ours": ours, "raw": theirs}, self.calls)
        self.rows.append(
            latency_row("similar k=10", "HGET + FT.SEARCH KNN 11", t["ours"], t["raw"])
        )

    def average(self) -> None:
        """average(10) and average(100) (one Lua read, atomic) vs a pipeline of HGET + numpy."""
        for size, limit, block in ((10, 1.5, BLOCK), (100, None, 10)):
            self._average(size, limit, block)

    def _average(self, size: int, limit: float | None, block: int) -> None:
        space, client = self.space, self.client
        batches = [self.keys[j : j + size] for j in range(0, len(self.keys) - size + 1, size)]
        doc_batches = [self.docs[j : j + size] for j in range(0, len(self.docs) - size + 1, size)]
        nb = len(batches)

        def ours(i: int) -> object:
            return space.average(batches[i % nb])

        def theirs(i: int) -> object:
            pipe = client.pipeline(transaction=False)
            for d in doc_batches[i % nb]:
                pipe.hget(d, VECTOR_FIELD)
            rows = np.frombuffer(b"".join(pipe.execute()), dtype="<f4").reshape(-1, DIM)
            return rows.mean(axis=0)

        if not np.allclose(np.asarray(ours(0)), np.asarray(theirs(0)), atol=1e-6):
            raise SystemExit(f"average({size}): rediscache and numpy disagree")
        t = measure({"ours": ours, "raw": theirs}, self.calls, block=block)
        self.rows.append(
            latency_row(
                f"average({size})",
                f"pipeline of {size} HGET + numpy mean (client side, not atomic)",
                t["ours"],
                t["raw"],
                limit,
            )
        )

    # ------------------------------------------------------------ recall

    def recall(self) -> tuple[list[RecallRow], str]:
        """recall@10 of space.search on the first queries, at the default ef and 10, 50, 200."""
        nq = min(RECALL_QUERIES, len(self.data.queries))
        queries = self.data.queries[:nq]
        if self.data.gt_ids is not None:
            truth = [[str(int(r)) for r in row[:K]] for row in self.data.gt_ids[:nq]]
            how = "gt_ids.npy"
        else:
            truth = exact_top(self.data, queries, K)
            how = "brute force over the loaded rows"
        out: list[RecallRow] = []
        clock = time.perf_counter_ns
        for ef in (None, 10, 50, 200):
            found = 0
            lat: list[int] = []
            for q, true_keys in zip(queries, truth):
                t0 = clock()
                hits = self.space.search(q, K, ef=ef)
                lat.append(clock() - t0)
                found += len({h.key for h in hits} & set(true_keys))
            t = timing(lat)
            label = f"default ({self.ef})" if ef is None else str(ef)
            out.append(RecallRow(label, found / (nq * K), t.median_us, t.p99_us))
        return out, f"{nq} queries, truth from {how}"


# ---------------------------------------------------------------- main


@contextmanager
def open_hub(url: str | None) -> Iterator[tuple[rediscache.Hub, str]]:
    """A hub on ``url``, or on a private embedded server started (and stopped) here."""
    if url is not None:
        with rediscache.connect(url) as hub:
            yield hub, "server at --url"
        return
    tmp = Path(tempfile.mkdtemp(prefix="rc-bench-"))
    try:
        server.start(server.ServerConfig(data_dir=tmp))
        try:
            with rediscache.connect(data_dir=tmp) as hub:
                yield hub, f"private embedded server in {tmp}"
        finally:
            server.stop(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def parse_args(
    argv: Sequence[str] | None,
    description: str = "rediscache vs raw redis-py benchmarks",
    calls: int = 2000,
) -> argparse.Namespace:
    """Command-line options shared by bench_core and bench_redisvl."""
    here = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--url", help="redis:// URL (default: a private embedded server)")
    p.add_argument(
        "--data",
        type=Path,
        default=here.parent / "shared" / "data" / "dev",
        help="dev data directory (default: <repo>/../shared/data/dev; else the bundled sample)",
    )
    p.add_argument("--n", type=int, default=20000, help="vectors to load (default 20000)")
    p.add_argument(
        "--calls", type=int, default=calls, help=f"calls per measured op (default {calls})"
    )
    p.add_argument("--json", type=Path, help="also write the results to this file")
    args = p.parse_args(argv)
    if args.n < 500:
        p.error("--n must be at least 500")
    if args.calls < 10:
        p.error("--calls must be at least 10")
    return args


def load_data(args: argparse.Namespace) -> Dataset:
    """The dev data of ``--data``, or the bundled sample when it is absent."""
    if (args.data / "vectors.npy").is_file():
        data = load_dev(args.data, args.n)
    else:
        say(f"{args.data} not found: using the bundled sample instead (2,000 rows at most)")
        data = load_bundled(args.n)
    say(f"data: {data.source}")
    return data


def main(argv: Sequence[str] | None = None) -> int:
    """Run every measurement, print the table, optionally write JSON."""
    args = parse_args(argv)
    data = load_data(args)

    with open_hub(args.url) as (hub, where):
        versions = hub.server_versions()
        kind = hub.client.connection_pool.connection_kwargs
        transport = "unix socket" if kind.get("path") else "tcp"
        cores = len(os.sched_getaffinity(0))
        caveat = (
            f"machine: {cores} usable cores (nproc), {os.cpu_count()} online; client and server "
            f"on the same box over {transport} ({where}); Redis {versions['redis']}, "
            f"search {versions['search']}; redis-py {redis.__version__}, Python "
            f"{sys.version.split()[0]}"
        )
        say(caveat)
        bench = Bench(hub, data, args.calls)
        try:
            bench.load()
            # The loaded data are long-lived: keep the cyclic GC from rescanning them each pass.
            gc.collect()
            gc.freeze()
            for name in ("get", "get_many", "search", "search_many", "similar", "average"):
                say(f"measuring {name} ({args.calls} calls per side) ...")
                getattr(bench, name)()
            say("measuring recall@10 ...")
            recall, recall_how = bench.recall()
        finally:
            hub.drop_space(SPACE, missing_ok=True)
            hub.drop_space(RAW_SPACE, missing_ok=True)

    say()
    say(f"rediscache vs raw redis-py, {args.calls} calls per side, {len(data.keys)} vectors")
    say(caveat)
    say("ratio = rediscache / baseline (medians); put_many: throughput ratio")
    say()
    say(format_table(bench.rows))
    say()
    say("baselines:")
    for r in bench.rows:
        say(f"  {r.op}: {r.baseline}")
    for note in bench.notes:
        say(f"NOTE: {note}")
    say()
    say(f"recall@10 of space.search ({recall_how}):")
    for rr in recall:
        say(
            f"  ef {rr.ef:>13}: recall {rr.recall:.3f}  median {rr.median_us:.0f} us  "
            f"p99 {rr.p99_us:.0f} us"
        )
    missed = [r.op for r in bench.rows if r.met is False]
    say()
    say("all targets met" if not missed else f"targets missed: {', '.join(missed)}")

    if args.json is not None:
        payload = {
            "data": data.source,
            "n": len(data.keys),
            "calls": args.calls,
            "machine": caveat,
            "versions": versions,
            "rows": [asdict(r) for r in bench.rows],
            "recall": {"how": recall_how, "rows": [asdict(r) for r in recall]},
            "notes": bench.notes,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
