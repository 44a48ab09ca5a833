"""Spaces on a real Redis with RediSearch: create, put/get, search, filters, errors."""

from __future__ import annotations

import itertools
import re
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from both import send_twice

import rediscache
from rediscache import Hub, Num, Tag


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_create_get_and_list(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 4, metric="l2", fields={"genre": "tag"})
    assert space_name in hub.spaces()
    assert hub.space(space_name).config == space.config
    again = hub.create_space(space_name, 4, metric="l2", fields={"genre": "tag"}, exist_ok=True)
    assert again.config == space.config
    with pytest.raises(rediscache.SchemaMismatchError, match="already exists"):
        hub.create_space(space_name, 4, metric="l2", fields={"genre": "tag"})
    with pytest.raises(rediscache.SchemaMismatchError, match="another schema"):
        hub.create_space(space_name, 8, metric="l2", exist_ok=True)


def test_unknown_space(hub: Hub) -> None:
    with pytest.raises(rediscache.SpaceNotFoundError, match="does not exist"):
        hub.space("no-such-space-here")
    with pytest.raises(rediscache.SpaceNotFoundError):
        hub.drop_space("no-such-space-here")


def test_put_get_round_trip(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 8, fields={"genre": "tag", "year": "numeric"})
    vecs = _unit(np.random.default_rng(1), 20, 8)
    keys = [f"item:{i}" for i in range(20)]
    meta = [
        {"genre": "drama" if i % 2 else "comedy", "year": 1990 + i, "x": [i]} for i in range(20)
    ]
    assert space.put_many(keys, vecs, meta) == 20
    np.testing.assert_array_equal(space.get("item:3"), vecs[3])
    np.testing.assert_array_equal(space.get_many(keys[::-1]), vecs[::-1])
    rec = space.get_record("item:5")
    assert rec is not None and rec.metadata == meta[5]
    assert space.get("nope") is None and space.get_record("nope") is None
    assert len(space) == 20
    with pytest.raises(rediscache.KeyNotFoundError, match="'nope'"):
        space.get_many(["item:1", "nope"])
    absent = [f"gone{i}" for i in range(7)]
    with pytest.raises(rediscache.KeyNotFoundError, match="and 2 more") as caught:
        space.get_many(["item:1", *absent])
    assert caught.value.keys == tuple(absent)  # every missing key, not only those shown
    with pytest.raises(rediscache.KeyNotFoundError) as caught:
        space.similar("nope", 3)
    assert caught.value.keys == ("nope",)
    out = space.get_many(["item:1", "nope"], missing="nan")
    np.testing.assert_array_equal(out[0], vecs[1])
    assert np.isnan(out[1]).all()
    assert space.delete("item:1", "nope") == 1
    assert space.get("item:1") is None


def test_search_filters_and_similar(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 16, fields={"genre": "tag", "year": "numeric"})
    vecs = _unit(np.random.default_rng(2), 200, 16)
    keys = [f"k{i}" for i in range(200)]
    genres = ["a b|c", "x-y", "plain", "a@b{c}(d)\"e'*f g -h:~!"]
    meta = [{"genre": genres[i % 4], "year": i} for i in range(200)]
    space.put_many(keys, vecs, meta)
    q = vecs[7]
    exact = np.argsort(1 - vecs @ q)
    hits = space.search(q, 5)
    assert [h.key for h in hits] == [keys[i] for i in exact[:5]]
    assert hits[0].distance == pytest.approx(0.0, abs=1e-5)
    assert all(a.distance <= b.distance for a, b in itertools.pairwise(hits))
    # tag values with query syntax in them match literally
    for g in genres:
        got = space.search(q, 10, filter={"genre": g})
        want = [keys[i] for i in exact if meta[i]["genre"] == g][:10]
        assert [h.key for h in got] == want
    got = space.search(q, 300, filter={"year": (10, 19)})
    assert sorted(h.key for h in got) == sorted(keys[10:20])
    got = space.search(q, 300, filter=Tag("genre", "plain") & ~Tag("genre", "x-y"))
    assert {h.metadata["genre"] for h in got} == {"plain"}
    got = space.search(q, 300, filter=Tag("genre", "x-y") | Num("year", None, 3))
    assert {h.key for h in got} == {keys[i] for i in range(200) if i % 4 == 1 or i <= 3}
    got = space.search(q, 300, filter=~Tag("genre", ["plain", "x-y", "a b|c"]))
    assert {h.metadata["genre"] for h in got} == {genres[3]}
    sim = space.similar("k7", 4)
    assert [h.key for h in sim] == [keys[i] for i in exact[1:5]]
    many = space.search_many(vecs[:3], 3, with_vectors=True)
    assert [m[0].key for m in many] == keys[:3]
    np.testing.assert_array_equal(many[0][0].vector, vecs[0])
    with pytest.raises(rediscache.InvalidInputError, match=r"unknown|genre2"):
        space.search(q, 5, filter={"genre2": "a"})


