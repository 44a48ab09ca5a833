"""Generations of a space and what points at them: their search indexes (created, waited
for, dropped), their documents (copied, deleted) and the versions table.

A space's documents live in *generations* (``rc:{space}:g<g>:d:<key>``, one index each; see
:mod:`rediscache.keys`); the live space is one of them (:mod:`rediscache.state`), each
version names one (docs/versions.md). Every function here is a flow (:mod:`rediscache.effects`)
given exactly the keys and config it works on.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from . import scripts
from .config import SpaceConfig
from .effects import Command, Flow, Pipeline, Sleep
from .errors import IndexBuildingError, PermissionDeniedError, ServerError, reply_error
from .ftsearch import NO_TIMEOUT, index_done
from .keys import GenKeys, SpaceKeys, shown_name

__all__ = [
    "FORK_LEASE_MS",
    "INDEX_TIMEOUT",
    "KeyPages",
    "Version",
    "VersionRef",
    "aggregate_keys",
    "copy_generation",
    "create_index",
    "drop_index",
    "ensure_searchable",
    "existing_spaces",
    "index_batches",
    "listing_args",
    "may_create_index",
    "may_scan",
    "parse_versions",
    "take_lease",
    "unlink_matching",
]

#: Documents per copy_docs.lua call of a role's copy (each call blocks the server while it
#: copies them: about 1 us per field).
SCRIPT_BATCH = 200
#: Longest wait for a version's index to finish building (seconds).
INDEX_TIMEOUT = 600.0
#: Lease of a client copying a generation (ms), renewed at every batch of the copy (1,000
#: documents, a few ms of server time): when the copier dies, writers wait at most this
#: long before one of them takes the copy over. A copier slower than this between two
#: batches loses the copy to a writer (its commit is refused; nothing is corrupted).
FORK_LEASE_MS = 5_000
#: Keys per SCAN page and per COPY / UNLINK round trip.
BATCH = 1000


@dataclass(frozen=True)
class Version:
    """An immutable snapshot of a space (from :meth:`rediscache.Space.snapshot`). ``space``
    names the space it belongs to: passing it to another space raises
    VersionNotFoundError."""

    id: int
    label: str | None
    created_at: float
    count: int
    space: str | None = None

    def __str__(self) -> str:
        return f"v{self.id}" + (f" ({self.label})" if self.label else "")


#: A version, its id, or its label.
VersionRef = Version | int | str


def parse_versions(raw: dict[bytes, bytes], space: str) -> dict[int, tuple[Version, int]]:
    """Parse the versions hash of ``space``: id -> (Version, generation)."""
    out: dict[int, tuple[Version, int]] = {}
    for k, v in raw.items():
        rec = json.loads(v)
        vid = int(k)
        out[vid] = (
            Version(vid, rec.get("label"), float(rec["created_at"]), int(rec["count"]), space),
            int(rec["gen"]),
        )
    return dict(sorted(out.items()))


def _unknown_index(exc: Exception) -> bool:
    text = str(exc).lower()
    return "unknown index" in text or "no such" in text


def create_index(config: SpaceConfig, gen: GenKeys, *, scan: bool = True) -> Flow[None]:
    """FT.CREATE the index of one generation (documents already there are indexed in the
    background). ``scan=False`` for a generation that has no documents yet (a new space's
    first): SKIPINITIALSCAN, so the server does not scan its whole keyspace for them, which
    on a server holding other data kept a new space's index "indexing" for tens of
    seconds after its first put_many (a new user's trial: 30 s with 69,000 other keys),
    and searches waiting for it. One round trip; raises redis.ResponseError as the server
    sent it."""
    skip = () if scan else ("SKIPINITIALSCAN",)
    yield Command(
        (
            "FT.CREATE",
            gen.index,
            "ON",
            "HASH",
            "PREFIX",
            1,
            gen.doc_prefix,
            *skip,
            # index stop words too: a text filter on "the who" must match
            "STOPWORDS",
            0,
            "SCHEMA",
            *config.schema_args(),
        )
    )


def create_missing_index(config: SpaceConfig, gen: GenKeys) -> Flow[None]:
    """Create the missing index of ``gen`` (its ``built`` mark goes first: the new index is
    built anew). Two round trips.

    Raises:
        PermissionDeniedError: the user may not create indexes (:func:`no_index_yet`).
        redis.ResponseError: FT.CREATE's error (e.g. another client made it meanwhile).
    """
    try:
        yield Command(("HDEL", gen.space.config, gen.built_field))
        yield from create_index(config, gen)
    except redis.exceptions.NoPermissionError as exc:
        raise no_index_yet(gen) from exc


def listed_indexes(at: str) -> Flow[set[str]]:
    """The names of the search indexes of the server of key ``at`` (``FT._LIST``; on a
    cluster, of the node of that key's slot). One round trip."""
    listed = yield Command(("FT._LIST",), at=at)
    return {i.decode() if isinstance(i, bytes) else str(i) for i in listed}


#: Schema of a listing index: one field no document has. RediSearch still lists every hash
#: under the prefix in such an index (its document table), at about a tenth of a vector
#: index's cost per write, and deleting a document from it costs next to nothing.
LISTING_SCHEMA = ("SCHEMA", "__rc_listed", "TAG")


def listing_args(gen: GenKeys, *, existing: bool) -> tuple[Any, ...]:
    """The FT.CREATE arguments after the name of ``gen``'s listing index (see
    :func:`create_listing`)."""
    skip = () if existing else ("SKIPINITIALSCAN",)
    return ("ON", "HASH", "PREFIX", 1, gen.doc_prefix, *skip, "STOPWORDS", 0, *LISTING_SCHEMA)


def create_listing(gen: GenKeys, *, existing: bool = False) -> Flow[None]:
    """FT.CREATE the listing index of a generation: a new one, before anything is written
    to it (SKIPINITIALSCAN, so the server does not scan the keyspace), or with
    ``existing`` one whose documents are there (the server lists them in the background).
    One round trip.

    Raises:
        ServerError: the server refused (NoPermissionError as redis-py raised it).
    """
    try:
        yield Command(("FT.CREATE", gen.listing, *listing_args(gen, existing=existing)))
    except redis.exceptions.NoPermissionError:
        raise  # the caller knows what the user was doing
    except redis.ResponseError as exc:
        if "already exists" not in str(exc).lower():
            raise ServerError(f"creating the listing index {gen.listing!r}: {exc}") from exc


def drop_index(index: str | bytes, what: str) -> Flow[bool]:
    """FT.DROPINDEX ``index`` (documents kept); False when it did not exist. One round trip.

    Raises:
        ServerError: the server refused (``what`` names the index for the message).
    """
    try:
        yield Command(("FT.DROPINDEX", index))
    except redis.exceptions.NoPermissionError:
        raise  # the call's guard names the operation and the space
    except redis.ResponseError as exc:
        if not _unknown_index(exc):
            raise ServerError(f"dropping {what}: {exc}") from exc
        return False
    return True


def no_index_yet(gen: GenKeys) -> PermissionDeniedError:
    """The error of a role that needs an index of ``gen`` which nobody built yet (a version
    a writer copied after a snapshot: only admins and owners create indexes)."""
    denied = PermissionDeniedError(
        f"this version of space {gen.space.shown} (generation {gen.gen}) has no index "
        "yet, and this user may not create one (only admins and owners may): an admin's "
        "or owner's first search of it, or a rollback to it, builds it"
    )
    denied.space, denied.final = gen.space.name, True
    return denied


def ensure_searchable(
    config: SpaceConfig,
    gen: GenKeys,
    ready: set[int],
    timeout: float,
    *,
    create: bool = True,
    server: bytes | None = None,
    trust_mark: bool = False,
) -> Flow[bool]:
    """Wait until the index of ``gen`` has indexed every document; ``ready`` records the
    generations known complete, which return at once. An index that does not exist is
    created (a crash left the generation without one) when ``create``, else False is
    returned (the generation is gone). True otherwise. One FT.INFO per 0.1 s of waiting.

    ``server``: the run id of the server (``INFO server``). A client that finds an index
    complete records it in the config hash (``built:<g>`` = run id), and a client that
    finds that mark with the same run id (``trust_mark``) needs no FT.INFO: one HGET,
    whatever the size of the index (FT.INFO blocks the server 0.4 ms at 2k vectors, 3.2 ms
    at 20k). A restart
    (or a failover) changes the run id, and the rebuilt index is checked again; an index
    rebuilt under the same run id (a replica's full resync) is not seen by the mark, so
    only the switches use it (rediscache.target.Target.searchable).

    Raises:
        IndexBuildingError: still building after ``timeout`` seconds.
    """
    if gen.gen in ready:
        return True
    mark = gen.built_field
    if (
        trust_mark
        and server is not None
        and (yield Command(("HGET", gen.space.config, mark))) == server
    ):
        ready.add(gen.gen)
        return True
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = yield Command(("FT.INFO", gen.index))
        except redis.ResponseError as exc:
            if not _unknown_index(exc):
                where = f"checking the index of space {shown_name(config.name)} (FT.INFO)"
                raise reply_error(str(exc), where) from exc
            if not create:
                return False
            with contextlib.suppress(redis.ResponseError):  # a racing client made it
                yield from create_missing_index(config, gen)
            continue
        done = index_done(reply)
        if done >= 1:
            ready.add(gen.gen)
            if server is not None:
                # the mark only saves the next switch an FT.INFO: a reader, who may not
                # write it, goes without (mark_built.lua writes it only while the space
                # exists: a drop meanwhile must not leave a config holding just the mark)
                with contextlib.suppress(redis.exceptions.NoPermissionError, PermissionDeniedError):
                    yield from scripts.run(scripts.mark_built_call(gen.space.config, mark, server))
            return True
        if time.monotonic() >= deadline:
            raise IndexBuildingError(
                f"the index of space {shown_name(config.name)} is still being "
                f"built ({100 * done:.1f}% done, waited {timeout:g} s): a search now would miss "
                "hits. After a restart every index is rebuilt from the stored vectors in "
                "the background; retry later, or allow a longer wait (hub.index_wait)",
                percent=round(100 * done, 1),
            )
        yield Sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def scan_page(cursor: int, pattern: str, count: int = BATCH) -> Flow[tuple[int, list[bytes]]]:
    """One SCAN page of keys matching ``pattern``: (next cursor, keys); cursor 0 ends."""
    reply = yield Command(("SCAN", cursor, "MATCH", pattern, "COUNT", count))
    next_cursor, keys = reply
    return int(next_cursor), list(keys)


def _scan_batches(pattern: str, act: Callable[[list[bytes]], Flow[int]]) -> Flow[int]:
    """``act`` on every key matching ``pattern``, :data:`BATCH` keys at a time (SCAN may
    repeat a key; ``act`` must be idempotent); returns the sum of what ``act`` returned."""
    total = 0
    batch: list[bytes] = []
    cursor = -1
    while cursor != 0:
        cursor, keys = yield from scan_page(max(cursor, 0), pattern)
        batch += keys
        if len(batch) >= BATCH or (cursor == 0 and batch):
            total += yield from act(batch)
            batch = []
    return total


def existing_spaces(names: list[str]) -> Flow[list[str]]:
    """Those of ``names`` that are spaces now: their config exists and no role dropped them
    (rediscache.registry.Registry.drop_space); a space this connection's ACL user may not
    read counts as none. One round trip."""
    if not names:
        return []
    commands: list[tuple[Any, ...]] = []
    for name in names:
        keys = SpaceKeys.for_space(name)
        commands += [("EXISTS", keys.config), ("EXISTS", keys.dropped)]
    found = yield Pipeline(commands, raise_on_error=False)  # NOPERM replies as values
    return [
        name
        for name, has, dropped in zip(names, found[0::2], found[1::2])
        if not isinstance(has, Exception) and has and dropped == 0
    ]


def may_scan() -> Flow[bool]:
    """Whether this connection's ACL user may run SCAN: an owner may; a role on spaces may
    not (SCAN lists the keys of every space; rediscache.access). One round trip."""
    try:
        yield Command(("SCAN", 0, "COUNT", 1))
    except redis.exceptions.NoPermissionError:
        return False
    return True


def may_create_index(keys: SpaceKeys) -> Flow[bool]:
    """Whether this connection's ACL user may create indexes in the space ``keys`` (admins
    and owners may; rediscache.access). One round trip that can create nothing: an
    FT.CREATE with an invalid ON type is refused by the ACL check (NOPERM) before
    RediSearch parses it, or else by RediSearch's parser."""
    try:
        yield Command(("FT.CREATE", keys.prefix + "g0:probe", "ON", "NONE", "SCHEMA", "f", "TAG"))
    except redis.exceptions.NoPermissionError:
        return False
    except redis.ResponseError:
        return True
    raise ServerError("FT.CREATE accepted an invalid index type (ON NONE): unknown server")


def index_batches(index: str, act: Callable[[list[bytes]], Flow[int]], wait: float) -> Flow[int]:
    """``act`` on the keys of every document of ``index``, :data:`BATCH` keys at a time,
    read with an aggregate cursor (no SCAN: what a role on a space may run); returns the sum
    of what ``act`` returned. Waits first (at most ``wait`` seconds, one FT.INFO per 0.1 s)
    until the index is complete, so that no document is missed.

    Raises:
        IndexBuildingError: the index is still being built after ``wait`` seconds.
    """
    yield from wait_listable(index, wait)
    return (yield from aggregate_keys(index, act, BATCH))


def wait_listable(index: str, wait: float, info: object = None) -> Flow[None]:
    """Wait until ``index`` has indexed every document of its prefix (one FT.INFO per
    0.1 s; ``info``: an FT.INFO reply already read), so that a listing through it misses
    none. Raises IndexBuildingError after ``wait`` seconds."""
    deadline = time.monotonic() + wait
    if info is None:
        info = yield Command(("FT.INFO", index))
    while (done := index_done(info)) < 1:
        if time.monotonic() >= deadline:
            raise IndexBuildingError(
                f"index {index!r} is still being built ({100 * done:.1f}% done, waited "
                f"{wait:g} s): its documents cannot all be listed yet; retry later",
                percent=round(100 * done, 1),
            )
        yield Sleep(0.1)
        info = yield Command(("FT.INFO", index))


def aggregate_page(index: str, cursor: int, step: int) -> Flow[tuple[list[bytes], int]]:
    """One read of an aggregate cursor over the document keys of ``index``: the keys (about
    ``step``) and the next cursor (0: the last page). ``cursor`` 0 opens a new cursor (each
    read costs O(step), wherever it is in the index)."""
    if cursor:
        reply = yield Command(("FT.CURSOR", "READ", index, cursor, "COUNT", step))
    else:
        reply = yield Command(
            (
                "FT.AGGREGATE",
                index,
                "*",
                "LOAD",
                1,
                "@__key",
                "WITHCURSOR",
                "COUNT",
                step,
                *NO_TIMEOUT,
            )
        )
    rows, after = reply
    return [row[1] for row in rows[1:] if len(row) >= 2], int(after)


def aggregate_keys(index: str, act: Callable[[list[bytes]], Flow[int]], step: int) -> Flow[int]:
    """``act`` on the keys of the documents ``index`` holds now, ``step`` per read of an
    aggregate cursor (:func:`aggregate_page`); returns the sum of what ``act`` returned.
    Whether the index is complete is the caller's concern."""
    total, cursor = 0, 0
    while True:
        batch, cursor = yield from aggregate_page(index, cursor, step)
        if batch:
            total += yield from act(batch)
        if not cursor:
            return total


class KeyPages:
    """The document keys of generation ``gen``, page by page (about ``count`` per page; a
    key may come twice with SCAN): SCAN over its prefix for a user who may run it, else
    (a role on spaces: SCAN lists every space's keys) its vector index, or its listing
    index when it has no vector index, read with an aggregate cursor once it is complete
    (waiting at most ``wait`` seconds). ``done`` once the last page was returned.

    Raises (from :meth:`next`):
        IndexBuildingError: a role's listing index is still being built after ``wait``.
    """

    def __init__(self, gen: GenKeys, count: int, wait: float = INDEX_TIMEOUT) -> None:
        self.gen = gen
        self.count = count
        self.wait = wait
        self.done = False
        self._scan: bool | None = None
        self._cursor = -1
        self._index: str | None = None

    @property
    def by_scan(self) -> bool:
        """Whether the pages come from SCAN (which expires the keys it visits)."""
        return bool(self._scan)

    def next(self) -> Flow[list[bytes]]:
        """The next page of keys (possibly empty before the last)."""
        if self._scan is None:
            self._scan = yield from may_scan()
        if self._scan:
            cursor, keys = yield from scan_page(
                max(self._cursor, 0), self.gen.doc_scan_pattern(), self.count
            )
            self._cursor = cursor
            self.done = cursor == 0
            return keys
        if self._index is None:
            self._index = yield from self._complete_index()
            self._cursor = 0
        keys, self._cursor = yield from aggregate_page(self._index, self._cursor, self.count)
        self.done = self._cursor == 0
        return keys

    def _complete_index(self) -> Flow[str]:
        for index in (self.gen.index, self.gen.listing):
            try:
                info = yield Command(("FT.INFO", index))
            except redis.ResponseError as exc:
                if not _unknown_index(exc):
                    raise
                if index == self.gen.index:
                    continue
                # neither: a version a writer copied; an admin lists it with a light
                # index made now (the collector drops it later), a reader or writer may not
                try:
                    yield from create_listing(self.gen, existing=True)
                except redis.exceptions.NoPermissionError as denied:
                    raise no_index_yet(self.gen) from denied
                info = yield Command(("FT.INFO", index))
            yield from wait_listable(index, self.wait, info)
            return index
        raise AssertionError("unreachable")


def copy_generation(src: GenKeys, dst: GenKeys, config: str, lease: scripts.Lease) -> Flow[None]:
    """Copy every document of ``src`` into ``dst`` under the copy's ``lease`` (key, token),
    renewed to :data:`FORK_LEASE_MS` at every batch (copy_docs.lua: :data:`BATCH` documents
    a call with COPY, :data:`SCRIPT_BATCH` field by field for a role). The space's
    ``config`` hash counts the copies on the server (field ``copied``), which the commit
    checks against the space's size: a batch sent again after its reply was lost, or a key
    SCAN returned twice, is neither copied nor counted twice, and a failover that loses a
    batch's copies loses its count too. The documents are found by SCAN over ``src``'s
    prefix, or for a user who may not SCAN (a role on spaces) through ``src``'s index once
    it is complete. Stops early when the lease is no longer this copy's (the commit then
    reports it)."""
    plen = len(src.doc_prefix)
    target = dst.doc_prefix.encode()
    by_copy = yield from may_scan()
    size = BATCH if by_copy else SCRIPT_BATCH

    def copy(batch: list[bytes]) -> Flow[int]:
        for i in range(0, len(batch), size):
            part = batch[i : i + size]
            call = scripts.copy_docs_call(
                lease, config, part, [target + rk[plen:] for rk in part],
                lease_ms=FORK_LEASE_MS, by_copy=by_copy,
            )  # fmt: skip
            if not (yield from scripts.run(call)):
                raise _LeaseLost
        return 0

    with contextlib.suppress(_LeaseLost):
        if by_copy:
            yield from _scan_batches(src.doc_scan_pattern(), copy)
        else:
            yield from index_batches(src.index, copy, INDEX_TIMEOUT)


class _LeaseLost(Exception):
    """Raised inside :func:`copy_generation` to stop a copy whose lease was taken over."""


def take_lease(key: str, token: str, ms: int) -> Flow[bool]:
    """Take the lease ``key`` for ``token`` for ``ms`` milliseconds if no one holds it
    (``SET NX PX``); True when it is ``token``'s. The lease is read back in the same round
    trip, so a round trip sent again after its reply was lost (where ``SET NX`` answers
    nil for the lease its first send took) still finds it this caller's. One round trip."""
    _, held = yield Pipeline([("SET", key, token, "NX", "PX", ms), ("GET", key)])
    return bool(held == token.encode())


def unlink_matching(pattern: str) -> Flow[int]:
    """UNLINK every key matching ``pattern``, 1,000 per round trip; returns how many."""

    def unlink(batch: list[bytes]) -> Flow[int]:
        return int((yield Command(("UNLINK", *batch))))

    return (yield from _scan_batches(pattern, unlink))
