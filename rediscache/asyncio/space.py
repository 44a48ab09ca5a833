"""The asyncio space: :class:`AsyncSpace` and its round trips (see :mod:`rediscache.asyncio`)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import random
import time
from collections.abc import Awaitable, Callable, Collection, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import numpy.typing as npt
import redis
import redis.asyncio

from .. import ftsearch, query, scripts
from ..caching import (
    LOCK_SECONDS,
    Compute,
    ComputeFn,
    Effect,
    Read,
    Send,
    Sleep,
    Store,
    check_compute,
)
from ..codec import check_keys
from ..errors import InvalidInputError, ServerError, StaleStateError, reply_error
from ..guard import public
from ..keys import GenKeys
from ..metrics import Metrics
from ..operations import Averaged, Planned
from ..reader import ATTEMPTS, STALE_SECONDS, Hit
from ..space import INSTRUMENTED, VectorsUpdated, chunk_failed, row_bytes, vectors_updated
from ..state import STATE_FIELD, SpaceState
from ..wire import fetch_commands, get_commands, vector_rows

if TYPE_CHECKING:
    from ..space import Space, SpaceConfig
    from .hub import AsyncHub

_hiredis: Any
try:  # installed with redis[hiredis]; the fallback reads reply by reply
    import hiredis as _hiredis
except ImportError:  # pragma: no cover
    _hiredis = None


R = TypeVar("R")
T = TypeVar("T")
X = TypeVar("X")


__all__ = ["AsyncSpace", "roundtrip_async"]

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
    """:func:`rediscache.wire.roundtrip` for an asyncio client: send ``commands`` in one
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


