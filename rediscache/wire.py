"""The one adapter between rediscache and redis-py's connections: every byte rediscache sends
or reads outside redis-py's command methods goes through here.

* :func:`roundtrip` / :func:`roundtrip_async`: read commands in one write, every reply read
  on one pooled connection (what a pipeline does, without its per-command bookkeeping).
* :func:`once` / :func:`once_async`: one command sent once, never retried (script calls).
* :func:`count_connects`: a hook counting the connections a pool opens.
* :func:`socket_fileno`: the socket of a connection (the hot cache's listener waits on it).

It uses redis-py's public connection API (``ConnectionPool.get_connection``/``release``,
``Connection.pack_commands``/``send_packed_command``/``read_response``/``disconnect`` and
the ``redis_connect_func`` setting) plus two private attributes, each read in one place
with a fallback: ``Connection._sock`` (:func:`socket_fileno`; fallback: redis-py's
``can_read``) and the asyncio connection's ``_reader`` stream, which
:func:`roundtrip_async` parses with hiredis in one pass (fallback: ``read_response`` per
reply, about 5 us more per reply). ``get_connection`` is called as the pool's signature
asks: redis-py before 5.3 requires a command name, later releases take none (and warn when
given one).

tests/integration/test_wire_versions.py runs this module against releases of each
redis-py major version pyproject.toml allows (5.0 to 8), reporting which fast paths each
takes; tests/unit/test_wire.py against connections lacking the private attributes.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import redis
import redis.asyncio

_hiredis: Any
try:  # installed with redis[hiredis]; without it replies are read one by one
    import hiredis as _hiredis
except ImportError:  # pragma: no cover
    _hiredis = None

__all__ = [
    "ConnectCounter",
    "NotSent",
    "count_connects",
    "once",
    "once_async",
    "roundtrip",
    "roundtrip_async",
    "socket_fileno",
]

_BROKEN = (redis.ConnectionError, redis.TimeoutError)
_UNSENT = (redis.ConnectionError, redis.TimeoutError, OSError)


_NAMED: dict[type, bool] = {}  # pool class -> whether get_connection needs a command name


def _takes_name(pool: Any) -> bool:
    """Whether ``pool.get_connection`` requires a command name: redis-py before 5.3 does
    (``get_connection(command_name, *keys)``, the name unused by its pools); 5.3 and later
    take none and warn when given one. Read once per pool class from its signature."""
    kind = type(pool)
    named = _NAMED.get(kind)
    if named is None:
        try:
            param = inspect.signature(pool.get_connection).parameters.get("command_name")
        except (TypeError, ValueError):  # no signature to read: call it the current way
            param = None
        named = param is not None and param.default is inspect.Parameter.empty
        _NAMED[kind] = named
    return named


def _connection(pool: Any, commands: list[tuple[Any, ...]]) -> Any:
    """A connection from ``pool`` (sync, or a coroutine for an asyncio pool) for
    ``commands``, called as this redis-py version wants."""
    if _takes_name(pool):
        return pool.get_connection(commands[0][0] if commands else "PING")
    return pool.get_connection()


def roundtrip(client: redis.Redis, commands: list[tuple[Any, ...]]) -> list[Any]:
    """Send ``commands`` in one write and read every reply: one round trip.

    What a redis-py pipeline does, without its per-command bookkeeping (which made a
    two-command pipeline cost 15-20% more than a lone HGET; this costs the same). Replies are
    RESP2 values as parsed by redis-py (no response callbacks); error replies are returned
    as exceptions. A broken connection is retried once on a fresh one (the commands are
    reads, safe to repeat).
    """
    if client.connection is not None:  # a single-connection client: let redis-py lock it
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(pipe.execute(raise_on_error=False))
    pool = client.connection_pool
    for attempt in (1, 2):
        conn = _connection(pool, commands)
        try:
            conn.send_packed_command(conn.pack_commands(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except redis.ResponseError as exc:
                    replies.append(exc)
            return replies
        except _BROKEN:
            conn.disconnect()
            if attempt == 2:
                raise
        except BaseException:
            conn.disconnect()  # a reply may be half read: never reuse this connection
            raise
        finally:
            pool.release(conn)
    raise AssertionError("unreachable")


async def _read_replies(stream: asyncio.StreamReader, n: int) -> list[Any]:
    """``n`` RESP2 replies parsed by hiredis from whatever the socket holds: one await per
    chunk of bytes instead of one per reply (per-reply awaits cost ~5 us each)."""
    parser = _hiredis.Reader()
    replies: list[Any] = []
    while len(replies) < n:
        data = await stream.read(1 << 16)
        if not data:
            raise redis.ConnectionError("connection closed while reading replies")
        parser.feed(data)
        while len(replies) < n:
            reply = parser.gets()
            if reply is False:
                break
            if isinstance(reply, _hiredis.ReplyError):
                # the text redis-py's read_response gives (the sync path): "ERR " dropped
                text = str(reply)
                reply = redis.ResponseError(text[4:] if text.startswith("ERR ") else text)
            replies.append(reply)
    return replies


def _stream_of(conn: Any) -> asyncio.StreamReader | None:
    """The asyncio stream an asyncio connection reads from, when hiredis can parse it
    directly (redis-py 5 to 8 keep it in ``_reader``); None: read reply by reply."""
    if _hiredis is None:
        return None
    stream = getattr(conn, "_reader", None)
    return stream if isinstance(stream, asyncio.StreamReader) else None


async def roundtrip_async(
    client: redis.asyncio.Redis, commands: list[tuple[Any, ...]]
) -> list[Any]:
    """:func:`roundtrip` for an asyncio client: send ``commands`` in one write and read every
    reply on one pooled connection, without redis.asyncio's pipeline bookkeeping (which made
    a get_many(100) cost 2.5x the sync one). Error replies are returned as exceptions; a
    broken connection is retried once (the commands are reads)."""
    pool = client.connection_pool
    for attempt in (1, 2):
        conn = await _connection(pool, commands)
        try:
            await conn.send_packed_command(conn.pack_commands(commands))
            stream = _stream_of(conn)
            if stream is not None:
                return await _read_replies(stream, len(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await conn.read_response())
                except redis.ResponseError as exc:
                    replies.append(exc)
            return replies
        except _BROKEN:
            await conn.disconnect()
            if attempt == 2:
                raise
        except BaseException:
            await conn.disconnect()  # a reply may be half read (cancellation too)
            raise
        finally:
            await pool.release(conn)
    raise AssertionError("unreachable")


class NotSent(Exception):
    """The connection failed before the command was written whole: it never ran."""


def once(client: redis.Redis, command: tuple[Any, ...]) -> Any:
    """Send ``command`` on one pooled connection and read its reply, without redis-py's
    retries. Returns an error reply as its exception; raises :class:`NotSent` when the
    connection failed before the command was written, or the redis error when the reply
    was lost."""
    if client.connection is not None:  # a single-connection client: let redis-py lock it
        try:
            return client.execute_command(*command)
        except redis.ResponseError as exc:
            return exc
    pool = client.connection_pool
    try:
        conn = _connection(pool, [command])
    except _UNSENT as exc:
        raise NotSent(str(exc)) from exc
    try:
        try:
            conn.send_packed_command(conn.pack_command(*command))
        except _UNSENT as exc:
            conn.disconnect()
            raise NotSent(str(exc)) from exc
        try:
            return conn.read_response()
        except redis.ResponseError as exc:
            return exc
        except BaseException:
            conn.disconnect()  # a reply may be half read: never reuse this connection
            raise
    finally:
        pool.release(conn)


async def once_async(client: redis.asyncio.Redis, command: tuple[Any, ...]) -> Any:
    """:func:`once` for an asyncio client."""
    pool = client.connection_pool
    try:
        conn = await _connection(pool, [command])
    except _UNSENT as exc:
        raise NotSent(str(exc)) from exc
    try:
        try:
            await conn.send_packed_command(conn.pack_command(*command))
        except _UNSENT as exc:
            await conn.disconnect()
            raise NotSent(str(exc)) from exc
        try:
            return await conn.read_response()
        except redis.ResponseError as exc:
            return exc
        except BaseException:
            await conn.disconnect()
            raise
    finally:
        await pool.release(conn)


def socket_fileno(conn: Any) -> int | None:
    """The file descriptor of a connected redis-py ``Connection``'s socket, or None when it
    cannot be found. redis-py has no public accessor: this reads its ``_sock`` attribute
    (present in redis-py 5 to 8, tested in tests/integration/test_wire_versions.py); callers
    fall back to redis-py's public ``can_read`` when it returns None."""
    sock = getattr(conn, "_sock", None)
    fileno = getattr(sock, "fileno", None)
    if fileno is None:
        return None
    try:
        fd = fileno()
    except OSError:
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


