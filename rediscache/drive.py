"""The two drivers: they perform the effects of a flow (:mod:`rediscache.effects`) on a sync
``redis.Redis`` (:class:`SyncDriver`) or on a ``redis.asyncio.Redis`` (:class:`AsyncDriver`),
and they turn the flows of a space's parts into public methods.

Every operation exists once, as a flow. The public surfaces (``SpaceSurface``,
``ViewSurface``, ``HubSurface``) declare each operation once as an :class:`Op` (or
:class:`IterOp` for a stream, :class:`Local` for a method without I/O); read on a
:class:`SyncFacade` class it is a plain method, on an :class:`AsyncFacade` class a
coroutine method. :func:`sync_op` / :func:`async_op` make the few methods whose result is a
facade object (a Space, a view). Every method made here runs its flow under the guard
(:class:`rediscache.guard.Call`, or :func:`rediscache.guard.guarded` for streams: errors
mapped, reads retried, metrics) and shows the flow's docstring and parameters, with what
the call returns.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import inspect
import logging
import threading
import time
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

import redis
import redis.asyncio

from .context import HubContext
from .durability import Durability, short_of_durability, writes, writes_data
from .effects import (
    SLOW,
    Background,
    Broadcast,
    Command,
    Compute,
    Effect,
    Flights,
    Flow,
    InFlight,
    Once,
    Pipeline,
    Roundtrip,
    Sleep,
    Transaction,
    WaitFlights,
)
from .errors import InvalidInputError, RediscacheError
from .guard import (
    FAILOVER_WAIT,
    Call,
    Failover,
    count_success,
    guarded,
    lost_read,
    refused,
    unsent,
)
from .metrics import HIT_OPS, Metrics
from .wire import AsyncWire, Wire, once_async, roundtrip_async, transaction_async

__all__ = [
    "AsyncDriver", "AsyncFacade", "FailoverAsyncDriver", "FailoverDriver", "IterOp", "Local",
    "Op", "ReplicaReadingAsyncDriver", "ReplicaReadingDriver", "Stepper", "SyncDriver",
    "SyncFacade", "async_op", "forget_connections", "public", "ride", "ride_async", "run_sync",
    "sync_op", "wait_background",
]  # fmt: skip

log = logging.getLogger("rediscache")

#: What background work may raise and is logged (a bug's exception still surfaces).
_LOGGED = (RediscacheError, redis.RedisError, OSError)

P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S")
U = TypeVar("U")
U_co = TypeVar("U_co", covariant=True)

_REGISTRY: dict[str, InFlight[threading.Event]] = {}
_REGISTRY_LOCK = threading.Lock()


class Runs:
    """Background work by key: which runs, and which was asked for again meanwhile."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._again: dict[str, bool] = {}

    def start(self, key: str) -> bool:
        """True when the caller should start the work; else it runs already and will run
        once more when done."""
        with self._lock:
            if key in self._again:
                self._again[key] = True
                return False
            self._again[key] = False
            return True

    def again(self, key: str) -> bool:
        """Whether the work just done must run once more (else it is over)."""
        with self._lock:
            if self._again.get(key):
                self._again[key] = False
                return True
            self._again.pop(key, None)
            return False

    def forget(self, key: str) -> None:
        """The work stopped early (cancelled, or a bug): the next request starts it anew."""
        with self._lock:
            self._again.pop(key, None)


_SYNC_RUNS = Runs()
_THREADS: set[threading.Thread] = set()
#: How long a program's exit waits for its background work (seconds): a script that
#: publishes and exits would otherwise leave the replaced model's documents in Redis
#: until the next collection.
EXIT_WAIT = 60.0


@atexit.register
def _finish_at_exit() -> None:
    try:
        finished = not _THREADS or wait_background(EXIT_WAIT)
    except KeyboardInterrupt:  # a second Ctrl-C: exit now, the work resumes later
        return
    if not finished:
        log.warning(
            "rediscache: background garbage collection did not finish within %g s of exit; "
            "the next publish, rollback, stage() or space.collect_garbage() resumes it",
            EXIT_WAIT,
        )


