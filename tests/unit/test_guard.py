"""rediscache.guard without a server: redaction, the mapping of redis errors, the retry
bound, and that every public method of the hub and space classes is guarded."""

from __future__ import annotations

import asyncio
import inspect
from operator import attrgetter
from types import SimpleNamespace
from typing import Any

import pytest
import redis

import rediscache
from rediscache import AsyncHub, AsyncSpace, AsyncVersionView, Hub, Space, VersionView, guard
from rediscache.asyncio import (
    AsyncPartitionedSpace,
    AsyncPartitionedStage,
    AsyncPartitionedVersionView,
)
from rediscache.drive import AsyncDriver, AsyncFacade, Op, SyncDriver, SyncFacade
from rediscache.partitioned import PartitionedSpace, PartitionedStage, PartitionedVersionView

SECRET = "s3cret-Word"


@pytest.mark.parametrize(
    "text",
    [
        f"redis://:{SECRET}@localhost:6379/0",
        f"redis://alice:{SECRET}@localhost:6379/0",
        f"rediss://localhost:6379/0?password={SECRET}",
        f"redis://localhost/0?db=1&password={SECRET}&x=1",
        f"unix:///tmp/r.sock?password={SECRET}",
        f"error: cannot use redis://bob:{SECRET}@h:1/0 now",
        f"Connection(host=h, password='{SECRET}')",
        f'{{"password": "{SECRET}"}}',
        f"requirepass {SECRET}",
        f"Command # 1 (ACL SETUSER bob on resetpass >{SECRET} ~rc:{{a}}:*) of pipeline caused",
        f"('ACL', 'SETUSER', 'bob', '<{SECRET}', 'on')",
        # passwords not percent-encoded in a URL
        f"invalid Redis URL 'redis://writer:ab/cd{SECRET}@127.0.0.1:6379'",
        f"connecting to redis://writer:abc {SECRET}@127.0.0.1:1/0: refused",
        f"redis://user@team.example:{SECRET}@host:1/0",
    ],
)
def test_redact_hides_every_form_of_password(text: str) -> None:
    assert SECRET not in guard.redact(text)
    assert "***" in guard.redact(text)


def test_redact_leaves_other_text_alone() -> None:
    text = "get in space 'items': cannot reach Redis at 127.0.0.1:6379 (refused)"
    assert guard.redact(text) == text


class FakeClient:
    """What guard reads of a client: its pool's connection settings."""

    def __init__(self) -> None:
        settings = {"host": "10.0.0.1", "port": 7000, "username": "alice"}
        self.connection_pool = SimpleNamespace(connection_kwargs=settings)


def _map(exc: Exception, *, writes: bool = False, one_step: bool = True) -> Any:
    return guard.translate(
        exc, "get in space 'items'", writes=writes, one_step=one_step, client=FakeClient()
    )


def test_translate_maps_each_kind() -> None:
    refused = redis.ConnectionError("Error 111 connecting to 10.0.0.1:7000. Connection refused.")
    lost = redis.ConnectionError("Connection closed by server.")
    err = _map(refused)
    assert isinstance(err, rediscache.ConnectionFailedError)
    assert str(err).startswith("get in space 'items': cannot reach Redis at 10.0.0.1:7000")
    assert "nothing was written" in str(err)
    assert isinstance(_map(lost), rediscache.ConnectionFailedError)
    assert isinstance(_map(refused, writes=True), rediscache.ConnectionFailedError)
    assert "may have" in str(_map(refused, writes=True, one_step=False))
    assert isinstance(_map(lost, writes=True), rediscache.OutcomeUnknownError)
    assert isinstance(_map(redis.TimeoutError("Timeout reading")), rediscache.ServerTimeoutError)
    timed_out = _map(redis.TimeoutError("Timeout reading"), writes=True)
    assert isinstance(timed_out, rediscache.OutcomeUnknownError)
    loading = _map(redis.BusyLoadingError("Redis is loading the dataset in memory"))
    assert isinstance(loading, rediscache.ServerLoadingError)
    assert isinstance(loading, rediscache.ServerError)
    busy = _map(redis.ResponseError("BUSY Redis is busy running a script."))
    assert isinstance(busy, rediscache.ServerBusyError)
    denied = _map(redis.exceptions.NoPermissionError("NOPERM No permissions to access a key"))
    assert isinstance(denied, rediscache.PermissionDeniedError)
    assert denied.user == "alice" and "'alice'" in str(denied) and "get in space" in str(denied)
    other = _map(redis.ResponseError("ERR something"))
    assert type(other) is rediscache.ServerError and "ERR something" in str(other)
    assert _map(rediscache.InvalidInputError("bad")) is None
    assert _map(ValueError("not ours")) is None


