"""Feature-store caching on a real server: time to live, read-through get_or_compute."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
import redis
from both import send_twice

import rediscache
from rediscache import Hub
from rediscache.drive import SyncDriver


def _vectors(n: int, dim: int = 4, seed: int = 0) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _pttl(hub: Hub, space: rediscache.Space, key: str) -> int:
    return int(hub.client.pttl(space.live_keys.doc(key)))


# ---------------------------------------------------------------- time to live


def test_default_and_per_write_ttl(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 4, metric="l2", ttl=30)
    assert space.config.ttl == 30.0
    assert hub.space(space_name).config.ttl == 30.0  # stored with the schema
    vecs = _vectors(4)
    space.put_many(["a", "b"], vecs[:2])
    assert 25_000 < _pttl(hub, space, "a") <= 30_000
    space.put("c", vecs[2], ttl=5)
    assert 0 < _pttl(hub, space, "c") <= 5_000
    space.put("d", vecs[3], ttl=0)  # never expires
    assert _pttl(hub, space, "d") == -1
    space.put("a", vecs[0], ttl=0)  # a put replaces the record, its expiry included
    assert _pttl(hub, space, "a") == -1
    for bad in (-1, float("nan"), "10", 0.0001, True):
        with pytest.raises(rediscache.InvalidInputError):
            space.put("e", vecs[0], ttl=bad)  # type: ignore[arg-type]
    with pytest.raises(rediscache.InvalidInputError):
        hub.create_space(space_name + "x", 4, ttl=0)


def test_expired_embeddings_vanish_from_reads_search_and_len(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 4, metric="l2", expiring=True)
    vecs = _vectors(20)
    space.put_many([f"k{i}" for i in range(20)], vecs)
    space.put_many(["short0", "short1"], vecs[:2] + 0.001, ttl=0.2)
    assert len(space) == 22
    assert {"short0", "k0"} <= {h.key for h in space.search(vecs[0], 4)}
    time.sleep(0.4)
    assert space.get("short0") is None
    assert np.isnan(space.get_many(["short1", "k1"], missing="nan")[0, 0])
    hits = {h.key for h in space.search(vecs[0], 4)}
    assert "short0" not in hits and "short1" not in hits and "k0" in hits
    assert len(space) == 20  # the reads made Redis delete them, and the index with them


def test_reads_refresh_the_ttl_in_the_same_round_trip(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 4, metric="l2", ttl=2)
    vecs = _vectors(3)
    space.put_many(["a", "b", "c"], vecs, ttl=1)
    assert _pttl(hub, space, "a") <= 1000
    assert np.array_equal(space.get("a", refresh_ttl=True), vecs[0])
    assert 1000 < _pttl(hub, space, "a") <= 2000
    out = space.get_many(["b", "c", "zz"], missing="nan", refresh_ttl=60)
    assert np.array_equal(out[:2], vecs[1:]) and np.isnan(out[2, 0])
    assert 50_000 < _pttl(hub, space, "b") <= 60_000
    assert not hub.client.exists(space.live_keys.doc("zz"))  # a miss creates nothing
    plain = hub.create_space(space_name + "p", 4, metric="l2", expiring=True)
    never = hub.create_space(space_name + "n", 4, metric="l2")
    try:
        with pytest.raises(rediscache.InvalidInputError, match="default ttl"):
            plain.get("a", refresh_ttl=True)
        for bad in (True, 5):
            with pytest.raises(rediscache.InvalidInputError, match="expiring space"):
                never.get("a", refresh_ttl=bad)
            with pytest.raises(rediscache.InvalidInputError, match="expiring space"):
                never.get_many(["a"], refresh_ttl=bad)
    finally:
        hub.drop_space(space_name + "p")
        hub.drop_space(space_name + "n")


def test_versions_of_a_space_with_ttl(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 4, metric="l2", ttl=60)
    vecs = _vectors(10)
    space.put_many([f"k{i}" for i in range(10)], vecs)
    space.put_many(["gone"], vecs[:1], ttl=0.2)
    v = space.snapshot("v")
    time.sleep(0.4)
    # the first write copies the generation: expired documents are not counted against it
    space.put("new", vecs[1])
    assert len(space.at(v)) == 11  # recorded at snapshot time
    assert space.at(v).get("gone") is None and np.array_equal(space.at(v).get("k3"), vecs[3])
    assert space.get("new") is not None


# ---------------------------------------------------------------- get_or_compute


class Model:
    """A slow embedding model that counts what it computes."""

    def __init__(self, dim: int = 4, delay: float = 0.0) -> None:
        self.dim, self.delay = dim, delay
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

    def vector(self, key: str) -> np.ndarray[Any, Any]:
        seed = int.from_bytes(key.encode()[:8].ljust(8, b"\0"), "little") % 2**32
        return np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)

    def __call__(self, keys: list[str]) -> np.ndarray[Any, Any]:
        with self.lock:
            self.calls.append(list(keys))
        time.sleep(self.delay)
        return np.stack([self.vector(k) for k in keys])

    def computed(self) -> list[str]:
        return [k for call in self.calls for k in call]


def test_get_or_compute_reads_hits_and_stores_misses(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 4, metric="l2", ttl=60)
    model = Model()
    space.put_many(["a", "c"], np.stack([model.vector("a"), model.vector("c")]))
    out = space.get_or_compute(["a", "b", "c", "d", "b"], model)
    assert model.calls == [["b", "d"]]  # only the misses, each once
    expected = np.stack([model.vector(k) for k in ["a", "b", "c", "d", "b"]])
    assert np.array_equal(out, expected)
    assert np.array_equal(space.get("d"), model.vector("d"))  # stored ...
    assert 50_000 < _pttl(hub, space, "d") <= 60_000  # ... with the space's ttl
    space.get_or_compute(["e"], model, ttl=5)
    assert 0 < _pttl(hub, space, "e") <= 5_000
    again = space.get_or_compute(["a", "b", "c", "d"], model)
    assert len(model.calls) == 2 and np.array_equal(again, expected[:4])  # all hits
    assert not hub.client.keys(space.keys.compute_lock("*"))  # no lock left behind


def test_get_or_compute_checks_what_compute_returns(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 4, metric="l2")
    with pytest.raises(rediscache.InvalidInputError, match="returned 1 vectors"):
        space.get_or_compute(["a", "b"], lambda keys: np.ones((1, 4)))
    with pytest.raises(rediscache.InvalidInputError):
        space.get_or_compute(["a"], lambda keys: np.ones((1, 3)))
    with pytest.raises(rediscache.InvalidInputError):
        space.get_or_compute(["a"], lambda keys: [[np.nan, 1, 1, 1]])
    assert len(space) == 0  # nothing stored
    assert not hub.client.keys(space.keys.compute_lock("*"))


def test_no_stampede_across_threads(hub: Hub, space_name: str) -> None:
    hub.create_space(space_name, 4, metric="l2")
    model = Model(delay=0.2)
    keys = [f"item:{i}" for i in range(5)]
    results: list[np.ndarray[Any, Any]] = []
    errors: list[BaseException] = []
    pool = hub.node_client(space_name).connection_pool
    other = redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, **pool.connection_kwargs
        )
    )
    other_hub = rediscache.connect(client=other)

    def call(h: Hub) -> None:
        try:
            results.append(h.space(space_name).get_or_compute(keys, model))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(hub if i % 2 else other_hub,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert not errors, errors
    assert sorted(model.computed()) == sorted(keys)  # every key computed exactly once
    expected = np.stack([model.vector(k) for k in keys])
    assert len(results) == 8 and all(np.array_equal(r, expected) for r in results)


def test_outage_fails_open_or_raises(hub: Hub, space_name: str) -> None:
    space = hub.space(hub.create_space(space_name, 4, metric="l2").name)
    # the server goes away after the space was opened
    space._driver = SyncDriver(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2))
    model = Model()
    out = space.get_or_compute(["a", "b"], model, on_error="compute")
    assert np.array_equal(out, np.stack([model.vector("a"), model.vector("b")]))
    with pytest.raises(rediscache.ConnectionFailedError, match="get_or_compute in space"):
        space.get_or_compute(["a"], model)


_WORKER = """
import json, sys, time, zlib
import numpy as np, redis, rediscache

