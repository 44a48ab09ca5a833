"""Pure builders and parsers for the RediSearch side of a space; no I/O happens here.

What lives here:

* **Field schema**: :data:`FieldType` and :func:`validate_fields` for the metadata fields a
  space indexes, :func:`schema_args` for ``FT.CREATE ... SCHEMA``, and
  :func:`encode_field_value` / :func:`encode_tag_value` for writing indexed hash fields.
* **Filters**: :class:`Tag`, :class:`Num`, :class:`Text` combined with :class:`And`,
  :class:`Or`, :class:`Not` (or ``&``, ``|``, ``~``), a dict shorthand read by
  :func:`parse_filter`, and :func:`render_filter`, which turns a filter into DIALECT 2 query
  syntax. Every user value is escaped: a value always matches literally and can never change
  the shape of the query.
* Vector queries and reply parsing live in :mod:`rediscache.ftsearch`.

Matching semantics:

* Tags are indexed ``CASESENSITIVE`` (:data:`TAG_CASESENSITIVE`), so ``{"genre": "Drama"}``
  does not match ``"drama"``. RediSearch trims spaces around tags when indexing, so tag
  values with leading or trailing whitespace are refused on both the write and the query
  side rather than silently never matching.
* Multi-valued tags are stored joined by :data:`TAG_SEPARATOR` (``"\\x1f"``), a character
  nobody types, so a tag such as ``"rock, pop"`` is one tag.
* Text filters match a phrase word by word, in order (RediSearch exact phrase). Words are the
  phrase split on ASCII punctuation and whitespace, which is how RediSearch tokenizes the
  indexed text. Matching is case-insensitive for all of Unicode: RediSearch 2.10 folds case
  for ASCII only, so the indexed copy of a text field holds :func:`fold_text` of the value
  (the original stays in the metadata) and phrases are folded the same way ("CAFÉ" matches
  "Café de Flore", "STRASSE" matches "Straße"). Spaces are created with ``STOPWORDS 0``, so
  stop words are indexed too and a phrase such as "the who" matches.
* Numeric fields are doubles in the index: a value the index cannot hold exactly (an
  integer beyond 2**53 such as an 18-digit id) is refused, on writes and in filters, rather
  than matched approximately; ids belong in tag fields.
* Every str must be valid Unicode (no lone surrogates), since Redis stores UTF-8.
"""

from __future__ import annotations

import math
import numbers
import re
import types
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, cast

from .codec import check_text
from .errors import InvalidInputError
from .keys import COUNT_FIELD, META_FIELD, VECTOR_FIELD

__all__ = [
    "DEFAULT_HNSW",
    "DISTANCE_FIELD",
    "FIELD_TYPES",
    "MAX_RESULTS",
    "MAX_TAG_BYTES",
    "MAX_WORD_BYTES",
    "PROBE_FIELD",
    "RESERVED_FIELDS",
    "TAG_CASESENSITIVE",
    "TAG_SEPARATOR",
    "And",
    "FieldType",
    "Filter",
    "FilterLike",
    "Not",
    "Num",
    "Or",
    "Tag",
    "Text",
    "encode_field_value",
    "encode_tag_value",
    "fold_text",
    "hnsw_params",
    "parse_filter",
    "render_filter",
    "schema_args",
    "validate_fields",
]

# --------------------------------------------------------------------------- field schema

