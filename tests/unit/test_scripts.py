"""Lua scripts are found and each opens with the header STYLE.md asks for."""

from __future__ import annotations

import re

import pytest

from rediscache import scripts


def test_scripts_are_found() -> None:
    assert {"gather", "combine", "update_mean"} <= set(scripts.available())


@pytest.mark.parametrize("name", scripts.available())
def test_header_and_no_key_building(name: str) -> None:
    text = scripts.source(name)
    header = "\n".join(line for line in text.splitlines() if line.startswith("--"))
    for word in scripts.HEADER_WORDS:
        assert word in header, f"{name}.lua header lacks {word!r}"
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    # keys arrive through KEYS only: no key name is built inside the script
    assert not re.search(r"rc:", body)


def test_missing_script_names_where_it_looked() -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.lua"):
        scripts.source("nope")
