"""The hub: a connection to Redis (embedded or remote) and the registry of spaces."""

from __future__ import annotations

import dataclasses
import inspect
import os
import time
from collections.abc import Mapping
from operator import attrgetter
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.cluster
import redis.connection
import redis.utils
from redis.backoff import NoBackoff
from redis.retry import Retry

from .access import Access
from .context import HubContext
from .drive import FailoverDriver, Op, ReplicaReadingDriver, SyncDriver, SyncFacade, sync_op
from .durability import Durability
from .effects import Command, Flow
from .errors import AuthenticationFailedError, ConnectionFailedError, InvalidInputError
from .guard import (
    FAILOVER_WAIT,
    NotPrimary,
    address,
    auth_refused,
    database,
    redact,
    refused_credentials,
)
from .keys import SpaceKeys
from .metrics import OpStats
from .partitioned import PartitionedSpace
from .registry import COMPACT_MIN_KEYS, Found, PartsFound, Registry, ServerStats
from .routing import ClusterDriver, ClusterNodes
from .server import ServerConfig, ServerInfo, ensure_running
from .space import Space
from .wire import ConnectCounter, count_connects

__all__ = [
    "COMPACT_MIN_KEYS", "INDEX_WAIT", "MAX_CONNECTIONS", "POOL_TIMEOUT", "SENTINEL_SCHEME",
    "ConnectPlan", "Hub", "HubSurface", "ServerStats", "connect", "failover_wait_of",
    "open_client", "plan_connect", "replica_client", "sentinel_parts", "verify",
    "watched_by_sentinels",
]  # fmt: skip


def _check_client(client: object, kind: type[Any] = redis.Redis) -> None:
    cluster = redis.cluster.RedisCluster if kind is redis.Redis else redis.asyncio.RedisCluster
    if isinstance(client, cluster):
        kwargs = client.nodes_manager.connection_kwargs
    elif not isinstance(client, kind):
        raise InvalidInputError(
            f"client must be a {kind.__module__}.{kind.__name__} or a "
            f"{cluster.__module__}.{cluster.__name__}, got {type(client).__name__}"
        )
    else:
        kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("decode_responses"):
        raise InvalidInputError("pass a redis client with decode_responses=False")
    protocol = kwargs.get("protocol")
    if protocol is None:  # the client's default: RESP3 since redis-py 8, RESP2 before
        protocol = getattr(redis.utils, "DEFAULT_RESP_VERSION", 2)
    if str(protocol) != "2":
        raise InvalidInputError(
            "pass a redis client with protocol=2 (rediscache parses RESP2; redis-py 8 "
            "defaults to RESP3): e.g. redis.Redis(..., protocol=2)"
        )


def no_retry() -> Retry:
    """redis-py's retries turned off, for the clients rediscache creates: redis-py would send
    a command again after a lost connection or a timeout, writes too (a write applied twice);
    rediscache retries reads itself, within the bound of :mod:`rediscache.guard`."""
    return Retry(NoBackoff(), 0)


#: Connections the clients :func:`connect` creates keep open at most, and the seconds a call
#: waits for one of them to come free when all are in use (then ConnectionFailedError saying
#: so). Pass ``max_connections=`` (and ``timeout=``) with a URL to choose others.
MAX_CONNECTIONS = 100
POOL_TIMEOUT = 10.0

#: Default of :attr:`Hub.index_wait`, seconds. After a restart the search module rebuilds
#: every index in the background (about a minute for 20k 384-d HNSW vectors on a busy 2-core
#: machine, docs/serving.md) and meanwhile answers searches from what it has indexed: a
#: search waits for its index rather than silently missing hits.
INDEX_WAIT = 30.0

#: The environment variables naming the server, for connect() and the CLI alike.
URL_ENV = "REDISCACHE_URL"
DATA_DIR_ENV = "REDISCACHE_DATA_DIR"


def resolve_target(
    url: str | None = None, data_dir: str | Path | None = None
) -> tuple[str | None, str | Path | None]:
    """The server to use when none is given: ``url`` or ``data_dir`` when given, else
    ``REDISCACHE_URL``, else ``REDISCACHE_DATA_DIR``, else (None, None): the default embedded
    server. The one resolution order of :func:`connect` and the CLI."""
    if url is not None or data_dir is not None:
        return url, data_dir
    env_url = os.environ.get(URL_ENV) or None
    if env_url is not None:
        return env_url, None
    return None, os.environ.get(DATA_DIR_ENV) or None


def verify(registry: Registry, where: str, client: Any) -> Flow[None]:
    """:meth:`Registry.verify` of a new hub's connection, sync or asyncio alike; credentials
    the server refused raise :class:`AuthenticationFailedError` (a wrong password, or a user
    that was deleted, disabled or given a new password), not a plain connection failure."""
    try:
        yield from registry.verify(where)
    except ConnectionFailedError as exc:
        if isinstance(exc, AuthenticationFailedError) or not auth_refused(exc):
            raise
        raise refused_credentials(f"connecting to {where}", client) from exc


#: URL schemes naming a Redis Cluster (redis-py's RedisCluster takes them without "+cluster").
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


#: The URL scheme naming a primary watched by Sentinels: ``redis+sentinel://[[user]:password@]
#: host:port[,host:port...]/service[/db][?sentinel_password=...&sentinel_username=...&...]``
#: (:func:`sentinel_parts`).
SENTINEL_SCHEME = "redis+sentinel://"
#: Seconds a Sentinel query waits to connect and for a reply (unless the URL says).
SENTINEL_TIMEOUT = 2.0
#: Sentinel's own port, for addresses given without one.
SENTINEL_PORT = 26379


