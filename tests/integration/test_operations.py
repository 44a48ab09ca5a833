"""average / combine / update_mean against numpy, on a real server (Lua)."""

from __future__ import annotations

import numpy as np
import pytest
from both import in_threads
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import rediscache
from rediscache import Hub


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got.astype(np.float64) - want) / max(np.linalg.norm(want), 1e-30))


def make(hub: Hub, name: str, dim: int, metric: str = "l2") -> rediscache.Space:
    hub.drop_space(name, missing_ok=True)
    return hub.create_space(name, dim, metric=metric, algorithm="flat")


# ----------------------------------------------------------------- property tests vs numpy

PROPS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPS
@given(
    dim=st.integers(1, 2048),
    n=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
    weighted=st.booleans(),
    into=st.booleans(),
)
def test_average_matches_numpy(
    hub: Hub, space_name: str, dim: int, n: int, seed: int, weighted: bool, into: bool
) -> None:
    space = make(hub, space_name, dim)
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    keys = [f"k{i}" for i in range(n)]
    space.put_many(keys, vecs)
    w = rng.uniform(0.1, 5.0, n) if weighted else None
    want = np.average(vecs.astype(np.float64), axis=0, weights=w)
    got = space.average(keys, weights=w, into="out" if into else None)
    assert got.dtype == np.float32
    assert rel_err(got, want) <= 1e-6
    if into:
        stored = space.get("out")
        assert stored is not None and rel_err(stored, want) <= 1e-6


@PROPS
@given(
    dim=st.integers(1, 2048),
    seed=st.integers(0, 2**32 - 1),
    into=st.booleans(),
    normalize=st.booleans(),
)
# the oracle once computed 1.5 * b in float32 (a Python float times a float32 array stays
# float32): 2.1e-6 off here, where the hub's float64 sum is exact
@example(dim=1, seed=405894, into=False, normalize=False)
def test_combine_matches_numpy(
    hub: Hub, space_name: str, dim: int, seed: int, into: bool, normalize: bool
) -> None:
    space = make(hub, space_name, dim)
    rng = np.random.default_rng(seed)
    a, b, c, lit = rng.standard_normal((4, dim)).astype(np.float32)
    space.put_many(["a", "b", "c"], np.stack([a, b, c]))
    weights = [1.0, 2.0, 0.5, 1.5]
    a64, b64, c64, lit64 = (x.astype(np.float64) for x in (a, b, c, lit))
    want = (1.0 * a64 + 2.0 * lit64 + 0.5 * c64) - 1.5 * b64
    if normalize:
        want = want / np.linalg.norm(want)
    got = space.combine(
        add=["a", lit, "c"],
        subtract=["b"],
        weights=weights,
        into="out" if into else None,
        normalize=normalize,
    )
    assert rel_err(got, want) <= 1e-6
    if into:
        stored = space.get("out")
        assert stored is not None and rel_err(stored, want) <= 1e-6


@PROPS
@given(
    dim=st.integers(1, 2048),
    seed=st.integers(0, 2**32 - 1),
    batches=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    alpha=st.one_of(st.none(), st.floats(0.05, 1.0)),
)
def test_update_mean_matches_numpy(
    hub: Hub, space_name: str, dim: int, seed: int, batches: list[int], alpha: float | None
) -> None:
    space = make(hub, space_name, dim)
    rng = np.random.default_rng(seed)
    # The running embedding is stored as float32 between calls, so the oracle starts each
    # call from the float32 state it stored, and folds the new items in float64.
    state: np.ndarray | None = None
    count = 0
    for size in batches:
        items: list[object] = []
        batch: list[np.ndarray] = []
        for j in range(size):
            v = rng.standard_normal(dim).astype(np.float32)
            if j % 2:
                key = f"item{count + j}"
                space.put(key, v)
                items.append(key)
            else:
                items.append(v)
            batch.append(v.astype(np.float64))
        if alpha is None:
            prev = np.zeros(dim) if state is None else state.astype(np.float64) * count
            want = (prev + np.sum(batch, axis=0)) / (count + size)
        else:
            ema = None if state is None else state.astype(np.float64)
            for x in batch:
                ema = x if ema is None else (1 - alpha) * ema + alpha * x
            want = ema
        count += size
        got = space.update_mean("user", items, alpha=alpha)
        assert rel_err(got, want) <= 1e-6
        state = got.astype(np.float32)
    stored = space.get("user")
    assert stored is not None and rel_err(stored, want) <= 1e-6


# ----------------------------------------------------------------- behaviour


def test_large_dims_beyond_lua_unpack_limit(hub: Hub, space_name: str) -> None:
    dim = 9000
    space = make(hub, space_name, dim)
    vecs = np.random.default_rng(1).standard_normal((3, dim)).astype(np.float32)
    space.put_many(["a", "b", "c"], vecs)
    want = vecs.astype(np.float64).mean(axis=0)
    assert rel_err(space.average(["a", "b", "c"], into="m"), want) <= 1e-6
    assert rel_err(space.update_mean("u", ["a", "b", "c"]), want) <= 1e-6
    assert (
        rel_err(
            space.combine(add=["a"], subtract=["b"], into="d", normalize=False),
            vecs[0].astype(np.float64) - vecs[1],
        )
        <= 1e-6
    )


