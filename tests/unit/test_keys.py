"""Key layout: hash tags, prefixes, ACL and SCAN patterns."""

from __future__ import annotations

import pytest

from rediscache.errors import InvalidInputError
from rediscache.keys import SpaceKeys, count_field, validate_space_name


def test_every_key_shares_the_hash_tag_and_prefix() -> None:
    k = SpaceKeys.for_space("items.v2")
    g = k.gen(3)
    for key in (k.config, k.index, k.versions, k.garbage, k.lock, g.doc("user:42"), g.index):
        assert key.startswith("rc:{items.v2}:")
        assert key[key.index("{") + 1 : key.index("}")] == "items.v2"
    assert k.acl_pattern == "rc:{items.v2}:*"
    assert g.doc("x") == "rc:{items.v2}:g3:d:x"
    assert g.user_key(g.doc("a:b{c}")) == "a:b{c}"
    assert g.user_key(g.doc("x").encode()) == "x"
    assert g.count_field == count_field(3) == "n:3"
    assert k.gen(4).doc_prefix != g.doc_prefix and k.gen(4).index != g.index


def test_user_key_outside_the_generation_is_refused() -> None:
    with pytest.raises(InvalidInputError):
        SpaceKeys.for_space("a").gen(1).user_key("rc:{b}:g1:d:x")
    with pytest.raises(InvalidInputError):
        SpaceKeys.for_space("a").gen(1).user_key("rc:{a}:g2:d:x")


@pytest.mark.parametrize("bad", [0, -1, True, "1", 1.0])
def test_bad_generations(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="generation"):
        SpaceKeys.for_space("a").gen(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "a b", "a*", "a{b", "a}b", "a:b", "-a", "x" * 65, 3, None])
def test_bad_space_names(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="invalid space name"):
        validate_space_name(bad)


def test_scan_patterns_escape_glob_characters() -> None:
    k = SpaceKeys.for_space("a_b-c.d")
    assert k.gen(12).doc_scan_pattern() == "rc:{a_b-c.d}:g12:d:*"
    assert k.all_scan_pattern() == "rc:{a_b-c.d}:*"


def test_the_generations_a_config_names() -> None:
    from rediscache.keys import FORK_GEN_FIELD, built_field, config_generations, stage_field

    space = SpaceKeys.for_space("items")
    config = {
        b"state": b"4 2 1 - ab12",
        count_field(2).encode(): b"10",
        built_field(3).encode(): b"runid",
        space.gen(5).listed_field.encode(): b"1",
        FORK_GEN_FIELD.encode(): b"7",
        stage_field("rel").encode(): b"9 tok open 1.5",
        b"next_gen": b"9",
        b"n:x": b"0",
    }
    assert config_generations(config) == {2, 3, 5, 7, 9}