def wait_background(timeout: float | None = None) -> bool:
    """Wait until the sync background work of this process (garbage collection after a
    rollback, publish, discard or version deletion) is done, at most ``timeout`` seconds
    in all; True when none is left. For tests and short-lived programs that want the work
    finished before they exit (it is resumed by the next collection otherwise)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for thread in list(_THREADS):
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in _THREADS)


class BackgroundStopped(Exception):
    """Thrown into background work when its hub closes: the work releases what it holds
    (its handlers run, one round trip or two) and ends; it resumes at the next request."""


def _stoppable(flow: Flow[T], stop: threading.Event) -> Flow[T]:
    """``flow``, into which :class:`BackgroundStopped` is thrown at its next effect once
    ``stop`` is set (once: its handlers may still send what releases its hold)."""
    thrown = False
    try:
        effect = next(flow)
        while True:
            if stop.is_set() and not thrown:
                thrown = True
                effect = flow.throw(BackgroundStopped())
                continue
            try:
                reply = yield effect
            except BaseException as exc:  # the flow re-raises what it does not handle
                effect = flow.throw(exc)
            else:
                effect = flow.send(reply)
    except StopIteration as done:
        result: T = done.value
        return result


def stop_workers(stop: threading.Event, workers: set[threading.Thread], timeout: float) -> None:
    """Set ``stop`` and wait for the ``workers`` threads at most ``timeout`` seconds in all."""
    stop.set()
    deadline = time.monotonic() + timeout
    for thread in list(workers):
        thread.join(max(0.0, deadline - time.monotonic()))


class _Runner(Protocol):
    def run(self, flow: Flow[T]) -> T: ...


def start_background(
    new_driver: Callable[[], _Runner],
    effect: Background,
    stop: threading.Event,
    workers: set[threading.Thread],
) -> None:
    """Run ``effect``'s flow in a daemon thread on a driver of its own made by
    ``new_driver`` (a sync driver keeps its connection for one thread), until done or until
    ``stop`` is set (the hub closes)."""
    if stop.is_set() or not _SYNC_RUNS.start(effect.key):
        return

    def work() -> None:
        done = False
        try:
            while not done and not stop.is_set():
                try:
                    new_driver().run(_stoppable(effect.make(), stop))
                except BackgroundStopped:
                    return
                except _LOGGED as exc:
                    log.warning("rediscache background work %s failed: %s", effect.key, exc)
                done = not _SYNC_RUNS.again(effect.key)
        finally:
            if not done:  # stopped, or an unexpected error: let the next one start
                _SYNC_RUNS.forget(effect.key)
            _THREADS.discard(threading.current_thread())
            workers.discard(threading.current_thread())

    thread = threading.Thread(target=work, name=f"rediscache {effect.key}", daemon=True)
    _THREADS.add(thread)
    workers.add(thread)
    thread.start()


def _inflight_for(prefix: str) -> InFlight[threading.Event]:
    """The process-wide in-flight table of a space (shared by all its sync objects)."""
    with _REGISTRY_LOCK:
        table = _REGISTRY.get(prefix)
        if table is None:
            table = _REGISTRY[prefix] = InFlight(threading.Event)
        return table


class SyncDriver:
    """Performs flows on a sync redis-py client, with plain blocking calls."""

    #: What each write waits for (``hub.durability``; None: nothing).
    durability: Durability | None = None

    def __init__(self, client: redis.Redis, *, keep: bool = True) -> None:
        self.client = client
        # keep=False: a driver made for one call keeps no connection (rediscache.wire.Wire)
        self.wire = wire = Wire(client, keep=keep) if client is not None else None
        self._perform: dict[type[Any], Callable[[Any], Any]] = {
            Roundtrip: lambda e: wire.roundtrip(e.commands, e.packed, e.meanwhile),  # type: ignore[union-attr]
            Once: lambda e: wire.once(e.command),  # type: ignore[union-attr]
            Transaction: lambda e: wire.transaction(  # type: ignore[union-attr]
                e.watch, e.reads, e.build
            ),
            Command: lambda e: client.execute_command(*e.args),
            Broadcast: lambda e: [client.execute_command(*e.args)],
            Pipeline: self._pipeline,
            Sleep: lambda e: time.sleep(e.seconds),
            Compute: _compute,
            Flights: lambda e: _inflight_for(e.prefix),
            WaitFlights: _wait_flights,
            Background: lambda e: start_background(self._fresh, e, self._stop, self._workers),
        }
        self._stop = threading.Event()
        self._workers: set[threading.Thread] = set()

    @property
    def lane(self) -> Wire | None:
        """The wire an operation's quick lane sends on (``Op(quick=...)``): this driver's,
        unless its round trips need more than a send and a read (durable writes; a
        subclass that rides failovers says None)."""
        return self.wire if self.durability is None else None

    def run(self, flow: Flow[T]) -> T:
        """Run ``flow`` to its result, performing each effect it yields; an effect's
        exception is thrown into the flow at its ``yield``."""
        if self.durability is not None:
            return self._run_each(short_of_durability(flow))
        perform = self._perform
        wire = self.wire
        send = flow.send
        try:
            effect: Any = send(None)
            while True:
                try:
                    kind = type(effect)
                    if kind is Roundtrip:  # the reads' and scripts' effects: no table lookup
                        reply = wire.roundtrip(  # type: ignore[union-attr]
                            effect.commands, effect.packed, effect.meanwhile
                        )
                    elif kind is Once:
                        reply = wire.once(effect.command)  # type: ignore[union-attr]
                    else:
                        reply = perform[kind](effect)
                except BaseException as exc:  # the flow re-raises what it does not handle
                    effect = flow.throw(exc)
                    continue
                effect = send(reply)
        except StopIteration as stop:
            result: T = stop.value
            return result

    def client_for(self, key: Any) -> redis.Redis:
        """The client that serves ``key``: this driver's (one server)."""
        del key
        return self.client

    def _fresh(self) -> SyncDriver:
        """A driver like this one for background work, keeping no connection."""
        fresh = SyncDriver(self.client, keep=False)
        fresh.durability = self.durability
        return fresh

    def _run_each(self, flow: Flow[T]) -> T:
        """:meth:`run`, each effect performed by :meth:`perform` (no inlined fast path)."""
        return run_sync(flow, self.perform)

    def perform(self, effect: Effect) -> Any:
        """Perform one effect and return its result (what :meth:`run` does per effect; a
        cluster's driver, :class:`rediscache.routing.ClusterDriver`, calls it on the
        driver of the node it routed the effect to)."""
        if self.durability is not None:
            return self._durably(effect, self.durability)
        return self._perform[type(effect)](effect)

    def _durably(self, effect: Any, durability: Durability) -> Any:
        """Perform ``effect`` with ``durability``'s wait after its writes, on the same
        connection and in the same round trip (:mod:`rediscache.durability`)."""
        kind = type(effect)
        if kind not in _GUARDABLE or not writes_data(effect):
            return self._perform[kind](effect)
        wire = self.wire
        assert wire is not None
        wait = durability.command()
        if kind is Once:
            reply, acked = wire.once(effect.command, wait)
            _check(durability, acked, reply)
            return reply
        if kind is Transaction:
            check = durability.check
            return wire.transaction(effect.watch, effect.reads, effect.build, check, wait)
        if kind is Roundtrip:
            replies = wire.roundtrip([*effect.commands, wait], None, effect.meanwhile)
            _check(durability, replies[-1], replies[:-1])
            return replies[:-1]
        if kind is Command:
            reply, acked = self._pipeline(Pipeline([effect.args, wait], False, False))
            if isinstance(reply, Exception):
                raise reply
            _check(durability, acked, reply)
            return reply
        if kind is Pipeline and not effect.transaction:  # inside MULTI WAIT is refused
            replies = self._pipeline(effect._replace(commands=[*effect.commands, wait]))
            _check(durability, replies[-1], replies[:-1])
            return replies[:-1]
        return self._perform[kind](effect)

    def close(self, timeout: float = 2.0) -> None:
        """Stop the background work it started (each worker ends after the step it is in,
        waited for at most ``timeout`` seconds in all; the next collection resumes the
        work), then release the connections the driver kept (:class:`rediscache.wire.Wire`)."""
        stop_workers(self._stop, self._workers, timeout)
        if self.wire is not None:
            self.wire.close()

    def _pipeline(self, effect: Pipeline) -> list[Any]:
        pipe = self.client.pipeline(transaction=effect.transaction)
        for command in effect.commands:
            pipe.execute_command(*command)
        return list(pipe.execute(raise_on_error=effect.raise_on_error))


