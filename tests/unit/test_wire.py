"""The one adapter to redis-py internals (wire.socket_fileno) and its fallbacks."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import redis

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
