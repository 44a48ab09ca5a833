"""Partitioned spaces: one space spread over P partitions, each with its own hash tag and
index, so that a Redis Cluster holds and searches them on different shards
(``create_space(..., partitions=P)``; docs/scale.md).

The unit is the partition: a :class:`rediscache.space.SpaceParts` over a
:class:`rediscache.target.Target` of the partition's keys (``rc:{items#n}:...``), which is
exactly a space's machinery (writes, reads, searches, versions, scripts, collector); no
code of a space is copied here. A :class:`PartitionSet` routes each key to its partition
(:func:`rediscache.keys.partition_of`: CRC-32 of the key modulo P), runs the partitions'
flows of one call together (:func:`gather`: their round trips merged into one, which the
cluster's driver splits per node and sends before reading any reply) and merges what they
answer (searches: the P top-k lists by distance, ties by key).

Versions across partitions (the protocol; tests/integration/test_partitioned.py):

* The root (``rc:{items}:cfg``) holds the space's *release*, a number that grows by one at
  every rollback or publish, and each partition's config holds the release it is at: ``"<n>"``, or
  ``"~<n>"`` while it switches to release n. A version of the space is one version per
  partition (the root's ``ver`` hash lists their ids).
* A switch (rollback) first waits for every partition's version to be searchable (nothing
  visible changes), then takes the root's lease, records its intent in the root
  (``switch``: the release and the versions), and for each partition in turn marks it
  ``~n``, rolls it back (one script, atomic for that partition) and marks it ``n``; then
  the root's release becomes n and the intent goes.
* Every read of several partitions reads each partition's release mark just before the
  commands whose replies it keeps (in the same round trip), and checks the partition's
  state after them, as every read does: the state did not change in between (states never
  repeat), so the replies are from the release read. The answer is taken only when every
  partition answered at one release, none of them switching; otherwise it is read again
  (a switch takes a few round trips per partition). So a reader never sees partition 1
  at version A and partition 2 at version B (:func:`gather`).
* A switch interrupted (its client killed) leaves the intent and a lease that expires
  within :data:`SWITCH_LEASE_MS`: then a waiting reader (it tries every
  :data:`SWITCH_STALL` seconds), or the next switch or snapshot, completes it (each
  partition already at the intent's release is skipped: idempotent). A reader that cannot
  (a reader role may not write) waits at most :data:`SWITCH_WAIT` seconds, then raises
  :class:`rediscache.errors.StaleStateError`.
* ``publish`` of a stage (a stage of that label in every partition) is the same switch
  with each partition's publish in place of its rollback; the intent records the stage,
  and the ids of the versions kept so far (a partition published by a client that died
  before recording it kept its newest version), so it is completed the same way.
* Snapshots take the same lease: a snapshot never straddles a switch. Writes are atomic
  per partition, not across partitions (a put_many racing a rollback may be kept in some
  partitions and undone in others, as each of its chunks is on one space).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from operator import attrgetter
from typing import Any, Literal, NoReturn

import numpy as np
import numpy.typing as npt
from redis.exceptions import NoPermissionError

from . import generations, query, scripts, vecmath
from .codec import VectorCodec, check_flag, check_int, check_keys
from .config import GarbageInfo, SpaceConfig, SpaceInfo
from .context import HubContext
from .drive import IterOp, Local, Op, SyncFacade, sync_op
from .effects import Command, Flow, Pipeline, Roundtrip, Sleep
from .errors import (
    InvalidInputError,
    KeyNotFoundError,
    PermissionDeniedError,
    ReadOnlyError,
    ServerError,
    StageNotFoundError,
    StaleStateError,
    VersionNotFoundError,
)
from .generations import Version, VersionRef, parse_versions
from .keys import SpaceKeys, partition_of
from .operations import Averaged
from .reads import CHUNK, Batch, BatchScan, Hit, Record, vector_rows
from .search import check_ef, check_exclude, check_page, check_window
from .space import HubHandle, SpaceParts, StageParts, ViewParts
from .stages import StageInfo
from .state import RELEASE_FIELD, SpaceState
from .target import Target
from .versions import check_label, check_ref, find_version
from .writes import VectorsUpdated, Writes, vectors_updated

__all__ = [
    "SWITCH_LEASE_MS", "SWITCH_STALL", "SWITCH_WAIT", "PartitionSet", "PartitionedSpace",
    "PartitionedStage", "PartitionedStageSurface",
    "PartitionedSurface", "PartitionedVersionView", "PartitionedViewSurface", "gather",
    "merge_hits",
]  # fmt: skip

#: Milliseconds a switch or snapshot holds the root's lease without renewing it (renewed
#: before and after each partition's step, a few round trips): a client killed meanwhile
#: holds back the next switch, and readers of a switch it left half done, that long.
SWITCH_LEASE_MS = 5_000
#: Seconds between a waiting reader's attempts to complete a switch left half done (each
#: succeeds once the dead switcher's lease expired).
SWITCH_STALL = 1.0
#: Seconds a reader waits in all for the partitions to agree before StaleStateError.
SWITCH_WAIT = 30.0

#: The root config field recording a switch under way (JSON: release, versions).
SWITCH_FIELD = "switch"


def gather(
    flows: list[Flow[Any]], marks: list[str] | None = None
) -> Flow[tuple[list[Any], list[Any]]]:
    """Run ``flows`` together: whenever several of them wait for a :class:`Roundtrip`,
    their commands go in one round trip (split per node on a cluster, every node's part
    sent before any reply is read); other effects are performed one at a time. Returns
    the flows' results, and with ``marks`` (one config key per flow) the release field of
    that config as read just before each flow's last effect: in the same round trip, ahead
    of its commands, for a round trip; in a round trip of its own before any other effect.
    A flow that checks its state in its last effect (every read does) then answered from
    the release read: its state was the same from before the mark was read until the
    check (states never repeat), so no switch ran in between. An exception a flow does
    not handle is raised once the other flows are closed."""
    n = len(flows)
    results: list[Any] = [None] * n
    seen: list[Any] = [None] * n
    pending: dict[int, Any] = {}

    def advance(i: int, value: Any, error: BaseException | None) -> None:
        try:
            effect = flows[i].send(value) if error is None else flows[i].throw(error)
        except StopIteration as stop:
            results[i] = stop.value
            pending.pop(i, None)
            return
        pending[i] = effect

    try:
        for i in range(n):
            advance(i, None, None)
        while pending:
            trips = [i for i, effect in pending.items() if type(effect) is Roundtrip]
            if not trips:
                i = next(iter(pending))
                try:
                    if marks is not None and type(pending[i]) is not Sleep:
                        seen[i] = (yield Roundtrip([("HGET", marks[i], RELEASE_FIELD)]))[0]
                    value = yield pending[i]
                except Exception as exc:
                    advance(i, None, exc)
                else:
                    advance(i, value, None)
                continue
            commands: list[tuple[Any, ...]] = []
            spans: list[tuple[int, int, int]] = []
            late: dict[int, Exception | None] = {}
            waiting: list[tuple[int, Callable[[], Exception | None]]] = []
            for i in trips:
                trip = pending[i]
                if marks is not None:
                    commands.append(("HGET", marks[i], RELEASE_FIELD))
                first = len(commands)
                commands.extend(trip.commands)
                spans.append((i, first, len(commands)))
                if trip.meanwhile is not None:
                    waiting.append((i, trip.meanwhile))

            def meanwhile(
                waiting: list[tuple[int, Callable[[], Exception | None]]] = waiting,
                late: dict[int, Exception | None] = late,
            ) -> Exception | None:
                for i, check in waiting:
                    late[i] = check()
                return None

            try:
                replies = yield Roundtrip(commands, None, meanwhile if waiting else None)
            except Exception as exc:
                for i in trips:  # each flow handles (or re-raises) the failure
                    advance(i, None, exc)
                continue
            for i, first, last in spans:
                if marks is not None:
                    seen[i] = replies[first - 1]
                error = late.get(i)
                advance(i, replies[first:last] if error is None else None, error)
    finally:
        for flow in flows:
            flow.close()
    return results, seen


def merge_hits(lists: Sequence[list[Hit]], k: int, offset: int = 0) -> list[Hit]:
    """The hits ``offset`` to ``offset + k`` of the union of ranked lists (nearest first,
    ties by key: the order does not depend on which partition answered first). Pure."""
    merged = sorted((hit for hits in lists for hit in hits), key=lambda h: (h.distance, h.key))
    return merged[offset : offset + k]


def _release(mark: Any) -> int | None:
    """A partition's release from its mark; None while it switches (or has none)."""
    if not isinstance(mark, bytes) or mark.startswith(b"~"):
        return None
    return int(mark)


