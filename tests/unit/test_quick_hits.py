"""search's one-pass reader of a plain search's reply (rediscache.search._quick_hits): the
same hits as the full parser on the usual reply, and None (the full parser then reads and
reports) on anything else."""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest

from rediscache.codec import VectorCodec, unpack_metadata
from rediscache.ftsearch import parse_search_reply
from rediscache.keys import SpaceKeys
from rediscache.reads import Hit
from rediscache.search import _quick_hits

SPACE = "rc:{s}:"
PREFIX = b"rc:{s}:g3:d:"
GEN = SpaceKeys.for_space("s").gen(3)
CODEC = VectorCodec(4, "float32", "cosine")


def test_the_prefix_is_the_generations() -> None:
    assert GEN.doc_prefix_bytes == PREFIX


def _reply(n: int, meta: bool = True, vec: bool = False) -> list[Any]:
    """A reply of ``n`` hits as FT.SEARCH ... WITHSORTKEYS gives it: fields ``meta`` (some of
    them empty) and ``vec`` when asked for, else NOCONTENT (id and sort key only)."""
    reply: list[Any] = [n]
    for i in range(n):
        reply += [PREFIX + f"k{i}/ü".encode(), b"#" + repr(i / 10 - 0.15).encode()]
        fields: list[Any] = []
        if meta or vec:
            fields += [b"meta", msgpack.packb({"i": i, "name": f"é{i}"}) if i % 3 else b""]
        if vec:
            fields += [b"vec", np.full(4, i, np.float32).tobytes()]
        if fields:
            reply.append(fields)
    return reply


def _full(reply: list[Any], vec: bool = False) -> list[Hit]:
    def make(key: str, distance: float, meta: Any, raw: Any) -> Hit:
        return Hit(key, distance, unpack_metadata(meta), CODEC.decode(raw, key) if vec else None)

    return parse_search_reply(reply, space_prefix=SPACE, make=make)[1]


@pytest.mark.parametrize("n", [0, 1, 10, 15, 16, 40])
@pytest.mark.parametrize("meta", [True, False])
def test_same_hits_as_the_full_parser(n: int, meta: bool) -> None:
    reply = _reply(n, meta)
    assert _quick_hits(reply, GEN, CODEC, False) == _full(reply)


def test_an_id_holding_nul_is_read_by_the_full_parser() -> None:
    reply = _changed(_reply(2), 1, PREFIX + b"a\x00b")
    assert _quick_hits(reply, GEN, CODEC, False) is None
    assert _full(reply)[0].key == "a\x00b"


def test_with_vectors() -> None:
    reply = _reply(5, vec=True)
    got = _quick_hits(reply, GEN, CODEC, True)
    want = _full(reply, vec=True)
    assert got is not None and [h[:3] for h in got] == [h[:3] for h in want]
    for a, b in zip(got, want):
        assert a.vector is not None and b.vector is not None
        np.testing.assert_array_equal(a.vector, b.vector)


def test_no_metadata_stored() -> None:
    bare = _reply(4, meta=False)
    reply = bare[:1]
    for i in range(1, len(bare), 2):  # RETURN meta, which no document has: empty lists
        reply += [*bare[i : i + 2], []]
    got = _quick_hits(reply, GEN, CODEC, False)
    assert got == _full(reply) and got is not None and len(got) == 4
    assert [h.metadata for h in got] == [{}] * 4


def test_vectors_asked_for_but_no_content_goes_to_the_full_parser() -> None:
    assert _quick_hits(_reply(3, meta=False), GEN, CODEC, True) is None


def _changed(reply: list[Any], i: int, value: Any) -> list[Any]:
    out = list(reply)
    out[i] = value
    return out


@pytest.mark.parametrize(
    "reply",
    [
        _changed(_reply(3), 6, None),  # a hit whose document vanished: nil fields
        _changed(_reply(3), 3, []),  # one hit without metadata among others
        _changed(_reply(3), 4, b"rc:{s}:g4:d:k1"),  # another generation answered
        _changed(_reply(3), 6, [b"vec", b"V", b"meta", b"\x80"]),  # other field order
        _changed(_reply(3), 5, b"#x"),  # not a distance
        _changed(_reply(3), 5, b"0.5"),  # not a sort key
        _changed(_reply(3), 5, b"#0.5#0.6"),  # two in one
        _changed(_reply(3, meta=False), 4, b"#x"),  # not a distance, without content
        _changed(_reply(3), 6, [b"meta", b"\xc1"]),  # not msgpack
        _changed(_reply(3), 6, [b"meta", msgpack.packb([1])]),  # not a map
        _changed(_reply(3), 1, PREFIX + b"k\x00" + PREFIX + b"x"),  # an id holding NUL + prefix
        _changed(_reply(3), 1, PREFIX + b"\xff"),  # not UTF-8
        _changed(_reply(3), 1, b"x" + PREFIX + b"k0"),  # the prefix not at the start
        _changed(_reply(3), 1, 7),  # not bytes
        _changed(_reply(3), 2, None),  # no sort key
        _reply(3)[:-1],  # not the FT.SEARCH shape
        None,
    ],
)
def test_anything_else_goes_to_the_full_parser(reply: Any) -> None:
    assert _quick_hits(reply, GEN, CODEC, False) is None