def test_bad_input_writes_nothing(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 3)
    good = np.ones((2, 3), dtype=np.float32)
    cases = [
        (["a", "b"], np.ones((2, 4)), "shape"),
        (["a", "b"], [[1, 2, 3], [np.nan, 1, 1]], "NaN"),
        (["a", "b"], [[1, 2, 3], [0, 0, 0]], "zero vector"),
        (["a", ""], good, "non-empty"),
        (["a", 1], good, "non-empty"),
        (["a"], good, "1 keys but 2 vectors"),
        (["a", "a"], good, "duplicates"),
    ]
    for keys, vecs, match in cases:
        with pytest.raises(rediscache.InvalidInputError, match=match):
            space.put_many(keys, vecs)
    with pytest.raises(rediscache.InvalidInputError, match="metadata"):
        space.put_many(["a", "b"], good, [{"x": 1}])
    assert space.get_many(["a", "b"], missing="nan").shape == (2, 3)
    assert len(space) == 0


def test_wrong_byte_length_detected_on_read(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 4, metric="l2")
    hub.client.hset(space.live_keys.doc("bad"), "vec", b"\0" * 12)  # written by another tool
    with pytest.raises(rediscache.CorruptDataError, match="12 bytes"):
        space.get("bad")


def test_drop_space_removes_keys_and_index(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 2, metric="l2")
    space.put_many(["a", "b"], [[1, 2], [3, 4]])
    assert hub.drop_space(space_name) == 2
    assert space_name not in hub.spaces()
    assert not list(hub.client.scan_iter(match=space.keys.all_scan_pattern()))


def test_iter_batches_streams_everything(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 4, metric="l2")
    vecs = np.random.default_rng(3).standard_normal((250, 4)).astype(np.float32)
    keys = [f"r{i}" for i in range(250)]
    space.put_many(keys, vecs, [{"i": i} for i in range(250)])
    seen: dict[str, np.ndarray] = {}
    for ks, vs, ms in space.iter_batches(64, with_metadata=True):
        assert len(ks) <= 64 + 64 and ms is not None
        for k, v, m in zip(ks, vs, ms):
            assert m == {"i": int(k[1:])}
            seen[k] = v
    assert sorted(seen) == sorted(keys)
    np.testing.assert_array_equal(seen["r17"], vecs[17])


def test_within_and_paging(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 2, metric="l2", fields={"genre": "tag"})
    pts = np.array([[i, 0] for i in range(10)], dtype=np.float32)
    space.put_many(
        [f"p{i}" for i in range(10)],
        pts,
        [{"genre": "even" if i % 2 == 0 else "odd"} for i in range(10)],
    )
    # RediSearch's L2 distance is the squared euclidean distance
    got = space.within([0, 0], 9.5)
    assert [h.key for h in got] == ["p0", "p1", "p2", "p3"]
    assert [h.distance for h in got] == pytest.approx([0, 1, 4, 9])
    assert [h.key for h in space.within([0, 0], 9.5, filter={"genre": "odd"})] == ["p1", "p3"]
    assert [h.key for h in space.within([0, 0], 100, limit=3, offset=3)] == ["p3", "p4", "p5"]
    page2 = space.search([0, 0], 3, offset=3)
    assert [h.key for h in page2] == ["p3", "p4", "p5"]


def test_info(hub: Hub, space_name: str) -> None:
    space = hub.create_space(
        space_name, 4, metric="ip", algorithm="flat", dtype="float64", fields={"t": "text"}
    )
    space.put_many(["a", "b", "c"], np.eye(3, 4), [{"t": "hello world"}, None, None])
    info = space.info()
    assert (info.dim, info.metric, info.algorithm, info.dtype, info.count) == (
        4,
        "ip",
        "flat",
        "float64",
        3,
    )
    assert info.fields == {"t": "text"} and info.index_failures == 0
    assert info.memory_bytes > 0
    assert [h.key for h in space.search([1, 0, 0, 0], 3, filter={"t": "hello"})] == ["a"]