class PartitionSet:
    """The partitions of one partitioned space (or of one of its versions: ``parts`` are
    then the partitions' version views' parts, which need no release check), and the
    flows of the space's calls over them. Built without I/O from what
    :meth:`rediscache.Hub.space` read."""

    def __init__(
        self,
        config: SpaceConfig,
        parts: list[SpaceParts],
        context: HubContext,
        *,
        live: bool = True,
        version: Version | None = None,
        stage: str | None = None,
        owner: PartitionSet | None = None,
    ) -> None:
        self.config = config
        self.keys = SpaceKeys.for_space(config.name)
        self.codec = VectorCodec(config.dim, config.dtype, config.metric)
        self.context = context
        self.parts = parts
        self.size = len(parts)
        self.live = live
        self.pinned = version
        #: A stage's label, and the live partitions it belongs to (for its publish).
        self.stage_label = stage
        self.owner = owner
        self.marks = [p.target.keys.config for p in parts] if live else None

    @classmethod
    def of(cls, config: SpaceConfig, found: list[tuple[SpaceConfig, SpaceState]],
           context: HubContext) -> PartitionSet:  # fmt: skip
        """The live partitions of ``config`` from each partition's config and state."""
        return cls(config, [SpaceParts(Target(c, s, context)) for c, s in found], context)

    def where(self) -> str:
        """How messages name the space."""
        if self.pinned is not None:
            return f"version {self.pinned} of space {self.keys.shown}"
        if self.stage_label is not None:
            return f"stage {self.stage_label!r} of space {self.keys.shown}"
        return f"space {self.keys.shown}"

    def part_of(self, key: str) -> Any:
        """The parts of the partition holding ``key``."""
        return self.parts[partition_of(key, self.size)]

    def groups(self, keys: list[str]) -> dict[int, list[int]]:
        """Positions of ``keys`` by partition (partitions in order)."""
        out: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            out.setdefault(partition_of(key, self.size), []).append(i)
        return dict(sorted(out.items()))

    # ------------------------------------------------------------ reads at one release

    def together(
        self, make: Callable[[int], Flow[Any]], which: Collection[int]
    ) -> Flow[dict[int, Any]]:
        """The results of ``make(n)`` for each partition n of ``which``, run together
        (:func:`gather`) and taken only when every partition answered at one release
        (none switching): otherwise run again, completing a switch whose client died
        (module docstring). Raises StaleStateError after :data:`SWITCH_WAIT` seconds."""
        order = list(which)
        began = time.monotonic()
        stalled = began
        while True:
            flows = [make(n) for n in order]
            if self.marks is None or len(order) < 2:
                results = (yield from gather(flows))[0]
                return dict(zip(order, results, strict=True))
            marks = [self.marks[n] for n in order]
            results, seen = yield from gather(flows, marks)
            releases = {_release(m) for m in seen}
            if len(releases) == 1 and None not in releases:
                return dict(zip(order, results, strict=True))
            now = time.monotonic()
            if now - stalled > SWITCH_STALL:
                stalled = now
                with contextlib.suppress(PermissionDeniedError, NoPermissionError):
                    yield from self.finish_switch()
            if now - began > SWITCH_WAIT:
                raise StaleStateError(
                    f"the partitions of space {self.keys.shown} stayed at different releases "
                    f"for {SWITCH_WAIT:g} s (a rollback whose client died, which this user may "
                    "not complete: an admin's next call does); retry"
                )
            yield Sleep(0.002)

    def get(self, key: str, *, refresh_ttl: bool | float = False) -> Flow[npt.NDArray[Any] | None]:
        """The vector stored under ``key``, or None (:meth:`rediscache.Space.get`): one
        round trip to its partition.

        Raises:
            InvalidInputError: a bad key or refresh_ttl."""
        key = check_keys([key], "key")[0]
        vector: npt.NDArray[Any] | None
        vector = yield from self.part_of(key).reads.get(key, refresh_ttl=refresh_ttl)
        return vector

    def get_many(
        self,
        keys: Sequence[str],
        *,
        missing: Literal["raise", "nan"] = "raise",
        refresh_ttl: bool | float = False,
    ) -> Flow[npt.NDArray[Any]]:
        """Vectors of ``keys`` as an (n, dim) array in input order
        (:meth:`rediscache.Space.get_many`): one round trip to the partitions holding them,
        every row from one release of the space.

        Raises:
            InvalidInputError: bad keys, missing or refresh_ttl.
            KeyNotFoundError: missing keys with ``missing="raise"``."""
        key_list = check_keys(keys)
        if missing not in ("raise", "nan"):
            raise InvalidInputError("missing must be 'raise' or 'nan'")
        ms = self.parts[0].reads._refresh_ms(refresh_ttl)
        groups = self.groups(key_list)

        def fetch(n: int) -> Flow[Any]:
            return self.parts[n].reads.fetch([key_list[i] for i in groups[n]], ms)

        got = yield from self.together(fetch, groups)
        raws: list[bytes | None] = [None] * len(key_list)
        for n, positions in groups.items():
            for i, raw in zip(positions, got[n][0], strict=True):
                raws[i] = raw
        return vector_rows(self.codec, key_list, raws, missing, self.where())

    def get_record(self, key: str) -> Flow[Record | None]:
        """Vector and metadata of ``key``, or None: one round trip to its partition."""
        key = check_keys([key], "key")[0]
        record: Record | None = yield from self.part_of(key).reads.get_record(key)
        return record

    def get_metadata_many(self, keys: Sequence[str]) -> Flow[list[dict[str, Any] | None]]:
        """The metadata of ``keys`` in input order (:meth:`rediscache.Space.get_metadata_many`):
        one round trip to the partitions holding them, at one release."""
        key_list = check_keys(keys)
        groups = self.groups(key_list)

        def one(n: int) -> Flow[Any]:
            return self.parts[n].reads.get_metadata_many([key_list[i] for i in groups[n]])

        got = yield from self.together(one, groups)
        out: list[dict[str, Any] | None] = [None] * len(key_list)
        for n, positions in groups.items():
            for i, meta in zip(positions, got[n], strict=True):
                out[i] = meta
        return out

    def iter_batches(self, batch_size: int = CHUNK, *, with_metadata: bool = False) -> Batches:
        """Stream every embedding as ``(keys, vectors, metadata)`` batches, partition after
        partition (:meth:`rediscache.Space.iter_batches`: not a snapshot of the live space;
        a version's is exact)."""
        return Batches([p.reads.iter_batches(batch_size, with_metadata=with_metadata)
                        for p in self.parts])  # fmt: skip

    def count(self) -> Flow[int]:
        """The number of embeddings stored, in every partition at one release."""
        got = yield from self.together(lambda n: self.parts[n].reads.count(), range(self.size))
        return sum(got.values())

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
    ) -> Flow[list[Hit]]:
        """The ``k`` nearest embeddings to ``vector`` over every partition, nearest first
        (:meth:`rediscache.Space.search`, same arguments): the same query sent to each
        partition's index in one round trip, asking each for its ``offset + k`` nearest,
        and the lists merged (ties by key), from one release of the space. Recall: each
        partition's HNSW index searches a P-th of the data with the same ``ef``
        (docs/scale.md has the measured recall). Paging is checked as a space's is: in an
        HNSW space a page reaching past ``ef`` (``offset + k + len(exclude)``, which each
        partition is asked for) raises InvalidInputError."""
        k, offset = check_window(k, offset)
        skip = check_exclude(exclude)
        ef = check_ef(self.config, ef)
        check_page(self.config, offset, k, len(skip), ef)
        depth = offset + k

        def one(n: int) -> Flow[list[Hit]]:
            return self.parts[n].searches.search(
                vector, depth, filter=filter, ef=ef, with_vectors=with_vectors,
                with_metadata=with_metadata, exclude=skip,
            )  # fmt: skip

        got = yield from self.together(one, range(self.size))
        return merge_hits(list(got.values()), k, offset)

    def search_many(
        self,
        vectors: Any,
        k: int = 10,
        *,
        filter: query.FilterLike = None,
        ef: int | None = None,
        with_vectors: bool = False,
        with_metadata: bool = True,
    ) -> Flow[list[list[Hit]]]:
        """:meth:`search` for each row of an (n, dim) array: each partition's
        ``search_many`` in one round trip, merged per query."""
        k = check_int(k, "k", high=10_000)

        def one(n: int) -> Flow[list[list[Hit]]]:
            return self.parts[n].searches.search_many(
                vectors, k, filter=filter, ef=ef, with_vectors=with_vectors,
                with_metadata=with_metadata,
            )  # fmt: skip

        got = yield from self.together(one, range(self.size))
        rows = list(got.values())
        return [merge_hits([r[q] for r in rows], k) for q in range(len(rows[0]))]

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
    ) -> Flow[list[Hit]]:
        """Embeddings within distance ``radius`` of ``vector`` in every partition, nearest
        first, ``limit`` of them from ``offset`` (:meth:`rediscache.Space.within`)."""
        limit, offset = check_window(limit, offset, "limit")

        def one(n: int) -> Flow[list[Hit]]:
            return self.parts[n].searches.within(
                vector, radius, filter=filter, limit=offset + limit, with_vectors=with_vectors,
                with_metadata=with_metadata,
            )  # fmt: skip

        got = yield from self.together(one, range(self.size))
        return merge_hits(list(got.values()), limit, offset)

    def similar(
        self,
        key: str,
        k: int = 10,
        *,
        filter: query.FilterLike = None,
        ef: int | None = None,
        with_vectors: bool = False,
        with_metadata: bool = True,
    ) -> Flow[list[Hit]]:
        """Neighbours of the stored embedding ``key`` over every partition, excluding
        itself. Two round trips.

        Raises:
            KeyNotFoundError: ``key`` is not stored."""
        key = check_keys([key], "key")[0]
        vector = yield from self.get(key)
        if vector is None:
            raise KeyNotFoundError(f"{key!r} is not in {self.where()}", [key])
        return (
            yield from self.search(
                vector, k, filter=filter, ef=ef, with_vectors=with_vectors,
                with_metadata=with_metadata, exclude=[key],
            )
        )  # fmt: skip

    def info(self) -> Flow[SpaceInfo]:
        """Schema, count, memory and index state of the space: each partition's
        :meth:`rediscache.Space.info` in ``partitions``, added up in the other figures
        (``percent_indexed``: the least indexed partition's; ``generations`` empty: each
        partition lists its own). Four round trips per partition; an operator's call."""
        infos: list[SpaceInfo] = []
        for part in self.parts:
            infos.append((yield from part.reads.info()))
        garbage = [g.garbage for g in infos if g.garbage is not None]
        return dataclasses.replace(
            infos[0],
            name=self.config.name,
            count=sum(i.count for i in infos),
            indexing=any(i.indexing for i in infos),
            percent_indexed=min(i.percent_indexed for i in infos),
            index_failures=sum(i.index_failures for i in infos),
            vector_index_bytes=sum(i.vector_index_bytes for i in infos),
            memory_bytes=sum(i.memory_bytes for i in infos),
            live_memory_bytes=sum(i.live_memory_bytes for i in infos),
            generations=(),
            garbage=GarbageInfo(
                tuple(sorted({g for x in garbage for g in x.generations})),
                sum(x.documents for x in garbage),
            )
            if garbage
            else None,
            partitions=tuple(infos),
        )

    def purge_expired(self) -> Flow[int]:
        """:meth:`rediscache.Space.purge_expired` in every partition; the number purged."""
        total = 0
        for part in self.parts:
            total += yield from part.reads.purge_expired()
        return total

    def collect_garbage(self) -> Flow[int]:
        """:meth:`rediscache.Space.collect_garbage` in every partition; documents deleted."""
        total = 0
        for part in self.parts:
            total += yield from part.versions.collect_garbage()
        return total

    # ------------------------------------------------------------ writes

    def put(
        self,
        key: str,
        vector: Any,
        metadata: Mapping[str, Any] | None = None,
        *,
        ttl: float | None = None,
    ) -> Flow[None]:
        """Store one embedding in its partition (:meth:`rediscache.Space.put`). One round
        trip; atomic."""
        key = check_keys([key], "key")[0]
        yield from self.part_of(key).writes.put(key, vector, metadata, ttl=ttl)

    def put_many(
        self,
        keys: Sequence[str],
        vectors: Any,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        ttl: float | None = None,
    ) -> Flow[int]:
        """Store many embeddings (:meth:`rediscache.Space.put_many`): the whole batch is
        checked and encoded first (nothing written on bad input), then each partition's
        rows are written as one space's put_many writes them, partition after partition.

        Raises:
            InvalidInputError: bad keys, vectors, metadata or ttl (nothing written).
            ServerError: Redis failed mid-way; its ``stored`` lists the keys stored (a
                failure in the first partition's first chunk stored nothing and is raised
                as it is)."""
        first = self.parts[0].writes
        ttl_ms = first.ttl_ms(ttl)
        key_list, rows = first._prepare(keys, vectors, metadata)
        yield from self._write_parts(key_list, rows, ttl_ms, None, "put_many")
        return len(key_list)

    def update_vectors(
        self,
        keys: Sequence[str],
        vectors: Any,
        *,
        missing: str = "create",
        ttl: float | None = None,
    ) -> Flow[VectorsUpdated]:
        """Replace the vectors of ``keys``, keeping their metadata
        (:meth:`rediscache.Space.update_vectors`, same arguments and result): the batch is
        checked and encoded first, then written partition after partition (a failure's
        ``stored`` lists the rows written)."""
        first = self.parts[0].writes
        key_list, rows, ttl_ms = first._update_vectors_plan(keys, vectors, missing, ttl)
        created, skipped = yield from self._write_parts(
            key_list, rows, ttl_ms, missing, "update_vectors"
        )
        return vectors_updated(key_list, created, skipped)

    def _write_parts(
        self,
        key_list: list[str],
        rows: list[Any],
        ttl_ms: int | None,
        missing: str | None,
        what: str,
    ) -> Flow[tuple[int, list[int]]]:
        """Write checked and encoded ``rows`` (:meth:`Writes._prepare`: the same for every
        partition, which share the schema) partition after partition, each as its own
        space's writes do; returns documents created and the input positions left out
        (``missing="skip"``)."""
        created = 0
        skipped: list[int] = []
        done: list[str] = []
        for n, positions in self.groups(key_list).items():
            sub_keys = [key_list[i] for i in positions]
            try:
                made, left = yield from self.parts[n].writes._write_chunks(
                    sub_keys, [rows[i] for i in positions], ttl_ms, missing, what
                )
            except ServerError as exc:
                if not done and (exc.rows is None or exc.rows[0] == 0):
                    raise  # nothing was stored
                raise _partly(exc, done, sub_keys, what, self.where()) from exc
            created += made
            skipped += [positions[i] for i in left]
            done.extend(sub_keys)
        return created, sorted(skipped)

    def delete(self, *keys: str) -> Flow[int]:
        """Delete embeddings; returns how many existed. One call per partition holding
        some (each atomic)."""
        key_list = check_keys(list(keys))
        total = 0
        for n, positions in self.groups(key_list).items():
            total += yield from self.parts[n].writes.delete(*[key_list[i] for i in positions])
        return total

    # ------------------------------------------------------------ vector operations

    def _resolved(self, items: list[Any]) -> Flow[list[Any]]:
        """``items`` with every key (str) replaced by its stored vector, all read at one
        release (:meth:`get_many`). Raises KeyNotFoundError naming missing keys."""
        names = [x for x in items if isinstance(x, str)]
        if not names:
            return items
        rows = yield from self.get_many(names)
        found = dict(zip(names, rows, strict=True))
        return [found[x] if isinstance(x, str) else x for x in items]

    def average(
        self,
        keys: Sequence[str],
        *,
        weights: Any = None,
        into: str | None = None,
        normalize: bool = False,
        missing: Literal["raise", "skip"] = "raise",
    ) -> Flow[npt.NDArray[Any] | Averaged]:
        """The (weighted) mean of the stored vectors of ``keys``
        (:meth:`rediscache.Space.average`, same arguments and errors). Atomicity: the
        inputs are read in one round trip at one release of the space (never a mix of two
        versions); the mean is then stored into ``into``'s partition in a second step, so
        a write to an input in between is not in it (one space does both in one script)."""
        key_list = check_keys(keys)
        if not key_list:
            raise InvalidInputError("average needs at least one key")
        if missing not in ("raise", "skip"):
            raise InvalidInputError("missing must be 'raise' or 'skip'")
        w = vecmath.check_weights(weights, len(key_list), positive_sum=True)
        normalize = check_flag(normalize, "normalize")
        rows = yield from self.get_many(key_list, missing="nan" if missing == "skip" else "raise")
        used = ~np.isnan(rows[:, 0]) if len(rows) else np.zeros(0, dtype=bool)
        if not used.any():
            raise InvalidInputError(f"none of the keys to average are in {self.where()}")
        kept = w[used]
        if kept.sum() <= 0:
            raise InvalidInputError("the weights of the keys found sum to 0: nothing to average")
        mean = (rows[used].astype(np.float64) * kept[:, None]).sum(axis=0) / kept.sum()
        out = yield from self._combined([mean], [], None, into, normalize)
        if missing == "skip":
            skipped = tuple(k for k, u in zip(key_list, used, strict=True) if not u)
            return Averaged(out, int(used.sum()), len(skipped), skipped)
        return out

    def combine(
        self,
        add: Sequence[Any] = (),
        subtract: Sequence[Any] = (),
        *,
        weights: Any = None,
        into: str | None = None,
        normalize: bool = True,
    ) -> Flow[npt.NDArray[Any]]:
        """``sum(add) - sum(subtract)`` of stored keys and vector literals
        (:meth:`rediscache.Space.combine`, same arguments and errors). Atomicity as
        :meth:`average`: keys read at one release, ``into`` stored in a second step."""
        add_items = yield from self._resolved(list(add))
        sub_items = yield from self._resolved(list(subtract))
        return (yield from self._combined(add_items, sub_items, weights, into, normalize))

    def _combined(
        self, add: list[Any], subtract: list[Any], weights: Any, into: str | None, normalize: bool
    ) -> Flow[npt.NDArray[Any]]:
        """:meth:`rediscache.Space.combine` of vector literals, in ``into``'s partition
        (which stores the result there) or, without ``into``, in the first (no I/O)."""
        part = self.part_of(into) if into is not None else self.parts[0]
        out: npt.NDArray[Any] = yield from part.ops.combine(
            add, subtract, weights=weights, into=into, normalize=normalize
        )
        return out

    def update_mean(
        self, key: str, items: Sequence[Any], *, alpha: float | None = None
    ) -> Flow[npt.NDArray[Any]]:
        """Fold ``items`` (keys or vectors) into the running embedding ``key``
        (:meth:`rediscache.Space.update_mean`, same arguments and errors). Atomicity: the
        item keys are read at one release of the space; the fold is one script in
        ``key``'s partition, so concurrent updates of one key never lose an item."""
        key = check_keys([key], "key")[0]
        if isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
            raise InvalidInputError("items must be a non-empty list of keys or vectors")
        resolved = yield from self._resolved(list(items))
        out: npt.NDArray[Any] = yield from self.part_of(key).ops.update_mean(
            key, resolved, alpha=alpha
        )
        return out

    # ------------------------------------------------------------ versions

    def _table(self) -> Flow[dict[int, tuple[Version, list[int]]]]:
        """The root's versions table; first, for the live space, the state of its first
        partition: SpaceNotFoundError when the space was dropped, or dropped and made again
        since this handle was opened (a drop deletes the partitions first)."""
        if self.live:
            yield from self.parts[0].target.refresh()
        raw = yield Command(("HGETALL", self.keys.versions))
        table = parse_versions(raw, self.keys.name)
        return {
            vid: (v, json.loads(raw[str(vid).encode()])["parts"]) for vid, (v, _) in table.items()
        }

    def _resolve(self, ref: VersionRef) -> Flow[tuple[Version, list[int]]]:
        ref = check_ref(ref, self.keys.name)
        return find_version((yield from self._table()), ref, self.keys.name)

    def versions(self) -> Flow[list[Version]]:
        """The space's versions, oldest first. Two round trips (the first partition's
        state, then the root's table): SpaceNotFoundError when the space was dropped, or
        dropped and made again since this handle was opened."""
        return [v for v, _ in (yield from self._table()).values()]

    def version(self, ref: VersionRef) -> Flow[Version]:
        """The version with this id or label. One round trip.

        Raises:
            VersionNotFoundError: no such version."""
        return (yield from self._resolve(ref))[0]

    def snapshot(self, label: str | None = None, *, keep_last: int | None = None) -> Flow[Version]:
        """Freeze the space as a version: a snapshot of every partition (each O(1), as a
        space's), under the root's lease so that no rollback runs in between. Writes racing
        it may be in it for some partitions and not others (writes to several partitions
        are not atomic). Round trips: about four plus one per partition.

        ``keep_last`` then deletes the oldest versions beyond that many.

        Raises:
            InvalidInputError: a bad or already used label, or keep_last < 1."""
        text = "" if label is None else check_label(label)
        if keep_last is not None:
            keep_last = check_int(keep_last, "keep_last")
        token = uuid.uuid4().hex
        yield from self._lease(token)
        try:
            table = yield from self._table()
            if text and any(v.label == text for v, _ in table.values()):
                raise InvalidInputError(f"space {self.keys.shown} has a version {text!r}")
            created = time.time()
            ids: list[int] = []
            total = 0
            recording = False
            try:
                for part in self.parts:
                    version = yield from part.versions.snapshot()
                    ids.append(version.id)
                    total += version.count
                    yield from self._renew(token)
                vid = int((yield Command(("HINCRBY", self.keys.config, "next_ver", 1))))
                record = {"label": text or None, "created_at": created, "count": total,
                          "gen": 0, "parts": ids}  # fmt: skip
                recording = True
                yield Command(("HSET", self.keys.versions, vid, json.dumps(record)))
            except Exception:  # no half version: the partitions' snapshots go again
                for part, pid in zip(self.parts, [] if recording else ids, strict=False):
                    with contextlib.suppress(Exception):
                        yield from part.versions.delete_version(pid)
                raise
        finally:
            yield from self._unlease(token)
        if keep_last is not None:
            yield from self.prune_versions(keep_last)
        return Version(vid, text or None, created, total, self.keys.name)

    def rollback(self, ref: VersionRef, *, collect: bool = True) -> Flow[Version]:
        """Make the live space exactly the version ``ref`` in every partition, atomically
        for readers (module docstring): each partition's version is made searchable first,
        then the partitions switch one after another under the root's lease while readers
        wait (a few round trips per partition). Constant time in the number of vectors.

        Raises:
            VersionNotFoundError: no such version."""
        version, ids = yield from self._resolve(ref)
        for part, vid in zip(self.parts, ids, strict=True):  # nothing visible changes
            _, gen = yield from part.versions._resolve(vid)
            target = part.target
            yield from target.searchable(
                target.keys.gen(gen), generations.INDEX_TIMEOUT, marks=True
            )
        token = uuid.uuid4().hex
        yield from self._lease(token)
        try:
            current = yield Command(("HGET", self.keys.config, RELEASE_FIELD))
            release = int(current or 1) + 1
            intent = {"release": release, "parts": ids, "version": version.id}
            yield Command(("HSET", self.keys.config, SWITCH_FIELD, json.dumps(intent)))
            yield from self._apply(intent, token, collect)
        finally:
            yield from self._unlease(token)
        return version

    def _apply(self, intent: dict[str, Any], token: str, collect: bool = True) -> Flow[None]:
        """Switch each partition not yet at the intent's release (a rollback to its
        version, or the publish of its stage), then the root: its release, and a publish's
        kept version."""
        release = int(intent["release"])
        publishing = intent.get("publish")
        kept: list[int | None] = intent.get("kept") or [None] * self.size
        for n, part in enumerate(self.parts):
            config = part.target.keys.config
            yield from self._renew(token)  # never touch a partition without the lease
            if _release((yield Command(("HGET", config, RELEASE_FIELD)))) == release:
                continue
            yield Command(("HSET", config, RELEASE_FIELD, f"~{release}"))
            if publishing is None:
                yield from part.versions.rollback(intent["parts"][n], collect=collect)
            else:
                kept[n] = yield from _publish_part(part, publishing, bool(intent["keep"]))
                intent["kept"] = kept
                yield Command(("HSET", self.keys.config, SWITCH_FIELD, json.dumps(intent)))
            yield Command(("HSET", config, RELEASE_FIELD, str(release)))
            yield from self._renew(token)
        root: list[tuple[Any, ...]] = [
            ("HSET", self.keys.config, RELEASE_FIELD, str(release)),
            ("HDEL", self.keys.config, SWITCH_FIELD),
        ]
        if publishing is not None and intent["keep"]:
            ids: list[int] = []
            total = 0
            for n, part in enumerate(self.parts):  # a partition published by a client that
                versions = yield from part.versions.versions()  # died before recording it:
                known = kept[n]
                pid = known if known is not None else versions[-1].id  # its newest
                ids.append(pid)
                total += next((v.count for v in versions if v.id == pid), 0)
            vid = int((yield Command(("HINCRBY", self.keys.config, "next_ver", 1))))
            record = {"label": intent.get("label"), "created_at": time.time(), "count": total,
                      "gen": 0, "parts": ids}  # fmt: skip
            root.append(("HSET", self.keys.versions, vid, json.dumps(record)))
            root.append(("HSET", self.keys.config, "published", vid))
        yield Pipeline(root, transaction=True)

    def finish_switch(self) -> Flow[bool]:
        """Complete a switch whose client died (its intent is in the root and no client
        holds the lease). False when there is none, or the lease is held.

        Raises:
            redis.exceptions.NoPermissionError: the user may not write the space (a
                reader; internal: readers catch it, and a public call's guard turns any
                refusal into PermissionDeniedError)."""
        token = uuid.uuid4().hex
        if not (yield from generations.take_lease(self.keys.lock, token, SWITCH_LEASE_MS)):
            return False
        try:
            raw = yield Command(("HGET", self.keys.config, SWITCH_FIELD))
            if raw:
                yield from self._apply(json.loads(raw), token)
        finally:
            yield from self._unlease(token)
        return bool(raw)

    def delete_version(self, ref: VersionRef, *, collect: bool = True) -> Flow[None]:
        """Delete a version from the space's list, then each partition's version (their
        documents and indexes go when nothing else uses them, as for a space), under the
        root's lease (never while a rollback to it is under way).

        Raises:
            VersionNotFoundError: no such version."""
        token = uuid.uuid4().hex
        yield from self._lease(token)  # not while a rollback to it is under way
        try:
            version, ids = yield from self._resolve(ref)
            yield Command(("HDEL", self.keys.versions, version.id))
            for part, vid in zip(self.parts, ids, strict=True):
                with contextlib.suppress(VersionNotFoundError):
                    yield from part.versions.delete_version(vid, collect=collect)
        finally:
            yield from self._unlease(token)

    def prune_versions(self, keep_last: int) -> Flow[list[Version]]:
        """Delete all but the ``keep_last`` newest versions; returns the deleted ones.

        Raises:
            InvalidInputError: keep_last < 0."""
        keep_last = check_int(keep_last, "keep_last", low=0)
        table = yield from self._table()
        doomed = [v for v, _ in table.values()]
        doomed = doomed[: max(0, len(doomed) - keep_last)]
        for version in doomed:
            yield from self.delete_version(version)
        return doomed

    # ------------------------------------------------------------ stages (releases)

    def stage(self, label: str | None = None, *, empty: bool = True) -> Flow[PartitionSet]:
        """Open a staged release of the space (:meth:`rediscache.Space.stage`): a stage of
        the same label in every partition, which no reader of the live space sees until
        :meth:`publish`. Round trips: two per partition (plus the copies with
        ``empty=False``). A failure discards the partitions' stages made so far.

        Raises:
            InvalidInputError: a bad label, or one a stage of the space has already."""
        label = check_label(label) if label is not None else f"stage-{secrets.token_hex(4)}"
        made: list[Any] = []
        try:
            for part in self.parts:
                made.append(StageParts((yield from part.stages.stage(label, empty=empty))))
        except Exception:
            for part in self.parts[: len(made)]:
                with contextlib.suppress(Exception):
                    yield from part.stages.discard_stage(label)
            raise
        return PartitionSet(self.config, made, self.context, live=False, stage=label, owner=self)

    def staged(self, label: str) -> Flow[PartitionSet]:
        """The stage ``label`` of every partition, to go on writing, checking or
        publishing it. One round trip per partition.

        Raises:
            StageNotFoundError: no such stage."""
        made: list[Any] = []
        for part in self.parts:
            made.append(StageParts((yield from part.stages.staged(label))))
        return PartitionSet(self.config, made, self.context, live=False, stage=label, owner=self)

    def stages(self) -> Flow[list[StageInfo]]:
        """The space's stages, oldest first: each partition's, added up (``complete``
        only when it is in every partition). One round trip per partition."""
        found: dict[str, list[StageInfo]] = {}
        for part in self.parts:
            for info in (yield from part.stages.stages()):
                found.setdefault(info.label, []).append(info)
        out = []
        for label, infos in found.items():
            complete = len(infos) == self.size and all(i.complete for i in infos)
            first = min(i.created_at for i in infos)
            out.append(StageInfo(label, first, sum(i.count for i in infos), complete))
        return sorted(out, key=lambda s: (s.created_at, s.label))

    def discard_stage(self, label: str) -> Flow[None]:
        """Discard the stage ``label`` in every partition that has it.

        Raises:
            StageNotFoundError: no partition has it."""
        found = False
        for part in self.parts:
            with contextlib.suppress(StageNotFoundError):
                yield from part.stages.discard_stage(label)
                found = True
        if not found:
            raise StageNotFoundError(f"space {self.keys.shown} has no stage {label!r}")

    # the calls of a stage (this set is a stage's: stage_label and owner are set)

    def build(self, *, timeout: float = generations.INDEX_TIMEOUT) -> Flow[None]:
        """Build every partition's index of the stage (:meth:`StageOps.build`), waiting at
        most ``timeout`` seconds for each."""
        for part in self.parts:
            ops: Any = part.ops  # a stage's parts: StageParts (StageOps)
            yield from ops.build(timeout=timeout)

    def publish(
        self,
        *,
        keep: bool = True,
        label: str | None = None,
        timeout: float = generations.INDEX_TIMEOUT,
    ) -> Flow[Version | None]:
        """Make the stage the live space in every partition, atomically for readers (the
        switch of :meth:`rollback`, with each partition's publish for its rollback): every
        partition's index is built first, then the partitions switch one after another
        under the root's lease while readers wait. ``keep`` keeps the replaced contents as
        a version of the space (labelled ``label``), returned for ``rollback``.

        Raises:
            StageNotFoundError: the stage was published or discarded.
            InvalidInputError: a bad label, or one a version has.
            IndexBuildingError: an index was not complete after ``timeout`` seconds."""
        live = self.owner
        if live is None or self.stage_label is None:
            raise InvalidInputError(f"{self.where()} is not a stage")
        if label is not None:
            label = check_label(label)
            if not keep:
                raise InvalidInputError("label names the version kept: pass keep=True with it")
        yield from self.build(timeout=timeout)
        token = uuid.uuid4().hex
        yield from live._lease(token)
        try:
            table = yield from live._table()
            if label is not None and any(v.label == label for v, _ in table.values()):
                raise InvalidInputError(f"space {live.keys.shown} has a version {label!r}")
            for part in self.parts:  # still there (not published or discarded meanwhile)
                yield from part.target.refresh()
            current = yield Command(("HGET", live.keys.config, RELEASE_FIELD))
            intent = {"release": int(current or 1) + 1, "publish": self.stage_label,
                      "keep": keep, "label": label, "kept": [None] * live.size}  # fmt: skip
            yield Command(("HSET", live.keys.config, SWITCH_FIELD, json.dumps(intent)))
            yield from live._apply(intent, token)
            published = yield Command(("HGET", live.keys.config, "published"))
        finally:
            yield from live._unlease(token)
        if not keep:
            return None
        kept: Version = yield from live.version(int(published))
        return kept

    def discard(self) -> Flow[None]:
        """Discard this stage in every partition."""
        if self.owner is None or self.stage_label is None:
            raise InvalidInputError(f"{self.where()} is not a stage")
        yield from self.owner.discard_stage(self.stage_label)

    def at(self, ref: VersionRef) -> Flow[PartitionSet]:
        """The partitions of the version ``ref``, for a read-only view
        (:class:`PartitionedView`). Round trips: one plus one per partition.

        Raises:
            VersionNotFoundError: no such version."""
        version, ids = yield from self._resolve(ref)
        views: list[Any] = []  # ViewParts: the reads and searches of SpaceParts
        for part, vid in zip(self.parts, ids, strict=True):
            views.append(ViewParts((yield from part.versions.at(vid))))
        return PartitionSet(self.config, views, self.context, live=False, version=version)

    # ------------------------------------------------------------ the root's lease

    def _lease(self, token: str) -> Flow[None]:
        """Take the root's lease (switches and snapshots hold it), waiting for another
        client's at most :data:`SWITCH_WAIT` seconds; then complete a switch left by a
        client that died."""
        deadline = time.monotonic() + SWITCH_WAIT
        while not (yield from generations.take_lease(self.keys.lock, token, SWITCH_LEASE_MS)):
            if time.monotonic() > deadline:
                raise ServerError(
                    f"space {self.keys.shown}: another client has held its switch lease for "
                    f"over {SWITCH_WAIT:g} s; retry"
                )
            yield Sleep(0.005)
        raw = yield Command(("HGET", self.keys.config, SWITCH_FIELD))
        if raw:
            yield from self._apply(json.loads(raw), token)

    def _renew(self, token: str) -> Flow[None]:
        held = yield Command(("GET", self.keys.lock))
        if held is None or held.decode() != token:
            raise ServerError(
                f"space {self.keys.shown}: the switch lease expired mid-way (over "
                f"{SWITCH_LEASE_MS / 1000:g} s between partitions); the next call completes it"
            )
        yield Command(("PEXPIRE", self.keys.lock, SWITCH_LEASE_MS))

    def _unlease(self, token: str) -> Flow[None]:
        with contextlib.suppress(Exception):
            yield from scripts.run(scripts.fork_abort_call(self.keys.lock, token=token))


