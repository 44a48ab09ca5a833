"""put_many chunks written as MULTI/EXEC transactions (rediscache.writes.Writes.
_put_in_transaction): in a space whose entries never expire, a chunk of TX_ROWS rows or more
is checked (WATCH of the config, the state, each document's HLEN) in one round trip and
written inside MULTI/EXEC in a second. These tests change the space between the two round
trips (a snapshot, another writer, a foreign client), lose replies, and check that what
write.lua guaranteed still holds: nothing lands in a generation a version shares, the count
is exact, a key of another type refuses the chunk, a lost reply is reported as unknown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import redis
from both import Api

import rediscache
from rediscache import writes
from rediscache.effects import Transaction

Make = Callable[..., Api]
DIM = 4
N = 40  # rows per put_many: more than TX_ROWS, fewer than a chunk


def _rows(n: int, seed: int = 0, offset: int = 0) -> tuple[list[str], Any, list[dict[str, Any]]]:
    keys = [f"k{offset + i}" for i in range(n)]
    vectors = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return keys, vectors, [{"cat": "a" if i % 2 else "b", "i": i} for i in range(n)]


def _counts(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
            for name in ("exec", "evalsha", "watch")}  # fmt: skip


@pytest.fixture()
def between(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Callable[[], None]]]:
    """Actions run between a put_many transaction's two round trips (once each)."""
    actions: list[Callable[[], None]] = []

    def make(watch: str, reads: list[Any], build: Callable[[list[Any]], Any]) -> Transaction:
        def hooked(replies: list[Any]) -> Any:
            while actions:
                actions.pop(0)()
            return build(replies)

        return Transaction(watch, reads, hooked)

    monkeypatch.setattr(writes, "Transaction", make)
    yield actions


