"""A space: one collection of embeddings of the same dim, dtype and metric, with its index."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from . import query, scripts
from .caching import Caching
from .codec import (
    VectorCodec,
    check_int,
    check_key,
    check_keys,
    pack_metadata,
    ttl_to_ms,
)
from .errors import (
    CorruptDataError,
    InvalidInputError,
    OutcomeUnknownError,
    ServerError,
    StaleStateError,
    reply_error,
)
from .guard import public, redact
from .hotcache import HotCache
from .keys import DOC_MARKER, META_FIELD, VECTOR_FIELD, GenKeys, SpaceKeys
from .metrics import Metrics
from .operations import VectorOps
from .reader import CHUNK, Hit, Reader, Record
from .state import STATE_FIELD, SpaceState
from .versions import Versioned

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["CHUNK", "Hit", "Record", "Space", "SpaceConfig", "SpaceInfo", "VectorsUpdated"]

#: Layout of a space's keys and fields (see rediscache.keys); spaces of another layout are
#: refused. 3: text fields are indexed case-folded (query.fold_text); expiring spaces.
LAYOUT = "3"

#: Time one write.lua call of put_many should take (seconds): a script blocks every other
#: client while it runs, so writes go in chunks sized to about this long, by the time the
#: space's last calls took per row (HNSW: each row is an index insert, 0.5 to 1.3 ms per
#: 384-d row measured here, more as the index grows; FLAT: a copy, about 24 us per 384-d row).
#: Raw pipelined HSETs interleave with other clients every few commands; a 1,000-row script
#: blocked them for over a second (docs/lua.md). Sizing by time also keeps every call far
#: below a client's socket timeout on a slow or busy server.
WRITE_BUDGET = 0.1
#: First guess of an HNSW insert's cost per float of dim, before a space's writes are timed.
HNSW_INSERT_PER_FLOAT = 1e-3 / 384
#: First guess of a FLAT write's cost per float of dim (1,000 rows of 384 floats: 24 ms).
FLAT_INSERT_PER_FLOAT = 24e-6 / 384
#: Largest payload of one write.lua call (bytes of vectors and metadata): one call never
#: carries more, whatever the rows' size (1,000 rows of 4,096 float32 would be 16 MB).
WRITE_BYTES = 4 << 20


class WritePacer:
    """Rows per write.lua call for one space: as many as take about :data:`WRITE_BUDGET`, by
    the time the last calls took per row (a running average, first guessed from the dim and
    the algorithm), between 8 and CHUNK rows, and at most :data:`WRITE_BYTES` of payload."""

    def __init__(self, config: SpaceConfig) -> None:
        self.hnsw = config.algorithm == "hnsw"
        per_float = HNSW_INSERT_PER_FLOAT if self.hnsw else FLAT_INSERT_PER_FLOAT
        self.row_seconds = per_float * config.dim

    def rows(self, row_bytes: float = 0.0) -> int:
        """Rows for the next call, whose rows carry ``row_bytes`` bytes each on average."""
        by_time = int(WRITE_BUDGET / self.row_seconds)
        by_size = int(WRITE_BYTES / row_bytes) if row_bytes > 0 else CHUNK
        return max(8, min(CHUNK, by_time, by_size))

    def record(self, rows: int, seconds: float) -> None:
        """Account a call of ``rows`` rows that took ``seconds`` (round trip included)."""
        if rows > 0 and seconds > 0:
            self.row_seconds = 0.5 * self.row_seconds + 0.5 * seconds / rows

    def spans(self, n: int, size: float) -> Iterator[tuple[int, int]]:
        """The chunks ``(start, end)`` of ``n`` rows of ``size`` bytes each on average, each
        sized when it is due and timed until the caller asks for the next one (the write in
        between), for put_many and update_vectors, sync and asyncio alike."""
        start = 0
        while start < n:
            end = min(start + self.rows(size), n)
            began = time.monotonic()
            yield start, end
            self.record(end - start, time.monotonic() - began)
            start = end


def row_bytes(rows: Sequence[tuple[Sequence[bytes | str], Sequence[str]]]) -> float:
    """Average payload of write rows (field names and values), for :meth:`WritePacer.rows`."""
    if not rows:
        return 0.0
    return sum(len(v) for fields, _ in rows for v in fields) / len(rows)


def chunk_failed(
    name: str, exc: Exception, start: int, end: int, n: int, what: str = "put_many"
) -> ServerError:
    """The error of a put_many (or ``what``) whose chunk ``start..end-1`` (of ``n`` rows)
    failed: which rows are stored (also in its ``rows``). A script writes all of its chunk or
    nothing; only a lost reply leaves the chunk's fate unknown. The error keeps its kind (a
    chunk that was never sent is a ConnectionFailedError, a refused one a ServerBusyError,
    PermissionDeniedError...)."""
    unknown = isinstance(exc, OutcomeUnknownError | redis.ConnectionError | redis.TimeoutError)
    fate = "may or may not be stored" if unknown else "were not stored"
    before = f"; rows before {start} are stored" if start else ""
    after = f"; rows from {end} on were not sent" if end < n else ""
    error: type[ServerError] = OutcomeUnknownError if unknown else ServerError
    if not unknown and isinstance(exc, ServerError):
        error = type(exc)
    elif isinstance(exc, redis.ResponseError):
        error = type(reply_error(str(exc), ""))
    context = f"{what} into {name!r}"
    failed = error(f"{context}: rows {start}..{end - 1} {fate} ({redact(str(exc))}){before}{after}")
    failed.operation = context
    failed.rows = (start, end)
    return failed


def vectors_updated(key_list: list[str], created: int, skipped: list[int]) -> VectorsUpdated:
    """The result of an update_vectors of ``key_list`` that created ``created`` records and
    left out the rows at the indexes ``skipped``."""
    return VectorsUpdated(
        len(key_list) - created - len(skipped), created, tuple(key_list[i] for i in skipped)
    )


@dataclass(frozen=True)
class VectorsUpdated:
    """What :meth:`Space.update_vectors` did: records whose vector was replaced (metadata
    kept), records created without metadata (``missing="create"``), and the keys left out
    because they had no record (``missing="skip"``), in input order."""

    updated: int
    created: int
    skipped: tuple[str, ...] = ()


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
    #: Default time to live of embeddings written to the space, in seconds (None: forever).
    ttl: float | None = None
    #: Whether entries may expire (a default ttl, per-write ttls, refresh_ttl). Searches of
    #: an expiring space check each hit against expiry (docs/serving.md); others need not.
    expiring: bool = False

    def schema(self) -> tuple[Any, ...]:
        """What must match for two configs to describe the same space."""
        return (
            self.dim,
            self.metric,
            self.algorithm,
            self.dtype,
            tuple(sorted(self.fields.items())),
            tuple(sorted(self.hnsw.items())),
            self.ttl,
            self.expiring,
        )

    def describe(self) -> str:
        """A short human-readable summary of the schema."""
        fields = ", ".join(f"{k}:{v}" for k, v in sorted(self.fields.items())) or "none"
        ttl = f" ttl={self.ttl:g}s" if self.ttl else (" expiring" if self.expiring else "")
        return (
            f"dim={self.dim} metric={self.metric} algorithm={self.algorithm} "
            f"dtype={self.dtype} fields={fields}{ttl}"
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
            "ttl": "" if self.ttl is None else repr(self.ttl),
            "expiring": "1" if self.expiring else "0",
            "layout": LAYOUT,
        }

    @classmethod
    def from_hash(cls, name: str, raw: Mapping[bytes, bytes]) -> SpaceConfig:
        """Parse the config hash written by :meth:`to_hash`."""
        d = {k.decode(): v.decode() for k, v in raw.items()}
        if d.get("layout") != LAYOUT:
            raise CorruptDataError(
                f"space {name!r} has key layout {d.get('layout')!r}; this rediscache reads "
                f"layout {LAYOUT}: export it with the rediscache that wrote it "
                "(`rediscache export`) and import it into a new space"
            )
        return cls(
            name=name,
            dim=int(d["dim"]),
            metric=d["metric"],
            algorithm=d["algorithm"],
            dtype=d["dtype"],
            fields=json.loads(d["fields"]),
            hnsw=json.loads(d["hnsw"]),
            created_at=float(d.get("created_at", 0.0)),
            ttl=float(d["ttl"]) if d.get("ttl") else None,
            expiring=d.get("expiring") == "1",
        )


@dataclass(frozen=True)
class SpaceInfo:
    """Schema and state of a space (from :meth:`Space.info`).

    ``count`` is the live index's document count. In an expiring space it includes entries
    that expired but that Redis has not deleted yet (no read or search returns them; see
    :meth:`Space.purge_expired`). ``memory_bytes`` estimates the index plus the raw vectors.
    """

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
    ttl: float | None = None
    expiring: bool = False


class Space(Reader, VectorOps, Versioned, Caching):
    """Embeddings of one dim/dtype/metric, their metadata and their vector index.

    Get one from :meth:`Hub.create_space` or :meth:`Hub.space`. Reads are in
    :class:`rediscache.reader.Reader`, vector operations in
    :class:`rediscache.operations.VectorOps`, versions in
    :class:`rediscache.versions.Versioned`.
    """

    def __init__(self, hub: Hub, config: SpaceConfig, state: SpaceState) -> None:
        self.hub = hub
        self.config = config
        self.keys = SpaceKeys.for_space(config.name)
        self.codec = VectorCodec(config.dim, config.dtype, config.metric)
        self._client: redis.Redis = hub.client
        self._set_state(state)
        # generations whose index is known complete, shared by the hub's objects of the space
        self._index = hub._index_readiness(config.name)
        self._ready = self._index.ready
        self._pacer = WritePacer(config)  # rows per put_many chunk

    # ------------------------------------------------------------ state

    def _set_state(self, state: SpaceState) -> None:
        self._state = state
        self._gen = self.keys.gen(state.live)

    def _target(self) -> tuple[SpaceState, GenKeys]:
        return self._state, self._gen

    def _refresh(self) -> None:
        self._adopt(self._client.hget(self.keys.config, STATE_FIELD))

    def _adopt(self, raw_state: bytes | None) -> None:
        if not isinstance(raw_state, bytes):
            raise ServerError(f"space {self.name!r} was dropped")
        self._set_state(SpaceState.parse(raw_state))

    def _reconnected(self) -> bool:
        return self._index.seen != self.hub._connects.count

    def _search_index(self, gen: GenKeys) -> str:
        if gen.gen not in self._ready or self._index.seen != self.hub._connects.count:
            self._await_index(gen, self.hub.index_wait, live=True)
        return self.keys.index

    def _writing(self, call: Any) -> Any:
        """Run ``call(state, gen)`` once the live generation may be written in place: copy it
        for the versions sharing it first, or wait for another client's copy. Retries after
        a stale state (nothing was written by a stale attempt)."""
        for _ in range(64):
            state = self._writable_state()
            try:
                return call(state, self.keys.gen(state.live))
            except StaleStateError:
                self._refresh()
        raise StaleStateError(f"space {self.name!r} kept changing during a write; retry")

    @property
    def live_keys(self) -> GenKeys:
        """Key names of the live generation as last seen (no round trip; a rollback moves
        the live space to another generation). For tools that inspect Redis directly."""
        return self._gen

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

    def put(
        self,
        key: str,
        vector: Any,
        metadata: Mapping[str, Any] | None = None,
        *,
        ttl: float | None = None,
    ) -> None:
        """Store one embedding (replacing any previous one under ``key``, its time to live
        included). ``ttl``: seconds until it expires (expiring spaces only; default: the
        space's ``ttl``; 0: never).

        One round trip; atomic (the old record and its index entry are replaced in one Lua
        script). Raises InvalidInputError for a bad key, vector, metadata or ttl.
        """
        key = check_keys([key], "key")[0]
        ttl_ms = self._ttl_ms(ttl)
        key_list, rows = self._prepare([key], self.codec.as_vector(vector)[None, :], [metadata])
        self._write_chunks(key_list, rows, ttl_ms, None, "put")

    def put_many(
        self,
        keys: Sequence[str],
        vectors: Any,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        ttl: float | None = None,
    ) -> int:
        """Store many embeddings; returns how many were written.

        ``vectors`` is an (n, dim) array-like; ``metadata`` is None or a list of n dicts (or
        None entries). Everything is checked before anything is sent; an empty batch writes
        nothing. Writes go in chunks, each one call of ``write.lua``: one round trip per
        chunk, each chunk atomic (all of its rows or none). Chunks take about 0.1 s of server
        time each (:class:`WritePacer`: up to 1,000 rows, about 100 at dim 384 in an HNSW
        space, at most 4 MB), because a script blocks every other client while it runs. A
        row replaces any previous record under its key (fields it does not set are removed,
        and its expiry; :meth:`update_vectors` keeps the metadata). ``ttl``: seconds until
        the rows expire (expiring spaces only; default: the space's ``ttl``; 0: never);
        expired embeddings disappear from reads and searches.

        Raises:
            InvalidInputError: bad keys, vectors, metadata or ttl (nothing written).
            ServerError: Redis failed mid-way; the message and its ``rows`` say which rows
                were stored (chunks are written in input order, each in one script).
                :class:`OutcomeUnknownError` when a chunk's reply was lost.
        """
        ttl_ms = self._ttl_ms(ttl)
        key_list, rows = self._prepare(keys, vectors, metadata)
        self._write_chunks(key_list, rows, ttl_ms, None, "put_many")
        return len(key_list)

    def update_vectors(
        self,
        keys: Sequence[str],
        vectors: Any,
        *,
        missing: str = "create",
        ttl: float | None = None,
    ) -> VectorsUpdated:
        """Replace the vectors of ``keys`` and keep everything else of their records: the
        metadata and its indexed fields stay as they are (a retrained model's vectors).

        ``vectors`` is an (n, dim) array-like, checked as :meth:`put_many` checks it before
        anything is sent. ``missing`` says what happens to a key that has no record yet:
        ``"create"`` (default) stores its vector without metadata, ``"skip"`` leaves it out
        (listed in the result's ``skipped``), ``"raise"`` raises :class:`KeyNotFoundError`.
        Expiry as in :meth:`put_many`: every row written restarts its time to live (``ttl``
        or the space's default; spaces without expiry: none).

        Round trips and atomicity as :meth:`put_many`: chunks of :class:`WritePacer` rows,
        one ``write.lua`` call each, each chunk atomic (the existence check and the writes
        of its rows are one step).

        Returns a :class:`VectorsUpdated`: rows updated, created and skipped.

        Raises:
            InvalidInputError: bad keys, vectors, ``missing`` or ttl (nothing written).
            KeyNotFoundError: ``missing="raise"`` and a key has no record; its chunk and the
                later ones are not written, the earlier ones are.
            ServerError: Redis failed mid-way, as in :meth:`put_many`.
        """
        key_list, rows, ttl_ms = self._update_vectors_plan(keys, vectors, missing, ttl)
        created, skipped = self._write_chunks(key_list, rows, ttl_ms, missing, "update_vectors")
        return vectors_updated(key_list, created, skipped)

    def _update_vectors_plan(
        self, keys: Sequence[str], vectors: Any, missing: str, ttl: float | None
    ) -> tuple[list[str], list[tuple[list[bytes | str], list[str]]], int | None]:
        """The checked keys, write rows and ttl of an update_vectors (shared with asyncio);
        InvalidInputError before anything is sent."""
        if missing not in scripts.MISSING_POLICIES:
            raise InvalidInputError(
                "missing must be one of "
                f"{', '.join(map(repr, scripts.MISSING_POLICIES))}, got {missing!r}"
            )
        ttl_ms = self._ttl_ms(ttl)
        key_list, rows = self._prepare(keys, vectors, None, vectors_only=True)
        return key_list, rows, ttl_ms

    def _write_chunks(
        self,
        key_list: list[str],
        rows: list[tuple[list[bytes | str], list[str]]],
        ttl_ms: int | None,
        missing: str | None,
        what: str,
    ) -> tuple[int, list[int]]:
        """Write ``rows`` in paced chunks (one write.lua call each); returns documents
        created and the indexes left out (``missing="skip"``)."""
        n = len(key_list)
        created = 0
        skipped: list[int] = []
        for start, end in self._pacer.spans(n, row_bytes(rows)):
            names = key_list[start:end]

            def call(
                state: SpaceState, gen: GenKeys, names: list[str] = names, start: int = start
            ) -> scripts.Written:
                chunk = rows[start : start + len(names)]
                return self._write(state, gen, names, chunk, ttl_ms, missing)

            try:
                done = self._writing(call)
            except (redis.RedisError, ServerError) as exc:
                raise chunk_failed(self.name, exc, start, end, n, what) from exc
            created += done.changed
            skipped += [start + i for i in done.skipped]
        return created, skipped

    def _ttl_ms(self, ttl: object) -> int | None:
        """Milliseconds to live of a write (0: none; None: the space never expires entries,
        leave expiries alone) from a per-write ``ttl`` or the space's default.

        Raises:
            InvalidInputError: a bad ttl, or a positive one in a space that is not expiring.
        """
        if not self.config.expiring:
            if ttl is not None and ttl_to_ms(ttl) != 0:
                raise InvalidInputError(
                    f"space {self.name!r} was created without expiry, so its entries cannot "
                    "get a ttl: create the space with ttl= (a default) or expiring=True"
                )
            return None
        if ttl is None:
            return round(self.config.ttl * 1000) if self.config.ttl else 0
        return ttl_to_ms(ttl)

    def validate_row(
        self, key: str, vector: Any, metadata: Mapping[str, Any] | None = None
    ) -> None:
        """Check one row as :meth:`put_many` would, without writing; messages name the key,
        never a position in a batch. No round trip.

        Raises:
            InvalidInputError: a bad key, vector or metadata.
        """
        key = check_key(key, "key")
        arr = self.codec.as_vector(vector, f"vector of {key!r}")
        self._row(self.codec.encode_matrix(arr[None, :])[0], metadata, key)

    def validate(
        self,
        keys: Sequence[str],
        vectors: Any,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None:
        """Check a batch exactly as :meth:`put_many` would, without writing. No round trip.

        Raises:
            InvalidInputError: what put_many would refuse (bad keys, vectors or metadata).
        """
        self._prepare(keys, vectors, metadata)

    def _prepare(
        self,
        keys: Sequence[str],
        vectors: Any,
        metadata: Sequence[Mapping[str, Any] | None] | None,
        *,
        vectors_only: bool = False,
    ) -> tuple[list[str], list[tuple[list[bytes | str], list[str]]]]:
        """Checked keys and the HSET/HDEL arguments of each row (pure); ``vectors_only``:
        rows that set the vector and touch no other field."""
        key_list = check_keys(keys)
        arr = self.codec.as_matrix(vectors)
        n = len(key_list)
        if arr.shape[0] != n:
            raise InvalidInputError(f"{n} keys but {arr.shape[0]} vectors")
        metas: list[Any] = [None] * n
        if metadata is not None:
            if isinstance(metadata, (Mapping, str, bytes)) or not isinstance(metadata, Iterable):
                raise InvalidInputError(
                    "metadata must be a list with one dict (or None) per row, got "
                    f"{type(metadata).__name__}"
                )
            metas = list(metadata)
            if len(metas) != n:
                raise InvalidInputError(f"{n} keys but {len(metas)} metadata entries")
        if len(set(key_list)) != n:
            raise InvalidInputError("keys contain duplicates")
        blobs = self.codec.encode_matrix(arr)
        if vectors_only:
            return key_list, [([VECTOR_FIELD, blob], []) for blob in blobs]
        rows = [self._row(blobs[i], metas[i], key_list[i]) for i in range(n)]
        return key_list, rows

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
                raise InvalidInputError(f"metadata of {key!r}, field {name!r}: {exc}") from exc
        return fields, stale

    def delete(self, *keys: str) -> int:
        """Delete embeddings by key; returns how many existed. One round trip, atomic."""
        if not keys:
            return 0
        names = check_keys(keys)

        return int(
            self._writing(lambda state, gen: self._write(state, gen, names, None, None)).changed
        )

    def _write(
        self,
        state: SpaceState,
        gen: GenKeys,
        names: list[str],
        rows: list[tuple[list[bytes | str], list[str]]] | None,
        ttl_ms: int | None,
        missing: str | None = None,
    ) -> scripts.Written:
        """One write.lua call in ``state`` (rows None: delete; ``missing``: an update, see
        :func:`scripts.write_call`), then the written documents leave the hot cache at once
        (read your own writes)."""
        docs = gen.docs(names)
        try:
            return scripts.write(
                self._client,
                self.keys.config,
                docs,
                state=state.raw,
                count_field=gen.count_field,
                rows=rows,
                names=names,
                ttl_ms=ttl_ms,
                missing=missing,
            )
        finally:
            if self._hot is not None:
                self._hot.invalidate([d.encode() for d in docs])

    # ------------------------------------------------------------ hot cache

    def enable_hot_cache(self, *, max_items: int = 10_000, max_bytes: int = 64 << 20) -> HotCache:
        """Keep vectors read by ``get`` / ``get_many`` in this process, up to ``max_items``
        entries and ``max_bytes`` bytes (least recently used out first), kept correct by
        server-assisted invalidation (:mod:`rediscache.hotcache`). Returns the cache (its
        ``stats()`` count hits and misses). Opens one extra connection and a listener thread;
        ``disable_hot_cache()`` closes them. Reads with ``refresh_ttl`` bypass the cache.

        Raises:
            InvalidInputError: bounds below 1. ConnectionFailedError: the listener could not
                subscribe (e.g. a server without CLIENT TRACKING).
        """
        max_items = check_int(max_items, "max_items")
        max_bytes = check_int(max_bytes, "max_bytes")
        self.disable_hot_cache()
        config = self.keys.config

        def state_of() -> bytes | None:
            raw: bytes | None = self._client.hget(config, STATE_FIELD)
            return raw

        self._hot = HotCache(
            self._client,
            self.keys.prefix,
            config_key=config,
            doc_marker=DOC_MARKER,
            state_of=state_of,
            max_items=max_items,
            max_bytes=max_bytes,
        )
        return self._hot

    def disable_hot_cache(self) -> None:
        """Stop and drop the hot cache, if any."""
        if self._hot is not None:
            self._hot.close()
            self._hot = None

    @property
    def hot_cache(self) -> HotCache | None:
        """The hot cache (see :meth:`enable_hot_cache`), or None."""
        return self._hot

    def __len__(self) -> int:
        """Number of embeddings stored: a count every write keeps exact, one round trip.

        In an expiring space, the live index's document count (one round trip, FT.INFO):
        Redis deletes expired entries lazily (when read) and by sampling (seconds to minutes
        when many keys carry a ttl), and until it does they are counted, though no read or
        search returns them. :meth:`purge_expired` deletes them at once.
        """
        if self.config.expiring:
            return self.info().count

        def call(state: SpaceState, gen: GenKeys) -> int:
            raw_state, count = self._client.hmget(self.keys.config, [STATE_FIELD, gen.count_field])
            if raw_state != state.raw.encode():
                raise StaleStateError("state changed")
            return int(count or 0)

        return self._attempts(call)

    def purge_expired(self) -> int:
        """Make Redis delete every expired entry of the live space now (a SCAN over its
        documents: Redis deletes the expired keys a SCAN visits); returns how many entries
        went, by the index's count before and after (writes meanwhile count too). Afterwards
        ``len()`` is exact until the next entry expires. No-op in a space that is not
        expiring. One round trip per 1,000 documents; not atomic.
        """
        if not self.config.expiring:
            return 0
        before = self.info().count
        gen = self._target()[1]
        for _ in self._client.scan_iter(match=gen.doc_scan_pattern(), count=CHUNK):
            pass
        return max(0, before - self.info().count)

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
            ttl=c.ttl,
            expiring=c.expiring,
        )


#: The data-plane methods counted and timed in the hub's metrics (rediscache.metrics).
INSTRUMENTED = (
    "put", "put_many", "delete", "get", "get_many", "get_record", "search", "search_many",
    "similar", "within", "average", "combine", "update_mean", "get_or_compute",
    "update_vectors",
)  # fmt: skip


def _hub_metrics(space: Space) -> Metrics:
    return space.hub._metrics


for _op in INSTRUMENTED:
    setattr(Space, _op, public(_op, getattr(Space, _op), _hub_metrics))

#: The other public methods that talk to Redis: errors mapped, reads retried
#: (rediscache.guard), not counted in the metrics.
GUARDED = (
    "info", "purge_expired", "enable_hot_cache", "iter_batches", "versions", "version",
    "snapshot", "at", "rollback", "delete_version", "prune_versions", "diff",
    "get_metadata_many",
)  # fmt: skip

for _op in GUARDED:
    setattr(Space, _op, public(_op, getattr(Space, _op)))
Space.__len__ = public("len", Space.__len__)  # type: ignore[method-assign]