def _publish_part(part: Any, label: str, keep: bool) -> Flow[int | None]:
    """Publish the stage ``label`` of one partition; the id of the version it kept. A
    stage already gone was published by a client that died before marking it: None
    (its kept version is the partition's newest)."""
    try:
        target = yield from part.stages.staged(label)
    except StageNotFoundError:
        return None
    version = yield from StageParts(target).ops.publish(keep=keep)
    return None if version is None else int(version.id)


class Batches:
    """The steps of a partitioned space's iter_batches (a
    :class:`rediscache.drive.Stepper`): each partition's scan in turn."""

    def __init__(self, scans: list[BatchScan]) -> None:
        self.scans = scans

    @property
    def done(self) -> bool:
        """Whether every partition's scan ended."""
        return all(scan.done for scan in self.scans)

    def step(self) -> Flow[Batch | None]:
        """The next batch of the first partition not done."""
        scan = next(scan for scan in self.scans if not scan.done)
        return (yield from scan.step())


def _partly(
    exc: ServerError, done: list[str], sub_keys: list[str], op: str, where: str
) -> ServerError:
    """The error of a batch that failed in one partition (whose rows ``sub_keys`` were
    being written) after ``done`` were stored in others: ``stored`` lists every key
    stored."""
    stored = list(done)
    if exc.rows is not None:
        stored += sub_keys[: exc.rows[0]]
    shown = ", ".join(repr(k) for k in stored[:5]) + (" ..." if len(stored) > 5 else "")
    message = (
        f"{op} into {where} stopped after {len(stored)} rows were stored ({shown}; the "
        f"error's .stored lists them): {exc}"
    )
    try:  # the same kind of error (OutcomeUnknownError: a reply was lost)
        error = type(exc)(message)
    except TypeError:
        error = ServerError(message)
    error.stored = stored
    error.not_stored = exc.not_stored
    return error


