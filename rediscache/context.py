"""What the spaces of one hub share, without I/O: :class:`HubContext` (the count of
connections the hub's client opened, each space's :class:`IndexReadiness`, the metrics and
the index wait)."""

from __future__ import annotations

from collections.abc import Callable

from .metrics import Metrics
from .wire import ConnectCounter

__all__ = ["HubContext", "IndexReadiness"]


class IndexReadiness:
    """What a hub knows about one space's search indexes: the generations whose index was
    complete when last checked (``ready``) and the connection count of the space's server
    then (``seen``; -1: never checked), and that server's run id (``INFO server``) with the
    connection count it was read at (``run_seen``). One per space and hub, shared by every
    object of that space, so that ``hub.space(name)`` per request does not check again."""

    __slots__ = ("node", "ready", "run_id", "run_seen", "seen")

    def __init__(self) -> None:
        self.ready: set[int] = set()
        self.seen = -1
        #: The connection counter ``seen`` was read from: on a cluster, another one means
        #: the space's slot moved to another node (see HubContext.connects_of).
        self.node: ConnectCounter | None = None
        self.run_id: bytes | None = None
        self.run_seen = -1


class HubContext:
    """What the spaces of one hub share, without I/O: the count of connections its client
    opened (:func:`rediscache.wire.count_connects`; on a cluster, per node:
    ``counter_for(key)`` gives the counter of the node that serves ``key``), each space's
    :class:`IndexReadiness`, the metrics, and :attr:`index_wait`."""

    def __init__(
        self,
        connects: ConnectCounter,
        index_wait: float,
        counter_for: Callable[[str], ConnectCounter] | None = None,
    ) -> None:
        self.connects = connects
        self._counter_for = counter_for
        self.metrics = Metrics()
        #: Seconds a search waits for its space's index to be complete.
        self.index_wait = index_wait
        self._indexes: dict[str, IndexReadiness] = {}

    def connects_of(self, key: str) -> ConnectCounter:
        """The connection counter of the server that serves ``key`` (a space's config key:
        the space's server)."""
        if self._counter_for is None:
            return self.connects
        return self._counter_for(key)

    def readiness(self, name: str) -> IndexReadiness:
        """What this hub knows about the indexes of space ``name``."""
        found = self._indexes.get(name)
        if found is None:
            found = self._indexes[name] = IndexReadiness()
        return found

    def forget(self, name: str) -> None:
        """Forget space ``name`` (dropped)."""
        self._indexes.pop(name, None)
