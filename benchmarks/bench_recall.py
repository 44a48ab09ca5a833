"""Benchmark recall@10 against latency, and how search scales with size (run by hand).

    PYTHONPATH=. python benchmarks/bench_recall.py [--url URL] [--data DIR] [--n N]
                                                   [--queries Q] [--calls C]
                                                   [--sizes 10000,50000,100000]
                                                   [--png-dir docs/img] [--json PATH]

Two parts, on one server (a private embedded one unless ``--url`` is given):

* Recall-latency curve: the first ``--n`` dev vectors in two cosine spaces with the same data,
  HNSW (M 16, EF_CONSTRUCTION 200, EF_RUNTIME 100) and FLAT. recall@10 of
  ``space.search(q, 10, ef=EF)`` over the first ``--queries`` held-out queries against the
  exact top-10 (``gt_ids.npy`` for the full 20k, else numpy brute force) at ef 10 ... 400 and
  the default, and FLAT (exact; one point). Median / p99 per query over ``--calls`` calls per
  point (queries cycling), all points and raw redis-py FT.SEARCH at the default ef timed in
  alternating blocks (bench_core's ``measure``), which gives the rediscache / raw ratios.
* Scaling: HNSW spaces of ``--sizes`` vectors, loaded one at a time and dropped after: the dev
  vectors, and beyond their count noisy copies (Gaussian noise sigma 0.01, renormalised;
  bench_versions' ``grow``; the output says so). Per size: load time (put_many, chunks of 1000,
  until FT.INFO shows nothing left to index), search median / p99 at the default ef beside raw
  FT.SEARCH, and recall@10 against a numpy brute-force top-10 over that size's vectors.

Plots (``recall_latency.png``, ``scaling.png``) need matplotlib and are skipped without it.
Spaces ``recall_*`` are dropped before and after. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
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
    Call,
    Dataset,
    K,
    Timing,
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
    search: Timing
    raw: Timing
    ratio: float
    recall: float


def recall_at(found: Sequence[Sequence[str]], truth: Sequence[Sequence[str]]) -> float:
    """Share of the true top-k keys found, over all queries."""
    hit = sum(len(set(f) & set(t)) for f, t in zip(found, truth))
    return hit / sum(len(t) for t in truth)


def brute_top(vectors: Vectors, queries: Vectors, k: int) -> list[list[str]]:
    """Row numbers (as keys) of the exact ``k`` nearest rows by cosine, for each query."""
    inv = 1.0 / np.linalg.norm(vectors, axis=1)  # a query's own norm does not change its ranks
    out: list[list[str]] = []
    for s in range(0, len(queries), 50):  # in slices: (200, 100k) float + int64 is ~250 MB
        sims = (queries[s : s + 50] @ vectors.T) * inv
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
        out += [[str(int(r)) for r in row] for row in np.take_along_axis(part, order, axis=1)]
    return out


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
    """Keys of the hits in each stored ``space.search`` result."""
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

    def at(ef: int | None) -> Call:
        return lambda i: hnsw.search(queries[i], K, ef=ef)

    fns: dict[str, Call] = {("default" if ef is None else str(ef)): at(ef) for ef in (*EFS, None)}
    fns["flat"] = lambda i: flat.search(queries[i], K)
    fns["raw"] = lambda i: client.execute_command("FT.SEARCH", *head, blobs[i], *tail)
    fns["raw_flat"] = lambda i: client.execute_command("FT.SEARCH", *fhead, blobs[i], *ftail)
    stored: dict[str, list[Any]] = {label: [None] * nq for label in fns}

    def keep(label: str) -> Call:
        """fns[label], its result kept per query (a list store: ~no cost in the timing)."""
        fn, out = fns[label], stored[label]

        def call(i: int) -> object:
            out[i % nq] = fn(i % nq)
            return None

        return call

    gc.collect()
    t = measure({label: keep(label) for label in fns}, calls, block=min(50, calls))

    def point(algorithm: str, label: str, shown: str) -> CurvePoint:
        tm, found = t[label], hits_keys(stored[label])
        return CurvePoint(
            algorithm, shown, recall_at(found, truth), tm.median_us, tm.p99_us, tm.calls
        )

    shown = {str(ef): str(ef) for ef in EFS} | {"default": f"default ({default_ef})"}
    curve = {
        "hnsw": [point("hnsw", label, text) for label, text in shown.items()],
        "flat": [point("flat", "flat", "-")],
    }
    raw: dict[str, Any] = {"load_s": {"hnsw": hnsw_s, "flat": flat_s}}
    for algorithm, ours, space, ef in (
        ("hnsw", "default", hnsw, default_ef),
        ("flat", "flat", flat, None),
    ):
        label = "raw" if algorithm == "hnsw" else "raw_flat"
        found = [_reply_keys(r, space.live_keys.doc_prefix) for r in stored[label]]
        ratio = t[ours].median_us / t[label].median_us
        raw[algorithm] = {
            **asdict(t[label]),
            "recall": recall_at(found, truth),
            "ratio": ratio,
            "ef": ef,
        }
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
        ratio = t["ours"].median_us / t["raw"].median_us
        recall = recall_at(hits_keys(found), truth)
        return ScalePoint(n, grown, load_s, t["ours"], t["raw"], ratio, recall)
    finally:
        hub.drop_space(name, missing_ok=True)


def curve_table(curve: dict[str, list[CurvePoint]], raw: dict[str, Any]) -> str:
    """The curve and the raw baselines as a plain-text table."""
    rows = [(p.algorithm.upper(), p.ef, p.recall, p.median_us, p.p99_us) for p in curve["hnsw"]]
    rows += [("FLAT", "-", p.recall, p.median_us, p.p99_us) for p in curve["flat"]]
    for a, ef in (("hnsw", f"{raw['hnsw']['ef']} (= default)"), ("flat", "-")):
        r = raw[a]
        rows.append((f"raw FT.SEARCH {a.upper()}", ef, r["recall"], r["median_us"], r["p99_us"]))
    body = [[name, ef, f"{r:.3f}", f"{m:,.0f}", f"{q:,.0f}"] for name, ef, r, m, q in rows]
    return grid(["", "ef", "recall@10", "median us", "p99 us"], body)


def scaling_table(points: Sequence[ScalePoint]) -> str:
    """The scaling run as a plain-text table."""
    body = [
        [
            f"{p.n:,}" + (" (grown)" if p.grown else ""),
            f"{p.load_s:.1f}",
            f"{p.n / p.load_s:,.0f}",
            f"{p.search.median_us:,.0f} / {p.search.p99_us:,.0f}",
            f"{p.raw.median_us:,.0f} / {p.raw.p99_us:,.0f}",
            f"{p.ratio:.2f}",
            f"{p.recall:.3f}",
        ]
        for p in points
    ]
    head = ["n", "load s", "vec/s", "search med / p99 us", "raw med / p99 us", "ratio", "recall@10"]
    return grid(head, body)


def _tick_labels(lo: float, hi: float) -> Callable[[float, object], str]:
    """Tick labels for a log latency axis: every tick within a decade, else 1, 2 and 5."""
    keep = range(1, 10) if hi < 10 * lo else (1, 2, 5)

    def label(value: float, _pos: object = None) -> str:
        lead = round(value / 10 ** math.floor(math.log10(value)), 6) if value > 0 else 0
        return f"{value:,.0f}" if lead in keep else ""

    return label


def plot(
    png_dir: Path, curve: dict[str, list[CurvePoint]], points: Sequence[ScalePoint]
) -> list[Path]:
    """recall_latency.png and scaling.png (small, Agg backend); [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        say("NOTE: matplotlib is not installed: no plots (pip install matplotlib)")
        return []
    png_dir.mkdir(parents=True, exist_ok=True)
    offset: dict[str, Any] = {"textcoords": "offset points", "fontsize": 8}
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    line = [p for p in curve["hnsw"] if not p.ef.startswith("default")]  # in ef order
    ax.plot([p.median_us for p in line], [p.recall for p in line], "o-", label="HNSW, by ef")
    for p in line:
        ax.annotate(p.ef, (p.median_us, p.recall), xytext=(4, -11), **offset)
    for p in curve["hnsw"]:
        if p.ef.startswith("default"):
            ax.plot([p.median_us], [p.recall], "o", mfc="none", ms=11, label=f"HNSW ef {p.ef}")
    f = curve["flat"][0]
    ax.plot([f.median_us], [f.recall], "s", color="tab:red", ms=8, label="FLAT (exact)")
    ax.set(xscale="log", xlabel="median latency per query (us, log)", ylabel="recall@10")
    xs = [p.median_us for p in (*curve["hnsw"], f)]
    for axis in (ax.xaxis.set_major_formatter, ax.xaxis.set_minor_formatter):
        axis(FuncFormatter(_tick_labels(min(xs), max(xs))))
    ax.set_title("space.search k=10: recall@10 vs latency")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    written = [png_dir / "recall_latency.png"]
    fig.savefig(written[-1])
    plt.close(fig)
    if points:
        fig, (left, right) = plt.subplots(1, 2, figsize=(7, 4), dpi=100)
        ns = [p.n for p in points]
        ticks = [f"{p.n / 1000:g}k" + ("*" if p.grown else "") for p in points]
        left.plot(ns, [p.search.median_us for p in points], "o-", label="median")
        left.plot(ns, [p.search.p99_us for p in points], "^--", label="p99")
        left.plot(ns, [p.raw.median_us for p in points], "x:", label="raw FT.SEARCH median")
        left.set(ylabel="latency per query (us)", ylim=(0, None))
        left.legend(fontsize=8)
        recalls = [p.recall for p in points]
        right.plot(ns, recalls, "o-", color="tab:green")
        right.set(ylabel="recall@10", ylim=(min(0.9, min(recalls) - 0.02), 1.005))
        for side in (left, right):
            side.set_xticks(ns, ticks)
            side.set_xlabel("vectors")
            side.grid(True, alpha=0.3)
        grown = f"; * grown: noise sigma {SIGMA}" if any(p.grown for p in points) else ""
        fig.suptitle(f"HNSW space.search k=10 at the default ef vs size{grown}", fontsize=10)
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
    grown_note = "none (every size fits in the data)"
    if grown_sizes:
        grown_note = (
            f"sizes above {len(base):,} ({', '.join(f'{n:,}' for n in grown_sizes)}) are GROWN: "
            f"the {len(base):,} data vectors plus copies with Gaussian noise sigma {SIGMA}, "
            "renormalised"
        )
    grown = {"sigma": SIGMA, "base_rows": len(base), "sizes": grown_sizes, "note": grown_note}
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
            "grown": grown,
            "queries": nq,
            "calls": args.calls,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
