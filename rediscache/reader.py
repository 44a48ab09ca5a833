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
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
import redis

from . import ftsearch, query, scripts
from .codec import VectorCodec, check_keys, unpack_metadata
from .errors import InvalidInputError, KeyNotFoundError, ServerError, StaleStateError
from .keys import META_FIELD, VECTOR_FIELD, GenKeys, SpaceKeys
from .state import STATE_FIELD, SpaceState

if TYPE_CHECKING:
    from .space import SpaceConfig

__all__ = ["CHUNK", "Hit", "Reader", "Record"]

#: Rows per pipeline in put_many / get_many / iter_batches.
CHUNK = 1000
#: Attempts of a call whose state keeps changing before StaleStateError.
ATTEMPTS = 8

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

    #: Whether searches must check the state (a version view: its generation may move).
    _checked_search = False

    def _attempts(self, call: Callable[[SpaceState, GenKeys], T]) -> T:
        """Run ``call`` with the cached state, reloading it and retrying when it is stale."""
        for _ in range(ATTEMPTS):
            state, gen = self._target()
            try:
                return call(state, gen)
            except StaleStateError:
                self._refresh()
        raise StaleStateError(
            f"space {self.keys.name!r} kept changing (snapshots, rollbacks) during "
            f"{ATTEMPTS} attempts; retry"
        )

    def _checked(
        self, build: Callable[[Any, GenKeys], None], state: SpaceState, gen: GenKeys
    ) -> list[Any]:
        """Run a pipeline built by ``build`` plus a trailing state read; StaleStateError when
        the state is not ``state`` any more (nothing in between switched: states never
        repeat). One round trip."""
        pipe = self._client.pipeline(transaction=False)
        build(pipe, gen)
        pipe.execute_command("HGET", self.keys.config, STATE_FIELD)
        replies = pipe.execute(raise_on_error=False)
        if replies[-1] != state.raw.encode():
            raise StaleStateError(f"the state of space {self.keys.name!r} changed")
        return list(replies[:-1])

    # ------------------------------------------------------------ reading

    def get(self, key: str) -> npt.NDArray[Any] | None:
        """The vector stored under ``key``, or None. One round trip (a Lua read that also
        checks the space's state)."""
        check_keys([key])

        def call(state: SpaceState, gen: GenKeys) -> npt.NDArray[Any] | None:
            g = scripts.gather(
                self._client,
                [gen.doc_prefix + key],
                self.keys.config,
                state=state.raw,
                field=VECTOR_FIELD,
                nbytes=self.codec.nbytes,
                skip_missing=True,
                names=[key],
            )
            return self.codec.decode(g.blobs[0], key) if g.blobs else None

        return self._attempts(call)

    def get_many(
        self, keys: Sequence[str], *, missing: Literal["raise", "nan"] = "raise"
    ) -> npt.NDArray[Any]:
        """Vectors of ``keys`` as an (n, dim) array, in input order. One round trip.

        Missing keys: ``missing="raise"`` (default) raises :class:`KeyNotFoundError` naming
        them; ``missing="nan"`` returns NaN rows for them (test with ``np.isnan(out[:, 0])``).
        Every row comes from one generation (never half before and half after a rollback);
        rows written concurrently may be old or new.
        """
        key_list = check_keys(keys)
        if missing not in ("raise", "nan"):
            raise InvalidInputError("missing must be 'raise' or 'nan'")
        raws = self._fetch(key_list)
        absent = [i for i, r in enumerate(raws) if r is None]
        if absent and missing == "raise":
            shown = ", ".join(repr(key_list[i]) for i in absent[:5])
            more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
            raise KeyNotFoundError(f"{len(absent)} keys not in {self._where()}: {shown}{more}")
        present = [i for i, r in enumerate(raws) if r is not None]
        found: list[bytes] = [r for r in raws if r is not None]
        if not absent:
            return self.codec.decode_many(found, key_list)
        out = np.full((len(key_list), self.codec.dim), np.nan, dtype=self.codec.out_dtype)
        if present:
            out[present] = self.codec.decode_many(found, [key_list[i] for i in present])
        return out

    def _where(self) -> str:
        return f"space {self.keys.name!r}"

    def _fetch(self, key_list: list[str]) -> list[bytes | None]:
        if not key_list:
            return []

        def build(pipe: Any, gen: GenKeys) -> None:
            for rk in gen.docs(key_list):
                pipe.execute_command("HGET", rk, VECTOR_FIELD)

        return self._attempts(lambda state, gen: self._checked(build, state, gen))

    def get_record(self, key: str) -> Record | None:
        """Vector and metadata of ``key``, or None. One round trip (HMGET)."""
        check_keys([key])

        def build(pipe: Any, gen: GenKeys) -> None:
            pipe.execute_command("HMGET", gen.doc(key), VECTOR_FIELD, META_FIELD)

        reply = self._attempts(lambda state, gen: self._checked(build, state, gen))[0]
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
        vec = self.codec.as_vector(vector)
        skip = set(check_keys(exclude, "exclude")) if exclude else set()
        q = self._knn(k + len(skip), filter, ef, with_vectors, with_metadata, offset)
        reply = self._ft_search(q.args(self.codec.encode(vec)))
        hits = self._hits(reply, with_vectors)
        return [h for h in hits if h.key not in skip][:k] if skip else hits

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
        arr = self.codec.as_matrix(vectors)
        q = self._knn(k, filter, ef, with_vectors, with_metadata, 0)
        blobs = self.codec.encode_matrix(arr)

        def build(pipe: Any, gen: GenKeys) -> None:
            index = self._search_index(gen)
            for blob in blobs:
                pipe.execute_command("FT.SEARCH", index, *q.args(blob))

        if self._checked_search:
            replies = self._attempts(lambda state, gen: self._checked(build, state, gen))
        else:
            pipe = self._client.pipeline(transaction=False)
            build(pipe, self._target()[1])
            replies = pipe.execute(raise_on_error=False)
        return [self._hits(r, with_vectors) for r in replies]

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
        vec = self.codec.as_vector(vector)
        q = ftsearch.range_query(
            radius,
            filter_str=self._filter_str(filter),
            with_vectors=with_vectors,
            with_metadata=with_metadata,
            limit=limit,
            offset=offset,
        )
        reply = self._ft_search(q.args(self.codec.encode(vec)))
        return self._hits(reply, with_vectors)

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
        vec = self.get(key)
        if vec is None:
            raise KeyNotFoundError(f"{key!r} is not in {self._where()}")
        return self.search(
            vec,
            k,
            filter=filter,
            ef=ef,
            with_vectors=with_vectors,
            with_metadata=with_metadata,
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

            def build(pipe: Any, gen: GenKeys) -> None:
                pipe.execute_command("FT.SEARCH", self._search_index(gen), *args)

            return self._attempts(lambda state, gen: self._checked(build, state, gen))[0]
        try:
            return self._client.execute_command("FT.SEARCH", self.keys.index, *args)
        except redis.ResponseError as exc:
            raise ServerError(f"search in {self._where()} failed: {exc}") from exc

    def _hits(self, reply: Any, with_vectors: bool) -> list[Hit]:
        if isinstance(reply, redis.ResponseError):
            raise ServerError(f"search in {self._where()} failed: {reply}")
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

        def build(pipe: Any, _gen: GenKeys) -> None:
            for rk in rkeys:
                pipe.execute_command("HMGET", rk, *fields)

        replies: list[Any] = []
        for _ in range(ATTEMPTS):
            state, current = self._target()
            if current.gen != gen.gen:
                break
            try:
                replies = self._checked(build, state, gen)
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
