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

import random
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
import redis

from . import ftsearch, query
from .caching import drive
from .codec import (
    VectorCodec,
    check_flag,
    check_int,
    check_keys,
    ttl_to_ms,
    unpack_metadata,
)
from .errors import (
    InvalidInputError,
    KeyNotFoundError,
    ServerError,
    StaleStateError,
    reply_error,
)
from .keys import META_FIELD, VECTOR_FIELD, GenKeys, SpaceKeys
from .state import STATE_FIELD, SpaceState
from .wire import fetch_commands, get_commands, roundtrip, vector_rows

if TYPE_CHECKING:
    from .hotcache import HotCache
    from .space import SpaceConfig

__all__ = ["CHUNK", "Hit", "Reader", "Record"]

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

    def _reconnected(self) -> bool:
        """Whether the client opened a connection since the index searched was last known
        complete (then a search result may come from an index being rebuilt)."""
        return False

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
            if isinstance(replies[-1], Exception):  # BUSY, LOADING: alive, not dropped
                raise reply_error(str(replies[-1]), f"reading {self._where()}", call=False)
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

        ``refresh_ttl`` (expiring spaces): also restart the embedding's time to live in the
        same round trip (True: the space's ``ttl``; a number: that many seconds).
        """
        key = check_keys([key], "key")[0]
        ms = self._refresh_ms(refresh_ttl)
        hot = self._hot if not ms else None
        seq = 0
        if hot is not None:
            cached = hot.get((self._target()[1].doc_prefix + key).encode())
            if cached is not None:
                return self.codec.decode(cached, key)
            seq = hot.seq()
        expiry = hot is not None and self.config.expiring
        began = time.monotonic()
        replies, gen = self._read_at(lambda gen: get_commands(gen, key, ms, expiry))
        for reply in replies:  # the value, and the PEXPIRE or PTTL beside it
            if isinstance(reply, Exception):
                raise reply_error(str(reply), f"get in {self._where()}")
        raw = replies[0]
        if raw is None:
            return None
        vec = self.codec.decode(raw, key)
        if hot is not None:
            hot.insert(
                gen.doc(key).encode(), raw, seq, _deadline(began, replies[1]) if expiry else None
            )
        return vec

    def _refresh_ms(self, refresh_ttl: object) -> int:
        """Milliseconds a read sets as the time to live (0: no refresh)."""
        if refresh_ttl is False:
            return 0
        if not self.config.expiring:
            raise InvalidInputError(
                f"refresh_ttl needs an expiring space; {self._where()} was created without "
                "expiry (create it with ttl= or expiring=True)"
            )
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
        """Raw vectors from the hot cache, the misses in one round trip (then cached, with
        their expiry in an expiring space)."""
        prefix = self._target()[1].doc_prefix
        raws: list[bytes | None] = [hot.get((prefix + k).encode()) for k in key_list]
        todo = [i for i, r in enumerate(raws) if r is None]
        if not todo:
            return raws
        seq = hot.seq()
        began = time.monotonic()
        expiry = self.config.expiring
        fetched, gen, ttls = self._fetch([key_list[i] for i in todo], expiry=expiry)
        for j, (i, raw) in enumerate(zip(todo, fetched)):
            raws[i] = raw
            if raw is not None:
                deadline = _deadline(began, ttls[j]) if expiry else None
                hot.insert(gen.doc(key_list[i]).encode(), raw, seq, deadline)
        return raws

    def _fetch(
        self, key_list: list[str], ttl_ms: int = 0, *, expiry: bool = False
    ) -> tuple[list[bytes | None], GenKeys, list[Any]]:
        """Raw vectors of ``key_list`` (None: absent), the generation they come from, and
        (``expiry``) each key's PTTL reply."""
        if not key_list:
            return [], self._target()[1], []
        replies, gen = self._read_at(lambda gen: fetch_commands(gen, key_list, ttl_ms, expiry))
        n = len(key_list)
        for r in replies:
            if isinstance(r, Exception):
                raise reply_error(str(r), f"get_many in {self._where()}")
        return replies[:n], gen, replies[n:] if expiry else []

    def get_record(self, key: str) -> Record | None:
        """Vector and metadata of ``key``, or None. One round trip (HMGET)."""
        key = check_keys([key], "key")[0]

        reply = self._read(lambda gen: [("HMGET", gen.doc(key), VECTOR_FIELD, META_FIELD)])[0]
        if isinstance(reply, Exception):
            raise reply_error(str(reply), f"get_record in {self._where()}")
        raw, meta = reply
        if raw is None:
            return None
        return Record(key, self.codec.decode(raw, key), unpack_metadata(meta))

    def get_metadata_many(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        """The metadata of ``keys`` in input order: a dict per stored record (empty when it
        has none), None for a key without a record. One round trip (per key an HSTRLEN of
        the vector, for existence without reading it, and an HGET of the metadata; all from
        one generation)."""
        key_list = check_keys(keys)
        if not key_list:
            return []

        def make(gen: GenKeys) -> list[tuple[Any, ...]]:
            return [
                c
                for doc in gen.docs(key_list)
                for c in (("HSTRLEN", doc, VECTOR_FIELD), ("HGET", doc, META_FIELD))
            ]

        replies = self._read(make)
        for i, reply in enumerate(replies):
            if isinstance(reply, Exception):
                where = f"get_metadata_many of {key_list[i // 2]!r} in {self._where()}"
                raise reply_error(str(reply), where)
        return [
            unpack_metadata(meta) if length else None
            for length, meta in zip(replies[::2], replies[1::2])
        ]

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
        objects); ``ef`` overrides the HNSW ``EF_RUNTIME`` for this query; ``exclude`` drops
        these keys from the ranked list (e.g. the inputs of an average) while still returning
        ``k`` hits when the space has them.

        Paging: ``offset`` skips that many hits of the ranked list (after ``exclude``). Pages
        of one query neither repeat nor skip hits when the space is not written between them
        and, in an HNSW space, every page uses the same ``ef`` of at least the deepest page's
        ``offset + k + len(exclude)`` (the default ef covers the first ``ef_runtime`` hits,
        100 unless the space says otherwise); an HNSW page past its ef raises
        InvalidInputError. FLAT spaces page exactly with any options.

        In an expiring space a hit whose entry expired is never returned: it is deleted and
        the query repeated (another round trip), so ``k`` live hits come back whenever the
        space has them (docs/serving.md).

        Raises:
            InvalidInputError: a bad vector, k, offset, ef, filter or flag.
            ServerError: the search failed (ServerBusyError while Redis runs a long script).
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
        return self._searched(plan)[0]

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
        """:meth:`search` for each row of an (n, dim) array, in one pipelined round trip (an
        empty array gives an empty list)."""
        plan = self._search_many_plan(
            vectors, k, filter=filter, ef=ef, with_vectors=with_vectors, with_metadata=with_metadata
        )
        return self._searched(plan)

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

        Returns at most ``limit`` hits starting at ``offset`` (page with both: pages of one
        radius neither repeat nor skip hits while the space is not written). Distances are
        those of the space's metric (cosine: 1 - cos). One round trip (FT.SEARCH
        VECTOR_RANGE); expired entries as in :meth:`search`.
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
        return self._searched(plan)[0]

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
            self.get(check_keys([key], "key")[0]),
            k,
            filter=filter,
            ef=ef,
            with_vectors=with_vectors,
            with_metadata=with_metadata,
        )
        return self._searched(plan)[0]

    def _searched(self, plan: ftsearch.SearchPlan) -> list[list[Hit]]:
        """Run ``plan``'s rounds (one round trip each; one unless hits vanished)."""
        rounds = ftsearch.search_rounds(plan, self.keys.prefix)
        return self._hits(plan, drive(rounds, self._search_round))

    def _search_round(self, rnd: ftsearch.SearchRound) -> list[Any]:
        """One round of a search: the queries (and the purge of expired hits) in one round
        trip; the live space through its alias, a version through its own index with the
        state checked. Error replies raise."""

        def make(gen: GenKeys) -> list[tuple[Any, ...]]:
            index = self._search_index(gen)
            commands: list[tuple[Any, ...]] = [("EXISTS", *rnd.purge)] if rnd.purge else []
            return commands + [("FT.SEARCH", index, *args) for args in rnd.queries]

        for _ in range(2):
            if self._checked_search:
                replies = self._read(make)
            else:
                replies = roundtrip(self._client, make(self._target()[1]))
            if not self._reconnected():
                break
            # The round trip opened a new connection: the server may have restarted and be
            # rebuilding the index. Search again once make() has checked it.
        replies = replies[1:] if rnd.purge else replies
        for reply in replies:
            if isinstance(reply, Exception):
                raise self._search_error(reply)
        return replies

    # The pure halves of the searches, shared with rediscache.asyncio: a plan holds what
    # FT.SEARCH needs (ftsearch.SearchPlan), _hits decodes the rounds' results.

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
    ) -> ftsearch.SearchPlan:
        """The plan of :meth:`search` (raises its input errors)."""
        k = check_int(k, "k", high=query.MAX_RESULTS)
        offset = check_int(offset, "offset", low=0, high=query.MAX_RESULTS)
        if offset + k > query.MAX_RESULTS:
            raise InvalidInputError(
                f"offset + k must be at most {query.MAX_RESULTS:,}, got {offset + k:,}"
            )
        vec = self.codec.as_vector(vector)
        if exclude is None:
            skip: frozenset[str] = frozenset()
        elif isinstance(exclude, (str, bytes)):
            raise InvalidInputError("exclude must be a collection of keys, not a single string")
        else:
            skip = frozenset(check_keys(exclude, "exclude"))
        return self._knn_plan([self.codec.encode(vec)], k, offset, skip, filter, ef,
                              with_vectors, with_metadata)  # fmt: skip

    def _search_many_plan(
        self,
        vectors: Any,
        k: int,
        *,
        filter: query.FilterLike,
        ef: int | None,
        with_vectors: bool,
        with_metadata: bool,
    ) -> ftsearch.SearchPlan:
        """The plan of :meth:`search_many`: one query per row (raises input errors)."""
        k = check_int(k, "k", high=query.MAX_RESULTS)
        arr = self.codec.as_matrix(vectors)
        blobs = self.codec.encode_matrix(arr)
        return self._knn_plan(blobs, k, 0, frozenset(), filter, ef, with_vectors, with_metadata)

    def _knn_plan(
        self,
        blobs: list[bytes],
        k: int,
        offset: int,
        exclude: frozenset[str],
        filter: query.FilterLike,
        ef: object,
        with_vectors: object,
        with_metadata: object,
    ) -> ftsearch.SearchPlan:
        vectors, metadata = (
            check_flag(with_vectors, "with_vectors"),
            check_flag(with_metadata, "with_metadata"),
        )
        if ef is not None:
            if self.config.algorithm != "hnsw":
                raise InvalidInputError(
                    f"ef applies to HNSW spaces; {self.keys.name!r} is {self.config.algorithm}"
                )
            ef = check_int(ef, "ef", high=2**31 - 1)
        if offset and self.config.algorithm == "hnsw":
            deepest = offset + k + len(exclude)
            used = ef if ef is not None else self.config.hnsw.get("EF_RUNTIME", 10)
            if deepest > used:
                raise InvalidInputError(
                    f"a page at offset {offset} with k={k}"
                    + (f" and {len(exclude)} excluded keys" if exclude else "")
                    + f" reaches {deepest} hits deep, past ef={used}: pages of one query are "
                    "consistent only when every page (the first too) uses one ef at least as "
                    f"deep as the deepest page: pass ef={deepest} or more on every page"
                )
        filter_str = self._filter_str(filter)
        probe = self.config.expiring

        def prepare(depth: int, start: int) -> ftsearch.KnnQuery:
            return ftsearch.knn_query(depth, start=start, filter_str=filter_str, ef=ef,
                                      with_vectors=vectors, with_metadata=metadata,
                                      probe=probe)  # fmt: skip

        return ftsearch.SearchPlan(tuple(blobs), offset, k, exclude, vectors, probe, prepare)

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
    ) -> ftsearch.SearchPlan:
        """The plan of :meth:`within` (raises its input errors)."""
        r = ftsearch.check_radius(radius)
        limit = check_int(limit, "limit", high=query.MAX_RESULTS)
        offset = check_int(offset, "offset", low=0, high=query.MAX_RESULTS)
        if offset + limit > query.MAX_RESULTS:
            raise InvalidInputError(
                f"offset + limit must be at most {query.MAX_RESULTS:,}, got {offset + limit:,}"
            )
        vectors, metadata = (
            check_flag(with_vectors, "with_vectors"),
            check_flag(with_metadata, "with_metadata"),
        )
        vec = self.codec.as_vector(vector)
        filter_str = self._filter_str(filter)
        probe = self.config.expiring

        def prepare(depth: int, start: int) -> ftsearch.RangeQuery:
            return ftsearch.range_query(r, filter_str=filter_str, with_vectors=vectors,
                                        with_metadata=metadata, limit=depth - start,
                                        offset=start, probe=probe)  # fmt: skip

        return ftsearch.SearchPlan(
            (self.codec.encode(vec),), offset, limit, frozenset(), vectors, probe, prepare
        )

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
    ) -> ftsearch.SearchPlan:
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

    def _filter_str(self, filter: query.FilterLike) -> str | None:
        parsed = query.parse_filter(filter, self.config.fields)
        return query.render_filter(parsed, self.config.fields) if parsed else None

    def _search_error(self, exc: Exception) -> ServerError:
        """The error of a failed FT.SEARCH."""
        return reply_error(str(exc), f"search in {self._where()}")

    def _hits(
        self, plan: ftsearch.SearchPlan, pages: list[list[ftsearch.RawHit]]
    ) -> list[list[Hit]]:
        """Decoded hits of each query's page."""
        decode = self.codec.decode
        with_vectors = plan.with_vectors
        return [
            [
                Hit(
                    h.key,
                    h.distance,
                    unpack_metadata(h.meta),
                    decode(h.vec, h.key) if with_vectors and h.vec is not None else None,
                )
                for h in page
            ]
            for page in pages
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
        batch_size = check_int(batch_size, "batch_size", high=1_000_000)
        with_metadata = check_flag(with_metadata, "with_metadata")
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


def _deadline(began: float, pttl: Any) -> float | None:
    """When a value read at ``began`` (``time.monotonic()``) stops being servable from the
    hot cache: its ``pttl`` (ms, read with the value) counted from before the read, so the
    deadline is never later than the real expiry. None: it does not expire."""
    if isinstance(pttl, int) and pttl >= 0:
        return began + pttl / 1000
    return None if pttl == -1 else began  # -2: gone already
