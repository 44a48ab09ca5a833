"""Which cluster node each effect of a flow goes to (rediscache.routing), without a server:
the key of each command, the split of round trips over several nodes, the slot map."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from redis.crc import key_slot

from rediscache import errors
from rediscache.effects import Command, Once, Pipeline, Roundtrip, Transaction
from rediscache.keys import REGISTRY, SpaceKeys
from rediscache.routing import ClusterDriver, ClusterNodes, _split, _trouble, command_key

A, B, C = ("127.0.0.1", 7001), ("127.0.0.1", 7002), ("127.0.0.1", 7003)


def _nodes() -> ClusterNodes:
    nodes = ClusterNodes(lambda host, port: None, A)
    nodes.load(
        [
            [0, 5460, [b"127.0.0.1", 7001, b"a"]],
            [5461, 10922, [b"127.0.0.1", 7002, b"b"], [b"127.0.0.1", 7004, b"r"]],
            [10923, 16383, [b"127.0.0.1", 7003, b"c"]],
        ]
    )
    return nodes


def _owner(key: str) -> tuple[str, int]:
    slot = key_slot(key.encode())
    return A if slot <= 5460 else B if slot <= 10922 else C


def test_a_command_goes_by_its_key_a_script_by_its_first_key_a_scan_by_its_pattern() -> None:
    keys = SpaceKeys.for_space("items")
    gen = keys.gen(3)
    assert command_key(("HGET", keys.config, "dim")) == keys.config
    assert command_key(("EVALSHA", "abc", 2, keys.config, keys.lock, "x")) == keys.config
    assert command_key(("EVALSHA", "abc", 0, "x")) is None
    assert command_key(("FT.SEARCH", gen.index, "*")) == gen.index
    assert command_key(("FT.CURSOR", "READ", gen.listing, 7)) == gen.listing
    assert command_key(("SCAN", 0, "MATCH", keys.all_scan_pattern(), "COUNT", 10)) is not None
    assert command_key(("SCAN", 0, "MATCH", "*", "COUNT", 10)) is None
    for keyless in (("INFO", "server"), ("FT._LIST",), ("SCRIPT", "LOAD", "x"), ("PING",)):
        assert command_key(keyless) is None
    # every key of a space, its index names included, is in the slot of its tag
    slots = {key_slot(k.encode()) for k in (keys.config, keys.index, gen.index, gen.doc("k"))}
    assert slots == {key_slot(b"{items}")}


def test_each_effect_goes_to_the_node_of_its_key_or_stays_on_the_flows_node() -> None:
    nodes = _nodes()
    keys = SpaceKeys.for_space("items")
    home = _owner(keys.config)
    assert _split(Command(("HGETALL", keys.config)), nodes, A) == (home, None)
    assert _split(Command(("INFO", "server")), nodes, B) == (B, None)  # keyless: sticky
    assert _split(Command(("INFO", "server"), at=keys.config), nodes, B) == (home, None)
    assert _split(Once(("EVALSHA", "x", 1, keys.lock)), nodes, C) == (home, None)
    assert _split(Transaction(keys.config, [], lambda r: []), nodes, A) == (home, None)
    whole = Pipeline([("HGET", keys.config, "a"), ("EXISTS", keys.dropped)], transaction=True)
    assert _split(whole, nodes, A) == (home, None)


def test_a_round_trip_over_several_nodes_is_split_and_keeps_its_order() -> None:
    nodes = _nodes()
    names = ["items", "users", "ads", "docs", "pics", "ann"]
    configs = [SpaceKeys.for_space(n).config for n in names]
    assert len({_owner(c) for c in configs}) > 1  # spread over nodes
    commands = [("HGET", c, "dim") for c in configs]
    _, parts = _split(Roundtrip(commands), nodes, A)
    assert parts is not None
    seen: list[int] = []
    for where, part, positions in parts:
        assert isinstance(part, Roundtrip) and part.packed is None
        assert all(_owner(configs[i]) == where for i in positions)
        assert [commands[i] for i in positions] == part.commands
        seen += positions
    assert sorted(seen) == list(range(len(commands)))
    # a pipeline without MULTI too; the registry (no tag) goes by its own slot
    _, parts = _split(Pipeline([("SMEMBERS", REGISTRY), *commands]), nodes, A)
    assert parts is not None and all(isinstance(p, Pipeline) for _, p, _ in parts)


def test_the_slot_map_is_read_from_cluster_slots() -> None:
    nodes = _nodes()
    assert nodes.primaries() == [A, B, C]
    assert nodes.default == A
    assert nodes.address("{x}") == _owner("{x}")
    with pytest.raises(errors.ServerError, match="no slot"):
        nodes.load([])


def test_moved_ask_and_tryagain_are_recognised_in_replies_and_errors() -> None:
    moved = redis.exceptions.MovedError("3999 127.0.0.1:7002")
    asked = redis.exceptions.AskError("3999 127.0.0.1:7002")
    assert _trouble(moved) == _trouble([b"ok", moved]) == _trouble([[moved]]) == "moved"
    assert _trouble(redis.ResponseError("MOVED 3999 127.0.0.1:7002")) == "moved"
    assert _trouble([asked, moved]) == "moved" and _trouble([b"x", asked]) == "ask"
    assert _trouble(redis.exceptions.TryAgainError("Multiple keys")) == "tryagain"
    assert _trouble(redis.exceptions.ExecAbortError("discarded")) == "aborted"
    assert _trouble(redis.ResponseError("WRONGTYPE")) is None and _trouble([b"x", 1]) is None


class _Node:
    """A node that answers MOVED until the map is read again, then the value."""

    def __init__(self, name: str, log: list[Any]) -> None:
        self.name, self.log = name, log

    def perform(self, effect: Any) -> Any:
        self.log.append((self.name, effect))
        if effect == Command(("CLUSTER", "SLOTS")):
            return [[0, 16383, [b"127.0.0.1", 7002, b"b"]]]  # everything moved to B
        if self.name == "A":
            raise redis.exceptions.MovedError("1 127.0.0.1:7002")
        return b"value"


def test_a_moved_reply_reads_the_map_again_and_sends_once_more_to_the_new_owner() -> None:
    nodes = ClusterNodes(lambda host, port: None, A)
    nodes.load([[0, 16383, [b"127.0.0.1", 7001, b"a"]]])
    driver = ClusterDriver(nodes)
    log: list[Any] = []
    driver._drivers = {A: _Node("A", log), B: _Node("B", log)}  # type: ignore[dict-item]

    def flow() -> Any:
        return (yield Command(("GET", "{k}")))

    assert driver.run(flow()) == b"value"
    assert [name for name, _ in log] == ["A", "A", "B"]  # sent, map read, sent again
    assert nodes.address("{k}") == B


def test_a_node_that_does_not_know_its_address_is_the_node_asked() -> None:
    """A cluster of one node that never met another names itself "" in CLUSTER SLOTS."""
    nodes = ClusterNodes(lambda host, port: None, ("localhost", 7001))
    nodes.load([[0, 16383, [b"", 7001, b"a"]]])
    assert nodes.primaries() == [("localhost", 7001)]
    nodes.load([[0, 16383, [b"", 7009, b"a"]]], ("10.0.0.5", 7009))
    assert nodes.primaries() == [("10.0.0.5", 7009)]


class _Down:
    """A node that is gone (its connections refused)."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def perform(self, effect: Any) -> Any:
        self.log.append(("A", effect))
        raise redis.ConnectionError("refused")


def test_a_node_that_cannot_be_reached_makes_the_map_be_read_from_another() -> None:
    """A primary killed and replaced by its replica: the caller's retry (rediscache.guard)
    must find the new primary, so the map is read again from a node that answers."""
    nodes = ClusterNodes(lambda host, port: None, A)
    nodes.load([[0, 8191, [b"127.0.0.1", 7001, b"a"]], [8192, 16383, [b"127.0.0.1", 7002, b"b"]]])
    driver = ClusterDriver(nodes)
    log: list[Any] = []
    driver._drivers = {A: _Down(log), B: _Node("B", log)}  # type: ignore[dict-item]

    def flow() -> Any:
        return (yield Command(("GET", "{k}")))

    assert nodes.address("{k}") == A
    with pytest.raises(redis.ConnectionError):
        driver.run(flow())
    assert [name for name, _ in log] == ["A", "B"]  # the map came from B, not from A
    assert nodes.address("{k}") == B
    assert driver.run(flow()) == b"value"