cfg = json.loads(sys.argv[1])
if "url" in cfg:
    hub = rediscache.connect(cfg["url"])
else:
    hub = rediscache.connect(client=redis.Redis(
        unix_socket_path=cfg["path"], password=cfg["password"], protocol=2))
client = hub.client  # on a cluster a RedisCluster client: the counter's node

def compute(missing):
    for key in missing:
        client.hincrby(cfg["counter"], key, 1)
    time.sleep(0.3)
    return np.stack([np.random.default_rng(zlib.crc32(k.encode())).standard_normal(4)
                     for k in missing])

space = hub.space(cfg["space"])
space.get_or_compute(cfg["keys"], compute)
hub.close()
"""


def test_no_stampede_across_processes(hub: Hub, space_name: str) -> None:
    import json
    import os
    import subprocess
    import sys
    import zlib

    hub.create_space(space_name, 4, metric="l2")
    keys = [f"item:{i}" for i in range(6)]
    counter = f"rc:{{{space_name}}}:test-computed"
    cfg: dict[str, Any] = {"space": space_name, "keys": keys, "counter": counter}
    url = os.environ.get("REDISCACHE_TEST_URL")
    if url:
        cfg["url"] = url
    else:
        assert hub.server is not None
        cfg.update(path=hub.server.unix_socket, password=hub.server.password)
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, json.dumps(cfg)]) for _ in range(4)
    ]  # separate processes: each has its own in-process table, only the Redis locks coordinate
    for p in procs:
        assert p.wait(timeout=60) == 0
    counts = {k.decode(): int(v) for k, v in hub.client.hgetall(counter).items()}
    hub.client.delete(counter)
    assert counts == {k: 1 for k in keys}  # the Redis locks kept the others waiting
    got = hub.space(space_name).get_many(keys)
    expected = [np.random.default_rng(zlib.crc32(k.encode())).standard_normal(4) for k in keys]
    assert np.allclose(got, np.stack(expected), atol=1e-6)


# ---------------------------------------------------------------- metrics


def test_metrics_count_calls_hits_errors_and_latency(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 4, metric="l2")
    hub.metrics(reset=True)
    vecs = _vectors(3)
    space.put_many(["a", "b"], vecs[:2])
    space.put("c", vecs[2])  # counted once, as put (not also as put_many)
    assert space.get("a") is not None and space.get("zz") is None
    space.get_many(["a", "zz", "b"], missing="nan")
    with pytest.raises(rediscache.KeyNotFoundError):
        space.get_many(["zz"])
    space.search(vecs[0], 2)
    space.get_or_compute(["a", "new"], lambda keys: np.ones((len(keys), 4)))
    m = hub.metrics()
    assert m["put_many"].calls == 1 and m["put"].calls == 1
    assert (m["get"].calls, m["get"].hits, m["get"].misses) == (2, 1, 1)
    assert (m["get_many"].calls, m["get_many"].errors) == (2, 1)
    assert (m["get_many"].hits, m["get_many"].misses) == (2, 1)
    assert (m["get_or_compute"].hits, m["get_or_compute"].misses) == (1, 1)
    assert m["search"].calls == 1 and 0 < m["search"].p50_us <= m["search"].p99_us
    assert "get" in hub.metrics(reset=True) and hub.metrics() == {}


# ---------------------------------------------------------------- hot cache


def _eventually(check: Any, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.005)
    return bool(check())


def test_hot_cache_hits_and_sees_other_clients_writes(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 4, metric="l2")
    other = hub.space(space_name)  # another client's view (its own Space object)
    vecs = _vectors(6)
    space.put_many(["a", "b", "c"], vecs[:3])
    cache = space.enable_hot_cache(max_items=100)
    try:
        assert np.array_equal(space.get("a"), vecs[0])  # a miss, then cached
        hub.client.config_set("loglevel", "notice")  # any command: the server is reachable
        assert np.array_equal(space.get("a"), vecs[0])
        s = cache.stats()
        assert (s.hits, s.misses, s.items, s.active) == (1, 1, 1, True)

        other.put("a", vecs[3])  # another client's write: invalidated by the server
        assert _eventually(lambda: np.array_equal(space.get("a"), vecs[3]))
        assert cache.stats().invalidations >= 1

        space.put("a", vecs[4])  # our own write: seen at once
        assert np.array_equal(space.get("a"), vecs[4])

        out = space.get_many(["a", "b", "zz"], missing="nan")  # hit, miss, absent
        assert np.array_equal(out[:2], np.stack([vecs[4], vecs[1]])) and np.isnan(out[2, 0])
        assert np.array_equal(space.get_many(["a", "b"]), np.stack([vecs[4], vecs[1]]))

        other.delete("b")
        assert _eventually(lambda: space.get("b") is None)
    finally:
        space.disable_hot_cache()
    assert space.hot_cache is None and not cache.active


def test_hot_cache_follows_rollbacks_and_expiry(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 4, metric="l2", expiring=True)
    other = hub.space(space_name)
    vecs = _vectors(4)
    space.put("a", vecs[0])
    v = space.snapshot("v")
    space.put("a", vecs[1])
    space.enable_hot_cache()
    try:
        assert np.array_equal(space.get("a"), vecs[1])
        assert np.array_equal(space.get("a"), vecs[1])  # cached
        other.rollback(v)  # another client switches the live generation
        assert _eventually(lambda: np.array_equal(space.get("a"), vecs[0]))

        space.put("t", vecs[2], ttl=0.2)
        assert np.array_equal(space.get("t"), vecs[2])
        assert np.array_equal(space.get("t"), vecs[2])  # cached
        assert _eventually(lambda: space.get("t") is None, 5.0)  # expired on the server
    finally:
        space.disable_hot_cache()


def test_hot_cache_bounds(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 4, metric="l2")
    space.put_many([f"k{i}" for i in range(5)], _vectors(5))
    cache = space.enable_hot_cache(max_items=2)
    try:
        for i in range(5):
            space.get(f"k{i}")
        assert cache.stats().items == 2
        small = space.enable_hot_cache(max_bytes=200)  # one 16-byte vector plus overhead
        space.get_many(["k0", "k1", "k2"])
        assert small.stats().items == 1 and not cache.active
        with pytest.raises(rediscache.InvalidInputError):
            space.enable_hot_cache(max_items=0)
    finally:
        space.disable_hot_cache()


def test_stored_results_get_the_default_ttl(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 4, metric="l2", ttl=30)
    vecs = _vectors(3)
    space.put_many(["a", "b", "c"], vecs, ttl=0)
    space.average(["a", "b"], into="avg")
    space.combine(add=["a"], subtract=["b"], into="comb")
    space.update_mean("user", ["c"])
    for key in ("avg", "comb", "user"):
        assert 25_000 < _pttl(hub, space, key) <= 30_000, key
    plain = hub.create_space(space_name + "p", 4, metric="l2", expiring=True)
    try:
        plain.put("a", vecs[0], ttl=5)
        plain.update_mean("a", [vecs[1]])  # no default: the expiry is left as it is
        assert 0 < _pttl(hub, plain, "a") <= 5_000
        plain.average(["a"], into="avg")
        assert _pttl(hub, plain, "avg") == -1
    finally:
        hub.drop_space(space_name + "p")


def test_compute_locks_sent_again_stay_the_callers_own(
    make: Any, space_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """get_or_compute's locks (one SET NX per missing key, pipelined) sent a second time,
    as after a reply lost to a broken connection: the keys the call locked are still its
    own to compute and unlock, never another caller's to wait for (before, the second SET
    NX answered nil, so the call polled until its own locks expired, lock_seconds, and
    left them behind)."""
    from rediscache.caching import ReadThrough

    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("waited for keys this call had locked")

    api = make(space_name, 4, metric="l2")
    again = send_twice(monkeypatch, lambda c: c[0] == "SET" and "NX" in c)
    monkeypatch.setattr(ReadThrough, "_wait_for", never)
    vecs = _vectors(3)
    computed: list[list[str]] = []

    def compute(keys: list[str]) -> np.ndarray[Any, Any]:
        computed.append(list(keys))
        return vecs[[int(k[1]) for k in keys]]

    got = api.get_or_compute(["k0", "k1", "k2"], compute, lock_seconds=30)
    assert again and computed == [["k0", "k1", "k2"]]
    np.testing.assert_array_equal(got, vecs)
    monkeypatch.undo()
    locks = [api._space._parts.target.keys.compute_lock(k) for k in ("k0", "k1", "k2")]
    assert api.raw.exists(*locks) == 0  # unlocked, not left to expire
