"""The one adapter to redis-py internals (rediscache.wire): its fallbacks, on connections
without the private attributes it reads, and the get_connection call of older redis-py.
tests/integration/test_wire_versions.py runs it against real redis-py releases."""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace
from typing import Any

import pytest
import redis
import redis.asyncio
from packaging.version import Version

from rediscache import wire
from rediscache.wire import socket_fileno


def test_socket_fileno_of_a_connection() -> None:
    a, b = socket.socketpair()
    try:
        conn = redis.Connection()
        conn._sock = a  # what connect() sets in the redis-py versions pyproject allows
        assert socket_fileno(conn) == a.fileno()
    finally:
        a.close()
        b.close()
    assert socket_fileno(conn) is None  # closed: fileno() is -1


def test_socket_fileno_falls_back_to_none() -> None:
    assert socket_fileno(redis.Connection()) is None  # not connected
    assert socket_fileno(SimpleNamespace()) is None  # another client library's connection
    assert socket_fileno(SimpleNamespace(_sock=object())) is None


def test_socket_fileno_of_a_closed_or_odd_socket() -> None:
    class Raising:
        def fileno(self) -> int:
            raise OSError("bad file descriptor")

    assert socket_fileno(SimpleNamespace(_sock=Raising())) is None
    assert socket_fileno(SimpleNamespace(_sock=SimpleNamespace(fileno=lambda: "3"))) is None
    assert socket_fileno(SimpleNamespace(_sock=None)) is None


# ------------------------------------------------------- connections without _reader


class FakeAsyncConnection:
    """An asyncio connection as wire.py sees it, replying from a list (an exception in it
    is raised, as redis-py raises error replies); ``stream`` is set as its ``_reader``."""

    def __init__(self, replies: list[Any], stream: Any = None) -> None:
        self.replies = replies
        self.sent: list[bytes] = []
        self.reads = 0
        self.disconnected = False
        if stream is not None:
            self._reader = stream

    def pack_commands(self, commands: list[tuple[Any, ...]]) -> list[bytes]:
        return [b" ".join(str(part).encode() for part in c) for c in commands]

    def pack_command(self, *args: Any) -> list[bytes]:
        return self.pack_commands([args])

    async def send_packed_command(self, packed: list[bytes]) -> None:
        self.sent.extend(packed)

    async def read_response(self) -> Any:
        self.reads += 1
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return reply

    async def disconnect(self) -> None:
        self.disconnected = True


class FakeAsyncPool:
    """An asyncio pool of redis-py 5.3 and later: ``get_connection()``."""

    def __init__(self, *conns: FakeAsyncConnection) -> None:
        self.conns = list(conns)
        self.released: list[FakeAsyncConnection] = []
        self.names: list[Any] = []

    async def get_connection(self) -> FakeAsyncConnection:
        return self.conns.pop(0)

    async def release(self, conn: FakeAsyncConnection) -> None:
        self.released.append(conn)


class FakeNamedAsyncPool(FakeAsyncPool):
    """An asyncio pool of redis-py before 5.3: ``get_connection(command_name, *keys)``."""

    async def get_connection(  # type: ignore[override]
        self, command_name: Any, *keys: Any
    ) -> FakeAsyncConnection:
        self.names.append(command_name)
        return self.conns.pop(0)


def _client(pool: Any) -> Any:
    return SimpleNamespace(connection_pool=pool)


def test_roundtrip_async_without_reader_reads_reply_by_reply() -> None:
    conn = FakeAsyncConnection([b"a", redis.ResponseError("WRONGTYPE no"), None])
    pool = FakeAsyncPool(conn)
    commands = [("GET", "a"), ("HGET", "a", "f"), ("GET", "b")]
    replies = asyncio.run(wire.roundtrip_async(_client(pool), commands))
    assert replies[0] == b"a" and replies[2] is None
    assert isinstance(replies[1], redis.ResponseError) and str(replies[1]) == "WRONGTYPE no"
    assert conn.reads == 3 and conn.sent == [b"GET a", b"HGET a f", b"GET b"]
    assert pool.released == [conn] and not conn.disconnected


