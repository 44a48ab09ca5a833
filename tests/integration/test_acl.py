"""Access control per space, enforced by the server: each role connects with raw redis-py
and with rediscache, and whatever lies outside its role is refused by Redis (NOPERM),
which rediscache raises as PermissionDeniedError naming the operation and the space."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import redis
import redis.asyncio
import redis.cluster
from both import send_twice

import rediscache
from rediscache import Hub, PermissionDeniedError, scripts
from rediscache.keys import SpaceKeys

DIM = 8


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, DIM)).astype(np.float32)


def _client(
    hub: Hub, user: str, password: str, module: Any = redis, *, cluster: bool = False
) -> Any:
    """A raw redis-py client of the test server (of a cluster: of its first primary),
    logged in as ``user``; ``cluster``: on a cluster, a RedisCluster client instead."""
    pool = hub.node_client().connection_pool
    wanted = ("host", "port", "path", "db", "socket_timeout", "protocol")
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k in wanted}
    kwargs.update(username=user, password=password)
    if cluster and isinstance(hub.client, redis.cluster.RedisCluster) and module is redis:
        kwargs.pop("db", None)
        return redis.cluster.RedisCluster(**kwargs)
    cls = pool.connection_class
    if module is redis.asyncio:
        cls = {
            redis.Connection: redis.asyncio.Connection,
            redis.UnixDomainSocketConnection: redis.asyncio.UnixDomainSocketConnection,
        }[cls]
    return module.Redis(connection_pool=module.ConnectionPool(connection_class=cls, **kwargs))


class Team:
    """Two spaces ``a`` and ``b`` with data, and users holding roles on them."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        tag = uuid.uuid4().hex[:8]
        self.a, self.b = f"acl-a-{tag}", f"acl-b-{tag}"
        self.users: list[str] = []
        self.passwords: dict[str, str] = {}
        for name in (self.a, self.b):
            space = hub.create_space(name, DIM, fields={"cat": "tag"})
            space.put_many([f"k{i}" for i in range(20)], _vectors(20),
                           metadata=[{"cat": "x"}] * 20)  # fmt: skip
            space.snapshot("v1")
            space.put("k0", _vectors(1, 1)[0])  # the copy for v1: writers may write in place

    def user(self, role: str, *spaces: str) -> str:
        name = f"u-{role}-{uuid.uuid4().hex[:6]}"
        granted = self.hub.grant(name, list(spaces), role)
        assert granted.password
        self.users.append(name)
        self.passwords[name] = granted.password
        return name

    def raw(self, user: str) -> redis.Redis:
        """A client as ``user`` (on a cluster, a RedisCluster client: keys are routed)."""
        return _client(self.hub, user, self.passwords[user], cluster=True)  # type: ignore[no-any-return]

    def hub_as(self, user: str) -> Hub:
        return rediscache.connect(client=self.raw(user))

    def close(self) -> None:
        for user in self.users:
            self.hub.revoke(user)
        for name in (self.a, self.b):
            self.hub.drop_space(name, missing_ok=True)


@pytest.fixture()
def team(hub: Hub) -> Iterator[Team]:
    t = Team(hub)
    try:
        yield t
    finally:
        t.close()


def _refused(fn: Callable[[], Any]) -> None:
    with pytest.raises((redis.exceptions.NoPermissionError, PermissionDeniedError)):
        fn()


def test_rules_give_each_role_only_its_commands() -> None:
    from rediscache.access import UserGrants, rules

    read = " ".join(rules(UserGrants("u", spaces={"items": "read"})))
    write = " ".join(rules(UserGrants("u", spaces={"items": "write"})))
    admin = " ".join(rules(UserGrants("u", spaces={"items": "admin"})))
    assert "%R~rc:{items}:*" in read and "+hset" not in read and "+ft.create" not in read
    assert f"+evalsha_ro|{scripts.sha('gather')}" in read
    assert f"+evalsha|{scripts.sha('write')}" not in read
    assert "~rc:{items}:*" in write and "+hset" in write and "+ft.create" not in write
    assert f"+evalsha|{scripts.sha('rollback')}" not in write
    assert "+ft.create" in admin and f"+evalsha|{scripts.sha('rollback')}" in admin
    for text in (read, write, admin):
        for forbidden in ("+eval ", "+flushall", "+config", "+keys", "+scan", "+module",
                          "+@all", "allkeys", "+acl|setuser", "+script|flush"):  # fmt: skip
            assert forbidden not in text + " ", forbidden
    owner = rules(UserGrants("u", owner=True))
    assert "+@all" in owner and "allkeys" in owner


def test_every_command_of_a_script_is_granted_with_the_script() -> None:
    """A script whose command the role lacks fails in the middle, after its earlier writes:
    so every redis.call of each script is among the commands of the role that runs it."""
    import re

    from rediscache import access

    granted = {
        "read": (access.READ_SCRIPTS, access.READ_COMMANDS),
        "write": (access.WRITE_SCRIPTS, access.READ_COMMANDS + access.WRITE_COMMANDS),
        "admin": (
            access.ADMIN_SCRIPTS,
            access.READ_COMMANDS + access.WRITE_COMMANDS + access.ADMIN_COMMANDS,
        ),
    }
    # copy_docs.lua calls COPY only in its "copy" mode, which an owner's copy sends (a role's
    # sends "fields": generations.copy_generation); there COPY is its first write, so a role
    # that sent that mode would be refused before anything was written
    owners_only = {"copy_docs": {"copy"}}
    seen = set()
    for names, commands in granted.values():
        for name in names:
            seen.add(name)
            source = scripts.source(name)
            used = re.findall(r"redis\.p?call\(\s*[\"']([A-Za-z._]+)", source)
            assert used, name
            missing = {c.lower() for c in used} - set(commands) - owners_only.get(name, set())
            assert not missing, (name, missing)
    copy = scripts.source("copy_docs")
    writes = re.findall(r"redis\.call\(\s*\"([A-Z]+)", copy.split('ARGV[3] == "copy"')[1])
    assert writes[0] == "COPY"  # the first command of the mode: nothing written before it
    assert seen == set(scripts.available())  # every script has a role


