"""Reads on the wire: one-write round trips, and the commands and result assembly of
``get`` / ``get_many``, shared by :class:`rediscache.reader.Reader` and
:mod:`rediscache.asyncio` (which awaits the same commands)."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import numpy.typing as npt
import redis
import redis.asyncio

from .codec import VectorCodec
from .errors import KeyNotFoundError
from .keys import VECTOR_FIELD, GenKeys

__all__ = [
    "ConnectCounter",
    "IndexReadiness",
    "count_connects",
    "fetch_commands",
    "get_commands",
    "roundtrip",
    "socket_fileno",
    "vector_rows",
]


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
        conn = pool.get_connection()
        try:
            conn.send_packed_command(conn.pack_commands(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except redis.ResponseError as exc:
                    replies.append(exc)
            return replies
        except (redis.ConnectionError, redis.TimeoutError):
            conn.disconnect()
            if attempt == 2:
                raise
        except BaseException:
            conn.disconnect()  # a reply may be half read: never reuse this connection
            raise
        finally:
            pool.release(conn)
    raise AssertionError("unreachable")


def socket_fileno(conn: Any) -> int | None:
    """The file descriptor of a connected redis-py ``Connection``'s socket, or None when it
    cannot be found. redis-py has no public accessor: this reads its ``_sock`` attribute
    (present in redis-py 5 to 8, tested in tests/unit/test_wire.py); callers fall back to
    redis-py's public ``can_read`` when it returns None."""
    sock = getattr(conn, "_sock", None)
    fileno = getattr(sock, "fileno", None)
    if fileno is None:
        return None
    try:
        fd = fileno()
    except OSError:
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


def get_commands(
    gen: GenKeys, key: str, ttl_ms: int, expiry: bool = False
) -> list[tuple[Any, ...]]:
    """The reads of ``get``: HGET of the vector, then PEXPIRE when refreshing the ttl, or
    PTTL when the hot cache needs the value's expiry (``expiry``)."""
    doc = gen.doc(key)
    if ttl_ms:
        return [("HGET", doc, VECTOR_FIELD), ("PEXPIRE", doc, ttl_ms)]
    if expiry:
        return [("HGET", doc, VECTOR_FIELD), ("PTTL", doc)]
    return [("HGET", doc, VECTOR_FIELD)]


def fetch_commands(
    gen: GenKeys, keys: list[str], ttl_ms: int, expiry: bool = False
) -> list[tuple[Any, ...]]:
    """The reads of ``get_many``: n HGETs, then n PEXPIREs when refreshing or n PTTLs when
    the hot cache needs expiries (so the first n replies are the vectors)."""
    docs = gen.docs(keys)
    commands: list[tuple[Any, ...]] = [("HGET", rk, VECTOR_FIELD) for rk in docs]
    if ttl_ms:
        commands += [("PEXPIRE", rk, ttl_ms) for rk in docs]
    elif expiry:
        commands += [("PTTL", rk) for rk in docs]
    return commands


def vector_rows(
    codec: VectorCodec, keys: list[str], raws: list[bytes | None], missing: str, where: str
) -> npt.NDArray[Any]:
    """``get_many``'s result from the raw vectors (None: absent) of ``keys``."""
    absent = [i for i, r in enumerate(raws) if r is None]
    if absent and missing == "raise":
        shown = ", ".join(repr(keys[i]) for i in absent[:5])
        more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
        raise KeyNotFoundError(f"{len(absent)} keys not in {where}: {shown}{more}")
    found = [r for r in raws if r is not None]
    if not absent:
        return codec.decode_many(found, keys)
    present = [i for i, r in enumerate(raws) if r is not None]
    out = np.full((len(keys), codec.dim), np.nan, dtype=codec.out_dtype)
    if present:
        out[present] = codec.decode_many(found, [keys[i] for i in present])
    return out


class ConnectCounter:
    """Counts the connections a redis-py pool opens (:func:`count_connects`). A new
    connection may reach a server that restarted since the last one: whatever was verified
    about the server (e.g. that a search index is complete) is verified again."""

    def __init__(self) -> None:
        self.count = 0


class IndexReadiness:
    """What a hub knows about one space's search indexes: the generations whose index was
    complete when last checked (``ready``) and the hub's connection count then (``seen``;
    -1: never checked). One per space and hub, shared by every object of that space, so
    that ``hub.space(name)`` per request does not check again."""

    __slots__ = ("ready", "seen")

    def __init__(self) -> None:
        self.ready: set[int] = set()
        self.seen = -1


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
