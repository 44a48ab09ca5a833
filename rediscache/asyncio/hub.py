"""The asyncio hub: :func:`connect_async` and :class:`AsyncHub` (see :mod:`rediscache.asyncio`)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from redis.backoff import NoBackoff

from ..caching import (
    InFlight,
)
from ..errors import InvalidInputError
from ..guard import public
from ..hub import Hub, _check_client, _verify, connect
from ..metrics import OpStats
from ..wire import IndexReadiness, count_connects
from .space import AsyncSpace

if TYPE_CHECKING:
    from ..server import ServerConfig, ServerInfo


R = TypeVar("R")
T = TypeVar("T")


__all__ = ["AsyncHub", "connect_async"]

# --------------------------------------------------------------------------- connecting


async def connect_async(
    url: str | None = None,
    *,
    client: redis.asyncio.Redis | None = None,
    data_dir: str | Path | None = None,
    server: ServerConfig | None = None,
    start_timeout: float | None = None,
    **redis_kwargs: Any,
) -> AsyncHub:
    """Connect to a Redis with the search module and return an :class:`AsyncHub`.

    The arguments are those of :func:`rediscache.connect`: nothing for the embedded local
    server (started first if needed, in a worker thread), a ``redis://`` / ``rediss://`` /
    ``unix://`` URL, or ``client``, an existing ``redis.asyncio.Redis`` (protocol 2, bytes
    replies) that the hub never closes. The hub also opens a sync twin of the connection
    (same settings; see the module docstring), which it closes.

    Round trips: two (PING, MODULE LIST, on the sync twin), plus the server start when needed.

    Raises:
        InvalidInputError: a client with decode_responses or protocol 3, or of a kind whose
            settings cannot be copied (only plain, TLS and unix socket connections can).
        ConnectionFailedError, SearchModuleMissingError, EmbeddedServerError: as
            :func:`rediscache.connect`.
    """
    if client is not None:
        _check_client(client, redis.asyncio.Redis)
        sync_hub = Hub(_twin(client, to_async=False), owns_client=True)
        try:
            await asyncio.to_thread(_verify, sync_hub.client, "the given client's server")
        except BaseException:
            sync_hub.close()
            raise
        return AsyncHub(client, sync_hub=sync_hub)
    sync_hub = await asyncio.to_thread(
        connect,
        url,
        data_dir=data_dir,
        server=server,
        start_timeout=start_timeout,
        **redis_kwargs,
    )
    try:
        async_client = _twin(sync_hub.client, to_async=True)
    except BaseException:
        sync_hub.close()
        raise
    return AsyncHub(async_client, owns_client=True, sync_hub=sync_hub)


_TWINS: dict[type[Any], type[Any]] = {
    redis.connection.Connection: redis.asyncio.connection.Connection,
    redis.connection.SSLConnection: redis.asyncio.connection.SSLConnection,
    redis.connection.UnixDomainSocketConnection: (
        redis.asyncio.connection.UnixDomainSocketConnection
    ),
}
#: Connection settings tied to one flavour of client (retry policies, callbacks) or to one pool.
_UNSHARED = frozenset({"retry", "redis_connect_func", "himport_registry"})


def _twin(client: Any, *, to_async: bool) -> Any:
    """A client of the other flavour (sync <-> asyncio) with ``client``'s connection
    settings and a pool of its own. No I/O: it connects on first use."""
    pool = client.connection_pool
    kinds = _TWINS if to_async else {a: s for s, a in _TWINS.items()}
    kind = kinds.get(pool.connection_class)
    flavour = "an asyncio" if to_async else "a sync"
    if kind is None:
        raise InvalidInputError(
            f"cannot open {flavour} twin of a client whose connections are "
            f"{pool.connection_class.__name__}: pass a client with plain, TLS or unix socket "
            "connections (or a URL)"
        )
    settings = {k: v for k, v in pool.connection_kwargs.items() if k not in _UNSHARED}
    # no redis-py retries, as on the clients connect() makes (rediscache.guard retries reads)
    settings["retry"] = (redis.asyncio.retry.Retry if to_async else redis.retry.Retry)(
        NoBackoff(), 0
    )
    try:
        kind(**settings)  # fails now, not at the first command, on a setting it lacks
    except TypeError as exc:
        raise InvalidInputError(
            f"cannot open {flavour} twin of the client: its settings do not carry over ({exc})"
        ) from exc
    module: Any = redis.asyncio if to_async else redis
    new_pool = module.ConnectionPool(
        connection_class=kind, max_connections=pool.max_connections, **settings
    )
    return module.Redis.from_pool(new_pool)


# --------------------------------------------------------------------------- the hub


class AsyncHub:
    """The asyncio twin of :class:`rediscache.Hub`. Create with :func:`connect_async`.

    ``client`` is a ``redis.asyncio.Redis`` (protocol 2, bytes replies), closed by
    :meth:`close` when ``owns_client``. ``sync_hub``: the sync twin to use (it then belongs
    to this hub, which closes it); by default one is opened from the client's settings. Use
    as an async context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        owns_client: bool = False,
        sync_hub: Hub | None = None,
    ) -> None:
        self.client = client
        #: The sync twin, on the same server: control-plane calls run on it in a thread.
        self.sync = sync_hub if sync_hub is not None else Hub(_twin(client, to_async=False))
        self._owns = owns_client
        self._flights: dict[str, InFlight[asyncio.Event]] = {}
        self._connects = count_connects(client)
        self._indexes: dict[str, IndexReadiness] = {}

    def __repr__(self) -> str:
        return f"Async{self.sync!r}"

    @property
    def server(self) -> ServerInfo | None:
        """The embedded server's details when connected to it, else None."""
        return self.sync.server

    # ------------------------------------------------------------ lifecycle

    def metrics(self, *, reset: bool = False) -> dict[str, OpStats]:
        """:meth:`rediscache.Hub.metrics` of this hub's async calls (and of its sync twin's)."""
        return self.sync.metrics(reset=reset)

    def _index_readiness(self, name: str) -> IndexReadiness:
        """What this hub knows about the indexes of space ``name`` (shared by its objects)."""
        found = self._indexes.get(name)
        if found is None:
            found = self._indexes[name] = IndexReadiness()
        return found

    async def close(self) -> None:
        """Close the connection if the hub created it (clients passed in stay open), and the
        sync twin."""
        if self._owns:
            await self.client.aclose()
        self.sync.client.close()

    async def __aenter__(self) -> AsyncHub:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------ spaces (in a thread)

    async def create_space(
        self,
        name: str,
        dim: int,
        *,
        metric: str = "cosine",
        algorithm: str = "hnsw",
        dtype: str = "float32",
        fields: Mapping[str, str] | None = None,
        hnsw: Mapping[str, int] | None = None,
        ttl: float | None = None,
        expiring: bool | None = None,
        exist_ok: bool = False,
    ) -> AsyncSpace:
        """:meth:`rediscache.Hub.create_space`, run in a worker thread. Same arguments,
        round trips and errors."""
        space = await asyncio.to_thread(
            self.sync.create_space,
            name,
            dim,
            metric=metric,
            algorithm=algorithm,
            dtype=dtype,
            fields=fields,
            hnsw=hnsw,
            ttl=ttl,
            expiring=expiring,
            exist_ok=exist_ok,
        )
        return AsyncSpace(self, space)

    async def space(self, name: str) -> AsyncSpace:
        """The existing space ``name`` (:meth:`rediscache.Hub.space` in a worker thread).
        One round trip.

        Raises:
            SpaceNotFoundError: no such space.
        """
        return AsyncSpace(self, await asyncio.to_thread(self.sync.space, name))

    async def spaces(self) -> list[str]:
        """Names of all spaces, sorted. One round trip (in a worker thread)."""
        return await asyncio.to_thread(self.sync.spaces)

    async def drop_space(self, name: str, *, missing_ok: bool = False, compact: bool = True) -> int:
        """:meth:`rediscache.Hub.drop_space` in a worker thread: same round trips, same
        (non-)atomicity, same errors. Returns the number of keys deleted."""
        self._indexes.pop(name, None)
        return await asyncio.to_thread(
            self.sync.drop_space, name, missing_ok=missing_ok, compact=compact
        )

    def _inflight(self, prefix: str) -> InFlight[asyncio.Event]:
        """The in-flight table of get_or_compute for a space, shared by this hub's tasks
        (asyncio events belong to one event loop, as does the hub's client)."""
        table = self._flights.get(prefix)
        if table is None:
            table = self._flights[prefix] = InFlight(asyncio.Event)
        return table


for _op in ("create_space", "space", "spaces", "drop_space"):
    setattr(AsyncHub, _op, public(_op, getattr(AsyncHub, _op)))
