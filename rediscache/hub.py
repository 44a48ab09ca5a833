"""The hub: a connection to Redis (embedded or remote) and the registry of spaces."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import query
from .codec import DTYPES, check_flag, check_int, ttl_to_ms
from .errors import (
    ConnectionFailedError,
    InvalidInputError,
    SchemaMismatchError,
    SearchModuleMissingError,
    ServerError,
    ServerLoadingError,
    SpaceNotFoundError,
)
from .guard import address, public, redact, translate
from .keys import REGISTRY, SpaceKeys, validate_space_name
from .metrics import Metrics, OpStats
from .server import ServerConfig, ServerInfo, ensure_running, search_version
from .space import Space, SpaceConfig
from .state import STATE_FIELD, SpaceState
from .versions import create_index, unlink_matching
from .wire import IndexReadiness, count_connects

__all__ = ["Hub", "ServerStats", "connect"]

_METRICS = ("cosine", "l2", "ip")
_ALGORITHMS = ("hnsw", "flat")


def _check_client(client: object, kind: type[Any] = redis.Redis) -> None:
    if not isinstance(client, kind):
        raise InvalidInputError(
            f"client must be a {kind.__module__}.{kind.__name__}, got {type(client).__name__}"
        )
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("decode_responses"):
        raise InvalidInputError("pass a redis client with decode_responses=False")
    if str(kwargs.get("protocol", 2)) == "3":
        raise InvalidInputError("pass a redis client with protocol=2 (rediscache parses RESP2)")


def _verify(client: redis.Redis, where: str) -> None:
    """PING and check for the search module, with one clear error for each failure."""
    try:
        client.ping()
    except redis.BusyLoadingError as exc:  # a ConnectionError to redis-py, but alive
        raise ServerLoadingError(
            f"connecting to {where}: Redis is loading its data after a restart (LOADING); "
            "retry once it is ready"
        ) from exc
    except redis.AuthenticationError as exc:
        raise ConnectionFailedError(
            f"authentication to {where} failed: check the password (and user) in the URL"
        ) from exc
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            raise ConnectionFailedError(
                f"authentication to {where} failed: {exc}; put the password in the URL "
                "(redis://:PASSWORD@host:port)"
            ) from exc
        context = f"connecting to {where}"  # NOPERM, BUSY...
        error = translate(exc, context, writes=False, client=client)
        raise (error or ServerError(f"{context}: {exc}")) from exc
    except redis.ConnectionError as exc:
        raise ConnectionFailedError(
            f"cannot connect to {where}: {exc}; is the server running and the URL right?"
        ) from exc
    except redis.RedisError as exc:  # e.g. TLS settings the connection cannot use
        raise ConnectionFailedError(f"cannot connect to {where}: {exc}") from exc
    try:
        present = _has_search(client)
        if not present:
            version = client.info("server").get("redis_version", "?")
            raise SearchModuleMissingError(
                f"{where} (Redis {version}) has no search module: use Redis Stack / Redis >= 8 "
                "with the query engine, or the embedded server (rediscache.connect() with no URL)"
            )
    except (redis.RedisError, ConnectionError) as exc:
        error = translate(exc, f"connecting to {where}", writes=False, client=client)
        if error is None:
            raise
        raise error from exc


def _has_search(client: redis.Redis) -> bool:
    """Whether the server has the search module: MODULE LIST, or for an ACL user who may
    not run it, COMMAND INFO FT.SEARCH; True when neither is allowed (a missing module then
    shows as an unknown command at the first search)."""
    try:
        return search_version(client) is not None
    except redis.exceptions.NoPermissionError:
        pass
    try:
        reply = client.execute_command("COMMAND", "INFO", "FT.SEARCH")
    except redis.exceptions.NoPermissionError:
        return True
    # redis-py parses the reply into a dict keyed by command name (a list in older ones);
    # an unknown command has a nil entry
    entries = reply.values() if isinstance(reply, dict) else reply
    return any(entry for entry in entries)


def no_retry() -> Retry:
    """redis-py's retries turned off, for the clients rediscache creates: redis-py would send
    a command again after a lost connection or a timeout, writes too (a write applied twice);
    rediscache retries reads itself, within the bound of :mod:`rediscache.guard`."""
    return Retry(NoBackoff(), 0)


#: Default of :attr:`Hub.index_wait`, seconds. After a restart the search module rebuilds
#: every index in the background (about a minute for 20k 384-d HNSW vectors on a busy 2-core
#: machine, docs/serving.md) and meanwhile answers searches from what it has indexed: a
#: search waits for its index rather than silently missing hits.
INDEX_WAIT = 30.0

#: Dropping a space of at least this many keys rewrites the AOF (Hub.drop_space).
COMPACT_MIN_KEYS = 1_000

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


def connect(
    url: str | None = None,
    *,
    client: redis.Redis | None = None,
    data_dir: str | Path | None = None,
    server: ServerConfig | None = None,
    start_timeout: float | None = None,
    **redis_kwargs: Any,
) -> Hub:
    """Connect to a Redis with the search module and return a :class:`Hub`.

    * ``connect()``: the embedded local server (started first if it is not running; see
      :mod:`rediscache.server`). ``data_dir`` or ``server`` choose its data directory/config;
      ``start_timeout`` (seconds) overrides the config's wait for a server loading its data.
    * ``connect("redis://:pw@host:6379/0")`` (also ``rediss://`` and ``unix://``): any Redis;
      ``redis_kwargs`` go to ``redis.Redis.from_url``.
    * ``connect(client=r)``: an existing redis-py client (protocol 2, bytes replies); the hub
      never closes a client it did not create.

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

    Round trips: two (PING, MODULE LIST), plus the server start when needed.

    Raises:
        ConnectionFailedError: unreachable server or wrong password.
        ServerLoadingError: the server is still loading its data.
        SearchModuleMissingError: the server has no search module.
        EmbeddedServerError: the embedded server cannot start (see its subclasses).
    """
    info: ServerInfo | None = None
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
        _check_client(client)
        owns = False
        where = "the given client's server"
    elif url is not None:
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise InvalidInputError(
                f"unsupported URL {redact(str(url))!r}: use redis://, rediss:// or unix://"
            )
        try:
            client = redis.Redis.from_url(url, protocol=2, **{"retry": no_retry(), **redis_kwargs})
            pool = client.connection_pool
            pool.connection_class(**pool.connection_kwargs)  # no I/O: refuses unknown options
        except (ValueError, TypeError) as exc:  # a bad URL, or an unknown keyword argument
            raise InvalidInputError(
                f"invalid Redis URL or option for {redact(url)!r}: {redact(str(exc))}"
            ) from exc
        owns = True
        where = redact(url)
    else:
        config = server or ServerConfig()
        if data_dir is not None:
            if not isinstance(data_dir, str | Path):
                raise InvalidInputError(f"data_dir must be a path, got {type(data_dir).__name__}")
            config = dataclasses.replace(config, data_dir=Path(data_dir))
        if start_timeout is not None:
            config = dataclasses.replace(config, start_timeout=start_timeout)
        info = ensure_running(config)
        client = info.client(protocol=2, retry=no_retry())
        owns = True
        where = f"the embedded server in {info.data_dir}"
    count_connects(client)  # before the first command: see Hub.index_wait
    try:
        _verify(client, where)
    except BaseException:
        if owns:
            client.close()
        raise
    return Hub(client, owns_client=owns, server=info)


class Hub:
    """A connection to Redis and the spaces stored in it. Create with :func:`connect`.

    Use as a context manager (or call :meth:`close`) to release the connection.
    """

    def __init__(
        self, client: redis.Redis, *, owns_client: bool = False, server: ServerInfo | None = None
    ) -> None:
        self.client = client
        self.server = server
        self._owns = owns_client
        self._metrics = Metrics()
        #: Seconds a search waits for its space's index to be complete before raising
        #: IndexBuildingError (see :data:`INDEX_WAIT`). Settable.
        self.index_wait: float = INDEX_WAIT
        self._connects = count_connects(client)
        self._indexes: dict[str, IndexReadiness] = {}

    def __repr__(self) -> str:
        where = address(self.client)
        if self.server is not None:
            return f"Hub(embedded server in {self.server.data_dir}, {where})"
        db = self.client.connection_pool.connection_kwargs.get("db", 0)
        return f"Hub(Redis at {where}, db {db})"

    def metrics(self, *, reset: bool = False) -> dict[str, OpStats]:
        """Per-operation counters and latency (calls, errors, hits, misses, p50/p99/mean in
        microseconds) of every space opened through this hub; no round trip. ``reset``
        starts new counters. See :mod:`rediscache.metrics`."""
        return self._metrics.snapshot(reset=reset)

    # ------------------------------------------------------------ lifecycle

    def _index_readiness(self, name: str) -> IndexReadiness:
        """What this hub knows about the indexes of space ``name`` (shared by its objects)."""
        found = self._indexes.get(name)
        if found is None:
            found = self._indexes[name] = IndexReadiness()
        return found

    def close(self) -> None:
        """Close the connection if the hub created it (clients passed in stay open)."""
        if self._owns:
            self.client.close()

    def __enter__(self) -> Hub:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------ spaces

    def create_space(
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
    ) -> Space:
        """Create a space: an index over embeddings of ``dim`` floats, plus metadata ``fields``.

        ``ttl``: default seconds to live of the embeddings written (a cache; None: forever;
        each write may override it). ``expiring``: whether entries may expire at all (default:
        whether ``ttl`` is given); only an expiring space takes per-write ttls and
        ``refresh_ttl``, and its searches check every hit against expiry (docs/serving.md).

        ``fields`` maps metadata names to ``"tag"``, ``"numeric"`` or ``"text"`` (indexed for
        filters); other metadata is stored but not indexed. ``hnsw`` overrides ``M``,
        ``ef_construction`` and ``ef_runtime`` (defaults 16, 200, 100).

        Round trips: three or four (config read, FT.CREATE of generation 1's index, one
        transaction adding the live alias, config and registry entry). Atomic enough for
        concurrent creators: one wins, the others see the same schema (or an error).

        Raises:
            InvalidInputError: bad name, dim, metric, algorithm, dtype, fields or hnsw.
            SchemaMismatchError: the space exists with another schema (even with exist_ok),
                or it exists and ``exist_ok`` is False.
        """
        keys = SpaceKeys.for_space(name)
        config = _build_config(name, dim, metric, algorithm, dtype, fields, hnsw, ttl, expiring)
        found = self._read_config(keys)
        if found is None:
            state = SpaceState.initial()
            gen = keys.gen(state.live)
            try:
                create_index(self.client, config, gen)
            except redis.ResponseError as exc:
                if "already exists" not in str(exc).lower():
                    raise ServerError(f"creating the index of space {name!r}: {exc}") from exc
                found = self._wait_config(keys)
            else:
                pipe = self.client.pipeline(transaction=True)
                pipe.execute_command("FT.ALIASADD", keys.index, gen.index)
                pipe.hset(
                    keys.config,
                    mapping={
                        **config.to_hash(),
                        STATE_FIELD: state.raw,
                        gen.count_field: "0",
                        "next_gen": str(state.live),
                        "next_ver": "0",
                    },
                )
                pipe.sadd(REGISTRY, name)
                pipe.execute()
                return Space(self, config, state)
        if found is not None:
            existing, state = found
            if existing.schema() != config.schema():
                raise SchemaMismatchError(
                    f"space {name!r} exists with another schema ({existing.describe()}); "
                    f"asked for ({config.describe()}): drop it first or use another name"
                )
            if not exist_ok:
                raise SchemaMismatchError(
                    f"space {name!r} already exists; pass exist_ok=True to reuse it"
                )
            return Space(self, existing, state)
        raise ServerError(f"space {name!r}: index exists but its config never appeared")

    def _wait_config(self, keys: SpaceKeys) -> tuple[SpaceConfig, SpaceState] | None:
        # Another client created the index an instant ago; its config follows in ~1 RTT.
        for _ in range(50):
            cfg = self._read_config(keys)
            if cfg is not None:
                return cfg
            time.sleep(0.01)
        return None

    def _read_config(self, keys: SpaceKeys) -> tuple[SpaceConfig, SpaceState] | None:
        raw = self.client.hgetall(keys.config)
        if not raw:
            return None
        return SpaceConfig.from_hash(keys.name, raw), SpaceState.parse(
            raw.get(STATE_FIELD.encode())
        )

    def space(self, name: str) -> Space:
        """The existing space ``name``. One round trip (its config).

        Raises:
            SpaceNotFoundError: no such space.
        """
        keys = SpaceKeys.for_space(name)
        found = self._read_config(keys)
        if found is None:
            raise SpaceNotFoundError(
                f"space {name!r} does not exist; create it with create_space() "
                "or `rediscache space create`"
            )
        return Space(self, *found)

    def spaces(self) -> list[str]:
        """Names of all spaces, sorted. One round trip."""
        return sorted(m.decode() for m in self.client.smembers(REGISTRY))

    def drop_space(self, name: str, *, missing_ok: bool = False, compact: bool = True) -> int:
        """Delete the space ``name``: its versions, indexes and every key under its prefix.

        Returns the number of keys deleted. Round trips: one per index and one per 1,000
        keys (SCAN + UNLINK). Not atomic: readers may see a partly deleted space while it
        runs; the config and registry entry go first so the space disappears from listings
        at once.

        ``compact``: when the drop deleted at least :data:`COMPACT_MIN_KEYS` keys and the
        server keeps an append-only file, ask it to rewrite the file in the background
        (BGREWRITEAOF). Otherwise the next restart replays every write of the dropped space
        before serving (Redis's own rewrite policy waits for the file to double in size,
        which deletions never do); docs/serving.md has the measured difference.

        Raises:
            SpaceNotFoundError: the space does not exist and ``missing_ok`` is False.
        """
        keys = SpaceKeys.for_space(name)
        self._indexes.pop(name, None)
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(keys.config)
        pipe.srem(REGISTRY, name)
        existed = pipe.execute()[0]
        with contextlib.suppress(redis.ResponseError):  # no alias: nothing to delete
            self.client.execute_command("FT.ALIASDEL", keys.index)
        for index in self.client.execute_command("FT._LIST"):
            if index.decode().startswith(keys.prefix):
                try:
                    self.client.execute_command("FT.DROPINDEX", index)
                except redis.ResponseError as exc:
                    if "unknown index" not in str(exc).lower():
                        raise ServerError(
                            f"dropping index {index!r} of space {name!r}: {exc}"
                        ) from exc
                existed = 1
        if not existed and not missing_ok:
            raise SpaceNotFoundError(f"space {name!r} does not exist")
        deleted = unlink_matching(self.client, keys.all_scan_pattern())
        if compact and deleted >= COMPACT_MIN_KEYS:
            self._compact_aof()
        return deleted

    def _compact_aof(self) -> None:
        """Start a background rewrite of the server's AOF if it keeps one (one or two round
        trips; never waits for the rewrite). A rewrite already running, or a user not
        allowed to ask, leaves it to Redis's own policy."""
        try:
            if int(self.client.info("persistence").get("aof_enabled", 0)):
                self.client.execute_command("BGREWRITEAOF")
        except redis.ResponseError:
            pass  # already rewriting (it schedules another), or not permitted by ACL

    def server_versions(self) -> dict[str, str]:
        """Redis and search module versions of the connected server. Two round trips."""
        version = str(self.client.info("server").get("redis_version", "?"))
        return {"redis": version, "search": search_version(self.client) or "none"}

    def server_stats(self) -> ServerStats:
        """Versions, memory, keys and clients of the connected server. Three round trips
        (INFO, MODULE LIST, DBSIZE)."""
        info = self.client.info()
        return ServerStats(
            redis_version=str(info.get("redis_version", "?")),
            search_version=search_version(self.client) or "none",
            used_memory=int(info.get("used_memory", 0)),
            used_memory_peak=int(info.get("used_memory_peak", 0)),
            maxmemory=int(info.get("maxmemory", 0)),
            keys=int(self.client.dbsize()),
            connected_clients=int(info.get("connected_clients", 0)),
            uptime_seconds=int(info.get("uptime_in_seconds", 0)),
        )


