"""The Lua scripts in ``lua/`` and one typed wrapper per script.

Scripts are read from ``rediscache/lua/`` inside an installed wheel, or from the top-level
``lua/`` folder of a source checkout.

Each script has a ``<script>_call(...)`` builder (pure) that makes a :class:`ScriptCall`: the
script's KEYS and ARGV, the parser of its reply and the mapping of its ``RC_*`` error
replies. :func:`run` is the flow that sends one (EVALSHA, loading the script on NOSCRIPT,
so scripts keep working after a server restart or ``SCRIPT FLUSH``); the operations yield
from it and :mod:`rediscache.drive` performs it, sync or asyncio. ``<script>(client, ...)``
is the sync shorthand ``call(client, <script>_call(...))``, for tools and tests.

A script call is sent once. :func:`run` does not use redis-py's automatic retries, which
re-send a command whose reply timed out: a script that writes may then run twice (an
``update_mean`` counting its items twice) while the caller is told it failed. A call is
sent again only when it provably never reached the server (the connection failed before
or while it was written), or when it only reads; a write whose reply never came raises
:class:`OutcomeUnknownError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    NamedTuple,
    NoReturn,
    ParamSpec,
    TypeVar,
)

import numpy as np
import numpy.typing as npt
import redis

from .drive import SyncDriver
from .effects import Flow, Once
from .errors import (
    ConnectionFailedError,
    CorruptDataError,
    InvalidInputError,
    KeyNotFoundError,
    OutcomeUnknownError,
    ServerError,
    SpaceNotFoundError,
    StageNotFoundError,
    StaleStateError,
    VersionNotFoundError,
    reply_error,
)
from .wire import NotSent

if TYPE_CHECKING:
    from importlib.abc import Traversable

__all__ = [
    "Combined",
    "Folded",
    "Gathered",
    "Published",
    "ScriptCall",
    "Snapshotted",
    "available",
    "call",
    "combine",
    "combine_call",
    "copy_docs_call",
    "drop_version",
    "drop_version_call",
    "fork_abort_call",
    "fork_begin",
    "fork_begin_call",
    "fork_commit",
    "fork_commit_call",
    "gather",
    "gather_call",
    "gc_config_call",
    "gc_create_listing_call",
    "gc_drop_index_call",
    "gc_unlink_call",
    "lost",
    "lua_dir",
    "mark_built_call",
    "publish_call",
    "rollback",
    "rollback_call",
    "run",
    "snapshot",
    "snapshot_call",
    "source",
    "stage_call",
    "stage_commit_call",
    "stage_drop_call",
    "update_mean",
    "update_mean_call",
    "write",
    "write_call",
    "wrong_type_error",
]

R = TypeVar("R")
#: A lease: its key and the holder's token.
Lease = tuple[str, str]
P = ParamSpec("P")

#: Every script's header must mention these words (see STYLE.md: purpose, KEYS, ARGV, reply,
#: errors, cost, why atomic).
HEADER_WORDS = ("KEYS[", "ARGV[", "Reply:", "Errors:", "Cost:", "Atomic because:")


def lua_dir() -> Traversable:
    """Where the scripts are: inside the installed package, else the source tree's ``lua/``."""
    packaged = resources.files("rediscache") / "lua"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "lua"


def available() -> list[str]:
    """Names (without ``.lua``) of all scripts found."""
    return sorted(p.name[:-4] for p in lua_dir().iterdir() if p.name.endswith(".lua"))


@cache
def source(name: str) -> str:
    """The text of script ``name``; raises FileNotFoundError naming where it looked."""
    path = lua_dir() / f"{name}.lua"
    if not path.is_file():
        raise FileNotFoundError(f"Lua script {name}.lua not found in {lua_dir()}")
    text: str = path.read_text(encoding="utf-8")
    return text


