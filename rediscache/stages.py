"""Staged versions: a model release built aside, checked, then published in one step.

A *stage* is a generation of a space (see :mod:`rediscache.generations`) that no reader of
the live space sees: its documents sit under their own prefix and it has its own index.
Readers of the live space never see a staged row before :meth:`StageOps.publish` and see
all of them after it, because publishing is the same pointer-and-alias switch as a
rollback (``publish.lua``).

The stage is recorded in the space's config hash, field ``stage:<label>``, as
``"<generation> <token> <open|copy> <created_at>"``. Every read and write of a stage checks
that record in its round trip, as reads and writes of the live space check the state
(:mod:`rediscache.target`): a stage published or discarded meanwhile raises
:class:`StageNotFoundError`, and nothing is written into a generation that went live or
became garbage. The random token makes records unique, so a stage discarded and staged
again under the same label is another stage.

Bulk loads: a new stage has no vector index while it is loaded. Its documents are
written with plain HSETs (MULTI/EXEC, or write.lua for expiring spaces), and listed by a
light index without fields (``g<g>:ls``, created with SKIPINITIALSCAN before the first
write) that lets a discarded stage be deleted without scanning the keyspace. The vector
index is built once, over all the documents, by :meth:`StageOps.build` (or the first
search, or publish): RediSearch indexes existing documents in the background faster than
it indexes them one write at a time (docs/versions.md has the measurements).
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from . import collect, generations, scripts
from .diff import Diff, compare
from .effects import Command, Flow
from .errors import (
    CorruptDataError,
    IndexBuildingError,
    InvalidInputError,
    ServerError,
    StageNotFoundError,
    StaleStateError,
)
from .generations import Version
from .keys import STAGE_PREFIX, GenKeys, stage_field
from .reads import Reads
from .search import Searches
from .state import SpaceState
from .target import ATTEMPTS, Target, holding_lease
from .versions import check_label

__all__ = ["StageInfo", "StageOps", "StageTarget", "Stages", "missing_stage"]

T = TypeVar("T")


@dataclass(frozen=True)
class StageRecord:
    """One parsed stage record (see the module docstring)."""

    gen: int
    token: str
    phase: str
    created_at: float
    raw: str

    @classmethod
    def parse(cls, raw: bytes | str) -> StageRecord:
        """Parse a record; CorruptDataError for anything else."""
        text = raw.decode() if isinstance(raw, bytes) else raw
        try:
            gen, token, phase, created = text.split(" ")
            return cls(int(gen), token, phase, float(created), text)
        except ValueError as exc:
            raise CorruptDataError(f"unreadable stage record {raw!r}") from exc


@dataclass(frozen=True)
class StageInfo:
    """A stage of a space (from :meth:`rediscache.Space.stages`): its label, when it was
    staged (unix seconds), its number of documents, and ``complete``: False while its copy
    of the live space is being made (``empty=False``), or for good when the client copying
    died (then :meth:`rediscache.Space.discard_stage` removes it)."""

    label: str
    created_at: float
    count: int
    complete: bool


class StageTarget(Target):
    """One stage of a space: its generation, and its record, which every read and write
    checks (a stage published or discarded meanwhile raises StageNotFoundError)."""

    live = False

    def __init__(self, space: Target, label: str, record: StageRecord) -> None:
        super().__init__(space.config, space.state, space.context)
        self.space = space
        self.label = label
        self.check_field = stage_field(label)
        self.set_record(record)

    def where(self) -> str:
        return f"stage {self.label!r} of space {self.keys.shown}"

    def set_record(self, record: StageRecord) -> None:
        """Take ``record`` as the stage's current one."""
        self.record = record
        self.state_bytes = record.raw.encode()
        self.gen = self.keys.gen(record.gen)

    def set_state(self, state: SpaceState) -> None:
        self.check_origin(state)
        self.state = state  # the generation read and written is the stage's

    def expected(self, state: SpaceState) -> str:
        return self.record.raw

    def gone(self) -> StageNotFoundError:
        """The error of a call on a stage that was published or discarded."""
        return StageNotFoundError(
            f"{self.where()} was published or discarded: nothing was done; stage again "
            "with space.stage()"
        )

    def adopt(self, raw_state: Any) -> Flow[None]:
        """Take the record read in a stale call's reply; the stage is gone without one."""
        if not isinstance(raw_state, bytes):
            raise self.gone()
        record = StageRecord.parse(raw_state)
        if record.token != self.record.token:
            raise self.gone()  # discarded, and staged again under the same label
        self.set_record(record)
        return
        yield  # a flow

    def writing(self, call: Callable[[SpaceState, GenKeys], Flow[T]]) -> Flow[T]:
        """Run the write ``call`` on the stage's generation; retried after a stale record
        (nothing was written then)."""
        for _ in range(ATTEMPTS):
            if self.record.phase != "open":
                raise ServerError(
                    f"{self.where()} is still being copied from the live space (or its "
                    "copying client died: discard it); nothing was written"
                )
            try:
                return (yield from call(self.state, self.gen))
            except StaleStateError:
                yield from self.refresh()
        raise StaleStateError(f"{self.where()} kept changing during a write; retry")

    def reconnected(self) -> bool:
        return False  # searches of a stage check its index in every round (Searches._search_round)


