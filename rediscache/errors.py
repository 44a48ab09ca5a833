"""The exception tree of rediscache.

Every error the library raises on purpose derives from :class:`RediscacheError`, so
``except rediscache.RediscacheError`` catches all of them. Errors caused by bad input
also derive from :class:`ValueError`; lookups of things that do not exist also derive
from :class:`LookupError`::

    RediscacheError
    +-- InvalidInputError (ValueError)      bad argument: dim, dtype, NaN, key, filter...
    |   +-- SchemaMismatchError             create_space(exist_ok=True) with another schema
    |   +-- ReadOnlyError                   a write through a read-only version view
    +-- NotFoundError (LookupError)
    |   +-- SpaceNotFoundError              the space does not exist
    |   +-- KeyNotFoundError                an embedding key does not exist
    |   +-- VersionNotFoundError            no version with that id or label
    |       +-- StageNotFoundError          no such stage (or published / discarded)
    +-- CorruptDataError                    stored bytes that cannot be decoded
    +-- ServerError                         Redis side problems (any other error reply)
        +-- StaleStateError                 the space kept changing under a call; retry
        +-- ServerBusyError                 Redis is blocked by a long script (BUSY)
        +-- ServerLoadingError              Redis is still loading its data (LOADING)
        +-- ServerTimeoutError              no reply to a read within the socket timeout
        +-- OutcomeUnknownError             a write was sent but its reply never came
        +-- DurabilityError                 a write reached fewer replicas than asked
        +-- IndexBuildingError              a search index is still being (re)built
        +-- ReshardingError                 a cluster is moving the space's slot; retry
        +-- ConnectionFailedError           cannot reach or authenticate to Redis (or a
        |                                   cluster's shard has no primary: CLUSTERDOWN)
        |   +-- AuthenticationFailedError   Redis refused the user or password
        |   +-- FailoverTimeoutError        no primary within failover_wait (Sentinel,
        |                                   a cluster with replicas)
        +-- PermissionDeniedError           the ACL user may not run a command (NOPERM)
        +-- SearchModuleMissingError        the server has no RediSearch
        +-- EmbeddedServerError             the local embedded server cannot start
            +-- RedisBinaryNotFoundError    no usable redis-server binary
            +-- PortInUseError              the requested port is taken

Messages say what was wrong and what to do about it. No redis-py exception (nor an
``OSError`` of a socket) leaves a public call: every one of them maps a connection, timeout
or server error to the library's error, named after the call and its space, and says
whether anything may have been written (see :mod:`rediscache.guard`, which also retries
reads whose connection was lost). Credentials never appear in a message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = [
    "AuthenticationFailedError",
    "ConnectionFailedError",
    "CorruptDataError",
    "EmbeddedServerError",
    "IndexBuildingError",
    "InvalidInputError",
    "KeyNotFoundError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "PortInUseError",
    "ReadOnlyError",
    "RedisBinaryNotFoundError",
    "RediscacheError",
    "ReshardingError",
    "SchemaMismatchError",
    "SearchModuleMissingError",
    "ServerBusyError",
    "ServerError",
    "ServerLoadingError",
    "ServerTimeoutError",
    "SpaceNotFoundError",
    "StageNotFoundError",
    "StaleStateError",
    "VersionNotFoundError",
]


class RediscacheError(Exception):
    """Root of every error raised by rediscache."""


class InvalidInputError(RediscacheError, ValueError):
    """An argument is invalid (shape, dtype, value, key, filter...). Nothing was written."""


class SchemaMismatchError(InvalidInputError):
    """A space exists with a different schema than the one requested, or (``same_schema``)
    exists with this schema and was not allowed to (``exist_ok``)."""

    same_schema: bool = False


class NotFoundError(RediscacheError, LookupError):
    """Something that was asked for does not exist."""


class SpaceNotFoundError(NotFoundError):
    """The named space does not exist."""


class KeyNotFoundError(NotFoundError):
    """An embedding key does not exist in the space. ``keys``: the missing keys, every one
    of them (the message shows the first few)."""

    def __init__(self, message: str, keys: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.keys: tuple[str, ...] = tuple(keys)


class VersionNotFoundError(NotFoundError):
    """No version of the space has the given id or label."""


class StageNotFoundError(VersionNotFoundError):
    """No stage with that label: never staged, or already published or discarded."""


class ReadOnlyError(InvalidInputError):
    """A write was attempted through a read-only view of a version (``space.at(v)``)."""


class CorruptDataError(RediscacheError):
    """Stored data cannot be decoded (for example a vector of the wrong byte length)."""


class ServerError(RediscacheError):
    """A problem on the Redis side.

    A bulk write (``put_many``, ``update_vectors``) that failed mid-way sets ``rows`` to the
    ``(start, end)`` input positions (0-based, end excluded) of the chunk that failed: rows
    before ``start`` are stored, rows from ``end`` on were not sent. Otherwise ``None``.
    """

    rows: tuple[int, int] | None = None
    #: The keys stored before the failure, where ``rows`` cannot say it (a partitioned
    #: space's batch is written partition by partition, not in input order); otherwise
    #: None.
    stored: list[str] | None = None
    #: The keys of the failed chunk that were not stored (or only partly), when the rest of
    #: it was: a put_many chunk written as a transaction can fail this way only if another
    #: client turned a key into another type mid-write (rediscache.writes). Otherwise None:
    #: the chunk was stored whole or not at all.
    not_stored: list[str] | None = None

    #: The public call that failed with its space (``"get in space 'items'"``), set once the
    #: message names it (:mod:`rediscache.guard`); None when the error names it by itself.
    operation: str | None = None
    #: An error reply of a step (a script) whose message does not name the public call yet.
    unplaced: bool = False


class StaleStateError(ServerError):
    """The space's state (live generation, versions) changed during every attempt of a call.

    Calls retry a few times after a snapshot, rollback or copy changes the state; this is
    raised only when the space keeps changing. Nothing was written by the failed attempts.
    """


class ReshardingError(ServerError):
    """A Redis Cluster is moving the slot of the space between nodes (a resharding): a
    search is refused meanwhile, since each node's index covers its own documents only and
    an answer would miss hits, and so is a write that touches keys on both nodes at once.
    Retryable: nothing was written. rediscache waits up to
    :data:`rediscache.routing.RESHARD_WAIT` seconds for the move to end before raising it.
    Gets follow the keys to their new node and never raise it."""


class ServerBusyError(ServerError):
    """Redis answered ``BUSY``: it is running a long script (another client's, or an earlier
    call's) and serves nobody until the script ends. Nothing of the refused call was done;
    retry once the server is free. A busy server is alive: it is never reported as a missing
    space or a dead server."""


class OutcomeUnknownError(ServerError):
    """A write was sent but no reply came (the connection broke or the socket timed out).

    The write may or may not have been applied; rediscache never sends such a write again by
    itself, because repeating it could apply it twice (an ``update_mean`` would count its
    items twice). Check the data (``get``) before retrying.
    """


class IndexBuildingError(ServerError):
    """A search index is still being built (after a server restart the search module
    rebuilds every index from the stored hashes in the background), and did not finish
    within the wait allowed (``Hub.index_wait`` for searches). A search now would miss hits
    silently, so none was run; ``percent`` says how far the build is (0-100)."""

    def __init__(self, message: str, percent: float | None = None) -> None:
        super().__init__(message)
        self.percent = percent


def reply_error(message: str, context: str, *, call: bool = True) -> ServerError:
    """The library's error for an error reply ``message`` of Redis, during ``context`` (e.g.
    "search in space 'items'"): :class:`ServerBusyError` for ``BUSY``,
    :class:`ServerLoadingError` for ``LOADING``, :class:`PermissionDeniedError` for
    ``NOPERM``, :class:`ConnectionFailedError` for ``CLUSTERDOWN``, a plain
    :class:`ServerError` otherwise. ``call``: whether ``context`` names
    the public call; if not (a script's name, or empty), the call's guard puts its name in
    front."""
    lowered = message.lower()
    error: ServerError
    at = f"{context}: " if context else ""
    if message.startswith("BUSY"):
        error = ServerBusyError(
            f"{at}Redis is busy running a script (BUSY) and answers nobody until it "
            "ends; nothing was done: retry later"
        )
    elif message.startswith("LOADING") or "loading the dataset" in lowered:
        error = ServerLoadingError(
            f"{at}Redis is loading its data after a restart (LOADING); nothing was "
            "done: retry once it is ready"
        )
    elif message.startswith("CLUSTERDOWN") or lowered.startswith("the cluster is down"):
        error = ConnectionFailedError(
            f"{at}the Redis Cluster is down for this key (CLUSTERDOWN: a shard has no "
            "reachable primary, e.g. while its replica is being promoted, about the node "
            "timeout plus an election); nothing was done: retry in a few seconds"
        )
    elif message.startswith("NOPERM") or "no permissions" in lowered:
        error = PermissionDeniedError(f"{at}Redis refused it ({noperm_reason(message)})")
        error.reason = noperm_reason(message)
    else:
        text = f"{context} failed: {message}" if context else f"Redis replied: {message}"
        error = ServerError(text)
    if call:
        error.operation = context
    else:
        error.unplaced = True
    return error


class ConnectionFailedError(ServerError):
    """Redis cannot be reached, or refused the credentials. A read that fails so wrote
    nothing; a write raises it only when it was never sent (else
    :class:`OutcomeUnknownError`)."""


class DurabilityError(ServerError):
    """A write was applied on the primary but reached fewer replicas (or AOF fsyncs) than
    the hub's ``durability`` asks within its timeout (:mod:`rediscache.durability`): a
    failover now may lose it. Nothing was undone."""

    #: The reply of the effect whose wait fell short, for the driver to go on with:
    #: (reply,), or None (rediscache.durability.short_of_durability).
    carried: tuple[object] | None = None


class FailoverTimeoutError(ConnectionFailedError):
    """No primary answered within the hub's ``failover_wait`` (seconds; Sentinel-managed
    servers and clusters with replicas, see :mod:`rediscache.guard`): the primary went away
    and no replica was promoted in time, or the client cannot reach the one promoted. The
    step that waited was never run; the message says what the last attempt met."""


class ServerTimeoutError(ServerError):
    """A read got no reply within the client's socket timeout (the server is slow or
    blocked). Nothing was written; it is not retried automatically (a timed-out call would
    most likely time out again). A write that times out raises :class:`OutcomeUnknownError`."""


class AuthenticationFailedError(ConnectionFailedError):
    """Redis refused the credentials (``WRONGPASS``): a wrong password, or a user that does
    not exist or was turned off (revoked, or its password changed). Nothing was done."""


class PermissionDeniedError(ServerError):
    """The Redis ACL user may not run a command the call needs, or may not touch one of its
    keys (``NOPERM``). Nothing of the refused command was done. ``user``: the ACL user when
    known; ``space``: the space of the call, if any; ``needs``: the weakest role that allows
    the call (``"read"``, ``"write"``, ``"admin"`` or ``"owner"``) when known; ``reason``:
    what Redis (or rediscache) refused, in a few words."""

    user: str | None = None
    space: str | None = None
    needs: str | None = None
    reason: str | None = None
    #: Whether the message is the final one, naming the public call (rediscache.guard).
    final: bool = False


_NOPERM_RUN = re.compile(r"no permissions to run the '([^']+)' command", re.IGNORECASE)
_NOPERM_ACCESS = re.compile(r"no permissions to access an? (\w+)", re.IGNORECASE)


def noperm_reason(message: str) -> str:
    """A ``NOPERM`` reply in a few words, without the pipeline's command text (which may
    hold keys and values): ``"no permission to run 'evalsha'"``, ``"no permission to access
    a key"``. Pure."""
    run = _NOPERM_RUN.search(message)
    if run:
        return f"no permission to run {run.group(1).lower()!r}"
    access = _NOPERM_ACCESS.search(message)
    if access:
        return f"no permission to access a {access.group(1).lower()}"
    return "no permission"


