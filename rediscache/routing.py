"""Running flows on a Redis Cluster: each effect goes to the primary that owns its keys.

A flow (:mod:`rediscache.effects`) is written for one server. On a cluster, the hub's driver
is a :class:`ClusterDriver` (sync) or :class:`AsyncClusterDriver` (asyncio): it keeps a plain
client per primary (:class:`ClusterNodes`, shared by a hub's drivers) and a map of the 16,384
slots, and hands each effect to the one-node driver (:class:`rediscache.drive.SyncDriver` /
``AsyncDriver``) of the node that owns its slot, so every flow, script and fast path of the
single-node hub runs unchanged on the node of its space.

Which node an effect goes to:

* a command's key decides (:func:`command_key`): the first argument for most commands, the
  first key of a script call (``EVALSHA sha numkeys key...``), the ``MATCH`` pattern of a
  ``SCAN``. Every key of a space carries the hash tag ``{space}`` (:mod:`rediscache.keys`),
  and so does the name of each of its search indexes, so a space's commands all go to the
  node of its slot, where its index lives (RediSearch 2.10 indexes a node's own keys only);
* a command without a key (``INFO``, ``FT._LIST``, ``SCRIPT LOAD``, ``PING``...) goes to the
  node the flow last sent a keyed command to (the node of the space it is working on), or
  to the first primary when it has sent none;
* a round trip or a pipeline without ``MULTI`` whose commands belong to several nodes is
  split: each node gets its commands (in their order), the replies are put back in order;
  a transaction or a ``WATCH`` goes whole to the node of its first key (Redis refuses keys
  of another slot in it: ``CROSSSLOT``).

When a node answers ``MOVED`` (the slot map changed: a resharding or a failover), nothing
ran there: the driver reads the slot map again (``CLUSTER SLOTS``) and sends the effect
once more to the new owner, at most :data:`MOVES` times.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import redis
import redis.asyncio
from redis.crc import key_slot

from .drive import (
    AsyncDriver,
    Runs,
    SyncDriver,
    background_task,
    run_async,
    settle_tasks,
    start_background,
)
from .drive import stop_workers as _stop_workers
from .effects import (
    Background,
    Broadcast,
    Command,
    Compute,
    Effect,
    Flights,
    Flow,
    Once,
    Pipeline,
    Roundtrip,
    Sleep,
    Transaction,
    WaitFlights,
)
from .errors import ServerError
from .wire import ConnectCounter, count_connects

__all__ = [
    "MOVES", "AsyncClusterDriver", "ClusterDriver", "ClusterNodes", "command_key",
]  # fmt: skip

T = TypeVar("T")

#: Times an effect is sent again after a ``MOVED`` reply (each after reading the slot map).
MOVES = 3

#: Commands without a key: they go to the node the flow is working on.
_KEYLESS = frozenset(
    b"PING INFO MODULE COMMAND FT._LIST ACL CONFIG SCRIPT DBSIZE BGREWRITEAOF CLIENT TIME "
    b"CLUSTER ROLE WAIT WAITAOF LASTSAVE FT.CONFIG FUNCTION MULTI EXEC DISCARD".split()
)
#: Commands whose key is their third word (``MEMORY USAGE key``, ``FT.CURSOR READ index``).
_SECOND = frozenset({b"MEMORY", b"OBJECT", b"FT.CURSOR"})
#: Script calls: ``EVALSHA sha numkeys key...``.
_SCRIPTS = frozenset({b"EVAL", b"EVALSHA", b"EVAL_RO", b"EVALSHA_RO", b"FCALL", b"FCALL_RO"})

Address = tuple[str, int]


def _word(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value.upper()
    return str(value).encode().upper()


def command_key(command: tuple[Any, ...]) -> Any:
    """The key that decides the node of ``command`` (str or bytes), or None for a command
    without one. Pure."""
    name = _word(command[0])
    if name in _SCRIPTS:
        return command[3] if len(command) > 3 and int(command[2]) > 0 else None
    if name == b"SCAN":
        for i, word in enumerate(command[:-1]):
            if _word(word) == b"MATCH":
                pattern = command[i + 1]
                text = pattern if isinstance(pattern, bytes) else str(pattern).encode()
                return pattern if b"{" in text and b"}" in text else None
        return None
    if name in _KEYLESS:
        return None
    if name in _SECOND:
        return command[2] if len(command) > 2 else None
    return command[1] if len(command) > 1 else None


def _slot(key: Any) -> int:
    return int(key_slot(key if isinstance(key, bytes) else str(key).encode()))


def _moved(value: Any) -> bool:
    """Whether ``value`` (a reply, an exception, or a list of them) says a slot moved to
    another node (``MOVED``; redis-py's MovedError)."""
    if isinstance(value, redis.exceptions.MovedError):
        return True
    if isinstance(value, redis.ResponseError):
        return str(value).startswith("MOVED ")
    if isinstance(value, list):
        return any(_moved(v) for v in value if isinstance(v, Exception | list))
    return False


class ClusterNodes:
    """The primaries of one cluster, as a hub sees them: a client per primary (made on
    first use by ``new_client(host, port)``, connections counted by the hub's counter) and
    the slot map. Shared by every driver of the hub (threads, background work). No I/O:
    :meth:`load` takes a ``CLUSTER SLOTS`` reply its drivers read."""

    def __init__(self, new_client: Callable[[str, int], Any], seed: Address) -> None:
        self._new_client = new_client
        self._lock = threading.Lock()
        self._clients: dict[Address, Any] = {}
        self._counters: dict[Address, ConnectCounter] = {}
        self._adopted: set[Address] = set()
        self._slots: list[Address] = [seed] * 16384
        #: The first primary (keyless commands of a flow that sent no keyed one).
        self.default = seed
        #: How many times the slot map was read.
        self.loads = 0

    def load(self, reply: Any) -> None:
        """Take the slot map from a ``CLUSTER SLOTS`` reply (RESP2: ``[start, end,
        [host, port, id, ...], replicas...]`` per range).

        Raises:
            ServerError: the reply covers no slot (the cluster is not formed).
        """
        slots = list(self._slots)
        seen = []
        for entry in reply or []:
            start, end, primary = int(entry[0]), int(entry[1]), entry[2]
            host = primary[0].decode() if isinstance(primary[0], bytes) else str(primary[0])
            where = (host, int(primary[1]))
            slots[start : end + 1] = [where] * (end - start + 1)
            seen.append((start, where))
        if not seen:
            raise ServerError("the cluster serves no slot yet (CLUSTER SLOTS is empty)")
        with self._lock:
            self._slots = slots
            self.default = min(seen)[1]
            self.loads += 1

    def address(self, key: Any) -> Address:
        """The primary that owns ``key``'s slot, as last read."""
        return self._slots[_slot(key)]

    def counter_for(self, key: Any) -> ConnectCounter:
        """The connection counter of the node that owns ``key``'s slot (see
        :class:`rediscache.context.HubContext`): a space's readiness is checked again after
        a new connection to its own node, or when its slot moved to another node."""
        where = self.address(key)
        found = self._counters.get(where)
        if found is None:
            with self._lock:
                found = self._counters.setdefault(where, ConnectCounter())
        return found

    def client(self, where: Address) -> Any:
        """The client of the node at ``where`` (made on first use)."""
        found = self._clients.get(where)
        if found is None:
            with self._lock:
                found = self._clients.get(where)
                if found is None:
                    found = self._new_client(*where)
                    counter = self._counters.setdefault(where, ConnectCounter())
                    count_connects(found, counter)
                    self._clients[where] = found
        return found

    def adopt(self, client: Any) -> None:
        """Use ``client`` (a plain client of one of the nodes, e.g. the one a hub was made
        with) for its own node instead of making one; :meth:`made` leaves it out."""
        settings = client.connection_pool.connection_kwargs
        where = (str(settings["host"]), int(settings["port"]))
        with self._lock:
            self._clients[where] = client
            self._counters[where] = count_connects(client, self._counters.get(where))
            self._adopted.add(where)

    def adopted(self, where: Address) -> bool:
        """Whether the client of ``where`` was adopted (another's: keep no connection)."""
        return where in self._adopted

    def made(self) -> list[Any]:
        """The clients made here (not adopted): the hub closes them."""
        with self._lock:
            return [c for w, c in self._clients.items() if w not in self._adopted]

    def primaries(self) -> list[Address]:
        """The primaries that own slots, first slot first."""
        seen: dict[Address, None] = {}
        for where in self._slots:
            seen.setdefault(where, None)
        return list(seen)


def _split(
    effect: Effect, nodes: ClusterNodes, sticky: Address
) -> tuple[Address, list[tuple[Address, Effect, list[int]]] | None]:
    """Where ``effect`` goes: the node (when it goes whole to one), or its parts per node
    with the positions of their commands (a round trip or pipeline over several nodes)."""
    kind = type(effect)
    if kind is Command:
        key = effect.at if effect.at is not None else command_key(effect.args)  # type: ignore[union-attr]
        return (sticky if key is None else nodes.address(key)), None
    if kind is Once:
        key = command_key(effect.command)  # type: ignore[union-attr]
        return (sticky if key is None else nodes.address(key)), None
    if kind is Transaction:
        return nodes.address(effect.watch), None  # type: ignore[union-attr]
    commands = effect.commands  # type: ignore[union-attr]
    groups: dict[Address, list[int]] = {}
    for i, command in enumerate(commands):
        key = command_key(command)
        groups.setdefault(sticky if key is None else nodes.address(key), []).append(i)
    if len(groups) <= 1 or (kind is Pipeline and effect.transaction):  # type: ignore[union-attr]
        first = next(
            (nodes.address(k) for c in commands if (k := command_key(c)) is not None), sticky
        )
        return first, None
    parts: list[tuple[Address, Effect, list[int]]] = []
    for n, (where, positions) in enumerate(groups.items()):
        subset = [commands[i] for i in positions]
        part: Effect
        if kind is Roundtrip:
            meanwhile = effect.meanwhile if n == 0 else None  # type: ignore[union-attr]
            part = Roundtrip(subset, None, meanwhile)
        else:
            part = Pipeline(subset, False, effect.raise_on_error)  # type: ignore[union-attr]
        parts.append((where, part, positions))
    return sticky, parts


def _merge(size: int, results: Iterator[tuple[list[int], list[Any]]]) -> list[Any]:
    replies: list[Any] = [None] * size
    for positions, got in results:
        for i, reply in zip(positions, got, strict=True):
            replies[i] = reply
    return replies


_LOCAL_KINDS = (Sleep, Compute, Flights, WaitFlights)


class ClusterDriver:
    """Performs flows on a cluster, each effect on the node that owns its keys (see the
    module's doc); the sync twin of :class:`AsyncClusterDriver`. ``keep``: whether its
    one-node drivers keep connections between calls (:class:`rediscache.wire.Wire`)."""

    def __init__(self, nodes: ClusterNodes, *, keep: bool = True) -> None:
        self.nodes = nodes
        self._keep = keep
        self._drivers: dict[Address, SyncDriver] = {}
        self._local = SyncDriver(None)
        self._stop = threading.Event()
        self._workers: set[threading.Thread] = set()

    @property
    def client(self) -> Any:
        """The client of the first primary."""
        return self.nodes.client(self.nodes.default)

    def client_for(self, key: Any) -> Any:
        """The client of the node that owns ``key`` (as last known)."""
        return self.nodes.client(self.nodes.address(key))

    def _driver(self, where: Address) -> SyncDriver:
        found = self._drivers.get(where)
        if found is None:
            # connections are kept only from pools the hub owns (a client passed in: none)
            keep = self._keep and not self.nodes.adopted(where)
            found = self._drivers[where] = SyncDriver(self.nodes.client(where), keep=keep)
        return found

    def run(self, flow: Flow[T]) -> T:
        """Run ``flow`` to its result (see :meth:`rediscache.drive.SyncDriver.run`)."""
        sticky = self.nodes.default
        send = flow.send
        try:
            effect: Any = send(None)
            while True:
                try:
                    if isinstance(effect, _LOCAL_KINDS):
                        reply = self._local.perform(effect)
                    elif type(effect) is Broadcast:
                        reply = [
                            self._driver(where).perform(Command(effect.args))
                            for where in self.nodes.primaries()
                        ]
                    elif type(effect) is Background:
                        start_background(
                            lambda: ClusterDriver(self.nodes, keep=False),
                            effect,
                            self._stop,
                            self._workers,
                        )
                        reply = None
                    else:
                        reply, sticky = self._routed(effect, sticky)
                except BaseException as exc:
                    effect = flow.throw(exc)
                    continue
                effect = send(reply)
        except StopIteration as stop:
            result: T = stop.value
            return result

    def _routed(self, effect: Effect, sticky: Address) -> tuple[Any, Address]:
        for attempt in range(MOVES + 1):
            where, parts = _split(effect, self.nodes, sticky)
            try:
                if parts is None:
                    reply = self._driver(where).perform(effect)
                else:
                    reply = _merge(
                        len(effect.commands),  # type: ignore[union-attr]
                        ((pos, self._driver(at).perform(part)) for at, part, pos in parts),
                    )
            except redis.ResponseError as exc:
                if attempt == MOVES or not _moved(exc):
                    raise
                self._reload()
                continue
            if attempt < MOVES and _moved(reply):
                self._reload()
                continue
            return reply, where
        raise AssertionError("unreachable")

    def _reload(self) -> None:
        self.nodes.load(self._driver(self.nodes.default).perform(Command(("CLUSTER", "SLOTS"))))

    def close(self, timeout: float = 2.0) -> None:
        """Stop the background work it started, then release the connections its one-node
        drivers kept."""
        _stop_workers(self._stop, self._workers, timeout)
        for driver in self._drivers.values():
            driver.close(timeout=0)


class AsyncClusterDriver:
    """:class:`ClusterDriver` for ``redis.asyncio`` clients."""

    def __init__(self, nodes: ClusterNodes) -> None:
        self.nodes = nodes
        self._drivers: dict[Address, AsyncDriver] = {}
        self._runs = Runs()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def client(self) -> Any:
        """The client of the first primary."""
        return self.nodes.client(self.nodes.default)

    def client_for(self, key: Any) -> Any:
        """The client of the node that owns ``key`` (as last known)."""
        return self.nodes.client(self.nodes.address(key))

    def _driver(self, where: Address) -> AsyncDriver:
        found = self._drivers.get(where)
        if found is None:
            found = self._drivers[where] = AsyncDriver(self.nodes.client(where))
        return found

    async def run(self, flow: Flow[T]) -> T:
        """Run ``flow`` to its result (see :func:`rediscache.drive.run_async`)."""
        sticky = [self.nodes.default]  # the node of the flow's last keyed effect

        async def perform(effect: Any) -> Any:
            if isinstance(effect, _LOCAL_KINDS):
                return await self._driver(sticky[0]).perform(effect)
            if type(effect) is Broadcast:
                return await asyncio.gather(
                    *(
                        self._driver(where).perform(Command(effect.args))
                        for where in self.nodes.primaries()
                    )
                )
            if type(effect) is Background:
                background_task(self.run, effect, self._runs, self._tasks)
                return None
            reply, sticky[0] = await self._routed(effect, sticky[0])
            return reply

        return await run_async(flow, perform)

    async def _routed(self, effect: Effect, sticky: Address) -> tuple[Any, Address]:
        for attempt in range(MOVES + 1):
            where, parts = _split(effect, self.nodes, sticky)
            try:
                if parts is None:
                    reply = await self._driver(where).perform(effect)
                else:
                    got = await asyncio.gather(
                        *(self._driver(at).perform(part) for at, part, _ in parts)
                    )
                    reply = _merge(
                        len(effect.commands),  # type: ignore[union-attr]
                        iter([(pos, g) for (_, _, pos), g in zip(parts, got, strict=True)]),
                    )
            except redis.ResponseError as exc:
                if attempt == MOVES or not _moved(exc):
                    raise
                await self._reload()
                continue
            if attempt < MOVES and _moved(reply):
                await self._reload()
                continue
            return reply, where
        raise AssertionError("unreachable")

    async def _reload(self) -> None:
        reply = await self._driver(self.nodes.default).perform(Command(("CLUSTER", "SLOTS")))
        self.nodes.load(reply)

    async def settle(self, timeout: float | None = None) -> None:
        """Wait for the background tasks at most ``timeout`` seconds, then cancel the rest."""
        await settle_tasks(self._tasks, timeout)
        for driver in self._drivers.values():
            await driver.settle(0)
