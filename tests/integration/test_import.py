"""Issue 13: imports that update vectors keep metadata, report file positions, and survive
lost replies; ``update_vectors`` on sync and asyncio spaces."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from both import Api
from click.testing import CliRunner, Result

import rediscache
from rediscache import Hub, KeyNotFoundError, transfer
from rediscache.cli import cli

Make = Callable[..., Api]
DIM = 8
FORMATS = ("jsonl", "npy", "parquet")


def _vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _write(path: Path, fmt: str, keys: list[str], vecs: np.ndarray, metas: list[dict[str, Any]]):
    """A file of ``fmt`` (and its .npy sidecar); returns (file, meta file or None)."""
    if fmt == "jsonl":
        file = path.with_suffix(".jsonl")
        file.write_text(
            "".join(
                json.dumps({"id": k, "vector": v.tolist(), **m}) + "\n"
                for k, v, m in zip(keys, vecs, metas)
            )
        )
        return file, None
    if fmt == "npy":
        file, meta = path.with_suffix(".npy"), path.with_suffix(".meta.jsonl")
        np.save(file, vecs)
        meta.write_text("".join(json.dumps({"id": k, **m}) + "\n" for k, m in zip(keys, metas)))
        return file, meta
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, Any] = {"id": keys, "vector": [v.tolist() for v in vecs]}
    for name in sorted({n for m in metas for n in m}):
        columns[name] = [m.get(name) for m in metas]
    file = path.with_suffix(".parquet")
    pq.write_table(pa.table(columns), file)
    return file, None


# ---------------------------------------------------------------- update_vectors


def test_update_vectors_keeps_metadata(make: Make, space_name: str) -> None:
    s = make(space_name, DIM, fields={"genre": "tag"}, algorithm="flat")
    keys = [f"k{i}" for i in range(5)]
    s.put_many(keys, _vectors(5, 0), [{"genre": "drama", "note": i} for i in range(5)])
    new = _vectors(5, 1)
    done = s.update_vectors(keys, new)
    assert (done.updated, done.created, done.skipped) == (5, 0, ())
    assert np.allclose(s.get_many(keys), new)
    assert s.sync.get_record("k3").metadata == {"genre": "drama", "note": 3}
    hits = s.search(new[2], k=5, filter={"genre": "drama"})
    assert {h.key for h in hits} == set(keys)  # still found by the indexed field
    # a key without a record: created without metadata (default), skipped, or refused
    done = s.update_vectors(["k0", "new"], _vectors(2, 2))
    assert (done.updated, done.created) == (1, 1)
    assert s.sync.get_record("new").metadata == {} and len(s.sync) == 6
    done = s.update_vectors(["k1", "other"], _vectors(2, 3), missing="skip")
    assert (done.updated, done.created, done.skipped) == (1, 0, ("other",))
    assert s.get("other") is None and len(s.sync) == 6
    before = s.get("k2")
    with pytest.raises(KeyNotFoundError, match="'gone'"):
        s.update_vectors(["k2", "gone"], _vectors(2, 4), missing="raise")
    assert np.array_equal(s.get("k2"), before)  # the chunk is atomic: nothing written
    with pytest.raises(rediscache.InvalidInputError, match="missing"):
        s.update_vectors(["k2"], _vectors(1, 5), missing="maybe")
    with pytest.raises(rediscache.InvalidInputError, match="NaN"):
        s.update_vectors(["k2"], np.full((1, DIM), np.nan))


# ---------------------------------------------------------------- vectors-only imports


@pytest.mark.parametrize("fmt", FORMATS)
def test_vectors_only_import_keeps_metadata(
    hub: Hub, space_name: str, tmp_path: Path, fmt: str
) -> None:
    space = hub.create_space(space_name, DIM, fields={"genre": "tag"}, algorithm="flat")
    keys = [f"item:{i}" for i in range(30)]
    metas = [{"genre": "drama", "year": 1990 + i} for i in range(30)]
    file, meta = _write(tmp_path / "first", fmt, keys, _vectors(30, 0), metas)
    assert transfer.import_file(space, file, meta=meta).written == 30
    # the retrained model: ids and vectors only (and one new id)
    new = _vectors(31, 1)
    file, meta = _write(tmp_path / "retrained", fmt, [*keys, "item:new"], new, [{}] * 31)
    report = transfer.import_file(space, file, meta=meta, vectors_only=True)
    assert (report.written, report.dropped, report.rejected) == (31, {}, [])
    assert report.created == 1  # item:new, stored without metadata
    assert np.allclose(space.get_many([*keys, "item:new"]), new)
    assert space.get_record("item:7").metadata == {"genre": "drama", "year": 1997}
    assert len(space.search(new[0], k=50, filter={"genre": "drama"})) == 30
    # skip ids without a record; metadata in the file is not written, and said so
    file, meta = _write(tmp_path / "third", fmt, ["item:1", "item:x"], new[:2], [{"a": 1}] * 2)
    report = transfer.import_file(space, file, meta=meta, vectors_only=True, missing="skip")
    assert (report.written, report.skipped, report.ignored_fields) == (1, ["item:x"], ["a"])
    assert space.get_record("item:1").metadata == {"genre": "drama", "year": 1991}


@pytest.mark.parametrize("fmt", FORMATS)
def test_plain_import_warns_before_it_drops_metadata(
    hub: Hub, space_name: str, tmp_path: Path, fmt: str
) -> None:
    space = hub.create_space(space_name, DIM, fields={"genre": "tag"}, algorithm="flat")
    keys = [f"item:{i}" for i in range(12)]
    metas = [{"genre": "drama", **({"note": "x"} if i % 2 else {})} for i in range(12)]
    space.put_many(keys, _vectors(12, 0), metas)
    file, meta = _write(tmp_path / "retrained", fmt, keys, _vectors(12, 1), [{}] * 12)
    warned: list[tuple[str, dict[str, Any]]] = []

    def warn(message: str) -> None:  # called before the batch is written
        warned.append((message, space.get_record("item:1").metadata))

    # by default such an import stops before writing anything that would lose metadata
    with pytest.raises(rediscache.InvalidInputError, match=r"genre, note.*vectors-only") as err:
        transfer.import_file(space, file, meta=meta, warn=warn, batch_size=5)
    assert "Nothing of this batch was written" in str(err.value) and not warned
    assert space.get_record("item:0").metadata == {"genre": "drama"}
    # asked to replace whole records, it warns once before writing and counts the losses
    report = transfer.import_file(
        space, file, meta=meta, warn=warn, batch_size=5, replace_metadata=True
    )
    assert report.dropped == {"genre": 12, "note": 6}
    [(message, meta_then)] = warned  # once
    assert meta_then == {"genre": "drama", "note": "x"}
    assert "genre, note" in message and "vectors-only" in message
    first = "line 1 'item:0'" if fmt == "jsonl" else "row 1 (index 0) 'item:0'"
    assert first in message, message


# ---------------------------------------------------------------- positions in the file


@pytest.mark.parametrize("fmt", FORMATS)
def test_rejections_name_file_rows_deep_in_a_later_batch(
    hub: Hub, space_name: str, tmp_path: Path, fmt: str
) -> None:
    space = hub.create_space(space_name, DIM, metric="cosine", fields={"year": "numeric"})
    n = 2500
    keys = [f"k{i}" for i in range(n)]
    vecs = _vectors(n, 0)
    metas: list[dict[str, Any]] = [{} for _ in range(n)]
    vecs[1700, 3] = np.nan  # NaN
    vecs[1800] = 0.0  # a zero vector in a cosine space
    metas[1900] = {"year": "not a number"}  # an indexed field of the wrong type
    keys[2000] = "bad\x00key"  # NUL in a key
    keys[2100] = "k5"  # a duplicate of row 6
    file, meta = _write(tmp_path / "bad", fmt, keys, vecs, metas)
    report = transfer.import_file(space, file, meta=meta, batch_size=1000)
    assert report.written == n - 5 and len(space) == n - 5
    got = {r.row: r for r in report.rejected}
    assert sorted(got) == [1701, 1801, 1901, 2001, 2101]
    for r in report.rejected:
        where = f"line {r.row}" if fmt == "jsonl" else f"row {r.row} (index {r.row - 1})"
        assert r.where == where and str(r).startswith(where), r
        assert r.key == keys[r.row - 1], r
        # no position inside a batch or a chunk
        for inside in ("keys[", "[0]", "(0, ", "row 0", "index 0", "rows 0"):
            assert inside not in r.reason, r
    assert "NaN" in got[1701].reason and "index 3" in got[1701].reason
    assert "zero vector" in got[1801].reason
    assert "'year'" in got[1901].reason
    assert "NUL" in got[2001].reason
    assert "already appeared at " + ("line 6" if fmt == "jsonl" else "row 6") in got[2101].reason


def test_a_failed_chunk_names_file_rows(hub: Hub, space_name: str, tmp_path: Path) -> None:
    space = hub.create_space(space_name, DIM, algorithm="flat")
    keys = [f"k{i}" for i in range(2500)]
    file, _ = _write(tmp_path / "f", "jsonl", keys, _vectors(2500, 0), [{}] * 2500)
    hub.client.set(space.live_keys.doc("k1700"), "a string")  # another tool wrote it
    try:
        with pytest.raises(rediscache.ServerError) as info:
            transfer.import_file(space, file, batch_size=1000)
    finally:
        hub.client.delete(space.live_keys.doc("k1700"))
    msg = str(info.value)
    assert "stopped after 1000 rows were written" in msg, msg
    assert "from line 1001 'k1000'" in msg and "'k1700'" in msg, msg
    assert "rows 0.." not in msg, msg


# ---------------------------------------------------------------- lost replies


def _client(hub: Hub, **options: Any) -> redis.Redis:
    """Another client to the hub's server (unix socket or TCP alike), with ``options``."""
    pool = hub.node_client().connection_pool
    kwargs = {**pool.connection_kwargs, **options}
    return redis.Redis(connection_pool=redis.ConnectionPool(pool.connection_class, **kwargs))


