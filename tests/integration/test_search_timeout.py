"""A search the server spent longer on than RediSearch's TIMEOUT is never a silent half
answer. With the module's default policy (``ON_TIMEOUT return``) a KNN query cut by its
timeout replies with the hits found so far as if complete (0 of 10 measured here), which a
busy server, or one stopped for a moment, turns into wrong answers. Every search the library
sends sets no server timeout (ftsearch.NO_TIMEOUT): the test lowers the server's TIMEOUT to
1 ms so that every query would be cut, and checks each search variant, sync and asyncio,
still answers in full."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from both import Api

from rediscache import Hub

Make = Callable[..., Api]
N, DIM = 20000, 256


@pytest.fixture()
def tight_timeout(hub: Hub, space_name: str) -> Iterator[Callable[[], None]]:
    """Lowers the TIMEOUT of the node holding ``space_name`` to 1 ms (restored after)."""
    nodes: list[Any] = []

    def tighten() -> None:
        node = hub.node_client(space_name)
        nodes.append((node, node.execute_command("FT.CONFIG", "GET", "TIMEOUT")[0][1]))
        node.execute_command("FT.CONFIG", "SET", "TIMEOUT", 1)

    yield tighten
    for node, before in nodes:
        node.execute_command("FT.CONFIG", "SET", "TIMEOUT", before)


def test_no_search_is_cut_by_the_servers_timeout(
    make: Make, hub: Hub, space_name: str, tight_timeout: Callable[[], None]
) -> None:
    s = make(space_name, DIM, metric="l2", algorithm="flat", fields={"g": "tag"})
    rng = np.random.default_rng(11)
    vecs = rng.standard_normal((N, DIM)).astype(np.float32)
    keys = [f"k{i}" for i in range(N)]
    s.put_many(keys, vecs, [{"g": "a" if i % 2 else "b"} for i in range(N)])
    queries = vecs[:3] + 0.01
    exact = [np.argsort(((vecs - q) ** 2).sum(axis=1))[:10] for q in queries]
    s.search(queries[0], 10)  # the index is known complete before the timeout is lowered
    tight_timeout()
    node = hub.node_client(space_name)
    raw = node.execute_command(  # what a query without NO_TIMEOUT gets now: cut, no error
        "FT.SEARCH", s.live_keys.index, "*=>[KNN 10 @vec $v AS d]", "PARAMS", 2, "v",
        queries[0].tobytes(), "SORTBY", "d", "ASC", "LIMIT", 0, 10, "DIALECT", 2,
    )  # fmt: skip
    assert raw[0] < 10, "the server did not cut the query: the test proves nothing"
    for metadata in (True, False):
        hits = s.search(queries[0], 10, with_metadata=metadata)
        assert [h.key for h in hits] == [keys[i] for i in exact[0]]
    many = s.search_many(queries, 10)
    assert [[h.key for h in page] for page in many] == [[keys[i] for i in e] for e in exact]
    paged = s.search(queries[1], 5, offset=5)
    assert [h.key for h in paged] == [keys[i] for i in exact[1][5:]]
    filtered = s.search(queries[2], 10, filter={"g": "a"})
    assert len(filtered) == 10 and all(int(h.key[1:]) % 2 for h in filtered)
    far = float(((vecs[exact[0][-1]] - queries[0]) ** 2).sum()) * 1.0001
    within = s.within(queries[0], far, limit=100)
    assert {h.key for h in within} >= {keys[i] for i in exact[0]}
