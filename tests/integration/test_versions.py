"""Versions: snapshot, read-only views, rollback, diff, retention, concurrency."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import redis
from both import send_twice
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

import rediscache
from rediscache import Hub, Space, Version
from rediscache.diff import drift_stats
from rediscache.drive import wait_background
from rediscache.state import SpaceState

TAGS = {"g": "tag", "n": "numeric"}


def _space(hub: Hub, name: str, n: int = 40, dim: int = 4, seed: int = 0) -> tuple[Space, Any]:
    space = hub.create_space(name, dim, metric="cosine", fields=TAGS)
    vecs = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    space.put_many([f"k{i}" for i in range(n)], vecs, [{"g": "old", "n": i} for i in range(n)])
    return space, vecs


def _contents(reader: Any) -> dict[str, tuple[bytes, dict[str, Any]]]:
    out: dict[str, tuple[bytes, dict[str, Any]]] = {}
    for keys, vectors, metas in reader.iter_batches(7, with_metadata=True):
        for key, vec, meta in zip(keys, vectors, metas):
            out[key] = (vec.tobytes(), meta)
    return out


def _doc_keys(hub: Hub, space: Space) -> set[bytes]:
    # a set: SCAN may return a key twice while the keyspace is rehashing
    node = hub.node_client(space.name)  # the space's server (on a cluster: its node)
    return set(node.scan_iter(match=space.keys.prefix.replace("{", "[{]") + "g[0-9]*"))


def _indexes(hub: Hub, space: Space) -> list[str]:
    return sorted(
        i.decode()
        for i in hub.node_client(space.name).execute_command("FT._LIST")
        if i.decode().startswith(space.keys.prefix)
    )


def test_snapshot_copies_nothing_until_the_live_space_is_written(hub: Hub, space_name: str) -> None:
    space, _ = _space(hub, space_name)
    before = _contents(space)
    keys_before, indexes_before = len(_doc_keys(hub, space)), _indexes(hub, space)

    v1 = space.snapshot("v1")
    v2 = space.snapshot()  # two versions of the same contents share one generation
    assert (v1.id, v1.label, v1.count) == (1, "v1", 40)
    assert (v2.id, v2.label, v2.count) == (2, None, 40)
    assert len(_doc_keys(hub, space)) == keys_before == 40
    assert _indexes(hub, space) == indexes_before

    space.put("k0", np.ones(4), {"g": "new"})  # first write: the versions get a copy
    assert len(_doc_keys(hub, space)) == 80
    assert len(_indexes(hub, space)) == 2
    for v in (v1, v2):
        assert _contents(space.at(v)) == before
    after = _contents(space)
    assert after["k0"][1] == {"g": "new"} and after.keys() == before.keys()
    space.put("k1", np.ones(4))  # later writes copy nothing more
    assert len(_doc_keys(hub, space)) == 80


def test_version_view_reads_everything_and_refuses_writes(hub: Hub, space_name: str) -> None:
    space, vecs = _space(hub, space_name)
    v = space.snapshot("base")
    space.put_many([f"k{i}" for i in range(40)], -vecs, [{"g": "new", "n": -1}] * 40)
    space.put("extra", vecs[0])
    view = space.at("base")
    assert len(view) == 40 and view.version == v
    np.testing.assert_array_equal(view.get_many([f"k{i}" for i in range(40)]), vecs)
    np.testing.assert_array_equal(view.get("k3"), vecs[3])
    assert view.get("extra") is None
    rec = view.get_record("k5")
    assert rec is not None and rec.metadata == {"g": "old", "n": 5}
    hits = view.search(vecs[7], 3, filter={"g": "old"})
    assert hits[0].key == "k7" and hits[0].metadata["g"] == "old"
    assert view.search(vecs[7], 3, filter={"g": "new"}) == []
    assert [h[0].key for h in view.search_many(vecs[:3], 1)] == ["k0", "k1", "k2"]
    assert view.similar("k7", 2)[0].key != "k7"
    assert view.within(vecs[9], 1e-4)[0].key == "k9"
    assert space.search(vecs[7], 1)[0].key != "k7"  # the live space did change
    with pytest.raises(rediscache.KeyNotFoundError):
        view.get_many(["k1", "extra"])
    for write in (
        lambda: view.put("a", vecs[0]),
        lambda: view.put_many(["a"], vecs[:1]),
        lambda: view.delete("k1"),
        lambda: view.update_mean("k1", ["k2"]),
    ):
        with pytest.raises(rediscache.ReadOnlyError, match="read-only"):
            write()
    assert view.get("k1") is not None and view.get("a") is None


def test_rollback_restores_exactly_by_switching(hub: Hub, space_name: str) -> None:
    space, vecs = _space(hub, space_name)
    good = _contents(space)
    space.snapshot("good")
    space.put_many([f"k{i}" for i in range(20)], -vecs[:20], [{"g": "bad"}] * 20)
    space.delete("k30", "k31")
    space.put("intruder", vecs[0], {"g": "bad"})
    space.update_mean("k35", ["k36"])
    assert len(space) == 39

    docs_before = len(_doc_keys(hub, space))
    restored = space.rollback("good", collect=False)
    # a switch: no document was copied or re-indexed (the old live generation is garbage)
    assert len(_doc_keys(hub, space)) == docs_before
    assert restored.label == "good"
    assert _contents(space) == good
    assert len(space) == 40 and space.get("intruder") is None
    assert space.search(vecs[3], 1)[0].key == "k3"
    assert space.search(vecs[3], 40, filter={"g": "bad"}) == []
    np.testing.assert_array_equal(space.get("k30"), vecs[30])
    space.collect_garbage()
    assert len(_doc_keys(hub, space)) == 40  # the replaced generation was deleted
    assert len(_indexes(hub, space)) == 1

    # the version stays immutable when the restored space is written again
    space.put("k0", np.ones(4), {"g": "after"})
    assert _contents(space.at("good")) == good
    space.rollback("good")
    assert _contents(space) == good


def test_every_state_change_keeps_the_spaces_origin(hub: Hub, space_name: str) -> None:
    """snapshot, the copy a write makes after it (fork_begin, fork_commit), rollback and
    delete_version rewrite the state: each keeps the origin drawn at creation (without it a
    handle could not tell this space from a successor of the same name)."""
    space, vecs = _space(hub, space_name)
    cfg = space._parts.target.keys.config

    def origin() -> str | None:
        return SpaceState.parse(hub.client.hget(cfg, "state")).origin

    first = origin()
    assert first is not None and len(first) == 12
    space.snapshot("a")
    space.put("k0", -vecs[0])  # copies the live generation for version "a"
    space.snapshot("b")
    space.rollback("a")
    space.delete_version("b")
    assert SpaceState.parse(hub.client.hget(cfg, "state")).epoch > 4 and origin() == first
    assert space.get("k1") is not None


def test_rollback_keeps_the_replaced_state_when_snapshotted(hub: Hub, space_name: str) -> None:
    space, vecs = _space(hub, space_name)
    a = space.snapshot("a")
    space.put("k0", -vecs[0])
    b = space.snapshot("b")
    space.rollback(a)
    np.testing.assert_array_equal(space.get("k0"), vecs[0])
    space.rollback(b)
    np.testing.assert_array_equal(space.get("k0"), -vecs[0])
    assert [v.label for v in space.versions()] == ["a", "b"]


def test_labels_ids_and_errors(hub: Hub, space_name: str) -> None:
    space, _ = _space(hub, space_name, n=3)
    v = space.snapshot("one")
    assert space.version(1) == space.version("one") == space.version(v) == v
    with pytest.raises(rediscache.InvalidInputError, match="exists already"):
        space.snapshot("one")
    for bad in ("", "123", "live", "a\nb", "x" * 101, 5):
        with pytest.raises(rediscache.InvalidInputError, match="label"):
            space.snapshot(bad)  # type: ignore[arg-type]
    for missing in (7, "nope", Version(9, None, 0.0, 0)):
        with pytest.raises(rediscache.VersionNotFoundError, match="one"):
            space.at(missing)
        with pytest.raises(rediscache.VersionNotFoundError):
            space.rollback(missing)
    with pytest.raises(rediscache.InvalidInputError):
        space.at(1.5)  # type: ignore[arg-type]
    with pytest.raises(rediscache.InvalidInputError, match="keep_last"):
        space.snapshot("two", keep_last=0)
    assert [x.label for x in space.versions()] == ["one"]  # nothing half-written


def test_delete_version_and_keep_last_reclaim_memory(hub: Hub, space_name: str) -> None:
    space, vecs = _space(hub, space_name)
    made = []
    for i in range(4):
        made.append(space.snapshot(f"s{i}"))
        space.put(f"k{i}", -vecs[i])  # each version gets its own generation
    assert len(_indexes(hub, space)) == 5 and len(_doc_keys(hub, space)) == 200
    gone = space.prune_versions(keep_last=2)
    assert [v.label for v in gone] == ["s0", "s1"]
    assert [v.label for v in space.versions()] == ["s2", "s3"]
    assert wait_background(30)  # deleted in the background (rediscache.collect)
    assert len(_indexes(hub, space)) == 3 and len(_doc_keys(hub, space)) == 120
    space.delete_version("s2")
    space.collect_garbage()  # or at once, in the caller's call
    assert len(_indexes(hub, space)) == 2 and len(_doc_keys(hub, space)) == 80
    np.testing.assert_array_equal(space.at("s3").get("k3"), vecs[3])
    space.snapshot("s4", keep_last=1)
    assert [v.label for v in space.versions()] == ["s4"]
    assert wait_background(30)
    assert len(_doc_keys(hub, space)) == 40  # s4 shares the live generation
    with pytest.raises(rediscache.VersionNotFoundError):
        space.delete_version("s3")
    space.delete_version("s4")
    assert not space._parts.target.state.shared
    space.put("k0", vecs[0])  # no version left: written in place, nothing copied
    assert len(_doc_keys(hub, space)) == 40


def test_diff_reports_changes_and_drift(hub: Hub, space_name: str) -> None:
    space, vecs = _space(hub, space_name, n=60, dim=8)
    space.snapshot("a")
    rng = np.random.default_rng(1)
    moved = vecs[:10] + 0.5 * rng.normal(size=(10, 8)).astype(np.float32)
    space.put_many([f"k{i}" for i in range(10)], moved, [{"g": "old", "n": i} for i in range(10)])
    space.put("k10", vecs[10], {"g": "relabelled", "n": 10})
    space.delete("k59")
    space.put("fresh", vecs[0])
    space.snapshot("b")

    d = space.diff("a", "b")
    assert (d.a, d.b) == ("v1 (a)", "v2 (b)")
    assert d.added == ["fresh"] and d.removed == ["k59"]
    assert d.changed == sorted([f"k{i}" for i in range(11)])
    assert d.unchanged == 48 and d.drift.count == 59
    common = np.vstack([moved, vecs[10:59]])
    dist, want = drift_stats(vecs[:59], common)
    assert d.drift.mean == pytest.approx(want.mean, rel=1e-5) and d.drift.max > 0
    assert d.drift.p99 == pytest.approx(want.p99, rel=1e-5)
    assert dist[10:].max() == pytest.approx(0.0, abs=1e-6)
    assert d.neighbour_overlap is not None and 0 < d.neighbour_overlap < 1
    assert d.overlap_sample == 59 and d.k == 10

    # over the changed keys only: the 10 moved (and one relabelled, drift 0) among 59
    assert d.changed_drift.count == 11
    assert d.changed_drift.mean == pytest.approx(dist[:11].mean(), rel=1e-5)
    assert d.changed_drift.mean > d.drift.mean
    assert d.k_used == 10 and d.overlap_note is None

    same = space.diff("b")  # against the live space, identical to b
    assert same.added == same.removed == same.changed == []
    assert same.drift.max == 0.0 and same.drift.mean == 0.0  # exactly, not 4.5e-16
    assert same.changed_drift.count == 0
    assert same.neighbour_overlap == 1.0
    wide = space.diff("a", "b", k=100)  # k past the 59 common keys
    assert wide.k_used == 58 and wide.overlap_note is not None and "59 keys" in wide.overlap_note
    with pytest.raises(rediscache.InvalidInputError):
        space.diff("a", "b", k=0)


def test_writers_during_snapshots_land_wholly_before_or_after(hub: Hub, space_name: str) -> None:
    space = hub.create_space(space_name, 2, metric="l2")
    total = 300
    done = threading.Event()

    def writer() -> None:
        writer_space = hub.space(space_name)
        for i in range(total):
            writer_space.put(f"w{i}", [float(i), 1.0], {"i": i})
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    taken = []
    # at most 40 snapshots: checking each version scans the node's keyspace, which the
    # versions fill (measured: 39 snapshots checked in 9 s, 79 in 35 s, hundreds in minutes)
    while not done.is_set() and len(taken) < 40:
        taken.append(space.snapshot())
        time.sleep(0.01)  # each snapshot makes the next write copy the space
    thread.join()
    assert len(taken) >= 3
    for v in taken:
        seen = _contents(space.at(v))
        m = len(seen)
        assert v.count == m
        assert sorted(seen) == sorted(f"w{i}" for i in range(m))  # a prefix of the writes
        for key, (raw, meta) in seen.items():
            i = int(key[1:])
            assert np.frombuffer(raw, np.float32).tolist() == [i, 1.0] and meta == {"i": i}


def test_readers_never_see_a_mix_during_rollbacks(hub: Hub, space_name: str) -> None:
    n = 200
    space = hub.create_space(space_name, 4, metric="l2", fields={"g": "tag"})
    keys = [f"k{i}" for i in range(n)]
    space.put_many(keys, np.tile([1.0, 0, 0, 0], (n, 1)), [{"g": "a"}] * n)
    va = space.snapshot("a")
    space.put_many(keys, np.tile([0.0, 1, 0, 0], (n, 1)), [{"g": "b"}] * n)
    vb = space.snapshot("b")
    stop = threading.Event()
    problems: list[str] = []
    reads = [0]

    def reader() -> None:
        r = hub.space(space_name)
        while not stop.is_set():
            rows = r.get_many(keys)
            if len({tuple(row) for row in rows.tolist()}) != 1:
                problems.append("get_many mixed generations")
            tags = {h.metadata["g"] for h in r.search([1.0, 1.0, 0, 0], 50)}
            if len(tags) != 1:
                problems.append(f"search mixed {tags}")
            reads[0] += 1

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    # Switch until the readers have read often enough (at least 30 switches), whatever the
    # machine's speed; the deadline only stops a hung run. The pause keeps the switches at
    # most a few hundred per second: back-to-back switches with no pause at all can starve
    # a reader, which then raises StaleStateError after STALE_SECONDS (docs/versions.md).
    deadline = time.monotonic() + 60
    i = 0
    while (i < 30 or reads[0] < 40) and time.monotonic() < deadline:
        space.rollback(va if i % 2 == 0 else vb)
        time.sleep(0.002)
        i += 1
    stop.set()
    for t in threads:
        t.join()
    assert not problems, problems[:3]
    assert reads[0] >= 40


def test_concurrent_first_writes_copy_once(hub: Hub, space_name: str) -> None:
    space, vecs = _space(hub, space_name, n=500)
    before = _contents(space)
    v = space.snapshot("v")
    errors: list[BaseException] = []

    def write(t: int) -> None:
        try:
            s = hub.space(space_name)
            for i in range(10):
                s.put(f"t{t}-{i}", vecs[i])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(space) == 540
    assert _contents(space.at(v)) == before
    assert len(_indexes(hub, space)) == 2  # exactly one copy was kept
    assert len(_doc_keys(hub, space)) == 1040


# ----------------------------------------------------------------- stateful property test

KEYS = st.sampled_from(["a", "b", "c", "d", "e"])
VECS = st.lists(st.integers(-3, 3), min_size=3, max_size=3).map(
    lambda v: np.array(v, dtype=np.float32)
)
TAG_VALUES = st.sampled_from(["x", "y"])


class VersionsMachine(RuleBasedStateMachine):
    """Random put / delete / snapshot / rollback / delete_version against a dict model."""

    hub: Hub

    versions = Bundle("versions")

    def __init__(self) -> None:
        super().__init__()
        self.name = "sm-" + uuid.uuid4().hex[:10]
        self.space = self.hub.create_space(self.name, 3, metric="l2", fields={"t": "tag"})
        self.live: dict[str, tuple[bytes, dict[str, Any]]] = {}
        self.models: dict[int, dict[str, tuple[bytes, dict[str, Any]]]] = {}

    @rule(key=KEYS, vec=VECS, tag=TAG_VALUES)
    def put(self, key: str, vec: Any, tag: str) -> None:
        self.space.put(key, vec, {"t": tag})
        self.live[key] = (vec.tobytes(), {"t": tag})

    @rule(keys=st.lists(KEYS, min_size=1, max_size=3, unique=True), vec=VECS)
    def put_many(self, keys: list[str], vec: Any) -> None:
        self.space.put_many(keys, np.tile(vec, (len(keys), 1)))
        for key in keys:
            self.live[key] = (vec.tobytes(), {})

    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        assert self.space.delete(key) == (key in self.live)
        self.live.pop(key, None)

    @rule(target=versions, labelled=st.booleans())
    def snapshot(self, labelled: bool) -> int:
        label = f"l{len(self.models)}-{uuid.uuid4().hex[:4]}" if labelled else None
        v = self.space.snapshot(label)
        assert v.count == len(self.live)
        self.models[v.id] = dict(self.live)
        return v.id

    @rule(vid=versions)
    def rollback(self, vid: int) -> None:
        self.space.rollback(vid)
        self.live = dict(self.models[vid])

    @rule(vid=consumes(versions))
    def delete_version(self, vid: int) -> None:
        self.space.delete_version(vid)
        del self.models[vid]

    @rule(vid=versions, vec=VECS)
    def search_version(self, vid: int, vec: Any) -> None:
        hits = self.space.at(vid).search(vec, 10)
        assert {h.key for h in hits} == set(self.models[vid])

    @invariant()
    def live_matches(self) -> None:
        assert _contents(self.space) == self.live
        assert len(self.space) == len(self.live)
        hits = self.space.search([0.0, 0.0, 0.0], 10)
        assert {h.key for h in hits} == set(self.live)

    @invariant()
    def versions_match(self) -> None:
        assert [v.id for v in self.space.versions()] == sorted(self.models)
        for vid, model in self.models.items():
            view = self.space.at(vid)
            assert _contents(view) == model and len(view) == len(model)

    def teardown(self) -> None:
        self.hub.drop_space(self.name)


def test_versions_match_a_dict_model(hub: Hub) -> None:
    VersionsMachine.hub = hub
    run_state_machine_as_test(
        VersionsMachine,
        settings=settings(max_examples=50, stateful_step_count=25, deadline=None),
    )


def test_diff_overlap_depends_on_the_seed_not_the_key_layout(hub: rediscache.Hub) -> None:
    """Two spaces with the same contents and the same change give the same neighbour
    overlap for one seed (the sample was taken in SCAN order, which differs per space)."""
    rng = np.random.default_rng(7)
    vecs = rng.normal(size=(400, 16)).astype(np.float32)
    moved = rng.normal(size=(150, 16)).astype(np.float32)
    keys = [f"k{i}" for i in range(400)]
    overlaps = []
    for name in (f"t-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"):
        space = hub.create_space(name, 16, metric="cosine", algorithm="flat")
        try:
            space.put_many(keys, vecs)
            space.snapshot("a")
            space.put_many(keys[:150], moved)
            d = space.diff("a", sample=60, k=10, seed=3)
            overlaps.append((d.neighbour_overlap, d.drift.mean, d.changed[:3]))
        finally:
            hub.drop_space(name)
    assert overlaps[0] == overlaps[1]


def test_searching_a_version_whose_index_builds_waits_at_most_index_wait(
    hub: Hub, space_name: str
) -> None:
    """A version's index is built in the background after the first write that follows a
    snapshot; a search of it waits as a live search waits (hub.index_wait), not the 600 s
    a rollback may wait."""
    space = hub.create_space(space_name, 64)
    rng = np.random.default_rng(9)
    n = 6000
    space.put_many([f"k{i}" for i in range(n)], rng.standard_normal((n, 64)))
    space.snapshot("v")
    space.put("k0", rng.standard_normal(64))  # copies the live generation: a new index builds
    old = space.at("v")
    index = old._parts.target.gen.index  # the version's own generation
    info = hub.client.execute_command("FT.INFO", index)
    building = float(dict(zip(info[::2], info[1::2]))[b"percent_indexed"]) < 1
    if not building:  # the build was over already: nothing to test on this machine
        pytest.skip("the version's index was built before the search")
    wait = hub.index_wait
    hub.index_wait = 0.0
    try:
        with pytest.raises(rediscache.IndexBuildingError, match="index_wait"):
            old.search(rng.standard_normal(64), 3)
    finally:
        hub.index_wait = wait
    assert len(old.search(rng.standard_normal(64), 3)) == 3  # waits, then answers


def _interleave(flow: Any, at: Any, action: Any) -> Any:
    """``flow``, with ``action()`` run once just before the first effect ``at`` accepts is
    performed (errors of effects are thrown into ``flow`` as a driver does)."""
    send, value, fired = flow.send, None, False
    while True:
        try:
            effect = send(value)
        except StopIteration as stop:
            return stop.value
        if not fired and at(effect):
            fired = True
            action()
        try:
            value = yield effect
            send = flow.send
        except BaseException as exc:  # handed to the flow, as a driver does
            send, value = flow.throw, exc


def _with_garbage(hub: Hub, space_name: str) -> Any:
    """The keys of a new space of 40 documents whose first generation is garbage (a
    snapshot, a write that copies, a rollback without collection)."""
    space, _ = _space(hub, space_name)
    space.snapshot("v")
    space.put("k0", np.ones(4))  # the copy for "v"
    assert wait_background(60)
    space.rollback("v", collect=False)
    return space.keys


@pytest.mark.parametrize("moment", ["listing", "dropping the index", "unlinking"])
def test_a_collector_of_a_dropped_space_never_touches_the_space_made_again(
    hub: Hub, space_name: str, moment: str
) -> None:
    """A space dropped and created again under its name reuses its key and index names: a
    collector of the old space still running (a background one, on a slow machine) stops
    at its next step instead of deleting the new space's documents or index."""
    from rediscache import collect, scripts

    space, vecs = _space(hub, space_name)
    space.snapshot("v")
    space.put("k0", -vecs[0])  # the copy for "v"
    # the copy started a background collector: let it end, or (on a slow machine) it
    # takes the garbage of the rollback below before the collector under test reaches it
    assert wait_background(60)
    space.rollback("v", collect=False)  # the first generation is garbage
    keys = space.keys
    fresh: dict[str, Any] = {}

    def recreate() -> None:
        hub.drop_space(space_name)
        made = hub.create_space(space_name, 4, fields={"g": "tag"})
        made.put_many([f"k{i}" for i in range(40)], vecs, [{"g": "new"}] * 40)
        fresh["space"] = made

    def at(effect: Any) -> bool:
        command = getattr(effect, "args", None) or getattr(effect, "command", ())
        first = command[0] if command else None
        if moment == "listing":
            return first == "FT.AGGREGATE"
        name = "gc_drop_index" if moment == "dropping the index" else "gc_unlink"
        return first in ("EVALSHA", "EVAL") and command[1] in (scripts.sha(name),)

    flow = _interleave(collect.collect_garbage(keys, set()), at, recreate)
    hub._driver.run(flow)
    assert "space" in fresh, f"the collector never reached the step of {moment}"
    made = fresh["space"]
    assert len(made) == 40
    np.testing.assert_array_equal(made.get_many([f"k{i}" for i in range(40)]), vecs)
    assert made.search(vecs[5], 1)[0].key == "k5"
    assert not hub.client.exists(keys.gc_lock)