# ---------------------------------------------------------------- the facades

_set = attrgetter("_parts")


def _first_writes_of(facade: Any) -> Writes:
    writes: Writes = facade._parts.parts[0].writes
    return writes


class _OfPartitions:
    """What every facade of a partition set says about it (no I/O)."""

    _parts: PartitionSet

    @property
    def config(self) -> SpaceConfig:
        """The space's schema (``config.partitions`` names its partitions)."""
        return self._parts.config

    @property
    def keys(self) -> SpaceKeys:
        """The key names of the space's root (each partition has its own)."""
        return self._parts.keys

    @property
    def codec(self) -> VectorCodec:
        """How the space's vectors are checked, encoded and decoded."""
        return self._parts.codec

    @property
    def name(self) -> str:
        """The space's name."""
        return self._parts.config.name

    @property
    def dim(self) -> int:
        """Number of floats per embedding."""
        return self._parts.config.dim

    @property
    def partitions(self) -> int:
        """The number of partitions."""
        return self._parts.size

    def partition_of(self, key: str) -> int:
        """The partition (0 to ``partitions - 1``) holding ``key``
        (:func:`rediscache.keys.partition_of`). No round trip."""
        return partition_of(check_keys([key], "key")[0], self._parts.size)

    def _where(self) -> str:
        return self._parts.where()