def test_translate_never_shows_a_password() -> None:
    exc = redis.ConnectionError(f"Error connecting to redis://u:{SECRET}@h:1/0?password={SECRET}")
    assert SECRET not in str(_map(exc))


class FlakyOps:
    """Flows that fail ``fails`` times with a lost connection, then return "ok"."""

    def __init__(self, fails: int, error: Exception | None) -> None:
        self.fails = fails
        self.calls = 0
        self.error = error or redis.ConnectionError("Connection closed by server.")

    def attempt(self) -> Any:
        self.calls += 1
        if self.calls <= self.fails:
            raise self.error
        return "ok"
        yield  # a flow


class Flaky(SyncFacade):
    """A stand-in space whose calls (sync ``get`` and ``put``, asyncio ``aget``) fail
    ``fails`` times."""

    def __init__(self, fails: int, error: Exception | None = None) -> None:
        self.ops = FlakyOps(fails, error)
        self._driver = SyncDriver(FakeClient())  # type: ignore[arg-type]

    @property
    def calls(self) -> int:
        return self.ops.calls

    def _where(self) -> str:
        return "space 'flaky'"

    get = Op(FlakyOps.attempt, attrgetter("ops"))
    put = Op(FlakyOps.attempt, attrgetter("ops"))


class AsyncFlaky(AsyncFacade):
    def __init__(self, fails: int) -> None:
        self.ops = FlakyOps(fails, None)
        self._driver = AsyncDriver(FakeClient())  # type: ignore[arg-type]

    def _where(self) -> str:
        return "space 'flaky'"

    get = Op(FlakyOps.attempt, attrgetter("ops"))


def test_reads_retry_a_lost_connection_within_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guard, "RETRY_PAUSES", (0.0, 0.0))
    flaky = Flaky(guard.READ_RETRIES)
    assert flaky.get() == "ok" and flaky.calls == 1 + guard.READ_RETRIES
    flaky = Flaky(guard.READ_RETRIES + 1)
    with pytest.raises(rediscache.ConnectionFailedError, match="get in space 'flaky'"):
        flaky.get()
    assert flaky.calls == 1 + guard.READ_RETRIES
    aflaky = AsyncFlaky(guard.READ_RETRIES)
    assert asyncio.run(aflaky.get()) == "ok" and aflaky.ops.calls == 1 + guard.READ_RETRIES


def test_writes_and_timeouts_are_never_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guard, "RETRY_PAUSES", (0.0, 0.0))
    flaky = Flaky(1)
    with pytest.raises(rediscache.OutcomeUnknownError, match="put in space 'flaky'"):
        flaky.put()
    assert flaky.calls == 1
    flaky = Flaky(1, redis.TimeoutError("Timeout reading from socket"))
    with pytest.raises(rediscache.ServerTimeoutError):
        flaky.get()
    assert flaky.calls == 1


#: Public methods that never talk to Redis (no round trip), so need no guard.
NO_IO = {"close", "metrics", "validate", "validate_row", "disable_hot_cache", "node_client"}
#: What a version view refuses at once (ReadOnlyError), and its count (no round trip).
VIEW_LOCAL = {"put", "put_many", "delete", "update_mean", "update_vectors"}
#: Calls that only call a guarded public method (len(space) is space.count()).
DELEGATES = {"__len__"}
VIEWS = (VersionView, AsyncVersionView, PartitionedVersionView, AsyncPartitionedVersionView)
#: What a partitioned space refuses at once (InvalidInputError: not available yet), and
#: where its key goes (no round trip).
PARTITIONED_LOCAL = {"diff", "get_or_compute", "partition_of"}
PARTITIONED = (
    PartitionedSpace, AsyncPartitionedSpace, PartitionedStage, AsyncPartitionedStage, *VIEWS[2:]
)  # fmt: skip