def test_missing_keys_raise_or_skip(hub: Hub, space_name: str) -> None:
    space = make(hub, space_name, 2)
    space.put_many(["a", "b"], [[1, 0], [0, 1]])
    with pytest.raises(rediscache.KeyNotFoundError, match="'zz'") as caught:
        space.average(["a", "zz"], into="out")
    assert caught.value.keys == ("zz",)
    assert space.get("out") is None
    res = space.average(["a", "zz", "b"], missing="skip")
    assert isinstance(res, rediscache.Averaged)
    assert (res.used, res.skipped) == (2, 1) and res.vector.tolist() == [0.5, 0.5]
    assert res.missing == ("zz",)  # which keys, not only how many
    res = space.average(["a", "zz", "b", "yy"], missing="skip", into="out", weights=[1, 5, 3, 1])
    assert res.used == 2 and res.vector.tolist() == [0.25, 0.75]
    assert res.missing == ("zz", "yy")
    with pytest.raises(rediscache.InvalidInputError, match="nothing to average"):
        space.average(["zz"], missing="skip")
    with pytest.raises(rediscache.KeyNotFoundError):
        space.update_mean("u", ["a", "nope"])
    assert space.get("u") is None


def test_bad_input_stores_nothing(hub: Hub, space_name: str) -> None:
    space = make(hub, space_name, 2, metric="cosine")
    space.put_many(["a", "b"], [[1, 0], [-1, 0]])
    cases = [
        (lambda: space.average([], into="o"), "at least one"),
        (lambda: space.average(["a", "b"], weights=[1, np.nan], into="o"), "NaN"),
        (lambda: space.average(["a", "b"], weights=[1, -2], into="o"), "sum to more than 0"),
        (lambda: space.average(["a", "b"], into="o"), "zero vector"),
        (lambda: space.average(["a", "b"], normalize=True), "zero vector"),
        (lambda: space.combine(add=["a", [1, 2, 3]], into="o"), "shape"),
        (lambda: space.combine(add=["a", [np.inf, 0]], into="o"), "NaN or Inf"),
        (lambda: space.combine(into="o"), "at least one"),
        (lambda: space.combine(add=["a"], subtract=["a"], into="o"), "zero vector"),
        (lambda: space.update_mean("o", []), "non-empty"),
        (lambda: space.update_mean("o", ["a"], alpha=0), "alpha"),
        (lambda: space.update_mean("o", ["a", "b"]), "zero vector"),
    ]
    for call, match in cases:
        with pytest.raises(rediscache.InvalidInputError, match=match):
            call()
    assert space.get("o") is None


def test_results_are_indexed_and_searchable(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 3, metric="l2", fields={"kind": "tag"})
    space.put_many(["x", "y", "z"], [[1, 0, 0], [0, 1, 0], [0, 0, 9]], [{"kind": "item"}] * 3)
    space.put("user", [5, 5, 5], {"kind": "user"})
    space.update_mean("user", ["x", "y"])  # metadata of the running embedding is kept
    rec = space.get_record("user")
    assert rec is not None and rec.metadata == {"kind": "user"}
    np.testing.assert_allclose(rec.vector, [2, 2, 5 / 3], rtol=1e-6)  # put counts as 1 item
    hits = space.search(space.average(["x", "y"]), 2, exclude=["x", "y"])
    assert [h.key for h in hits] == ["user", "z"]
    space.average(["x", "y"], into="mid")
    assert space.search([0.5, 0.5, 0], 1)[0].key == "mid"
    # a put() replaces the running embedding: it counts as one item again
    space.put("user", [0, 0, 0])
    np.testing.assert_allclose(space.update_mean("user", [[2, 2, 2]]), [1, 1, 1])


def test_half_precision_spaces(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 4, metric="l2", algorithm="flat", dtype="float16")
    space.put_many(["a", "b"], [[1, 2, 3, 4], [3, 4, 5, 6]])
    np.testing.assert_allclose(space.average(["a", "b"]), [2, 3, 4, 5])
    np.testing.assert_allclose(
        space.combine(add=["a"], subtract=["b"], normalize=False), [-2, -2, -2, -2]
    )
    for call in (lambda: space.average(["a"], into="o"), lambda: space.update_mean("o", ["a"])):
        with pytest.raises(rediscache.InvalidInputError, match="float32 and float64"):
            call()


def test_concurrent_update_mean_loses_nothing(hub: Hub, space_name: str) -> None:
    space = make(hub, space_name, 8)
    threads, per_thread = 8, 25
    rng = np.random.default_rng(5)
    vecs = rng.standard_normal((threads, per_thread, 8)).astype(np.float32)

    def work(t: int) -> None:
        for v in vecs[t]:
            space.update_mean("shared", [v])

    assert not in_threads(work, threads)
    stored = space.get("shared")
    assert stored is not None
    assert rel_err(stored, vecs.reshape(-1, 8).astype(np.float64).mean(axis=0)) <= 1e-5
    count = hub.client.hget(space.live_keys.doc("shared"), "cnt")
    assert count.split(b":")[0] == str(threads * per_thread).encode()


def test_scripts_survive_script_flush(hub: Hub, space_name: str) -> None:
    space = make(hub, space_name, 2)
    space.put_many(["a", "b"], [[1, 2], [3, 4]])
    hub.client.script_flush()
    np.testing.assert_allclose(space.average(["a", "b"]), [2, 3])
    hub.client.script_flush()
    np.testing.assert_allclose(space.average(["a", "b"], into="o"), [2, 3])
    hub.client.script_flush()
    np.testing.assert_allclose(space.update_mean("u", ["a", "b"]), [2, 3])