def test_reader_reads_and_searches_its_space_only(team: Team) -> None:
    reader = team.user("read", team.a)
    with team.hub_as(reader) as h:
        a = h.space(team.a)
        assert a.get("k1") is not None
        assert len(a.get_many(["k1", "k2", "zz"], missing="nan")) == 3
        assert len(a.search(_vectors(1, 5)[0], k=3)) == 3
        assert len(a.search(_vectors(1, 5)[0], k=3, filter={"cat": "x"})) == 3
        assert a.at("v1").get("k1") is not None
        assert len(a) == 20
        np.testing.assert_allclose(
            a.average(["k1", "k2"]), _vectors(20)[1:3].mean(axis=0), rtol=1e-5, atol=1e-6
        )
        with pytest.raises(PermissionDeniedError, match=team.a):
            a.put("new", _vectors(1)[0])
        with pytest.raises(PermissionDeniedError):
            a.delete("k1")
        with pytest.raises(PermissionDeniedError):
            a.rollback("v1")
        with pytest.raises(PermissionDeniedError):
            a.average(["k1", "k2"], into="avg")
        with pytest.raises(PermissionDeniedError):
            h.space(team.b)
        with pytest.raises(PermissionDeniedError):
            h.create_space(f"x-{uuid.uuid4().hex[:6]}", DIM)
    raw = team.raw(reader)
    a_keys, b_keys = SpaceKeys.for_space(team.a), SpaceKeys.for_space(team.b)
    assert raw.hget(a_keys.config, "dim") is not None
    _refused(lambda: raw.hget(b_keys.config, "dim"))
    _refused(lambda: raw.hset(a_keys.config, "dim", 9))
    _refused(lambda: raw.execute_command("FT.SEARCH", b_keys.index, "*"))
    _refused(lambda: raw.execute_command(
        "FT.CREATE", a_keys.prefix + "g99:idx", "PREFIX", 1, b_keys.prefix, "SCHEMA", "cat", "TAG"
    ))  # fmt: skip
    _refused(lambda: raw.eval("return 1", 0))
    _refused(lambda: raw.evalsha(scripts.sha("write"), 1, a_keys.config))
    for command in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*"), ("SCAN", 0),
                    ("MODULE", "LIST"), ("ACL", "LIST"), ("SCRIPT", "FLUSH")):  # fmt: skip
        _refused(lambda c=command: raw.execute_command(*c))  # type: ignore[misc]
    raw.close()


def test_writer_writes_but_cannot_switch_or_drop(team: Team) -> None:
    writer = team.user("write", team.a)
    with team.hub_as(writer) as h:
        a = h.space(team.a)
        a.put("new", _vectors(1, 3)[0], metadata={"cat": "y"})
        a.put_many(["n1", "n2"], _vectors(2, 4))
        assert a.delete("n1") == 1
        a.average(["k1", "k2"], into="avg")
        a.update_mean("avg", _vectors(1, 6)[0])
        assert a.get("avg") is not None
        with pytest.raises(PermissionDeniedError, match="rollback"):
            a.rollback("v1")
        with pytest.raises(PermissionDeniedError):
            a.delete_version("v1")
        with pytest.raises(PermissionDeniedError):
            h.drop_space(team.a)
        with pytest.raises(PermissionDeniedError):
            h.space(team.b).get("k1")
    raw = team.raw(writer)
    a_keys, b_keys = SpaceKeys.for_space(team.a), SpaceKeys.for_space(team.b)
    _refused(lambda: raw.execute_command("FT.DROPINDEX", a_keys.index))
    _refused(lambda: raw.execute_command("FT.ALIASUPDATE", a_keys.index, a_keys.gen(1).index))
    _refused(lambda: raw.execute_command(
        "FT.CREATE", a_keys.prefix + "g99:idx", "PREFIX", 1, b_keys.prefix, "SCHEMA", "cat", "TAG"
    ))  # fmt: skip
    _refused(lambda: raw.evalsha(scripts.sha("rollback"), 1, a_keys.config))
    _refused(lambda: raw.hset(b_keys.gen(1).doc("k1"), "cat", "z"))
    _refused(lambda: raw.srem("rc:spaces", team.b))
    raw.close()
    # the index is still there and complete
    assert len(team.hub.space(team.a).search(_vectors(1, 5)[0], k=3)) == 3


