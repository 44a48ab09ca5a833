"""Integration fixtures: one real Redis with the search module for the whole session.

The session starts an embedded server on a free port in a temporary directory and stops it
at the end, unless REDISCACHE_TEST_URL points at a server to use instead. Each test works in
its own space (a unique name) and drops it afterwards; nothing is flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from both import MODES, Api, async_hub_args
from packaging.version import Version

import rediscache
import rediscache.cluster
from rediscache import Hub, connect_async, server

#: The topologies the tests that use a hub run on (REDISCACHE_TEST_TOPOLOGIES, comma
#: separated): one server, and a Redis Cluster of three primaries with a replica each.
TOPOLOGIES = tuple(
    t.strip() for t in os.environ.get("REDISCACHE_TEST_TOPOLOGIES", "single,cluster").split(",")
)
#: The environment variable naming the server of the tests (instead of a started one).
URL_ENV = "REDISCACHE_TEST_URL"
#: A cluster to use instead of starting one (a redis+cluster:// URL).
CLUSTER_URL_ENV = "REDISCACHE_TEST_CLUSTER_URL"


@pytest.fixture(scope="session")
def single_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path | None]:
    """Data dir of the session's embedded server (None when REDISCACHE_TEST_URL is used)."""
    if os.environ.get(URL_ENV):
        yield None
        return
    data_dir = tmp_path_factory.mktemp("redis")
    server.start(server.ServerConfig(data_dir=data_dir))
    try:
        yield data_dir
    finally:
        server.stop(data_dir)


@pytest.fixture(scope="session")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of the session's local Redis Cluster (3 primaries, a replica each, started
    from the same wheels as the embedded server), or of REDISCACHE_TEST_CLUSTER_URL."""
    given = os.environ.get(CLUSTER_URL_ENV)
    if given:
        yield given
        return
    data_dir = tmp_path_factory.mktemp("cluster")
    info, _ = rediscache.cluster.start(data_dir, primaries=3, replicas=1)
    try:
        yield info.url
    finally:
        rediscache.cluster.stop(data_dir)


@pytest.fixture(scope="session", params=TOPOLOGIES)
def topology(request: pytest.FixtureRequest) -> Iterator[str]:
    """Which topology the hub of a test runs on: ``single`` or ``cluster``. On a cluster,
    REDISCACHE_TEST_URL names it while its tests run (the tests that connect by
    themselves use it), and ``server_dir`` is None (the tests of the embedded server's own
    life skip)."""
    kind = request.param
    if kind == "single":
        yield kind
        return
    url = request.getfixturevalue("cluster_url")
    before = os.environ.get(URL_ENV)
    os.environ[URL_ENV] = url
    try:
        yield kind
    finally:
        if before is None:
            os.environ.pop(URL_ENV, None)
        else:
            os.environ[URL_ENV] = before


@pytest.fixture(scope="session")
def server_dir(topology: str, request: pytest.FixtureRequest) -> Path | None:
    """Data dir of the session's embedded server; None on a cluster or when
    REDISCACHE_TEST_URL is used."""
    if topology != "single":
        return None
    found: Path | None = request.getfixturevalue("single_server")
    return found


@pytest.fixture(scope="session")
def hub(server_dir: Path | None, topology: str) -> Iterator[rediscache.Hub]:
    """A hub on the session's server (or cluster)."""
    del topology
    url = os.environ.get(URL_ENV)
    h = rediscache.connect(url) if url else rediscache.connect(data_dir=server_dir)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture()
def space_name(hub: rediscache.Hub) -> Iterator[str]:
    """A fresh space name for one test; the space is dropped afterwards if it was created."""
    name = "t-" + uuid.uuid4().hex[:12]
    yield name
    hub.drop_space(name, missing_ok=True)


@pytest.fixture()
def own_dir(tmp_path: Path) -> Iterator[Path]:
    """A data dir for a private server; whatever runs there is stopped afterwards."""
    data = tmp_path / "srv"
    yield data
    server.stop(data, timeout=20)


def _wait_dead(pid: int) -> None:
    for _ in range(200):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} did not exit")


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    _wait_dead(pid)


@pytest.fixture()
def kill_server() -> Callable[[int], None]:
    """A function that SIGKILLs a server by pid and waits until it is gone."""
    return _kill


@pytest.fixture()
def apis(hub: Hub, server_dir: Path | None) -> Iterator[dict[str, Callable[..., Api]]]:
    """Makers of a fresh space ``name`` for each API: ``apis[mode](name, **create)``."""
    loop = asyncio.new_event_loop()
    ahub = loop.run_until_complete(connect_async(**async_hub_args(server_dir)))

    def make_sync(name: str, *args: Any, **create: Any) -> Api:
        hub.drop_space(name, missing_ok=True)
        return Api(hub.create_space(name, *args, **create), lambda r: r, hub.client)

    def make_async(name: str, *args: Any, **create: Any) -> Api:
        hub.drop_space(name, missing_ok=True)
        return Api(
            loop.run_until_complete(ahub.create_space(name, *args, **create)),
            loop.run_until_complete,
            hub.client,
        )

    try:
        yield {"sync": make_sync, "async": make_async}
    finally:
        loop.run_until_complete(ahub.close())
        loop.close()


@pytest.fixture(params=MODES)
def make(request: pytest.FixtureRequest, apis: dict[str, Callable[..., Api]]) -> Callable[..., Api]:
    """A maker of a fresh space (``make(name, **create)``), once sync and once async."""
    return apis[request.param]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Which fast paths rediscache.wire took per redis-py release (test_wire_versions)."""
    lines = [
        str(value)
        for outcome in ("passed", "failed", "xfailed")
        for report in terminalreporter.stats.get(outcome, [])
        if getattr(report, "when", None) == "call"
        for name, value in getattr(report, "user_properties", ())
        if name == "wire_paths"
    ]
    if lines:
        terminalreporter.section("rediscache.wire per redis-py release")
        for line in sorted(lines, key=lambda line: Version(line.split()[1])):
            terminalreporter.line(line)
