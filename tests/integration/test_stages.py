"""Stages: a release built aside, checked, published in one step, discarded; and the
garbage collection that deletes what nothing uses any more (rediscache.collect)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from both import Api, async_hub_args

import rediscache
from rediscache import Hub, collect, scripts
from rediscache.drive import wait_background

DIM = 8
N = 120


def _vectors(seed: int, n: int = N) -> Any:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def _keys(n: int = N) -> list[str]:
    return [f"k{i}" for i in range(n)]


def _loaded(make: Callable[..., Api], name: str, **create: Any) -> tuple[Api, Any]:
    space = make(name, DIM, fields={"model": "tag"}, **create)
    old = _vectors(0)
    space.put_many(_keys(), old, [{"model": "a"}] * N)
    return space, old


def _prefix_keys(hub: Hub, prefix: str) -> set[bytes]:
    return set(hub.client.scan_iter(match=prefix.replace("{", "[{]") + "*", count=1000))


def _indexes(hub: Hub, prefix: str) -> list[str]:
    node = hub.node_client(prefix.split("{", 1)[1].split("}", 1)[0])  # the space's node
    return sorted(i.decode() for i in node.execute_command("FT._LIST")
                  if i.decode().startswith(prefix))  # fmt: skip


def test_a_stage_stays_invisible_until_published_then_shows_whole(
    make: Callable[..., Api], space_name: str
) -> None:
    space, old = _loaded(make, space_name)
    new = _vectors(1)
    stage = space.stage("model-b")
    assert stage.label == "model-b"
    stage.put_many(_keys(), new, [{"model": "b"}] * N)
    stage.put("extra", new[0], {"model": "b"})
    # live readers see nothing of the stage
    np.testing.assert_allclose(space.get("k3"), old[3], rtol=1e-5)
    assert len(space) == N and np.isnan(space.get_many(["extra"], missing="nan")).all()
    assert space.search(new[5], 3, filter={"model": "b"}) == []
    # the stage answers for itself
    assert len(stage) == N + 1
    np.testing.assert_allclose(stage.get("k3"), new[3], rtol=1e-5)
    assert stage.search(new[5], 1)[0].key == "k5"
    assert [s.label for s in space.stages()] == ["model-b"]
    version = stage.publish(label="model-a")
    assert version is not None and version.label == "model-a" and version.count == N
    assert len(space) == N + 1 and space.stages() == []
    np.testing.assert_allclose(space.get("k3"), new[3], rtol=1e-5)
    assert {h.key for h in space.search(new[5], 2, filter={"model": "b"})} >= {"k5"}
    assert space.search(old[5], 3, filter={"model": "a"}) == []
    # the release is undone in one step
    space.rollback("model-a")
    np.testing.assert_allclose(space.get("k3"), old[3], rtol=1e-5)
    assert len(space) == N


def test_a_published_or_discarded_stage_refuses_every_call(
    make: Callable[..., Api], space_name: str
) -> None:
    space, _ = _loaded(make, space_name)
    stage = space.stage()
    stage.put("a", _vectors(2, 1)[0])
    again = space.staged(stage.label)
    stage.discard()
    for call in (
        lambda: again.put("b", _vectors(3, 1)[0]),
        lambda: again.get("a"),
        lambda: again.count(),
        lambda: again.search(_vectors(3, 1)[0], 1),
        lambda: again.publish(),
        lambda: stage.discard(),
        lambda: space.staged(stage.label),
    ):
        with pytest.raises(rediscache.StageNotFoundError):
            call()
    # the same label staged again is another stage: the old handle stays refused
    fresh = space.stage(stage.label)
    with pytest.raises(rediscache.StageNotFoundError):
        again.put("c", _vectors(4, 1)[0])
    assert len(fresh) == 0


def test_staged_writes_are_checked_like_live_ones_and_write_nothing_when_bad(
    make: Callable[..., Api], space_name: str
) -> None:
    space, _ = _loaded(make, space_name)
    stage = space.stage("s")
    bad = _vectors(5, 3)
    bad[1, 2] = np.nan
    with pytest.raises(rediscache.InvalidInputError):
        stage.put_many(["x", "y", "z"], bad)
    with pytest.raises(rediscache.InvalidInputError):
        stage.put("x", np.ones(DIM + 1))
    with pytest.raises(rediscache.InvalidInputError):
        stage.put("x", np.ones(DIM), {"model": object()})
    assert len(stage) == 0
    with pytest.raises(rediscache.InvalidInputError):
        space.stage("s")  # the label is taken
    with pytest.raises(rediscache.InvalidInputError):
        space.stage("live")


def test_publish_without_keeping_deletes_the_replaced_contents(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, DIM)
    space.put_many(_keys(), _vectors(0))
    prefix = space.keys.prefix
    stage = space.stage()
    stage.put_many(_keys(), _vectors(1))
    assert stage.publish(keep=False) is None
    assert space.versions() == []
    space.collect_garbage()
    assert len(_prefix_keys(hub, f"{prefix}g")) == N  # only the published generation
    assert _indexes(hub, prefix) == [stage.gen_keys.index]


def test_a_stage_copied_from_live_takes_partial_updates(
    make: Callable[..., Api], space_name: str
) -> None:
    space, old = _loaded(make, space_name)
    stage = space.stage("patch", empty=False)
    assert len(stage) == N
    np.testing.assert_allclose(stage.get("k7"), old[7], rtol=1e-5)
    stage.put("k7", -old[7], {"model": "b"})
    stage.delete("k8")
    space.put("k9", -old[9])  # the live space stays writable beside the stage
    np.testing.assert_allclose(space.get("k7"), old[7], rtol=1e-5)
    stage.publish(keep=False)
    np.testing.assert_allclose(space.get("k7"), -old[7], rtol=1e-5)
    assert np.isnan(space.get_many(["k8"], missing="nan")).all()
    # the live write made after the copy is not in the published stage
    np.testing.assert_allclose(space.get("k9"), old[9], rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64", "bfloat16"])
def test_stages_work_for_every_dtype_and_expiring_spaces(
    hub: Hub, space_name: str, dtype: str
) -> None:
    space = hub.create_space(space_name, DIM, dtype=dtype, ttl=600, fields={"g": "tag"})
    vecs = _vectors(6, 20)
    stage = space.stage()
    stage.put_many(_keys(20), vecs, [{"g": "x"}] * 20, ttl=300)
    assert 200 < hub.client.pttl(stage.gen_keys.doc("k1")) / 1000 <= 300
    assert stage.search(vecs[4], 1, filter={"g": "x"})[0].key == "k4"
    stage.publish()
    assert space.search(vecs[4], 1)[0].key == "k4"
    assert len(space) == 20


def test_diff_gates_a_release_on_drift(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, DIM)
    old = _vectors(0)
    space.put_many(_keys(), old)
    same = space.stage("same", empty=False)
    d = same.diff(sample=20)
    assert d.drift.mean == 0 and not d.changed and d.neighbour_overlap == 1.0
    other = space.stage("other")
    other.put_many(_keys(), _vectors(9))
    d = other.diff(sample=20)
    assert d.drift.mean > 0.5 and len(d.changed) == N


def test_readers_never_see_a_mix_during_publish(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, DIM, metric="l2")
    space.put_many(_keys(), np.zeros((N, DIM), np.float32))
    stage = space.stage()
    stage.put_many(_keys(), np.ones((N, DIM), np.float32))
    stage.build()
    seen: set[tuple[float, ...]] = set()
    stop = threading.Event()
    reader = hub.space(space_name)

    def read() -> None:
        while not stop.is_set():
            rows = reader.get_many(_keys())
            seen.add(tuple(sorted(set(rows[:, 0].tolist()))))

    threads = [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        stage.publish()
        for _ in range(50):
            if (1.0,) in seen:
                break
            threading.Event().wait(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert seen <= {(0.0,), (1.0,)} and (1.0,) in seen


def test_collection_lists_through_an_index_and_never_scans(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, DIM)
    space.put_many(_keys(), _vectors(0))
    stage = space.stage()
    stage.put_many(_keys(), _vectors(1))  # unbuilt: listed by its listing index only
    node = hub.node_client(space_name)
    wait_background(30)  # earlier tests' collectors count in the server's statistics too
    node.config_resetstat()
    stage.discard()
    assert wait_background(30)
    stats = node.info("commandstats")
    assert "cmdstat_scan" not in stats and "cmdstat_keys" not in stats
    assert stats["cmdstat_FT.AGGREGATE"]["calls"] >= 1
    prefix = space.keys.prefix
    assert len(_prefix_keys(hub, f"{prefix}g")) == N
    assert _indexes(hub, prefix) == [space.live_keys.index]
    assert not hub.client.smembers(space.keys.garbage)
    assert space.info().count == N


def test_collection_resumes_after_a_crash_at_any_step(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, DIM)
    space.put_many(_keys(), _vectors(0))
    prefix = space.keys.prefix
    for crash_after in ("listing half", "listed", "half unlinked"):
        stage = space.stage()
        stage.put_many(_keys(), _vectors(1))
        gen = stage.gen_keys
        stage._parts.target.space.readiness.ready.discard(gen.gen)
        # stage() started a background collection (of garbage a process left): it must not
        # find the garbage made below before the crash is staged whole (it did in CI and
        # dropped the listing index under the test's feet)
        assert wait_background(30)
        hub.client.hdel(space.keys.config, f"stage:{stage.label}")
        hub.client.sadd(space.keys.garbage, gen.gen)  # as stage_drop.lua leaves it
        doomed = gen.doomed
        docs = sorted(hub.client.scan_iter(match=gen.doc_prefix.replace("{", "[{]") + "*"))
        if crash_after == "listing half":
            hub.client.sadd(doomed, *docs[: N // 2])
        else:
            hub.client.sadd(doomed, *docs)
            hub.client.hset(space.keys.config, gen.listed_field, collect.LISTED)
            hub.client.execute_command("FT.DROPINDEX", gen.listing)
            if crash_after == "half unlinked":
                hub.client.unlink(*docs[: N // 2])
        space.collect_garbage()
        # a background collector that took the space over (its lease outlived ours on a
        # busy machine) finishes the job: wait for it too
        assert wait_background(30)
        assert not _prefix_keys(hub, gen.doc_prefix), crash_after
        assert not hub.client.exists(doomed)
        assert not hub.client.hexists(space.keys.config, gen.listed_field)
        assert _indexes(hub, prefix) == [space.live_keys.index]
    assert len(space) == N


def test_info_reports_garbage_until_collected(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, DIM)
    space.put_many(_keys(), _vectors(0))
    stage = space.stage()
    stage.put_many(_keys(), _vectors(1))
    stage.publish(keep=False, timeout=60)
    wait_background(30)
    assert space.info().garbage.documents == 0


def test_a_switch_from_a_new_client_needs_no_index_scan(hub: Hub, space_name: str) -> None:
    """rollback and publish check the target index complete: a client that found it so
    marks it for this server run, and another client's switch then sends no FT.INFO (whose
    cost grows with the index: 0.4 ms at 2k vectors, 3.2 ms at 20k)."""
    space = hub.create_space(space_name, DIM)
    space.put_many(_keys(), _vectors(0))
    v = space.snapshot("a")
    space.put("k0", _vectors(1, 1)[0])  # the version moves to its own generation
    space.at("a").search(_vectors(2, 1)[0], 1)  # this client waits for, and marks, its index
    stage = space.stage("b")
    stage.put_many(_keys(), _vectors(3))
    stage.build()
    other = rediscache.connect(url=None, client=hub.client).space(space_name)
    node = hub.node_client(space_name)
    wait_background(30)  # a collector's FT.INFO would count in the server's statistics
    node.config_resetstat()
    other.rollback(v, collect=False)
    other.staged("b").publish(keep=False)
    assert "cmdstat_FT.INFO" not in node.info("commandstats")
    assert len(other) == N


def test_info_counts_the_memory_of_every_generation(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, DIM)
    space.put_many(_keys(), _vectors(0))
    alone = space.info()
    assert [g.roles for g in alone.generations] == [("live",)]
    assert alone.memory_bytes == alone.live_memory_bytes > N * DIM * 4
    space.snapshot("a")
    space.put("k0", _vectors(1, 1)[0])  # the version diverges: a copy of its own
    stage = space.stage("s")
    stage.put_many(_keys(), _vectors(2))
    space.at("a").search(_vectors(3, 1)[0], 1)  # wait until the version's index is built
    info = space.info()
    by_role = {g.roles: g for g in info.generations}
    assert set(by_role) == {("live",), ("version v1 (a)",), ("stage 's'",)}
    assert info.memory_bytes == sum(g.memory_bytes for g in info.generations)
    for g in info.generations:
        assert g.count == N and g.document_bytes > N * DIM * 4 and g.index_bytes > 0
    assert by_role[("version v1 (a)",)].indexed == 1.0
    assert by_role[("stage 's'",)].indexed == 0.0  # not built yet: no vector index
    assert info.memory_bytes > 2 * info.live_memory_bytes
    assert info.garbage is not None and info.garbage.generations == ()


def test_a_stage_whose_copy_was_cut_leaks_nothing(
    hub: Hub, space_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client copying live into a stage dies mid-copy: live writers take the copy over
    when its lease expires, the half copy is deleted, the stage is listed incomplete and
    discarding it removes it."""
    monkeypatch.setattr(rediscache.generations, "FORK_LEASE_MS", 200)
    space = hub.create_space(space_name, DIM)
    space.put_many(_keys(), _vectors(0))
    keys = space.keys
    made = scripts.call(
        hub.node_client(space_name),
        scripts.stage_call(
            [keys.config, keys.lock], field="stage:cut", token="t0", created_at=1.0,
            copy=True, lease_ms=200, label="cut", origin=space._parts.target.state.origin,
        ),
    )  # fmt: skip
    assert made is not None
    gen = keys.gen(made[0])
    for key in _keys()[:10]:  # half a copy, then the client is gone
        hub.client.copy(space.live_keys.doc(key), gen.doc(key))
    space.put("late", _vectors(5, 1)[0])  # waits out the lease, takes the copy over
    # no version shares live: the take-over ends the copy and copies nothing itself
    assert hub.client.hget(keys.config, "next_gen") == str(gen.gen).encode()
    space.collect_garbage()
    assert not _prefix_keys(hub, gen.doc_prefix)
    assert [(s.label, s.complete) for s in space.stages()] == [("cut", False)]
    space.discard_stage("cut")
    space.collect_garbage()
    assert space.stages() == [] and len(space) == N + 1
    assert _indexes(hub, keys.prefix) == [space.live_keys.index]