def test_a_search_of_a_space_dropped_meanwhile_leaves_no_config_behind(
    hub: Hub, space_name: str
) -> None:
    """The mark of an index found complete is written only while the space exists: a drop
    between the check and the mark must not leave a config hash holding just the mark,
    which the space created again under the name would read as a corrupt config."""
    from rediscache import generations, scripts

    space, _ = _space(hub, space_name)
    keys = space.keys
    gen = keys.gen(1)
    hub.client.hdel(keys.config, gen.built_field)

    def at(effect: Any) -> bool:  # the write of the mark, however it is sent
        command = getattr(effect, "command", None) or getattr(effect, "args", ())
        if not command:
            return False
        if command[0] == "EVALSHA":
            return bool(command[1] == scripts.sha("mark_built"))
        return bool(command[0] == "HSET" and command[1] == keys.config)

    flow = _interleave(
        generations.ensure_searchable(space.config, gen, set(), 10, server=b"run-id"),
        at,
        lambda: hub.drop_space(space_name),
    )
    assert hub._driver.run(flow) is True
    assert not hub.client.exists(keys.config)
    made = hub.create_space(space_name, 4, fields={"g": "tag"})  # no corrupt config met
    assert len(made) == 0


def test_a_collector_meeting_a_drop_under_way_leaves_no_config_behind(
    hub: Hub, space_name: str
) -> None:
    """A drop deletes the config first and the collector's lease only later (SCAN +
    UNLINK): a collector marking a generation listed in between must not write the config
    hash again (it held only ``gc:1``, which the space created again under the name read as
    a config of another layout: CorruptDataError, seen in CI)."""
    from rediscache import collect, scripts

    keys = _with_garbage(hub, space_name)

    def at(effect: Any) -> bool:  # the collector's write of the "listed" mark
        command = getattr(effect, "command", None) or getattr(effect, "args", ())
        return bool(command) and command[0] in ("EVALSHA", "EVAL") and (
            command[1] == scripts.sha("gc_config") and "listed" in command
        )  # fmt: skip

    flow = _interleave(
        collect.collect_garbage(keys, set()), at, lambda: hub.client.delete(keys.config)
    )
    assert hub._driver.run(flow) == 40  # it went on (as a role's drop needs): no mark kept
    assert not hub.client.exists(keys.config)
    hub.drop_space(space_name, missing_ok=True)  # the drop goes on
    made = hub.create_space(space_name, 4, fields={"g": "tag"})  # no corrupt config met
    assert len(made) == 0


