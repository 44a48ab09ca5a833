"""Partitioned spaces (create_space(..., partitions=P)): routing, search merge, recall, and
versions that are atomic for readers across partitions. Run on one server and on the
cluster (where the partitions go to different primaries)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from both import Api, in_threads, send_twice
from click.testing import CliRunner

import rediscache
from rediscache import Hub, PartitionedSpace, partitioned
from rediscache.cli import cli
from rediscache.keys import SpaceKeys, partition_of
from rediscache.state import RELEASE_FIELD

DIM = 8


def _rows(n: int, seed: int = 0, prefix: str = "k") -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    return [f"{prefix}{i}" for i in range(n)], rng.normal(size=(n, DIM)).astype(np.float32)


def _node_of(hub: Hub, name: str) -> Any:
    return hub.node_client(name) if hub.server_stats().cluster else hub.client


def test_partition_of_is_crc32_mod_p_and_stable() -> None:
    import zlib

    assert partition_of("item:7", 3) == zlib.crc32(b"item:7") % 3
    assert partition_of("é", 5) == zlib.crc32("é".encode()) % 5  # UTF-8 bytes
    assert {partition_of(f"k{i}", 4) for i in range(100)} == {0, 1, 2, 3}


def test_each_key_is_stored_in_its_partition_and_read_back_in_order(
    make: Callable[..., Api], space_name: str, hub: Hub
) -> None:
    space = make(space_name, DIM, metric="l2", fields={"tag": "tag"}, partitions=3)
    keys, vecs = _rows(90)
    meta = [{"tag": "even" if i % 2 == 0 else "odd", "i": i} for i in range(90)]
    assert space.put_many(keys, vecs, meta) == 90
    config = hub.space(space_name).config
    assert len(config.partitions) == 3
    for key in keys[:20]:  # the document is in the key's partition, and only there
        own = config.partitions[partition_of(key, 3)]
        for part in config.partitions:
            client = _node_of(hub, part)
            live = SpaceKeys.for_space(part).gen(1).doc(key)
            assert bool(client.exists(live)) == (part == own), (key, part)
    order = keys[::-1]
    np.testing.assert_array_equal(space.get_many(order), vecs[::-1])
    assert space.count() == 90
    np.testing.assert_array_equal(space.get("k5"), vecs[5])
    assert space.get("absent") is None
    out = space.get_many(["k1", "nope", "k2"], missing="nan")
    assert np.isnan(out[1]).all() and (out[[0, 2]] == vecs[[1, 2]]).all()
    with pytest.raises(rediscache.KeyNotFoundError) as err:
        space.get_many(["k1", "nope"])
    assert list(err.value.keys) == ["nope"]
    assert space.get_metadata_many(["k3", "zz"]) == [{"tag": "odd", "i": 3}, None]
    record = space.get_record("k4")
    assert record.metadata == {"tag": "even", "i": 4}
    updated = space.update_vectors(["k3", "nope", "k4"], np.full((3, DIM), 5.0), missing="skip")
    assert (updated.updated, updated.created, updated.skipped) == (2, 0, ("nope",))
    assert (space.get("k3") == 5).all() and space.get_record("k3").metadata == {
        "tag": "odd",
        "i": 3,
    }
    space.put_many(["k3", "k4"], vecs[[3, 4]], [meta[3], meta[4]])
    assert space.delete("k1", "k2", "zz") == 2 and space.count() == 88
    batches = space.iter_batches(16)
    assert sorted(k for b in batches for k in b[0]) == sorted(set(keys) - {"k1", "k2"})


def test_search_merges_every_partition_exactly_like_one_flat_space(
    make: Callable[..., Api], space_name: str
) -> None:
    space = make(space_name, DIM, metric="l2", algorithm="flat", fields={"tag": "tag"},
                 partitions=4)  # fmt: skip
    keys, vecs = _rows(200, seed=3)
    space.put_many(keys, vecs, [{"tag": "a" if i < 100 else "b"} for i in range(200)])
    rng = np.random.default_rng(9)
    for q in rng.normal(size=(5, DIM)).astype(np.float32):
        dist = ((vecs - q) ** 2).sum(axis=1)
        exact = [keys[i] for i in np.argsort(dist, kind="stable")[:25]]
        hits = space.search(q, 10)
        assert [h.key for h in hits] == exact[:10]
        for h in hits:  # the server's float32 distance in full (its sort key)
            assert float(np.float32(h.distance)) == h.distance
            assert abs(h.distance - float(dist[keys.index(h.key)])) <= 1e-5 * (1 + h.distance)
        page = space.search(q, 10, offset=10)  # pages of the merged ranking
        assert [h.key for h in page] == exact[10:20]
        without = space.search(q, 5, exclude=exact[:2])
        assert [h.key for h in without] == exact[2:7]
        tagged = [h.key for h in space.search(q, 5, filter={"tag": "b"})]
        assert tagged == [k for k in exact + keys if int(k[1:]) >= 100][: len(tagged)]
        assert len(tagged) == 5 and all(int(k[1:]) >= 100 for k in tagged)
        radius = float(np.sort(dist)[7]) + 1e-4
        assert [h.key for h in space.within(q, radius)] == exact[:8]
    many = space.search_many(rng.normal(size=(3, DIM)).astype(np.float32), 4)
    assert len(many) == 3 and all(len(hits) == 4 for hits in many)
    similar = space.similar("k0", 3)
    assert "k0" not in [h.key for h in similar] and len(similar) == 3


def test_paging_and_bounds_are_checked_as_in_one_space(
    make: Callable[..., Api], space_name: str
) -> None:
    """A partitioned HNSW space refuses a page past its ef as a space does (each partition
    is asked offset + k deep: pages past ef repeated and skipped hits with no error), and
    k, limit and offset have the same bounds and messages."""
    keys, vecs = _rows(300, seed=5)
    parted = make(space_name, DIM, metric="cosine", partitions=3)
    plain = make(space_name + "_one", DIM, metric="cosine")
    for space in (parted, plain):
        space.put_many(keys, vecs)
    q = vecs[0] + 0.1

    def refused(space: Api, call: str, *args: Any, **kwargs: Any) -> str:
        with pytest.raises(rediscache.InvalidInputError) as info:
            getattr(space, call)(*args, **kwargs)
        return str(info.value)

    for call, args, kwargs in [
        ("search", (q, 10), {"offset": 95}),  # 105 deep, past the default ef 100
        ("search", (q, 10), {"offset": 85, "exclude": [f"x{i}" for i in range(20)]}),
        ("search", (q, 10), {"offset": -1}),
        ("search", (q, 10), {"offset": 20_000}),
        ("search", (q, 10), {"offset": 9_995, "ef": 20_000}),
        ("search", (q, 10), {"exclude": "k1"}),
        ("search", (q, 10), {"ef": 0}),
        ("within", (q, 0.5), {"offset": 9_995, "limit": 10}),
        ("within", (q, 0.5), {"offset": -1}),
    ]:
        assert refused(parted, call, *args, **kwargs) == refused(plain, call, *args, **kwargs)
    assert "past ef=100" in refused(parted, "search", q, 10, offset=95)
    pages = [parted.search(q, 10, offset=o, ef=300) for o in range(0, 300, 10)]
    found = [h.key for page in pages for h in page]
    assert len(found) == len(set(found)) == 300  # with one ef deep enough: no repeat, no gap
    assert found == [h.key for h in parted.search(q, 300, ef=300)]


def test_messages_name_the_space_not_a_partition(make: Callable[..., Api], space_name: str) -> None:
    space = make(space_name, DIM, metric="l2", partitions=3)
    keys, vecs = _rows(30, seed=2)
    space.put_many(keys, vecs)
    with pytest.raises(rediscache.InvalidInputError) as info:
        space.put("k1", vecs[1], ttl=5)  # a space without expiry
    assert "#" not in str(info.value) and repr(space_name) in str(info.value)


def test_recall_at_10_of_three_partitions_matches_one_space_on_the_dev_set(
    hub: Hub, space_name: str, dev_data: Path, topology: str
) -> None:
    last = os.environ.get("REDISCACHE_TEST_TOPOLOGIES", "single,cluster").split(",")[-1]
    if topology != last.strip():
        pytest.skip("the same indexes on either topology: measured once, on the run's last")
    vectors = np.load(dev_data / "vectors.npy")
    queries = np.load(dev_data / "queries.npy")[:200]
    gt = np.load(dev_data / "gt_ids.npy")[:200, :10]
    keys = [str(i) for i in range(len(vectors))]

    def recall(space: Any) -> float:
        results = space.search_many(queries, 10)
        found = [len({int(h.key) for h in hits} & set(row.tolist())) / 10
                 for hits, row in zip(results, gt, strict=True)]  # fmt: skip
        return float(np.mean(found))

    one = hub.create_space(space_name, vectors.shape[1])
    one.put_many(keys, vectors)
    single = recall(one)
    hub.drop_space(space_name)
    parted = hub.create_space(space_name, vectors.shape[1], partitions=3)
    parted.put_many(keys, vectors)
    assert parted.count() == len(vectors)
    split = recall(parted)
    print(f"recall@10 one partition {single:.4f}, three partitions {split:.4f}")
    assert split >= 0.95
    assert abs(split - single) <= 0.01 or split > single


def test_vector_operations_over_partitions_match_numpy(
    make: Callable[..., Api], space_name: str
) -> None:
    space = make(space_name, DIM, metric="l2", partitions=3)
    keys, vecs = _rows(30, seed=5)
    space.put_many(keys, vecs)
    picks = ["k1", "k2", "k3", "k4", "k5", "k6"]  # spread over the partitions
    assert len({partition_of(k, 3) for k in picks}) > 1
    rows = vecs[[1, 2, 3, 4, 5, 6]].astype(np.float64)
    np.testing.assert_allclose(space.average(picks), rows.mean(axis=0), rtol=1e-5, atol=1e-6)
    w = [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(
        space.average(picks, weights=w, into="avg"),
        (rows * np.array(w)[:, None]).sum(axis=0) / sum(w),
        rtol=1e-5,
        atol=1e-6,
    )
    np.testing.assert_allclose(space.get("avg"), (rows * np.array(w)[:, None]).sum(0) / 21,
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    skipped = space.average(["k1", "gone"], missing="skip")
    assert skipped.used == 1 and skipped.missing == ("gone",)
    with pytest.raises(rediscache.KeyNotFoundError):
        space.average(["k1", "gone"])
    got = space.combine(add=["k1", vecs[2]], subtract=["k3"], normalize=False, into="c")
    np.testing.assert_allclose(got, vecs[1] + vecs[2] - vecs[3], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(space.get("c"), got, rtol=1e-6)
    space.put("m", vecs[0])
    mean = space.update_mean("m", ["k1", "k2", vecs[3]])
    np.testing.assert_allclose(mean, vecs[:4].mean(axis=0), rtol=1e-5, atol=1e-5)


def test_versions_snapshot_rollback_view_and_delete_every_partition(
    make: Callable[..., Api], space_name: str
) -> None:
    space = make(space_name, DIM, metric="l2", partitions=3)
    keys, vecs = _rows(60, seed=1)
    space.put_many(keys, vecs)
    v1 = space.snapshot("first")
    assert v1.count == 60 and [v.label for v in space.versions()] == ["first"]
    space.put_many(keys, vecs + 1)
    space.put("extra", vecs[0])
    view = space.at("first")
    assert len(view) == 60 and view.count() == 60
    np.testing.assert_array_equal(view.get_many(keys), vecs)
    assert view.search(vecs[7], 1)[0].key == "k7"
    with pytest.raises(rediscache.ReadOnlyError):
        view.put("x", vecs[0])
    assert space.count() == 61
    assert space.rollback("first").id == v1.id
    assert space.count() == 60 and space.get("extra") is None
    np.testing.assert_array_equal(space.get_many(keys), vecs)
    assert space.search(vecs[9], 1)[0].key == "k9"
    with pytest.raises(rediscache.InvalidInputError):
        space.snapshot("first")  # labels stay unique
    space.snapshot("second", keep_last=1)
    assert [v.label for v in space.versions()] == ["second"]
    space.delete_version("second")
    assert space.versions() == []
    for refused in ("diff", "get_or_compute"):  # not yet: a clear error
        with pytest.raises(rediscache.InvalidInputError, match="partitioned"):
            getattr(space, refused)("x")
    with pytest.raises(rediscache.VersionNotFoundError):
        space.rollback("first")


def _version_of(rows: np.ndarray) -> set[int]:
    """Which version rows come from: version A's rows lead with 1, B's with 2."""
    return {round(float(x)) for x in rows[:, 0]}


def test_readers_never_see_two_versions_across_partitions_during_rollbacks(
    hub: Hub, space_name: str
) -> None:
    space = hub.create_space(space_name, DIM, metric="l2", algorithm="flat", partitions=3)
    assert isinstance(space, PartitionedSpace)
    keys = [f"k{i}" for i in range(48)]
    assert {partition_of(k, 3) for k in keys} == {0, 1, 2}
    base = np.random.default_rng(2).normal(size=(48, DIM)).astype(np.float32) * 0.01
    a, b = base.copy(), base.copy()
    a[:, 0], b[:, 0] = 1, 2
    space.put_many(keys, a)
    space.snapshot("A")
    space.put_many(keys, b)
    space.snapshot("B")
    stop = threading.Event()
    seen: list[set[int]] = []
    errors: list[BaseException] = []

    def read() -> None:
        reader = hub.space(space_name)
        try:
            while not stop.is_set():
                seen.append(_version_of(reader.get_many(keys)))
                hits = reader.search(np.zeros(DIM, np.float32), 48, with_vectors=True)
                assert len(hits) == 48
                seen.append(_version_of(np.stack([h.vector for h in hits])))
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        for i in range(30):
            space.rollback("A" if i % 2 == 0 else "B")
    finally:
        stop.set()
        for t in readers:
            t.join(30)
    assert not errors, errors[0]
    assert len(seen) > 20
    assert all(len(s) == 1 for s in seen), [s for s in seen if len(s) > 1][:3]
    assert {next(iter(s)) for s in seen} == {1, 2}  # both versions were read


def test_a_rollback_whose_client_died_is_completed_by_the_next_reader(
    hub: Hub, space_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = hub.create_space(space_name, DIM, metric="l2", partitions=3)
    assert isinstance(space, PartitionedSpace)
    keys = [f"k{i}" for i in range(30)]
    a = np.ones((30, DIM), np.float32)
    space.put_many(keys, a)
    v = space.snapshot("A")
    space.put_many(keys, a * 2)
    # a switcher that died after switching partition 0 only (lease expired)
    parts = space._parts
    root = _node_of(hub, space_name)
    ids = json.loads(root.hget(parts.keys.versions, v.id))["parts"]
    intent = {"release": 2, "parts": ids, "version": v.id}
    root.hset(parts.keys.config, partitioned.SWITCH_FIELD, json.dumps(intent))
    first = space.config.partitions[0]
    _node_of(hub, first).hset(SpaceKeys.for_space(first).config, RELEASE_FIELD, "~2")
    hub._driver.run(parts.parts[0].versions.rollback(ids[0]))
    _node_of(hub, first).hset(SpaceKeys.for_space(first).config, RELEASE_FIELD, "2")
    monkeypatch.setattr(partitioned, "SWITCH_STALL", 0.05)
    started = time.monotonic()
    rows = hub.space(space_name).get_many(keys)  # waits, then completes the switch
    assert time.monotonic() - started < partitioned.SWITCH_WAIT
    assert _version_of(rows) == {1}
    assert not root.hget(parts.keys.config, partitioned.SWITCH_FIELD)
    assert root.hget(parts.keys.config, RELEASE_FIELD) == b"2"
    assert space.count() == 30


def test_a_batch_failing_in_a_later_partition_says_which_rows_were_stored(
    hub: Hub, space_name: str
) -> None:
    space = hub.create_space(space_name, DIM, metric="l2", partitions=3)
    assert isinstance(space, PartitionedSpace)
    keys, vecs = _rows(30)
    last = space._parts.parts[2].writes

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise rediscache.ServerError("the node went away")
        yield  # a flow

    last._write_chunks = broken  # type: ignore[method-assign]  # its writer of chunks
    with pytest.raises(rediscache.ServerError) as err:
        space.put_many(keys, vecs)
    stored = err.value.stored
    assert stored is not None and "stopped after" in str(err.value)
    assert sorted(stored) == sorted(k for k in keys if partition_of(k, 3) != 2)
    assert space.count() == len(stored)
    with pytest.raises(rediscache.InvalidInputError):  # checked whole before any write
        space.put_many(["x", "y"], np.ones((2, DIM + 1)))
    assert space.count() == len(stored)


def test_partitions_spread_over_the_primaries_of_a_cluster_and_drop_goes_whole(
    hub: Hub, space_name: str, topology: str
) -> None:
    space = hub.create_space(space_name, DIM, partitions=3)
    space.put_many(*_rows(30))
    names = space.config.partitions
    if topology == "cluster":
        nodes = {hub._driver.nodes.address(SpaceKeys.for_space(n).config) for n in names}
        assert len(nodes) == 3
    info = space.info()
    assert info.count == 30 and len(info.partitions) == 3
    assert sum(p.count for p in info.partitions) == 30
    assert hub.spaces().count(space_name) == 1 and not any("#" in s for s in hub.spaces())
    with pytest.raises(rediscache.InvalidInputError):
        hub.space(names[0])  # partitions are reached through their space only
    hub.drop_space(space_name)
    for part in names:
        client = _node_of(hub, part)
        assert not client.keys(f"rc:{{{part}}}:*")
    with pytest.raises(rediscache.SpaceNotFoundError):
        hub.space(space_name)


def test_the_cli_creates_fills_and_searches_a_partitioned_space(
    hub: Hub, space_name: str, tmp_path: Path
) -> None:
    url = os.environ.get("REDISCACHE_TEST_URL")
    base = ["--url", url] if url else ["--data-dir", str(hub.server.data_dir)]  # type: ignore[union-attr]
    runner = CliRunner()

    def run(*args: str) -> Any:
        res = runner.invoke(cli, [*base, *args], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return res

    run("space", "create", space_name, "--dim", str(DIM), "--partitions", "3")
    keys, vecs = _rows(40)
    lines = [json.dumps({"id": k, "vector": v.tolist()}) for k, v in zip(keys, vecs, strict=True)]
    (tmp_path / "rows.jsonl").write_text("\n".join(lines) + "\n")
    run("import", space_name, str(tmp_path / "rows.jsonl"))
    assert hub.space(space_name).count() == 40
    listed = [line for line in run("space", "list").output.splitlines() if space_name in line]
    assert listed and listed[0].endswith("3 partitions")
    out = run("stats", space_name, "--json").output
    assert json.loads(out)["spaces"][0]["count"] == 40
    info = run("space", "info", space_name).output
    assert "partitions:       3" in info and info.count(" embeddings, ") == 3
    if url is not None and "cluster" in url:  # each partition's primary, and the root's
        assert info.count(", on 127.0.0.1:") == 3 and "node:             127.0.0.1:" in info
    res = runner.invoke(cli, [*base, "diff", space_name, "--stage", "x"])
    assert res.exit_code != 0 and "partitioned" in res.output
    # a release through the CLI: import into a stage, list it, publish it
    more = [json.dumps({"id": f"n{i}", "vector": [float(i + 1)] * DIM}) for i in range(25)]
    (tmp_path / "release.jsonl").write_text("\n".join(more) + "\n")
    run("import", space_name, str(tmp_path / "release.jsonl"), "--stage", "r2")
    assert "r2" in run("stages", space_name).output
    assert hub.space(space_name).count() == 40  # not live yet
    run("publish", space_name, "r2", "--yes")
    assert hub.space(space_name).count() == 25
    assert [v.count for v in hub.space(space_name).versions()][-1] == 40  # the kept one


def test_a_stage_is_published_in_every_partition_atomically_for_readers(
    make: Callable[..., Api], space_name: str, hub: Hub
) -> None:
    space = make(space_name, DIM, metric="l2", algorithm="flat", partitions=3)
    keys = [f"k{i}" for i in range(48)]
    base = np.random.default_rng(4).normal(size=(48, DIM)).astype(np.float32) * 0.01
    a, b = base.copy(), base.copy()
    a[:, 0], b[:, 0] = 1, 2
    space.put_many(keys, a)
    stage = space.stage("model-b")
    assert stage.put_many(keys, b) == 48 and stage.count() == 48
    assert _version_of(space.get_many(keys)) == {1}  # live readers see none of it
    assert _version_of(stage.get_many(keys)) == {2}
    assert [s.label for s in space.stages()] == ["model-b"] and space.stages()[0].count == 48
    assert space.staged("model-b").count() == 48
    kept = stage.publish(label="model-a")
    assert kept is not None and kept.label == "model-a" and kept.count == 48
    assert _version_of(space.get_many(keys)) == {2}
    assert space.search(b[3], 1)[0].key == "k3"
    with pytest.raises(rediscache.StageNotFoundError):
        stage.count()
    space.rollback("model-a")  # the release undone
    assert _version_of(space.get_many(keys)) == {1}
    other = space.stage()
    other.put("x", a[0])
    other.discard()
    assert space.stages() == []
    with pytest.raises(rediscache.StageNotFoundError):
        space.discard_stage("nope")


def test_readers_never_see_a_mix_while_releases_are_published(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, DIM, metric="l2", algorithm="flat", partitions=3)
    assert isinstance(space, PartitionedSpace)
    keys = [f"k{i}" for i in range(48)]
    rows = np.zeros((48, DIM), np.float32)
    space.put_many(keys, rows + 1)
    stop = threading.Event()
    seen: list[set[int]] = []
    errors: list[BaseException] = []

    def read() -> None:
        reader = hub.space(space_name)
        try:
            while not stop.is_set():
                seen.append(_version_of(reader.get_many(keys)))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for release in range(2, 8):
            stage = space.stage()
            rows[:, 0] = release
            stage.put_many(keys, rows)
            stage.publish(keep=False)
    finally:
        stop.set()
        thread.join(30)
    assert not errors, errors[0]
    assert all(len(s) == 1 for s in seen), [s for s in seen if len(s) > 1][:3]
    assert len({next(iter(s)) for s in seen}) >= 2
    assert space.versions() == []


def test_a_publish_whose_client_died_is_completed_by_the_next_reader(
    hub: Hub, space_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = hub.create_space(space_name, DIM, metric="l2", partitions=3)
    assert isinstance(space, PartitionedSpace)
    keys = [f"k{i}" for i in range(30)]
    space.put_many(keys, np.ones((30, DIM), np.float32))
    stage = space.stage("b")
    stage.put_many(keys, np.full((30, DIM), 2, np.float32))
    # a publisher that died after publishing partition 0 only, before recording it
    parts = space._parts
    root = _node_of(hub, space_name)
    intent = {"release": 2, "publish": "b", "keep": True, "label": "a", "kept": [None] * 3}
    root.hset(parts.keys.config, partitioned.SWITCH_FIELD, json.dumps(intent))
    first = space.config.partitions[0]
    _node_of(hub, first).hset(SpaceKeys.for_space(first).config, RELEASE_FIELD, "~2")
    hub._driver.run(stage._parts.parts[0].ops.publish(keep=True))
    monkeypatch.setattr(partitioned, "SWITCH_STALL", 0.05)
    rows = hub.space(space_name).get_many(keys)  # waits, then completes the publish
    assert _version_of(rows) == {2}
    assert not root.hget(parts.keys.config, partitioned.SWITCH_FIELD)
    versions = space.versions()
    assert [v.label for v in versions] == ["a"] and versions[0].count == 30
    space.rollback("a")
    assert _version_of(space.get_many(keys)) == {1}


def test_an_average_over_partitions_during_rollbacks_is_of_one_version(
    hub: Hub, space_name: str
) -> None:
    """average (and combine, update_mean, which read their inputs the same way) reads every
    input at one release: a rollback meanwhile never yields a mean of two versions."""
    space = hub.create_space(space_name, DIM, metric="l2", algorithm="flat", partitions=3)
    assert isinstance(space, PartitionedSpace)
    keys = [f"k{i}" for i in range(48)]
    base = np.random.default_rng(6).normal(size=(48, DIM)).astype(np.float32) * 0.01
    a, b = base.copy(), base.copy()
    a[:, 0], b[:, 0] = 1, 2
    space.put_many(keys, a)
    space.snapshot("A")
    space.put_many(keys, b)
    space.snapshot("B")
    stop = threading.Event()
    means: list[float] = []
    errors: list[BaseException] = []

    def average() -> None:
        reader = hub.space(space_name)
        try:
            while not stop.is_set():
                means.append(float(reader.average(keys)[0]))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=average)
    thread.start()
    try:
        for i in range(30):
            space.rollback("A" if i % 2 == 0 else "B")
    finally:
        stop.set()
        thread.join(30)
    assert not errors, errors[0]
    assert len(means) > 10
    assert all(abs(m - 1) < 1e-4 or abs(m - 2) < 1e-4 for m in means), sorted(set(means))[:5]


def test_concurrent_update_means_over_partitions_lose_no_item(hub: Hub, space_name: str) -> None:
    """update_mean stores the running mean with one script in the key's partition: threads
    adding items at once (inputs from other partitions and raw vectors) lose none (docs/scale.md
    says so). combine/average ``into`` are single writes of the same script kind."""
    space = hub.create_space(space_name, DIM, metric="l2", algorithm="flat", partitions=3)
    keys, vecs = _rows(12, seed=9)
    space.put_many(keys, vecs)
    inputs = [k for k in keys if partition_of(k, 3) != partition_of("shared", 3)][:4]
    assert inputs, "inputs from another partition than the mean's"
    threads, per_thread = 6, 10
    extra = np.random.default_rng(10).normal(size=(threads, per_thread, DIM)).astype(np.float32)

    def work(t: int) -> None:
        writer = hub.space(space_name)
        for i in range(per_thread):
            writer.update_mean("shared", [inputs[i % len(inputs)], extra[t, i]])

    errors = in_threads(work, threads)
    assert not errors, errors[0]
    items = [vecs[keys.index(inputs[i % len(inputs)])] for _ in range(threads)
             for i in range(per_thread)] + list(extra.reshape(-1, DIM))  # fmt: skip
    expected = np.mean(np.array(items, dtype=np.float64), axis=0)
    np.testing.assert_allclose(space.get("shared"), expected, rtol=1e-4, atol=1e-5)


def test_a_create_interrupted_before_its_root_is_taken_up_with_the_schema_asked(
    hub: Hub, space_name: str
) -> None:
    """Partitions left by a create that died before writing the root are reused only when
    they have the schema asked for, and replaced otherwise."""
    left = hub.create_space(space_name, 4, partitions=3)
    names = left.config.partitions
    root = _node_of(hub, space_name)
    root.delete(SpaceKeys.for_space(space_name).config)  # as if it died before the root
    again = hub.create_space(space_name, 8, metric="l2", partitions=3)
    assert again.config.partitions == names and again.dim == 8
    again.put_many([f"k{i}" for i in range(12)], np.ones((12, 8)))
    assert again.count() == 12 and again.search(np.ones(8), 1)[0].distance == 0
    same = hub.create_space(space_name, 8, metric="l2", partitions=3, exist_ok=True)
    assert same.count() == 12


def test_a_root_lease_sent_again_is_still_the_callers(
    hub: rediscache.Hub, space_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The root's lease of a snapshot or a rollback (SET NX) sent a second time, as after a
    lost reply, is still the caller's: the call goes on (before, the second SET NX answered
    nil and the caller waited for its own lease, then raised ServerError)."""
    from rediscache import partitioned

    monkeypatch.setattr(partitioned, "SWITCH_WAIT", 1.0)
    space = hub.create_space(space_name, 4, metric="l2", partitions=2)
    space.put_many(["a", "b", "c"], np.eye(3, 4))
    lock = space.keys.lock
    again = send_twice(monkeypatch, lambda c: c[:2] == ("SET", lock) and "NX" in c)
    space.snapshot("v1")
    space.put("a", np.ones(4))
    space.rollback("v1")
    assert len(again) >= 2
    monkeypatch.undo()
    np.testing.assert_array_equal(space.get("a"), np.eye(3, 4)[0])