def test_import_writes_a_batch_again_after_a_lost_reply(
    hub: Hub, space_name: str, tmp_path: Path
) -> None:
    hub.create_space(space_name, DIM, algorithm="flat")
    n = 3000
    keys = [f"k{i}" for i in range(n)]
    vecs = _vectors(n, 0)
    file, _ = _write(tmp_path / "f", "jsonl", keys, vecs, [{}] * n)
    # A client whose socket times out after 0.3 s. After the first batch, CLIENT PAUSE
    # WRITE (from another connection) holds every write for 1.2 s: the next batch's script
    # is queued, its reply lost to the timeout, and it is applied when the pause ends, so
    # the retries write rows that are already there. Deterministic: the pause is in force
    # when CLIENT PAUSE returns. A vectors-only import into an empty space: its batches are
    # one write each (no read first) creating every row, so a row counted twice would show
    # in len().
    slow = rediscache.connect(client=_client(hub, socket_timeout=0.3))
    paused: list[int] = []

    def progress(done: int, total: int | None) -> None:
        if done and not paused:
            hub.node_client(space_name).execute_command("CLIENT", "PAUSE", 1200, "WRITE")
            paused.append(done)

    try:
        report = transfer.import_file(
            slow.space(space_name), file, batch_size=1000, progress=progress, vectors_only=True
        )
    finally:
        slow.close()
        slow.client.close()
    assert report.retries >= 1
    assert (report.rows, report.written, report.rejected) == (n, n, [])
    space = hub.space(space_name)
    assert len(space) == n == space.info().count  # every row once
    assert np.allclose(space.get_many(keys), vecs)
    assert len(space.search(vecs[0], k=10)) == 10


