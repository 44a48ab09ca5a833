"""Every Redis key name rediscache uses is built here, and only here.

Layout of a space named ``items`` (layout 2, with versions)::

    rc:spaces                     SET   names of all spaces (the hub's registry)
    rc:acl                        HASH  grants of access control: user -> JSON (rediscache.access)
    rc:{items}:cfg                HASH  the space's schema (dim, metric, dtype, fields...),
                                        its ``state`` (see :mod:`rediscache.state`) and the
                                        number of documents of each generation (``n:<g>``),
                                        ``built:<g>`` (index found complete, on which server),
                                        ``stage:<label>`` (a stage's record, rediscache.stages)
                                        and ``gc:<g>`` (garbage all listed, rediscache.collect)
    rc:{items}:idx                      alias of the live generation's index (what searches
                                        of the live space use)
    rc:{items}:g<g>:idx                 the RediSearch index of generation ``g``
    rc:{items}:g<g>:ls                  a stage's listing index: no fields, only the list of
                                        its documents (rediscache.stages), until it goes live
    rc:{items}:g<g>:d:<key>       HASH  one embedding of generation ``g``: ``vec`` (raw
                                        little-endian floats), ``meta`` (msgpack of all
                                        metadata), one plain field per indexed metadata
                                        field, and ``cnt`` for running means (update_mean)
    rc:{items}:ver                HASH  versions: id -> JSON (label, created_at, count, gen)
    rc:{items}:garbage            SET   generations no longer referenced, to be deleted
    rc:{items}:g<g>:gc            SET   a garbage generation's documents, listed for deletion
    rc:{items}:gclock             STRING  lease of the client deleting garbage (rediscache.collect)
    rc:{items}:lock               STRING  lease of the client copying a generation (fork)
    rc:{items}:cl:<key>           STRING  short lock of a client computing <key> (get_or_compute)

A *partitioned* space ``items`` of P partitions (``create_space(..., partitions=P)``;
rediscache.partitioned) keeps its schema, its ``release`` number and its versions under
``rc:{items}:`` (``cfg`` with a ``partitions`` field naming the partitions, ``ver``,
``lock``: the lease of a switch), and its embeddings in P partitions, each laid out like a
space named ``items#<n>`` (``rc:{items#<n>}:...``, with a ``release`` field in its
``cfg``). An embedding's partition is :func:`partition_of` its key.

A *generation* is one complete set of documents with its own index. The live space is one
generation (``state.live``); every version points at one generation. Versions and the live
space share a generation until the live space is written, when the version moves to a copy
(docs/versions.md).

Why this shape:

* Every key of a space, and its index name, carries the hash tag ``{items}``: in a Redis
  Cluster the whole space lives on one shard (RediSearch 2.10 has no coordinator) and a
  Lua script touching several keys of a space stays in one slot.
* Every key of a space lies under its own prefix ``rc:{items}:``, so the ACL key pattern
  ``~rc:{items}:*`` scopes a user to exactly one space. The index name lies under that
  prefix too, because RediSearch checks ACL patterns against the index name.
* Documents sit under ``g<g>:d:`` so a generation's index covers exactly its own documents,
  and switching the live generation is one alias update (no key is renamed or copied).

Space names are restricted to ``[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`` so that they can never
contain glob characters (``* ? [ ]``), braces or ``:``, which would break hash tags,
ACL patterns or SCAN patterns.
"""

from __future__ import annotations

import functools
import re
import unicodedata
import zlib
from dataclasses import dataclass

from .errors import InvalidInputError

__all__ = [
    "ACL_RECORDS",
    "DOC_MARKER",
    "FORK_GEN_FIELD",
    "REGISTRY",
    "ROOT",
    "STAGE_PREFIX",
    "GenKeys",
    "SpaceKeys",
    "built_field",
    "config_generations",
    "count_field",
    "partition_name",
    "partition_of",
    "partitions_prefix",
    "shown_name",
    "stage_field",
    "validate_space_name",
]

#: What every document key holds between its generation and its user key
#: (``rc:{s}:g<g>:d:<key>``): how readers of raw key names (search replies, invalidation
#: messages) tell documents from the space's other keys.
DOC_MARKER = ":d:"
#: Prefix shared by every key rediscache writes.
ROOT = "rc:"
#: The set holding the names of all spaces.
REGISTRY = ROOT + "spaces"
#: The grants of access control (user -> JSON; rediscache.access), read by owners only.
ACL_RECORDS = ROOT + "acl"

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: A partition of a partitioned space: its space's name, ``#`` and a number (``items#0``).
#: Users never name one: they are reached through their space (rediscache.partitioned).
_PARTITION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}#[0-9]{1,5}")
#: What joins a partitioned space's name and a partition's number.
PARTITION_MARK = "#"
#: Glob metacharacters that must be escaped in a SCAN MATCH pattern.
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")

