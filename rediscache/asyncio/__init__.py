"""asyncio twins of the hub and a space: :class:`AsyncHub`, :class:`AsyncSpace` and
:class:`AsyncVersionView`.

    >>> from rediscache import connect_async
    >>> hub = await connect_async()                  # or connect_async(url) / (client=r)
    >>> async with hub:
    ...     items = await hub.space("items")
    ...     await items.put_many(keys, vectors, metadata)
    ...     hits = await items.search(query_vector, k=10, filter={"genre": "drama"})

Every method has the sync name, arguments, results, errors and round trips, and is
awaited: the data plane, versions (``snapshot``, ``at``, ``rollback``, ``diff``...),
``info``, ``count`` (``len`` of a sync space), ``iter_batches`` (an async iterator) and the
hub's ``create_space``, ``space``, ``spaces``, ``drop_space``. ``get_or_compute``'s
``compute`` may be an async function.

One implementation serves both: every operation is a flow (:mod:`rediscache.effects`)
written once in the space's parts; the sync classes run it with
:class:`rediscache.drive.SyncDriver`, these with :class:`rediscache.drive.AsyncDriver`
(docs/architecture.md). Calls are counted in ``AsyncHub.metrics()``.

Round trips: reads send their commands in one write and parse the whole reply stream with
hiredis (:func:`rediscache.wire.roundtrip_async`), which keeps ``get_many(100)`` within
~1.2x of the sync call (docs/serving.md).
"""

from .hub import AsyncHub, connect_async
from .space import (
    AsyncPartitionedSpace,
    AsyncPartitionedStage,
    AsyncPartitionedVersionView,
    AsyncSpace,
    AsyncStage,
    AsyncVersionView,
)

__all__ = [
    "SYNC_ONLY",
    "AsyncHub",
    "AsyncPartitionedSpace",
    "AsyncPartitionedStage",
    "AsyncPartitionedVersionView",
    "AsyncSpace",
    "AsyncStage",
    "AsyncVersionView",
    "connect_async",
]

#: Public methods of the sync classes that the asyncio ones do not have, and why: the
#: in-process hot cache keeps itself correct with a listener thread on a sync connection.
SYNC_ONLY = frozenset({"enable_hot_cache", "disable_hot_cache", "hot_cache"})
