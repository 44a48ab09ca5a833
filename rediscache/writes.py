"""Writes of a space's live generation: put, put_many, update_vectors and delete, each
checked whole before anything is sent, then written in chunks of one ``write.lua`` call
(atomic per chunk, paced by :class:`WritePacer`) with the state the writer saw (a stale one
is refused by the script and the chunk retried: rediscache.target)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from . import query, scripts
from .codec import check_key, check_keys, pack_metadata, ttl_to_ms
from .config import SpaceConfig
from .effects import Flow, Transaction
from .errors import (
    InvalidInputError,
    OutcomeUnknownError,
    PermissionDeniedError,
    ServerError,
    StaleStateError,
    reply_error,
)
from .guard import redact
from .keys import META_FIELD, VECTOR_FIELD, GenKeys
from .reads import CHUNK
from .state import SpaceState
from .target import Target
from .wire import NotSent

__all__ = [
    "TX_ROWS", "WRITE_BUDGET", "WRITE_BYTES", "VectorsUpdated", "WritePacer", "Writes",
    "chunk_failed", "row_bytes", "vectors_updated",
]  # fmt: skip

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
#: Rows from which a put_many chunk in a space whose entries never expire is written as a
#: MULTI/EXEC transaction (two round trips) rather than by write.lua (one): below, the
#: script's extra server time per row is smaller than a round trip.
TX_ROWS = 16
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
    return sum([sum(map(len, fields)) for fields, _ in rows]) / len(rows)


def chunk_failed(
    name: str,
    exc: Exception,
    start: int,
    end: int,
    n: int,
    what: str = "put_many",
    key: str | None = None,
) -> ServerError:
    """The error of a put_many (or ``what``) into the space ``name`` (as messages name it,
    quoted: :attr:`rediscache.keys.SpaceKeys.shown`) whose chunk ``start..end-1`` (of ``n``
    rows) failed: which rows are stored (also in its ``rows``). A script writes all of its chunk or
    nothing; only a lost reply leaves the chunk's fate unknown. The error keeps its kind (a
    chunk that was never sent is a ConnectionFailedError, a refused one a ServerBusyError,
    PermissionDeniedError...). ``key``: the one row's key, when the call wrote one (put).
    A refused chunk keeps its PermissionDeniedError, which the call's guard names."""
    if isinstance(exc, PermissionDeniedError):
        exc.rows = (start, end)
        return exc
    if isinstance(exc, redis.exceptions.NoPermissionError):  # a MULTI of a role: refused
        denied = reply_error(str(exc), "")  # the call's guard names the user, call, role
        denied.rows = (start, end)
        return denied
    loading = isinstance(exc, redis.BusyLoadingError)  # a ConnectionError to redis-py: refused
    unknown = not loading and isinstance(
        exc, OutcomeUnknownError | redis.ConnectionError | redis.TimeoutError
    )
    fate = "may or may not be stored" if unknown else "were not stored"
    partly = getattr(exc, "not_stored", None)
    if partly is not None:
        fate = f"were stored except {len(partly)} named below"
    before = f"; rows before {start} are stored" if start else ""
    after = f"; rows from {end} on were not sent" if end < n else ""
    error: type[ServerError] = OutcomeUnknownError if unknown else ServerError
    if not unknown and isinstance(exc, ServerError):
        error = type(exc)
    elif loading or isinstance(exc, redis.ResponseError):
        error = type(reply_error(str(exc) if not loading else f"LOADING {exc}", ""))
    context = f"{what} into {name}"
    reason = redact(str(exc))
    if key is not None and n == 1:
        fate = "may or may not be stored" if unknown else "was not stored"
        failed = error(f"{context}: {key!r} {fate} ({reason})")
    else:
        failed = error(f"{context}: rows {start}..{end - 1} {fate} ({reason}){before}{after}")
    failed.operation = context
    failed.rows = (start, end)
    failed.not_stored = partly
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