class ConnectCounter:
    """Counts the connections a redis-py pool opens (:func:`count_connects`). A new
    connection may reach a server that restarted since the last one: whatever was verified
    about the server (e.g. that a search index is complete) is verified again."""

    def __init__(self) -> None:
        self.count = 0


def count_connects(client: Any) -> ConnectCounter:
    """Install a connect hook (redis-py's ``redis_connect_func`` connection setting, chained
    to any one already set) on ``client``'s pool, sync or asyncio, that counts the
    connections it opens from now on; returns the counter (the one already installed when
    called again). Connections the pool made before are not seen when they reconnect:
    install it before the first command."""
    kwargs = client.connection_pool.connection_kwargs
    previous = kwargs.get("redis_connect_func")
    installed = getattr(previous, "rediscache_counter", None)
    if isinstance(installed, ConnectCounter):
        return installed
    counter = ConnectCounter()
    hook: Any
    if isinstance(client, redis.asyncio.Redis):

        async def hook(conn: Any) -> None:
            if previous is None:
                await conn.on_connect()
            else:
                done = previous(conn)
                if inspect.isawaitable(done):
                    await done
            counter.count += 1

    else:

        def hook(conn: Any) -> None:
            if previous is None:
                conn.on_connect()
            else:
                previous(conn)
            counter.count += 1

    hook.rediscache_counter = counter
    kwargs["redis_connect_func"] = hook
    return counter