@dataclasses.dataclass(frozen=True)
class ServerStats:
    """What :meth:`Hub.server_stats` reports (memory in bytes; maxmemory 0 = no limit)."""

    redis_version: str
    search_version: str
    used_memory: int
    used_memory_peak: int
    maxmemory: int
    keys: int
    connected_clients: int
    uptime_seconds: int


#: The public methods of a hub that talk to Redis (rediscache.guard).
HUB_CALLS = ("create_space", "space", "spaces", "drop_space", "server_versions", "server_stats")

for _op in HUB_CALLS:
    setattr(Hub, _op, public(_op, getattr(Hub, _op)))


def _build_config(
    name: str,
    dim: int,
    metric: str,
    algorithm: str,
    dtype: str,
    fields: Mapping[str, str] | None,
    hnsw: Mapping[str, int] | None,
    ttl: float | None = None,
    expiring: bool | None = None,
) -> SpaceConfig:
    validate_space_name(name)
    if ttl is not None and ttl_to_ms(ttl) == 0:
        raise InvalidInputError("ttl must be a positive number of seconds (or None: forever)")
    if expiring is None:
        expiring = ttl is not None
    elif not check_flag(expiring, "expiring") and ttl is not None:
        raise InvalidInputError("a space with a default ttl is expiring: drop expiring=False")
    dim = check_int(dim, "dim", high=32768)
    metric = str(metric).lower()
    if metric not in _METRICS:
        raise InvalidInputError(f"unknown metric {metric!r}: use one of {', '.join(_METRICS)}")
    algorithm = str(algorithm).lower()
    if algorithm not in _ALGORITHMS:
        raise InvalidInputError(
            f"unknown algorithm {algorithm!r}: use one of {', '.join(_ALGORITHMS)}"
        )
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise InvalidInputError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    checked_fields = query.validate_fields(fields)
    params = query.hnsw_params(hnsw) if algorithm == "hnsw" else {}
    if algorithm == "flat" and hnsw:
        raise InvalidInputError("hnsw parameters given for a flat space")
    return SpaceConfig(
        name=name,
        dim=dim,
        metric=metric,
        algorithm=algorithm,
        dtype=dtype,
        fields=checked_fields,
        hnsw=params,
        created_at=time.time(),
        ttl=None if ttl is None else float(ttl),
        expiring=bool(expiring),
    )
