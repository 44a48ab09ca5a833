"""Exercise rediscache.wire with whichever redis-py this interpreter imports.

Run by tests/integration/test_wire_versions.py as
``python wire_probe.py URL EXPECTED_REDIS_VERSION`` with ``PYTHONPATH`` putting one
redis-py release ahead of the installed one. Checks every function of the adapter against
the Redis at URL (plus a smoke test of the rest of rediscache), fast paths and fallbacks
alike, and prints one JSON line saying which private-attribute fast paths this redis-py
release lets wire.py take. Exits non-zero (an assertion's traceback) on the first wrong
result.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import time
import uuid
from typing import Any

import numpy as np
import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

URL, EXPECTED = sys.argv[1], sys.argv[2]
assert redis.__version__ == EXPECTED, (
    f"imported redis-py {redis.__version__} from {redis.__file__}, wanted {EXPECTED}"
)

import rediscache  # noqa: E402  (after the version check: rediscache imports redis too)
from rediscache import wire  # noqa: E402

PREFIX = f"wire-probe:{uuid.uuid4().hex[:8]}:"
KEY, HASH, MISSING = PREFIX + "s", PREFIX + "h", PREFIX + "missing"
BIG = os.urandom(300_000)  # a reply of several 64 KiB reads: the hiredis loop goes round
UNREACHABLE = {"host": "127.0.0.1", "port": 1, "socket_connect_timeout": 2}


def commands() -> list[tuple[Any, ...]]:
    """Reads with a known reply each: a string, a missing key, an array with a hole, an
    error reply in the middle (it must come back as a value, the replies after it intact),
    an integer, a hash, a large bulk string."""
    return [
        ("GET", KEY),
        ("GET", MISSING),
        ("MGET", KEY, MISSING),
        ("HGET", KEY, "f"),  # WRONGTYPE: KEY is a string
        ("STRLEN", KEY),
        ("HGETALL", HASH),
        ("ECHO", BIG),
        ("GET", KEY),
    ]


def check_replies(replies: list[Any]) -> None:
    assert len(replies) == 8, replies
    assert replies[0] == b"v1" and replies[1] is None and replies[2] == [b"v1", None]
    error = replies[3]
    assert isinstance(error, redis.ResponseError), error
    assert "WRONGTYPE" in str(error), error
    assert replies[4] == 2
    assert replies[5] in ([b"f", b"x"], {b"f": b"x"}), replies[5]
    assert replies[6] == BIG
    assert replies[7] == b"v1"


def normalized(replies: list[Any]) -> list[Any]:
    """Replies with error replies as (type, message), to compare two reading paths."""
    return [(type(r).__name__, str(r)) if isinstance(r, Exception) else r for r in replies]


# ------------------------------------------------------------------------------ sync


def check_sync() -> dict[str, Any]:
    client = redis.Redis.from_url(URL)
    try:
        client.set(KEY, b"v1")
        client.hset(HASH, "f", b"x")
        check_replies(wire.roundtrip(client, commands()))
        assert wire.roundtrip(client, [("PING",)]) == [b"PONG"]  # the connection went back clean
        assert wire.roundtrip(client, []) == []

        single = redis.Redis.from_url(URL, single_connection_client=True)
        try:
            check_replies(wire.roundtrip(single, commands()))
            assert wire.once(single, ("GET", KEY)) == b"v1"
            assert isinstance(wire.once(single, ("HGET", KEY, "f")), redis.ResponseError)
        finally:
            single.close()

        assert wire.once(client, ("GET", KEY)) == b"v1"
        error = wire.once(client, ("HGET", KEY, "f"))
        assert isinstance(error, redis.ResponseError) and "WRONGTYPE" in str(error), error
        assert wire.once(client, ("GET", KEY)) == b"v1"  # the error left the connection usable

        nowhere = redis.Redis(retry=Retry(NoBackoff(), 0), **UNREACHABLE)
        try:
            wire.once(nowhere, ("GET", KEY))
        except wire.NotSent:
            pass
        else:
            raise AssertionError("once on an unreachable server did not raise NotSent")
        finally:
            nowhere.close()

        # socket_fileno: None before connecting and after, the socket's fd while connected
        pool = client.connection_pool
        fresh = pool.connection_class(**pool.connection_kwargs)
        assert wire.socket_fileno(fresh) is None
        fresh.connect()
        try:
            fd = wire.socket_fileno(fresh)
            if fd is not None:
                assert stat.S_ISSOCK(os.fstat(fd).st_mode)
                fresh.send_command("PING")
                assert fresh.can_read(timeout=2) and fresh.read_response() == b"PONG"
        finally:
            fresh.disconnect()
        assert wire.socket_fileno(fresh) is None
        return {"sock": fd is not None, **check_kept(client)}
    finally:
        client.delete(KEY, HASH)
        client.close()


def check_kept(client: redis.Redis) -> dict[str, Any]:
    """wire.Wire: its replies and error classes are redis-py's own, with hiredis reading
    the socket and without; it keeps a connection, replaces one the server killed, and
    gives them back on close."""
    kept = wire.Wire(client)
    assert kept.size == wire.KEPT  # redis-py's default pool: no small max_connections
    fast = kept.roundtrip(commands())
    check_replies(fast)
    assert len(kept.idle) == 1
    pipe = client.pipeline(transaction=False)
    for command in commands():
        pipe.execute_command(*command)
    piped = pipe.execute(raise_on_error=False)  # HGETALL: a dict with RESP3 or a callback
    flat = [[x for pair in r.items() for x in pair] if isinstance(r, dict) else r for r in piped]
    same = [[x for pair in r.items() for x in pair] if isinstance(r, dict) else r for r in fast]
    assert type(fast[3]) is type(piped[3])  # the message: redis-py's pipeline adds to it
    assert same[:3] + same[4:] == flat[:3] + flat[4:]
    hiredis, wire._hiredis = wire._hiredis, None  # reply by reply with read_response
    try:
        assert normalized(kept.roundtrip(commands())) == normalized(fast)
    finally:
        wire._hiredis = hiredis
    # error classes as redis-py raises them (NOSCRIPT: NoScriptError, ERR dropped)
    for command in (("EVALSHA", "0" * 40, 0), ("NOSUCHCOMMAND",), ("HGET", KEY, "f")):
        try:
            client.execute_command(*command)
        except redis.ResponseError as exc:
            expected = (type(exc).__name__, str(exc))
        else:
            raise AssertionError(f"{command} did not fail")
        got = kept.once(command)
        assert (type(got).__name__, str(got)) == expected, (got, expected)
        assert normalized(kept.roundtrip([command])) == [expected]
    # text as UTF-8, numbers as redis-py writes them
    echoed = [("ECHO", "é"), ("ECHO", 5), ("ECHO", 0.25), ("ECHO", b"\xff")]
    assert kept.roundtrip(echoed) == [client.execute_command(*c) for c in echoed]
    conn = kept.idle[-1]
    sock_read = getattr(conn, "_sock", None) is not None and wire._hiredis is not None
    for victim in list(kept.idle):  # the server closes the kept connection
        victim.send_command("CLIENT", "ID")
        client.execute_command("CLIENT", "KILL", "ID", victim.read_response())
    assert kept.once(("GET", KEY)) == b"v1"  # checked before sending: a fresh one
    for victim in list(kept.idle):
        victim.send_command("CLIENT", "ID")
        client.execute_command("CLIENT", "KILL", "ID", victim.read_response())
    check_replies(kept.roundtrip(commands()))  # sent again on a fresh one
    kept.close()
    assert kept.idle == []
    return {"sock_read": sock_read}


def check_count_connects_sync() -> None:
    calls: list[int] = []

    def previous(conn: Any) -> None:  # a hook set by the application: it must still run
        calls.append(1)
        conn.on_connect()

    client = redis.Redis.from_url(URL, redis_connect_func=previous)
    try:
        counter = wire.count_connects(client)
        assert wire.count_connects(client) is counter  # installed once
        assert counter.count == 0
        assert client.ping()
        assert counter.count == 1 and len(calls) == 1
        assert client.ping()  # the pooled connection again: no new connect
        assert counter.count == 1
        client.connection_pool.disconnect()
        assert client.ping()  # reconnects
        assert counter.count == 2 and len(calls) == 2
    finally:
        client.close()

    plain = redis.Redis.from_url(URL)  # no previous hook: on_connect itself runs (AUTH)
    try:
        counter = wire.count_connects(plain)
        assert plain.get(KEY) is None and counter.count == 1
    finally:
        plain.close()


# --------------------------------------------------------------------------- asyncio


async def check_async() -> dict[str, Any]:
    client = redis.asyncio.Redis.from_url(URL)
    taken = {"n": 0}
    read_replies = wire._read_replies

    async def counted(stream: asyncio.StreamReader, n: int, timeout: float | None) -> list[Any]:
        taken["n"] += 1
        return await read_replies(stream, n, timeout)

    wire._read_replies = counted
    try:
        await client.set(KEY, b"v1")
        await client.hset(HASH, "f", b"x")

        conn = await wire._connection(client.connection_pool, [("PING",)])
        try:
            stream_found = wire._stream_of(conn) is not None
        finally:
            await client.connection_pool.release(conn)

        fast = await wire.roundtrip_async(client, commands())
        check_replies(fast)
        assert (taken["n"] == 1) == stream_found, (taken, stream_found)
        together = await asyncio.gather(
            *(wire.roundtrip_async(client, commands()) for _ in range(8))
        )
        for replies in together:
            check_replies(replies)
        assert await wire.roundtrip_async(client, [("PING",)]) == [b"PONG"]
        assert await wire.roundtrip_async(client, []) == []

        hiredis, wire._hiredis = wire._hiredis, None  # redis[hiredis] without hiredis
        try:
            before = taken["n"]
            slow = await wire.roundtrip_async(client, commands())
            assert taken["n"] == before  # the fallback did not touch the stream
            check_replies(slow)
            assert normalized(slow) == normalized(fast)
            assert await wire.roundtrip_async(client, [("PING",)]) == [b"PONG"]
        finally:
            wire._hiredis = hiredis

        assert await wire.once_async(client, ("GET", KEY)) == b"v1"
        error = await wire.once_async(client, ("HGET", KEY, "f"))
        assert isinstance(error, redis.ResponseError) and "WRONGTYPE" in str(error), error
        assert await wire.once_async(client, ("GET", KEY)) == b"v1"

        nowhere = redis.asyncio.Redis(retry=AsyncRetry(NoBackoff(), 0), **UNREACHABLE)
        try:
            await wire.once_async(nowhere, ("GET", KEY))
        except wire.NotSent:
            pass
        else:
            raise AssertionError("once_async on an unreachable server did not raise NotSent")
        finally:
            await nowhere.connection_pool.disconnect()

        await client.delete(KEY, HASH)
        return {"stream": stream_found, "hiredis": hiredis is not None}
    finally:
        wire._read_replies = read_replies
        await client.connection_pool.disconnect()


async def check_count_connects_async() -> None:
    calls: list[int] = []

    async def previous(conn: Any) -> None:
        calls.append(1)
        await conn.on_connect()

    def previous_sync(conn: Any) -> Any:  # a hook returning the awaitable itself
        calls.append(1)
        return conn.on_connect()

    for hook in (previous, previous_sync, None):
        calls.clear()
        client = redis.asyncio.Redis.from_url(URL, redis_connect_func=hook)
        try:
            counter = wire.count_connects(client)
            assert wire.count_connects(client) is counter
            assert await client.ping()
            assert counter.count == 1
            first, second = await asyncio.gather(  # two at once: two connections
                wire.roundtrip_async(client, [("BLPOP", MISSING, 0.05)]),
                wire.roundtrip_async(client, [("BLPOP", MISSING, 0.05)]),
            )
            assert first == second == [None]
            assert counter.count == 2
            await client.connection_pool.disconnect()
            assert await client.ping()
            assert counter.count == 3
            assert len(calls) == (0 if hook is None else 3)
        finally:
            await client.connection_pool.disconnect()


# ---------------------------------------------------------------- the rest of rediscache


def smoke() -> None:
    """The public API over this redis-py: a space, writes, reads, search, the hot cache
    (which polls the socket socket_fileno finds) and the asyncio hub."""
    name = "wire-probe-" + uuid.uuid4().hex[:8]
    vecs = np.random.default_rng(0).standard_normal((20, 8)).astype(np.float32)
    keys = [f"k{i}" for i in range(20)]
    hub = rediscache.connect(URL)
    try:
        space = hub.create_space(name, 8, metric="l2")
        assert space.put_many(keys, vecs) == 20
        assert np.array_equal(space.get("k3"), vecs[3])
        assert np.array_equal(space.get_many(["k1", "k2"]), vecs[1:3])
        assert space.search(vecs[3], k=3)[0].key == "k3"
        cache = space.enable_hot_cache(max_items=10)
        try:
            assert np.array_equal(space.get("k4"), vecs[4])
            assert np.array_equal(space.get("k4"), vecs[4])
            assert cache.stats().hits == 1
            hub.space(name).put("k4", vecs[5])  # another object's write: invalidated
            for _ in range(300):
                if np.array_equal(space.get("k4"), vecs[5]):
                    break
                time.sleep(0.01)
            else:
                raise AssertionError("the hot cache did not see another client's write")
        finally:
            space.disable_hot_cache()

        async def use_async() -> None:
            ahub = await rediscache.connect_async(url=URL)
            try:
                aspace = await ahub.space(name)
                assert np.array_equal(await aspace.get("k3"), vecs[3])
                assert np.array_equal(await aspace.get_many(["k1", "k2"]), vecs[1:3])
                assert (await aspace.search(vecs[6], k=1))[0].key == "k6"
                await aspace.put("k7", vecs[8])
                assert np.array_equal(space.get("k7"), vecs[8])
            finally:
                await ahub.close()

        asyncio.run(use_async())
    finally:
        hub.drop_space(name, missing_ok=True)
        hub.close()


def main() -> None:
    found = check_sync()
    check_count_connects_sync()
    found.update(asyncio.run(check_async()))
    asyncio.run(check_count_connects_async())
    print(json.dumps({"redis": redis.__version__, **found}), flush=True)  # before the smoke
    smoke()
    print("smoke ok", flush=True)


if __name__ == "__main__":
    main()
