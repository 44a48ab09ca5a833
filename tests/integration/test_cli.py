"""The rediscache CLI against a real server, through click's CliRunner (plus one run of the
installed console script, and one under a pseudo-terminal for the progress bar)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pty
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np
import pytest
from click.testing import CliRunner, Result

from rediscache import Hub
from rediscache.cli import cli

Run = Callable[..., Result]


@pytest.fixture()
def base_args(hub: Hub, server_dir: Path | None) -> list[str]:
    url = os.environ.get("REDISCACHE_TEST_URL")
    return ["--url", url] if url else ["--data-dir", str(server_dir)]


@pytest.fixture()
def run(base_args: list[str]) -> Run:
    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, [*base_args, *args], input=input)

    return invoke


def _ok(res: Result) -> str:
    assert res.exit_code == 0, (res.exit_code, res.output, res.exception)
    return res.output


def _one_line_error(res: Result, code: int = 1) -> str:
    """The failure was one clean line, no traceback."""
    assert res.exit_code == code, (res.exit_code, res.output)
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1, res.output
    return lines[0]


def _records(n: int = 40, dim: int = 8, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    out = []
    for i in range(n):
        rec: dict[str, Any] = {"id": f"item:{i}", "vector": vecs[i].tolist()}
        rec["genre"] = ["drama", "noir", "kids"][i % 3]
        rec["year"] = 1990 + i
        if i % 4 == 0:
            rec["note"] = f"note {i} é"
        out.append(rec)
    return out


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _create(run: Run, name: str, dim: int = 8) -> None:
    _ok(run("space", "create", name, "--dim", str(dim), "--field", "genre:tag",
            "--field", "year:numeric"))  # fmt: skip


def _read_jsonl(path: Path) -> dict[str, dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["id"]: r for r in rows}


# ---------------------------------------------------------------- spaces


def test_space_lifecycle(run: Run, space_name: str, hub: Hub) -> None:
    out = _ok(run("space", "create", space_name, "--dim", "8", "--metric", "l2",
                  "--field", "genre:tag", "--m", "8", "--json"))  # fmt: skip
    config = json.loads(out)
    assert config["dim"] == 8 and config["metric"] == "l2" and config["hnsw"]["M"] == 8
    assert config["ttl"] is None
    listed = json.loads(_ok(run("space", "list", "--json")))
    assert {"name": space_name, "count": 0}.items() <= next(
        r for r in listed if r["name"] == space_name
    ).items()
    info = json.loads(_ok(run("--json", "space", "info", space_name)))
    assert info["fields"] == {"genre": "tag"} and info["count"] == 0 and info["versions"] == []

    line = _one_line_error(run("space", "create", space_name, "--dim", "8"))
    assert line.startswith("error:") and "exists with another schema" in line
    # no terminal to ask on and no --yes: refused, nothing dropped
    assert "--yes" in _one_line_error(run("space", "drop", space_name))
    assert space_name in hub.spaces()
    assert "dropped" in _ok(run("space", "drop", space_name, "--yes"))
    assert space_name not in hub.spaces()
    out = _ok(run("space", "create", space_name, "--dim", "4", "--ttl", "60", "--json"))
    assert json.loads(out)["ttl"] == 60.0 and hub.space(space_name).config.ttl == 60.0


def test_usage_errors_exit_2(run: Run, space_name: str) -> None:
    assert run("space", "create", space_name).exit_code == 2  # --dim missing
    assert run("space", "create", space_name, "--dim", "8", "--field", "x:vector").exit_code == 2
    assert run("search", space_name).exit_code == 2  # no --key / --vector
    assert run("no-such-command").exit_code == 2


def test_expected_failures_are_one_line(run: Run, space_name: str, tmp_path: Path) -> None:
    assert "does not exist" in _one_line_error(run("space", "info", space_name))
    assert "does not exist" in _one_line_error(run("search", space_name, "--key", "a"))
    _create(run, space_name)
    assert "no such file" in _one_line_error(run("import", space_name, str(tmp_path / "x.jsonl")))
    bad = tmp_path / "wrong.npy"
    np.save(bad, np.zeros((3, 5), dtype=np.float32))
    meta = _write_jsonl(tmp_path / "m.jsonl", [{"id": i} for i in range(3)])
    line = _one_line_error(run("import", space_name, str(bad), "--meta", str(meta)))
    assert "(3, 5)" in line and "(n, 8)" in line
    assert "--meta" in _one_line_error(run("import", space_name, str(bad)))
    five = _write_jsonl(tmp_path / "five.jsonl", _records(3, dim=5))
    assert "have 5 values" in _one_line_error(run("import", space_name, str(five)))
    if importlib.util.find_spec("pyarrow") is not None:
        fake = tmp_path / "fake.parquet"
        fake.write_text("not parquet")
        assert "as parquet" in _one_line_error(run("import", space_name, str(fake)))
    assert "unknown file type" in _one_line_error(
        run("export", space_name, str(tmp_path / "x.csv"))
    )
    assert "no embedding" in _one_line_error(run("get", space_name, "nope"))
    line = _one_line_error(run("search", space_name, "--vector", "[1, 2, 3]"))
    assert "8" in line  # the dim


def test_unreachable_server_is_one_line() -> None:
    res = CliRunner().invoke(cli, ["--url", "redis://127.0.0.1:1/0", "space", "list"])
    assert "cannot connect" in _one_line_error(res)


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        out.append((*prefix, name))
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, (*prefix, name)))
    return out


def test_every_help_has_an_example() -> None:
    commands = _commands(cli)
    assert {("import",), ("export",), ("search",), ("rollback",), ("space", "create")} <= set(
        commands
    )
    for path in [(), *commands]:
        res = CliRunner().invoke(cli, [*path, "--help"])
        assert res.exit_code == 0, path
        assert "Example" in res.output, path
        # paragraphs wrap at the left margin; \b blocks keep their 2-space indent
        assert "\n  Example:\n" in res.output, (path, res.output)
    res = CliRunner().invoke(cli, ["import", "--help"])
    assert "\n  Formats (by suffix):\n" in res.output and "--vectors-only" in res.output
    assert "can be     stored" not in res.output


# ---------------------------------------------------------------- import / export


@pytest.mark.parametrize("fmt", ["jsonl", "npy", "parquet"])
def test_import_export_round_trip(run: Run, space_name: str, tmp_path: Path, fmt: str) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    records = _records()
    src = _write_jsonl(tmp_path / "src.jsonl", records)
    _create(run, space_name)
    # every format is first exported from the same data, imported from jsonl
    report = json.loads(_ok(run("import", space_name, str(src), "--json")))
    assert report["written"] == len(records) and report["rejected"] == []

    first = tmp_path / f"first.{fmt}"
    old = os.umask(0o022)
    try:
        _ok(run("export", space_name, str(first)))
    finally:
        os.umask(old)
    assert stat.S_IMODE(first.stat().st_mode) == 0o644  # 0666 less the umask, not 0600
    again = space_name + "-2"
    _create(run, again)
    try:
        # a .npy export's ids and metadata: beside it, never clashing with first.jsonl
        args = ["--meta", str(tmp_path / "first.meta.jsonl")] if fmt == "npy" else []
        for _ in range(2):  # re-running an import changes nothing
            report = json.loads(_ok(run("import", again, str(first), *args, "--json")))
            assert report["written"] == len(records)
        info = json.loads(_ok(run("space", "info", again, "--json")))
        assert info["count"] == len(records)
        second = tmp_path / "second.jsonl"
        _ok(run("export", again, str(second)))
    finally:
        run("space", "drop", again, "--yes")

    got = _read_jsonl(second)
    assert set(got) == {r["id"] for r in records}
    for r in records:
        g = got[r["id"]]
        assert g["vector"] == r["vector"]  # float32 values survive exactly
        assert {k: v for k, v in g.items() if k != "vector"} == {
            k: v for k, v in r.items() if k != "vector"
        }


def test_npy_export_lines_up_with_its_metadata(run: Run, space_name: str, tmp_path: Path) -> None:
    records = _records(25)
    _create(run, space_name)
    _ok(run("import", space_name, str(_write_jsonl(tmp_path / "s.jsonl", records))))
    out = tmp_path / "out.npy"
    meta = tmp_path / "meta-out.jsonl"
    _ok(run("export", space_name, str(out), "--meta", str(meta)))
    arr = np.load(out)
    lines = [json.loads(line) for line in meta.read_text().splitlines()]
    by_id = {r["id"]: r for r in records}
    assert arr.shape == (25, 8) and arr.dtype == np.float32
    for row, line in zip(arr, lines):
        assert row.tolist() == by_id[line["id"]]["vector"]
    # an existing file is not overwritten without --yes
    assert "--yes" in _one_line_error(run("export", space_name, str(out), "--meta", str(meta)))
    _ok(run("export", space_name, str(out), "--meta", str(meta), "--yes"))


def test_import_reports_rejected_rows(run: Run, space_name: str, tmp_path: Path, hub: Hub) -> None:
    good = _records(6)
    lines = [json.dumps(r) for r in good]
    lines.insert(2, "{not json")
    lines.insert(3, json.dumps({"vector": [0.5] * 8}))  # no id
    lines.insert(4, json.dumps({"id": "short", "vector": [0.5] * 3}))
    lines.insert(5, '{"id": "nan", "vector": [NaN, 1, 1, 1, 1, 1, 1, 1]}')
    lines.append(json.dumps(good[0]))  # duplicate id
    lines.append(json.dumps({"id": "badtag", "vector": [1.0] * 8, "genre": {"a": 1}}))
    src = tmp_path / "mixed.jsonl"
    src.write_text("\n".join(lines) + "\n")
    _create(run, space_name)
    rejects = tmp_path / "rejects.jsonl"
    res = run("import", space_name, str(src), "--rejects", str(rejects))
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "imported 6 of 12 rows" in res.output and "6 rejected" in res.output
    rejected = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [r["row"] for r in rejected] == [3, 4, 5, 6, 11, 12]
    reasons = " | ".join(r["reason"] for r in rejected)
    for words in ("not JSON", "no 'id'", "3 values", "NaN", "already appeared", "genre"):
        assert words in reasons, (words, reasons)
    space = hub.space(space_name)
    assert len(space) == 6
    assert not {"short", "nan", "badtag"} & {k for ks, _, _ in space.iter_batches() for k in ks}


def test_import_dev_data(run: Run, space_name: str, dev_data: Path, hub: Hub) -> None:
    _ok(run("space", "create", space_name, "--dim", "384", "--field", "category:tag",
            "--field", "month:numeric"))  # fmt: skip
    res = run("import", space_name, str(dev_data / "vectors.npy"),
              "--meta", str(dev_data / "meta.jsonl"))  # fmt: skip
    out = _ok(res)
    assert "imported 20,000 of 20,000 rows" in out and "rows/s" in out
    space = hub.space(space_name)
    assert len(space) == 20000
    vectors = np.load(dev_data / "vectors.npy", mmap_mode="r")
    assert np.array_equal(space.get("123"), vectors[123])
    hits = json.loads(_ok(run("search", space_name, "--key", "123", "-k", "3", "--json")))
    assert len(hits) == 3 and all(h["key"] != "123" for h in hits)


# ---------------------------------------------------------------- data commands


def test_get_search_average_combine(run: Run, space_name: str, tmp_path: Path, hub: Hub) -> None:
    records = _records(30)
    _create(run, space_name)
    _ok(run("import", space_name, str(_write_jsonl(tmp_path / "s.jsonl", records))))
    vec = {r["id"]: np.array(r["vector"], dtype=np.float32) for r in records}

    got = json.loads(_ok(run("get", space_name, "item:3", "--json")))
    assert got["vector"] == records[3]["vector"] and got["metadata"]["genre"] == "drama"
    assert "item:3" in _ok(run("get", space_name, "item:3"))

    hits = json.loads(_ok(run("search", space_name, "--key", "item:0", "-k", "5",
                              "--filter", "genre=noir|kids", "--filter", "year=1995..",
                              "--json")))  # fmt: skip
    assert len(hits) == 5
    for h in hits:
        assert h["metadata"]["genre"] in ("noir", "kids") and h["metadata"]["year"] >= 1995
    q = vec["item:7"]
    hits = json.loads(_ok(run("search", space_name, "--vector", json.dumps(q.tolist()), "-k",
                              "1", "--json")))  # fmt: skip
    assert hits[0]["key"] == "item:7"
    qfile = tmp_path / "q.npy"
    np.save(qfile, q)
    hits = json.loads(_ok(run("search", space_name, "--vector-file", str(qfile), "--json")))
    assert hits[0]["key"] == "item:7"

    out = json.loads(_ok(run("average", space_name, "item:1", "item:2", "--weights", "3,1",
                             "--into", "avg", "--json")))  # fmt: skip
    expected = (3 * vec["item:1"].astype(np.float64) + vec["item:2"]) / 4
    assert np.allclose(out["vector"], expected, rtol=1e-6, atol=1e-7)
    assert np.allclose(hub.space(space_name).get("avg"), expected, rtol=1e-6, atol=1e-7)
    assert "item:nope" in _one_line_error(run("average", space_name, "item:1", "item:nope"))
    out = json.loads(_ok(run("average", space_name, "item:1", "item:nope", "--skip-missing",
                             "--json")))  # fmt: skip
    assert out["used"] == 1 and out["skipped"] == 1 and out["missing"] == ["item:nope"]
    text = _ok(run("average", space_name, "item:1", "item:nope", "--skip-missing"))
    assert "missing: item:nope" in text

    out = json.loads(_ok(run("combine", space_name, "--add", "item:1", "--add", "item:2",
                             "--subtract", "item:3", "-k", "3", "--json")))  # fmt: skip
    raw = vec["item:1"].astype(np.float64) + vec["item:2"] - vec["item:3"]
    assert np.allclose(out["vector"], raw / np.linalg.norm(raw), rtol=1e-6, atol=1e-7)
    assert len(out["hits"]) == 3
    assert not {"item:1", "item:2", "item:3"} & {h["key"] for h in out["hits"]}


def test_the_cli_expresses_every_value(run: Run, space_name: str, hub: Hub) -> None:
    space = hub.create_space(space_name, 4, metric="l2", algorithm="flat",
                             fields={"g": "tag", "t": "text", "n": "numeric"})  # fmt: skip
    vecs = np.eye(4, dtype=np.float32) + 0.1
    space.put_many(
        ["a,b", "plain", "x", "y"],
        vecs,
        [{"g": "rock|pop", "t": "Café de Flore", "raw": b"\xffz"}, {"g": "rock"},
         {"g": "pop", "n": 2**60}, {"g": "a\\"}],
    )  # fmt: skip
    q = json.dumps([1.0, 0.0, 0.0, 0.0])

    def keys(*args: str) -> list[str]:
        out = _ok(run("search", space_name, "--vector", q, "-k", "4", *args, "--json"))
        return sorted(h["key"] for h in json.loads(out))

    assert keys("--filter", r"g=rock\|pop") == ["a,b"]  # a literal |
    assert keys("--filter", "g=rock|pop") == ["plain", "x"]  # any of
    assert keys("--filter", "g=a\\\\") == ["y"]  # a literal backslash
    assert keys("--filter", "t=CAFÉ") == ["a,b"]  # case folded beyond ASCII
    assert keys("--filter", f"n={2**60}") == ["x"]  # integers taken exactly
    err = _one_line_error(
        run("search", space_name, "--vector", q, "--filter", "n=232787661235170481")
    )
    assert "tag field" in err
    # keys are never split at commas, in average and combine alike
    out = json.loads(_ok(run("average", space_name, "a,b", "--json")))
    assert np.allclose(out["vector"], vecs[0])
    out = json.loads(_ok(run("combine", space_name, "--add", "a,b", "--no-normalize", "--json")))
    assert np.allclose(out["vector"], vecs[0])
    # bytes in metadata print as text in JSON
    got = json.loads(_ok(run("get", space_name, "a,b", "--json")))
    assert got["metadata"]["raw"] == "\\xffz"
    # paging: --offset gives the next page of the same list
    first = json.loads(_ok(run("search", space_name, "--vector", q, "-k", "2", "--json")))
    second = json.loads(_ok(run("search", space_name, "--vector", q, "-k", "2", "--offset", "2",
                                "--json")))  # fmt: skip
    whole = json.loads(_ok(run("search", space_name, "--vector", q, "-k", "4", "--json")))
    assert [h["key"] for h in first + second] == [h["key"] for h in whole]


def test_cli_search_skips_expired_entries_and_refuses_bad_vectors(
    run: Run, space_name: str, hub: Hub
) -> None:
    space = hub.create_space(space_name, 4, metric="l2", algorithm="flat", dtype="float16",
                             ttl=3600)  # fmt: skip
    space.put_many(
        [f"live{i}" for i in range(2000)], np.full((2000, 4), 5.0) + np.arange(2000)[:, None] * 1e-3
    )
    space.put_many([f"gone{i}" for i in range(5)], np.zeros((5, 4)) + 0.01, ttl=0.3)
    time.sleep(1.0)
    out = json.loads(
        _ok(run("search", space_name, "--vector", "[0, 0, 0, 0]", "-k", "5", "--json"))
    )
    assert len(out) == 5 and all(h["key"].startswith("live") for h in out)
    err = _one_line_error(run("search", space_name, "--vector", "[70000, 0, 0, 0]"))
    assert "out of range for float16" in err


# ---------------------------------------------------------------- versions and stats


def test_version_commands(run: Run, space_name: str, tmp_path: Path, hub: Hub) -> None:
    records = _records(20)
    _create(run, space_name)
    _ok(run("import", space_name, str(_write_jsonl(tmp_path / "a.jsonl", records))))
    v = json.loads(_ok(run("snapshot", space_name, "--label", "model-a", "--json")))
    assert v["label"] == "model-a" and v["count"] == 20
    changed = _records(20, seed=1)[:5]
    _ok(run("import", space_name, str(_write_jsonl(tmp_path / "b.jsonl", changed))))

    listed = json.loads(_ok(run("versions", space_name, "--json")))
    assert [x["label"] for x in listed] == ["model-a"]
    d = json.loads(_ok(run("diff", space_name, "model-a", "--json")))
    assert sorted(d["changed"]) == sorted(r["id"] for r in changed)
    assert d["added"] == [] and d["removed"] == [] and d["drift"]["count"] == 20
    assert "drift" in _ok(run("diff", space_name, "model-a", "live"))

    space = hub.space(space_name)
    new = space.get("item:0")
    assert "--yes" in _one_line_error(run("rollback", space_name, "model-a"))
    assert np.array_equal(space.get("item:0"), new)  # nothing switched
    assert "now version" in _ok(run("rollback", space_name, str(v["id"]), "--yes"))
    assert space.get("item:0").tolist() == records[0]["vector"]

    # export of a version, and an unknown version
    out = tmp_path / "v.jsonl"
    _ok(run("export", space_name, str(out), "--version", "model-a"))
    assert len(_read_jsonl(out)) == 20
    assert "model-b" in _one_line_error(run("rollback", space_name, "model-b", "--yes"))
    _ok(run("delete-version", space_name, "model-a", "--yes"))
    assert json.loads(_ok(run("versions", space_name, "--json"))) == []


def test_release_commands(run: Run, space_name: str, tmp_path: Path, hub: Hub) -> None:
    records = _records(20)
    _create(run, space_name)
    _ok(run("import", space_name, str(_write_jsonl(tmp_path / "a.jsonl", records))))
    retrained = _records(20, seed=3)
    out = _ok(run("import", space_name, str(_write_jsonl(tmp_path / "b.jsonl", retrained)),
                  "--stage", "model-b"))  # fmt: skip
    assert "stage 'model-b'" in out
    space = hub.space(space_name)
    assert space.get("item:0").tolist() == records[0]["vector"]  # live untouched
    listed = json.loads(_ok(run("stages", space_name, "--json")))
    assert [(s["label"], s["count"], s["complete"]) for s in listed] == [("model-b", 20, True)]
    d = json.loads(_ok(run("diff", space_name, "--stage", "model-b", "--json")))
    assert len(d["changed"]) == 20 and d["b"] == "stage 'model-b'"
    usage = run("diff", space_name)
    assert usage.exit_code == 2 and "--stage" in usage.output
    assert "--yes" in _one_line_error(run("publish", space_name, "model-b"))
    done = json.loads(_ok(run("publish", space_name, "model-b", "--version-label", "model-a",
                              "--yes", "--json")))  # fmt: skip
    assert done["kept"]["label"] == "model-a"
    assert space.get("item:0").tolist() == retrained[0]["vector"]
    assert "no stages" in _ok(run("stages", space_name))
    shown = _ok(run("space", "info", space_name))
    assert "generations:" in shown and "live" in shown and "version v1 (model-a)" in shown
    assert "model-b" in _one_line_error(run("publish", space_name, "model-b", "--yes"))
    _ok(run("stage", space_name, "patch", "--from-live"))
    assert "discarded stage 'patch'" in _ok(run("discard", space_name, "patch", "--yes"))
    _ok(run("rollback", space_name, "model-a", "--yes"))
    assert space.get("item:0").tolist() == records[0]["vector"]
    assert "deleted 0" in _ok(run("collect-garbage", space_name))


def test_stats(run: Run, space_name: str, tmp_path: Path) -> None:
    _create(run, space_name)
    _ok(run("import", space_name, str(_write_jsonl(tmp_path / "a.jsonl", _records(10)))))
    st = json.loads(_ok(run("stats", space_name, "--json")))
    assert st["server"]["search_version"].count(".") == 2
    assert st["server"]["used_memory"] > 0
    (sp,) = st["spaces"]
    assert sp["name"] == space_name and sp["count"] == 10 and sp["index_failures"] == 0
    assert sp["memory_bytes"] > 0 and sp["versions"] == []
    _ok(run("snapshot", space_name, "--label", "v1"))
    (sp,) = json.loads(_ok(run("stats", space_name, "--json")))["spaces"]
    info = json.loads(_ok(run("space", "info", space_name, "--json")))
    assert [v["label"] for v in sp["versions"]] == [v["label"] for v in info["versions"]] == ["v1"]
    text = _ok(run("stats"))
    assert space_name in text and "1 version" in text and "1 versions" not in text


# ---------------------------------------------------------------- the installed script


def _script() -> Path:
    script = Path(sys.executable).parent / "rediscache"
    if not script.exists():
        pytest.skip("the rediscache console script is not installed beside this Python")
    return script


def test_console_script_end_to_end(base_args: list[str], space_name: str, tmp_path: Path) -> None:
    script = str(_script())
    src = _write_jsonl(tmp_path / "a.jsonl", _records(12))

    def sh(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [script, *base_args, *args], capture_output=True, text=True, timeout=120
        )

    assert sh("space", "create", space_name, "--dim", "8").returncode == 0
    done = sh("import", space_name, str(src))
    assert done.returncode == 0 and "imported 12 of 12 rows" in done.stdout
    assert done.stderr == ""  # no progress bar when stderr is not a terminal
    hits = json.loads(sh("--json", "search", space_name, "--key", "item:1", "-k", "2").stdout)
    assert len(hits) == 2
    missing = sh("get", space_name, "nope")
    assert missing.returncode == 1 and missing.stderr.startswith("error:")
    assert "Traceback" not in missing.stderr


def test_pipes_and_ctrl_c(base_args: list[str], space_name: str, tmp_path: Path, hub: Hub) -> None:
    """Piping into head ends quietly; Ctrl-C during an import exits 130 saying how far it
    got (issue 13's CLI rough edges)."""
    script = str(_script())
    space = hub.create_space(space_name, 64)
    space.put_many([f"k{i}" for i in range(3000)], np.random.default_rng(0).random((3000, 64)))
    search = [script, *base_args, "--json", "search", space_name, "--key", "k1", "-k", "3000"]
    head = subprocess.run(
        f"{' '.join(map(repr, search))} | head -c 10", shell=True, capture_output=True,
        text=True, timeout=120, executable="/bin/bash",
    )  # fmt: skip
    assert head.stderr == "" and len(head.stdout) == 10
    rows = _records(20_000, dim=64, seed=3)
    src = _write_jsonl(tmp_path / "big.jsonl", rows)
    proc = subprocess.Popen(
        [script, *base_args, "import", space_name, str(src), "--batch-size", "200"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    while len(space) <= 3000 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the import finished before Ctrl-C")
    assert proc.returncode == 130, (out, err)
    assert "interrupted: at least the first" in err and "importing the file again is safe" in err
    assert "Traceback" not in err and "Aborted" not in err


def test_progress_bar_on_a_terminal(base_args: list[str], space_name: str, tmp_path: Path) -> None:
    script = str(_script())
    src = _write_jsonl(tmp_path / "a.jsonl", _records(3000, dim=4))
    subprocess.run([script, *base_args, "space", "create", space_name, "--dim", "4"], check=True)
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [script, *base_args, "import", space_name, str(src), "--batch-size", "500"],
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            timeout=120,
        )
        os.close(follower)
        follower = -1
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert proc.returncode == 0, proc.stdout
    text = drawn.decode(errors="replace")
    assert "importing a.jsonl" in text and "rows/s" in text and "3000/3000" in text
    assert not math.isnan(float(proc.stdout.split("(")[1].split(" rows/s")[0].replace(",", "")))
