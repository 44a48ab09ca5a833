"""rediscache.asyncio against the sync API: every case runs over a Space and an AsyncSpace.

A case is written once against the sync signatures; :class:`Api` calls an AsyncSpace's
methods through it and awaits them on one event loop (the async client's connections belong
to that loop). Each case checks its results against numpy or known values, and the test
checks that both APIs gave equal results, errors (type and message) included.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import redis.asyncio
from both import Api, async_hub_args, norm, outcome

import rediscache
from rediscache import AsyncHub, Hub, connect_async
from rediscache.hub import plain_url

CREATE: dict[str, Any] = {
    "dim": 8,
    "metric": "cosine",
    "algorithm": "flat",  # exact search: both APIs must find the same neighbours
    "fields": {"genre": "tag", "year": "numeric"},
}


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32)


def _cosine_order(vecs: np.ndarray, q: np.ndarray) -> list[int]:
    sims = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
    return [int(i) for i in np.argsort(-sims, kind="stable")]


# ---------------------------------------------------------------------------- the cases


def case_put_get(s: Api) -> Any:
    v = _vectors(3)
    assert s.put("a", v[0], {"genre": "drama", "year": 2001}) is None
    assert s.put_many(["b", "c"], v[1:], [{"genre": "comedy", "year": 1999}, None]) == 2
    got = s.get("a")
    assert np.allclose(got, v[0])
    assert s.get("missing") is None
    return [
        got,
        s.get("missing"),
        s.put_many([], np.empty((0, 8))),
        outcome(s.put, "bad", [1.0, 2.0]),
        outcome(s.put_many, ["x", "x"], v[:2]),
        outcome(s.put_many, ["x", "y"], v[:1]),
        outcome(s.put, "z", np.zeros(8)),
        outcome(s.put, "m", v[0], {"year": "not a number"}),
        outcome(s.get, ""),
    ]


def case_get_many(s: Api) -> Any:
    v = _vectors(5)
    s.put_many([f"k{i}" for i in range(5)], v)
    got = s.get_many(["k3", "k0", "k4"])
    assert np.allclose(got, v[[3, 0, 4]])
    nan = s.get_many(["k1", "nope", "k2"], missing="nan")
    assert np.isnan(nan[1]).all() and np.allclose(nan[[0, 2]], v[1:3])
    return [
        got,
        nan,
        s.get_many([]),
        outcome(s.get_many, ["k1", "nope", "nope2"]),
        outcome(s.get_many, ["k1"], missing="skip"),
        outcome(s.get_many, "k1"),
        outcome(s.get_many, ["k1"], refresh_ttl=True),  # the space has no default ttl
    ]


def case_ttl(s: Api) -> Any:
    s.put_many(["a", "b"], _vectors(2), ttl=5)
    client = s.raw
    doc = s.live_keys.doc("a")
    assert 0 < client.pttl(doc) <= 5000
    got = s.get_many(["a", "b"], refresh_ttl=True)  # the space's ttl: 100 s
    assert client.pttl(doc) > 5000
    s.get("b", refresh_ttl=30)
    assert 5000 < client.pttl(s.live_keys.doc("b")) <= 30000
    return [got, outcome(s.get, "a", refresh_ttl=0)]


def _search_data(s: Api) -> tuple[np.ndarray, list[str]]:
    v = _vectors(40, seed=1)
    keys = [f"d{i}" for i in range(40)]
    meta = [{"genre": "drama" if i % 2 == 0 else "comedy", "year": 1990 + i} for i in range(40)]
    s.put_many(keys, v, meta)
    return v, keys


def case_search(s: Api) -> Any:
    v, keys = _search_data(s)
    q = _vectors(1, seed=2)[0]
    dramas = [i for i in _cosine_order(v, q) if i % 2 == 0]
    hits = s.search(q, 5, filter={"genre": "drama"})
    assert [h.key for h in hits] == [keys[i] for i in dramas[:5]]
    assert all(h.metadata["genre"] == "drama" for h in hits)
    paged = s.search(q, 3, offset=2, with_vectors=True, with_metadata=False)
    order = _cosine_order(v, q)
    assert [h.key for h in paged] == [keys[i] for i in order[2:5]]
    assert paged[0].vector is not None and np.allclose(paged[0].vector, v[order[2]])
    excluded = s.search(q, 3, exclude=[keys[order[0]]])
    assert [h.key for h in excluded] == [keys[i] for i in order[1:4]]
    ranged = s.within(q, 0.9, filter={"year": (2000, None)}, limit=50)
    assert all(h.distance <= 0.9 + 1e-6 and h.metadata["year"] >= 2000 for h in ranged)
    return [
        hits,
        paged,
        excluded,
        ranged,
        outcome(s.search, q, 3, filter={"nope": "x"}),
        outcome(s.search, q[:4], 3),
        outcome(s.search, q, 0),
        outcome(s.search, q, 3, ef=50),  # a flat space
    ]


def case_search_many(s: Api) -> Any:
    v, keys = _search_data(s)
    qs = _vectors(3, seed=3)
    many = s.search_many(qs, 4, filter={"year": (2000, 2020)})
    for q, hits in zip(qs, many):
        want = [i for i in _cosine_order(v, q) if 2000 <= 1990 + i <= 2020][:4]
        assert [h.key for h in hits] == [keys[i] for i in want]
    return [many, s.search_many(np.empty((0, 8)), 2), outcome(s.search_many, qs[:, :3], 2)]


def case_similar(s: Api) -> Any:
    v, keys = _search_data(s)
    hits = s.similar("d0", 4, filter={"genre": "drama"})
    want = [i for i in _cosine_order(v, v[0]) if i % 2 == 0 and i != 0][:4]
    assert [h.key for h in hits] == [keys[i] for i in want]
    return [hits, outcome(s.similar, "nope", 3)]


def case_average(s: Api) -> Any:
    v = _vectors(5, seed=4)
    keys = list("abcde")
    s.put_many(keys, v)
    plain = s.average(keys)
    assert np.allclose(plain, v.astype(np.float64).mean(axis=0), atol=1e-6)
    w = [1.0, 2.0, 3.0, 4.0, 5.0]
    weighted = s.average(keys, weights=w)
    assert np.allclose(weighted, np.average(v.astype(np.float64), axis=0, weights=w), atol=1e-6)
    skipped = s.average(["a", "zz", "b"], missing="skip")
    assert (skipped.used, skipped.skipped) == (2, 1)
    stored = s.average(["a", "b"], into="m", normalize=True)
    assert np.allclose(s.get("m"), stored) and np.isclose(np.linalg.norm(stored), 1.0)
    return [
        plain,
        weighted,
        skipped,
        stored,
        s.get("m"),
        outcome(s.average, []),
        outcome(s.average, ["a", "zz"]),
        outcome(s.average, ["a"], weights=[0.0]),
        outcome(s.average, ["a", "zz"], into="m2"),
    ]


def case_combine(s: Api) -> Any:
    v = _vectors(3, seed=5)
    s.put_many(["king", "man", "woman"], v)
    literal = _vectors(1, seed=6)[0]
    got = s.combine(add=["king", literal], subtract=["man"], normalize=False)
    assert np.allclose(got, v[0] + literal - v[1], atol=1e-5)
    stored = s.combine(add=["king", "woman"], subtract=["man"], into="queen")
    want = v[0] + v[2] - v[1]
    assert np.allclose(stored, want / np.linalg.norm(want), atol=1e-6)
    assert np.allclose(s.get("queen"), stored)
    only_literals = s.combine(add=[literal, literal], weights=[1.0, 0.5], normalize=False)
    assert np.allclose(only_literals, 1.5 * literal, atol=1e-6)
    return [
        got,
        stored,
        only_literals,
        outcome(s.combine),
        outcome(s.combine, add=["king", "zz"]),
        outcome(s.combine, add=["king"], subtract=["king"], into="zero"),
    ]


def case_update_mean(s: Api) -> Any:
    v = _vectors(3, seed=7)
    s.put_many(["a", "b"], v[:2])
    first = s.update_mean("u", ["a", v[2]])
    assert np.allclose(first, (v[0] + v[2]) / 2, atol=1e-6)
    second = s.update_mean("u", ["b"])
    assert np.allclose(second, (v[0] + v[1] + v[2]) / 3, atol=1e-6)
    ema = s.update_mean("e", ["a", "b"], alpha=0.5)
    assert np.allclose(ema, 0.5 * v[0] + 0.5 * v[1], atol=1e-6)
    return [
        first,
        second,
        ema,
        s.get("u"),
        outcome(s.update_mean, "u", []),
        outcome(s.update_mean, "u", ["zz"]),
        outcome(s.update_mean, "u", ["a"], alpha=2.0),
    ]


def case_get_or_compute(s: Api) -> Any:
    v = _vectors(4, seed=8)
    s.put_many(["a", "b"], v[:2])
    asked: list[list[str]] = []

    def compute(keys: list[str]) -> np.ndarray:
        asked.append(list(keys))
        return np.stack([v[2] if k == "c" else v[3] for k in keys])

    got = s.get_or_compute(["a", "c", "b", "d", "c"], compute, ttl=60)
    assert asked == [["c", "d"]]
    assert np.allclose(got, v[[0, 2, 1, 3, 2]])
    again = s.get_or_compute(["d", "c"], compute)
    assert asked == [["c", "d"]] and np.allclose(again, v[[3, 2]])
    return [
        got,
        again,
        asked,
        outcome(s.get_or_compute, ["x"], lambda keys: np.ones((2, 8))),
        outcome(s.get_or_compute, ["x"], lambda keys: [[1.0, 2.0]]),
        outcome(s.get_or_compute, ["x"], compute, on_error="ignore"),
        outcome(s.get_or_compute, ["x"], compute, lock_seconds=0),
        s.get("x"),
    ]


def case_delete(s: Api) -> Any:
    s.put_many(["a", "b", "c"], _vectors(3))
    deleted = s.delete("a", "c", "zz")
    assert deleted == 2 and s.get("a") is None and s.get("b") is not None
    return [deleted, s.delete(), s.get_many(["a", "b", "c"], missing="nan")]


def case_versions(s: Api) -> Any:
    v = _vectors(2, seed=9)
    s.put("a", v[0])
    s.sync.snapshot("before")
    s.put("a", v[1])  # the live generation is shared with "before": copied first
    new = s.get("a")
    old = s.sync.at("before").get("a")
    assert np.allclose(new, v[1]) and np.allclose(old, v[0])
    s.sync.rollback("before")  # an AsyncSpace learns of it from its next read's state check
    back = s.get_many(["a"])
    assert np.allclose(back, v[:1])
    s.put("b", v[1])
    return [new, old, back, s.get("b"), s.sync.at("before").get("b")]


def case_version_api(s: Api) -> Any:
    """The whole version API, info, count, records and streaming: the same on both sides
    (asyncio runs them natively, no worker thread)."""
    v = _vectors(6, seed=12)
    keys = [f"k{i}" for i in range(6)]
    s.put_many(keys[:4], v[:4], [{"genre": "a", "n": i} for i in range(4)])
    first = s.snapshot("one")
    s.put_many(keys[4:], v[4:])
    s.delete("k0")
    second = s.snapshot("two", keep_last=5)
    view = s.at("one")
    seen = {
        "versions": [(x.id, x.label, x.count) for x in s.versions()],
        "version": (s.version("two").id, s.version(first.id).label),
        "view": (view.count(), view.get_many(["k0", "k1"]), view.get_record("k2")),
        "view_search": view.search(v[1], 3, with_metadata=False),
        "view_meta": view.get_metadata_many(["k1", "k5"]),
        "record": s.get_record("k1"),
        "meta": s.get_metadata_many(["k1", "k5", "zz"]),
        "count": s.count(),
        "info": (s.info().count, s.info().dim),
        "batches": sorted(k for ks, _, _ in s.iter_batches(2) for k in ks),
        "view_batches": sorted(k for ks, _, _ in view.iter_batches(3) for k in ks),
        "diff": (lambda d: (d.added, d.removed, d.changed))(s.diff("one", "two")),
        "updated": s.update_vectors(["k1", "new"], v[:2]),
    }
    s.rollback("one")
    seen["after_rollback"] = (s.count(), s.get("k0"), s.get("new"))
    s.delete_version("two")
    seen["pruned"] = [x.label for x in s.prune_versions(0)]
    seen["left"] = s.versions()
    seen["second"] = (second.label, second.count)
    return [(k, v) for k, v in sorted(seen.items())]


CASES: dict[str, tuple[dict[str, Any], Callable[[Api], Any]]] = {
    "put_get": ({}, case_put_get),
    "get_many": ({}, case_get_many),
    "ttl": ({"ttl": 100}, case_ttl),
    "search": ({}, case_search),
    "search_many": ({}, case_search_many),
    "similar": ({}, case_similar),
    "average": ({}, case_average),
    "combine": ({}, case_combine),
    "update_mean": ({}, case_update_mean),
    "get_or_compute": ({"expiring": True}, case_get_or_compute),
    "delete": ({}, case_delete),
    "versions": ({}, case_versions),
    "version_api": ({}, case_version_api),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_sync_and_async_agree(
    case: str, apis: dict[str, Callable[..., Api]], space_name: str
) -> None:
    extra, run = CASES[case]
    results = {m: norm(run(make(space_name, **CREATE, **extra))) for m, make in apis.items()}
    assert results["async"] == results["sync"]


# ---------------------------------------------------------------------------- asyncio only


def test_concurrent_get_many(server_dir: Path | None, space_name: str) -> None:
    v = _vectors(300, seed=10)
    keys = [f"k{i}" for i in range(300)]
    rng = np.random.default_rng(11)
    picks = [rng.choice(300, size=int(rng.integers(1, 60)), replace=False) for _ in range(32)]

    async def main() -> list[np.ndarray]:
        async with await connect_async(**async_hub_args(server_dir)) as hub:
            space = await hub.create_space(space_name, **CREATE)
            await space.put_many(keys, v)
            hub.metrics(reset=True)
            got = await asyncio.gather(*(space.get_many([keys[i] for i in p]) for p in picks))
            metrics.update(hub.metrics())
            return got

    metrics: dict[str, Any] = {}
    results = asyncio.run(main())
    # each concurrent task counted once (the per-task context keeps inner calls out)
    assert metrics["get_many"].calls == 32 and metrics["get_many"].hits == sum(map(len, picks))
    assert len(results) == 32
    for p, got in zip(picks, results):
        assert np.array_equal(got, v[p])


def test_async_compute_runs_once_per_key(server_dir: Path | None, space_name: str) -> None:
    calls: list[str] = []

    async def compute(keys: list[str]) -> np.ndarray:
        calls.extend(keys)
        await asyncio.sleep(0.05)  # the other tasks arrive meanwhile
        return np.stack([np.full(8, float(k[1:])) for k in keys])

    keys = [f"k{i}" for i in range(1, 11)]

    async def main() -> list[np.ndarray]:
        async with await connect_async(**async_hub_args(server_dir)) as hub:
            space = await hub.create_space(space_name, **CREATE)
            return await asyncio.gather(*(space.get_or_compute(keys, compute) for _ in range(16)))

    results = asyncio.run(main())
    assert sorted(calls) == sorted(keys)
    want = np.stack([np.full(8, float(i)) for i in range(1, 11)])
    assert all(np.array_equal(r, want) for r in results)


def test_sync_get_or_compute_rejects_an_async_compute(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, **CREATE)

    async def compute(keys: list[str]) -> np.ndarray:
        return np.ones((len(keys), 8))

    with pytest.raises(rediscache.InvalidInputError, match="AsyncSpace"):
        space.get_or_compute(["a"], compute)
    assert space.get("a") is None


def _async_client(hub: Hub, **kwargs: Any) -> redis.asyncio.Redis:
    url = os.environ.get("REDISCACHE_TEST_URL")
    if url:  # a cluster's too: a client of the node it names
        return redis.asyncio.Redis.from_url(plain_url(url), protocol=2, **kwargs)
    info = hub.server
    assert info is not None and info.unix_socket
    return redis.asyncio.Redis(
        unix_socket_path=info.unix_socket, password=info.password, protocol=2, **kwargs
    )


def test_connect_with_a_client_leaves_it_open(hub: Hub, space_name: str) -> None:
    async def main() -> tuple[list[str], bool]:
        client = _async_client(hub)
        try:
            async with await connect_async(client=client) as ahub:
                assert isinstance(ahub, AsyncHub) and ahub.client is client
                await ahub.create_space(space_name, **CREATE)
                names = await ahub.spaces()
                space = await ahub.space(space_name)
                await space.put("a", np.ones(8))
            return names, bool(await client.ping())  # the hub did not close it
        finally:
            await client.aclose()

    names, alive = asyncio.run(main())
    assert space_name in names and alive
    assert hub.space(space_name).get("a") is not None


def test_connect_refuses_decoding_clients_and_missing_spaces(hub: Hub) -> None:
    async def main() -> None:
        client = _async_client(hub, decode_responses=True)
        try:
            with pytest.raises(rediscache.InvalidInputError, match="decode_responses"):
                await connect_async(client=client)
        finally:
            await client.aclose()
        async with await connect_async(client=_async_client(hub)) as ahub:
            with pytest.raises(rediscache.SpaceNotFoundError):
                await ahub.space("no-such-space-here")
            assert await ahub.drop_space("no-such-space-here", missing_ok=True) == 0
            await ahub.client.aclose()  # passed in: closing it is the caller's job

    asyncio.run(main())


def test_async_space_works_while_a_thread_writes(hub: Hub, space_name: str) -> None:
    """A sync writer in a thread and async readers share the space (and its state)."""
    sync_space = hub.create_space(space_name, **CREATE)
    v = _vectors(50, seed=12)
    keys = [f"k{i}" for i in range(50)]
    sync_space.put_many(keys, v)
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            sync_space.snapshot(f"s{i}")  # every snapshot changes the state
            i += 1
            stop.wait(0.002)

    async def main() -> list[np.ndarray]:
        async with await connect_async(client=_async_client(hub)) as ahub:
            space = await ahub.space(space_name)
            try:
                return await asyncio.gather(*(space.get_many(keys) for _ in range(20)))
            finally:
                await ahub.client.aclose()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        results = asyncio.run(main())
    finally:
        stop.set()
        thread.join()
    assert all(np.array_equal(r, v) for r in results)


def test_round_trip_without_hiredis(
    server_dir: Path | None, space_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rediscache.wire

    monkeypatch.setattr(rediscache.wire, "_hiredis", None)  # the reply-by-reply fallback
    v = _vectors(20, seed=3)
    keys = [f"k{i}" for i in range(20)]

    async def main() -> np.ndarray:
        async with await connect_async(**async_hub_args(server_dir)) as hub:
            space = await hub.create_space(space_name, **CREATE)
            await space.put_many(keys, v)
            got: np.ndarray = await space.get_many(keys)
            return got

    assert np.array_equal(asyncio.run(main()), v)