@pytest.mark.parametrize(
    "cls",
    [Hub, AsyncHub, Space, AsyncSpace, VersionView, AsyncVersionView, *PARTITIONED],
)
def test_every_public_method_is_guarded(cls: type[Any]) -> None:
    """A new public method that talks to Redis must run inside guard.guarded (the methods
    rediscache.drive makes do), or be listed in NO_IO here."""
    local = NO_IO | DELEGATES | (VIEW_LOCAL if cls in VIEWS else set())
    local |= PARTITIONED_LOCAL if cls in PARTITIONED else set()
    unguarded = [
        name
        for name, member in inspect.getmembers(cls)
        if (not name.startswith("_") or name == "__len__")
        and callable(member)
        and not isinstance(inspect.getattr_static(cls, name), property)
        and getattr(member, "__rediscache_op__", None) is None
        and name not in local
    ]
    assert not unguarded, f"{cls.__name__}: not wrapped by rediscache.guard.public: {unguarded}"


def test_cli_log_lines_hide_passwords() -> None:
    import logging

    from rediscache.cli.base import _Redacting

    record = logging.LogRecord(
        "redis", logging.DEBUG, __file__, 1, "connecting to %s", (f"redis://:{SECRET}@h/0",), None
    )
    assert _Redacting().filter(record)
    assert SECRET not in record.getMessage() and "redis://:***@h/0" in record.getMessage()


def test_a_refused_call_names_the_call_the_role_and_who_can_grant_it() -> None:
    exc = redis.exceptions.NoPermissionError(
        "Command # 1 (HSET rc:{items}:g1:d:k1 v AAAA) of pipeline caused error: "
        "User alice has no permissions to run the 'hset' command"
    )
    denied = _map(exc, writes=True)
    assert isinstance(denied, rediscache.PermissionDeniedError)
    assert str(denied) == (
        "user 'alice' may not get in space 'items' (no permission to run 'hset'); an owner "
        "can grant roles: rediscache acl grant USER SPACE --role ROLE"
    )
    placed = guard.translate(exc, "delete in space 'items'", writes=True, client=FakeClient(),
                             space="items", role="write")  # fmt: skip
    assert str(placed).startswith("user 'alice' may not delete in space 'items' (needs role write")
    assert str(placed).endswith("rediscache acl grant alice items --role write")
    owner = guard.translate(exc, "list users", writes=False, client=FakeClient(), role="owner")
    assert str(owner) == (
        "user 'alice' may not list users: only an owner may; connect as an owner account"
    )
    assert guard.needs("average", {"into": "x"}) == "write" and guard.needs("average") == "read"
    assert guard.needs("create_space") == "owner" and guard.needs("rollback") == "admin"


def test_refused_credentials_are_an_authentication_error() -> None:
    exc = redis.AuthenticationError("invalid username-password pair or user is disabled.")
    err = _map(exc)
    assert isinstance(err, rediscache.AuthenticationFailedError)
    assert "refused the credentials of user 'alice'" in str(err)
    wrapped = rediscache.ConnectionFailedError("write.lua was not run: invalid username-password")
    wrapped.__cause__ = exc
    assert isinstance(_map(wrapped, writes=True), rediscache.AuthenticationFailedError)


@pytest.mark.parametrize("cut", ["#", "/", "?", ":"])
def test_a_malformed_url_error_quotes_no_piece_of_its_password(cut: str) -> None:
    url = f"redis://writer:ab{cut}cd{SECRET}@127.0.0.1:1/0"  # port 1: nothing listens
    with pytest.raises(rediscache.RediscacheError) as err:
        rediscache.connect(url)
    assert SECRET not in str(err.value) and f"cd{SECRET[:3]}" not in str(err.value)
    if isinstance(err.value, rediscache.InvalidInputError):
        assert "percent-encoded" in str(err.value)


def test_a_connection_error_names_the_server_that_failed_not_the_hubs_first() -> None:
    """On a cluster the hub's client is its first node's; the node that failed is the one
    redis-py names in its error (a failover trial named the seed node instead)."""
    seed = redis.Redis(host="127.0.0.1", port=44299)
    failed = redis.ConnectionError("Error 111 connecting to 127.0.0.1:34399. Connection refused.")
    error = guard.translate(failed, "get_many in space 'x'", writes=False, client=seed)
    assert error is not None and "cannot reach Redis at 127.0.0.1:34399 (" in str(error)
    plain = redis.ConnectionError("Connection reset by peer")  # no address in it: the client's
    error = guard.translate(plain, "get in space 'x'", writes=False, client=seed)
    assert error is not None and "127.0.0.1:44299" in str(error)
