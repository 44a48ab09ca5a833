"""The schema of a space (:class:`SpaceConfig`, stored in its config hash), what
:meth:`rediscache.Space.info` reports (:class:`SpaceInfo`), and the checks of a new
schema (:func:`build_config`). Pure."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import query
from .codec import DTYPES, check_flag, check_int, ttl_to_ms
from .errors import CorruptDataError, InvalidInputError
from .keys import validate_space_name

__all__ = [
    "LAYOUT",
    "GarbageInfo",
    "GenerationInfo",
    "SpaceConfig",
    "SpaceInfo",
    "build_config",
]

#: Layout of a space's keys and fields (see rediscache.keys); spaces of another layout are
#: refused. 3: text fields are indexed case-folded (query.fold_text); expiring spaces.
LAYOUT = "3"

_METRICS = ("cosine", "l2", "ip")
_ALGORITHMS = ("hnsw", "flat")


@dataclass(frozen=True)
class SpaceConfig:
    """The schema of a space, stored in its ``cfg`` hash."""

    name: str
    dim: int
    metric: str
    algorithm: str
    dtype: str
    fields: dict[str, query.FieldType]
    hnsw: dict[str, int]
    created_at: float = 0.0
    #: Default time to live of embeddings written to the space, in seconds (None: forever).
    ttl: float | None = None
    #: Whether entries may expire (a default ttl, per-write ttls, refresh_ttl). Searches of
    #: an expiring space check each hit against expiry (docs/serving.md); others need not.
    expiring: bool = False
    #: The partitions of a partitioned space, by name (``items#0``...; rediscache.keys):
    #: empty for a space of one partition (every space not created with ``partitions=``).
    partitions: tuple[str, ...] = ()

    def schema(self) -> tuple[Any, ...]:
        """What must match for two configs to describe the same space."""
        return (
            self.dim,
            self.metric,
            self.algorithm,
            self.dtype,
            tuple(sorted(self.fields.items())),
            tuple(sorted(self.hnsw.items())),
            self.ttl,
            self.expiring,
            len(self.partitions) or 1,
        )

    def describe(self) -> str:
        """A short human-readable summary of the schema."""
        fields = ", ".join(f"{k}:{v}" for k, v in sorted(self.fields.items())) or "none"
        ttl = f" ttl={self.ttl:g}s" if self.ttl else (" expiring" if self.expiring else "")
        parts = f" partitions={len(self.partitions)}" if self.partitions else ""
        return (
            f"dim={self.dim} metric={self.metric} algorithm={self.algorithm} "
            f"dtype={self.dtype} fields={fields}{ttl}{parts}"
        )

    def schema_args(self) -> list[str | int]:
        """FT.CREATE arguments after ``SCHEMA``."""
        return query.schema_args(
            self.dim,
            metric=self.metric,
            algorithm=self.algorithm,
            dtype=self.dtype,
            fields=self.fields,
            hnsw=self.hnsw or None,
        )

    def to_hash(self) -> dict[str, str]:
        """The config as the fields of its Redis hash."""
        parts = {"partitions": json.dumps(list(self.partitions))} if self.partitions else {}
        return {
            **parts,
            "dim": str(self.dim),
            "metric": self.metric,
            "algorithm": self.algorithm,
            "dtype": self.dtype,
            "fields": json.dumps(self.fields, sort_keys=True),
            "hnsw": json.dumps(self.hnsw, sort_keys=True),
            "created_at": repr(self.created_at),
            "ttl": "" if self.ttl is None else repr(self.ttl),
            "expiring": "1" if self.expiring else "0",
            "layout": LAYOUT,
        }

    @classmethod
    def from_hash(cls, name: str, raw: Mapping[bytes, bytes]) -> SpaceConfig:
        """Parse the config hash written by :meth:`to_hash`."""
        d = {k.decode(): v.decode() for k, v in raw.items()}
        if d.get("layout") != LAYOUT:
            raise CorruptDataError(
                f"space {name!r} has key layout {d.get('layout')!r}; this rediscache reads "
                f"layout {LAYOUT}: export it with the rediscache that wrote it "
                "(`rediscache export`) and import it into a new space"
            )
        return cls(
            name=name,
            dim=int(d["dim"]),
            metric=d["metric"],
            algorithm=d["algorithm"],
            dtype=d["dtype"],
            fields=json.loads(d["fields"]),
            hnsw=json.loads(d["hnsw"]),
            created_at=float(d.get("created_at", 0.0)),
            ttl=float(d["ttl"]) if d.get("ttl") else None,
            expiring=d.get("expiring") == "1",
            partitions=tuple(json.loads(d["partitions"])) if d.get("partitions") else (),
        )


@dataclass(frozen=True)
class GenerationInfo:
    """One generation of a space: ``gen`` (its number), ``roles`` (``"live"``, ``"version
    v3 (label)"``, ``"stage 'x'"``, ``"garbage"``: what uses it; several versions may share
    one), ``count`` (documents), ``index_bytes`` (its indexes, from FT.INFO),
    ``document_bytes`` (estimated from a sample of MEMORY USAGE) and ``indexed`` (share of
    its documents its vector index holds, 0-1; 0 for a stage not built yet)."""

    gen: int
    roles: tuple[str, ...]
    count: int
    index_bytes: int
    document_bytes: int
    indexed: float

    @property
    def memory_bytes(self) -> int:
        """Index plus documents, in bytes."""
        return self.index_bytes + self.document_bytes


@dataclass(frozen=True)
class GarbageInfo:
    """Garbage of a space still to delete (from :meth:`rediscache.Space.info`): the
    generations waiting, and about how many documents they hold (counted, or listed and
    not deleted yet)."""

    generations: tuple[int, ...]
    documents: int


@dataclass(frozen=True)
class SpaceInfo:
    """Schema and state of a space (from :meth:`Space.info`).

    ``count`` is the live index's document count. In an expiring space it includes entries
    that expired but that Redis has not deleted yet (no read or search returns them; see
    :meth:`Space.purge_expired`). ``memory_bytes`` is the memory of everything the space
    holds, in bytes: every generation (the live space, versions, stages, garbage not
    deleted yet), each listed in ``generations`` (:class:`GenerationInfo`:
    roles, documents, index and document bytes); ``live_memory_bytes`` is the live
    generation's share. ``garbage`` says what is still to be deleted in the background
    (:class:`GarbageInfo`).
    """

    name: str
    dim: int
    metric: str
    algorithm: str
    dtype: str
    fields: dict[str, str]
    hnsw: dict[str, int]
    count: int
    indexing: bool
    percent_indexed: float
    index_failures: int
    vector_index_bytes: int
    memory_bytes: int
    ttl: float | None = None
    expiring: bool = False
    live_memory_bytes: int = 0
    generations: tuple[GenerationInfo, ...] = ()
    garbage: GarbageInfo | None = None
    #: A partitioned space's partitions, each described as a space (``name#n``); the
    #: figures above add them up (``percent_indexed``: the least indexed). Empty for a
    #: space of one partition.
    partitions: tuple[SpaceInfo, ...] = ()


def build_config(
    name: str,
    dim: int,
    metric: str,
    algorithm: str,
    dtype: str,
    fields: Mapping[str, str] | None,
    hnsw: Mapping[str, int] | None,
    ttl: float | None = None,
    expiring: bool | None = None,
    partitions: int = 1,
) -> SpaceConfig:
    """The checked config of a new space (see :meth:`rediscache.Hub.create_space` for the
    arguments; ``partitions`` names them ``name#0``... here, their hash tags are chosen
    at creation). Pure.

    Raises:
        InvalidInputError: a bad name, ttl, dim, metric, algorithm, dtype, fields, hnsw or
            number of partitions (1 to 1024).
    """
    validate_space_name(name)
    count = check_int(partitions, "partitions", high=1024)
    if ttl is not None and ttl_to_ms(ttl) == 0:
        raise InvalidInputError("ttl must be a positive number of seconds (or None: forever)")
    if expiring is None:
        expiring = ttl is not None
    elif not check_flag(expiring, "expiring") and ttl is not None:
        raise InvalidInputError("a space with a default ttl is expiring: drop expiring=False")
    dim = check_int(dim, "dim", high=32768)
    metric = str(metric).lower()
    if metric not in _METRICS:
        raise InvalidInputError(f"unknown metric {metric!r}: use one of {', '.join(_METRICS)}")
    algorithm = str(algorithm).lower()
    if algorithm not in _ALGORITHMS:
        raise InvalidInputError(
            f"unknown algorithm {algorithm!r}: use one of {', '.join(_ALGORITHMS)}"
        )
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise InvalidInputError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    checked_fields = query.validate_fields(fields)
    params = query.hnsw_params(hnsw) if algorithm == "hnsw" else {}
    if algorithm == "flat" and hnsw:
        raise InvalidInputError("hnsw parameters given for a flat space")
    return SpaceConfig(
        name=name,
        dim=dim,
        metric=metric,
        algorithm=algorithm,
        dtype=dtype,
        fields=checked_fields,
        hnsw=params,
        created_at=time.time(),
        ttl=None if ttl is None else float(ttl),
        expiring=bool(expiring),
        partitions=tuple(f"{name}#{n}" for n in range(count)) if count > 1 else (),
    )
