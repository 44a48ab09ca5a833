"""Shared test helpers: paths to the dev data set (present in CI, absent on a user's clone)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEV_DATA = ROOT.parent / "shared" / "data" / "dev"


@pytest.fixture(scope="session")
def dev_data() -> Path:
    """../shared/data/dev, or skip when this checkout has no ../shared beside it."""
    if not (DEV_DATA / "vectors.npy").is_file():
        pytest.skip("../shared/data/dev is not present (only CI and dev machines have it)")
    return DEV_DATA
