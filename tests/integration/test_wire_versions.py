"""rediscache.wire against each redis-py release line pyproject.toml allows (issue 14).

wire.py is the one module that touches redis-py's connections below its command methods
(two private attributes included, each with a fallback). For each release below, this test
installs that redis-py alone into a directory of its own (``pip install --target``, kept in
pytest's cache directory for later sessions), then runs tests/integration/wire_probe.py in
a subprocess whose ``PYTHONPATH`` puts it ahead of the installed redis-py: the probe checks
every function of wire.py against the session's server, fast paths and fallbacks, then
smoke-tests the public API. All releases are installed and probed at once, in parallel; a
release pip cannot fetch (offline) is skipped with pip's reason. The terminal summary lists,
per release, which fast paths wire.py took.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from packaging.version import Version

from rediscache import server

ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("wire_probe.py")
INSTALLED = redis.__version__

#: The releases tested: the first one rediscache works with (5.0.7), the last before
#: ``get_connection`` lost its required command name (5.3), and the newest of 6, 7 and 8 when
#: this was written. The installed redis-py is tested too, without an install.
#: wire.py itself also works on 5.0.0 to 5.0.6, but the rest of rediscache does not:
#: 5.0.0 lacks ``redis.asyncio.Redis.aclose`` (AsyncHub.close), and 5.0.0 to 5.0.6 drop the
#: ``socket_timeout`` of unix-socket connections (the embedded server's), so no read on them
#: ever times out.
RELEASES = ("5.0.7", "5.2.1", "6.4.0", "7.0.1", "8.1.0")
#: Releases on which wire.py is known to take its fast paths: checked there; on any other
#: (a newer installed redis-py) which paths it took is only reported.
FAST = set(RELEASES)
VERSIONS = sorted({*RELEASES, INSTALLED}, key=Version)
PIP_TIMEOUT = 120.0
PROBE_TIMEOUT = 120.0


def _install(version: str, cache: Path) -> Path | str:
    """``cache/version`` holding redis-py ``version`` (installed there by pip unless an
    earlier run did), or why pip could not install it."""
    target = cache / version
    if (target / f"redis-{version}.dist-info").is_dir():
        return target
    partial = cache / f"{version}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    argv = [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-input",
        "--disable-pip-version-check", "--only-binary=:all:", "--timeout", "15",
        "--retries", "1", "--target", str(partial), f"redis=={version}",
    ]  # fmt: skip
    try:
        proc = subprocess.run(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            timeout=PIP_TIMEOUT,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        shutil.rmtree(partial, ignore_errors=True)
        return f"pip took more than {PIP_TIMEOUT:g} s"
    if proc.returncode != 0 or not (partial / f"redis-{version}.dist-info").is_dir():
        shutil.rmtree(partial, ignore_errors=True)
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        return lines[-1] if lines else f"pip exited {proc.returncode}"
    try:
        partial.rename(target)  # whole or not at all, for the next session too
    except OSError:  # another session put it there meanwhile
        shutil.rmtree(partial, ignore_errors=True)
    return target


def _probe(version: str, path: Path | None, url: str) -> subprocess.CompletedProcess[str]:
    """wire_probe.py run with redis-py ``version`` from ``path`` (None: the installed one)
    ahead of everything else on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [*([str(path)] if path else []), str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    return subprocess.run(
        [sys.executable, "-W", "error", str(PROBE), url, version],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT,
    )


class Runs:
    """Per release: install it (when not cached), then probe it; all ``versions`` at once
    (pip waits on the network, the probes on the server), each test collecting its own."""

    def __init__(self, versions: list[str], cache: Path, url: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(versions)))
        self._runs = {
            v: self._pool.submit(self._run, v, cache, url) for v in dict.fromkeys(versions)
        }

    @staticmethod
    def _run(version: str, cache: Path, url: str) -> subprocess.CompletedProcess[str] | str:
        path = None if version == INSTALLED else _install(version, cache)
        if isinstance(path, str):
            return path
        return _probe(version, path, url)

    def result(self, version: str) -> subprocess.CompletedProcess[str]:
        """The probe's run on ``version``; skips the test when pip could not install it."""
        run = self._runs[version].result()
        if isinstance(run, str):
            pytest.skip(f"cannot install redis=={version} with pip: {run}")
        return run

    def close(self) -> None:
        self._pool.shutdown(wait=True)


@pytest.fixture(scope="session")
def runs(request: pytest.FixtureRequest, server_dir: Path | None, topology: str) -> Iterator[Runs]:
    if topology != "single":
        pytest.skip(
            "rediscache.wire speaks to one server whatever the topology (on a cluster, to "
            "each node): its checks per redis-py release run on the single server"
        )
    url = os.environ.get("REDISCACHE_TEST_URL")
    if not url:
        info = server.status(server_dir).info
        assert info is not None, "the session's server is not running"
        url = info.url
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    base = (
        cache.mkdir("rediscache-redis-py")
        if cache is not None
        else request.getfixturevalue("tmp_path_factory").mktemp("redis-py")
    )
    selected = list(  # the releases of the tests this session runs (-k may leave out some),
        dict.fromkeys(  # once each: every topology has its copy of each test
            item.callspec.params["version"]
            for item in request.session.items
            if getattr(item, "originalname", None) == "test_wire_with_redis_py"
        )
    )
    started = Runs(selected, Path(base), url)
    try:
        yield started
    finally:
        started.close()


def describe(version: str, found: dict[str, Any]) -> str:
    sock = "fast path" if found["sock"] else "FALLBACK (can_read)"
    if found["stream"]:
        stream = "fast path"
    elif not found["hiredis"]:
        stream = "fallback (hiredis missing)"
    else:
        stream = "FALLBACK (read_response per reply)"
    read = "fast path" if found.get("sock_read") else "FALLBACK (read_response per reply)"
    return (
        f"redis-py {version:<7} socket_fileno via Connection._sock: {sock}; "
        f"roundtrip_async via _reader + hiredis: {stream}; "
        f"Wire replies via _sock + hiredis: {read}; read_response fallback: correct"
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_wire_with_redis_py(version: str, runs: Runs, record_property: Any) -> None:
    proc = runs.result(version)
    out = f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"the wire checks failed on redis-py {version}\n{out}"
    found = json.loads(lines[0])
    assert found["redis"] == version
    record_property("wire_paths", describe(version, found))
    if version in FAST:  # a fixed release: the fast paths must stay taken
        assert found["sock"], f"socket_fileno found no socket on redis-py {version}"
        assert found["stream"] == found["hiredis"], found
        assert found["sock_read"] == found["hiredis"], found

    assert proc.returncode == 0, f"smoke test failed on redis-py {version}\n{out}"
    assert "smoke ok" in proc.stdout, out
