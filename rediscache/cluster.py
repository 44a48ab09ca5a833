"""A local Redis Cluster for development and tests: N primaries (each with R replicas), every
node an embedded server (:mod:`rediscache.server`) of the same wheels with the search module
loaded, on 127.0.0.1 ports chosen at start.

``start(data_dir, primaries=3, replicas=1)`` starts the nodes in ``data_dir/node-<i>``
(primaries first), joins them (``CLUSTER MEET``), gives each primary an equal range of the
16,384 slots (``CLUSTER ADDSLOTSRANGE``), attaches the replicas (``CLUSTER REPLICATE``) and
waits until every node reports ``cluster_state:ok``. Started again on the same directory it
reuses the running nodes, or restarts them: each node keeps its part of the cluster in its
own ``nodes.conf`` and its data in its AOF. ``stop(data_dir)`` shuts every node down
cleanly. The command line: ``rediscache server start --cluster 3 --replicas 1``.

Every node has the same password (the cluster's, kept in ``cluster.json``): a client
connects to any node with :attr:`ClusterInfo.url` (``redis+cluster://``) and learns the
others from it (:func:`rediscache.connect`).

RediSearch 2.10, the module of the wheels, has no coordinator: an index covers the keys of
its own node. rediscache keeps every key of a space in one slot (its hash tag), so each
space lives whole on one shard (docs/scale.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import time
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
import redis.cluster

from .errors import EmbeddedServerError, InvalidInputError
from .server import (
    CLUSTER_RECORD,
    STATE_FILE,
    ServerConfig,
    ServerInfo,
    default_data_dir,
    recorded,
)
from .server import start as start_node
from .server import stop as stop_node

__all__ = [
    "SLOTS", "ClusterInfo", "default_cluster_dir", "describe", "fits", "live_url",
    "nodes_status", "recorded_replicas", "replica_counts", "start", "status",
    "status_password", "stop", "stop_nodes",
]  # fmt: skip

#: Slots of a Redis Cluster.
SLOTS = 16384
#: The cluster's own record in its data directory.
CLUSTER_FILE = CLUSTER_RECORD
#: Seconds :func:`start` waits for the nodes to agree on the cluster (``cluster_state:ok``).
JOIN_TIMEOUT = 60.0


def default_cluster_dir() -> Path:
    """The default data directory of the development cluster: ``cluster`` beside the
    embedded server's (``~/.local/share/rediscache/cluster``)."""
    return default_data_dir().parent / "cluster"


