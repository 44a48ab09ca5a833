"""The embedded server always comes back (issue 13, item 1): start-ups interrupted at any
point never leave two servers on one data directory, busy is not dead, and searches never
answer silently from an index that is still being rebuilt."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from click.testing import CliRunner

import rediscache
from rediscache import server
from rediscache.cli import cli
from rediscache.drive import SyncDriver, wait_background
from rediscache.generations import create_index

#: Keys of the slow-loading data dir, and the server's load delay per key (microseconds:
#: redis.conf's key-load-delay), so that its load takes a few seconds on any machine.
SLOW_KEYS = 2_000
LOAD_DELAY_US = 2_000

#: Run in a child process: start (or connect to) the embedded server of argv[1] with the
#: load delay, as `connect()` does.
CHILD = f"""
import sys
from rediscache import server
conf = server._conf_text
server._conf_text = lambda *a, **k: conf(*a, **k) + "key-load-delay {LOAD_DELAY_US}\\n"
import rediscache
rediscache.connect(data_dir=sys.argv[1], server=server.ServerConfig(start_timeout=600))
print("connected", flush=True)
"""


def _servers_on(data_dir: Path) -> list[int]:
    """Pids of the redis-server processes working in ``data_dir`` (Redis changes into its
    `dir`; its command line is rewritten to "redis-server host:port")."""
    where = data_dir.resolve()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            exe = os.readlink(proc / "exe")
            cwd = Path(os.readlink(proc / "cwd"))
        except OSError:
            continue
        if cwd == where and "redis" in os.path.basename(exe):
            pids.append(int(proc.name))
    return sorted(pids)


@pytest.fixture(scope="module")
def slow_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stopped data dir whose data sits in the AOF's RDB base (where key-load-delay
    applies): SLOW_KEYS vectors of an 8-d space named "slow"."""
    data = tmp_path_factory.mktemp("slow") / "srv"
    server.start(server.ServerConfig(data_dir=data))
    try:
        with rediscache.connect(data_dir=data) as hub:
            space = hub.create_space("slow", 8, metric="l2", algorithm="flat")
            rng = np.random.default_rng(1)
            space.put_many([f"k{i}" for i in range(SLOW_KEYS)], rng.standard_normal((SLOW_KEYS, 8)))
            hub.client.execute_command("BGREWRITEAOF")
            while hub.client.info("persistence")["aof_rewrite_in_progress"]:
                time.sleep(0.05)
    finally:
        server.stop(data)
    return data


