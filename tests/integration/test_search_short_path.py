"""The plain search's short path (rediscache.search.Searches.search): a float32 query of a
float32 space is sent before it is checked, and checked while the server searches. A bad
query must still raise InvalidInputError (sync and asyncio), with nothing read from the reply,
and leave the connection in step for the next call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from both import Api

import rediscache
from rediscache import wire

Make = Callable[..., Api]
BAD = {
    "nan": [np.nan, 0.0, 1.0, 0.0],
    "inf": [np.inf, 0.0, 1.0, 0.0],
    "norm overflows": [3e38, 3e38, 0.0, 0.0],
    "zero in a cosine space": [0.0, 0.0, 0.0, 0.0],
}


@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize("with_metadata", [True, False])
def test_a_bad_float32_query_on_the_short_path_raises_and_keeps_the_connection(
    make: Make, space_name: str, bad: str, with_metadata: bool
) -> None:
    s = make(space_name, 4, metric="cosine", algorithm="flat")
    rng = np.random.default_rng(3)
    keys = [f"k{i}" for i in range(20)]
    s.put_many(keys, rng.standard_normal((20, 4)), [{"i": i} for i in range(20)])
    query = np.array([1.0, 0.5, 0.0, 0.2], dtype=np.float32)
    first = s.search(query, 5, with_metadata=with_metadata)  # fills the short path's cache
    vector = np.array(BAD[bad], dtype=np.float32)
    with pytest.raises(rediscache.InvalidInputError) as short:
        s.search(vector, 5, with_metadata=with_metadata)
    with pytest.raises(rediscache.InvalidInputError) as general:  # checked before sending
        s.search(vector.astype(np.float64), 5, with_metadata=with_metadata)
    assert str(short.value) == str(general.value)
    for _ in range(3):  # the replies of the refused searches were read: answers stay in step
        assert s.search(query, 5, with_metadata=with_metadata) == first
    assert s.get("k3") is not None and s.count() == 20


def test_the_sync_short_path_sends_the_prepacked_command_on_a_kept_connection(
    hub: rediscache.Hub, space_name: str
) -> None:
    s = hub.create_space(space_name, 4, metric="l2", algorithm="flat")
    s.put_many(["a", "b"], [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    query = np.array([1.0, 0.1, 0.0, 0.0], dtype=np.float32)
    s.search(query, 2)
    sent: list[Any] = []
    real = wire._pack

    def spy(conn: Any, commands: Any, packed: Any = None) -> Any:
        sent.append(packed)
        return real(conn, commands, packed)

    counter = wire.count_connects(hub.client)
    before = counter.count
    wire._pack = spy  # type: ignore[assignment]
    try:
        hits = s.search(query, 2)
        with pytest.raises(rediscache.InvalidInputError):
            s.search(np.array([np.nan, 0, 0, 0], dtype=np.float32), 2)
        again = s.search(query, 2)
    finally:
        wire._pack = real  # type: ignore[assignment]
    assert [h.key for h in hits] == ["a", "b"] and again == hits
    assert len(sent) == 3 and all(isinstance(p, bytes) and query.tobytes() in p for p in sent[::2])
    assert counter.count == before  # the refused search's connection was kept, not replaced