def _not_yet(name: str) -> Any:
    """A method of a space that a partitioned space does not offer yet: it raises
    InvalidInputError (a RediscacheError) naming it."""

    def refuse(self: _OfPartitions, *_args: Any, **_kwargs: Any) -> NoReturn:
        raise InvalidInputError(
            f"{self._where()} is partitioned ({self.partitions} partitions): {name} is not "
            "available on partitioned spaces yet (docs/scale.md); nothing was done"
        )

    refuse.__name__ = refuse.__qualname__ = name
    return refuse


class PartitionedSurface(_OfPartitions):
    """The public surface of a partitioned space, declared once for
    :class:`PartitionedSpace` and :class:`rediscache.asyncio.AsyncPartitionedSpace`: the
    operations of a space that make sense over partitions, each documented in
    :class:`PartitionSet` (same arguments, results and errors as a space's, with what
    partitioning changes: round trips, atomicity). Not on a partitioned space (yet):
    diff, the hot cache and get_or_compute (each partition is stored as a space, which
    ``hub.space`` does not open; their keys are documented in :mod:`rediscache.keys`)."""

    def __init__(
        self, hub: HubHandle, config: SpaceConfig, found: list[tuple[SpaceConfig, SpaceState]]
    ) -> None:
        self.hub = hub
        self._driver = hub._driver
        self._context = hub._context
        self._parts = PartitionSet.of(config, found, hub._context)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.config.describe()})"

    validate = Local(Writes.validate, _first_writes_of)
    validate_row = Local(Writes.validate_row, _first_writes_of)

    put = Op(PartitionSet.put, _set, counted=True)
    put_many = Op(PartitionSet.put_many, _set, counted=True)
    update_vectors = Op(PartitionSet.update_vectors, _set, counted=True)
    delete = Op(PartitionSet.delete, _set, counted=True)

    get = Op(PartitionSet.get, _set, counted=True)
    get_many = Op(PartitionSet.get_many, _set, counted=True)
    count = Op(PartitionSet.count, _set)
    get_record = Op(PartitionSet.get_record, _set, counted=True)
    get_metadata_many = Op(PartitionSet.get_metadata_many, _set)
    iter_batches = IterOp(PartitionSet.iter_batches, _set, item="Batch")

    search = Op(PartitionSet.search, _set, counted=True)
    search_many = Op(PartitionSet.search_many, _set, counted=True)
    within = Op(PartitionSet.within, _set, counted=True)
    similar = Op(PartitionSet.similar, _set, counted=True)

    average = Op(PartitionSet.average, _set, counted=True)
    combine = Op(PartitionSet.combine, _set, counted=True)
    update_mean = Op(PartitionSet.update_mean, _set, counted=True)

    info = Op(PartitionSet.info, _set)
    purge_expired = Op(PartitionSet.purge_expired, _set)
    collect_garbage = Op(PartitionSet.collect_garbage, _set)
    prune_versions = Op(PartitionSet.prune_versions, _set)

    stages = Op(PartitionSet.stages, _set)
    discard_stage = Op(PartitionSet.discard_stage, _set)

    # not (yet) on a partitioned space: a clear error rather than an AttributeError
    diff = _not_yet("diff")
    get_or_compute = _not_yet("get_or_compute")

    versions = Op(PartitionSet.versions, _set)
    version = Op(PartitionSet.version, _set)
    snapshot = Op(PartitionSet.snapshot, _set)
    rollback = Op(PartitionSet.rollback, _set)
    delete_version = Op(PartitionSet.delete_version, _set)


