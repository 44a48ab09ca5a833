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
once more to the new owner, at most :data:`MOVES` times. While a slot moves between nodes,
reads follow the keys already moved (``ASK``), and searches and writes over keys on both
nodes wait for the move to end (:func:`_route`; at most :data:`RESHARD_WAIT` seconds, then
:class:`rediscache.errors.ReshardingError`). A node that cannot be reached makes the map
be read again from another before the error reaches the caller, whose retry (reads:
:mod:`rediscache.guard`) then finds a replica promoted in its place. docs/scale.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any, NamedTuple, TypeVar

import redis
import redis.asyncio
from redis.crc import key_slot

from .drive import (
    AsyncDriver,
    Runs,
    SyncDriver,
    background_task,
    run_async,
    run_sync,
    settle_tasks,
    start_background,
    stop_workers,
)
from .durability import Durability, short_of_durability
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
from .errors import ReshardingError, ServerError
from .guard import Failover, refused, unsent
from .wire import ConnectCounter, NotSent, count_connects

__all__ = [
    "MOVES", "RESHARD_PAUSE", "RESHARD_WAIT", "AsyncClusterDriver", "ClusterDriver",
    "ClusterNodes", "command_key",
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


class ClusterNodes:
    """The primaries of one cluster, as a hub sees them: a client per primary (made on
    first use by ``new_client(host, port)``, its connections counted per node:
    :meth:`counter_for`) and the slot map. Shared by every driver of the hub (threads,
    background work). No I/O: :meth:`load` takes a ``CLUSTER SLOTS`` reply its drivers
    read."""

    def __init__(self, new_client: Callable[[str, int], Any], seed: Address) -> None:
        self._new_client = new_client
        self._lock = threading.Lock()
        self._clients: dict[Address, Any] = {}
        self._counters: dict[Address, ConnectCounter] = {}
        self._adopted: set[Address] = set()
        self._slots: list[Address] = [seed] * 16384
        self._primaries = [seed]
        self._replicas: list[Address] = []
        self._seed = seed
        #: The first primary (keyless commands of a flow that sent no keyed one).
        self.default = seed
        #: How many times the slot map was read.
        self.loads = 0

    def load(self, reply: Any, asked: Address | None = None) -> None:
        """Take the slot map from a ``CLUSTER SLOTS`` reply (RESP2: ``[start, end,
        [host, port, id, ...], replicas...]`` per range) of the node at ``asked`` (default:
        the first node): a node that does not know its own address (a cluster of one, never
        met by another) names it ``""``, which means that node's address.

        Raises:
            ServerError: the reply covers no slot (the cluster is not formed).
        """
        slots = list(self._slots)
        seen = []
        replicas: dict[Address, None] = {}
        for entry in reply or []:
            start, end = int(entry[0]), int(entry[1])
            where, *copies = [self._address_of(node, asked) for node in entry[2:]]
            slots[start : end + 1] = [where] * (end - start + 1)
            seen.append((start, where))
            replicas.update(dict.fromkeys(copies))
        if not seen:
            raise ServerError("the cluster serves no slot yet (CLUSTER SLOTS is empty)")
        owners = list(dict.fromkeys(where for _, where in sorted(seen)))
        with self._lock:
            self._slots = slots
            self._primaries = owners
            self._replicas = [r for r in replicas if r not in owners]
            self.default = owners[0]
            self.loads += 1

    def _address_of(self, node: Any, asked: Address | None) -> Address:
        host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
        if host in ("", "?"):  # the node asked, which does not know its own address
            host = (asked or self._seed)[0]
        return host, int(node[1])

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
        return list(self._primaries)

    def everyone(self) -> list[Address]:
        """The primaries, then their replicas (as of the last slot map)."""
        return [*self._primaries, *self._replicas]


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


class _At(NamedTuple):
    """A step of :func:`_route`: perform ``effect`` on the node at ``where``."""

    where: Address
    effect: Effect


class _All(NamedTuple):
    """A step of :func:`_route`: perform each of ``parts`` (concurrently where the driver
    can); the results in order."""

    parts: list[_At]


#: Seconds a search (or a write touching keys on both nodes) waits for a slot being moved
#: between nodes before raising ReshardingError; polled every RESHARD_PAUSE seconds.
RESHARD_WAIT = 10.0
RESHARD_PAUSE = 0.05


def _trouble(value: Any) -> str | None:
    """What a reply, an error or a list of replies says about the slot: ``moved`` (it has
    another owner now), ``ask`` (it is being moved and the key is on the new node),
    ``tryagain`` (being moved, keys on both nodes), ``aborted`` (a transaction refused:
    perhaps for one of those), else None."""
    if isinstance(value, list):
        found = [t for v in value if isinstance(v, Exception | list) and (t := _trouble(v))]
        for kind in ("moved", "ask", "tryagain", "aborted"):
            if kind in found:
                return kind
        return None
    if isinstance(value, redis.exceptions.MovedError) or (
        isinstance(value, redis.ResponseError) and str(value).startswith("MOVED ")
    ):
        return "moved"
    if isinstance(value, redis.exceptions.AskError) or (
        isinstance(value, redis.ResponseError) and str(value).startswith("ASK ")
    ):
        return "ask"
    if isinstance(value, redis.exceptions.TryAgainError) or (
        isinstance(value, redis.ResponseError) and str(value).startswith("TRYAGAIN")
    ):
        return "tryagain"
    if isinstance(value, redis.exceptions.ExecAbortError):
        return "aborted"
    return None


def _searches(commands: list[tuple[Any, ...]]) -> bool:
    """Whether any of ``commands`` is a search module command (FT.*): its index covers
    one node's documents, so it cannot follow a key to another node."""
    return any(_word(c[0]).startswith(b"FT.") for c in commands)


def _commands(effect: Any) -> list[tuple[Any, ...]]:
    kind = type(effect)
    if kind is Command:
        return [effect.args]
    if kind is Once:
        return [effect.command]
    if kind is Transaction:
        return list(effect.reads)
    return list(effect.commands)


def _quiet(pipeline: Any) -> Any:
    """``pipeline`` with its error replies returned as values (raised by the route)."""
    return pipeline._replace(raise_on_error=False)


def _asked_to(error: Any) -> Address:
    text = str(error).split()
    host, port = text[-1].rsplit(":", 1)
    return host, int(port)


def _reload(nodes: ClusterNodes, avoid: Address | None = None) -> Generator[Any, Any, None]:
    """Read the slot map again (``CLUSTER SLOTS``), from the first primary that answers
    (``avoid``: one not to ask, e.g. a node that just failed)."""
    error: Exception | None = None
    for where in nodes.primaries():
        if where == avoid:
            continue
        try:
            reply = yield _At(where, Command(("CLUSTER", "SLOTS")))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            error = exc
            continue
        nodes.load(reply, where)
        return
    raise error or redis.ConnectionError("no node of the cluster answered")


def _migrating(nodes: ClusterNodes, effect: Any, where: Address) -> Generator[Any, Any, bool]:
    """Whether the slot of ``effect``'s first key is being moved away from or into the node
    at ``where`` (its line in ``CLUSTER NODES`` lists ``[slot->-id]`` or ``[slot-<-id]``)."""
    key = next((k for c in _commands(effect) if (k := command_key(c)) is not None), None)
    if type(effect) is Transaction:
        key = effect.watch
    if key is None:
        return False
    slot = _slot(key)
    text = yield _At(where, Command(("CLUSTER", "NODES")))
    raw = text if isinstance(text, bytes) else str(text).encode()
    return f"[{slot}->-".encode() in raw or f"[{slot}-<-".encode() in raw


def _follow(effect: Any, outcome: Any, box: list[Address]) -> Generator[Any, Any, Any]:
    """``effect``'s result once the commands answered ASK are sent to the node now holding
    their keys (``ASKING`` first, on the same connection): nothing ran where they were.
    Error replies come back as values (a Command's error is raised by the caller)."""
    kind = type(effect)
    if kind is Command or kind is Once:
        command = _commands(effect)[0]
        box[0] = _asked_to(outcome)  # a NOSCRIPT there: the script is loaded there
        got = yield _At(box[0], Pipeline([("ASKING",), command], False, False))
        return got[1]
    replies = list(outcome)
    commands = _commands(effect)
    asked: dict[Address, list[int]] = {}
    for i, reply in enumerate(replies):
        if _trouble(reply) == "ask":
            asked.setdefault(_asked_to(reply), []).append(i)
    for where, positions in asked.items():
        framed = [c for i in positions for c in (("ASKING",), commands[i])]
        part = Roundtrip(framed) if kind is Roundtrip else Pipeline(framed, False, False)
        got = yield _At(where, part)
        for i, reply in zip(positions, got[1::2], strict=True):
            replies[i] = reply
    return replies


def _route(
    effect: Any, nodes: ClusterNodes, box: list[Address], wait: float = 0.0
) -> Generator[Any, Any, Any]:
    """Perform ``effect`` on the cluster: its steps (:class:`_At`, :class:`_All`,
    :class:`Sleep`) are performed by a driver, which sends their results back (and throws
    their errors in). Returns the result. ``box`` holds the node of the flow's last keyed
    effect (where its keyless commands go): set to this effect's node before it is sent, so
    that a ``SCRIPT LOAD`` after a ``NOSCRIPT`` error goes where the script was refused.

    ``MOVED``: the slot map is read again and the effect sent to the new owner (at most
    :data:`MOVES` times). During a slot's move between nodes, commands of keys already on
    the new node are answered ``ASK`` and sent there (``ASKING`` first); searches (FT.*),
    scripts and transactions over keys on both nodes (``TRYAGAIN``, an aborted ``EXEC``)
    wait for the move to end, at most :data:`RESHARD_WAIT` seconds, then raise
    :class:`ReshardingError`. Nothing of those ran: retrying them writes nothing twice.

    A node that cannot be reached, or a shard without a primary (``CLUSTERDOWN``), while
    ``wait`` > 0 (the hub's failover_wait): the slot map is read again and the effect sent
    again, after pauses, until a replica has taken over, at most ``wait`` seconds
    (:class:`rediscache.guard.Failover`); nothing of it ran."""
    moves = 0
    deadline: float | None = None
    failing: Failover | None = None
    kind = type(effect)
    quiet = kind is Pipeline  # its error replies are raised here, after following ASKs
    while True:
        where, parts = _split(effect, nodes, box[0])
        box[0] = where
        sent = _quiet(effect) if quiet else effect
        reply: Any = None
        try:
            if parts is None:
                reply = yield _At(where, sent)
            else:
                got = yield _All([_At(at, _quiet(p) if quiet else p) for at, p, _ in parts])
                reply = _merge(
                    len(effect.commands),
                    iter([(pos, g) for (_, _, pos), g in zip(parts, got, strict=True)]),
                )
            outcome: Any = reply
            raised = False
        except redis.ResponseError as exc:
            outcome, raised = exc, True
        except (redis.ConnectionError, redis.TimeoutError, NotSent) as exc:
            # the node may be down and its replica promoted in its place: read the map
            # again (from a node that answers), then wait for a primary, or raise for the
            # caller's retry
            with contextlib.suppress(redis.RedisError, ServerError):
                yield from _reload(nodes, avoid=where)
            if wait > 0 and unsent(exc):
                failing = failing or Failover(wait)
                yield Sleep(failing.pause(exc))
                continue
            raise
        down = refused(outcome) if wait > 0 and parts is None else None
        if down is not None:  # CLUSTERDOWN: the shard has no primary yet
            failing = failing or Failover(wait)
            yield Sleep(failing.pause(down))
            with contextlib.suppress(redis.RedisError, ServerError):
                yield from _reload(nodes)
            continue
        trouble = _trouble(outcome)
        if trouble == "moved" and moves < MOVES:
            moves += 1
            yield from _reload(nodes)
            continue
        pending = trouble in ("ask", "tryagain") or (
            trouble == "aborted" and (yield from _migrating(nodes, effect, where))
        )
        follows = kind is not Transaction and not (kind is Pipeline and effect.transaction)
        if trouble == "ask" and follows and not _searches(_commands(effect)):
            reply = outcome = yield from _follow(effect, outcome, box)
            raised = kind is Command and isinstance(outcome, Exception)
            pending = _trouble(outcome) in ("ask", "tryagain")  # keys on both nodes
        if pending:
            now = time.monotonic()
            deadline = deadline if deadline is not None else now + RESHARD_WAIT
            if now < deadline:
                yield Sleep(RESHARD_PAUSE)
                yield from _reload(nodes)
                continue
            raise ReshardingError(
                f"the cluster is moving a slot of this space to another node and did not "
                f"finish within {RESHARD_WAIT:g} s; nothing was written: retry later"
            ) from (outcome if isinstance(outcome, Exception) else None)
        if raised:
            raise outcome
        if quiet and effect.raise_on_error:
            first = next((r for r in reply if isinstance(r, Exception)), None)
            if first is not None:
                raise first
        return reply


def _broadcast(effect: Broadcast, nodes: ClusterNodes) -> Generator[Any, Any, Any]:
    """The steps of a Broadcast: the command on every primary (and with ``replicas`` on
    every replica, the slot map read again first: a replica added since must not be
    missed by a grant or a revoke); the replies in order."""
    if effect.replicas:
        yield from _reload(nodes)
    targets = nodes.everyone() if effect.replicas else nodes.primaries()
    return (yield _All([_At(where, Command(effect.args)) for where in targets]))


def _advance(
    steps: Generator[Any, Any, Any], result: Any, error: BaseException | None
) -> tuple[bool, Any]:
    """Send ``result`` (or throw ``error``) into a routing generator: (False, its next
    step), or (True, its result) once it returned."""
    try:
        return False, (steps.send(result) if error is None else steps.throw(error))
    except StopIteration as stop:
        return True, stop.value


_LOCAL_KINDS = (Sleep, Compute, Flights, WaitFlights)


class _OnNodes:
    """What both cluster drivers say about their nodes (no I/O)."""

    nodes: ClusterNodes
    _durability: Durability | None
    _drivers: dict[Address, Any]
    #: No quick lane (``Op(quick=...)``, :attr:`rediscache.drive.SyncDriver.lane`): every
    #: effect is routed to the node that owns its keys.
    lane = None

    @property
    def durability(self) -> Durability | None:
        """What each write waits for, on every node (``hub.durability``)."""
        return self._durability

    @durability.setter
    def durability(self, value: Durability | None) -> None:
        self._durability = value
        for driver in self._drivers.values():
            driver.durability = value

    @property
    def client(self) -> Any:
        """The client of the first primary."""
        return self.nodes.client(self.nodes.default)

    def client_for(self, key: Any) -> Any:
        """The client of the node that owns ``key`` (as last known)."""
        return self.nodes.client(self.nodes.address(key))


class ClusterDriver(_OnNodes):
    """Performs flows on a cluster, each effect on the node that owns its keys (see the
    module's doc); the sync twin of :class:`AsyncClusterDriver`. ``keep``: whether its
    one-node drivers keep connections between calls (:class:`rediscache.wire.Wire`)."""

    def __init__(
        self, nodes: ClusterNodes, *, keep: bool = True, failover_wait: float = 0.0
    ) -> None:
        self.nodes = nodes
        self._keep = keep
        self.failover_wait = failover_wait
        self._durability: Durability | None = None
        self._drivers: dict[Address, SyncDriver] = {}
        self._local = SyncDriver(None)
        self._stop = threading.Event()
        self._workers: set[threading.Thread] = set()

    def _driver(self, where: Address) -> SyncDriver:
        found = self._drivers.get(where)
        if found is None:
            # connections are kept only from pools the hub owns (a client passed in: none)
            keep = self._keep and not self.nodes.adopted(where)
            found = self._drivers[where] = SyncDriver(self.nodes.client(where), keep=keep)
            found.durability = self._durability
        return found

    def run(self, flow: Flow[T]) -> T:
        """Run ``flow`` to its result (see :meth:`rediscache.drive.SyncDriver.run`)."""
        box = [self.nodes.default]  # the node of the flow's last keyed effect
        if self._durability is not None:
            flow = short_of_durability(flow)

        def perform(effect: Any) -> Any:
            if isinstance(effect, _LOCAL_KINDS):
                return self._local.perform(effect)
            if type(effect) is Broadcast:
                return self._steps(_broadcast(effect, self.nodes))
            if type(effect) is Background:
                start_background(
                    lambda: ClusterDriver(self.nodes, keep=False, failover_wait=self.failover_wait),
                    effect,
                    self._stop,
                    self._workers,
                )
                return None
            return self._routed(effect, box)

        return run_sync(flow, perform)

    def _routed(self, effect: Effect, box: list[Address]) -> Any:
        """Perform ``effect`` where :func:`_route` sends it; its result."""
        return self._steps(_route(effect, self.nodes, box, self.failover_wait))

    def _steps(self, steps: Generator[Any, Any, Any]) -> Any:
        """Run a routing generator (:func:`_route`, :func:`_broadcast`) to its result."""
        result: Any = None
        error: BaseException | None = None
        while True:
            done, step = _advance(steps, result, error)
            if done:
                return step
            result, error = None, None
            try:
                if type(step) is _At:
                    result = self._driver(step.where).perform(step.effect)
                elif type(step) is _All:
                    result = self._together(step.parts)
                else:
                    time.sleep(step.seconds)
            except BaseException as exc:  # thrown into the route
                error = exc

    def _together(self, parts: list[_At]) -> list[Any]:
        """Perform the parts of a split effect: round trips are each sent before any
        reply is read (a part's round trip sends the next one's while its server works:
        ``Roundtrip.meanwhile``), so the nodes run them at the same time; other effects
        one after another. The first error is raised once every reply was read."""
        if not all(type(at.effect) is Roundtrip for at in parts):
            return [self._driver(at.where).perform(at.effect) for at in parts]
        results: list[Any] = [None] * len(parts)
        errors: list[BaseException | None] = [None] * len(parts)
        started = [False] * len(parts)

        def run(j: int) -> None:
            started[j] = True
            at = parts[j]
            effect: Any = at.effect
            if j + 1 < len(parts):
                own = effect.meanwhile

                def meanwhile() -> Exception | None:
                    late = own() if own is not None else None
                    if not started[j + 1]:  # once, also when the round trip is resent
                        try:
                            run(j + 1)
                        except BaseException as exc:  # raised after every reply is read
                            errors[j + 1] = exc
                    return late

                effect = effect._replace(meanwhile=meanwhile)
            results[j] = self._driver(at.where).perform(effect)

        try:
            run(0)
        except BaseException as exc:
            errors[0] = exc
        for j in range(len(parts)):  # a part whose sender failed first: on its own
            if not started[j]:
                try:
                    results[j] = self._driver(parts[j].where).perform(parts[j].effect)
                except BaseException as exc:
                    errors[j] = exc
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first
        return results

    def close(self, timeout: float = 2.0) -> None:
        """Stop the background work it started, then release the connections its one-node
        drivers kept."""
        stop_workers(self._stop, self._workers, timeout)
        for driver in self._drivers.values():
            driver.close(timeout=0)


class AsyncClusterDriver(_OnNodes):
    """:class:`ClusterDriver` for ``redis.asyncio`` clients."""

    def __init__(self, nodes: ClusterNodes, *, failover_wait: float = 0.0) -> None:
        self.nodes = nodes
        self.failover_wait = failover_wait
        self._durability: Durability | None = None
        self._drivers: dict[Address, AsyncDriver] = {}
        self._runs = Runs()
        self._tasks: set[asyncio.Task[None]] = set()

    def _driver(self, where: Address) -> AsyncDriver:
        found = self._drivers.get(where)
        if found is None:
            found = self._drivers[where] = AsyncDriver(self.nodes.client(where))
            found.durability = self._durability
        return found

    async def run(self, flow: Flow[T]) -> T:
        """Run ``flow`` to its result (see :func:`rediscache.drive.run_async`)."""
        box = [self.nodes.default]  # the node of the flow's last keyed effect
        if self._durability is not None:
            flow = short_of_durability(flow)

        async def perform(effect: Any) -> Any:
            if isinstance(effect, _LOCAL_KINDS):
                return await self._driver(box[0]).perform(effect)
            if type(effect) is Broadcast:
                return await self._steps(_broadcast(effect, self.nodes))
            if type(effect) is Background:
                background_task(self.run, effect, self._runs, self._tasks)
                return None
            return await self._routed(effect, box)

        return await run_async(flow, perform)

    async def _routed(self, effect: Effect, box: list[Address]) -> Any:
        """:meth:`ClusterDriver._routed`, the parts of a split effect sent concurrently."""
        return await self._steps(_route(effect, self.nodes, box, self.failover_wait))

    async def _steps(self, steps: Generator[Any, Any, Any]) -> Any:
        """:meth:`ClusterDriver._steps`, with ``await``."""
        result: Any = None
        error: BaseException | None = None
        while True:
            done, step = _advance(steps, result, error)
            if done:
                return step
            result, error = None, None
            try:
                if type(step) is _At:
                    result = await self._driver(step.where).perform(step.effect)
                elif type(step) is _All:
                    result = list(
                        await asyncio.gather(
                            *(self._driver(at.where).perform(at.effect) for at in step.parts)
                        )
                    )
                else:
                    await asyncio.sleep(step.seconds)
            except BaseException as exc:  # thrown into the route
                error = exc

    async def settle(self, timeout: float | None = None) -> None:
        """Wait for the background tasks at most ``timeout`` seconds, then cancel the rest."""
        await settle_tasks(self._tasks, timeout)
        for driver in self._drivers.values():
            await driver.settle(0)
