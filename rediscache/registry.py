"""The hub's operations on the server: the registry of spaces (create, open, list, drop),
the server's facts (versions, stats) and the check made on connecting. Flows, performed by
:class:`rediscache.Hub` and :class:`rediscache.asyncio.AsyncHub` alike."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import time
from collections.abc import Mapping
from typing import Any

import redis
from redis.crc import key_slot

from . import collect, generations
from .access import Access
from .config import SpaceConfig, build_config
from .context import HubContext
from .effects import Broadcast, Command, Flow, Pipeline, Sleep, Transaction
from .errors import (
    ConnectionFailedError,
    CorruptDataError,
    PermissionDeniedError,
    SchemaMismatchError,
    SearchModuleMissingError,
    ServerError,
    ServerLoadingError,
    SpaceNotFoundError,
)
from .guard import database, translate
from .keys import REGISTRY, SpaceKeys, config_generations, partition_name, validate_space_name
from .server import parse_search_version
from .state import RELEASE_FIELD, STATE_FIELD, SpaceState, new_origin

__all__ = ["AOF_WAIT", "COMPACT_MIN_KEYS", "Registry", "ServerStats"]

#: Dropping a space of at least this many keys rewrites the AOF (Hub.drop_space).
COMPACT_MIN_KEYS = 1_000
#: Seconds a drop waits for an AOF rewrite already running before it starts its own.
AOF_WAIT = 60.0


@dataclasses.dataclass(frozen=True)
class ServerStats:
    """What :meth:`Hub.server_stats` reports (memory in bytes; maxmemory 0 = no limit).
    For a user with roles on spaces (rediscache.access), who may neither list modules
    nor count every key, ``search_version`` is ``"unknown"`` and ``keys`` None. On a
    Redis Cluster (``cluster``) the figures add up its ``primaries`` (the peak is the sum
    of each primary's peak)."""

    redis_version: str
    search_version: str
    used_memory: int
    used_memory_peak: int
    maxmemory: int
    keys: int | None
    connected_clients: int
    uptime_seconds: int
    #: Whether the server is a Redis Cluster, and how many primaries the figures add up.
    cluster: bool = False
    primaries: int = 1


#: The name of a generation's index or listing index, after the space's prefix.
_GEN_INDEX = re.compile(r"g(\d+):(?:idx|ls)$")


#: A space as found on the server: its config and state.
Found = tuple[SpaceConfig, SpaceState]
#: A partitioned space as found: its root's config and state, and each partition's.
PartsFound = tuple[SpaceConfig, SpaceState, list[Found]]


def _spread_names(name: str, count: int) -> Flow[list[str]]:
    """Names for the ``count`` partitions of the space ``name``: ``name#0``... on one
    server; on a Redis Cluster, names whose hash tags fall on the primaries holding the
    fewest partitions so far (trying ``name#0``, ``name#1``... in order), so that
    partitions spread over every primary. One round trip (CLUSTER SLOTS)."""
    try:
        slots = yield Command(("CLUSTER", "SLOTS"))
    except redis.ResponseError:  # not a cluster
        slots = None
    owners = _slot_owners(slots)
    if not owners:
        return [partition_name(name, n) for n in range(count)]
    load = dict.fromkeys(sorted(set(owners.values())), 0)
    names: list[str] = []
    for n in range(count * 64):
        if len(names) == count:
            break
        part = partition_name(name, n)
        owner = owners.get(key_slot(SpaceKeys.for_space(part).config.encode()))
        if owner is None or load[owner] > min(load.values()):
            continue
        load[owner] += 1
        names.append(part)
    n = count * 64
    while len(names) < count:  # slots unassigned: any names left over
        part = partition_name(name, n)
        names.append(part)
        n += 1
    return names


def _slot_owners(slots: Any) -> dict[int, str]:
    """Slot -> ``host:port`` of its primary from a ``CLUSTER SLOTS`` reply (RESP2:
    ``[first, last, [host, port, id], replicas...]`` per range); empty for None. Pure."""
    owners: dict[int, str] = {}
    for entry in slots or []:
        host, port = entry[2][0], entry[2][1]
        where = f"{host.decode() if isinstance(host, bytes) else host}:{int(port)}"
        for slot in range(int(entry[0]), int(entry[1]) + 1):
            owners[slot] = where
    return owners


def _found(name: str, raw: Mapping[bytes, bytes]) -> Found:
    """The config and state of the space ``name`` from its config hash. Pure."""
    return SpaceConfig.from_hash(name, raw), SpaceState.parse(raw.get(STATE_FIELD.encode()))


class Registry:
    """The hub's flows. ``client`` is only used to describe the server in messages;
    ``context`` forgets what it knew of a dropped space."""

    def __init__(self, client: Any, context: HubContext) -> None:
        self.client = client
        self.context = context
        #: The access control flows, for the hub's database.
        self.access = Access(database(client))

    # ------------------------------------------------------------ connecting

    def verify(self, where: str) -> Flow[None]:
        """PING and check for the search module, with one clear error for each failure.

        Raises:
            ServerLoadingError, ConnectionFailedError, SearchModuleMissingError, ServerError.
        """
        try:
            yield Command(("PING",))
        except redis.BusyLoadingError as exc:  # a ConnectionError to redis-py, but alive
            raise ServerLoadingError(
                f"connecting to {where}: Redis is loading its data after a restart (LOADING); "
                "retry once it is ready"
            ) from exc
        except redis.AuthenticationError as exc:
            raise ConnectionFailedError(
                f"authentication to {where} failed: check the password (and user) in the URL"
            ) from exc
        except redis.ResponseError as exc:
            if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
                raise ConnectionFailedError(
                    f"authentication to {where} failed: {exc}; put the password in the URL "
                    "(redis://:PASSWORD@host:port)"
                ) from exc
            context = f"connecting to {where}"  # NOPERM, BUSY...
            error = translate(exc, context, writes=False, client=self.client)
            raise (error or ServerError(f"{context}: {exc}")) from exc
        except redis.ConnectionError as exc:
            text = str(exc)
            if "CERTIFICATE_VERIFY_FAILED" in text or "WRONG_VERSION_NUMBER" in text:
                raise ConnectionFailedError(
                    f"cannot connect to {where}: the TLS handshake failed ({exc}): pass the CA "
                    "that signed the server's certificate, connect(url, ssl_ca_certs='ca.pem') "
                    "or in the URL ?ssl_ca_certs=/path/ca.pem, and check that the port serves "
                    "TLS (rediss://) or not (redis://)"
                ) from exc
            if where.startswith("rediss") and "closed by server" in text.lower():
                raise ConnectionFailedError(
                    f"cannot connect to {where}: the server closed the TLS connection ({exc}); "
                    "if it requires client certificates, pass yours: ssl_certfile= and "
                    "ssl_keyfile= (in a URL: ?ssl_certfile=...&ssl_keyfile=...)"
                ) from exc
            raise ConnectionFailedError(
                f"cannot connect to {where}: {exc}; is the server running and the URL right?"
            ) from exc
        except redis.RedisError as exc:  # e.g. TLS settings the connection cannot use
            raise ConnectionFailedError(f"cannot connect to {where}: {exc}") from exc
        try:
            if not (yield from self._has_search()):
                info = yield Command(("INFO", "server"))
                version = info.get("redis_version", "?")
                raise SearchModuleMissingError(
                    f"{where} (Redis {version}) has no search module: use Redis Stack / Redis "
                    ">= 8 with the query engine, or the embedded server (rediscache.connect() "
                    "with no URL)"
                )
        except (redis.RedisError, ConnectionError) as exc:
            error = translate(exc, f"connecting to {where}", writes=False, client=self.client)
            if error is None:
                raise
            raise error from exc

    def _has_search(self) -> Flow[bool]:
        """Whether the server has the search module: MODULE LIST, or for an ACL user who
        may not run it, COMMAND INFO FT.SEARCH; True when neither is allowed (a missing
        module then shows as an unknown command at the first search)."""
        try:
            return parse_search_version((yield Command(("MODULE", "LIST")))) is not None
        except redis.exceptions.NoPermissionError:
            pass
        try:
            reply = yield Command(("COMMAND", "INFO", "FT.SEARCH"))
        except redis.exceptions.NoPermissionError:
            return True
        # redis-py parses the reply into a dict keyed by command name (a list in older
        # ones); an unknown command has a nil entry
        entries = reply.values() if isinstance(reply, dict) else reply
        return any(entry for entry in entries)

    # ------------------------------------------------------------ spaces

    def create_space(
        self,
        name: str,
        dim: int,
        *,
        metric: str = "cosine",
        algorithm: str = "hnsw",
        dtype: str = "float32",
        fields: Mapping[str, str] | None = None,
        hnsw: Mapping[str, int] | None = None,
        ttl: float | None = None,
        expiring: bool | None = None,
        exist_ok: bool = False,
        partitions: int = 1,
    ) -> Flow[Found | PartsFound]:
        """Create a space: an index over embeddings of ``dim`` floats, plus metadata ``fields``.

        ``ttl``: default seconds to live of the embeddings written (a cache; None: forever;
        each write may override it). ``expiring``: whether entries may expire at all (default:
        whether ``ttl`` is given); only an expiring space takes per-write ttls and
        ``refresh_ttl``, and its searches check every hit against expiry (docs/serving.md).

        ``fields`` maps metadata names to ``"tag"``, ``"numeric"`` or ``"text"`` (indexed for
        filters); other metadata is stored but not indexed. ``hnsw`` overrides ``M``,
        ``ef_construction`` and ``ef_runtime`` (defaults 16, 200, 100).

        ``partitions`` (2 to 1024; 1, the default, makes an ordinary space): spread the
        space over that many partitions, each with its own index and hash tag, chosen so
        that a Redis Cluster holds them on different primaries where it has as many (a
        space larger than one shard, searched on every shard at once:
        :class:`rediscache.partitioned.PartitionedSpace`, docs/scale.md).
        Fixed for the life of the space.

        Round trips: three or four (config read, FT.CREATE of generation 1's index, one
        transaction adding the live alias, config and registry entry), and as many per
        partition. Atomic enough for concurrent creators: one wins, the others see the same
        schema (or an error).

        Raises:
            InvalidInputError: bad name, dim, metric, algorithm, dtype, fields, hnsw or
                partitions.
            SchemaMismatchError: the space exists with another schema (even with exist_ok),
                or it exists and ``exist_ok`` is False.
        """
        keys = SpaceKeys.for_space(validate_space_name(name))
        config = build_config(
            name, dim, metric, algorithm, dtype, fields, hnsw, ttl, expiring, partitions
        )
        found = yield from self._read_config(keys)
        if found is None:
            if not (yield from generations.may_scan()):
                raise PermissionDeniedError(
                    f"creating space {name!r} needs an owner account (a role on spaces may "
                    "use them, not create them): connect as an owner (docs/security.md)"
                )
            if (yield Command(("EXISTS", keys.dropped))):
                # a role dropped it: delete whatever of it is left or was written again
                yield from self.drop_space(name, missing_ok=True, compact=False)
            # grants on a dropped space of that name do not carry over to the new one
            yield from self.access.forget_space(name)
            if config.partitions:
                return (yield from self._create_partitioned(keys, config))
            made = yield from self._create_one(keys, config, {}, listed=True)
            if made is not None:
                return made
            found = yield from self._wait_config(keys)
        if found is not None:
            existing, state = found
            if existing.schema() != config.schema():
                raise SchemaMismatchError(
                    f"space {name!r} exists with another schema ({existing.describe()}); "
                    f"asked for ({config.describe()}): drop it first or use another name"
                )
            if not exist_ok:
                raise SchemaMismatchError(
                    f"space {name!r} already exists; pass exist_ok=True to reuse it"
                )
            if existing.partitions:
                return existing, state, (yield from self._read_parts(existing))
            return existing, state
        raise ServerError(f"space {name!r}: index exists but its config never appeared")

    def _create_one(
        self, keys: SpaceKeys, config: SpaceConfig, extra: dict[str, str], *, listed: bool
    ) -> Flow[Found | None]:
        """Create the index, alias and config of one space (or partition: ``listed``
        False keeps it out of the registry; ``extra`` fields join its config). None when
        another client created the index first (its config follows)."""
        state = SpaceState.initial(new_origin())
        gen = keys.gen(state.live)
        try:  # a new space: no document to look for (drop_space deleted the old ones)
            yield from generations.create_index(config, gen, scan=False)
        except redis.ResponseError as exc:
            if "already exists" not in str(exc).lower():
                raise ServerError(f"creating the index of space {keys.shown}: {exc}") from exc
            return None
        fields_of = {
            **config.to_hash(),
            **extra,
            STATE_FIELD: state.raw,
            gen.count_field: "0",
            "next_gen": str(state.live),
            "next_ver": "0",
        }
        # the registry first: a name listed without a config is skipped by listings (and
        # taken up again by the next create), while a config not listed would hide the
        # space. Apart: on a cluster the registry is in another slot than the space.
        if listed:
            yield Command(("SADD", REGISTRY, keys.name))
        alias, written = yield Pipeline(
            [
                ("FT.ALIASADD", keys.index, gen.index),
                ("HSET", keys.config, *[x for kv in fields_of.items() for x in kv]),
            ],
            transaction=True,
            raise_on_error=False,
        )
        if isinstance(written, Exception):
            raise ServerError(f"writing the config of space {keys.shown}: {written}")
        if isinstance(alias, Exception):
            # "already exists" from a transaction sent again after its reply was lost:
            # the first send made the alias and the config (its state is this one's)
            made = yield Command(("HGET", keys.config, STATE_FIELD))
            if "already exists" not in str(alias).lower() or made != state.raw.encode():
                raise ServerError(f"creating the alias of space {keys.shown}: {alias}")
        return config, state

    def _create_partitioned(self, keys: SpaceKeys, config: SpaceConfig) -> Flow[PartsFound]:
        """Create the partitions of a partitioned space (named for the primaries of a
        cluster: :func:`_spread_names`), then its root config, which makes it exist. A
        creation interrupted before the root leaves partitions that the next create of the
        name takes up when they have its schema, and replaces otherwise."""
        names = yield from _spread_names(keys.name, len(config.partitions))
        config = dataclasses.replace(config, partitions=tuple(names))
        for part in names:
            pkeys = SpaceKeys.for_space(part)
            pconfig = dataclasses.replace(config, name=part, partitions=())
            extra = {RELEASE_FIELD: "1", "root": keys.name}
            old = yield from self._read_config(pkeys)
            if old is not None:  # left by an interrupted create, or a concurrent creator's
                if old[0].schema() == pconfig.schema():
                    continue
                yield from self.drop_space(part, missing_ok=True, compact=False)
            if (yield from self._create_one(pkeys, pconfig, extra, listed=False)) is None:
                yield from self._wait_config(pkeys)
        state = SpaceState.initial(new_origin())
        fields_of = {**config.to_hash(), STATE_FIELD: state.raw, RELEASE_FIELD: "1"}
        yield Command(("SADD", REGISTRY, keys.name))

        def build(replies: list[Any]) -> list[tuple[Any, ...]]:
            if replies[0]:  # a concurrent creator's root: nothing to write
                return []
            return [("HSET", keys.config, *[x for kv in fields_of.items() for x in kv])]

        done = yield Transaction(keys.config, [("EXISTS", keys.config)], build)
        if not done:  # another creator's root came first: take it as found
            found = yield from self._wait_config(keys)
            if found is None:
                raise ServerError(f"space {keys.shown}: its config never appeared")
            config, state = found
        return config, state, (yield from self._read_parts(config))

    def _read_parts(self, config: SpaceConfig) -> Flow[list[Found]]:
        """The config and state of each partition of the partitioned space ``config``. One
        round trip (on a cluster: one per node, sent together).

        Raises:
            CorruptDataError: a partition is missing (its keys were deleted by hand, or a
                drop was interrupted): drop the space and create it again.
        """
        names = list(config.partitions)
        raws = yield Pipeline(
            [("HGETALL", SpaceKeys.for_space(n).config) for n in names], raise_on_error=False
        )
        found: list[Found] = []
        for part, raw in zip(names, raws, strict=True):
            if isinstance(raw, Exception):
                raise raw
            if not raw:
                raise CorruptDataError(
                    f"partition {part!r} of space {config.name!r} is missing (a drop was "
                    "interrupted, or its keys were deleted): drop the space and create it again"
                )
            found.append(_found(part, raw))
        return found

    def _wait_config(self, keys: SpaceKeys) -> Flow[Found | None]:
        # Another client created the index an instant ago; its config follows in ~1 RTT.
        for _ in range(50):
            found = yield from self._read_config(keys)
            if found is not None:
                return found
            yield Sleep(0.01)
        return None

    def _read_config(self, keys: SpaceKeys) -> Flow[Found | None]:
        """The space's config and state; None when it has none, or when a role dropped it
        (whatever of it a role wrote again since; :meth:`drop_space`)."""
        raw, dropped = yield Pipeline(
            [("HGETALL", keys.config), ("EXISTS", keys.dropped)], raise_on_error=False
        )
        if isinstance(raw, Exception):
            raise raw
        # a user of hand-written ACL rules may not read the mark: only roles drop that way
        if not raw or (isinstance(dropped, int) and dropped > 0):
            return None
        return _found(keys.name, raw)

    def space(self, name: str) -> Flow[Found | PartsFound]:
        """The existing space ``name``. One round trip (its config; a partitioned space's
        partitions in a second).

        Raises:
            SpaceNotFoundError: no such space.
        """
        found = yield from self._read_config(SpaceKeys.for_space(validate_space_name(name)))
        if found is None:
            raise SpaceNotFoundError(
                f"space {name!r} does not exist; create it with create_space() "
                "or `rediscache space create`"
            )
        if found[0].partitions:
            return found[0], found[1], (yield from self._read_parts(found[0]))
        return found

    def spaces(self) -> Flow[list[str]]:
        """Names of the spaces this hub's user may use, sorted: every space for an owner,
        the granted ones for a role (rediscache.access). Two round trips."""
        names = sorted(m.decode() for m in (yield Command(("SMEMBERS", REGISTRY))))
        return (yield from generations.existing_spaces(names))

    def drop_space(self, name: str, *, missing_ok: bool = False, compact: bool = True) -> Flow[int]:
        """Delete the space ``name``: its versions, indexes and every key under its prefix.

        Returns the number of keys deleted. Round trips: one per index and one per 1,000
        keys (SCAN + UNLINK). Not atomic: readers may see a partly deleted space while it
        runs; the config and registry entry go first so the space disappears from listings
        at once (and every handle's next call raises SpaceNotFoundError), with the garbage
        collector's lease (a collector at work stops at its next step).

        ``compact``: when the drop deleted at least :data:`COMPACT_MIN_KEYS` keys and the
        server keeps an append-only file, ask it to rewrite the file in the background
        (BGREWRITEAOF), after waiting for one already running (at most :data:`AOF_WAIT`
        seconds: it began before these deletions). Otherwise the next restart replays every
        write of the dropped space before serving (Redis's own rewrite policy waits for the
        file to double in size, which deletions never do); docs/serving.md has the measured
        difference.

        Raises:
            SpaceNotFoundError: the space does not exist and ``missing_ok`` is False.
        """
        keys = SpaceKeys.for_space(name)
        self.context.forget(name)
        deleted = 0
        listed_parts = yield Command(("HGET", keys.config, "partitions"))
        if listed_parts:  # a partitioned space: its partitions first (a drop taken up again
            # after an interruption finds them through the root, which goes last)
            for part in json.loads(listed_parts):
                deleted += yield from self.drop_space(part, missing_ok=True, compact=False)
        may_scan = yield from generations.may_scan()
        if may_scan:  # an owner: the name leaves the registry (below)
            mark: tuple[Any, ...] = ("DEL", keys.dropped)
        else:  # a role may not write the registry: it marks the space dropped for good
            mark = ("SETNX", keys.dropped, int(time.time()))
        # The versions and the config are read before the transaction too: a transaction
        # sent again after its reply was lost (a broken connection, a failover) reads them
        # already deleted.
        before = yield Pipeline([("HGETALL", keys.versions), ("HGETALL", keys.config)])
        known = _version_gens(before[0], name) | config_generations(before[1])
        # a role's drop lists them as garbage in the same step: a drop cut after it (Ctrl-C,
        # kill -9) and run again finds them there, where the versions and config are gone
        listing = [("SADD", keys.garbage, *sorted(known))] if known and not may_scan else []
        replies = yield Pipeline(
            [
                ("EXISTS", keys.dropped),
                mark,
                *listing,
                ("HGETALL", keys.versions),
                ("DEL", keys.versions),
                ("HGETALL", keys.config),
                ("DEL", keys.config),
                # a collector at work loses its lease with the config: its next write (each
                # checks the lease in its script) does nothing, so none lands behind the
                # SCAN below; a role's drop collects with a lease of its own
                ("DEL", keys.gc_lock),
            ],
            transaction=True,
        )
        if may_scan:  # after the config: a listed name without one is skipped by listings
            yield Command(("SREM", REGISTRY, name))
        replies = replies[len(listing) :]
        existed = bool(replies[5]) and not replies[0]
        # generations of versions, of stages and of a copy under way (a writer's copy has
        # no index until it is done; a copy_docs.lua after the DEL above copies nothing)
        versioned = known | _version_gens(replies[2], name) | config_generations(replies[4])
        with contextlib.suppress(redis.ResponseError):  # no alias: nothing to delete
            yield Command(("FT.ALIASDEL", keys.index))
        listed = yield from generations.listed_indexes(keys.config)
        indexes = sorted(i for i in listed if i.startswith(keys.prefix))
        existed = existed or bool(indexes)
        if not existed and not missing_ok:
            raise SpaceNotFoundError(f"space {name!r} does not exist")
        if may_scan:
            for index in indexes:
                yield from generations.drop_index(index, f"index {index!r} of space {name!r}")
            deleted += yield from generations.unlink_matching(keys.all_scan_pattern())
        else:
            deleted += yield from self._drop_by_indexes(keys, indexes, versioned)
        yield from self.access.forget_space(name)
        if compact and deleted >= COMPACT_MIN_KEYS:
            yield from self._compact_aof(keys.config)
        return deleted

    def _drop_by_indexes(
        self, keys: SpaceKeys, indexes: list[str], versioned: set[int]
    ) -> Flow[int]:
        """Delete a space whose config and versions are gone without SCAN (an admin may not
        run it: it lists every key of the server): every generation with an index, and the
        ``versioned`` ones (a writer's copy may have none yet), becomes garbage, which the
        collector lists through their indexes and deletes (rediscache.collect), then the
        space's bookkeeping keys go. Documents of a generation left without any index by a
        crash, and no version, are not found this way."""
        prefix = len(keys.prefix)
        listed = {int(m.group(1)) for i in indexes if (m := _GEN_INDEX.match(i[prefix:]))}
        gens = sorted(listed | versioned)
        if gens:
            yield Command(("SADD", keys.garbage, *gens))
        deleted = yield from collect.collect_garbage(keys, set(), wait=True)
        for index in indexes:  # anything the collector did not know
            yield from generations.drop_index(index, f"index {index!r} of space {keys.shown}")
        yield Command(
            ("UNLINK", keys.garbage, keys.lock, keys.gc_lock, *(keys.gen(g).doomed for g in gens))
        )
        return deleted

    def _compact_aof(self, at: str) -> Flow[None]:
        """Start a background rewrite of the AOF of the server of key ``at`` (on a cluster:
        the node of the dropped space) if it keeps one (two round trips;
        the rewrite itself is not waited for). A rewrite already running began before this
        drop's deletions, and Redis refuses a second one meanwhile rather than queueing it
        (three drops in a row left two spaces' keys in the file, and a restart replayed
        them for 60-100 s): so the drop waits for it to end, polling every 50 ms for at most
        :data:`AOF_WAIT` seconds, and starts another. A user not allowed to ask leaves it to
        Redis's own policy."""
        deadline = time.monotonic() + AOF_WAIT
        while True:
            try:
                info = yield Command(("INFO", "persistence"), at=at)
                if not int(info.get("aof_enabled", 0)):
                    return
                if not int(info.get("aof_rewrite_in_progress", 0)):
                    yield Command(("BGREWRITEAOF",), at=at)
                    return
            except redis.ResponseError as exc:
                if "in progress" not in str(exc):
                    return  # e.g. not permitted by ACL: the drop itself is done
            if time.monotonic() > deadline:
                return
            yield Sleep(0.05)

    # ------------------------------------------------------------ the server

    def server_versions(self) -> Flow[dict[str, str]]:
        """Redis and search module versions of the connected server. Two round trips."""
        info = yield Command(("INFO", "server"))
        search = parse_search_version((yield Command(("MODULE", "LIST"))))
        return {"redis": str(info.get("redis_version", "?")), "search": search or "none"}

    def server_stats(self) -> Flow[ServerStats]:
        """Versions, memory, keys and clients of the connected server; of a cluster, the
        sums over its primaries (memory, keys, clients; ``maxmemory`` too, 0 when one
        primary has no limit) and the shortest uptime. Two round trips per primary (INFO;
        MODULE LIST and DBSIZE)."""
        infos = yield Broadcast(("INFO",))
        # a role may not list modules nor count every space's keys
        modules, keys = yield Pipeline([("MODULE", "LIST"), ("DBSIZE",)], raise_on_error=False)
        if isinstance(modules, Exception):
            search = "unknown"
        else:
            search = parse_search_version(modules) or "none"
        counts: list[Any] = []
        if not isinstance(keys, Exception):
            with contextlib.suppress(redis.RedisError):
                counts = yield Broadcast(("DBSIZE",))

        def total(name: str) -> int:
            return sum(int(info.get(name, 0)) for info in infos)

        limits = [int(info.get("maxmemory", 0)) for info in infos]
        return ServerStats(
            redis_version=str(infos[0].get("redis_version", "?")),
            search_version=search,
            used_memory=total("used_memory"),
            used_memory_peak=total("used_memory_peak"),
            maxmemory=0 if 0 in limits else sum(limits),
            keys=None if isinstance(keys, Exception) else sum(int(c) for c in counts),
            connected_clients=total("connected_clients"),
            uptime_seconds=min(int(info.get("uptime_in_seconds", 0)) for info in infos),
            cluster=bool(int(infos[0].get("cluster_enabled", 0) or 0)),
            primaries=len(infos),
        )


def _version_gens(raw: dict[bytes, bytes], space: str) -> set[int]:
    """The generations of the versions in a versions hash. Pure."""
    return {ref[1] for ref in generations.parse_versions(raw, space).values()}