class Stages:
    """The stages of a live space: staging, listing, reopening (the part of
    :class:`rediscache.Space` behind ``stage``, ``stages``, ``staged``)."""

    def __init__(self, target: Target) -> None:
        self.target = target

    def stage(self, label: str | None = None, *, empty: bool = True) -> Flow[StageTarget]:
        """Open a new staged version of the space: writable with put/put_many/
        update_vectors/delete, readable with get/get_many/get_record/search/count, and
        invisible to every reader of the live space until :meth:`StageOps.publish`.

        ``empty=True`` starts it empty (a new model's full load: the usual case). With
        ``empty=False`` it starts as a copy of the live contents (server-side COPY of every
        document, about 25-40 us each on the 2-core dev box, docs/versions.md, while
        writers of the live space wait, as for the first write after a snapshot), for a
        partial update. ``label`` names it (unique among the space's stages; default:
        ``stage-<8 hex digits>``).

        Round trips: two (the record, the listing index); with ``empty=False`` plus one
        per 1,000 documents copied. Atomic: the stage exists with its generation, or not
        at all (a crash mid-copy leaves a stage marked incomplete, which
        ``discard_stage`` removes).

        Raises:
            InvalidInputError: a bad label, or one a stage of the space has already.
            SpaceNotFoundError: the space was dropped, or dropped and made again since this
                handle was opened (nothing written).
        """
        t = self.target
        label = check_label(label) if label is not None else f"stage-{secrets.token_hex(4)}"
        if not isinstance(empty, bool):
            raise InvalidInputError(f"empty must be True or False, got {empty!r}")
        field = stage_field(label)
        for _ in range(ATTEMPTS * 8):
            token = uuid.uuid4().hex
            try:
                made = yield from scripts.run(
                    scripts.stage_call(
                        [t.keys.config, t.keys.lock],
                        field=field,
                        token=token,
                        created_at=time.time(),
                        copy=not empty,
                        lease_ms=generations.FORK_LEASE_MS,
                        label=label,
                        origin=t.state.origin,
                    )
                )
            except StaleStateError:
                yield from t.refresh()  # SpaceNotFoundError: dropped, or made again
                continue
            if made is None:  # a copy of the live generation is running: wait for it
                yield from t.refresh()
                yield from t.wait_for_copy()
                continue
            gen_no, raw_record, live, raw_state = made
            gen = t.keys.gen(gen_no)
            # garbage a process left when it exited (its deletion runs in the background)
            yield from collect.in_background(t.keys, t.readiness.ready)
            if empty:
                yield from generations.create_listing(gen)
                return StageTarget(t, label, StageRecord.parse(raw_record))
            t.set_state(SpaceState.parse(raw_state))
            return (yield from self._copy_live(label, token, t.keys.gen(live), gen))
        raise StaleStateError(f"space {t.keys.shown}: copies of the live generation kept running")

    def _copy_live(self, label: str, token: str, live: GenKeys, gen: GenKeys) -> Flow[StageTarget]:
        """Copy the live generation into the new stage ``gen`` (writers wait meanwhile) and
        open the stage; the lease is released whatever happens (the stage then stays
        incomplete until discarded)."""
        t = self.target
        keys = t.keys

        def copy() -> Flow[tuple[str, str]]:
            yield from generations.create_listing(gen)
            yield from generations.copy_generation(live, gen, keys.config, (keys.lock, token))
            return (
                yield from scripts.run(
                    scripts.stage_commit_call(
                        [keys.config, keys.lock, keys.garbage],
                        field=stage_field(label),
                        token=token,
                        label=label,
                    )
                )
            )

        raw_record, raw_state = yield from holding_lease(keys.lock, token, copy())
        t.set_state(SpaceState.parse(raw_state))
        return StageTarget(t, label, StageRecord.parse(raw_record))

    def stages(self) -> Flow[list[StageInfo]]:
        """The space's stages, oldest first. One round trip."""
        raw = yield Command(("HGETALL", self.target.keys.config))
        fields = {k.decode(): v for k, v in raw.items()}
        out = []
        for name, value in fields.items():
            if name.startswith(STAGE_PREFIX):
                record = StageRecord.parse(value)
                count = int(fields.get(f"n:{record.gen}", b"0"))
                label = name[len(STAGE_PREFIX) :]
                out.append(StageInfo(label, record.created_at, count, record.phase == "open"))
        return sorted(out, key=lambda s: (s.created_at, s.label))

    def staged(self, label: str) -> Flow[StageTarget]:
        """The stage ``label``, to go on writing, checking or publishing it (from another
        process, the CLI). One round trip.

        Raises:
            StageNotFoundError: no such stage.
        """
        label = self._label(label)
        raw = yield Command(("HGET", self.target.keys.config, stage_field(label)))
        if raw is None:
            raise StageNotFoundError(missing_stage(self.target.keys.name, label))
        return StageTarget(self.target, label, StageRecord.parse(raw))

    def discard_stage(self, label: str) -> Flow[None]:
        """Discard the stage ``label`` (see :meth:`StageOps.discard`); also removes a stage
        whose copying client died. Raises StageNotFoundError when there is no such stage."""
        yield from discard(self.target, self._label(label))

    def _label(self, label: object) -> str:
        if not isinstance(label, str) or not label:
            raise InvalidInputError(f"a stage label is a non-empty string, got {label!r}")
        return label


