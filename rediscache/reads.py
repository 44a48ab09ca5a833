"""Reads of one generation of a space (a :class:`~rediscache.target.Target`: the live space or
a version): get, get_many, get_record, get_metadata_many, the count, info, and streaming
every record. Each read checks the target's state in its round trip (rediscache.target)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from . import collect, memory
from .codec import (
    VectorCodec,
    check_flag,
    check_int,
    check_key,
    check_keys,
    ttl_to_ms,
    unpack_metadata,
)
from .config import SpaceInfo
from .effects import Command, Flow, Pipeline
from .errors import (
    InvalidInputError,
    KeyNotFoundError,
    ReadOnlyError,
    StaleStateError,
    reply_error,
)
from .generations import KeyPages
from .keys import META_FIELD, VECTOR_FIELD, GenKeys
from .state import SpaceState
from .target import ATTEMPTS, Target
from .wire import Frames

__all__ = ["CHUNK", "Batch", "BatchScan", "Hit", "Reads", "Record"]

#: Rows per pipeline in put_many / get_many / iter_batches.
CHUNK = 1000


class Hit(NamedTuple):
    """One search result: the embedding's key, its distance to the query, metadata, vector.

    ``distance`` is the space metric's (cosine: 1 - cos; l2: the squared euclidean distance;
    ip: 1 - dot), exactly as the server computed and ranked it (float32 in a float32,
    float16 or bfloat16 space, float64 in a float64 one; read from FT.SEARCH's sort key,
    see :func:`rediscache.ftsearch.parse_search_reply`). ``vector``: None unless asked for.

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


#: One batch of :meth:`rediscache.Space.iter_batches`: keys, (n, dim) vectors, metadata.
Batch = tuple[list[str], npt.NDArray[Any], list[dict[str, Any]] | None]


def get_commands(
    gen: GenKeys, key: str, ttl_ms: int, expiry: bool = False
) -> list[tuple[Any, ...]]:
    """The reads of ``get``: HGET of the vector, then PEXPIRE when refreshing the ttl, or
    PTTL when the hot cache needs the value's expiry (``expiry``)."""
    doc = gen.doc_prefix + key
    if ttl_ms:
        return [("HGET", doc, VECTOR_FIELD), ("PEXPIRE", doc, ttl_ms)]
    if expiry:
        return [("HGET", doc, VECTOR_FIELD), ("PTTL", doc)]
    return [("HGET", doc, VECTOR_FIELD)]


def fetch_commands(
    gen: GenKeys, keys: list[str], ttl_ms: int, expiry: bool = False
) -> list[tuple[Any, ...]]:
    """The reads of ``get_many``: n HGETs, then n PEXPIREs when refreshing or n PTTLs when
    the hot cache needs expiries (so the first n replies are the vectors)."""
    docs = gen.docs(keys)
    commands: list[tuple[Any, ...]] = [("HGET", rk, VECTOR_FIELD) for rk in docs]
    if ttl_ms:
        commands += [("PEXPIRE", rk, ttl_ms) for rk in docs]
    elif expiry:
        commands += [("PTTL", rk) for rk in docs]
    return commands


#: HGET of the vector field of a document, in RESP (rediscache.wire.Frames).
_HGET_VECTOR = Frames(("HGET",), (VECTOR_FIELD,))


def _hget_frames(commands: list[tuple[Any, ...]]) -> bytes:
    """``commands``, HGETs of the vector field only (what get and get_many send without a
    ttl to refresh or read), in RESP."""
    return _HGET_VECTOR.of([command[1] for command in commands])


