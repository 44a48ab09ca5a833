"""Build rediscache/data/sample.npz from ../shared/data/dev (run by hand; output is committed).

The sample holds 2,000 rows chosen with a fixed seed: their float16 vectors, row ids, package
names, categories and months. The ``text`` field is third-party prose and is NOT copied.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROWS = 2000
SEED = 20261124


def main(dev: Path, out: Path) -> None:
    vectors = np.load(dev / "vectors.npy", mmap_mode="r")
    with (dev / "meta.jsonl").open() as fh:
        meta = [json.loads(line) for line in fh]
    rows = np.sort(np.random.default_rng(SEED).choice(len(meta), ROWS, replace=False))
    np.savez_compressed(
        out,
        ids=rows.astype(np.int32),
        vectors=np.asarray(vectors[rows], dtype=np.float16),
        names=np.array([meta[i]["name"] for i in rows]),
        categories=np.array([meta[i]["category"] for i in rows]),
        months=np.array([meta[i]["month"] for i in rows], dtype=np.int32),
    )
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {ROWS} rows)")


if __name__ == "__main__":
    here = Path(__file__).resolve().parent.parent
    main(
        Path(sys.argv[1]) if len(sys.argv) > 1 else here.parent / "shared" / "data" / "dev",
        here / "rediscache" / "data" / "sample.npz",
    )
