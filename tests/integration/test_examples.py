"""examples/recommender.py against the session's server: the endpoint's logic is right."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from rediscache import Hub, connect_async

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "recommender.py"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("recommender_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_recommender_example(hub: Hub, server_dir: Path | None, space_name: str) -> None:
    rec = _example()
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((50, 8)).astype(np.float32)
    keys = [f"item:{i}" for i in range(50)]
    sync_items = hub.create_space(space_name, 8)
    sync_items.put_many(keys, vectors, [{"category": "c"}] * 50)
    url = os.environ.get("REDISCACHE_TEST_URL")
    args: dict[str, Any] = {"url": url} if url else {"data_dir": server_dir}
    user = f"{space_name}-user"

    async def main() -> list[Any]:
        async with await connect_async(**args) as ahub:
            items = await ahub.space(space_name)
            assert await rec.recommend(ahub, items, user) == []  # no clicks yet
            for item in keys[:12]:  # only the last LAST_N (10) count
                await rec.record_click(ahub, user, item)
            hits = await rec.recommend(ahub, items, user, k=5)
            await ahub.client.delete(rec.history_key(user))
            return list(hits)

    hits = asyncio.run(main())
    clicked = keys[2:12]
    mean = vectors[2:12].astype(np.float64).mean(axis=0)
    mean /= np.linalg.norm(mean)
    expected = [h.key for h in sync_items.search(mean, 5, exclude=clicked)]
    assert [h.key for h in hits] == expected
    assert not set(expected) & set(clicked) and len(expected) == 5
