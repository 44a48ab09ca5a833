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
    +-- CorruptDataError                    stored bytes that cannot be decoded
    +-- ServerError                         Redis side problems
        +-- StaleStateError                 the space kept changing under a call; retry
        +-- ServerBusyError                 Redis is blocked by a long script (BUSY)
        +-- OutcomeUnknownError             a write was sent but its reply never came
        +-- IndexBuildingError              a search index is still being (re)built
        +-- ConnectionFailedError           cannot reach or authenticate to Redis
        +-- SearchModuleMissingError        the server has no RediSearch
        +-- EmbeddedServerError             the local embedded server cannot start
            +-- RedisBinaryNotFoundError    no usable redis-server binary
            +-- PortInUseError              the requested port is taken
            +-- ServerLoadingError          it is still loading its data (left running)

Messages say what was wrong and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "ConnectionFailedError",
    "CorruptDataError",
    "EmbeddedServerError",
    "IndexBuildingError",
    "InvalidInputError",
    "KeyNotFoundError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PortInUseError",
    "ReadOnlyError",
    "RedisBinaryNotFoundError",
    "RediscacheError",
    "SchemaMismatchError",
    "SearchModuleMissingError",
    "ServerBusyError",
    "ServerError",
    "ServerLoadingError",
    "SpaceNotFoundError",
    "StaleStateError",
    "VersionNotFoundError",
]


class RediscacheError(Exception):
    """Root of every error raised by rediscache."""


class InvalidInputError(RediscacheError, ValueError):
    """An argument is invalid (shape, dtype, value, key, filter...). Nothing was written."""


class SchemaMismatchError(InvalidInputError):
    """A space exists with a different schema than the one requested."""


class NotFoundError(RediscacheError, LookupError):
    """Something that was asked for does not exist."""


class SpaceNotFoundError(NotFoundError):
    """The named space does not exist."""


class KeyNotFoundError(NotFoundError):
    """An embedding key does not exist in the space."""


class VersionNotFoundError(NotFoundError):
    """No version of the space has the given id or label."""


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


class StaleStateError(ServerError):
    """The space's state (live generation, versions) changed during every attempt of a call.

    Calls retry a few times after a snapshot, rollback or copy changes the state; this is
    raised only when the space keeps changing. Nothing was written by the failed attempts.
    """


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


def reply_error(message: str, context: str) -> ServerError:
    """The library's error for an error reply ``message`` of Redis, during ``context`` (e.g.
    "search in space 'items'"): :class:`ServerBusyError` for ``BUSY``, a
    :class:`ServerError` saying so for ``LOADING``, a plain :class:`ServerError` otherwise."""
    if message.startswith("BUSY"):
        return ServerBusyError(
            f"{context}: Redis is busy running a script (BUSY) and answers nobody until it "
            "ends; nothing was done: retry later"
        )
    if message.startswith("LOADING"):
        return ServerError(
            f"{context}: Redis is loading its data after a restart (LOADING); nothing was "
            "done: retry once it is ready"
        )
    return ServerError(f"{context} failed: {message}")


class ConnectionFailedError(ServerError):
    """Redis cannot be reached, or refused the credentials."""


class SearchModuleMissingError(ServerError):
    """The Redis server has no search module (RediSearch / Redis query engine)."""


class EmbeddedServerError(ServerError):
    """The local embedded Redis server cannot be started or stopped."""


class RedisBinaryNotFoundError(EmbeddedServerError):
    """No redis-server binary able to load the search module was found."""


class ServerLoadingError(EmbeddedServerError):
    """The embedded server is still loading its data (replaying its AOF, rebuilding indexes)
    when the start timeout ran out. It was left running: killing it would make the next start
    load everything again. Retry later, or give a longer ``start_timeout``."""


class PortInUseError(EmbeddedServerError):
    """The TCP port requested for the embedded server is already in use."""
