"""A space: one collection of embeddings of the same dim, dtype and metric, with its index."""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt
import redis

from . import ftsearch, query
from .codec import VectorCodec, check_keys, pack_metadata, unpack_metadata
from .errors import InvalidInputError, KeyNotFoundError, ServerError
from .keys import META_FIELD, VECTOR_FIELD, SpaceKeys
from .operations import VectorOps

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["Hit", "Record", "Space", "SpaceConfig", "SpaceInfo"]

#: Rows per pipeline in put_many / get_many / iter_batches.
CHUNK = 1000


@dataclass(frozen=True)
class SpaceConfig:
    """The schema of a space, stored in its ``cfg`` hash."""

    name: str
    dim: int
    metric: str
    algorithm: str
    dtype: str
    fields: dict[str, query.FieldType]
    hnsw: dict[str, int]
    created_at: float = 0.0

    def schema(self) -> tuple[Any, ...]:
        """What must match for two configs to describe the same space."""
        return (
            self.dim,
            self.metric,
            self.algorithm,
            self.dtype,
            tuple(sorted(self.fields.items())),
            tuple(sorted(self.hnsw.items())),
        )

    def describe(self) -> str:
        """A short human-readable summary of the schema."""
        fields = ", ".join(f"{k}:{v}" for k, v in sorted(self.fields.items())) or "none"
        return (
            f"dim={self.dim} metric={self.metric} algorithm={self.algorithm} "
            f"dtype={self.dtype} fields={fields}"
        )

    def schema_args(self) -> list[str | int]:
        """FT.CREATE arguments after ``SCHEMA``."""
        return query.schema_args(
            self.dim,
            metric=self.metric,
            algorithm=self.algorithm,
            dtype=self.dtype,
            fields=self.fields,
            hnsw=self.hnsw or None,
        )

    def to_hash(self) -> dict[str, str]:
        """The config as the fields of its Redis hash."""
        return {
            "dim": str(self.dim),
            "metric": self.metric,
            "algorithm": self.algorithm,
            "dtype": self.dtype,
            "fields": json.dumps(self.fields, sort_keys=True),
            "hnsw": json.dumps(self.hnsw, sort_keys=True),
            "created_at": repr(self.created_at),
            "layout": "1",
        }

    @classmethod
    def from_hash(cls, name: str, raw: Mapping[bytes, bytes]) -> SpaceConfig:
        """Parse the config hash written by :meth:`to_hash`."""
        d = {k.decode(): v.decode() for k, v in raw.items()}
        return cls(
            name=name,
            dim=int(d["dim"]),
            metric=d["metric"],
            algorithm=d["algorithm"],
            dtype=d["dtype"],
            fields=json.loads(d["fields"]),
            hnsw=json.loads(d["hnsw"]),
            created_at=float(d.get("created_at", 0.0)),
        )


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
    """A stored embedding with its metadata (from :meth:`Space.get_record`)."""

    key: str
    vector: npt.NDArray[Any]
    metadata: dict[str, Any]


@dataclass(frozen=True)
class SpaceInfo:
    """Schema and state of a space (from :meth:`Space.info`)."""

    name: str
    dim: int
    metric: str
    algorithm: str
    dtype: str
    fields: dict[str, str]
    hnsw: dict[str, int]
    count: int
    indexing: bool
    percent_indexed: float
    index_failures: int
    vector_index_bytes: int
    memory_bytes: int


@functools.lru_cache(maxsize=256)
def _unfiltered_knn(
    k: int, ef: int | None, with_vectors: bool, with_metadata: bool, offset: int
) -> ftsearch.KnnQuery:
    # The common query shapes are prepared once (KnnQuery is immutable).
    return ftsearch.knn_query(
        k, ef=ef, with_vectors=with_vectors, with_metadata=with_metadata, offset=offset
    )


