"""The one adapter between rediscache and redis-py's connections: every byte rediscache sends
or reads outside redis-py's command methods goes through here.

* :func:`roundtrip` / :func:`roundtrip_async`: read commands in one write, every reply read
  on one pooled connection (what a pipeline does, without its per-command bookkeeping).
* :func:`once` / :func:`once_async`: one command sent once, never retried (script calls).
* :meth:`Wire.transaction` / :func:`transaction_async`: WATCH and reads, then commands
  inside MULTI/EXEC on the same connection (optimistic writes).
* :func:`frame`: a command packed once around the one argument that changes per call;
  :class:`Frames`: many commands that differ only in their key, packed from one template.
* :class:`Wire`: both for one sync client, keeping a few connections between calls instead
  of taking each from the pool (the sync driver's hot path).
* :func:`count_connects`: a hook counting the connections a pool opens.
* :func:`socket_fileno`: the socket of a connection (the hot cache's listener waits on it).

It uses redis-py's public connection API (``ConnectionPool.get_connection``/``release``,
``Connection.pack_commands``/``send_packed_command``/``read_response``/``disconnect`` and
the ``redis_connect_func`` setting) plus two private attributes, each with a fallback:
``Connection._sock``, whose descriptor :func:`socket_fileno` gives (fallback: redis-py's
``can_read``) and whose replies the sync round trips parse with hiredis (fallback:
``read_response`` per reply), and the asyncio connection's ``_reader`` stream, which
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
import codecs
import contextlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio

_hiredis: Any
_pack_command: Any
try:  # installed with redis[hiredis]; without it replies are read one by one
    import hiredis as _hiredis

    _pack_command = getattr(_hiredis, "pack_command", None)  # hiredis 2.0 and later
except ImportError:  # pragma: no cover
    _hiredis = _pack_command = None

__all__ = [
    "KEPT",
    "ConnectCounter",
    "Frames",
    "NotSent",
    "Wire",
    "count_connects",
    "frame",
    "once",
    "once_async",
    "roundtrip",
    "roundtrip_async",
    "socket_fileno",
    "transaction_async",
]

#: What a kept connection that broke raises (the server closed it): the round trip is sent
#: once more on another. Not a timeout: the server is slow, not the connection broken, and
#: a second attempt doubled the wait before ServerTimeoutError (the guard does not retry
#: timeouts either, docs/core.md).
_BROKEN = (redis.ConnectionError,)
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
    RESP2 values, without redis-py's response callbacks; error replies are returned as the
    exceptions redis-py gives. A broken connection is retried once on a fresh one (the
    commands are reads, safe to repeat). :class:`Wire` without kept connections.
    """
    return Wire(client, keep=False).roundtrip(commands)


def _pipelined(client: redis.Redis, commands: list[tuple[Any, ...]]) -> list[Any]:
    """:func:`roundtrip` on a single-connection client: a pipeline, which redis-py locks."""
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    return list(pipe.execute(raise_on_error=False))


def _exchange(
    conn: Any,
    commands: list[tuple[Any, ...]],
    packed: bytes | None = None,
    meanwhile: Callable[[], Exception | None] | None = None,
) -> tuple[list[Any], Exception | None]:
    """Send ``commands`` in one write on ``conn`` (``packed``: already in RESP, see
    :func:`frame`) and read every reply (error replies as exceptions), calling
    ``meanwhile`` between the two (:meth:`Wire.roundtrip`); returns the replies and what
    ``meanwhile`` returned. What the connection raises propagates: the caller disconnects
    it."""
    conn.send_packed_command(_pack(conn, commands, packed))
    late = meanwhile() if meanwhile is not None else None
    return _receive(conn, len(commands)), late


_UTF8: dict[tuple[Any, Any], bool] = {}


def _utf8(conn: Any) -> bool:
    """Whether ``conn`` encodes text as hiredis's packer does (UTF-8, strict errors): its
    redis-py ``encoder`` says so (a connection without one packs its own commands)."""
    encoder = getattr(conn, "encoder", None)
    settings = (getattr(encoder, "encoding", None), getattr(encoder, "encoding_errors", None))
    known = _UTF8.get(settings)
    if known is None:
        try:
            name = codecs.lookup(settings[0]).name if isinstance(settings[0], str) else None
        except LookupError:
            name = None
        known = _UTF8[settings] = name == "utf-8" and settings[1] == "strict"
    return known