@pytest.mark.parametrize("again", ["dropped", "made again"])
def test_an_old_handles_index_reads_raise_space_not_found_after_a_drop(
    make: Any, hub: Hub, space_name: str, again: str
) -> None:
    """``info()`` and an expiring space's ``len()`` read FT.INFO through the alias: after
    another client's drop they raised ServerError ("no such index") or, the name taken
    again, reported the new space's count under the old handle's schema. The state read in
    their round trip: SpaceNotFoundError, as every read and search (sync and asyncio)."""
    s = make(space_name, 4, metric="l2", algorithm="flat", ttl=3600)
    s.put_many(["a", "b", "c"], np.eye(3, 4, dtype=np.float32))
    assert s.count() == 3 and s.info().count == 3
    hub.drop_space(space_name)
    if again == "made again":
        other = hub.create_space(space_name, 4, metric="ip", algorithm="flat", ttl=3600)
        other.put("z", np.ones(4))
    with pytest.raises(rediscache.SpaceNotFoundError):
        s.info()
    with pytest.raises(rediscache.SpaceNotFoundError):
        s.count()
    with pytest.raises(rediscache.SpaceNotFoundError):
        s.purge_expired()


def test_a_collector_listing_during_a_drop_leaves_no_key_behind(hub: Hub, space_name: str) -> None:
    """A collector had checked its lease (GET) and then added a page of documents to the
    generation's listed set: a drop run in between (a background collector on a slow
    machine) deleted every key it found, and the set made after it stayed behind. The
    drop deletes the lease with the config, and the collector's additions check the lease
    in the same script."""
    from rediscache import collect, scripts

    keys = _with_garbage(hub, space_name)

    def at(effect: Any) -> bool:  # the collector's first addition to the listed set
        command = getattr(effect, "command", None) or getattr(effect, "args", ())
        if command and command[0] in ("EVALSHA", "EVAL"):
            return bool(command[1] == scripts.sha("gc_config") and "list" in command)
        commands = getattr(effect, "commands", ())
        return any(c[0] == "SADD" for c in commands)

    flow = _interleave(collect.collect_garbage(keys, set()), at,
                       lambda: hub.drop_space(space_name))  # fmt: skip
    assert hub._driver.run(flow) == 0  # it stopped: the lease went with the drop
    assert not hub.client.exists(keys.gen(1).doomed, keys.gc_lock, keys.config)
    assert hub.client.keys(keys.prefix + "*") == []


