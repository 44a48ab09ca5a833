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
        +-- ConnectionFailedError           cannot reach or authenticate to Redis
        +-- SearchModuleMissingError        the server has no RediSearch
        +-- EmbeddedServerError             the local embedded server cannot start
            +-- RedisBinaryNotFoundError    no usable redis-server binary
            +-- PortInUseError              the requested port is taken

Messages say what was wrong and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "ConnectionFailedError",
    "CorruptDataError",
    "EmbeddedServerError",
    "InvalidInputError",
    "KeyNotFoundError",
    "NotFoundError",
    "PortInUseError",
    "ReadOnlyError",
    "RedisBinaryNotFoundError",
    "RediscacheError",
    "SchemaMismatchError",
    "SearchModuleMissingError",
    "ServerError",
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
    """A problem on the Redis side."""


class StaleStateError(ServerError):
    """The space's state (live generation, versions) changed during every attempt of a call.

    Calls retry a few times after a snapshot, rollback or copy changes the state; this is
    raised only when the space keeps changing. Nothing was written by the failed attempts.
    """


class ConnectionFailedError(ServerError):
    """Redis cannot be reached, or refused the credentials."""


class SearchModuleMissingError(ServerError):
    """The Redis server has no search module (RediSearch / Redis query engine)."""


class EmbeddedServerError(ServerError):
    """The local embedded Redis server cannot be started or stopped."""


class RedisBinaryNotFoundError(EmbeddedServerError):
    """No redis-server binary able to load the search module was found."""


class PortInUseError(EmbeddedServerError):
    """The TCP port requested for the embedded server is already in use."""
