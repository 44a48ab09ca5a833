"""Benchmark the embedding operations (average, combine, update_mean) and their Lua scripts.

    PYTHONPATH=. python benchmarks/bench_ops.py [--url URL] [--calls C] [--json PATH]

Four parts, on random float32 vectors in FLAT L2 spaces (index inserts stay cheap):

1. Latency: ``average(10 keys)`` at dim 384 against the raw, non-atomic baseline (a pipeline
   of 10 HGET on ``hub.client`` plus a numpy mean), target ratio of medians <= 1.5; and the
   other operations (``into=``, ``combine``, ``update_mean``) against the same baseline. The
   sides alternate in blocks of calls (bench_core's ``measure``); medians and p99 per call.
2. Server time per call from ``INFO commandstats`` (``CONFIG RESETSTAT``, run, read the
   ``usec`` of ``cmdstat_evalsha``; redis-py's ``Script`` sends EVALSHA) for gather.lua,
   combine.lua and update_mean.lua at n = 10, 100, 1000 keys and dim 384 and 1536, beside the
   raw pipeline's HGETs.
3. Alternative Lua formulations of a plain mean (``benchmarks/lua_alternatives/*.lua``),
   each checked against numpy before it is timed, by server time at n = 10 and 100, dim 384.
4. The largest calls: server time of ``average(keys)`` (gather.lua) and
   ``average(keys, into=...)`` (combine.lua) at n = 1000, 5000 and 10000 keys.

Server times are means (commandstats keeps sums, not distributions), taken over several rounds
with the order of the sides rotating. ``CONFIG RESETSTAT`` clears the server's statistics: on a
shared server (``--url``) other clients' commands are counted too and their stats are lost.
Without ``--url`` a private embedded server is started in a temporary directory and stopped at
the end. The spaces ``bench_ops_384`` and ``bench_ops_1536`` are dropped before and after.
Not part of the test suite.
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
from rediscache.keys import VECTOR_FIELD

# The shared helpers live beside this file (run as a script, this directory is on sys.path
# already; the insert covers runs from elsewhere, e.g. an importing test).
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_core import (  # noqa: E402
    Call,
    Row,
    format_table,
    grid,
    latency_row,
    measure,
    open_hub,
    say,
)

DIMS = (384, 1536)
#: Keys loaded per dim (the largest call reads all of them).
KEYS_PER_DIM = 10_000
#: Loading of the second half at dim 1536 is skipped when it is projected to take longer.
LOAD_BUDGET_S = 8.0
LOAD_CHUNK = 1000
LATENCY_DIM = 384
TARGET = 1.5
SERVER_NS = (10, 100, 1000)
ALT_NS = (10, 100)
BIG_NS = (1000, 5000, 10_000)
#: Rounds per server-time case; the order of the sides rotates each round.
ROUNDS = 5
ALT_DIR = HERE / "lua_alternatives"
ALTERNATIVES = {
    "a_chunked": "(a) chunked struct.unpack (4096) + accumulate [combine.lua above 4096]",
    "b_whole": "(b) one struct.unpack per vector, accumulate [combine.lua up to 4096]",
    "c_unrolled": "(c) as (b), inner loop unrolled by 8",
    "d_gather": "(d) read only: HGET + table.concat of the blobs, no math",
    "e_gather_array": "(e) read only: HGET, blobs returned as an array [gather.lua]",
}

Vectors = npt.NDArray[np.float32]


def space_name(dim: int) -> str:
    """Name of the benchmark space of ``dim``."""
    return f"bench_ops_{dim}"


# ---------------------------------------------------------------- server time


@dataclass(frozen=True)
class Side:
    """One thing timed by server time: a call, the command stat it shows up in, and how many
    of those commands one call sends."""

    fn: Call
    stat: str
    per_call: int = 1


@dataclass(frozen=True)
class ServerTiming:
    """Mean server time per call (commandstats) and the client's median wall time per call."""

    server_us: float
    wall_median_us: float
    calls: int
    #: Commands counted by the server, when not the expected number (other clients?).
    unexpected: int | None


