"""Unit tests of rediscache.query: filters, escaping, schema, query args, reply parsing."""

from __future__ import annotations

import math
import string

import numpy as np
import pytest

from rediscache.errors import CorruptDataError, InvalidInputError
from rediscache.ftsearch import RawHit, knn_query, parse_search_reply, range_query
from rediscache.query import (
    DEFAULT_HNSW,
    TAG_SEPARATOR,
    And,
    Not,
    Num,
    Or,
    Tag,
    Text,
    encode_field_value,
    encode_tag_value,
    fold_text,
    hnsw_params,
    parse_filter,
    render_filter,
    schema_args,
    validate_fields,
)

FIELDS = validate_fields({"genre": "tag", "year": "numeric", "title": "text"})

SPECIAL = " -@|{}()\"'*,.<>[]:;!~$%^&=+/\\#`?"


def render(f: object) -> str:
    parsed = parse_filter(f, FIELDS)  # type: ignore[arg-type]
    assert parsed is not None
    return render_filter(parsed, FIELDS)


# ------------------------------------------------------------------ fields


def test_validate_fields_lowercases_types() -> None:
    assert validate_fields({"Genre": "TAG", "year": "Numeric", "_t1": "text"}) == {
        "Genre": "tag",
        "year": "numeric",
        "_t1": "text",
    }
    assert validate_fields(None) == {}


@pytest.mark.parametrize(
    "name", ["1abc", "a-b", "", "a b", "x" * 65, "vec", "meta", "__dist", "__key", "VEC", "__x"]
)
def test_validate_fields_rejects_bad_or_reserved_names(name: str) -> None:
    with pytest.raises(InvalidInputError):
        validate_fields({name: "tag"})


@pytest.mark.parametrize("ftype", ["geo", "vector", "", 3])
def test_validate_fields_rejects_bad_types(ftype: object) -> None:
    with pytest.raises(InvalidInputError, match="genre"):
        validate_fields({"genre": ftype})  # type: ignore[dict-item]


# ------------------------------------------------------------------ escaping


@pytest.mark.parametrize("char", list(SPECIAL))
def test_every_special_character_is_escaped_in_tags(char: str) -> None:
    assert render(Tag("genre", f"a{char}b")) == "@genre:{a\\" + char + "b}"


def test_every_ascii_punctuation_is_escaped_and_nothing_else() -> None:
    for char in string.printable:
        if char in "\t\n\r\x0b\x0c":
            continue
        out = render(Tag("genre", f"a{char}b"))
        if char.isalnum() or char == "_":
            assert out == f"@genre:{{a{char}b}}"
        else:
            assert out == f"@genre:{{a\\{char}b}}"


def test_non_ascii_passes_unescaped() -> None:
    assert render(Tag("genre", "café crème")) == r"@genre:{café\ crème}"
    assert render(Tag("genre", "日本")) == "@genre:{日本}"


def test_injection_attempts_render_as_one_escaped_term() -> None:
    assert render({"genre": "a} | @other:{x"}) == r"@genre:{a\}\ \|\ \@other\:\{x}"
    assert render({"genre": "x)=>[KNN 1000 @vec $vec]"}) == (
        r"@genre:{x\)\=\>\[KNN\ 1000\ \@vec\ \$vec\]}"
    )
    assert render({"genre": ["ok", "-x"]}) == r"@genre:{ok | \-x}"
    assert render(Tag("genre", "\\")) == r"@genre:{\\}"


def test_text_phrase_is_split_into_plain_words() -> None:
    assert render({"title": "New-York, city!"}) == '@title:"new york city"'
    assert render(Text("title", '" | @x:{y} -(z')) == '@title:"x y z"'
    assert render(Text("title", "x)=>[KNN 1000 @vec $vec]")) == '@title:"x knn 1000 vec vec"'
    assert render(Text("title", "naïve_word")) == '@title:"naïve_word"'