#: Type of an indexed metadata field.
FieldType = Literal["tag", "numeric", "text"]
#: The accepted field types.
FIELD_TYPES: tuple[FieldType, ...] = ("tag", "numeric", "text")
#: Names a metadata field cannot take: the hash fields and result aliases rediscache uses.
#: Names starting with two underscores are reserved as well.
RESERVED_FIELDS: frozenset[str] = frozenset(
    {VECTOR_FIELD, META_FIELD, COUNT_FIELD, "__dist", "__key"}
)
#: Alias under which FT.SEARCH returns the vector distance.
DISTANCE_FIELD = "__dist"
#: The deepest a search may reach: k (or within's limit) plus offset. RediSearch's own cap
#: (MAXSEARCHRESULTS) is 1,000,000 by default; queries may reach past this by the size of
#: ``exclude`` and by retries after vanished hits.
MAX_RESULTS = 10_000
#: A field no document has: returning it makes RediSearch load each hit's document, so a hit
#: whose document expired comes back without fields (see ``ftsearch.search_rounds``).
PROBE_FIELD = "__live"
#: Separator of the TAG fields; values are stored joined by it.
TAG_SEPARATOR = "\x1f"
#: Tag fields are created CASESENSITIVE, so a tag filter matches the stored value exactly.
TAG_CASESENSITIVE = True
#: The longest tag RediSearch 2.10 matches (a longer one is indexed but never found), and
#: the longest word it indexes in a text field (measured; see docs/core.md).
MAX_TAG_BYTES = 4096
MAX_WORD_BYTES = 128

_FIELD_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def validate_fields(fields: Mapping[str, str] | None) -> dict[str, FieldType]:
    """Check the indexed metadata fields of a space; return them with lowercase types.

    Names must match ``[A-Za-z_][A-Za-z0-9_]{0,63}``, must not be reserved
    (:data:`RESERVED_FIELDS`, compared case-insensitively) and must not start with ``__``.
    Types are ``"tag"``, ``"numeric"`` or ``"text"`` in any case. ``None`` means no fields.

    Raises:
        InvalidInputError: a bad name or type.
    """
    if fields is None:
        return {}
    if not isinstance(fields, Mapping):
        raise InvalidInputError(
            f"fields must be a mapping of name to type, got {type(fields).__name__}"
        )
    out: dict[str, FieldType] = {}
    for name, ftype in fields.items():
        if not isinstance(name, str) or not _FIELD_NAME_RE.fullmatch(name):
            raise InvalidInputError(
                f"invalid field name {name!r}: use 1-64 characters from A-Z a-z 0-9 _, "
                "not starting with a digit"
            )
        if name.lower() in RESERVED_FIELDS or name.startswith("__"):
            raise InvalidInputError(
                f"field name {name!r} is reserved ({', '.join(sorted(RESERVED_FIELDS))} "
                "and names starting with '__'); pick another name"
            )
        lowered = ftype.lower() if isinstance(ftype, str) else None
        if lowered not in FIELD_TYPES:
            raise InvalidInputError(
                f"invalid type {ftype!r} for field {name!r}: use one of {', '.join(FIELD_TYPES)}"
            )
        out[name] = lowered
    return out


# --------------------------------------------------------------------------- escaping

# Every ASCII character that is neither alphanumeric nor "_" is a query operator or a
# separator for the DIALECT 2 lexer; a backslash before it makes it part of the term.
# "_" is a plain term character and non-ASCII characters are always term characters, so
# both pass as they are. ASCII control characters cannot be escaped at all (the lexer
# skips them), which is why tag values refuse them.
_ESCAPES: dict[int, str] = {
    c: "\\" + chr(c) for c in range(0x20, 0x7F) if not chr(c).isalnum() and chr(c) != "_"
}
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# Text words: runs of characters that are not ASCII punctuation, whitespace or controls.
_TEXT_SPLIT_RE = re.compile(r"[\x00-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]+")


def _escape(value: str) -> str:
    return value.translate(_ESCAPES)