@cache
def sha(name: str) -> str:
    """The SHA1 (hex) of script ``name``, as EVALSHA names it."""
    return hashlib.sha1(source(name).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ScriptCall(Generic[R]):
    """One planned run of a script, built by a ``<script>_call`` function (no I/O).

    ``keys`` and ``args`` are its KEYS and ARGV; ``parse`` turns the reply into the wrapper's
    result; ``failed`` maps an error reply: it raises the library's exception (``from`` the
    redis error) or returns a result (for replies such as ``RC_BUSY`` that callers act on).
    ``writes``: whether the script may write (then it is never sent twice blindly).
    """

    name: str
    keys: list[Any]
    args: list[Any]
    parse: Callable[[Any], R]
    failed: Callable[[redis.ResponseError], R]
    writes: bool = True
    #: Whether its writes are the data's, which a durable hub waits for (False: a search
    #: index's "complete" mark, which any reader may write again).
    data: bool = True

    def command(self) -> tuple[Any, ...]:
        """The EVALSHA command of this call: EVALSHA_RO for a script that only reads (Redis
        declares its keys read-only, so a user with read-only key patterns may run it, and
        refuses any write inside)."""
        verb = "EVALSHA" if self.writes else "EVALSHA_RO"
        return (verb, sha(self.name), len(self.keys), *self.keys, *self.args)

    def finish(self, reply: Any) -> R:
        """The result of the call's reply (an error reply is mapped by ``failed``)."""
        if isinstance(reply, redis.ResponseError):
            return self.failed(reply)
        return self.parse(reply)

    def lost(self, exc: Exception, *, sent: bool) -> ServerError:
        """The error of a call whose connection failed (``sent``: after it was written)."""
        return lost(f"{self.name}.lua", exc, sent=sent, writes=self.writes)


def lost(what: str, exc: Exception, *, sent: bool, writes: bool = True) -> ServerError:
    """The error of ``what`` (a script, a transaction) whose connection failed: nothing ran
    when it was not ``sent`` whole; else a write's outcome is unknown (it is never sent
    twice blindly)."""
    if not sent:
        return ConnectionFailedError(f"{what} was not run: {exc}")
    if writes:
        return OutcomeUnknownError(
            f"{what} was sent but no reply came ({exc}): it may or may not have been "
            "applied, and it was not sent again; check the data before retrying"
        )
    return ConnectionFailedError(f"{what} got no reply: {exc}")


def run(planned: ScriptCall[R]) -> Flow[R]:
    """Run ``planned``: EVALSHA, loading the script on NOSCRIPT. One round trip (two the
    first time after a restart); the script itself is atomic. Sent again only when it never
    reached the server, or when it only reads (see the module docstring).

    Raises:
        OutcomeUnknownError: a writing script was sent and its reply was lost.
        ConnectionFailedError: the server could not be reached (nothing ran).
        ServerBusyError: Redis is busy with another script. Plus ``planned``'s own errors.
    """
    command = planned.command()
    for attempt in (1, 2):
        try:
            reply = yield Once(command, planned.data)
            if isinstance(reply, redis.exceptions.NoScriptError):
                yield Once(("SCRIPT", "LOAD", source(planned.name)))
                reply = yield Once(command, planned.data)
            return planned.finish(reply)
        except NotSent as exc:
            if attempt == 2:
                raise planned.lost(exc, sent=False) from exc
        except redis.BusyLoadingError:
            raise  # LOADING: a refusal (nothing ran), not a lost reply
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            if planned.writes or attempt == 2:
                raise planned.lost(exc, sent=True) from exc
    raise AssertionError("unreachable")


def call(client: redis.Redis, planned: ScriptCall[R]) -> R:
    """Run ``planned`` on a sync client (:func:`run`, performed by
    :class:`rediscache.drive.SyncDriver`); for tools and tests."""
    return SyncDriver(client, keep=False).run(run(planned))


def _sync(builder: Callable[P, ScriptCall[R]]) -> Callable[Concatenate[redis.Redis, P], R]:
    """The sync shorthand of a ``<script>_call`` builder: ``f(client, ...)`` runs the call."""

    def run(client: redis.Redis, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return call(client, builder(*args, **kwargs))

    run.__name__ = run.__qualname__ = builder.__name__.removesuffix("_call")
    run.__doc__ = f"``call(client, {builder.__name__}(...))``: see :func:`{builder.__name__}`."
    return run


def wrong_type_error(name: str) -> ServerError:
    """The error of a write refused because ``name``'s Redis key holds another type."""
    return ServerError(
        f"{name!r} is stored under a Redis key of another type (something outside rediscache "
        "wrote it); nothing was written"
    )


def _script_error(
    exc: redis.ResponseError, script: str, names: Sequence[str], first: int = 1
) -> Exception:
    """Map a script's ``RC_*`` error reply to the library's exception.

    ``names[0]`` is the user's name of the key the script numbers ``first``.
    """
    msg = str(exc)
    code, _, rest = msg.partition(" ")
    args = rest.split()
    if code == "RC_STALE":
        return StaleStateError(f"the space's state changed during {script}.lua (nothing written)")
    if code in ("RC_NOSTATE", "RC_ORIGIN"):  # the caller's reload says which (and raises)
        return StaleStateError(
            f"the space was dropped, or dropped and made again, before {script}.lua "
            "(nothing written)"
        )
    if code == "RC_WRONGTYPE":
        return wrong_type_error(names[int(args[0]) - first])
    if code == "RC_NOVERSION":
        return VersionNotFoundError(f"{names[0]} does not exist (deleted meanwhile)")
    if code == "RC_MISSING":
        key = names[int(args[0]) - first]
        return KeyNotFoundError(f"{key!r} does not exist (nothing was computed or stored)", [key])
    if code == "RC_BADLEN":
        return CorruptDataError(
            f"stored vector of {names[int(args[0]) - first]!r} has {args[1]} bytes, which does not "
            "match the space's dim and dtype"
        )
    if code == "RC_NOWEIGHT":
        return InvalidInputError(
            "nothing to average: no input was found, or the weights of the inputs found sum "
            "to <= 0 (nothing stored)"
        )
    if code == "RC_ZERO":
        return InvalidInputError(
            "the result is the zero vector (or too small to normalize), which cannot be "
            "normalized or stored in a cosine space (nothing stored)"
        )
    if code == "RC_RANGE":
        where = "its squared norm" if args[0] == "0" else f"element {int(args[0]) - 1}"
        return InvalidInputError(
            f"the result leaves the range of the space's floats ({where} is {args[1]}): it "
            "cannot be stored, and distances to it would overflow (nothing stored)"
        )
    return reply_error(msg, f"{script}.lua", call=False)


def _raiser(
    script: str, names: Sequence[str], first: int = 1
) -> Callable[[redis.ResponseError], NoReturn]:
    """A ``failed`` mapping that raises :func:`_script_error`'s exception."""

    def failed(exc: redis.ResponseError) -> NoReturn:
        raise _script_error(exc, script, names, first) from exc

    return failed


def _f64(values: npt.NDArray[np.float64] | None) -> bytes:
    return b"" if values is None else np.ascontiguousarray(values, dtype="<f8").tobytes()


class Gathered(NamedTuple):
    """Reply of ``gather.lua``: which keys were found, and the found vectors' bytes in order."""

    found: list[bool]
    blobs: list[bytes]


def gather_call(
    doc_keys: Sequence[str],
    config_key: str,
    *,
    state: str,
    field: str,
    nbytes: int,
    skip_missing: bool,
    names: Sequence[str],
) -> ScriptCall[Gathered]:
    """``gather.lua``: one atomic read of many vectors. One round trip.

    ``names`` are the user's keys (for error messages). Raises StaleStateError (the space is
    no longer in ``state``), KeyNotFoundError (a key is missing and ``skip_missing`` is
    False) or CorruptDataError (wrong byte length).
    """
    return ScriptCall(
        "gather",
        [*doc_keys, config_key],
        [field, nbytes, "skip" if skip_missing else "raise", state],
        lambda reply: Gathered([c == 0x31 for c in reply[0]], reply[1:]),
        _raiser("gather", names),
        writes=False,
    )


class Combined(NamedTuple):
    """Reply of ``combine.lua``: the result (float64), inputs used, inputs skipped, and for
    each input whether it was read."""

    vector: npt.NDArray[np.float64]
    used: int
    missing: int
    found: list[bool]


def _combined(reply: Any) -> Combined:
    used, missing, raw, found = reply
    return Combined(
        np.frombuffer(raw, dtype="<f8").copy(), int(used), int(missing), [c == 0x31 for c in found]
    )


def combine_call(
    doc_keys: Sequence[str],
    target: str,
    config_key: str,
    *,
    state: str,
    count_field: str,
    field: str,
    dim: int,
    element: str,
    coefs: npt.NDArray[np.float64],
    constant: npt.NDArray[np.float64] | None,
    mean: bool,
    normalize: bool,
    nonzero: bool,
    skip_missing: bool,
    names: Sequence[str],
    ttl_ms: int = 0,
) -> ScriptCall[Combined]:
    """``combine.lua``: ``sum(coefs[i] * v_i) + constant`` (divided by the coefficients used
    when ``mean``), optionally normalized, stored in ``target`` (with a time to live of
    ``ttl_ms`` when positive). One round trip, atomic.

    ``element`` is ``"f"`` (float32) or ``"d"`` (float64). Raises KeyNotFoundError,
    CorruptDataError or InvalidInputError (zero result, zero weight); nothing is stored then.
    """
    return ScriptCall(
        "combine",
        [*doc_keys, target, config_key],
        [
            field,
            dim,
            element,
            "skip" if skip_missing else "raise",
            _f64(coefs),
            _f64(constant),
            "mean" if mean else "sum",
            int(normalize),
            int(nonzero),
            state,
            count_field,
            ttl_ms,
        ],
        _combined,
        _raiser("combine", names),
    )


class Folded(NamedTuple):
    """Reply of ``update_mean.lua``: items folded in so far and the new vector (float64)."""

    items: int
    vector: npt.NDArray[np.float64]


def _folded(reply: Any) -> Folded:
    count, raw = reply
    return Folded(int(count), np.frombuffer(raw, dtype="<f8").copy())


def update_mean_call(
    target: str,
    item_keys: Sequence[str],
    config_key: str,
    *,
    state: str,
    doc_count_field: str,
    field: str,
    count_field: str,
    dim: int,
    element: str,
    items: int,
    ema: bool,
    old_coef: float,
    with_old: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64] | None],
    without_old: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64] | None],
    nonzero: bool,
    names: Sequence[str],
    ttl_ms: int = 0,
) -> ScriptCall[Folded]:
    """``update_mean.lua``: fold ``items`` new items into the running embedding ``target``.

    ``with_old`` / ``without_old`` are (coefficients of the key items, constant term) for when
    a stored vector exists or not (see the script's header). One round trip, atomic.
    ``names[0]`` names the target, ``names[1:]`` the item keys. ``ttl_ms`` > 0 restarts the
    target's time to live.
    """
    return ScriptCall(
        "update_mean",
        [target, *item_keys, config_key],
        [
            field,
            count_field,
            dim,
            element,
            items,
            "ema" if ema else "mean",
            repr(float(old_coef)),
            _f64(with_old[0]),
            _f64(with_old[1]),
            _f64(without_old[0]),
            _f64(without_old[1]),
            int(nonzero),
            state,
            doc_count_field,
            ttl_ms,
        ],
        _folded,
        _raiser("update_mean", names, first=0),
    )


