"""asyncio twins of the hub and a space: :class:`AsyncHub` and :class:`AsyncSpace`.

    >>> from rediscache import connect_async
    >>> hub = await connect_async()                  # or connect_async(url) / (client=r)
    >>> async with hub:
    ...     items = await hub.space("items")
    ...     await items.put_many(keys, vectors, metadata)
    ...     hits = await items.search(query_vector, k=10, filter={"genre": "drama"})

The data plane has the sync names, arguments, results, errors and round trips: ``put``,
``put_many``, ``delete``, ``get``, ``get_many``, ``search``, ``search_many``, ``within``,
``similar``, ``average``, ``combine``, ``update_mean`` and ``get_or_compute`` (whose
``compute`` may be an async function). Every method's docstring is that of the sync
:class:`rediscache.Space` method: each call here is ``await``-ed instead.

How the two share one implementation (this module is a shell around the sync code's pure
parts, with ``await`` where the sync code does I/O):

* Validation, command building and reply parsing are the sync code's: the plans of
  :class:`rediscache.operations.VectorOps` (one script call plus the arithmetic around it),
  the search plans and hit parsing of :class:`rediscache.reader.Reader`, the script wrappers
  of :mod:`rediscache.scripts` (run here with :func:`rediscache.scripts.call_async`), the
  checks and row encoding of :meth:`rediscache.Space._prepare`, and the whole
  ``get_or_compute`` algorithm (:mod:`rediscache.caching` writes it as a flow of effects,
  performed here with ``await``). Each :class:`AsyncSpace` holds the sync :class:`Space` of
  the same space (:attr:`AsyncSpace.sync`) for these.
* Reads check the space's state in the same round trip and retry when a snapshot or rollback
  changed it, like the sync reads; writes go through ``write.lua`` with the state.
* The control plane (:meth:`AsyncHub.create_space`, ``drop_space``, ``space``, ``spaces``)
  and the one-off copy of a live generation that a version shares (the first write after a
  snapshot or rollback) run the sync implementation in a worker thread
  (``asyncio.to_thread``) on a sync twin of the client, opened with the same connection
  settings: they are rare, and this keeps a single implementation of them. Everything else
  a space offers (versions, ``info``, ``len``, ``iter_batches``) is there the same way:
  ``await asyncio.to_thread(space.sync.snapshot, "v1")``.

Async calls are counted in ``AsyncHub.metrics()`` (the same counters as the sync twin's
``hub.metrics()``). Not covered here: the in-process hot cache (sync spaces only).

Round trips: reads and writes send their commands in one write and parse the whole reply
stream with hiredis (:func:`roundtrip_async`), which keeps ``get_many(100)`` within ~1.2x of
the sync call (docs/serving.md).
"""

from .hub import AsyncHub, connect_async
from .space import AsyncSpace, roundtrip_async

__all__ = ["AsyncHub", "AsyncSpace", "connect_async", "roundtrip_async"]