def _check_tag(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(
            f"{where}: tag values must be str, got {type(value).__name__} {value!r} "
            "(numbers are not converted; store and filter them as str, or use a numeric field)"
        )
    if not value:
        raise InvalidInputError(f"{where}: empty tag value (RediSearch cannot match empty tags)")
    if not value.isascii():
        check_text(value, where)
    if _CONTROL_RE.search(value):
        raise InvalidInputError(
            f"{where}: tag value {value!r} contains a control character "
            "(including the tag separator \\x1f); remove it"
        )
    if value[0] == " " or value[-1] == " ":
        raise InvalidInputError(
            f"{where}: tag value {value!r} has leading or trailing spaces, which RediSearch "
            "strips when indexing; strip them"
        )
    if len(value) > MAX_TAG_BYTES // 4 and len(value.encode()) > MAX_TAG_BYTES:
        raise InvalidInputError(
            f"{where}: tag value of {len(value.encode()):,} bytes: RediSearch matches tags of "
            f"at most {MAX_TAG_BYTES:,} bytes (a longer one is stored but never found)"
        )
    return value


# --------------------------------------------------------------------------- filters


class Filter:
    """Base of all filters. Combine with ``a & b`` (and), ``a | b`` (or), ``~a`` (not)."""

    __slots__ = ()

    def __and__(self, other: Filter) -> And:
        if not isinstance(other, Filter):
            return NotImplemented
        left = self.filters if isinstance(self, And) else (self,)
        right = other.filters if isinstance(other, And) else (other,)
        return And(*left, *right)

    def __or__(self, other: Filter) -> Or:
        if not isinstance(other, Filter):
            return NotImplemented
        left = self.filters if isinstance(self, Or) else (self,)
        right = other.filters if isinstance(other, Or) else (other,)
        return Or(*left, *right)

    def __invert__(self) -> Filter:
        if isinstance(self, Not):
            return self.filter
        return Not(self)


@dataclass(frozen=True, init=False, slots=True)
class Tag(Filter):
    """Tag ``field`` equals any of ``values`` (one str or a sequence of str).

    Values must be non-empty str without control characters or surrounding spaces; numbers
    are not converted (checked when the filter is parsed or rendered). Raises
    :class:`InvalidInputError` at once if ``values`` is neither a str nor a sequence.
    """

    field: str
    values: tuple[str, ...]

    def __init__(self, field: str, values: str | Sequence[str]) -> None:
        object.__setattr__(self, "field", field)
        object.__setattr__(self, "values", _as_tuple(values, f"Tag({field!r})"))


@dataclass(frozen=True, slots=True)
class Num(Filter):
    """Numeric ``field`` in the inclusive range ``[low, high]``; None leaves an end open."""

    field: str
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True, slots=True)
class Text(Filter):
    """Text ``field`` contains the words of ``phrase``, adjacent and in order."""

    field: str
    phrase: str


@dataclass(frozen=True, init=False, slots=True)
class And(Filter):
    """All of ``filters`` match."""

    filters: tuple[Filter, ...]

    def __init__(self, *filters: Filter) -> None:
        object.__setattr__(self, "filters", filters)


@dataclass(frozen=True, init=False, slots=True)
class Or(Filter):
    """Any of ``filters`` matches."""

    filters: tuple[Filter, ...]

    def __init__(self, *filters: Filter) -> None:
        object.__setattr__(self, "filters", filters)


@dataclass(frozen=True, slots=True)
class Not(Filter):
    """``filter`` does not match."""

    filter: Filter


#: What search methods accept as a filter: a filter object, the dict form, or None.
FilterLike: TypeAlias = Filter | Mapping[str, object] | None


def _as_tuple(values: object, where: str) -> tuple[Any, ...]:
    if isinstance(values, str):
        return (values,)
    if isinstance(values, (bytes, bytearray, Mapping)) or not isinstance(values, Iterable):
        raise InvalidInputError(
            f"{where}: expected a str or a list of str, got {type(values).__name__}"
        )
    return tuple(values)