# --------------------------------------------------------------------------- writes


class Written(NamedTuple):
    """The reply of ``write.lua``: documents created (put, update) or deleted (delete), and
    the 0-based indexes of the documents an update left out because they did not exist
    (``missing="skip"``)."""

    changed: int
    skipped: list[int]


def _written(reply: Any) -> Written:
    if isinstance(reply, list):  # an update: {created, {1-based indexes left out}}
        return Written(int(reply[0]), [int(i) - 1 for i in reply[1]])
    return Written(int(reply), [])


#: What an update (``write_call(..., missing=...)``) does with a document that does not exist.
MISSING_POLICIES = ("create", "skip", "raise")


def write_call(
    config_key: str,
    doc_keys: Sequence[str],
    *,
    state: str,
    count_field: str,
    rows: Sequence[tuple[Sequence[bytes | str], Sequence[str]]] | None,
    names: Sequence[str],
    ttl_ms: int | None = 0,
    missing: str | None = None,
    check_field: str = "state",
) -> ScriptCall[Written]:
    """``write.lua``: provided the config field ``check_field`` (the live ``state``, or a
    stage's record field) still holds ``state``, store ``rows`` (fields to set, fields to
    delete) under ``doc_keys`` with a time to live of ``ttl_ms`` (0: none; None: leave
    expiries alone, for spaces whose entries never expire), or delete the documents when
    ``rows`` is None. With ``missing`` (one of :data:`MISSING_POLICIES`) the rows update
    existing documents, fields they do not name kept, and a document that does not exist is
    created with the row's fields, left out (reported in ``Written.skipped``) or makes the
    whole call fail. One round trip, atomic.

    Returns a :class:`Written`: documents created (put, update) or deleted (delete). Raises
    StaleStateError (the space or the stage left ``state``), ServerError (a key of another
    type) or KeyNotFoundError (``missing="raise"`` and a document does not exist); nothing
    is written then.
    """
    if missing is not None and (rows is None or missing not in MISSING_POLICIES):
        raise InvalidInputError(
            f"missing must be one of {', '.join(map(repr, MISSING_POLICIES))}, got {missing!r}"
        )
    mode = "del" if rows is None else ("put" if missing is None else f"vec:{missing}")
    args: list[Any] = [check_field, state, count_field, mode]
    if rows is not None:
        args.append("-" if ttl_ms is None else ttl_ms)
        for fields, stale in rows:
            args.append(len(fields) // 2)
            args.extend(fields)
            args.append(len(stale))
            args.extend(stale)
    return ScriptCall("write", [config_key, *doc_keys], args, _written, _raiser("write", names))


# --------------------------------------------------------------------------- versions


@dataclass(frozen=True)
class Snapshotted:
    """Reply of ``snapshot.lua``."""

    id: int
    count: int
    gen: int
    state: str


def _snapshotted(reply: Any) -> Snapshotted:
    vid, count, gen, state = reply
    return Snapshotted(int(vid), int(count), int(gen), state.decode())


def snapshot_call(
    config_key: str, versions_key: str, *, label: str, created_at: float, origin: str | None
) -> ScriptCall[Snapshotted]:
    """``snapshot.lua``: record the live generation as a new version, if the space is
    still the one of ``origin`` (rediscache.state). One round trip, atomic. Raises
    InvalidInputError when another version has ``label``, StaleStateError when the space
    was dropped or is another of its name (nothing written)."""

    def failed(exc: redis.ResponseError) -> NoReturn:
        if str(exc).startswith("RC_LABEL"):
            raise InvalidInputError(
                f"a version labelled {label!r} exists already: pick another label or delete "
                "that version first"
            ) from exc
        raise _script_error(exc, "snapshot", [label]) from exc

    return ScriptCall(
        "snapshot",
        [config_key, versions_key],
        [label, repr(created_at), origin or ""],
        _snapshotted,
        failed,
    )


def _rolled_back(reply: Any) -> tuple[int, bool, str] | None:
    old, dropped, state = reply
    return int(old), bool(dropped), state.decode()


def rollback_call(
    keys: Sequence[str], *, version: int, gen: int, name: str | None = None
) -> ScriptCall[tuple[int, bool, str] | None]:
    """``rollback.lua``; ``keys`` are config, versions, alias, the version's index and the
    garbage set. Returns (old live generation, whether it became garbage, new state), or None
    while a copy of the live generation is in progress (nothing done: wait).

    One round trip, atomic. Raises VersionNotFoundError or StaleStateError (the version
    moved to another generation meanwhile).
    """

    def failed(exc: redis.ResponseError) -> None:
        if str(exc).startswith("RC_BUSY"):
            return None
        raise _script_error(exc, "rollback", [name or f"version {version}"]) from exc

    return ScriptCall("rollback", list(keys), [version, gen], _rolled_back, failed)


def _dropped(reply: Any) -> tuple[int, str]:
    freed, state = reply
    return int(freed), state.decode()


def drop_version_call(
    config_key: str, versions_key: str, garbage_key: str, *, version: int, name: str | None = None
) -> ScriptCall[tuple[int, str]]:
    """``drop_version.lua``: returns (generation that became garbage or 0, new state).
    One round trip, atomic. Raises VersionNotFoundError."""
    return ScriptCall(
        "drop_version",
        [config_key, versions_key, garbage_key],
        [version],
        _dropped,
        _raiser("drop_version", [name or f"version {version}"]),
    )


def _begun(reply: Any) -> tuple[int, int, str] | str:
    src, dst, new = reply
    return int(src), int(dst), new.decode()


def fork_begin_call(
    config_key: str, lock_key: str, garbage_key: str, *, token: str, lease_ms: int
) -> ScriptCall[tuple[int, int, str] | str]:
    """``fork_begin.lua``. Returns (source generation, new generation, new state), or the
    error code "RC_BUSY" or "RC_NOTSHARED" for the caller to act on. One round trip, atomic."""

    def failed(exc: redis.ResponseError) -> str:
        code = str(exc).split(" ")[0]
        if code in ("RC_BUSY", "RC_NOTSHARED"):
            return code
        raise _script_error(exc, "fork_begin", []) from exc

    return ScriptCall(
        "fork_begin", [config_key, lock_key, garbage_key], [token, lease_ms], _begun, failed
    )


def copy_docs_call(
    lease: Lease,
    config: str,
    sources: Sequence[bytes],
    targets: Sequence[bytes],
    *,
    lease_ms: int,
    by_copy: bool,
) -> ScriptCall[bool]:
    """``copy_docs.lua``: copy the hashes ``sources`` to ``targets`` (same length; a
    target that exists is kept), with their expiry, under the copy's ``lease`` (key,
    token), which it renews to ``lease_ms``; the space's ``config`` hash counts the copies
    (field ``copied``, read by fork_commit.lua and stage_commit.lua). ``by_copy``: with
    COPY (an owner), else field by field (a role, who is not given COPY). Returns True, or
    False when the lease is not this copy's (nothing written). One round trip, atomic; sent
    again, it copies and counts nothing twice."""

    def failed(exc: redis.ResponseError) -> bool:
        if str(exc).startswith("RC_LOST"):
            return False
        raise _script_error(exc, "copy_docs", []) from exc

    return ScriptCall(
        "copy_docs",
        [config, lease[0], *sources, *targets],
        [lease[1], lease_ms, "copy" if by_copy else "fields"],
        lambda reply: True,
        failed,
    )


def mark_built_call(config: str, field: str, run_id: bytes) -> ScriptCall[bool]:
    """``mark_built.lua``: HSET ``field`` = ``run_id`` in the space's ``config`` hash if it
    exists (True), else nothing (False: the space was dropped, or a primary without its
    replicas refused the write, ``NOREPLICAS``: the mark only saves a later FT.INFO, and a
    search must not fail for it). One round trip, atomic."""
    raiser = _raiser("mark_built", [])

    def failed(exc: redis.ResponseError) -> bool:
        if str(exc).startswith("NOREPLICAS"):
            return False
        raiser(exc)

    return ScriptCall(
        "mark_built", [config], [field, run_id], lambda reply: bool(reply), failed, data=False
    )


def gc_config_call(
    lease: Lease, keys: Sequence[str], step: str, args: Sequence[Any]
) -> ScriptCall[bool]:
    """``gc_config.lua``: the collector's ``step`` (``"listed"`` or ``"forget"``, with its
    ``args``) on ``keys`` (config, listed documents, garbage set) if ``lease`` (key, token)
    is still its own: True, else False (nothing written). One round trip, atomic."""
    return ScriptCall(
        "gc_config", [lease[0], *keys], [lease[1], step, *args],
        lambda reply: int(reply) > 0, _raiser("gc_config", []),
    )  # fmt: skip


def _leased_index(reply: Any) -> bool | None:
    """The reply of a collector's index script: None for -1 (not its lease), else 1/0."""
    return None if int(reply) < 0 else bool(int(reply))


def gc_drop_index_call(lease: str, index: str, *, token: str) -> ScriptCall[bool | None]:
    """``gc_drop_index.lua``: FT.DROPINDEX ``index`` (documents kept) if the collector's
    ``lease`` still holds ``token``; True when dropped, False when there was no such index,
    None when the lease is not this collector's (nothing dropped). One round trip, atomic.
    """
    return ScriptCall(
        "gc_drop_index", [lease, index], [token], _leased_index, _raiser("gc_drop_index", [])
    )


def gc_create_listing_call(
    lease: str, index: str, args: Sequence[Any], *, token: str
) -> ScriptCall[bool | None]:
    """``gc_create_listing.lua``: FT.CREATE ``index`` with ``args`` (the arguments after
    its name) if the collector's ``lease`` still holds ``token``; True when created, False
    when it existed, None when the lease is not this collector's (nothing created). One
    round trip, atomic."""
    return ScriptCall(
        "gc_create_listing", [lease, index], [token, *args], _leased_index,
        _raiser("gc_create_listing", []),
    )  # fmt: skip


def gc_unlink_call(
    lease: str, doomed: str, documents: Sequence[bytes], *, token: str, lease_ms: int
) -> ScriptCall[int | None]:
    """``gc_unlink.lua``: UNLINK ``documents`` (and remove them from ``doomed``) if the
    collector's ``lease`` still holds ``token``, renewing it to ``lease_ms``; the number
    deleted, or None when the lease is not this collector's (nothing deleted). One round
    trip, atomic."""
    return ScriptCall(
        "gc_unlink",
        [lease, doomed, *documents],
        [token, lease_ms],
        lambda reply: None if int(reply) < 0 else int(reply),
        _raiser("gc_unlink", []),
    )


def fork_abort_call(lock_key: str, *, token: str) -> ScriptCall[bool]:
    """``fork_abort.lua``: release the lease of a copy this client gives up (``token``);
    True when it was still this client's. One round trip, atomic."""
    return ScriptCall(
        "fork_abort", [lock_key], [token], lambda reply: bool(reply), _raiser("fork_abort", [])
    )


def fork_commit_call(keys: Sequence[str], *, token: str) -> ScriptCall[str | None]:
    """``fork_commit.lua``; ``keys`` are config, versions, lease and garbage set; the
    copy's size is the count copy_docs.lua kept.

    Returns the new state, or None when the lease was lost (another client took the copy
    over). One round trip, atomic. Raises CorruptDataError when the copy's size is wrong
    (the copy is dropped; the versions stay where they were).
    """

    def failed(exc: redis.ResponseError) -> None:
        msg = str(exc)
        if msg.startswith("RC_LOST"):
            return None
        if msg.startswith("RC_COUNT"):
            raise CorruptDataError(
                f"copying the live generation for its versions found {msg.split()[2]} "
                f"documents where the space counts {msg.split()[1]}; the copy was dropped"
            ) from exc
        raise _script_error(exc, "fork_commit", []) from exc

    return ScriptCall("fork_commit", list(keys), [token], lambda reply: str(reply.decode()), failed)


# --------------------------------------------------------------------------- stages


def _staged(reply: Any) -> tuple[int, str, int, str]:
    gen, record, live, state = reply
    return int(gen), record.decode(), int(live), state.decode()


def stage_call(
    keys: Sequence[str],
    *,
    field: str,
    token: str,
    created_at: float,
    copy: bool,
    lease_ms: int,
    label: str,
    origin: str | None,
) -> ScriptCall[tuple[int, str, int, str] | None]:
    """``stage.lua``; ``keys`` are the config hash and the copy lease. Returns (the stage's
    generation, its record, the live generation, the new state or "" when not copying), or
    None while a copy of the live generation runs (nothing done: wait). One round trip,
    atomic. Raises InvalidInputError when a stage has ``label`` already, StaleStateError
    when the space was dropped or is not the one of ``origin`` (nothing written)."""

    def failed(exc: redis.ResponseError) -> None:
        code = str(exc).split(" ")[0]
        if code == "RC_BUSY":
            return None
        if code == "RC_LABEL":
            raise InvalidInputError(
                f"a stage labelled {label!r} exists already: publish or discard it, or pick "
                "another label"
            ) from exc
        raise _script_error(exc, "stage", [label]) from exc

    mode = "copy" if copy else "empty"
    args = [field, token, repr(created_at), mode, lease_ms, origin or ""]
    return ScriptCall("stage", list(keys), args, _staged, failed)


def stage_commit_call(
    keys: Sequence[str], *, field: str, token: str, label: str
) -> ScriptCall[tuple[str, str]]:
    """``stage_commit.lua``; ``keys`` are config, lease and garbage set; the copy's size is
    the count copy_docs.lua kept. Returns (the open
    record, the new state). One round trip, atomic. Raises StageNotFoundError when the
    stage was discarded or its copy taken over meanwhile, CorruptDataError when the copy
    has the wrong size (the stage is dropped then)."""

    def failed(exc: redis.ResponseError) -> NoReturn:
        msg = str(exc)
        code = msg.split(" ")[0]
        if code == "RC_NOSTATE":
            raise SpaceNotFoundError(
                f"the space was dropped while stage {label!r} was being copied from it: "
                "nothing was staged"
            ) from exc
        if code in ("RC_LOST", "RC_GONE"):
            why = "its copy took longer than its lease and a writer took it over"
            if code == "RC_GONE":
                why = "it was discarded while its copy was made"
            raise StageNotFoundError(f"stage {label!r} is gone: {why}") from exc
        if code == "RC_COUNT":
            raise CorruptDataError(
                f"copying the live space into stage {label!r} found {msg.split()[2]} documents "
                f"where the space counts {msg.split()[1]}; the stage was dropped"
            ) from exc
        raise _script_error(exc, "stage_commit", [label]) from exc

    return ScriptCall(
        "stage_commit",
        list(keys),
        [field, token],
        lambda reply: (reply[0].decode(), reply[1].decode()),
        failed,
    )


def stage_drop_call(keys: Sequence[str], *, field: str, missing: str) -> ScriptCall[int]:
    """``stage_drop.lua``; ``keys`` are config, lease and garbage set; ``missing`` is the
    message of the StageNotFoundError raised when there is no such stage. Returns the
    generation made garbage (0 while its copy still runs). One round trip, atomic."""

    def failed(exc: redis.ResponseError) -> NoReturn:
        if str(exc).startswith("RC_NOSTAGE"):
            raise StageNotFoundError(missing) from exc
        raise _script_error(exc, "stage_drop", [field]) from exc

    return ScriptCall("stage_drop", list(keys), [field], lambda reply: int(reply), failed)


class Published(NamedTuple):
    """Reply of ``publish.lua``: the replaced live generation, the version keeping it (0:
    none), whether it became garbage, the new state, and its number of documents."""

    old: int
    version: int
    dropped: bool
    state: str
    documents: int


def publish_call(
    keys: Sequence[str],
    *,
    field: str,
    record: str,
    keep: bool,
    version_label: str,
    created_at: float,
    name: str,
) -> ScriptCall[Published | None]:
    """``publish.lua``; ``keys`` are config, versions, alias, the stage's index and the
    garbage set. Returns a :class:`Published`, or None while a copy of the live generation
    runs (nothing done: wait). One round trip, atomic. Raises StageNotFoundError,
    StaleStateError (the record changed: reload), InvalidInputError (a version has
    ``version_label``) or ServerError (the stage is still being copied)."""

    def failed(exc: redis.ResponseError) -> None:
        code = str(exc).split(" ")[0]
        if code == "RC_BUSY":
            return None
        if code == "RC_NOSTAGE":
            raise StageNotFoundError(f"{name} was published or discarded already") from exc
        if code == "RC_NOTOPEN":
            raise ServerError(
                f"{name} is still being copied from the live space (or its copying client "
                "died: discard it)"
            ) from exc
        if code == "RC_LABEL":
            raise InvalidInputError(
                f"a version labelled {version_label!r} exists already: pick another label"
            ) from exc
        raise _script_error(exc, "publish", [name]) from exc

    def parse(reply: Any) -> Published:
        old, vid, dropped, state, count = reply
        return Published(int(old), int(vid), bool(dropped), state.decode(), int(count))

    args = [field, record, "1" if keep else "0", version_label, repr(created_at)]
    return ScriptCall("publish", list(keys), args, parse, failed)


# --------------------------------------------------------------------------- sync shorthands

gather = _sync(gather_call)
combine = _sync(combine_call)
update_mean = _sync(update_mean_call)
write = _sync(write_call)
snapshot = _sync(snapshot_call)
rollback = _sync(rollback_call)
drop_version = _sync(drop_version_call)
fork_begin = _sync(fork_begin_call)
fork_commit = _sync(fork_commit_call)
