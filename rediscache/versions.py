"""Versions of a space: snapshots, read-only views, atomic rollback, deletion and diff.

Design (docs/versions.md has the measurements and the trade-offs):

* A space's documents live in *generations*: ``rc:{space}:g<g>:d:<key>`` with one index per
  generation (:mod:`rediscache.generations`). The live space is one generation, named by the
  ``state`` in the config hash (:mod:`rediscache.state`); searches reach it through the alias
  ``rc:{space}:idx``.
* ``snapshot()`` records the live generation as a version (one Lua script, O(1), no copy).
  The version and the live space now *share* the generation.
* The first write to a shared live generation copies it (``fork``,
  :meth:`rediscache.target.Target.fork`): the writer takes a lease, writers wait, the
  documents are COPYed server-side into a new generation, and one script moves every version
  that shared the live generation to the copy and lets writers in again. The copy's index is
  built in the background; searches of the version wait for it.
* ``rollback(v)`` points the state and the alias at the version's generation in one script:
  O(1), and readers see the old or the restored space, never a mix. The version now shares
  the live generation (the next write copies it for the version).
* Generations no version and not the live space use are garbage: their index is dropped and
  their documents deleted in batches (after rollback, delete_version, an abandoned copy).

A version is read through a :class:`VersionTarget` (the target of a version view: the same
reads and searches as the live space, pinned to the version's generation).
"""

from __future__ import annotations

import contextlib
import json
import numbers
import re
import time
import unicodedata
from typing import Any, TypeVar

from . import collect as garbage
from . import generations, scripts
from .codec import check_int
from .diff import Diff, Drift, compare
from .effects import Flow, Pipeline
from .errors import InvalidInputError, StaleStateError, VersionNotFoundError
from .generations import Version, VersionRef, parse_versions
from .reads import Reads
from .search import Searches
from .state import STATE_FIELD, SpaceState
from .target import ATTEMPTS, Target

__all__ = ["LIVE", "Diff", "Drift", "Version", "VersionRef", "VersionTarget", "Versions"]

T = TypeVar("T")

#: Pass as a side of :meth:`Versions.diff` to compare with the live space.
LIVE = "live"


def check_label(label: object) -> str:
    """Return a valid version label, in Unicode's NFC form (so that a label typed with a
    composed "é" and one written with "e" and a combining accent are one label), or raise
    InvalidInputError saying what is wrong with it: 1-100 printable characters, without
    spaces around them, not only digits (those name version ids), and not ``"live"``. A
    label ``"v3"`` is taken: lookups find labels before ids shown so (:func:`find_version`)."""
    if not isinstance(label, str):
        raise InvalidInputError(f"a version label is a string, got {label!r}")
    label = unicodedata.normalize("NFC", label)
    if not 1 <= len(label) <= 100:
        why = f"use 1-100 characters, got {len(label)}"
    elif not label.isprintable():
        why = "use printable characters only"
    elif label != label.strip():
        why = "no spaces around it (it would be shown and typed like the label without)"
    elif label.isdigit():
        why = "digits name version ids: add a letter or a word"
    elif label == LIVE:
        why = f"{LIVE!r} names the live space"
    else:
        return label
    raise InvalidInputError(f"invalid version label {label!r}: {why}")


def check_ref(ref: object, name: str) -> VersionRef:
    """``ref`` when it can name a version of the space ``name`` (no round trip).

    Raises:
        InvalidInputError: not a Version, an id (a positive int) or a label (str).
        VersionNotFoundError: a Version of another space.
    """
    if isinstance(ref, Version):
        if ref.space is not None and ref.space != name:
            raise VersionNotFoundError(
                f"{ref} is a version of space {ref.space!r}, not of {name!r}"
            )
        return ref
    if isinstance(ref, numbers.Integral) and not isinstance(ref, bool):
        if int(ref) < 1:
            raise InvalidInputError(f"version ids are positive integers, got {ref!r}")
        return int(ref)
    if isinstance(ref, str):
        return ref
    raise InvalidInputError(f"a version is a Version, an id (int) or a label (str), got {ref!r}")


#: A version as str(Version) shows it: "v" and its id.
_SHOWN_ID = re.compile(r"v([1-9][0-9]{0,17})")


