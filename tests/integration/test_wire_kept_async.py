"""The connections an asyncio hub keeps between read calls (rediscache.wire.AsyncWire): the
same connection serves the next read, they go back to the pool on close, a connection the
server killed is replaced without an error, a cancelled call never leaves one half read, a
hub on a client passed in keeps none. On one server (a cluster's per-node drivers keep none)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis.asyncio
from both import async_hub_args

import rediscache
from rediscache import Hub
from rediscache.drive import AsyncDriver
from rediscache.wire import AsyncWire


@pytest.fixture()
def name(server_dir: Path | None, hub: Hub) -> Iterator[str]:
    if server_dir is None:
        pytest.skip("a cluster's asyncio drivers (one per node) keep no connection")
    space = "t-" + uuid.uuid4().hex[:12]
    hub.create_space(space, 4, algorithm="flat").put_many(
        ["a", "b"], np.eye(2, 4, dtype=np.float32)
    )
    yield space
    hub.drop_space(space, missing_ok=True)


def _wire(ahub: Any) -> AsyncWire:
    driver = ahub._driver
    assert type(driver) is AsyncDriver
    found: AsyncWire = driver.wire
    return found


def test_a_kept_connection_serves_the_next_read_and_goes_back_on_close(
    server_dir: Path, name: str
) -> None:
    async def main() -> None:
        ahub = await rediscache.connect_async(**async_hub_args(server_dir))
        space = await ahub.space(name)
        assert (await space.get("a")).tolist() == [1.0, 0.0, 0.0, 0.0]
        kept = _wire(ahub)
        assert len(kept.idle) == 1
        first = kept.idle[0]
        for _ in range(5):
            await space.get_many(["a", "b"])
            await space.search(np.ones(4), 2)
        assert kept.idle == [first]  # the same one each time: no pool round trip
        pool = ahub.client.connection_pool
        assert first in pool._in_use_connections  # counted as in use while kept
        await ahub.close()
        assert kept.idle == []

    asyncio.run(main())


def test_a_killed_kept_connection_is_replaced(server_dir: Path, hub: Hub, name: str) -> None:
    async def main() -> None:
        async with await rediscache.connect_async(**async_hub_args(server_dir)) as ahub:
            space = await ahub.space(name)
            await space.get("a")
            kept = _wire(ahub)
            conn = kept.idle[0]
            await conn.send_command("CLIENT", "ID")
            killed = await conn.read_response()
            hub.client.execute_command("CLIENT", "KILL", "ID", killed)
            assert (await space.get("b")).tolist() == [0.0, 1.0, 0.0, 0.0]
            assert ahub.metrics()["get"].errors == 0
            await space.get("a")
            assert len(kept.idle) == 1  # kept again: a new connection (the pool may reuse
            conn = kept.idle[0]  # the object, reconnected)
            await conn.send_command("CLIENT", "ID")
            assert await conn.read_response() != killed

    asyncio.run(main())


def test_a_cancelled_read_leaves_no_half_read_connection(server_dir: Path, name: str) -> None:
    async def main() -> None:
        async with await rediscache.connect_async(**async_hub_args(server_dir)) as ahub:
            space = await ahub.space(name)
            await space.get("a")
            kept = _wire(ahub)
            for _ in range(20):  # cancelled at once, or while its reply is on the way
                task = asyncio.ensure_future(space.search(np.ones(4), 2))
                await asyncio.sleep(0)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                for conn in kept.idle:  # a reply left unread would come before PONG
                    await conn.send_command("PING")
                    assert await conn.read_response() == b"PONG"
                assert [h.key for h in await space.search(np.ones(4), 2)] == ["a", "b"]

    asyncio.run(main())


def test_a_hub_on_a_client_passed_in_keeps_none(server_dir: Path, hub: Hub, name: str) -> None:
    node = hub.node_client()
    kwargs = dict(node.connection_pool.connection_kwargs)
    kwargs.pop("redis_connect_func", None)
    kind = (
        redis.asyncio.UnixDomainSocketConnection if "path" in kwargs else redis.asyncio.Connection
    )

    async def main() -> None:
        client = redis.asyncio.Redis(
            connection_pool=redis.asyncio.ConnectionPool(connection_class=kind, **kwargs)
        )
        try:
            ahub = await rediscache.connect_async(client=client)
            space = await ahub.space(name)
            assert (await space.get("a")) is not None
            assert _wire(ahub).size == 0 and _wire(ahub).idle == []
            assert not client.connection_pool._in_use_connections
            await ahub.close()
        finally:
            await client.aclose(close_connection_pool=True)

    asyncio.run(main())