@pytest.fixture()
def sent(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many transactions and write.lua calls the write paths sent. Counted at the
    client: the server's command statistics also count what other clients (a background
    collector left by an earlier test) run meanwhile."""
    counts = {"transaction": 0, "script": 0}
    make, call = writes.Transaction, writes.scripts.write_call

    def transaction(*args: Any) -> Transaction:
        counts["transaction"] += 1
        return make(*args)

    def script(*args: Any, **kwargs: Any) -> Any:
        counts["script"] += 1
        return call(*args, **kwargs)

    monkeypatch.setattr(writes, "Transaction", transaction)
    monkeypatch.setattr(writes.scripts, "write_call", script)
    return counts


def test_a_large_put_many_is_one_transaction_small_and_expiring_ones_a_script(
    hub: rediscache.Hub, space_name: str, sent: dict[str, int]
) -> None:
    s = hub.create_space(space_name, DIM, algorithm="flat", fields={"cat": "tag"})
    keys, vectors, meta = _rows(N)
    before = _counts(hub.node_client(space_name))
    s.put_many(keys, vectors, meta)
    after = _counts(hub.node_client(space_name))
    assert sent == {"transaction": 1, "script": 0}
    assert after["exec"] > before["exec"]  # the server ran it as MULTI/EXEC
    s.put_many(keys[:3], vectors[:3])  # below TX_ROWS: one script call
    assert sent == {"transaction": 1, "script": 1}
    assert _counts(hub.node_client(space_name))["evalsha"] > after["evalsha"]
    assert len(s) == N
    hub.drop_space(space_name)
    e = hub.create_space(space_name, DIM, algorithm="flat", ttl=60)
    e.put_many(keys, vectors)
    # expiring: write.lua sets PEXPIRE
    assert sent == {"transaction": 1, "script": 2}
    assert len(e) == N and 0 < hub.client.pttl(e.live_keys.doc("k1")) <= 60_000


def test_counts_and_replaced_records_are_exact(make: Make, space_name: str) -> None:
    s = make(space_name, DIM, algorithm="flat", fields={"cat": "tag"})
    keys, vectors, meta = _rows(N)
    s.put_many(keys[: N // 2], vectors[: N // 2], meta[: N // 2])
    s.put_many(keys, vectors + 1, [None] * N)  # half new, half replaced without metadata
    assert len(s) == N
    record = s.get_record("k1")
    assert record is not None and record.metadata == {}
    np.testing.assert_allclose(record.vector, vectors[1] + 1, rtol=1e-6)
    assert s.search(vectors[0], 5, filter={"cat": "a"}) == []  # the indexed field went too


def test_a_snapshot_between_check_and_write_keeps_the_rows_out_of_the_version(
    make: Make, space_name: str, hub: rediscache.Hub, between: list[Callable[[], None]]
) -> None:
    s = make(space_name, DIM, algorithm="flat")
    keys, vectors, _ = _rows(N)
    s.put_many(keys[:20], vectors[:20])
    between.append(lambda: hub.space(space_name).snapshot("before"))
    s.put_many(keys, vectors + 1)
    assert not between  # the snapshot came between the two round trips
    assert len(s) == N
    old = hub.space(space_name).at("before")
    assert len(old) == 20 and old.get("k30") is None
    np.testing.assert_allclose(old.get("k1"), vectors[1], rtol=1e-6)
    np.testing.assert_allclose(s.get("k1"), vectors[1] + 1, rtol=1e-6)


def test_another_writer_between_check_and_write_keeps_the_count_exact(
    make: Make, space_name: str, hub: rediscache.Hub, between: list[Callable[[], None]]
) -> None:
    s = make(space_name, DIM, algorithm="flat")
    keys, vectors, _ = _rows(N)
    other = hub.space(space_name)
    between.append(lambda: other.put_many(keys[5:10], vectors[5:10]))  # 5 of ours, new
    s.put_many(keys, vectors)
    assert not between and len(s) == N == hub.space(space_name).count()


def test_a_key_of_another_type_refuses_the_chunk(hub: rediscache.Hub, space_name: str) -> None:
    s = hub.create_space(space_name, DIM, algorithm="flat")
    keys, vectors, _ = _rows(N)
    hub.client.set(s.live_keys.doc("k7"), "not a hash")
    with pytest.raises(rediscache.ServerError, match="k7") as caught:
        s.put_many(keys, vectors)
    assert caught.value.rows == (0, N) and caught.value.not_stored is None
    assert len(s) == 0 and s.get("k1") is None


def test_a_key_changed_type_mid_write_is_named_and_the_rest_stored(
    hub: rediscache.Hub, space_name: str, between: list[Callable[[], None]]
) -> None:
    s = hub.create_space(space_name, DIM, algorithm="flat")
    keys, vectors, _ = _rows(N)
    between.append(lambda: hub.client.set(s.live_keys.doc("k7"), "foreign"))
    with pytest.raises(rediscache.ServerError, match="stored except 1") as caught:
        s.put_many(keys, vectors)
    assert caught.value.not_stored == ["k7"] and caught.value.rows == (0, N)
    assert s.get("k6") is not None and s.get("k8") is not None
    assert hub.client.get(s.live_keys.doc("k7")) == b"foreign"


def test_a_lost_reply_is_an_unknown_outcome(
    hub: rediscache.Hub, space_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = hub.create_space(space_name, DIM, algorithm="flat")
    keys, vectors, _ = _rows(N)
    real = rediscache.wire._receive
    calls: list[int] = []

    def lose_second(conn: Any, n: int) -> list[Any]:
        calls.append(n)
        replies = real(conn, n)
        if len(calls) == 2:  # EXEC ran; its reply never reaches the caller
            raise redis.ConnectionError("connection reset")
        return replies

    monkeypatch.setattr(rediscache.wire, "_receive", lose_second)
    with pytest.raises(rediscache.OutcomeUnknownError, match="may or may not"):
        s.put_many(keys, vectors)
    monkeypatch.undo()
    assert len(s) == N  # it had run


def test_a_transaction_never_sent_whole_is_tried_once_more(
    hub: rediscache.Hub, space_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = hub.create_space(space_name, DIM, algorithm="flat")
    keys, vectors, _ = _rows(N)
    real = rediscache.wire.Wire.transaction
    fails = [1]

    def flaky(self: Any, *args: Any) -> Any:
        if fails[0]:
            fails[0] -= 1
            raise rediscache.wire.NotSent("connection refused")
        return real(self, *args)

    monkeypatch.setattr(rediscache.wire.Wire, "transaction", flaky)
    s.put_many(keys, vectors)
    assert len(s) == N
    waits = hub.failover_wait  # a cluster with replicas: waits for a primary (below)
    if waits:
        monkeypatch.setattr(hub, "failover_wait", 0.0)
    fails[0] = 2
    with pytest.raises(rediscache.ConnectionFailedError, match="not run"):
        s.put_many(keys, vectors + 1)
    np.testing.assert_allclose(s.get("k1"), vectors[1], rtol=1e-6)  # nothing of it ran
    if waits:  # sent again while it meets no primary, within the wait
        hub.failover_wait = waits
        fails[0] = 4
        s.put_many(keys, vectors + 2)
        assert fails[0] == 0
        np.testing.assert_allclose(s.get("k1"), vectors[1] + 2, rtol=1e-6)
    monkeypatch.undo()


def test_a_single_connection_client_writes_with_the_script(
    hub: rediscache.Hub, space_name: str
) -> None:
    pool = hub.node_client(space_name).connection_pool
    single = redis.Redis(
        connection_pool=type(pool)(connection_class=pool.connection_class, **{
            k: v for k, v in pool.connection_kwargs.items() if k != "redis_connect_func"
        }),
        single_connection_client=True,
    )  # fmt: skip
    wire = rediscache.wire.Wire(single)
    assert wire.transaction("x", [("PING",)], lambda replies: [("PING",)]) is None
    single.close()
