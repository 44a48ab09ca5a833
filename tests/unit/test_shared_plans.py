"""The pure halves shared by the sync and asyncio APIs, exercised without a server: script
call builders and their error mapping, and the get_or_compute flow driven by a fake store
(its reads and writes parts replaced by fakes: the parts receive what they use)."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import redis

from rediscache import scripts
from rediscache.caching import ReadThrough
from rediscache.codec import VectorCodec
from rediscache.effects import Compute, Flights, InFlight, Pipeline, Sleep, WaitFlights
from rediscache.errors import (
    CorruptDataError,
    InvalidInputError,
    KeyNotFoundError,
    StaleStateError,
)
from rediscache.keys import SpaceKeys
from rediscache.metrics import Metrics

# ---------------------------------------------------------------- script calls


def test_write_call_packs_rows_and_maps_errors() -> None:
    call = scripts.write_call(
        "cfg",
        ["d:a", "d:b"],
        state="1 1 0 -",
        count_field="n:1",
        rows=[(["vec", b"\x00"], ["meta"]), (["vec", b"\x01", "meta", b"m"], [])],
        names=["a", "b"],
        ttl_ms=500,
    )
    assert (call.name, call.keys) == ("write", ["cfg", "d:a", "d:b"])
    assert call.args == [
        "state", "1 1 0 -", "n:1", "put", 500,
        1, "vec", b"\x00", 1, "meta",
        2, "vec", b"\x01", "meta", b"m", 0,
    ]  # fmt: skip
    assert call.parse(2) == (2, [])
    with pytest.raises(StaleStateError):
        call.failed(redis.ResponseError("RC_STALE"))
    with pytest.raises(Exception, match="'b' is stored under a Redis key of another type"):
        call.failed(redis.ResponseError("RC_WRONGTYPE 2"))
    delete = scripts.write_call("cfg", ["d:a"], state="s", count_field="n:1", rows=None, names=[])
    assert delete.args == ["state", "s", "n:1", "del"]


def test_write_call_updates_vectors_with_a_missing_policy() -> None:
    call = scripts.write_call(
        "cfg", ["d:a", "d:b"], state="s", count_field="n:1",
        rows=[(["vec", b"\x00"], []), (["vec", b"\x01"], [])], names=["a", "b"],
        ttl_ms=None, missing="skip",
    )  # fmt: skip
    assert call.args[:5] == ["state", "s", "n:1", "vec:skip", "-"]
    assert call.parse([1, [2]]) == (1, [1])  # created 1; the 2nd document (index 1) left out
    with pytest.raises(KeyNotFoundError, match="'b'") as caught:
        call.failed(redis.ResponseError("RC_MISSING 2"))
    assert caught.value.keys == ("b",)
    with pytest.raises(InvalidInputError, match="missing"):
        scripts.write_call("cfg", [], state="s", count_field="n", rows=[], names=[], missing="x")


def test_gather_and_combine_calls_parse_replies() -> None:
    g = scripts.gather_call(
        ["d:a", "d:b"], "cfg", state="s", field="vec", nbytes=8, skip_missing=True, names=["a"]
    )
    assert g.keys == ["d:a", "d:b", "cfg"] and g.args == ["vec", 8, "skip", "s"]
    assert g.parse([b"10", b"blob"]) == scripts.Gathered([True, False], [b"blob"])
    with pytest.raises(CorruptDataError, match="'a' has 3 bytes"):
        g.failed(redis.ResponseError("RC_BADLEN 1 3"))
    c = scripts.combine_call(
        ["d:a"],
        "d:t",
        "cfg",
        state="s",
        count_field="n:1",
        field="vec",
        dim=2,
        element="f",
        coefs=np.array([0.5]),
        constant=None,
        mean=True,
        normalize=False,
        nonzero=True,
        skip_missing=False,
        names=["a"],
    )
    res = c.parse([1, 0, np.array([1.0, 2.0], dtype="<f8").tobytes(), b"1"])
    assert (res.used, res.missing) == (1, 0) and res.vector.tolist() == [1.0, 2.0]
    assert res.found == [True]
    with pytest.raises(KeyNotFoundError, match="'a' does not exist"):
        c.failed(redis.ResponseError("RC_MISSING 1"))
    with pytest.raises(InvalidInputError, match="zero vector"):
        c.failed(redis.ResponseError("RC_ZERO"))


def test_calls_that_return_error_codes() -> None:
    begin = scripts.fork_begin_call("cfg", "lock", "garbage", token="t", lease_ms=10)
    assert begin.failed(redis.ResponseError("RC_BUSY")) == "RC_BUSY"
    assert begin.parse([1, 2, b"3 1 0 t"]) == (1, 2, "3 1 0 t")
    busy = scripts.rollback_call(["k"], version=1, gen=2).failed(redis.ResponseError("RC_BUSY"))
    lost = scripts.fork_commit_call(["k"], token="t").failed(redis.ResponseError("RC_LOST"))
    assert busy is None and lost is None  # "wait" / "lease lost": results, not errors
    with pytest.raises(CorruptDataError, match="found 2456 documents where the space counts 3000"):
        scripts.fork_commit_call(["k"], token="t").failed(redis.ResponseError("RC_COUNT 3000 2456"))
    copy = scripts.copy_docs_call(("lock", "t"), "cfg", [b"a"], [b"b"], lease_ms=5, by_copy=True)
    assert copy.keys == ["cfg", "lock", b"a", b"b"] and copy.args == ["t", 5, "copy"]
    assert copy.failed(redis.ResponseError("RC_LOST")) is False  # lease lost: stop copying
    with pytest.raises(InvalidInputError, match="labelled 'v'"):
        scripts.snapshot_call("cfg", "ver", label="v", created_at=0.0, origin=None).failed(
            redis.ResponseError("RC_LABEL")
        )


def test_sync_shorthands_take_the_client_first() -> None:
    assert scripts.write.__name__ == "write" and "write_call" in (scripts.write.__doc__ or "")


# ---------------------------------------------------------------- the get_or_compute flow


class _FakeReads:
    """Reads as the flow uses them: one effect per get_many."""

    def get_many(self, keys: list[str], *, missing: str = "raise") -> Any:
        return (yield ("Read", keys))


class _FakeWrites:
    """Writes as the flow uses them: one effect per put_many."""

    def ttl_ms(self, ttl: object) -> int | None:
        return None

    def put_many(self, keys: list[str], vectors: Any, *, ttl: float | None = None) -> Any:
        return (yield ("Store", keys, vectors))


def _cache() -> ReadThrough:
    target = SimpleNamespace(
        keys=SpaceKeys.for_space("flow"),
        codec=VectorCodec(2, "float32", "l2"),
        context=SimpleNamespace(metrics=Metrics()),
    )
    return ReadThrough(target, _FakeReads(), _FakeWrites())  # type: ignore[arg-type]


class _Store:
    """A dict standing in for Redis; ``down`` makes every Redis effect fail."""

    def __init__(self, table: InFlight[threading.Event] | None = None) -> None:
        self.data: dict[str, np.ndarray] = {}
        self.locks: dict[str, str] = {}
        self.down = False
        self.computed: list[list[str]] = []
        self.effects: list[str] = []
        self.table = table or InFlight(threading.Event)

    def perform(self, effect: Any) -> Any:
        name = effect[0] if type(effect) is tuple else None
        self.effects.append(name or type(effect).__name__)
        if isinstance(effect, Compute):
            self.computed.append(effect.keys)
            return effect.fn(effect.keys)
        if isinstance(effect, Flights):
            return self.table
        if isinstance(effect, Sleep | WaitFlights):
            return None
        if self.down:
            raise redis.ConnectionError("down")
        if name == "Read":
            nan = np.full(2, np.nan, dtype=np.float32)
            return np.stack([self.data.get(k, nan) for k in effect[1]])
        if name == "Store":
            self.data.update(zip(effect[1], effect[2].astype(np.float32)))
            return len(effect[1])
        assert isinstance(effect, Pipeline)
        replies: list[Any] = []
        for command in effect.commands:
            if command[0] == "SET":
                taken = command[1] in self.locks
                self.locks.setdefault(command[1], command[2])
                replies.append(None if taken else True)
            elif command[0] == "GET":
                held = self.locks.get(command[1])
                replies.append(None if held is None else held.encode())
            else:
                for lock in command[1:]:
                    self.locks.pop(lock, None)
                replies.append(len(command) - 1)
        return replies


def _compute(keys: list[str]) -> np.ndarray:
    return np.array([[float(len(k)), 1.0] for k in keys])


def _drive(flow: Any, perform: Any) -> Any:
    """Run a flow, performing its effects with ``perform`` (exceptions thrown back in)."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.send(reply) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value
        reply, error = None, None
        try:
            reply = perform(effect)
        except BaseException as exc:
            error = exc