def test_a_roles_collector_creating_a_listing_during_a_drop_leaves_no_index(
    hub: Hub, space_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A role may not SCAN: its collector lists a garbage generation that has no index
    through a listing index it creates. It checked its lease (GET) and then sent
    FT.CREATE, so a drop in between left that index behind the drop. The creation now
    checks the lease in the same script (gc_create_listing.lua)."""
    from rediscache import collect, scripts

    def no_scan() -> Any:  # what a role's may_scan finds (ACL), without making a role
        return False
        yield

    monkeypatch.setattr(collect, "may_scan", no_scan)
    keys = _with_garbage(hub, space_name)
    hub.node_client(space_name).execute_command("FT.DROPINDEX", keys.gen(1).index)  # no index

    def at(effect: Any) -> bool:  # the collector's creation of the listing index
        command = getattr(effect, "command", None) or getattr(effect, "args", ())
        if command and command[0] in ("EVALSHA", "EVAL"):
            return bool(command[1] == scripts.sha("gc_create_listing"))
        return bool(command) and command[0] == "FT.CREATE"

    flow = _interleave(collect.collect_garbage(keys, set()), at,
                       lambda: hub.drop_space(space_name))  # fmt: skip
    assert hub._driver.run(flow) == 0  # it stopped: the lease went with the drop
    assert [i for i in _node_indexes(hub, space_name) if i.startswith(keys.prefix)] == []


def test_the_listing_script_creates_only_under_the_collectors_lease(
    hub: Hub, space_name: str
) -> None:
    from rediscache import generations, scripts

    keys = _with_garbage(hub, space_name)
    gen = keys.gen(1)
    args = generations.listing_args(gen, existing=True)
    driver = hub._driver
    hub.client.set(keys.gc_lock, "theirs", px=60_000)

    def create(token: str) -> Any:
        call = scripts.gc_create_listing_call(keys.gc_lock, gen.listing, args, token=token)
        return driver.run(scripts.run(call))

    assert create("mine") is None  # another's lease: nothing created
    assert gen.listing not in _node_indexes(hub, space_name)
    assert create("theirs") is True
    assert create("theirs") is False  # it exists
    assert gen.listing in _node_indexes(hub, space_name)
    hub.client.delete(keys.gc_lock)


def _node_indexes(hub: Hub, name: str) -> set[str]:
    """Every index on the node of space ``name`` (FT._LIST), whoever made it."""
    return {i.decode() for i in hub.node_client(name).execute_command("FT._LIST")}


@pytest.fixture()
def copies_sent_twice(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every batch of a copy of the live generation is sent twice, the first reply thrown
    away (both.send_twice): the copy's script call now, a pipeline of COPY before."""
    from rediscache import scripts

    sha = scripts.sha("copy_docs")
    return send_twice(
        monkeypatch,
        lambda c: len(c) > 1 and (c[1] == sha or str(c[0]).upper() == "COPY"),
    )


def test_a_copy_whose_batches_are_sent_again_counts_each_document_once(
    make: Callable[..., Any], space_name: str, copies_sent_twice: list[int]
) -> None:
    """A copy of the live generation (the first write after a snapshot; a stage copied
    from live) whose every batch is sent a second time, as after a lost reply, is whole
    and accepted: the copy's count is the server's (copy_docs.lua), not a sum of replies
    (which counted 0 for a batch sent again, and the copy was refused as corrupt)."""
    n = 2500  # three batches
    keys = [f"k{i}" for i in range(n)]
    vecs = np.random.default_rng(3).normal(size=(n, 4)).astype(np.float32)
    api = make(space_name, 4, metric="l2", algorithm="flat")
    api.put_many(keys, vecs)
    api.snapshot("before")
    api.put("k0", np.full(4, 9.0))  # copies the live generation for "before"
    assert len(copies_sent_twice) >= 3
    old = api.at("before")
    assert len(old) == n
    np.testing.assert_array_equal(old.get_many(keys), vecs)
    assert api.get("k0")[0] == 9.0 and len(api) == n
    sent = len(copies_sent_twice)
    stage = api.stage("patch", empty=False)
    assert len(copies_sent_twice) >= sent + 3
    assert len(stage) == n
    np.testing.assert_array_equal(stage.get_many(keys[1:]), vecs[1:])


def _snapshotted(
    make: Callable[..., Any], name: str, n: int, seed: int
) -> tuple[Any, list[str], np.ndarray]:
    """A FLAT l2 space of ``n`` random 4-d vectors and a version "before" of it (its first
    write copies it): the space, its keys and vectors."""
    keys = [f"k{i}" for i in range(n)]
    vecs = np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)
    api = make(name, 4, metric="l2", algorithm="flat")
    api.put_many(keys, vecs)
    api.snapshot("before")
    return api, keys, vecs