@pytest.mark.parametrize("phrase", ["", "   ", "!?-", "\n\t"])
def test_text_without_words_is_refused(phrase: str) -> None:
    with pytest.raises(InvalidInputError, match="no words"):
        render(Text("title", phrase))


@pytest.mark.parametrize("value", ["", " a", "a ", "a\x1fb", "a\nb", "a\x00"])
def test_bad_tag_strings_are_refused(value: str) -> None:
    with pytest.raises(InvalidInputError, match="genre"):
        render({"genre": value})


@pytest.mark.parametrize("value", [1, 1.5, None, b"x", [1], ["a", None]])
def test_non_str_tag_values_are_refused(value: object) -> None:
    with pytest.raises(InvalidInputError, match="genre"):
        render({"genre": value})


# ------------------------------------------------------------------ dict form


def test_dict_form() -> None:
    assert render({"genre": "drama"}) == "@genre:{drama}"
    assert render({"genre": ["a", "b"]}) == "@genre:{a | b}"
    assert render({"genre": ("a",)}) == "@genre:{a}"
    assert render({"year": (1990, 2000)}) == "@year:[1990 2000]"
    assert render({"year": [1990, 2000]}) == "@year:[1990 2000]"
    assert render({"year": 1999}) == "@year:[1999 1999]"
    assert render({"year": 2.5}) == "@year:[2.5 2.5]"
    assert render({"year": (None, 2000)}) == "@year:[-inf 2000]"
    assert render({"year": (1990.5, None)}) == "@year:[1990.5 +inf]"
    assert render({"year": (None, None)}) == "@year:[-inf +inf]"
    assert render({"title": "hello"}) == '@title:"hello"'
    assert render({"genre": "drama", "year": (1990, 2000)}) == (
        "(@genre:{drama} @year:[1990 2000])"
    )


def test_dict_form_builds_filter_objects() -> None:
    assert parse_filter({"genre": ["a", "b"]}, FIELDS) == Tag("genre", ("a", "b"))
    assert parse_filter({"year": 3}, FIELDS) == Num("year", 3, 3)
    assert parse_filter({"genre": "a", "title": "x"}, FIELDS) == And(
        Tag("genre", "a"), Text("title", "x")
    )


def test_empty_filters_are_none() -> None:
    assert parse_filter(None, FIELDS) is None
    assert parse_filter({}, FIELDS) is None


def test_unknown_field_names_it_and_lists_known_fields() -> None:
    with pytest.raises(InvalidInputError, match=r"'genra'.*genre, title, year"):
        parse_filter({"genra": "x"}, FIELDS)
    with pytest.raises(InvalidInputError, match="'nope'"):
        parse_filter(Tag("nope", "x"), FIELDS)
    with pytest.raises(InvalidInputError, match="no fields"):
        parse_filter({"genre": "x"}, {})


@pytest.mark.parametrize(
    "bad",
    [
        {"year": "1999"},
        {"year": ("a", "b")},
        {"year": (1, 2, 3)},
        {"year": True},
        {"year": (float("nan"), 1)},
        {"year": (1, float("nan"))},
        {"year": (2000, 1990)},
        {"year": (10**400, None)},
        {"genre": []},
        {"genre": 5},
        {"title": ["a"]},
        {"title": 5},
    ],
)
def test_bad_dict_values_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        parse_filter(bad, FIELDS)


def test_nan_and_order_errors_say_what_is_wrong() -> None:
    with pytest.raises(InvalidInputError, match="NaN"):
        parse_filter(Num("year", math.nan, None), FIELDS)
    with pytest.raises(InvalidInputError, match="greater than"):
        parse_filter(Num("year", 5, 4), FIELDS)
    with pytest.raises(InvalidInputError, match="empty list"):
        parse_filter(Tag("genre", []), FIELDS)