class Writes:
    """The writes of the live space of a target. ``pacer`` sizes put_many's chunks."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.pacer = WritePacer(target.config)

    def put(
        self,
        key: str,
        vector: Any,
        metadata: Mapping[str, Any] | None = None,
        *,
        ttl: float | None = None,
    ) -> Flow[None]:
        """Store one embedding (replacing any previous one under ``key``, its time to live
        included). ``ttl``: seconds until it expires (expiring spaces only; default: the
        space's ``ttl``; 0: never).

        One round trip; atomic (the old record and its index entry are replaced in one Lua
        script). Raises InvalidInputError for a bad key, vector, metadata or ttl.
        """
        key = check_keys([key], "key")[0]
        ttl_ms = self.ttl_ms(ttl)
        vec = self.target.codec.as_vector(vector)[None, :]
        key_list, rows = self._prepare([key], vec, [metadata])
        yield from self._write_chunks(key_list, rows, ttl_ms, None, "put")

    def put_many(
        self,
        keys: Sequence[str],
        vectors: Any,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        ttl: float | None = None,
    ) -> Flow[int]:
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
        ttl_ms = self.ttl_ms(ttl)
        key_list, rows = self._prepare(keys, vectors, metadata)
        yield from self._write_chunks(key_list, rows, ttl_ms, None, "put_many")
        return len(key_list)

    def update_vectors(
        self,
        keys: Sequence[str],
        vectors: Any,
        *,
        missing: str = "create",
        ttl: float | None = None,
    ) -> Flow[VectorsUpdated]:
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
        created, skipped = yield from self._write_chunks(
            key_list, rows, ttl_ms, missing, "update_vectors"
        )
        return vectors_updated(key_list, created, skipped)

    def _update_vectors_plan(
        self, keys: Sequence[str], vectors: Any, missing: str, ttl: float | None
    ) -> tuple[list[str], list[tuple[list[bytes | str], list[str]]], int | None]:
        """The checked keys, write rows and ttl of an update_vectors; InvalidInputError
        before anything is sent."""
        if missing not in scripts.MISSING_POLICIES:
            raise InvalidInputError(
                "missing must be one of "
                f"{', '.join(map(repr, scripts.MISSING_POLICIES))}, got {missing!r}"
            )
        ttl_ms = self.ttl_ms(ttl)
        key_list, rows = self._prepare(keys, vectors, None, vectors_only=True)
        return key_list, rows, ttl_ms

    def _write_chunks(
        self,
        key_list: list[str],
        rows: list[tuple[list[bytes | str], list[str]]],
        ttl_ms: int | None,
        missing: str | None,
        what: str,
    ) -> Flow[tuple[int, list[int]]]:
        """Write ``rows`` in paced chunks (one write.lua call each); returns documents
        created and the indexes left out (``missing="skip"``)."""
        n = len(key_list)
        created = 0
        skipped: list[int] = []
        for start, end in self.pacer.spans(n, row_bytes(rows)):
            names = key_list[start:end]
            chunk = rows[start:end]

            def call(
                state: SpaceState, gen: GenKeys, names: list[str] = names, chunk: Any = chunk
            ) -> Flow[scripts.Written]:
                return self._write(state, gen, names, chunk, ttl_ms, missing)

            try:
                done = yield from self.target.writing(call)
            except (redis.RedisError, ServerError) as exc:
                one = key_list[0] if n == 1 else None
                raise chunk_failed(self.target.keys.shown, exc, start, end, n, what, one) from exc
            created += done.changed
            skipped += [start + i for i in done.skipped]
        return created, skipped

    def ttl_ms(self, ttl: object) -> int | None:
        """Milliseconds to live of a write (0: none; None: the space never expires entries,
        leave expiries alone) from a per-write ``ttl`` or the space's default.

        Raises:
            InvalidInputError: a bad ttl, or a positive one in a space that is not expiring.
        """
        if not self.target.config.expiring:
            if ttl is not None and ttl_to_ms(ttl) != 0:
                raise InvalidInputError(
                    f"space {self.target.keys.shown} was created without expiry, so its "
                    "entries cannot get a ttl: create the space with ttl= (a default) or "
                    "expiring=True"
                )
            return None
        if ttl is None:
            return round(self.target.config.ttl * 1000) if self.target.config.ttl else 0
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
        arr = self.target.codec.as_vector(vector, f"vector of {key!r}")
        self._row(self.target.codec.encode_matrix(arr[None, :])[0], metadata, key)

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
        arr = self.target.codec.as_matrix(vectors)
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
        blobs = self.target.codec.encode_matrix(arr)
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
            stale.extend(self.target.config.fields)
            return fields, stale
        fields += [META_FIELD, packed]
        for name, ftype in self.target.config.fields.items():
            value = meta.get(name)
            if value is None:
                stale.append(name)
                continue
            try:
                fields += [name, query.encode_field_value(ftype, value)]
            except InvalidInputError as exc:
                raise InvalidInputError(f"metadata of {key!r}, field {name!r}: {exc}") from exc
        return fields, stale

    def _put_in_transaction(
        self,
        state: SpaceState,
        gen: GenKeys,
        names: list[str],
        docs: list[str],
        rows: list[tuple[list[bytes | str], list[str]]],
    ) -> Flow[scripts.Written | None]:
        """write.lua's put of ``rows`` in a space whose entries never expire, as an optimistic
        transaction (:class:`rediscache.effects.Transaction`): WATCH the config and read the
        state and each document's HLEN (a key of another type: refused, nothing written; 0:
        the document is new), then the HDEL/HSET of every row and the count's HINCRBY inside
        MULTI/EXEC. Redis runs the commands of MULTI/EXEC as they would run pipelined, where
        a script pays for copying each argument into Lua and back (measured: 25-34 against
        16-19 us of server time per 384-d FLAT row; :data:`TX_ROWS`).

        Every change of a document's existence by rediscache writes the config (the count),
        and so does every change of state (snapshot, rollback, copy, drop): EXEC runs
        nothing if one came between the two round trips, and None is returned so the caller
        writes with write.lua instead. Returns a :class:`rediscache.scripts.Written`.

        Raises StaleStateError (the state is not ``state``), ServerError (a key of another
        type, or a command EXEC failed: then the rows stored are named),
        ConnectionFailedError (nothing was sent whole: nothing ran) or OutcomeUnknownError
        (EXEC was sent and its reply lost)."""
        cfg = self.target.keys.config
        field = self.target.check_field
        expected = self.target.expected(state).encode()
        row_of: list[int] = []  # the row of each HDEL/HSET inside MULTI (the HINCRBY last)
        created = [0]

        def build(replies: list[Any]) -> list[tuple[Any, ...]]:
            if replies[0] != expected:
                raise StaleStateError(
                    "the space's state changed before a put_many's transaction (nothing written)"
                )
            for i, fields in enumerate(replies[1:]):
                if isinstance(fields, Exception):
                    raise scripts.wrong_type_error(names[i]) from fields
            created[0] = replies[1:].count(0)
            row_of.clear()
            commands: list[tuple[Any, ...]] = []
            for i, (doc, (fields, stale)) in enumerate(zip(docs, rows)):
                if stale:
                    commands.append(("HDEL", doc, *stale))
                    row_of.append(i)
                commands.append(("HSET", doc, *fields))
                row_of.append(i)
            if created[0]:
                commands.append(("HINCRBY", cfg, gen.count_field, created[0]))
            return commands

        what = "a put_many's transaction"
        reads = [("HGET", cfg, field), *[("HLEN", doc) for doc in docs]]
        for attempt in (1, 2):
            try:
                done = yield Transaction(cfg, reads, build)
                break
            except NotSent as exc:  # nothing ran: once more
                if attempt == 2:
                    raise scripts.lost(what, exc, sent=False) from exc
            except redis.BusyLoadingError:
                raise  # LOADING: refused, nothing ran
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                raise scripts.lost(what, exc, sent=True) from exc
        if done is None:
            return None
        failed = sorted({row_of[i] for i, reply in enumerate(done[: len(row_of)])
                         if isinstance(reply, Exception)})  # fmt: skip
        if failed:
            first = next(reply for reply in done if isinstance(reply, Exception))
            lost = ", ".join(repr(names[i]) for i in failed[:5])
            more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
            error = ServerError(
                f"{len(failed)} of {len(rows)} rows were not stored, or only partly: {lost}"
                f"{more} (another client changed their keys meanwhile: {first}); the others "
                "were stored"
            )
            error.not_stored = [names[i] for i in failed]
            raise error
        return scripts.Written(created[0], [])

    def delete(self, *keys: str) -> Flow[int]:
        """Delete embeddings by key; returns how many existed. One round trip, atomic.

        Raises:
            InvalidInputError: a bad key.
        """
        if not keys:
            return 0
        names = check_keys(keys)

        def call(state: SpaceState, gen: GenKeys) -> Flow[scripts.Written]:
            return self._write(state, gen, names, None, None)

        return int((yield from self.target.writing(call)).changed)

    def _write(
        self,
        state: SpaceState,
        gen: GenKeys,
        names: list[str],
        rows: list[tuple[list[bytes | str], list[str]]] | None,
        ttl_ms: int | None,
        missing: str | None = None,
    ) -> Flow[scripts.Written]:
        """One write.lua call in ``state`` (rows None: delete; ``missing``: an update, see
        :func:`scripts.write_call`), then the written documents leave the hot cache at once
        (read your own writes)."""
        t = self.target
        docs = gen.docs(names)
        try:
            if rows is not None and missing is None and ttl_ms is None and len(rows) >= TX_ROWS:
                done = yield from self._put_in_transaction(state, gen, names, docs, rows)
                if done is not None:
                    return done
            return (
                yield from scripts.run(
                    scripts.write_call(
                        t.keys.config,
                        docs,
                        state=t.expected(state),
                        count_field=gen.count_field,
                        check_field=t.check_field,
                        rows=rows,
                        names=names,
                        ttl_ms=ttl_ms,
                        missing=missing,
                    )
                )
            )
        finally:
            if t.hot is not None:
                t.hot.invalidate([d.encode() for d in docs])
