"""The read API shared by a live space and a read-only view of one of its versions.

Both read one *generation* of the space (a set of documents with its own index; see
:mod:`rediscache.keys`). Key names are built from a state the client caches, so every read
also checks that state in the same round trip: in Lua for ``get`` (``gather.lua``), or with
an ``HGET`` of the state at the end of the pipeline for batch reads. When a snapshot,
rollback or copy changed the state, the read is retried with the new one, so a reader never
mixes two generations. Searches of the live space go through the index alias and need no
check.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
import redis

from . import ftsearch, query
from .codec import VectorCodec, check_keys, ttl_to_ms, unpack_metadata
from .errors import InvalidInputError, KeyNotFoundError, ServerError, StaleStateError
from .keys import META_FIELD, VECTOR_FIELD, GenKeys, SpaceKeys
from .state import STATE_FIELD, SpaceState
from .wire import fetch_commands, get_commands, roundtrip, vector_rows

if TYPE_CHECKING:
    from .hotcache import HotCache
    from .space import SpaceConfig

__all__ = ["CHUNK", "Hit", "Reader", "Record", "SearchPlan"]

#: Rows per pipeline in put_many / get_many / iter_batches.
CHUNK = 1000
#: A read whose state keeps changing is retried at least ATTEMPTS times and for at least
#: STALE_SECONDS before it raises StaleStateError.
ATTEMPTS = 10
STALE_SECONDS = 2.0

T = TypeVar("T")


class Hit(NamedTuple):
    """One search result: the embedding's key, its distance to the query, metadata, vector.

    A NamedTuple rather than a dataclass: searches build many of them and tuple creation is
    several times cheaper.
    """

    key: str
    distance: float
    metadata: dict[str, Any]
    vector: npt.NDArray[Any] | None = None


@dataclass(frozen=True)
class Record:
    """A stored embedding with its metadata (from ``get_record``)."""

    key: str
    vector: npt.NDArray[Any]
    metadata: dict[str, Any]


@functools.lru_cache(maxsize=256)
def _unfiltered_knn(
    k: int, ef: int | None, with_vectors: bool, with_metadata: bool, offset: int
) -> ftsearch.KnnQuery:
    # The common query shapes are prepared once (KnnQuery is immutable).
    return ftsearch.knn_query(
        k, ef=ef, with_vectors=with_vectors, with_metadata=with_metadata, offset=offset
    )


class SearchPlan(NamedTuple):
    """A search reduced to its ``FT.SEARCH`` arguments after the index name (one list per
    query) and what to keep of each reply: vectors or not, keys to drop, how many hits then."""

    args: list[list[Any]]
    with_vectors: bool
    exclude: frozenset[str]
    k: int


class Reader:
    """Reads of one generation of a space. Subclasses say which generation and index."""

    config: SpaceConfig
    keys: SpaceKeys
    codec: VectorCodec
    _client: redis.Redis

    # ------------------------------------------------------------ what to read

    def _target(self) -> tuple[SpaceState, GenKeys]:
        """The cached state and the generation this object reads (no round trip)."""
        raise NotImplementedError

    def _refresh(self) -> None:
        """Reload the state (and the generation read) from Redis."""
        raise NotImplementedError

    def _search_index(self, gen: GenKeys) -> str:
        """The index searches use: the live alias, or a version generation's own index."""
        raise NotImplementedError

    def __len__(self) -> int:
        """Number of embeddings in the generation read."""
        raise NotImplementedError

    #: The in-process hot cache of get / get_many (Space.enable_hot_cache), or None.
    _hot: HotCache | None = None

    #: Whether searches must check the state (a version view: its generation may move).
    _checked_search = False

    def _adopt(self, raw_state: bytes | None) -> None:
        """Take ``raw_state`` (read in the reply of a stale call) as the current state; a
        view reloads what it needs. Saves the reload's round trip on the retry."""
        self._refresh()

    def _attempts(self, call: Callable[[SpaceState, GenKeys], T]) -> T:
        """Run ``call`` with the cached state, retrying with the new state when it is stale.

        A retry needs no extra round trip when the stale reply carried the new state. Retries
        go on for :data:`STALE_SECONDS` (at least :data:`ATTEMPTS` times), with a short random
        pause from the third attempt on, so a call succeeds as soon as the state holds still
        for one round trip; only a storm of snapshots or rollbacks lasting that long makes it
        raise :class:`StaleStateError`.
        """
        deadline = time.monotonic() + STALE_SECONDS
        attempt = 0
        while True:
            state, gen = self._target()
            try:
                return call(state, gen)
            except StaleStateError:
                if self._target()[0] is state:  # not adopted from the reply: reload it
                    self._refresh()
            attempt += 1
            if attempt >= ATTEMPTS and time.monotonic() > deadline:
                raise StaleStateError(
                    f"space {self.keys.name!r} kept changing (snapshots, rollbacks) for "
                    f"{STALE_SECONDS:g} s; retry"
                )
            if attempt >= 2:
                time.sleep(random.uniform(0, min(0.0005 * 2**attempt, 0.01)))

    def _checked(self, commands: list[tuple[Any, ...]], state: SpaceState) -> list[Any]:
        """Send ``commands`` plus a trailing state read in one round trip; StaleStateError
        when the state is not ``state`` any more (then nothing in between switched, since
        states never repeat). Error replies come back as exceptions."""
        replies = roundtrip(self._client, [*commands, ("HGET", self.keys.config, STATE_FIELD)])
        if replies[-1] != state.raw.encode():
            self._adopt(replies[-1])
            raise StaleStateError(f"the state of space {self.keys.name!r} changed")
        return replies[:-1]

    def _read(self, make: Callable[[GenKeys], list[tuple[Any, ...]]]) -> list[Any]:
        """Replies of the commands ``make(gen)`` builds, checked against the state and
        retried with a fresh state when it changed. One round trip per attempt."""
        return self._read_at(make)[0]

    def _read_at(
        self, make: Callable[[GenKeys], list[tuple[Any, ...]]]
    ) -> tuple[list[Any], GenKeys]:
        """:meth:`_read`, and the generation the replies come from (the hot cache files
        them under its key names; the object's cached state may have moved on since)."""
        return self._attempts(lambda state, gen: (self._checked(make(gen), state), gen))

    # ------------------------------------------------------------ reading

    def get(self, key: str, *, refresh_ttl: bool | float = False) -> npt.NDArray[Any] | None:
        """The vector stored under ``key``, or None. One round trip (HGET, plus an HGET of
        the space's state in the same write: a rollback in between makes it read again).

        ``refresh_ttl``: also restart the embedding's time to live in the same round trip
        (True: the space's ``ttl``; a number: that many seconds).
        """
        check_keys([key])
        ms = self._refresh_ms(refresh_ttl)
        hot = self._hot if not ms else None
        seq = 0
        if hot is not None:
            cached = hot.get((self._target()[1].doc_prefix + key).encode())
            if cached is not None:
                return self.codec.decode(cached, key)
            seq = hot.seq()
        replies, gen = self._read_at(lambda gen: get_commands(gen, key, ms))
        raw = replies[0]
        if isinstance(raw, Exception):
            raise ServerError(f"get in {self._where()} failed: {raw}")
        if raw is None:
            return None
        vec = self.codec.decode(raw, key)
        if hot is not None:
            hot.insert(gen.doc(key).encode(), raw, seq)
        return vec

    def _refresh_ms(self, refresh_ttl: bool | float) -> int:
        """Milliseconds a read sets as the time to live (0: no refresh)."""
        if refresh_ttl is False:
            return 0
        if refresh_ttl is True:
            if not self.config.ttl:
                raise InvalidInputError(
                    f"refresh_ttl=True needs a space with a default ttl; {self._where()} has "
                    "none: pass the seconds instead"
                )
            refresh_ttl = self.config.ttl
        ms = ttl_to_ms(refresh_ttl, "refresh_ttl")
        if ms == 0:
            raise InvalidInputError("refresh_ttl must be True or a positive number of seconds")
        return ms

    def get_many(
        self,
        keys: Sequence[str],
        *,
        missing: Literal["raise", "nan"] = "raise",
        refresh_ttl: bool | float = False,
    ) -> npt.NDArray[Any]:
        """Vectors of ``keys`` as an (n, dim) array, in input order. One round trip.

        Missing keys: ``missing="raise"`` (default) raises :class:`KeyNotFoundError` naming
        them; ``missing="nan"`` returns NaN rows for them (test with ``np.isnan(out[:, 0])``).
        Every row comes from one generation (never half before and half after a rollback);
        rows written concurrently may be old or new. ``refresh_ttl`` as in :meth:`get`.
        """
        key_list = check_keys(keys)
        if missing not in ("raise", "nan"):
            raise InvalidInputError("missing must be 'raise' or 'nan'")
        ms = self._refresh_ms(refresh_ttl)
        hot = self._hot if not ms else None
        raws = self._fetch(key_list, ms)[0] if hot is None else self._fetch_hot(key_list, hot)
        return vector_rows(self.codec, key_list, raws, missing, self._where())

    def _where(self) -> str:
        return f"space {self.keys.name!r}"

    def _fetch_hot(self, key_list: list[str], hot: HotCache) -> list[bytes | None]:
        """Raw vectors from the hot cache, the misses in one round trip (then cached)."""
        prefix = self._target()[1].doc_prefix
        raws: list[bytes | None] = [hot.get((prefix + k).encode()) for k in key_list]
        todo = [i for i, r in enumerate(raws) if r is None]
        if not todo:
            return raws
        seq = hot.seq()
        fetched, gen = self._fetch([key_list[i] for i in todo])
        for i, raw in zip(todo, fetched):
            raws[i] = raw
            if raw is not None:
                hot.insert(gen.doc(key_list[i]).encode(), raw, seq)
        return raws

    def _fetch(self, key_list: list[str], ttl_ms: int = 0) -> tuple[list[bytes | None], GenKeys]:
        """Raw vectors of ``key_list`` (None: absent) and the generation they come from."""
        if not key_list:
            return [], self._target()[1]
        replies, gen = self._read_at(lambda gen: fetch_commands(gen, key_list, ttl_ms))
        replies = replies[: len(key_list)]
        for r in replies:
            if isinstance(r, Exception):
                raise ServerError(f"get_many in {self._where()} failed: {r}")
        return replies, gen

    def get_record(self, key: str) -> Record | None:
        """Vector and metadata of ``key``, or None. One round trip (HMGET)."""
        check_keys([key])

        reply = self._read(lambda gen: [("HMGET", gen.doc(key), VECTOR_FIELD, META_FIELD)])[0]
        if isinstance(reply, Exception):
            raise ServerError(f"get_record in {self._where()} failed: {reply}")
        raw, meta = reply
        if raw is None:
            return None
        return Record(key, self.codec.decode(raw, key), unpack_metadata(meta))

    # ------------------------------------------------------------ search

    def search(
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
        """The ``k`` nearest embeddings to ``vector``, nearest first. One round trip (FT.SEARCH).

        ``filter`` restricts the candidates (dict form or :mod:`rediscache.query` filter
        objects); ``ef`` overrides the HNSW ``EF_RUNTIME`` for this query; ``offset`` pages
        through results (the query asks for ``offset + k`` neighbours and returns the last k);
        ``exclude`` drops these keys from the hits (e.g. the inputs of an average) while still
        returning ``k`` hits when the space has them.
        """
        plan = self._search_plan(
            vector,
            k,
            filter=filter,
            ef=ef,
            with_vectors=with_vectors,
            with_metadata=with_metadata,
            offset=offset,
            exclude=exclude,
        )
        return self._search_hits(plan, self._ft_search(plan.args[0]))

    def search_many(
        self,
        vectors: Any,
        k: int = 10,
        *,
        filter: query.FilterLike = None,
        ef: int | None = None,
        with_vectors: bool = False,
        with_metadata: bool = True,
    ) -> list[list[Hit]]:
        """:meth:`search` for each row of an (n, dim) array, in one pipelined round trip."""
        plan = self._search_many_plan(
            vectors, k, filter=filter, ef=ef, with_vectors=with_vectors, with_metadata=with_metadata
        )

        def make(gen: GenKeys) -> list[tuple[Any, ...]]:
            index = self._search_index(gen)
            return [("FT.SEARCH", index, *args) for args in plan.args]

        if self._checked_search:
            replies = self._read(make)
        else:
            replies = roundtrip(self._client, make(self._target()[1]))
        return [self._search_hits(plan, r) for r in replies]

    def within(
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
        """Embeddings within distance ``radius`` of ``vector``, nearest first (range search).

        Returns at most ``limit`` hits starting at ``offset`` (page with both). Distances are
        those of the space's metric (cosine: 1 - cos). One round trip (FT.SEARCH VECTOR_RANGE).
        """
        plan = self._within_plan(
            vector,
            radius,
            filter=filter,
            limit=limit,
            offset=offset,
            with_vectors=with_vectors,
            with_metadata=with_metadata,
        )
        return self._search_hits(plan, self._ft_search(plan.args[0]))

    def similar(
        self,
        key: str,
        k: int = 10,
        *,
        filter: query.FilterLike = None,
        ef: int | None = None,
        with_vectors: bool = False,
        with_metadata: bool = True,
    ) -> list[Hit]:
        """Neighbours of the stored embedding ``key``, excluding itself. Two round trips.

        Raises:
            KeyNotFoundError: ``key`` is not stored.
        """
        plan = self._similar_plan(
            key,
            self.get(key),
            k,
            filter=filter,
            ef=ef,
            with_vectors=with_vectors,
            with_metadata=with_metadata,
        )
        return self._search_hits(plan, self._ft_search(plan.args[0]))

    # The pure halves of the searches, shared with rediscache.asyncio: a plan holds the
    # FT.SEARCH arguments (after the index name), _search_hits reads a reply.

    def _search_plan(
        self,
        vector: Any,
        k: int,
        *,
        filter: query.FilterLike,
        ef: int | None,
        with_vectors: bool,
        with_metadata: bool,
        offset: int,
        exclude: Collection[str] | None,
    ) -> SearchPlan:
        """The plan of :meth:`search` (raises its input errors)."""
        vec = self.codec.as_vector(vector)
        skip = frozenset(check_keys(exclude, "exclude")) if exclude else frozenset()
        q = self._knn(k + len(skip), filter, ef, with_vectors, with_metadata, offset)
        return SearchPlan([q.args(self.codec.encode(vec))], bool(with_vectors), skip, k)

    def _search_many_plan(
        self,
        vectors: Any,
        k: int,
        *,
        filter: query.FilterLike,
        ef: int | None,
        with_vectors: bool,
        with_metadata: bool,
    ) -> SearchPlan:
        """The plan of :meth:`search_many`: one argument list per row (raises input errors)."""
        arr = self.codec.as_matrix(vectors)
        q = self._knn(k, filter, ef, with_vectors, with_metadata, 0)
        blobs = self.codec.encode_matrix(arr)
        return SearchPlan([q.args(blob) for blob in blobs], bool(with_vectors), frozenset(), k)

    def _within_plan(
        self,
        vector: Any,
        radius: float,
        *,
        filter: query.FilterLike,
        limit: int,
        offset: int,
        with_vectors: bool,
        with_metadata: bool,
    ) -> SearchPlan:
        """The plan of :meth:`within` (raises its input errors)."""
        vec = self.codec.as_vector(vector)
        q = ftsearch.range_query(
            radius,
            filter_str=self._filter_str(filter),
            with_vectors=with_vectors,
            with_metadata=with_metadata,
            limit=limit,
            offset=offset,
        )
        return SearchPlan([q.args(self.codec.encode(vec))], bool(with_vectors), frozenset(), 0)

    def _similar_plan(
        self,
        key: str,
        vector: npt.NDArray[Any] | None,
        k: int,
        *,
        filter: query.FilterLike,
        ef: int | None,
        with_vectors: bool,
        with_metadata: bool,
    ) -> SearchPlan:
        """The plan of :meth:`similar`, once ``vector`` (the stored one of ``key``) is read."""
        if vector is None:
            raise KeyNotFoundError(f"{key!r} is not in {self._where()}")
        return self._search_plan(
            vector,
            k,
            filter=filter,
            ef=ef,
            with_vectors=with_vectors,
            with_metadata=with_metadata,
            offset=0,
            exclude=(key,),
        )

    def _knn(
        self,
        k: int,
        filter: query.FilterLike,
        ef: int | None,
        with_vectors: bool,
        with_metadata: bool,
        offset: int,
    ) -> ftsearch.KnnQuery:
        if ef is not None and self.config.algorithm != "hnsw":
            raise InvalidInputError(
                f"ef applies to HNSW spaces; {self.keys.name!r} is {self.config.algorithm}"
            )
        if (
            filter is None
            and type(k) is int
            and type(offset) is int
            and type(ef) in (int, type(None))
        ):
            return _unfiltered_knn(k, ef, bool(with_vectors), bool(with_metadata), offset)
        return ftsearch.knn_query(
            k,
            filter_str=self._filter_str(filter),
            ef=ef,
            with_vectors=with_vectors,
            with_metadata=with_metadata,
            offset=offset,
        )

    def _filter_str(self, filter: query.FilterLike) -> str | None:
        parsed = query.parse_filter(filter, self.config.fields)
        return query.render_filter(parsed, self.config.fields) if parsed else None

    def _ft_search(self, args: list[Any]) -> Any:
        if self._checked_search:
            return self._read(lambda gen: [("FT.SEARCH", self._search_index(gen), *args)])[0]
        try:
            return self._client.execute_command("FT.SEARCH", self.keys.index, *args)
        except redis.ResponseError as exc:
            raise self._search_error(exc) from exc

    def _search_error(self, exc: Exception) -> ServerError:
        """The error of a failed FT.SEARCH."""
        return ServerError(f"search in {self._where()} failed: {exc}")

    def _search_hits(self, plan: SearchPlan, reply: Any) -> list[Hit]:
        """The hits of one FT.SEARCH reply of ``plan`` (excluded keys dropped, at most k)."""
        hits = self._hits(reply, plan.with_vectors)
        if plan.exclude:
            return [h for h in hits if h.key not in plan.exclude][: plan.k]
        return hits

    def _hits(self, reply: Any, with_vectors: bool) -> list[Hit]:
        if isinstance(reply, redis.ResponseError):
            raise self._search_error(reply)
        _total, raw = ftsearch.parse_search_reply(reply, space_prefix=self.keys.prefix)
        decode = self.codec.decode
        return [
            Hit(
                h.key,
                h.distance,
                unpack_metadata(h.meta),
                decode(h.vec, h.key) if with_vectors and h.vec is not None else None,
            )
            for h in raw
        ]

    # ------------------------------------------------------------ streaming

    def iter_batches(
        self, batch_size: int = CHUNK, *, with_metadata: bool = False
    ) -> Iterator[tuple[list[str], npt.NDArray[Any], list[dict[str, Any]] | None]]:
        """Stream every embedding as ``(keys, vectors, metadata)`` batches.

        SCAN over the generation's documents plus one pipelined fetch per batch: memory is
        bounded by the batch, never KEYS. Not a snapshot of the live space: keys written
        during the scan may or may not appear (SCAN guarantees every key present throughout
        appears at least once; duplicates are removed within a batch only). A version is
        immutable, so iterating one is exact. ``metadata`` is None unless ``with_metadata``.

        Raises:
            StaleStateError: a rollback switched the generation being read (restart).
        """
        if batch_size < 1:
            raise InvalidInputError("batch_size must be >= 1")
        _, gen = self._target()
        pending: list[bytes] = []
        for rkey in self._client.scan_iter(match=gen.doc_scan_pattern(), count=batch_size):
            pending.append(rkey)
            if len(pending) >= batch_size:
                batch = self._load_batch(pending, gen, with_metadata)
                pending = []
                if batch[0]:
                    yield batch
        if pending:
            batch = self._load_batch(pending, gen, with_metadata)
            if batch[0]:
                yield batch

    def _load_batch(
        self, rkeys: list[bytes], gen: GenKeys, with_metadata: bool
    ) -> tuple[list[str], npt.NDArray[Any], list[dict[str, Any]] | None]:
        rkeys = list(dict.fromkeys(rkeys))
        fields = [VECTOR_FIELD, META_FIELD] if with_metadata else [VECTOR_FIELD]

        commands: list[tuple[Any, ...]] = [("HMGET", rk, *fields) for rk in rkeys]
        replies: list[Any] = []
        for _ in range(ATTEMPTS):
            state, current = self._target()
            if current.gen != gen.gen:
                break
            try:
                replies = self._checked(commands, state)
                break
            except StaleStateError:
                self._refresh()
        if self._target()[1].gen != gen.gen or not replies:
            raise StaleStateError(
                f"{self._where()} switched to another generation (a rollback or a copy) "
                "during iter_batches: restart the iteration"
            )
        keys: list[str] = []
        raws: list[bytes] = []
        metas: list[dict[str, Any]] = []
        for rk, reply in zip(rkeys, replies):
            if reply[0] is None:
                continue  # deleted between SCAN and fetch
            keys.append(gen.user_key(rk))
            raws.append(reply[0])
            if with_metadata:
                metas.append(unpack_metadata(reply[1]))
        vectors = (
            self.codec.decode_many(raws, keys)
            if raws
            else np.empty((0, self.codec.dim), dtype=self.codec.out_dtype)
        )
        return keys, vectors, (metas if with_metadata else None)
