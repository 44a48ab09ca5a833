"""What changed between two sides of a space (two versions, or a version and the live
space): keys added, removed and changed, cosine drift, and neighbourhood overlap.

Used by :meth:`rediscache.Space.diff`; a side is a target with its reads and searches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .codec import unpack_metadata
from .effects import Flow
from .reads import BatchScan, Reads
from .search import Searches
from .target import Target

#: One side of a diff: what it reads, its reads and its searches.
Side = tuple[Target, Reads, Searches]

__all__ = ["Diff", "Drift", "compare", "drift_stats"]


@dataclass(frozen=True)
class Drift:
    """Cosine distance between the old and new vectors of the keys two sides share."""

    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float


@dataclass(frozen=True)
class Diff:
    """What changed from side ``a`` to side ``b`` (from :meth:`rediscache.Space.diff`).

    ``changed`` lists keys present in both whose vector or metadata differ. ``drift`` is over
    every common key (an identical vector counts as exactly 0); ``changed_drift`` over the
    changed keys only, so that a few moved keys among many still show. ``neighbour_overlap``
    is the mean share of a sampled common key's nearest neighbours that are the same on both
    sides (1.0: the neighbourhoods did not move), or None when fewer than 2 keys are common.
    It compares ``k_used`` neighbours: ``k``, or one less than the common keys when there are
    not more than ``k`` of them; then every key is every other's neighbour and an overlap of
    1.0 says nothing (``overlap_note`` says so).
    """

    a: str
    b: str
    added: list[str]
    removed: list[str]
    changed: list[str]
    unchanged: int
    drift: Drift
    neighbour_overlap: float | None
    overlap_sample: int
    k: int
    changed_drift: Drift = Drift(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    k_used: int = 0
    overlap_note: str | None = None


def drift_stats(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], Drift]:
    """Cosine distance of each row of ``a`` to the same row of ``b``, and its summary.

    Identical rows count as exactly 0 (not the rounding error of a cosine), rows that are
    zero on both sides too; a zero row on one side counts as 1.
    """
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    if a64.shape[0] == 0:
        return np.empty(0), Drift(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    na = np.linalg.norm(a64, axis=1)
    nb = np.linalg.norm(b64, axis=1)
    dots = np.einsum("ij,ij->i", a64, b64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = dots / (na * nb)
    both_zero = (na == 0) & (nb == 0)
    cos = np.where(both_zero, 1.0, np.where((na == 0) | (nb == 0), 0.0, cos))
    dist = np.clip(1.0 - cos, 0.0, 2.0)
    dist[(a64 == b64).all(axis=1)] = 0.0
    return dist, _summary(dist)


def _summary(dist: npt.NDArray[Any]) -> Drift:
    """The :class:`Drift` of some distances (all zeros when there are none)."""
    if dist.size == 0:
        return Drift(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    p50, p90, p99 = np.percentile(dist, [50, 90, 99])
    return Drift(
        int(dist.size), float(dist.mean()), float(p50), float(p90), float(p99), float(dist.max())
    )


def compare(
    side_a: Side, side_b: Side, a_name: str, b_name: str, *, sample: int, k: int, seed: int
) -> Flow[Diff]:
    """The :class:`Diff` from ``side_a`` to ``side_b`` (named ``a_name`` / ``b_name``).

    Reads every document of both sides in batches, plus ``2 * sample`` searches in two
    pipelines (see :meth:`rediscache.Space.diff`).
    """
    b_keys: set[str] = set()
    scan_b = BatchScan(side_b[0], 1000, False)
    while not scan_b.done:
        batch = yield from scan_b.step()
        if batch is not None:
            b_keys.update(batch[0])
    removed: list[str] = []
    changed: list[str] = []
    common: list[str] = []
    va: list[npt.NDArray[Any]] = []
    vb: list[npt.NDArray[Any]] = []
    codec_b = side_b[0].codec
    scan_a = BatchScan(side_a[0], 1000, True)
    while not scan_a.done:
        step = yield from scan_a.step()
        if step is None:
            continue
        keys, vectors, metas = step
        shared = [i for i, key in enumerate(keys) if key in b_keys]
        removed.extend(key for key in keys if key not in b_keys)
        if not shared:
            continue
        names = [keys[i] for i in shared]
        other = yield from side_b[1].records(names)
        assert metas is not None
        for i, name, (raw, meta) in zip(shared, names, other):
            if raw is None:  # deleted from the live side meanwhile
                removed.append(name)
                continue
            vec = codec_b.decode(raw, name)
            if not np.array_equal(vec, vectors[i]) or unpack_metadata(meta) != metas[i]:
                changed.append(name)
            common.append(name)
            va.append(vectors[i])
            vb.append(vec)
    a_keys = set(common) | set(removed)
    added = sorted(b_keys - a_keys)
    dim = side_a[0].codec.dim
    # in key order, not SCAN's: the sample of the overlap then depends on the seed only
    order = sorted(range(len(common)), key=common.__getitem__)
    common = [common[i] for i in order]
    mat_a = np.array(va).reshape(-1, dim)[order]
    mat_b = np.array(vb).reshape(-1, dim)[order]
    dist, drift = drift_stats(mat_a, mat_b)
    moved = set(changed)
    changed_drift = _summary(dist[[i for i, name in enumerate(common) if name in moved]])
    overlap, used = yield from _neighbour_overlap(
        side_a[2], side_b[2], common, mat_a, mat_b, sample, k, seed
    )
    k_used = min(k, len(common) - 1) if len(common) >= 2 else 0
    note = None
    if overlap is not None and k_used < k:
        note = (
            f"only {len(common)} keys are common, so each key's {k_used} neighbours are all "
            "the other keys: the overlap is 1.0 whatever moved; compare with k below "
            f"{len(common) - 1}"
        )
    return Diff(
        a=a_name,
        b=b_name,
        added=added,
        removed=sorted(removed),
        changed=sorted(changed),
        unchanged=len(common) - len(changed),
        drift=drift,
        neighbour_overlap=overlap,
        overlap_sample=used,
        k=k,
        changed_drift=changed_drift,
        k_used=k_used,
        overlap_note=note,
    )


def _neighbour_overlap(
    search_a: Searches,
    search_b: Searches,
    common: Sequence[str],
    mat_a: npt.NDArray[Any],
    mat_b: npt.NDArray[Any],
    sample: int,
    k: int,
    seed: int,
) -> Flow[tuple[float | None, int]]:
    n = len(common)
    kk = min(k, n - 1)
    if n < 2 or sample == 0:
        return None, 0
    rows = np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False)
    hits_a = yield from search_a.search_many(mat_a[rows], kk + 1, with_metadata=False)
    hits_b = yield from search_b.search_many(mat_b[rows], kk + 1, with_metadata=False)
    shares = []
    for row, ha, hb in zip(rows, hits_a, hits_b):
        me = common[row]
        na = [h.key for h in ha if h.key != me][:kk]
        nb = [h.key for h in hb if h.key != me][:kk]
        shares.append(len(set(na) & set(nb)) / kk)
    return float(np.mean(shares)), len(shares)
