"""The hot operations against raw redis-py, over unix socket and TCP, in a few minutes (by hand).

    PYTHONPATH=. python benchmarks/bench_quick.py [--n 5000] [--calls 2000] [--rounds 3]
        [--transports unix,tcp] [--against docs/benchmarks.json] [--json PATH]

Measures, on one server and in one run, each side alternating in blocks of calls with the
raw redis-py commands doing the same work (bench_core's ``measure``): ``get`` against
``HGET``, ``get_many(100)`` against a pipeline of 100 ``HGET``, ``search`` k=10 with and
without metadata against ``FT.SEARCH`` returning the same fields (without metadata also
against ``FT.SEARCH NOCONTENT WITHSORTKEYS``, the form rediscache sends: no target, the
library's own cost over its command; and a bare socket sending that form prepacked, its
reply read by hiredis with no library: the floor under any Python client), ``search_many(10)``
against the same ten ``FT.SEARCH`` in a pipeline, the asyncio ``get`` and ``search``
against redis-py's asyncio ``HGET`` and ``FT.SEARCH``, and ``put_many`` into a FLAT space
against pipelined ``HSET`` (throughput). Metrics are on, as shipped. Then it prints each
ratio beside the one of the previous report (``--against``: the JSON ``run_all.py --docs``
writes beside docs/benchmarks.md, or one this script wrote) and flags a ratio more than 5%
worse: run it before landing a change to a hot path. The header records the commit, the
date, the machine and each transport.

Each ratio is paired (bench_core's ``paired_ratio``): the median over blocks of calls of
ours / raw, each pair of blocks measured back to back, so the host slowing down or speeding
up between blocks moves both sides alike; put_many's is the median over chunks of raw time /
our time. The whole measurement runs ``--rounds`` times (the transports alternating): the
ratio shown is the median of the rounds' ratios, with each round's (one round's ratio for
search k=10 moved between 0.93 and 1.02 in runs of one day on the 2-core dev box), the
medians and p99s the median of the rounds' (each over all calls of its round). Each
latency row also checks the p99 bound of issue 19, rediscache's p99 <= raw p99 x the ratio
x 1.10, in every round ("p99 ok": the rounds that met it).

Data: the first ``--n`` dev embeddings (``../shared/data/dev``) or the bundled sample. A
private embedded server is started in a temporary directory and stopped at the end. About a
minute per round on the 2-core dev box. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import hiredis
import msgpack
import numpy as np
import redis
import redis.asyncio

import rediscache
from rediscache import server
from rediscache.keys import META_FIELD, VECTOR_FIELD

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import (
    Dataset,
    Row,
    format_table,
    latency_row,
    load_bundled,
    load_dev,
    measure,
    measure_async,
    say,
)

HERE = Path(__file__).resolve().parent
DIM = 384
K = 10
FIELDS = {"category": "tag", "month": "numeric"}
#: Rows each side writes in the put_many comparison, in chunks of CHUNK, ROUNDS times.
PUT_ROWS = 4000
CHUNK = 1000
ROUNDS = 4
#: A ratio this much worse than the previous report's is flagged.
WORSE = 1.05
#: The p99 bound of a latency row: rediscache's p99 <= raw p99 x ratio x P99_SLACK.
P99_SLACK = 1.10


def machine() -> dict[str, Any]:
    """Where the numbers come from: the commit of the rediscache measured, the date, cores,
    CPU, Python, redis-py."""
    source = Path(rediscache.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        commit += "+changes" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "commit": commit,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": cpu,
        "python": sys.version.split()[0],
        "redis_py": redis.__version__,
    }


class BareSender:
    """One command of ``packed`` (RESP, made before the timing) per call, written on a
    socket of its own and its reply read by a hiredis Reader, with no client library and no
    result made: the floor under any Python client of the same command (``close`` after)."""

    def __init__(self, sock: socket.socket, packed: list[bytes]) -> None:
        self.sock, self.packed = sock, packed

    def __call__(self, i: int) -> object:
        sock = self.sock
        sock.sendall(self.packed[i % len(self.packed)])
        reader = hiredis.Reader()
        while True:
            reader.feed(sock.recv(1 << 16))
            reply = reader.gets()
            if reply is not False:
                return reply

    def close(self) -> None:
        self.sock.close()


def bare_sender(client: redis.Redis, commands: list[tuple[Any, ...]]) -> BareSender:
    """A :class:`BareSender` of ``commands`` to ``client``'s server, authenticated as it."""
    kw = client.connection_pool.connection_kwargs
    if kw.get("path"):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(kw["path"])
    else:
        sock = socket.create_connection((kw.get("host", "127.0.0.1"), kw["port"]))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(30.0)
    sender = BareSender(sock, [])
    if kw.get("password"):
        user = (kw["username"],) if kw.get("username") else ()
        sender.packed = [hiredis.pack_command(("AUTH", *user, kw["password"]))]
        if isinstance(sender(0), hiredis.ReplyError):
            raise RuntimeError("the bare socket could not authenticate")
    sender.packed = [hiredis.pack_command(tuple(map(_text, c))) for c in commands]
    return sender