def sentinel_parts(
    url: str,
) -> tuple[list[tuple[str, int]], str, dict[str, Any], dict[str, Any]]:
    """The parts of a ``redis+sentinel://`` URL: the Sentinels' addresses, the service
    name, the data nodes' redis-py options (user name and password of the userinfo, ``db``
    of the second path segment, the query's other options as redis-py reads a URL's) and
    the Sentinels' (``sentinel_password``, ``sentinel_username``; timeouts of
    :data:`SENTINEL_TIMEOUT` unless ``socket_timeout`` is given). Pure; what redis-py's
    ``Sentinel(sentinels, sentinel_kwargs=..., **options).master_for(service)`` takes.

    Raises:
        InvalidInputError: no Sentinel address, a bad port, no service name, a bad db.
    """
    rest = url[len(SENTINEL_SCHEME) :]
    netloc, _, tail = rest.partition("/")
    path, _, query = tail.partition("?")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        userinfo, hosts = "", netloc
    usage = (
        "use redis+sentinel://[:password@]host:port[,host:port...]/service[/db]"
        "[?sentinel_password=...]"
    )
    sentinels: list[tuple[str, int]] = []
    for item in filter(None, hosts.split(",")):
        host, sep, port = item.rpartition(":")
        if not sep or "]" in port:  # no port (an IPv6 address in brackets has colons)
            host, port = item, str(SENTINEL_PORT)
        host = host.strip("[]")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise InvalidInputError(f"bad Sentinel address {item!r} in {redact(url)!r}: {usage}")
        sentinels.append((host, int(port)))
    segments = [unquote(p) for p in path.split("/") if p]
    if not sentinels or not segments or len(segments) > 2:
        raise InvalidInputError(f"{redact(url)!r} names no Sentinel or no service: {usage}")
    if len(segments) == 2 and not segments[1].isdigit():
        raise InvalidInputError(f"bad database {segments[1]!r} in {redact(url)!r}: {usage}")
    user, _, password = userinfo.partition(":")
    options = dict(parse_qsl(query, keep_blank_values=True))
    watchers: dict[str, Any] = {
        "password": options.pop("sentinel_password", None) or None,
        "username": options.pop("sentinel_username", None) or None,
    }
    try:
        converted = redis.connection.parse_url("redis://localhost/0?" + urlencode(options))
    except ValueError as exc:
        raise InvalidInputError(f"invalid option in {redact(url)!r}: {exc}") from exc
    converted.pop("host", None)
    converted.pop("db", None)
    for name in ("socket_timeout", "socket_connect_timeout"):
        watchers[name] = converted.get(name, SENTINEL_TIMEOUT)
    node = {
        "username": unquote(user) or None,
        "password": unquote(password) or None,
        "db": int(segments[1]) if len(segments) == 2 else 0,
        **converted,
    }
    return sentinels, segments[0], node, watchers


def watched_by_sentinels(client: Any) -> bool:
    """Whether ``client``'s pool finds its server through Sentinels (redis-py's
    ``Sentinel.master_for``, sync or asyncio)."""
    return hasattr(getattr(client, "connection_pool", None), "sentinel_manager")


def plain_url(url: str) -> str:
    """``url`` with a cluster scheme (:data:`CLUSTER_SCHEMES`) written as redis-py's."""
    for scheme in CLUSTER_SCHEMES:
        if url.startswith(scheme):
            return scheme.replace("+cluster", "") + url[len(scheme) :]
    return url


def cluster_slots(plan: ConnectPlan, where: str) -> Flow[Any]:
    """The slot map (``CLUSTER SLOTS``) when the server is a cluster node, else None.
    Round trips: one (INFO cluster), two on a cluster.

    Raises:
        InvalidInputError: the plan's URL asks for a cluster and the server is not one.
    """
    try:
        info = yield Command(("INFO", "cluster"))
    except redis.exceptions.NoPermissionError:
        info = {}
    if not int(info.get("cluster_enabled", 0) or 0):
        if plan.cluster:
            raise InvalidInputError(
                f"{where} is not a Redis Cluster node (cluster_enabled:0): connect to it "
                "with redis:// (or rediss://)"
            )
        return None
    return (yield Command(("CLUSTER", "SLOTS")))


def cluster_options(plan: ConnectPlan) -> dict[str, Any]:
    """The plan's redis-py options that a ``RedisCluster`` client takes too (TLS files,
    timeouts, credentials; not the pool's wait ``timeout`` nor the hub's ``retry``)."""
    return {k: v for k, v in plan.redis_kwargs.items() if k not in ("timeout", "retry")}