# ---------------------------------------------------------------- the command line


@pytest.fixture()
def run(hub: Hub, server_dir: Path | None) -> Callable[..., Result]:
    url = os.environ.get("REDISCACHE_TEST_URL")
    base = ["--url", url] if url else ["--data-dir", str(server_dir)]

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, [*base, *args])

    return invoke


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_vectors_only_and_the_warning(
    run: Callable[..., Result], hub: Hub, space_name: str, tmp_path: Path, fmt: str
) -> None:
    space = hub.create_space(space_name, DIM, fields={"genre": "tag"}, algorithm="flat")
    keys = [f"item:{i}" for i in range(20)]
    space.put_many(keys, _vectors(20, 0), [{"genre": "drama", "year": i} for i in range(20)])
    file, meta = _write(tmp_path / "retrained", fmt, keys, _vectors(20, 1), [{}] * 20)
    extra = ["--meta", str(meta)] if meta else []
    res = run("import", space_name, str(file), *extra, "--vectors-only")
    assert res.exit_code == 0, res.output
    assert "warning" not in res.stderr
    assert space.get_record("item:3").metadata == {"genre": "drama", "year": 3}
    assert np.allclose(space.get("item:3"), _vectors(20, 1)[3])
    # the plain import of the same file stops before writing, naming both ways out
    res = run("import", space_name, str(file), *extra)
    assert res.exit_code == 1 and "--vectors-only" in res.stderr, res.output
    assert "--replace-metadata" in res.stderr and "Traceback" not in res.output
    assert space.get_record("item:3").metadata == {"genre": "drama", "year": 3}
    # with --replace-metadata: warned on stderr, with counts and the way out
    res = run("import", space_name, str(file), *extra, "--replace-metadata")
    assert res.exit_code == 0, res.output
    assert res.stderr.count("warning:") == 2, res.stderr  # before writing, and the counts
    assert "--vectors-only" in res.stderr and "genre (20), year (20)" in res.stderr
    assert space.get_record("item:3").metadata == {}