@pytest.fixture()
def slow_copy(slow_dir: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the slow-loading data dir; its server is stopped afterwards."""
    data = tmp_path / "srv"
    shutil.copytree(
        slow_dir, data, ignore=shutil.ignore_patterns("*.sock", "server.lock", "server.json")
    )
    yield data
    server.stop(data, timeout=60)
    assert _servers_on(data) == []


def _child(data_dir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_until(what: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_a_start_interrupted_while_loading_never_doubles_the_server(
    slow_copy: Path, how: signal.Signals
) -> None:
    """A caller killed while connect() waits for a loading server leaves that server
    recorded and running; the next callers adopt it, never start a second one."""
    first = _child(slow_copy)
    _wait_until(lambda: server.status(slow_copy).loading)  # the child's server is loading
    pid = server.status(slow_copy).info.pid  # type: ignore[union-attr]
    first.send_signal(how)
    first.communicate(timeout=60)
    assert _servers_on(slow_copy) == [pid]
    # a second caller, killed in the same phase, and a third that waits it out
    second = _child(slow_copy)
    time.sleep(1.0)
    second.kill()
    second.communicate(timeout=60)
    assert _servers_on(slow_copy) == [pid]
    info, started = server.start(server.ServerConfig(data_dir=slow_copy, start_timeout=600))
    assert not started and info.pid == pid
    assert _servers_on(slow_copy) == [pid]
    with rediscache.connect(data_dir=slow_copy) as hub:
        assert len(hub.space("slow")) == SLOW_KEYS


def test_concurrent_starts_on_a_loading_dir_share_one_server(slow_copy: Path) -> None:
    children = [_child(slow_copy) for _ in range(3)]
    outs = [c.communicate(timeout=600) for c in children]
    assert all(c.returncode == 0 for c in children), outs
    assert all(b"connected" in out for out, _ in outs)
    assert len(_servers_on(slow_copy)) == 1


def test_a_data_dir_held_by_an_unrecorded_server_is_refused(own_dir: Path) -> None:
    """Two servers never share a data dir, even when server.json was lost."""
    info, _ = server.start(server.ServerConfig(data_dir=own_dir))
    state = (own_dir / server.STATE_FILE).read_text()
    (own_dir / server.STATE_FILE).unlink()
    try:
        with pytest.raises(rediscache.EmbeddedServerError, match=f"pid {info.pid}"):
            server.start(server.ServerConfig(data_dir=own_dir))
        assert _servers_on(own_dir) == [info.pid]
    finally:
        (own_dir / server.STATE_FILE).write_text(state)


@contextlib.contextmanager
def _busy(info: server.ServerInfo, seconds: int) -> Iterator[None]:
    """The server of ``info`` runs a Lua loop for ``seconds`` (BUSY to everyone after
    0.1 s); the block runs from 0.5 s into it, and the loop is waited for afterwards."""
    with info.client() as admin:
        admin.config_set("busy-reply-threshold", 100)  # milliseconds
    script = (
        "local t0 = tonumber(redis.call('TIME')[1]) "
        f"while tonumber(redis.call('TIME')[1]) - t0 < {seconds} do end return 1"
    )

    def run() -> None:
        with info.client() as c:
            c.eval(script, 0)

    runner = threading.Thread(target=run)
    runner.start()
    try:
        time.sleep(0.5)
        yield
    finally:
        runner.join()


def test_a_busy_server_is_not_dead(own_dir: Path) -> None:
    """While a long script runs (BUSY to everyone), connect() and the CLI from other
    processes never decide the server is gone and start a second one."""
    info, _ = server.start(server.ServerConfig(data_dir=own_dir))
    with _busy(info, 4):
        with (
            info.client(socket_timeout=5) as probe,
            pytest.raises(redis.ResponseError, match="BUSY"),
        ):
            probe.ping()
        exe = str(Path(sys.executable).parent / "rediscache")
        stats = subprocess.run(
            [exe, "--data-dir", str(own_dir), "stats"], capture_output=True, timeout=120
        )
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                "import rediscache,sys; rediscache.connect(data_dir=sys.argv[1])",
                str(own_dir),
            ],
            capture_output=True,
            timeout=120,
        )
        assert _servers_on(own_dir) == [info.pid], (stats.stderr, child.stderr)
        # they failed cleanly (busy) or succeeded once the script ended: never a traceback
        assert b"Traceback" not in stats.stderr
    assert server.start(server.ServerConfig(data_dir=own_dir))[0].pid == info.pid


# ------------------------------------------------------------------ index rebuilds


def _rebuild_index(hub: rediscache.Hub, name: str) -> None:
    """Put the live index of ``name`` in the state a restart leaves it in: dropped and
    created again over documents that exist, so the search module scans them in the
    background."""
    space = hub.space(name)
    gen = space.live_keys
    node = hub.node_client(name)
    node.execute_command("FT.DROPINDEX", gen.index)
    SyncDriver(node).run(create_index(space.config, gen))
    node.execute_command("FT.ALIASADD", space.keys.index, gen.index)


@pytest.fixture()
def big_space(hub: rediscache.Hub, space_name: str) -> tuple[str, np.ndarray]:
    rng = np.random.default_rng(5)
    vecs = rng.standard_normal((6_000, 32)).astype(np.float32)
    space = hub.create_space(space_name, 32, metric="l2", algorithm="hnsw")
    space.put_many([f"k{i}" for i in range(len(vecs))], vecs)
    return space_name, vecs


def _exact(vecs: np.ndarray, q: np.ndarray, k: int) -> set[str]:
    d = ((vecs - q) ** 2).sum(axis=1)
    return {f"k{i}" for i in np.argsort(d)[:k]}


def test_searches_wait_for_an_index_being_rebuilt(
    hub: rediscache.Hub, server_dir: Path | None, big_space: tuple[str, np.ndarray]
) -> None:
    name, vecs = big_space
    q = vecs[4321] + 0.01
    _rebuild_index(hub, name)
    with (
        rediscache.connect(data_dir=server_dir)
        if server_dir
        else rediscache.connect(os.environ["REDISCACHE_TEST_URL"]) as fresh
    ):  # a new client, as after a restart
        space = fresh.space(name)
        hits = space.search(q, 10, ef=200)
        assert space.info().percent_indexed == 1.0  # the search waited for the whole index
        assert len({h.key for h in hits} & _exact(vecs, q, 10)) >= 8
        assert hits[0].key == "k4321"


def test_a_long_lived_client_checks_again_after_reconnecting(
    hub: rediscache.Hub, big_space: tuple[str, np.ndarray]
) -> None:
    """The client cannot see a restart except as a new connection: after one, the next
    search checks the index again (here: it is rebuilt, and the wait is refused)."""
    name, vecs = big_space
    space = hub.space(name)
    space.search(vecs[0], 3)  # verified complete once
    _rebuild_index(hub, name)
    hub.node_client(name).connection_pool.disconnect()  # what a server restart does
    hub.index_wait = 0.0
    try:
        with pytest.raises(rediscache.IndexBuildingError, match="still being built") as err:
            space.search(vecs[0], 3)
        assert err.value.percent is not None and err.value.percent < 100
        hub.index_wait = 600.0
        assert space.search(vecs[0], 3)[0].key == "k0"
        assert space.info().percent_indexed == 1.0
    finally:
        hub.index_wait = rediscache.hub.INDEX_WAIT


def test_async_searches_wait_for_an_index_being_rebuilt(
    hub: rediscache.Hub, server_dir: Path | None, big_space: tuple[str, np.ndarray]
) -> None:
    name, vecs = big_space
    _rebuild_index(hub, name)

    async def run() -> tuple[str, float]:
        args = (
            {"data_dir": server_dir} if server_dir else {"url": os.environ["REDISCACHE_TEST_URL"]}
        )
        async with await rediscache.connect_async(**args) as ahub:
            space = await ahub.space(name)
            hits = await space.search(vecs[77], 5)
            return hits[0].key, hub.space(name).info().percent_indexed

    first, percent = asyncio.run(run())
    assert first == "k77" and percent == 1.0


def test_server_status_reports_indexes_being_rebuilt(
    hub: rediscache.Hub, server_dir: Path | None, big_space: tuple[str, np.ndarray]
) -> None:
    if server_dir is None:
        pytest.skip("needs the embedded server")
    name, _ = big_space
    _rebuild_index(hub, name)
    st = server.status(server_dir)
    gen_index = hub.space(name).live_keys.index
    # the scan of 6,000 HNSW vectors takes a while: seen while it runs, gone once done
    assert gen_index in st.indexing and 0 <= st.indexing[gen_index] < 100
    hub.space(name).search(np.zeros(32, np.float32), 1)  # waits for the rebuild
    assert gen_index not in server.status(server_dir).indexing


def test_a_hub_outlives_a_server_restart(own_dir: Path) -> None:
    """After the server restarts under a live hub, its next search reconnects, checks the
    index again and answers right."""
    server.start(server.ServerConfig(data_dir=own_dir))
    with rediscache.connect(data_dir=own_dir) as hub:
        rng = np.random.default_rng(2)
        vecs = rng.standard_normal((500, 16)).astype(np.float32)
        space = hub.create_space("r", 16, metric="l2")
        space.put_many([f"k{i}" for i in range(500)], vecs)
        assert space.search(vecs[9], 1)[0].key == "k9"
        seen = hub._context.connects.count
        server.stop(own_dir)
        server.start(server.ServerConfig(data_dir=own_dir))
        assert space.search(vecs[10], 1)[0].key == "k10"
        assert hub._context.connects.count > seen


def test_status_and_stop_find_a_server_whose_state_file_is_lost(own_dir: Path) -> None:
    info, _ = server.start(server.ServerConfig(data_dir=own_dir))
    (own_dir / server.STATE_FILE).unlink()
    st = server.status(own_dir)
    assert st.running and st.info is None and st.holder_pid == info.pid
    res = CliRunner().invoke(cli, ["--data-dir", str(own_dir), "server", "status"])
    assert res.exit_code == 0 and f"pid {info.pid}" in res.output
    assert server.stop(own_dir) is True  # SIGTERM: Redis shuts down cleanly
    assert _servers_on(own_dir) == [] and not server.status(own_dir).running


def test_stop_and_status_of_a_missing_dir_create_nothing(tmp_path: Path) -> None:
    nowhere = tmp_path / "typo"
    assert server.stop(nowhere) is False and not server.status(nowhere).running
    assert not nowhere.exists()


def test_server_commands_refuse_a_url() -> None:
    res = CliRunner().invoke(cli, ["--url", "redis://127.0.0.1:1/0", "server", "status"])
    assert res.exit_code == 2 and "--url" in res.output


def test_stop_during_a_long_script_says_busy(own_dir: Path) -> None:
    info, _ = server.start(server.ServerConfig(data_dir=own_dir))
    with _busy(info, 3):
        res = CliRunner().invoke(cli, ["--data-dir", str(own_dir), "server", "stop"])
        assert res.exit_code == 1 and "BUSY" in res.output and "again" in res.output
        assert "Traceback" not in res.output and _servers_on(own_dir) == [info.pid]
    assert server.stop(own_dir) is True


def test_sigterm_ends_an_import_like_ctrl_c(own_dir: Path, tmp_path: Path) -> None:
    """SIGTERM (a timeout, systemd) says how far the import got and exits 143."""
    server.start(server.ServerConfig(data_dir=own_dir))
    n = 30_000
    rows = np.random.default_rng(3).standard_normal((n, 64)).astype(np.float32)
    file = tmp_path / "v.jsonl"
    with file.open("w") as fh:
        for i, v in enumerate(rows):
            values = ",".join(f"{x:.4f}" for x in v)
            fh.write(f'{{"id": "k{i}", "vector": [{values}]}}\n')
    exe = str(Path(sys.executable).parent / "rediscache")
    base = [exe, "--data-dir", str(own_dir)]
    subprocess.run([*base, "space", "create", "t", "--dim", "64"], check=True, timeout=120)
    proc = subprocess.Popen(
        [*base, "import", "t", str(file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    with rediscache.connect(data_dir=own_dir) as hub:
        _wait_until(lambda: len(hub.space("t")) > 0, 120)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert b"terminated: at least the first" in err and b"importing the file again is safe" in err


def _ft_info_calls(hub: rediscache.Hub) -> int:
    stats = hub.client.info("commandstats")
    return int(stats.get("cmdstat_FT.INFO", {}).get("calls", 0))


def test_the_index_check_is_once_per_hub_not_per_space_object(
    hub: rediscache.Hub, space_name: str
) -> None:
    """`hub.space(name).search(...)` per request must not pay an FT.INFO (7 ms of blocked
    server on a 20k HNSW index) per search: what is known is kept per hub and space."""
    space = hub.create_space(space_name, 4, metric="l2")
    space.put_many(["a", "b"], [[1, 0, 0, 0], [0, 1, 0, 0]])
    hub.space(space_name).search([1, 0, 0, 0], 1)  # the first search checks
    wait_background(30)  # a collector's FT.INFO would count in the server's statistics
    before = _ft_info_calls(hub)
    for _ in range(5):
        assert hub.space(space_name).search([1, 0, 0, 0], 1)[0].key == "a"
    assert _ft_info_calls(hub) == before


def test_dropping_spaces_in_a_row_compacts_the_aof_after_each(hub: rediscache.Hub) -> None:
    """A rewrite already running began before the next drop's deletions, and Redis refuses a
    second one meanwhile: each drop must get a rewrite that starts after its own deletions
    (only the first did: the others' keys stayed in the file and were replayed on restart)."""
    if not int(hub.node_client().info("persistence").get("aof_enabled", 0)):
        pytest.skip("the server keeps no AOF")
    names = [f"aof_{i}_{uuid.uuid4().hex[:6]}" for i in range(3)]
    rng = np.random.default_rng(0)
    for name in names:
        space = hub.create_space(name, 8, algorithm="flat")
        space.put_many([str(i) for i in range(1200)], rng.standard_normal((1200, 8)))

    # the servers of the spaces (on a cluster, each drop compacts its space's node)
    nodes = {id(c): c for c in (hub.node_client(name) for name in names)}.values()

    def rewrites() -> int:
        return sum(int(node.info("persistence")["aof_rewrites"]) for node in nodes)

    def settled() -> None:
        while any(int(n.info("persistence")["aof_rewrite_in_progress"]) for n in nodes):
            time.sleep(0.05)

    settled()
    before = rewrites()
    for name in names:
        hub.drop_space(name)  # each waits for the rewrite the previous one started
    settled()
    assert rewrites() - before == len(names)