def cluster_nodes(seed: Any, slots: Any, module: Any) -> ClusterNodes:
    """The nodes of the cluster ``seed`` (a client of one node, sync or asyncio:
    ``module`` is ``redis`` or ``redis.asyncio``) is part of, with the slot map ``slots``
    (a ``CLUSTER SLOTS`` reply): each node's client is made like the seed's, with its
    options, pool size and credentials.

    Raises:
        InvalidInputError: the seed connects through a unix socket (cluster nodes announce
            TCP addresses).
    """
    pool = seed.connection_pool
    kwargs = pool.connection_kwargs
    if "host" not in kwargs:
        raise InvalidInputError(
            "a Redis Cluster is reached over TCP: connect with redis+cluster://host:port"
        )
    settings = {k: v for k, v in kwargs.items() if k not in ("host", "port", "redis_connect_func")}
    sizing: dict[str, Any] = {"max_connections": pool.max_connections}
    if isinstance(getattr(pool, "timeout", None), int | float):
        sizing["timeout"] = pool.timeout
    kind = type(pool)

    def new_client(host: str, port: int) -> Any:
        node_pool = kind(
            connection_class=pool.connection_class, host=host, port=port, **sizing, **settings
        )
        return module.Redis.from_pool(node_pool)

    nodes = ClusterNodes(new_client, (kwargs["host"], int(kwargs["port"])))
    nodes.load(slots)
    return nodes


def connect(
    url: str | None = None,
    *,
    client: redis.Redis | None = None,
    data_dir: str | Path | None = None,
    server: ServerConfig | None = None,
    start_timeout: float | None = None,
    read_from_replicas: bool = False,
    **redis_kwargs: Any,
) -> Hub:
    """Connect to a Redis with the search module and return a :class:`Hub`.

    * ``connect()``: the embedded local server (started first if it is not running; see
      :mod:`rediscache.server`). ``data_dir`` or ``server`` choose its data directory/config;
      ``start_timeout`` (seconds) overrides the config's wait for a server loading its data.
    * ``connect("redis://:pw@host:6379/0")`` (also ``rediss://`` and ``unix://``): any Redis;
      ``redis_kwargs`` go to ``redis.Redis.from_url``.
    * ``connect(client=r)``: an existing redis-py client (protocol 2, bytes replies), a
      ``redis.Redis`` or a ``redis.cluster.RedisCluster``; the hub never closes a client it
      did not create.
    * ``connect("redis+cluster://:pw@host:7000")`` (also ``rediss+cluster://``): a Redis
      Cluster, reached through any of its nodes (redis-py's ``RedisCluster`` takes the same
      URL with ``redis://``). A ``redis://`` URL or a client naming a cluster node is
      detected as one too. Each space lives on the primary owning its hash tag's slot
      (:mod:`rediscache.routing`); ``hub.client`` is then a ``redis.cluster.RedisCluster``
      (for a URL; a client passed in stays the hub's client). See docs/scale.md.
    * ``connect("redis+sentinel://:pw@host1:26379,host2:26379/service?sentinel_password=spw")``:
      a primary watched by Sentinels (redis-py's ``Sentinel(...).master_for(service)``; see
      :func:`sentinel_parts`: the userinfo's credentials are the data nodes', the query's
      ``sentinel_password``/``sentinel_username`` the Sentinels', a second path segment the
      db). Each new connection asks the Sentinels for the primary, so after a failover the
      hub finds the new one by itself: a call that meets no primary waits for one up to
      :attr:`Hub.failover_wait` seconds (see :mod:`rediscache.guard`). ``client=`` also
      takes a client made by ``Sentinel.master_for``. See docs/availability.md.
      ``read_from_replicas=True`` (with such a URL) sends reads to the replicas
      (:class:`rediscache.drive.ReplicaReadingDriver`): they may lag the primary, and
      see this hub's own writes only once replicated (docs/availability.md says by how
      much, and how to read one's own writes).

    The clients it creates have redis-py's own retries off (pass ``retry=`` to choose
    another policy): reads are retried by rediscache within a documented bound and writes are
    never sent twice (see :mod:`rediscache.guard`). A client passed in keeps its policy.

    Which server, in this order (the ``rediscache`` command line resolves it the same way,
    so a script and the CLI never silently use different servers): ``client``; ``url``;
    ``data_dir`` / ``server``; the environment variable ``REDISCACHE_URL``; the environment
    variable ``REDISCACHE_DATA_DIR`` (an embedded server there); the embedded server in the
    default data directory (``~/.local/share/rediscache/server``).

    After a restart the server loads its data (the embedded one is waited for: at most
    ``ServerConfig.start_timeout`` seconds, then :class:`ServerLoadingError`, the server left
    running) and rebuilds its search indexes in the background. ``connect()`` does not wait
    for the indexes; each search does, for its own space's index: up to
    :attr:`Hub.index_wait` seconds (:data:`INDEX_WAIT`, 30), then
    :class:`IndexBuildingError`, never a silently partial answer.

    Connections: the clients it creates keep at most :data:`MAX_CONNECTIONS` (100) open,
    shared by every thread (or asyncio task) using the hub; a call finding all of them in
    use waits for one up to :data:`POOL_TIMEOUT` (10 s), then raises
    :class:`ConnectionFailedError` saying the pool was full (asyncio tasks wait in the hub's
    driver instead, without a timeout). ``connect(url, max_connections=..., timeout=...)``
    chooses others.

    Round trips: three (PING, MODULE LIST, INFO cluster), plus the server start when
    needed, and on a cluster one more (CLUSTER SLOTS).

    Raises:
        ConnectionFailedError: unreachable server; AuthenticationFailedError (a subclass)
            when it refused the user or password.
        InvalidInputError: a ``redis+cluster://`` URL naming a server that is not a cluster
            node, or a cluster reached through a unix socket.
        ServerLoadingError: the server is still loading its data.
        SearchModuleMissingError: the server has no search module.
        EmbeddedServerError: the embedded server cannot start (see its subclasses).
    """
    plan = plan_connect(
        url, client, data_dir, server, start_timeout, redis_kwargs, redis.Redis,
        read_from_replicas=read_from_replicas,
    )  # fmt: skip
    info = ensure_running(plan.embedded) if plan.embedded is not None else None
    opened, owns, where = open_client(plan, info, redis)
    replicas = replica_client(plan, opened, redis)
    # counts connections from the first
    hub = Hub(opened, owns_client=owns, server=info, replicas=replicas)
    try:
        hub._driver.run(verify(hub._registry, where, opened))
        return _on_cluster(hub, plan, where)
    except BaseException:
        hub.close()
        raise