def _check(durability: Durability, acked: Any, result: Any) -> None:
    """``durability.check(acked, result)``, unless ``result`` holds an error reply of a
    node that refused the step for want of a primary (:func:`rediscache.guard.refused`:
    NOREPLICAS, READONLY...): the step wrote nothing, there is nothing to wait for, and it
    is sent again (a script refused so never wrote: Redis checks before its first write)."""
    if refused(result) is None:
        durability.check(acked, result)


def _reads(effect: Any, known: bool | None = None) -> bool:
    """Whether ``effect`` is a round trip of reads (no write command: repeating it after
    its reply was lost is safe; a ttl refresh's PEXPIRE sets the same expiry again);
    ``known``, when not None, says so already."""
    if known is not None:
        return known
    return type(effect) is Roundtrip and not writes(effect.commands)


#: Effects that may carry a durable write's wait (rediscache.durability.writes_data).
_GUARDABLE = frozenset({Once, Transaction, Roundtrip, Command, Pipeline})

#: Effects performed without the server (never waiting for a primary).
_OFF_SERVER = (Sleep, Compute, Flights, WaitFlights, Background)


class FailoverDriver(SyncDriver):
    """A :class:`SyncDriver` for a server that fails over by itself (a primary watched by
    Sentinels): a step that met no primary (:func:`rediscache.guard.unsent`) is performed
    again, after the connections it kept are dropped (a new one asks the Sentinels where
    the primary is), for at most ``failover_wait`` seconds, then FailoverTimeoutError."""

    def __init__(
        self, client: redis.Redis, *, keep: bool = True, failover_wait: float = FAILOVER_WAIT
    ) -> None:
        super().__init__(client, keep=keep)
        self.failover_wait = failover_wait
        self._perform[Broadcast] = self._broadcast

    @property
    def lane(self) -> Wire | None:
        """None: every round trip rides a failover (:meth:`run`)."""
        return None

    def _broadcast(self, effect: Broadcast) -> list[Any]:
        """The command on the primary and, with ``replicas``, on every replica the
        Sentinels know as healthy (what each node keeps for itself, users: a replica may
        be promoted)."""
        replies = [self.client.execute_command(*effect.args)]
        if effect.replicas:
            pool: Any = self.client.connection_pool
            for host, port in pool.sentinel_manager.discover_slaves(pool.service_name):
                node = redis.Redis.from_pool(
                    redis.ConnectionPool(host=host, port=port, **_node_settings(pool))
                )
                try:
                    replies.append(node.execute_command(*effect.args))
                finally:
                    node.close()
        return replies

    def _fresh(self) -> SyncDriver:
        fresh = FailoverDriver(self.client, keep=False, failover_wait=self.failover_wait)
        fresh.durability = self.durability
        return fresh

    def run(self, flow: Flow[T]) -> T:
        """:meth:`SyncDriver.run`, each effect performed by :meth:`perform`."""
        return self._run_each(short_of_durability(flow) if self.durability else flow)

    def perform(self, effect: Effect) -> Any:
        """Perform ``effect``, again while it meets no primary (see the class doc)."""
        once = super().perform
        if isinstance(effect, _OFF_SERVER) or self.failover_wait <= 0:
            return once(effect)
        return ride(once, effect, self.failover_wait, self._forget)

    def _forget(self) -> None:
        """Drop the primary's idle connections (ride's ``forget``)."""
        forget_connections(self.client, self.wire)