class _OfSpaceOfPartitions(_OfPartitions):
    """A facade of partitions that belong to a partitioned space (a version view, a
    stage): made from the space's facade, whose driver and context it shares, with the
    reads and searches of its partitions (not counted in the hub's metrics)."""

    def __init__(self, space: Any, parts: PartitionSet) -> None:
        self.space = space
        self._driver = space._driver
        self._context = space._context
        self._parts = parts

    get = Op(PartitionSet.get, _set)
    get_many = Op(PartitionSet.get_many, _set)
    count = Op(PartitionSet.count, _set)
    get_record = Op(PartitionSet.get_record, _set)
    get_metadata_many = Op(PartitionSet.get_metadata_many, _set)
    iter_batches = IterOp(PartitionSet.iter_batches, _set, item="Batch")
    search = Op(PartitionSet.search, _set)
    search_many = Op(PartitionSet.search_many, _set)
    within = Op(PartitionSet.within, _set)
    similar = Op(PartitionSet.similar, _set)


class PartitionedViewSurface(_OfSpaceOfPartitions):
    """The public surface of a version of a partitioned space (from ``space.at(ref)``),
    declared once for :class:`PartitionedVersionView` and its asyncio twin: reads and
    searches of the version in every partition; writes raise :class:`ReadOnlyError`."""

    @property
    def version(self) -> Version:
        """The version viewed."""
        assert self._parts.pinned is not None
        return self._parts.pinned

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.version})"

    def __len__(self) -> int:
        """Number of embeddings in the version (no round trip)."""
        return self.version.count

    def _read_only(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        raise ReadOnlyError(
            f"{self._where()} is read-only: write to the space, or rollback() to this version"
        )

    put = put_many = delete = update_mean = update_vectors = _read_only


class PartitionedStageSurface(_OfSpaceOfPartitions):
    """The public surface of a stage of a partitioned space (from ``space.stage()`` or
    ``space.staged(label)``), declared once for :class:`PartitionedStage` and its asyncio
    twin: the writes, reads and searches of a partitioned space on the stage of every
    partition, plus ``build``, ``publish`` (atomic for readers across partitions) and
    ``discard`` (:class:`PartitionSet`). After publish or discard, calls raise
    :class:`StageNotFoundError`."""

    @property
    def label(self) -> str:
        """The stage's label."""
        assert self._parts.stage_label is not None
        return self._parts.stage_label

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.label!r})"

    validate = Local(Writes.validate, _first_writes_of)
    validate_row = Local(Writes.validate_row, _first_writes_of)

    put = Op(PartitionSet.put, _set)
    put_many = Op(PartitionSet.put_many, _set)
    update_vectors = Op(PartitionSet.update_vectors, _set)
    delete = Op(PartitionSet.delete, _set)

    build = Op(PartitionSet.build, _set)
    publish = Op(PartitionSet.publish, _set)
    discard = Op(PartitionSet.discard, _set)
    diff = _not_yet("diff")