def _on_cluster(hub: Hub, plan: ConnectPlan, where: str) -> Hub:
    """``hub`` itself on one server; on a cluster, a hub over its nodes made from ``hub``'s
    client (``hub`` is then spent: its driver closed, its client too when the new hub's
    client is a ``RedisCluster`` of the plan's URL). One or two round trips."""
    slots = hub._driver.run(cluster_slots(plan, where))
    if slots is None:
        return hub
    seed = hub.client
    nodes = cluster_nodes(seed, slots, redis)
    user: Any = seed
    owns = hub._owns
    if isinstance(plan.client, redis.cluster.RedisCluster):
        user, owns = plan.client, False
    elif plan.url is not None:
        try:  # it reads the slot map and the command table from the nodes
            user = redis.cluster.RedisCluster.from_url(
                plain_url(plan.url), protocol=2, **cluster_options(plan)
            )
        except redis.RedisError as exc:
            if auth_refused(exc):
                raise refused_credentials(f"connecting to the cluster {where}", seed) from exc
            raise ConnectionFailedError(
                f"connecting to the cluster {where}: {redact(str(exc))}"
            ) from exc
    hub._driver.close()
    if user is seed:  # a plain client given (or connect_as's): used for its own node
        nodes.adopt(seed)
    elif hub._owns:
        seed.close()
    return Hub(user, owns_client=owns, server=hub.server, nodes=nodes)


@dataclasses.dataclass(frozen=True)
class ConnectPlan:
    """Which server :func:`connect` / :func:`rediscache.asyncio.connect_async` use, once
    checked: a client given, a URL (with redis-py options), or the embedded server's config."""

    client: Any = None
    url: str | None = None
    redis_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    embedded: ServerConfig | None = None
    read_from_replicas: bool = False

    @property
    def cluster(self) -> bool:
        """Whether the URL asks for a cluster (``redis+cluster://``)."""
        return self.url is not None and self.url.startswith(CLUSTER_SCHEMES)

    @property
    def sentinel(self) -> bool:
        """Whether the URL names Sentinels (``redis+sentinel://``)."""
        return self.url is not None and self.url.startswith(SENTINEL_SCHEME)


def plan_connect(
    url: str | None,
    client: Any,
    data_dir: str | Path | None,
    server: ServerConfig | None,
    start_timeout: float | None,
    redis_kwargs: Mapping[str, Any],
    kind: type[Any],
    *,
    read_from_replicas: bool = False,
) -> ConnectPlan:
    """The checked arguments of a connect (``kind``: the client class expected). Pure,
    apart from reading the environment (:func:`resolve_target`).

    Raises:
        InvalidInputError: a bad client, URL, server config, data_dir or option;
            ``read_from_replicas`` without a ``redis+sentinel://`` URL.
    """
    if not isinstance(read_from_replicas, bool):
        raise InvalidInputError(f"read_from_replicas must be a bool, got {read_from_replicas!r}")
    if read_from_replicas and not (isinstance(url, str) and url.startswith(SENTINEL_SCHEME)):
        raise InvalidInputError(
            "read_from_replicas needs a redis+sentinel:// URL (the Sentinels name the "
            "healthy replicas); on a cluster or one server every read goes to a primary"
        )
    if server is not None and not isinstance(server, ServerConfig):
        raise InvalidInputError(f"server must be a ServerConfig, got {type(server).__name__}")
    if client is None and url is None and data_dir is None and server is None:
        url, data_dir = resolve_target()
    embedded = client is None and url is None
    if start_timeout is not None and not embedded:
        raise InvalidInputError(
            "start_timeout applies to the embedded server only (no url, no client)"
        )
    if redis_kwargs and url is None:
        raise InvalidInputError(
            f"unknown argument(s) {', '.join(sorted(redis_kwargs))}: redis-py options go with "
            "a URL (connect(url, socket_timeout=...)); the embedded server takes data_dir=, "
            "start_timeout= or server=ServerConfig(...)"
        )
    if client is not None:
        _check_client(client, kind)
        return ConnectPlan(client=client)
    if url is not None:
        if not isinstance(url, str) or not url.startswith(
            ("redis://", "rediss://", "unix://", SENTINEL_SCHEME, *CLUSTER_SCHEMES)
        ):
            raise InvalidInputError(
                f"unsupported URL {redact(str(url))!r}: use redis://, rediss://, unix://, "
                "for a cluster redis+cluster:// or rediss+cluster://, for a primary watched "
                "by Sentinels redis+sentinel://"
            )
        if url.startswith(SENTINEL_SCHEME):
            sentinel_parts(url)  # checked now
        return ConnectPlan(
            url=url, redis_kwargs=dict(redis_kwargs), read_from_replicas=read_from_replicas
        )
    config = server or ServerConfig()
    if data_dir is not None:
        if not isinstance(data_dir, str | Path):
            raise InvalidInputError(f"data_dir must be a path, got {type(data_dir).__name__}")
        config = dataclasses.replace(config, data_dir=Path(data_dir))
    if start_timeout is not None:
        config = dataclasses.replace(config, start_timeout=start_timeout)
    return ConnectPlan(embedded=config)


