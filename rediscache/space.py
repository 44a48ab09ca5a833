"""The public surface of a space and of a version view, declared once
(:class:`SpaceSurface`, :class:`ViewSurface`), and their sync facades :class:`Space` and
:class:`VersionView`.

A facade's state is a :class:`~rediscache.target.Target` and the parts built on it
(:class:`SpaceParts`); each of its operations is an :class:`~rediscache.drive.Op`, a part's
flow that the facade's driver runs. The asyncio facades (:mod:`rediscache.asyncio.space`)
are the same surfaces on an asyncio driver.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, NoReturn, Protocol

from .caching import ReadThrough
from .codec import VectorCodec, check_int
from .config import SpaceConfig, SpaceInfo
from .context import HubContext
from .drive import IterOp, Local, Op, SyncFacade, public, sync_op
from .errors import ReadOnlyError
from .generations import Version
from .guard import database
from .hotcache import HotCache
from .keys import DOC_MARKER, GenKeys, SpaceKeys
from .operations import Operations
from .reads import CHUNK, Hit, Reads, Record
from .search import Searches
from .stages import StageInfo, StageOps, Stages, StageTarget
from .state import STATE_FIELD, SpaceState
from .target import Target
from .versions import Versions, VersionTarget
from .writes import VectorsUpdated, WritePacer, Writes


class HubHandle(Protocol):
    """What a space needs of its hub (:class:`rediscache.Hub` or
    :class:`rediscache.asyncio.AsyncHub`): its driver (sync or asyncio) and context."""

    _driver: Any
    _context: HubContext


__all__ = [
    "CHUNK", "Hit", "HubHandle", "Record", "Space", "SpaceConfig", "SpaceInfo", "SpaceParts",
    "SpaceSurface", "Stage", "StageInfo", "StageParts", "StageSurface", "VectorsUpdated",
    "VersionView", "ViewParts", "ViewSurface", "WritePacer",
]  # fmt: skip


class SpaceParts:
    """The parts of a live space, built on one target: each receives what it uses."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.reads = Reads(target)
        self.searches = Searches(target, self.reads)
        self.writes = Writes(target)
        self.ops = Operations(target)
        self.versions = Versions(target, self.reads, self.searches)
        self.cache = ReadThrough(target, self.reads, self.writes)
        self.stages = Stages(target)


class StageParts:
    """The parts of a stage: reads, searches and writes of the stage's target, and what a
    stage does besides (build, diff, publish, discard)."""

    def __init__(self, target: StageTarget) -> None:
        self.target = target
        self.reads = Reads(target)
        self.searches = Searches(target, self.reads)
        self.writes = Writes(target)
        self.ops = StageOps(target, self.reads, self.searches)


class ViewParts:
    """The parts of a version view: reads and searches of the version's target."""

    def __init__(self, target: VersionTarget) -> None:
        self.target = target
        self.reads = Reads(target)
        self.searches = Searches(target, self.reads)


_reads = attrgetter("_parts.reads")
_searches = attrgetter("_parts.searches")
_writes = attrgetter("_parts.writes")
_ops = attrgetter("_parts.ops")
_versions = attrgetter("_parts.versions")
_cache = attrgetter("_parts.cache")
_stages = attrgetter("_parts.stages")


class _TargetFacade:
    """What every facade of a target says about it (no I/O)."""

    _parts: SpaceParts | ViewParts | StageParts

    @property
    def config(self) -> SpaceConfig:
        """The space's schema."""
        return self._parts.target.config

    @property
    def keys(self) -> SpaceKeys:
        """The space's key names."""
        return self._parts.target.keys

    @property
    def codec(self) -> VectorCodec:
        """How the space's vectors are checked, encoded and decoded."""
        return self._parts.target.codec

    def _where(self) -> str:
        return self._parts.target.where()


