"""The drivers without a server: cancellations reach the flow (also when a library below
swallows them), and a copy interrupted while it holds the fork lease gives the lease up."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from rediscache import scripts
from rediscache.config import SpaceConfig
from rediscache.context import HubContext
from rediscache.drive import AsyncDriver
from rediscache.effects import Command, Once, Sleep
from rediscache.state import SpaceState
from rediscache.target import Target
from rediscache.wire import ConnectCounter


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Task.cancelling() is Python 3.11+")
def test_a_cancellation_swallowed_below_the_driver_reaches_the_flow() -> None:
    """redis-py's asyncio connections may swallow a CancelledError (they did in 18 of 20
    tries with redis-py 8.1): the driver throws it into the flow itself."""

    async def swallow(effect: Any) -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "swallowed"
        return "slept"

    driver = AsyncDriver.__new__(AsyncDriver)
    driver._perform = {Sleep: swallow}
    seen: list[str] = []

    def flow() -> Any:
        try:
            yield Sleep(1)
            yield Sleep(1)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        return "finished"

    async def main() -> None:
        task = asyncio.create_task(driver.run(flow()))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert seen == ["cancelled"]


def _target() -> Target:
    config = SpaceConfig("t", 4, "l2", "flat", "float32", {}, {})
    state = SpaceState.parse("3 1 1 -")  # generation 1 shared with a version
    return Target(config, state, HubContext(ConnectCounter(), 1.0))


@pytest.mark.parametrize("interrupt", [asyncio.CancelledError, KeyboardInterrupt])
def test_a_copy_interrupted_mid_way_releases_its_lease(interrupt: type[BaseException]) -> None:
    target = _target()
    flow = target.fork(target.state)
    effect = flow.send(None)  # the copy begins at once: fork_begin.lua
    assert isinstance(effect, Once) and effect.command[1] == scripts.sha("fork_begin")
    token = effect.command[-2]
    effect = flow.send([1, 2, b"4 1 1 tok"])  # the lease is ours: copy 1 into 2
    assert isinstance(effect, Command) and effect.args[0] == "SCAN"
    effect = flow.throw(interrupt())  # cancelled while copying
    assert isinstance(effect, Once) and effect.command[1] == scripts.sha("fork_abort")
    assert effect.command[2:] == (1, target.keys.lock, token)
    with pytest.raises(interrupt):
        flow.send(1)


def test_a_copy_whose_begin_reply_was_lost_releases_the_lease_it_may_hold() -> None:
    target = _target()
    flow = target.fork(target.state)
    effect = flow.send(None)  # the copy begins at once: fork_begin.lua
    token = effect.command[-2]
    effect = flow.throw(asyncio.CancelledError())  # while fork_begin.lua's reply was awaited
    assert isinstance(effect, Once) and effect.command[1] == scripts.sha("fork_abort")
    assert effect.command[-1] == token
    with pytest.raises(asyncio.CancelledError):
        flow.send(0)  # it was not ours after all: nothing released, the error goes on
