"""The demo: load the bundled sample of real embeddings, then search it.

The sample (``rediscache/data/sample.npz``) holds 2,000 real 384-d sentence embeddings
(all-MiniLM-L6-v2 over PyPI package summaries, stored as float16) with each package's name,
category and latest-release month. Only names and numbers ship; no summary text.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt

from .hub import Hub
from .space import Space

__all__ = ["DEMO_SPACE", "Sample", "load_sample", "run_demo"]

#: Name of the space the demo (re)creates.
DEMO_SPACE = "demo"
#: Packages of the sample whose neighbours the demo prints.
PROBES = ("pandas-extras", "pytest-bench", "pdf-suite")


@dataclass(frozen=True)
class Sample:
    """The bundled sample: row ids into the dev set, vectors and metadata columns."""

    ids: npt.NDArray[np.int32]
    vectors: npt.NDArray[np.float32]
    names: list[str]
    categories: list[str]
    months: npt.NDArray[np.int32]

    def keys(self) -> list[str]:
        """Keys used by the demo: the package names (unique in the sample)."""
        return list(self.names)

    def metadata(self) -> list[dict[str, Any]]:
        """One metadata dict per row."""
        return [
            {"name": n, "category": c, "month": int(m), "row": int(i)}
            for n, c, m, i in zip(self.names, self.categories, self.months, self.ids)
        ]


def load_sample() -> Sample:
    """Load the sample shipped inside the package (works from an installed wheel)."""
    ref = resources.files("rediscache") / "data" / "sample.npz"
    with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as z:
        return Sample(
            ids=z["ids"],
            vectors=z["vectors"].astype(np.float32),
            names=[str(s) for s in z["names"]],
            categories=[str(s) for s in z["categories"]],
            months=z["months"],
        )


def _row(hit_key: str, distance: float, meta: dict[str, Any]) -> str:
    tags = f"[{meta.get('category', '?')}, {meta.get('month', '?')}]"
    return f"    {distance:6.3f}  {hit_key:<34} {tags}"


def run_demo(hub: Hub, echo: Callable[[str], None] = print) -> Space:
    """Recreate the ``demo`` space from the sample and print a few searches. Returns the space."""
    sample = load_sample()
    versions = hub.server_versions()
    echo(f"Redis {versions['redis']} with search {versions['search']}")
    hub.drop_space(DEMO_SPACE, missing_ok=True)
    space = hub.create_space(
        DEMO_SPACE,
        sample.vectors.shape[1],
        metric="cosine",
        fields={"category": "tag", "month": "numeric"},
    )
    assert isinstance(space, Space)  # created without partitions
    t0 = time.perf_counter()
    n = space.put_many(sample.keys(), sample.vectors, sample.metadata())
    dt = time.perf_counter() - t0
    echo(f"stored {n} embeddings ({space.dim}-d, cosine, HNSW) in {dt:.2f}s ({n / dt:,.0f}/s)")

    echo("(distances are cosine distances, 1 - cos: lower is closer)")
    names = sample.names
    probes = [n for n in PROBES if n in set(names)] or [names[0], names[len(names) // 2]]
    for name in probes:
        echo(f"\nnearest neighbours of {name!r}:")
        for h in space.similar(name, 5):
            echo(_row(h.key, h.distance, h.metadata))

    probe = probes[0]
    vec = space.get(probe)
    assert vec is not None
    echo(f"\nnearest to {probe!r} among 'data-science' packages released since 2025:")
    flt = {"category": "data-science", "month": (202501, None)}
    for h in space.search(vec, 5, filter=flt):
        echo(_row(h.key, h.distance, h.metadata))

    liked = probes[:2]
    if len(liked) == 2:
        echo(f"\na user who clicked {liked[0]!r}, then {liked[1]!r} (a running mean, atomic):")
        for item in liked:
            user = space.update_mean("user:demo", [item])
        space.delete("user:demo")
        for h in space.search(user, 5, exclude=liked):
            echo(_row(h.key, h.distance, h.metadata))

    latencies = []
    for q in sample.vectors[:200]:
        t = time.perf_counter()
        space.search(q, 10)
        latencies.append(time.perf_counter() - t)
    lat = np.array(latencies) * 1e6
    med, p99 = np.median(lat), np.percentile(lat, 99)
    echo(f"\n200 searches (k=10): median {med:.0f} us, p99 {p99:.0f} us")
    return space