@dataclass(frozen=True)
class ClusterInfo:
    """A running local cluster: its nodes (primaries first, then replicas) and password."""

    data_dir: str
    password: str
    primaries: int
    replicas: int
    nodes: tuple[ServerInfo, ...]

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL (with the password) naming the first node; clients
        learn the other nodes from it."""
        first = self.nodes[0]
        return f"redis+cluster://:{self.password}@{first.host}:{first.port}/0"

    def client(self, **kwargs: Any) -> redis.cluster.RedisCluster:
        """A redis-py ``RedisCluster`` client of this cluster. The caller closes it."""
        first = self.nodes[0]
        return redis.cluster.RedisCluster(
            host=first.host, port=first.port, password=self.password, **kwargs
        )


def _dir(data_dir: str | os.PathLike[str] | None) -> Path:
    if data_dir is None:
        return default_cluster_dir()
    if not isinstance(data_dir, str | os.PathLike) or not str(data_dir):
        raise InvalidInputError(f"data_dir must be a path, got {data_dir!r}")
    return Path(data_dir)


def _check_counts(primaries: object, replicas: object) -> tuple[int, int]:
    if isinstance(primaries, bool) or not isinstance(primaries, int) or not 1 <= primaries <= 16:
        raise InvalidInputError(f"primaries must be an int from 1 to 16, got {primaries!r}")
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 0 <= replicas <= 4:
        raise InvalidInputError(f"replicas must be an int from 0 to 4, got {replicas!r}")
    return primaries, replicas


def _read_record(data_dir: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((data_dir / CLUSTER_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def start(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    primaries: int = 3,
    replicas: int = 0,
    host: str = "127.0.0.1",
    start_timeout: float = 30.0,
) -> tuple[ClusterInfo, bool]:
    """Start a local cluster of ``primaries`` primaries with ``replicas`` replicas each in
    ``data_dir`` (default :func:`default_cluster_dir`), or reuse the one running there.
    Returns ``(info, started)``: ``started`` is False when every node was already running.

    A directory that already holds a cluster keeps its shape: asking for other counts
    raises InvalidInputError (stop it and use another directory). Each node waits for its
    start at most ``start_timeout`` seconds; the join at most :data:`JOIN_TIMEOUT`.

    Raises:
        InvalidInputError: bad counts, or counts other than the directory's cluster.
        EmbeddedServerError: a node did not start, or the nodes did not agree in time
            (the nodes are left running: ``stop(data_dir)``).
    """
    primaries, replicas = _check_counts(primaries, replicas)
    root = _dir(data_dir)
    if (root / STATE_FILE).exists():
        raise InvalidInputError(
            f"{root} holds a single embedded server (server.json), not a cluster: start the "
            "cluster in another directory (--data-dir)"
        )
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    record = _read_record(root)
    if record is not None and (record["primaries"], record["replicas"]) != (primaries, replicas):
        raise InvalidInputError(
            f"{root} holds a cluster of {record['primaries']} primaries with "
            f"{record['replicas']} replica(s) each, not {primaries} and {replicas}: start it "
            "as it is, or the new one in another directory"
        )
    password = record["password"] if record else secrets.token_urlsafe(24)
    if record is None:
        record = {"primaries": primaries, "replicas": replicas, "password": password}
        # the owner's only from the start: it holds the password
        fd = os.open(root / CLUSTER_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(record, indent=2))
    nodes: list[ServerInfo] = []
    started = False
    for i in range(primaries * (1 + replicas)):
        config = ServerConfig(
            data_dir=root / f"node-{i}",
            host=host,
            password=password,
            cluster=True,
            start_timeout=start_timeout,
        )
        config.data_dir.mkdir(exist_ok=True, mode=0o700)
        info, fresh = start_node(config)
        nodes.append(info)
        started = started or fresh
    cluster = ClusterInfo(str(root.resolve()), password, primaries, replicas, tuple(nodes))
    _join(cluster)
    return cluster, started


def _client(node: ServerInfo) -> redis.Redis:
    return redis.Redis(host=node.host, port=node.port, password=node.password, socket_timeout=10)


def _node_id(client: redis.Redis) -> str:
    raw = client.execute_command("CLUSTER", "MYID")
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _join(cluster: ClusterInfo) -> None:
    """Join the nodes into one cluster, or repair what an interrupted start left; each step
    is done only where it is missing, so a formed cluster (its nodes restarted, or roles
    swapped by a failover) is left as it is: every node meets the first, a new cluster's
    primaries get equal slot ranges, each node that serves no slot replicates the primary
    with the fewest replicas, then the nodes agree (``cluster_state:ok``), the replicas
    sync, and ``CLUSTER SLOTS`` lists every node."""
    clients = [_client(node) for node in cluster.nodes]
    try:
        first = clients[0]
        everyone = len(clients)
        for node in cluster.nodes[1:]:
            first.execute_command("CLUSTER", "MEET", node.host, node.port)
        _wait(clients, lambda c: int(_info_cluster(c).get("cluster_known_nodes", 0)) == everyone)
        n = cluster.primaries
        for i, client in enumerate(clients[:n]):
            low, high = i * SLOTS // n, (i + 1) * SLOTS // n - 1
            if not _serves(first, _node_id(client)) and _slots_free(client, low, high):
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", low, high)
        _wait(clients, lambda c: int(_info_cluster(c).get("cluster_slots_assigned", 0)) == SLOTS)
        _attach_replicas(first, clients, cluster.replicas)
        _wait(clients, lambda c: _info_cluster(c).get("cluster_state") == "ok")
        _wait([c for c in clients if _role(c) == "slave"], _synced)
        # clients learn the replicas from CLUSTER SLOTS, which lists them a little later
        _wait(clients[:1], lambda c: _listed(c) == everyone)
    finally:
        for client in clients:
            client.close()


def _nodes_table(client: redis.Redis) -> list[tuple[str, set[str], str, int]]:
    """``CLUSTER NODES`` as (id, flags, primary id or "-", slots served) per node."""
    raw = client.execute_command("CLUSTER", "NODES")
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    table = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        served = 0
        for item in parts[8:]:
            if item.startswith("["):  # a slot being moved, not served
                continue
            low, _, high = item.partition("-")
            served += int(high or low) - int(low) + 1
        table.append((parts[0], set(parts[2].split(",")), parts[3], served))
    return table


def _serves(first: redis.Redis, node_id: str) -> bool:
    """Whether the node ``node_id`` serves any slot (as ``first`` knows the cluster)."""
    return any(nid == node_id and served for nid, _, _, served in _nodes_table(first))


def _replicas_per_primary(
    table: list[tuple[str, set[str], str, int]], skip: Collection[str] = ()
) -> dict[str, int]:
    """Replicas of each primary serving slots in a :func:`_nodes_table`, not counting
    the replicas ``skip`` names. Pure."""
    counts = {nid: 0 for nid, flags, _, served in table if served and "master" in flags}
    for nid, flags, primary, _ in table:
        if "slave" in flags and primary in counts and nid not in skip:
            counts[primary] += 1
    return counts


def _attach_replicas(first: redis.Redis, clients: list[redis.Redis], per: int) -> None:
    """Make each node that serves no slot and replicates nobody a replica of the primary
    with the fewest replicas (below ``per``)."""
    # replicas attached here: ``first`` learns of them over the cluster bus, later, so its
    # table alone would count none of them and send every new replica to the same primary
    made: dict[str, str] = {}
    for client in clients:
        table = _nodes_table(first)
        me = _node_id(client)
        mine = next((row for row in table if row[0] == me), None)
        if mine is None or mine[3] or "slave" in mine[1] or mine[2] != "-":
            continue  # a primary serving slots, or a replica already
        counts = _replicas_per_primary(table, skip=made)
        for primary in made.values():
            if primary in counts:
                counts[primary] += 1
        wanting = sorted((c, nid) for nid, c in counts.items() if c < per)
        if wanting:
            client.execute_command("CLUSTER", "REPLICATE", wanting[0][1])
            made[me] = wanting[0][1]
            _wait([client], lambda c: _role(c) == "slave")


def _listed(client: redis.Redis) -> int:
    """How many nodes (primaries and replicas) ``CLUSTER SLOTS`` names."""
    ports = {int(node[1]) for entry in client.execute_command("CLUSTER", "SLOTS") or []
             for node in entry[2:]}  # fmt: skip
    return len(ports)


def _synced(client: redis.Redis) -> bool:
    """Whether a replica's link to its primary is up (its first sync done)."""
    info = client.info("replication")
    return str(info.get("master_link_status")) == "up"