#: Hash field holding the raw vector bytes.
VECTOR_FIELD = "vec"
#: Hash field holding all metadata as msgpack.
META_FIELD = "meta"
#: Hash field of a running mean: "<items folded in>:<sha1 of the vector bytes>".
COUNT_FIELD = "cnt"


def validate_space_name(name: object) -> str:
    """Return ``name`` if it is a valid space name, else raise :class:`InvalidInputError`."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidInputError(
            f"invalid space name {name!r}: use 1-64 characters from A-Z a-z 0-9 _ . - "
            "starting with a letter or digit"
        )
    return name


def partition_of(key: str, partitions: int) -> int:
    """The partition (0 to ``partitions - 1``) that holds the embedding ``key`` of a
    partitioned space: the CRC-32 (zlib's, of the key's UTF-8 bytes) modulo the number of
    partitions. Stable across processes, machines and Python versions (``hash()`` is not);
    the number of partitions is fixed when the space is created, so a key never moves."""
    return zlib.crc32(key.encode("utf-8")) % partitions


def partition_name(space: str, number: int) -> str:
    """The name of a partition of the partitioned space ``space``: ``space#number``. Each
    partition is stored like a space of that name (its keys under ``rc:{space#number}:``,
    its own hash tag, so a cluster may hold it on its own shard)."""
    return f"{space}{PARTITION_MARK}{number}"


def shown_name(name: str) -> str:
    """A space's ``name`` as messages give it, quoted: ``'items'``, or for a partition its
    space and its number (``'items' (partition 0)``: users never name a partition)."""
    base, mark, number = name.partition(PARTITION_MARK)
    return f"{base!r} (partition {number})" if mark else repr(base)


def partitions_prefix(space: str) -> str:
    """A glob pattern matching the key prefix of every partition of ``space``
    (``rc:{space#*}:``; for ACL key patterns: rediscache.access). No other space's keys
    match it: space names never contain ``#``."""
    return f"{ROOT}{{{space}{PARTITION_MARK}*}}:"


@dataclass(frozen=True)
class SpaceKeys:
    """Key names of one space. Build with ``SpaceKeys.for_space(name)``."""

    name: str
    prefix: str
    index: str
    config: str
    versions: str
    garbage: str
    lock: str
    gc_lock: str

    @classmethod
    def for_space(cls, name: str) -> SpaceKeys:
        """Key names for the space ``name`` (validated), or for a partition of a partitioned
        space (:func:`partition_name`)."""
        if not (isinstance(name, str) and _PARTITION_RE.fullmatch(name)):
            validate_space_name(name)
        prefix = f"{ROOT}{{{name}}}:"
        return cls(
            name=name,
            prefix=prefix,
            index=prefix + "idx",
            config=prefix + "cfg",
            versions=prefix + "ver",
            garbage=prefix + "garbage",
            lock=prefix + "lock",
            gc_lock=prefix + "gclock",
        )

    @property
    def space_name(self) -> str:
        """The name of the space users know: this one's, or a partition's space's."""
        return self.name.partition(PARTITION_MARK)[0]

    @property
    def shown(self) -> str:
        """The space as messages name it (:func:`shown_name`)."""
        return shown_name(self.name)

    @property
    def dropped(self) -> str:
        """The mark a role's drop leaves (``rc:dropped:{name}``, outside the space's prefix,
        so its admins may create it but never delete it; rediscache.access): the space was
        dropped, whatever keys of it reappear, until an owner creates it again."""
        return f"{ROOT}dropped:{{{self.name}}}"

    def keyspace_channels(self, db: int) -> str:
        """The channel pattern of Redis's keyspace notifications for every key of the space
        in database ``db`` (what a role's hot cache subscribes to; rediscache.hotcache)."""
        return f"__keyspace@{db}__:{self.prefix}*"

    def compute_lock(self, key: str) -> str:
        """The short lock of a client computing the embedding ``key`` (get_or_compute)."""
        return f"{self.prefix}cl:{key}"

    def gen(self, gen: int) -> GenKeys:
        """Key names of generation ``gen`` of this space."""
        return GenKeys.make(self, gen)

    @property
    def acl_pattern(self) -> str:
        """The ACL key pattern (``~`` form without the tilde) covering the whole space."""
        return self.prefix + "*"

    def all_scan_pattern(self) -> str:
        """SCAN MATCH pattern for every key of the space."""
        return _GLOB_SPECIAL.sub(r"\\\1", self.prefix) + "*"


def count_field(gen: int) -> str:
    """Field of the config hash counting the documents of generation ``gen``."""
    return f"n:{gen}"


def built_field(gen: int) -> str:
    """Field of the config hash marking generation ``gen``'s index complete (it holds the run
    id of the server it was found complete on; rediscache.generations.ensure_searchable)."""
    return f"built:{gen}"


#: Prefix of the config hash fields holding stage records (``stage:<label>``).
STAGE_PREFIX = "stage:"


def stage_field(label: str) -> str:
    """Field of the config hash holding the record of the stage ``label``
    (``"<gen> <token> <open|copy> <created_at>"``; rediscache.stages), with the label in
    Unicode's NFC form, as labels are stored (rediscache.versions.check_label)."""
    return STAGE_PREFIX + unicodedata.normalize("NFC", label)


#: Field of the config hash naming the generation a copy of the live one is being made
#: into (fork_begin.lua, stage.lua), until the copy ends.
FORK_GEN_FIELD = "fork_gen"
#: Prefixes of the config hash fields named after a generation: count_field, built_field
#: and GenKeys.listed_field.
_GEN_FIELD_PREFIXES = ("n:", "built:", "gc:")


def config_generations(config: dict[bytes, bytes]) -> set[int]:
    """The generations a space's config hash names: those of its per-generation fields
    (:func:`count_field`, :func:`built_field`, :attr:`GenKeys.listed_field`), the copy
    under way (:data:`FORK_GEN_FIELD`) and the stages' (the first word of each
    :func:`stage_field` record). Fields that do not parse are skipped. Pure."""
    gens: set[int] = set()
    for field, value in config.items():
        name = field.decode(errors="replace")
        if name.startswith(_GEN_FIELD_PREFIXES):
            word = name.split(":", 1)[1]
        elif name == FORK_GEN_FIELD:
            word = value.decode(errors="replace")
        elif name.startswith(STAGE_PREFIX):
            word = value.decode(errors="replace").split(" ", 1)[0]
        else:
            continue
        if word.isdigit():
            gens.add(int(word))
    return gens


@dataclass(frozen=True)
class GenKeys:
    """Key names of one generation of a space. Build with ``SpaceKeys.gen(g)``."""

    space: SpaceKeys
    gen: int
    doc_prefix: str
    index: str
    listing: str
    doomed: str

    @classmethod
    def make(cls, space: SpaceKeys, gen: int) -> GenKeys:
        """Key names of generation ``gen`` (a positive integer) of ``space``."""
        if isinstance(gen, bool) or not isinstance(gen, int) or gen < 1:
            raise InvalidInputError(f"generation must be a positive integer, got {gen!r}")
        base = f"{space.prefix}g{gen}"
        return cls(
            space=space,
            gen=gen,
            doc_prefix=base + DOC_MARKER,
            index=base + ":idx",
            listing=base + ":ls",
            doomed=base + ":gc",
        )

    @functools.cached_property
    def doc_prefix_bytes(self) -> bytes:
        """:attr:`doc_prefix` as the bytes in replies (UTF-8)."""
        return self.doc_prefix.encode()

    @functools.cached_property
    def doc_split(self) -> str:
        """``"\\x00"`` and :attr:`doc_prefix`: splits the NUL-joined document ids of a reply
        into their keys (rediscache.search's reply reader)."""
        return "\x00" + self.doc_prefix

    @property
    def count_field(self) -> str:
        """Field of the config hash counting this generation's documents."""
        return count_field(self.gen)

    @property
    def built_field(self) -> str:
        """Field of the config hash marking this generation's index complete."""
        return built_field(self.gen)

    @property
    def listed_field(self) -> str:
        """Field of the config hash marking this garbage generation's documents all listed
        in :attr:`doomed` (rediscache.collect)."""
        return f"gc:{self.gen}"

    def doc(self, key: str) -> str:
        """Redis key of the embedding ``key``."""
        return self.doc_prefix + key

    def docs(self, keys: list[str]) -> list[str]:
        """Redis keys of several embeddings, in order."""
        p = self.doc_prefix
        return [p + k for k in keys]

    def user_key(self, redis_key: str | bytes) -> str:
        """The user's key of a document key (inverse of :meth:`doc`)."""
        if isinstance(redis_key, bytes):
            redis_key = redis_key.decode()
        if not redis_key.startswith(self.doc_prefix):
            raise InvalidInputError(f"{redis_key!r} is not a document of space {self.space.shown}")
        return redis_key[len(self.doc_prefix) :]

    def doc_scan_pattern(self) -> str:
        """SCAN MATCH pattern for all documents of the space."""
        return _GLOB_SPECIAL.sub(r"\\\1", self.doc_prefix) + "*"
