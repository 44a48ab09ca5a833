"""Versions survive restarts, and a SIGKILL of the server in the middle of a snapshot,
rollback or copy leaves the previous or the new state, never a mix (real server, AOF)."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

import rediscache
from rediscache import generations, scripts, server
from rediscache.state import SpaceState

N = 2000


def _contents(reader: Any) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for keys, vectors, metas in reader.iter_batches(500, with_metadata=True):
        for key, vec, meta in zip(keys, vectors, metas):
            out[key] = vec.tobytes() + repr(sorted(meta.items())).encode()
    return out


def _wait_indexed(space: rediscache.Space) -> None:
    for _ in range(600):
        if not space.info().indexing:
            return
        time.sleep(0.05)
    raise AssertionError("index never finished")


def _live_index(hub: rediscache.Hub, space: rediscache.Space) -> str:
    info = hub.client.execute_command("FT.INFO", space.keys.index)
    return dict(zip(info[::2], info[1::2]))[b"index_name"].decode()


def test_sigkill_during_snapshots_and_rollbacks(
    own_dir: Path, kill_server: Callable[[int], None]
) -> None:
    config = server.ServerConfig(data_dir=own_dir)
    info, _ = server.start(config)
    vecs = np.random.default_rng(0).normal(size=(N, 8)).astype(np.float32)
    keys = [f"k{i}" for i in range(N)]
    with rediscache.connect(data_dir=own_dir) as hub:
        space = hub.create_space("crash", 8, metric="l2", fields={"g": "tag"})
        space.put_many(keys, vecs, [{"g": "a"}] * N)
        a = space.snapshot("a")
        space.put_many(keys, -vecs, [{"g": "b"}] * N)
        b = space.snapshot("b")
        want = {"a": _contents(space.at(a)), "b": _contents(space.at(b))}
        assert want["a"] != want["b"]
    for round_ in range(3):
        with rediscache.connect(data_dir=own_dir) as hub:
            space = hub.space("crash")
            stop = threading.Event()

            def churn(space: rediscache.Space = space, stop: threading.Event = stop) -> None:
                i = 0
                while not stop.is_set():
                    try:
                        space.rollback(a if i % 2 else b)
                        space.snapshot()
                    except (rediscache.RediscacheError, redis.RedisError):
                        return  # the server is gone
                    i += 1

            thread = threading.Thread(target=churn)
            thread.start()
            time.sleep(random.uniform(0.3, 1.5))  # lands at a random point of a switch
            kill_server(info.pid)
            stop.set()
            thread.join()
        info, started = server.start(config)
        assert started
        with rediscache.connect(data_dir=own_dir) as hub:
            space = hub.space("crash")
            state = space._parts.target.state
            assert state.fork is None
            assert _live_index(hub, space) == space.keys.gen(state.live).index
            live = _contents(space)
            assert live in (want["a"], want["b"]), f"round {round_}: live is a mix"
            assert len(space) == N
            for v in space.versions():
                seen = _contents(space.at(v))
                assert seen in (want["a"], want["b"]), f"round {round_}: {v} is a mix"
                if v.label:
                    assert seen == want[v.label]
            _wait_indexed(space)
            tag = "a" if live == want["a"] else "b"
            hits = space.search(vecs[5] if tag == "a" else -vecs[5], 3)
            assert hits[0].key == "k5" and hits[0].metadata == {"g": tag}
            space.prune_versions(keep_last=2)  # keep the rounds small


def test_a_copy_cut_by_sigkill_is_taken_over(
    own_dir: Path, kill_server: Callable[[int], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(generations, "FORK_LEASE_MS", 300)
    config = server.ServerConfig(data_dir=own_dir)
    info, _ = server.start(config)
    vecs = np.random.default_rng(1).normal(size=(N, 8)).astype(np.float32)
    keys = [f"k{i}" for i in range(N)]
    with rediscache.connect(data_dir=own_dir) as hub:
        space = hub.create_space("cut", 8, metric="l2")
        space.put_many(keys, vecs)
        v = space.snapshot("v")
        before = _contents(space.at(v))
        # A client starts the copy for the version, copies half, and dies with the server.
        begun = scripts.fork_begin(
            hub.client,
            space.keys.config,
            space.keys.lock,
            space.keys.garbage,
            token=uuid.uuid4().hex,
            lease_ms=500,
        )
        assert not isinstance(begun, str)
        src, dst = space.keys.gen(begun[0]), space.keys.gen(begun[1])
        pipe = hub.client.pipeline(transaction=False)
        for key in keys[: N // 2]:
            pipe.execute_command("COPY", src.doc(key), dst.doc(key))
        pipe.execute()
        time.sleep(1.2)  # appendfsync everysec
    kill_server(info.pid)

    info, _ = server.start(config)
    with rediscache.connect(data_dir=own_dir) as hub:
        space = hub.space("cut")
        assert space._parts.target.state.fork is not None  # the cut copy is still recorded
        assert _contents(space.at(v)) == before  # readers are not blocked by it
        space.put("new", np.ones(8))  # waits for the lease, takes the copy over
        state = space._parts.target.state
        assert state == SpaceState.parse(hub.client.hget(space.keys.config, "state"))
        assert state.writable
        assert _contents(space.at(v)) == before
        assert len(space) == N + 1 and space.at(v).get("new") is None
        space.collect_garbage()  # the take-over made the cut copy garbage
        gens = {k.split(b":")[2] for k in hub.client.scan_iter(match="rc:[{]cut}:g*:d:*")}
        assert len(gens) == 2  # the half-made generation was collected
        assert not hub.client.smembers(space.keys.garbage)

    # and everything survives a clean restart
    server.stop(own_dir)
    server.start(config)
    with rediscache.connect(data_dir=own_dir) as hub:
        space = hub.space("cut")
        assert [x.label for x in space.versions()] == ["v"]
        assert _contents(space.at("v")) == before
        assert len(space) == N + 1
        space.rollback("v")
        assert _contents(space) == before


def test_a_copy_cancelled_by_its_caller_releases_the_lease(
    hub: rediscache.Hub, space_name: str, server_dir: Path | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An asyncio write cancelled while it copies the live generation for a version (the
    first write after a snapshot; wait_for timeouts do this) gives the lease up at once:
    the next writer takes the copy over instead of waiting 30 s or more for it to expire.
    The copy is made slow on purpose (5 documents per round trip)."""
    import asyncio

    from both import async_hub_args

    monkeypatch.setattr(generations, "BATCH", 5)
    vecs = np.random.default_rng(2).normal(size=(N, 8)).astype(np.float32)
    keys = [f"k{i}" for i in range(N)]
    space = hub.create_space(space_name, 8, metric="l2")
    space.put_many(keys, vecs)
    lock = space.keys.lock

    async def main() -> tuple[bool, bool]:
        async with await rediscache.connect_async(**async_hub_args(server_dir)) as ahub:
            asp = await ahub.space(space_name)
            await asp.snapshot("v")
            task = asyncio.create_task(asp.put("x", vecs[0]))  # copies the generation first
            for _ in range(2000):
                if hub.client.exists(lock):
                    break
                await asyncio.sleep(0.001)
            copying = bool(hub.client.exists(lock))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            released = not hub.client.exists(lock)
            await asp.put("y", vecs[1])  # takes the copy over
            return copying, released

    copying, released = asyncio.run(main())
    assert copying, "the write never started copying"
    assert released, "the cancelled copy kept its lease"
    state = SpaceState.parse(hub.client.hget(space.keys.config, "state"))
    assert state.writable and not hub.client.exists(lock)
    assert len(space.at("v")) == N and space.at("v").get("y") is None
    assert space.get("y") is not None and space.get("x") is None
    assert sorted(k for ks, _, _ in space.at("v").iter_batches() for k in ks) == sorted(keys)