def _slots_free(client: redis.Redis, low: int, high: int) -> bool:
    """Whether no node of the cluster serves a slot of ``low..high`` yet."""
    for entry in client.execute_command("CLUSTER", "SLOTS") or []:
        start, end = int(entry[0]), int(entry[1])
        if start <= high and low <= end:
            return False
    return True


def _role(client: redis.Redis) -> str:
    reply = client.execute_command("ROLE")
    role = reply[0]
    return role.decode() if isinstance(role, bytes) else str(role)


def _info_cluster(client: redis.Redis) -> dict[str, str]:
    raw = client.execute_command("CLUSTER", "INFO")
    text = raw.decode() if isinstance(raw, bytes) else raw
    if isinstance(text, dict):
        return {str(k): str(v) for k, v in text.items()}
    return dict(line.split(":", 1) for line in str(text).splitlines() if ":" in line)


def _wait(clients: list[redis.Redis], ok: Any) -> None:
    deadline = time.monotonic() + JOIN_TIMEOUT
    while not all(ok(c) for c in clients):
        if time.monotonic() > deadline:
            raise EmbeddedServerError(
                f"the cluster's {len(clients)} nodes did not agree within {JOIN_TIMEOUT:.0f} s "
                "(see each node's redis.log); they are left running: stop them with "
                "`rediscache server stop --cluster`"
            )
        time.sleep(0.1)


def stop(data_dir: str | os.PathLike[str] | None = None, *, timeout: float = 60.0) -> bool:
    """Shut down every node of the cluster in ``data_dir``, all at once (each flushes its
    AOF). Returns False when none was running. The directory stays: the next
    :func:`start` brings the same cluster back with its data."""
    root = _dir(data_dir)
    nodes = sorted(root.glob("node-*"), key=lambda p: int(p.name.split("-")[1]))
    return stop_nodes(nodes, timeout, "`server stop --cluster`")


def stop_nodes(nodes: list[Path], timeout: float, again: str) -> bool:
    """Stop the embedded servers of the directories ``nodes``, all at once, cleanly:
    SHUTDOWN, else (a node refusing it: a replica writing its first AOF after a sync, one
    loading its data) SIGTERM, on which Redis also flushes its AOF and exits. Returns
    False when none was running. ``again``: the command to run again, for the error.

    Raises:
        EmbeddedServerError: a node still running after ``timeout`` seconds.
    """

    def one(node: Path) -> bool:
        try:
            return stop_node(node, timeout=timeout)
        except EmbeddedServerError:
            # it refused SHUTDOWN (e.g. a replica in the middle of a sync): the sweep
            # below sends it SIGTERM, on which Redis also flushes its AOF and exits
            return recorded(node) is not None

    if not nodes:
        return False
    with ThreadPoolExecutor(len(nodes)) as pool:
        stopped = any(list(pool.map(one, nodes)))
    left = _still_running(nodes)
    for _, pid in left:  # it refused SHUTDOWN, or is loading its data: SIGTERM, and wait
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _still_running(nodes)
    if left:
        names = ", ".join(f"{node} (pid {pid})" for node, pid in left)
        raise EmbeddedServerError(
            f"{names} did not stop within {timeout:g} s: run {again} again once it is done loading"
        )
    return stopped