def vector_rows(
    codec: VectorCodec, keys: list[str], raws: list[bytes | None], missing: str, where: str
) -> npt.NDArray[Any]:
    """``get_many``'s result from the raw vectors (None: absent) of ``keys``."""
    if None not in raws:
        return codec.decode_many(raws, keys)  # type: ignore[arg-type]
    absent = [i for i, r in enumerate(raws) if r is None]
    if absent and missing == "raise":
        shown = ", ".join(repr(keys[i]) for i in absent[:5])
        more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
        raise KeyNotFoundError(
            f"{len(absent)} keys not in {where}: {shown}{more}", [keys[i] for i in absent]
        )
    found = [r for r in raws if r is not None]
    if not absent:
        return codec.decode_many(found, keys)
    present = [i for i, r in enumerate(raws) if r is not None]
    out = np.full((len(keys), codec.dim), np.nan, dtype=codec.out_dtype)
    if present:
        out[present] = codec.decode_many(found, [keys[i] for i in present])
    return out


def _raise_errors(replies: list[Any], op: str, target: Target) -> None:
    """Raise the first error reply of ``replies`` as the error of ``op`` on ``target``."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply_error(str(reply), f"{op} in {target.where()}")


def _deadline(began: float, pttl: Any) -> float | None:
    """When a value read at ``began`` (``time.monotonic()``) stops being servable from the
    hot cache: its ``pttl`` (ms, read with the value) counted from before the read, so the
    deadline is never later than the real expiry. None: it does not expire."""
    if isinstance(pttl, int) and pttl >= 0:
        return began + pttl / 1000
    return None if pttl == -1 else began  # -2: gone already


class Reads:
    """The reads of one target."""

    def __init__(self, target: Target) -> None:
        self.target = target

    def get(self, key: str, *, refresh_ttl: bool | float = False) -> Flow[npt.NDArray[Any] | None]:
        """The vector stored under ``key``, or None. One round trip (HGET, plus an HGET of
        the space's state in the same write: a rollback in between makes it read again).

        ``refresh_ttl`` (expiring spaces): also restart the embedding's time to live in the
        same round trip (True: the space's ``ttl``; a number: that many seconds).

        Raises:
            InvalidInputError: a bad key or refresh_ttl.
        """
        t = self.target
        key = check_key(key, "key")
        ms = self._refresh_ms(refresh_ttl) if refresh_ttl is not False else 0
        hot = t.hot if not ms else None
        seq = 0
        began = 0.0
        if hot is not None:
            cached = hot.get((t.gen.doc_prefix + key).encode())
            if cached is not None:
                return t.codec.decode(cached, key)
            seq = hot.seq()
            began = time.monotonic()
        expiry = hot is not None and t.config.expiring
        gen = t.gen
        commands = get_commands(gen, key, ms, expiry)
        packed = _hget_frames(commands) if len(commands) == 1 else None
        replies = yield t.with_check(commands, packed)
        if not t.checked_ok(replies):  # a snapshot or rollback meanwhile: read again
            replies, gen = yield from t.reread(
                replies, lambda gen: get_commands(gen, key, ms, expiry)
            )
        _raise_errors(replies, "get", t)  # the value, and a PEXPIRE or PTTL
        raw = replies[0]
        if raw is None:
            return None
        vec = t.codec.decode(raw, key)
        if hot is not None:
            deadline = _deadline(began, replies[1]) if expiry else None
            hot.insert(gen.doc(key).encode(), raw, seq, deadline)
        return vec

    def _refresh_ms(self, refresh_ttl: object) -> int:
        """Milliseconds a read sets as the time to live (0: no refresh)."""
        t = self.target
        if refresh_ttl is False:
            return 0
        if not t.live:
            raise ReadOnlyError(
                f"{t.where()} is read-only: refresh_ttl would change its entries' expiry"
            )
        if not t.config.expiring:
            raise InvalidInputError(
                f"refresh_ttl needs an expiring space; {t.where()} was created without "
                "expiry (create it with ttl= or expiring=True)"
            )
        if refresh_ttl is True:
            if not t.config.ttl:
                raise InvalidInputError(
                    f"refresh_ttl=True needs a space with a default ttl; {t.where()} has "
                    "none: pass the seconds instead"
                )
            refresh_ttl = t.config.ttl
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
    ) -> Flow[npt.NDArray[Any]]:
        """Vectors of ``keys`` as an (n, dim) array, in input order. One round trip.

        Missing keys: ``missing="raise"`` (default) raises :class:`KeyNotFoundError` naming
        them; ``missing="nan"`` returns NaN rows for them (test with ``np.isnan(out[:, 0])``).
        Every row comes from one generation (never half before and half after a rollback);
        rows written concurrently may be old or new. ``refresh_ttl`` as in :meth:`get`.

        Raises:
            InvalidInputError: bad keys, missing or refresh_ttl.
            KeyNotFoundError: missing keys with ``missing="raise"``.
        """
        t = self.target
        key_list = check_keys(keys)
        if missing not in ("raise", "nan"):
            raise InvalidInputError("missing must be 'raise' or 'nan'")
        ms = self._refresh_ms(refresh_ttl)
        hot = t.hot if not ms else None
        if hot is None:
            raws = (yield from self.fetch(key_list, ms))[0]
        else:
            raws = yield from self._fetch_hot(key_list)
        return vector_rows(t.codec, key_list, raws, missing, t.where())

    def _fetch_hot(self, key_list: list[str]) -> Flow[list[bytes | None]]:
        """Raw vectors from the hot cache, the misses in one round trip (then cached, with
        their expiry in an expiring space)."""
        t = self.target
        hot = t.hot
        assert hot is not None
        prefix = t.gen.doc_prefix
        raws: list[bytes | None] = [hot.get((prefix + k).encode()) for k in key_list]
        todo = [i for i, r in enumerate(raws) if r is None]
        if not todo:
            return raws
        seq = hot.seq()
        began = time.monotonic()
        expiry = t.config.expiring
        fetched, gen, ttls = yield from self.fetch([key_list[i] for i in todo], expiry=expiry)
        for j, (i, raw) in enumerate(zip(todo, fetched)):
            raws[i] = raw
            if raw is not None:
                deadline = _deadline(began, ttls[j]) if expiry else None
                hot.insert(gen.doc(key_list[i]).encode(), raw, seq, deadline)
        return raws

    def fetch(
        self, key_list: list[str], ttl_ms: int = 0, *, expiry: bool = False
    ) -> Flow[tuple[list[bytes | None], GenKeys, list[Any]]]:
        """Raw vectors of ``key_list`` (None: absent), the generation they come from, and
        (``expiry``) each key's PTTL reply. One round trip (none for no keys)."""
        t = self.target
        if not key_list:
            return [], t.gen, []
        gen = t.gen
        commands = fetch_commands(gen, key_list, ttl_ms, expiry)
        packed = _hget_frames(commands) if len(commands) == len(key_list) else None
        replies = yield t.with_check(commands, packed)
        if not t.checked_ok(replies):  # a snapshot or rollback meanwhile: read again
            replies, gen = yield from t.reread(
                replies, lambda gen: fetch_commands(gen, key_list, ttl_ms, expiry)
            )
        _raise_errors(replies, "get_many", t)
        n = len(key_list)
        return replies[:n], gen, replies[n:] if expiry else []

    def get_record(self, key: str) -> Flow[Record | None]:
        """Vector and metadata of ``key``, or None. One round trip (HMGET)."""
        t = self.target
        key = check_keys([key], "key")[0]
        reply = (
            yield from t.read(lambda gen: [("HMGET", gen.doc(key), VECTOR_FIELD, META_FIELD)])
        )[0]
        if isinstance(reply, Exception):
            raise reply_error(str(reply), f"get_record in {t.where()}")
        raw, meta = reply
        if raw is None:
            return None
        return Record(key, t.codec.decode(raw, key), unpack_metadata(meta))

    def records(self, names: list[str]) -> Flow[list[tuple[bytes | None, bytes | None]]]:
        """Raw vector and metadata of ``names`` (None: absent), from one generation. One
        round trip."""
        replies = yield from self.target.read(
            lambda gen: [("HMGET", gen.doc(name), VECTOR_FIELD, META_FIELD) for name in names]
        )
        _raise_errors(replies, "diff", self.target)
        return [(r[0], r[1]) for r in replies]

    def get_metadata_many(self, keys: Sequence[str]) -> Flow[list[dict[str, Any] | None]]:
        """The metadata of ``keys`` in input order: a dict per stored record (empty when it
        has none), None for a key without a record. One round trip (per key an HSTRLEN of
        the vector, for existence without reading it, and an HGET of the metadata; all from
        one generation)."""
        t = self.target
        key_list = check_keys(keys)
        if not key_list:
            return []

        def make(gen: GenKeys) -> list[tuple[Any, ...]]:
            return [
                c
                for doc in gen.docs(key_list)
                for c in (("HSTRLEN", doc, VECTOR_FIELD), ("HGET", doc, META_FIELD))
            ]

        replies = yield from t.read(make)
        for i, reply in enumerate(replies):
            if isinstance(reply, Exception):
                where = f"get_metadata_many of {key_list[i // 2]!r} in {t.where()}"
                raise reply_error(str(reply), where)
        return [
            unpack_metadata(meta) if length else None
            for length, meta in zip(replies[::2], replies[1::2])
        ]

    # ------------------------------------------------------------ counts and info

    def count(self) -> Flow[int]:
        """Number of embeddings stored: a count every write keeps exact, one round trip (a
        version's: counted when it was taken, no round trip).

        In an expiring space, the live index's document count (one round trip, FT.INFO):
        Redis deletes expired entries lazily (when read) and by sampling (seconds to minutes
        when many keys carry a ttl), and until it does they are counted, though no read or
        search returns them. ``purge_expired()`` deletes them at once.
        """
        t = self.target
        fixed = t.fixed_count()
        if fixed is not None:  # a version: immutable, counted when it was taken
            return fixed
        if t.config.expiring:
            return (yield from self._index_info()).count

        def call(state: SpaceState, gen: GenKeys) -> Flow[int]:
            raw, count = yield Command(("HMGET", t.keys.config, t.check_field, gen.count_field))
            if raw != t.expected(state).encode():
                yield from t.adopt(raw)  # a stage that is gone raises here
                raise StaleStateError("state changed")
            return int(count or 0)

        return (yield from t.attempts(call))

    def info(self) -> Flow[SpaceInfo]:
        """Schema, count, memory and index state of the space, with every generation it
        holds (live, versions, stages, garbage) and what each costs (rediscache.memory).
        Four round trips; FT.INFO of each index blocks the server a few ms per 20k vectors
        (measured: 3.2 ms on a 20k HNSW index), so this is an operator's call, not a
        serving one."""
        t = self.target
        live = yield from self._index_info()
        gens = yield from memory.generations_info(t.keys)
        garbage = yield from collect.garbage_info(t.keys)
        total = sum(g.memory_bytes for g in gens)
        live_bytes = next((g.memory_bytes for g in gens if "live" in g.roles), 0)
        return dataclasses.replace(
            live,
            memory_bytes=total,
            live_memory_bytes=live_bytes,
            generations=tuple(gens),
            garbage=garbage,
        )

    def _index_info(self) -> Flow[SpaceInfo]:
        """What the live index says (FT.INFO through the alias): count, indexing state and
        its own memory. One round trip, with the state read (:meth:`Target.checked`): a
        space dropped since this handle read its state raises SpaceNotFoundError, also when
        the name was taken again (whose index the alias names now)."""
        t = self.target

        def call(state: SpaceState, gen: GenKeys) -> Flow[Any]:
            return (yield from t.checked([("FT.INFO", t.keys.index)], state))[0]

        reply = yield from t.attempts(call)
        if isinstance(reply, Exception):
            raise reply_error(str(reply), f"FT.INFO of {t.where()}", call=False)
        i = {
            (k.decode() if isinstance(k, bytes) else k): v for k, v in zip(reply[::2], reply[1::2])
        }

        def num(name: str) -> float:
            v = i.get(name, 0)
            try:
                return float(v.decode() if isinstance(v, bytes) else v)
            except (TypeError, ValueError):
                return 0.0

        c = t.config
        vector_bytes = int(num("vector_index_sz_mb") * 1024 * 1024)
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
            vector_index_bytes=vector_bytes,
            memory_bytes=memory.index_bytes(i) + int(num("num_docs")) * t.codec.nbytes,
            ttl=c.ttl,
            expiring=c.expiring,
        )

    def purge_expired(self) -> Flow[int]:
        """Make Redis delete every expired entry of the live space now (a SCAN over its
        documents: Redis deletes the expired keys a SCAN visits); returns how many entries
        went, by the index's count before and after (writes meanwhile count too). Afterwards
        ``len()`` is exact until the next entry expires. No-op in a space that is not
        expiring. One round trip per 1,000 documents; not atomic.
        """
        t = self.target
        if not t.config.expiring:
            return 0
        before = (yield from self._index_info()).count
        pages = KeyPages(t.gen, CHUNK)
        while not pages.done:
            keys = yield from pages.next()
            if keys and not pages.by_scan:  # listed by an index: reading expires them
                yield Pipeline([("EXISTS", k) for k in keys])
        return max(0, before - (yield from self._index_info()).count)

    # ------------------------------------------------------------ streaming

    def iter_batches(self, batch_size: int = CHUNK, *, with_metadata: bool = False) -> BatchScan:
        """Stream every embedding as ``(keys, vectors, metadata)`` batches.

        SCAN over the generation's documents plus one pipelined fetch per batch: memory is
        bounded by the batch, never KEYS. Not a snapshot of the live space: keys written
        during the scan may or may not appear (SCAN guarantees every key present throughout
        appears at least once; duplicates are removed within a batch only). A version is
        immutable, so iterating one is exact. ``metadata`` is None unless ``with_metadata``.
        (asyncio: an async iterator, ``async for keys, vectors, meta in s.iter_batches()``.)

        Raises:
            InvalidInputError: a bad batch_size.
            StaleStateError: a rollback switched the generation being read (restart).
        """
        return BatchScan(self.target, batch_size, with_metadata)


class BatchScan:
    """The steps of an iter_batches (a :class:`rediscache.drive.Stepper`): each step SCANs
    until a batch is full (or the scan ended) and fetches it."""

    def __init__(self, target: Target, batch_size: object, with_metadata: object) -> None:
        self.target = target
        self.batch_size = check_int(batch_size, "batch_size", high=1_000_000)
        self.with_metadata = check_flag(with_metadata, "with_metadata")
        self.gen = target.gen
        self._pages = KeyPages(self.gen, self.batch_size)
        self._pending: list[bytes] = []

    @property
    def done(self) -> bool:
        """Whether the listing ended and every key found was returned."""
        return self._pages.done and not self._pending

    def step(self) -> Flow[Batch | None]:
        """The next batch (None when this step's keys were all deleted meanwhile)."""
        while not self._pages.done and len(self._pending) < self.batch_size:
            self._pending += yield from self._pages.next()
        batch, self._pending = (
            self._pending[: self.batch_size],
            self._pending[self.batch_size :],
        )
        if not batch:
            return None
        loaded = yield from self._load(batch)
        return loaded if loaded[0] else None

    def _load(self, rkeys: list[bytes]) -> Flow[Batch]:
        t, gen = self.target, self.gen
        rkeys = list(dict.fromkeys(rkeys))
        fields = [VECTOR_FIELD, META_FIELD] if self.with_metadata else [VECTOR_FIELD]
        commands: list[tuple[Any, ...]] = [("HMGET", rk, *fields) for rk in rkeys]
        replies: list[Any] = []
        for _ in range(ATTEMPTS):
            if t.gen.gen != gen.gen:
                break
            try:
                replies = yield from t.checked(commands, t.state)
                break
            except StaleStateError:
                yield from t.refresh()
        if t.gen.gen != gen.gen or not replies:
            raise StaleStateError(
                f"{t.where()} switched to another generation (a rollback or a copy) "
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
            if self.with_metadata:
                metas.append(unpack_metadata(reply[1]))
        vectors = (
            t.codec.decode_many(raws, keys)
            if raws
            else np.empty((0, t.codec.dim), dtype=t.codec.out_dtype)
        )
        return keys, vectors, (metas if self.with_metadata else None)
