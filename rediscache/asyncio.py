"""asyncio twins of the hub and a space: :class:`AsyncHub` and :class:`AsyncSpace`.

    >>> from rediscache import connect_async
    >>> hub = await connect_async()                  # or connect_async(url) / (client=r)
    >>> async with hub:
    ...     items = await hub.space("items")
    ...     await items.put_many(keys, vectors, metadata)
    ...     hits = await items.search(query_vector, k=10, filter={"genre": "drama"})

The data plane has the sync names, arguments, results, errors and round trips: ``put``,
``put_many``, ``delete``, ``get``, ``get_many``, ``search``, ``search_many``, ``within``,
``similar``, ``average``, ``combine``, ``update_mean`` and ``get_or_compute`` (whose
``compute`` may be an async function). Every method's docstring is that of the sync
:class:`rediscache.Space` method: each call here is ``await``-ed instead.

How the two share one implementation (this module is a shell around the sync code's pure
parts, with ``await`` where the sync code does I/O):

* Validation, command building and reply parsing are the sync code's: the plans of
  :class:`rediscache.operations.VectorOps` (one script call plus the arithmetic around it),
  the search plans and hit parsing of :class:`rediscache.reader.Reader`, the script wrappers
  of :mod:`rediscache.scripts` (run here with :func:`rediscache.scripts.call_async`), the
  checks and row encoding of :meth:`rediscache.Space._prepare`, and the whole
  ``get_or_compute`` algorithm (:mod:`rediscache.caching` writes it as a flow of effects,
  performed here with ``await``). Each :class:`AsyncSpace` holds the sync :class:`Space` of
  the same space (:attr:`AsyncSpace.sync`) for these.
* Reads check the space's state in the same round trip and retry when a snapshot or rollback
  changed it, like the sync reads; writes go through ``write.lua`` with the state.
* The control plane (:meth:`AsyncHub.create_space`, ``drop_space``, ``space``, ``spaces``)
  and the one-off copy of a live generation that a version shares (the first write after a
  snapshot or rollback) run the sync implementation in a worker thread
  (``asyncio.to_thread``) on a sync twin of the client, opened with the same connection
  settings: they are rare, and this keeps a single implementation of them. Everything else
  a space offers (versions, ``info``, ``len``, ``iter_batches``) is there the same way:
  ``await asyncio.to_thread(space.sync.snapshot, "v1")``.

Async calls are counted in ``AsyncHub.metrics()`` (the same counters as the sync twin's
``hub.metrics()``). Not covered here: the in-process hot cache (sync spaces only).

Round trips: reads and writes send their commands in one write and parse the whole reply
stream with hiredis (:func:`roundtrip_async`), which keeps ``get_many(100)`` within ~1.2x of
the sync call (docs/serving.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import random
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import numpy.typing as npt
import redis
import redis.asyncio

from . import query, scripts
from .caching import (
    LOCK_SECONDS,
    Compute,
    ComputeFn,
    Effect,
    Flow,
    InFlight,
    Read,
    Send,
    Sleep,
    Store,
)
from .codec import check_keys
from .errors import InvalidInputError, ServerError, StaleStateError
from .hub import Hub, _check_client, _verify, connect
from .keys import GenKeys
from .metrics import Metrics, OpStats, instrument_async
from .operations import Averaged, Planned
from .reader import ATTEMPTS, CHUNK, STALE_SECONDS, Hit, fetch_commands, get_commands, vector_rows
from .space import INSTRUMENTED, chunk_failed
from .state import STATE_FIELD, SpaceState

if TYPE_CHECKING:
    from .server import ServerConfig, ServerInfo
    from .space import Space, SpaceConfig

_hiredis: Any
try:  # installed with redis[hiredis]; the fallback reads reply by reply
    import hiredis as _hiredis
except ImportError:  # pragma: no cover
    _hiredis = None


__all__ = ["AsyncHub", "AsyncSpace", "connect_async"]

R = TypeVar("R")
T = TypeVar("T")


# --------------------------------------------------------------------------- connecting


async def connect_async(
    url: str | None = None,
    *,
    client: redis.asyncio.Redis | None = None,
    data_dir: str | Path | None = None,
    server: ServerConfig | None = None,
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
        _check_client(client)
        sync_hub = Hub(_twin(client, to_async=False), owns_client=True)
        try:
            await asyncio.to_thread(_verify, sync_hub.client, "the given client's server")
        except BaseException:
            sync_hub.close()
            raise
        return AsyncHub(client, sync_hub=sync_hub)
    sync_hub = await asyncio.to_thread(
        connect, url, data_dir=data_dir, server=server, **redis_kwargs
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

    @property
    def server(self) -> ServerInfo | None:
        """The embedded server's details when connected to it, else None."""
        return self.sync.server

    # ------------------------------------------------------------ lifecycle

    def metrics(self, *, reset: bool = False) -> dict[str, OpStats]:
        """:meth:`rediscache.Hub.metrics` of this hub's async calls (and of its sync twin's)."""
        return self.sync.metrics(reset=reset)

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

    async def drop_space(self, name: str, *, missing_ok: bool = False) -> int:
        """:meth:`rediscache.Hub.drop_space` in a worker thread: same round trips, same
        (non-)atomicity, same errors. Returns the number of keys deleted."""
        return await asyncio.to_thread(self.sync.drop_space, name, missing_ok=missing_ok)

    def _inflight(self, prefix: str) -> InFlight[asyncio.Event]:
        """The in-flight table of get_or_compute for a space, shared by this hub's tasks
        (asyncio events belong to one event loop, as does the hub's client)."""
        table = self._flights.get(prefix)
        if table is None:
            table = self._flights[prefix] = InFlight(asyncio.Event)
        return table


