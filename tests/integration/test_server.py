"""The embedded server: start/reuse/stop, persistence across SIGKILL, and each failure mode."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import redis
from click.testing import CliRunner

import rediscache
from rediscache import server
from rediscache.cli import cli


def test_start_reuse_status_stop(own_dir: Path) -> None:
    info, started = server.start(server.ServerConfig(data_dir=own_dir))
    assert started
    again, started_again = server.start(server.ServerConfig(data_dir=own_dir))
    assert not started_again and again.pid == info.pid and again.port == info.port
    st = server.status(own_dir)
    assert st.running and st.info is not None
    assert tuple(int(x) for x in st.info.redis_version.split(".")) >= (7, 2, 0)
    assert st.info.search_version.startswith("2.")
    assert server.stop(own_dir) is True
    assert server.status(own_dir).running is False
    assert server.stop(own_dir) is False


def test_private_by_default(own_dir: Path) -> None:
    info, _ = server.start(server.ServerConfig(data_dir=own_dir))
    assert stat.S_IMODE(own_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((own_dir / "server.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((own_dir / "redis.conf").stat().st_mode) == 0o600
    assert info.unix_socket is not None
    assert stat.S_IMODE(Path(info.unix_socket).stat().st_mode) == 0o700
    # the password never appears on the command line, where `ps` shows it to everyone
    assert info.password.encode() not in Path(f"/proc/{info.pid}/cmdline").read_bytes()
    # and without it the server refuses commands
    with (
        redis.Redis(host=info.host, port=info.port) as anon,
        pytest.raises(redis.AuthenticationError),
    ):
        anon.get("x")


def test_data_survives_sigkill(own_dir: Path, kill_server: Callable[[int], None]) -> None:
    """AOF (everysec): what was acknowledged before a SIGKILL is there after the next start."""
    config = server.ServerConfig(data_dir=own_dir)
    info, _ = server.start(config)
    with rediscache.connect(data_dir=own_dir) as hub:
        space = hub.create_space("persist", 8, metric="l2", fields={"genre": "tag"})
        vecs = np.arange(40, dtype=np.float32).reshape(5, 8)
        space.put_many([f"k{i}" for i in range(5)], vecs, [{"genre": "a"}] * 5)
    kill_server(info.pid)
    assert not server.status(own_dir).running

    info2, started = server.start(config)
    assert started and info2.pid != info.pid
    with rediscache.connect(data_dir=own_dir) as hub:
        space = hub.space("persist")
        np.testing.assert_array_equal(space.get_many([f"k{i}" for i in range(5)]), vecs)
        for _ in range(100):  # the index is rebuilt from the hashes after a restart
            if len(space) == 5:
                break
            time.sleep(0.05)
        hits = space.search(vecs[3], 2, filter={"genre": "a"})
        assert hits[0].key == "k3"


def test_a_loading_server_is_never_killed_nor_doubled(
    own_dir: Path, kill_server: Callable[[int], None]
) -> None:
    """A start that runs out of time while the server loads its data leaves it running,
    records it, and the next start waits for that same process (issue 13, first kind)."""
    config = server.ServerConfig(data_dir=own_dir)
    info, _ = server.start(config)
    with rediscache.connect(data_dir=own_dir) as hub:
        space = hub.create_space("big", 64, algorithm="hnsw")
        rng = np.random.default_rng(0)
        space.put_many([f"k{i}" for i in range(20_000)], rng.standard_normal((20_000, 64)))
    kill_server(info.pid)
    with pytest.raises(rediscache.ServerLoadingError, match="left running") as err:
        server.start(server.ServerConfig(data_dir=own_dir, start_timeout=0.3))
    state = server.status(own_dir)  # loading or done by now: running either way
    assert state.running and state.info is not None
    loading_pid = state.info.pid
    assert f"pid {loading_pid}" in str(err.value)
    res = CliRunner().invoke(cli, ["--data-dir", str(own_dir), "server", "status"])
    assert res.exit_code == 0, res.output
    info2, started = server.start(server.ServerConfig(data_dir=own_dir, start_timeout=300))
    assert not started and info2.pid == loading_pid  # the same process, not a second one
    assert info2.search_version
    with rediscache.connect(data_dir=own_dir) as hub:
        assert hub.space("big").get("k7") is not None


def test_cli_start_status_stop(own_dir: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["--data-dir", str(own_dir), "server", "start"])
    assert res.exit_code == 0, res.output
    assert "started" in res.output
    res = runner.invoke(cli, ["--data-dir", str(own_dir), "--json", "server", "status"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["running"] is True
    assert out["search_version"].startswith("2.") and out["redis_version"]
    assert "password" not in out and "***" in out["url"]
    # bytes, as `stats --json` gives used_memory; the human form beside it
    assert isinstance(out["used_memory"], int) and out["used_memory"] > 0
    assert isinstance(out["used_memory_human"], str)
    res = runner.invoke(cli, ["--data-dir", str(own_dir), "server", "stop"])
    assert res.exit_code == 0 and "stopped" in res.output
    res = runner.invoke(cli, ["--data-dir", str(own_dir), "server", "status"])
    assert res.exit_code == 3 and "not running" in res.output


# ------------------------------------------------------------------ failure modes


def test_port_busy(own_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(rediscache.PortInUseError, match=f"port {port}"):
            server.start(server.ServerConfig(data_dir=own_dir, port=port))
        res = CliRunner().invoke(
            cli, ["--data-dir", str(own_dir), "server", "start", "--port", str(port)]
        )
        assert res.exit_code == 1
        assert res.output.startswith("error: port") and "Traceback" not in res.output


def test_no_usable_binary(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-redis-server"
    with pytest.raises(rediscache.RedisBinaryNotFoundError, match="rediscache-hub\\[server\\]"):
        server.start(server.ServerConfig(data_dir=tmp_path / "d", redis_server=missing))


def test_too_old_binary_is_refused(tmp_path: Path) -> None:
    old = tmp_path / "redis-server"
    old.write_text("#!/bin/sh\necho 'Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc'\n")
    old.chmod(0o755)
    with pytest.raises(rediscache.RedisBinaryNotFoundError, match=r"7\.0\.15"):
        server.find_binaries(server.ServerConfig(redis_server=old))


def test_module_fails_to_load(own_dir: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "redisearch.so"
    bogus.write_bytes(b"not a shared object")
    with pytest.raises(rediscache.SearchModuleMissingError, match="failed to load"):
        server.start(server.ServerConfig(data_dir=own_dir, search_module=bogus))


def test_wrong_password(server_dir: Path | None) -> None:
    if server_dir is None:
        pytest.skip("needs the session's embedded server")
    info = server.status(server_dir).info
    assert info is not None
    url = f"redis://:wrong-{info.password}@{info.host}:{info.port}/0"
    with pytest.raises(rediscache.AuthenticationFailedError, match="refused the credentials"):
        rediscache.connect(url)
    res = CliRunner().invoke(cli, ["--url", url, "demo"])
    assert res.exit_code == 1 and "refused the credentials" in res.output
    assert "wrong-" not in res.output


def test_unreachable_url() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(rediscache.ConnectionFailedError, match="cannot connect"):
        rediscache.connect(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=2, retry=None)


@pytest.mark.parametrize("which", ["bundled", "debian"])
def test_server_without_search_module(tmp_path: Path, which: str) -> None:
    """A Redis without the module (ours started bare, Debian's 7.0) is refused by connect(url)."""
    if which == "debian":
        exe = Path("/usr/bin/redis-server")
        if not exe.exists():
            pytest.skip("Debian's redis-server is not installed")
    else:
        exe = server.find_binaries().redis_server
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            str(exe),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        client.close()
        with pytest.raises(rediscache.SearchModuleMissingError, match="no search module"):
            rediscache.connect(f"redis://127.0.0.1:{port}/0")
    finally:
        proc.terminate()
        proc.wait(10)


def test_debian_redis_7_0_is_refused() -> None:
    exe = Path("/usr/bin/redis-server")
    if not exe.exists():
        pytest.skip("Debian's redis-server is not installed")
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True).stdout
    if "v=7.0" not in version:
        pytest.skip(f"/usr/bin/redis-server is not 7.0: {version.strip()}")
    with pytest.raises(rediscache.RedisBinaryNotFoundError, match=r"needs >= 7\.2"):
        server.find_binaries(server.ServerConfig(redis_server=exe))