def test_a_writer_writes_after_its_own_snapshot_and_an_admin_indexes_the_copy(
    team: Team,
) -> None:
    """A writer may snapshot; its next write copies the space for the version without
    creating an index (only admins may): the version reads by key at once, a reader's
    search of it says who builds its index, and an admin's search builds it."""
    writer, reader = team.user("write", team.a), team.user("read", team.a)
    old = team.hub.space(team.a).get("k1")
    with team.hub_as(writer) as h:
        a = h.space(team.a)
        a.snapshot("v2")
        a.put("k1", _vectors(1, 3)[0])  # the copy for v2, by the writer
        a.put("new", _vectors(1, 4)[0])
        np.testing.assert_array_equal(a.get("k1"), _vectors(1, 3)[0])
        np.testing.assert_array_equal(a.at("v2").get("k1"), old)
        assert a.at("v2").get("new") is None
    with team.hub_as(reader) as h:
        v2 = h.space(team.a).at("v2")
        np.testing.assert_array_equal(v2.get("k1"), old)
        with pytest.raises(PermissionDeniedError, match="no index yet"):
            v2.search(old, k=3)
    # listing it (export, diff) says the same
    with team.hub_as(reader) as h, pytest.raises(PermissionDeniedError, match="no index yet"):
        list(h.space(team.a).at("v2").iter_batches())
    with team.hub_as(team.user("admin", team.a)) as h:  # an admin lists it all the same
        listed = [k for batch, _, _ in h.space(team.a).at("v2").iter_batches() for k in batch]
        assert sorted(listed) == sorted(f"k{i}" for i in range(20))
    hits = team.hub.space(team.a).at("v2").search(old, k=1)  # the owner's search indexes it
    assert hits[0].key == "k1"
    with team.hub_as(reader) as h:
        assert h.space(team.a).at("v2").search(old, k=1)[0].key == "k1"


def test_a_reader_writing_after_a_snapshot_is_told_it_may_not_write(team: Team) -> None:
    reader = team.user("read", team.a)
    team.hub.space(team.a).snapshot("v2")
    keys = SpaceKeys.for_space(team.a)
    before = (team.hub.client.hget(keys.config, "state"), team.hub.client.hgetall(keys.versions))
    with team.hub_as(reader) as h, pytest.raises(PermissionDeniedError) as caught:
        h.space(team.a).put("new", _vectors(1, 3)[0])
    assert "shared with a version" not in str(caught.value), caught.value
    assert "put" in str(caught.value) and "read" in str(caught.value)
    after = (team.hub.client.hget(keys.config, "state"), team.hub.client.hgetall(keys.versions))
    assert after == before and not team.hub.client.exists(keys.lock)


def test_admin_switches_its_space_and_cannot_touch_one_it_only_reads(team: Team) -> None:
    admin = team.user("admin", team.a)
    team.hub.grant(admin, [team.b], "read")
    with team.hub_as(admin) as h:
        a = h.space(team.a)
        a.put("after", _vectors(1, 8)[0])
        a.rollback("v1")
        assert a.get("after") is None
        stage = a.stage("next")
        stage.put_many(["s1"], _vectors(1, 9))
        stage.publish(keep=False)
        assert a.get("s1") is not None
        b = h.space(team.b)
        assert b.get("k1") is not None
        with pytest.raises(PermissionDeniedError):
            b.rollback("v1")
        with pytest.raises(PermissionDeniedError):
            b.put("x", _vectors(1)[0])
    raw = team.raw(admin)
    b_keys = SpaceKeys.for_space(team.b)
    _refused(lambda: raw.execute_command("FT.DROPINDEX", b_keys.index))
    _refused(lambda: raw.execute_command("FT.ALIASDEL", b_keys.index))
    raw.close()
    assert len(team.hub.space(team.b).search(_vectors(1, 5)[0], k=3)) == 3


def test_asyncio_and_hot_cache_work_within_the_role(team: Team) -> None:
    reader = team.user("read", team.a)
    raw = team.raw(reader)
    h = rediscache.connect(client=raw)
    a = h.space(team.a)
    cache = a.enable_hot_cache()
    assert a.get("k1") is not None and a.get("k1") is not None
    assert cache.stats().hits >= 1
    a.disable_hot_cache()
    h.close()

    async def main() -> None:
        client = _client(team.hub, reader, team.passwords[reader], redis.asyncio)
        ah = await rediscache.connect_async(client=client)
        try:
            s = await ah.space(team.a)
            assert await s.get("k1") is not None
            assert len(await s.search(_vectors(1, 5)[0], k=3)) == 3
            with pytest.raises(PermissionDeniedError):
                await s.put("x", _vectors(1)[0])
        finally:
            await ah.close()
            await client.aclose()
            await client.connection_pool.disconnect()

    asyncio.run(main())


def test_a_space_created_later_or_again_is_reachable_only_by_its_grantees(team: Team) -> None:
    reader = team.user("read", team.a)
    later = f"acl-later-{uuid.uuid4().hex[:6]}"
    team.hub.create_space(later, DIM).put("k", _vectors(1)[0])
    try:
        with team.hub_as(reader) as h:
            with pytest.raises(PermissionDeniedError):
                h.space(later)
            team.hub.drop_space(team.a)
            team.hub.create_space(team.a, DIM).put("k", _vectors(1)[0])
            with pytest.raises(PermissionDeniedError):
                h.space(team.a).get("k")
        assert team.a not in team.hub.users()[reader].spaces
    finally:
        team.hub.drop_space(later, missing_ok=True)


def test_revoke_and_password_rotation(team: Team) -> None:
    reader = team.user("read", team.a, team.b)
    assert team.hub.revoke(reader, [team.b])
    assert dict(team.hub.users()[reader].spaces) == {team.a: "read"}
    with team.hub_as(reader) as h:
        assert h.space(team.a).get("k1") is not None
        with pytest.raises(PermissionDeniedError):
            h.space(team.b)
    old = team.passwords[reader]
    rotated = team.hub.passwd(reader, keep_old=True)
    assert rotated.password and rotated.password != old
    _client(team.hub, reader, old).ping()  # both work during the move
    _client(team.hub, reader, rotated.password).ping()
    team.hub.passwd(reader, "chosen-password")
    with pytest.raises(redis.AuthenticationError):
        _client(team.hub, reader, rotated.password).ping()
    _client(team.hub, reader, "chosen-password").ping()
    team.passwords[reader] = "chosen-password"
    assert team.hub.revoke(reader)
    assert reader not in team.hub.users()
    team.users.remove(reader)
    with pytest.raises(redis.AuthenticationError):
        _client(team.hub, reader, "chosen-password").ping()