class ReplicaReadingDriver(FailoverDriver):
    """A :class:`FailoverDriver` sending round trips of read commands (what get, get_many,
    search... send, their state check included: one round trip answers from one node, in
    one version) to ``replicas`` (a client of ``Sentinel.slave_for``: each new connection
    goes to a replica the Sentinels call healthy, in turn, else to the primary); everything
    else, and reads through redis-py's own commands, to the primary."""

    def __init__(
        self,
        client: redis.Redis,
        replicas: redis.Redis,
        *,
        keep: bool = True,
        failover_wait: float = FAILOVER_WAIT,
    ) -> None:
        super().__init__(client, keep=keep, failover_wait=failover_wait)
        self.replicas = replicas
        self.replica_wire = Wire(replicas, keep=keep)

    def _fresh(self) -> SyncDriver:
        fresh = ReplicaReadingDriver(
            self.client, self.replicas, keep=False, failover_wait=self.failover_wait
        )
        fresh.durability = self.durability
        return fresh

    def perform(self, effect: Effect) -> Any:
        """A read round trip on a replica (again, on the next, while it meets none that
        answers), anything else as :meth:`FailoverDriver.perform`."""
        if type(effect) is not Roundtrip or writes(effect.commands):
            return super().perform(effect)
        return ride(self._replica_read, effect, self.failover_wait, self._forget_replicas, True)

    def _replica_read(self, effect: Roundtrip) -> list[Any]:
        return self.replica_wire.roundtrip(effect.commands, effect.packed, effect.meanwhile)

    def _forget_replicas(self) -> None:
        forget_connections(self.replicas, self.replica_wire)

    def close(self, timeout: float = 2.0) -> None:
        super().close(timeout)
        self.replica_wire.close()


def ride(
    perform: Callable[[Any], Any],
    effect: Any,
    seconds: float,
    forget: Callable[[], None],
    reads: bool | None = None,
) -> Any:
    """``perform(effect)``, performed again while it meets no primary (an error
    :func:`rediscache.guard.unsent` accepts, or such an error reply) or, when ``effect``
    only reads (``reads``; None: judged from the effect, only once a reply is lost), while
    its reply is lost (:func:`rediscache.guard.lost_read`: a primary stalled past the socket
    timeout, which the Sentinels replace meanwhile): ``forget`` drops the connections before
    each new attempt; at most ``seconds`` (then FailoverTimeoutError)."""
    wait: Failover | None = None
    while True:
        try:
            reply = perform(effect)
            problem = refused(reply)
            if problem is None or _optional(effect, problem):
                return reply
        except BaseException as exc:
            if not (unsent(exc) or (lost_read(exc) and _reads(effect, reads))):
                raise
            problem = exc
        wait = wait or Failover(seconds)
        pause = wait.pause(problem)
        forget()
        time.sleep(pause)


def _optional(effect: Any, problem: BaseException) -> bool:
    """Whether ``problem``, a refusal of ``effect``, is answered as it is rather than waited
    out: a primary without its replicas (``NOREPLICAS``) refusing a write that is not the
    data's (``Once.data`` False: a search index's "complete" mark, which only saves a later
    check). Waiting would hold a search for ``failover_wait`` and then fail it, where the
    primary serves the search itself (a set of one replica, after its primary died)."""
    return isinstance(effect, Once) and not effect.data and "NOREPLICAS" in str(problem)


async def ride_async(
    perform: Callable[[Any], Awaitable[Any]],
    effect: Any,
    seconds: float,
    client: Any,
    reads: bool | None = None,
) -> Any:
    """:func:`ride` for asyncio: ``client``'s idle connections are dropped between tries."""
    wait: Failover | None = None
    while True:
        try:
            reply = await perform(effect)
            problem = refused(reply)
            if problem is None or _optional(effect, problem):
                return reply
        except Exception as exc:
            if not (unsent(exc) or (lost_read(exc) and _reads(effect, reads))):
                raise
            problem = exc
        wait = wait or Failover(seconds)
        pause = wait.pause(problem)
        with contextlib.suppress(Exception):
            await client.connection_pool.disconnect(inuse_connections=False)
        await asyncio.sleep(pause)


def _node_settings(pool: Any) -> dict[str, Any]:
    """The connection settings of a Sentinel-managed pool, for a plain connection to one
    of its nodes (credentials, db, protocol, timeouts)."""
    skip = ("connection_pool", "redis_connect_func", "host", "port", "connection_class")
    return {k: v for k, v in pool.connection_kwargs.items() if k not in skip}


def forget_connections(client: Any, wire: Wire | None = None) -> None:
    """Drop the idle connections of ``client``'s pool (and those ``wire`` kept), so that
    the next ones are made afresh: to the primary a Sentinel names now."""
    if wire is not None:
        wire.close()
    with contextlib.suppress(Exception):
        client.connection_pool.disconnect(inuse_connections=False)


def _compute(effect: Compute) -> Any:
    result = effect.fn(effect.keys)
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()  # never awaited: close it rather than leave a warning
        raise InvalidInputError(
            "compute returned an awaitable: async compute functions need an AsyncSpace "
            "(rediscache.asyncio); a Space calls compute synchronously"
        )
    return result


def _wait_flights(effect: WaitFlights) -> None:
    for event in effect.events:
        event.wait(max(0.0, effect.deadline - time.monotonic()))


#: Performs the pauses of :func:`public` methods' retries (they send nothing through it).
_LOCAL = SyncDriver(None)


