"""Benchmark recall@10 against latency, and how search scales with size (run by hand).

    PYTHONPATH=. python benchmarks/bench_recall.py [--url URL] [--data DIR] [--n N]
                                                   [--queries Q] [--calls C]
                                                   [--sizes 10000,50000,100000]
                                                   [--png-dir docs/img] [--json PATH]

Two parts, on one server (a private embedded one unless ``--url`` is given):

* Recall-latency curve. The first ``--n`` dev vectors go into two cosine spaces holding the
  same data, one HNSW (M 16, EF_CONSTRUCTION 200, EF_RUNTIME 100) and one FLAT. For the first
  ``--queries`` held-out queries: recall@10 of ``space.search(q, 10, ef=EF)`` against the exact
  top-10 (``gt_ids.npy`` for the full 20k set, else numpy brute force), at ef 10 ... 400 and the
  index default, and FLAT (exact search, one point). Per-query median / p99 latency comes from
  ``--calls`` calls per point (the queries cycle), every point and a raw redis-py FT.SEARCH
  baseline at the default ef timed in alternating blocks (bench_core's ``measure``).
* Scaling. HNSW spaces of ``--sizes`` vectors, one at a time (each dropped before the next):
  the dev vectors, and above their count noisy copies of them (Gaussian noise sigma 0.01, then
  renormalised; bench_versions' ``grow``). For each size: load time (put_many in chunks of
  1000 until FT.INFO shows nothing left to index), search median / p99 at the default ef beside
  raw FT.SEARCH, and recall@10 against a numpy brute-force top-10 over that size's vectors.

Plots (``recall_latency.png``, ``scaling.png``) need matplotlib and are skipped without it.
Spaces ``recall_*`` are dropped before and after. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import redis

import rediscache

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_core import (  # noqa: E402
    DIM,
    K,
    Call,
    Dataset,
    _reply_keys,
    _search_args,
    exact_top,
    grid,
    load_bundled,
    load_dev,
    measure,
    open_hub,
    say,
)
from bench_versions import grow  # noqa: E402

Vectors = npt.NDArray[np.float32]
HNSW_SPACE, FLAT_SPACE, SIZE_PREFIX = "recall_hnsw", "recall_flat", "recall_n"
EFS = (10, 20, 50, 100, 200, 400)
CHUNK = 1000
SIGMA = 0.01  # the noise bench_versions.grow adds


@dataclass(frozen=True)
class CurvePoint:
    """recall@10 and per-query latency of one search setting."""

    algorithm: str
    ef: str
    recall: float
    median_us: float
    p99_us: float
    calls: int


@dataclass(frozen=True)
class ScalePoint:
    """One size of the scaling run."""

    n: int
    grown: bool
    load_s: float
    median_us: float
    p99_us: float
    raw_median_us: float
    raw_p99_us: float
    ratio: float
    recall: float


def recall_at(found: Sequence[Sequence[str]], truth: Sequence[Sequence[str]]) -> float:
    """Share of the true top-k keys found, over all queries."""
    hit = sum(len(set(f) & set(t)) for f, t in zip(found, truth))
    return hit / sum(len(t) for t in truth)


def brute_top(vectors: Vectors, queries: Vectors, k: int) -> list[list[str]]:
    """Row numbers (as keys) of the exact ``k`` nearest rows by cosine, for each query."""
    norms = np.linalg.norm(vectors, axis=1)
    sims = (queries @ vectors.T) / norms[None, :]  # the query's own norm does not change ranks
    part = np.argpartition(-sims, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
    return [[str(int(r)) for r in row] for row in np.take_along_axis(part, order, axis=1)]


def load_space(
    hub: rediscache.Hub, name: str, algorithm: str, keys: list[str], vectors: Vectors
) -> tuple[rediscache.Space, float]:
    """A fresh cosine space holding ``vectors``, and the seconds until all were indexed."""
    hub.drop_space(name, missing_ok=True)
    space = hub.create_space(name, DIM, metric="cosine", algorithm=algorithm)
    t0 = time.perf_counter()
    for s in range(0, len(keys), CHUNK):
        space.put_many(keys[s : s + CHUNK], vectors[s : s + CHUNK])
    while True:
        info = space.info()
        if not info.indexing and info.count >= len(keys):
            break
        if time.perf_counter() - t0 > 1800:
            raise SystemExit(f"{name}: {info.count} of {len(keys)} indexed after 30 min")
        time.sleep(0.05)
    return space, time.perf_counter() - t0


def hits_keys(stored: list[Any]) -> list[list[str]]:
    """Keys of the hits each stored ``space.search`` result holds."""
    return [[h.key for h in hits] for hits in stored]


def run_curve(
    hub: rediscache.Hub, data: Dataset, nq: int, calls: int
) -> tuple[dict[str, list[CurvePoint]], dict[str, Any], str]:
    """The recall-latency curve of HNSW and FLAT, and the raw FT.SEARCH baselines."""
    queries = data.queries[:nq]
    if data.gt_ids is not None:
        truth = [[str(int(r)) for r in row[:K]] for row in data.gt_ids[:nq]]
        how = "gt_ids.npy (exact top-100 by cosine)"
    else:
        truth = exact_top(data, queries, K)
        how = "numpy brute force over the loaded rows"
    hnsw, hnsw_s = load_space(hub, HNSW_SPACE, "hnsw", data.keys, data.vectors)
    say(f"  loaded {len(data.keys):,} into HNSW in {hnsw_s:.1f} s")
    flat, flat_s = load_space(hub, FLAT_SPACE, "flat", data.keys, data.vectors)
    say(f"  loaded {len(data.keys):,} into FLAT in {flat_s:.1f} s")
    default_ef = int(hnsw.config.hnsw.get("EF_RUNTIME", 100))
    client = hub.client
    blobs = [q.astype("<f4").tobytes() for q in queries]
    head, tail = _search_args(hnsw.live_keys.index, K, default_ef)
    fhead, ftail = _search_args(flat.live_keys.index, K, default_ef)
    fhead[1] = str(fhead[1]).replace(f" EF_RUNTIME {default_ef}", "")  # FLAT rejects it

    stored: dict[str, list[Any]] = {}
    sides: dict[str, Call] = {}

    def side(label: str, fn: Call) -> None:
        out: list[Any] = [None] * nq
        stored[label] = out

        def call(i: int) -> object:
            out[i % nq] = fn(i % nq)
            return None

        sides[label] = call

    for ef in (*EFS, None):
        label = "default" if ef is None else str(ef)
        side(label, lambda i, ef=ef: hnsw.search(queries[i], K, ef=ef))
    side("flat", lambda i: flat.search(queries[i], K))
    side("raw", lambda i: client.execute_command("FT.SEARCH", *head, blobs[i], *tail))
    side("raw_flat", lambda i: client.execute_command("FT.SEARCH", *fhead, blobs[i], *ftail))
    gc.collect()
    t = measure(sides, calls, block=min(50, calls))

    def point(algorithm: str, label: str, found: list[list[str]], ef: str) -> CurvePoint:
        tm = t[label]
        return CurvePoint(algorithm, ef, recall_at(found, truth), tm.median_us, tm.p99_us, tm.calls)

    curve = {
        "hnsw": [
            point(
                "hnsw",
                label,
                hits_keys(stored[label]),
                f"default ({default_ef})" if label == "default" else label,
            )
            for label in (*map(str, EFS), "default")
        ],
        "flat": [point("flat", "flat", hits_keys(stored["flat"]), "-")],
    }
    raw: dict[str, Any] = {}
    for algorithm, label, ours, space in (
        ("hnsw", "raw", t["default"], hnsw),
        ("flat", "raw_flat", t["flat"], flat),
    ):
        found = [_reply_keys(r, space.live_keys.doc_prefix) for r in stored[label]]
        raw[algorithm] = {
            "median_us": t[label].median_us,
            "p99_us": t[label].p99_us,
            "calls": t[label].calls,
            "recall": recall_at(found, truth),
            "ratio": ours.median_us / t[label].median_us,
            "ef": default_ef if algorithm == "hnsw" else None,
        }
    raw["load_s"] = {"hnsw": hnsw_s, "flat": flat_s}
    return curve, raw, f"{nq} queries, {len(data.keys):,} vectors, truth from {how}"


def run_size(
    hub: rediscache.Hub, base: Vectors, queries: Vectors, n: int, calls: int
) -> ScalePoint:
    """Load ``n`` vectors into an HNSW space, measure search and recall, drop it."""
    name = f"{SIZE_PREFIX}{n}"
    rows, grown = grow(base, n)
    keys = [str(i) for i in range(n)]
    try:
        space, load_s = load_space(hub, name, "hnsw", keys, rows)
        say(f"  loaded {n:,} in {load_s:.1f} s ({n / load_s:,.0f}/s)")
        truth = brute_top(rows, queries, K)
        del rows
        nq = len(queries)
        ef = int(space.config.hnsw.get("EF_RUNTIME", 100))
        head, tail = _search_args(space.live_keys.index, K, ef)
        blobs = [q.astype("<f4").tobytes() for q in queries]
        found: list[Any] = [None] * nq
        client = hub.client

        def ours(i: int) -> object:
            found[i % nq] = space.search(queries[i % nq], K)
            return None

        def theirs(i: int) -> object:
            return client.execute_command("FT.SEARCH", *head, blobs[i % nq], *tail)

        gc.collect()
        t = measure({"ours": ours, "raw": theirs}, calls)
        return ScalePoint(
            n=n,
            grown=grown,
            load_s=load_s,
            median_us=t["ours"].median_us,
            p99_us=t["ours"].p99_us,
            raw_median_us=t["raw"].median_us,
            raw_p99_us=t["raw"].p99_us,
            ratio=t["ours"].median_us / t["raw"].median_us,
            recall=recall_at(hits_keys(found), truth),
        )
    finally:
        hub.drop_space(name, missing_ok=True)


def curve_table(curve: dict[str, list[CurvePoint]], raw: dict[str, Any]) -> str:
    """The curve as a plain-text table."""
    body = [
        [p.algorithm.upper(), p.ef, f"{p.recall:.3f}", f"{p.median_us:,.0f}", f"{p.p99_us:,.0f}"]
        for p in (*curve["hnsw"], *curve["flat"])
    ]
    for algorithm in ("hnsw", "flat"):
        r = raw[algorithm]
        body.append(
            [
                f"raw FT.SEARCH {algorithm.upper()}",
                "-" if r["ef"] is None else f"default ({r['ef']})",
                f"{r['recall']:.3f}",
                f"{r['median_us']:,.0f}",
                f"{r['p99_us']:,.0f}",
            ]
        )
    return grid(["", "ef", "recall@10", "median us", "p99 us"], body)


def scaling_table(points: Sequence[ScalePoint]) -> str:
    """The scaling run as a plain-text table."""
    body = [
        [
            f"{p.n:,}" + (" (grown)" if p.grown else ""),
            f"{p.load_s:.1f}",
            f"{p.n / p.load_s:,.0f}",
            f"{p.median_us:,.0f} / {p.p99_us:,.0f}",
            f"{p.raw_median_us:,.0f} / {p.raw_p99_us:,.0f}",
            f"{p.ratio:.2f}",
            f"{p.recall:.3f}",
        ]
        for p in points
    ]
    head = ["n", "load s", "vec/s", "search med / p99 us", "raw med / p99 us", "ratio", "recall@10"]
    return grid(head, body)


def plot(
    png_dir: Path, curve: dict[str, list[CurvePoint]] | None, points: Sequence[ScalePoint]
) -> list[Path]:
    """recall_latency.png and scaling.png (small, Agg backend); [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("NOTE: matplotlib is not installed: no plots (pip install matplotlib)")
        return []
    png_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if curve is not None:
        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
        pts = sorted(curve["hnsw"], key=lambda p: p.median_us)
        ax.plot([p.median_us for p in pts], [p.recall for p in pts], "o-", label="HNSW")
        for p in curve["hnsw"]:
            ax.annotate(
                f"ef {p.ef}",
                (p.median_us, p.recall),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=8,
            )
        f = curve["flat"][0]
        ax.plot([f.median_us], [f.recall], "s", color="tab:red", markersize=8, label="FLAT")
        ax.set_xscale("log")
        ax.set_xlabel("median latency per query (us, log)")
        ax.set_ylabel("recall@10")
        ax.set_title("space.search k=10: recall vs latency")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right")
        fig.tight_layout()
        written.append(png_dir / "recall_latency.png")
        fig.savefig(written[-1])
        plt.close(fig)
    if points:
        fig, (left, right) = plt.subplots(1, 2, figsize=(7, 4), dpi=100)
        ns = [p.n for p in points]
        left.plot(ns, [p.median_us for p in points], "o-", label="median")
        left.plot(ns, [p.p99_us for p in points], "^--", label="p99")
        left.plot(ns, [p.raw_median_us for p in points], "x:", label="raw median")
        left.set_xlabel("vectors")
        left.set_ylabel("latency per query (us)")
        left.legend(fontsize=8)
        right.plot(ns, [p.recall for p in points], "o-", color="tab:green")
        right.set_xlabel("vectors")
        right.set_ylabel("recall@10 (default ef)")
        for ax in (left, right):
            ax.grid(True, alpha=0.3)
        fig.suptitle(f"HNSW search vs size (sizes above the data grown, noise sigma {SIGMA})")
        fig.tight_layout()
        written.append(png_dir / "scaling.png")
        fig.savefig(written[-1])
        plt.close(fig)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Run both parts, print the tables, draw the plots, optionally write JSON."""
    here = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description="rediscache recall / latency / scaling benchmark")
    p.add_argument("--url", help="redis:// URL (default: a private embedded server)")
    p.add_argument("--data", type=Path, default=here.parent / "shared" / "data" / "dev")
    p.add_argument("--n", type=int, default=20000, help="vectors for the curve (default 20000)")
    p.add_argument("--queries", type=int, default=200, help="queries for recall (default 200)")
    p.add_argument("--calls", type=int, default=1000, help="timed calls per point (default 1000)")
    p.add_argument("--sizes", default="10000,50000,100000", help="scaling sizes ('' = skip)")
    p.add_argument("--png-dir", type=Path, default=here / "docs" / "img")
    p.add_argument("--json", type=Path, help="also write the results to this file")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.n < 100 or args.queries < 1 or args.calls < 10 or any(s < 100 for s in sizes):
        p.error("--n and each size must be >= 100, --queries >= 1, --calls >= 10")
    if (args.data / "vectors.npy").is_file():
        full = load_dev(args.data, 10**9)
        data = full if args.n >= len(full.keys) else load_dev(args.data, args.n)
    else:
        say(f"{args.data} not found: using the bundled sample instead (2,000 rows at most)")
        full = load_bundled(10**9)
        data = load_bundled(args.n)
    base, queries = full.vectors, full.queries[: args.queries]
    del full
    nq = len(queries)
    grown_sizes = [n for n in sizes if n > len(base)]
    grown_note = (
        f"sizes above {len(base):,} ({', '.join(f'{n:,}' for n in grown_sizes)}) are GROWN: the "
        f"{len(base):,} data vectors plus copies with Gaussian noise sigma {SIGMA}, renormalised"
    )
    say(f"data: {data.source}")
    names = [HNSW_SPACE, FLAT_SPACE, *(f"{SIZE_PREFIX}{n}" for n in sizes)]
    with open_hub(args.url) as (hub, where):
        versions = hub.server_versions()
        transport = (
            "unix socket" if hub.client.connection_pool.connection_kwargs.get("path") else "tcp"
        )
        machine = (
            f"{len(os.sched_getaffinity(0))} usable cores, client and server on the same box "
            f"over {transport} ({where}); Redis {versions['redis']}, search "
            f"{versions['search']}; redis-py {redis.__version__}, Python {sys.version.split()[0]}"
        )
        say(machine)
        for name in names:
            hub.drop_space(name, missing_ok=True)
        try:
            say(f"recall-latency curve ({nq} queries, {args.calls} calls per point) ...")
            curve, raw, curve_how = run_curve(hub, data, nq, args.calls)
            hub.drop_space(HNSW_SPACE, missing_ok=True)
            hub.drop_space(FLAT_SPACE, missing_ok=True)
            del data
            points: list[ScalePoint] = []
            if grown_sizes:
                say(grown_note)
            for n in sizes:
                say(f"scaling: {n:,} vectors ...")
                points.append(run_size(hub, base, queries, n, args.calls))
        finally:
            for name in names:
                hub.drop_space(name, missing_ok=True)

    say()
    say(machine)
    say(f"recall@10 vs latency of space.search k=10 ({curve_how}):")
    say(curve_table(curve, raw))
    say(
        f"rediscache / raw FT.SEARCH (medians): HNSW default ef x{raw['hnsw']['ratio']:.2f}, "
        f"FLAT x{raw['flat']['ratio']:.2f}"
    )
    if points:
        say()
        say(f"scaling, HNSW at the default ef, {nq} queries, recall vs numpy brute force:")
        if grown_sizes:
            say(f"NOTE: {grown_note}; recall there is measured against those grown vectors")
        say(scaling_table(points))
    say()
    for path in plot(args.png_dir, curve, points):
        say(f"wrote {path} ({path.stat().st_size / 1e3:.0f} KB)")
    if args.json is not None:
        payload = {
            "machine": machine,
            "versions": versions,
            "curve": {k: [asdict(c) for c in v] for k, v in curve.items()},
            "curve_how": curve_how,
            "raw_default": raw,
            "scaling": [asdict(s) for s in points],
            "grown": {
                "sigma": SIGMA,
                "base_rows": len(base),
                "sizes": grown_sizes,
                "note": grown_note,
            },
            "queries": nq,
            "calls": args.calls,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
