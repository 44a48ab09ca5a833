"""Durable writes: a write that returns only once it is on N replicas, or fsynced to the
append-only file on the primary and N replicas.

Redis replicates asynchronously: a primary acknowledges a write before any replica has it,
so a failover (the primary dies, a replica is promoted) loses the writes the replicas had not
received yet. ``WAIT n timeout`` makes the writing connection wait until ``n`` replicas
acknowledged everything it wrote; ``WAITAOF 1 n timeout`` until the primary and ``n``
replicas fsynced it to their AOF. With ``hub.durability = Durability(replicas=1)`` every
effect of a call that writes data (:func:`writes_data`: a writing script, a transaction,
commands holding a write command) carries that command on the same connection, in the same round
trip: no extra round trip, but the reply comes only once the replicas acknowledged (the
latency of one replication hop; docs/availability.md measures it). Reads wait for nothing,
nor do ttl refreshes and a search index's "complete" mark.

A write that reached fewer replicas than asked within the timeout is applied on the primary
but may be lost on a failover: the call runs to its end on the primary, then raises
:class:`DurabilityError` instead of returning (nothing is undone; a later WAIT may still see
it replicated). Reads are unchanged. Not covered: the steps inside MULTI that create or drop
a space, record a grant or a partitioned space's version (WAIT is refused inside MULTI);
the writes after them in the same call cover them (replication keeps the primary's order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeVar

from .effects import Command, Flow, Once, Transaction
from .errors import DurabilityError, InvalidInputError

T = TypeVar("T")

__all__ = ["WRITE_COMMANDS", "Durability", "short_of_durability", "writes", "writes_data"]

#: Commands that write, by name: a round trip holding one of them carries the wait too
#: (scripts, transactions, pipelines and single commands always do).
WRITE_COMMANDS = frozenset(
    b"SET HSET HDEL HINCRBY DEL UNLINK SADD SREM ZADD ZREM COPY RENAME INCR INCRBY".split()
)


@dataclass(frozen=True)
class Durability:
    """What a write waits for before it returns.

    Attributes:
        replicas: replicas that must acknowledge the write (``WAIT``), 1 or more.
        aof: also fsynced to the append-only file on the primary and on ``replicas``
            replicas (``WAITAOF 1 replicas``; every node must run with ``appendonly yes``,
            as the embedded servers do).
        timeout: seconds to wait at most (then :class:`DurabilityError`); > 0.
    """

    replicas: int = 1
    aof: bool = False
    timeout: float = 1.0

    def __post_init__(self) -> None:
        """Check the fields. Raises InvalidInputError naming the field."""
        if (
            isinstance(self.replicas, bool)
            or not isinstance(self.replicas, int)
            or not (0 <= self.replicas <= 64)
        ):
            raise InvalidInputError(
                f"Durability.replicas must be an int from 0 to 64, got {self.replicas!r}"
            )
        if not isinstance(self.aof, bool):
            raise InvalidInputError(f"Durability.aof must be a bool, got {self.aof!r}")
        if self.replicas == 0 and not self.aof:
            raise InvalidInputError("Durability(replicas=0) waits for nothing: give aof=True")
        t = self.timeout
        if (
            isinstance(t, bool)
            or not isinstance(t, int | float)
            or not (math.isfinite(t) and 0 < t <= 3600)
        ):
            raise InvalidInputError(
                f"Durability.timeout must be seconds in (0, 3600], got {self.timeout!r}"
            )

    def command(self) -> tuple[Any, ...]:
        """The command sent after each write (``WAIT`` or ``WAITAOF``)."""
        ms = max(1, round(self.timeout * 1000))
        if self.aof:
            return ("WAITAOF", 1, self.replicas, ms)
        return ("WAIT", self.replicas, ms)

    def check(self, reply: Any, result: Any = None) -> None:
        """Raise :class:`DurabilityError` when ``reply`` (of :meth:`command`) says the
        write reached fewer nodes than asked (carrying ``result``, the reply of the effect
        the wait followed: see :func:`short_of_durability`); an error reply is raised as
        it is."""
        if isinstance(reply, BaseException):
            raise reply
        try:
            self._check(reply)
        except DurabilityError as exc:
            exc.carried = (result,)
            raise

    def _check(self, reply: Any) -> None:
        if self.aof:
            local, remote = (int(x) for x in reply)
            if local >= 1 and remote >= self.replicas:
                return
            raise DurabilityError(
                f"done on the primary, but a write of it was fsynced to the AOF on "
                f"{'it and ' if local else 'not even it and '}{remote} of the "
                f"{self.replicas} replica(s) asked within {self.timeout:g} s: a failover "
                "now may lose it"
            )
        acked = int(reply)
        if acked < self.replicas:
            raise DurabilityError(
                f"done on the primary, but a write of it was acknowledged by {acked} of the "
                f"{self.replicas} replica(s) asked within {self.timeout:g} s: a failover "
                "now may lose it"
            )


def short_of_durability(flow: Flow[T]) -> Flow[T]:
    """``flow``, going on when one of its effects reached fewer replicas than asked: the
    effect's own reply (carried by the :class:`DurabilityError`) is sent into the flow,
    which runs to its end (the call completes on the primary), and the first such error is
    raised then, instead of its result. What else the flow raises is raised as it is."""
    pending: DurabilityError | None = None
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.send(reply) if error is None else flow.throw(error)
        except StopIteration as stop:
            if pending is not None:
                raise pending from None
            result: T = stop.value
            return result
        try:
            reply, error = (yield effect), None
        except DurabilityError as exc:
            if exc.carried is None:
                reply, error = None, exc
            else:
                pending = pending or exc
                reply, error = exc.carried[0], None
        except BaseException as exc:
            reply, error = None, exc


def writes_data(effect: Any) -> bool:
    """Whether ``effect`` (a Once, Command, Pipeline, Roundtrip or Transaction) writes data
    a durable write waits for: a transaction; a script called with EVALSHA (not
    EVALSHA_RO) whose writes are the data's (``Once.data``: not a search index's
    "complete" mark); commands among which one of :data:`WRITE_COMMANDS` (so a read, a
    search, a ttl refresh, waits for nothing)."""
    kind = type(effect)
    if kind is Transaction:
        return True
    if kind is Once:
        verb = effect.command[0]
        verb = verb.decode() if isinstance(verb, bytes) else str(verb)
        if verb.upper() not in ("EVALSHA", "EVAL"):
            return writes([effect.command])
        return bool(effect.data)
    if kind is Command:
        return writes([effect.args])
    return writes(effect.commands)


def writes(commands: list[tuple[Any, ...]]) -> bool:
    """Whether any of ``commands`` is a write command (:data:`WRITE_COMMANDS`)."""
    for command in commands:
        name = command[0]
        word = name.upper() if isinstance(name, bytes) else str(name).upper().encode()
        if word in WRITE_COMMANDS:
            return True
    return False