def missing_stage(space: str, label: str) -> str:
    """The message of the StageNotFoundError for the stage ``label`` of ``space``."""
    return (
        f"space {space!r} has no stage {label!r} (never staged, or published or discarded already)"
    )


def discard(space: Target, label: str) -> Flow[None]:
    """Discard the stage ``label`` of ``space``: one script makes its generation garbage,
    then the garbage is deleted in the background (rediscache.collect)."""
    keys = space.keys
    yield from scripts.run(
        scripts.stage_drop_call(
            [keys.config, keys.lock, keys.garbage],
            field=stage_field(label),
            missing=missing_stage(keys.name, label),
        )
    )
    yield from collect.in_background(keys, space.readiness.ready)


class StageOps:
    """What a stage does besides reads and writes: build its index, compare it with the
    live space, publish it, discard it."""

    def __init__(self, target: StageTarget, reads: Reads, searches: Searches) -> None:
        self.target = target
        self.reads = reads
        self.searches = searches

    def build(self, *, timeout: float = generations.INDEX_TIMEOUT) -> Flow[None]:
        """Build the stage's vector index over everything written so far, and wait until it
        is complete (RediSearch indexes the documents in the background; later writes are
        indexed as they come). publish() and the first search do it too; call it to pay
        the build at a time of one's choosing. One round trip per 0.1 s of waiting.

        Raises:
            IndexBuildingError: still building after ``timeout`` seconds.
            StageNotFoundError: the stage was published or discarded.
        """
        t = self.target
        yield from t.refresh()
        try:
            yield from t.searchable(t.gen, timeout, marks=True)
        except IndexBuildingError as exc:
            done = f"{exc.percent:g}% done, " if exc.percent is not None else ""
            raise IndexBuildingError(
                f"the index of {t.where()} is still being built ({done}waited {timeout:g} s): "
                "nothing was published and the stage is intact; call build() or publish() "
                "again later, or with a longer timeout (timeout=, CLI --timeout)",
                percent=exc.percent,
            ) from exc

    def diff(self, *, sample: int = 100, k: int = 10, seed: int = 0) -> Flow[Diff]:
        """Compare the live space (side a) with the stage (side b): keys added, removed and
        changed, cosine drift over the common keys, and the overlap of the ``k`` nearest
        neighbours of ``sample`` common keys (see :meth:`rediscache.Space.diff`), to gate
        a release on drift. Builds the stage's index first (:meth:`build`).

        Reads every document of both sides in batches plus ``2 * sample`` searches.

        Raises:
            InvalidInputError: bad sample or k. StageNotFoundError: the stage is gone.
        """
        yield from self.build()
        t = self.target
        live = t.space
        live_reads = Reads(live)
        side_a = (live, live_reads, Searches(live, live_reads))
        side_b = (t, self.reads, self.searches)
        return (
            yield from compare(
                side_a, side_b, "live", f"stage {t.label!r}", sample=sample, k=k, seed=seed
            )
        )

    def publish(
        self,
        *,
        keep: bool = True,
        label: str | None = None,
        timeout: float = generations.INDEX_TIMEOUT,
    ) -> Flow[Version | None]:
        """Make the stage the live space, in one atomic step: readers see the old contents
        or all of the stage, never a mix (get-style reads through the state, searches
        through the alias, which switch in the same script).

        The stage's index is built first if it is not complete (waiting at most
        ``timeout`` seconds: the only part that grows with the number of vectors; call
        :meth:`build` beforehand to take it out of the switch). The switch itself is one
        Lua script, constant time. ``keep=True`` keeps the replaced live contents as a
        version (labelled ``label``), returned so that ``space.rollback(v)`` undoes the
        release; ``keep=False`` deletes them unless a version uses them, and returns None.

        Raises:
            StageNotFoundError: the stage was published or discarded.
            InvalidInputError: a bad label, or one a version has.
            IndexBuildingError: the index was not complete after ``timeout`` seconds.
        """
        t = self.target
        space = t.space
        keys = t.keys
        text = "" if label is None else check_label(label)
        if not keep and label is not None:
            raise InvalidInputError("label names the version kept: pass keep=True with it")
        for _ in range(ATTEMPTS):
            yield from self.build(timeout=timeout)
            created = time.time()
            script_keys = [keys.config, keys.versions, keys.index, t.gen.index, keys.garbage]
            try:
                done = yield from scripts.run(
                    scripts.publish_call(
                        script_keys,
                        field=t.check_field,
                        record=t.record.raw,
                        keep=keep,
                        version_label=text,
                        created_at=created,
                        name=t.where(),
                    )
                )
            except StaleStateError:
                continue
            if done is None:  # a copy of the live generation is running
                yield from space.refresh()
                yield from space.wait_for_copy()
                continue
            space.set_state(SpaceState.parse(done.state))
            # after the call: the replaced generation's deletion, if it became garbage, and
            # the stage's listing index (dropped inline, publish took 7 ms at 100k documents
            # against 1.6 ms at 20k: the drop frees the index's document table)
            yield from collect.in_background(keys, space.readiness.ready)
            if not done.version:
                return None
            return Version(done.version, text or None, created, done.documents, keys.name)
        raise StaleStateError(f"{t.where()} kept changing during publish; retry")

    def discard(self) -> Flow[None]:
        """Drop the stage: its record goes at once (later calls on it raise
        StageNotFoundError) and its documents and index are deleted. Live is untouched.

        Raises:
            StageNotFoundError: the stage was published or discarded already.
        """
        yield from discard(self.target.space, self.target.label)