def open_client(plan: ConnectPlan, info: ServerInfo | None, module: Any) -> tuple[Any, bool, str]:
    """The client of ``plan`` (``module``: ``redis`` or ``redis.asyncio``; ``info``: the
    embedded server, started), whether the hub owns it, and how messages name the server.
    No I/O: clients connect on first use.

    Raises:
        InvalidInputError: a bad URL or redis-py option.
    """
    if isinstance(plan.client, redis.cluster.RedisCluster):  # a seed client of its node
        pool = plan.client.get_default_node().redis_connection.connection_pool
        kwargs = {k: v for k, v in pool.connection_kwargs.items() if k != "redis_connect_func"}
        seed = redis.BlockingConnectionPool(
            connection_class=pool.connection_class,
            max_connections=MAX_CONNECTIONS,
            timeout=POOL_TIMEOUT,
            **kwargs,
        )
        return redis.Redis.from_pool(seed), True, "the given cluster client's cluster"
    if isinstance(plan.client, redis.asyncio.RedisCluster):  # a seed client of a node
        node = next(iter(plan.client.nodes_manager.startup_nodes.values()))
        node_kwargs = {k: v for k, v in node.connection_kwargs.items() if k != "redis_connect_func"}
        aseed = redis.asyncio.ConnectionPool(
            connection_class=node.connection_class, max_connections=MAX_CONNECTIONS, **node_kwargs
        )
        return redis.asyncio.Redis.from_pool(aseed), True, "the given cluster client's cluster"
    if plan.client is not None:
        return plan.client, False, "the given client's server"
    retry = no_retry() if module is redis else redis.asyncio.retry.Retry(NoBackoff(), 0)
    if plan.url is not None and plan.sentinel:
        return _sentinel_client(plan, module, retry)
    # sync: threads wait for a free connection in a blocking pool; asyncio: tasks wait in
    # the driver (rediscache.drive.AsyncDriver), the pool itself never runs out
    blocking = module is redis
    kind = module.BlockingConnectionPool if blocking else module.ConnectionPool
    pooling: dict[str, Any] = {"max_connections": MAX_CONNECTIONS}
    if blocking:
        pooling["timeout"] = POOL_TIMEOUT
    if plan.url is not None:
        try:
            pool = kind.from_url(
                plain_url(plan.url),
                protocol=2,
                **{"retry": retry, **pooling, **plan.redis_kwargs},
            )
            pool.connection_class(**pool.connection_kwargs)  # no I/O: refuses unknown options
        except (ValueError, TypeError) as exc:  # a bad URL, or an unknown keyword argument
            # redis-py's text may quote a piece of the URL (a password cut at a '/', '#'
            # or ':' read as the port): say only what kind of mistake it was
            if isinstance(exc, TypeError):  # names the keyword, not the URL
                raise InvalidInputError(
                    f"invalid option for {redact(plan.url)!r}: {redact(str(exc))}"
                ) from exc
            raise InvalidInputError(
                f"invalid Redis URL {redact(plan.url)!r}: a password with '/', '#', '?', "
                "'@', ':' or spaces must be percent-encoded in the URL "
                "(urllib.parse.quote(password, safe=''))"
            ) from exc
        return module.Redis.from_pool(pool), True, redact(plan.url)
    assert info is not None
    connections = module.connection
    if info.unix_socket and Path(info.unix_socket).exists():
        where: dict[str, Any] = {
            "connection_class": connections.UnixDomainSocketConnection,
            "path": info.unix_socket,
        }
    else:
        where = {"connection_class": connections.Connection, "host": info.host, "port": info.port}
    pool = kind(password=info.password, protocol=2, retry=retry, **pooling, **where)
    return module.Redis.from_pool(pool), True, f"the embedded server in {info.data_dir}"


def _not_primary(reply: Any, address: tuple[str, int]) -> NotPrimary | None:
    """The error of a new connection to ``address``, named the primary by a Sentinel, whose
    ``ROLE`` reply says it is not one; None when it is (or when the user may not send ROLE:
    users made before it was granted)."""
    if isinstance(reply, redis.ResponseError):
        return None
    role = reply[0] if isinstance(reply, list) and reply else reply
    role = role.decode() if isinstance(role, bytes) else str(role)
    if role == "master":
        return None
    host, port = address
    return NotPrimary(
        f"{host}:{port}, named the primary by a Sentinel, is a {role}: the Sentinels' views "
        "differ for a moment after a failover (a demoted primary that woke up)"
    )


#: Seconds a new connection to the primary may take (connect, handshake, ROLE) before the
#: Sentinels are asked again whether it still is the one they name: a primary stopped for
#: a while answers ROLE "master" when it wakes, seconds before they demote it, while they
#: have named another meanwhile (a new user's trial read 10 s of stale data so).
RECHECK_AFTER = 0.5