def _pack(conn: Any, commands: list[tuple[Any, ...]], packed: bytes | None = None) -> Any:
    """``commands`` in RESP, as the list of chunks ``send_packed_command`` takes: ``packed``
    when given (the same commands already in RESP with text as UTF-8, :func:`frame`) and
    the connection encodes text so; else packed by hiredis (a fifth of the time of
    redis-py's ``pack_commands`` for 100 HGETs, measured with redis-py 8.1 and hiredis 3.5),
    or by redis-py for what hiredis does not take (numpy scalars, memoryviews) and for a
    connection that encodes text other than as UTF-8."""
    if packed is not None and _utf8(conn):
        return [packed]
    if _pack_command is not None and _utf8(conn):
        try:
            return [b"".join([_pack_command(_texts(command)) for command in commands])]
        except TypeError:
            pass
    return conn.pack_commands(commands)


def frame(command: tuple[Any, ...], slot: int, size: int) -> tuple[bytes, bytes]:
    """``command`` in RESP (text as UTF-8, ints as their decimal text), split around its
    argument ``slot``, a ``bytes`` value of exactly ``size`` bytes that goes between the
    two parts (the value at ``slot`` is ignored): ``head + value + tail`` is the command as
    redis-py and hiredis pack it, for the ``packed`` argument of :meth:`Wire.roundtrip`
    and :func:`roundtrip_async`. A command sent many times with one changing argument
    (a search's query vector) is packed once this way: joining the three parts took 3-4 us
    where packing a search's command with hiredis took 25 us (medians in situ, between two
    searches, on the 2-core dev box). Raises TypeError for arguments other than str, bytes
    and int."""

    head = b"*%d\r\n" % len(command) + b"".join(map(_arg, command[:slot]))
    tail = b"".join(map(_arg, command[slot + 1 :]))
    return head + b"$%d\r\n" % size, b"\r\n" + tail


class Frames:
    """The commands ``(*head, key, *tail)`` that differ only in their key, in RESP (text as
    UTF-8, ints as their decimal text), as :func:`frame` writes them: for the ``packed``
    argument of :meth:`Wire.roundtrip` (get's and get_many's HGETs). The command around
    the key is framed once, here; :meth:`of` makes each command with one bytes formatting:
    100 HGETs took 22 us where hiredis's ``pack_command`` took 113 us (with :func:`_texts`;
    hot, in a loop, on the 2-core dev box). Raises TypeError for arguments other than
    str, bytes and int."""

    __slots__ = ("_template",)

    def __init__(self, head: tuple[Any, ...], tail: tuple[Any, ...]) -> None:
        before = b"*%d\r\n" % (len(head) + 1 + len(tail)) + b"".join(map(_arg, head))
        after = b"".join(map(_arg, tail))
        self._template = before.replace(b"%", b"%%") + b"$%d\r\n%b\r\n" + after.replace(b"%", b"%%")

    def of(self, keys: list[str]) -> bytes:
        """The commands of ``keys`` (str that UTF-8 encodes: rediscache.codec.check_keys),
        in order."""
        template = self._template
        if len(keys) == 1:
            key = keys[0].encode()
            return template % (len(key), key)
        return b"".join([template % (len(key), key) for key in [k.encode() for k in keys]])


def _arg(value: Any) -> bytes:
    """One argument in RESP (:func:`frame`)."""
    if type(value) is str:
        value = value.encode("utf-8")
    elif type(value) is int:
        value = repr(value).encode("ascii")
    elif type(value) is not bytes:
        raise TypeError(f"cannot frame argument {value!r}")
    return b"$%d\r\n%b\r\n" % (len(value), value)


def _texts(command: tuple[Any, ...]) -> tuple[Any, ...]:
    """``command`` with its ints and floats written as text (``repr``, as redis-py writes
    them) before hiredis packs it: hiredis's ``pack_command`` formats a number with
    ``PyObject_Repr``, which runs pending signal handlers first, and does not check for
    the error one raises (SIGTERM or Ctrl-C arriving then crashed the process with a
    segmentation fault, measured with hiredis 3.5: the same call redis-py makes)."""
    return tuple([a if type(a) is bytes or type(a) is str else _number(a) for a in command])