class AsyncDriver:
    """Performs flows on a ``redis.asyncio`` client, awaiting each effect."""

    #: What each write waits for (``hub.durability``; None: nothing).
    durability: Durability | None = None

    def __init__(self, client: redis.asyncio.Redis, *, keep: bool = False) -> None:
        self.client = client
        self._flights: dict[str, InFlight[asyncio.Event]] = {}
        # keep: the read round trips keep a few connections between calls (AsyncWire)
        self.wire = wire = AsyncWire(client, keep=keep)
        # At most as many round trips at once as the pool has connections (less those
        # kept idle): tasks beyond that wait here (cheaply, in order) instead of failing
        # with "Too many connections" (redis-py's asyncio BlockingConnectionPool would wait
        # too, at a measured 14% of the throughput of 32 concurrent get_many calls).
        most = getattr(client.connection_pool, "max_connections", None)
        fits = isinstance(most, int) and most > wire.size
        self._slots = asyncio.Semaphore(most - wire.size) if fits else None  # type: ignore[operator]
        self._perform: dict[type[Any], Callable[[Any], Awaitable[Any]]] = {
            Roundtrip: self._bounded(lambda e: wire.roundtrip(e.commands, e.packed, e.meanwhile)),
            Once: self._bounded(lambda e: once_async(client, e.command)),
            Transaction: self._bounded(
                lambda e: transaction_async(client, e.watch, e.reads, e.build)
            ),
            Command: self._bounded(lambda e: client.execute_command(*e.args)),
            Broadcast: self._bounded(self._broadcast),
            Pipeline: self._bounded(self._pipeline),
            Sleep: lambda e: asyncio.sleep(e.seconds),
            Compute: _compute_async,
            Flights: self._flights_of,
            WaitFlights: _wait_flights_async,
            Background: self._background,
        }
        self._runs = Runs()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, flow: Flow[T]) -> T:
        """:meth:`SyncDriver.run` with ``await`` (see :func:`run_async`)."""
        if self.durability is not None:
            return await run_async(short_of_durability(flow), self.perform)
        perform = self._perform
        return await run_async(flow, lambda effect: perform[type(effect)](effect))

    def client_for(self, key: Any) -> redis.asyncio.Redis:
        """The client that serves ``key``: this driver's (one server)."""
        del key
        return self.client

    def perform(self, effect: Effect) -> Awaitable[Any]:
        """Perform one effect (see :meth:`SyncDriver.perform`)."""
        if self.durability is not None:
            return self._durably(effect, self.durability)
        return self._perform[type(effect)](effect)

    async def _durably(self, effect: Any, durability: Durability) -> Any:
        """:meth:`SyncDriver._durably` for asyncio."""
        kind = type(effect)
        if kind not in _GUARDABLE or not writes_data(effect):
            return await self._perform[kind](effect)
        wait = durability.command()
        client = self.client
        if kind is Once:
            reply, acked = await self._bounded(lambda e: once_async(client, e.command, wait))(
                effect
            )
            _check(durability, acked, reply)
            return reply
        if kind is Transaction:
            return await self._bounded(
                lambda e: transaction_async(
                    client, e.watch, e.reads, e.build, durability.check, wait
                )
            )(effect)
        if kind is Roundtrip:
            replies = await self._bounded(
                lambda e: roundtrip_async(client, [*e.commands, wait], None, e.meanwhile)
            )(effect)
            _check(durability, replies[-1], replies[:-1])
            return replies[:-1]
        if kind is Command:
            reply, acked = await self._perform[Pipeline](
                Pipeline([effect.args, wait], False, False)
            )
            if isinstance(reply, Exception):
                raise reply
            _check(durability, acked, reply)
            return reply
        if kind is Pipeline and not effect.transaction:
            replies = await self._perform[Pipeline](
                effect._replace(commands=[*effect.commands, wait])
            )
            _check(durability, replies[-1], replies[:-1])
            return replies[:-1]
        return await self._perform[kind](effect)

    async def _broadcast(self, effect: Broadcast) -> list[Any]:
        return [await self.client.execute_command(*effect.args)]

    async def _pipeline(self, effect: Pipeline) -> list[Any]:
        pipe = self.client.pipeline(transaction=effect.transaction)
        for command in effect.commands:
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=effect.raise_on_error))

    async def _background(self, effect: Background) -> None:
        """Run ``effect``'s flow in a task of the running loop (see Background)."""
        background_task(self.run, effect, self._runs, self._tasks)

    async def settle(self, timeout: float | None = None) -> None:
        """Wait for the background tasks at most ``timeout`` seconds, then cancel what is
        left (it is resumed by the next collection), and release the connections the
        driver kept (:class:`rediscache.wire.AsyncWire`)."""
        await settle_tasks(self._tasks, timeout)
        await self.wire.release()

    def _bounded(self, perform: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
        """``perform`` holding one of the pool's connection slots while it runs."""
        slots = self._slots
        if slots is None:
            return perform

        async def bounded(effect: Any) -> Any:
            async with slots:
                return await perform(effect)

        return bounded

    async def _flights_of(self, effect: Flights) -> InFlight[asyncio.Event]:
        """Asyncio events belong to one event loop, as does this driver's client."""
        table = self._flights.get(effect.prefix)
        if table is None:
            table = self._flights[effect.prefix] = InFlight(asyncio.Event)
        return table


class FailoverAsyncDriver(AsyncDriver):
    """:class:`FailoverDriver` for ``redis.asyncio`` clients."""

    def __init__(
        self, client: redis.asyncio.Redis, *, failover_wait: float = FAILOVER_WAIT
    ) -> None:
        super().__init__(client)
        self.failover_wait = failover_wait
        self._perform[Broadcast] = self._bounded(self._broadcast_all)

    async def _broadcast_all(self, effect: Broadcast) -> list[Any]:
        """:meth:`FailoverDriver._broadcast` for asyncio."""
        replies = [await self.client.execute_command(*effect.args)]
        if effect.replicas:
            pool: Any = self.client.connection_pool
            for host, port in await pool.sentinel_manager.discover_slaves(pool.service_name):
                node = redis.asyncio.Redis.from_pool(
                    redis.asyncio.ConnectionPool(host=host, port=port, **_node_settings(pool))
                )
                try:
                    replies.append(await node.execute_command(*effect.args))
                finally:
                    await node.aclose()
        return replies

    async def run(self, flow: Flow[T]) -> T:
        """:meth:`AsyncDriver.run`, each effect performed by :meth:`perform`."""
        if self.durability is not None:
            flow = short_of_durability(flow)
        return await run_async(flow, self.perform)

    async def perform(self, effect: Effect) -> Any:
        """Perform ``effect``, again while it meets no primary (see FailoverDriver)."""
        once = super().perform
        if isinstance(effect, _OFF_SERVER) or self.failover_wait <= 0:
            return await once(effect)
        return await ride_async(once, effect, self.failover_wait, self.client)


class ReplicaReadingAsyncDriver(FailoverAsyncDriver):
    """:class:`ReplicaReadingDriver` for ``redis.asyncio`` clients."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        replicas: redis.asyncio.Redis,
        *,
        failover_wait: float = FAILOVER_WAIT,
    ) -> None:
        super().__init__(client, failover_wait=failover_wait)
        self.replicas = replicas
        self._replica_read = self._bounded(
            lambda e: roundtrip_async(replicas, e.commands, e.packed, e.meanwhile)
        )

    async def perform(self, effect: Effect) -> Any:
        """:meth:`ReplicaReadingDriver.perform` with ``await``."""
        if type(effect) is not Roundtrip or writes(effect.commands):
            return await super().perform(effect)
        return await ride_async(self._replica_read, effect, self.failover_wait, self.replicas, True)


def run_sync(flow: Flow[T], perform: Callable[[Any], Any]) -> T:
    """Run ``flow`` to its result, ``perform(effect)`` for each effect it yields; an
    effect's exception is thrown into the flow at its ``yield`` (the sync twin of
    :func:`run_async`, for drivers without :meth:`SyncDriver.run`'s inlined fast path)."""
    send = flow.send
    try:
        effect: Any = send(None)
        while True:
            try:
                reply = perform(effect)
            except BaseException as exc:
                effect = flow.throw(exc)
                continue
            effect = send(reply)
    except StopIteration as stop:
        result: T = stop.value
        return result


async def run_async(flow: Flow[T], perform: Callable[[Any], Awaitable[Any]]) -> T:
    """Run ``flow`` to its result, awaiting ``perform(effect)`` for each effect it yields
    (an asyncio driver's); an effect's exception, a cancellation too, is thrown into the
    flow (its ``finally`` clauses release what it holds).

    redis-py's asyncio connections can swallow a cancellation that arrives while they
    read or write (measured with redis-py 8.1: a task cancelled in a loop of commands
    ran on to the end in 18 of 20 tries), so after each effect this also checks the task
    for a cancellation request it has not seen (``Task.cancelling()``, Python 3.11+) and
    throws ``CancelledError`` into the flow itself."""
    send = flow.send
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    seen = cancelling() if cancelling is not None else 0
    try:
        effect: Effect = send(None)
        while True:
            try:
                reply = await perform(effect)
            except BaseException as exc:
                if cancelling is not None and isinstance(exc, asyncio.CancelledError):
                    seen = cancelling()
                effect = flow.throw(exc)
                continue
            if cancelling is not None and cancelling() > seen:  # swallowed below us
                seen = cancelling()
                effect = flow.throw(asyncio.CancelledError())
                continue
            effect = send(reply)
    except StopIteration as stop:
        result: T = stop.value
        return result


def background_task(
    run: Callable[[Flow[Any]], Awaitable[Any]],
    effect: Background,
    runs: Runs,
    tasks: set[asyncio.Task[None]],
) -> None:
    """Start ``effect``'s flow in a task of the running loop, run by ``run`` (an asyncio
    driver's), unless one of its key runs already (then it runs once more when done)."""
    if not runs.start(effect.key):
        return

    async def work() -> None:
        done = False
        try:
            while not done:
                try:
                    await run(effect.make())
                except _LOGGED as exc:
                    log.warning("rediscache background work %s failed: %s", effect.key, exc)
                done = not runs.again(effect.key)
        finally:
            if not done:  # cancelled, or an unexpected error: let the next one start
                runs.forget(effect.key)

    task = asyncio.get_running_loop().create_task(work())
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def settle_tasks(tasks: set[asyncio.Task[None]], timeout: float | None) -> None:
    """Wait for ``tasks`` at most ``timeout`` seconds, then cancel what is left."""
    pending_now = list(tasks)
    if not pending_now:
        return
    _, pending = await asyncio.wait(pending_now, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)


async def _compute_async(effect: Compute) -> Any:
    result = effect.fn(effect.keys)
    return (await result) if inspect.isawaitable(result) else result


async def _wait_flights_async(effect: WaitFlights) -> None:
    for event in effect.events:
        if not event.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                timeout = max(0.0, effect.deadline - time.monotonic())
                await asyncio.wait_for(event.wait(), timeout)


# --------------------------------------------------------------------------- public methods


def _signature(fn: Callable[..., Any], returns: str | None = None) -> inspect.Signature:
    """``fn``'s signature as the public method's: returning ``returns``, or what ``fn``'s
    flow returns (``Flow[X]`` shown as ``X``), so that ``help()`` shows what a call
    gives."""
    sig = inspect.signature(fn)
    ret = sig.return_annotation if returns is None else returns
    if isinstance(ret, str) and ret.startswith("Flow[") and ret.endswith("]"):
        ret = ret[len("Flow[") : -1]
    return sig.replace(return_annotation=ret)


def _unwrapped(facade: Any, result: Any) -> Any:
    return result


def _metrics_of(obj: Any) -> Metrics:
    metrics: Metrics = obj._context.metrics
    return metrics


def _method(
    op: str,
    fn: Callable[..., Flow[Any]],
    part: Callable[[Any], Any],
    counted: bool,
    wrap: Callable[[Any, Any], Any] | None,
    asyncio_: bool,
    returns: str | None = None,
    quick: Callable[..., Any] | None = None,
) -> Any:
    """The public method ``op`` running ``fn(part(self), ...)`` on ``self._driver`` under
    :class:`rediscache.guard.Call`, sync or a coroutine method.

    The sync method's first attempt runs without a Call (made only when it fails: then
    ``Call.failed`` decides, as for any attempt), and first tries ``quick(part(self),
    wire, ...)`` when given and the driver has a quick lane (:attr:`SyncDriver.lane`): a
    function doing the usual case of the operation in one round trip on ``wire`` without
    a flow, or answering :data:`rediscache.effects.SLOW` (then the flow runs): a
    generator, its effect and a Call object less per call. A/B against the code before,
    30,000 calls of each, alternating blocks, on the 2-core dev box: a search k=10 took 3.0%
    less time (median; the quick lane and the first attempt without a Call), a get 1.6%
    less (the latter alone)."""
    metrics = _metrics_of if counted else None
    clock = time.perf_counter
    finish: Callable[[Any, Any], Any] = _unwrapped if wrap is None else wrap
    counts_hits = op in HIT_OPS  # else a success is recorded without looking at its result

    method: Any
    if not asyncio_:

        def method(self: Any, /, *args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            obj = part(self)
            driver = self._driver
            try:  # the first attempt without a Call (the usual case: it succeeds)
                result: Any = SLOW
                if quick is not None and (lane := getattr(driver, "lane", None)) is not None:
                    try:
                        result = quick(obj, lane, *args, **kwargs)
                    except TypeError:  # arguments the call does not take: the flow says so
                        result = SLOW
                if result is SLOW:
                    try:
                        flow = fn(obj, *args, **kwargs)
                    except TypeError:
                        flow = None  # arguments the call does not take: Call.flow says so
                    if flow is not None:
                        result = driver.run(flow)
                if result is not SLOW:
                    if metrics is None:
                        pass
                    elif counts_hits:
                        count_success(metrics(self), op, clock() - t0, result, kwargs)
                    else:  # count_success's record, without its look at the result
                        self._context.metrics.record(op, clock() - t0)
                    return result if wrap is None else finish(self, result)
            except BaseException as exc:
                call = Call(self, op, fn, obj, args, kwargs, metrics, t0=t0)
                time.sleep(call.failed(exc))  # raises unless a retry is due
            else:
                call = Call(self, op, fn, obj, args, kwargs, metrics, t0=t0)
            while True:
                try:
                    return finish(self, call.done(self._driver.run(call.flow())))
                except BaseException as exc:
                    time.sleep(call.failed(exc))  # raises unless a retry is due

    else:

        async def method(self: Any, /, *args: Any, **kwargs: Any) -> Any:
            call = Call(self, op, fn, part(self), args, kwargs, metrics)
            while True:
                try:
                    return finish(self, call.done(await self._driver.run(call.flow())))
                except BaseException as exc:
                    await asyncio.sleep(call.failed(exc))  # raises unless a retry is due

    functools.update_wrapper(method, fn)
    method.__name__ = method.__qualname__ = op
    method.__signature__ = _signature(fn, returns)
    method.__rediscache_op__ = op
    return method


def sync_op(
    op: str,
    fn: Callable[Concatenate[S, P], Flow[T]],
    part: Callable[[Any], S],
    *,
    wrap: Callable[[Any, T], U],
    returns: str,
) -> Callable[Concatenate[Any, P], U]:
    """The public sync method ``op`` of a facade whose result is a facade object:
    ``wrap(self, result)`` of ``fn(part(self), ...)`` run on ``self._driver`` (e.g. a Space
    of a config, ``returns`` names its class; the other operations are :class:`Op`).
    Guarded, not counted."""
    method = _method(op, fn, part, False, wrap, asyncio_=False, returns=returns)
    return method  # type: ignore[no-any-return]


def async_op(
    op: str,
    fn: Callable[Concatenate[S, P], Flow[T]],
    part: Callable[[Any], S],
    *,
    wrap: Callable[[Any, T], U],
    returns: str,
) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, U]]:
    """:func:`sync_op` for an asyncio facade: a coroutine method."""
    method = _method(op, fn, part, False, wrap, asyncio_=True, returns=returns)
    return method  # type: ignore[no-any-return]