def _replaced(address: tuple[str, int], named: tuple[Any, ...]) -> NotPrimary | None:
    """The error of a connection to ``address`` when the Sentinels now name ``named``."""
    if (str(named[0]), int(named[1])) == (str(address[0]), int(address[1])):
        return None
    host, port = address
    return NotPrimary(
        f"{host}:{port} answered as the primary after a slow connection, but the Sentinels "
        f"now name {named[0]}:{named[1]} (it was replaced while it did not answer)"
    )


def _primary_connection(base: type[Any], asyncio_: bool) -> type[Any]:
    """``base`` (redis-py's Sentinel-managed connection, sync or asyncio) whose new
    connections to the primary check it answers as one (``ROLE``, one round trip per new
    connection): a Sentinel that has not yet heard of a failover names the old primary,
    which, woken up from a stall and demoted, serves reads from a stale (or, while it
    resynchronises, partly indexed) copy. A connection that took longer than
    :data:`RECHECK_AFTER` (the node may have been stopped meanwhile, and woken up still a
    primary) also asks the Sentinels again whether they still name it. Refused: a
    :class:`rediscache.guard.NotPrimary`, so the step is sent again after a pause
    (rediscache.guard.Failover) once the Sentinels agree."""

    if asyncio_:

        class AsyncPrimaryConnection(base):  # type: ignore[misc]
            async def connect_to(self, address: tuple[str, int]) -> None:
                began = time.monotonic()
                await super().connect_to(address)
                if self.connection_pool.is_master:
                    await self.send_command("ROLE")
                    try:
                        reply = await self.read_response()
                    except redis.ResponseError as exc:
                        reply = exc
                    error = _not_primary(reply, address)
                    if error is None and time.monotonic() - began > RECHECK_AFTER:
                        named = tuple(await self.connection_pool.get_master_address())
                        error = _replaced(address, named)
                    if error is not None:
                        await self.disconnect()
                        raise error

        return AsyncPrimaryConnection

    class PrimaryConnection(base):  # type: ignore[misc]
        def connect_to(self, address: tuple[str, int]) -> None:
            began = time.monotonic()
            super().connect_to(address)
            if self.connection_pool.is_master:
                self.send_command("ROLE")
                try:
                    reply = self.read_response()
                except redis.ResponseError as exc:
                    reply = exc
                error = _not_primary(reply, address)
                if error is None and time.monotonic() - began > RECHECK_AFTER:
                    error = _replaced(address, tuple(self.connection_pool.get_master_address()))
                if error is not None:
                    self.disconnect()
                    raise error

    return PrimaryConnection


def _primary_connections() -> tuple[type[Any], type[Any]]:
    import redis.asyncio.sentinel
    import redis.sentinel

    return (
        _primary_connection(redis.sentinel.SentinelManagedConnection, False),
        _primary_connection(redis.asyncio.sentinel.SentinelManagedConnection, True),
    )


#: The connection classes of the hub's Sentinel clients (sync, asyncio): see
#: _primary_connection.
PRIMARY_CONNECTIONS = _primary_connections()


def primary_connection_class(module: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """The ``connection_class`` option of a ``master_for`` client made by the hub (``{}``
    over TLS, redis-py's own SSL class then, or when the caller's options name a class)."""
    if options.get("ssl") or "connection_class" in options:
        return {}
    return {"connection_class": PRIMARY_CONNECTIONS[module is not redis]}


def _sentinel_client(plan: ConnectPlan, module: Any, retry: Any) -> tuple[Any, bool, str]:
    """The client of the primary the Sentinels of ``plan.url`` name (redis-py's
    ``Sentinel.master_for``; ``module``: ``redis`` or ``redis.asyncio``): each new
    connection asks them where the primary is. No I/O.

    Raises:
        InvalidInputError: a bad URL or redis-py option.
    """
    import redis.asyncio.sentinel
    import redis.sentinel

    assert plan.url is not None
    sentinels, service, node, watchers = sentinel_parts(plan.url)
    options = {**node, **plan.redis_kwargs}
    options.pop("timeout", None)  # a blocking pool's; redis-py's Sentinel pool does not wait
    kind = redis.sentinel.Sentinel if module is redis else redis.asyncio.sentinel.Sentinel
    # a dead Sentinel is skipped at once: redis-py's default retries it with backoff, some
    # seconds per dead Sentinel on every new connection (past failover_wait, and in connect)
    watchers = {**watchers, "retry": retry}
    try:
        manager = kind(sentinels, sentinel_kwargs=watchers)
        client = manager.master_for(
            service,
            protocol=2,
            retry=retry,
            max_connections=MAX_CONNECTIONS,
            **primary_connection_class(module, options),
            **options,
        )
        client.connection_pool.connection_class(**client.connection_pool.connection_kwargs)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"invalid option for {redact(plan.url)!r}: {exc}") from exc
    where = ", ".join(f"{h}:{p}" for h, p in sentinels)
    return client, True, f"the primary of {service!r} (Sentinels at {where})"


def replica_client(plan: ConnectPlan, primary: Any, module: Any) -> Any:
    """A client of the replicas of ``primary``'s service (``Sentinel.slave_for``, made like
    the primary's client) when ``plan`` asks to read from replicas, else None. No I/O."""
    if not plan.read_from_replicas or plan.url is None:
        return None
    _, service, node, _ = sentinel_parts(plan.url)
    options = {**node, **plan.redis_kwargs}
    options.pop("timeout", None)
    retry = no_retry() if module is redis else redis.asyncio.retry.Retry(NoBackoff(), 0)
    manager = primary.connection_pool.sentinel_manager
    return manager.slave_for(
        service, protocol=2, retry=retry, max_connections=MAX_CONNECTIONS, **options
    )