def _number(arg: Any) -> Any:
    kind = type(arg)
    return repr(arg) if kind is int or kind is float else arg  # others: hiredis refuses


def _receive(conn: Any, n: int) -> list[Any]:
    """The next ``n`` replies on ``conn`` (error replies as exceptions): parsed by hiredis
    straight from the socket, one pass per chunk of bytes, or read one by one with
    redis-py's ``read_response`` (about 2 us more per reply) when hiredis or the socket
    (redis-py's ``_sock``, present in redis-py 5 to 8) is not there."""
    sock = getattr(conn, "_sock", None) if _hiredis is not None else None
    if sock is None or not hasattr(sock, "recv"):
        replies: list[Any] = []
        for _ in range(n):
            try:
                replies.append(conn.read_response())
            except redis.ResponseError as exc:
                replies.append(exc)
        return replies
    parser = _hiredis.Reader()  # no Python callback inside the C parser (see _settled)
    replies = []
    try:
        while len(replies) < n:
            _feed(parser, sock.recv(_CHUNK), replies, n)
    except TimeoutError as exc:  # socket.timeout
        raise redis.TimeoutError("Timeout reading from socket") from exc
    except redis.RedisError:
        raise
    except _hiredis.ProtocolError as exc:
        raise redis.exceptions.InvalidResponse(f"Protocol error: {exc}") from exc
    except OSError as exc:
        raise redis.ConnectionError(f"Error while reading from socket: {exc}") from exc
    return _settled(replies)


def _settled(replies: list[Any]) -> list[Any]:
    """``replies`` parsed by a plain hiredis Reader, with each error reply made the
    exception redis-py's ``read_response`` gives (:func:`_error_mapper`), and the first one
    redis-py raises rather than returns (its ConnectionError kinds: ``LOADING`` as
    BusyLoadingError, a full server's refusal) raised.

    The mapping is done here, not by hiredis calling back into Python while it parses
    (``Reader(replyError=...)``): a signal handler raising in that callback (SIGTERM, Ctrl-C)
    crashed the process with a segmentation fault in measured runs (hiredis 3.5)."""
    for i, reply in enumerate(replies):
        if isinstance(reply, _hiredis.ReplyError):
            replies[i] = reply = _reply_error(str(reply))
            if isinstance(reply, redis.ConnectionError):
                raise reply
    return replies