def test_filter_objects_are_checked_against_field_types() -> None:
    with pytest.raises(InvalidInputError, match="use Num"):
        parse_filter(Tag("year", "x"), FIELDS)
    with pytest.raises(InvalidInputError, match="use Tag"):
        parse_filter(Num("genre", 1, 2), FIELDS)
    with pytest.raises(InvalidInputError, match="use Text"):
        parse_filter(Tag("title", "x"), FIELDS)
    with pytest.raises(InvalidInputError, match="NaN"):
        parse_filter(Or(Tag("genre", "x"), Not(Num("year", None, math.nan))), FIELDS)
    with pytest.raises(InvalidInputError):
        parse_filter([("genre", "x")], FIELDS)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="at least one"):
        parse_filter(And(), FIELDS)
    with pytest.raises(InvalidInputError, match="filter objects"):
        parse_filter(Or(Tag("genre", "x"), "genre"), FIELDS)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        Tag("genre", 5)  # type: ignore[arg-type]


def test_numbers_render_in_lexer_friendly_form() -> None:
    assert render(Num("year", 1e20, 1.5e21)) == "@year:[1e20 1.5e21]"
    assert render(Num("year", -0.5, 1e-05)) == "@year:[-0.5 1e-05]"
    assert render(Num("year", float("-inf"), float("inf"))) == "@year:[-inf +inf]"
    assert render(Num("year", np.float32(0.5), np.int64(7))) == "@year:[0.5 7]"


# ------------------------------------------------------------------ combinators


def test_combinators_render() -> None:
    a, b, c = Tag("genre", "a"), Num("year", 1, 2), Text("title", "t")
    assert render(And(a, b)) == "(@genre:{a} @year:[1 2])"
    assert render(Or(a, b)) == "(@genre:{a} | @year:[1 2])"
    assert render(Not(a)) == "(-@genre:{a})"
    assert render(And(a)) == "@genre:{a}"
    assert render((a | b) & ~c) == '((@genre:{a} | @year:[1 2]) (-@title:"t"))'
    assert render(~(a & b)) == "(-(@genre:{a} @year:[1 2]))"


def test_operators_flatten_and_double_negation_cancels() -> None:
    a, b, c = Tag("genre", "a"), Tag("genre", "b"), Tag("genre", "c")
    assert a & b & c == And(a, b, c)
    assert a | b | c == Or(a, b, c)
    assert (a & b) & (b & c) == And(a, b, b, c)
    assert ~~a == a
    assert ~a == Not(a)


def test_filters_are_frozen_and_hashable() -> None:
    t = Tag("genre", ["a", "b"])
    assert t.values == ("a", "b")
    assert hash(t) == hash(Tag("genre", ("a", "b")))
    with pytest.raises(AttributeError):
        t.field = "x"  # type: ignore[misc]


# ------------------------------------------------------------------ schema


def test_schema_args_hnsw_exact() -> None:
    assert schema_args(
        384, metric="cosine", algorithm="hnsw", dtype="float32", fields=FIELDS, hnsw=None
    ) == [
        "vec", "VECTOR", "HNSW", 12,
        "TYPE", "FLOAT32", "DIM", 384, "DISTANCE_METRIC", "COSINE",
        "M", 16, "EF_CONSTRUCTION", 200, "EF_RUNTIME", 100,
        "genre", "TAG", "SEPARATOR", "\x1f", "CASESENSITIVE",
        "year", "NUMERIC",
        "title", "TEXT",
    ]  # fmt: skip


def test_schema_args_flat_exact() -> None:
    assert schema_args(
        3, metric="L2", algorithm="FLAT", dtype="bfloat16", fields={}, hnsw=None
    ) == ["vec", "VECTOR", "FLAT", 6, "TYPE", "BFLOAT16", "DIM", 3, "DISTANCE_METRIC", "L2"]
    assert schema_args(
        3, metric="ip", algorithm="flat", dtype="float64", fields={"n": "numeric"}
    ) == ["vec", "VECTOR", "FLAT", 6, "TYPE", "FLOAT64", "DIM", 3, "DISTANCE_METRIC", "IP",
          "n", "NUMERIC"]  # fmt: skip