def _run(cache: ReadThrough, store: _Store, keys: list[str], **kwargs: Any) -> np.ndarray:
    flow = cache.get_or_compute(
        keys,
        kwargs.get("compute", _compute),
        ttl=kwargs.get("ttl"),
        on_error=kwargs.get("on_error", "raise"),
        lock_seconds=kwargs.get("lock_seconds", 1.0),
    )
    return _drive(flow, store.perform)  # type: ignore[no-any-return]


def test_flow_computes_missing_keys_once_under_locks() -> None:
    cache, store = _cache(), _Store()
    store.data["a"] = np.array([9.0, 9.0], dtype=np.float32)
    got = _run(cache, store, ["a", "bb", "a", "ccc"])
    assert got.tolist() == [[9.0, 9.0], [2.0, 1.0], [9.0, 9.0], [3.0, 1.0]]
    assert store.computed == [["bb", "ccc"]] and store.locks == {}  # unlocked afterwards
    assert store.effects == ["Flights", "Read", "Pipeline", "Compute", "Store", "Pipeline"]
    assert _run(cache, store, ["bb"]).tolist() == [[2.0, 1.0]] and len(store.computed) == 1


def test_flow_waits_for_a_key_locked_elsewhere_then_computes_it() -> None:
    cache, store = _cache(), _Store()
    store.locks[cache.keys.compute_lock("k")] = "another process"
    got = _run(cache, store, ["k"], lock_seconds=0.01)
    assert got.tolist() == [[1.0, 1.0]] and store.computed == [["k"]]
    assert "Sleep" in store.effects and store.effects[-1] == "Store"


