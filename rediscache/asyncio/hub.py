"""The asyncio hub: :func:`connect_async` and :class:`AsyncHub` (see :mod:`rediscache.asyncio`)."""

from __future__ import annotations

import asyncio
from operator import attrgetter
from pathlib import Path
from types import TracebackType
from typing import Any

import redis.asyncio
import redis.asyncio.cluster

from ..drive import (
    AsyncDriver,
    AsyncFacade,
    FailoverAsyncDriver,
    ReplicaReadingAsyncDriver,
    async_op,
)
from ..hub import (
    HubSurface,
    close_sentinels,
    cluster_nodes,
    cluster_options,
    cluster_slots,
    failover_wait_of,
    open_client,
    plain_url,
    plan_connect,
    replica_client,
    verify,
    watched_by_sentinels,
)
from ..registry import Found, PartsFound, Registry
from ..routing import AsyncClusterDriver, ClusterNodes
from ..server import ServerConfig, ServerInfo, ensure_running
from .space import AsyncPartitionedSpace, AsyncSpace

__all__ = ["AsyncHub", "connect_async"]


async def connect_async(
    url: str | None = None,
    *,
    client: redis.asyncio.Redis | None = None,
    data_dir: str | Path | None = None,
    server: ServerConfig | None = None,
    start_timeout: float | None = None,
    read_from_replicas: bool = False,
    **redis_kwargs: Any,
) -> AsyncHub:
    """Connect to a Redis with the search module and return an :class:`AsyncHub`.

    The arguments, the choice of server and the errors are those of
    :func:`rediscache.connect`: nothing for the embedded local server (started first if
    needed, in a worker thread: starting a process blocks), a ``redis://`` / ``rediss://``
    / ``unix://`` URL, or ``client``, an existing ``redis.asyncio.Redis`` or
    ``redis.asyncio.RedisCluster`` (protocol 2, bytes replies) that the hub never closes.

    A cluster (``redis+cluster://``, or a node detected as one) works as with
    :func:`rediscache.connect`; ``hub.client`` is then a ``redis.asyncio.cluster.RedisCluster``.
    So does a primary watched by Sentinels (``redis+sentinel://``, or a client made by
    ``redis.asyncio.sentinel.Sentinel.master_for``).

    Round trips: three (PING, MODULE LIST, INFO cluster), plus the server start when
    needed, and on a cluster one more (CLUSTER SLOTS).
    """
    plan = plan_connect(
        url, client, data_dir, server, start_timeout, redis_kwargs, redis.asyncio.Redis,
        read_from_replicas=read_from_replicas,
    )  # fmt: skip
    info = None
    if plan.embedded is not None:
        info = await asyncio.to_thread(ensure_running, plan.embedded)
    opened, owns, where = open_client(plan, info, redis.asyncio)
    replicas = replica_client(plan, opened, redis.asyncio)
    hub = AsyncHub(opened, owns_client=owns, server=info, replicas=replicas)
    try:
        await hub._driver.run(verify(hub._registry, where, opened))
        slots = await hub._driver.run(cluster_slots(plan, where))
        if slots is None:
            return hub
        nodes = cluster_nodes(opened, slots, redis.asyncio)
    except BaseException:
        await hub.close()
        raise
    # on a cluster: a hub over its nodes (see rediscache.hub._on_cluster)
    user: Any = opened
    if isinstance(plan.client, redis.asyncio.RedisCluster):
        user, owns = plan.client, False  # the seed (a node's client) is the hub's: closed
        await opened.aclose()
    elif plan.url is not None:
        user = redis.asyncio.cluster.RedisCluster.from_url(
            plain_url(plan.url), protocol=2, **cluster_options(plan)
        )
        if owns:
            await opened.aclose()
    else:  # a plain client given: used for its own node
        nodes.adopt(opened)
    return AsyncHub(user, owns_client=owns, server=info, nodes=nodes)


_registry = attrgetter("_registry")


def _space_of(hub: AsyncHub, found: Found | PartsFound) -> AsyncSpace | AsyncPartitionedSpace:
    if len(found) == 3:
        return AsyncPartitionedSpace(hub, found[0], found[2])
    return AsyncSpace(hub, found[0], found[1])


class AsyncHub(AsyncFacade, HubSurface):
    """:class:`rediscache.Hub` for asyncio (:class:`rediscache.hub.HubSurface`). Create with
    :func:`connect_async`.

    ``client`` is a ``redis.asyncio.Redis`` (protocol 2, bytes replies), closed by
    :meth:`close` when ``owns_client``. Use as an async context manager, or call
    :meth:`close`.
    """

    def __init__(
        self,
        client: Any,
        *,
        owns_client: bool = False,
        server: ServerInfo | None = None,
        nodes: ClusterNodes | None = None,
        replicas: Any = None,
    ) -> None:
        self._replicas = replicas
        if nodes is not None:
            self._driver = AsyncClusterDriver(nodes, failover_wait=failover_wait_of(nodes))
        elif replicas is not None:
            self._driver = ReplicaReadingAsyncDriver(client, replicas)
        elif watched_by_sentinels(client):
            self._driver = FailoverAsyncDriver(client)
        else:  # a hub on a client passed in keeps no connection of its pool
            self._driver = AsyncDriver(client, keep=owns_client)
        super().__init__(client, owns_client=owns_client, server=server, nodes=nodes)

    async def close(self) -> None:
        """Close the connection if the hub created it (clients passed in stay open). Background
        work still running (garbage collection) is cancelled first; the next collection
        resumes it."""
        await self._driver.settle(0)
        if self._replicas is not None:
            await self._replicas.aclose()
        if self._owns:
            await self.client.aclose()
            for watcher in close_sentinels(self.client):
                await watcher.aclose()
        if self._nodes is not None:
            for node in self._nodes.made():
                await node.aclose()

    async def __aenter__(self) -> AsyncHub:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    create_space = async_op(
        "create_space",
        Registry.create_space,
        _registry,
        wrap=_space_of,
        returns="AsyncSpace | AsyncPartitionedSpace",
    )
    space = async_op(
        "space",
        Registry.space,
        _registry,
        wrap=_space_of,
        returns="AsyncSpace | AsyncPartitionedSpace",
    )
