"""``rediss://`` end to end: every path of the client over TLS (sync, asyncio, the wire's
own reads, the hot cache's invalidation connection, ACL users), through
:class:`rediscache.tlsproxy.TlsProxy` in front of the session's server (its redis-server is
built without TLS), with certificates of a throwaway CA made per test session (trustme)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

import rediscache
from rediscache import ConnectionFailedError, Hub
from rediscache.tlsproxy import TlsEndpoint, TlsProxy

trustme = pytest.importorskip("trustme")

DIM = 8


@dataclass
class Tls:
    """A TLS endpoint of the session's server: its URL (with the owner's password) and
    the files a client needs."""

    url: str
    ca: Path
    client_cert: Path
    client_key: Path
    proxy: TlsProxy

    def kwargs(self, **more: Any) -> dict[str, Any]:
        return {"ssl_ca_certs": str(self.ca), **more}


def _target(hub: Hub) -> tuple[str, str | None, str | None]:
    if hub.node_client() is not hub.client:
        pytest.skip(
            "the TLS endpoint fronts one server (the embedded one); a cluster's nodes "
            "announce their own plain addresses, so its clients need TLS on every node "
            "(docs/scale.md)"
        )
    kw = hub.client.connection_pool.connection_kwargs
    target = kw["path"] if kw.get("path") else f"{kw['host']}:{kw['port']}"
    return target, kw.get("username"), kw.get("password")


def _credentials(user: str | None, password: str | None) -> str:
    if password is None:
        return ""
    return f"{user or ''}:{password}@"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("rediscache-test-client")
    files = {
        "ca": d / "ca.pem",
        "cert": d / "server.pem",
        "key": d / "server.key",
        "client_cert": d / "client.pem",
        "client_key": d / "client.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    client.cert_chain_pems[0].write_to_path(str(files["client_cert"]))
    client.private_key_pem.write_to_path(str(files["client_key"]))
    return files


@pytest.fixture(scope="module")
def tls(hub: Hub, certs: dict[str, Path]) -> Iterator[Tls]:
    target, user, password = _target(hub)
    proxy = TlsProxy(TlsEndpoint(certs["cert"], certs["key"], target))
    port = proxy.start()
    url = f"rediss://{_credentials(user, password)}127.0.0.1:{port}/0"
    try:
        yield Tls(url, certs["ca"], certs["client_cert"], certs["client_key"], proxy)
    finally:
        proxy.close()


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def test_every_call_works_over_tls(tls: Tls, hub: Hub, space_name: str) -> None:
    keys = [f"k{i}" for i in range(300)]
    vecs = _vectors(300)
    with rediscache.connect(tls.url, **tls.kwargs()) as h:
        assert h.client.connection_pool.connection_class is redis.SSLConnection
        space = h.create_space(space_name, DIM, fields={"cat": "tag"})
        space.put_many(keys, vecs, metadata=[{"cat": "a" if i % 2 else "b"} for i in range(300)])
        np.testing.assert_array_equal(space.get("k7"), vecs[7])
        np.testing.assert_array_equal(space.get_many(keys), vecs)  # the wire's own reads
        hits = space.search(vecs[3], k=5, filter={"cat": "a" if 3 % 2 else "b"})
        assert hits[0].key == "k3"
        space.snapshot("v1")
        space.put("k3", vecs[4])
        space.rollback("v1")
        np.testing.assert_array_equal(space.get("k3"), vecs[3])
    # the same data read without TLS
    np.testing.assert_array_equal(hub.space(space_name).get_many(keys), vecs)


def test_asyncio_over_tls(tls: Tls, hub: Hub, space_name: str) -> None:
    hub.create_space(space_name, DIM).put_many(["a", "b"], _vectors(2))

    async def main() -> None:
        h = await rediscache.connect_async(tls.url, **tls.kwargs())
        try:
            s = await h.space(space_name)
            await s.put("c", _vectors(1, 3)[0])
            got = await s.get_many(["a", "b", "c"])
            np.testing.assert_array_equal(got[:2], _vectors(2))
            assert (await s.search(_vectors(1, 3)[0], k=1))[0].key == "c"
        finally:
            await h.close()

    asyncio.run(main())


def test_the_hot_cache_listens_over_tls(tls: Tls, hub: Hub, space_name: str) -> None:
    """Its invalidation connection is a TLS one too: another client's writes reach it, and
    a hit never returns a value whose invalidation had arrived."""
    hub.create_space(space_name, DIM).put_many([f"k{i}" for i in range(50)], _vectors(50))
    with rediscache.connect(tls.url, **tls.kwargs()) as h:
        space = h.space(space_name)
        cache = space.enable_hot_cache()
        assert isinstance(cache._conn, redis.SSLConnection)
        for round_ in range(20):
            assert space.get_many([f"k{i}" for i in range(50)]).shape == (50, DIM)
            new = _vectors(50, 100 + round_)
            seen = cache.stats().invalidations
            hub.space(space_name).put_many([f"k{i}" for i in range(50)], new)
            deadline = time.monotonic() + 10
            while cache.stats().invalidations < seen + 50 and time.monotonic() < deadline:
                time.sleep(0.001)
            assert cache.stats().invalidations >= seen + 50
            np.testing.assert_array_equal(space.get_many([f"k{i}" for i in range(50)]), new)
        assert cache.stats().hits > 0 and cache.active
        space.disable_hot_cache()


def test_an_acl_user_over_tls(tls: Tls, hub: Hub, space_name: str) -> None:
    """A role's connection over TLS, its hot cache on its keyspace notifications."""
    hub.create_space(space_name, DIM).put_many(["a"], _vectors(1))
    user = f"u-tls-{uuid.uuid4().hex[:6]}"
    password = hub.grant(user, [space_name], "read").password
    try:
        url = f"rediss://{user}:{password}@127.0.0.1:{tls.proxy.port}/0"
        with rediscache.connect(url, **tls.kwargs()) as h:
            space = h.space(space_name)
            cache = space.enable_hot_cache()
            np.testing.assert_array_equal(space.get("a"), _vectors(1)[0])
            hub.space(space_name).put("a", _vectors(1, 9)[0])
            deadline = time.monotonic() + 10
            while cache.stats().invalidations == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            np.testing.assert_array_equal(space.get("a"), _vectors(1, 9)[0])
            with pytest.raises(rediscache.PermissionDeniedError):
                space.put("b", _vectors(1)[0])
            space.disable_hot_cache()
    finally:
        hub.revoke(user)


