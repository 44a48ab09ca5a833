"""The built wheel, installed into a fresh venv, finds its Lua scripts and starts the server."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*argv: str | Path, cwd: Path | None = None) -> str:
    out = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, cwd=cwd, timeout=600
    )
    assert out.returncode == 0, f"{argv} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.mark.slow
def test_wheel_in_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, ROOT)
    wheel = next(dist.glob("rediscache_hub-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "rediscache/lua/combine.lua",
        "rediscache/py.typed",
        "rediscache/data/sample.npz",
    } <= names

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    py = venv / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", wheel)
    # Dependencies (redis, numpy, the server wheels...) come from this environment, so the
    # test does not download 200 MB again; rediscache itself comes only from the wheel.
    site = Path(_run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    probe = (
        "import json, rediscache, rediscache.scripts as s;"
        "print(json.dumps({'file': rediscache.__file__, 'lua': str(s.lua_dir()),"
        " 'scripts': s.available()}))"
    )
    found = json.loads(_run(py, "-c", probe, cwd=tmp_path))
    assert found["file"].startswith(str(venv))
    assert found["lua"].startswith(str(venv)) and {"gather", "combine", "update_mean"} <= set(
        found["scripts"]
    )

    data = tmp_path / "srv"
    cli = venv / "bin" / "rediscache"
    try:
        assert "started" in _run(cli, "--data-dir", data, "server", "start")
        status = json.loads(_run(cli, "--data-dir", data, "--json", "server", "status"))
        assert status["running"] and status["search_version"].startswith("2.")
        use = (
            "import rediscache, numpy as np;"
            f"h = rediscache.connect(data_dir={str(data)!r});"
            "s = h.create_space('w', 2, metric='l2', algorithm='flat');"
            "s.put_many(['a', 'b'], [[1, 2], [3, 4]]);"
            "print(s.average(['a', 'b']).tolist())"
        )
        assert _run(py, "-c", use, cwd=tmp_path).strip() == "[2.0, 3.0]"
    finally:
        _run(cli, "--data-dir", data, "server", "stop")