def socket_timeout(client: Any) -> float | None:
    """The socket timeout (seconds) of ``client``'s connections: the pool's setting, else
    the connection class's default (redis-py 8: 5 s; None: no timeout)."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", {})
    if "socket_timeout" in kwargs:
        value = kwargs["socket_timeout"]
    else:
        value = None
        for kind in getattr(getattr(pool, "connection_class", None), "__mro__", ()):
            try:  # the first class of the chain that names it (a Sentinel's passes **kwargs)
                param = inspect.signature(kind.__init__).parameters.get("socket_timeout")
            except (TypeError, ValueError):
                continue
            if param is not None:
                value = None if param.default is inspect.Parameter.empty else param.default
                break
    return float(value) if isinstance(value, int | float) else None


def close_sentinels(client: Any) -> list[Any]:
    """The Sentinel clients behind ``client`` (a :func:`watched_by_sentinels` client), to be
    closed with it."""
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    return list(getattr(manager, "sentinels", []))


_registry = attrgetter("_registry")
_access = attrgetter("_access")


class HubSurface:
    """The public surface of a hub, declared once for :class:`Hub` and
    :class:`rediscache.asyncio.AsyncHub` (the registry's flows are documented in
    :class:`rediscache.registry.Registry`)."""

    _driver: Any  # the subclass's driver, set before this class's __init__

    def __init__(
        self,
        client: Any,
        *,
        owns_client: bool,
        server: ServerInfo | None,
        nodes: ClusterNodes | None = None,
    ) -> None:
        self.client = client
        self.server = server
        self._owns = owns_client
        self._nodes = nodes
        # counts connections from the first command: see index_wait
        if nodes is not None:  # counted per node
            self._context = HubContext(ConnectCounter(), INDEX_WAIT, nodes.counter_for)
        else:
            self._context = HubContext(count_connects(client), INDEX_WAIT)
        self._registry = Registry(client, self._context)
        self._access = self._registry.access

    @property
    def failover_wait(self) -> float:
        """Seconds a step that meets no primary waits for one (see :mod:`rediscache.guard`:
        :data:`~rediscache.guard.FAILOVER_WAIT`, 30, on a hub over Sentinels or over a
        cluster whose primaries have replicas; 0, no wait, elsewhere). Settable on those
        hubs (0 turns the wait off).

        Raises:
            InvalidInputError: set on a hub whose server does not fail over by itself, or
                not a number of seconds from 0 to 3600.
        """
        return float(getattr(self._driver, "failover_wait", 0.0))

    @failover_wait.setter
    def failover_wait(self, seconds: float) -> None:
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not (0 <= seconds <= 3600)
        ):
            raise InvalidInputError(f"failover_wait must be 0 to 3600 seconds, got {seconds!r}")
        if not hasattr(self._driver, "failover_wait"):
            raise InvalidInputError(
                "failover_wait applies to hubs over Sentinels (redis+sentinel://) or a "
                "cluster; this hub's server does not fail over by itself"
            )
        self._driver.failover_wait = float(seconds)

    @property
    def durability(self) -> Durability | None:
        """What every write of this hub waits for before it returns: None (the default,
        Redis's asynchronous replication: a failover may lose the last writes) or a
        :class:`~rediscache.durability.Durability` (``WAIT``/``WAITAOF`` on the writing
        connection; a write that reached fewer replicas in time raises
        :class:`DurabilityError`). Settable; see :mod:`rediscache.durability` for what
        it covers and docs/availability.md for what it costs.

        Raises:
            InvalidInputError: set to something else than a Durability or None, or to a
                timeout not below the connections' ``socket_timeout``.
        """
        return self._driver.durability  # type: ignore[no-any-return]

    @durability.setter
    def durability(self, value: Durability | None) -> None:
        if value is not None and not isinstance(value, Durability):
            raise InvalidInputError(
                f"durability must be a rediscache.Durability or None, got {value!r}"
            )
        limit = socket_timeout(self.node_client())
        if value is not None and isinstance(limit, int | float) and value.timeout >= limit:
            raise InvalidInputError(
                f"Durability.timeout ({value.timeout:g} s) must be below the connections' "
                f"socket_timeout ({limit:g} s): the reply of a write waiting for its replicas "
                "would time out first and leave its outcome unknown; give a shorter timeout "
                "or connect with a longer socket_timeout="
            )
        self._driver.durability = value

    @property
    def index_wait(self) -> float:
        """Seconds a search waits for its space's index to be complete before raising
        IndexBuildingError (see :data:`INDEX_WAIT`). Settable."""
        return self._context.index_wait

    @index_wait.setter
    def index_wait(self, seconds: float) -> None:
        self._context.index_wait = seconds

    def __repr__(self) -> str:
        where = address(self.client)
        kind = type(self).__name__
        if self.server is not None:
            return f"{kind}(embedded server in {self.server.data_dir}, {where})"
        if self._nodes is not None:
            host, port = self._nodes.default
            return (
                f"{kind}(Redis Cluster at {host}:{port}, {len(self._nodes.primaries())} primaries)"
            )
        return f"{kind}(Redis at {where}, db {database(self.client)})"

    def node_client(self, space: str | None = None) -> Any:
        """The plain redis-py client (``redis.Redis``, or ``redis.asyncio.Redis`` for an
        AsyncHub) of the server that holds space ``space``: on one server the hub's own
        client; on a cluster the client of the primary owning the space's slot (as last
        known), or with None of the first primary. For commands that concern that node
        (``FT.INFO``, ``MEMORY USAGE``, ``CLIENT LIST``). No I/O; the hub owns the client.

        ``space`` may name a partition of a partitioned space (``items#0``).

        Raises:
            InvalidInputError: ``space`` is not a valid space name.
        """
        if self._nodes is None:
            if space is not None:
                SpaceKeys.for_space(space)  # checks the name (a partition's too)
            return self.client
        if space is None:
            return self._nodes.client(self._nodes.default)
        return self._nodes.client(self._nodes.address(SpaceKeys.for_space(space).config))

    def metrics(self, *, reset: bool = False) -> dict[str, OpStats]:
        """Per-operation counters and latency (calls, errors, hits, misses, p50/p99/mean in
        microseconds) of every space opened through this hub; no round trip. ``reset``
        starts new counters. See :mod:`rediscache.metrics`."""
        return self._context.metrics.snapshot(reset=reset)

    spaces = Op(Registry.spaces, _registry)
    drop_space = Op(Registry.drop_space, _registry)
    server_versions = Op(Registry.server_versions, _registry)
    server_stats = Op(Registry.server_stats, _registry)
    grant = Op(Access.grant, _access)
    revoke = Op(Access.revoke, _access)
    passwd = Op(Access.passwd, _access)
    users = Op(Access.users, _access)


def failover_wait_of(nodes: ClusterNodes) -> float:
    """The default failover wait of a hub over the cluster of ``nodes``: FAILOVER_WAIT when
    its primaries have replicas (one takes over a dead primary), else 0 (a dead shard stays
    down until someone restarts it: calls fail at once)."""
    return FAILOVER_WAIT if len(nodes.everyone()) > len(nodes.primaries()) else 0.0


def _space_of(hub: Hub, found: Found | PartsFound) -> Space | PartitionedSpace:
    if len(found) == 3:
        return PartitionedSpace(hub, found[0], found[2])
    return Space(hub, found[0], found[1])


class Hub(SyncFacade, HubSurface):
    """A connection to Redis and the spaces stored in it. Create with :func:`connect`.

    Use as a context manager (or call :meth:`close`) to release the connection.
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
        # Connections are kept between calls only from a pool the hub owns (it goes when
        # the hub goes): a hub on a client passed in takes one from that pool per call, so
        # dropping such a hub without close() leaves the client's pool whole. The node
        # clients of a cluster (nodes) are the hub's own, so is ``replicas`` (a client of
        # the primary's replicas, read_from_replicas).
        self._replicas = replicas
        if nodes is not None:
            self._driver = ClusterDriver(nodes, failover_wait=failover_wait_of(nodes))
        elif replicas is not None:
            self._driver = ReplicaReadingDriver(client, replicas, keep=owns_client)
        elif watched_by_sentinels(client):
            self._driver = FailoverDriver(client, keep=owns_client)
        else:
            self._driver = SyncDriver(client, keep=owns_client)
        super().__init__(client, owns_client=owns_client, server=server, nodes=nodes)

    def close(self) -> None:
        """Close the connection if the hub created it (clients passed in stay open). Background
        work it started (garbage collection) stops after its current step, at most 2 s, and
        releases its lease; the next collection resumes it."""
        self._driver.close()  # the connections it kept go back to the pool
        if self._replicas is not None:
            self._replicas.close()
        if self._owns:
            self.client.close()
            for watcher in close_sentinels(self.client):
                watcher.close()
        if self._nodes is not None:
            for node in self._nodes.made():
                node.close()

    def __enter__(self) -> Hub:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    create_space = sync_op(
        "create_space",
        Registry.create_space,
        _registry,
        wrap=_space_of,
        returns="Space | PartitionedSpace",
    )
    space = sync_op(
        "space", Registry.space, _registry, wrap=_space_of, returns="Space | PartitionedSpace"
    )


def connect_as(hub: Hub, user: str, password: str) -> Hub:
    """A new hub on ``hub``'s server (same address, transport and options, TLS included)
    logged in as the Redis ACL ``user`` (see :meth:`Hub.grant`): what that user's service
    sees. The caller closes it.

    Raises:
        InvalidInputError: ``user`` or ``password`` is not a string.
        AuthenticationFailedError: the server refused the user or password.
    """
    if not isinstance(user, str) or not user or not isinstance(password, str):
        raise InvalidInputError("connect_as takes a hub, a user name and its password")
    pool = hub.node_client().connection_pool
    kwargs = {**pool.connection_kwargs, "username": user, "password": password}
    kwargs.pop("redis_connect_func", None)
    if watched_by_sentinels(hub.client):  # a client of the same Sentinels' primary
        kwargs.pop("connection_pool", None)
        client = pool.sentinel_manager.master_for(
            pool.service_name, connection_class=pool.connection_class, **kwargs
        )
    else:
        client = redis.Redis.from_pool(
            redis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
        )
    other = Hub(client, owns_client=True, server=hub.server)
    try:
        where = f"Redis at {address(client)} as {user!r}"
        other._driver.run(verify(other._registry, where, client))
        return _on_cluster(other, ConnectPlan(client=client), where)
    except BaseException:
        other.close()
        raise