def parse_filter(filter: FilterLike, fields: Mapping[str, FieldType]) -> Filter | None:
    """Turn a filter object or its dict form into a checked :class:`Filter` (None if empty).

    Dict form, one entry per field, entries ANDed:

    * tag field: ``"drama"`` (equals) or ``["drama", "comedy"]`` (any of);
    * numeric field: ``1999`` (equals) or ``(1990, 2000)`` (inclusive, None for an open end);
    * text field: ``"new york"`` (phrase).

    Filter objects are checked the same way. ``None`` and ``{}`` mean no filter.

    Raises:
        InvalidInputError: unknown field, a value of the wrong kind for the field's type,
            NaN bounds, ``low > high``, empty value lists, bad tag values, empty phrases.
    """
    if filter is None:
        return None
    if isinstance(filter, Filter):
        _render(filter, fields)
        return filter
    if not isinstance(filter, Mapping):
        raise InvalidInputError(
            f"filter must be a rediscache.query filter, a dict or None, got {type(filter).__name__}"
        )
    parts: list[Filter] = []
    for name, value in filter.items():
        ftype = _field_type(name, fields)
        parts.append(_from_dict_entry(name, ftype, value))
    if not parts:
        return None
    result = parts[0] if len(parts) == 1 else And(*parts)
    _render(result, fields)
    return result


def _from_dict_entry(name: str, ftype: FieldType, value: object) -> Filter:
    where = f"filter on {ftype} field {name!r}"
    if ftype == "tag":
        if isinstance(value, (str, list, tuple)):
            return Tag(name, value)
        raise InvalidInputError(
            f"{where}: expected a str or a list of str, got {type(value).__name__} {value!r}"
        )
    if ftype == "numeric":
        if _is_number(value):
            return Num(name, cast(float, value), cast(float, value))
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return Num(name, value[0], value[1])
        raise InvalidInputError(
            f"{where}: expected a number or a (low, high) pair with None for an open end, "
            f"got {value!r}"
        )
    if isinstance(value, str):
        return Text(name, value)
    raise InvalidInputError(f"{where}: expected a str phrase, got {type(value).__name__}")


def render_filter(f: Filter, fields: Mapping[str, FieldType]) -> str:
    """The DIALECT 2 query fragment of ``f``, checked against ``fields``.

    Examples: ``@genre:{drama}``, ``@genre:{a | b}``, ``@year:[1990 2000]``,
    ``@title:"new york"``, ``(A B)`` for And, ``(A | B)`` for Or, ``(-A)`` for Not. And, Or
    and Not are always parenthesized, so any rendering (a lone Not included) is a valid
    whole query and a valid KNN prefilter.

    Raises:
        InvalidInputError: as :func:`parse_filter`.
    """
    return _render(f, fields)


def _field_type(name: object, fields: Mapping[str, FieldType]) -> FieldType:
    if not isinstance(name, str) or name not in fields:
        known = ", ".join(sorted(fields)) if fields else "none (this space indexes no fields)"
        raise InvalidInputError(f"unknown filter field {name!r}; indexed fields: {known}")
    return fields[name]


#: Deepest nesting of And / Or / Not accepted (RediSearch's query parser overflows its stack
#: at about 200 levels; no real filter comes near this).
MAX_FILTER_DEPTH = 32