def server_times(
    client: redis.Redis, sides: dict[str, Side], calls: int, rounds: int = ROUNDS
) -> dict[str, ServerTiming]:
    """Server time per call of each side: ``calls`` calls, split over ``rounds`` rounds.

    Each side runs once untimed first (redis-py loads a script on its first NOSCRIPT).
    Then, per round and per side (rotating order): CONFIG RESETSTAT, the calls, INFO
    commandstats. Call ``i`` of a side gets ``i``, so successive calls touch other keys.
    """
    names = list(sides)
    for name in names:
        sides[name].fn(0)
    usec = dict.fromkeys(names, 0)
    counted = dict.fromkeys(names, 0)
    wall: dict[str, list[int]] = {name: [] for name in names}
    bounds = [calls * r // rounds for r in range(rounds + 1)]
    clock = time.perf_counter_ns
    for r in range(rounds):
        start, stop = bounds[r], bounds[r + 1]
        if start == stop:
            continue
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            side, out = sides[name], wall[name]
            client.config_resetstat()
            for i in range(start, stop):
                t0 = clock()
                side.fn(i)
                out.append(clock() - t0)
            entry = client.info("commandstats").get(f"cmdstat_{side.stat}")
            if entry is None:
                raise SystemExit(f"{name}: no cmdstat_{side.stat} in INFO commandstats")
            usec[name] += int(entry["usec"])
            counted[name] += int(entry["calls"])
    result: dict[str, ServerTiming] = {}
    for name in names:
        expected = calls * sides[name].per_call
        result[name] = ServerTiming(
            server_us=usec[name] / calls,
            wall_median_us=float(np.median(np.asarray(wall[name], dtype=np.float64))) / 1e3,
            calls=calls,
            unexpected=None if counted[name] == expected else counted[name],
        )
    return result


@dataclass(frozen=True)
class ServerRow:
    """One line of a server-time table."""

    part: str
    op: str
    n: int
    dim: int
    calls: int
    server_us: float
    per_vector_us: float
    wall_median_us: float
    rel_err: float | None = None
    note: str = ""


def server_table(rows: Sequence[ServerRow], *, ms: bool = False, errors: bool = False) -> str:
    """Server-time rows as a table (``ms``: per call in milliseconds)."""
    head = ["op", "n", "dim", "calls", "server ms/call" if ms else "server us/call"]
    head += ["server us/vector", "client ms/call" if ms else "client median us/call"]
    if errors:
        head.append("rel err vs numpy")
    body: list[list[str]] = []
    for r in rows:
        scale = 1e3 if ms else 1.0
        line = [
            r.op + (f" [{r.note}]" if r.note else ""),
            f"{r.n:,}",
            str(r.dim),
            str(r.calls),
            f"{r.server_us / scale:,.{2 if ms else 1}f}",
            f"{r.per_vector_us:.2f}",
            f"{r.wall_median_us / scale:,.{2 if ms else 1}f}",
        ]
        if errors:
            line.append("-" if r.rel_err is None else f"{r.rel_err:.1e}")
        body.append(line)
    return grid(head, body)


def server_rows(
    part: str,
    timings: dict[str, ServerTiming],
    labels: dict[str, str],
    n: int,
    dim: int,
    errors: dict[str, float] | None = None,
) -> list[ServerRow]:
    """Rows for one (n, dim) case; a count mismatch is flagged in the row's note."""
    out = []
    for name, t in timings.items():
        note = "" if t.unexpected is None else f"server counted {t.unexpected} commands"
        out.append(
            ServerRow(
                part=part,
                op=labels[name],
                n=n,
                dim=dim,
                calls=t.calls,
                server_us=t.server_us,
                per_vector_us=t.server_us / n,
                wall_median_us=t.wall_median_us,
                rel_err=None if errors is None else errors.get(name),
                note=note,
            )
        )
    return out


def rel_err(got: npt.NDArray[Any], ref: npt.NDArray[np.float64]) -> float:
    """||got - ref|| / ||ref||."""
    diff = np.asarray(got, dtype=np.float64) - ref
    return float(np.linalg.norm(diff) / np.linalg.norm(ref))


# ---------------------------------------------------------------- the benchmark


class Bench:
    """The loaded spaces and the measurements."""

    def __init__(self, hub: rediscache.Hub, calls: int) -> None:
        self.hub = hub
        self.calls = calls
        self.client: redis.Redis = hub.client
        self.keys = [f"k{i}" for i in range(KEYS_PER_DIM)]
        self.spaces: dict[int, rediscache.Space] = {}
        self.vectors: dict[int, Vectors] = {}
        #: How many keys were loaded per dim (the big dim may stop at half).
        self.loaded: dict[int, int] = {}
        self.latency: list[Row] = []
        self.server: list[ServerRow] = []
        self.alternatives: list[ServerRow] = []
        self.big: list[ServerRow] = []
        self.notes: list[str] = []

    # ------------------------------------------------------------ setup

    def load(self) -> None:
        """Create the FLAT L2 spaces and load random vectors (put_many, chunks of 1000)."""
        rng = np.random.default_rng(11)
        for dim in DIMS:
            name = space_name(dim)
            self.hub.drop_space(name, missing_ok=True)
            space = self.hub.create_space(name, dim, metric="l2", algorithm="flat")
            self.spaces[dim] = space
            vecs = rng.standard_normal((KEYS_PER_DIM, dim), dtype=np.float32)
            self.vectors[dim] = vecs
            half = KEYS_PER_DIM // 2
            t0 = time.perf_counter()
            for start in range(0, half, LOAD_CHUNK):
                space.put_many(
                    self.keys[start : start + LOAD_CHUNK], vecs[start : start + LOAD_CHUNK]
                )
            first = time.perf_counter() - t0
            self.loaded[dim] = half
            if first > LOAD_BUDGET_S:
                self.notes.append(
                    f"dim {dim}: loading {half} vectors took {first:.1f}s; the other "
                    f"{KEYS_PER_DIM - half} were not loaded (no {KEYS_PER_DIM}-key calls)"
                )
                say(f"dim {dim}: loaded {half} vectors in {first:.1f}s (stopping there)")
                continue
            for start in range(half, KEYS_PER_DIM, LOAD_CHUNK):
                space.put_many(
                    self.keys[start : start + LOAD_CHUNK], vecs[start : start + LOAD_CHUNK]
                )
            total = time.perf_counter() - t0
            self.loaded[dim] = KEYS_PER_DIM
            say(
                f"dim {dim}: loaded {KEYS_PER_DIM} vectors into {name!r} in {total:.1f}s "
                f"({KEYS_PER_DIM / total:,.0f}/s)"
            )

    def drop(self) -> None:
        """Drop the benchmark spaces."""
        for dim in DIMS:
            self.hub.drop_space(space_name(dim), missing_ok=True)

    def windows(self, dim: int, n: int) -> list[int]:
        """Start rows of disjoint windows of ``n`` loaded keys (one window if n = all)."""
        return list(range(0, self.loaded[dim] - n + 1, n))

    def mean_of(self, dim: int, start: int, n: int) -> npt.NDArray[np.float64]:
        """numpy's float64 mean of rows ``start .. start + n`` (the reference)."""
        ref: npt.NDArray[np.float64] = self.vectors[dim][start : start + n].astype(np.float64)
        return np.asarray(ref.mean(axis=0), dtype=np.float64)

    # ------------------------------------------------------------ 1. latency

    def latency_part(self) -> None:
        """average(10) vs a pipeline of 10 HGET + numpy mean; the other ops vs the same."""
        dim = LATENCY_DIM
        space, client = self.spaces[dim], self.client
        size = 10
        starts = self.windows(dim, size)
        batches = [self.keys[s : s + size] for s in starts]
        docs = [space.live_keys.docs(b) for b in batches]
        nb = len(batches)

        def raw(i: int) -> object:
            pipe = client.pipeline(transaction=False)
            for d in docs[i % nb]:
                pipe.hget(d, VECTOR_FIELD)
            rows = np.frombuffer(b"".join(pipe.execute()), dtype="<f4").reshape(size, dim)
            return rows.mean(axis=0)

        def average(i: int) -> object:
            return space.average(batches[i % nb])

        def average_into(i: int) -> object:
            return space.average(batches[i % nb], into="out")

        def combine(i: int) -> object:
            b = batches[i % nb]
            return space.combine(add=[b[0], b[1]], subtract=[b[2]])

        def combine_into(i: int) -> object:
            b = batches[i % nb]
            return space.combine(add=[b[0], b[1]], subtract=[b[2]], into="out")

        def update(i: int) -> object:
            return space.update_mean("user", [batches[i % nb][0]])

        def update_ema(i: int) -> object:
            return space.update_mean("user_ema", [batches[i % nb][0]], alpha=0.1)

        # Correctness first (the first update_mean calls start absent embeddings: = the item).
        ref = self.mean_of(dim, starts[0], size)
        vecs = self.vectors[dim]
        checks = {
            "average": rel_err(np.asarray(average(0)), ref),
            "raw": rel_err(np.asarray(raw(0)), ref),
            "average into": rel_err(np.asarray(average_into(0)), ref),
            "combine": rel_err(
                np.asarray(combine(0)),
                _unit(vecs[0].astype(np.float64) + vecs[1] - vecs[2]),
            ),
            "combine into": rel_err(
                np.asarray(combine_into(0)),
                _unit(vecs[0].astype(np.float64) + vecs[1] - vecs[2]),
            ),
        }
        space.delete("user", "user_ema")
        checks["update_mean"] = rel_err(np.asarray(update(0)), vecs[0].astype(np.float64))
        checks["update_mean ema"] = rel_err(np.asarray(update_ema(0)), vecs[0].astype(np.float64))
        bad = {k: v for k, v in checks.items() if not v < 1e-6}
        if bad:
            raise SystemExit(f"latency part: results disagree with numpy: {bad}")
        sides: dict[str, Call] = {
            "raw": raw,
            "average": average,
            "average_into": average_into,
            "combine": combine,
            "combine_into": combine_into,
            "update": update,
            "update_ema": update_ema,
        }
        t = measure(sides, self.calls)
        base = t["raw"]
        labels = {
            "average": ("average(10)", TARGET),
            "average_into": ('average(10, into="out")', None),
            "combine": ("combine(add=[k1,k2], subtract=[k3])", None),
            "combine_into": ('combine(add=[k1,k2], subtract=[k3], into="out")', None),
            "update": ('update_mean("user", [k])', None),
            "update_ema": ('update_mean("user", [k], alpha=0.1)', None),
        }
        baseline = "pipeline of 10 HGET (transaction=False) + numpy mean (not atomic)"
        for name, (op, limit) in labels.items():
            self.latency.append(latency_row(op, baseline, t[name], base, limit))

    # ------------------------------------------------------------ 2. server time

    def server_part(self) -> None:
        """Server time per call of the three scripts (and the raw HGETs) by n and dim."""
        for dim in DIMS:
            for n in SERVER_NS:
                self._server_case(dim, n)

    def _server_case(self, dim: int, n: int) -> None:
        space, client = self.spaces[dim], self.client
        starts = self.windows(dim, n)
        batches = [self.keys[s : s + n] for s in starts]
        docs = [space.live_keys.docs(b) for b in batches]
        nb = len(batches)
        ref = self.mean_of(dim, starts[0], n)
        got = {"gather": space.average(batches[0])}
        computes = _fits(space, batches[0])  # into= and update_mean: bounded server work
        if computes:
            got["combine"] = space.average(batches[0], into="out")
        for what, vec in got.items():
            if not rel_err(np.asarray(vec), ref) < 1e-6:
                raise SystemExit(f"{what} at n={n} dim={dim} disagrees with numpy")

        def gather(i: int) -> object:
            return space.average(batches[i % nb])

        def combine(i: int) -> object:
            return space.average(batches[i % nb], into="out")

        def update(i: int) -> object:
            return space.update_mean("u", batches[i % nb])

        def raw(i: int) -> object:
            pipe = client.pipeline(transaction=False)
            for d in docs[i % nb]:
                pipe.hget(d, VECTOR_FIELD)
            return pipe.execute()

        sides = {
            "gather": Side(gather, "evalsha_ro"),  # a read-only script (EVALSHA_RO)
            "combine": Side(combine, "evalsha"),
            "update": Side(update, "evalsha"),
            "raw": Side(raw, "hget", n),
        }
        if not computes:
            say(f"  server time: n={n} dim={dim}: into= and update_mean refused (over the "
                "library's bound on one script's work), measured without them")  # fmt: skip
            del sides["combine"], sides["update"]
        labels = {
            "gather": "gather.lua = average(keys)",
            "combine": 'combine.lua = average(keys, into="out")',
            "update": 'update_mean.lua = update_mean("u", keys)',
            "raw": "raw pipeline: n x HGET (sum of their server time)",
        }
        calls = max(5, self.calls // n)
        say(f"  server time: n={n} dim={dim}, {calls} calls per side ...")
        timings = server_times(client, sides, calls)
        self.server.extend(server_rows("server", timings, labels, n, dim))

    # ------------------------------------------------------------ 3. Lua alternatives

    def alternatives_part(self) -> None:
        """Plain means in Lua, formulated four ways: checked against numpy, then timed."""
        scripts = {
            name: self.client.register_script((ALT_DIR / f"{name}.lua").read_text(encoding="utf-8"))
            for name in ALTERNATIVES
        }
        for n in ALT_NS:
            self._alternatives_case(LATENCY_DIM, n, scripts)

    def _alternatives_case(self, dim: int, n: int, scripts: dict[str, Any]) -> None:
        space = self.spaces[dim]
        starts = self.windows(dim, n)
        docs = [space.live_keys.docs(self.keys[s : s + n]) for s in starts]
        ref = self.mean_of(dim, starts[0], n)
        errors: dict[str, float] = {}
        sides: dict[str, Side] = {}
        for name, script in scripts.items():
            reply = script(keys=docs[0], args=[VECTOR_FIELD, dim])
            if name in ("d_gather", "e_gather_array"):
                joined = reply if isinstance(reply, bytes) else b"".join(reply)
                rows = np.frombuffer(joined, dtype="<f4").reshape(n, dim)
                got = rows.astype(np.float64).mean(axis=0)
            else:
                got = np.frombuffer(reply, dtype="<f8")
            errors[name] = rel_err(got, ref)
            if not errors[name] < 1e-9:
                raise SystemExit(f"{name}.lua at n={n}: relative error {errors[name]:.2e}")
            sides[name] = Side(script_call(script, docs, dim), "evalsha")
        calls = max(20, self.calls // n)
        say(f"  alternatives: n={n} dim={dim}, {calls} calls each ...")
        timings = server_times(self.client, sides, calls)
        self.alternatives.extend(server_rows("alternatives", timings, ALTERNATIVES, n, dim, errors))

    # ------------------------------------------------------------ 4. the largest calls

    def big_part(self) -> None:
        """average(keys) and average(keys, into=...) at 1000, 5000 and 10000 keys."""
        for dim in DIMS:
            for n in BIG_NS:
                if n > self.loaded[dim]:
                    say(f"  largest calls: n={n} dim={dim} skipped ({self.loaded[dim]} loaded)")
                    continue
                self._big_case(dim, n)

    def _big_case(self, dim: int, n: int) -> None:
        space = self.spaces[dim]
        batches = [self.keys[s : s + n] for s in self.windows(dim, n)]
        nb = len(batches)

        def gather(i: int) -> object:
            return space.average(batches[i % nb])

        def combine(i: int) -> object:
            return space.average(batches[i % nb], into="out")

        # average without into= runs as EVALSHA_RO (a read-only script)
        sides = {"gather": Side(gather, "evalsha_ro"), "combine": Side(combine, "evalsha")}
        if not _fits(space, batches[0]):
            say(f"  largest calls: n={n} dim={dim}: into= refused (over the library's bound on "
                "one script's work), measured without it")  # fmt: skip
            del sides["combine"]
        labels = {
            "gather": "gather.lua = average(keys)",
            "combine": 'combine.lua = average(keys, into="out")',
        }
        calls = max(3, self.calls // n)
        say(f"  largest calls: n={n} dim={dim}, {calls} calls each ...")
        timings = server_times(self.client, sides, calls, rounds=calls)
        self.big.extend(server_rows("big", timings, labels, n, dim))


def _fits(space: rediscache.Space, keys: list[str]) -> bool:
    """Whether the library accepts ``into=`` / update_mean over ``keys`` (it refuses a
    script that would block the server too long: rediscache.operations.COMPUTE_FLOATS)."""
    try:
        space.average(keys, into="out")
    except rediscache.InvalidInputError:
        return False
    return True


def script_call(script: Any, docs: list[list[str]], dim: int) -> Call:
    """A call of a registered script on window ``i % len(docs)`` of document keys."""
    nb = len(docs)

    def run(i: int) -> object:
        return script(keys=docs[i % nb], args=[VECTOR_FIELD, dim])

    return run


def _unit(vec: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = vec / np.linalg.norm(vec)
    return out


# ---------------------------------------------------------------- main


def busy_threshold(client: redis.Redis) -> str:
    """The server's busy-reply-threshold (lua-time-limit) in ms, or why it is unknown."""
    for name in ("busy-reply-threshold", "lua-time-limit"):
        try:
            got = client.config_get(name)
        except redis.ResponseError as exc:
            return f"unknown ({exc})"
        if got:
            return f"{name} {next(iter(got.values()))} ms"
    return "unknown"


def machine(hub: rediscache.Hub, where: str, versions: dict[str, str]) -> str:
    """The caveat line: cores, transport, versions."""
    kind = hub.client.connection_pool.connection_kwargs
    transport = "unix socket" if kind.get("path") else "tcp"
    cores = len(os.sched_getaffinity(0))
    return (
        f"machine: {cores} usable cores (nproc), {os.cpu_count()} online; client and server on "
        f"the same box over {transport} ({where}); Redis {versions['redis']}, search "
        f"{versions['search']}; redis-py {redis.__version__}, numpy {np.__version__}, Python "
        f"{sys.version.split()[0]}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description="rediscache embedding operations and their Lua")
    p.add_argument("--url", help="redis:// URL (default: a private embedded server)")
    p.add_argument(
        "--calls",
        type=int,
        default=1000,
        help="calls per side for the latency part (default 1000); server-time cases with n "
        "keys use max(5, calls // n)",
    )
    p.add_argument("--json", type=Path, help="also write the results to this file")
    args = p.parse_args(argv)
    if args.calls < 20:
        p.error("--calls must be at least 20")
    return args


def report(bench: Bench, calls: int, caveat: str, busy: str) -> None:
    """Print every table and the conclusions' numbers."""
    say()
    say(f"1. latency, dim {LATENCY_DIM}, {calls} calls per side (alternating blocks)")
    say(caveat)
    say("ratio = operation median / baseline median")
    say()
    say(format_table(bench.latency))
    say(f"baseline: {bench.latency[0].baseline}")
    say()
    say("2. server time per call (INFO commandstats: usec of EVALSHA, or of the n HGETs)")
    say("   per vector = per call / n (update_mean also reads and writes its target)")
    say()
    say(server_table(bench.server))
    say()
    say(f"3. Lua alternatives for a plain mean, dim {LATENCY_DIM} (lua_alternatives/*.lua)")
    say()
    say(server_table(bench.alternatives, errors=True))
    for n in ALT_NS:
        rows = {r.op: r for r in bench.alternatives if r.n == n}
        read = rows[ALTERNATIVES["d_gather"]].server_us
        extra = ", ".join(
            f"{key[:1]} {(rows[label].server_us - read) / n:.1f}"
            for key, label in ALTERNATIVES.items()
            if key not in ("d_gather", "e_gather_array")
        )
        say(f"   n={n}: arithmetic over reading, us per vector: {extra}")
    say()
    say("4. the largest calls (server time; Redis serves no other client meanwhile)")
    say(f"   server's limit before BUSY replies to other clients: {busy}")
    say()
    say(server_table(bench.big, ms=True))
    for note in bench.notes:
        say(f"NOTE: {note}")
    say()
    target = bench.latency[0]
    say(
        f"target average(10) <= {TARGET:.2f}x raw: ratio {target.ratio:.3f} "
        f"({'met' if target.met else 'NOT met'})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the four parts, print the tables, optionally write JSON."""
    args = parse_args(argv)
    t_start = time.perf_counter()
    with open_hub(args.url) as (hub, where):
        versions = hub.server_versions()
        caveat = machine(hub, where, versions)
        busy = busy_threshold(hub.client)
        say(caveat)
        bench = Bench(hub, args.calls)
        try:
            bench.load()
            # The loaded vectors are long-lived: keep the cyclic GC from rescanning them.
            gc.collect()
            gc.freeze()
            say(f"1. latency ({args.calls} calls per side) ...")
            bench.latency_part()
            say("2. server time of the scripts ...")
            bench.server_part()
            say("3. Lua alternatives ...")
            bench.alternatives_part()
            say("4. the largest calls ...")
            bench.big_part()
        finally:
            bench.drop()
    report(bench, args.calls, caveat, busy)
    say(f"total run time {time.perf_counter() - t_start:.0f}s")

    if args.json is not None:
        payload = {
            "calls": args.calls,
            "machine": caveat,
            "versions": versions,
            "busy_threshold": busy,
            "latency": [asdict(r) for r in bench.latency],
            "server_time": [asdict(r) for r in bench.server],
            "alternatives": [asdict(r) for r in bench.alternatives],
            "largest": [asdict(r) for r in bench.big],
            "notes": bench.notes,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
