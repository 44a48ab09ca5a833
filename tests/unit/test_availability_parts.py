"""The pure parts of high availability: the redis+sentinel:// URL, which errors a failover
wait retries, the wait's bound, and what a durable write checks."""

from __future__ import annotations

import time

import pytest
import redis
import redis.sentinel

import rediscache
from rediscache.durability import Durability, writes
from rediscache.guard import FAILOVER_PAUSES, Failover, refused, translate, unsent
from rediscache.hub import plan_connect, sentinel_parts
from rediscache.wire import NotSent


def test_a_sentinel_url_gives_the_sentinels_the_service_and_both_credentials() -> None:
    sentinels, service, node, watchers = sentinel_parts(
        "redis+sentinel://app:p%40ss@10.0.0.1:26379,10.0.0.2,[::1]:26380/items/3"
        "?sentinel_password=s3&socket_timeout=0.5"
    )
    assert sentinels == [("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380)]
    assert service == "items"
    assert node["username"] == "app" and node["password"] == "p@ss" and node["db"] == 3
    assert node["socket_timeout"] == 0.5
    assert watchers["password"] == "s3" and watchers["socket_timeout"] == 0.5
    _, _, node, watchers = sentinel_parts("redis+sentinel://h:1/svc")
    assert node["password"] is None and node["db"] == 0 and watchers["password"] is None
    assert watchers["socket_timeout"] == 2.0  # a Sentinel that hangs must not hang us


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://h:26379",  # no service
        "redis+sentinel:///svc",  # no Sentinel
        "redis+sentinel://h:port/svc",
        "redis+sentinel://h:99999/svc",
        "redis+sentinel://h:1/svc/notadb",
        "redis+sentinel://h:1/a/1/extra",
    ],
)
def test_bad_sentinel_urls_are_refused_with_the_form_to_use(url: str) -> None:
    with pytest.raises(rediscache.InvalidInputError, match="redis\\+sentinel://"):
        plan_connect(url, None, None, None, None, {}, redis.Redis)


def test_a_sentinel_url_error_hides_the_password() -> None:
    with pytest.raises(rediscache.InvalidInputError) as err:
        sentinel_parts("redis+sentinel://:secret-pw@h:1")
    assert "secret-pw" not in str(err.value)