def _text(arg: Any) -> Any:
    """An argument as hiredis packs it: bytes and str as they are, numbers as text."""
    return arg if isinstance(arg, bytes | str) else str(arg)


class Quick:
    """The spaces of one run and the measurements over one transport."""

    def __init__(self, hub: rediscache.Hub, data: Dataset, calls: int) -> None:
        self.hub, self.data, self.calls = hub, data, calls
        hub.drop_space("quick", missing_ok=True)
        self.space = hub.create_space("quick", DIM, fields=FIELDS)
        self.space.put_many(data.keys, data.vectors, data.metadata)
        while self.space.info().indexing:
            time.sleep(0.2)
        self.space.search(data.queries[0], K)  # the index is known complete from here on
        order = np.random.default_rng(7).permutation(len(data.keys))
        self.keys = [data.keys[int(i)] for i in order]
        self.blobs = [q.astype("<f4").tobytes() for q in data.queries]
        self.ef = int(self.space.config.hnsw.get("EF_RUNTIME", 100))

    def close(self) -> None:
        self.hub.drop_space("quick", missing_ok=True)

    def rows(self, hub: rediscache.Hub, url: str) -> list[Row]:
        """Every measurement over ``hub``'s connection (its client is the raw side)."""
        space = hub.space("quick")
        client: redis.Redis = hub.client
        keys, calls, n = self.keys, self.calls, len(self.keys)
        docs = [space.live_keys.doc(k) for k in keys]
        index = space.live_keys.index
        queries, blobs, nq = self.data.queries, self.blobs, len(self.blobs)
        rows: list[Row] = []

        t = measure(
            {"ours": lambda i: space.get(keys[i % n]),
             "raw": lambda i: client.hget(docs[i % n], VECTOR_FIELD)},
            calls * 2,
        )  # fmt: skip
        rows.append(latency_row("get", "HGET <doc> vec", t["ours"], t["raw"], 1.05))

        batches = [keys[j : j + 100] for j in range(0, n - 99, 100)]
        dbatches = [docs[j : j + 100] for j in range(0, n - 99, 100)]
        nb = len(batches)

        def pipeline(i: int) -> object:
            pipe = client.pipeline(transaction=False)
            for d in dbatches[i % nb]:
                pipe.hget(d, VECTOR_FIELD)
            return np.frombuffer(b"".join(pipe.execute()), dtype="<f4").reshape(-1, DIM)

        t = measure(
            {"ours": lambda i: space.get_many(batches[i % nb]), "raw": pipeline},
            calls // 4,
            block=10,
        )
        rows.append(latency_row("get_many(100)", "pipeline of 100 HGET", t["ours"], t["raw"], 0.6))

        def ft(fields: tuple[str, ...] | None) -> Callable[[int], object]:
            """Raw FT.SEARCH returning ``fields``; None: ``NOCONTENT WITHSORTKEYS``, the
            form rediscache sends for a search without metadata (distances as sort keys)."""
            query = f"*=>[KNN {K} @{VECTOR_FIELD} $vec EF_RUNTIME {self.ef} AS __dist]"
            shape = ("NOCONTENT", "WITHSORTKEYS") if fields is None else ("RETURN", len(fields),
                                                                           *fields)  # fmt: skip
            tail = ("SORTBY", "__dist", "ASC", "LIMIT", 0, K, *shape, "DIALECT", 2)

            def raw(i: int) -> object:
                return client.execute_command(
                    "FT.SEARCH", index, query, "PARAMS", 2, "vec", blobs[i % nq], *tail
                )

            return raw

        t = measure(
            {"ours": lambda i: space.search(queries[i % nq], K),
             "raw": ft(("__dist", META_FIELD))},
            calls,
        )  # fmt: skip
        rows.append(
            latency_row("search k=10", "FT.SEARCH RETURN __dist meta", t["ours"], t["raw"], 1.0)
        )
        query = f"*=>[KNN {K} @{VECTOR_FIELD} $vec EF_RUNTIME {self.ef} AS __dist]"
        same = ("SORTBY", "__dist", "ASC", "LIMIT", 0, K, "NOCONTENT", "WITHSORTKEYS",
                "DIALECT", 2)  # fmt: skip
        floor = bare_sender(client, [
            ("FT.SEARCH", index, query, "PARAMS", 2, "vec", b, *same) for b in blobs
        ])  # fmt: skip
        t = measure(
            {"ours": lambda i: space.search(queries[i % nq], K, with_metadata=False),
             "raw": ft(("__dist",)), "same form": ft(None), "floor": floor},
            calls,
        )  # fmt: skip
        floor.close()
        rows.append(
            latency_row(
                "search k=10, no metadata", "FT.SEARCH RETURN __dist", t["ours"], t["raw"], 0.95
            )
        )
        same_form = "FT.SEARCH NOCONTENT WITHSORTKEYS"
        rows.append(  # no target: the library's own cost over the command it sends
            latency_row("search k=10, no metadata, same form", same_form, t["ours"], t["same form"])
        )
        rows.append(  # no target: the least any Python client pays (the floor)
            latency_row("bare socket: same form, no library", "FT.SEARCH RETURN __dist",
                        t["floor"], t["raw"])
        )  # fmt: skip

        many = [queries[j : j + 10] for j in range(0, nq - 9, 10)]
        query = f"*=>[KNN {K} @{VECTOR_FIELD} $vec EF_RUNTIME {self.ef} AS __dist]"

        def raw_many(i: int) -> object:
            pipe = client.pipeline(transaction=False)
            for j in range(10):
                b = blobs[(i * 10 + j) % nq]
                pipe.execute_command(
                    "FT.SEARCH", index, query, "PARAMS", 2, "vec", b, "SORTBY", "__dist", "ASC",
                    "LIMIT", 0, K, "RETURN", 2, "__dist", META_FIELD, "DIALECT", 2,
                )  # fmt: skip
            return pipe.execute()

        t = measure(
            {"ours": lambda i: space.search_many(many[i % len(many)], K), "raw": raw_many},
            calls // 10,
            block=10,
        )
        rows.append(latency_row("search_many(10)", "pipeline of 10 FT.SEARCH", t["ours"], t["raw"]))
        rows += self._async_rows(url, docs, index)
        return rows

    def _async_rows(self, url: str, docs: list[str], index: str) -> list[Row]:
        """The asyncio get and search k=10 (with metadata) against redis.asyncio's HGET and
        FT.SEARCH returning the same fields, one task, one event loop, alternating blocks."""
        keys, n, calls = self.keys, len(self.keys), self.calls
        queries, blobs, nq = self.data.queries, self.blobs, len(self.blobs)
        query = f"*=>[KNN {K} @{VECTOR_FIELD} $vec EF_RUNTIME {self.ef} AS __dist]"
        tail = ("SORTBY", "__dist", "ASC", "LIMIT", 0, K, "RETURN", 2, "__dist", META_FIELD,
                "DIALECT", 2)  # fmt: skip

        async def run() -> list[Row]:
            ahub = await rediscache.connect_async(url=url)
            raw = redis.asyncio.Redis.from_url(url, protocol=2)
            try:
                aspace = await ahub.space("quick")
                rows = []
                for op, baseline, ours, theirs, count in (
                    ("asyncio get", "redis.asyncio HGET",
                     lambda i: aspace.get(keys[i % n]),
                     lambda i: raw.hget(docs[i % n], VECTOR_FIELD), calls * 2),
                    ("asyncio search k=10", "redis.asyncio FT.SEARCH RETURN __dist meta",
                     lambda i: aspace.search(queries[i % nq], K),
                     lambda i: raw.execute_command(
                         "FT.SEARCH", index, query, "PARAMS", 2, "vec", blobs[i % nq], *tail
                     ), calls),
                ):  # fmt: skip
                    t = await measure_async({"ours": ours, "raw": theirs}, count)
                    rows.append(latency_row(op, baseline, t["ours"], t["raw"]))
                return rows
            finally:
                await ahub.close()
                await raw.aclose()

        return asyncio.run(run())

    def put_flat(self, hub: rediscache.Hub) -> Row:
        """put_many into a FLAT space against pipelined HSET into an identical FLAT index."""
        d = self.data
        m = min(PUT_ROWS, len(d.keys))
        for name in ("quick_flat", "quick_flat_raw"):
            hub.drop_space(name, missing_ok=True)
        ours = hub.create_space("quick_flat", DIM, algorithm="flat", fields=FIELDS)
        raw = hub.create_space("quick_flat_raw", DIM, algorithm="flat", fields=FIELDS)
        client = hub.client
        doc = raw.live_keys.doc

        def put_ours(start: int, stop: int) -> None:
            ours.put_many(d.keys[start:stop], d.vectors[start:stop], d.metadata[start:stop])

        def put_raw(start: int, stop: int) -> None:
            pipe = client.pipeline(transaction=False)
            for i in range(start, stop):
                meta = d.metadata[i]
                pipe.hset(doc(d.keys[i]), mapping={
                    VECTOR_FIELD: d.vectors[i].tobytes(),
                    META_FIELD: msgpack.packb(meta, use_bin_type=True),
                    "category": meta["category"], "month": meta["month"],
                })  # fmt: skip
            pipe.execute()

        spent = {"ours": 0.0, "raw": 0.0}
        pairs: list[float] = []  # raw time / our time of each chunk, the two back to back
        writers = {"ours": put_ours, "raw": put_raw}
        try:
            for rnd in range(ROUNDS):  # each side rewrites the same rows: the second pass and
                for c, start in enumerate(range(0, m, CHUNK)):  # on overwrite, as updates do
                    stop = min(start + CHUNK, m)
                    took = {}
                    for side in ("ours", "raw") if (c + rnd) % 2 == 0 else ("raw", "ours"):
                        t0 = time.perf_counter()
                        writers[side](start, stop)
                        took[side] = time.perf_counter() - t0
                        spent[side] += took[side]
                    pairs.append(took["raw"] / took["ours"])
        finally:
            hub.drop_space("quick_flat", missing_ok=True)
            hub.drop_space("quick_flat_raw", missing_ok=True)
        rate = {k: ROUNDS * m / v for k, v in spent.items()}
        ratio = float(np.median(pairs))  # paired, as bench_core.paired_ratio
        return Row(
            "put_many FLAT (vec/s)", "pipelined HSET, same fields, FLAT index", "vec/s",
            rate["ours"], None, rate["raw"], None, ratio, ">= 0.90", ratio >= 0.9,
        )  # fmt: skip