@pytest.mark.parametrize("reader", [object(), None, "stream"])
def test_roundtrip_async_falls_back_unless_reader_is_a_stream(reader: Any) -> None:
    conn = FakeAsyncConnection([b"1", b"2"], stream=reader)
    replies = asyncio.run(wire.roundtrip_async(_client(FakeAsyncPool(conn)), [("X",), ("Y",)]))
    assert replies == [b"1", b"2"] and conn.reads == 2


def _stream(data: bytes) -> asyncio.StreamReader:
    stream = asyncio.StreamReader()
    stream.feed_data(data)
    return stream


RESP = b"$1\r\na\r\n-WRONGTYPE no\r\n$-1\r\n*2\r\n:1\r\n$1\r\nb\r\n"


def test_roundtrip_async_parses_the_reader_with_hiredis() -> None:
    async def run() -> tuple[list[Any], FakeAsyncConnection]:
        conn = FakeAsyncConnection([], stream=_stream(RESP))
        commands = [("GET", "a"), ("HGET", "a", "f"), ("GET", "b"), ("X",)]
        return await wire.roundtrip_async(_client(FakeAsyncPool(conn)), commands), conn

    replies, conn = asyncio.run(run())
    assert conn.reads == 0  # read_response was never called: the fast path
    assert replies[0] == b"a" and replies[2] is None and replies[3] == [1, b"b"]
    assert isinstance(replies[1], redis.ResponseError) and str(replies[1]) == "WRONGTYPE no"


def test_error_replies_read_by_hiredis_read_as_redis_py_gives_them() -> None:
    """The sync path (redis-py's read_response) drops the "ERR " of an error reply: the
    asyncio fast path gives the same text, so both raise the same message."""

    async def run() -> list[Any]:
        conn = FakeAsyncConnection([], stream=_stream(b"-ERR unknown command 'X'\r\n-BUSY x\r\n"))
        return await wire.roundtrip_async(_client(FakeAsyncPool(conn)), [("X",), ("Y",)])

    replies = asyncio.run(run())
    assert [str(r) for r in replies] == ["unknown command 'X'", "BUSY x"]


def test_roundtrip_async_without_hiredis_ignores_the_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wire, "_hiredis", None)

    async def run() -> tuple[list[Any], FakeAsyncConnection]:
        conn = FakeAsyncConnection([b"1", b"2"], stream=_stream(RESP))
        return await wire.roundtrip_async(_client(FakeAsyncPool(conn)), [("X",), ("Y",)]), conn

    replies, conn = asyncio.run(run())
    assert replies == [b"1", b"2"] and conn.reads == 2


def test_roundtrip_async_closed_reader_retries_on_a_fresh_connection() -> None:
    async def run() -> tuple[list[Any], FakeAsyncConnection, FakeAsyncConnection]:
        broken = FakeAsyncConnection([], stream=_stream(b""))
        broken._reader.feed_eof()
        fresh = FakeAsyncConnection([b"ok"])
        replies = await wire.roundtrip_async(_client(FakeAsyncPool(broken, fresh)), [("X",)])
        return replies, broken, fresh

    replies, broken, fresh = asyncio.run(run())
    assert replies == [b"ok"] and broken.disconnected and not fresh.disconnected


