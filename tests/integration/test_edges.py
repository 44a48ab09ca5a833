"""Correct answers at the edges (issue 12): expiry and search, the hot cache and expiry,
low-precision spaces, paging, filters RediSearch cannot answer exactly, odd but valid
inputs, calls too large for one script, arithmetic leaving the float range, argument types.

Each data-plane case runs on a sync Space and on an AsyncSpace (the ``make`` fixture).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import redis
from both import Api

import rediscache
from rediscache import Hub, Tag, Text

Make = Callable[..., Api]


def _rows(n: int, dim: int, seed: int = 0, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32) + shift


# ---------------------------------------------------------------- 1. expired entries and search


def _expired_near_the_query(make: Make, name: str, algorithm: str) -> tuple[Api, np.ndarray]:
    """A space with a ttl: 3,000 live entries (an hour to live) far from the query, and ten
    entries that expired 1 s ago, nearest to it. Redis deletes expired keys lazily and by
    sampling, so most of the ten are still in the index when the test searches."""
    s = make(name, 8, metric="l2", algorithm=algorithm, fields={"genre": "tag"}, ttl=3600)
    live = _rows(3000, 8, shift=3.0)
    s.put_many([f"live{i}" for i in range(3000)], live, [{"genre": "a"}] * 3000)
    q = np.zeros(8, dtype=np.float32)
    near = q + 0.01 * np.arange(1, 11, dtype=np.float32)[:, None]
    s.put_many([f"gone{i}" for i in range(10)], near, [{"genre": "a"}] * 10, ttl=0.3)
    s.put("anchor", q + 0.2, {"genre": "a"})
    time.sleep(1.0)
    return s, q


def _live_order(s: Api, q: np.ndarray) -> list[str]:
    """Live keys by distance to q (brute force over what get_many returns)."""
    keys = ["anchor"] + [f"live{i}" for i in range(3000)]
    vecs = s.get_many(keys)
    d = ((vecs - q) ** 2).sum(axis=1)
    return [keys[i] for i in np.argsort(d, kind="stable")]


@pytest.mark.parametrize("algorithm", ["flat", "hnsw"])
def test_expired_entries_never_take_the_place_of_live_hits(
    make: Make, space_name: str, algorithm: str
) -> None:
    s, q = _expired_near_the_query(make, space_name, algorithm)
    truth = _live_order(s, q)

    def check(hits: list[Any], k: int, want: list[str] | None = None) -> None:
        keys = [h.key for h in hits]
        assert len(keys) == k, keys
        assert not [key for key in keys if key.startswith("gone")], keys
        if algorithm == "flat":
            assert keys == (want if want is not None else truth[:k])

    check(s.search(q, 10), 10)
    check(s.search(q, 10, with_metadata=False), 10)
    check(s.search(q, 10, with_vectors=True, with_metadata=False), 10)
    check(s.search(q, 10, filter={"genre": "a"}), 10)
    check(s.search(q, 10, exclude=["anchor"]), 10, truth[1:11])
    ef = {"ef": 100} if algorithm == "hnsw" else {}
    check(s.search(q, 5, offset=5, **ef), 5, truth[5:10])
    for hits in s.search_many(np.stack([q, q]), 10):
        check(hits, 10)
    check(s.within(q, 1000.0, limit=10), 10)
    check(s.similar("anchor", 10), 10, _live_order(s, s.get("anchor"))[1:11])


def test_expired_entries_never_reach_a_version_view(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 8, metric="l2", algorithm="flat", ttl=3600)
    space.put_many([f"live{i}" for i in range(2000)], _rows(2000, 8, shift=3.0))
    q = np.zeros(8, dtype=np.float32)
    space.put_many([f"gone{i}" for i in range(10)], np.tile(q, (10, 1)) + 0.01, ttl=0.3)
    view = space.at(space.snapshot("v"))
    time.sleep(1.0)
    hits = view.search(q, 10)
    assert len(hits) == 10 and not [h for h in hits if h.key.startswith("gone")]


def test_len_counts_what_redis_holds_until_purged(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 4, metric="l2", algorithm="flat", ttl=3600)
    space.put_many([f"live{i}" for i in range(2000)], _rows(2000, 4))
    space.put_many([f"gone{i}" for i in range(10)], _rows(10, 4, seed=1), ttl=0.2)
    time.sleep(0.5)
    assert space.info().expiring and space.info().ttl == 3600
    assert 2000 <= len(space) == space.info().count <= 2010
    space.purge_expired()
    assert len(space) == space.info().count == 2000


# ---------------------------------------------------------------- 2. the hot cache and expiry


def test_a_hot_cache_hit_never_outlives_its_entry(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 4, metric="l2", algorithm="flat", ttl=3600)
    # many keys with a ttl: Redis's sampling finds the expired one late, and with it its
    # invalidation message
    space.put_many([f"k{i}" for i in range(20_000)], _rows(20_000, 4))
    space.put_many(["brief", "brief2"], _rows(2, 4, seed=3), ttl=1)
    space.enable_hot_cache()
    try:
        assert space.get("brief") is not None
        assert not np.isnan(space.get_many(["brief2", "k1"], missing="nan")).any()
        assert space.hot_cache is not None and space.hot_cache.stats().items == 3
        time.sleep(1.5)
        assert space.get("brief") is None
        assert np.isnan(space.get_many(["brief2", "k1"], missing="nan")[0]).all()
    finally:
        space.disable_hot_cache()


def test_lookups_apply_waiting_invalidations_themselves(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 4, metric="l2", algorithm="flat")
    other = hub.space(space_name)
    vecs = _rows(3, 4)
    space.put("k", vecs[0])
    cache = space.enable_hot_cache()
    try:
        assert cache._fd is not None  # redis-py still exposes the listener's socket
        # a listener that never gets to run (as behind a thread holding the GIL)
        cache._wait = lambda poller: bool(time.sleep(0.05))  # type: ignore[method-assign]
        time.sleep(0.2)
        for new in vecs[1:]:
            assert space.get("k") is not None  # cached
            other.put("k", new)  # another client's write
            time.sleep(0.05)  # the invalidation reaches the socket; nobody reads it
            assert np.array_equal(space.get("k"), new)  # the lookup applied it itself
    finally:
        space.disable_hot_cache()


# ---------------------------------------------------------------- 3. low-precision spaces


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_values_are_judged_as_stored(make: Make, space_name: str, dtype: str) -> None:
    s = make(space_name, 4, metric="cosine", dtype=dtype, algorithm="flat")
    big = 70000.0 if dtype == "float16" else 3.4e38
    tiny = 1e-8 if dtype == "float16" else 1e-45
    bad = {"overflow": [big, 1, 1, 1], "zero": [tiny] * 4}
    for what, vec in bad.items():
        with pytest.raises(rediscache.InvalidInputError, match=r"out of range|zero vector") as e:
            s.put("x", vec)
        assert ("out of range" in str(e.value)) == (what == "overflow")
        with pytest.raises(rediscache.InvalidInputError):
            s.put_many(["x"], [vec])
        with pytest.raises(rediscache.InvalidInputError):
            s.search(np.array(vec), 3)
        with pytest.raises(rediscache.InvalidInputError):
            s.search_many(np.array([vec]), 3)
        with pytest.raises(rediscache.InvalidInputError):
            s.within(np.array(vec), 0.5)
    assert s.get("x") is None  # nothing was written
    s.put("ok", [1.0, 2.0, 3.0, 4.0])
    hits = s.search(np.array([1.0, 2.0, 3.0, 4.0]), 1)
    assert hits[0].key == "ok" and np.isfinite(hits[0].distance)


def test_ip_space_refuses_vectors_whose_products_overflow(make: Make, space_name: str) -> None:
    s = make(space_name, 2, metric="ip", algorithm="flat")
    s.put_many(["a", "b"], [[1.0, 0.0], [0.0, 1.0]])
    for vec in ([np.inf, 0.0], [1e20, 1e20], [3e38, 0.0]):
        with pytest.raises(rediscache.InvalidInputError):
            s.put("huge", vec)
    hits = s.search(np.array([1.0, 0.0]), 2)
    assert [h.key for h in hits] == ["a", "b"]
    assert all(np.isfinite(h.distance) for h in hits)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_get_or_compute_returns_the_stored_values_on_a_miss(
    make: Make, space_name: str, dtype: str
) -> None:
    s = make(space_name, 4, metric="l2", dtype=dtype, algorithm="flat")
    exact = np.array([[0.1234567, 1.0001, 3.14159, 100.3]])
    first = s.get_or_compute(["k"], lambda keys: exact)
    again = s.get_or_compute(["k"], lambda keys: exact + 1)
    assert np.array_equal(first, again)
    assert np.array_equal(first[0], s.get("k"))


# ---------------------------------------------------------------- 4. paging


@pytest.fixture(scope="module")
def paged(hub: Hub) -> dict[str, Any]:
    """5,000 random 32-d vectors in an HNSW and a FLAT space (metadata: a tag)."""
    rng = np.random.default_rng(7)
    vecs = rng.standard_normal((5000, 32)).astype(np.float32)
    keys = [f"p{i}" for i in range(5000)]
    meta = [{"part": "even" if i % 2 == 0 else "odd"} for i in range(5000)]
    names = {}
    for algorithm in ("hnsw", "flat"):
        name = f"paged-{algorithm}-{rng.integers(1 << 30)}"
        space = hub.create_space(name, 32, algorithm=algorithm, fields={"part": "tag"})
        space.put_many(keys, vecs, meta)
        names[algorithm] = name
    q = rng.standard_normal(32).astype(np.float32)
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    exact = [keys[i] for i in np.argsort(-(unit @ (q / np.linalg.norm(q))), kind="stable")]
    yield {"names": names, "q": q, "exact": exact, "meta": meta}
    for name in names.values():
        hub.drop_space(name, missing_ok=True)


def _pages(search: Callable[..., list[Any]], size: int, depth: int, **kw: Any) -> list[str]:
    keys: list[str] = []
    for offset in range(0, depth, size):
        keys += [h.key for h in search(k=size, offset=offset, **kw)]
    return keys


@pytest.mark.parametrize("algorithm", ["hnsw", "flat"])
def test_pages_neither_repeat_nor_skip(hub: Hub, paged: dict[str, Any], algorithm: str) -> None:
    space = hub.space(paged["names"][algorithm])
    q, exact = paged["q"], paged["exact"]
    ef = {"ef": 500} if algorithm == "hnsw" else {}

    def search(**kw: Any) -> list[Any]:
        return space.search(q, **kw)

    whole = [h.key for h in space.search(q, 500, **ef)]
    pages = _pages(search, 10, 500, **ef)
    assert len(set(pages)) == len(pages) == 500
    assert pages == whole
    if algorithm == "flat":
        assert pages == exact[:500]
    # with exclude: pages of the list without the excluded keys
    skip = exact[3:40:4]
    pages = _pages(search, 10, 300, exclude=skip, **ef)
    whole = [h.key for h in space.search(q, 300, exclude=skip, **ef)]
    assert pages == whole and not set(skip) & set(pages)
    # with a filter
    pages = _pages(search, 10, 200, filter={"part": "odd"}, **ef)
    whole = [h.key for h in space.search(q, 200, filter={"part": "odd"}, **ef)]
    assert pages == whole and len(set(pages)) == 200
    if algorithm == "flat":
        odd = [k for k in exact if int(k[1:]) % 2 == 1]
        assert pages == odd[:200]


def test_hnsw_pages_past_ef_are_refused(hub: Hub, paged: dict[str, Any]) -> None:
    space = hub.space(paged["names"]["hnsw"])
    q = paged["q"]
    assert len(space.search(q, 10, offset=90)) == 10  # within the default ef (100)
    with pytest.raises(rediscache.InvalidInputError, match="ef=110"):
        space.search(q, 10, offset=100)
    with pytest.raises(rediscache.InvalidInputError, match="ef=500"):
        space.search(q, 10, offset=480, exclude=[f"x{i}" for i in range(10)], ef=400)
    assert len(space.search(q, 10, offset=100, ef=110)) == 10


def test_within_pages_neither_repeat_nor_skip(hub: Hub, paged: dict[str, Any]) -> None:
    space = hub.space(paged["names"]["flat"])
    q = paged["q"]
    whole = [h.key for h in space.within(q, 0.8, limit=1000)]
    pages: list[str] = []
    for offset in range(0, len(whole) + 20, 20):
        pages += [h.key for h in space.within(q, 0.8, limit=20, offset=offset)]
    assert pages == whole and len(set(pages)) == len(pages)


def test_k_at_the_maximum_works_with_every_option(hub: Hub, paged: dict[str, Any]) -> None:
    q = paged["q"]
    big = rediscache.query.MAX_RESULTS
    for algorithm in ("flat", "hnsw"):
        space = hub.space(paged["names"][algorithm])
        assert len(space.search(q, big)) == 5000
        assert len(space.search(q, big, exclude=["p0", "p1"])) == 4998
        assert len(space.search(q, big, filter={"part": "odd"}, with_vectors=True)) == 2500
        assert len(space.search_many(np.stack([q, q]), big, with_metadata=False)[1]) == 5000
        assert len(space.within(q, 2.0, limit=big)) == 5000
    hnsw = hub.space(paged["names"]["hnsw"])
    assert len(hnsw.search(q, big, ef=big)) == 5000
    with pytest.raises(rediscache.InvalidInputError, match="k must be"):
        hnsw.search(q, big + 1)


# ---------------------------------------------------------------- 5. inexact filters


def test_text_filters_fold_case_for_all_of_unicode(make: Make, space_name: str) -> None:
    s = make(space_name, 4, metric="l2", algorithm="flat", fields={"title": "text"})
    titles = ["Café de Flore", "STRASSE 5", "ÉCOLE normale", "plain words"]
    s.put_many(["a", "b", "c", "d"], _rows(4, 4), [{"title": t} for t in titles])
    q = np.zeros(4, dtype=np.float32) + 1

    def found(phrase: str) -> set[str]:
        return {h.key for h in s.search(q, 4, filter={"title": phrase})}

    assert found("CAFÉ") == {"a"}
    assert found("café DE flore") == {"a"}
    assert found("Straße") == {"b"}
    assert found("école") == {"c"}
    assert found("PLAIN") == {"d"}
    assert {h.key for h in s.search(q, 4, filter=Text("title", "ÉCOLE"))} == {"c"}
    assert s.sync.get_record("a").metadata == {"title": "Café de Flore"}  # the original


def test_numeric_values_beyond_double_precision_are_refused(make: Make, space_name: str) -> None:
    s = make(space_name, 4, metric="l2", algorithm="flat", fields={"id": "numeric", "t": "tag"})
    ids = [232787661235170481, 232787661235170482, 232787661235170483]
    for i in ids:
        with pytest.raises(rediscache.InvalidInputError, match="tag field"):
            s.put(str(i), _rows(1, 4)[0], {"id": i})
    s.put("exact", _rows(1, 4)[0], {"id": 2**60, "t": "x"})  # exactly a double: fine
    q = np.ones(4, dtype=np.float32)
    assert [h.key for h in s.search(q, 3, filter={"id": 2**60})] == ["exact"]
    with pytest.raises(rediscache.InvalidInputError, match="tag field"):
        s.search(q, 3, filter={"id": ids[0]})
    with pytest.raises(rediscache.InvalidInputError, match="tag field"):
        s.search(q, 3, filter={"id": (ids[0], None)})


# ---------------------------------------------------------------- 6. odd but valid inputs


def test_empty_batches_and_numpy_metadata(make: Make, space_name: str) -> None:
    s = make(space_name, 4, metric="l2", algorithm="flat", fields={"n": "numeric", "g": "tag"})
    assert s.put_many([], []) == 0
    assert s.put_many([], np.empty((0, 4))) == 0
    assert s.search_many([]) == []
    assert s.search_many(np.empty((0, 4))) == []
    assert s.get_many([]).shape == (0, 4)
    meta = {"n": np.int64(7), "f": np.float32(0.5), "b": np.bool_(True), "a": np.arange(2),
            "g": np.str_("tag")}  # fmt: skip
    s.put("k", [1.0, 2.0, 3.0, 4.0], meta)
    rec = s.sync.get_record("k")
    assert rec.metadata == {"n": 7, "f": 0.5, "b": True, "a": [0, 1], "g": "tag"}
    assert type(rec.metadata["n"]) is int and type(rec.metadata["b"]) is bool
    assert [h.key for h in s.search(np.ones(4), 1, filter={"n": np.int64(7)})] == ["k"]


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.put("bad\ud800", [1.0, 2.0, 3.0, 4.0]),
        lambda s: s.put_many(["ok", "\udfff"], [[1.0] * 4, [2.0] * 4]),
        lambda s: s.get("x\ud800"),
        lambda s: s.get_many(["\ud800"]),
        lambda s: s.delete("\ud800"),
        lambda s: s.put("k", [1.0] * 4, {"g": "\ud800"}),
        lambda s: s.put("k", [1.0] * 4, {"other": "\ud800"}),
        lambda s: s.search(np.ones(4), 3, filter={"g": "\ud800"}),
        lambda s: s.search(np.ones(4), 3, exclude=["\ud800"]),
        lambda s: s.average(["\ud800"]),
        lambda s: s.combine(add=["\ud800"]),
        lambda s: s.similar("\ud800"),
    ],
)
def test_values_that_cannot_be_stored_raise_library_errors(
    make: Make, space_name: str, call: Callable[[Api], Any]
) -> None:
    s = make(space_name, 4, metric="l2", algorithm="flat", fields={"g": "tag"})
    with pytest.raises(rediscache.InvalidInputError):
        call(s)
    assert s.get("ok") is None


def test_keys_with_unicode_round_trip_and_nul_is_refused(make: Make, space_name: str) -> None:
    s = make(space_name, 4, metric="l2", algorithm="flat")
    with pytest.raises(rediscache.InvalidInputError, match="NUL"):
        s.put("a\x00b", np.ones(4))  # stored, but a search could never load it
    keys = ["a b", "日本語", "ключ:1", "emoji 🎉"]
    vecs = _rows(4, 4)
    s.put_many(keys, vecs)
    assert np.array_equal(s.get_many(keys), vecs)
    assert {h.key for h in s.search(vecs[0], 4)} == set(keys)


# ---------------------------------------------------------------- 7. calls too large


def test_calls_too_large_for_one_script_are_refused_or_split(make: Make, space_name: str) -> None:
    dim = 384
    s = make(space_name, dim, metric="l2", algorithm="flat")
    n = rediscache.operations.GATHER_FLOATS // dim + 700  # read in two scripts
    vecs = _rows(n, dim, seed=5)
    keys = [f"k{i}" for i in range(n)]
    s.put_many(keys, vecs)
    np.testing.assert_allclose(s.average(keys), vecs.astype(np.float64).mean(axis=0), atol=1e-5)
    most = rediscache.operations.COMPUTE_FLOATS // dim  # 1,041 at dim 384
    for call, allowed in (
        (lambda n: s.average(keys[:n], into="x"), most),
        (lambda n: s.combine(add=keys[:n], into="x"), most - 1),
        (lambda n: s.update_mean("x", keys[:n]), most - 2),
    ):
        with pytest.raises(rediscache.InvalidInputError, match=f"at most {allowed:,} stored"):
            call(allowed + 1)
        assert s.get("x") is None
    s.average(keys[:most], into="x")  # the largest allowed
    assert s.get("x") is not None


def test_a_write_whose_reply_is_lost_is_not_sent_again(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 1024, metric="l2", algorithm="flat")
    space.put_many([f"k{i}" for i in range(400)], _rows(400, 1024))
    pool = hub.node_client(space_name).connection_pool
    slow = redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, **pool.connection_kwargs
        )
    )
    other_hub = rediscache.connect(client=slow)  # connected and checked with a sane timeout,
    other = other_hub.space(space_name)
    other_hub.close()  # then the pool's connection waits 1 ms for a reply
    slow.connection_pool.reset()
    # connected (and authenticated) with the sane timeout, so that the write is what goes
    # unanswered, not a handshake on a busy machine; then 1 ms for every reply
    conn = slow.connection_pool.get_connection()
    slow.connection_pool.connection_kwargs["socket_timeout"] = 0.001
    conn.socket_timeout = 0.001
    conn._sock.settimeout(0.001)
    slow.connection_pool.release(conn)
    with pytest.raises(rediscache.OutcomeUnknownError, match="not sent again"):
        other.update_mean("user", [f"k{i}" for i in range(380)])
    slow.close()
    deadline = time.monotonic() + 5
    while space.get("user") is None and time.monotonic() < deadline:
        time.sleep(0.01)
    count = hub.client.hget(space.live_keys.doc("user"), "cnt")
    assert count is not None and count.split(b":")[0] == b"380"  # applied once, not twice


def test_a_busy_server_is_reported_as_busy(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 4, metric="l2", algorithm="flat")
    space.put("a", [1.0, 2.0, 3.0, 4.0])
    node = hub.node_client(space_name)  # the space's server (on a cluster, its node)
    old = node.config_get("busy-reply-threshold")["busy-reply-threshold"]
    node.config_set("busy-reply-threshold", 100)
    pool = node.connection_pool
    blocker = redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, **pool.connection_kwargs
        )
    )
    spin = "local t = redis.call('TIME') repeat local n = redis.call('TIME') until n[1] - t[1] >= 2"
    thread = threading.Thread(target=lambda: blocker.eval(spin, 0), daemon=True)
    try:
        thread.start()
        time.sleep(0.4)
        for call in (
            lambda: space.get("a"),
            lambda: space.get_many(["a"]),
            lambda: space.search(np.ones(4), 1),
            lambda: space.average(["a"]),
        ):
            with pytest.raises(rediscache.ServerBusyError, match="busy"):
                call()
    finally:
        thread.join(5)
        blocker.close()
        node.config_set("busy-reply-threshold", old)
    assert space.get("a") is not None


# ---------------------------------------------------------------- 8. results out of range


def test_results_outside_the_float_range_are_refused(make: Make, space_name: str) -> None:
    s = make(space_name, 2, metric="l2", algorithm="flat")
    s.put_many(["a", "b", "m"], [[9e18, 0.0], [9e18, 0.0], [-9e18, 0.0]])  # each storable
    for call in (
        lambda: s.combine(add=["a", "b"], normalize=False),
        lambda: s.combine(add=["a", "b"], normalize=False, into="c"),
        lambda: s.average(["a", "m"], weights=[3, -1]),
        lambda: s.average(["a", "m"], weights=[3, -1], into="c"),
        lambda: s.combine(add=["a", [1e300, 0.0]], normalize=False),
        lambda: s.update_mean("c", [[1e300, 0.0]]),
        lambda: s.update_mean("c", ["a", "b", [1e19, 0.0]]),
    ):
        with pytest.raises(rediscache.InvalidInputError, match=r"range|too large"):
            call()
    assert s.get("c") is None
    assert np.allclose(s.combine(add=["a", "b"]), [1.0, 0.0])  # normalized: fine
    assert s.search(np.array([1.0, 0.0]), 2)[0].distance >= 0


def test_low_precision_results_must_fit_the_dtype(make: Make, space_name: str) -> None:
    s = make(space_name, 2, metric="l2", dtype="float16", algorithm="flat")
    s.put_many(["a", "b"], [[60000.0, 0.0], [60000.0, 0.0]])
    with pytest.raises(rediscache.InvalidInputError, match="out of range for float16"):
        s.combine(add=["a", "b"], normalize=False)
    assert np.allclose(s.average(["a", "b"]), [60000.0, 0.0])


# ---------------------------------------------------------------- 9. argument types


@pytest.mark.parametrize(
    ("call", "names"),
    [
        (lambda s: s.search(np.ones(4), k="5"), "k"),
        (lambda s: s.search(np.ones(4), k=2.5), "k"),
        (lambda s: s.search(np.ones(4), 3, offset="1"), "offset"),
        (lambda s: s.search(np.ones(4), 3, ef="10"), "ef"),
        (lambda s: s.search(np.ones(4), 3, with_metadata="no"), "with_metadata"),
        (lambda s: s.search(np.ones(4), 3, with_vectors=1), "with_vectors"),
        (lambda s: s.search(np.ones(4), 3, exclude="abc"), "exclude"),
        (lambda s: s.search(np.ones(4), 3, filter=5), "filter"),
        (lambda s: s.search_many(np.ones((2, 4)), k=None), "k"),
        (lambda s: s.within(np.ones(4), "0.5"), "radius"),
        (lambda s: s.within(np.ones(4), 0.5, limit="10"), "limit"),
        (lambda s: s.similar("a", k="3"), "k"),
        (lambda s: s.put_many(["a"], np.ones((1, 4)), metadata={"genre": "x"}), "metadata"),
        (lambda s: s.put_many(["a"], np.ones((1, 4)), metadata="x"), "metadata"),
        (lambda s: s.put_many("ab", np.ones((2, 4))), "keys"),
        (lambda s: s.put("a", np.ones(4), ttl=1e16), "ttl"),
        (lambda s: s.put("a", np.ones(4), ttl="5"), "ttl"),
        (lambda s: s.get_many(["a"], missing=None), "missing"),
        (lambda s: s.get("a", refresh_ttl="yes"), "refresh_ttl"),
        (lambda s: s.average(["a"], weights="abc"), "weights"),
        (lambda s: s.average(["a"], normalize="yes"), "normalize"),
        (lambda s: s.combine(add="ab"), "add"),
        (lambda s: s.combine(add=["a"], subtract=5), "subtract"),
        (lambda s: s.update_mean("u", ["a"], alpha="0.5"), "alpha"),
        (lambda s: s.update_mean("u", "a"), "items"),
        (lambda s: s.get_or_compute(["a"], 5), "compute"),
        (
            lambda s: s.get_or_compute(["a"], lambda k: np.ones((1, 4)), lock_seconds="1"),
            "lock_seconds",
        ),
    ],
)
def test_wrong_argument_types_name_the_argument(
    make: Make, space_name: str, call: Callable[[Api], Any], names: str
) -> None:
    s = make(space_name, 4, metric="l2", algorithm="flat", fields={"genre": "tag"}, ttl=60)
    s.put("a", np.ones(4))
    with pytest.raises(rediscache.InvalidInputError, match=names):
        call(s)
    assert s.get_many(["a", "u"], missing="nan")[1:].size == 4 and len(s.sync) == 1


def test_a_ttl_too_large_for_redis_is_refused_before_writing(make: Make, space_name: str) -> None:
    s = make(space_name, 4, metric="l2", algorithm="flat", ttl=60)
    with pytest.raises(rediscache.InvalidInputError, match="too long"):
        s.put_many(["a", "b"], np.ones((2, 4)), ttl=1e16)
    assert np.isnan(s.get_many(["a", "b"], missing="nan")).all()


def test_hub_arguments_of_the_wrong_type(hub: Hub, space_name: str) -> None:
    for call in (
        lambda: hub.create_space(space_name, "4"),
        lambda: hub.create_space(space_name, 4, dtype=["float32"]),
        lambda: hub.create_space(space_name, 4, fields=["genre"]),
        lambda: hub.create_space(space_name, 4, ttl="60"),
        lambda: hub.create_space(space_name, 4, expiring="yes"),
        lambda: hub.space(5),
        lambda: hub.drop_space(None),
        lambda: rediscache.connect(5),
    ):
        with pytest.raises(rediscache.InvalidInputError):
            call()
    assert hub.create_space(space_name, np.int64(4)).dim == 4
    assert Tag("g", "x").values == ("x",)


def test_import_and_export_refuse_what_they_cannot_take(
    hub: Hub, space_name: str, tmp_path: Any
) -> None:
    space = hub.create_space(space_name, 2, metric="l2", algorithm="flat")
    rows = tmp_path / "rows.jsonl"
    big = "1" + "0" * 400
    rows.write_text(
        '{"id": "a", "vector": [1, 2]}\n{"id": "\\ud800", "vector": [1, 2]}\n'
        f'{{"id": "big", "vector": [{big}, 2]}}\n{{"id": "b", "vector": [3, 4]}}\n'
    )
    report = rediscache.import_file(space, rows)  # bad rows are rejected, the others written
    assert report.written == 2 and [r.row for r in report.rejected] == [2, 3]
    assert sorted(k for keys, _, _ in space.iter_batches() for k in keys) == ["a", "b"]
    npy, meta = tmp_path / "c.npy", tmp_path / "c.jsonl"
    np.save(npy, np.ones((2, 2), dtype=complex))
    meta.write_text('{"id": "x"}\n{"id": "y"}\n')
    with pytest.raises(rediscache.InvalidInputError, match="complex"):
        rediscache.import_file(space, npy, meta=meta)
    with pytest.raises(rediscache.ReadOnlyError):
        rediscache.import_file(space.at(space.snapshot("v")), rows)
    for call in (
        lambda: rediscache.import_file(None, rows),  # type: ignore[arg-type]
        lambda: rediscache.import_file(space, None),  # type: ignore[arg-type]
        lambda: rediscache.import_file(space, rows, batch_size="10"),  # type: ignore[arg-type]
        lambda: rediscache.import_file(space, rows, progress=5),  # type: ignore[arg-type]
        lambda: rediscache.export_file(space, tmp_path / "o.jsonl", vector_field="id"),
        lambda: rediscache.export_file(hub, tmp_path / "o.jsonl"),  # type: ignore[arg-type]
        lambda: rediscache.export_file(space, None),  # type: ignore[arg-type]
        lambda: rediscache.export_file(space, tmp_path / "o.jsonl", id_field=None),  # type: ignore[arg-type]
    ):
        with pytest.raises(rediscache.InvalidInputError):
            call()
    assert not (tmp_path / "o.jsonl").exists()


def test_versions_are_read_only_and_belong_to_one_space(hub: Hub, space_name: str) -> None:
    a = hub.create_space(space_name, 2, metric="l2", algorithm="flat", ttl=60)
    b = hub.create_space(space_name + "-b", 2, metric="l2", algorithm="flat")
    try:
        a.put("k", [1.0, 2.0])
        b.put("k", [3.0, 4.0])
        va, vb = a.snapshot("a-label"), b.snapshot("b-label")
        assert va.id == vb.id  # same id, different spaces
        view = a.at(va)
        for call in (
            lambda: view.get("k", refresh_ttl=5),
            lambda: view.get_many(["k"], refresh_ttl=5),
        ):
            with pytest.raises(rediscache.ReadOnlyError):
                call()
        assert hub.client.pttl(a.live_keys.doc("k")) > 50_000  # untouched
        for call in (
            lambda: b.rollback(va),
            lambda: b.at(va),
            lambda: b.version(va),
            lambda: b.delete_version(va),
            lambda: b.diff(va),
        ):
            with pytest.raises(rediscache.VersionNotFoundError, match="not of"):
                call()
        assert b.version(np.int64(vb.id)) == vb  # numpy ints name versions too
    finally:
        hub.drop_space(space_name + "-b")


def test_deep_or_long_filters_are_refused_not_crashed(make: Make, space_name: str) -> None:
    s = make(space_name, 2, metric="l2", algorithm="flat", fields={"g": "tag", "t": "text"})
    s.put("k", [1.0, 0.0], {"g": "x" * 4096, "t": "y" * 128})
    q = np.array([1.0, 0.0])
    assert [h.key for h in s.search(q, 1, filter={"g": "x" * 4096})] == ["k"]
    assert [h.key for h in s.search(q, 1, filter={"t": "y" * 128})] == ["k"]
    with pytest.raises(rediscache.InvalidInputError, match="4,096 bytes"):
        s.put("k2", [1.0, 0.0], {"g": "x" * 4097})
    with pytest.raises(rediscache.InvalidInputError, match="4,096 bytes"):
        s.search(q, 1, filter={"g": "x" * 4097})
    with pytest.raises(rediscache.InvalidInputError, match="128 bytes"):
        s.search(q, 1, filter={"t": "y" * 129})
    deep: Any = Tag("g", "x")
    for _ in range(500):
        deep = rediscache.Not(rediscache.And(deep, Tag("g", "y")))
    with pytest.raises(rediscache.InvalidInputError, match="nested deeper"):
        s.search(q, 1, filter=deep)


# ---------------------------------------------------------------- a space created again


def test_a_handle_of_a_dropped_space_never_writes_into_its_successor(
    make: Make, space_name: str, hub: Hub
) -> None:
    """A space dropped and created again (e.g. with a new model's dim) starts at the same
    epoch; a handle opened before the drop must not take the new space's state for its own
    and write its old schema into it (transaction and script paths alike)."""
    old = make(space_name, 8, algorithm="flat")
    rng = np.random.default_rng(4)
    old.put_many([f"k{i}" for i in range(20)], rng.standard_normal((20, 8)))
    hub.drop_space(space_name)
    new = hub.create_space(space_name, 4, metric="l2", algorithm="flat")
    with pytest.raises(rediscache.SpaceNotFoundError, match="dropped and created again"):
        old.put_many([f"k{i}" for i in range(20)], rng.standard_normal((20, 8)))  # MULTI/EXEC
    with pytest.raises(rediscache.SpaceNotFoundError, match="dropped and created again"):
        old.put("x", rng.standard_normal(8))  # write.lua
    with pytest.raises(rediscache.SpaceNotFoundError, match="dropped and created again"):
        old.get("k1")
    assert len(new) == 0 and new.get("k1") is None and new.get("x") is None
    assert hub.space(space_name).config.dim == 4
    new.put_many([f"n{i}" for i in range(20)], rng.standard_normal((20, 4)))
    assert len(hub.space(space_name)) == 20 and new.info().index_failures == 0