def test_a_listing_index_left_by_a_dead_publisher_goes_at_the_next_collection(
    hub: Hub, space_name: str
) -> None:
    space = hub.create_space(space_name, DIM)
    space.put_many(_keys(), _vectors(0))
    hub.client.execute_command(
        "FT.CREATE", space.live_keys.listing, "ON", "HASH", "PREFIX", 1,
        space.live_keys.doc_prefix, "SKIPINITIALSCAN", "SCHEMA", "x", "TAG",
    )  # fmt: skip
    assert space.live_keys.listing in _indexes(hub, space.keys.prefix)
    space.collect_garbage()
    assert _indexes(hub, space.keys.prefix) == [space.live_keys.index]


def test_closing_a_hub_stops_its_background_collection_cleanly(
    hub: Hub, server_dir: Any, space_name: str
) -> None:
    with rediscache.connect(**async_hub_args(server_dir)) as other:
        space = other.create_space(space_name, DIM)
        space.put_many(_keys(3000), _vectors(0, 3000))
        stage = space.stage()
        stage.put_many(_keys(3000), _vectors(1, 3000))
        stage.publish(keep=False)  # 3,000 documents to delete, in the background
    # closed: the worker ended after its step and gave its lease back (no thread error)
    assert not hub.client.exists(space.keys.gc_lock)
    again = hub.space(space_name)
    again.collect_garbage()
    assert again.info().garbage.generations == ()
    assert len(_prefix_keys(hub, f"{space.keys.prefix}g")) == 3000


