"""get and get_many send their HGETs packed from one template (rediscache.wire.Frames), the
state read appended (Target.check_frame): the bytes must be the commands themselves for any
key (non-ASCII, '%'), and what a read returns must not change with the way it was sent."""

from __future__ import annotations

from typing import Any

import numpy as np
import redis

import rediscache
from rediscache import wire

KEYS = ["plain", "é-ключ", "100%", "%s%d%b", "a b"]


def _spy(monkeypatch: Any) -> list[tuple[list[tuple[Any, ...]], Any]]:
    """Every (commands, packed) the sync round trips pack from now on."""
    sent: list[tuple[list[tuple[Any, ...]], Any]] = []
    real = wire._pack

    def spy(conn: Any, commands: Any, packed: Any = None) -> Any:
        sent.append((list(commands), packed))
        return real(conn, commands, packed)

    monkeypatch.setattr(wire, "_pack", spy)
    return sent


def test_get_and_get_many_send_their_commands_prepacked(
    hub: rediscache.Hub, space_name: str, monkeypatch: Any
) -> None:
    s = hub.create_space(space_name, 4, algorithm="flat")
    vectors = np.arange(len(KEYS) * 4, dtype=np.float32).reshape(-1, 4)
    s.put_many(KEYS, vectors)
    sent = _spy(monkeypatch)
    for i, key in enumerate(KEYS):
        np.testing.assert_array_equal(s.get(key), vectors[i])
    many = s.get_many(KEYS[::-1])
    np.testing.assert_array_equal(many, vectors[::-1])
    assert s.get("absent") is None
    both = s.get_many(["absent", KEYS[1]], missing="nan")
    assert np.isnan(both[0]).all() and (both[1] == vectors[1]).all()
    assert len(sent) == len(KEYS) + 3
    for commands, packed in sent:
        assert isinstance(packed, bytes)  # rediscache's own client encodes text as UTF-8
        assert packed == b"".join(redis.Connection().pack_commands(commands))
    many[0, 0] = -1.0  # the array is the caller's: writable, not shared with the next read
    np.testing.assert_array_equal(s.get_many(KEYS[::-1]), vectors[::-1])


def test_reads_that_refresh_a_ttl_are_packed_the_general_way(
    hub: rediscache.Hub, space_name: str, monkeypatch: Any
) -> None:
    s = hub.create_space(space_name, 4, algorithm="flat", ttl=300)
    s.put_many(KEYS, np.ones((len(KEYS), 4)))
    sent = _spy(monkeypatch)
    assert s.get(KEYS[1], refresh_ttl=True) is not None
    assert s.get_many(KEYS, refresh_ttl=600).shape == (len(KEYS), 4)
    assert [packed for _, packed in sent] == [None, None]  # HGET and PEXPIRE: hiredis packs
    assert [c[0] for c in sent[1][0]] == ["HGET"] * len(KEYS) + ["PEXPIRE"] * len(KEYS) + [
        "HGET"
    ]


def test_a_read_across_a_rollback_comes_from_one_version(
    hub: rediscache.Hub, space_name: str
) -> None:
    """The prepacked state read still catches a switch between two reads of a cached space."""
    s = hub.create_space(space_name, 4, metric="l2", algorithm="flat")
    s.put_many(KEYS, np.zeros((len(KEYS), 4)))
    s.snapshot("v1")
    other = rediscache.connect(client=hub.client).space(space_name)
    other.put_many(KEYS, np.ones((len(KEYS), 4)))
    assert (s.get_many(KEYS) == 1.0).all() and (s.get(KEYS[2]) == 1.0).all()
    other.rollback("v1")
    assert (s.get_many(KEYS) == 0.0).all() and (s.get(KEYS[2]) == 0.0).all()