@pytest.mark.parametrize("short_copies", [1, 2])
def test_a_short_copy_is_made_again_then_refused(
    make: Callable[..., Any], space_name: str, monkeypatch: pytest.MonkeyPatch, short_copies: int
) -> None:
    """A copy that comes out short (a batch the old primary took was lost in a failover:
    here the first batch of a copy is dropped unsent) is dropped whole and made once more;
    two short copies in a row raise CorruptDataError. Either way every version is whole."""
    from rediscache import drive, scripts, wire

    sha = scripts.sha("copy_docs")
    copies: list[int] = []  # the copies begun, by their first batch

    sync_once, async_once = wire.Wire.once, drive.once_async
    batches: list[str] = []

    def drop(command: Any) -> bool:
        if not (len(command) > 1 and command[1] == sha):
            return False
        token = command[3 + int(command[2])]
        batches.append(token)
        first_of_copy = batches.count(token) == 1
        if first_of_copy:
            copies.append(1)
        return first_of_copy and len(copies) <= short_copies

    def once(self: Any, command: Any, *rest: Any) -> Any:
        return 1 if drop(command) else sync_once(self, command, *rest)

    async def aonce(client: Any, command: Any, *rest: Any) -> Any:
        return 1 if drop(command) else await async_once(client, command, *rest)

    n = 2500
    api, keys, vecs = _snapshotted(make, space_name, n, 4)
    monkeypatch.setattr(wire.Wire, "once", once)
    monkeypatch.setattr(drive, "once_async", aonce)
    if short_copies == 1:
        api.put("k0", np.full(4, 9.0))
        assert api.get("k0")[0] == 9.0
    else:
        with pytest.raises(rediscache.CorruptDataError, match="found 1500 documents"):
            api.put("k0", np.full(4, 9.0))
        np.testing.assert_array_equal(api.get("k0"), vecs[0])  # nothing written
        if not api.is_async:  # the two short copies are deleted in the background
            wait_background()
            docs = api.raw.scan_iter(f"rc:{{{space_name}}}:g*:d:*", count=1000)
            assert len(list(docs)) == n
    assert len(copies) == 2
    monkeypatch.undo()
    np.testing.assert_array_equal(api.at("before").get_many(keys), vecs)
    api.put("k1", np.full(4, 7.0))  # copies (again) and writes
    np.testing.assert_array_equal(api.at("before").get_many(keys), vecs)
    assert len(api) == n


