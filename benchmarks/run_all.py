"""Run every benchmark, then write one report: a table, markdown and JSON (run by hand).

    python benchmarks/run_all.py [--out benchmarks/results] [--only core,ops,...] [--docs]
    python benchmarks/run_all.py --report-only          # rebuild the report from saved JSON

Runs, one after another (each starts its own private embedded server, so they never compete
for the two cores): ``bench_core`` (core operations against raw redis-py, recall by ef),
``bench_quick`` (the hot operations over a unix socket and over TCP),
``bench_ops`` (average / combine / update_mean and their Lua scripts), ``bench_versions``
(snapshot and rollback at 1k, 20k, 100k), ``bench_redisvl`` (RedisVL's load, fetch, queries
and memory), ``bench_recall`` (recall-latency curves for HNSW and FLAT, the scaling run; PNG
plots when matplotlib is installed), ``bench_import`` (the import command against
put_many) and ``bench_serving`` (hot cache, get_or_compute, metrics, asyncio). Each writes
``<out>/<name>.json`` and ``<out>/<name>.txt`` (its printed output).

The report gathers every operation with its baseline, median and p99, ratio and target into
``<out>/report.md`` and ``<out>/report.json``; ``--docs`` also replaces the generated part of
``docs/benchmarks.md`` (between its ``<!-- report:start -->`` and ``<!-- report:end -->``
marks) and writes the JSON beside it as ``docs/benchmarks.json``. Install:
``pip install -e '.[server,bench]'`` (RedisVL and matplotlib live only in the ``bench``
extra). About 15-25 minutes on the 2-core dev box.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOCS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- report:start -->", "<!-- report:end -->"

#: name -> extra arguments; each script takes --json PATH.
BENCHES: dict[str, list[str]] = {
    "core": [],
    "quick": [],
    "ops": [],
    "versions": [],
    "redisvl": [],
    "recall": ["--png-dir", str(ROOT / "docs" / "img")],
    "import": [],
    "serving": [],
}


def run(name: str, out: Path) -> bool:
    """Run ``bench_<name>.py``; its output goes to <out>/<name>.txt (and the terminal)."""
    script = HERE / f"bench_{name}.py"
    cmd = [sys.executable, str(script), "--json", str(out / f"{name}.json"), *BENCHES[name]]
    print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    with (out / f"{name}.txt").open("w") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
        code = proc.wait()
    print(f"== {name}: exit {code} after {time.perf_counter() - t0:.0f} s", flush=True)
    return code == 0


def _load(out: Path, name: str) -> Any:
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _fmt(v: float | None, unit: str = "us") -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}/s" if unit == "vec/s" else f"{v:,.1f}"


def _row(op: str, base: str, rc: Any, raw: Any, ratio: float, target: str | None) -> dict[str, Any]:
    met = None
    if target:
        limit = float(target.split()[-1])
        met = ratio <= limit if target.startswith("<=") else ratio >= limit
    return {
        "op": op,
        "baseline": base,
        "rc_median": rc[0],
        "rc_p99": rc[1],
        "base_median": raw[0],
        "base_p99": raw[1],
        "ratio": ratio,
        "target": target,
        "met": met,
        "unit": rc[2] if len(rc) > 2 else "us",
    }


def gather(out: Path) -> dict[str, Any]:
    """Every operation's row, plus the sections of the other benchmarks, from saved JSON."""
    rows: list[dict[str, Any]] = []
    core, ops, versions = _load(out, "core"), _load(out, "ops"), _load(out, "versions")
    redisvl, recall, imp = _load(out, "redisvl"), _load(out, "recall"), _load(out, "import")
    tagged = [(r, "") for r in (core["rows"] if core else [])]
    tagged += [(r, " [bench_ops]") for r in (ops["latency"] if ops else [])]
    serving = _load(out, "serving")
    tagged += [(r, "") for r in (serving["rows"] if serving else [])]
    quick = _load(out, "quick")
    for run in quick["quick"] if quick else []:
        tagged += [(r, f" [{run['transport']}, bench_quick]") for r in run["rows"]]
    for source, tag in tagged:
        rows.append(
            _row(
                source["op"] + tag,
                source["baseline"],
                (source["rc_median"], source["rc_p99"], source.get("unit", "us")),
                (source["raw_median"], source["raw_p99"]),
                source["ratio"],
                source["target"],
            )
        )
    for size in versions or []:
        n = f"{size['n']:,}"
        for op, ours, raw, base in (
            ("snapshot", "snapshot", "snapshot_raw", "HSET of one field (a minimal write)"),
            ("rollback", "rollback", "rollback_raw", "FT.ALIASUPDATE alone (the switch itself)"),
        ):
            if raw not in size:
                continue
            o, r = size[ours], size[raw]
            rows.append(
                _row(
                    f"{op} ({n} vectors)",
                    base,
                    (o["median_us"], o["p99_us"]),
                    (r["median_us"], r["p99_us"]),
                    o["median_us"] / r["median_us"],
                    None,
                )
            )
    return {
        "generated": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": (out / "commit.txt").read_text().strip()
        if (out / "commit.txt").is_file()
        else commit(),
        "machine": (core or {}).get("machine", ""),
        "quick": quick["quick"] if quick else [],
        "quick_machine": quick["machine"] if quick else None,
        "rows": rows,
        "recall_by_ef": (core or {}).get("recall"),
        "versions": versions,
        "redisvl": redisvl,
        "recall": recall,
        "import": imp,
    }


