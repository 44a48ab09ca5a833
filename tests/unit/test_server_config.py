"""Pure parts of the embedded server: config text, log classification, URL redaction."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from rediscache import server
from rediscache.errors import (
    EmbeddedServerError,
    InvalidInputError,
    PortInUseError,
    SearchModuleMissingError,
)
from rediscache.guard import redact


def _bins() -> server.Binaries:
    return server.Binaries(Path("/x/redis-server"), Path("/x/redisearch.so"), (8, 2, 3), "test")


def test_conf_is_private_and_persistent(tmp_path: Path) -> None:
    cfg = server.ServerConfig(data_dir=tmp_path, appendfsync="always", maxmemory="1gb")
    text = server._conf_text(cfg, _bins(), 6400, str(tmp_path / "r.sock"))
    lines = text.splitlines()
    assert "bind 127.0.0.1" in lines and "port 6400" in lines and "protected-mode yes" in lines
    assert "appendonly yes" in lines and "appendfsync always" in lines
    assert f'aclfile "{tmp_path.resolve() / server.ACL_FILE}"' in lines
    assert "unixsocketperm 700" in lines and not any(x.startswith("requirepass") for x in lines)
    assert "maxmemory 1gb" in lines and 'loadmodule "/x/redisearch.so"' in lines
    assert not any(x.startswith("notify-keyspace-events") for x in lines)
    # with roles in its ACL file, their hot caches need keyspace notifications
    with_roles = server._conf_text(cfg, _bins(), 6400, None, roles=True).splitlines()
    assert "notify-keyspace-events Khgxe" in with_roles


def test_the_acl_file_keeps_the_owner_password_current_and_the_other_users() -> None:
    saved = "user default on nopass ~* &* +@all\nuser bob on #ab ~rc:{a}:* -@all +get\n"
    text = server._acl_text(saved, "s3cret")
    digest = hashlib.sha256(b"s3cret").hexdigest()
    assert text.splitlines() == [
        f"user default on #{digest} ~* &* +@all",
        "user bob on #ab ~rc:{a}:* -@all +get",
    ]
    assert "s3cret" not in text and "nopass" not in text


def test_startup_failures_are_classified(tmp_path: Path) -> None:
    cfg = server.ServerConfig(data_dir=tmp_path)
    busy = server._startup_failure(
        cfg,
        _bins(),
        7,
        [
            "1:M 24 Nov 2026 10:00:00.000 # Warning: "
            "Could not create server TCP listening "
            "socket *:7: bind: Address already in use"
        ],
    )
    assert isinstance(busy, PortInUseError)
    module = server._startup_failure(
        cfg, _bins(), 7, ["1:M 24 Nov 2026 10:00:00.000 # Module /x/redisearch.so failed to load"]
    )
    assert isinstance(module, SearchModuleMissingError)
    assert "Module /x/redisearch.so failed to load" in str(module)
    other = server._startup_failure(cfg, _bins(), 7, ["1:M 24 Nov 2026 10:00:00.000 # boom"])
    assert type(other) is EmbeddedServerError and "boom" in str(other)


def test_passwords_are_redacted() -> None:
    assert redact("redis://:secret@h:1/0") == "redis://:***@h:1/0"
    assert redact("redis://u:secret@h/0") == "redis://u:***@h/0"
    assert redact("redis://h:1/0") == "redis://h:1/0"


def test_passwords_holding_at_signs_or_in_queries_are_redacted() -> None:
    assert redact("redis://:p@ss@h:1/0") == "redis://:***@h:1/0"
    assert redact("rediss://user:a%2Fb@host:6380") == "rediss://user:***@host:6380"
    assert redact("redis://h:1/0?password=s3cret&x=1") == "redis://h:1/0?password=***&x=1"
    assert "s3cret" not in redact("error connecting to unix:///tmp/r.sock?password=s3cret")


def test_stop_and_status_take_a_str_path(tmp_path: Path) -> None:
    """A data dir given as a str works like a Path (it raised AttributeError); anything
    else is an InvalidInputError."""
    missing = tmp_path / "never-started"
    assert server.stop(str(missing)) is False
    assert server.status(str(missing)).running is False
    with pytest.raises(InvalidInputError, match="data_dir must be a path"):
        server.stop(42)  # type: ignore[arg-type]


def test_a_server_too_busy_to_answer_in_time_is_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loading server on a busy machine may not answer a probe within its 5 s socket
    timeout: start() keeps waiting (until start_timeout), it does not raise redis-py's
    TimeoutError (a CI child connecting to a slow-loading data dir died of it)."""
    import os

    import redis

    answers: list[object] = [redis.TimeoutError("Timeout reading from socket")] * 2 + [True]

    class Client:
        def __enter__(self) -> Client:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def ping(self) -> bool:
            got = answers.pop(0)
            if isinstance(got, Exception):
                raise got
            return True

    class Info:
        def client(self, **kwargs: object) -> Client:
            return Client()

    monkeypatch.setattr(server, "search_version", lambda client: "2.10.5")
    config = server.ServerConfig(data_dir=tmp_path, start_timeout=60)
    got = server._wait_ready(os.getpid(), Info(), config, None, 0)  # type: ignore[arg-type]
    assert got == "2.10.5" and answers == []
