"""The package's metadata: installable by a name that is ours, with every hint using it
(issue 13, item 6)."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from rediscache.cli import cli

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[2]
NAME = "rediscache-hub"


def _project() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]  # type: ignore[no-any-return]


def test_the_distribution_name_is_not_the_unrelated_pypi_project() -> None:
    """"rediscache" on PyPI is someone else's package: pip install rediscache[...] would
    install it."""
    assert _project()["name"] == NAME


def test_every_install_hint_names_our_distribution() -> None:
    hint = re.compile(r"pip install ['\"]?([A-Za-z0-9_.-]+)\[")
    files = [*ROOT.joinpath("rediscache").rglob("*.py"), ROOT / "README.md"]
    files += ROOT.joinpath("docs").glob("*.md")
    for path in files:
        for name in hint.findall(path.read_text()):
            assert name in (NAME, "."), f"{path}: pip install {name}[...]"


def test_metadata_has_urls_and_python_classifiers() -> None:
    project = _project()
    classifiers = project["classifiers"]
    assert isinstance(classifiers, list)
    assert "Programming Language :: Python :: 3 :: Only" in classifiers
    assert "License :: OSI Approved :: MIT License" in classifiers
    assert any(c.startswith("Programming Language :: Python :: 3.1") for c in classifiers)
    urls = project["urls"]
    assert isinstance(urls, dict) and urls.get("Homepage")


def test_the_installed_distribution_and_version() -> None:
    assert importlib.metadata.metadata(NAME)["Name"] == NAME
    res = CliRunner().invoke(cli, ["--version"])
    assert res.exit_code == 0 and importlib.metadata.version(NAME) in res.output