def test_schema_args_hnsw_overrides() -> None:
    args = schema_args(
        8, metric="ip", algorithm="hnsw", dtype="float16", fields={},
        hnsw={"m": 32, "Ef_Construction": 400, "EF_RUNTIME": 50},
    )  # fmt: skip
    assert args == [
        "vec", "VECTOR", "HNSW", 12, "TYPE", "FLOAT16", "DIM", 8, "DISTANCE_METRIC", "IP",
        "M", 32, "EF_CONSTRUCTION", 400, "EF_RUNTIME", 50,
    ]  # fmt: skip
    partial = schema_args(
        8, metric="ip", algorithm="hnsw", dtype="float32", fields={}, hnsw={"ef_runtime": 10}
    )
    assert partial[-6:] == ["M", 16, "EF_CONSTRUCTION", 200, "EF_RUNTIME", 10]


def test_hnsw_params_and_defaults() -> None:
    assert dict(DEFAULT_HNSW) == {"M": 16, "EF_CONSTRUCTION": 200, "EF_RUNTIME": 100}
    assert hnsw_params(None) == {"M": 16, "EF_CONSTRUCTION": 200, "EF_RUNTIME": 100}
    assert hnsw_params({"m": 8}) == {"M": 8, "EF_CONSTRUCTION": 200, "EF_RUNTIME": 100}
    with pytest.raises(TypeError):
        DEFAULT_HNSW["M"] = 1  # type: ignore[index]