def test_flow_fails_open_or_raises_on_outages() -> None:
    cache, store = _cache(), _Store()
    store.down = True
    assert _run(cache, store, ["x"], on_error="compute").tolist() == [[1.0, 1.0]]
    with pytest.raises(redis.ConnectionError):
        _run(cache, store, ["x"])


def test_flow_releases_its_claims_when_compute_fails() -> None:
    table: InFlight[threading.Event] = InFlight(threading.Event)
    cache, store = _cache(), _Store(table)

    def broken(keys: list[str]) -> Any:
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        _run(cache, store, ["k"], compute=broken)
    assert table.events == {} and store.locks == {}  # claim released, lock deleted


def test_failures_name_what_the_user_named() -> None:
    """A lost single put names its key (not "rows 0..0"), a version deleted meanwhile is
    named with its label and space, and an error reply without a call context is not
    prefixed twice (the guard puts the call's name in front)."""
    from rediscache.errors import (
        OutcomeUnknownError,
        ServerLoadingError,
        VersionNotFoundError,
        reply_error,
    )
    from rediscache.writes import chunk_failed

    lost = chunk_failed("'items'", OutcomeUnknownError("no reply"), 0, 1, 1, "put", "k1")
    assert str(lost) == "put into 'items': 'k1' may or may not be stored (no reply)"
    assert isinstance(lost, OutcomeUnknownError)
    many = chunk_failed("'items'", OutcomeUnknownError("no reply"), 0, 2, 5, "put_many")
    assert "rows 0..1 may or may not be stored" in str(many)
    # LOADING: redis-py raises it as a ConnectionError, but the server refused: nothing ran
    refused = chunk_failed(
        "'items'", redis.BusyLoadingError("Redis is loading the dataset in memory"), 2, 4, 5
    )
    assert isinstance(refused, ServerLoadingError) and "rows 2..3 were not stored" in str(refused)
    call = scripts.rollback_call(
        ["c", "v", "i", "g", "x"], version=3, gen=2, name="version v3 (A) of space 'x'"
    )
    with pytest.raises(VersionNotFoundError, match=r"^version v3 \(A\) of space 'x' does not"):
        call.failed(redis.ResponseError("RC_NOVERSION"))
    loading = reply_error("LOADING Redis is loading the dataset in memory", "", call=False)
    assert str(loading).startswith("Redis is loading its data") and loading.unplaced


def test_a_drop_by_a_user_not_allowed_to_read_persistence_is_not_failed_by_it() -> None:
    """The AOF compaction after a drop is best effort: a refused INFO or BGREWRITEAOF (an
    ACL user without them) ends it quietly; a rewrite in progress is waited for."""
    from rediscache.effects import Command, Sleep
    from rediscache.registry import Registry

    def run(replies: list[Any]) -> list[Any]:
        flow = Registry._compact_aof(None, "rc:{s}:cfg")  # type: ignore[arg-type]
        sent: list[Any] = []
        try:
            effect = next(flow)
            while True:
                sent.append(effect)
                reply = replies.pop(0) if isinstance(effect, Command) else None
                effect = flow.throw(reply) if isinstance(reply, Exception) else flow.send(reply)
        except StopIteration:
            return sent

    denied = redis.ResponseError("NOPERM this user has no permissions to run the 'info' command")
    assert [e.args for e in run([denied])] == [("INFO", "persistence")]
    busy = {"aof_enabled": 1, "aof_rewrite_in_progress": 1}
    idle = {"aof_enabled": 1, "aof_rewrite_in_progress": 0}
    sent = run([busy, idle, "OK"])
    assert [type(e) for e in sent] == [Command, Sleep, Command, Command]
    assert sent[-1].args == ("BGREWRITEAOF",)
    raced = redis.ResponseError("Background append only file rewriting already in progress")
    assert [type(e) for e in run([idle, raced, idle, "OK"])][-1] is Command
