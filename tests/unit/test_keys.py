"""Key layout: hash tags, prefixes, ACL and SCAN patterns."""

from __future__ import annotations

import pytest

from rediscache.errors import InvalidInputError
from rediscache.keys import SpaceKeys, validate_space_name


def test_every_key_shares_the_hash_tag_and_prefix() -> None:
    k = SpaceKeys.for_space("items.v2")
    for key in (k.config, k.index, k.doc("user:42"), k.doc_prefix):
        assert key.startswith("rc:{items.v2}:")
        assert key[key.index("{") + 1 : key.index("}")] == "items.v2"
    assert k.acl_pattern == "rc:{items.v2}:*"
    assert k.user_key(k.doc("a:b{c}")) == "a:b{c}"
    assert k.user_key(k.doc("x").encode()) == "x"


def test_user_key_outside_the_space_is_refused() -> None:
    with pytest.raises(InvalidInputError):
        SpaceKeys.for_space("a").user_key("rc:{b}:d:x")


@pytest.mark.parametrize("bad", ["", "a b", "a*", "a{b", "a}b", "a:b", "-a", "x" * 65, 3, None])
def test_bad_space_names(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="invalid space name"):
        validate_space_name(bad)


def test_scan_patterns_escape_glob_characters() -> None:
    k = SpaceKeys.for_space("a_b-c.d")
    assert k.doc_scan_pattern() == "rc:{a_b-c.d}:d:*"
    assert k.all_scan_pattern() == "rc:{a_b-c.d}:*"
