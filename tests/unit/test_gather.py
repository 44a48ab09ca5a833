"""partitioned.gather and merge_hits without a server: the effects the flows see."""

from __future__ import annotations

from typing import Any

import pytest

from rediscache.effects import Command, Flow, Roundtrip, Sleep
from rediscache.partitioned import gather, merge_hits
from rediscache.reads import Hit
from rediscache.state import RELEASE_FIELD


def _reader(name: str, rounds: int = 1) -> Flow[list[Any]]:
    got = []
    for r in range(rounds):
        got.append((yield Roundtrip([("GET", f"{name}:{r}"), ("HGET", f"{name}:cfg", "state")])))
    return got


def _drive(flow: Flow[Any], answer: Any) -> tuple[Any, list[Any]]:
    """Run ``flow`` by hand, answering each effect with ``answer(effect)``; the result and
    the effects seen."""
    seen = []
    try:
        effect = flow.send(None)
        while True:
            seen.append(effect)
            try:
                value = answer(effect)
            except Exception as exc:
                effect = flow.throw(exc)
                continue
            effect = flow.send(value)
    except StopIteration as stop:
        return stop.value, seen


def _echo(effect: Any) -> Any:
    if type(effect) is Roundtrip:
        return [f"reply {c[0]} {c[1]}" for c in effect.commands]
    if type(effect) is Command:
        return f"command {effect.args[1]}"
    return None


def test_round_trips_of_the_flows_go_as_one_with_each_release_read_before_its_commands() -> None:
    result, seen = _drive(gather([_reader("a"), _reader("b")], ["a:cfg", "b:cfg"]), _echo)
    assert len(seen) == 1  # one round trip for both flows
    assert seen[0].commands == [
        ("HGET", "a:cfg", RELEASE_FIELD), ("GET", "a:0"), ("HGET", "a:cfg", "state"),
        ("HGET", "b:cfg", RELEASE_FIELD), ("GET", "b:0"), ("HGET", "b:cfg", "state"),
    ]  # fmt: skip
    results, marks = result
    assert results == [
        [["reply GET a:0", "reply HGET a:cfg"]],
        [["reply GET b:0", "reply HGET b:cfg"]],
    ]
    assert marks == ["reply HGET a:cfg", "reply HGET b:cfg"]


def test_flows_of_different_lengths_and_other_effects_one_at_a_time() -> None:
    def counting() -> Flow[str]:
        got = yield Command(("HMGET", "c:cfg", "state"))
        yield Sleep(0.0)
        return str(got)

    result, seen = _drive(gather([_reader("a", 2), counting()], ["a:cfg", "c:cfg"]), _echo)
    results, marks = result
    assert results[1] == "command c:cfg" and len(results[0]) == 2
    kinds = [type(e).__name__ for e in seen]
    # the command's own release read comes in a round trip of its own before it; no
    # release is read before a pause
    assert kinds.count("Command") == 1 and kinds.count("Sleep") == 1
    before = seen[kinds.index("Command") - 1]
    assert type(before) is Roundtrip and before.commands == [("HGET", "c:cfg", RELEASE_FIELD)]
    assert marks[1] == "reply HGET c:cfg"


def test_an_error_a_flow_does_not_handle_closes_the_others() -> None:
    closed = []

    def waiting() -> Flow[None]:
        try:
            yield Roundtrip([("GET", "x")])
            yield Roundtrip([("GET", "x2")])
        finally:
            closed.append("waiting")

    def failing() -> Flow[None]:
        yield Roundtrip([("GET", "y")])
        raise KeyError("boom")

    with pytest.raises(KeyError):
        _drive(gather([waiting(), failing()]), _echo)
    assert closed == ["waiting"]


def test_a_failed_round_trip_is_thrown_into_each_flow_that_was_in_it() -> None:
    def retrying() -> Flow[str]:
        try:
            yield Roundtrip([("GET", "x")])
        except ConnectionError:
            return "handled"
        return "no error"

    calls = []

    def answer(effect: Any) -> Any:
        calls.append(effect)
        if len(calls) == 1:
            raise ConnectionError("reset")
        return _echo(effect)

    (results, _), _ = _drive(gather([retrying(), retrying()]), answer)
    assert results == ["handled", "handled"]


def test_merged_hits_are_ranked_by_distance_then_key_and_paged() -> None:
    a = [Hit("k3", 0.1, {}), Hit("k9", 0.5, {})]
    b = [Hit("k1", 0.1, {}), Hit("k2", 0.3, {})]
    assert [h.key for h in merge_hits([a, b], 3)] == ["k1", "k3", "k2"]
    assert [h.key for h in merge_hits([a, b], 2, offset=2)] == ["k2", "k9"]
    assert merge_hits([[], []], 5) == []