def find_version(
    table: dict[int, tuple[Version, T]], ref: VersionRef, name: str
) -> tuple[Version, T]:
    """The entry of ``table`` (id -> (Version, where it is)) that ``ref`` (checked by
    :func:`check_ref`) names. Pure. A string of digits names the version of that id (labels
    are never all digits); a label is looked up next, in NFC form (:func:`check_label`);
    a string ``"v<id>"`` that no version has as its label names the version of that id, as
    ``str(Version)`` and the CLI show it (``v3``).

    Raises:
        VersionNotFoundError: none, naming the versions there are.
    """
    if isinstance(ref, Version):
        found = table.get(ref.id)
    elif isinstance(ref, int):
        found = table.get(ref)
    elif ref.isascii() and ref.isdigit():  # an id as text: labels are never all digits
        found = table.get(int(ref))
    else:
        wanted = unicodedata.normalize("NFC", ref)
        found = next(
            (t for t in table.values()
             if t[0].label is not None and unicodedata.normalize("NFC", t[0].label) == wanted),
            None,
        )  # fmt: skip
        if found is None and (shown := _SHOWN_ID.fullmatch(ref)) is not None:
            found = table.get(int(shown.group(1)))
    if found is None:
        have = ", ".join(str(v) for v, _ in table.values()) or "none"
        raise VersionNotFoundError(f"space {name!r} has no version {ref!r} (versions: {have})")
    return found


class VersionTarget(Target):
    """One version of a space, read only: the generation holding it (a later write to the
    live space may move the version to a copy; reads find it again through the versions
    table) and the space's state, checked by every read as for the live space."""

    live = False

    def __init__(self, space: Target, version: Version, gen: int) -> None:
        super().__init__(space.config, space.state, space.context)
        self.version = version
        self.gen = self.keys.gen(gen)

    def where(self) -> str:
        return f"version {self.version} of space {self.keys.shown}"

    def fixed_count(self) -> int | None:
        return self.version.count

    def set_state(self, state: SpaceState) -> None:
        self.check_origin(state)
        self.state = state  # the generation read is the version's, not the live one
        self.state_bytes = state.raw.encode()

    def adopt(self, raw_state: Any) -> Flow[None]:
        """The version may have moved with the state: reload both."""
        yield from self.refresh()

    def refresh(self) -> Flow[None]:
        """Reload the state and the version's generation. One round trip.

        Raises:
            VersionNotFoundError: the version was deleted.
        """
        raw_state, raw_version = yield Pipeline(
            [
                ("HGET", self.keys.config, STATE_FIELD),
                ("HGET", self.keys.versions, str(self.version.id)),
            ]
        )
        if raw_version is None:
            raise VersionNotFoundError(f"{self.where()} was deleted")
        self.set_state(SpaceState.parse(raw_state))
        self.gen = self.keys.gen(int(json.loads(raw_version)["gen"]))


