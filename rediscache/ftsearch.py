"""Prepared ``FT.SEARCH`` commands (KNN and range) and the parser of their replies. No I/O.

:func:`knn_query` and :func:`range_query` prepare everything of an ``FT.SEARCH`` call except
the query vector, so the hot path only adds the blob; :func:`parse_search_reply` reads a
RESP2 reply. Filters are rendered by :mod:`rediscache.query`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, NamedTuple

from .errors import CorruptDataError, InvalidInputError
from .keys import DOC_MARKER, META_FIELD, VECTOR_FIELD
from .query import DISTANCE_FIELD, MAX_RESULTS

_DOC_MARKER_B = DOC_MARKER.encode()

__all__ = [
    "KnnQuery",
    "RangeQuery",
    "RawHit",
    "knn_query",
    "parse_search_reply",
    "range_query",
]


# --------------------------------------------------------------------------- vector queries


@dataclass(frozen=True, slots=True)
class _PreparedSearch:
    query: str
    head: tuple[str | int, ...]
    tail: tuple[str | int, ...]

    def args(self, blob: bytes) -> list[str | int | bytes]:
        """``FT.SEARCH`` arguments after the index name, with ``blob`` as the query vector."""
        return [*self.head, blob, *self.tail]


@dataclass(frozen=True, slots=True)
class KnnQuery(_PreparedSearch):
    """A prepared KNN search: ``query`` is the query string, :meth:`args` adds the vector."""


@dataclass(frozen=True, slots=True)
class RangeQuery(_PreparedSearch):
    """A prepared range search: ``query`` is the query string, :meth:`args` adds the vector."""


def _int_arg(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInputError(f"{name} must be an int in {low}..{high}, got {value!r}")
    return value


def _return_clause(with_metadata: bool, with_vectors: bool) -> tuple[str | int, ...]:
    names = [DISTANCE_FIELD]
    if with_metadata:
        names.append(META_FIELD)
    if with_vectors:
        names.append(VECTOR_FIELD)
    return ("RETURN", len(names), *names)


def _sorted_page(
    offset: int, count: int, with_metadata: bool, with_vectors: bool
) -> tuple[str | int, ...]:
    """The arguments after PARAMS: nearest first, one page, the fields to return, DIALECT 2."""
    return (
        "SORTBY",
        DISTANCE_FIELD,
        "ASC",
        "LIMIT",
        offset,
        count,
        *_return_clause(with_metadata, with_vectors),
        "DIALECT",
        2,
    )


def knn_query(
    k: int,
    *,
    filter_str: str | None = None,
    ef: int | None = None,
    with_vectors: bool = False,
    with_metadata: bool = True,
    offset: int = 0,
) -> KnnQuery:
    """Prepare ``FT.SEARCH`` for the ``k`` nearest neighbours after skipping ``offset``.

    Query: ``(<filter_str>)=>[KNN $k @vec $vec EF_RUNTIME $ef AS __dist]`` (``*=>[...]``
    without a filter, no ``EF_RUNTIME`` without ``ef``), then ``PARAMS``, ``SORTBY __dist
    ASC``, ``LIMIT offset k``, ``RETURN`` (``__dist``, ``meta`` if ``with_metadata``, ``vec``
    if ``with_vectors``) and ``DIALECT 2``. The KNN asks for ``offset + k`` neighbours so that
    the page after ``offset`` is complete; ``offset + k`` must stay within
    :data:`MAX_RESULTS`. Pass ``ef`` for HNSW spaces only: RediSearch rejects ``EF_RUNTIME``
    on a FLAT index.

    Raises:
        InvalidInputError: k, ef or offset out of range.
    """
    k = _int_arg(k, "k", 1, MAX_RESULTS)
    offset = _int_arg(offset, "offset", 0, MAX_RESULTS - k)
    ef_part = ""
    params: list[str | int] = ["k", k + offset]
    if ef is not None:
        ef = _int_arg(ef, "ef", 1, 2**31 - 1)
        ef_part = " EF_RUNTIME $ef"
    prefilter = f"({filter_str})" if filter_str else "*"
    query = f"{prefilter}=>[KNN $k @{VECTOR_FIELD} $vec{ef_part} AS {DISTANCE_FIELD}]"
    tail: list[str | int] = []
    if ef is not None:
        tail += ["ef", ef]
    nparams = 4 + (2 if ef is not None else 0)
    return KnnQuery(
        query=query,
        head=(query, "PARAMS", nparams, *params, "vec"),
        tail=(*tail, *_sorted_page(offset, k, with_metadata, with_vectors)),
    )


def range_query(
    radius: float,
    *,
    filter_str: str | None = None,
    with_vectors: bool = False,
    with_metadata: bool = True,
    limit: int = 100,
    offset: int = 0,
) -> RangeQuery:
    """Prepare ``FT.SEARCH`` for the embeddings within distance ``radius``, nearest first.

    Query: ``@vec:[VECTOR_RANGE $r $vec]=>{$YIELD_DISTANCE_AS: __dist}``, followed by
    ``(<filter_str>)`` when there is a filter (an intersection; ``=>{...}`` binds tighter than
    the implicit AND in the DIALECT 2 grammar, so the attribute stays on the range node).
    Then ``PARAMS 4 r <radius> vec <blob>``, ``SORTBY __dist ASC``, ``LIMIT offset limit``,
    ``RETURN`` as :func:`knn_query` and ``DIALECT 2``.

    Raises:
        InvalidInputError: radius not finite or negative; limit or offset out of range.
    """
    try:
        r = (
            float(radius)
            if isinstance(radius, numbers.Real) and not isinstance(radius, bool)
            else math.nan
        )
    except OverflowError:
        r = math.inf
    if not math.isfinite(r) or r < 0:
        raise InvalidInputError(f"radius must be a finite number >= 0, got {radius!r}")
    limit = _int_arg(limit, "limit", 1, MAX_RESULTS)
    offset = _int_arg(offset, "offset", 0, MAX_RESULTS - limit)
    query = f"@{VECTOR_FIELD}:[VECTOR_RANGE $r $vec]=>{{$YIELD_DISTANCE_AS: {DISTANCE_FIELD}}}"
    if filter_str:
        query += f" ({filter_str})"
    return RangeQuery(
        query=query,
        head=(query, "PARAMS", 4, "r", repr(r), "vec"),
        tail=_sorted_page(offset, limit, with_metadata, with_vectors),
    )


# --------------------------------------------------------------------------- replies


class RawHit(NamedTuple):
    """One FT.SEARCH result before decoding: user key, distance, raw meta and vector bytes."""

    key: str
    distance: float
    meta: bytes | None
    vec: bytes | None


_DIST_B = DISTANCE_FIELD.encode()
_META_B = META_FIELD.encode()
_VEC_B = VECTOR_FIELD.encode()


def parse_search_reply(reply: list[Any], *, space_prefix: str) -> tuple[int, list[RawHit]]:
    """Parse a RESP2 ``FT.SEARCH`` reply (redis-py, ``decode_responses=False``).

    The reply is ``[total, id, [field, value, ...], id, [...], ...]`` with bytes everywhere;
    fields may come in any order. Returns the server's total and the hits in reply order,
    keys with ``<space_prefix>g<generation>:d:`` removed (a live search through the alias
    may answer from a generation the client has not seen yet). A missing ``meta`` or ``vec``
    gives None. A hit without fields or without a distance is skipped: its document was
    deleted while the query ran.

    Raises:
        CorruptDataError: the reply does not have the FT.SEARCH shape, or a document id lies
            outside ``space_prefix`` or not under a generation.
    """
    try:
        total = int(reply[0])
        n = len(reply)
    except (TypeError, ValueError, IndexError) as exc:
        raise CorruptDataError(f"unexpected FT.SEARCH reply: {reply!r:.200}") from exc
    if n % 2 != 1:
        raise CorruptDataError(f"unexpected FT.SEARCH reply length {n}: expected ids with fields")
    prefix = space_prefix.encode()
    plen = len(prefix)
    hits: list[RawHit] = []
    for i in range(1, n, 2):
        doc_id = reply[i]
        values = reply[i + 1]
        if not values:
            continue
        dist: bytes | None = None
        meta: bytes | None = None
        vec: bytes | None = None
        for j in range(0, len(values) - 1, 2):
            name = values[j]
            if name == _DIST_B:
                dist = values[j + 1]
            elif name == _META_B:
                meta = values[j + 1]
            elif name == _VEC_B:
                vec = values[j + 1]
        if dist is None:
            continue
        start = doc_id.find(_DOC_MARKER_B, plen) if isinstance(doc_id, bytes) else -1
        if start < 0 or not doc_id.startswith(prefix) or doc_id[plen : plen + 1] != b"g":
            raise CorruptDataError(
                f"FT.SEARCH returned document {doc_id!r} outside the prefix {space_prefix!r}"
            )
        try:
            key = doc_id[start + len(_DOC_MARKER_B) :]
            hits.append(RawHit(key.decode("utf-8"), float(dist), meta, vec))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CorruptDataError(
                f"FT.SEARCH returned an undecodable hit {doc_id!r} (distance {dist!r})"
            ) from exc
    return total, hits