@pytest.mark.parametrize(
    "hnsw", [{"ef": 10}, {"M": 0}, {"M": -1}, {"M": 1.5}, {"M": True}, {"M": "16"}]
)
def test_bad_hnsw_params_are_refused(hnsw: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        schema_args(4, metric="l2", algorithm="hnsw", dtype="float32", fields={},
                    hnsw=hnsw)  # type: ignore[arg-type]  # fmt: skip


@pytest.mark.parametrize(
    "kwargs",
    [
        {"metric": "dot"},
        {"algorithm": "ivf"},
        {"dtype": "int8"},
        {"dim": 0},
        {"dim": True},
        {"algorithm": "flat", "hnsw": {"M": 8}},
        {"fields": {"vec": "tag"}},
    ],
)
def test_bad_schema_args_are_refused(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {
        "dim": 4, "metric": "l2", "algorithm": "hnsw", "dtype": "float32", "fields": {},
        "hnsw": None,
    }  # fmt: skip
    base.update(kwargs)
    dim = base.pop("dim")
    with pytest.raises(InvalidInputError):
        schema_args(dim, **base)  # type: ignore[arg-type]


# ------------------------------------------------------------------ field values


def test_encode_tag_value() -> None:
    assert encode_tag_value("drama") == "drama"
    assert encode_tag_value(["a", "b, c"]) == f"a{TAG_SEPARATOR}b, c"
    assert encode_tag_value(("x",)) == "x"
    assert encode_tag_value([]) == ""
    for bad in ["", f"a{TAG_SEPARATOR}b", [""], ["a", 1], " a", 5]:
        with pytest.raises(InvalidInputError):
            encode_tag_value(bad)  # type: ignore[arg-type]


def test_encode_field_value() -> None:
    assert encode_field_value("numeric", 1990) == "1990"
    assert encode_field_value("numeric", 1.5) == "1.5"
    assert encode_field_value("numeric", 1e20) == "1e+20"
    assert encode_field_value("numeric", np.float32(0.5)) == "0.5"
    assert encode_field_value("numeric", np.int64(3)) == "3"
    assert encode_field_value("text", "hello, world") == "hello, world"
    assert encode_field_value("tag", ["a", "b"]) == f"a{TAG_SEPARATOR}b"
    assert encode_field_value("tag", "a") == "a"


@pytest.mark.parametrize(
    ("ftype", "value"),
    [
        ("numeric", True),
        ("numeric", math.nan),
        ("numeric", math.inf),
        ("numeric", "1"),
        ("numeric", None),
        ("text", 1),
        ("text", b"x"),
        ("tag", 1),
        ("tag", {"a": 1}),
        ("geo", "x"),
    ],
)
def test_encode_field_value_refuses_wrong_types(ftype: str, value: object) -> None:
    with pytest.raises(InvalidInputError):
        encode_field_value(ftype, value)  # type: ignore[arg-type]


# ------------------------------------------------------------------ knn / range queries


def test_knn_query_plain() -> None:
    q = knn_query(10, filter_str=None, ef=None, with_vectors=False, with_metadata=True)
    assert q.query == "*=>[KNN $k @vec $vec AS __dist]"
    assert q.args(b"BLOB") == [
        "*=>[KNN $k @vec $vec AS __dist]",
        "PARAMS", 4, "k", 10, "vec", b"BLOB",
        "SORTBY", "__dist", "ASC",
        "LIMIT", 0, 10,
        "RETURN", 1, "meta", "WITHSORTKEYS",
        "TIMEOUT", 0,
        "DIALECT", 2,
    ]  # fmt: skip


def test_knn_query_with_filter_ef_vectors_and_a_page() -> None:
    q = knn_query(
        25, start=20, filter_str="@genre:{a}", ef=64, with_vectors=True, with_metadata=True
    )
    assert q.args(b"\x00\x01") == [
        "(@genre:{a})=>[KNN $k @vec $vec EF_RUNTIME $ef AS __dist]",
        "PARAMS", 6, "k", 25, "vec", b"\x00\x01", "ef", 64,
        "SORTBY", "__dist", "ASC",
        "LIMIT", 20, 5,
        "RETURN", 2, "meta", "vec", "WITHSORTKEYS",
        "TIMEOUT", 0,
        "DIALECT", 2,
    ]  # fmt: skip


def test_knn_query_without_metadata_and_args_are_fresh_lists() -> None:
    q = knn_query(3, filter_str=None, ef=None, with_vectors=False, with_metadata=False)
    first = q.args(b"a")
    assert first[-6:] == ["NOCONTENT", "WITHSORTKEYS", "TIMEOUT", 0, "DIALECT", 2]
    first.append("junk")
    assert q.args(b"b")[6] == b"b"
    assert "junk" not in q.args(b"b")


def test_knn_query_probe_loads_hits_only_when_nothing_else_does() -> None:
    bare = knn_query(3, with_metadata=False, probe=True).args(b"a")
    assert bare[-8:] == ["RETURN", 1, "__live", "WITHSORTKEYS", "TIMEOUT", 0, "DIALECT", 2]
    with_meta = knn_query(3, with_metadata=True, probe=True).args(b"a")
    assert with_meta[-8:] == ["RETURN", 1, "meta", "WITHSORTKEYS", "TIMEOUT", 0, "DIALECT", 2]


def test_knn_query_with_a_lone_negation_prefilter() -> None:
    not_str = render_filter(Not(Tag("genre", "x")), FIELDS)
    q = knn_query(2, filter_str=not_str, ef=None, with_vectors=False, with_metadata=True)
    assert q.query == "((-@genre:{x}))=>[KNN $k @vec $vec AS __dist]"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"depth": 0},
        {"depth": True},
        {"depth": 2.0},
        {"depth": "5"},
        {"ef": 0},
        {"ef": -5},
        {"ef": "10"},
        {"start": -1},
        {"depth": 10, "start": 10},
    ],
)
def test_knn_query_validates(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"depth": 10, "filter_str": None, "ef": None}
    args.update(kwargs)
    depth = args.pop("depth")
    with pytest.raises(InvalidInputError):
        knn_query(depth, **args)  # type: ignore[arg-type]