def test_pools_of_redis_py_before_5_3_are_given_a_command_name() -> None:
    conn = FakeAsyncConnection([b"a"])
    pool = FakeNamedAsyncPool(conn)
    assert asyncio.run(wire.roundtrip_async(_client(pool), [("GET", "a")])) == [b"a"]
    conn = FakeAsyncConnection([b"b"])
    pool.conns.append(conn)
    assert asyncio.run(wire.once_async(_client(pool), ("HGET", "k", "f"))) == b"b"
    assert pool.names == ["GET", "HGET"]

    class NamedPool:
        def get_connection(self, command_name: str, *keys: Any, **options: Any) -> Any:
            return (command_name, keys)

    class NewPool:
        def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
            return (command_name, keys)

    assert wire._connection(NamedPool(), [("GET", "a")]) == ("GET", ())
    assert wire._connection(NamedPool(), []) == ("PING", ())
    assert wire._connection(NewPool(), [("GET", "a")]) == (None, ())
    installed = Version(redis.__version__) < Version("5.3")  # what the installed redis-py wants
    assert wire._takes_name(redis.ConnectionPool()) is installed
    assert wire._takes_name(redis.asyncio.ConnectionPool()) is installed


def test_numbers_reach_hiredis_as_text() -> None:
    """hiredis's pack_command formats a number with PyObject_Repr, which runs pending signal
    handlers first and crashes when one raises: wire.py writes numbers as text itself."""
    packed = wire._texts(("SET", "k", 1, 2.5, b"\xff", "é", -3))
    assert packed == ("SET", "k", "1", "2.5", b"\xff", "é", "-3")
    assert all(type(a) in (str, bytes) for a in packed)


def test_a_resp3_client_is_refused_up_front() -> None:
    """redis-py 8 defaults to RESP3 (its connection settings say protocol=None): a client
    made without protocol=2 must be refused before use, not fail later in a search."""
    from rediscache.errors import InvalidInputError
    from rediscache.hub import _check_client

    with pytest.raises(InvalidInputError, match="protocol=2"):
        _check_client(redis.Redis(protocol=3))
    _check_client(redis.Redis(protocol=2))
    default = redis.Redis()
    if getattr(redis.utils, "DEFAULT_RESP_VERSION", 2) == 3:
        with pytest.raises(InvalidInputError, match="protocol=2"):
            _check_client(default)
    else:
        _check_client(default)


@pytest.mark.parametrize(
    "command, slot",
    [
        (
            (
                "FT.SEARCH",
                "rc:{é}:idx",
                "*=>[KNN $k @vec $vec AS __dist]",
                "PARAMS",
                4,
                "k",
                10,
                "vec",
                b"",
                "LIMIT",
                0,
                -3,
                "DIALECT",
                2,
            ),
            8,
        ),
        (("SET", b"", "v"), 1),
        (("GET", b""), 1),
        (("HSET", "k", "f", b""), 3),
    ],
)
def test_frame_is_the_command_as_redis_py_and_hiredis_pack_it(
    command: tuple[Any, ...], slot: int
) -> None:
    value = bytes(range(256)) + b"\r\n$3\r\n"
    head, tail = wire.frame(command, slot, len(value))
    whole = (*command[:slot], value, *command[slot + 1 :])
    assert head + value + tail == b"".join(redis.Connection().pack_command(*whole))
    if wire._pack_command is not None:
        assert head + value + tail == wire._pack_command(wire._texts(whole))


@pytest.mark.parametrize("odd", [1.5, None, True, bytearray(b"x")])
def test_frame_refuses_what_it_cannot_write_exactly(odd: Any) -> None:
    with pytest.raises(TypeError):
        wire.frame(("SET", "k", b"", odd), 2, 1)


def test_roundtrip_async_raises_what_meanwhile_returns_once_the_replies_are_read() -> None:
    conn = FakeAsyncConnection([b"1", b"2"])
    pool = FakeAsyncPool(conn)
    seen: list[int] = []

    def meanwhile() -> Exception:
        seen.append(conn.reads)  # called after the send, before any reply is read
        return ValueError("bad query")

    with pytest.raises(ValueError, match="bad query"):
        asyncio.run(wire.roundtrip_async(_client(pool), [("X",), ("Y",)], None, meanwhile))
    assert seen == [0] and conn.sent == [b"X", b"Y"]
    assert conn.reads == 2 and pool.released == [conn] and not conn.disconnected
    conn2 = FakeAsyncConnection([b"1"])
    replies = asyncio.run(
        wire.roundtrip_async(_client(FakeAsyncPool(conn2)), [("X",)], None, lambda: None)
    )
    assert replies == [b"1"]