class PartitionedStage(SyncFacade, PartitionedStageSurface):
    """A staged release of a partitioned space: see :class:`PartitionedStageSurface`.
    ``len(stage)`` counts its embeddings."""

    def __len__(self) -> int:
        """:meth:`count`: the number of embeddings in the stage."""
        return int(self.count())


class PartitionedVersionView(SyncFacade, PartitionedViewSurface):
    """A read-only view of one version of a partitioned space: see
    :class:`PartitionedViewSurface`."""


class PartitionedSpace(SyncFacade, PartitionedSurface):
    """A space spread over partitions (``hub.create_space(..., partitions=P)``; this
    module's docstring has the protocol, docs/scale.md the measurements): see
    :class:`PartitionedSurface`. ``len(space)`` counts its embeddings."""

    def __len__(self) -> int:
        """:meth:`count`: the number of embeddings stored (errors name ``count``)."""
        return int(self.count())

    at = sync_op(
        "at",
        PartitionSet.at,
        _set,
        wrap=lambda s, t: PartitionedVersionView(s, t),
        returns="PartitionedVersionView",
    )
    stage = sync_op(
        "stage",
        PartitionSet.stage,
        _set,
        wrap=lambda s, t: PartitionedStage(s, t),
        returns="PartitionedStage",
    )
    staged = sync_op(
        "staged",
        PartitionSet.staged,
        _set,
        wrap=lambda s, t: PartitionedStage(s, t),
        returns="PartitionedStage",
    )