def _render(f: Filter, fields: Mapping[str, FieldType], depth: int = 0) -> str:
    if depth > MAX_FILTER_DEPTH:
        raise InvalidInputError(
            f"filter nested deeper than {MAX_FILTER_DEPTH} levels of And / Or / Not; flatten it "
            "(And and Or take any number of filters)"
        )
    if isinstance(f, Tag):
        where = f"filter on tag field {f.field!r}"
        _expect(f.field, "tag", fields, "Tag")
        if not f.values:
            raise InvalidInputError(f"{where}: empty list of values")
        terms = " | ".join(_escape(_check_tag(v, where)) for v in f.values)
        return f"@{f.field}:{{{terms}}}"
    if isinstance(f, Num):
        _expect(f.field, "numeric", fields, "Num")
        low = _bound(f.low, -math.inf, f.field)
        high = _bound(f.high, math.inf, f.field)
        if low > high:
            raise InvalidInputError(
                f"filter on numeric field {f.field!r}: low {f.low!r} is greater than "
                f"high {f.high!r}"
            )
        if low == math.inf or high == -math.inf:
            # numeric fields hold finite values only: such a range could never match
            raise InvalidInputError(
                f"filter on numeric field {f.field!r}: [{f.low!r}, {f.high!r}] holds no finite "
                "value, and numeric fields hold finite values only (use None for an open end)"
            )
        return f"@{f.field}:[{_num(low)} {_num(high)}]"
    if isinstance(f, Text):
        _expect(f.field, "text", fields, "Text")
        if not isinstance(f.phrase, str):
            raise InvalidInputError(
                f"filter on text field {f.field!r}: phrase must be str, "
                f"got {type(f.phrase).__name__}"
            )
        phrase = fold_text(check_text(f.phrase, f"filter on text field {f.field!r}"))
        plain = [w for w in _TEXT_SPLIT_RE.split(phrase) if w]
        for word in plain:
            if len(word.encode()) > MAX_WORD_BYTES:
                raise InvalidInputError(
                    f"filter on text field {f.field!r}: the word {word[:20]!r}... has "
                    f"{len(word.encode())} bytes; RediSearch does not index words longer than "
                    f"{MAX_WORD_BYTES} bytes, so it can never match (use a tag field)"
                )
        words = [_escape(w) for w in plain]
        if not words:
            raise InvalidInputError(
                f"filter on text field {f.field!r}: phrase {f.phrase!r} has no words"
            )
        return f'@{f.field}:"{" ".join(words)}"'
    if isinstance(f, (And, Or)):
        kind = type(f).__name__
        if not f.filters:
            raise InvalidInputError(f"{kind}() needs at least one filter")
        parts = [_render(_check_filter(c, kind), fields, depth + 1) for c in f.filters]
        if len(parts) == 1:
            return parts[0]
        return "(" + (" " if kind == "And" else " | ").join(parts) + ")"
    if isinstance(f, Not):
        return f"(-{_render(_check_filter(f.filter, 'Not'), fields, depth + 1)})"
    raise InvalidInputError(
        f"unsupported filter object {type(f).__name__}: use Tag, Num, Text, And, Or or Not"
    )


def _check_filter(f: object, parent: str) -> Filter:
    if not isinstance(f, Filter):
        raise InvalidInputError(f"{parent}() takes filter objects, got {type(f).__name__} {f!r}")
    return f


def _expect(name: str, want: FieldType, fields: Mapping[str, FieldType], kind: str) -> None:
    have = _field_type(name, fields)
    if have != want:
        hint = {"tag": "Tag", "numeric": "Num", "text": "Text"}[have]
        raise InvalidInputError(
            f"{kind} filter on field {name!r}, which is a {have} field; use {hint}"
        )


#: The largest integer from which every smaller one is exactly a double.
_EXACT_INT = 2**53


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _bound(value: object, default: float, field: str) -> float:
    if value is None:
        return default
    if not _is_number(value):
        raise InvalidInputError(
            f"filter on numeric field {field!r}: bounds must be numbers or None, "
            f"got {type(value).__name__} {value!r}"
        )
    out = exact_double(value, f"filter on numeric field {field!r}: bound")
    if math.isnan(out):
        raise InvalidInputError(f"filter on numeric field {field!r}: bound is NaN")
    return out


def exact_double(value: object, where: str) -> float:
    """``value`` (a real number, bool excluded, checked by the caller) as the double the
    index holds. Raises InvalidInputError when that double is not exactly ``value`` (an
    integer beyond 2**53, a Fraction such as 1/3) or does not exist (beyond the double range):
    a numeric field would then match neighbouring values too."""
    try:
        out = float(cast(float, value))
    except OverflowError:
        out = math.inf
    if isinstance(value, float):  # a double already (NaN and inf are the caller's business)
        return out
    if math.isinf(out) or out != value:
        raise InvalidInputError(
            f"{where} {value!r} cannot be held exactly by a numeric field (a double: integers "
            "are exact up to 2**53 = 9007199254740992); store ids in a tag field instead"
        )
    return out


