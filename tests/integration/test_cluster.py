"""A hub on a Redis Cluster: the local cluster the tests start, spaces bound to the shard of
their hash tag, what is kept per node (users, settings, statistics), and how connect()
recognises a cluster. (Every other integration test runs on the cluster too: the ``hub``
fixture is parametrised over ``single`` and ``cluster``.)"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import redis.asyncio
from click.testing import CliRunner
from redis.crc import key_slot

import rediscache
from rediscache import cluster
from rediscache.access import KEYSPACE_EVENTS
from rediscache.cli import cli
from rediscache.hub import plain_url
from rediscache.keys import SpaceKeys

DIM = 8


@pytest.fixture()
def chub(cluster_url: str) -> Iterator[rediscache.Hub]:
    with rediscache.connect(cluster_url) as hub:
        yield hub


@pytest.fixture()
def names(chub: rediscache.Hub) -> Iterator[list[str]]:
    """Six fresh space names (dropped afterwards): enough to cover three shards."""
    made = [f"c-{i}-{uuid.uuid4().hex[:8]}" for i in range(6)]
    yield made
    for name in made:
        chub.drop_space(name, missing_ok=True)


def _primaries(hub: rediscache.Hub) -> list[redis.Redis]:
    nodes = hub._nodes
    assert nodes is not None
    return [nodes.client(where) for where in nodes.primaries()]


def _slots_of(client: redis.Redis) -> set[int]:
    me = client.connection_pool.connection_kwargs["port"]
    owned = set()
    for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
        if int(primary[1]) == me:
            owned |= set(range(int(start), int(end) + 1))
    return owned


def test_the_cluster_has_three_primaries_with_a_replica_each_all_with_search(
    chub: rediscache.Hub, cluster_url: str
) -> None:
    primaries = _primaries(chub)
    assert len(primaries) == 3
    replicas = []
    for node in primaries:
        modules = node.execute_command("MODULE", "LIST")
        assert any(b"search" in bytes(m[1]).lower() for m in modules)
        info = node.info("replication")
        assert info["role"] == "master"
        replicas.append(int(info["connected_slaves"]))
        host = node.connection_pool.connection_kwargs["host"]
        assert host == "127.0.0.1"
    if "REDISCACHE_TEST_CLUSTER_URL" not in os.environ:
        assert replicas == [1, 1, 1]  # one each (all three on one primary happened)
    assert repr(chub).startswith("Hub(Redis Cluster at 127.0.0.1:") and "3 primaries" in repr(chub)


def test_each_space_lives_whole_on_the_shard_of_its_tag(
    chub: rediscache.Hub, names: list[str]
) -> None:
    rng = np.random.default_rng(0)
    for name in names:
        space = chub.create_space(name, DIM, fields={"cat": "tag"})
        vecs = rng.standard_normal((30, DIM)).astype(np.float32)
        space.put_many([f"k{i}" for i in range(30)], vecs, [{"cat": "a"}] * 30)
        space.snapshot("v1")
        space.put("k0", vecs[1])  # the version's copy: a second generation
        assert space.search(vecs[2], k=1, filter={"cat": "a"})[0].key == "k2"
    homes = set()
    for node in _primaries(chub):
        slots = _slots_of(node)
        indexes = [i.decode() for i in node.execute_command("FT._LIST")]
        for name in names:
            keys = SpaceKeys.for_space(name)
            mine = key_slot(keys.config.encode()) in slots
            here = [i for i in indexes if i.startswith(keys.prefix)]
            stored = list(node.scan_iter(match=keys.all_scan_pattern(), count=1000))
            if mine:
                homes.add(node.connection_pool.connection_kwargs["port"])
                assert here and len(stored) >= 31, name  # its index and documents
                assert chub.node_client(name) is node
            else:
                assert not here and not stored, name  # nothing of it elsewhere
    assert len(homes) >= 2  # the six spaces are spread over shards
    assert sorted(set(chub.spaces()) & set(names)) == sorted(names)


def test_server_stats_add_up_the_primaries(chub: rediscache.Hub, names: list[str]) -> None:
    for name in names[:3]:
        chub.create_space(name, DIM).put("x", np.ones(DIM))
    stats = chub.server_stats()
    primaries = _primaries(chub)
    keys = sum(int(node.dbsize()) for node in primaries)
    assert abs(int(stats.keys or 0) - keys) <= 3  # other tests' background work aside
    assert stats.used_memory >= max(int(n.info("memory")["used_memory"]) for n in primaries)
    assert stats.search_version != "none"
    assert stats.cluster and stats.primaries == len(primaries)


def test_users_and_keyspace_settings_are_set_on_every_primary(
    chub: rediscache.Hub, names: list[str]
) -> None:
    name = names[0]
    chub.create_space(name, DIM).put("x", np.ones(DIM))
    user = f"u-{uuid.uuid4().hex[:8]}"
    granted = chub.grant(user, [name], "read")
    nodes = chub._nodes
    assert nodes is not None
    everyone = [nodes.client(where) for where in nodes.everyone()]
    if "REDISCACHE_TEST_CLUSTER_URL" not in os.environ:
        assert len(everyone) == 6  # the replicas too: users and settings are not replicated
    try:
        for node in everyone:  # the same user, password included, on every node
            assert user in {u.decode() if isinstance(u, bytes) else u for u in node.acl_users()}
            events = node.config_get("notify-keyspace-events")["notify-keyspace-events"]
            assert set(KEYSPACE_EVENTS) <= set(events.replace("A", "g$lshzxetd"))
            kw = node.connection_pool.connection_kwargs
            assert granted.password is not None
            as_user = redis.Redis(
                host=kw["host"], port=kw["port"], username=user, password=granted.password
            )
            assert as_user.ping()  # a replica promoted later lets the user in too
            as_user.close()
        rotated = chub.passwd(user)
        assert rotated.password is not None
        for node in everyone:
            kw = node.connection_pool.connection_kwargs
            with redis.Redis(
                host=kw["host"], port=kw["port"], username=user, password=rotated.password
            ) as as_user:
                assert as_user.ping()
        granted = rotated
        assert granted.password is not None
        with rediscache.connect_as(chub, user, granted.password) as reader:
            assert reader.space(name).get("x") is not None
            assert repr(reader).startswith("Hub(Redis Cluster")
    finally:
        chub.revoke(user)
    for node in everyone:  # revoked everywhere: a replica promoted later must not let it in
        assert user not in {u.decode() if isinstance(u, bytes) else u for u in node.acl_users()}


def test_connect_recognises_a_cluster_by_any_url_or_client(
    cluster_url: str, names: list[str], chub: rediscache.Hub
) -> None:
    chub.create_space(names[0], DIM).put("x", np.ones(DIM))
    plain = plain_url(cluster_url)
    with rediscache.connect(plain) as hub:  # redis:// to one node
        assert isinstance(hub.client, redis.cluster.RedisCluster)
        assert hub.space(names[0]).get("x") is not None
    node = chub.node_client()
    other = redis.Redis(connection_pool=redis.ConnectionPool(
        connection_class=node.connection_pool.connection_class,
        **{k: v for k, v in node.connection_pool.connection_kwargs.items()
           if k != "redis_connect_func"},
    ))  # fmt: skip
    with rediscache.connect(client=other) as hub:  # a plain client of one node
        assert hub.client is other and hub.space(names[0]).get("x") is not None
    assert other.ping()  # not closed: the caller's
    other.close()
    given = redis.cluster.RedisCluster.from_url(plain, protocol=2)
    with rediscache.connect(client=given) as hub:
        assert hub.client is given and hub.space(names[0]).get("x") is not None
    assert given.ping()
    given.close()

    async def from_asyncio() -> None:  # an asyncio RedisCluster given
        agiven = redis.asyncio.RedisCluster.from_url(plain, protocol=2)
        async with await rediscache.connect_async(client=agiven) as ahub:
            assert ahub.client is agiven
            space = await ahub.space(names[0])
            assert await space.get("x") is not None
            assert len(await space.search(np.ones(DIM), 1)) == 1
        assert await agiven.ping()  # the caller's: not closed
        await agiven.aclose()

    asyncio.run(from_asyncio())


def test_a_cluster_url_naming_one_server_is_refused(hub: rediscache.Hub, topology: str) -> None:
    if topology != "single":
        pytest.skip("about a server that is not a cluster")
    url = os.environ.get("REDISCACHE_TEST_URL")
    if url is None:
        info = hub.server
        assert info is not None
        url = info.url
    with pytest.raises(rediscache.InvalidInputError, match="not a Redis Cluster node"):
        rediscache.connect(url.replace("redis://", "redis+cluster://", 1))
    assert hub.node_client() is hub.client and hub.node_client("any-space") is hub.client
    stats = hub.server_stats()
    assert not stats.cluster and stats.primaries == 1


def test_the_cli_starts_reports_and_stops_a_local_cluster(tmp_path: Path) -> None:
    root = tmp_path / "cl"
    base = ["--data-dir", str(root), "server"]
    try:
        res = CliRunner().invoke(cli, [*base, "start", "--cluster", "2"])
        assert res.exit_code == 0, res.output
        assert "started: a Redis Cluster of 2 primaries" in res.stdout
        assert "redis+cluster://:***@127.0.0.1:" in res.stdout
        res = CliRunner().invoke(cli, [*base, "status", "--cluster", "--show-password"])
        assert res.exit_code == 0 and "running: 2 primaries" in res.stdout
        info = cluster.status(root)
        assert info is not None and info.url in res.stdout
        res = CliRunner().invoke(cli, [*base, "status", "--cluster", "--show-password", "--json"])
        described = json.loads(res.stdout)
        assert described["url"] == info.url and described["replicas_per_primary"] == [0, 0]
        res = CliRunner().invoke(cli, [*base, "status", "--cluster", "--json"])
        assert info.password not in res.stdout and ":***@" in res.stdout
        # --data-dir may follow the command too
        res = CliRunner().invoke(cli, ["server", "status", "--cluster", "--data-dir", str(root)])
        assert res.exit_code == 0 and "running: 2 primaries" in res.stdout, res.output
        with rediscache.connect(info.url) as hub:
            space = hub.create_space("cli-made", DIM)
            space.put("a", np.ones(DIM))
            assert space.search(np.ones(DIM), k=1)[0].key == "a"
        again = CliRunner().invoke(cli, [*base, "start", "--cluster", "2"])
        assert again.exit_code == 0 and "already running" in again.stdout
        other = CliRunner().invoke(cli, [*base, "start", "--cluster", "3"])
        assert other.exit_code != 0 and "holds a cluster of 2 primaries" in other.output
        bad = CliRunner().invoke(cli, [*base, "start", "--cluster", "2", "--port", "7000"])
        assert bad.exit_code == 2 and "--port: not with --cluster" in bad.output
        # the cluster's directory is not a single server's: nothing starts there
        mixed = CliRunner().invoke(cli, ["--data-dir", str(root), "space", "list"])
        assert mixed.exit_code != 0 and "holds a local Redis Cluster" in mixed.output
        assert not (root / "server.json").exists()
        mixed = CliRunner().invoke(cli, [*base, "status"])
        assert mixed.exit_code == 2 and "--cluster" in mixed.output
        # one node down: status says which
        victim = info.nodes[1]
        os.kill(victim.pid, signal.SIGKILL)
        res = CliRunner().invoke(cli, [*base, "status", "--cluster"])
        assert res.exit_code == 3 and f"node-1 (port {victim.port}) not running" in res.stdout
        # the URL of a node that still runs, for clients (its first node may be the dead one)
        res = CliRunner().invoke(cli, [*base, "status", "--cluster", "--json", "--show-password"])
        live = json.loads(res.stdout)["url"]
        assert f":{victim.port}/" not in live and info.password in live
        res = CliRunner().invoke(cli, [*base, "start", "--cluster", "2"])  # brings it back
        assert res.exit_code == 0 and "started" in res.stdout, res.output
    finally:
        res = CliRunner().invoke(cli, [*base, "stop", "--cluster"])
    assert res.exit_code == 0 and "stopped" in res.stdout
    res = CliRunner().invoke(cli, [*base, "status", "--cluster"])
    assert res.exit_code == 3 and "not running" in res.stdout
    single = tmp_path / "single"
    res = CliRunner().invoke(cli, ["--data-dir", str(single), "server", "start"])
    try:
        assert res.exit_code == 0, res.output
        res = CliRunner().invoke(
            cli, ["--data-dir", str(single), "server", "start", "--cluster", "2"]
        )
        assert res.exit_code != 0 and "holds a single embedded server" in res.output
    finally:
        CliRunner().invoke(cli, ["--data-dir", str(single), "server", "stop"])


def test_a_stopped_cluster_comes_back_with_its_data(tmp_path: Path) -> None:
    root = tmp_path / "cl"
    info, started = cluster.start(root, primaries=2)
    assert started
    try:
        with rediscache.connect(info.url) as hub:
            for name in ("one", "two", "three"):
                hub.create_space(name, DIM).put_many(["a", "b"], np.eye(2, DIM))
        assert cluster.stop(root)
        again, started = cluster.start(root, primaries=2)
        assert started and again.password == info.password
        with rediscache.connect(again.url) as hub:
            assert hub.spaces() == ["one", "three", "two"]
            for name in ("one", "two", "three"):
                hits = hub.space(name).search(np.eye(2, DIM)[1], k=1)
                assert hits[0].key == "b"
    finally:
        cluster.stop(root)


def _move_slot(hub: rediscache.Hub, name: str, pause: float = 0.005) -> tuple[Any, Any]:
    """Move the slot of space ``name`` to another primary as ``redis-cli --cluster
    reshard`` does (IMPORTING / MIGRATING, MIGRATE in batches, SETSLOT NODE on every
    primary), in a thread; returns the thread and the target node's client."""
    source = hub.node_client(name)
    target = next(c for c in _primaries(hub) if c is not source)
    slot = key_slot(SpaceKeys.for_space(name).config.encode())
    ids = {c: c.execute_command("CLUSTER", "MYID") for c in (source, target)}
    kw = target.connection_pool.connection_kwargs
    password = kw.get("password")

    def move() -> None:
        target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
        source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
        while keys := source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 50):
            auth = ["AUTH", password] if password else []
            source.execute_command(
                "MIGRATE", kw["host"], kw["port"], "", 0, 10_000, *auth, "KEYS", *keys
            )
            time.sleep(pause)
        for node in _primaries(hub):
            node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])

    thread = threading.Thread(target=move, daemon=True)
    return thread, target