def test_an_unknown_certificate_authority_is_refused_clearly(tls: Tls, tmp_path: Path) -> None:
    other = trustme.CA()
    ca = tmp_path / "other-ca.pem"
    other.cert_pem.write_to_path(str(ca))
    with pytest.raises(ConnectionFailedError, match=r"(?i)certificate") as err:
        rediscache.connect(tls.url, ssl_ca_certs=str(ca))
    assert "ssl_ca_certs" in str(err.value)
    # the CLI takes the CA in the URL's query
    from click.testing import CliRunner

    from rediscache.cli import cli

    res = CliRunner().invoke(cli, ["--url", f"{tls.url}?ssl_ca_certs={tls.ca}", "space", "list"])
    assert res.exit_code == 0, res.output


def test_client_certificates_when_the_endpoint_requires_them(
    tls: Tls, hub: Hub, certs: dict[str, Path]
) -> None:
    target, user, password = _target(hub)
    endpoint = TlsEndpoint(certs["cert"], certs["key"], target, client_ca=certs["ca"])
    with TlsProxy(endpoint) as proxy:
        url = f"rediss://{_credentials(user, password)}127.0.0.1:{proxy.port}/0"
        with pytest.raises(ConnectionFailedError):
            rediscache.connect(url, **tls.kwargs())
        mine = tls.kwargs(
            ssl_certfile=str(certs["client_cert"]), ssl_keyfile=str(certs["client_key"])
        )
        with rediscache.connect(url, **mine) as h:
            assert h.spaces() is not None