class Space(VectorOps):
    """Embeddings of one dim/dtype/metric, their metadata and their vector index.

    Get one from :meth:`Hub.create_space` or :meth:`Hub.space`.
    """

    def __init__(self, hub: Hub, config: SpaceConfig) -> None:
        self.hub = hub
        self.config = config
        self.keys = SpaceKeys.for_space(config.name)
        self.codec = VectorCodec(config.dim, config.dtype, config.metric)
        self._client: redis.Redis = hub.client

    @property
    def name(self) -> str:
        """The space's name."""
        return self.config.name

    @property
    def dim(self) -> int:
        """Number of floats per embedding."""
        return self.config.dim

    def __repr__(self) -> str:
        return f"Space({self.name!r}, {self.config.describe()})"

    # ------------------------------------------------------------ writing

    def put(self, key: str, vector: Any, metadata: Mapping[str, Any] | None = None) -> None:
        """Store one embedding (replacing any previous one under ``key``).

        One round trip; atomic (the old record and its index entry are replaced in one
        MULTI/EXEC). Raises InvalidInputError for a bad key, vector or metadata.
        """
        self.put_many([key], self.codec.as_vector(vector)[None, :], [metadata])

    def put_many(
        self,
        keys: Sequence[str],
        vectors: Any,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> int:
        """Store many embeddings; returns how many were written.

        ``vectors`` is an (n, dim) array-like; ``metadata`` is None or n dicts (or None
        entries). Everything is checked before anything is sent. Writes go in pipelined
        MULTI/EXEC chunks of 1,000 rows: one round trip per chunk, each chunk atomic. A row
        replaces any previous record under its key (fields it does not set are removed).

        Raises:
            InvalidInputError: bad keys, vectors or metadata (nothing written).
            ServerError: Redis failed mid-way; the message says which rows were stored
                (chunks are written in input order, each in one MULTI/EXEC).
        """
        key_list = check_keys(keys)
        arr = self.codec.as_matrix(vectors)
        n = len(key_list)
        if arr.shape[0] != n:
            raise InvalidInputError(f"{n} keys but {arr.shape[0]} vectors")
        if metadata is not None and len(metadata) != n:
            raise InvalidInputError(f"{n} keys but {len(metadata)} metadata entries")
        if len(set(key_list)) != n:
            raise InvalidInputError("keys contain duplicates")
        blobs = self.codec.encode_matrix(arr)
        rows = [
            self._row(blobs[i], metadata[i] if metadata else None, key_list[i]) for i in range(n)
        ]
        rkeys = self.keys.docs(key_list)
        written = 0
        for start in range(0, n, CHUNK):
            end = min(start + CHUNK, n)
            pipe = self._client.pipeline(transaction=True)
            owner: list[int] = []  # row of each queued command
            for i in range(start, end):
                fields, stale = rows[i]
                if stale:
                    pipe.execute_command("HDEL", rkeys[i], *stale)
                    owner.append(i)
                pipe.execute_command("HSET", rkeys[i], *fields)
                owner.append(i)
            try:
                results = pipe.execute(raise_on_error=False)
            except redis.RedisError as exc:
                # EXEC's fate is unknown when the connection broke: say so.
                raise ServerError(
                    f"put_many into {self.name!r} failed: rows before {start} are stored, "
                    f"rows {start}..{end - 1} may or may not be, later rows are not: {exc}"
                ) from exc
            failed = sorted({owner[j] for j, r in enumerate(results) if isinstance(r, Exception)})
            if failed:
                # Redis applies a transaction's other commands when one fails at run time
                # (e.g. a key holding another type): every other row up to `end` is stored.
                first = next(r for r in results if isinstance(r, Exception))
                shown = ", ".join(repr(key_list[i]) for i in failed[:5])
                raise ServerError(
                    f"put_many into {self.name!r}: {len(failed)} rows failed ({shown}): {first}; "
                    f"every other row before {end} is stored, rows from {end} on are not"
                )
            written = end
        return written

    def _row(
        self, blob: bytes, meta: Mapping[str, Any] | None, key: str
    ) -> tuple[list[bytes | str], list[str]]:
        """HSET arguments of one record, and the fields to HDEL first.

        A record replaces any previous one under its key, so fields it does not set (the
        metadata blob, indexed fields) are deleted in the same transaction rather than
        deleting the whole key (DEL + HSET costs a second index update per row).
        """
        fields: list[bytes | str] = [VECTOR_FIELD, blob]
        stale: list[str] = []
        packed = pack_metadata(meta, f"metadata of {key!r}")
        if packed is None or meta is None:
            stale.append(META_FIELD)
            stale.extend(self.config.fields)
            return fields, stale
        fields += [META_FIELD, packed]
        for name, ftype in self.config.fields.items():
            value = meta.get(name)
            if value is None:
                stale.append(name)
                continue
            try:
                fields += [name, query.encode_field_value(ftype, value)]
            except InvalidInputError as exc:
                raise InvalidInputError(f"metadata of {key!r}: {exc}") from exc
        return fields, stale

    def delete(self, *keys: str) -> int:
        """Delete embeddings by key; returns how many existed. One round trip, atomic."""
        if not keys:
            return 0
        return int(self._client.delete(*self.keys.docs(check_keys(keys))))

    # ------------------------------------------------------------ reading

    def get(self, key: str) -> npt.NDArray[Any] | None:
        """The vector stored under ``key``, or None. One round trip (HGET)."""
        check_keys([key])
        raw = self._client.hget(self.keys.doc(key), VECTOR_FIELD)
        return None if raw is None else self.codec.decode(raw, key)

    def get_many(
        self, keys: Sequence[str], *, missing: Literal["raise", "nan"] = "raise"
    ) -> npt.NDArray[Any]:
        """Vectors of ``keys`` as an (n, dim) array, in input order. One round trip.

        Missing keys: ``missing="raise"`` (default) raises :class:`KeyNotFoundError` naming
        them; ``missing="nan"`` returns NaN rows for them (test with ``np.isnan(out[:, 0])``).
        """
        key_list = check_keys(keys)
        if missing not in ("raise", "nan"):
            raise InvalidInputError("missing must be 'raise' or 'nan'")
        raws = self._fetch(key_list)
        absent = [i for i, r in enumerate(raws) if r is None]
        if absent and missing == "raise":
            shown = ", ".join(repr(key_list[i]) for i in absent[:5])
            more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
            raise KeyNotFoundError(f"{len(absent)} keys not in space {self.name!r}: {shown}{more}")
        present = [i for i, r in enumerate(raws) if r is not None]
        found: list[bytes] = [r for r in raws if r is not None]
        if not absent:
            return self.codec.decode_many(found, key_list)
        out = np.full((len(key_list), self.dim), np.nan, dtype=self.codec.out_dtype)
        if present:
            out[present] = self.codec.decode_many(found, [key_list[i] for i in present])
        return out

    def _fetch(self, key_list: list[str]) -> list[bytes | None]:
        if not key_list:
            return []
        pipe = self._client.pipeline(transaction=False)
        for rk in self.keys.docs(key_list):
            pipe.execute_command("HGET", rk, VECTOR_FIELD)
        return list(pipe.execute())

    def get_record(self, key: str) -> Record | None:
        """Vector and metadata of ``key``, or None. One round trip (HMGET)."""
        check_keys([key])
        raw, meta = self._client.hmget(self.keys.doc(key), [VECTOR_FIELD, META_FIELD])
        if raw is None:
            return None
        return Record(key, self.codec.decode(raw, key), unpack_metadata(meta))

    def __len__(self) -> int:
        """Number of embeddings in the index (FT.INFO num_docs). One round trip."""
        return int(self._ft_info().get("num_docs", 0))

    def _ft_info(self) -> dict[str, Any]:
        reply = self._client.execute_command("FT.INFO", self.keys.index)
        return {
            (k.decode() if isinstance(k, bytes) else k): v for k, v in zip(reply[::2], reply[1::2])
        }

    def info(self) -> SpaceInfo:
        """Schema, count, memory and index state. One round trip (FT.INFO)."""
        i = self._ft_info()

        def num(name: str) -> float:
            v = i.get(name, 0)
            try:
                return float(v.decode() if isinstance(v, bytes) else v)
            except (TypeError, ValueError):
                return 0.0

        mb = 1024 * 1024
        memory = (
            num("inverted_sz_mb")
            + num("vector_index_sz_mb")
            + num("offset_vectors_sz_mb")
            + num("doc_table_size_mb")
            + num("sortable_values_size_mb")
            + num("key_table_size_mb")
        )
        c = self.config
        return SpaceInfo(
            name=c.name,
            dim=c.dim,
            metric=c.metric,
            algorithm=c.algorithm,
            dtype=c.dtype,
            fields=dict(c.fields),
            hnsw=dict(c.hnsw),
            count=int(num("num_docs")),
            indexing=bool(num("indexing")),
            percent_indexed=num("percent_indexed"),
            index_failures=int(num("hash_indexing_failures")),
            vector_index_bytes=int(num("vector_index_sz_mb") * mb),
            memory_bytes=int(memory * mb + num("num_docs") * self.codec.nbytes),
        )

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
        pipe = self._client.pipeline(transaction=False)
        for blob in self.codec.encode_matrix(arr):
            pipe.execute_command("FT.SEARCH", self.keys.index, *q.args(blob))
        return [self._hits(r, with_vectors) for r in pipe.execute(raise_on_error=False)]

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
            KeyNotFoundError: ``key`` is not in the space.
        """
        vec = self.get(key)
        if vec is None:
            raise KeyNotFoundError(f"{key!r} is not in space {self.name!r}")
        hits = self.search(
            vec,
            k,
            filter=filter,
            ef=ef,
            with_vectors=with_vectors,
            with_metadata=with_metadata,
            exclude=(key,),
        )
        return hits

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
                f"ef applies to HNSW spaces; {self.name!r} is {self.config.algorithm}"
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
        try:
            return self._client.execute_command("FT.SEARCH", self.keys.index, *args)
        except redis.ResponseError as exc:
            raise ServerError(f"search in space {self.name!r} failed: {exc}") from exc

    def _hits(self, reply: Any, with_vectors: bool) -> list[Hit]:
        if isinstance(reply, redis.ResponseError):
            raise ServerError(f"search in space {self.name!r} failed: {reply}")
        _total, raw = ftsearch.parse_search_reply(reply, doc_prefix=self.keys.doc_prefix)
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
        """Stream the whole space as ``(keys, vectors, metadata)`` batches.

        SCAN over the space's documents plus one pipelined fetch per batch: memory is bounded
        by the batch, never KEYS. Not a snapshot: keys written during the scan may or may not
        appear (SCAN guarantees every key present throughout appears at least once; duplicates
        are removed within a batch only). ``metadata`` is None unless ``with_metadata``.
        """
        if batch_size < 1:
            raise InvalidInputError("batch_size must be >= 1")
        pending: list[bytes] = []
        for rkey in self._client.scan_iter(match=self.keys.doc_scan_pattern(), count=batch_size):
            pending.append(rkey)
            if len(pending) >= batch_size:
                batch = self._load_batch(pending, with_metadata)
                pending = []
                if batch[0]:
                    yield batch
        if pending:
            batch = self._load_batch(pending, with_metadata)
            if batch[0]:
                yield batch

    def _load_batch(
        self, rkeys: list[bytes], with_metadata: bool
    ) -> tuple[list[str], npt.NDArray[Any], list[dict[str, Any]] | None]:
        rkeys = list(dict.fromkeys(rkeys))
        pipe = self._client.pipeline(transaction=False)
        for rk in rkeys:
            pipe.hmget(rk, [VECTOR_FIELD, META_FIELD] if with_metadata else [VECTOR_FIELD])
        keys: list[str] = []
        raws: list[bytes] = []
        metas: list[dict[str, Any]] = []
        for rk, reply in zip(rkeys, pipe.execute()):
            if reply[0] is None:
                continue  # deleted between SCAN and fetch
            keys.append(self.keys.user_key(rk))
            raws.append(reply[0])
            if with_metadata:
                metas.append(unpack_metadata(reply[1]))
        vectors = (
            self.codec.decode_many(raws, keys)
            if raws
            else np.empty((0, self.dim), dtype=self.codec.out_dtype)
        )
        return keys, vectors, (metas if with_metadata else None)