def test_bad_grants_are_refused_before_anything_changes(team: Team) -> None:
    with pytest.raises(rediscache.InvalidInputError):
        team.hub.grant("default", [team.a], "read")
    with pytest.raises(rediscache.InvalidInputError):
        team.hub.grant("bad name", [team.a], "read")
    with pytest.raises(rediscache.InvalidInputError):
        team.hub.grant("u-x", [team.a], "superuser")
    with pytest.raises(rediscache.InvalidInputError):
        team.hub.grant("u-x", [], "read")
    with pytest.raises(rediscache.SpaceNotFoundError):
        team.hub.grant("u-x", ["no-such-space"], "read")
    assert "u-x" not in team.hub.users()
    assert "u-x" not in {
        u if isinstance(u, str) else u.decode() for u in team.hub.client.acl_users()
    }


def test_the_embedded_server_keeps_its_users_in_a_private_acl_file(own_dir: Any) -> None:
    import stat

    from rediscache import server

    info, _ = server.start(server.ServerConfig(data_dir=own_dir))
    with rediscache.connect(data_dir=own_dir) as owner:
        owner.create_space("s", DIM).put("k", _vectors(1)[0])
        password = owner.grant("reader", ["s"], "read").password
    assert password
    acl_file = own_dir / server.ACL_FILE
    assert stat.S_IMODE(acl_file.stat().st_mode) == 0o600
    text = acl_file.read_text()
    assert "user reader " in text and password not in text and info.password not in text
    with pytest.raises(redis.AuthenticationError):  # the owner account needs its password
        redis.Redis(host=info.host, port=info.port).ping()
    server.stop(own_dir)
    again, _ = server.start(server.ServerConfig(data_dir=own_dir))
    assert again.password == info.password
    with rediscache.connect(f"redis://reader:{password}@{again.host}:{again.port}") as h:
        assert h.space("s").get("k") is not None
        with pytest.raises(PermissionDeniedError, match="reader"):
            h.space("s").put("x", _vectors(1)[0])
        cache = h.space("s").enable_hot_cache()  # its keyspace notifications survived
        assert cache.active
        h.space("s").disable_hot_cache()
    with rediscache.connect(data_dir=own_dir) as owner:
        flags = owner.client.config_get("notify-keyspace-events")["notify-keyspace-events"]
        assert {"K", "h", "g"} <= set(flags.replace("A", "g$lshzxetd"))
    assert stat.S_IMODE(acl_file.stat().st_mode) == 0o600