def _num(x: float) -> str:
    if math.isinf(x):
        return "+inf" if x > 0 else "-inf"
    # The query lexer reads exponents without a sign ("1e20", "1e-05"), not "1e+20".
    text = repr(x).replace("e+", "e")
    return text[:-2] if text.endswith(".0") else text


# --------------------------------------------------------------------------- schema

_METRICS = {"cosine": "COSINE", "l2": "L2", "ip": "IP"}
_ALGORITHMS = {"hnsw": "HNSW", "flat": "FLAT"}
_DTYPES = {"float32": "FLOAT32", "float64": "FLOAT64", "float16": "FLOAT16", "bfloat16": "BFLOAT16"}

#: HNSW parameters used unless overridden. RediSearch's own EF_RUNTIME default (10) gave a
#: recall of 0.82 on our data; 100 gives 0.99.
DEFAULT_HNSW: Mapping[str, int] = types.MappingProxyType(
    {"M": 16, "EF_CONSTRUCTION": 200, "EF_RUNTIME": 100}
)


#: Largest HNSW parameters accepted: RediSearch parses them as 32-bit and allocates M
#: neighbours per node per layer, so an M beyond a few thousand only exhausts memory.
_HNSW_MAX = {"M": 4096, "EF_CONSTRUCTION": 2**31 - 1, "EF_RUNTIME": 2**31 - 1}


def hnsw_params(hnsw: Mapping[str, int] | None) -> dict[str, int]:
    """:data:`DEFAULT_HNSW` overridden by ``hnsw`` (keys M, ef_construction, ef_runtime in
    any case), with uppercase keys in the order M, EF_CONSTRUCTION, EF_RUNTIME.

    Raises:
        InvalidInputError: unknown keys or values that are not positive integers.
    """
    out = dict(DEFAULT_HNSW)
    if hnsw is None:
        return out
    if not isinstance(hnsw, Mapping):
        raise InvalidInputError(f"hnsw must be a mapping, got {type(hnsw).__name__}")
    for key, value in hnsw.items():
        upper = key.upper() if isinstance(key, str) else None
        if upper not in out:
            raise InvalidInputError(
                f"unknown hnsw parameter {key!r}: use M, ef_construction or ef_runtime"
            )
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Integral)
            or not 1 <= int(value) <= _HNSW_MAX[upper]
        ):
            raise InvalidInputError(
                f"hnsw parameter {key!r} must be an int in 1..{_HNSW_MAX[upper]:,}, got {value!r}"
            )
        out[upper] = int(value)
    return out


