"""Import rate of the ``rediscache import`` command against put_many (run by hand).

    PYTHONPATH=. python benchmarks/bench_import.py [--data DIR] [--rounds R] [--json PATH]

Loads the 20,000 dev embeddings (``vectors.npy`` + ``meta.jsonl``, every metadata field) into a
fresh space, alternately (a) with the installed ``rediscache import`` console script, as an
operator would, and (b) with ``Space.put_many`` from arrays already in memory, on one private
embedded server. Reports, per round and as medians: the rate the command prints (rows written
per second of import work, file reading and checks included), the command's wall time with
process start-up, and put_many's rate; then their ratio. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import rediscache
from rediscache import server

FIELDS = {"category": "tag", "month": "numeric"}


def main() -> None:
    """Run the comparison and print the table."""
    here = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=here.parent / "shared" / "data" / "dev")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", type=Path, help="also write the results to this file")
    args = p.parse_args()
    vectors_path, meta_path = args.data / "vectors.npy", args.data / "meta.jsonl"
    if not vectors_path.is_file():
        sys.exit(f"no dev data in {args.data} (pass --data)")
    script = Path(sys.executable).parent / "rediscache"
    if not script.exists():
        sys.exit(f"the rediscache console script is not installed beside {sys.executable}")

    vectors = np.load(vectors_path)
    with meta_path.open(encoding="utf-8") as f:
        metas = [json.loads(line) for line in f]
    keys = [str(m.pop("id")) for m in metas]

    tmp = Path(tempfile.mkdtemp(prefix="rc-bench-import-"))
    rows: list[dict[str, Any]] = []
    try:
        server.start(server.ServerConfig(data_dir=tmp))
        with rediscache.connect(data_dir=tmp) as hub:
            for r in range(args.rounds):
                hub.drop_space("bench_cli", missing_ok=True)
                hub.create_space("bench_cli", vectors.shape[1], fields=FIELDS)
                t0 = time.perf_counter()
                out = subprocess.run(
                    [str(script), "--data-dir", str(tmp), "--json", "import", "bench_cli",
                     str(vectors_path), "--meta", str(meta_path)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                wall = time.perf_counter() - t0
                report = json.loads(out.stdout)
                hub.drop_space("bench_cli")

                hub.drop_space("bench_pm", missing_ok=True)
                space = hub.create_space("bench_pm", vectors.shape[1], fields=FIELDS)
                t0 = time.perf_counter()
                space.put_many(keys, vectors, metas)
                pm = time.perf_counter() - t0
                hub.drop_space("bench_pm")
                row = {
                    "round": r + 1,
                    "rows": report["written"],
                    "cli_rate": report["rate"],
                    "cli_wall_rate": report["written"] / wall,
                    "put_many_rate": len(keys) / pm,
                }
                rows.append(row)
                print(
                    f"round {r + 1}: import {row['cli_rate']:,.0f} rows/s "
                    f"({row['cli_wall_rate']:,.0f} with start-up), "
                    f"put_many {row['put_many_rate']:,.0f} rows/s",
                    flush=True,
                )
            versions = hub.server_versions()
    finally:
        server.stop(tmp)
        shutil.rmtree(tmp, ignore_errors=True)

    med = {k: float(np.median([r[k] for r in rows])) for k in rows[0] if k.endswith("rate")}
    print(f"\n{len(keys):,} rows x {vectors.shape[1]}, Redis {versions['redis']}, "
          f"search {versions['search']}; medians over {len(rows)} rounds")  # fmt: skip
    print(f"rediscache import (rate it reports)  {med['cli_rate']:>8,.0f} rows/s  "
          f"x{med['cli_rate'] / med['put_many_rate']:.2f} of put_many")  # fmt: skip
    print(f"rediscache import (wall, start-up)   {med['cli_wall_rate']:>8,.0f} rows/s  "
          f"x{med['cli_wall_rate'] / med['put_many_rate']:.2f} of put_many")  # fmt: skip
    print(f"put_many from memory                 {med['put_many_rate']:>8,.0f} rows/s")
    if args.json:
        args.json.write_text(json.dumps({"rounds": rows, "medians": med}, indent=2))


if __name__ == "__main__":
    main()
