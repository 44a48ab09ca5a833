"""A space's hold on the generation it reads and writes: its key names, the state it last
saw, and the optimistic check that keeps every read and write within one generation.

Key names are built from a state the client caches, so each read checks that state in the
same round trip (an ``HGET`` of it after the reads, or inside the Lua script) and each write
passes it to its script, which refuses a stale one. When a snapshot, rollback or copy changed
the state, the call is retried with the new one: a reader never mixes two generations.

:class:`Target` holds the live space; :class:`rediscache.versions.VersionTarget` one
version. The parts of a space (:mod:`rediscache.reads`, :mod:`rediscache.search`,
:mod:`rediscache.writes`, :mod:`rediscache.operations`, :mod:`rediscache.versions`,
:mod:`rediscache.caching`) each receive a target and yield their I/O as flows.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import redis

from . import collect, generations, guard, scripts
from .codec import VectorCodec
from .config import SpaceConfig
from .context import HubContext
from .effects import Command, Flow, Roundtrip, Sleep
from .errors import (
    ConnectionFailedError,
    CorruptDataError,
    OutcomeUnknownError,
    ServerError,
    SpaceNotFoundError,
    StaleStateError,
    reply_error,
)
from .keys import GenKeys, SpaceKeys
from .state import STATE_FIELD, SpaceState
from .wire import Frames

if TYPE_CHECKING:
    from .hotcache import HotCache

__all__ = ["ATTEMPTS", "STALE_SECONDS", "HubContext", "Target", "holding_lease"]

#: A read whose state keeps changing is retried at least ATTEMPTS times and for at least
#: STALE_SECONDS before it raises StaleStateError.
ATTEMPTS = 10
STALE_SECONDS = 2.0

T = TypeVar("T")


class Target:
    """The live generation of a space, as this client last saw it.

    ``state`` / ``gen``: the cached state and the live generation's key names (no round
    trip to read them). ``hot``: the in-process hot cache of reads, when enabled (sync
    spaces only; writes invalidate it).
    """

    #: Whether this target follows the live space (a version's or a stage's is pinned).
    live = True
    #: The config field every read and write of this target checks: the live ``state``,
    #: or a stage's record (rediscache.stages).
    check_field = STATE_FIELD

    def __init__(self, config: SpaceConfig, state: SpaceState, context: HubContext) -> None:
        self.config = config
        self.keys = SpaceKeys.for_space(config.name)
        self.codec = VectorCodec(config.dim, config.dtype, config.metric)
        self.context = context
        self.readiness = context.readiness(config.name)
        self.hot: HotCache | None = None
        self.state = state
        self.state_bytes = state.raw.encode()
        self.gen = self.keys.gen(state.live)
        self._check_frame = ("", b"")  # (field, the state read of that field in RESP)

    def where(self) -> str:
        """How messages name what this target reads."""
        return f"space {self.keys.shown}"

    def fixed_count(self) -> int | None:
        """The number of documents when it is known without a round trip (a version's), or
        None (the live space's changes)."""
        return None

    def check_origin(self, state: SpaceState) -> None:
        """Raise SpaceNotFoundError if ``state`` is another space's of the same name (see
        :meth:`set_state`)."""
        if state.origin != self.state.origin:
            raise SpaceNotFoundError(
                f"space {self.keys.shown} was dropped and created again since this handle "
                f"was opened: open it again (hub.space({self.keys.space_name!r})) to use the new "
                "one; nothing was done"
            )

    def set_state(self, state: SpaceState) -> None:
        """Take ``state`` as the current one.

        Raises:
            SpaceNotFoundError: ``state`` belongs to another space of the same name (the
                one this target was made for was dropped and created again: its origin
                differs, see rediscache.state); nothing of it is used.
        """
        self.check_origin(state)
        self.state = state
        self.state_bytes = state.raw.encode()
        self.gen = self.keys.gen(state.live)

    # ------------------------------------------------------------ the optimistic check

    def adopt(self, raw_state: Any) -> Flow[None]:
        """Take ``raw_state`` (read in the reply of a stale call) as the current state,
        saving a reload's round trip on the retry."""
        if not isinstance(raw_state, bytes):
            raise SpaceNotFoundError(
                f"space {self.keys.shown} was dropped: nothing was done (create it again, "
                "or open another)"
            )
        self.set_state(SpaceState.parse(raw_state))
        return
        yield  # a flow: a version's target reloads here

    def refresh(self) -> Flow[None]:
        """Reload the state (and the generation read) from Redis. One round trip."""
        raw = yield Command(self.check_command())
        yield from self.adopt(raw)

    def expected(self, state: SpaceState) -> str:
        """The value of :attr:`check_field` that calls made in ``state`` expect (the state
        string itself; a stage's record for a stage)."""
        return state.raw

    def attempts(self, call: Callable[[SpaceState, GenKeys], Flow[T]]) -> Flow[T]:
        """Run ``call`` with the cached state, retrying with the new state when it is stale.

        A retry needs no extra round trip when the stale reply carried the new state. Retries
        go on for :data:`STALE_SECONDS` (at least :data:`ATTEMPTS` times), with a short random
        pause from the third attempt on, so a call succeeds as soon as the state holds still
        for one round trip; only a storm of snapshots or rollbacks lasting that long makes it
        raise :class:`StaleStateError`.
        """
        deadline = time.monotonic() + STALE_SECONDS
        attempt = 0
        while True:
            state = self.state
            try:
                return (yield from call(state, self.gen))
            except StaleStateError:
                if self.state is state:  # not adopted from the reply: reload it
                    yield from self.refresh()
            attempt += 1
            if attempt >= ATTEMPTS and time.monotonic() > deadline:
                raise StaleStateError(
                    f"space {self.keys.shown} kept changing (snapshots, rollbacks) for "
                    f"{STALE_SECONDS:g} s; retry"
                )
            if attempt >= 2:
                yield Sleep(random.uniform(0, min(0.0005 * 2**attempt, 0.01)))

    def checked(self, commands: list[tuple[Any, ...]], state: SpaceState) -> Flow[list[Any]]:
        """Send ``commands`` plus a trailing state read in one round trip; StaleStateError
        when the state is not ``state`` any more (then nothing in between switched, since
        states never repeat). Error replies come back as exceptions."""
        replies = yield Roundtrip([*commands, self.check_command()])
        last = replies[-1]
        if last != (self.state_bytes if state is self.state else self.expected(state).encode()):
            if isinstance(last, Exception):  # BUSY, LOADING: alive, not dropped
                raise reply_error(str(last), "", call=False)
            yield from self.adopt(last)
            raise StaleStateError(f"the state of space {self.keys.shown} changed")
        del replies[-1]
        return replies  # type: ignore[no-any-return]

    def with_check(self, commands: list[tuple[Any, ...]], packed: bytes | None = None) -> Roundtrip:
        """The round trip of ``commands`` (built for :attr:`gen`) plus the state read that
        checks them; :meth:`checked_ok` tells whether its replies may be used. For the
        hottest reads, which then need no nested flow; otherwise use :meth:`read_at`.
        ``packed``: the same commands in RESP (:class:`rediscache.wire.Frames`)."""
        commands.append(self.check_command())
        if packed is None:
            return Roundtrip(commands)
        return Roundtrip(commands, packed + self.check_frame())

    def check_command(self) -> tuple[str, str, str]:
        """The state read that checks a round trip's reads (:meth:`with_check`)."""
        return ("HGET", self.keys.config, self.check_field)

    def check_frame(self) -> bytes:
        """:meth:`check_command` in RESP (:class:`rediscache.wire.Frames`)."""
        field = self.check_field
        known, frame = self._check_frame
        if known != field:  # a stage's target sets its field after __init__
            frame = Frames(("HGET",), (field,)).of([self.keys.config])
            self._check_frame = (field, frame)
        return frame

    def checked_ok(self, replies: list[Any]) -> bool:
        """Whether the replies of a :meth:`with_check` round trip come from the state the
        commands were built for (then the state read is removed from them). No I/O."""
        if replies[-1] == self.state_bytes:
            del replies[-1]
            return True
        return False

    def reread(
        self, replies: list[Any], make: Callable[[GenKeys], list[tuple[Any, ...]]]
    ) -> Flow[tuple[list[Any], GenKeys]]:
        """After a :meth:`with_check` round trip that :meth:`checked_ok` refused: adopt the
        state its reply carries (an error reply raises) and :meth:`read_at` again."""
        last = replies[-1]
        if isinstance(last, Exception):  # BUSY, LOADING: alive, not dropped
            raise reply_error(str(last), "", call=False)
        yield from self.adopt(last)
        return (yield from self.read_at(make))

    def read_at(
        self, make: Callable[[GenKeys], list[tuple[Any, ...]]]
    ) -> Flow[tuple[list[Any], GenKeys]]:
        """Replies of the commands ``make(gen)`` builds, checked against the state and
        retried with a fresh state when it changed, and the generation they come from (the
        hot cache files them under its key names). One round trip per attempt."""

        def call(state: SpaceState, gen: GenKeys) -> Flow[tuple[list[Any], GenKeys]]:
            return (yield from self.checked(make(gen), state)), gen

        return (yield from self.attempts(call))

    def read(self, make: Callable[[GenKeys], list[tuple[Any, ...]]]) -> Flow[list[Any]]:
        """:meth:`read_at` without the generation."""
        return (yield from self.read_at(make))[0]

    # ------------------------------------------------------------ searching

    def reconnected(self) -> bool:
        """Whether the client opened a connection since the indexes were last known
        complete (then a search result may come from an index being rebuilt), or, on a
        cluster, the space's slot moved to another node since."""
        counter = self.context.connects_of(self.keys.config)
        return self.readiness.seen != counter.count or self.readiness.node is not counter

    def moved(self) -> bool:
        """Whether the space's slot moved to another cluster node since its indexes were
        last checked (its indexes did not move with its keys: :meth:`restore_indexes`)."""
        node = self.readiness.node
        return node is not None and node is not self.context.connects_of(self.keys.config)

    def search_index(self, gen: GenKeys) -> Flow[str]:
        """The index searches use (the live alias), once the live generation's index is
        known complete: checked once per generation and again after a new connection (the
        server may have restarted and be rebuilding it). Waits at most
        :attr:`HubContext.index_wait`; when a rollback replaced ``gen`` meanwhile (its index
        is gone) the new live generation is checked instead, never re-created."""
        if gen.gen not in self.readiness.ready or self.reconnected():
            moved = self.moved()
            self.note_connects()
            if moved:
                yield from self.restore_indexes()
            for _ in range(ATTEMPTS):
                found = yield from self.searchable(gen, self.context.index_wait, create=False)
                if found:
                    break
                yield from self.refresh()
                if gen.gen == self.gen.gen:  # still live, and no index: restore it
                    yield from self.restore_indexes()
                gen = self.gen
        return self.keys.index

    def restore_indexes(self) -> Flow[None]:
        """Create the search indexes the space's state names but its server lacks, from
        the stored config: the live generation's (and the live alias) and each version's.
        Indexes are not keys: when a cluster moves the space's slot to another node, the
        documents and config move and the indexes stay behind (a crash between a
        generation's documents and its index leaves the same). The server indexes the
        documents already there in the background; searches wait for that
        (:attr:`HubContext.index_wait`). Three round trips and one per index created.

        Raises:
            PermissionDeniedError: the user may not create indexes (a reader): an admin's
                or owner's first search after the move builds them.
        """
        keys = self.keys
        names = yield from generations.listed_indexes(keys.config)
        raw = yield Command(("HGETALL", keys.versions))
        gens = {self.state.live} | {
            gen for _, gen in generations.parse_versions(raw, keys.name).values()
        }
        for g in sorted(gens):
            gen = keys.gen(g)
            if gen.index in names:
                continue
            try:
                yield from generations.create_missing_index(self.config, gen)
            except redis.ResponseError as exc:
                if "already exists" not in str(exc).lower():
                    raise
        with contextlib.suppress(redis.ResponseError):  # the alias is there already
            yield Command(("FT.ALIASADD", keys.index, self.gen.index))

    def server_id(self) -> Flow[bytes | None]:
        """The run id of the space's server (``INFO server``; on a cluster, of the node of
        the space), read once per connection to it (a new connection may reach a restarted
        server, with another run id); None when the ACL user may not run INFO (then no
        marks are used)."""
        known = self.readiness
        seen = self.context.connects_of(self.keys.config).count
        if known.run_seen != seen:
            try:
                info = yield Command(("INFO", "server"), at=self.keys.config)
                known.run_id = str(info.get("run_id", "")).encode() or None
            except redis.ResponseError:  # NOPERM: INFO is not among the user's commands
                known.run_id = None
            known.run_seen = seen
        return known.run_id

    def searchable(
        self, gen: GenKeys, timeout: float, *, create: bool = True, marks: bool = False
    ) -> Flow[bool]:
        """:func:`rediscache.generations.ensure_searchable` of ``gen``; an index found
        complete is marked for this server run. With ``marks`` (the switches: rollback,
        publish, a stage's build), an index another client marked needs no FT.INFO, whose
        cost grows with the index; searches check FT.INFO once per connection instead,
        which also sees an index rebuilt without a restart (a replica's full resync keeps
        its run id)."""
        if gen.gen in self.readiness.ready:
            return True
        server = yield from self.server_id()
        return (
            yield from generations.ensure_searchable(
                self.config,
                gen,
                self.readiness.ready,
                timeout,
                create=create,
                server=server,
                trust_mark=marks,
            )
        )

    def note_connects(self) -> None:
        """After a new connection (or a move to another node), nothing known about the
        indexes holds any more."""
        counter = self.context.connects_of(self.keys.config)
        if counter.count != self.readiness.seen or counter is not self.readiness.node:
            self.readiness.ready.clear()
            self.readiness.seen = counter.count
            self.readiness.node = counter

    # ------------------------------------------------------------ writing in place

    def writing(self, call: Callable[[SpaceState, GenKeys], Flow[T]]) -> Flow[T]:
        """Run ``call(state, gen)`` once the live generation may be written in place: copy it
        for the versions sharing it first, or wait for another client's copy. Retries after
        a stale state (nothing was written by a stale attempt)."""
        for _ in range(64):
            state = self.state
            if not state.writable:  # shared with a version, or being copied
                state = yield from self.writable_state()
            try:
                return (yield from call(state, self.keys.gen(state.live)))
            except StaleStateError:
                yield from self.refresh()
        raise StaleStateError(f"space {self.keys.shown} kept changing during a write; retry")

    def writable_state(self) -> Flow[SpaceState]:
        """The state, once the live generation may be written in place: copies it for the
        versions sharing it, or waits for another client's copy.

        A reply of the copy lost with its connection (a broken connection, a server killed,
        a failover) raises ConnectionFailedError: the write that needed the copy was not
        sent, and the space's contents and versions are as they were whether or not the
        lost step ran (a copy left unfinished is taken over or dropped by the next write),
        where the error of the step alone (OutcomeUnknownError) said that write may have
        been applied."""
        try:
            return (yield from self._writable_state())
        except (OutcomeUnknownError, redis.ConnectionError, redis.TimeoutError) as exc:
            if isinstance(exc, redis.BusyLoadingError) or guard.unsent(exc):
                raise  # a refusal: nothing ran, and the hub says so (or waits for a primary)
            cause = exc.__cause__ if isinstance(exc, OutcomeUnknownError) else None
            error = ConnectionFailedError(
                f"the connection was lost while copying the live generation of space "
                f"{self.keys.shown} for its versions, which the first write after a snapshot "
                f"does before it is sent ({guard.redact(str(cause or exc))}): the write was "
                "not sent, and the space's contents and versions are as they were (the next "
                "write takes the copy over): calling again is safe"
            )
            error.unplaced = True
            raise error from exc

    def _writable_state(self) -> Flow[SpaceState]:
        for _ in range(ATTEMPTS * 8):
            if self.state.writable:
                return self.state
            if self.state.fork is not None:
                yield from self.wait_for_copy()
            else:
                yield from self.fork(self.state)
        raise StaleStateError(
            f"space {self.keys.shown}: snapshots keep arriving between copying the live "
            "generation and writing it; retry"
        )

    def wait_for_copy(self) -> Flow[None]:
        """Wait while another client holds the lease of a copy; take over when it died."""
        deadline = time.monotonic() + generations.INDEX_TIMEOUT
        while self.state.fork is not None:
            if not (yield Command(("EXISTS", self.keys.lock))):
                yield from self.fork(self.state)  # the copier died: take over
                continue
            if time.monotonic() > deadline:
                raise ServerError(
                    f"space {self.keys.shown}: another client has been copying the live "
                    f"generation for over {generations.INDEX_TIMEOUT:.0f} s"
                )
            yield Sleep(0.005)
            yield from self.refresh()

    def fork(self, state: SpaceState) -> Flow[None]:
        """Copy the live generation for the versions that share it (docs/versions.md): take
        the lease, COPY the documents server-side into a new generation, move the versions
        to the copy in one script, index the copy, and start deleting what became garbage
        (in the background: rediscache.collect). A copy whose size differs from the
        space's count (a failover lost batches the old primary had taken) is dropped whole
        and made once more; a second such copy raises CorruptDataError. A writer who may
        not create indexes (a ``write`` role: rediscache.access) leaves both to those who
        may: the versions' copy is indexed at its first search by an admin or owner, or
        when it is rolled back to or published, and garbage goes at an admin's next
        switch; reading it by key needs no index."""
        keys = self.keys
        for attempt in (1, 2):
            token = uuid.uuid4().hex
            try:
                done = yield from holding_lease(keys.lock, token, self._fork_copy(token))
                break
            except CorruptDataError:
                # the copy was short (a failover lost batches the old primary had taken)
                # and was dropped whole: copy once more before calling it corrupt
                if attempt == 2:
                    yield from collect.in_background(keys, self.readiness.ready)  # the copies
                    raise
        if done is None:  # busy, nothing to copy, or our lease was taken over: look again
            yield from self.refresh()
            return
        raw_state, dst = done
        self.set_state(SpaceState.parse(raw_state))
        if not (yield from generations.may_create_index(keys)):
            return
        try:
            yield from generations.create_index(self.config, keys.gen(dst))
        except redis.ResponseError as exc:
            if "already exists" not in str(exc).lower():
                raise ServerError(f"indexing the copy of space {keys.shown}: {exc}") from exc
        yield from collect.in_background(keys, self.readiness.ready)

    def _fork_copy(self, token: str) -> Flow[tuple[str, int] | None]:
        """The copy of :meth:`fork` under the lease ``token``: (the new state, the copy's
        generation), or None when there was nothing to do or the lease was lost."""
        keys = self.keys
        begun = yield from scripts.run(
            scripts.fork_begin_call(
                keys.config,
                keys.lock,
                keys.garbage,
                token=token,
                lease_ms=generations.FORK_LEASE_MS,
            )
        )
        if isinstance(begun, str):  # busy, or nothing to copy
            if begun == "RC_BUSY":
                yield Sleep(0.005)
            return None
        src, dst, new = begun
        self.set_state(SpaceState.parse(new))
        yield from generations.copy_generation(
            keys.gen(src), keys.gen(dst), keys.config, (keys.lock, token)
        )
        done = yield from scripts.run(
            scripts.fork_commit_call(
                [keys.config, keys.versions, keys.lock, keys.garbage], token=token
            )
        )
        return None if done is None else (done, dst)


def holding_lease(lock: str, token: str, work: Flow[T]) -> Flow[T]:
    """Run ``work``, which takes and uses the copy lease ``lock`` under ``token`` (a fork,
    a stage copied from live). When it fails, is cancelled (asyncio) or interrupted (Ctrl-C)
    while holding the lease, or perhaps holding it (a lost reply), the lease is released at
    once (``fork_abort.lua``, a no-op when it is not ours), or every writer of the space
    would wait for it to expire (generations.FORK_LEASE_MS); the next writer takes the copy over and
    the partial copy is garbage."""
    try:
        return (yield from work)
    except GeneratorExit:
        raise  # the flow was dropped unfinished: nothing more may be sent from it
    except BaseException:
        with contextlib.suppress(Exception):
            yield from scripts.run(scripts.fork_abort_call(lock, token=token))
        raise