def schema_args(
    dim: int,
    *,
    metric: str,
    algorithm: str,
    dtype: str,
    fields: Mapping[str, FieldType],
    hnsw: Mapping[str, int] | None = None,
) -> list[str | int]:
    """The ``FT.CREATE`` arguments after ``SCHEMA``: the vector field, then each field.

    ``vec VECTOR HNSW 12 TYPE FLOAT32 DIM d DISTANCE_METRIC COSINE M 16 EF_CONSTRUCTION 200
    EF_RUNTIME 100`` (FLAT: no M/EF_*), then ``name TAG SEPARATOR \\x1f CASESENSITIVE``,
    ``name NUMERIC`` or ``name TEXT`` in the order of ``fields``.

    Raises:
        InvalidInputError: bad dim, metric, algorithm, dtype, fields, or hnsw parameters
            (including any given for ``algorithm="flat"``).
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise InvalidInputError(f"dim must be a positive int, got {dim!r}")
    metric_arg = _choice(metric, _METRICS, "metric")
    algorithm_arg = _choice(algorithm, _ALGORITHMS, "algorithm")
    dtype_arg = _choice(dtype, _DTYPES, "dtype")
    attrs: list[str | int] = ["TYPE", dtype_arg, "DIM", dim, "DISTANCE_METRIC", metric_arg]
    if algorithm_arg == "HNSW":
        for key, value in hnsw_params(hnsw).items():
            attrs += [key, value]
    elif hnsw:
        raise InvalidInputError("hnsw parameters only apply to algorithm 'hnsw', not 'flat'")
    args: list[str | int] = [VECTOR_FIELD, "VECTOR", algorithm_arg, len(attrs), *attrs]
    for name, ftype in validate_fields(fields).items():
        if ftype == "tag":
            args += [name, "TAG", "SEPARATOR", TAG_SEPARATOR]
            if TAG_CASESENSITIVE:
                args.append("CASESENSITIVE")
        else:
            args += [name, ftype.upper()]
    return args


def _choice(value: object, allowed: Mapping[str, str], what: str) -> str:
    key = value.lower() if isinstance(value, str) else None
    if key not in allowed:
        raise InvalidInputError(f"unknown {what} {value!r}: use one of {', '.join(allowed)}")
    return allowed[cast(str, key)]


def encode_tag_value(value: str | Sequence[str]) -> str:
    """The hash field string of a tag value: one str, or a list of str joined by
    :data:`TAG_SEPARATOR`. An empty list gives ``""`` (the document has no tag).

    Raises:
        InvalidInputError: values that are not str, are empty, contain control characters
            (the separator among them) or have surrounding spaces.
    """
    if isinstance(value, str):
        return _check_tag(value, "tag metadata")
    items = _as_tuple(value, "tag metadata")
    return TAG_SEPARATOR.join(_check_tag(v, "tag metadata") for v in items)


def fold_text(text: str) -> str:
    """The form of a text field's value (and of a text filter's phrase) that the index sees:
    compatibility-normalized (NFKC) and case-folded for all of Unicode, so that matching is
    case-insensitive beyond ASCII ("CAFÉ" and "café", "Straße" and "STRASSE")."""
    if text.isascii():
        return text.lower()
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFD", text).casefold())


def encode_field_value(ftype: FieldType, value: object) -> str:
    """The hash field string of an indexed metadata value.

    numeric: a finite int or float (numpy scalars too; bool refused) that a double holds
    exactly, written with ``repr``; text: :func:`fold_text` of a str (the original stays in
    the metadata); tag: see :func:`encode_tag_value`.

    Raises:
        InvalidInputError: a value of the wrong type for ``ftype``, or an unknown ``ftype``.
    """
    if ftype == "numeric":
        kind = type(value)
        if kind is int and -_EXACT_INT <= value <= _EXACT_INT:  # type: ignore[operator]
            return repr(value)  # the common cases first: a plain int a double holds exactly,
        if kind is float and math.isfinite(value):  # type: ignore[arg-type]
            return repr(value)  # or a finite plain float (no ABC checks: ~1 us per value)
        if not _is_number(value):
            raise InvalidInputError(
                f"numeric field value must be an int or float, got {type(value).__name__} {value!r}"
            )
        number = exact_double(value, "numeric field value")
        if not math.isfinite(number):
            raise InvalidInputError(f"numeric field value must be finite, got {value!r}")
        if isinstance(value, numbers.Integral):
            return repr(int(value))
        return repr(number)
    if ftype == "text":
        if not isinstance(value, str):
            raise InvalidInputError(
                f"text field value must be str, got {type(value).__name__} {value!r}"
            )
        return fold_text(check_text(value, "text field value"))
    if ftype == "tag":
        if type(value) is str:
            return _check_tag(value, "tag metadata")
        if not isinstance(value, (str, list, tuple)):
            raise InvalidInputError(
                f"tag field value must be a str or a list of str, got {type(value).__name__}"
            )
        return encode_tag_value(value)
    raise InvalidInputError(f"unknown field type {ftype!r}: use one of {', '.join(FIELD_TYPES)}")