def test_a_publish_that_times_out_says_so_and_keeps_the_stage(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, DIM)
    space.put_many(_keys(10), _vectors(0, 10))
    stage = space.stage("big")
    stage.put_many(_keys(20_000), _vectors(1, 20_000))
    with pytest.raises(rediscache.IndexBuildingError) as err:
        stage.publish(timeout=0)
    text = str(err.value)
    assert "stage 'big'" in text and "nothing was published" in text and "timeout" in text
    assert len(space) == 10 and len(space.staged("big")) == 20_000
    stage.discard()


def test_a_program_that_exits_after_publish_finishes_the_deletion(
    hub: Hub, server_dir: Any, space_name: str, tmp_path: Any
) -> None:
    import subprocess
    import sys

    args = {k: str(v) for k, v in async_hub_args(server_dir).items()}
    script = tmp_path / "release.py"
    script.write_text(
        "import numpy as np, rediscache\n"
        f"hub = rediscache.connect(**{args!r})\n"
        f"space = hub.create_space({space_name!r}, {DIM})\n"
        f"keys = [f'k{{i}}' for i in range({N * 20})]\n"
        f"space.put_many(keys, np.ones(({N * 20}, {DIM}), np.float32))\n"
        "stage = space.stage()\n"
        f"stage.put_many(keys, np.full(({N * 20}, {DIM}), 2, np.float32))\n"
        "stage.publish(keep=False)\n"  # and exit at once, without closing the hub
    )
    subprocess.run([sys.executable, str(script)], check=True, timeout=300)
    space = hub.space(space_name)
    assert not hub.client.smembers(space.keys.garbage)
    assert len(_prefix_keys(hub, f"{space.keys.prefix}g")) == N * 20
