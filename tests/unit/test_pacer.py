"""WritePacer: write.lua calls sized by time and by payload, for every algorithm."""

from __future__ import annotations

import numpy as np

from rediscache.config import SpaceConfig
from rediscache.reads import CHUNK
from rediscache.writes import WRITE_BUDGET, WRITE_BYTES, WritePacer, row_bytes


def _config(algorithm: str, dim: int) -> SpaceConfig:
    return SpaceConfig("s", dim, "cosine", algorithm, "float32", {}, {})


def test_flat_chunks_are_sized_by_time_too() -> None:
    pacer = WritePacer(_config("flat", 384))
    assert pacer.rows() == CHUNK  # a copy: 1,000 rows of 384 floats take ~24 ms
    # a slow server: 10 ms per row measured, so about WRITE_BUDGET per call
    for _ in range(20):
        pacer.record(100, 1.0)
    assert pacer.rows() == max(8, int(WRITE_BUDGET / 0.01))


def test_chunks_never_carry_more_than_write_bytes() -> None:
    dim = 4096
    pacer = WritePacer(_config("flat", dim))
    blob = np.zeros(dim, dtype=np.float32).tobytes()
    rows = [(["v", blob, "m", b"x" * 2000], []) for _ in range(3)]
    size = row_bytes(rows)
    assert pacer.rows(size) * size <= WRITE_BYTES
    assert pacer.rows(size) < CHUNK
    assert row_bytes([]) == 0.0