def _watching(watch: str, reads: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The first round trip of a transaction (:meth:`Wire.transaction`)."""
    return [("WATCH", watch), *reads]


def _after_watch(replies: list[Any], build: Callable[[list[Any]], Any]) -> Any:
    """The commands ``build`` makes of the replies of a transaction's reads (the first
    reply is WATCH's)."""
    if isinstance(replies[0], Exception):
        raise replies[0]
    return build(replies[1:])


def _in_multi(writes: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The second round trip of a transaction: ``writes`` inside MULTI/EXEC."""
    return [("MULTI",), *writes, ("EXEC",)]


def _transacted(replies: list[Any]) -> list[Any] | None:
    """The result of a transaction from the replies of MULTI, the queued commands and EXEC:
    the replies of the commands (error replies as redis-py's exceptions), or None when EXEC
    did not run them because the watched key changed. A refusal while queueing (e.g. OOM),
    after which EXEC runs nothing, is raised."""
    for reply in replies[:-1]:
        if isinstance(reply, Exception):
            raise reply
    done = replies[-1]
    if isinstance(done, Exception):
        raise done
    if done is None:
        return None
    return [_reply_error(str(r)) if isinstance(r, _ReplyError) else r for r in done]


def _feed(parser: Any, data: bytes, replies: list[Any], n: int) -> None:
    """Give ``data`` (read from the socket; empty: the server closed it) to ``parser`` and
    move the replies it completes into ``replies``, up to ``n`` in all."""
    if not data:
        raise redis.ConnectionError("Connection closed by server.")
    parser.feed(data)
    while len(replies) < n:
        reply = parser.gets()
        if reply is False:
            return
        replies.append(reply)


#: Bytes read from a socket at a time when parsing replies with hiredis.
_CHUNK = 1 << 16


def _own_reply_error(text: str) -> redis.ResponseError:
    return redis.ResponseError(text[4:] if text.startswith("ERR ") else text)


def _error_mapper() -> Any:
    """The function turning an error reply's text into the exception redis-py's
    ``read_response`` gives (``ERR`` dropped, ``LOADING`` a BusyLoadingError, ``NOSCRIPT`` a
    NoScriptError...): redis-py's parser's ``parse_error`` classmethod (redis-py 5 to 8),
    else ``ResponseError`` of the text without ``ERR``."""
    parser = getattr(redis.connection, "DefaultParser", None)
    parse = getattr(parser, "parse_error", None)
    try:
        if callable(parse) and isinstance(parse("ERR probe"), redis.ResponseError):
            return parse
    except Exception:  # pragma: no cover - another signature
        pass
    return _own_reply_error


_reply_error = _error_mapper()
#: What an error reply nested in an array is before it is mapped: hiredis's own class.
_ReplyError: Any = _hiredis.ReplyError if _hiredis is not None else redis.ResponseError


async def _read_replies(stream: asyncio.StreamReader, n: int, timeout: float | None) -> list[Any]:
    """``n`` RESP2 replies parsed by hiredis from whatever the socket holds: one await per
    chunk of bytes instead of one per reply (per-reply awaits cost ~5 us each). Each read
    waits at most ``timeout`` seconds (the connection's socket timeout, as redis-py's own
    reads: a server that stopped answering raises redis.TimeoutError instead of hanging)."""
    parser = _hiredis.Reader()  # no Python callback inside the C parser (see _settled)
    replies: list[Any] = []
    try:
        while len(replies) < n:
            if timeout is None:
                chunk = await stream.read(_CHUNK)
            else:
                async with _timeout(timeout):
                    chunk = await stream.read(_CHUNK)
            _feed(parser, chunk, replies, n)
    except redis.RedisError:
        raise
    except (asyncio.TimeoutError, TimeoutError) as exc:
        raise redis.TimeoutError(f"Timeout reading from socket (after {timeout:g} s)") from exc
    except OSError as exc:  # a reset connection: a broken one, as on the sync path
        raise redis.ConnectionError(f"Error while reading from socket: {exc}") from exc
    return _settled(replies)


if sys.version_info >= (3, 11):
    _timeout = asyncio.timeout
else:  # pragma: no cover - redis-py depends on async-timeout there
    from async_timeout import timeout as _timeout  # type: ignore[import-not-found,no-redef,unused-ignore]


def _stream_of(conn: Any) -> asyncio.StreamReader | None:
    """The asyncio stream an asyncio connection reads from, when hiredis can parse it
    directly (redis-py 5 to 8 keep it in ``_reader``); None: read reply by reply."""
    if _hiredis is None:
        return None
    stream = getattr(conn, "_reader", None)
    return stream if isinstance(stream, asyncio.StreamReader) else None


async def roundtrip_async(
    client: redis.asyncio.Redis,
    commands: list[tuple[Any, ...]],
    packed: bytes | None = None,
    meanwhile: Callable[[], Exception | None] | None = None,
) -> list[Any]:
    """:func:`roundtrip` for an asyncio client: send ``commands`` in one write and read every
    reply on one pooled connection, without redis.asyncio's pipeline bookkeeping (which made
    a get_many(100) cost 2.5x the sync one). Error replies are returned as exceptions; a
    broken connection is retried once (the commands are reads). ``packed`` and
    ``meanwhile``: as for :meth:`Wire.roundtrip`. :class:`AsyncWire` without kept
    connections."""
    return await AsyncWire(client, keep=False).roundtrip(commands, packed, meanwhile)


async def _replies_of(conn: Any, n: int) -> list[Any]:
    """The next ``n`` replies on an asyncio ``conn`` (error replies as exceptions)."""
    stream = _stream_of(conn)
    if stream is not None:
        return await _read_replies(stream, n, getattr(conn, "socket_timeout", None))
    replies: list[Any] = []
    for _ in range(n):
        try:
            replies.append(await conn.read_response())
        except redis.ResponseError as exc:
            replies.append(exc)
    return replies


async def transaction_async(
    client: redis.asyncio.Redis,
    watch: str,
    reads: list[tuple[Any, ...]],
    build: Callable[[list[Any]], list[tuple[Any, ...]]],
    after: Callable[[Any, Any], None] | None = None,
    wait: tuple[Any, ...] | None = None,
) -> list[Any] | None:
    """:meth:`Wire.transaction` for an asyncio client, on one pooled connection."""
    pool = client.connection_pool
    first = _watching(watch, reads)
    for attempt in (1, 2):
        try:
            conn = await _connection(pool, first)
        except _UNSENT as exc:
            raise NotSent(str(exc)) from exc
        try:
            await conn.send_packed_command(_pack(conn, first))
            replies = await _replies_of(conn, len(first))
            break
        except _UNSENT as exc:
            await conn.disconnect()
            await pool.release(conn)
            if attempt == 2:
                raise NotSent(str(exc)) from exc
        except BaseException:
            await conn.disconnect()
            await pool.release(conn)
            raise
    clean = False  # whether the connection may be reused: no watch left, nothing unread
    try:
        try:
            writes = _after_watch(replies, build)
        except Exception:  # build's error is raised, once the watch is dropped
            with contextlib.suppress(Exception):  # failed: dropped below, with its watch
                await conn.send_packed_command(_pack(conn, [("UNWATCH",)]))
                await _replies_of(conn, 1)
                clean = True
            raise
        second = _in_multi(writes)
        if wait is not None:
            second.append(wait)
        try:
            await conn.send_packed_command(_pack(conn, second))
        except _UNSENT as exc:
            raise NotSent(str(exc)) from exc
        replies = await _replies_of(conn, len(second))  # lost: EXEC may have run
        clean = True
    finally:
        try:
            if not clean:
                await conn.disconnect()
        finally:
            await pool.release(conn)
    if wait is not None:
        done = _transacted(replies[:-1])
        if after is not None:
            after(replies[-1], done)
        return done
    return _transacted(replies)


class NotSent(Exception):
    """The connection failed before the command was written whole: it never ran."""


def once(client: redis.Redis, command: tuple[Any, ...]) -> Any:
    """Send ``command`` on one pooled connection and read its reply, without redis-py's
    retries. Returns an error reply as its exception; raises :class:`NotSent` when the
    connection failed before the command was written, or the redis error when the reply
    was lost. :class:`Wire` without kept connections."""
    return Wire(client, keep=False).once(command)


def _read_one(conn: Any) -> Any:
    """One reply read from ``conn``, an error reply as its exception."""
    try:
        return conn.read_response()
    except redis.ResponseError as exc:
        return exc


def _executed(client: redis.Redis, command: tuple[Any, ...]) -> Any:
    """:func:`once` on a single-connection client, through redis-py (which locks it)."""
    try:
        return client.execute_command(*command)
    except redis.ResponseError as exc:
        return exc


async def once_async(
    client: redis.asyncio.Redis, command: tuple[Any, ...], after: tuple[Any, ...] | None = None
) -> Any:
    """:func:`once` for an asyncio client (``after``: see :meth:`Wire.once`)."""
    pool = client.connection_pool
    try:
        conn = await _connection(pool, [command])
    except _UNSENT as exc:
        raise NotSent(str(exc)) from exc
    try:
        try:
            sent = [command] if after is None else [command, after]
            await conn.send_packed_command(conn.pack_commands(sent))
        except _UNSENT as exc:
            await conn.disconnect()
            raise NotSent(str(exc)) from exc
        try:
            try:
                reply = await conn.read_response()
            except redis.ResponseError as exc:
                reply = exc
            if after is None:
                return reply
            try:
                return reply, await conn.read_response()
            except redis.ResponseError as exc:
                return reply, exc
        except BaseException:
            await conn.disconnect()
            raise
    finally:
        await pool.release(conn)


#: Idle connections a :class:`Wire` keeps at most (and never more than an eighth of its
#: pool's ``max_connections``).
KEPT = 8

#: Forks of this process so far (in a child, the connections a Wire kept are its parent's).
_FORKS = [0]


class Wire:
    """:func:`roundtrip` and :func:`once` for one sync client, keeping up to :data:`KEPT`
    idle connections between calls (the sync driver's hot path).

    Taking a connection from a redis-py pool and releasing it costs several microseconds per
    call (its locks and checks; with redis-py 8 also its observability hooks), which a lone
    ``get`` pays on top of one round trip; taking a kept connection is a list pop. Kept
    connections were taken from the pool with ``get_connection`` (checked then) and count as
    in use for it; at most ``max_connections // 8`` are kept, so the pool keeps connections
    for the commands sent through redis-py itself. A connection that failed is disconnected
    and released to the pool, and so are the others kept (a broken connection most often
    means the server restarted); a round trip on a kept connection that broke is sent once
    more on one from the pool. :meth:`once` checks a kept connection first with redis-py's
    ``can_read`` (a connection the server closed would otherwise make a write's outcome
    unknown). :meth:`close` releases the kept connections (``Hub.close`` calls it), and a
    forked child forgets them (they are its parent's). ``keep=False`` keeps nothing: a
    driver made for one call, and a hub on a client passed in (its pool outlives the hub,
    which may be dropped without ``close()``); so does a client made with
    ``single_connection_client=True``.

    No Python code of this class runs from the garbage collector (no finalizer, no weak
    references): a collection can start inside any C call, and a signal handler raising in
    Python code run from there (SIGTERM, Ctrl-C) crashed the process with a segmentation
    fault inside hiredis's ``pack_command`` in measured runs.
    """

    def __init__(self, client: redis.Redis, *, keep: bool = True) -> None:
        self.client = client
        self.single = getattr(client, "connection", None) is not None
        self.pool = pool = client.connection_pool
        most = getattr(pool, "max_connections", None)
        self.size = min(KEPT, most // 8) if keep and isinstance(most, int) else 0
        self.idle: list[Any] = []
        self.forks = _FORKS[0]

    def roundtrip(
        self,
        commands: list[tuple[Any, ...]],
        packed: bytes | None = None,
        meanwhile: Callable[[], Exception | None] | None = None,
    ) -> list[Any]:
        """:func:`roundtrip` on a kept connection (or one from the pool); ``packed``: the
        same commands already in RESP (:func:`frame`), sent as they are. ``meanwhile`` is
        called once the commands are sent, while the server runs them (a check of what was
        sent that can wait until then: a search's query vector); the exception it returns,
        if any, is raised once the replies are read, instead of returning them. With a
        single-connection client it is called before the commands are sent."""
        if self.single:
            late = meanwhile() if meanwhile is not None else None
            if late is not None:
                raise late
            return _pipelined(self.client, commands)
        pool = self.pool
        if self.forks != _FORKS[0]:
            self._forked()
        try:
            conn = self.idle.pop()
        except IndexError:
            conn = _connection(pool, commands)
        try:
            replies, late = _exchange(conn, commands, packed, meanwhile)
        except _BROKEN:
            self._broken(conn)
            conn = _connection(pool, commands)  # once more, on a connection the pool checked
            try:
                replies, late = _exchange(conn, commands, packed, meanwhile)
            except BaseException:
                self._broken(conn)
                raise
        except BaseException:
            self._broken(conn)  # a reply may be half read: never reuse this connection
            raise
        self._keep(conn)
        if late is not None:
            raise late
        return replies

    def once(self, command: tuple[Any, ...], after: tuple[Any, ...] | None = None) -> Any:
        """:func:`once` on a kept connection (checked first) or one from the pool. With
        ``after`` (a durable write's WAIT): sent in the same write, and the reply is
        ``(reply, reply of after)``."""
        if self.single:
            if after is not None:
                return _executed(self.client, command), _executed(self.client, after)
            return _executed(self.client, command)
        conn = self._checked(command)
        self._send_once(conn, [command] if after is None else [command, after])
        try:
            reply = conn.read_response()
        except redis.ResponseError as exc:
            reply = exc
        except BaseException:
            self._broken(conn)  # a reply may be half read: never reuse this connection
            raise
        if after is not None:
            try:
                reply = (reply, _read_one(conn))
            except BaseException:
                self._broken(conn)
                raise
        self._keep(conn)
        return reply

    def transaction(
        self,
        watch: str,
        reads: list[tuple[Any, ...]],
        build: Callable[[list[Any]], list[tuple[Any, ...]]],
        after: Callable[[Any, Any], None] | None = None,
        wait: tuple[Any, ...] | None = None,
    ) -> list[Any] | None:
        """An optimistic transaction on one connection (kept or from the pool): ``WATCH
        watch`` and the ``reads`` in one round trip (sent again on a fresh connection if the
        first one broke: nothing is written yet), then ``build(replies of the reads)`` gives
        the commands sent inside ``MULTI``/``EXEC``, once, in a second round trip.

        Returns the replies of the commands inside (error replies as exceptions), or None
        when the watched key changed between the two round trips (nothing ran) or the
        client has a single connection, which cannot be held for both (redis-py locks it
        per command). What ``build`` raises is raised once the watch is dropped (nothing
        written). Raises :class:`NotSent` when the connection failed before ``EXEC`` was
        written whole (a transaction runs only once ``EXEC`` arrives: nothing ran), the
        redis error when the reply was lost (it may have run), and the error of a command
        the server refused to queue (``EXEC`` then runs none: e.g. out of memory).

        ``wait`` (a durable write's WAIT) is sent after ``EXEC`` in the same write, and
        ``after`` called with its reply and the transaction's result (it raises when the
        write is not durable)."""
        if self.single:
            return None
        first = _watching(watch, reads)
        if self.forks != _FORKS[0]:
            self._forked()
        try:
            conn = self.idle.pop()
        except IndexError:
            conn = None
        for attempt in (1, 2):
            try:
                if conn is None:
                    conn = _connection(self.pool, first)
                replies, _ = _exchange(conn, first)
                break
            except _UNSENT as exc:  # nothing written yet: once more on a fresh connection
                if conn is not None:
                    self._broken(conn)
                    conn = None
                if attempt == 2:
                    raise NotSent(str(exc)) from exc
            except BaseException:
                if conn is not None:
                    self._broken(conn)
                raise
        try:
            writes = _after_watch(replies, build)
        except Exception:  # build's error is raised, once the watch is dropped
            try:
                _exchange(conn, [("UNWATCH",)])
            except Exception:
                self._broken(conn)  # so is the watch, with the connection
            except BaseException:
                self._broken(conn)
                raise
            else:
                self._keep(conn)
            raise
        except BaseException:
            self._broken(conn)  # the watch is dropped with the connection
            raise
        second = _in_multi(writes)
        if wait is not None:
            second.append(wait)
        self._send_once(conn, second)
        try:
            replies = _receive(conn, len(second))
        except BaseException:
            self._broken(conn)  # EXEC may have run; a reply may be half read
            raise
        self._keep(conn)
        if wait is not None:
            done = _transacted(replies[:-1])
            if after is not None:
                after(replies[-1], done)
            return done
        return _transacted(replies)

    def close(self) -> None:
        """Release the kept connections to the pool (in a forked child: forget them, they
        are the parent's)."""
        if self.forks != _FORKS[0]:
            self._forked()
        _release_all(self.pool, self.idle)

    def _checked(self, command: tuple[Any, ...]) -> Any:
        """A connection to send ``command`` on: a kept one with nothing to read (so the
        server did not close it), else one from the pool. NotSent when none can be had."""
        pool = self.pool
        if self.forks != _FORKS[0]:
            self._forked()
        while True:
            try:
                conn = self.idle.pop()
            except IndexError:
                break
            try:
                if not conn.can_read():
                    return conn
            except _UNSENT:
                pass
            conn.disconnect()
            pool.release(conn)
        try:
            return _connection(pool, [command])
        except _UNSENT as exc:
            raise NotSent(str(exc)) from exc

    def _send_once(self, conn: Any, commands: list[tuple[Any, ...]]) -> None:
        """Write ``commands`` on ``conn``, never again: NotSent when the connection failed
        before they were written whole (the connection is dropped)."""
        try:
            conn.send_packed_command(_pack(conn, commands))
        except _UNSENT as exc:
            self._broken(conn)
            raise NotSent(str(exc)) from exc
        except BaseException:
            self._broken(conn)
            raise

    def _forked(self) -> None:
        """In a forked child: forget the kept connections (the parent's; redis-py's pools
        start afresh in a child too)."""
        self.idle = []
        self.forks = _FORKS[0]

    def _keep(self, conn: Any) -> None:
        if len(self.idle) < self.size:
            self.idle.append(conn)
        else:
            self.pool.release(conn)

    def _broken(self, conn: Any) -> None:
        conn.disconnect()
        self.pool.release(conn)
        _release_all(self.pool, self.idle, disconnect=True)


class AsyncWire:
    """:func:`roundtrip_async` keeping up to :data:`KEPT` idle connections between calls
    (at most ``max_connections // 8``), as :class:`Wire` does for the sync driver: the
    asyncio driver's read round trips (get, get_many, search...).

    Taking a connection from redis.asyncio's pool and releasing it costs 20 us or so per
    call (its lock, its health check that reads the socket, and with redis-py 8 its
    observability hooks); a kept connection is a list pop. Kept connections count as in
    use for the pool (the driver lets ``max_connections - size`` round trips run at once,
    so the pool is never asked for more than it has). They belong to the event loop that
    made them: a call from another loop releases them to the pool first. A connection that
    failed is disconnected and released, with the others kept; a round trip on a kept
    connection that broke is sent once more on one from the pool (the commands are reads).
    :meth:`release` gives them back (``AsyncHub.close`` through the driver's ``settle``).
    ``keep=False`` (a hub on a client passed in, whose pool outlives the hub) keeps none.
    """

    def __init__(self, client: redis.asyncio.Redis, *, keep: bool = True) -> None:
        self.client = client
        self.pool = pool = client.connection_pool
        most = getattr(pool, "max_connections", None)
        single = getattr(client, "connection", None) is not None
        keeps = keep and not single and isinstance(most, int)
        self.size = min(KEPT, most // 8) if keeps else 0  # type: ignore[operator]
        self.idle: list[Any] = []
        self.loop: asyncio.AbstractEventLoop | None = None

    async def roundtrip(
        self,
        commands: list[tuple[Any, ...]],
        packed: bytes | None = None,
        meanwhile: Callable[[], Exception | None] | None = None,
    ) -> list[Any]:
        """:func:`roundtrip_async` on a kept connection (or one from the pool)."""
        idle = self.idle
        if self.size and asyncio.get_running_loop() is not self.loop:
            await self.release()  # another loop's connections go back to the pool
            self.loop = asyncio.get_running_loop()
        try:
            conn = idle.pop()
        except IndexError:
            conn = await _connection(self.pool, commands)
        for attempt in (1, 2):
            try:
                await conn.send_packed_command(_pack(conn, commands, packed))
                late = meanwhile() if meanwhile is not None else None
                replies = await _replies_of(conn, len(commands))
                break
            except _BROKEN:
                await self._broken(conn)
                if attempt == 2:
                    raise
            except BaseException:
                await self._broken(conn)  # a reply may be half read (cancellation too)
                raise
            conn = await _connection(self.pool, commands)  # once more, one the pool checked
        if len(idle) < self.size:
            idle.append(conn)
        else:
            await self.pool.release(conn)
        if late is not None:
            raise late
        return replies

    async def release(self, disconnect: bool = False) -> None:
        """Release the kept connections to the pool (disconnected first if asked)."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if disconnect:
                await conn.disconnect()
            await self.pool.release(conn)

    async def _broken(self, conn: Any) -> None:
        await conn.disconnect()
        await self.pool.release(conn)
        await self.release(disconnect=True)  # most often the server restarted


def _release_all(pool: Any, idle: list[Any], disconnect: bool = False) -> None:
    """Release every connection of ``idle`` to ``pool`` (disconnected first if asked)."""
    while True:
        try:
            conn = idle.pop()
        except IndexError:
            return
        if disconnect:
            conn.disconnect()
        pool.release(conn)


def _count_fork() -> None:
    _FORKS[0] += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_count_fork)


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


def count_connects(client: Any, counter: ConnectCounter | None = None) -> ConnectCounter:
    """Install a connect hook (redis-py's ``redis_connect_func`` connection setting, chained
    to any one already set) on ``client``'s pool, sync or asyncio, that counts the
    connections it opens from now on in ``counter`` (default: a new one); returns the
    counter (the one already installed when called again). Connections the pool made
    before are not seen when they reconnect: install it before the first command. A
    client without a pool of its own (a redis-py cluster client) gets a counter that never
    counts: the hub of a cluster counts its node clients' connections
    (:class:`rediscache.routing.ClusterNodes`)."""
    pool = getattr(client, "connection_pool", None)
    if pool is None:
        return counter or ConnectCounter()
    kwargs = pool.connection_kwargs
    previous = kwargs.get("redis_connect_func")
    installed = getattr(previous, "rediscache_counter", None)
    if isinstance(installed, ConnectCounter):
        return installed
    counter = counter or ConnectCounter()
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