class Stepper(Protocol[U_co]):
    """A stream read in steps (iter_batches): each :meth:`step` is a flow returning the
    next item, or None when a step found nothing to return; ``done`` once it ended."""

    @property
    def done(self) -> bool:
        """Whether the stream has ended."""
        ...

    def step(self) -> Flow[U_co | None]:
        """The flow of the next step."""
        ...


def _step(stream: Stepper[U], *_args: Any, **_kwargs: Any) -> Flow[U | None]:
    """The next step of ``stream`` (the call's arguments went to the stream already)."""
    return stream.step()


def _iter_method(
    op: str,
    fn: Callable[..., Stepper[Any]],
    part: Callable[[Any], Any],
    asyncio_: bool,
    item: str,
) -> Any:
    """The public generator method ``op`` streaming the steps of ``fn(part(self), ...)``,
    each step guarded (not retried: a stream cannot restart), sync or asyncio."""

    def steps(self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[Flow[Any]]:
        stream = fn(part(self), *args, **kwargs)
        while not stream.done:
            yield guarded(self, op, _step, stream, args, kwargs, retry=False)

    method: Any
    if not asyncio_:

        def method(self: Any, /, *args: Any, **kwargs: Any) -> Iterator[Any]:
            for step in steps(self, args, kwargs):
                item = self._driver.run(step)
                if item is not None:
                    yield item

    else:

        async def method(self: Any, /, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            for step in steps(self, args, kwargs):
                item = await self._driver.run(step)
                if item is not None:
                    yield item

    functools.update_wrapper(method, fn)
    method.__name__ = method.__qualname__ = op
    stream = "AsyncIterator" if asyncio_ else "Iterator"
    method.__signature__ = _signature(fn, f"{stream}[{item}]")
    method.__rediscache_op__ = op
    return method


def public(op: str, fn: Callable[..., T]) -> Callable[..., T]:
    """A sync method that does its I/O itself (not a flow: the hot cache's start, a
    ``__len__`` calling a public method) as the public call ``op``: run inside
    :func:`rediscache.guard.guarded` like the flows' methods."""

    def attempt(self: Any, *args: Any, **kwargs: Any) -> Flow[T]:
        return fn(self, *args, **kwargs)
        yield  # a flow without effects

    def method(self: Any, /, *args: Any, **kwargs: Any) -> T:
        return _LOCAL.run(guarded(self, op, attempt, self, args, kwargs))

    functools.update_wrapper(method, fn)
    method.__rediscache_op__ = op  # type: ignore[attr-defined]
    return method


# --------------------------------------------------------------------------- one surface


class SyncRunner(Protocol):
    """What a sync facade needs of its driver: :class:`SyncDriver` (one server), or
    :class:`rediscache.routing.ClusterDriver` (a cluster)."""

    def run(self, flow: Flow[T]) -> T: ...

    def client_for(self, key: Any) -> Any: ...

    def close(self, timeout: float = 2.0) -> None: ...


class AsyncRunner(Protocol):
    """What an asyncio facade needs of its driver: :class:`AsyncDriver`, or
    :class:`rediscache.routing.AsyncClusterDriver`."""

    async def run(self, flow: Flow[T]) -> T: ...

    def client_for(self, key: Any) -> Any: ...

    async def settle(self, timeout: float | None = None) -> None: ...


class SyncFacade:
    """Base of the sync facades: operations (:class:`Op`) run on ``_driver``."""

    _driver: SyncRunner
    _context: HubContext


class AsyncFacade:
    """Base of the asyncio facades: operations (:class:`Op`) are awaited on ``_driver``."""

    _driver: AsyncRunner
    _context: HubContext


class Op(Generic[S, P, T]):
    """One public operation, declared once for the sync and the asyncio facade: the flow
    ``fn`` of the part ``part(facade)``. Read on a :class:`SyncFacade` subclass it is the
    method :func:`sync_op` makes, on an :class:`AsyncFacade` subclass the coroutine method
    of :func:`async_op` (made on first use and kept in that class)."""

    def __init__(
        self,
        fn: Callable[Concatenate[S, P], Flow[T]],
        part: Callable[[Any], S],
        *,
        counted: bool = False,
        op: str | None = None,
        quick: Callable[..., Any] | None = None,
    ) -> None:
        self.fn, self.part, self.counted, self.op = fn, part, counted, op
        self.quick = quick
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name
        self.op = self.op or name

    def _make(self, owner: type[Any]) -> Any:
        assert self.op is not None
        if not issubclass(owner, SyncFacade | AsyncFacade):
            return self
        asyncio_ = issubclass(owner, AsyncFacade)
        quick = None if asyncio_ else self.quick
        made = _method(self.op, self.fn, self.part, self.counted, None, asyncio_, quick=quick)
        setattr(owner, self.name, made)
        return made

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Any: ...

    @overload
    def __get__(self, obj: SyncFacade, owner: type[Any]) -> Callable[P, T]: ...

    @overload
    def __get__(
        self, obj: AsyncFacade, owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    def __get__(self, obj: Any, owner: type[Any]) -> Any:
        made = self._make(owner)
        return made if obj is None or made is self else made.__get__(obj, owner)


class IterOp(Generic[S, P, U]):
    """:class:`Op` for a stream (:class:`Stepper`): a generator method on a sync facade, an
    async generator method on an asyncio one."""

    def __init__(
        self, fn: Callable[Concatenate[S, P], Stepper[U]], part: Callable[[Any], S], *, item: str
    ):
        self.fn, self.part, self.item = fn, part, item
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Any: ...

    @overload
    def __get__(self, obj: SyncFacade, owner: type[Any]) -> Callable[P, Iterator[U]]: ...

    @overload
    def __get__(self, obj: AsyncFacade, owner: type[Any]) -> Callable[P, AsyncIterator[U]]: ...

    def __get__(self, obj: Any, owner: type[Any]) -> Any:
        if not issubclass(owner, SyncFacade | AsyncFacade):
            return self
        asyncio_ = issubclass(owner, AsyncFacade)
        made = _iter_method(self.name, self.fn, self.part, asyncio_, self.item)
        setattr(owner, self.name, made)
        return made if obj is None else made.__get__(obj, owner)


class Local(Generic[S, P, T]):
    """A public method that does no I/O (e.g. ``validate``), declared once: the part's
    method ``fn`` bound to ``part(facade)``, not awaited on an asyncio facade either."""

    def __init__(self, fn: Callable[Concatenate[S, P], T], part: Callable[[Any], S]) -> None:
        self.fn, self.part = fn, part
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Local[S, P, T]: ...

    @overload
    def __get__(self, obj: object, owner: type[Any]) -> Callable[P, T]: ...

    def __get__(self, obj: Any, owner: type[Any]) -> Any:
        if obj is None:
            return self
        return types.MethodType(self.fn, self.part(obj))