def test_packed_bytes_are_sent_only_by_a_connection_encoding_utf8() -> None:
    """A connection whose encoder is not UTF-8 (or which has none) packs the commands
    itself: the pre-packed bytes assume UTF-8 text."""
    commands = [("GET", "é")]
    packed = b"*2\r\n$3\r\nGET\r\n$2\r\n\xc3\xa9\r\n"
    assert wire._pack(redis.Connection(), commands, packed) == [packed]
    latin = redis.Connection(encoding="latin-1")
    assert wire._pack(latin, commands, packed) == latin.pack_commands(commands)
    conn = FakeAsyncConnection([])
    assert wire._pack(conn, commands, packed) == conn.pack_commands(commands)


# ------------------------------------------------------- transactions (asyncio, fake conns)


def _tx(conn: FakeAsyncConnection, build: Any) -> Any:
    pool = FakeAsyncPool(conn)
    reads = [("HGET", "cfg", "s")]
    result = asyncio.run(wire.transaction_async(_client(pool), "cfg", reads, build))
    assert pool.released == [conn]
    return result


def test_transaction_async_runs_what_build_makes_inside_multi_exec() -> None:
    conn = FakeAsyncConnection([b"OK", b"s1", b"OK", b"QUEUED", b"QUEUED", [1, 0]])
    seen: list[Any] = []

    def build(replies: list[Any]) -> list[tuple[Any, ...]]:
        seen.append(replies)
        return [("HSET", "d", "f", "v"), ("HINCRBY", "cfg", "n", 1)]

    assert _tx(conn, build) == [1, 0] and seen == [[b"s1"]]
    assert conn.sent == [b"WATCH cfg", b"HGET cfg s", b"MULTI", b"HSET d f v",
                         b"HINCRBY cfg n 1", b"EXEC"]  # fmt: skip
    assert not conn.disconnected


def test_transaction_async_aborted_by_the_watch_returns_none() -> None:
    conn = FakeAsyncConnection([b"OK", b"s1", b"OK", b"QUEUED", None])
    assert _tx(conn, lambda replies: [("SET", "a", "b")]) is None and not conn.disconnected


def test_transaction_async_build_error_drops_the_watch_and_writes_nothing() -> None:
    conn = FakeAsyncConnection([b"OK", b"s2", b"OK"])

    def build(replies: list[Any]) -> list[tuple[Any, ...]]:
        raise LookupError("stale state")

    with pytest.raises(LookupError, match="stale"):
        _tx(conn, build)
    assert conn.sent == [b"WATCH cfg", b"HGET cfg s", b"UNWATCH"] and not conn.disconnected


def test_transaction_async_queue_refusal_raises_and_nested_errors_are_values() -> None:
    refused = redis.ResponseError("OOM command not allowed")
    conn = FakeAsyncConnection([b"OK", b"s", b"OK", refused, redis.ResponseError("EXECABORT")])
    with pytest.raises(redis.ResponseError, match="OOM"):
        _tx(conn, lambda replies: [("SET", "a", "b")])
    if wire._hiredis is not None:
        nested = wire._hiredis.ReplyError("WRONGTYPE Operation against a key")
        done = wire._transacted([b"OK", b"QUEUED", b"QUEUED", [1, nested]])
        assert done is not None and done[0] == 1
        assert isinstance(done[1], redis.ResponseError) and "WRONGTYPE" in str(done[1])


class FailingSend(FakeAsyncConnection):
    """Fails the ``fail``-th send (1-based) with a connection error."""

    def __init__(self, replies: list[Any], fail: int) -> None:
        super().__init__(replies)
        self.fail = fail
        self.sends = 0

    async def send_packed_command(self, packed: list[bytes]) -> None:
        self.sends += 1
        if self.sends == self.fail:
            raise redis.ConnectionError("reset")
        await super().send_packed_command(packed)


