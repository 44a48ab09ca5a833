"""Deleting the generations nothing uses any more (garbage), in small steps, in the
background.

A generation becomes garbage in the same script that stops using it (a rollback or publish
that replaced it, a deleted version, a discarded stage, an abandoned copy): the script adds
it to the space's garbage set ``rc:{s}:garbage``. Deleting its documents is then work that
grows with their number, so it happens after the call returns (a :class:`Background`
effect: a thread of the sync hub, a task of the asyncio one), in steps that each block the
server for about a millisecond, and it survives a crash of the client or the server:

1. **List** the generation's documents into a set (``rc:{s}:g<g>:gc``) by reading its
   listing index (a stage's ``g<g>:ls``) or its vector index with an aggregate cursor, 500
   keys per step. Nothing scans the keyspace, so other spaces' keys (a million of them)
   cost nothing. The listing is complete when it holds as many documents as the
   generation counts (``n:<g>``), or when the index says it is fully indexed; a listing
   cut short by a crash is made again (adding to a set is idempotent). Then the config
   field ``gc:<g>`` records "listed".
2. **Drop** the generation's indexes (FT.DROPINDEX without DD: about 0.1-0.5 ms; deleting
   documents while an HNSW index holds them costs about 0.4-1 ms each, the graph being
   repaired at every deletion).
3. **Unlink** the listed documents, 500 per step (SRANDMEMBER, UNLINK, SREM: idempotent),
   then forget the generation (its set, count, mark and garbage entry).

One collector works on a space at a time (a lease ``rc:{s}:gclock``, renewed at every
step); others leave the work to it. A generation that has no index at all (a copy cut
before it was indexed) is listed by SCAN over its prefix: the one case where the collection
visits other keys.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any, NamedTuple

import redis

from . import generations, scripts
from .config import GarbageInfo
from .effects import Background, Command, Flow, Pipeline, Sleep
from .errors import ServerError
from .ftsearch import index_done
from .generations import (
    aggregate_keys,
    listing_args,
    may_scan,
    parse_versions,
    scan_page,
)
from .keys import STAGE_PREFIX, GenKeys, SpaceKeys
from .state import STATE_FIELD

__all__ = ["LEASE_MS", "STEP", "GarbageInfo", "collect_garbage", "garbage_info", "in_background"]

#: Keys listed or unlinked per step.
STEP = 500
#: Lease of the collector of a space (ms), renewed at every step; when the collector dies,
#: another takes over after it.
LEASE_MS = 30_000
#: Mark of a generation whose documents are all listed (config field ``gc:<g>``).
LISTED = "listed"


def garbage_info(keys: SpaceKeys) -> Flow[GarbageInfo]:
    """What the space ``keys`` still has to delete. Two round trips."""
    members = yield Command(("SMEMBERS", keys.garbage))
    gens = tuple(sorted(int(g) for g in members))
    if not gens:
        return GarbageInfo((), 0)
    commands: list[tuple[Any, ...]] = []
    for g in gens:
        gen = keys.gen(g)
        commands += [
            ("HMGET", keys.config, gen.count_field, gen.listed_field),
            ("SCARD", gen.doomed),
        ]
    replies = yield Pipeline(commands)
    documents = 0
    for (count, mark), listed in zip(replies[::2], replies[1::2]):
        documents += int(listed) if mark == LISTED.encode() else int(count or 0)
    return GarbageInfo(gens, documents)


def in_background(keys: SpaceKeys, ready: set[int]) -> Flow[None]:
    """Start :func:`collect_garbage` of the space ``keys`` after the caller's call,
    without waiting for it (a :class:`Background` effect)."""
    yield Background(lambda: collect_garbage(keys, ready), keys.prefix + "gc")


class Lease(NamedTuple):
    """The collector's lease: its key and this collector's token in it."""

    key: str
    token: str


class _LeaseLost(Exception):
    """The lease is not this collector's any more: another took over after it expired, or
    the space was dropped (its lease went with it) and perhaps created again."""


def _held(lease: Lease) -> Flow[None]:
    """Raise _LeaseLost unless ``lease`` is still ours (one GET): checked before each step
    that changes something, so that a collector of a dropped space never touches the keys
    of a space created again under its name."""
    if (yield Command(("GET", lease.key))) != lease.token.encode():
        raise _LeaseLost


def _drop_index(lease: Lease, index: str) -> Flow[None]:
    """FT.DROPINDEX ``index`` (documents kept) while the lease is ours, in one script."""
    call = scripts.gc_drop_index_call(lease.key, index, token=lease.token)
    if (yield from scripts.run(call)) is None:
        raise _LeaseLost


def collect_garbage(keys: SpaceKeys, ready: set[int], *, wait: bool = False) -> Flow[int]:
    """Delete every garbage generation of the space ``keys`` that neither the live space,
    a version nor a stage uses (``ready`` forgets them); returns the documents deleted.
    Idempotent and crash-safe (see the module docstring). When another collector holds
    the space's lease, returns 0 at once, or with ``wait`` waits for it to finish."""
    lease = Lease(keys.gc_lock, uuid.uuid4().hex)
    while not (yield from generations.take_lease(lease.key, lease.token, LEASE_MS)):
        if not wait:
            return 0
        yield Sleep(0.05)
    try:
        deleted = yield from _collect(keys, ready, lease)
    except _LeaseLost:
        return 0  # the space was dropped, or another collector took over: it is theirs
    except GeneratorExit:
        raise  # the flow was dropped unfinished: nothing more may be sent (the lease expires)
    except BaseException:  # failed, cancelled, interrupted, or its hub closes
        yield from _release(lease)
        raise
    yield from _release(lease)
    return deleted