def test_range_query_of_an_hnsw_index_widens_its_candidates() -> None:
    q = range_query(0.25, filter_str=None, with_vectors=False, with_metadata=True, limit=5,
                    hnsw=True)  # fmt: skip
    assert q.query == ("@vec:[VECTOR_RANGE $r $vec]=>{$YIELD_DISTANCE_AS: __dist; $EPSILON: 0.5}")


def test_range_query() -> None:
    q = range_query(0.25, filter_str=None, with_vectors=False, with_metadata=True, limit=50)
    assert q.args(b"B") == [
        "@vec:[VECTOR_RANGE $r $vec]=>{$YIELD_DISTANCE_AS: __dist}",
        "PARAMS", 4, "r", "0.25", "vec", b"B",
        "SORTBY", "__dist", "ASC",
        "LIMIT", 0, 50,
        "RETURN", 1, "meta", "WITHSORTKEYS",
        "TIMEOUT", 0,
        "DIALECT", 2,
    ]  # fmt: skip
    qf = range_query(
        1, filter_str="@genre:{a}", with_vectors=True, with_metadata=False, limit=5, offset=5
    )
    assert qf.args(b"B") == [
        "@vec:[VECTOR_RANGE $r $vec]=>{$YIELD_DISTANCE_AS: __dist} (@genre:{a})",
        "PARAMS", 4, "r", "1.0", "vec", b"B",
        "SORTBY", "__dist", "ASC",
        "LIMIT", 5, 5,
        "RETURN", 1, "vec", "WITHSORTKEYS",
        "TIMEOUT", 0,
        "DIALECT", 2,
    ]  # fmt: skip


@pytest.mark.parametrize("radius", [-0.1, math.nan, math.inf, "1", None, True])
def test_range_query_validates_radius(radius: object) -> None:
    with pytest.raises(InvalidInputError, match="radius"):
        range_query(radius, limit=10)  # type: ignore[arg-type]


def test_range_query_validates_limit() -> None:
    with pytest.raises(InvalidInputError, match="limit"):
        range_query(0.5, filter_str=None, with_vectors=False, with_metadata=True, limit=0)


# ------------------------------------------------------------------ reply parsing

PREFIX = "rc:{items}:"


def test_parse_search_reply_fields_in_any_order_and_missing() -> None:
    reply = [
        7,
        b"rc:{items}:g1:d:a",
        b"#0.125",
        [b"meta", b"\x81\xa1x\x01", b"vec", b"\x00\x00\x80?"],
        b"rc:{items}:g27:d:b",
        b"#0.5",
        [b"vec", b"VV"],
        b"rc:{items}:g1:d:c\xc3\xa9",
        b"#1",
        [b"vec", b"W", b"meta", b"M"],
        b"rc:{items}:g1:d:gone",
        b"#1.25",
        None,
        b"rc:{items}:g1:d:d",
        b"#-1.5000000000000001e-07",
        [b"other", b"zzz"],
        b"rc:{items}:g1:d:e",
        b"#2",
        [],
    ]
    total, hits, vanished = parse_search_reply(reply, space_prefix=PREFIX)
    assert total == 7
    assert vanished == [b"rc:{items}:g1:d:gone"]
    assert hits == [
        RawHit("a", 0.125, b"\x81\xa1x\x01", b"\x00\x00\x80?"),
        RawHit("b", 0.5, None, b"VV"),
        RawHit("cé", 1.0, b"M", b"W"),
        RawHit("d", -1.5000000000000001e-07, None, None),
        RawHit("e", 2.0, None, None),  # a document without the fields asked for
    ]
    assert hits[0].key == "a" and hits[0].distance == 0.125


