"""The I/O an operation asks for, as values: every operation of a space or a hub is written
once, as a *flow* (a generator) that yields these effects and is sent their results.

A flow never touches a socket. :mod:`rediscache.drive` performs its effects on a sync
``redis.Redis`` (plain calls) or on a ``redis.asyncio.Redis`` (``await``), so validation,
the commands sent, the decoding of replies and the retries on a stale state exist once for
both worlds. An exception raised while performing an effect is thrown into the flow at its
``yield``, so the flow's ``try``/``except``/``finally`` work as in straight-line code.

Pure: types only (and :class:`InFlight`, a table of events guarded by a lock).
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Generator
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

__all__ = [
    "SLOW",
    "Background",
    "Broadcast",
    "Command",
    "Compute",
    "Effect",
    "Flights",
    "Flow",
    "InFlight",
    "Once",
    "Pipeline",
    "Roundtrip",
    "Sleep",
    "Slow",
    "Transaction",
    "WaitFlights",
]

T = TypeVar("T")


class Slow(enum.Enum):
    """The answer of an operation's quick lane (``Op(quick=...)``) to a call it does not
    serve: run the operation's flow instead."""

    SLOW = "slow"


#: :class:`Slow`'s one value.
SLOW = Slow.SLOW


class Roundtrip(NamedTuple):
    """Send read commands in one write and read every reply (:func:`rediscache.wire.roundtrip`).
    Result: the replies, error replies as exception values. Safe to repeat (reads only): a
    broken connection is retried once on a fresh one. ``packed``: the same commands already
    in RESP (:func:`rediscache.wire.frame`), sent as they are where the connection encodes
    text as UTF-8. ``meanwhile``: called once they are sent, while the server runs them
    (:meth:`rediscache.wire.Wire.roundtrip`); the exception it returns is raised once the
    replies are read."""

    commands: list[tuple[Any, ...]]
    packed: bytes | None = None
    meanwhile: Callable[[], Exception | None] | None = None


class Once(NamedTuple):
    """Send one command once on a pooled connection, without any retry (a script call:
    :func:`rediscache.scripts.run`). Result: the reply, an error reply as an exception
    value. Raises :class:`rediscache.wire.NotSent` when the connection failed before the
    command was written, or the connection error when its reply was lost. ``data``:
    whether a durable hub waits for its writes (False: a script whose writes are not the
    data's, :mod:`rediscache.durability`)."""

    command: tuple[Any, ...]
    data: bool = True


class Transaction(NamedTuple):
    """An optimistic transaction on one connection
    (:meth:`rediscache.wire.Wire.transaction`): ``WATCH watch`` and the ``reads`` in one
    round trip (repeated on a fresh connection if the first broke), then ``build(replies of
    the reads)`` gives the commands to run inside ``MULTI``/``EXEC``, sent once in a second
    round trip. ``build`` may raise: the watch is dropped and its exception thrown into the
    flow, nothing written. Result: the replies of the commands inside (error replies as
    exception values), or None when nothing ran because the watched key changed in between
    (or the client cannot hold one connection for both round trips: a client made with
    ``single_connection_client=True``). Raises :class:`rediscache.wire.NotSent` when the
    connection failed before ``EXEC`` was written whole (nothing ran), the connection error
    when the reply of ``EXEC`` was lost (it may have run), and the error an ``EXEC`` that
    refused to run replied (e.g. ``EXECABORT`` after an out-of-memory refusal)."""

    watch: str
    reads: list[tuple[Any, ...]]
    build: Callable[[list[Any]], list[tuple[Any, ...]]]


class Command(NamedTuple):
    """``client.execute_command(*args)``: one command with redis-py's reply parsing (e.g. a
    dict for HGETALL). Result: the parsed reply; an error reply raises. ``at``: for a
    command without a key (``INFO``, ``FT._LIST``), a key whose server must run it (on a
    cluster: the node of that key's slot; :mod:`rediscache.routing`)."""

    args: tuple[Any, ...]
    at: Any = None


class Broadcast(NamedTuple):
    """``execute_command(*args)`` on every primary of a cluster (on one server: on it), in
    the order of their first slot, and with ``replicas`` on every replica too (users and
    settings are not replicated, and a replica may be promoted). Result: the parsed
    replies, one per node; an error reply raises. For what is kept per node: users (ACL),
    settings (CONFIG), statistics."""

    args: tuple[Any, ...]
    replicas: bool = False


class Pipeline(NamedTuple):
    """The commands in one redis-py pipeline (``transaction``: inside MULTI/EXEC). Result:
    the parsed replies; the first error reply raises (``raise_on_error=False``: error
    replies come back as exception values)."""

    commands: list[tuple[Any, ...]]
    transaction: bool = False
    raise_on_error: bool = True


class Sleep(NamedTuple):
    """Pause ``seconds`` (``time.sleep`` or ``asyncio.sleep``)."""

    seconds: float


class Compute(NamedTuple):
    """Call the user's ``fn(keys)`` (get_or_compute). Result: what it returned; an asyncio
    driver awaits an awaitable result, a sync one refuses it."""

    fn: Callable[[list[str]], Any]
    keys: list[str]


class Flights(NamedTuple):
    """The in-flight table of get_or_compute for the space with key ``prefix``
    (:class:`rediscache.caching.InFlight`): process-wide with threading events for sync
    spaces, per event loop with asyncio events for asyncio ones."""

    prefix: str


class WaitFlights(NamedTuple):
    """Wait until every event is set or the ``time.monotonic()`` deadline passed."""

    events: list[Any]
    deadline: float


class Background(NamedTuple):
    """Run the flow ``make()`` makes after the caller's call, without the caller waiting:
    in a thread of the sync driver, in a task of the asyncio driver (on a driver of its
    own, with connections of the same pool). At most one runs per ``key`` in a process
    (per event loop for asyncio); asked again while one runs, it runs once more when done.
    Its errors are logged (logger ``rediscache``), never raised to anyone: the work must be
    safe to leave half done and take up again. Result: None."""

    make: Callable[[], Generator[Any, Any, Any]]
    key: str


#: What a flow yields.
Effect = (
    Roundtrip
    | Once
    | Transaction
    | Command
    | Broadcast
    | Pipeline
    | Sleep
    | Compute
    | Flights
    | WaitFlights
    | Background
)
#: An operation written once: yields effects, is sent their results, returns ``T``.
Flow = Generator[Effect, Any, T]


class _Settable(Protocol):
    def set(self) -> None: ...


E = TypeVar("E", bound=_Settable)


class InFlight(Generic[E]):
    """Keys being computed in this process by get_or_compute, with an event each
    (``threading.Event`` for threads, ``asyncio.Event`` for tasks of one event loop)."""

    def __init__(self, new_event: Callable[[], E]) -> None:
        self.lock = threading.Lock()
        self.events: dict[str, E] = {}
        self._new_event = new_event

    def claim(self, keys: list[str]) -> tuple[list[str], list[E]]:
        """Keys this caller must compute (now claimed), and events of keys others compute."""
        mine: list[str] = []
        waits: list[E] = []
        with self.lock:
            for key in keys:
                event = self.events.get(key)
                if event is None:
                    self.events[key] = self._new_event()
                    mine.append(key)
                else:
                    waits.append(event)
        return mine, waits

    def release(self, keys: list[str]) -> None:
        """Un-claim ``keys`` and wake whoever waits for them."""
        with self.lock:
            for key in keys:
                event = self.events.pop(key, None)
                if event is not None:
                    event.set()