def test_a_space_keeps_answering_while_its_slot_moves_to_another_node(
    chub: rediscache.Hub, names: list[str], cluster_url: str, request: pytest.FixtureRequest
) -> None:
    """A resharding moves the space's keys one batch at a time; its indexes stay behind
    (they are not keys). Gets follow the keys (ASK), writes touching both nodes wait,
    searches wait for the move to end, and after it the library creates the indexes on
    the new node from the stored config: nothing acknowledged is lost, no answer is
    partial."""
    name = names[0]
    rng = np.random.default_rng(7)
    n = 3000
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    keys = [f"k{i}" for i in range(n)]
    space = chub.create_space(name, DIM, metric="l2", algorithm="flat", fields={"cat": "tag"})
    space.put_many(keys, vecs, [{"cat": "a"}] * n)
    space.snapshot("v1")
    space.put("k0", vecs[1])  # the version keeps the old k0 in a generation of its own
    cached = chub.space(name)  # a handle with a hot cache, which must follow the move
    cached.enable_hot_cache()
    np.testing.assert_array_equal(cached.get("k7"), vecs[7])
    np.testing.assert_array_equal(cached.get("k7"), vecs[7])
    assert cached.hot_cache is not None and cached.hot_cache.stats().hits == 1
    aio = asyncio.new_event_loop()
    ahub = aio.run_until_complete(rediscache.connect_async(cluster_url))  # a map read now

    def close() -> None:  # also when an assertion fails: no unclosed streams in later tests
        aio.run_until_complete(ahub.close())
        aio.close()

    request.addfinalizer(close)
    thread, target = _move_slot(chub, name, pause=0.02)
    written: list[str] = []
    outcomes: dict[str, int] = {}

    def write() -> None:  # a writer meanwhile (write.lua: the config and a document)
        for j in range(1, 10_000):
            try:
                space.put(f"new{j}", vecs[j])
                written.append(f"new{j}")
            except rediscache.ReshardingError:
                outcomes["write refused"] = outcomes.get("write refused", 0) + 1
            if not thread.is_alive():
                return

    wrong: list[str] = []

    def search() -> None:  # a searcher meanwhile: each answer full, or an error
        for j in range(5, n):
            try:
                hits = space.search(vecs[j], k=1, filter={"cat": "a"})
                if hits[0].key != keys[j]:
                    wrong.append(f"{keys[j]} -> {hits[0].key}")
                outcomes["searched"] = outcomes.get("searched", 0) + 1
            except (rediscache.ReshardingError, rediscache.IndexBuildingError) as exc:
                outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
            if not thread.is_alive():
                return

    others = [threading.Thread(target=f, daemon=True) for f in (write, search)]
    thread.start()
    for other in others:
        other.start()
    i = 0
    while thread.is_alive() or i < 3:
        i += 1
        picked = rng.integers(1, n, 20)
        got = space.get_many([keys[j] for j in picked])
        np.testing.assert_array_equal(got, vecs[picked])  # exact, whichever node holds them
        outcomes["read"] = outcomes.get("read", 0) + 1
    thread.join(30)
    for other in others:
        other.join(30)
    assert not wrong  # no search answered from part of the documents
    assert (
        chub.node_client(name).connection_pool.connection_kwargs["port"]
        == (target.connection_pool.connection_kwargs["port"])
    )
    for j in rng.integers(1, n, 50):
        assert space.search(vecs[j], k=1, filter={"cat": "a"})[0].key == keys[j]
    for key, vector in zip(written, space.get_many(written), strict=True):
        np.testing.assert_array_equal(vector, vecs[int(key[3:])])  # every write acknowledged
    assert len(space) == n + len(written)
    np.testing.assert_array_equal(space.at("v1").get("k0"), vecs[0])
    assert space.at("v1").search(vecs[0], k=1)[0].key == "k0"
    moved = {i.decode() for i in target.execute_command("FT._LIST")}
    assert space.live_keys.index in moved and space.at("v1").gen_keys.index in moved

    np.testing.assert_array_equal(cached.get("k7"), vecs[7])  # read on the new node
    with rediscache.connect(cluster_url) as other:  # another client writes it there
        other.space(name).put("k7", vecs[8])
    for _ in range(3):  # never the value the old node's listener could not see replaced
        np.testing.assert_array_equal(cached.get("k7"), vecs[8])
    cached.disable_hot_cache()

    async def from_asyncio() -> None:  # a hub that read the map before the move
        aspace = await ahub.space(name)
        hits = await aspace.search(vecs[9], k=2)  # the writer above put new9 = k9's vector
        assert "k9" in {h.key for h in hits if h.distance < 1e-6}
        np.testing.assert_array_equal(await aspace.get("k9"), vecs[9])

    aio.run_until_complete(from_asyncio())


