"""Versions of a space: snapshots, read-only views, atomic rollback, diff and drift.

Design (docs/versions.md has the measurements and the trade-offs):

* A space's documents live in *generations*: ``rc:{space}:g<g>:d:<key>`` with one index per
  generation. The live space is one generation, named by the ``state`` in the config hash
  (:mod:`rediscache.state`); searches reach it through the alias ``rc:{space}:idx``.
* ``snapshot()`` records the live generation as a version (one Lua script, O(1), no copy).
  The version and the live space now *share* the generation.
* The first write to a shared live generation copies it (``fork``): the writer takes a
  lease, writers wait, the documents are COPYed server-side into a new generation, and one
  script moves every version that shared the live generation to the copy and lets writers
  in again. The copy's index is built in the background; searches of the version wait for it.
* ``rollback(v)`` points the state and the alias at the version's generation in one script:
  O(1), and readers see the old or the restored space, never a mix. The version now shares
  the live generation (the next write copies it for the version).
* Generations no version and not the live space use are garbage: their index is dropped and
  their documents deleted in batches (after rollback, delete_version, an abandoned copy).
"""

from __future__ import annotations

import contextlib
import json
import numbers
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import redis

from . import scripts
from .codec import check_int
from .diff import Diff, Drift, compare
from .errors import (
    IndexBuildingError,
    InvalidInputError,
    ReadOnlyError,
    ServerError,
    StaleStateError,
    VersionNotFoundError,
    reply_error,
)
from .ftsearch import index_done
from .guard import public
from .keys import GenKeys, SpaceKeys
from .reader import ATTEMPTS, Reader
from .state import STATE_FIELD, SpaceState

if TYPE_CHECKING:
    from .codec import VectorCodec
    from .hub import Hub
    from .space import Space, SpaceConfig
    from .wire import IndexReadiness

__all__ = ["LIVE", "Diff", "Drift", "Version", "VersionView", "Versioned", "create_index"]

#: Pass as a side of :meth:`Versioned.diff` to compare with the live space.
LIVE = "live"
#: Lease of a client copying a generation, plus 0.1 ms per document (about ten times the
#: copy's cost); when the copier dies, another client takes over after the lease.
FORK_LEASE_MS = 30_000
#: Longest wait for a version's index to finish building (seconds).
INDEX_TIMEOUT = 600.0



@dataclass(frozen=True)
class Version:
    """An immutable snapshot of a space (from :meth:`Versioned.snapshot`). ``space`` names
    the space it belongs to: passing it to another space raises VersionNotFoundError."""

    id: int
    label: str | None
    created_at: float
    count: int
    space: str | None = None

    def __str__(self) -> str:
        return f"v{self.id}" + (f" ({self.label})" if self.label else "")


#: A version, its id, or its label.
VersionRef = Version | int | str


def create_index(client: redis.Redis, config: SpaceConfig, gen: GenKeys) -> None:
    """FT.CREATE the index of one generation (documents already there are indexed in the
    background). One round trip; raises redis.ResponseError as the server sent it."""
    client.execute_command(
        "FT.CREATE",
        gen.index,
        "ON",
        "HASH",
        "PREFIX",
        1,
        gen.doc_prefix,
        # index stop words too: a text filter on "the who" must match
        "STOPWORDS",
        0,
        "SCHEMA",
        *config.schema_args(),
    )


def check_label(label: object) -> str:
    """Return a valid version label or raise InvalidInputError."""
    if (
        not isinstance(label, str)
        or not 1 <= len(label) <= 100
        or label.isdigit()
        or label == LIVE
        or not label.isprintable()
    ):
        raise InvalidInputError(
            f"invalid version label {label!r}: use 1-100 printable characters, not only "
            f"digits (those name version ids) and not {LIVE!r}"
        )
    return label


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


