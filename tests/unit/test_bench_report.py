"""benchmarks/run_all.py's report: rows, ratios and targets from saved results (no server)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_all() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_all"] = module
    spec.loader.exec_module(module)
    return module


def _core_row(op: str, rc: float, raw: float, target: str | None) -> dict[str, Any]:
    return {
        "op": op, "baseline": f"raw {op}", "unit": "us", "rc_median": rc, "rc_p99": rc * 2,
        "raw_median": raw, "raw_p99": raw * 2, "ratio": rc / raw, "target": target, "met": None,
    }  # fmt: skip


def _timing(median: float) -> dict[str, float]:
    return {"median_us": median, "p99_us": median * 3, "calls": 10}


def test_report_from_saved_results(run_all: ModuleType, tmp_path: Path) -> None:
    core = {
        "machine": "test box",
        "rows": [
            _core_row("get", 110.0, 100.0, "<= 1.15"),
            _core_row("search k=10", 130.0, 100.0, "<= 1.20"),
            {**_core_row("put_many", 950.0, 1000.0, ">= 0.90"), "unit": "vec/s"},
        ],
    }
    size = {
        "n": 1000, "grown": False, "snapshot": _timing(150), "snapshot_raw": _timing(100),
        "rollback": _timing(200), "rollback_raw": _timing(50), "first_write_s": 0.01,
        "version_index_s": 0.1, "memory_mb": 10.0, "memory_after_copy_mb": 19.0,
        "search_live": _timing(120), "search_version": _timing(130), "search_raw": _timing(100),
    }  # fmt: skip
    (tmp_path / "core.json").write_text(json.dumps(core))
    (tmp_path / "versions.json").write_text(json.dumps([size]))
    rep = run_all.gather(tmp_path)
    by_op = {r["op"]: r for r in rep["rows"]}
    assert by_op["get"]["met"] is True
    assert by_op["search k=10"]["met"] is False  # 1.30 > 1.20
    assert by_op["put_many"]["met"] is True  # a throughput target: higher is better
    assert by_op["rollback (1,000 vectors)"]["ratio"] == pytest.approx(4.0)
    md = run_all.markdown(rep)
    assert "| search k=10 | 130.0 | 260.0 | 100.0 | 200.0 | 1.30 | <= 1.20 | **NO** |" in md
    assert "Targets missed in this run: search k=10." in md
    assert "| 1,000 | 150 / 450 | 200 / 600 | 0.01 | 0.1 | x1.90 | x1.20 | x1.30 |" in md
    # sections whose benchmark did not run are left out, not broken
    assert "RedisVL" not in md and "Scaling" not in md