class SpaceSurface(_TargetFacade):
    """The public surface of a live space, declared once for :class:`Space` and
    :class:`rediscache.asyncio.AsyncSpace`: each operation is an :class:`Op` (a flow of
    one part, run by the facade's driver). Every method is documented where it is
    implemented: reads in :class:`rediscache.reads.Reads`, searches in
    :class:`rediscache.search.Searches`, writes in :class:`rediscache.writes.Writes`,
    vector operations in :class:`rediscache.operations.Operations`, versions in
    :class:`rediscache.versions.Versions`, ``get_or_compute`` in
    :class:`rediscache.caching.ReadThrough` (``help(space.get)`` shows it)."""

    _parts: SpaceParts

    def __init__(self, hub: HubHandle, config: SpaceConfig, state: SpaceState) -> None:
        self.hub = hub
        self._driver = hub._driver
        self._context = hub._context
        self._parts = SpaceParts(Target(config, state, hub._context))

    @property
    def name(self) -> str:
        """The space's name."""
        return self.config.name

    @property
    def dim(self) -> int:
        """Number of floats per embedding."""
        return self.config.dim

    @property
    def live_keys(self) -> GenKeys:
        """Key names of the live generation as last seen (no round trip; a rollback moves
        the live space to another generation). For tools that inspect Redis directly."""
        return self._parts.target.gen

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.config.describe()})"

    # checks without I/O (rediscache.writes), not awaited on an asyncio space
    validate = Local(Writes.validate, _writes)
    validate_row = Local(Writes.validate_row, _writes)

    # writes (rediscache.writes)
    put = Op(Writes.put, _writes, counted=True)
    put_many = Op(Writes.put_many, _writes, counted=True)
    update_vectors = Op(Writes.update_vectors, _writes, counted=True)
    delete = Op(Writes.delete, _writes, counted=True)

    # reads (rediscache.reads)
    get = Op(Reads.get, _reads, counted=True)
    get_many = Op(Reads.get_many, _reads, counted=True)
    get_record = Op(Reads.get_record, _reads, counted=True)
    get_metadata_many = Op(Reads.get_metadata_many, _reads)
    count = Op(Reads.count, _reads)
    info = Op(Reads.info, _reads)
    purge_expired = Op(Reads.purge_expired, _reads)
    iter_batches = IterOp(Reads.iter_batches, _reads, item="Batch")

    # searches (rediscache.search)
    search = Op(Searches.search, _searches, counted=True, quick=Searches.quick)
    search_many = Op(Searches.search_many, _searches, counted=True)
    within = Op(Searches.within, _searches, counted=True)
    similar = Op(Searches.similar, _searches, counted=True)

    # vector operations (rediscache.operations)
    average = Op(Operations.average, _ops, counted=True)
    combine = Op(Operations.combine, _ops, counted=True)
    update_mean = Op(Operations.update_mean, _ops, counted=True)

    # read-through cache (rediscache.caching)
    get_or_compute = Op(ReadThrough.get_or_compute, _cache, counted=True)

    # versions (rediscache.versions); ``at`` returns the facade's own view class
    versions = Op(Versions.versions, _versions)
    version = Op(Versions.version, _versions)
    snapshot = Op(Versions.snapshot, _versions)
    rollback = Op(Versions.rollback, _versions)
    delete_version = Op(Versions.delete_version, _versions)
    prune_versions = Op(Versions.prune_versions, _versions)
    diff = Op(Versions.diff, _versions)
    collect_garbage = Op(Versions.collect_garbage, _versions)

    # stages (rediscache.stages); ``stage`` and ``staged`` return the facade's own class
    stages = Op(Stages.stages, _stages)
    discard_stage = Op(Stages.discard_stage, _stages)


class Space(SyncFacade, SpaceSurface):
    """Embeddings of one dim/dtype/metric, their metadata and their vector index.

    Get one from :meth:`Hub.create_space` or :meth:`Hub.space`. Its operations are those of
    :class:`SpaceSurface` (shared with :class:`rediscache.asyncio.AsyncSpace`), plus
    ``len(space)`` and the in-process hot cache.
    """

    def __len__(self) -> int:
        """:meth:`count`: the number of embeddings stored (errors name ``count``)."""
        return self.count()

    at = sync_op(
        "at", Versions.at, _versions, wrap=lambda s, t: VersionView(s, t), returns="VersionView"
    )
    stage = sync_op("stage", Stages.stage, _stages, wrap=lambda s, t: Stage(s, t), returns="Stage")
    staged = sync_op(
        "staged", Stages.staged, _stages, wrap=lambda s, t: Stage(s, t), returns="Stage"
    )

    # ------------------------------------------------------------ hot cache (sync only)

    def enable_hot_cache(self, *, max_items: int = 10_000, max_bytes: int = 64 << 20) -> HotCache:
        """Keep vectors read by ``get`` / ``get_many`` in this process, up to ``max_items``
        entries and ``max_bytes`` bytes (least recently used out first), kept correct by
        server-assisted invalidation (:mod:`rediscache.hotcache`). Returns the cache (its
        ``stats()`` count hits and misses). Opens one extra connection and a listener thread;
        ``disable_hot_cache()`` closes them. Reads with ``refresh_ttl`` bypass the cache.
        Sync spaces only (the listener is a thread).

        Raises:
            InvalidInputError: bounds below 1. ConnectionFailedError: the listener could not
                subscribe (e.g. a server without CLIENT TRACKING, or a role whose grant
                was revoked).
        """
        max_items = check_int(max_items, "max_items")
        max_bytes = check_int(max_bytes, "max_bytes")
        self.disable_hot_cache()
        config = self.keys.config
        driver = self._driver
        client = driver.client_for(config)  # on a cluster: the node of the space

        def state_of() -> bytes | None:
            raw: bytes | None = driver.client_for(config).hget(config, STATE_FIELD)
            return raw

        def node_of() -> Any:
            return driver.client_for(config)

        self._parts.target.hot = HotCache(
            client,
            self.keys.prefix,
            config_key=config,
            doc_marker=DOC_MARKER,
            channels=self.keys.keyspace_channels(database(client)),
            state_of=state_of,
            max_items=max_items,
            max_bytes=max_bytes,
            # on a cluster the space may move to another node (a resharding)
            node_of=node_of if getattr(driver, "nodes", None) is not None else None,
        )
        return self._parts.target.hot

    def disable_hot_cache(self) -> None:
        """Stop and drop the hot cache, if any."""
        target = self._parts.target
        if target.hot is not None:
            target.hot.close()
            target.hot = None

    @property
    def hot_cache(self) -> HotCache | None:
        """The hot cache (see :meth:`enable_hot_cache`), or None."""
        return self._parts.target.hot