def _still_running(nodes: list[Path]) -> list[tuple[Path, int]]:
    """The nodes whose directory a redis-server still holds, with its pid."""
    from .server import _holder, _runs_redis

    out = []
    for node in nodes:
        pid = _holder(node)
        if pid and _runs_redis(pid):
            out.append((node, pid))
    return out


def live_url(data_dir: str | os.PathLike[str] | None = None) -> str | None:
    """A ``redis+cluster://`` URL (with the password) naming a node of the cluster in
    ``data_dir`` that runs, for when its first node is down (the cluster may still serve
    every slot: a replica took over); None when none runs."""
    from .server import status as node_status

    root = _dir(data_dir)
    record = _read_record(root)
    if record is None:
        return None
    for i in range(record["primaries"] * (1 + record["replicas"])):
        found = node_status(root / f"node-{i}")
        if found.running and found.info is not None:
            info = found.info
            return f"redis+cluster://:{record['password']}@{info.host}:{info.port}/0"
    return None


def status_password(data_dir: str | os.PathLike[str] | None = None) -> str:
    """The password recorded for the cluster in ``data_dir`` ("" when none is)."""
    record = _read_record(_dir(data_dir))
    return str(record["password"]) if record is not None else ""


def recorded_replicas(data_dir: str | os.PathLike[str] | None, primaries: int) -> int:
    """The replicas per primary of the cluster recorded in ``data_dir`` when it has
    ``primaries`` primaries, else 0 (a new cluster's default)."""
    record = _read_record(_dir(data_dir))
    if record is not None and record["primaries"] == primaries:
        return int(record["replicas"])
    return 0


def fits(data_dir: str | os.PathLike[str] | None, primaries: int, replicas: int) -> bool:
    """Whether :func:`start` would accept these counts for ``data_dir`` (no cluster there
    yet, or one of that shape)."""
    record = _read_record(_dir(data_dir))
    return record is None or (record["primaries"], record["replicas"]) == (primaries, replicas)


def nodes_status(data_dir: str | os.PathLike[str] | None = None) -> list[tuple[str, int, bool]]:
    """Each node of the cluster recorded in ``data_dir``: its directory's name, its port
    (0 when never started) and whether it runs."""
    from .server import status as node_status

    root = _dir(data_dir)
    record = _read_record(root)
    if record is None:
        return []
    out = []
    for i in range(record["primaries"] * (1 + record["replicas"])):
        found = node_status(root / f"node-{i}")
        last = recorded(root / f"node-{i}")
        out.append((f"node-{i}", last.port if last is not None else 0, found.running))
    return out


def status(data_dir: str | os.PathLike[str] | None = None) -> ClusterInfo | None:
    """The running cluster of ``data_dir``, or None when it has none or a node is down."""
    from .server import status as node_status

    root = _dir(data_dir)
    record = _read_record(root)
    if record is None:
        return None
    nodes = []
    for i in range(record["primaries"] * (1 + record["replicas"])):
        found = node_status(root / f"node-{i}")
        if not found.running or found.info is None:
            return None
        nodes.append(found.info)
    return ClusterInfo(
        str(root.resolve()), record["password"], record["primaries"], record["replicas"],
        tuple(nodes),
    )  # fmt: skip


def replica_counts(info: ClusterInfo) -> list[int]:
    """How many replicas each primary serving slots has now (``CLUSTER NODES`` of the
    first node that answers), primaries in the order of their first slot."""
    for node in info.nodes:
        client = redis.Redis(host=node.host, port=node.port, password=info.password,
                             socket_timeout=5, protocol=2)  # fmt: skip
        try:
            table = _nodes_table(client)
            slots = client.execute_command("CLUSTER", "SLOTS") or []
        except redis.RedisError:
            continue
        finally:
            client.close()
        counts = _replicas_per_primary(table)
        order = [_id_of(entry) for entry in sorted(slots, key=lambda e: int(e[0]))]
        ranked = list(dict.fromkeys(n for n in order if n in counts)) + [
            n for n in counts if n not in order
        ]
        return [counts[n] for n in ranked]
    return []


def _id_of(entry: Any) -> str:
    """The primary's node id in a ``CLUSTER SLOTS`` range entry."""
    node = entry[2]
    raw = node[2] if len(node) > 2 else b""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def describe(info: ClusterInfo, *, show_password: bool = False) -> dict[str, Any]:
    """A JSON-able description of ``info``; its URL without the password unless
    ``show_password``."""
    return {
        "url": info.url if show_password else info.url.replace(info.password, "***"),
        "data_dir": info.data_dir,
        "primaries": info.primaries,
        "replicas": info.replicas,
        "nodes": [
            {k: v for k, v in asdict(node).items() if k in ("host", "port", "pid", "data_dir")}
            for node in info.nodes
        ],
    }