def test_recall_at_10_on_dev_data(hub: Hub, space_name: str, dev_data: Path) -> None:
    """Default HNSW settings reach recall@10 >= 0.95 against exact search on real embeddings."""
    vectors = np.load(dev_data / "vectors.npy")
    queries = np.load(dev_data / "queries.npy")[:200]
    gt = np.load(dev_data / "gt_ids.npy")[:200, :10]
    space = hub.create_space(space_name, vectors.shape[1])
    space.put_many([str(i) for i in range(len(vectors))], vectors)
    # ground truth checked with numpy too, so a wrong gt file cannot pass the test
    exact = np.argsort(-(queries[:5] @ vectors.T), axis=1)[:, :10]
    assert (exact == gt[:5]).mean() > 0.9
    results = space.search_many(queries, 10)
    recall = np.mean(
        [len({int(h.key) for h in hits} & set(row.tolist())) / 10 for hits, row in zip(results, gt)]
    )
    low = space.search_many(queries, 10, ef=10)
    recall_ef10 = np.mean(
        [len({int(h.key) for h in hits} & set(row.tolist())) / 10 for hits, row in zip(low, gt)]
    )
    print(f"recall@10 default={recall:.3f} ef10={recall_ef10:.3f}")
    assert recall >= 0.95
    assert recall_ef10 < recall  # the explicit default matters
    # range search: every embedding within the 10th nearest distance (RediSearch's own
    # EPSILON, 0.01, found about half of them: rediscache.ftsearch.RANGE_EPSILON)
    found = wanted = 0
    for q in queries[:20]:
        dist = 1 - vectors @ q / np.linalg.norm(q)
        radius = float(np.sort(dist)[9]) + 1e-5
        wanted += int((dist <= radius).sum())
        found += len(space.within(q, radius, limit=1000))
    assert found >= 0.99 * wanted, (found, wanted)


def test_put_replaces_the_whole_record(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 2, metric="l2", fields={"genre": "tag", "y": "numeric"})
    space.put("a", [1, 2], {"genre": "drama", "y": 3, "note": "x"})
    space.put("a", [3, 4], {"y": 5})
    rec = space.get_record("a")
    assert rec is not None and rec.metadata == {"y": 5} and rec.vector.tolist() == [3, 4]
    assert space.search([3, 4], 5, filter={"genre": "drama"}) == []
    assert [h.key for h in space.search([3, 4], 5, filter={"y": 5})] == ["a"]
    space.put("a", [5, 6])
    rec = space.get_record("a")
    assert rec is not None and rec.metadata == {}
    assert space.search([5, 6], 5, filter={"y": 5}) == []
    assert hub.client.hkeys(space.live_keys.doc("a")) == [b"vec"]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_other_dtypes(hub: Hub, space_name: str, dtype: str) -> None:
    space = hub.create_space(space_name, 8, dtype=dtype)
    vecs = _unit(np.random.default_rng(4), 50, 8)
    space.put_many([f"v{i}" for i in range(50)], vecs)
    tol = {"float16": 1e-3, "bfloat16": 1e-2, "float64": 1e-7}[dtype]
    np.testing.assert_allclose(space.get_many(["v3", "v4"]), vecs[3:5], atol=tol)
    assert space.search(vecs[9], 1)[0].key == "v9"
    assert space.info().dtype == dtype


def test_failed_rows_are_reported_exactly(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 2, metric="l2")
    hub.client.set(space.live_keys.doc("b"), "not a hash")  # written by another tool
    with pytest.raises(rediscache.ServerError, match=r"rows 0\.\.2 were not stored.*'b'"):
        space.put_many(["a", "b", "c"], [[1, 2], [3, 4], [5, 6]])
    # a chunk is one Lua script: it checks every key first and writes all rows or none
    assert space.get("a") is None and space.get("c") is None and len(space) == 0
    keys = [f"k{i}" for i in range(2500)]
    hub.client.delete(space.live_keys.doc("b"))
    hub.client.set(space.live_keys.doc("k1500"), "not a hash")
    with pytest.raises(rediscache.ServerError) as err:
        space.put_many(keys, np.ones((2500, 2)))
    # chunks are sized by time: whichever chunk held k1500 is named, and exactly the rows
    # before it are stored
    found = re.search(
        r"rows (\d+)\.\.(\d+) were not stored.*'k1500'.*rows before (\d+) are stored; "
        r"rows from (\d+) on were not sent",
        str(err.value),
    )
    assert found, str(err.value)
    start, last, before, after = (int(g) for g in found.groups())
    assert 0 < start <= 1500 <= last and before == start and after == last + 1
    assert len(space) == start and space.get(f"k{start - 1}") is not None
    assert space.get(f"k{start}") is None


def test_text_filter_matches_stop_words_and_phrases(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 2, metric="l2", fields={"title": "text"})
    space.put_many(
        ["a", "b", "c"],
        [[1, 0], [0, 1], [1, 1]],
        [{"title": "The Who"}, {"title": "who the"}, {"title": "New-York city (1999)"}],
    )
    assert [h.key for h in space.search([1, 0], 3, filter={"title": "the who"})] == ["a"]
    assert [h.key for h in space.search([1, 0], 3, filter={"title": "york city"})] == ["c"]