Space.enable_hot_cache = public("enable_hot_cache", Space.enable_hot_cache)  # type: ignore[method-assign]


class _OfSpace(_TargetFacade):
    """A facade of a target that belongs to a space (a version view, a stage): made from
    the space's facade, whose driver and context it shares, and the target; its parts (with
    at least ``reads`` and ``searches``) are built by the class's ``_parts_of``."""

    _parts_of: Any

    def __init__(self, space: Any, target: Any) -> None:
        self.space = space
        self._driver = space._driver
        self._context = space._context
        self._parts = self._parts_of(target)

    # the reads and searches of its target (not counted in the hub's metrics)
    count = Op(Reads.count, _reads)
    get = Op(Reads.get, _reads)
    get_many = Op(Reads.get_many, _reads)
    get_record = Op(Reads.get_record, _reads)
    get_metadata_many = Op(Reads.get_metadata_many, _reads)
    iter_batches = IterOp(Reads.iter_batches, _reads, item="Batch")
    search = Op(Searches.search, _searches)
    search_many = Op(Searches.search_many, _searches)
    within = Op(Searches.within, _searches)
    similar = Op(Searches.similar, _searches)


class ViewSurface(_OfSpace):
    """The public surface of a version view, declared once for :class:`VersionView` and
    :class:`rediscache.asyncio.AsyncVersionView`: the reads and searches of the version;
    writes raise :class:`ReadOnlyError`. Searches wait until the version's index is
    complete (it is built in the background after the live space first diverges from the
    version)."""

    _parts: ViewParts
    _parts_of = ViewParts

    @property
    def version(self) -> Version:
        """The version viewed."""
        return self._parts.target.version

    @property
    def gen_keys(self) -> GenKeys:
        """Key names of the generation holding this version, as last seen (no round trip).
        For tools that inspect Redis directly; a later write to the live space may move the
        version to a copy."""
        return self._parts.target.gen

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.space.name!r}, {self.version})"

    def __len__(self) -> int:
        """Number of embeddings in the version (no round trip)."""
        return self.version.count

    def _read_only(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        raise ReadOnlyError(
            f"{self._where()} is read-only: write to the space, or rollback() to this version"
        )

    put = put_many = delete = update_mean = update_vectors = _read_only


class VersionView(SyncFacade, ViewSurface):
    """A read-only view of one version (from :meth:`Space.at`): see :class:`ViewSurface`."""


class StageSurface(_OfSpace):
    """The public surface of a stage (a release being built), declared once for
    :class:`Stage` and :class:`rediscache.asyncio.AsyncStage`: the writes, reads and
    searches of a space, on the stage's own generation, which no reader of the live space
    sees, plus :meth:`~rediscache.stages.StageOps.build`, ``diff``, ``publish`` and
    ``discard`` (documented in :class:`rediscache.stages.StageOps`). Writes are checked
    exactly as the live space's are. Every call checks that the stage still exists: after
    it is published or discarded, calls raise :class:`StageNotFoundError`."""

    _parts: StageParts
    _parts_of = StageParts

    @property
    def label(self) -> str:
        """The stage's label."""
        return self._parts.target.label

    @property
    def name(self) -> str:
        """The name of the stage's space."""
        return self.config.name

    @property
    def gen_keys(self) -> GenKeys:
        """Key names of the stage's generation (no round trip). For tools that inspect
        Redis directly."""
        return self._parts.target.gen

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.space.name!r}, {self.label!r})"

    validate = Local(Writes.validate, _writes)
    validate_row = Local(Writes.validate_row, _writes)

    put = Op(Writes.put, _writes)
    put_many = Op(Writes.put_many, _writes)
    update_vectors = Op(Writes.update_vectors, _writes)
    delete = Op(Writes.delete, _writes)

    build = Op(StageOps.build, _ops)
    diff = Op(StageOps.diff, _ops)
    publish = Op(StageOps.publish, _ops)
    discard = Op(StageOps.discard, _ops)


class Stage(SyncFacade, StageSurface):
    """A staged release of a space (from :meth:`Space.stage` or :meth:`Space.staged`):
    see :class:`StageSurface`. ``len(stage)`` counts its embeddings."""

    def __len__(self) -> int:
        """:meth:`count`: the number of embeddings in the stage."""
        return self.count()