def _release(lease: Lease) -> Flow[None]:
    """Release the collector's lease while it is still ours (fork_abort.lua: DEL when GET
    is our token)."""
    with contextlib.suppress(redis.RedisError, ServerError):
        yield from scripts.run(scripts.fork_abort_call(lease.key, token=lease.token))


def _collect(keys: SpaceKeys, ready: set[int], lease: Lease) -> Flow[int]:
    deleted = 0
    while True:
        members = yield Command(("SMEMBERS", keys.garbage))
        in_use, not_staged = yield from _in_use(keys)
        yield from _drop_stale_listings(keys, not_staged, lease)
        if not members:
            return deleted
        for g in sorted(int(m) for m in members):
            if g not in in_use:
                deleted += yield from _delete_generation(keys, keys.gen(g), lease)
                ready.discard(g)
            yield from _held(lease)
            yield Command(("SREM", keys.garbage, g))


def _in_use(keys: SpaceKeys) -> Flow[tuple[set[int], set[int]]]:
    """Generations the live space, a version or an open stage uses; and those the live
    space or a version uses that are no stage's."""
    raw_config, raw_versions = yield Pipeline(
        [("HGETALL", keys.config), ("HGETALL", keys.versions)]
    )
    used = {g for _, g in parse_versions(raw_versions, keys.name).values()}
    state = raw_config.get(STATE_FIELD.encode())
    if isinstance(state, bytes):
        used.add(int(state.split(b" ")[1]))
    staged: set[int] = set()
    for field, value in raw_config.items():
        if field.startswith(STAGE_PREFIX.encode()):
            gen, _, phase = value.split(b" ")[:3]
            staged.add(int(gen))
            # a stage whose copy was cut ("copy") holds nothing: its generation was made
            # garbage by the writer that took the copy over, or is by stage_drop.lua
            if phase == b"open":
                used.add(int(gen))
    return used, used - staged


def _drop_stale_listings(keys: SpaceKeys, gens: set[int], lease: Lease) -> Flow[None]:
    """Drop the listing index of these generations (the live one, versions') if one is
    left: publish drops a stage's, and a client that died right after publishing left it,
    slowing every write of the live space. One FT._LIST."""
    names = yield from generations.listed_indexes(keys.config)
    for g in sorted(gens):
        listing = keys.gen(g).listing
        if listing in names:
            yield from _drop_index(lease, listing)


def _delete_generation(keys: SpaceKeys, gen: GenKeys, lease: Lease) -> Flow[int]:
    """List, drop the indexes of, and unlink generation ``gen``; returns documents deleted.
    Every step that changes something checks first that the lease is still ours (the
    deletions in the same script: gc_unlink.lua)."""
    doomed = gen.doomed
    mark = yield Command(("HGET", keys.config, gen.listed_field))
    if mark != LISTED.encode():
        yield from _list(keys, gen, doomed, lease)
        yield from _config_step(lease, keys, gen, "listed", [gen.listed_field, LISTED])
    for index in (gen.index, gen.listing):
        yield from _drop_index(lease, index)
    deleted = 0
    while True:
        batch = yield Command(("SRANDMEMBER", doomed, STEP))
        if not batch:
            break
        call = scripts.gc_unlink_call(
            lease.key, doomed, batch, token=lease.token, lease_ms=LEASE_MS
        )
        done = yield from scripts.run(call)
        if done is None:
            raise _LeaseLost
        deleted += done
    fields = [gen.count_field, gen.listed_field, gen.built_field]
    yield from _config_step(lease, keys, gen, "forget", [gen.gen, *fields])
    return deleted