def test_what_a_failover_wait_retries() -> None:
    """Only what ran nothing: a connection not made, no primary known, a replica's
    refusal. A lost reply, a timeout, a refused password, a full pool are not."""
    assert unsent(redis.ConnectionError("Error 111 connecting to h:1. Connection refused."))
    assert unsent(redis.sentinel.MasterNotFoundError("No master found for 'x'"))
    assert unsent(redis.exceptions.ReadOnlyError("You can't write against a read only replica."))
    assert unsent(redis.ResponseError("MASTERDOWN Link with MASTER is down"))
    assert unsent(redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"))
    assert unsent(NotSent("Connection reset by peer"))
    assert unsent(redis.ResponseError("NOREPLICAS Not enough good replicas to write."))
    assert unsent(  # a transaction pipeline refused while queueing, as redis-py words it
        redis.ResponseError(
            "Command # 1 (HSET k f v) of pipeline caused error: NOREPLICAS Not enough good "
            "replicas to write."
        )
    )
    assert not unsent(redis.exceptions.ExecAbortError("Transaction discarded"))
    assert unsent(
        redis.exceptions.ExecAbortError(
            "Transaction discarded because of: NOREPLICAS Not enough good replicas to write."
        )
    )
    assert not unsent(redis.ConnectionError("Connection closed by server."))  # sent
    assert not unsent(redis.TimeoutError("Timeout reading from socket"))
    assert not unsent(redis.AuthenticationError("WRONGPASS invalid username-password pair"))
    assert not unsent(redis.ConnectionError("Too many connections"))
    assert not unsent(redis.BusyLoadingError("LOADING"))
    assert not unsent(redis.ResponseError("WRONGTYPE"))
    assert refused([b"x", redis.exceptions.ReadOnlyError("READONLY")]) is not None
    assert refused([b"x", redis.ResponseError("WRONGTYPE")]) is None
    assert refused(b"OK") is None


def test_a_failover_wait_pauses_then_gives_up_with_a_typed_error() -> None:
    wait = Failover(0.05)
    cause = redis.ConnectionError("Error 111 connecting to h:1. Connection refused.")
    pauses = [wait.pause(cause)]
    assert 0 < pauses[0] <= FAILOVER_PAUSES[0]
    time.sleep(0.06)
    with pytest.raises(rediscache.FailoverTimeoutError) as err:
        wait.pause(cause)
    assert "within 0.05 s" in str(err.value) and err.value.__cause__ is cause
    # a public call names itself and says what was written
    mapped = translate(err.value, "put into 'items'", writes=True)
    assert isinstance(mapped, rediscache.FailoverTimeoutError)
    assert str(mapped).startswith("put into 'items': no primary answered")
    assert "nothing was written" in str(mapped)
    assert isinstance(mapped, rediscache.ConnectionFailedError)
    # a primary that answered, refusing writes for want of replicas, is said to be so
    wait = Failover(0.0)
    lonely = redis.ResponseError("NOREPLICAS Not enough good replicas to write.")
    with pytest.raises(rediscache.FailoverTimeoutError) as err:
        wait.pause(lonely)
    assert "no primary took writes" in str(err.value) and "min-replicas" in str(err.value)


def test_durability_commands_and_checks() -> None:
    assert Durability(replicas=2, timeout=0.5).command() == ("WAIT", 2, 500)
    assert Durability(replicas=1, aof=True).command() == ("WAITAOF", 1, 1, 1000)
    Durability(replicas=2).check(2)
    Durability(replicas=1, aof=True).check([1, 1])
    with pytest.raises(rediscache.DurabilityError, match="1 of the 2 replica"):
        Durability(replicas=2).check(1)
    with pytest.raises(rediscache.DurabilityError, match="not even it"):
        Durability(replicas=1, aof=True).check([0, 1])
    with pytest.raises(redis.ResponseError):
        Durability().check(
            redis.ResponseError(
                "ERR WAITAOF cannot be used when numlocal is set but appendonly is disabled"
            )
        )
    for bad in ({"replicas": -1}, {"replicas": True}, {"timeout": 0}, {"timeout": float("nan")},
                {"aof": "yes"}, {"replicas": 0}):  # fmt: skip
        with pytest.raises(rediscache.InvalidInputError):
            Durability(**bad)  # type: ignore[arg-type]
    assert writes([("HGET", "k", "f"), ("HSET", "k", "f", "v")])
    assert writes([(b"unlink", b"k")])
    assert not writes([("HGET", "k", "f"), ("FT.SEARCH", "i", "*")])


def test_only_effects_that_write_data_wait_for_replicas() -> None:
    """A read, a read-only script, a search index's "complete" mark and a ttl refresh
    carry no WAIT (a durable hub's reads must never fail for want of replicas)."""
    from rediscache import scripts
    from rediscache.durability import writes_data
    from rediscache.effects import Command, Once, Pipeline, Roundtrip, Transaction

    write = scripts.write_call("rc:{s}:cfg", [b"d"], state=b"x", count_field="n",
                               check_field="c", rows=None, names=["k"], ttl_ms=None)  # fmt: skip
    assert writes_data(Once(write.command()))
    mark = scripts.mark_built_call("rc:{s}:cfg", "built", b"run")
    assert mark.command()[0] == "EVALSHA" and not writes_data(Once(mark.command(), mark.data))
    assert not writes_data(Once(("EVALSHA_RO", "abc", 0)))
    assert not writes_data(Command(("FT.INFO", "idx")))
    assert writes_data(Command(("HSET", "k", "f", "v")))
    assert not writes_data(Roundtrip([("HGET", "k", "v"), ("PEXPIRE", "k", 100)]))
    assert writes_data(Pipeline([("HGET", "k", "v"), ("UNLINK", "k")]))
    assert writes_data(Transaction("w", [], lambda replies: []))


def test_a_dead_sentinel_is_skipped_at_once_and_a_long_error_is_cut() -> None:
    """redis-py retries a Sentinel it cannot reach with backoff (seconds per dead Sentinel,
    on each new connection and past failover_wait): the hub's Sentinel clients do not;
    and MasterNotFoundError's text (every Sentinel client's repr) is cut in the message."""
    from rediscache.hub import ConnectPlan, open_client

    plan = ConnectPlan(url="redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/svc")
    client, owns, where = open_client(plan, None, redis)
    try:
        for watcher in client.connection_pool.sentinel_manager.sentinels:
            retry = watcher.get_retry()
            assert retry is not None and retry._retries == 0
        assert owns and "127.0.0.1:1, 127.0.0.1:2" in where
    finally:
        client.close()
    wait = Failover(0.0)
    with pytest.raises(rediscache.FailoverTimeoutError) as err:
        wait.pause(redis.sentinel.MasterNotFoundError("No master found for 'svc' : " + "x" * 5000))
    assert len(str(err.value)) < 500


def test_a_durable_write_refused_for_want_of_replicas_is_sent_again_not_failed() -> None:
    """A primary short of replicas (min-replicas-to-write) refuses a script before its first
    write (NOREPLICAS) and WAIT then counts 0: the step wrote nothing, so it is sent again
    like any refusal of a primary, not failed with DurabilityError (CI saw a durable put
    raise one while the Sentinels replaced a stalled primary)."""
    from rediscache.drive import FailoverDriver
    from rediscache.effects import Once

    class Wire:
        def __init__(self) -> None:
            self.sent: list[tuple[object, ...]] = []

        def once(self, command: tuple[object, ...], after: object = None) -> object:
            self.sent.append(command)
            if len(self.sent) == 1:
                return redis.ResponseError("NOREPLICAS Not enough good replicas to write."), 0
            return b"stored", 1

        def close(self) -> None:
            pass

    driver = FailoverDriver(redis.Redis(port=1), failover_wait=5.0)
    fake = Wire()
    driver.wire = fake  # type: ignore[assignment]
    driver.durability = Durability(replicas=1)
    assert driver.perform(Once(("EVALSHA", "abc", 0), True)) == b"stored"
    assert len(fake.sent) == 2


def test_a_connection_to_a_demoted_primary_and_a_lost_read_are_waited_out() -> None:
    """The ROLE check's refusal is a step never sent (waited for, as a failover); a read whose
    reply was lost (a primary stalled past the socket timeout) is repeated while the
    Sentinels replace it, only by a read round trip; a write's is not (it may have run)."""
    from rediscache.drive import ride
    from rediscache.guard import NotPrimary, lost_read

    assert unsent(NotPrimary("127.0.0.1:1, named the primary by a Sentinel, is a slave"))
    assert lost_read(redis.TimeoutError("Timeout reading from socket"))
    assert lost_read(redis.ConnectionError("Connection reset by peer"))
    assert not lost_read(redis.AuthenticationError("invalid password"))
    assert not lost_read(redis.ConnectionError("Too many connections"))
    calls: list[int] = []

    def perform(effect: object) -> object:
        calls.append(1)
        if len(calls) < 3:
            raise redis.TimeoutError("Timeout reading from socket")
        return [b"v"]

    assert ride(perform, None, 5.0, lambda: None, reads=True) == [b"v"]
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(redis.TimeoutError):
        ride(perform, None, 5.0, lambda: None)  # a write's lost reply: raised at once
    assert len(calls) == 1


def test_an_asyncio_read_of_a_server_that_stopped_answering_times_out() -> None:
    """The asyncio fast read (hiredis straight from the stream) waits at most the
    connection's socket timeout, as redis-py's own reads do (it waited until the server
    woke up: 30 s for a primary stopped 30 s, though the Sentinels had promoted another)."""
    import asyncio

    from rediscache.wire import _read_replies

    async def main() -> None:
        silent = asyncio.StreamReader()  # nothing ever arrives
        with pytest.raises(redis.TimeoutError, match="Timeout reading"):  # not wait_for's
            await asyncio.wait_for(_read_replies(silent, 1, 0.2), 5)

    asyncio.run(main())


def test_a_search_index_mark_refused_for_want_of_replicas_is_not_waited_out() -> None:
    """A primary short of replicas (NOREPLICAS) refuses the search index's "complete" mark
    (``Once.data`` False, mark_built.lua): the refusal is answered at once, not waited out
    for ``failover_wait`` (a search then failed with FailoverTimeoutError, where the primary
    serves the search itself), and the mark's call reads it as "not marked". A write of the
    data is still waited for."""
    from rediscache import scripts
    from rediscache.drive import ride
    from rediscache.effects import Once

    refusal = redis.ResponseError("NOREPLICAS Not enough good replicas to write.")
    sent: list[object] = []

    def perform(effect: object) -> object:
        sent.append(effect)
        return refusal

    assert ride(perform, Once(("EVALSHA", "abc", 0), False), 5.0, lambda: None) is refusal
    assert len(sent) == 1
    with pytest.raises(rediscache.FailoverTimeoutError, match="no primary took writes"):
        ride(perform, Once(("EVALSHA", "abc", 0), True), 0.0, lambda: None)
    assert scripts.mark_built_call("cfg", "built:1", b"run").finish(refusal) is False