def previous(path: Path | None) -> dict[tuple[str, str], float]:
    """(transport, op) -> ratio of an earlier report (run_all's JSON or this script's)."""
    if path is None or not path.is_file():
        return {}
    data = json.loads(path.read_text())
    out: dict[tuple[str, str], float] = {}
    for run in data.get("quick", []):
        for row in run["rows"]:
            out[(run["transport"], row["op"])] = row["ratio"]
    return out  # only this script's rows: bench_core measures with other data and method


ROW_FIELDS = tuple(f.name for f in fields(Row))


def combined(rounds: list[list[Row]]) -> list[dict[str, Any]]:
    """One row per operation from the rounds' rows (same operations, same order): the
    median of the rounds' medians, p99s and ratios (target met by that ratio), with
    ``ratios`` (each round's) and, for latency rows, ``p99_ok`` (each round's p99 bound:
    rediscache's p99 <= raw p99 x ratio x :data:`P99_SLACK`)."""
    out = []
    for same in zip(*rounds, strict=True):
        first = same[0]
        ratio = float(np.median([r.ratio for r in same]))

        def mid(values: list[float | None]) -> float | None:
            known = [v for v in values if v is not None]
            return float(np.median(known)) if known else None

        met = None
        if first.met is not None and first.target is not None:
            limit = float(first.target.split()[-1])
            met = ratio >= limit if first.target.startswith(">=") else ratio <= limit
        row = asdict(first) | {
            "rc_median": mid([r.rc_median for r in same]),
            "rc_p99": mid([r.rc_p99 for r in same]),
            "raw_median": mid([r.raw_median for r in same]),
            "raw_p99": mid([r.raw_p99 for r in same]),
            "ratio": ratio,
            "met": met,
            "ratios": [r.ratio for r in same],
        }
        if first.unit != "vec/s":
            row["p99_ok"] = [
                r.rc_p99 is not None and r.raw_p99 is not None
                and r.rc_p99 <= r.raw_p99 * r.ratio * P99_SLACK
                for r in same
            ]  # fmt: skip
        out.append(row)
    return out


