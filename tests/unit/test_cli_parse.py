"""Parsing of CLI option values (no server)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import pytest

from rediscache import query
from rediscache.cli.parse import (
    parse_fields,
    parse_filters,
    parse_vector,
    split_unescaped,
    version_ref,
)

FIELDS = {"genre": "tag", "year": "numeric", "title": "text"}


def _q(flt: query.Filter | None) -> str:
    assert flt is not None
    return query.render_filter(flt, FIELDS)  # type: ignore[arg-type]


def test_fields() -> None:
    assert parse_fields(("genre:tag", "year:numeric", "t:text")) == {
        "genre": "tag",
        "year": "numeric",
        "t": "text",
    }
    for bad in (("genre",), ("genre:vector",), (":tag",), ("a:tag", "a:numeric")):
        with pytest.raises(click.BadParameter):
            parse_fields(bad)


def test_filters_are_typed_by_the_schema() -> None:
    assert parse_filters((), FIELDS) is None
    assert _q(parse_filters(("genre=drama",), FIELDS)) == _q(query.Tag("genre", "drama"))
    assert _q(parse_filters(("genre=drama|noir",), FIELDS)) == _q(
        query.Tag("genre", ["drama", "noir"])
    )
    assert _q(parse_filters(("year=1999",), FIELDS)) == _q(query.Num("year", 1999, 1999))
    assert _q(parse_filters(("year=1990..2000",), FIELDS)) == _q(query.Num("year", 1990, 2000))
    assert _q(parse_filters(("year=1.5..",), FIELDS)) == _q(query.Num("year", 1.5, None))
    assert _q(parse_filters(("year=..2000",), FIELDS)) == _q(query.Num("year", None, 2000))
    assert _q(parse_filters(("title=new york",), FIELDS)) == _q(query.Text("title", "new york"))
    both = parse_filters(("genre=drama", "year=1999"), FIELDS)
    assert _q(both) == _q(query.Tag("genre", "drama") & query.Num("year", 1999, 1999))


def test_filter_values_are_escaped() -> None:
    value = "x)=>[KNN 1000 @vec $vec]"
    q = _q(parse_filters((f"genre={value}",), FIELDS))
    assert q == _q(query.Tag("genre", value))
    assert q.startswith("@genre:{") and "\\=\\>\\[KNN" in q


@pytest.mark.parametrize("spec", ["genre", "=drama", "nope=1", "year=abc", "year=1..x"])
def test_bad_filters(spec: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_filters((spec,), FIELDS)


def test_vectors(tmp_path: Path) -> None:
    assert parse_vector(None, None) is None
    assert parse_vector("[1, 2.5, -3]", None).tolist() == [1.0, 2.5, -3.0]  # type: ignore[union-attr]
    npy = tmp_path / "q.npy"
    np.save(npy, np.array([[0.5, 0.25]], dtype=np.float32))
    assert parse_vector(None, npy).tolist() == [0.5, 0.25]  # type: ignore[union-attr]
    js = tmp_path / "q.json"
    js.write_text(json.dumps([1, 2]))
    assert parse_vector(None, js).tolist() == [1.0, 2.0]  # type: ignore[union-attr]
    for text in ("not json", "[[1, 2], [3, 4]]", '["a"]', "[]", "{}"):
        with pytest.raises(click.BadParameter):
            parse_vector(text, None)
    with pytest.raises(click.UsageError):
        parse_vector("[1]", js)


def test_every_tag_value_can_be_written() -> None:
    assert _q(parse_filters((r"genre=rock\|pop",), FIELDS)) == _q(query.Tag("genre", "rock|pop"))
    assert _q(parse_filters((r"genre=a\|b|c",), FIELDS)) == _q(query.Tag("genre", ["a|b", "c"]))
    assert _q(parse_filters((r"genre=a\\|b",), FIELDS)) == _q(query.Tag("genre", ["a\\", "b"]))
    assert _q(parse_filters((r"genre=C:\dir",), FIELDS)) == _q(query.Tag("genre", r"C:\dir"))
    assert split_unescaped(r"x\\\|y", "|") == ["x\\|y"]


def test_numbers_are_taken_exactly() -> None:
    # an 18-digit integer is not rounded on the way: the library refuses it with a hint
    flt = parse_filters(("year=232787661235170481",), FIELDS)
    assert isinstance(flt, query.Num) and flt.low == 232787661235170481
    with pytest.raises(query.InvalidInputError, match="tag field"):
        _q(flt)
    assert _q(parse_filters(("year=-3..1e3",), FIELDS)) == _q(query.Num("year", -3, 1000.0))


def test_versions() -> None:
    assert version_ref("12") == 12
    assert version_ref("²") == "²"  # a Unicode digit: a label, not an id
    assert version_ref("before-retrain") == "before-retrain"
    assert version_ref("v2") == "v2"
