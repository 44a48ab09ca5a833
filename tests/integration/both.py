"""Helpers for tests that run one case on a sync Space and on an AsyncSpace.

A case is written once against the sync signatures; :class:`Api` calls an AsyncSpace's
methods through it and awaits them on one event loop. The ``apis`` fixture (conftest.py)
makes spaces of either kind; ``outcome`` and ``norm`` give comparable results.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import rediscache
from rediscache import AsyncSpace, AsyncStage, AsyncVersionView, Averaged, Hit, Record
from rediscache.asyncio import (
    AsyncPartitionedSpace,
    AsyncPartitionedStage,
    AsyncPartitionedVersionView,
)

MODES = ("sync", "async")


def in_threads(
    work: Callable[[int], None], threads: int, timeout: float = 60
) -> list[BaseException]:
    """``work(0)`` ... ``work(threads - 1)`` at once, each in a thread; what they raised."""
    errors: list[BaseException] = []

    def run(t: int) -> None:
        try:
            work(t)
        except BaseException as exc:  # returned to the test
            errors.append(exc)

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(timeout)
    return errors


def norm(value: Any) -> Any:
    """A comparable form of a result (NaN as a string, floats rounded)."""
    if isinstance(value, np.ndarray):
        floats = np.round(value.astype(np.float64), 5)
        cells = [["nan" if np.isnan(x) else float(x) for x in np.atleast_1d(row)] for row in floats]
        return ("array", str(value.dtype), value.shape, cells)
    if isinstance(value, Averaged):
        return ("Averaged", norm(value.vector), value.used, value.skipped)
    if isinstance(value, Record):
        return ("Record", value.key, norm(value.vector), value.metadata)
    if isinstance(value, Hit):
        return (value.key, round(value.distance, 5), value.metadata, norm(value.vector))
    if isinstance(value, (list, tuple)):
        return [norm(v) for v in value]
    return value


def outcome(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The result of a call, or the library error it raised (type and message)."""
    try:
        return norm(fn(*args, **kwargs))
    except rediscache.RediscacheError as exc:
        return ("raised", type(exc).__name__, str(exc))


async def _collect(stream: Any) -> list[Any]:
    return [item async for item in stream]


class Api:
    """One space's methods with the sync signatures, whether it is a Space or an AsyncSpace:
    what a method returns is awaited when it is awaitable, an async stream is collected into
    a list, and an asyncio version view is wrapped in an Api too."""

    def __init__(self, space: Any, run: Callable[[Any], Any], raw: Any = None) -> None:
        self._space = space
        self._run = run
        #: A sync redis-py client of the same server, for checks made beside the API.
        self.raw = raw

    @property
    def sync(self) -> Api:
        """This api (kept for the cases written when versions were sync only)."""
        return self

    def __len__(self) -> int:
        return int(self.count())

    @property
    def is_async(self) -> bool:
        """Whether the calls go to an AsyncSpace."""
        return isinstance(self._space, AsyncSpace | AsyncPartitionedSpace)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._space, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            if inspect.isasyncgen(result):  # an async stream: collected
                result = self._run(_collect(result))
            result = self._run(result) if asyncio.iscoroutine(result) else result
            kinds = (
                AsyncVersionView | AsyncStage | AsyncPartitionedVersionView | AsyncPartitionedStage
            )
            if isinstance(result, kinds):
                return Api(result, self._run, self.raw)
            return result

        return call


def async_hub_args(server_dir: Path | None) -> dict[str, Any]:
    """Arguments of connect_async for the test session's server."""
    url = os.environ.get("REDISCACHE_TEST_URL")
    return {"url": url} if url else {"data_dir": server_dir}


def send_twice(
    monkeypatch: Any, picked: Callable[[tuple[Any, ...]], bool], *, first: int | None = None
) -> list[int]:
    """Send every round trip that holds a command ``picked`` chooses to the server twice,
    the first reply thrown away: what a retry does after a reply lost to a broken
    connection or a failover. Covers redis-py's pipelines and single commands (sync and
    asyncio) and rediscache's script calls (``wire.Wire.once``, ``drive.once_async``);
    ``first``: only the first that many round trips so chosen. Returns a list with one
    entry per chosen round trip (sent twice or not)."""
    import redis.asyncio.client

    from rediscache import drive, wire

    chosen: list[int] = []

    def again(commands: list[tuple[Any, ...]]) -> bool:
        if not any(picked(tuple(c)) for c in commands):
            return False
        chosen.append(1)
        return first is None or len(chosen) <= first

    execute, aexecute = redis.client.Pipeline.execute, redis.asyncio.client.Pipeline.execute
    command, acommand = redis.Redis.execute_command, redis.asyncio.Redis.execute_command
    once, aonce = wire.Wire.once, drive.once_async

    def pipeline_twice(self: Any, *args: Any, **kwargs: Any) -> Any:
        stack = list(self.command_stack)
        if again([c[0] for c in stack]):
            execute(self, *args, **kwargs)
            self.command_stack.extend(stack)
        return execute(self, *args, **kwargs)

    async def apipeline_twice(self: Any, *args: Any, **kwargs: Any) -> Any:
        stack = list(self.command_stack)
        if again([c[0] for c in stack]):
            await aexecute(self, *args, **kwargs)
            self.command_stack.extend(stack)
        return await aexecute(self, *args, **kwargs)

    def command_twice(self: Any, *args: Any, **kwargs: Any) -> Any:
        if again([args]):
            command(self, *args, **kwargs)
        return command(self, *args, **kwargs)

    async def acommand_twice(self: Any, *args: Any, **kwargs: Any) -> Any:
        if again([args]):
            await acommand(self, *args, **kwargs)
        return await acommand(self, *args, **kwargs)

    def once_twice(self: Any, sent: Any, *rest: Any) -> Any:
        if again([sent]):
            once(self, sent, *rest)
        return once(self, sent, *rest)

    async def aonce_twice(client: Any, sent: Any, *rest: Any) -> Any:
        if again([sent]):
            await aonce(client, sent, *rest)
        return await aonce(client, sent, *rest)

    monkeypatch.setattr(redis.client.Pipeline, "execute", pipeline_twice)
    monkeypatch.setattr(redis.asyncio.client.Pipeline, "execute", apipeline_twice)
    monkeypatch.setattr(redis.Redis, "execute_command", command_twice)
    monkeypatch.setattr(redis.asyncio.Redis, "execute_command", acommand_twice)
    monkeypatch.setattr(wire.Wire, "once", once_twice)
    monkeypatch.setattr(drive, "once_async", aonce_twice)
    return chosen