def test_cli_verbose_says_which_server_and_how_long(
    run: Callable[..., Result], hub: Hub, space_name: str, tmp_path: Path
) -> None:
    hub.create_space(space_name, DIM)
    n = 2500
    keys = [f"k{i}" for i in range(n)]
    vecs = _vectors(n, 0)
    vecs[1700, 0] = np.nan
    file, _ = _write(tmp_path / "f", "jsonl", keys, vecs, [{}] * n)
    quiet = run("import", space_name, str(file))
    assert quiet.exit_code == 1
    assert "server:" not in quiet.stderr and "rows read" not in quiet.stderr
    assert "line 1701 'k1700': vector of 'k1700' contains NaN" in quiet.stderr, quiet.stderr
    loud = run("-v", "import", space_name, str(file))
    assert loud.exit_code == 1
    assert "rediscache: server: " in loud.stderr, loud.stderr
    assert "import: 2,000 of 2500 rows read" in loud.stderr and "done in " in loud.stderr
    # an expected failure: one line without -v, and the traceback with it
    quiet = run("get", "no-such-space-" + space_name, "k")
    assert quiet.exit_code == 1 and "Traceback" not in quiet.stderr
    loud = run("-v", "get", "no-such-space-" + space_name, "k")
    assert loud.exit_code == 1 and "Traceback" in loud.stderr
    assert any(line.startswith("error: ") for line in loud.stderr.splitlines())


def test_a_metadata_file_given_as_the_vectors_is_refused_up_front(
    hub: Hub, space_name: str, tmp_path: Path
) -> None:
    space = hub.create_space(space_name, DIM, algorithm="flat")
    file = tmp_path / "meta.jsonl"
    file.write_text("".join(json.dumps({"id": f"k{i}", "genre": "x"}) + "\n" for i in range(50)))
    with pytest.raises(rediscache.InvalidInputError, match="metadata file"):
        transfer.import_file(space, file)
    assert len(space) == 0