def test_connect_by_unix_and_redis_urls(server_dir: Path | None) -> None:
    if server_dir is None:
        pytest.skip("needs the session's embedded server")
    info = server.status(server_dir).info
    assert info is not None and info.unix_socket is not None
    for url in (f"unix://{info.unix_socket}?password={info.password}", info.url):
        with rediscache.connect(url) as hub:
            assert hub.server_versions()["search"].startswith("2.")
    with pytest.raises(rediscache.InvalidInputError, match="unsupported URL"):
        rediscache.connect("http://localhost:6379")


def test_connect_and_the_cli_resolve_the_server_alike(
    server_dir: Path | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REDISCACHE_URL, then REDISCACHE_DATA_DIR, steer connect() as they steer the CLI
    (issue 13, item 4); explicit arguments come first."""
    if server_dir is None:
        pytest.skip("needs the session's embedded server")
    info = server.status(server_dir).info
    assert info is not None
    monkeypatch.delenv("REDISCACHE_URL", raising=False)
    monkeypatch.setenv("REDISCACHE_DATA_DIR", str(server_dir))
    with rediscache.connect() as hub:
        assert hub.server is not None and hub.server.pid == info.pid
    res = CliRunner().invoke(cli, ["--json", "server", "status"])
    assert res.exit_code == 0 and json.loads(res.output)["pid"] == info.pid
    monkeypatch.setenv("REDISCACHE_URL", info.url)
    monkeypatch.setenv("REDISCACHE_DATA_DIR", "/nonexistent/never-used")
    with rediscache.connect() as hub:
        assert hub.server is None and hub.client.ping()  # the URL won
    assert CliRunner().invoke(cli, ["space", "list"]).exit_code == 0
    monkeypatch.setenv("REDISCACHE_URL", "redis://127.0.0.1:1/0")
    with rediscache.connect(data_dir=server_dir) as hub:  # an argument beats the environment
        assert hub.server is not None and hub.server.pid == info.pid


def test_passwords_never_show(server_dir: Path | None) -> None:
    with pytest.raises(rediscache.ConnectionFailedError) as err:
        rediscache.connect("redis://127.0.0.1:1/0?password=s3cret-word", socket_connect_timeout=1)
    assert "s3cret-word" not in str(err.value)
    with pytest.raises(rediscache.RediscacheError) as err:
        rediscache.connect("redis://:s3cret-word@localhost:notaport/0")
    assert "s3cret-word" not in str(err.value)
    if server_dir is not None:
        with rediscache.connect(data_dir=server_dir) as hub:
            assert hub.server is not None
            assert hub.server.password not in repr(hub.server)
            assert hub.server.password not in repr(
                server.ServerConfig(password=hub.server.password)
            )


def test_connect_refuses_options_it_would_ignore(server_dir: Path | None) -> None:
    """Unknown options never vanish: redis-py options need a URL, start_timeout the
    embedded server, and an unknown option with a URL is refused before any I/O."""
    with pytest.raises(rediscache.InvalidInputError, match="bogus_kw"):
        rediscache.connect(data_dir=server_dir or "/nonexistent", bogus_kw=1)
    with pytest.raises(rediscache.InvalidInputError, match="bogus_kw"):
        rediscache.connect("redis://127.0.0.1:1/0", bogus_kw=1)
    with pytest.raises(rediscache.InvalidInputError, match="start_timeout"):
        rediscache.connect("redis://127.0.0.1:1/0", start_timeout=5)


def test_connect_takes_a_start_timeout(own_dir: Path) -> None:
    with rediscache.connect(data_dir=own_dir, start_timeout=120) as hub:
        assert hub.server is not None and hub.server.data_dir == str(own_dir.resolve())
    with pytest.raises(rediscache.InvalidInputError, match="start_timeout"):
        rediscache.connect(data_dir=own_dir, start_timeout=-1)
