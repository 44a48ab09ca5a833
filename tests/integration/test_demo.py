"""The demo and its bundled sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rediscache import Hub
from rediscache.cli import cli
from rediscache.demo import DEMO_SPACE, load_sample, run_demo


def test_demo_runs_and_finds_sensible_neighbours(hub: Hub) -> None:
    lines: list[str] = []
    space = run_demo(hub, lines.append)
    try:
        text = "\n".join(lines)
        assert "stored 2000 embeddings" in text
        assert "nearest neighbours of 'pytest-bench'" in text
        # neighbours of a pytest plugin are mostly other testing packages
        cats = [h.metadata["category"] for h in space.similar("pytest-bench", 5)]
        assert cats.count("testing") >= 3
    finally:
        hub.drop_space(DEMO_SPACE, missing_ok=True)


def test_cli_demo(server_dir: Path | None, hub: Hub) -> None:
    if server_dir is None:
        pytest.skip("needs the session's embedded server")
    res = CliRunner().invoke(cli, ["--data-dir", str(server_dir), "demo"])
    assert res.exit_code == 0, res.output
    assert "200 searches" in res.output
    hub.drop_space(DEMO_SPACE, missing_ok=True)


def test_sample_matches_the_dev_set(dev_data: Path) -> None:
    """The shipped sample is the dev set's rows, at float16 precision, with their metadata."""
    sample = load_sample()
    vectors = np.load(dev_data / "vectors.npy", mmap_mode="r")
    np.testing.assert_allclose(sample.vectors, vectors[sample.ids], atol=1e-3)
    with (dev_data / "meta.jsonl").open() as fh:
        meta = [json.loads(line) for line in fh]
    for row, name, cat in zip(sample.ids, sample.names, sample.categories):
        assert meta[row]["name"] == name and meta[row]["category"] == cat
    # the texts stay in ../shared: the sample carries no prose
    assert not hasattr(sample, "texts")