def _ratios(row: dict[str, Any]) -> str:
    return ", ".join(f"{v:.3f}" for v in row["ratios"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=5000, help="vectors to load (default 5000)")
    p.add_argument("--calls", type=int, default=2000, help="calls per side (default 2000)")
    p.add_argument(
        "--rounds", type=int, default=3,
        help="times the whole measurement runs; ratios are the rounds' median (default 3)",
    )  # fmt: skip
    p.add_argument("--transports", default="unix,tcp", help="unix, tcp or both (default)")
    p.add_argument(
        "--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "dev",
        help="dev data directory (default ../shared/data/dev; else the bundled sample)",
    )  # fmt: skip
    p.add_argument(
        "--against", type=Path, default=HERE.parent / "docs" / "benchmarks.json",
        help="a previous report's JSON to compare with (default docs/benchmarks.json)",
    )  # fmt: skip
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    if not transports or set(transports) - {"unix", "tcp"}:
        p.error("--transports takes unix, tcp or unix,tcp")
    if args.rounds < 1 or args.calls < 200:
        p.error("--rounds takes 1 or more, --calls 200 or more")
    if (args.data / "vectors.npy").is_file():
        data = load_dev(args.data, args.n)
    else:
        say(f"{args.data} not found: using the bundled sample (2,000 rows at most); "
            "ratios are not comparable with a report made on the dev data")  # fmt: skip
        data = load_bundled(args.n)
    where = machine()
    tmp = Path(tempfile.mkdtemp(prefix="rc-quick-"))
    measured: dict[str, list[list[Row]]] = {t: [] for t in transports}
    try:
        info, _ = server.start(server.ServerConfig(data_dir=tmp))
        urls = {"tcp": info.url, "unix": f"unix://:{info.password}@{info.unix_socket}?db=0"}
        with rediscache.connect(data_dir=tmp) as setup:
            versions = setup.server_versions()
            where.update(redis_server=versions["redis"], search=versions["search"])
            say(f"data: {data.source}")
            say(" ".join(f"{k}={v}" for k, v in where.items()))
            quick = Quick(setup, data, args.calls)
            gc.collect()
            gc.freeze()
            try:
                for rnd in range(args.rounds):
                    order = transports if rnd % 2 == 0 else transports[::-1]
                    for transport in order:
                        with rediscache.connect(urls[transport]) as hub:
                            say(f"round {rnd + 1} of {args.rounds}: measuring over {transport} "
                                f"({args.calls} calls per side) ...")  # fmt: skip
                            rows = quick.rows(hub, urls[transport])
                            rows.append(quick.put_flat(hub))
                            measured[transport].append(rows)
            finally:
                quick.close()
    finally:
        server.stop(tmp)
        shutil.rmtree(tmp, ignore_errors=True)

    runs = [{"transport": t, "rounds": len(m), "rows": combined(m)} for t, m in measured.items()]
    before = previous(args.against)
    say()
    if before and args.against is not None:
        was = json.loads(args.against.read_text())
        made = was.get("quick_machine") or was.get("machine") or {}
        if isinstance(made, dict):
            say(f"previous report: {args.against} ({made.get('commit', '?')}, "
                f"{made.get('date', '?')})")  # fmt: skip
    for run in runs:
        say(
            f"over {run['transport']}: {where['commit']}, {where['date']}, {where['cores']} "
            f"cores ({where['cpu']}), Redis {where['redis_server']}, "
            f"redis-py {where['redis_py']}"
        )
        say(format_table([Row(**{f: r[f] for f in ROW_FIELDS}) for r in run["rows"]]))
        for r in run["rows"]:
            if r["unit"] == "vec/s":
                say(f"  {r['op']}: ratios of the rounds {_ratios(r)}")
                continue
            say(f"  {r['op']}: ratios of the rounds {_ratios(r)}; p99 ok (<= raw p99 x ratio "
                f"x {P99_SLACK:.2f}) in {sum(r['p99_ok'])} of {len(r['p99_ok'])}")  # fmt: skip
        for r in run["rows"]:
            was = before.get((run["transport"], r["op"]))
            if was is None:
                continue
            higher = r["unit"] == "vec/s"
            worse = r["ratio"] < was / WORSE if higher else r["ratio"] > was * WORSE
            flag = "  WORSE by more than 5%" if worse else ""
            say(f"  {r['op']}: {r['ratio']:.3f} (previous report {was:.3f}){flag}")
        say()
    if args.json:
        args.json.write_text(json.dumps({"machine": where, "quick": runs}, indent=2) + "\n")
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