def test_the_embedded_server_serves_tls_and_keeps_serving_it(
    own_dir: Path, certs: dict[str, Path], kill_server: Callable[[int], None]
) -> None:
    """`server start --tls-cert/--tls-key`: rediss:// beside redis://; the endpoint comes
    back with the server after a kill -9 of either, and goes with `server stop`."""
    import json

    from click.testing import CliRunner

    from rediscache import server
    from rediscache.cli import cli

    def cli_run(*args: str) -> Any:
        return CliRunner().invoke(cli, ["--data-dir", str(own_dir), *args])

    res = cli_run("server", "start", "--tls-cert", str(certs["cert"]),
                  "--tls-key", str(certs["key"]))  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "TLS: rediss://127.0.0.1:" in res.stdout
    info = server.status(own_dir).info
    assert info is not None and info.tls_url is not None and info.tls_pid is not None
    status = json.loads(cli_run("server", "status", "--json").stdout)
    assert status["tls_url"].startswith("rediss://:***@") and info.password not in str(status)

    def works() -> None:
        current = server.status(own_dir).info
        assert current is not None and current.tls_url is not None
        with rediscache.connect(current.tls_url, ssl_ca_certs=str(certs["ca"])) as h:
            space = h.create_space("tls", DIM, exist_ok=True)
            space.put("a", _vectors(1)[0])
            assert space.search(_vectors(1)[0], k=1)[0].key == "a"

    works()
    kill_server(info.tls_pid)  # the endpoint dies: status says so, the next start brings it back
    status = json.loads(cli_run("server", "status", "--json").stdout)
    assert status["tls_running"] is False
    assert "NOT RUNNING" in cli_run("server", "status").stdout
    again, started = server.start(server.ServerConfig(data_dir=own_dir))
    assert not started and again.tls_pid != info.tls_pid and again.tls_port == info.tls_port
    works()
    kill_server(again.pid)  # the server dies: the endpoint relays to the next one
    third, started = server.start(server.ServerConfig(data_dir=own_dir))
    assert started and third.tls_pid == again.tls_pid
    works()
    # new files (here: client certificates required) keep the port clients know
    rotated, _ = server.start(
        server.ServerConfig(data_dir=own_dir, tls_cert=certs["cert"], tls_key=certs["key"],
                            tls_client_ca=certs["ca"])
    )  # fmt: skip
    assert rotated.tls_port == third.tls_port and rotated.tls_pid != third.tls_pid
    with pytest.raises(ConnectionFailedError, match="client certificates"):
        rediscache.connect(rotated.tls_url, ssl_ca_certs=str(certs["ca"]))
    third = rotated
    res = cli_run("server", "start", "--no-tls")  # and off again
    assert res.exit_code == 0 and "TLS:" not in res.stdout, res.output
    off = server.status(own_dir).info
    assert off is not None and off.tls_url is None and not server._is_tls_endpoint(third.tls_pid)
    assert server.start(server.ServerConfig(data_dir=own_dir))[0].tls_url is None
    assert server.stop(own_dir)
    assert not server._is_tls_endpoint(third.tls_pid)
    with pytest.raises(ConnectionFailedError):
        rediscache.connect(third.tls_url, ssl_ca_certs=str(certs["ca"]))


def test_bad_tls_settings_are_refused_before_anything_starts(
    own_dir: Path, certs: dict[str, Path]
) -> None:
    from rediscache import InvalidInputError, server

    with pytest.raises(InvalidInputError, match="tls_key"):
        server.ServerConfig(data_dir=own_dir, tls_cert=certs["cert"])
    with pytest.raises(InvalidInputError, match="cannot be loaded"):
        server.start(server.ServerConfig(data_dir=own_dir, tls_cert=certs["key"],
                                         tls_key=certs["cert"]))  # fmt: skip
    assert not server.status(own_dir).running  # nothing started
    from click.testing import CliRunner

    from rediscache.cli import cli

    res = CliRunner().invoke(
        cli, ["--data-dir", str(own_dir), "server", "start", "--tls-cert", str(certs["cert"])]
    )
    assert res.exit_code == 2 and "--tls-key" in res.output
    assert not server.status(own_dir).running


def test_a_lost_listener_warns_once_per_loss_and_comes_back(
    hub: Hub, certs: dict[str, Path], space_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The endpoint goes away (as a server does in a restart): the hot cache stops serving,
    retries with one warning, not one per attempt, and listens again when it is back."""
    import logging

    hub.create_space(space_name, DIM).put("a", _vectors(1)[0])
    target, user, password = _target(hub)
    first = TlsProxy(TlsEndpoint(certs["cert"], certs["key"], target))
    port = first.start()
    url = f"rediss://{_credentials(user, password)}127.0.0.1:{port}/0"
    caplog.set_level(logging.DEBUG, logger="rediscache.hotcache")
    with rediscache.connect(url, ssl_ca_certs=str(certs["ca"])) as h:
        space = h.space(space_name)
        cache = space.enable_hot_cache()
        for _ in range(2):  # two losses
            first.close()
            deadline = time.monotonic() + 10
            while cache.active and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not cache.active
            time.sleep(1.5)  # several retries meanwhile
            first = TlsProxy(TlsEndpoint(certs["cert"], certs["key"], target, port=port))
            first.start()
            while not cache.active and time.monotonic() < deadline + 10:
                time.sleep(0.01)
            assert cache.active
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2, [r.getMessage() for r in warnings]
        assert "rc:{" in warnings[0].getMessage() and "}::" not in warnings[0].getMessage()
        assert any(r.levelno == logging.DEBUG for r in caplog.records)
        np.testing.assert_array_equal(space.get("a"), _vectors(1)[0])
        space.disable_hot_cache()
    first.close()