async def _drive(flow: Generator[X, Any, T], perform: Callable[[X], Awaitable[Any]]) -> T:
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
        # generations whose index is known complete, shared by the hub's objects of the space
        self._index = hub._index_readiness(space.name)
        self._ready = self._index.ready

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
            if isinstance(replies[-1], Exception):  # BUSY, LOADING: alive, not dropped
                raise reply_error(str(replies[-1]), f"reading {self._where()}", call=False)
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
        """Run a plan of the sync VectorOps: its scripts with ``await``, then its finish."""
        build = plan.script
        if build is None:
            return plan.finish([])

        async def run(state: SpaceState, gen: GenKeys) -> list[R]:
            return [await scripts.call_async(self._client, c) for c in build(state, gen)]

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
        key = check_keys([key], "key")[0]
        ttl_ms = self.sync._ttl_ms(ttl)
        key_list, rows = self.sync._prepare(
            [key], self.codec.as_vector(vector)[None, :], [metadata]
        )
        await self._write_chunks(key_list, rows, ttl_ms, None, "put")

    async def put_many(
        self,
        keys: Sequence[str],
        vectors: Any,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        ttl: float | None = None,
    ) -> int:
        """:meth:`rediscache.Space.put_many`: store many embeddings; returns how many were
        written. One round trip per chunk (:class:`rediscache.space.WritePacer` rows), each
        chunk atomic; checked before sending.

        Raises:
            InvalidInputError: bad keys, vectors or metadata (nothing written).
            ServerError: Redis failed mid-way; the message says which rows were stored.
        """
        ttl_ms = self.sync._ttl_ms(ttl)
        key_list, rows = self.sync._prepare(keys, vectors, metadata)
        await self._write_chunks(key_list, rows, ttl_ms, None, "put_many")
        return len(key_list)

    async def update_vectors(
        self,
        keys: Sequence[str],
        vectors: Any,
        *,
        missing: str = "create",
        ttl: float | None = None,
    ) -> VectorsUpdated:
        """:meth:`rediscache.Space.update_vectors`: replace the vectors of ``keys``, keeping
        their metadata; ``missing`` (``"create"``, ``"skip"``, ``"raise"``) decides for keys
        without a record. One round trip per chunk, each chunk atomic; checked before sending.

        Raises:
            InvalidInputError: bad keys, vectors, ``missing`` or ttl (nothing written).
            KeyNotFoundError: ``missing="raise"`` and a key has no record (its chunk and the
                later ones not written).
            ServerError: Redis failed mid-way; the message says which rows were stored.
        """
        key_list, rows, ttl_ms = self.sync._update_vectors_plan(keys, vectors, missing, ttl)
        created, skipped = await self._write_chunks(
            key_list, rows, ttl_ms, missing, "update_vectors"
        )
        return vectors_updated(key_list, created, skipped)

    async def _write_chunks(
        self,
        key_list: list[str],
        rows: list[tuple[list[bytes | str], list[str]]],
        ttl_ms: int | None,
        missing: str | None,
        what: str,
    ) -> tuple[int, list[int]]:
        """:meth:`rediscache.Space._write_chunks` on the asyncio client."""
        n = len(key_list)
        created = 0
        skipped: list[int] = []
        for start, end in self.sync._pacer.spans(n, row_bytes(rows)):
            names = key_list[start:end]
            chunk = rows[start:end]

            async def write(
                state: SpaceState, gen: GenKeys, names: list[str] = names, chunk: Any = chunk
            ) -> scripts.Written:
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
                        missing=missing,
                    ),
                )

            try:
                done = await self._writing(write)
            except (redis.RedisError, ServerError) as exc:
                raise chunk_failed(self.name, exc, start, end, n, what) from exc
            created += done.changed
            skipped += [start + i for i in done.skipped]
        return created, skipped

    async def delete(self, *keys: str) -> int:
        """:meth:`rediscache.Space.delete`: delete embeddings by key; returns how many
        existed. One round trip, atomic."""
        if not keys:
            return 0
        names = check_keys(keys)

        async def delete(state: SpaceState, gen: GenKeys) -> int:
            done = await scripts.call_async(
                self._client,
                scripts.write_call(
                    self.keys.config,
                    gen.docs(names),
                    state=state.raw,
                    count_field=gen.count_field,
                    rows=None,
                    names=names,
                    ttl_ms=None,
                ),
            )
            return done.changed

        return int(await self._writing(delete))

    # ------------------------------------------------------------ reading

    async def get(self, key: str, *, refresh_ttl: bool | float = False) -> npt.NDArray[Any] | None:
        """:meth:`rediscache.Space.get`: the vector stored under ``key``, or None. One round
        trip (with the state check)."""
        key = check_keys([key], "key")[0]
        ms = self.sync._refresh_ms(refresh_ttl)
        replies = await self._read(lambda gen: get_commands(gen, key, ms))
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply_error(str(reply), f"get in {self._where()}")
        raw = replies[0]
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
            for r in replies:
                if isinstance(r, Exception):
                    raise reply_error(str(r), f"get_many in {self._where()}")
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
        return (await self._searched(plan))[0]

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
        return await self._searched(plan)

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
        return (await self._searched(plan))[0]

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
            await self.get(check_keys([key], "key")[0]),
            k,
            filter=filter,
            ef=ef,
            with_vectors=with_vectors,
            with_metadata=with_metadata,
        )
        return (await self._searched(plan))[0]

    async def _searched(self, plan: ftsearch.SearchPlan) -> list[list[Hit]]:
        """Run ``plan``'s rounds (see Reader._searched), each one round trip."""
        rounds = ftsearch.search_rounds(plan, self.keys.prefix)
        return self.sync._hits(plan, await _drive(rounds, self._search_round))

    async def _search_round(self, rnd: ftsearch.SearchRound) -> list[Any]:
        """One round of a search of the live space (see Reader._search_round)."""
        commands: list[tuple[Any, ...]] = [("EXISTS", *rnd.purge)] if rnd.purge else []
        commands += [("FT.SEARCH", self.keys.index, *args) for args in rnd.queries]
        for _ in range(2):
            gen = self._gen
            if gen.gen not in self._ready or self._index.seen != self.hub._connects.count:
                await self._await_index(gen)
            replies = await self._roundtrip(commands)
            if self._index.seen == self.hub._connects.count:
                break
            # a new connection: the server may be rebuilding the index (Reader._search_round)
        replies = replies[1:] if rnd.purge else replies
        for reply in replies:
            if isinstance(reply, Exception):
                raise self.sync._search_error(reply)
        return replies

    async def _await_index(self, gen: GenKeys) -> None:
        """Wait until the index of ``gen`` is complete (see Versioned._await_index), at
        most ``hub.sync.index_wait`` seconds, checking on the sync twin in a thread."""
        seen = self.hub._connects.count
        if seen != self._index.seen:
            self._ready.clear()
            self._index.seen = seen
        wait = self.hub.sync.index_wait
        for _ in range(ATTEMPTS):  # a rollback may replace gen meanwhile: check the new one
            if await asyncio.to_thread(self.sync._ensure_searchable, gen, wait, self._ready, False):
                return
            await self._refresh()
            gen = self._gen

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
        return await _drive(flow, functools.partial(self._perform_effect, check_compute(compute)))

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
        setattr(AsyncSpace, _op, public(_op, getattr(AsyncSpace, _op), _async_metrics))