def test_transaction_async_exec_never_sent_whole_is_not_sent_and_a_lost_reply_raises() -> None:
    conn = FailingSend([b"OK", b"s"], fail=2)
    with pytest.raises(wire.NotSent):
        _tx(conn, lambda replies: [("SET", "a", "b")])
    assert conn.disconnected
    lost = FakeAsyncConnection([b"OK", b"s", b"OK", redis.ConnectionError("reset")])
    with pytest.raises(redis.ConnectionError):
        _tx(lost, lambda replies: [("SET", "a", "b")])
    assert lost.disconnected  # EXEC may have run: the caller reports an unknown outcome


@pytest.mark.parametrize(
    "head, keys, tail",
    [
        (("HGET",), ["rc:{s}:g1:doc:a", "rc:{s}:g1:doc:é%d", "rc:{s}:g1:doc:%s%%"], ("vec",)),
        (("HGET",), ["only"], ("state",)),
        (("HMGET",), ["k1", "ключ"], ("vec", "meta")),
        (("PEXPIRE",), ["k%b"], (1500,)),
        (("SET%s",), ["k"], ("v%d", b"\x00%b")),
    ],
)
def test_frames_are_the_commands_as_redis_py_and_hiredis_pack_them(
    head: tuple[Any, ...], keys: list[str], tail: tuple[Any, ...]
) -> None:
    """get and get_many send their HGETs packed this way (a template made once): a '%' in a
    key or an argument must not be read as a format."""
    frames = wire.Frames(head, tail)
    for _ in range(2):
        packed = frames.of(keys)
        commands = [(*head, key, *tail) for key in keys]
        assert packed == b"".join(redis.Connection().pack_commands(commands))
        if wire._pack_command is not None:
            assert packed == b"".join(wire._pack_command(wire._texts(c)) for c in commands)


@pytest.mark.parametrize("odd", [1.5, None, True, bytearray(b"x")])
def test_frames_refuse_what_they_cannot_write_exactly(odd: Any) -> None:
    with pytest.raises(TypeError):
        wire.Frames(("HGET",), (odd,))
    with pytest.raises(TypeError):
        wire.Frames((odd,), ("vec",))


def test_a_round_trip_that_timed_out_is_not_sent_again() -> None:
    """A reply that does not come within the socket timeout raises at once: sending the
    round trip again on another connection doubled the wait (a stopped server: 10 s
    before ServerTimeoutError with the default 5 s timeout, found by a new user)."""
    server_side, client_side = socket.socketpair()
    try:
        client_side.settimeout(0.05)  # the server never answers
        conn = redis.Connection()
        conn._sock = client_side
        taken: list[Any] = []

        class Pool:
            max_connections = 100

            def get_connection(self) -> Any:
                taken.append(1)
                return conn

            def release(self, c: Any) -> None:
                pass

        kept = wire.Wire(_client(Pool()))
        with pytest.raises(redis.TimeoutError):
            kept.roundtrip([("PING",)])
        assert taken == [1]  # one connection, one attempt
        assert server_side.recv(100) == b"*1\r\n$4\r\nPING\r\n"  # sent once
    finally:
        server_side.close()
        client_side.close()


def test_roundtrip_async_that_timed_out_is_not_sent_again() -> None:
    async def run() -> tuple[FakeAsyncConnection, FakeAsyncPool]:
        slow = FakeAsyncConnection([redis.TimeoutError("Timeout reading from socket")])
        pool = FakeAsyncPool(slow, FakeAsyncConnection([b"late"]))
        with pytest.raises(redis.TimeoutError):
            await wire.roundtrip_async(_client(pool), [("X",)])
        return slow, pool

    slow, pool = asyncio.run(run())
    assert slow.disconnected and len(pool.conns) == 1  # the second connection was not taken
