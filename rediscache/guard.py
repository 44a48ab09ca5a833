"""The boundary of every public call: Redis and socket errors become the library's errors,
lost connections of reads are retried, and calls are counted in the hub's metrics.

Every public method of :class:`~rediscache.Hub`, :class:`~rediscache.Space`, a version view
and their asyncio twins runs its flow inside :func:`guarded` (:mod:`rediscache.drive` makes
the methods so; a test enumerates them). Operations combine flows rather than call each
other's public methods, so a call is mapped, retried and counted once. What it maps (every
message names the call and its space, and says whether anything may have been written):

* a connection that cannot be made or broke: :class:`ConnectionFailedError` for reads ("nothing
  was written") and for writes that were never sent; :class:`OutcomeUnknownError` for a write
  whose reply was lost (it is never sent again);
* no reply within the socket timeout: :class:`ServerTimeoutError` for reads,
  :class:`OutcomeUnknownError` for writes;
* error replies: ``BUSY`` -> :class:`ServerBusyError`, ``LOADING`` ->
  :class:`ServerLoadingError`, ``NOPERM`` -> :class:`PermissionDeniedError` (naming the ACL
  user, the call, the role it needs and who can grant it: :func:`rediscache.errors.denied_message`),
  any other -> :class:`ServerError`;
* credentials refused (``WRONGPASS``: a wrong password, a deleted or disabled user):
  :class:`AuthenticationFailedError`.

Retries: a read (:data:`READS`) whose connection was lost or could not be made is attempted
again up to :data:`READ_RETRIES` times, after the pauses of :data:`RETRY_PAUSES` (0.05 s, then
0.25 s): a restarted server or a killed connection costs the caller a pause, not an error.
Within one attempt, a one-write round trip of reads (:func:`rediscache.wire.roundtrip`) and a
read-only script (:func:`rediscache.scripts.call`) re-send once at once on a fresh connection,
so a read is sent at most ``2 * (1 + READ_RETRIES)`` = 6 times. Timeouts are not retried (a
read that timed out would most likely time out again, and the caller's budget is the socket
timeout), nor is ``LOADING`` (loading can take minutes). Writes are never re-sent once they may
have reached the server. The clients :func:`rediscache.connect` creates have redis-py's own
retries turned off so that these are the only ones; a client passed in keeps its own
``Retry``, which then also applies to connecting and to the commands sent through redis-py.

Failover: on a hub whose server can fail over by itself (a primary watched by Sentinels, a
cluster whose primaries have replicas), a step that met no primary is sent again, however
the call writes: its connection could not be made (the primary is dead and not yet
replaced), Sentinel knows no primary (:class:`redis.sentinel.MasterNotFoundError`), or the
node refused it as a replica (``READONLY``: a demoted primary; ``MASTERDOWN``,
``CLUSTERDOWN``: a shard without primary; ``NOREPLICAS``: a primary cut off from its
replicas, which the Sentinels may be replacing). None of those ran anything, so sending them again
writes nothing twice. Each such step waits at most the hub's ``failover_wait`` seconds
(:data:`FAILOVER_WAIT`, 30; after pauses of :data:`FAILOVER_PAUSES`), then raises
:class:`FailoverTimeoutError`. A write whose reply was lost with the primary still raises
:class:`OutcomeUnknownError` at once (it may have run): only the caller can tell whether to
write it again. docs/availability.md measures a failover seen by callers.

Credentials never appear in messages: :func:`redact` hides passwords in URLs and ``password=``
settings of any text it is given.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from .effects import Flow, Sleep
from .errors import (
    AuthenticationFailedError,
    ConnectionFailedError,
    DurabilityError,
    FailoverTimeoutError,
    OutcomeUnknownError,
    PermissionDeniedError,
    RediscacheError,
    ServerError,
    ServerLoadingError,
    ServerTimeoutError,
    denied_message,
    noperm_reason,
    reply_error,
)
from .metrics import HIT_OPS, Metrics, hits_of
from .wire import NotSent

__all__ = [
    "FAILOVER_PAUSES", "FAILOVER_WAIT", "NEEDS", "ONE_STEP", "READS", "READ_RETRIES",
    "RETRY_PAUSES", "Call", "Failover", "acl_user", "address", "auth_refused", "count_success",
    "guarded",
    "needs", "redact", "refused", "refused_credentials", "translate", "unsent",
]  # fmt: skip

#: Further attempts of a read whose connection was lost, and the pause before each.
READ_RETRIES = 2
RETRY_PAUSES = (0.05, 0.25)

#: Seconds a step that met no primary waits for one (see the module docstring), by default,
#: on hubs whose server fails over by itself; ``hub.failover_wait`` sets it per hub. Set it
#: above the time a failover takes: Sentinel's ``down-after-milliseconds`` plus a few
#: seconds (a local set: 5 s + about 2; Redis's default 30 s), a cluster's
#: ``cluster-node-timeout`` plus a few seconds.
FAILOVER_WAIT = 30.0
#: Pauses between the attempts of a step waiting for a primary (the last one repeats).
FAILOVER_PAUSES = (0.05, 0.1, 0.2, 0.5)

#: Calls that only read (``average`` and ``combine`` unless given ``into``): safe to repeat.
READS = frozenset({
    "get", "get_many", "get_record", "search", "search_many", "similar", "within", "count", "len",
    "info", "versions", "version", "at", "diff", "iter_batches", "spaces", "space",
    "server_versions", "server_stats", "average", "combine", "enable_hot_cache",
    "get_metadata_many",
})  # fmt: skip
#: Writes of one round trip (or reads then one write): a write that was never sent wrote
#: nothing. Other writes have several steps, of which the first ones may have been done.
ONE_STEP = frozenset({"put", "delete", "update_mean", "average", "combine", "delete_version"})
#: The weakest role that allows each call beyond reading (docs/security.md); any other call
#: needs ``read`` (average and combine with ``into``: ``write``).
_OWNER_CALLS = ("create_space", "grant", "revoke", "passwd", "users")
_ADMIN_CALLS = (
    "drop_space", "rollback", "publish", "delete_version", "prune_versions", "stage", "staged",
    "discard_stage", "discard", "build", "collect_garbage",
)  # fmt: skip
_WRITE_CALLS = (
    "put", "put_many", "update_vectors", "delete", "update_mean", "get_or_compute", "snapshot",
    "purge_expired",
)  # fmt: skip
NEEDS = {
    **dict.fromkeys(_OWNER_CALLS, "owner"),
    **dict.fromkeys(_ADMIN_CALLS, "admin"),
    **dict.fromkeys(_WRITE_CALLS, "write"),
}

T = TypeVar("T")


_CAUGHT = (redis.RedisError, RediscacheError, ConnectionError, socket.timeout)


# --------------------------------------------------------------------------- redaction

# up to the last "@" of the authority: a password may hold "@" (and "/" only percent-encoded)
#: A URL's user information, up to the last '@' of the line (a password may hold '/', ':',
#: '@' or spaces when it was not percent-encoded).
_URL_USERINFO = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)([^\n'\"]*)@")
_QUERY_PASSWORD = re.compile(r"(?i)([?&;]password=)[^&#\s]*")
#: A password rule of ACL SETUSER (``>pw`` adds, ``<pw`` removes, ``#hex`` by its SHA-256).
_ACL_PASSWORD = re.compile(r"(?:(?<=\s)|(?<=^)|(?<=[,'\"(]))([<>#])[^\s,'\")]+")
_SETTING_PASSWORD = re.compile(
    r"(?i)(\b(?:password|passwd)['\"]?\s*[=:]\s*|\brequirepass\s+)(['\"]?)[^'\"\s,;&)}]+\2"
)


def _hide_password(match: re.Match[str]) -> str:
    """A URL's user information with its password (after the first ':') hidden."""
    user, colon, _ = match.group(2).partition(":")
    if not colon:
        return match.group(0)  # a user name alone
    return f"{match.group(1)}{user}:***@"