def _table(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def commit() -> str:
    """The measured checkout's commit (``+changes`` when files differ from it)."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def markdown(rep: dict[str, Any]) -> str:
    """The report as markdown (the generated part of docs/benchmarks.md)."""
    parts = [
        f"Generated {rep['generated']} by `benchmarks/run_all.py` on commit "
        f"{rep.get('commit', 'unknown')}. {rep['machine']}. Rows marked [unix, bench_quick] "
        "and [tcp, bench_quick] come from `benchmarks/bench_quick.py` over a unix socket and "
        "over TCP to the same server, in one run."
    ]
    body = []
    for r in rep["rows"]:
        met = "-" if r["met"] is None else ("yes" if r["met"] else "**NO**")
        body.append(
            [
                r["op"],
                _fmt(r["rc_median"], r["unit"]),
                _fmt(r["rc_p99"], r["unit"]),
                _fmt(r["base_median"], r["unit"]),
                _fmt(r["base_p99"], r["unit"]),
                f"{r['ratio']:.2f}",
                r["target"] or "-",
                met,
            ]
        )
    parts.append(
        "### Every operation against its raw baseline\n\nMicroseconds per call "
        "(put_many: vectors per second), medians and p99 over all calls; ratio = rediscache / "
        "baseline, paired: the median over back-to-back blocks of calls (bench_core."
        "paired_ratio; bench_quick's put_many: over chunks).\n\n"
        + _table(["op", "median", "p99", "baseline median", "p99", "ratio", "target", "met"], body)
    )
    parts.append("Baselines:\n\n" + "\n".join(f"- {r['op']}: {r['baseline']}" for r in rep["rows"]))
    rvl = rep.get("redisvl")
    if rvl:
        body = [
            [r["op"], _fmt(r["rc_median"]), _fmt(r["rc_p99"]), _fmt(r["raw_median"]),
             _fmt(r["raw_p99"]), f"{r['ratio']:.2f}"]
            for r in rvl["rows"]
        ]  # fmt: skip
        head = ["op", "rediscache median", "p99", "RedisVL median", "p99", "ratio"]
        parts.append(f"### Against RedisVL ({rvl['n']:,} vectors)\n\n" + _table(head, body))
        load = rvl["load"]
        parts.append(
            f"Load (until indexed): rediscache {load['rediscache_rows_per_s']:,.0f} rows/s, "
            f"RedisVL {load['redisvl_rows_per_s']:,.0f} rows/s (x{load['ratio_rc_over_rvl']:.2f}"
            f" throughput). {load['how']}."
        )
        mem = rvl["memory"]
        per = 10_000 / rvl["n"] / 2**20
        body = [
            [side, f"{m['used_memory_load_delta'] * per:,.1f}",
             f"{m['lua_vm_load_delta'] * per:,.1f}", f"{m.get('drop_freed', 0) * per:,.1f}",
             f"{m.get('vector_index_sz_mb', 0) * 10_000 / rvl['n']:,.1f}"]
            for side, m in (("rediscache", mem["rediscache"]), ("RedisVL", mem["redisvl"]))
        ]  # fmt: skip
        parts.append(
            "Memory per 10k vectors, MB: "
            + "\n\n"
            + _table(
                ["side", "used_memory growth on load", "of it Lua VM", "freed by drop",
                 "FT.INFO vector_index_sz_mb"],
                body,
            )
        )  # fmt: skip
        parts.append(f"Top-10 overlap with RedisVL's results: {rvl['overlap']}.")
    rec = rep.get("recall")
    if rec:
        body = [
            [p["algorithm"].upper(), p["ef"], f"{p['recall']:.3f}", _fmt(p["median_us"]),
             _fmt(p["p99_us"])]
            for p in rec["curve"]["hnsw"] + rec["curve"]["flat"]
        ]  # fmt: skip
        raw = rec["raw_default"]
        parts.append(
            "### Recall and latency by ef (HNSW) and FLAT\n\n"
            + f"{rec.get('curve_how', '')}\n\n"
            + _table(["index", "ef", "recall@10", "median us", "p99 us"], body)
            + f"\n\nrediscache / raw FT.SEARCH: HNSW at the default ef x{raw['hnsw']['ratio']:.2f}"
            + f", FLAT x{raw['flat']['ratio']:.2f}.\n\n![recall-latency](img/recall_latency.png)"
        )
        body = [
            [f"{s['n']:,}" + (" (grown)" if s["grown"] else ""), f"{s['load_s']:.1f}",
             _fmt(s["search"]["median_us"]), _fmt(s["search"]["p99_us"]),
             _fmt(s["raw"]["median_us"]), f"{s['ratio']:.2f}", f"{s['recall']:.3f}"]
            for s in rec["scaling"]
        ]  # fmt: skip
        parts.append(
            "### Scaling (HNSW, default ef)\n\n"
            + _table(["n", "load s", "search median us", "p99 us", "raw median us", "ratio",
                      "recall@10"], body)
            + f"\n\nGrown data: {rec['grown'].get('note', rec['grown'])}.\n\n"
            + "![scaling](img/scaling.png)"
        )  # fmt: skip
    versions = rep.get("versions")
    if versions:
        body = [
            [f"{v['n']:,}" + (" (grown)" if v["grown"] else ""),
             f"{v['snapshot']['median_us']:,.0f} / {v['snapshot']['p99_us']:,.0f}",
             f"{v['rollback']['median_us']:,.0f} / {v['rollback']['p99_us']:,.0f}",
             f"{v['first_write_s']:.2f}", f"{v['version_index_s']:.1f}",
             f"x{v['memory_after_copy_mb'] / v['memory_mb']:.2f}",
             f"x{v['search_live']['median_us'] / v['search_raw']['median_us']:.2f}",
             f"x{v['search_version']['median_us'] / v['search_raw']['median_us']:.2f}"]
            for v in versions
        ]  # fmt: skip
        parts.append(
            "### Versions\n\n"
            + _table(["n", "snapshot med / p99 us", "rollback med / p99 us", "first write s",
                      "version index s", "memory with the copy", "search live / raw",
                      "search old version / raw"], body)
            + "\n\nDetails and the design: [versions.md](versions.md)."
        )  # fmt: skip
    imp = rep.get("import")
    if imp:
        m = imp["medians"]
        parts.append(
            f"### Import\n\n`rediscache import` of the dev set: {m['cli_rate']:,.0f} rows/s "
            f"({m['cli_wall_rate']:,.0f} with process start-up); put_many from memory "
            f"{m['put_many_rate']:,.0f} rows/s (x{m['cli_rate'] / m['put_many_rate']:.2f})."
        )
    missed = [r["op"] for r in rep["rows"] if r["met"] is False]
    parts.append("Targets missed in this run: " + (", ".join(missed) if missed else "none") + ".")
    return "\n\n".join(parts) + "\n"


def main() -> int:
    """Run the benchmarks and write the report."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHES)}")
    p.add_argument("--report-only", action="store_true", help="only rebuild the report")
    p.add_argument("--docs", action="store_true", help="also update docs/benchmarks.md")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    names = args.only.split(",") if args.only else list(BENCHES)
    failed = []
    if not args.report_only:
        if not args.only:  # the commit measured: taken before the runs regenerate any file
            (args.out / "commit.txt").write_text(commit() + "\n")
        failed = [name for name in names if not run(name, args.out)]
    rep = gather(args.out)
    md = markdown(rep)
    (args.out / "report.json").write_text(json.dumps(rep, indent=2) + "\n")
    (args.out / "report.md").write_text(md)
    print(md)
    if args.docs:
        text = DOCS.read_text()
        if START not in text or END not in text:
            sys.exit(f"{DOCS} has no {START} ... {END} section")
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        DOCS.write_text(f"{head}{START}\n{md}{END}{tail}")
        DOCS.with_suffix(".json").write_text(json.dumps(rep, indent=2) + "\n")
        print(f"updated {DOCS} and {DOCS.with_suffix('.json')}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