@pytest.mark.parametrize("when", ["loading", "publishing"])
def test_sigkill_while_a_stage_is_loaded_or_published(
    own_dir: Path, kill_server: Callable[[int], None], when: str
) -> None:
    """The server dies while a stage is written (or published): after the restart the live
    space is exactly what it was (or exactly the stage), and the stage is intact or
    removable; nothing of either leaks into the other."""
    config = server.ServerConfig(data_dir=own_dir)
    info, _ = server.start(config)
    vecs = np.random.default_rng(3).normal(size=(N, 8)).astype(np.float32)
    keys = [f"k{i}" for i in range(N)]
    with rediscache.connect(data_dir=own_dir) as hub:
        space = hub.create_space("rel", 8, metric="l2", fields={"g": "tag"})
        space.put_many(keys, vecs, [{"g": "a"}] * N)
        before = _contents(space)
        stage = space.stage("b")
        if when == "publishing":
            stage.put_many(keys, -vecs, [{"g": "b"}] * N)
            staged = _contents(stage)
            stage.build()
        errors: list[BaseException] = []

        def work() -> None:
            try:
                if when == "loading":
                    for i in range(0, N, 100):
                        stage.put_many(keys[i : i + 100], -vecs[i : i + 100], [{"g": "b"}] * 100)
                else:
                    stage.publish(keep=True, label="a")
            except rediscache.RediscacheError as exc:
                errors.append(exc)

        worker = threading.Thread(target=work)
        worker.start()
        time.sleep(random.uniform(0.0, 0.05) if when == "publishing" else 0.3)
        time.sleep(1.2)  # appendfsync everysec: what was acknowledged is on disk
        kill_server(info.pid)
        worker.join()

    info, _ = server.start(config)
    with rediscache.connect(data_dir=own_dir) as hub:
        space = hub.space("rel")
        _wait_indexed(space)
        live = _contents(space)
        found = space.stages()
        if when == "loading":
            assert live == before
            assert [s.label for s in found] == ["b"]
            stage = space.staged("b")
            assert all(
                v.startswith((-vecs[int(k[1:])]).tobytes()) for k, v in _contents(stage).items()
            )
            stage.discard()
            space.collect_garbage()
            assert space.stages() == [] and _contents(space) == before
        else:
            assert live in (before, staged)
            if live == staged:
                assert found == [] and _contents(space.at("a")) == before
            else:
                assert [s.label for s in found] == ["b"]
                space.staged("b").publish()
                assert _contents(space) == staged
        gens = {k.split(b":")[2] for k in hub.client.scan_iter(match="rc:[{]rel}:g*:d:*")}
        assert len(gens) == (1 if when == "loading" else 2)