def test_parse_search_reply_without_content() -> None:
    assert parse_search_reply([0], space_prefix=PREFIX) == (0, [], [])
    one = [1, b"rc:{items}:g1:d:a", b"#0.32640576362609863"]
    assert parse_search_reply(one, space_prefix=PREFIX) == (
        1, [RawHit("a", 0.32640576362609863, None, None)], []
    )  # fmt: skip
    two = [5, *one[1:], b"rc:{items}:g2:d:b", b"#3.4028234663852886e+38"]
    total, hits, vanished = parse_search_reply(two, space_prefix=PREFIX)
    assert (total, vanished) == (5, [])
    assert hits[1] == RawHit("b", 3.4028234663852886e38, None, None)


def test_parse_search_reply_every_hit_vanished() -> None:
    reply = [2, b"rc:{items}:g1:d:a", b"#0.1", None, b"rc:{items}:g1:d:b", b"#0.2", None]
    total, hits, vanished = parse_search_reply(reply, space_prefix=PREFIX)
    assert (total, hits) == (2, [])
    assert vanished == [b"rc:{items}:g1:d:a", b"rc:{items}:g1:d:b"]


@pytest.mark.parametrize(
    "reply",
    [
        [],
        None,
        [b"x"],
        [1, b"rc:{items}:g1:d:a"],
        [1, b"rc:{items}:g1:d:a", b"#0.1", [b"meta", b"M"], b"rc:{items}:g1:d:b"],
        [1, b"rc:{other}:g1:d:a", b"#0.1"],
        [1, b"rc:{items}:g1:d:a", b"#nope"],
        [1, b"rc:{items}:g1:d:a", b"0.1"],  # not a sort key
        [1, b"rc:{items}:g1:d:a", None, []],  # no sort key
        [1, b"rc:{items}:g1:d:a", b"#0.1", b"x", b"#0.2"],
        [1, b"rc:{items}:g1:d:a", b"#0.1", 5],  # fields neither a list nor nil
        [1, b"rc:{items}:g1:d:\xff", b"#0.1"],
    ],
)
def test_parse_search_reply_refuses_malformed(reply: object) -> None:
    with pytest.raises(CorruptDataError):
        parse_search_reply(reply, space_prefix=PREFIX)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "flt",
    [
        {"year": math.inf},
        {"year": -math.inf},
        {"year": (math.inf, None)},
        {"year": (None, -math.inf)},
    ],
)
def test_numeric_filters_that_can_match_no_finite_value_are_refused(flt: object) -> None:
    with pytest.raises(InvalidInputError, match="finite"):
        render(flt)
    assert render({"year": (0, math.inf)}) == "@year:[0 +inf]"  # an open end spelled inf


def test_numeric_values_a_double_cannot_hold_are_refused() -> None:
    for value in (2**53 + 1, 232787661235170481, 10**400):
        with pytest.raises(InvalidInputError, match="tag field"):
            render({"year": value})
        with pytest.raises(InvalidInputError, match="tag field"):
            encode_field_value("numeric", value)
    assert encode_field_value("numeric", 2**60) == str(2**60)  # exactly a double
    assert encode_field_value("numeric", np.int64(7)) == "7"


def test_text_is_folded_for_all_of_unicode() -> None:
    assert fold_text("CAFÉ de Flore") == "café de flore"
    assert fold_text("Straße") == fold_text("STRASSE") == "strasse"
    assert fold_text("\uff21\uff22\uff23") == "abc"  # full-width letters (NFKC)
    assert render({"title": "CAFÉ"}) == '@title:"café"'
    assert encode_field_value("text", "Café") == "café"


def test_long_tags_and_words_are_refused() -> None:
    assert render({"genre": "x" * 4096}).startswith("@genre:{x")
    with pytest.raises(InvalidInputError, match="4,096 bytes"):
        render({"genre": "é" * 2049})  # 4,098 bytes
    with pytest.raises(InvalidInputError, match="128 bytes"):
        render({"title": "ok " + "y" * 129})