def redact(text: str) -> str:
    """``text`` with every password hidden: in URLs (``redis://user:pw@host``, ``?password=``),
    in settings (``password='pw'``, ``"password": "pw"``, ``requirepass pw``) and in ACL
    rules (``>pw``, ``<pw``, ``#<sha256>``, as redis-py quotes an ``ACL SETUSER`` that
    failed in a pipeline). Pure."""
    text = _URL_USERINFO.sub(_hide_password, text)
    text = _QUERY_PASSWORD.sub(r"\1***", text)
    if "setuser" in text.lower():
        text = _ACL_PASSWORD.sub(r"\1***", text)
    return _SETTING_PASSWORD.sub(r"\1\2***\2", text)


# --------------------------------------------------------------------------- mapping


def _settings(client: Any) -> dict[str, Any]:
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if kwargs is None:  # a redis-py cluster client: its nodes' settings
        kwargs = getattr(getattr(client, "nodes_manager", None), "connection_kwargs", None)
        kwargs = getattr(client, "connection_kwargs", kwargs)
    return kwargs if isinstance(kwargs, dict) else {}


def address(client: Any) -> str:
    """Where ``client`` connects (``host:port`` or the unix socket), without credentials;
    for a redis-py cluster client ``a node of the cluster at host:port`` (its first node:
    which node failed is in the error's own text)."""
    if hasattr(client, "get_default_node"):
        nodes = getattr(client, "startup_nodes", None) or getattr(
            getattr(client, "nodes_manager", None), "startup_nodes", None
        )
        first = next(iter(nodes.values()), None) if isinstance(nodes, dict) else None
        if first is None and isinstance(nodes, list) and nodes:
            first = nodes[0]
        if first is not None:
            return f"a node of the cluster at {first.host}:{first.port}"
        return "a node of the cluster"
    pool = getattr(client, "connection_pool", None)
    manager = getattr(pool, "sentinel_manager", None)
    if manager is not None:  # found through Sentinels: where they last said
        lead = getattr(pool, "master_address", None) or getattr(
            getattr(pool, "proxy", None), "master_address", None
        )
        name = getattr(pool, "service_name", "?")
        return (
            f"{lead[0]}:{lead[1]} (the primary of {name!r})" if lead else f"the primary of {name!r}"
        )
    kw = _settings(client)
    if kw.get("path"):
        return str(kw["path"])
    return f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}"