class VersionView(Reader):
    """A read-only view of one version: get, get_many, get_record, search, search_many,
    within, similar, iter_batches and len. Writes raise :class:`ReadOnlyError`.

    Get one from :meth:`Versioned.at`. Searches wait until the version's index is complete
    (it is built in the background after the live space first diverges from the version).
    """

    _checked_search = True

    def __init__(self, space: Space, version: Version, gen: int) -> None:
        self.space = space
        self.version = version
        self.config = space.config
        self.keys = space.keys
        self.codec: VectorCodec = space.codec
        self._client = space._client
        self._state = space._state
        self._gen = space.keys.gen(gen)

    def __repr__(self) -> str:
        return f"VersionView({self.keys.name!r}, {self.version})"

    def __len__(self) -> int:
        """Number of embeddings in the version (no round trip)."""
        return self.version.count

    @property
    def gen_keys(self) -> GenKeys:
        """Key names of the generation holding this version, as last seen (no round trip).
        For tools that inspect Redis directly; a later write to the live space may move the
        version to a copy."""
        return self._gen

    def _where(self) -> str:
        return f"version {self.version} of space {self.keys.name!r}"

    def _target(self) -> tuple[SpaceState, GenKeys]:
        return self._state, self._gen

    def _refresh(self) -> None:
        pipe = self._client.pipeline(transaction=False)
        pipe.hget(self.keys.config, STATE_FIELD)
        pipe.hget(self.keys.versions, str(self.version.id))
        raw_state, raw_version = pipe.execute()
        if raw_version is None:
            raise VersionNotFoundError(f"{self._where()} was deleted")
        self._state = SpaceState.parse(raw_state)
        self._gen = self.keys.gen(int(json.loads(raw_version)["gen"]))

    def _reconnected(self) -> bool:
        return self.space._reconnected()

    def _search_index(self, gen: GenKeys) -> str:
        self.space._await_index(gen, INDEX_TIMEOUT)
        return gen.index

    def _refresh_ms(self, refresh_ttl: object) -> int:
        """A version is read-only: refreshing a ttl through it would change its documents."""
        if refresh_ttl is not False:
            raise ReadOnlyError(
                f"{self._where()} is read-only: refresh_ttl would change its entries' expiry"
            )
        return 0

    def _read_only(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        raise ReadOnlyError(
            f"{self._where()} is read-only: write to the space, or rollback() to this version"
        )

    put = put_many = delete = update_mean = _read_only


class Versioned:
    """Versions of a space, mixed into :class:`rediscache.Space`."""

    config: SpaceConfig
    keys: SpaceKeys
    _client: redis.Redis
    _state: SpaceState
    _gen: GenKeys
    _ready: set[int]
    #: _ready and the hub's connection count when it was last trusted (see _await_index).
    _index: IndexReadiness
    hub: Hub

    # Provided by Space.
    def _set_state(self, state: SpaceState) -> None:
        raise NotImplementedError

    def _refresh(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------ listing

    def _version_table(self) -> dict[int, tuple[Version, int]]:
        return parse_versions(self._client.hgetall(self.keys.versions), self.keys.name)

    def versions(self) -> list[Version]:
        """All versions, oldest first. One round trip."""
        return [v for v, _ in self._version_table().values()]

    def _resolve(self, ref: VersionRef) -> tuple[Version, int]:
        table = self._version_table()
        if isinstance(ref, Version):
            if ref.space is not None and ref.space != self.keys.name:
                raise VersionNotFoundError(
                    f"{ref} is a version of space {ref.space!r}, not of {self.keys.name!r}"
                )
            found = table.get(ref.id)
        elif isinstance(ref, numbers.Integral) and not isinstance(ref, bool):
            found = table.get(int(ref))
        elif isinstance(ref, str):
            found = next((t for t in table.values() if t[0].label == ref), None)
        else:
            raise InvalidInputError(
                f"a version is a Version, an id (int) or a label (str), got {ref!r}"
            )
        if found is None:
            have = ", ".join(str(v) for v, _ in table.values()) or "none"
            raise VersionNotFoundError(
                f"space {self.keys.name!r} has no version {ref!r} (versions: {have})"
            )
        return found

    def version(self, ref: VersionRef) -> Version:
        """The version with this id or label (or a fresh copy of a Version). One round trip.

        Raises:
            VersionNotFoundError: no such version.
        """
        return self._resolve(ref)[0]

    # ------------------------------------------------------------ snapshot / view

    def snapshot(self, label: str | None = None, *, keep_last: int | None = None) -> Version:
        """Freeze the current contents as an immutable version and return it.

        O(1) and copy-free: the version shares the live documents and index until the live
        space is next written; that first write copies the documents for the version
        (server-side COPY, about 5-10 us per document) while other writers wait, and the
        version's index is then built in the background. One round trip (one Lua script);
        atomic: a concurrent write lands wholly before the snapshot (and is in it) or wholly
        after. ``keep_last`` then deletes the oldest versions beyond that many.

        Raises:
            InvalidInputError: a bad or already used label, or keep_last < 1.
        """
        text = "" if label is None else check_label(label)
        if keep_last is not None:
            keep_last = check_int(keep_last, "keep_last")
        created = time.time()
        snap = scripts.snapshot(
            self._client, self.keys.config, self.keys.versions, label=text, created_at=created
        )
        self._set_state(SpaceState.parse(snap.state))
        version = Version(snap.id, label, created, snap.count, self.keys.name)
        if keep_last is not None:
            self.prune_versions(keep_last)
        return version

    def at(self, ref: VersionRef) -> VersionView:
        """A read-only view of a version (by Version, id or label). One round trip.

        Raises:
            VersionNotFoundError: no such version.
        """
        version, gen = self._resolve(ref)
        view = VersionView(self, version, gen)  # type: ignore[arg-type]
        view._refresh()
        return view

    # ------------------------------------------------------------ rollback

    def rollback(self, ref: VersionRef, *, collect: bool = True) -> Version:
        """Make the live space exactly the version ``ref`` (vectors and metadata).

        The switch is one Lua script that re-points the live state and the search alias at
        the version's generation: constant time in the number of vectors, nothing copied,
        and atomic for readers (they see the old or the restored space, never a mix). It
        first waits for the version's index to be complete. The replaced live generation is
        deleted afterwards in batches (``collect=False`` leaves that to a later call) unless
        a version still uses it: snapshot() before a rollback to be able to undo it.

        Round trips: two for the switch (three the first time a version's index is
        checked), plus the deletion when the replaced generation became garbage.

        Raises:
            VersionNotFoundError: no such version.
        """
        for _ in range(ATTEMPTS):
            version, gen = self._resolve(ref)
            gen_keys = self.keys.gen(gen)
            self._ensure_searchable(gen_keys)
            keys = [
                self.keys.config,
                self.keys.versions,
                self.keys.index,
                gen_keys.index,
                self.keys.garbage,
            ]
            try:
                done = scripts.rollback(self._client, keys, version=version.id, gen=gen)
            except StaleStateError:
                continue
            if done is None:  # a copy of the live generation is in progress
                self._refresh()
                self._wait_for_copy()
                continue
            self._set_state(SpaceState.parse(done[2]))
            if collect and done[1]:  # the replaced generation became garbage
                self._collect_garbage()
            return version
        raise StaleStateError(f"space {self.keys.name!r} kept changing during rollback; retry")

    # ------------------------------------------------------------ deleting

    def delete_version(self, ref: VersionRef, *, collect: bool = True) -> None:
        """Delete a version; its documents and index are deleted when nothing else uses them
        (``collect=False`` leaves that to a later call). Two round trips plus the deletion.

        Raises:
            VersionNotFoundError: no such version.
        """
        version, _ = self._resolve(ref)
        _, state = scripts.drop_version(
            self._client,
            self.keys.config,
            self.keys.versions,
            self.keys.garbage,
            version=version.id,
        )
        self._set_state(SpaceState.parse(state))
        if collect:
            self._collect_garbage()

    def prune_versions(self, keep_last: int) -> list[Version]:
        """Delete all but the ``keep_last`` newest versions; returns the deleted ones.

        Raises:
            InvalidInputError: keep_last < 0.
        """
        keep_last = check_int(keep_last, "keep_last", low=0)
        old = self.versions()
        doomed = old[: max(0, len(old) - keep_last)]
        for v in doomed:
            with contextlib.suppress(VersionNotFoundError):  # deleted concurrently
                self.delete_version(v, collect=False)
        if doomed:
            self._collect_garbage()
        return doomed

    def _collect_garbage(self) -> int:
        """Delete the documents and index of every garbage generation; returns documents
        deleted. Idempotent (safe after a crash, or in two clients at once)."""
        gens = sorted(int(g) for g in self._client.smembers(self.keys.garbage))
        if not gens:
            return 0
        self._refresh()
        in_use = {self._state.live} | {g for _, g in self._version_table().values()}
        deleted = 0
        for g in gens:
            if g not in in_use:
                gen = self.keys.gen(g)
                try:
                    self._client.execute_command("FT.DROPINDEX", gen.index)
                except redis.ResponseError as exc:
                    if (
                        "unknown index" not in str(exc).lower()
                        and "no such" not in str(exc).lower()
                    ):
                        raise ServerError(f"dropping index {gen.index!r}: {exc}") from exc
                deleted += unlink_matching(self._client, gen.doc_scan_pattern())
                self._client.hdel(self.keys.config, gen.count_field)
                self._ready.discard(g)
            self._client.srem(self.keys.garbage, g)
        return deleted

    # ------------------------------------------------------------ copying (fork)

    def _writable_state(self) -> SpaceState:
        """The state, once the live generation may be written in place: copies it for the
        versions sharing it, or waits for another client's copy."""
        for _ in range(ATTEMPTS * 8):
            if self._state.writable:
                return self._state
            if self._state.fork is not None:
                self._wait_for_copy()
            else:
                self._fork(self._state)
        raise StaleStateError(
            f"space {self.keys.name!r}: snapshots keep arriving between copying the live "
            "generation and writing it; retry"
        )

    def _wait_for_copy(self) -> None:
        """Wait while another client holds the lease of a copy; take over when it died."""
        deadline = time.monotonic() + INDEX_TIMEOUT
        while self._state.fork is not None:
            if not self._client.exists(self.keys.lock):
                self._fork(self._state)  # the copier died: take over
                continue
            if time.monotonic() > deadline:
                raise ServerError(
                    f"space {self.keys.name!r}: another client has been copying the live "
                    f"generation for over {INDEX_TIMEOUT:.0f} s"
                )
            time.sleep(0.005)
            self._refresh()

    def _fork(self, state: SpaceState) -> None:
        """Copy the live generation for the versions that share it (see the module doc)."""
        count = int(self._client.hget(self.keys.config, f"n:{state.live}") or 0)
        token = uuid.uuid4().hex
        begun = scripts.fork_begin(
            self._client,
            self.keys.config,
            self.keys.lock,
            self.keys.garbage,
            token=token,
            lease_ms=FORK_LEASE_MS + count // 10,
        )
        if isinstance(begun, str):  # busy, or nothing to copy: look again
            if begun == "RC_BUSY":
                time.sleep(0.005)
            self._refresh()
            return
        src, dst, new = begun
        self._set_state(SpaceState.parse(new))
        copied = _copy_generation(self._client, self.keys.gen(src), self.keys.gen(dst))
        done = scripts.fork_commit(
            self._client,
            [self.keys.config, self.keys.versions, self.keys.lock, self.keys.garbage],
            token=token,
            copied=copied,
        )
        if done is None:  # our lease expired and another client took over
            self._refresh()
            return
        self._set_state(SpaceState.parse(done))
        try:
            create_index(self._client, self.config, self.keys.gen(dst))
        except redis.ResponseError as exc:
            if "already exists" not in str(exc).lower():
                raise ServerError(f"indexing the copy of space {self.keys.name!r}: {exc}") from exc
        self._collect_garbage()

    def _await_index(self, gen: GenKeys, timeout: float, *, live: bool = False) -> None:
        """Before a search of ``gen``: wait (at most ``timeout`` seconds) until its index is
        complete. Checked once per generation, and again after the hub opened a new
        connection: the server may have restarted since, and then it rebuilds every index
        in the background while answering searches from the part built so far. ``live``:
        ``gen`` is the live generation as last seen; when a rollback has replaced it (its
        index is gone), the new live generation is checked instead, never re-created."""
        seen = self.hub._connects.count
        if seen != self._index.seen:
            self._ready.clear()
            self._index.seen = seen
        if not live:
            self._ensure_searchable(gen, timeout)
            return
        for _ in range(ATTEMPTS):
            if self._ensure_searchable(gen, timeout, create=False):
                return
            self._refresh()
            gen = self._gen

    def _ensure_searchable(
        self,
        gen: GenKeys,
        timeout: float = INDEX_TIMEOUT,
        ready: set[int] | None = None,
        create: bool = True,
    ) -> bool:
        """Wait until the index of ``gen`` has indexed every document; ``ready`` (default:
        this space's) records the generations known complete, which return at once. An
        index that does not exist is created (a crash left the generation without one)
        when ``create``, else False is returned (the generation is gone). True otherwise.

        Raises:
            IndexBuildingError: still building after ``timeout`` seconds.
        """
        ready = self._ready if ready is None else ready
        if gen.gen in ready:
            return True
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = self._client.execute_command("FT.INFO", gen.index)
            except redis.ResponseError as exc:
                if "unknown index" not in str(exc).lower() and "no such" not in str(exc).lower():
                    where = f"checking the index of space {self.keys.name!r} (FT.INFO)"
                    raise reply_error(str(exc), where) from exc
                if not create:
                    return False
                with contextlib.suppress(redis.ResponseError):  # a racing client made it
                    create_index(self._client, self.config, gen)
                continue
            done = index_done(reply)
            if done >= 1:
                ready.add(gen.gen)
                return True
            if time.monotonic() >= deadline:
                raise IndexBuildingError(
                    f"the index of space {self.keys.name!r} is still being built "
                    f"({100 * done:.1f}% done, waited {timeout:g} s): a search now would miss "
                    "hits. After a restart every index is rebuilt from the stored vectors in "
                    "the background; retry later, or allow a longer wait (hub.index_wait)",
                    percent=round(100 * done, 1),
                )
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    # ------------------------------------------------------------ diff

    def diff(
        self,
        a: VersionRef,
        b: VersionRef = LIVE,
        *,
        sample: int = 100,
        k: int = 10,
        seed: int = 0,
    ) -> Diff:
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
        side_a, side_b = self._side(a), self._side(b)
        return compare(
            side_a, side_b, _describe(side_a), _describe(side_b), sample=sample, k=k, seed=seed
        )

    def _side(self, ref: VersionRef) -> Reader:
        if isinstance(ref, str) and ref == LIVE:
            return self  # type: ignore[return-value]
        return self.at(ref)


def _describe(side: Reader) -> str:
    return str(side.version) if isinstance(side, VersionView) else LIVE


def _copy_generation(client: redis.Redis, src: GenKeys, dst: GenKeys) -> int:
    """COPY every document of ``src`` into ``dst`` (pipelined, 1,000 per round trip);
    returns how many were copied (SCAN may repeat a key; COPY does not overwrite)."""
    plen = len(src.doc_prefix)
    target = dst.doc_prefix.encode()
    copied = 0
    batch: list[bytes] = []

    def flush() -> int:
        pipe = client.pipeline(transaction=False)
        for rk in batch:
            pipe.execute_command("COPY", rk, target + rk[plen:])
        return sum(int(r) for r in pipe.execute())

    for rk in client.scan_iter(match=src.doc_scan_pattern(), count=1000):
        batch.append(rk)
        if len(batch) >= 1000:
            copied += flush()
            batch = []
    if batch:
        copied += flush()
    return copied


def unlink_matching(client: redis.Redis, pattern: str) -> int:
    """UNLINK every key matching ``pattern``, 1,000 per round trip; returns how many."""
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += int(client.unlink(*batch))
            batch = []
    if batch:
        deleted += int(client.unlink(*batch))
    return deleted


#: The reads of a version view (rediscache.guard: errors mapped, lost connections retried).
VIEW_READS = (
    "get", "get_many", "get_record", "search", "search_many", "similar", "within",
    "iter_batches", "get_metadata_many",
)  # fmt: skip

for _op in VIEW_READS:
    setattr(VersionView, _op, public(_op, getattr(VersionView, _op)))
