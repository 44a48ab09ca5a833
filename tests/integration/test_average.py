"""average.lua against numpy, and the script surviving SCRIPT FLUSH."""

from __future__ import annotations

import numpy as np
import pytest

import rediscache
from rediscache import Hub


@pytest.mark.parametrize("dim", [1, 384, 9000])
def test_average_matches_numpy(hub: Hub, space_name: str, dim: int) -> None:
    space = hub.create_space(space_name, dim, metric="l2", algorithm="flat")
    vecs = np.random.default_rng(dim).standard_normal((10, dim)).astype(np.float32)
    keys = [f"k{i}" for i in range(10)]
    space.put_many(keys, vecs)
    np.testing.assert_allclose(space.average(keys), vecs.mean(axis=0), rtol=1e-5, atol=1e-6)
    w = np.arange(1, 11, dtype=np.float64)
    want = (vecs * w[:, None]).sum(axis=0) / w.sum()
    np.testing.assert_allclose(space.average(keys, weights=w), want, rtol=1e-5, atol=1e-6)
    unit = space.average(keys[:3], normalize=True)
    assert np.linalg.norm(unit) == pytest.approx(1.0, rel=1e-6)


def test_average_errors(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 2, metric="l2", algorithm="flat")
    space.put_many(["a", "b"], [[1, 0], [-1, 0]])
    with pytest.raises(rediscache.KeyNotFoundError, match="'zz'"):
        space.average(["a", "zz"])
    with pytest.raises(rediscache.InvalidInputError, match="at least one"):
        space.average([])
    with pytest.raises(rediscache.InvalidInputError, match="weights"):
        space.average(["a", "b"], weights=[1, np.nan])
    with pytest.raises(rediscache.InvalidInputError, match="zero vector"):
        space.average(["a", "b"], normalize=True)


def test_average_survives_script_flush(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 2, metric="l2", algorithm="flat")
    space.put_many(["a", "b"], [[1, 2], [3, 4]])
    np.testing.assert_allclose(space.average(["a", "b"]), [2, 3])
    hub.client.script_flush()
    np.testing.assert_allclose(space.average(["a", "b"]), [2, 3])