def test_search_errors_are_wrapped(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 2, metric="l2")
    space.put("a", [1, 2])
    # replaced behind our back by an index without the vector field: FT.SEARCH fails (an
    # index merely dropped is created again: the next test)
    gen = space.live_keys
    node = hub.node_client(space_name)
    node.execute_command("FT.DROPINDEX", gen.index)
    node.execute_command(
        "FT.CREATE", gen.index, "ON", "HASH", "PREFIX", 1, gen.doc_prefix, "SCHEMA", "x", "TAG"
    )
    with pytest.raises(rediscache.ServerError, match="search in space"):
        space.search([1, 2], 1)
    with pytest.raises(rediscache.ServerError, match="search in space"):
        space.search_many([[1, 2]], 1)
    with pytest.raises(rediscache.ServerError, match="search in space"):
        space.within([1, 2], 1.0)


def test_indexes_missing_under_the_live_space_are_created_from_its_config(
    hub: Hub, space_name: str
) -> None:
    """The indexes a space's state names but its server lacks (a cluster moved the space's
    slot to another node, where indexes do not follow; or they were dropped by hand) are
    created again by the next search from the stored config, versions' too."""
    space = hub.create_space(space_name, 2, metric="l2", fields={"cat": "tag"})
    space.put_many(["a", "b"], [[1, 2], [5, 5]], [{"cat": "x"}, {"cat": "y"}])
    space.snapshot("v1")
    space.put("a", [9, 9])  # the version keeps the old "a" in a generation of its own
    node = hub.node_client(space_name)
    version_index = space.at("v1").gen_keys.index
    for index in (space.live_keys.index, version_index):
        node.execute_command("FT.DROPINDEX", index)
    other = rediscache.connect(client=node).space(space_name)  # a hub that knows nothing
    assert [h.key for h in other.search([9, 9], 1)] == ["a"]
    assert [h.key for h in other.search([9, 9], 1, filter={"cat": "y"})] == ["b"]
    assert [h.key for h in other.at("v1").search([1, 2], 1)] == ["a"]
    listed = {i.decode() for i in node.execute_command("FT._LIST")}
    assert {space.live_keys.index, version_index} <= listed


def test_space_of_another_key_layout_is_refused(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 4)
    hub.client.hset(space.keys.config, "layout", "1")  # as rediscache before versions wrote
    with pytest.raises(rediscache.CorruptDataError, match="key layout '1'"):
        hub.space(space_name)


def test_a_new_space_is_searchable_at_once_on_a_server_holding_other_keys(
    hub: Hub, space_name: str
) -> None:
    """A new space's index is created without a scan of the keyspace (it has no document
    yet): with one, a server holding 100,000 other keys kept it 'indexing' (0.3 s here, 30 s
    in a trial loading 20,000 vectors beside 69,000 keys) and searches waited for it."""
    node = hub.node_client(space_name)
    tag = uuid.uuid4().hex[:8]
    others = [f"other-{tag}:{{{space_name}}}:{i}" for i in range(100_000)]  # its node's
    for start in range(0, len(others), 10_000):
        pipe = node.pipeline(transaction=False)
        for key in others[start : start + 10_000]:
            pipe.set(key, "x")
        pipe.execute()
    try:
        space = hub.create_space(space_name, 4)
        info = node.execute_command("FT.INFO", space.live_keys.index)
        fields = dict(zip(info[::2], info[1::2], strict=True))
        assert int(fields[b"indexing"]) == 0
        space.put("a", [1, 0, 0, 0])
        hub.index_wait, before = 0.0, hub.index_wait  # no waiting for an index build
        try:
            assert space.search([1, 0, 0, 0], 1)[0].key == "a"
        finally:
            hub.index_wait = before
    finally:
        for start in range(0, len(others), 10_000):
            node.unlink(*others[start : start + 10_000])


def test_a_create_sent_again_makes_the_space(
    make: Any, space_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """create_space whose last step (the alias and the config, one transaction) is sent a
    second time, as after a lost reply, returns the space it made (before, the second
    FT.ALIASADD's "Alias already exists" raised although the space was made whole)."""
    again = send_twice(monkeypatch, lambda c: str(c[0]).upper() == "FT.ALIASADD")
    api = make(space_name, 4, metric="l2")
    assert again
    monkeypatch.undo()
    api.put("a", np.ones(4, dtype=np.float32))
    assert [h.key for h in api.search(np.ones(4), 1)] == ["a"]