def _config_step(
    lease: Lease, keys: SpaceKeys, gen: GenKeys, step: str, args: list[Any]
) -> Flow[None]:
    """gc_config.lua's ``step`` while the lease is ours (else _LeaseLost)."""
    targets = [keys.config, gen.doomed, keys.garbage]
    if not (yield from scripts.run(scripts.gc_config_call(lease, targets, step, args))):
        raise _LeaseLost


def _list(keys: SpaceKeys, gen: GenKeys, doomed: str, lease: Lease) -> Flow[None]:
    """Fill ``doomed`` with every document of ``gen``, read from one of its indexes with an
    aggregate cursor, :data:`STEP` keys per read (each read costs O(page), wherever it is
    in the index), once that index is complete."""
    index = yield from _listing_index(gen)
    if index is None:
        if (yield from may_scan()):
            yield from _scan_list(keys, gen, lease)
            return
        # a role (no SCAN): a copy its writer could not index gets a listing index now
        yield from _create_listing(lease, gen)
        index = gen.listing
    counted = yield from _trusted_count(keys, gen)

    def add(batch: list[bytes]) -> Flow[int]:
        yield from _config_step(lease, keys, gen, "list", [LEASE_MS, *batch])
        return len(batch)

    while True:
        # A generation without a count trusts its index, judged complete before the read:
        # found complete afterwards, it may have finished its build during the read, which
        # then missed what it indexed last.
        built = counted is None and (yield from _built(index))
        yield from aggregate_keys(index, add, STEP)
        if built or (counted is not None and int((yield Command(("SCARD", doomed)))) >= counted):
            return
        yield Command(("PEXPIRE", lease.key, LEASE_MS))
        yield Sleep(0.5)  # the index is still being built (after a restart): list again


def _listing_index(gen: GenKeys) -> Flow[str | None]:
    """The index that lists ``gen``'s documents: its listing index, else its vector index,
    else None. FT._LIST, not FT.INFO: its cost does not grow with the indexes' size."""
    names = yield from generations.listed_indexes(gen.listing)
    for index in (gen.listing, gen.index):
        if index in names:
            return index
    return None


def _scan_list(keys: SpaceKeys, gen: GenKeys, lease: Lease) -> Flow[None]:
    """Fill the generation's set of listed documents by SCAN over ``gen``'s prefix,
    :data:`STEP` keys per page, each page added while the lease is ours: for a generation
    without any index (a copy cut before it was indexed), the one case where the collection
    visits other keys. A full SCAN returns every key that existed all along."""
    cursor = -1
    while cursor != 0:
        cursor, batch = yield from scan_page(max(cursor, 0), gen.doc_scan_pattern(), STEP)
        yield from _config_step(lease, keys, gen, "list", [LEASE_MS, *batch])


def _create_listing(lease: Lease, gen: GenKeys) -> Flow[None]:
    """FT.CREATE ``gen``'s listing index over its documents while the lease is ours, in
    one script (a drop deletes the lease first: no index is left behind it)."""
    args = listing_args(gen, existing=True)
    call = scripts.gc_create_listing_call(lease.key, gen.listing, args, token=lease.token)
    if (yield from scripts.run(call)) is None:
        raise _LeaseLost


def _built(index: str) -> Flow[bool]:
    """Whether ``index`` has indexed every document of its prefix (one FT.INFO)."""
    try:
        info = yield Command(("FT.INFO", index))
    except redis.ResponseError:
        return False
    return index_done(info) >= 1


def _trusted_count(keys: SpaceKeys, gen: GenKeys) -> Flow[int | None]:
    """The generation's count when it vouches for a listing: a positive count, kept exact by
    every write, in a space whose entries never expire (a count of 0 may be a generation
    never counted: a copy cut short). None otherwise. One round trip."""
    count, expiring = yield Command(("HMGET", keys.config, gen.count_field, "expiring"))
    if count is None or int(count) <= 0 or expiring == b"1":
        return None
    return int(count)