def database(client: Any) -> int:
    """The database number ``client`` selects (0 when it says none)."""
    return int(_settings(client).get("db") or 0)


def acl_user(client: Any) -> str | None:
    """The ACL user ``client`` authenticates as (``default`` without a user name), or None
    when a credential provider decides."""
    kw = _settings(client)
    if kw.get("credential_provider") is not None:
        return None
    return str(kw.get("username") or "default")


def _root(exc: BaseException) -> BaseException:
    """The first redis or socket error in ``exc``'s chain of causes (``exc`` if none)."""
    seen = exc
    while seen is not None:
        if isinstance(seen, redis.RedisError | ConnectionError | socket.timeout):
            return seen
        seen = seen.__cause__  # type: ignore[assignment]
    return exc


def _connecting(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure to open a connection (nothing was sent on it)."""
    text = str(exc).lower()
    return (
        isinstance(exc, ConnectionRefusedError)
        or "connecting to" in text
        or ("timeout connecting" in text)
    )


_POOL_FULL = ("too many connections", "no connection available")


def _pool_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause) says the client's connection pool had no free
    connection: nothing was sent, and the server is fine."""
    text = str(_root(exc)).lower()
    return any(words in text for words in _POOL_FULL)


def _lost(exc: BaseException) -> bool:
    """Whether a read failed because its connection was lost or could not be made."""
    if isinstance(exc, redis.BusyLoadingError | FailoverTimeoutError) or _pool_full(exc):
        return False  # a failover waited for already, a refusal, the client's own limit
    if auth_refused(exc):
        return False
    if isinstance(exc, redis.ConnectionError | ConnectionError):
        return True
    return isinstance(exc, ConnectionFailedError) and exc.operation is None


_NO_PRIMARY_REPLIES = ("READONLY", "MASTERDOWN", "CLUSTERDOWN", "NOREPLICAS")


class NotPrimary(redis.ConnectionError):  # type: ignore[misc]
    """A new connection refused before anything was sent on it: the node a Sentinel named
    the primary answered ``ROLE`` as a replica (the Sentinels' views differ for a moment
    after a failover). :func:`unsent` accepts it: the step waits for the primary."""


def lost_read(exc: BaseException) -> bool:
    """Whether ``exc`` lost the reply of a step that only reads (a timeout, a connection
    that broke): repeating it is safe, and where a primary can fail over it is repeated
    until the new one answers (:func:`rediscache.drive.ride`). Credentials refused and a
    full pool are not that. Pure."""
    if not isinstance(exc, redis.ConnectionError | ConnectionError | redis.TimeoutError):
        return False
    return not (auth_refused(exc) or _pool_full(exc))


def unsent(exc: BaseException) -> bool:
    """Whether ``exc`` says its step ran nothing because it met no primary: a connection
    that could not be made, Sentinel knowing no primary, a replica's refusal (READONLY,
    MASTERDOWN, CLUSTERDOWN), a primary without its replicas refusing writes (NOREPLICAS).
    Credentials refused are not that. Pure."""
    if isinstance(exc, redis.ResponseError):
        # redis-py quotes a pipeline's refused command: "Command # 1 (...) of pipeline
        # caused error: NOREPLICAS ..."
        said = str(exc).rpartition("of pipeline caused error: ")[2]
        said = said.rpartition("discarded because of: ")[2]  # EXECABORT, with its cause
        return isinstance(exc, redis.exceptions.ReadOnlyError) or said.startswith(
            _NO_PRIMARY_REPLIES
        )
    if isinstance(exc, NotPrimary):
        return True
    if isinstance(exc, NotSent):  # the connection failed before the command was written
        return not auth_refused(exc) and not _pool_full(exc)
    if isinstance(exc, redis.ConnectionError | ConnectionError | redis.TimeoutError):
        if auth_refused(exc) or _pool_full(exc) or isinstance(exc, redis.BusyLoadingError):
            return False
        return _no_primary(exc) or _connecting(exc)
    return False


def _no_primary(exc: BaseException) -> bool:
    """Sentinel's MasterNotFoundError (or SlaveNotFoundError), by name: redis.sentinel is
    imported only by hubs that use it."""
    return type(exc).__name__ in ("MasterNotFoundError", "SlaveNotFoundError")


def refused(reply: Any) -> BaseException | None:
    """The first error reply in ``reply`` (a reply, or a list of replies) that :func:`unsent`
    accepts: a node that answered as a replica, a shard without a primary. Pure."""
    if isinstance(reply, BaseException):
        return reply if unsent(reply) else None
    if type(reply) is list:
        for item in reply:
            if isinstance(item, redis.ResponseError) and unsent(item):
                error: BaseException = item
                return error
    return None


class Failover:
    """The wait of one step for a primary: :meth:`pause` gives the seconds before the next
    attempt after ``exc``, or raises :class:`FailoverTimeoutError` once ``wait`` seconds
    have passed since the first failure."""

    __slots__ = ("deadline", "tries", "wait")

    def __init__(self, wait: float) -> None:
        self.wait = wait
        self.deadline = time.monotonic() + wait
        self.tries = 0

    def pause(self, exc: BaseException) -> float:
        """The pause before the next attempt; raises FailoverTimeoutError (from ``exc``)
        when the wait is over."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            said = redact(str(exc))
            if len(said) > 300:  # redis-py's MasterNotFoundError quotes every Sentinel client
                said = said[:300] + "..."
            if "NOREPLICAS" in said:  # a primary answered: it lacks its replicas
                raise FailoverTimeoutError(
                    f"no primary took writes within {self.wait:g} s (the hub's "
                    "failover_wait): the primary refused them, having heard from fewer "
                    "replicas than its min-replicas-to-write within min-replicas-max-lag "
                    f"(start or repair a replica: docs/availability.md): {said}; this step "
                    "was not run"
                ) from exc
            raise FailoverTimeoutError(
                f"no primary answered within {self.wait:g} s (the hub's failover_wait): "
                f"{said}; this step was not run"
            ) from exc
        step = FAILOVER_PAUSES[min(self.tries, len(FAILOVER_PAUSES) - 1)]
        self.tries += 1
        return min(step, left)


def needs(op: str, kwargs: dict[str, Any] | None = None) -> str:
    """The weakest role that allows the public call ``op`` (with ``kwargs``). Pure."""
    if op in ("average", "combine") and (kwargs or {}).get("into") is not None:
        return "write"
    return NEEDS.get(op, "read")


def auth_refused(exc: BaseException) -> bool:
    """Whether ``exc`` (or a cause of it) is Redis refusing the credentials."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, redis.AuthenticationError):
            return True
        text = str(seen)
        if "WRONGPASS" in text or "invalid username-password pair" in text:
            return True
        seen = seen.__cause__
    return False


def refused_credentials(context: str, client: Any) -> AuthenticationFailedError:
    """The error of a call ``context`` whose credentials Redis refused. Pure."""
    user = acl_user(client)
    who = f"of user {user!r} " if user else ""
    error = AuthenticationFailedError(
        f"{context}: Redis at {address(client)} refused the credentials {who}(a wrong "
        "password, or the user was deleted or disabled, e.g. revoked or given a new "
        "password); nothing was done: check the user and password, or ask an owner"
    )
    error.operation = context
    return error


def _denied(
    exc: PermissionDeniedError,
    context: str,
    client: Any,
    space: str | None,
    role: str | None,
) -> PermissionDeniedError:
    """``exc`` with the message of :func:`denied_message` for the call ``context``."""
    user = exc.user or acl_user(client)
    space = exc.space or space
    role = exc.needs or role
    reason = exc.reason or noperm_reason(str(exc))
    doing = context
    if context.startswith("connecting "):  # Registry.verify's context
        doing = "connect" + context[len("connecting") :]
    message = denied_message(doing, user=user, space=space, needs=role, reason=reason)
    if exc.rows is not None and exc.rows[0] > 0:
        message += f" (rows before {exc.rows[0]} were stored)"
    error = PermissionDeniedError(message)
    error.operation, error.user, error.space, error.needs = context, user, space, role
    error.reason, error.rows, error.not_stored = reason, exc.rows, exc.not_stored
    error.final = True
    return error


def translate(
    exc: BaseException,
    context: str,
    *,
    writes: bool,
    one_step: bool = True,
    client: Any = None,
    space: str | None = None,
    role: str | None = None,
    doing: str | None = None,
) -> ServerError | None:
    """The library's error for ``exc`` raised inside the public call ``context`` (e.g. "get
    in space 'items'"), or None when ``exc`` is to be raised as it is (input errors, errors
    that already name their call). ``writes``: whether the call may write; ``one_step``:
    whether it writes in one round trip (so a write that was never sent wrote nothing);
    ``client``: the call's client (for the address and the ACL user); ``space``, ``role``
    and ``doing``: the call's space, the role it needs and what it does ("open space
    'items'"; default ``context``), for a refused call's message. Pure."""
    if isinstance(exc, PermissionDeniedError):
        return None if exc.final else _denied(exc, doing or context, client, space, role)
    if isinstance(exc, ConnectionFailedError | redis.ConnectionError) and auth_refused(exc):
        if isinstance(exc, AuthenticationFailedError):
            return None
        return refused_credentials(context, client)
    error: ServerError
    if _pool_full(exc) and not (isinstance(exc, ServerError) and exc.operation is not None):
        pool = getattr(client, "connection_pool", None)
        most = getattr(pool, "max_connections", None)
        error = ConnectionFailedError(
            f"{context}: every connection of this client's pool to Redis at {address(client)} "
            f"was in use (max_connections={most}) and none came free in time; nothing was "
            "sent. Lower the number of concurrent calls, or connect with a larger "
            "max_connections= (docs/serving.md)"
        )
        error.operation = context
        return error
    if isinstance(exc, RediscacheError):
        if not isinstance(exc, ServerError) or exc.operation is not None:
            return None
        if isinstance(exc, DurabilityError):  # the call completed on the primary
            error = DurabilityError(f"{context}: {exc}")
        elif isinstance(exc, FailoverTimeoutError):
            error = FailoverTimeoutError(
                f"{context}: {exc}; "
                + ("nothing was written" if one_step or not writes else _STEPS)
            )
        elif isinstance(exc, ConnectionFailedError) and not exc.unplaced:  # never sent
            root = _root(exc)
            error = ConnectionFailedError(
                f"{context}: cannot reach Redis at {_reached(client, root)} "
                f"({redact(str(root))}); "
                + ("nothing was written" if one_step or not writes else _STEPS)
            )
        elif isinstance(exc, OutcomeUnknownError) or exc.unplaced:
            error = type(exc)(f"{context}: {redact(str(exc))}")
        else:
            return None
    elif isinstance(exc, redis.BusyLoadingError):
        error = ServerLoadingError(
            f"{context}: Redis at {address(client)} is loading its data after a restart "
            "(LOADING); nothing was done: retry once it is ready"
        )
    elif isinstance(exc, redis.ResponseError):
        error = reply_error(redact(str(exc)), context)
        if isinstance(error, PermissionDeniedError):
            return _denied(error, doing or context, client, space, role)
    elif isinstance(exc, redis.TimeoutError | socket.timeout) and not _connecting(exc):
        if writes:
            error = OutcomeUnknownError(
                f"{context}: no reply from Redis at {address(client)} within the socket "
                f"timeout ({redact(str(exc))}): the write may or may not have been applied, "
                "and it was not sent again; check the data before retrying"
            )
        else:
            error = ServerTimeoutError(
                f"{context}: no reply from Redis at {address(client)} within the socket "
                f"timeout ({redact(str(exc))}); nothing was written: the server is slow or "
                "blocked, retry later or raise socket_timeout"
            )
    elif isinstance(exc, redis.ConnectionError | ConnectionError | redis.TimeoutError):
        reason = redact(str(exc))
        if not writes:
            error = ConnectionFailedError(
                f"{context}: cannot reach Redis at {_reached(client, exc)} ({reason}); "
                "nothing was written"
            )
        elif _connecting(exc):
            error = ConnectionFailedError(
                f"{context}: cannot reach Redis at {_reached(client, exc)} ({reason}); "
                + ("nothing was written" if one_step else _STEPS)
            )
        else:
            error = OutcomeUnknownError(
                f"{context}: the connection to Redis at {address(client)} was lost "
                f"({reason}): the write may or may not have been applied, and it was not "
                "sent again; check the data before retrying"
            )
    elif isinstance(exc, redis.RedisError):
        error = ServerError(f"{context} failed: {redact(str(exc))}")
    else:
        return None
    error.operation = context
    return error


_STEPS = (
    "nothing more was written, but the call has several steps and the ones before may have "
    "been done: check before calling again"
)


#: How messages name a hub's calls, by their first argument (a space or user name).
_HUB_CALLS = {
    "space": "open space {!r}",
    "create_space": "create space {!r}",
    "drop_space": "drop space {!r}",
    "grant": "grant roles to {!r}",
    "revoke": "revoke roles of {!r}",
    "passwd": "set the password of {!r}",
}
_HUB_SPACE_CALLS = ("space", "create_space", "drop_space")
_HUB_LISTS = {"users": "list users", "spaces": "list spaces"}


def _describe(obj: Any, op: str, args: tuple[Any, ...]) -> str:
    where = getattr(obj, "_where", None)
    if where is not None:
        return f"{op} in {where()}"
    if args and isinstance(args[0], str):
        return f"{op}({args[0]!r})"  # a hub's call on a space name: space('items')
    return op


def _doing(obj: Any, op: str, args: tuple[Any, ...]) -> str:
    """What a refused call was doing, for "user 'bob' may not <doing>": "delete in space
    'items'", "open space 'users'", "list users"."""
    if getattr(obj, "_where", None) is None:
        if args and isinstance(args[0], str) and op in _HUB_CALLS:
            return _HUB_CALLS[op].format(args[0])
        if op in _HUB_LISTS:
            return _HUB_LISTS[op]
    return _describe(obj, op, args)


def _space_of(obj: Any, op: str, args: tuple[Any, ...]) -> str | None:
    """The space of a call: the facade's, or a hub call's space name."""
    keys = getattr(obj, "keys", None)
    name = getattr(keys, "name", None)
    if isinstance(name, str):
        return name
    if op in _HUB_SPACE_CALLS and args and isinstance(args[0], str):
        return args[0]
    return None


_CONNECTING_TO = re.compile(r"connecting to ([A-Za-z0-9_.\-]+|\[[0-9a-fA-F:.]+\]):(\d+)")


def _reached(client: Any, exc: BaseException) -> str:
    """The server a connection error is about: the ``host:port`` redis-py names in it
    ("Error 111 connecting to host:port"), which on a cluster is the node that failed,
    not the hub's first node; else where ``client`` connects."""
    found = _CONNECTING_TO.search(str(exc))
    return f"{found.group(1)}:{found.group(2)}" if found else address(client)


def _client(obj: Any) -> Any:
    driver = getattr(obj, "_driver", None)
    return getattr(driver, "client", None) or getattr(obj, "client", None)


def _failure(
    obj: Any, op: str, exc: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ServerError | None:
    if op == "get_or_compute" and isinstance(exc, ConnectionError | socket.timeout):
        return None  # an OSError of the user's compute function, not of Redis
    writes = op not in READS or kwargs.get("into") is not None
    return translate(exc, _describe(obj, op, args), writes=writes, one_step=op in ONE_STEP,
                     client=_client(obj), space=_space_of(obj, op, args),
                     role=needs(op, kwargs), doing=_doing(obj, op, args))  # fmt: skip


# --------------------------------------------------------------------------- wrappers


def _next_step(
    obj: Any,
    op: str,
    exc: BaseException,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    reads: bool,
    attempt: int,
) -> float | ServerError | None:
    """What a public call does after ``exc`` on try ``attempt`` (0 first): the pause (seconds)
    before trying again (a read whose connection was lost, within READ_RETRIES), the error
    to raise from ``exc``, or None to raise ``exc`` as it is."""
    if reads and attempt < READ_RETRIES and _lost(exc) and not kwargs.get("into"):
        return float(RETRY_PAUSES[attempt])
    return _failure(obj, op, exc, args, kwargs)


def _count(
    obj: Any,
    metrics_of: Callable[[Any], Metrics] | None,
    op: str,
    seconds: float,
    result: Any,
    kwargs: dict[str, Any],
    *,
    error: bool = False,
) -> None:
    """Record one call of ``op`` that took ``seconds`` in ``metrics_of(obj)``, if the call
    is counted: a failure, or a result whose hits and misses are counted (metrics.hits_of)."""
    if metrics_of is None:
        return
    if error:
        metrics_of(obj).record(op, seconds, error=True)
        return
    count_success(metrics_of(obj), op, seconds, result, kwargs)


def count_success(
    metrics: Metrics, op: str, seconds: float, result: Any, kwargs: dict[str, Any]
) -> None:
    """Record in ``metrics`` one successful call of ``op`` that took ``seconds``, with the
    hits and misses of its ``result`` (metrics.hits_of, for the operations that have them).
    Every successful public call is counted here (Call.done, and the facades' first
    attempt, rediscache.drive)."""
    hits, misses = hits_of(op, result, kwargs) if op in HIT_OPS else (0, 0)
    metrics.record(op, seconds, False, hits, misses)


def _start(
    op: str,
    flow: Callable[..., Flow[T]],
    part: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Flow[T]:
    """``flow(part, *args, **kwargs)``; arguments the call does not take raise the
    TypeError Python gives, naming the public call (not the part's method)."""
    try:
        return flow(part, *args, **kwargs)
    except TypeError as exc:
        name = getattr(flow, "__qualname__", "")
        raise TypeError(str(exc).replace(f"{name}()", f"{op}()")) from None


def guarded(
    obj: Any,
    op: str,
    flow: Callable[..., Flow[T]],
    part: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    metrics_of: Callable[[Any], Metrics] | None = None,
    *,
    retry: bool = True,
) -> Flow[T]:
    """The public call ``op(*args, **kwargs)`` of ``obj``: the flow ``flow(part, *args,
    **kwargs)`` with its errors mapped and, when it reads and ``retry``, made and run again
    after a lost connection (see the module docstring); with ``metrics_of``, timed and
    counted in ``metrics_of(obj)``. Operations never call each other's public methods (they
    combine flows), so each public call is guarded and counted exactly once. Performed by
    :mod:`rediscache.drive`, sync or asyncio alike."""
    call = Call(obj, op, flow, part, args, kwargs, metrics_of, retry=retry)
    while True:
        try:
            result: T = yield from call.flow()
            return call.done(result)
        except BaseException as exc:
            yield Sleep(call.failed(exc))  # raises unless a retry is due


class Call:
    """One public call ``op(*args, **kwargs)`` of ``obj`` running the flow ``flow(part,
    ...)``, applied around a driver's run by the facades' methods (no flow of its own: one
    generator less per call), or by :func:`guarded` for a stream's steps. ``flow()`` makes
    the flow for an attempt; ``done(result)`` counts a success; ``failed(exc)`` returns the
    pause before the next attempt, or raises the error to give the caller (counted)."""

    __slots__ = (
        "args", "fn", "kwargs", "metrics_of", "obj", "op", "part", "retry", "t0", "tries",
    )  # fmt: skip

    def __init__(
        self,
        obj: Any,
        op: str,
        fn: Callable[..., Flow[Any]],
        part: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        metrics_of: Callable[[Any], Metrics] | None,
        *,
        retry: bool = True,
        t0: float | None = None,
    ) -> None:
        self.obj, self.op, self.fn, self.part = obj, op, fn, part
        self.args, self.kwargs, self.metrics_of = args, kwargs, metrics_of
        self.retry = retry
        self.tries = 0
        self.t0 = time.perf_counter() if t0 is None else t0

    def flow(self) -> Flow[Any]:
        """The flow of the next attempt."""
        try:
            return self.fn(self.part, *self.args, **self.kwargs)
        except TypeError:
            return _start(self.op, self.fn, self.part, self.args, self.kwargs)  # names op

    def done(self, result: T) -> T:
        """Count the call's success; returns ``result``."""
        metrics_of = self.metrics_of
        if metrics_of is not None:
            seconds = time.perf_counter() - self.t0
            count_success(metrics_of(self.obj), self.op, seconds, result, self.kwargs)
        return result

    def failed(self, exc: BaseException) -> float:
        """The pause (seconds) before trying again after ``exc``; otherwise raises the
        library's error for it (or ``exc`` itself), counted as a failure."""
        if isinstance(exc, _CAUGHT):
            reads = self.retry and self.op in READS
            step = _next_step(self.obj, self.op, exc, self.args, self.kwargs, reads, self.tries)
            if isinstance(step, float):
                self.tries += 1
                return step
        else:
            step = None
        _count(self.obj, self.metrics_of, self.op, time.perf_counter() - self.t0, None,
               self.kwargs, error=True)  # fmt: skip
        if step is None:
            raise exc
        raise step from exc