def test_cli_grants_lists_rotates_and_revokes(team: Team, server_dir: Any) -> None:
    import json
    import os

    from click.testing import CliRunner

    from rediscache.cli import cli

    url = os.environ.get("REDISCACHE_TEST_URL")
    base = ["--url", url] if url else ["--data-dir", str(server_dir)]

    def run(*args: str, input: str | None = None) -> Any:
        return CliRunner().invoke(cli, [*base, *args], input=input)

    user = f"u-cli-{uuid.uuid4().hex[:6]}"
    team.users.append(user)
    res = run("acl", "grant", user, team.a, "--role", "read", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out == {"user": user, "owner": False, "spaces": {team.a: "read"}, "on_server": True}
    assert "password" not in res.stdout and "shown once" in res.stderr
    password = res.stderr.rsplit(" ", 1)[1].strip()
    assert _client(team.hub, user, password).ping()
    listed = json.loads(run("acl", "list", "--json").stdout)
    mine = {"user": user, "owner": False, "spaces": {team.a: "read"}, "on_server": True}
    assert {**mine, "dropped": []} in listed
    res = run("acl", "passwd", user, "--password-stdin", input="new-secret\n")
    assert res.exit_code == 0 and "new-secret" not in res.output
    assert _client(team.hub, user, "new-secret").ping()
    res = run("acl", "grant", user, team.b, "--role", "superuser")
    assert res.exit_code == 2  # click refuses the choice
    res = run("acl", "revoke", user)
    assert res.exit_code == 0 and "deleted" in res.stdout
    assert user not in team.hub.users()


def test_a_role_lists_its_spaces_and_server_stats_from_the_cli(team: Team) -> None:
    """`space list` and `stats` as a role: the spaces it holds a role on, and the server
    facts it may see (no module list or key count)."""
    import json
    from urllib.parse import quote

    from click.testing import CliRunner

    from rediscache.cli import cli

    reader = team.user("read", team.b)
    kw = team.hub.node_client().connection_pool.connection_kwargs
    pw = quote(team.passwords[reader], safe="")
    if kw.get("path"):
        url = f"unix://{reader}@{kw['path']}?password={pw}"
    else:
        url = f"redis://{reader}:{pw}@{kw['host']}:{kw['port']}"
    res = CliRunner().invoke(cli, ["--url", url, "space", "list", "--json"])
    assert res.exit_code == 0, res.output
    assert [s["name"] for s in json.loads(res.stdout)] == [team.b]
    res = CliRunner().invoke(cli, ["--url", url, "stats"])
    assert res.exit_code == 0, res.output
    assert team.b in res.stdout and team.a not in res.stdout and "not visible" in res.stdout


def test_an_admin_drops_its_space_without_scan(team: Team, server_dir: Any) -> None:
    admin = team.user("admin", team.a)
    keys = SpaceKeys.for_space(team.a)
    team.hub.space(team.a).stage("pending").put_many(["s1", "s2"], _vectors(2, 2))
    with team.hub_as(admin) as h:
        deleted = h.drop_space(team.a)
    assert deleted >= 22  # the live documents, the version's copy, the stage's
    client = team.hub.node_client(team.a)  # the server (cluster node) of the space
    assert not list(client.scan_iter(match=keys.all_scan_pattern(), count=1000))
    assert not [i for i in client.execute_command("FT._LIST") if i.startswith(keys.prefix.encode())]
    assert team.a not in team.hub.spaces()
    with pytest.raises(rediscache.SpaceNotFoundError):
        team.hub.space(team.a)
    listed = _cli(server_dir, "acl", "list")
    assert f"{team.a}: admin (dropped)" in listed.stdout, listed.output
    # an admin may not rewrite users: the grant goes when an owner creates the name again
    team.hub.create_space(team.a, DIM)
    assert team.a not in team.hub.users()[admin].spaces
    assert len(team.hub.space(team.b)) == 20  # the other space is whole


def test_an_admin_cannot_unlist_other_spaces_or_revive_its_dropped_one(team: Team) -> None:
    """An admin writes no shared key: it cannot take another space's name out of the
    registry, and a space it dropped stays dropped whatever keys it writes again; an
    owner creating the name afresh gets an empty space its grantees lost."""
    admin = team.user("admin", team.a)
    reader_b = team.user("read", team.b)
    raw = team.raw(admin)
    _refused(lambda: raw.srem("rc:spaces", team.b))
    _refused(lambda: raw.delete("rc:spaces"))
    keys = SpaceKeys.for_space(team.a)
    saved = team.hub.client.hgetall(keys.config)
    with team.hub_as(admin) as h:
        h.drop_space(team.a)
    _refused(lambda: raw.delete(keys.dropped))
    _refused(lambda: raw.set(keys.dropped, 1, px=1))
    raw.hset(keys.config, mapping=saved)  # the admin plants the space again
    raw.hset(keys.prefix + "g1:d:planted", mapping={"vec": _vectors(1)[0].tobytes()})
    raw.close()
    with team.hub_as(admin) as h:
        with pytest.raises(rediscache.SpaceNotFoundError):
            h.space(team.a)
        assert h.spaces() == []
    with team.hub_as(reader_b) as h:
        assert h.spaces() == [team.b]
    with pytest.raises(rediscache.SpaceNotFoundError):
        team.hub.space(team.a)
    fresh = team.hub.create_space(team.a, DIM, fields={"cat": "tag"}, exist_ok=True)
    assert len(fresh) == 0 and fresh.get("planted") is None
    assert team.a not in team.hub.users()[admin].spaces
    with team.hub_as(admin) as h, pytest.raises(PermissionDeniedError):
        h.space(team.a).get("k1")
    assert team.a in team.hub.spaces()


def test_roles_cannot_track_or_select_their_way_to_other_spaces(team: Team) -> None:
    """CLIENT TRACKING's broadcast mode reports writes under any prefix: no role may turn
    it on (its hot cache follows its own spaces' keyspace notifications), nor SELECT
    another database, where the same key names may hold another hub's spaces."""
    writer = team.user("write", team.a)
    raw = _client(team.hub, writer, team.passwords[writer])  # a connection to one server
    b = SpaceKeys.for_space(team.b)
    _refused(lambda: raw.execute_command("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", b.prefix))
    _refused(lambda: raw.execute_command("SELECT", 1))
    conn = raw.connection_pool.make_connection()

    def psubscribe(pattern: str) -> Any:
        conn.send_command("PSUBSCRIBE", pattern)
        return conn.read_response()

    _refused(lambda: psubscribe(b.keyspace_channels(0)))
    _refused(lambda: psubscribe("__keyspace@0__:*"))
    assert psubscribe(SpaceKeys.for_space(team.a).keyspace_channels(0))[0] == b"psubscribe"
    conn.disconnect()
    raw.close()


def test_a_roles_hot_cache_sees_other_writers_and_stops_when_revoked(team: Team) -> None:
    reader = team.user("read", team.a)
    h = team.hub_as(reader)
    a = h.space(team.a)
    cache = a.enable_hot_cache()
    first = a.get("k1")
    assert a.get("k1") is not None and cache.stats().hits == 1
    new = _vectors(1, 11)[0]
    team.hub.space(team.a).put("k1", new)  # another client's write
    deadline = time.monotonic() + 10
    while cache.stats().invalidations == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    np.testing.assert_array_equal(a.get("k1"), new)
    assert not np.array_equal(first, new)
    team.hub.revoke(reader, [team.a])
    while cache.active and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not cache.active  # the server closed its subscription: nothing cached is served
    with pytest.raises(PermissionDeniedError):
        a.get("k1")
    a.disable_hot_cache()
    h.close()


# --------------------------------------------------------------------------- messages


def _short_and_clean(message: str) -> None:
    assert len(message) < 300, message
    for noise in ("pipeline", "Command #", "NOPERM", "rc:{", "evalsha|"):
        assert noise not in message, message


def test_a_refused_call_names_its_operation_its_space_and_the_role_it_needs(team: Team) -> None:
    reader = team.user("read", team.a)
    grant = f"an owner can grant it: rediscache acl grant {reader} {team.a} --role write"
    compute = lambda keys: _vectors(len(keys), 7)  # noqa: E731
    with team.hub_as(reader) as h:
        a = h.space(team.a)
        calls = {
            "put": lambda: a.put("new", _vectors(1)[0]),
            "delete": lambda: a.delete("k1"),
            "average": lambda: a.average(["k1", "k2"], into="avg"),
            "update_mean": lambda: a.update_mean("k1", _vectors(1)[0]),
            "get_or_compute": lambda: a.get_or_compute(["fresh"], compute),
        }
        for op, call in calls.items():
            with pytest.raises(PermissionDeniedError) as err:
                call()
            message = str(err.value)
            assert message.startswith(f"user {reader!r} may not {op} in space {team.a!r}")
            assert message.endswith(grant), message
            assert err.value.needs == "write" and err.value.space == team.a
            _short_and_clean(message)
        with pytest.raises(PermissionDeniedError) as err:
            h.space(team.b)
        assert str(err.value).startswith(f"user {reader!r} may not open space {team.b!r}")
        assert str(err.value).endswith(f"acl grant {reader} {team.b} --role read")
        _short_and_clean(str(err.value))


def test_an_asyncio_writer_writes_after_a_snapshot(team: Team) -> None:
    writer = team.user("write", team.a)
    team.hub.space(team.a).snapshot("v2")

    async def main() -> None:
        client = _client(team.hub, writer, team.passwords[writer], redis.asyncio)
        ah = await rediscache.connect_async(client=client)
        try:
            s = await ah.space(team.a)
            assert await s.delete("k1")
            assert await s.get("k1") is None
            assert await (await s.at("v2")).get("k1") is not None
        finally:
            await ah.close()
            await client.aclose()
            await client.connection_pool.disconnect()

    asyncio.run(main())


def test_owner_only_calls_say_an_owner_is_needed_not_a_role(team: Team, server_dir: Any) -> None:
    reader = team.user("read", team.a)
    with team.hub_as(reader) as h:
        calls = {
            "create space 'x-new'": lambda: h.create_space("x-new", DIM),
            "list users": h.users,
            f"grant roles to {reader!r}": lambda: h.grant(reader, [team.a], "write"),
            "revoke roles of 'someone'": lambda: h.revoke("someone"),
        }
        for doing, call in calls.items():
            with pytest.raises(PermissionDeniedError) as err:
                call()
            message = str(err.value)
            assert message.startswith(f"user {reader!r} may not {doing}: only an owner may")
            assert "acl grant" not in message and "another owner" not in message, message
            _short_and_clean(message)
    res = _cli(server_dir, "acl", "list", user=(reader, team.passwords[reader]), hub=team.hub)
    assert res.exit_code == 1 and "only an owner may" in res.stderr, res.output
    res = _cli(server_dir, "acl", "grant", reader, team.a, "--role", "write",
               user=(reader, team.passwords[reader]), hub=team.hub)  # fmt: skip
    assert res.exit_code == 1 and "only an owner may" in res.stderr, res.output
    assert "another owner" not in res.stderr


def _cli(
    server_dir: Any, *args: str, user: tuple[str, str] | None = None, hub: Hub | None = None
) -> Any:
    """Run the CLI on the test server, as the owner or as ``user`` (name, password)."""
    import os

    from click.testing import CliRunner

    from rediscache.cli import cli

    url = os.environ.get("REDISCACHE_TEST_URL")
    if user is not None:
        assert hub is not None
        kw = hub.node_client().connection_pool.connection_kwargs
        if kw.get("path"):
            url = f"unix://{user[0]}:{user[1]}@{kw['path']}"
        else:
            url = f"redis://{user[0]}:{user[1]}@{kw['host']}:{kw['port']}"
    base = ["--url", url] if url else ["--data-dir", str(server_dir)]
    return CliRunner().invoke(cli, [*base, *args])


def test_cli_revoking_nothing_fails_and_says_why(team: Team, server_dir: Any) -> None:
    nobody = f"u-nobody-{uuid.uuid4().hex[:6]}"
    res = _cli(server_dir, "acl", "revoke", nobody)
    assert res.exit_code == 1, res.output
    assert f"no user {nobody!r}" in res.stderr and "Traceback" not in res.output
    reader = team.user("read", team.a)
    res = _cli(server_dir, "acl", "revoke", reader, team.b)
    assert res.exit_code == 1, res.output
    assert f"no role on {team.b!r}" in res.stderr and f"{team.a}: read" in res.stderr
    assert dict(team.hub.users()[reader].spaces) == {team.a: "read"}
    assert _cli(server_dir, "acl", "revoke", reader, team.a).exit_code == 0


def test_cli_errors_use_options_not_python_parameters(team: Team, server_dir: Any) -> None:
    res = _cli(server_dir, "space", "create", team.a, "--dim", str(DIM), "--field", "cat:tag")
    assert res.exit_code == 1, res.output
    assert "--exist-ok" in res.stderr and "exist_ok" not in res.stderr
    res = _cli(server_dir, "space", "create", team.a, "--dim", str(DIM + 1))
    assert res.exit_code == 1 and "another schema" in res.stderr, res.output
    for args in (["acl", "grant", "u-x", "--role", "read"],
                 ["acl", "grant", "u-x", team.a, "--role", "owner"]):  # fmt: skip
        res = _cli(server_dir, *args)
        assert res.exit_code == 2, res.output
        assert "SPACE" in res.stderr and "None" not in res.stderr and "spaces=" not in res.stderr
    assert "u-x" not in team.hub.users()


def test_cli_space_list_shows_a_role_its_spaces_and_names_refused_commands(
    team: Team, server_dir: Any
) -> None:
    reader = team.user("read", team.a)
    res = _cli(server_dir, "space", "list", user=(reader, team.passwords[reader]), hub=team.hub)
    assert res.exit_code == 0, res.output
    assert team.b not in res.stdout and f"{team.a}  20 x" in res.stdout  # its spaces only
    res = _cli(server_dir, "average", team.b, "k1", user=(reader, team.passwords[reader]),
               hub=team.hub)  # fmt: skip
    assert res.exit_code == 1
    assert f"may not average in space {team.b!r}" in res.stderr, res.output


def test_revoked_or_rotated_credentials_are_an_authentication_error(team: Team) -> None:
    from rediscache import AuthenticationFailedError

    gone, rotated = team.user("read", team.a), team.user("write", team.a)
    hubs = {user: team.hub_as(user) for user in (gone, rotated)}
    for h in hubs.values():
        assert h.space(team.a).get("k1") is not None
    space = hubs[gone].space(team.a)
    team.hub.revoke(gone)
    team.users.remove(gone)
    team.hub.passwd(rotated, "another-password")
    hubs[rotated].node_client(team.a).connection_pool.disconnect()
    for user, h in hubs.items():
        calls = (lambda h=h: h.space(team.a).get("k1"), lambda h=h: h.space(team.a),
                 lambda u=user: rediscache.connect(
                     client=_client(team.hub, u, team.passwords[u])))  # fmt: skip
        for call in calls:
            with pytest.raises(AuthenticationFailedError) as err:
                call()
            assert "refused the credentials" in str(err.value) and repr(user) in str(err.value)
            assert "is the server running" not in str(err.value)
            assert isinstance(err.value, rediscache.ConnectionFailedError)
        h.close()
    with pytest.raises(AuthenticationFailedError):
        space.put("x", _vectors(1)[0])

    async def main() -> None:
        client = _client(team.hub, gone, team.passwords[gone], redis.asyncio)
        try:
            with pytest.raises(AuthenticationFailedError):
                await rediscache.connect_async(client=client)
        finally:
            await client.aclose()
            await client.connection_pool.disconnect()

    asyncio.run(main())


def test_roles_list_documents_through_indexes_diff_export_and_copy_without_copy(
    team: Team, tmp_path: Any
) -> None:
    """What lists a space's documents (iter_batches, diff, export, purge) works for roles
    without SCAN; a role's copies go through copy_docs.lua, since COPY's DB option would
    write into another database."""
    reader, writer, admin = (team.user(r, team.a) for r in ("read", "write", "admin"))
    with team.hub_as(reader) as h:
        a = h.space(team.a)
        keys = sorted(k for batch, _, _ in a.iter_batches(batch_size=7) for k in batch)
        assert keys == sorted(f"k{i}" for i in range(20))
        d = a.diff("v1")
        assert d.changed == ["k0"] and not d.added and not d.removed
        out = tmp_path / "a.jsonl"
        rediscache.export_file(a, out)
        assert out.exists()
    with team.hub_as(admin) as h:
        stage = h.space(team.a).stage("next", empty=False)
        stage.put("new", _vectors(1, 12)[0])
        assert stage.diff().added == ["new"]
        stage.discard()
    raw = team.raw(writer)
    keys = SpaceKeys.for_space(team.a)
    _refused(lambda: raw.copy(keys.config, keys.config, destination_db=1, replace=True))
    _refused(lambda: raw.move(keys.config, 1))
    raw.close()


def test_an_import_refused_to_a_reader_names_the_role_it_needs(team: Team, tmp_path: Any) -> None:
    """A large batch goes through a MULTI whose HDEL/HSET the server refuses, and an
    import with vectors_only through write.lua: either way the import says who may not do
    what and which role would, as every other refused call does."""
    import json

    from rediscache import transfer

    reader = team.user("read", team.a)
    path = tmp_path / "rows.jsonl"
    with path.open("w") as fh:
        for i in range(40):
            fh.write(json.dumps({"id": f"k{i}", "vector": [0.5 + i] * DIM, "cat": "x"}) + "\n")
    with team.hub_as(reader) as h:
        for options in ({}, {"vectors_only": True}):
            with pytest.raises(PermissionDeniedError) as err:
                transfer.import_file(h.space(team.a), path, **options)
            text = str(err.value)
            assert f"user {reader!r} may not" in text and "needs role write" in text, text
            assert "stopped after 0 rows were written" in text and "User " not in text
            assert err.value.needs == "write" and err.value.user == reader
    assert len(team.hub.space(team.a)) == 20  # nothing written


def test_roles_on_a_partitioned_space_reach_its_partitions_and_nothing_else(
    team: Team,
) -> None:
    name = f"acl-p-{uuid.uuid4().hex[:6]}"
    space = team.hub.create_space(name, DIM, partitions=3)
    try:
        space.put_many([f"k{i}" for i in range(30)], _vectors(30))
        space.snapshot("v1")
        reader, writer, admin = (team.user(r, name) for r in ("read", "write", "admin"))
        with team.hub_as(reader) as h:
            p = h.space(name)
            assert isinstance(p, rediscache.PartitionedSpace)
            assert len(p.get_many([f"k{i}" for i in range(30)])) == 30
            assert len(p.search(_vectors(1, 5)[0], k=5)) == 5 and p.count() == 30
            assert p.at("v1").count() == 30
            with pytest.raises(PermissionDeniedError):
                p.put("new", _vectors(1)[0])
            with pytest.raises(PermissionDeniedError):
                p.rollback("v1")
            with pytest.raises(PermissionDeniedError):
                h.space(team.a)
        with team.hub_as(writer) as h:
            p = h.space(name)
            assert p.put_many(["w1", "w2", "w3"], _vectors(3, 2)) == 3
            with pytest.raises(PermissionDeniedError):
                p.rollback("v1")
        with team.hub_as(admin) as h:
            h.space(name).rollback("v1")
            assert h.space(name).count() == 30
        raw = team.raw(reader)  # a partition of another space is out of reach
        _refused(lambda: raw.hget(SpaceKeys.for_space(f"{team.a}#0").config, "dim"))
    finally:
        team.hub.drop_space(name, missing_ok=True)


def test_a_revoke_sent_again_still_says_it_revoked(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    """revoke(user) whose transaction (ACL DELUSER, the record's HDEL) is sent a second
    time, as after a lost reply, returns True: the user was there (before, the second
    send's replies said 0 and revoke answered that nothing was revoked)."""
    reader = team.user("read", team.a)
    send_twice(monkeypatch, lambda c: c[:2] == ("ACL", "DELUSER"))
    assert team.hub.revoke(reader)
    monkeypatch.undo()
    team.users.remove(reader)
    assert reader not in team.hub.users()
    assert not team.hub.revoke(reader)  # gone: nothing left to revoke


def _unindexed_version(team: Team) -> tuple[str, SpaceKeys, Any, Any]:
    """An admin of space ``a`` whose first version's generation has lost its index (its
    documents stay: a writer's copy made an instant before has none yet): the admin, the
    space's keys, a client of its node and that generation's keys."""
    from rediscache import generations

    admin = team.user("admin", team.a)
    keys = SpaceKeys.for_space(team.a)
    client = team.hub.node_client(team.a)
    versions = generations.parse_versions(client.hgetall(keys.versions), team.a)
    gen = keys.gen(versions[min(versions)][1])
    client.execute_command("FT.DROPINDEX", gen.index)
    return admin, keys, client, gen


def test_an_admin_drop_sent_again_still_deletes_unindexed_versions(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An admin's drop whose transaction (the marks, the versions read, the config's DEL)
    is sent a second time, as after a lost reply, still deletes the documents of a version
    whose generation has no index (a writer's copy made an instant before): the second
    send read the versions already deleted, and its collection missed them."""
    admin, keys, client, gen = _unindexed_version(team)
    assert list(client.scan_iter(match=gen.doc_prefix + "*", count=1000))
    send_twice(monkeypatch, lambda c: c[:2] == ("DEL", keys.versions))
    with team.hub_as(admin) as h:
        h.drop_space(team.a)
    monkeypatch.undo()
    assert not list(client.scan_iter(match=keys.all_scan_pattern(), count=1000))
    assert len(team.hub.space(team.b)) == 20  # the other space is whole


@pytest.mark.parametrize("copier", ["put", "stage"])
def test_an_admin_drop_during_a_copy_leaves_no_document(
    team: Team, monkeypatch: pytest.MonkeyPatch, copier: str
) -> None:
    """An admin drops the space while a writer copies it (the first write after a
    snapshot; a stage copied from live): the copy's generation has no index and no version
    yet. The drop finds it in the config (``fork_gen``) and deletes it, the copy's later
    batches copy nothing, and the writer is told the space was dropped (before, 2,500
    documents or the config hash, made again by the count of the batches after the drop,
    were left, and a stage said its copy had been taken over by a writer)."""
    from rediscache import scripts, wire

    admin = team.user("admin", team.a)
    keys = SpaceKeys.for_space(team.a)
    writer = team.hub.space(team.a)
    n = 2500  # three batches of the owner's copy
    writer.put_many([f"m{i}" for i in range(n)], _vectors(n, 7))
    writer.snapshot("v2")
    sha = scripts.sha("copy_docs")
    sync_once = wire.Wire.once
    dropped: list[int] = []

    def once(self: Any, command: Any, *rest: Any) -> Any:
        reply = sync_once(self, command, *rest)
        if len(command) > 1 and command[1] == sha and not dropped:
            dropped.append(1)  # after the copy's first batch
            with team.hub_as(admin) as h:
                h.drop_space(team.a)
        return reply

    monkeypatch.setattr(wire.Wire, "once", once)
    with pytest.raises(rediscache.SpaceNotFoundError, match="dropped"):
        if copier == "put":
            writer.put("k1", _vectors(1, 8)[0])
        else:
            writer.stage("release", empty=False)
    monkeypatch.undo()
    assert dropped
    client = team.hub.node_client(team.a)
    assert not list(client.scan_iter(match=keys.all_scan_pattern(), count=1000))
    assert not [i for i in client.execute_command("FT._LIST") if i.startswith(keys.prefix.encode())]
    assert len(team.hub.space(team.b)) == 20  # the other space is whole


def test_an_admin_drop_cut_after_its_first_step_is_finished_by_the_next(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An admin's drop cut (Ctrl-C, kill -9) right after the step that deletes the config
    and versions, then run again: the second finds the generation of a version that had no
    index (a writer's copy made an instant before) in the garbage set the first step
    listed, and deletes it (before, the versions were gone and its documents were left)."""
    admin, keys, client, gen = _unindexed_version(team)
    execute = redis.client.Pipeline.execute

    def cut(self: Any, *args: Any, **kwargs: Any) -> Any:
        stack = [c[0] for c in self.command_stack]
        replies = execute(self, *args, **kwargs)
        if any(c[:2] == ("DEL", keys.versions) for c in stack):
            raise KeyboardInterrupt
        return replies

    monkeypatch.setattr(redis.client.Pipeline, "execute", cut)
    with team.hub_as(admin) as h, pytest.raises(KeyboardInterrupt):
        h.drop_space(team.a)
    monkeypatch.undo()
    assert list(client.scan_iter(match=gen.doc_prefix + "*", count=1000))
    with team.hub_as(admin) as h:
        h.drop_space(team.a)
    assert not list(client.scan_iter(match=keys.all_scan_pattern(), count=1000))
    assert len(team.hub.space(team.b)) == 20  # the other space is whole