# --------------------------------------------------------------------------- the space


async def _read_replies(stream: asyncio.StreamReader, n: int) -> list[Any]:
    """``n`` RESP2 replies parsed by hiredis from whatever the socket holds: one await per
    chunk of bytes instead of one per reply (per-reply awaits cost ~5 us each)."""
    assert _hiredis is not None
    parser = _hiredis.Reader()
    replies: list[Any] = []
    while len(replies) < n:
        data = await stream.read(1 << 16)
        if not data:
            raise redis.ConnectionError("connection closed while reading replies")
        parser.feed(data)
        while len(replies) < n:
            reply = parser.gets()
            if reply is False:
                break
            if isinstance(reply, _hiredis.ReplyError):
                reply = redis.ResponseError(str(reply))
            replies.append(reply)
    return replies


async def roundtrip_async(
    client: redis.asyncio.Redis, commands: list[tuple[Any, ...]]
) -> list[Any]:
    """:func:`rediscache.reader.roundtrip` for an asyncio client: send ``commands`` in one
    write and read every reply on one pooled connection, without redis.asyncio's pipeline
    bookkeeping (which made a get_many(100) cost 2.5x the sync one). Error replies are
    returned as exceptions; a broken connection is retried once (the commands are reads)."""
    pool = client.connection_pool
    for attempt in (1, 2):
        conn = await pool.get_connection()
        try:
            await conn.send_packed_command(conn.pack_commands(commands))
            stream = getattr(conn, "_reader", None)
            if _hiredis is not None and isinstance(stream, asyncio.StreamReader):
                return await _read_replies(stream, len(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await conn.read_response())
                except redis.ResponseError as exc:
                    replies.append(exc)
            return replies
        except (redis.ConnectionError, redis.TimeoutError):
            await conn.disconnect()
            if attempt == 2:
                raise
        except BaseException:
            await conn.disconnect()  # a reply may be half read (cancellation too)
            raise
        finally:
            await pool.release(conn)
    raise AssertionError("unreachable")


async def _drive(flow: Flow[T], perform: Callable[[Effect], Awaitable[Any]]) -> T:
    """:func:`rediscache.caching.drive` with ``await``: run ``flow``, performing its effects."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.send(reply) if error is None else flow.throw(error)
        except StopIteration as stop:
            result: T = stop.value
            return result
        reply, error = None, None
        try:
            reply = await perform(effect)
        except BaseException as exc:  # handed to the flow (cancellation too: it releases claims)
            error = exc


class AsyncSpace:
    """The asyncio twin of :class:`rediscache.Space`'s data plane. Get one from
    :meth:`AsyncHub.space` or :meth:`AsyncHub.create_space`.

    Use it from the event loop of its hub. Concurrent calls on one space are fine (each
    takes a connection of the pool for its round trip).
    """

    def __init__(self, hub: AsyncHub, space: Space) -> None:
        self.hub = hub
        #: The sync Space of the same space, on the hub's sync twin: the source of every plan
        #: and parser used here, and the way to its other methods (in a thread).
        self.sync = space
        self.config: SpaceConfig = space.config
        self.keys = space.keys
        self.codec = space.codec
        self._client = hub.client
        self._set_state(space._state)
        self._fork_lock = asyncio.Lock()

    @property
    def name(self) -> str:
        """The space's name."""
        return self.config.name

    @property
    def dim(self) -> int:
        """Number of floats per embedding."""
        return self.config.dim

    def __repr__(self) -> str:
        return f"AsyncSpace({self.name!r}, {self.config.describe()})"

    # ------------------------------------------------------------ state and round trips

    def _set_state(self, state: SpaceState) -> None:
        self._state = state
        self._gen = self.keys.gen(state.live)

    def _adopt(self, raw_state: Any) -> None:
        if not isinstance(raw_state, bytes):
            raise ServerError(f"space {self.name!r} was dropped")
        self._set_state(SpaceState.parse(raw_state))

    async def _refresh(self) -> None:
        self._adopt(await self._client.hget(self.keys.config, STATE_FIELD))

    async def _roundtrip(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """``commands`` in one round trip; error replies come back as exceptions."""
        return await roundtrip_async(self._client, commands)

    async def _checked(self, commands: list[tuple[Any, ...]], state: SpaceState) -> list[Any]:
        """``commands`` plus a trailing read of the state, in one round trip; StaleStateError
        when the state is not ``state`` any more (see Reader._checked)."""
        replies = await self._roundtrip([*commands, ("HGET", self.keys.config, STATE_FIELD)])
        if replies[-1] != state.raw.encode():
            self._adopt(replies[-1])
            raise StaleStateError(f"the state of space {self.name!r} changed")
        return replies[:-1]

    async def _attempts(self, call: Callable[[SpaceState, GenKeys], Awaitable[T]]) -> T:
        """``call`` with the cached state, retried with the new one while it is stale: the
        retry policy of Reader._attempts (ATTEMPTS tries and STALE_SECONDS at least)."""
        deadline = time.monotonic() + STALE_SECONDS
        attempt = 0
        while True:
            state = self._state
            try:
                return await call(state, self._gen)
            except StaleStateError:
                if self._state is state:  # not adopted from the reply: reload it
                    await self._refresh()
            attempt += 1
            if attempt >= ATTEMPTS and time.monotonic() > deadline:
                raise StaleStateError(
                    f"space {self.name!r} kept changing (snapshots, rollbacks) for "
                    f"{STALE_SECONDS:g} s; retry"
                )
            if attempt >= 2:
                await asyncio.sleep(random.uniform(0, min(0.0005 * 2**attempt, 0.01)))

    async def _read(self, make: Callable[[GenKeys], list[tuple[Any, ...]]]) -> list[Any]:
        """Replies of ``make(gen)``'s commands, checked against the state (retried)."""
        return await self._attempts(lambda state, gen: self._checked(make(gen), state))

    async def _writable_state(self) -> SpaceState:
        """The state once the live generation may be written in place. When a version shares
        it, the sync Space copies it for the version (in a worker thread, one copy at a time
        per AsyncSpace; other clients wait on the copy's lease as usual)."""
        if self._state.writable:
            return self._state
        async with self._fork_lock:
            if not self._state.writable:
                self.sync._set_state(self._state)
                self._set_state(await asyncio.to_thread(self.sync._writable_state))
        return self._state

    async def _writing(self, call: Callable[[SpaceState, GenKeys], Awaitable[T]]) -> T:
        """``call`` on a writable state, retried after a stale one (see Space._writing)."""
        for _ in range(64):
            state = await self._writable_state()
            try:
                return await call(state, self.keys.gen(state.live))
            except StaleStateError:
                await self._refresh()
        raise StaleStateError(f"space {self.name!r} kept changing during a write; retry")

    async def _perform(self, plan: Planned[R, T]) -> T:
        """Run a plan of the sync VectorOps: its script with ``await``, then its finish."""
        build = plan.script
        if build is None:
            return plan.finish(None)

        async def run(state: SpaceState, gen: GenKeys) -> R:
            return await scripts.call_async(self._client, build(state, gen))

        return plan.finish(await (self._writing(run) if plan.writes else self._attempts(run)))

    # ------------------------------------------------------------ writing

    async def put(
        self,
        key: str,
        vector: Any,
        metadata: Mapping[str, Any] | None = None,
        *,
        ttl: float | None = None,
    ) -> None:
        """:meth:`rediscache.Space.put`: store one embedding. One round trip, atomic."""
        await self.put_many([key], self.codec.as_vector(vector)[None, :], [metadata], ttl=ttl)

    async def put_many(
        self,
        keys: Sequence[str],
        vectors: Any,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        ttl: float | None = None,
    ) -> int:
        """:meth:`rediscache.Space.put_many`: store many embeddings; returns how many were
        written. One round trip per 1,000 rows, each chunk atomic; checked before sending.

        Raises:
            InvalidInputError: bad keys, vectors or metadata (nothing written).
            ServerError: Redis failed mid-way; the message says which rows were stored.
        """
        ttl_ms = self.sync._ttl_ms(ttl)
        key_list, rows = self.sync._prepare(keys, vectors, metadata)
        n = len(key_list)
        for start in range(0, n, CHUNK):
            end = min(start + CHUNK, n)
            names = key_list[start:end]
            chunk = rows[start:end]

            async def write(
                state: SpaceState, gen: GenKeys, names: list[str] = names, chunk: Any = chunk
            ) -> int:
                return await scripts.call_async(
                    self._client,
                    scripts.write_call(
                        self.keys.config,
                        gen.docs(names),
                        state=state.raw,
                        count_field=gen.count_field,
                        rows=chunk,
                        names=names,
                        ttl_ms=ttl_ms,
                    ),
                )

            try:
                await self._writing(write)
            except (redis.RedisError, ServerError) as exc:
                raise chunk_failed(self.name, exc, start, end, n) from exc
        return n

    async def delete(self, *keys: str) -> int:
        """:meth:`rediscache.Space.delete`: delete embeddings by key; returns how many
        existed. One round trip, atomic."""
        if not keys:
            return 0
        names = check_keys(keys)

        async def delete(state: SpaceState, gen: GenKeys) -> int:
            return await scripts.call_async(
                self._client,
                scripts.write_call(
                    self.keys.config,
                    gen.docs(names),
                    state=state.raw,
                    count_field=gen.count_field,
                    rows=None,
                    names=names,
                ),
            )

        return int(await self._writing(delete))

    # ------------------------------------------------------------ reading

    async def get(self, key: str, *, refresh_ttl: bool | float = False) -> npt.NDArray[Any] | None:
        """:meth:`rediscache.Space.get`: the vector stored under ``key``, or None. One round
        trip (with the state check)."""
        check_keys([key])
        ms = self.sync._refresh_ms(refresh_ttl)
        raw = (await self._read(lambda gen: get_commands(gen, key, ms)))[0]
        if isinstance(raw, Exception):
            raise ServerError(f"get in {self._where()} failed: {raw}")
        return None if raw is None else self.codec.decode(raw, key)

    async def get_many(
        self,
        keys: Sequence[str],
        *,
        missing: Literal["raise", "nan"] = "raise",
        refresh_ttl: bool | float = False,
    ) -> npt.NDArray[Any]:
        """:meth:`rediscache.Space.get_many`: vectors of ``keys`` as an (n, dim) array, in
        input order. One round trip; every row from one generation.

        Raises:
            KeyNotFoundError: missing keys with ``missing="raise"`` (the default).
        """
        key_list = check_keys(keys)
        if missing not in ("raise", "nan"):
            raise InvalidInputError("missing must be 'raise' or 'nan'")
        ms = self.sync._refresh_ms(refresh_ttl)
        raws: list[Any] = []
        if key_list:
            replies = await self._read(lambda gen: fetch_commands(gen, key_list, ms))
            raws = replies[: len(key_list)]
            for r in raws:
                if isinstance(r, Exception):
                    raise ServerError(f"get_many in {self._where()} failed: {r}")
        return vector_rows(self.codec, key_list, raws, missing, self._where())

    def _where(self) -> str:
        return f"space {self.name!r}"

    # ------------------------------------------------------------ search

    async def search(
        self,
        vector: Any,
        k: int = 10,
        *,
        filter: query.FilterLike = None,
        ef: int | None = None,
        with_vectors: bool = False,
        with_metadata: bool = True,
        offset: int = 0,
        exclude: Collection[str] | None = None,
    ) -> list[Hit]:
        """:meth:`rediscache.Space.search`: the ``k`` nearest embeddings to ``vector``,
        nearest first. One round trip (FT.SEARCH)."""
        plan = self.sync._search_plan(
            vector,
            k,
            filter=filter,
            ef=ef,
            with_vectors=with_vectors,
            with_metadata=with_metadata,
            offset=offset,
            exclude=exclude,
        )
        return self.sync._search_hits(plan, await self._ft_search(plan.args[0]))

    async def search_many(
        self,
        vectors: Any,
        k: int = 10,
        *,
        filter: query.FilterLike = None,
        ef: int | None = None,
        with_vectors: bool = False,
        with_metadata: bool = True,
    ) -> list[list[Hit]]:
        """:meth:`rediscache.Space.search_many`: :meth:`search` for each row of an (n, dim)
        array, in one pipelined round trip."""
        plan = self.sync._search_many_plan(
            vectors, k, filter=filter, ef=ef, with_vectors=with_vectors, with_metadata=with_metadata
        )
        replies = await self._roundtrip(
            [("FT.SEARCH", self.keys.index, *args) for args in plan.args]
        )
        return [self.sync._search_hits(plan, r) for r in replies]

    async def within(
        self,
        vector: Any,
        radius: float,
        *,
        filter: query.FilterLike = None,
        limit: int = 100,
        offset: int = 0,
        with_vectors: bool = False,
        with_metadata: bool = True,
    ) -> list[Hit]:
        """:meth:`rediscache.Space.within`: embeddings within distance ``radius`` of
        ``vector``, nearest first. One round trip (FT.SEARCH VECTOR_RANGE)."""
        plan = self.sync._within_plan(
            vector,
            radius,
            filter=filter,
            limit=limit,
            offset=offset,
            with_vectors=with_vectors,
            with_metadata=with_metadata,
        )
        return self.sync._search_hits(plan, await self._ft_search(plan.args[0]))

    async def similar(
        self,
        key: str,
        k: int = 10,
        *,
        filter: query.FilterLike = None,
        ef: int | None = None,
        with_vectors: bool = False,
        with_metadata: bool = True,
    ) -> list[Hit]:
        """:meth:`rediscache.Space.similar`: neighbours of the stored embedding ``key``,
        excluding itself. Two round trips.

        Raises:
            KeyNotFoundError: ``key`` is not stored.
        """
        plan = self.sync._similar_plan(
            key,
            await self.get(key),
            k,
            filter=filter,
            ef=ef,
            with_vectors=with_vectors,
            with_metadata=with_metadata,
        )
        return self.sync._search_hits(plan, await self._ft_search(plan.args[0]))

    async def _ft_search(self, args: list[Any]) -> Any:
        try:
            return await self._client.execute_command("FT.SEARCH", self.keys.index, *args)
        except redis.ResponseError as exc:
            raise self.sync._search_error(exc) from exc

    # ------------------------------------------------------------ vector operations

    @overload
    async def average(
        self,
        keys: Sequence[str],
        *,
        weights: Any = None,
        into: str | None = None,
        normalize: bool = False,
        missing: Literal["raise"] = "raise",
    ) -> npt.NDArray[Any]: ...

    @overload
    async def average(
        self,
        keys: Sequence[str],
        *,
        weights: Any = None,
        into: str | None = None,
        normalize: bool = False,
        missing: Literal["skip"],
    ) -> Averaged: ...

    async def average(
        self,
        keys: Sequence[str],
        *,
        weights: Any = None,
        into: str | None = None,
        normalize: bool = False,
        missing: Literal["raise", "skip"] = "raise",
    ) -> npt.NDArray[Any] | Averaged:
        """:meth:`rediscache.Space.average`: the (weighted) mean of the stored vectors of
        ``keys`` (an :class:`Averaged` with ``missing="skip"``). One round trip, atomic."""
        return await self._perform(self.sync._average_plan(keys, weights, into, normalize, missing))

    async def combine(
        self,
        add: Sequence[Any] = (),
        subtract: Sequence[Any] = (),
        *,
        weights: Any = None,
        into: str | None = None,
        normalize: bool = True,
    ) -> npt.NDArray[Any]:
        """:meth:`rediscache.Space.combine`: ``sum(add) - sum(subtract)`` of keys and vector
        literals. One round trip (none for literals only without ``into``), atomic."""
        return await self._perform(self.sync._combine_plan(add, subtract, weights, into, normalize))

    async def update_mean(
        self, key: str, items: Sequence[Any], *, alpha: float | None = None
    ) -> npt.NDArray[Any]:
        """:meth:`rediscache.Space.update_mean`: fold ``items`` into the running embedding
        ``key``; returns the new vector. One round trip, atomic."""
        return await self._perform(self.sync._update_mean_plan(key, items, alpha))

    # ------------------------------------------------------------ read-through cache

    async def get_or_compute(
        self,
        keys: Sequence[str],
        compute: ComputeFn,
        *,
        ttl: float | None = None,
        on_error: Literal["raise", "compute"] = "raise",
        lock_seconds: float = LOCK_SECONDS,
    ) -> npt.NDArray[Any]:
        """:meth:`rediscache.Space.get_or_compute`: vectors of ``keys``, the missing ones
        from ``compute(missing_keys)`` and stored. ``compute`` may be a plain function or an
        async one (its result is awaited); a plain one runs in the event loop, so wrap slow
        work in ``asyncio.to_thread``. Concurrent tasks of this hub missing the same key
        compute it once; other processes are kept out by the same Redis locks as the sync
        version. Round trips and errors as the sync method.
        """
        flow = self.sync._cache_flow(
            keys,
            ttl=ttl,
            on_error=on_error,
            lock_seconds=lock_seconds,
            inflight=self.hub._inflight(self.keys.prefix),
        )
        return await _drive(flow, functools.partial(self._perform_effect, compute))

    async def _perform_effect(self, compute: ComputeFn, effect: Effect) -> Any:
        """Perform one effect of a caching flow with ``await``."""
        if isinstance(effect, Read):
            return await self.get_many(effect.keys, missing="nan")
        if isinstance(effect, Store):
            return await self.put_many(effect.keys, effect.vectors, ttl=effect.ttl)
        if isinstance(effect, Send):
            pipe = self._client.pipeline(transaction=False)
            for command in effect.commands:
                pipe.execute_command(*command)
            return await pipe.execute()
        if isinstance(effect, Sleep):
            await asyncio.sleep(effect.seconds)
            return None
        if isinstance(effect, Compute):
            result = compute(effect.keys)
            return (await result) if inspect.isawaitable(result) else result
        for event in effect.events:  # WaitFlights
            if not event.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    timeout = max(0.0, effect.deadline - time.monotonic())
                    await asyncio.wait_for(event.wait(), timeout)
        return None


def _async_metrics(space: AsyncSpace) -> Metrics:
    return space.hub.sync._metrics


for _op in INSTRUMENTED:
    if hasattr(AsyncSpace, _op):
        setattr(AsyncSpace, _op, instrument_async(_async_metrics, _op, getattr(AsyncSpace, _op)))
