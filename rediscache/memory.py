"""What each generation of a space holds, and what it costs in memory: the live space,
every version, every stage and the garbage not deleted yet (for ``Space.info()``,
``rediscache space info`` and ``rediscache stats``).

A generation's memory is its index (RediSearch's own figures from FT.INFO: the vector index,
the document and key tables, inverted indexes) plus its documents, estimated as the number
of documents times the mean ``MEMORY USAGE`` of up to :data:`SAMPLE` of them (Redis's own
figure for a hash: fields, values and overhead). Versions that share a generation with the
live space cost nothing of their own, and are shown on the live space's line.
"""

from __future__ import annotations

from typing import Any

from .config import GenerationInfo
from .effects import Flow, Pipeline
from .ftsearch import NO_TIMEOUT
from .generations import parse_versions
from .keys import STAGE_PREFIX, GenKeys, SpaceKeys
from .state import STATE_FIELD, SpaceState

__all__ = ["SAMPLE", "GenerationInfo", "generations_info", "index_bytes"]

#: Documents of a generation whose MEMORY USAGE is measured to estimate the rest.
SAMPLE = 8
_MB = 1024 * 1024
#: FT.INFO fields that count an index's memory, in MB.
_INDEX_MB_FIELDS = (
    "inverted_sz_mb",
    "vector_index_sz_mb",
    "offset_vectors_sz_mb",
    "doc_table_size_mb",
    "sortable_values_size_mb",
    "key_table_size_mb",
)


def _pairs(reply: Any) -> dict[str, Any]:
    if isinstance(reply, dict):
        return {(k.decode() if isinstance(k, bytes) else k): v for k, v in reply.items()}
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in zip(reply[::2], reply[1::2])}


def _num(info: dict[str, Any], name: str) -> float:
    value = info.get(name, 0)
    try:
        return float(value.decode() if isinstance(value, bytes) else value)
    except (TypeError, ValueError):
        return 0.0


def index_bytes(info: dict[str, Any]) -> int:
    """Bytes of an index, from its FT.INFO reply (as a dict)."""
    return int(sum(_num(info, name) for name in _INDEX_MB_FIELDS) * _MB)


def _roles(keys: SpaceKeys, raw_config: dict[bytes, Any], raw_versions: Any,
           garbage: set[bytes]) -> dict[int, list[str]]:  # fmt: skip
    roles: dict[int, list[str]] = {}
    state = SpaceState.parse(raw_config.get(STATE_FIELD.encode()))
    roles.setdefault(state.live, []).append("live")
    for version, gen in parse_versions(raw_versions, keys.name).values():
        roles.setdefault(gen, []).append(f"version {version}")
    for field, value in raw_config.items():
        if field.startswith(STAGE_PREFIX.encode()):
            label = field.decode()[len(STAGE_PREFIX) :]
            roles.setdefault(int(value.split(b" ")[0]), []).append(f"stage {label!r}")
    for g in garbage:
        roles.setdefault(int(g), []).append("garbage")
    return roles


def generations_info(keys: SpaceKeys) -> Flow[list[GenerationInfo]]:
    """Every generation of the space ``keys`` with what uses it and what it costs, live
    first. Three round trips; FT.INFO of each index blocks the server a few ms per 20k
    vectors (measured: 3.2 ms on a 20k HNSW index)."""
    raw_config, raw_versions, garbage = yield Pipeline(
        [("HGETALL", keys.config), ("HGETALL", keys.versions), ("SMEMBERS", keys.garbage)]
    )
    roles = _roles(keys, raw_config, raw_versions, set(garbage))
    gens = sorted(roles, key=lambda g: (roles[g][0] != "live", g))
    probes: list[tuple[Any, ...]] = []
    for g in gens:
        gk = keys.gen(g)
        probes += [
            ("FT.INFO", gk.index),
            ("FT.INFO", gk.listing),
            ("FT.AGGREGATE", gk.listing, "*", "LOAD", 1, "@__key", "LIMIT", 0, SAMPLE, *NO_TIMEOUT),
            ("FT.AGGREGATE", gk.index, "*", "LOAD", 1, "@__key", "LIMIT", 0, SAMPLE, *NO_TIMEOUT),
        ]
    replies = yield Pipeline(probes, raise_on_error=False)
    samples: list[list[bytes]] = []
    for i in range(len(gens)):
        listed, indexed = replies[4 * i + 2], replies[4 * i + 3]
        rows = indexed if not isinstance(indexed, Exception) else listed
        keys_of = [] if isinstance(rows, Exception) else [r[1] for r in rows[1:] if len(r) >= 2]
        samples.append(keys_of)
    usage = yield Pipeline(
        [("MEMORY", "USAGE", k, "SAMPLES", 0) for keys_of in samples for k in keys_of],
        raise_on_error=False,
    )
    out: list[GenerationInfo] = []
    at = 0
    for i, g in enumerate(gens):
        gen: GenKeys = keys.gen(g)
        count = int(raw_config.get(gen.count_field.encode(), b"0") or 0)
        sizes = [u for u in usage[at : at + len(samples[i])] if isinstance(u, int)]
        at += len(samples[i])
        per_doc = sum(sizes) / len(sizes) if sizes else 0.0
        index_reply, listing_reply = replies[4 * i], replies[4 * i + 1]
        total = 0
        indexed = 0.0
        if not isinstance(index_reply, Exception):
            info = _pairs(index_reply)
            total += index_bytes(info)
            indexed = _num(info, "percent_indexed")
        if not isinstance(listing_reply, Exception):
            total += index_bytes(_pairs(listing_reply))
        out.append(GenerationInfo(g, tuple(roles[g]), count, total, int(count * per_doc), indexed))
    return out
