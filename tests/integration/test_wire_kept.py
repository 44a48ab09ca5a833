"""The connections a sync hub keeps between calls (rediscache.wire.Wire): they go back to the
client's pool on close, a connection the server killed is replaced without an error (a write
is not reported as of unknown outcome), a forked child does not share them, and a small pool
is never drained by them."""

from __future__ import annotations

import multiprocessing
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

import rediscache
from rediscache import Hub, wire
from rediscache.keys import SpaceKeys
from rediscache.routing import ClusterDriver


def _pool_client(hub: Hub, **pool_kwargs: Any) -> redis.Redis:
    """A client of its own on the session's server, with a BlockingConnectionPool."""
    node = hub.node_client()  # on a cluster: its first primary
    kwargs = dict(node.connection_pool.connection_kwargs)
    kwargs.pop("redis_connect_func", None)  # the session hub's connect counter
    pool = redis.BlockingConnectionPool(
        connection_class=node.connection_pool.connection_class, **kwargs, **pool_kwargs
    )
    return redis.Redis(connection_pool=pool)


def _owned_hub(server_dir: Path | None) -> Hub:
    """A hub that creates (and owns) its client, as the session's hub is made."""
    url = os.environ.get("REDISCACHE_TEST_URL")
    return rediscache.connect(url) if url else rediscache.connect(data_dir=server_dir)


@pytest.fixture()
def own(server_dir: Path | None, hub: Hub) -> Iterator[tuple[Hub, rediscache.Space, redis.Redis]]:
    own_hub = _owned_hub(server_dir)
    client = own_hub.client
    name = "t-" + uuid.uuid4().hex[:12]
    space = own_hub.create_space(name, 4, algorithm="flat")
    space.put_many(["a", "b"], np.eye(2, 4, dtype=np.float32))
    try:
        yield own_hub, space, client
    finally:
        own_hub.drop_space(name, missing_ok=True)
        own_hub.close()


def _wire(hub: Hub, name: str) -> wire.Wire | None:
    """The Wire of the driver that serves space ``name`` (on a cluster: its node's)."""
    driver: Any = hub._driver
    if isinstance(driver, ClusterDriver):
        driver = driver._driver(driver.nodes.address(SpaceKeys.for_space(name).config))
    found: wire.Wire | None = driver.wire
    return found


def test_kept_connections_go_back_to_the_pool_on_close(
    own: tuple[Hub, rediscache.Space, redis.Redis],
) -> None:
    own_hub, space, _client = own
    for _ in range(5):
        assert space.get("a") is not None
    kept = _wire(own_hub, space.name)
    assert kept is not None and kept.idle  # one is kept
    own_hub.close()
    assert kept.idle == []


def test_a_hub_on_a_client_passed_in_keeps_no_connection(hub: Hub, space_name: str) -> None:
    """Such a hub may be dropped without close(): the client's pool must stay whole (a hub
    per request on a shared client ran the pool dry after 16 requests)."""
    client = _pool_client(hub, max_connections=16, timeout=0.5)
    try:
        rediscache.connect(client=client).create_space(space_name, 4, algorithm="flat")
        for i in range(40):  # more hubs than the pool has connections, none closed
            other = rediscache.connect(client=client)
            other.space(space_name).put(f"k{i}", np.ones(4))
            assert other.space(space_name).get(f"k{i}") is not None
            kept = _wire(other, space_name)
            if other.node_client(space_name) is client:  # (on a cluster: its node's)
                assert kept is not None and kept.idle == []
        pool = client.connection_pool
        taken = [pool.get_connection() for _ in range(16)]  # every one is free
        for conn in taken:
            pool.release(conn)
    finally:
        client.close()


def test_close_in_a_forked_child_leaves_the_parents_connections(
    own: tuple[Hub, rediscache.Space, redis.Redis],
) -> None:
    own_hub, space, _client = own
    space.get("a")
    ctx = _forking()
    child = ctx.Process(target=own_hub.close)  # raised queue.Full inside redis-py before
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert space.get("b").tolist() == [0.0, 1.0, 0.0, 0.0]


def test_a_pool_with_few_connections_keeps_none(hub: Hub) -> None:
    client = _pool_client(hub, max_connections=4, timeout=0.5)
    try:
        kept = wire.Wire(client)
        assert kept.size == 0
        assert wire.Wire(_pool_client(hub, max_connections=16), keep=False).size == 0
        assert kept.roundtrip([("PING",)]) == [b"PONG"]
        assert kept.idle == []
        assert wire.Wire(_pool_client(hub, max_connections=16)).size == 2
        own = hub.node_client()
        assert wire.Wire(own).size == wire.KEPT  # rediscache's own: 100 connections
    finally:
        client.close()


def _forking() -> Any:
    """multiprocessing's fork context (the test is skipped where there is no fork)."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork here")
    return multiprocessing.get_context("fork")


def _kill_kept(hub: Hub, kept: wire.Wire, name: str) -> None:
    """The server closes every connection ``kept`` holds (CLIENT KILL from another one)."""
    for conn in list(kept.idle):
        conn.send_command("CLIENT", "ID")
        hub.node_client(name).execute_command("CLIENT", "KILL", "ID", conn.read_response())


def test_a_killed_kept_connection_is_replaced(
    hub: Hub, own: tuple[Hub, rediscache.Space, redis.Redis]
) -> None:
    own_hub, space, _client = own
    space.get("a")
    space.put("c", np.ones(4))  # the script's connection is kept too
    kept = _wire(own_hub, space.name)
    assert kept is not None and kept.idle
    _kill_kept(hub, kept, space.name)
    # a write first: sent on a connection the server closed, its outcome would be unknown
    space.put("d", np.full(4, 2.0))
    np.testing.assert_array_equal(space.get("d"), np.full(4, 2.0, dtype=np.float32))
    _kill_kept(hub, kept, space.name)
    np.testing.assert_array_equal(space.get("a"), np.eye(1, 4, dtype=np.float32)[0])
    stats = own_hub.metrics()
    assert stats["put"].errors == 0 and stats["get"].errors == 0


def _child_get(hub: Hub, name: str, out: Any) -> None:
    kept = _wire(hub, name)
    assert kept is not None
    parents = {id(conn) for conn in kept.idle}  # the parent's, copied by the fork
    got = hub.space(name).get("a").tolist()
    out.put((len(parents & {id(conn) for conn in kept.idle}), got))


def test_a_forked_child_does_not_share_kept_connections(
    own: tuple[Hub, rediscache.Space, redis.Redis],
) -> None:
    own_hub, space, _client = own
    space.get("a")
    kept = _wire(own_hub, space.name)
    assert kept is not None and kept.idle
    ctx = _forking()
    out = ctx.Queue()
    child = ctx.Process(target=_child_get, args=(own_hub, space.name, out))
    child.start()
    shared, got = out.get(timeout=60)
    child.join(60)
    assert child.exitcode == 0
    assert shared == 0  # the child read on a connection of its own: they are the parent's
    assert got == [1.0, 0.0, 0.0, 0.0]
    assert kept.idle  # the parent's stay with the parent
    assert space.get("b").tolist() == [0.0, 1.0, 0.0, 0.0]
