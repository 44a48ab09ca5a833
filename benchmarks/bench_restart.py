"""Benchmark restarts of the embedded server: time to ready and to complete indexes, per 10k
vectors, and what dropping a space leaves for the next start (by hand).

    PYTHONPATH=. python benchmarks/bench_restart.py [--data DIR] [--restarts R] [--json PATH]

Each case runs on a private embedded server in a temporary data directory (AOF, fsync
everysec, as shipped), in one run:

* load a space (HNSW, M 16, EF_CONSTRUCTION 200), stop the server cleanly, then start it R
  times: seconds until it answers (the AOF replayed: ``start()`` returns) and until every
  index reports complete (FT.INFO ``indexing`` 0, ``percent_indexed`` 1): medians, and the
  same per 10k vectors. Cases: the dev set (20k x 384, cosine; or the bundled 2k sample) and
  60k x 64 Gaussian vectors (l2), the two sizes issue 13 reported.
* a second space of the same data is dropped, with ``compact=False`` (the AOF keeps every
  write of it) and with ``compact=True`` (drop_space asks for BGREWRITEAOF): the AOF's size
  and the next start's time, against the start of the same data dir before the second space
  existed.

A restart's cost is replaying the AOF plus rebuilding every HNSW index from the stored
vectors (indexes are not persisted by RediSearch 2.10): it grows with the number of vectors
and their dim, and on a busy 2-core machine it varies by 2x between runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import rediscache
from rediscache import server
from rediscache.ftsearch import index_done

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_core import load_bundled, load_dev, say  # noqa: E402

DEV = HERE.parent.parent / "shared" / "data" / "dev"


def aof_bytes(data_dir: Path) -> int:
    """Bytes of every file of the data dir's AOF (base, increments, manifest)."""
    return sum(f.stat().st_size for f in (data_dir / "appendonlydir").iterdir())


def restart(data_dir: Path) -> tuple[float, float]:
    """Stop and start the server of ``data_dir``: seconds until it answers, and until every
    index is complete (both from the start call)."""
    server.stop(data_dir)
    t0 = time.perf_counter()
    info, started = server.start(server.ServerConfig(data_dir=data_dir, start_timeout=3600))
    assert started
    ready = time.perf_counter() - t0
    with info.client(protocol=2) as client:
        while True:
            names = client.execute_command("FT._LIST")
            if all(index_done(client.execute_command("FT.INFO", n)) >= 1 for n in names):
                break
            time.sleep(0.05)
    return ready, time.perf_counter() - t0


def load(hub: rediscache.Hub, name: str, vectors: npt.NDArray[np.float32], metric: str) -> float:
    """Create space ``name`` and put ``vectors`` in it; returns the seconds it took."""
    space = hub.create_space(name, vectors.shape[1], metric=metric, algorithm="hnsw")
    t0 = time.perf_counter()
    space.put_many([f"v{i}" for i in range(len(vectors))], vectors)
    return time.perf_counter() - t0


def case(
    label: str, vectors: npt.NDArray[np.float32], metric: str, restarts: int
) -> dict[str, Any]:
    n = len(vectors)
    tmp = Path(tempfile.mkdtemp(prefix="rc-restart-"))
    try:
        server.start(server.ServerConfig(data_dir=tmp))
        with rediscache.connect(data_dir=tmp) as hub:
            load_s = load(hub, "a", vectors, metric)
        say(f"{label}: loaded {n:,} vectors in {load_s:.1f} s; AOF {aof_bytes(tmp) / 1e6:.1f} MB")
        times = [restart(tmp) for _ in range(restarts)]
        ready = statistics.median(t[0] for t in times)
        complete = statistics.median(t[1] for t in times)
        per10k = 10_000 / n
        say(
            f"  restart: ready after {ready:.2f} s, indexes complete after {complete:.2f} s "
            f"(medians of {restarts}); per 10k vectors: {ready * per10k:.2f} s / "
            f"{complete * per10k:.2f} s"
        )
        out: dict[str, Any] = {
            "case": label,
            "vectors": n,
            "dim": int(vectors.shape[1]),
            "restart_ready_s": ready,
            "restart_complete_s": complete,
            "ready_per_10k_s": ready * per10k,
            "complete_per_10k_s": complete * per10k,
        }
        for compact in (False, True):
            with rediscache.connect(data_dir=tmp) as hub:
                load(hub, "b", vectors, metric)
                hub.drop_space("b", compact=compact)
                if compact:  # the rewrite runs in the background: let it finish
                    while int(hub.client.info("persistence")["aof_rewrite_in_progress"]):
                        time.sleep(0.1)
            size = aof_bytes(tmp)
            after = [restart(tmp) for _ in range(restarts)]
            ready_after = statistics.median(t[0] for t in after)
            complete_after = statistics.median(t[1] for t in after)
            word = "compact=True " if compact else "compact=False"
            say(
                f"  after drop_space({word}) of a second {n:,}-vector space: AOF "
                f"{size / 1e6:.1f} MB, restart ready after {ready_after:.2f} s, indexes "
                f"complete after {complete_after:.2f} s ({complete_after / complete:.2f}x "
                "the start before it existed)"
            )
            out[f"drop_compact_{compact}".lower()] = {
                "aof_bytes": size,
                "restart_ready_s": ready_after,
                "restart_complete_s": complete_after,
                "ratio": complete_after / complete,
            }
        return out
    finally:
        server.stop(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEV, help="dev data dir (default ../shared)")
    parser.add_argument("--restarts", type=int, default=3, help="restarts per measurement")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if (args.data / "vectors.npy").is_file():
        dev = load_dev(args.data, 20_000)
    else:
        dev = load_bundled(2_000)
    say(f"data: {dev.source}")
    rng = np.random.default_rng(0)
    results = [
        case(f"dev {len(dev.vectors):,} x 384 cosine", dev.vectors, "cosine", args.restarts),
        case(
            "60,000 x 64 gaussian l2",
            rng.standard_normal((60_000, 64)).astype(np.float32),
            "l2",
            args.restarts,
        ),
    ]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