class Versions:
    """The versions of a target's space; ``reads`` and ``searches`` of the live space serve
    as its side in :meth:`diff`."""

    def __init__(self, target: Target, reads: Reads, searches: Searches) -> None:
        self.target = target
        self.reads = reads
        self.searches = searches

    # ------------------------------------------------------------ listing

    def _table(self) -> Flow[dict[int, tuple[Version, int]]]:
        """The versions table, read with the state: SpaceNotFoundError when the space was
        dropped, or dropped and made again since this handle was opened."""
        keys = self.target.keys
        raw_state, table = yield Pipeline(
            [("HGET", keys.config, STATE_FIELD), ("HGETALL", keys.versions)]
        )
        yield from self.target.adopt(raw_state)
        return parse_versions(table, keys.name)

    def versions(self) -> Flow[list[Version]]:
        """All versions, oldest first. One round trip (with the state read).

        Raises:
            SpaceNotFoundError: the space was dropped, or dropped and made again since this
                handle was opened.
        """
        return [v for v, _ in (yield from self._table()).values()]

    def _check(self, ref: object) -> VersionRef:
        """:func:`check_ref` for this space."""
        return check_ref(ref, self.target.keys.name)

    def _resolve(self, ref: VersionRef) -> Flow[tuple[Version, int]]:
        ref = self._check(ref)
        return find_version((yield from self._table()), ref, self.target.keys.name)

    def version(self, ref: VersionRef) -> Flow[Version]:
        """The version with this id or label (or a fresh copy of a Version). One round trip.

        Raises:
            VersionNotFoundError: no such version.
        """
        return (yield from self._resolve(ref))[0]

    # ------------------------------------------------------------ snapshot / view

    def snapshot(self, label: str | None = None, *, keep_last: int | None = None) -> Flow[Version]:
        """Freeze the current contents as an immutable version and return it.

        O(1) and copy-free: the version shares the live documents and index until the live
        space is next written; that first write copies the documents for the version
        (server-side COPY, about 25-40 us per document on the 2-core dev box:
        docs/versions.md) while other writers wait, and the version's index is then built
        in the background. One round trip (one Lua script);
        atomic: a concurrent write lands wholly before the snapshot (and is in it) or wholly
        after. ``keep_last`` then deletes the oldest versions beyond that many.

        Raises:
            InvalidInputError: a bad or already used label, or keep_last < 1.
            SpaceNotFoundError: the space was dropped, or dropped and made again since this
                handle was opened (nothing written).
        """
        t = self.target
        text = "" if label is None else check_label(label)
        if keep_last is not None:
            keep_last = check_int(keep_last, "keep_last")
        created = time.time()
        for _ in range(ATTEMPTS):
            try:
                snap = yield from scripts.run(
                    scripts.snapshot_call(
                        t.keys.config,
                        t.keys.versions,
                        label=text,
                        created_at=created,
                        origin=t.state.origin,
                    )
                )
                break
            except StaleStateError:
                yield from t.refresh()  # SpaceNotFoundError: dropped, or made again
        else:
            raise StaleStateError(f"space {t.keys.shown} kept changing during a snapshot; retry")
        t.set_state(SpaceState.parse(snap.state))
        version = Version(snap.id, text or None, created, snap.count, t.keys.name)
        if keep_last is not None:
            yield from self.prune_versions(keep_last)
        return version

    def at(self, ref: VersionRef) -> Flow[VersionTarget]:
        """A read-only view of a version (by Version, id or label): get, get_many,
        get_record, get_metadata_many, search, search_many, within, similar, iter_batches
        and len; writes raise :class:`ReadOnlyError`. Its searches wait until the version's
        index is complete (it is built in the background after the live space first
        diverges from the version). One round trip.

        Raises:
            VersionNotFoundError: no such version.
        """
        version, gen = yield from self._resolve(ref)
        view = VersionTarget(self.target, version, gen)
        yield from view.refresh()
        return view

    # ------------------------------------------------------------ rollback

    def rollback(self, ref: VersionRef, *, collect: bool = True) -> Flow[Version]:
        """Make the live space exactly the version ``ref`` (vectors and metadata).

        The switch is one Lua script that re-points the live state and the search alias at
        the version's generation: constant time in the number of vectors, nothing copied,
        and atomic for readers (they see the old or the restored space, never a mix). It
        first waits for the version's index to be complete. The replaced live generation is
        deleted afterwards, in the background and in small steps (rediscache.collect;
        ``collect=False`` leaves it to a later :meth:`collect_garbage`), unless a version
        still uses it: snapshot() before a rollback to be able to undo it.

        Round trips: two for the switch (three the first time a version's index is
        checked); the deletion does not delay the return.

        Raises:
            VersionNotFoundError: no such version.
        """
        t = self.target
        keys = t.keys
        for _ in range(ATTEMPTS):
            version, gen = yield from self._resolve(ref)
            gen_keys = keys.gen(gen)
            yield from t.searchable(gen_keys, generations.INDEX_TIMEOUT, marks=True)
            script_keys = [keys.config, keys.versions, keys.index, gen_keys.index, keys.garbage]
            try:
                done = yield from scripts.run(
                    scripts.rollback_call(
                        script_keys, version=version.id, gen=gen, name=_named(version, keys.name)
                    )
                )
            except StaleStateError:
                continue
            if done is None:  # a copy of the live generation is in progress
                yield from t.refresh()
                yield from t.wait_for_copy()
                continue
            t.set_state(SpaceState.parse(done[2]))
            if collect and done[1]:  # the replaced generation became garbage
                yield from garbage.in_background(keys, t.readiness.ready)
            return version
        raise StaleStateError(f"space {keys.shown} kept changing during rollback; retry")

    # ------------------------------------------------------------ deleting

    def delete_version(self, ref: VersionRef, *, collect: bool = True) -> Flow[None]:
        """Delete a version; its documents and index are deleted when nothing else uses them,
        in the background (``collect=False`` leaves that to a later :meth:`collect_garbage`).
        Two round trips; the deletion does not delay the return.

        Raises:
            VersionNotFoundError: no such version.
        """
        t = self.target
        version, _ = yield from self._resolve(ref)
        _, state = yield from scripts.run(
            scripts.drop_version_call(
                t.keys.config,
                t.keys.versions,
                t.keys.garbage,
                version=version.id,
                name=_named(version, t.keys.name),
            )
        )
        t.set_state(SpaceState.parse(state))
        if collect:
            yield from garbage.in_background(t.keys, t.readiness.ready)

    def prune_versions(self, keep_last: int) -> Flow[list[Version]]:
        """Delete all but the ``keep_last`` newest versions; returns the deleted ones.

        Raises:
            InvalidInputError: keep_last < 0.
        """
        keep_last = check_int(keep_last, "keep_last", low=0)
        old = yield from self.versions()
        doomed = old[: max(0, len(old) - keep_last)]
        for v in doomed:
            with contextlib.suppress(VersionNotFoundError):  # deleted concurrently
                yield from self.delete_version(v, collect=False)
        if doomed:
            yield from garbage.in_background(self.target.keys, self.target.readiness.ready)
        return doomed

    def collect_garbage(self) -> Flow[int]:
        """Delete now, in the caller's call, the generations that nothing uses any more
        (replaced by a rollback or publish, deleted versions, discarded stages), which are
        otherwise deleted in the background; returns the documents deleted. Waits for a
        collector already at work on the space (another process's) to finish first. Steps
        of 500 documents, each blocking the server about a millisecond; safe to interrupt
        (rediscache.collect).
        """
        t = self.target
        deleted = yield from garbage.collect_garbage(t.keys, t.readiness.ready, wait=True)
        yield from t.refresh()
        return deleted

    # ------------------------------------------------------------ diff

    def diff(
        self,
        a: VersionRef,
        b: VersionRef = LIVE,
        *,
        sample: int = 100,
        k: int = 10,
        seed: int = 0,
    ) -> Flow[Diff]:
        """Compare two versions (or a version and the live space, ``"live"``, the default b).

        Returns the keys added, removed and changed from ``a`` to ``b``, the cosine drift
        over the common keys, and the mean overlap of the ``k`` nearest neighbours of up to
        ``sample`` common keys (chosen with ``seed``) between the two sides: low overlap
        means the new embeddings place items among different neighbours.

        Reads every document of both sides in batches (O(n) round trips / 1,000, O(n) client
        memory for the key sets) plus ``2 * sample`` searches in two pipelines. Exact for
        versions; the live side is read as it is during the scan.

        Raises:
            VersionNotFoundError: no such version. InvalidInputError: bad sample or k.
        """
        sample = check_int(sample, "sample", low=0)
        k = check_int(k, "k")
        seed = check_int(seed, "seed", low=0)
        for ref in (a, b):
            if not (isinstance(ref, str) and ref == LIVE):
                self._check(ref)
        side_a = yield from self._side(a)
        side_b = yield from self._side(b)
        names = _describe(side_a[0]), _describe(side_b[0])
        return (yield from compare(side_a, side_b, *names, sample=sample, k=k, seed=seed))

    def _side(self, ref: VersionRef) -> Flow[tuple[Target, Reads, Searches]]:
        if isinstance(ref, str) and ref == LIVE:
            return self.target, self.reads, self.searches
        view = yield from self.at(ref)
        reads = Reads(view)
        return view, reads, Searches(view, reads)


def _describe(side: Target) -> str:
    return str(side.version) if isinstance(side, VersionTarget) else LIVE


def _named(version: Version, space: str) -> str:
    """How messages name ``version`` of ``space``: "version v3 (label) of space 'items'"."""
    return f"version {version} of space {space!r}"
