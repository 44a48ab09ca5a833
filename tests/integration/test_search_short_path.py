"""The plain search's short path (rediscache.search.Searches.search): a float32 query of a
float32 space is checked with one float32 reduction (it was sent first and checked while the
server searched until a measurement showed the check cost more there). A bad query must
raise InvalidInputError as the general path's check does (sync and asyncio), with nothing
sent, and leave the connection in step for the next call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from both import Api

import rediscache
from rediscache import wire

Make = Callable[..., Api]
BAD = {
    "nan": [np.nan, 0.0, 1.0, 0.0],
    "inf": [np.inf, 0.0, 1.0, 0.0],
    "norm overflows": [3e38, 3e38, 0.0, 0.0],
    "zero in a cosine space": [0.0, 0.0, 0.0, 0.0],
}


@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize("with_metadata", [True, False])
def test_a_bad_float32_query_on_the_short_path_raises_and_keeps_the_connection(
    make: Make, space_name: str, bad: str, with_metadata: bool
) -> None:
    s = make(space_name, 4, metric="cosine", algorithm="flat")
    rng = np.random.default_rng(3)
    keys = [f"k{i}" for i in range(20)]
    s.put_many(keys, rng.standard_normal((20, 4)), [{"i": i} for i in range(20)])
    query = np.array([1.0, 0.5, 0.0, 0.2], dtype=np.float32)
    first = s.search(query, 5, with_metadata=with_metadata)  # fills the short path's cache
    vector = np.array(BAD[bad], dtype=np.float32)
    with pytest.raises(rediscache.InvalidInputError) as short:
        s.search(vector, 5, with_metadata=with_metadata)
    with pytest.raises(rediscache.InvalidInputError) as general:  # checked before sending
        s.search(vector.astype(np.float64), 5, with_metadata=with_metadata)
    assert str(short.value) == str(general.value)
    for _ in range(3):  # the replies of the refused searches were read: answers stay in step
        assert s.search(query, 5, with_metadata=with_metadata) == first
    assert s.get("k3") is not None and s.count() == 20


def test_the_sync_short_path_sends_the_prepacked_command_on_a_kept_connection(
    hub: rediscache.Hub, space_name: str
) -> None:
    s = hub.create_space(space_name, 4, metric="l2", algorithm="flat")
    s.put_many(["a", "b"], [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    query = np.array([1.0, 0.1, 0.0, 0.0], dtype=np.float32)
    s.search(query, 2)
    sent: list[Any] = []
    real = wire._pack

    def spy(conn: Any, commands: Any, packed: Any = None) -> Any:
        sent.append(packed)
        return real(conn, commands, packed)

    counter = wire.count_connects(hub.client)
    before = counter.count
    wire._pack = spy  # type: ignore[assignment]
    try:
        hits = s.search(query, 2)
        with pytest.raises(rediscache.InvalidInputError):
            s.search(np.array([np.nan, 0, 0, 0], dtype=np.float32), 2)
        again = s.search(query, 2)
    finally:
        wire._pack = real  # type: ignore[assignment]
    assert [h.key for h in hits] == ["a", "b"] and again == hits
    # the refused query was not sent (checked first)
    assert len(sent) == 2 and all(isinstance(p, bytes) and query.tobytes() in p for p in sent)
    assert counter.count == before  # no connection was replaced


def _count_runs(driver: Any) -> list[object]:
    """Every flow ``driver`` runs from now on (its ``run`` wrapped on the instance)."""
    runs: list[object] = []
    real = driver.run

    def run(flow: Any) -> Any:
        runs.append(flow)
        return real(flow)

    driver.run = run
    return runs


def test_a_plain_sync_search_runs_no_flow_once_its_command_is_known(
    hub: rediscache.Hub, space_name: str
) -> None:
    """The sync hub's quick lane (Op(quick=Searches.quick) on a one-server driver): the
    usual search is one round trip with no flow run; the others, and a cluster's, run
    their flow. Answers and metrics are those of the flow."""
    s = hub.create_space(space_name, 4, metric="l2", algorithm="flat", fields={"c": "tag"})
    rng = np.random.default_rng(5)
    keys = [f"k{i}" for i in range(30)]
    s.put_many(keys, rng.standard_normal((30, 4)), [{"c": "ab"[i % 2]} for i in range(30)])
    query = np.array([0.3, -0.1, 0.5, 0.2], dtype=np.float32)
    first = s.search(query, 5)  # through the flow: fills the short path's command
    bare = s.search(query, 5, with_metadata=False)
    hub.metrics(reset=True)
    runs = _count_runs(hub._driver)
    try:
        for _ in range(4):
            assert s.search(query, 5) == first
            assert s.search(query, 5, with_metadata=False) == bare
        quick_runs = len(runs)
        filtered = s.search(query, 5, filter={"c": "a"})
        assert [h.metadata["c"] for h in filtered] == ["a"] * 5
        assert s.search(query, 4, offset=1) == first[1:]
        with pytest.raises(TypeError, match=r"^search\(\) got an unexpected keyword argument"):
            s.search(query, 5, nope=1)  # type: ignore[call-arg]
        with pytest.raises(rediscache.InvalidInputError):
            s.search(np.array([np.nan, 0, 0, 0], dtype=np.float32), 5)
    finally:
        del hub._driver.run  # type: ignore[attr-defined]
    one_server = getattr(hub._driver, "lane", None) is not None
    assert quick_runs == (0 if one_server else 8)
    # the filtered and the paged search ran their flow (and the refused one, without a lane)
    assert len(runs) == quick_runs + 2 + (0 if one_server else 1)
    stats = hub.metrics()["search"]
    assert stats.calls == 12 and stats.errors == 2  # each call counted once


def test_a_quick_search_on_a_killed_kept_connection_answers(
    hub: rediscache.Hub, space_name: str
) -> None:
    s = hub.create_space(space_name, 4, metric="l2", algorithm="flat")
    s.put_many(["a", "b", "c"], np.eye(3, 4, dtype=np.float32))
    query = np.array([1.0, 0.1, 0.0, 0.0], dtype=np.float32)
    first = s.search(query, 2)
    driver: Any = hub._driver
    kept = getattr(driver, "lane", None)
    if kept is None:
        pytest.skip("no quick lane on this topology (a cluster's driver routes each effect)")
    hub.metrics(reset=True)
    for _ in range(3):
        s.search(query, 2)  # the search's connection is kept
        assert kept.idle
        for conn in list(kept.idle):
            conn.send_command("CLIENT", "ID")
            hub.client.execute_command("CLIENT", "KILL", "ID", conn.read_response())
        assert s.search(query, 2) == first
    assert hub.metrics()["search"].errors == 0


def test_only_a_plain_one_server_driver_has_a_quick_lane(hub: rediscache.Hub) -> None:
    from rediscache.drive import FailoverDriver, SyncDriver
    from rediscache.durability import Durability

    client = hub.node_client()
    plain = SyncDriver(client, keep=False)
    assert plain.lane is plain.wire
    plain.durability = Durability(replicas=1)
    assert plain.lane is None  # a durable write waits: every effect goes through run
    assert FailoverDriver(client, keep=False).lane is None  # rides failovers in run


@pytest.mark.parametrize("again", ["dropped", "made again with another dim", "made again"])
def test_a_search_of_a_space_dropped_by_another_client_raises_space_not_found(
    make: Make, hub: rediscache.Hub, space_name: str, again: str
) -> None:
    """An old handle's search of a space another client dropped raised ServerError ("no such
    index") or, once the name was taken again with another dim, RediSearch's own text about
    the blob size; reads said SpaceNotFoundError. Found by a new user's trial. Made again
    with the same dim (and another metric), the search answered from the new space's data
    without an error: every variant, the quick lane too, reads the state in its round
    trip."""
    s = make(space_name, 4, metric="l2", algorithm="flat")
    s.put_many(["a", "b"], np.eye(2, 4, dtype=np.float32))
    query = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
    assert s.search(query, 1)[0].key == "a"  # the short path's command is known
    assert s.search(query, 1, with_metadata=False)[0].key == "a"
    hub.drop_space(space_name)
    if again == "made again":
        other = hub.create_space(space_name, 4, metric="ip", algorithm="flat")
        other.put("z", np.ones(4))
    elif again != "dropped":
        hub.create_space(space_name, 8, metric="l2", algorithm="flat").put("z", np.ones(8))
    for kwargs in ({}, {"with_metadata": False}, {"offset": 0}, {"filter": {}}):
        with pytest.raises(rediscache.SpaceNotFoundError):
            s.search(query, 1, **kwargs)
    with pytest.raises(rediscache.SpaceNotFoundError):
        s.search_many(np.stack([query, query]), 1)
    with pytest.raises(rediscache.SpaceNotFoundError):
        s.within(query, 10.0)


def test_a_search_after_another_clients_rollback_answers_from_the_restored_generation(
    make: Make, hub: rediscache.Hub, space_name: str
) -> None:
    """The search's state read in its round trip: a handle that has not seen the rollback
    answers from the restored generation (sent again in the new state), with its metric."""
    s = make(space_name, 4, metric="l2", algorithm="flat")
    s.put_many(["a", "b"], np.eye(2, 4, dtype=np.float32), [{"v": 1}, {"v": 1}])
    query = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
    assert s.search(query, 1, with_metadata=False)[0].key == "a"
    assert s.search(query, 1)[0].metadata == {"v": 1}
    other = hub.space(space_name)
    other.snapshot("one")
    other.put_many(["a", "c"], [[0, 0, 0, 1], [1, 0, 0, 0]], [{"v": 2}, {"v": 2}])
    assert [h.key for h in s.search(query, 2)] == ["c", "b"]
    other.rollback("one")
    for kwargs in ({}, {"with_metadata": False}):
        hits = s.search(query, 2, **kwargs)
        assert [(h.key, h.distance) for h in hits] == [("a", 0.0), ("b", 2.0)]
    assert s.search(query, 1)[0].metadata == {"v": 1}


@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
@pytest.mark.parametrize("ttl", [None, 600])
def test_every_search_gives_the_servers_distance_in_full(
    make: Make, space_name: str, metric: str, ttl: int | None
) -> None:
    """Each hit's distance is the float32 the server ranked by, not a 12-digit rendering of
    it (FT.SEARCH's ``__dist`` field): exactly a float32 value, the same for a key whichever
    search variant (quick lane, general path, filter, page, exclude, many, range, similar,
    an expiring space's probe) found it, and numpy's within float32 tolerance."""
    s = make(space_name, 8, metric=metric, algorithm="flat", fields={"g": "tag"}, ttl=ttl)
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((30, 8)).astype(np.float32)
    if metric == "ip":
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    keys = [f"k{i}" for i in range(30)]
    s.put_many(keys, vectors, [{"g": "a" if i % 2 else "b"} for i in range(30)])
    query = vectors[0] + np.float32(0.1)
    if metric == "ip":
        query /= np.linalg.norm(query)
    results = {
        "plain": s.search(query, 10),
        "plain again": s.search(query, 10),  # the quick lane once the command is known
        "no metadata": s.search(query, 10, with_metadata=False),
        "no metadata again": s.search(query, 10, with_metadata=False),
        "vectors": s.search(query, 10, with_vectors=True),
        "filter": s.search(query, 10, filter={"g": ["a", "b"]}),
        "page": s.search(query, 5, offset=5),
        "exclude": s.search(query, 10, exclude=["k29"]),
        "many": s.search_many(np.stack([query, query]), 10)[1],
        "within": s.within(query, 100.0, limit=10),
        "similar": s.similar("k0", 10),
    }
    seen: dict[str, float] = {}
    for name, hits in results.items():
        assert hits, name
        for hit in hits:
            assert float(np.float32(hit.distance)) == hit.distance, (name, hit)
            assert seen.setdefault(hit.key, hit.distance) == hit.distance or name == "similar"
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    q = query / np.linalg.norm(query)
    want = {
        "cosine": 1 - unit @ q,
        "l2": ((vectors - query) ** 2).sum(axis=1),
        "ip": 1 - vectors @ query,
    }[metric]
    for hit in results["plain again"]:
        assert abs(hit.distance - float(want[keys.index(hit.key)])) < 1e-5