def denied_message(
    doing: str,
    *,
    user: str | None,
    space: str | None,
    needs: str | None,
    reason: str | None,
) -> str:
    """The message of a :class:`PermissionDeniedError`: who may not do what, why, and who
    can change it, e.g. "user 'bob' may not delete in space 'items' (needs role write; no
    permission to run 'evalsha'); an owner can grant it: rediscache acl grant bob items
    --role write". ``doing`` names the call ("delete in space 'items'"); a call that
    ``needs`` an ``"owner"`` says so (no role on a space allows it). Pure."""
    who = f"user {user!r}" if user else "this Redis user"
    if needs == "owner":  # not a matter of roles on a space
        return f"{who} may not {doing}: only an owner may; connect as an owner account"
    why = [f"needs role {needs}"] if needs else []
    why += [reason] if reason else []
    text = f"{who} may not {doing}" + (f" ({'; '.join(why)})" if why else "")
    if user and space and needs:
        return f"{text}; an owner can grant it: rediscache acl grant {user} {space} --role {needs}"
    return f"{text}; an owner can grant roles: rediscache acl grant USER SPACE --role ROLE"


class ServerLoadingError(ServerError):
    """Redis is still loading its data (replaying its AOF, rebuilding indexes) and answers
    ``LOADING``: nothing was done; retry once it is ready. Also raised when the embedded
    server is still loading when its start timeout ran out: it was left running (killing it
    would make the next start load everything again); retry later, or give a longer
    ``start_timeout``."""


class SearchModuleMissingError(ServerError):
    """The Redis server has no search module (RediSearch / Redis query engine)."""


class EmbeddedServerError(ServerError):
    """The local embedded Redis server cannot be started or stopped."""


class RedisBinaryNotFoundError(EmbeddedServerError):
    """No redis-server binary able to load the search module was found."""


class PortInUseError(EmbeddedServerError):
    """The TCP port requested for the embedded server is already in use."""
