"""The asyncio space and version view: :class:`AsyncSpace` and :class:`AsyncVersionView`,
the surfaces of :mod:`rediscache.space` on an asyncio driver (see :mod:`rediscache.asyncio`)."""

from __future__ import annotations

from ..drive import AsyncFacade, async_op
from ..partitioned import (
    PartitionedStageSurface,
    PartitionedSurface,
    PartitionedViewSurface,
    PartitionSet,
    _set,
)
from ..space import SpaceSurface, StageSurface, ViewSurface, _stages, _versions
from ..stages import Stages, StageTarget
from ..versions import Versions, VersionTarget

__all__ = [
    "AsyncPartitionedSpace", "AsyncPartitionedStage", "AsyncPartitionedVersionView",
    "AsyncSpace", "AsyncStage", "AsyncVersionView",
]  # fmt: skip


def _view_of(space: AsyncSpace, target: VersionTarget) -> AsyncVersionView:
    return AsyncVersionView(space, target)


def _stage_of(space: AsyncSpace, target: StageTarget) -> AsyncStage:
    return AsyncStage(space, target)


class AsyncSpace(AsyncFacade, SpaceSurface):
    """:class:`rediscache.Space` for asyncio: the same methods (:class:`SpaceSurface`),
    arguments, results, errors and round trips, each awaited (``iter_batches`` is an async
    iterator; ``await space.count()`` for ``len(space)``). Get one from
    :meth:`AsyncHub.space` or :meth:`AsyncHub.create_space`.

    Use it from the event loop of its hub. Concurrent calls on one space are fine (each
    takes a connection of the pool for its round trip). Not here: the in-process hot cache
    (:data:`rediscache.asyncio.SYNC_ONLY`).
    """

    at = async_op("at", Versions.at, _versions, wrap=_view_of, returns="AsyncVersionView")
    stage = async_op("stage", Stages.stage, _stages, wrap=_stage_of, returns="AsyncStage")
    staged = async_op("staged", Stages.staged, _stages, wrap=_stage_of, returns="AsyncStage")


class AsyncVersionView(AsyncFacade, ViewSurface):
    """:class:`rediscache.VersionView` for asyncio (from ``await space.at(ref)``): see
    :class:`ViewSurface`; reads, searches and ``count()`` are awaited, ``len()`` is not, and
    writes raise :class:`ReadOnlyError` when called."""


class AsyncStage(AsyncFacade, StageSurface):
    """:class:`rediscache.Stage` for asyncio (from ``await space.stage()``): see
    :class:`StageSurface`; every call is awaited (``await stage.count()`` for ``len``)."""


class AsyncPartitionedVersionView(AsyncFacade, PartitionedViewSurface):
    """:class:`rediscache.partitioned.PartitionedVersionView` for asyncio: every read and
    search awaited, ``len()`` not."""


def _partitioned_view_of(
    space: AsyncPartitionedSpace, parts: PartitionSet
) -> AsyncPartitionedVersionView:
    return AsyncPartitionedVersionView(space, parts)


class AsyncPartitionedStage(AsyncFacade, PartitionedStageSurface):
    """:class:`rediscache.partitioned.PartitionedStage` for asyncio: every call awaited
    (``await stage.count()`` for ``len``)."""


def _partitioned_stage_of(
    space: AsyncPartitionedSpace, parts: PartitionSet
) -> AsyncPartitionedStage:
    return AsyncPartitionedStage(space, parts)


class AsyncPartitionedSpace(AsyncFacade, PartitionedSurface):
    """:class:`rediscache.partitioned.PartitionedSpace` for asyncio: the same methods
    (:class:`rediscache.partitioned.PartitionedSurface`), each awaited (``await
    space.count()`` for ``len``). The partitions' round trips of one call are sent
    together (on a cluster: one task per node)."""

    at = async_op(
        "at",
        PartitionSet.at,
        _set,
        wrap=_partitioned_view_of,
        returns="AsyncPartitionedVersionView",
    )
    stage = async_op(
        "stage",
        PartitionSet.stage,
        _set,
        wrap=_partitioned_stage_of,
        returns="AsyncPartitionedStage",
    )
    staged = async_op(
        "staged",
        PartitionSet.staged,
        _set,
        wrap=_partitioned_stage_of,
        returns="AsyncPartitionedStage",
    )
