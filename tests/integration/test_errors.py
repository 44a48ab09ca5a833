"""Every failure of a public call is a RediscacheError (issue 13, item 3): a server that is
down or loading, ACL users without a permission, lost connections and lost replies, sync,
asyncio and CLI; and no password shows anywhere."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import redis.asyncio
from click.testing import CliRunner

import rediscache
from rediscache import Hub, connect_async, server
from rediscache.cli import cli
from rediscache.hub import no_retry

DIM = 4
V = [1.0, 0.5, 0.25, 0.125]


def _compute(keys: list[str]) -> np.ndarray:
    return np.ones((len(keys), DIM))


def _sync_calls(hub: Hub, sp: rediscache.Space, view: rediscache.VersionView) -> dict[str, Any]:
    """Every public call of a hub, a space and a version view, with simple arguments."""
    return {
        "spaces": hub.spaces,
        "space": lambda: hub.space(sp.name),
        "create_space": lambda: hub.create_space("other", DIM),
        "drop_space": lambda: hub.drop_space("other", missing_ok=True),
        "server_versions": hub.server_versions,
        "server_stats": hub.server_stats,
        "put": lambda: sp.put("k9", V),
        "put_many": lambda: sp.put_many(["k8"], [V]),
        "delete": lambda: sp.delete("k1"),
        "get": lambda: sp.get("k1"),
        "get_many": lambda: sp.get_many(["k1"]),
        "get_record": lambda: sp.get_record("k1"),
        "search": lambda: sp.search(V, 2),
        "search_many": lambda: sp.search_many([V], 2),
        "similar": lambda: sp.similar("k1", 2),
        "within": lambda: sp.within(V, 0.5),
        "average": lambda: sp.average(["k1", "k2"]),
        "combine": lambda: sp.combine(["k1"], ["k2"]),
        "update_mean": lambda: sp.update_mean("m", ["k1"]),
        "get_or_compute": lambda: sp.get_or_compute(["z"], _compute),
        "len count": lambda: len(sp),
        "info": sp.info,
        "enable_hot_cache": sp.enable_hot_cache,
        "iter_batches": lambda: list(sp.iter_batches()),
        "versions": sp.versions,
        "version": lambda: sp.version(1),
        "snapshot": sp.snapshot,
        "at": lambda: sp.at(1),
        "rollback": lambda: sp.rollback(1),
        "delete_version": lambda: sp.delete_version(1),
        "prune_versions": lambda: sp.prune_versions(5),
        "diff": lambda: sp.diff(1),
        "view get": lambda: view.get("k1"),
        "view get_many": lambda: view.get_many(["k1"]),
        "view get_record": lambda: view.get_record("k1"),
        "view search": lambda: view.search(V, 2),
        "view search_many": lambda: view.search_many([V], 2),
        "view similar": lambda: view.similar("k1", 2),
        "view within": lambda: view.within(V, 0.5),
        "view iter_batches": lambda: list(view.iter_batches()),
    }


async def _drain(batches: Any) -> list[Any]:
    return [batch async for batch in batches]


def _async_calls(
    ahub: rediscache.AsyncHub, asp: rediscache.AsyncSpace, view: rediscache.AsyncVersionView
) -> dict[str, Any]:
    return {
        "spaces": ahub.spaces,
        "space": lambda: ahub.space(asp.name),
        "create_space": lambda: ahub.create_space("other", DIM),
        "drop_space": lambda: ahub.drop_space("other", missing_ok=True),
        "put": lambda: asp.put("k9", V),
        "put_many": lambda: asp.put_many(["k8"], [V]),
        "delete": lambda: asp.delete("k1"),
        "get": lambda: asp.get("k1"),
        "get_many": lambda: asp.get_many(["k1"]),
        "search": lambda: asp.search(V, 2),
        "search_many": lambda: asp.search_many([V], 2),
        "similar": lambda: asp.similar("k1", 2),
        "within": lambda: asp.within(V, 0.5),
        "average": lambda: asp.average(["k1", "k2"]),
        "combine": lambda: asp.combine(["k1"], ["k2"]),
        "update_mean": lambda: asp.update_mean("m", ["k1"]),
        "get_or_compute": lambda: asp.get_or_compute(["z"], _compute),
        "get_record": lambda: asp.get_record("k1"),
        "get_metadata_many": lambda: asp.get_metadata_many(["k1"]),
        "update_vectors": lambda: asp.update_vectors(["k1"], [V]),
        "count": asp.count,
        "info": asp.info,
        "iter_batches": lambda: _drain(asp.iter_batches()),
        "versions": asp.versions,
        "version": lambda: asp.version(1),
        "snapshot": asp.snapshot,
        "at": lambda: asp.at(1),
        "rollback": lambda: asp.rollback(1),
        "delete_version": lambda: asp.delete_version(1),
        "prune_versions": lambda: asp.prune_versions(5),
        "diff": lambda: asp.diff(1),
        "server_versions": ahub.server_versions,
        "server_stats": ahub.server_stats,
        "view get": lambda: view.get("k1"),
        "view get_many": lambda: view.get_many(["k1"]),
        "view get_record": lambda: view.get_record("k1"),
        "view search": lambda: view.search(V, 2),
        "view similar": lambda: view.similar("k1", 2),
        "view iter_batches": lambda: _drain(view.iter_batches()),
    }


def _fill(hub: Hub, name: str = "items") -> rediscache.Space:
    sp = hub.create_space(name, DIM, fields={"genre": "tag"})
    sp.put_many(["k1", "k2", "k3"], np.eye(3, DIM) + 0.1, [{"genre": "a"}] * 3)
    sp.snapshot("v1")
    return sp


def test_every_call_fails_cleanly_when_the_server_is_down(own_dir: Path) -> None:
    info, _ = server.start(server.ServerConfig(data_dir=own_dir))
    hub = rediscache.connect(data_dir=own_dir)
    loop = asyncio.new_event_loop()
    try:
        sp = _fill(hub)
        view = sp.at(1)
        ahub = loop.run_until_complete(connect_async(data_dir=own_dir))
        asp = loop.run_until_complete(ahub.space("items"))
        aview = loop.run_until_complete(asp.at(1))
        server.stop(own_dir)
        failures = []
        for name, call in _sync_calls(hub, sp, view).items():
            try:
                call()
            except rediscache.ServerError as exc:
                op = name.split()[-1]
                if op not in str(exc) or ("written" not in str(exc) and "stored" not in str(exc)):
                    failures.append(f"sync {name}: message {exc}")
            except Exception as exc:
                failures.append(f"sync {name}: {type(exc).__module__}.{type(exc).__name__} {exc}")
            else:
                failures.append(f"sync {name}: no error")
        for name, call in _async_calls(ahub, asp, aview).items():
            try:
                loop.run_until_complete(call())
            except rediscache.ServerError as exc:
                if name.split()[-1] not in str(exc):
                    failures.append(f"async {name}: message {exc}")
            except Exception as exc:
                failures.append(f"async {name}: {type(exc).__module__}.{type(exc).__name__} {exc}")
            else:
                failures.append(f"async {name}: no error")
        assert not failures, "\n".join(failures)
        with pytest.raises(rediscache.ConnectionFailedError) as err:
            sp.get("k1")
        assert str(err.value).startswith("get in space 'items': cannot reach Redis at ")
        assert str(err.value).endswith("nothing was written")
        loop.run_until_complete(ahub.close())
    finally:
        loop.close()
        hub.close()
    # the CLI: one line, exit 1, no traceback, no password (given as a URL parameter)
    url = f"redis://127.0.0.1:{info.port}/0?password={info.password}"
    for args in (["get", "items", "k1"], ["search", "items", "--key", "k1"], ["stats"]):
        res = CliRunner().invoke(cli, ["--url", url, *args])
        assert res.exit_code == 1, res.output
        assert res.output.startswith("error: ") and res.output.count("\n") == 1, res.output
        assert info.password not in res.output
        assert not isinstance(res.exception, redis.RedisError)


FREQUENT_EVENTS = ["--loading-process-events-interval-bytes", "1024"]


def test_a_loading_server_raises_server_loading_error(own_dir: Path) -> None:
    """Restarted by hand with key-load-delay, the server answers LOADING for seconds."""
    info, _ = server.start(server.ServerConfig(data_dir=own_dir))
    with rediscache.connect(data_dir=own_dir) as hub:
        sp = hub.create_space("items", DIM, algorithm="flat")
        sp.put_many([f"k{i}" for i in range(3000)], np.ones((3000, DIM)))
        hub.client.execute_command("BGREWRITEAOF")  # keys into the RDB preamble: slow to load
        while int(hub.client.info("persistence")["aof_rewrite_in_progress"]):
            time.sleep(0.05)
    server.stop(own_dir)
    conf = own_dir / "redis.conf"
    assert conf.is_file()
    pid = os.posix_spawn(
        info.binary,
        # 2 ms per key (6 s of loading), answering clients (LOADING) every KB loaded
        [info.binary, str(conf), "--key-load-delay", "2000", *FREQUENT_EVENTS],
        dict(os.environ),
        file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)],
    )
    loop = asyncio.new_event_loop()
    try:
        client = info.client(retry=no_retry())  # redis-py's default would retry LOADING
        for _ in range(200):
            try:
                client.ping()
            except redis.BusyLoadingError:
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        else:
            pytest.fail("the server never answered LOADING")
        client.close()
        hub = rediscache.Hub(info.client(protocol=2, retry=no_retry()), owns_client=True)
        with pytest.raises(rediscache.ServerLoadingError, match="get in space 'items'"):
            rediscache.Space(hub, sp.config, sp._parts.target.state).get("k1")
        with pytest.raises(rediscache.ServerLoadingError, match="spaces"):
            hub.spaces()
        with pytest.raises(rediscache.ServerLoadingError):
            rediscache.connect(info.url)
        ahub = rediscache.AsyncHub(
            redis.asyncio.Redis(unix_socket_path=info.unix_socket, password=info.password),
            owns_client=True,
        )
        asp = rediscache.AsyncSpace(ahub, sp.config, sp._parts.target.state)
        with pytest.raises(rediscache.ServerLoadingError, match="get in space 'items'") as err:
            loop.run_until_complete(asp.get("k1"))
        assert str(err.value).count("space 'items'") == 1, str(err.value)  # said once
        loop.run_until_complete(ahub.close())
        hub.close()
    finally:
        loop.close()
        os.kill(pid, 9)
        os.waitpid(pid, 0)


# --------------------------------------------------------------------------- ACL


@pytest.fixture()
def acl(hub: Hub) -> Iterator[Callable[..., str]]:
    """Makes ACL users on the session's server (``acl(*rules)`` -> a URL for the user);
    they are deleted afterwards."""
    if hub.server is None:
        pytest.skip("needs the session's embedded server (its address and password)")
    made: list[str] = []
    host, port = hub.server.host, hub.server.port

    def make(*rules: str) -> str:
        user = "rc-test-" + uuid.uuid4().hex[:8]
        password = "pw-" + uuid.uuid4().hex
        hub.client.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}", *rules)
        made.append(user)
        return f"redis://{user}@{host}:{port}/0?password={password}"

    yield make
    for user in made:
        hub.client.execute_command("ACL", "DELUSER", user)


def _reader_rules(name: str, *extra: str) -> list[str]:
    return [f"~rc:{{{name}}}:*", "+@read", "+@connection", "-module", *extra]


def test_an_acl_user_without_module_list_connects(
    hub: Hub, space_name: str, acl: Callable[..., str]
) -> None:
    _fill(hub, space_name)
    url = acl(*_reader_rules(space_name, "+ft.search", "+ft.info"))
    with rediscache.connect(url) as reader:
        sp = reader.space(space_name)
        assert sp.get("k1") is not None
        assert [h.key for h in sp.search(sp.get("k1"), 1)] == ["k1"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_missing_permission_is_permission_denied(
    hub: Hub, space_name: str, acl: Callable[..., str], mode: str
) -> None:
    _fill(hub, space_name)
    url = acl(*_reader_rules(space_name, "+ft.info"))  # no FT.SEARCH, no EVALSHA
    user = url.split("//")[1].split("@")[0]
    password = url.rsplit("=", 1)[1]
    if mode == "sync":
        with rediscache.connect(url) as reader:
            sp = reader.space(space_name)
            assert sp.get("k1") is not None
            with pytest.raises(rediscache.PermissionDeniedError) as err:
                sp.search(V, 2)
            assert f"search in space {space_name!r}" in str(err.value)
            assert user in str(err.value) and err.value.user == user
            with pytest.raises(rediscache.PermissionDeniedError, match="may not put in space"):
                sp.put("k1", V)
    else:

        async def run() -> None:
            reader = await connect_async(url)
            async with reader:
                sp = await reader.space(space_name)
                assert await sp.get("k1") is not None
                with pytest.raises(rediscache.PermissionDeniedError) as err:
                    await sp.search(V, 2)
                assert f"search in space {space_name!r}" in str(err.value)
                assert user in str(err.value)
                with pytest.raises(rediscache.PermissionDeniedError):
                    await sp.put("k1", V)

        asyncio.run(run())
    res = CliRunner().invoke(cli, ["--url", url, "search", space_name, "--key", "k1"])
    assert res.exit_code == 1, res.output
    assert res.output.startswith(f"error: user {user!r} may not search in space")
    assert res.output.count("\n") == 1
    assert password not in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["--url", url, "-vv", "--json", "get", space_name, "k1"])
    assert res.exit_code == 0, res.output
    assert password not in res.output


# --------------------------------------------------------------------------- lost connections


def test_a_read_survives_a_killed_connection_and_a_lost_write_is_not_resent(
    own_dir: Path,
) -> None:
    info, _ = server.start(server.ServerConfig(data_dir=own_dir))
    admin = info.client()
    try:
        with rediscache.connect(info.url, socket_timeout=0.5) as hub:
            sp = _fill(hub)
            sp.get("k1")  # a pooled connection, idle
            admin.execute_command("CLIENT", "KILL", "TYPE", "normal")  # not admin's own
            assert sp.get("k1") is not None
            assert len(sp.search(V, 2)) == 2
            admin.execute_command("CLIENT", "KILL", "TYPE", "normal")
            assert sp.get_many(["k1", "k2"]).shape == (2, DIM)

            async def killed_async() -> None:
                ahub = await connect_async(info.url)
                async with ahub:
                    asp = await ahub.space("items")
                    assert await asp.get("k1") is not None
                    admin.execute_command("CLIENT", "KILL", "TYPE", "normal")
                    assert await asp.get("k1") is not None
                    assert len(await asp.search(V, 2)) == 2

            asyncio.run(killed_async())

            def evalsha_calls() -> int:
                stats = admin.info("commandstats")
                return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))

            sp.put("k3", np.eye(3, DIM)[2] + 0.1)  # the copy for v1: the pause meets update_mean
            before = evalsha_calls()
            admin.execute_command("CLIENT", "PAUSE", 1500, "WRITE")  # the reply comes late
            with pytest.raises(rediscache.OutcomeUnknownError) as err:
                sp.update_mean("m", ["k1"])
            assert "update_mean in space 'items'" in str(err.value)
            time.sleep(1.6)
            # sent once and never again (Redis drops it unrun when the client has gone)
            assert evalsha_calls() - before <= 1
    finally:
        admin.close()


def test_reprs_and_messages_hide_passwords(hub: Hub) -> None:
    if hub.server is None:
        pytest.skip("needs the session's embedded server")
    password = hub.server.password
    assert password not in repr(hub)
    assert password not in repr(hub.client)
    url = f"redis://127.0.0.1:{hub.server.port}/0?password={password}"
    with rediscache.connect(url) as other:
        assert password not in repr(other) and password not in repr(other.client)

    async def run() -> None:
        ahub = await connect_async(url)
        async with ahub:
            assert password not in repr(ahub) and password not in repr(ahub.client)

    asyncio.run(run())


def test_more_concurrent_calls_than_connections_wait_for_one(
    hub: Hub, space_name: str, server_dir: Path | None
) -> None:
    """Calls beyond the pool's connections wait for a free one (they failed at once with
    "Too many connections", reported as an unreachable server); one that waits too long
    says the pool was full, not that Redis is down."""
    from both import async_hub_args

    sp = hub.create_space(space_name, DIM)
    keys = [f"k{i}" for i in range(50)]
    sp.put_many(keys, np.ones((50, DIM)))

    async def many() -> list[Any]:
        async with await connect_async(**async_hub_args(server_dir)) as ahub:
            asp = await ahub.space(space_name)
            return await asyncio.gather(*(asp.get_many(keys) for _ in range(250)))

    assert len(asyncio.run(many())) == 250
    url = os.environ.get("REDISCACHE_TEST_URL") or server.status(server_dir).info.url  # type: ignore[union-attr]
    with rediscache.connect(url, max_connections=1, timeout=0.2) as small:
        held = small.node_client(space_name).connection_pool.get_connection()  # the only one
        try:
            with pytest.raises(rediscache.ConnectionFailedError) as err:
                small.space(space_name)
        finally:
            small.node_client(space_name).connection_pool.release(held)
        assert "max_connections=1" in str(err.value) and "nothing was sent" in str(err.value)
        assert small.space(space_name).get("k1") is not None


def test_reads_of_a_primary_refusing_writes_for_want_of_replicas(own_dir: Path) -> None:
    """A primary short of replicas (min-replicas-to-write, NOREPLICAS) takes no write but
    serves reads: a new hub's first search, whose index check also writes the index's
    "complete" mark, answers (before, it raised the mark's refusal as ServerError, and a
    hub over Sentinels waited it out for failover_wait, then raised FailoverTimeoutError),
    sync and asyncio; a put is refused and says why."""
    info, _ = server.start(server.ServerConfig(data_dir=own_dir))
    admin = info.client()
    try:
        with rediscache.connect(info.url) as hub:
            sp = hub.create_space("items", DIM, metric="l2")
            sp.put_many([f"k{i}" for i in range(10)], np.random.default_rng(1).random((10, DIM)))
        admin.config_set("min-replicas-to-write", 1)
        with rediscache.connect(info.url) as hub:
            sp = hub.space("items")
            assert len(sp.search(np.ones(DIM), 3)) == 3
            with pytest.raises(rediscache.ServerError, match="NOREPLICAS"):
                sp.put("x", np.ones(DIM))

        async def fresh_async() -> int:
            ahub = await connect_async(info.url)
            async with ahub:
                asp = await ahub.space("items")
                return len(await asp.search(np.ones(DIM), 3))

        assert asyncio.run(fresh_async()) == 3
    finally:
        admin.config_set("min-replicas-to-write", 0)
        admin.close()