def test_a_start_after_a_failover_or_an_interrupted_start_leaves_the_cluster_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start interrupted before the replicas were attached is completed by the next one;
    a start after a failover (the first node now a replica) keeps the roles as they are."""
    root = tmp_path / "cl"
    calls: list[int] = []
    attach = cluster._attach_replicas

    def interrupted(*args: Any) -> None:
        calls.append(1)
        raise KeyboardInterrupt  # Ctrl-C after the slots, before the replicas

    monkeypatch.setattr(cluster, "_attach_replicas", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cluster.start(root, primaries=2, replicas=1)
    monkeypatch.setattr(cluster, "_attach_replicas", attach)
    try:
        info, _ = cluster.start(root, primaries=2, replicas=1)  # repairs it
        roles = _roles(info)
        assert sorted(roles.values()) == ["master", "master", "slave", "slave"]
        with rediscache.connect(info.url) as hub:
            hub.create_space("kept", DIM).put("a", np.ones(DIM))
            nodes = hub._nodes
            assert nodes is not None and len(nodes.everyone()) == 4
        replica = next(n for n in info.nodes if roles[n.port] == "slave")
        with redis.Redis(host=replica.host, port=replica.port, password=info.password) as r:
            r.execute_command("CLUSTER", "FAILOVER")  # the replica takes over its primary
            deadline = time.monotonic() + 30
            while r.execute_command("ROLE")[0] != b"master" and time.monotonic() < deadline:
                time.sleep(0.1)
        assert cluster.stop(root)
        again, _ = cluster.start(root, primaries=2, replicas=1)  # refused REPLICATE before
        assert _roles(again)[replica.port] == "master"
        with rediscache.connect(again.url) as hub:
            assert hub.space("kept").get("a") is not None
    finally:
        cluster.stop(root)
    assert calls == [1]


def _roles(info: cluster.ClusterInfo) -> dict[int, str]:
    out = {}
    for node in info.nodes:
        with redis.Redis(host=node.host, port=node.port, password=info.password) as r:
            out[node.port] = r.execute_command("ROLE")[0].decode()
    return out


def test_a_killed_primary_is_replaced_by_its_replica_and_callers_resume(tmp_path: Path) -> None:
    """SIGKILL of the primary holding a space, under a writer and a reader: its replica
    takes over (cluster-node-timeout, then the election) and both resume by themselves,
    within the hub's failover_wait; reads never fail; only a write in flight at the kill
    may raise (OutcomeUnknownError)."""
    root = tmp_path / "cl"
    # three primaries: a replica is promoted by a majority of the primaries' votes
    info, _ = cluster.start(root, primaries=3, replicas=1)
    try:
        with rediscache.connect(info.url) as hub:
            assert hub.failover_wait == rediscache.guard.FAILOVER_WAIT  # it has replicas
            space = hub.create_space("fo", 4, metric="l2", algorithm="flat")
            space.put_many([f"s{i}" for i in range(10)], np.eye(10, 4, dtype=np.float32))
            port = hub.node_client("fo").connection_pool.connection_kwargs["port"]
            victim = next(n for n in info.nodes if n.port == port)
            errors: list[tuple[str, BaseException]] = []
            resumed: dict[str, float] = {}
            killed: list[float] = []
            stop = threading.Event()

            def work(kind: str) -> None:
                i = 0
                while not stop.is_set():
                    began = time.monotonic()
                    try:
                        if kind == "write":
                            space.put(f"w{i}", np.ones(4))
                        else:
                            assert space.get_many(["s1"]).shape == (1, 4)
                            assert space.search(np.eye(10, 4)[2], 1)[0].key == "s2"
                        if killed and began > killed[0] and kind not in resumed:
                            resumed[kind] = time.monotonic() - killed[0]
                    except rediscache.RediscacheError as exc:
                        errors.append((kind, exc))
                    i += 1

            threads = [threading.Thread(target=work, args=(k,)) for k in ("write", "read")]
            for t in threads:
                t.start()
            time.sleep(0.5)
            os.kill(victim.pid, signal.SIGKILL)
            killed.append(time.monotonic())
            deadline = time.monotonic() + 60
            while len(resumed) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            stop.set()
            for t in threads:
                t.join()
            assert set(resumed) == {"write", "read"}, errors[:3]
            assert all(v < hub.failover_wait for v in resumed.values()), resumed
            assert [k for k, _ in errors if k == "read"] == [], errors[:3]
            assert len(errors) <= 1, errors[:3]
            assert all(isinstance(e, rediscache.OutcomeUnknownError) for _, e in errors)
    finally:
        cluster.stop(root)