def test_a_copy_cut_by_a_lost_reply_says_the_write_was_not_sent(
    make: Callable[..., Any], space_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first write after a snapshot whose copy of the live generation loses a reply (a
    batch sent, then the connection broke) raises ConnectionFailedError saying the write
    was not sent (before: OutcomeUnknownError saying the write may have been applied); the
    space and its version are as they were, and calling again writes."""
    from rediscache import drive, scripts, wire

    sha = scripts.sha("copy_docs")
    cut: list[int] = []
    sync_once, async_once = wire.Wire.once, drive.once_async

    def cutting(command: Any) -> bool:
        if len(command) > 1 and command[1] == sha and not cut:
            cut.append(1)
            return True
        return False

    def once(self: Any, command: Any, *rest: Any) -> Any:
        reply = sync_once(self, command, *rest)
        if cutting(command):
            raise redis.ConnectionError("Connection closed by server.")
        return reply

    async def aonce(client: Any, command: Any, *rest: Any) -> Any:
        reply = await async_once(client, command, *rest)
        if cutting(command):
            raise redis.ConnectionError("Connection closed by server.")
        return reply

    n = 2500
    api, keys, vecs = _snapshotted(make, space_name, n, 5)
    monkeypatch.setattr(wire.Wire, "once", once)
    monkeypatch.setattr(drive, "once_async", aonce)
    with pytest.raises(rediscache.ConnectionFailedError, match="was not sent") as err:
        api.put("k0", np.full(4, 9.0))
    assert not isinstance(err.value, rediscache.OutcomeUnknownError)
    assert "'k0' was not stored" in str(err.value) and "calling again is safe" in str(err.value)
    assert cut
    monkeypatch.undo()
    np.testing.assert_array_equal(api.get("k0"), vecs[0])
    np.testing.assert_array_equal(api.at("before").get_many(keys), vecs)
    api.put("k0", np.full(4, 9.0))
    assert api.get("k0")[0] == 9.0 and len(api) == n
    np.testing.assert_array_equal(api.at("before").get_many(keys), vecs)


@pytest.mark.parametrize("partitioned", [False, True])
@pytest.mark.parametrize("made_again", [False, True])
def test_version_calls_on_a_dropped_space_raise_space_not_found(
    make: Callable[..., Any], hub: Hub, space_name: str, made_again: bool, partitioned: bool
) -> None:
    """A handle whose space was dropped (and, or not, made again under its name): snapshot,
    stage, versions, version, at, rollback and delete_version raise SpaceNotFoundError and
    write nothing into the new space (before, snapshot wrote a version into the new space
    and then raised, stage made a stage there, versions listed the new space's; on a
    dropped space they raised ServerError RC_NOSTATE or VersionNotFoundError)."""
    shape: dict[str, Any] = {"metric": "l2", **({"partitions": 2} if partitioned else {})}
    api = make(space_name, 4, **shape)
    api.put("a", np.ones(4))
    api.snapshot("v1")
    hub.drop_space(space_name)
    if made_again:
        hub.create_space(space_name, 4, **shape)
    calls = {
        "snapshot": lambda: api.snapshot("ghost"),
        "stage": lambda: api.stage("ghost-stage"),
        "stage from live": lambda: api.stage("ghost-copy", empty=False),
        "versions": api.versions,
        "version": lambda: api.version("v1"),
        "at": lambda: api.at("v1"),
        "rollback": lambda: api.rollback("v1"),
        "delete_version": lambda: api.delete_version("v1"),
    }
    for name, call in calls.items():
        with pytest.raises(rediscache.SpaceNotFoundError):
            call()
            pytest.fail(name)
    if made_again:
        new = hub.space(space_name)
        assert new.versions() == [] and new.stages() == [] and len(new) == 0


def test_a_collector_lease_sent_again_is_still_its_own(
    hub: Hub, space_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The garbage collector's lease (SET NX) sent a second time, as after a lost reply,
    is still the collector's: it takes it at the first round trip and collects (before, the
    second SET NX answered nil and the collector tried again until its own lease expired)."""
    from rediscache import collect

    monkeypatch.setattr(collect, "LEASE_MS", 1000)  # bounds the wait of the code before
    space, _ = _space(hub, space_name, n=30)
    space.snapshot("v1")
    space.put("k0", np.ones(4))  # copies the live generation for v1
    # the copy's background collection ends first: still running, it would collect v1's
    # copy below itself (a busy machine, the test's count 0)
    wait_background()
    space.delete_version("v1", collect=False)  # v1's copy is garbage
    wait_background()
    lease = space.keys.gc_lock
    # round trips taking the lease; the first is sent twice
    tries = send_twice(monkeypatch, lambda c: c[:2] == ("SET", lease), first=1)
    assert space.collect_garbage() == 30
    assert len(tries) == 1  # one round trip for the lease, not a wait for its expiry


@pytest.mark.parametrize("partitioned", [False, True])
def test_a_label_comes_back_as_it_is_kept(
    make: Callable[..., Any], space_name: str, partitioned: bool
) -> None:
    """A label given with a combining accent is kept in NFC: the Version that snapshot and
    publish return carries the kept form, and the same label in the other form is the same
    label (before, the returned Version kept the given form, and a partitioned space's
    publish kept it too)."""
    shape: dict[str, Any] = {"metric": "l2", **({"partitions": 2} if partitioned else {})}
    api = make(space_name, 4, **shape)
    api.put("a", np.ones(4))
    nfd, nfc = "pre\u0301d", "pr\u00e9d"
    version = api.snapshot(nfd)
    assert version.label == nfc and [v.label for v in api.versions()] == [nfc]
    with pytest.raises(rediscache.InvalidInputError):
        api.snapshot(nfc)  # the same label
    stage = api.stage("next")
    stage.put("b", np.zeros(4))
    kept = stage.publish(label="mode\u0300le")
    assert kept is not None and kept.label == "mod\u00e8le"
    assert [v.label for v in api.versions()] == [nfc, "mod\u00e8le"]
    assert api.version("mod\u00e8le").id == kept.id
