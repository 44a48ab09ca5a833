"""``rediscache server``, ``demo`` and ``stats``."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from .. import cluster as clu
from .. import ha
from .. import server as srv
from .base import (
    StartProgressLine,
    State,
    cli,
    data_dir_option,
    emit,
    friendly,
    human_bytes,
    json_option,
    plural,
    wants_json,
)
from .space_cmds import generation_lines

# ---------------------------------------------------------------- server


@cli.group(short_help="Start, stop and inspect the local server.")
@click.pass_obj
def server(state: State) -> None:
    """Start, stop and inspect the embedded local Redis server, or with --cluster a local
    Redis Cluster of such servers, or with --sentinels a primary with replicas watched by
    Sentinels (for development).

    They act on the data directory (--data-dir, REDISCACHE_DATA_DIR, or the default; a
    cluster's default is ~/.local/share/rediscache/cluster, a Sentinel set's
    ~/.local/share/rediscache/ha), never on a --url server, which rediscache cannot start
    or stop.

    \b
    Example:
      rediscache server start --port 6390
      rediscache server status --json
      rediscache server stop
      rediscache server start --cluster 3 --replicas 1
      rediscache server start --replicas 2 --sentinels 3
      rediscache server status --sentinel --show-password
    """
    if state is not None and state.url is not None:
        raise click.UsageError(
            "server commands manage the embedded server of a data directory (--data-dir); "
            "--url names a Redis that rediscache cannot start, stop or inspect here"
        )


#: A PEM file given to the TLS options.
PEM_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@server.command("start", short_help="Start the embedded server.")
@data_dir_option
@click.option("--port", type=click.IntRange(1, 65535), help="TCP port (default: a free one).")
@click.option(
    "--appendfsync",
    type=click.Choice(["always", "everysec", "no"]),
    default="everysec",
    show_default=True,
    help="AOF fsync policy.",
)
@click.option("--redis-server", type=click.Path(path_type=Path), help="redis-server to run.")
@click.option("--search-module", type=click.Path(path_type=Path), help="redisearch.so to load.")
@click.option("--maxmemory", help="Memory limit, e.g. 2gb (default: none).")
@click.option(
    "--start-timeout",
    type=click.FloatRange(0.1, 86_400),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for the server to be ready. A server still loading its data "
    "then is left running (never killed: it would start over) and the command says so.",
)
@click.option(
    "--tls-cert",
    type=PEM_FILE,
    help="Also serve rediss:// with this certificate chain (PEM); needs --tls-key.",
)
@click.option("--tls-key", type=PEM_FILE, help="The private key of --tls-cert (PEM).")
@click.option(
    "--tls-client-ca",
    type=PEM_FILE,
    help="Require client certificates signed by this CA (PEM) on the TLS port.",
)
@click.option(
    "--tls-port",
    type=click.IntRange(1, 65535),
    help="The TLS port (default: the previous one when free, else a free one).",
)
@click.option("--no-tls", is_flag=True, help="Stop serving TLS (started with --tls-cert before).")
@click.option(
    "--cluster",
    "primaries",
    type=click.IntRange(1, 16),
    metavar="N",
    help="Start a local Redis Cluster of N primaries instead (for development: every node "
    "on 127.0.0.1 with the search module; data in --data-dir, default "
    "~/.local/share/rediscache/cluster). Connect with the redis+cluster:// URL it prints.",
)
@click.option(
    "--replicas",
    type=click.IntRange(0, 4),
    help="With --cluster: replicas per primary (default: as the directory's cluster has, "
    "0 for a new one). Without replicas a node's death stops its spaces until it is back. "
    "With --sentinels: replicas of the one primary (1 to 4; default: as the directory's "
    "set has).",
)
@click.option(
    "--sentinels",
    type=click.IntRange(1, 7),
    metavar="S",
    help="Start a primary with --replicas replicas and S Sentinels instead (for "
    "development: on 127.0.0.1, data in --data-dir, default ~/.local/share/rediscache/ha): "
    "the Sentinels promote a replica when the primary dies. Connect with the "
    "redis+sentinel:// URL it prints.",
)
@json_option
@click.pass_obj
@friendly
def server_start(
    state: State,
    port: int | None,
    appendfsync: str,
    redis_server: Path | None,
    search_module: Path | None,
    maxmemory: str | None,
    start_timeout: float,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    tls_port: int | None,
    no_tls: bool,
    primaries: int | None,
    replicas: int | None,
    sentinels: int | None,
    as_json: bool,
) -> None:
    """Start the embedded server (or report the one already running).

    A data directory with many vectors takes a while to load after a restart (its indexes
    are rebuilt); a server still loading after --start-timeout is left running.

    With --tls-cert and --tls-key it also serves rediss:// on a TLS port, through a small
    TLS endpoint process in front of the server (this redis-server is built without TLS);
    later starts keep serving it until started with other files, or with --no-tls.
    Clients pass the CA that signed the certificate: rediscache.connect(url,
    ssl_ca_certs="ca.pem"), or on the command line --url 'rediss://...?ssl_ca_certs=ca.pem'.

    \b
    Example:
      rediscache server start
      rediscache --data-dir /srv/rc server start --port 6390 --appendfsync always
      rediscache server start --start-timeout 300     # a large data dir after a crash
      rediscache server start --tls-cert server.pem --tls-key server.key
      rediscache server start --cluster 3 --replicas 1   # a local Redis Cluster
      rediscache server start --replicas 2 --sentinels 3 # a primary, replicas, Sentinels
    """
    if primaries is not None and sentinels is not None:
        raise click.UsageError("--cluster and --sentinels are two topologies: give one")
    if primaries is not None or sentinels is not None:
        flag = "--cluster" if primaries is not None else "--sentinels"
        given = [
            name
            for name, value in (
                ("--port", port), ("--redis-server", redis_server),
                ("--search-module", search_module), ("--maxmemory", maxmemory),
                ("--tls-cert", tls_cert), ("--tls-key", tls_key),
                ("--tls-client-ca", tls_client_ca), ("--tls-port", tls_port),
                ("--no-tls", no_tls or None),
            )
            if value is not None
        ]  # fmt: skip
        if given:
            raise click.UsageError(f"{', '.join(given)}: not with {flag}")
        if primaries is not None:
            _start_cluster(state, primaries, replicas, start_timeout, as_json)
        else:
            assert sentinels is not None
            _start_set(state, replicas, sentinels, start_timeout, as_json)
        return
    if replicas is not None:
        raise click.UsageError("--replicas goes with --cluster N or --sentinels S")
    if no_tls and tls_cert is not None:
        raise click.UsageError("--no-tls contradicts --tls-cert: give one")
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together: give both")
    if tls_cert is None and (tls_client_ca or tls_port):
        raise click.UsageError("--tls-client-ca and --tls-port need --tls-cert and --tls-key")
    config = state.server_config(
        port=port,
        appendfsync=appendfsync,
        redis_server=redis_server,
        search_module=search_module,
        maxmemory=maxmemory,
        start_timeout=start_timeout,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_client_ca=tls_client_ca,
        tls_port=tls_port,
        no_tls=no_tls,
    )
    line = StartProgressLine()
    try:
        info, started = srv.start(config, progress=line)
    finally:
        line.close()
    if wants_json(state, as_json):
        out = _info_dict(info)
        out["started"] = started
        click.echo(json.dumps(out, indent=2))
        return
    verb = "started" if started else "already running"
    click.echo(
        f"{verb}: Redis {info.redis_version} + search {info.search_version} on "
        f"{info.host}:{info.port} (pid {info.pid}, data {info.data_dir})"
    )
    if info.tls_port is not None:
        client_certs = ", client certificates required" if info.tls_client_ca else ""
        click.echo(
            f"TLS: rediss://{info.host}:{info.tls_port}/0 (pid {info.tls_pid}{client_certs})"
        )
    with info.client(socket_timeout=10, protocol=2) as client:
        building = srv.indexes_building(client)
    if building:
        names = ", ".join(f"{name} {percent:.0f}%" for name, percent in building.items())
        click.echo(
            f"indexes still being rebuilt in the background: {names}; searches of their "
            "spaces wait for them (`rediscache server status` shows the progress)",
            err=True,
        )


def _cluster_dir(state: State) -> Path:
    """The local cluster's data directory: --data-dir, else the default."""
    return Path(state.data_dir) if state.data_dir is not None else clu.default_cluster_dir()


def _start_cluster(
    state: State, primaries: int, replicas: int | None, start_timeout: float, as_json: bool
) -> None:
    root = _cluster_dir(state)
    if replicas is None:
        replicas = clu.recorded_replicas(root, primaries)
    if clu.status(root) is None and clu.fits(root, primaries, replicas):
        nodes = primaries * (1 + replicas)
        click.echo(f"starting {nodes} nodes in {root}...", err=True)
    info, started = clu.start(
        root, primaries=primaries, replicas=replicas, start_timeout=start_timeout
    )
    if wants_json(state, as_json):
        click.echo(json.dumps({**clu.describe(info), "started": started}, indent=2))
        return
    verb = "started" if started else "already running"
    ports = ", ".join(str(n.port) for n in info.nodes)
    click.echo(
        f"{verb}: a Redis Cluster of {plural(primaries, 'primary', 'primaries')} with "
        f"{plural(replicas, 'replica')} each (ports {ports}; data {info.data_dir})"
    )
    click.echo(
        f"connect: rediscache --url '{info.url.replace(info.password, '***')}' ...  "
        f"(the password: `rediscache --data-dir {root} server status --cluster "
        "--show-password`)"
    )


def _set_dir(state: State) -> Path:
    """The local set's data directory (server start --sentinels): --data-dir, else the
    default."""
    return Path(state.data_dir) if state.data_dir is not None else ha.default_ha_dir()


def _start_set(
    state: State, replicas: int | None, sentinels: int, start_timeout: float, as_json: bool
) -> None:
    root = _set_dir(state)
    if replicas is None:
        replicas = ha.recorded_replicas(root)
    if replicas is None:
        raise click.UsageError("--sentinels S needs --replicas N (1 to 4): whom to promote")
    members = ha.members(root)  # each node's status and role: once
    down = [m["name"] for m in members if not m["running"]]
    if not members:
        click.echo(
            f"starting a primary, {plural(replicas, 'replica')} and "
            f"{plural(sentinels, 'Sentinel')} in {root}...",
            err=True,
        )
    elif down:
        click.echo(f"starting {', '.join(down)} of the set in {root}...", err=True)
    info, started = ha.start(
        root, replicas=replicas, sentinels=sentinels, start_timeout=start_timeout
    )
    if wants_json(state, as_json):
        click.echo(json.dumps({**ha.describe(info), "started": started}, indent=2))
        return
    verb = "started" if started else "already running"
    lead = info.nodes[info.primary]
    click.echo(
        f"{verb}: a primary (node-{info.primary}, port {lead.port}) with "
        f"{plural(replicas, 'replica')} and {plural(sentinels, 'Sentinel')} (ports "
        f"{', '.join(str(p) for _, p in info.sentinels)}; data {info.data_dir})"
    )
    click.echo(
        f"connect: rediscache --url '{info.url.replace(info.password, '***')}' ...  "
        f"(the password: `rediscache --data-dir {root} server status --sentinel "
        "--show-password`)"
    )
    if info.syncing:
        click.echo(
            f"{', '.join(info.syncing)} still syncing with the primary (a restarted node "
            "replays its data, then syncs anew); the set serves meanwhile: `server status "
            "--sentinel` shows when it is done",
            err=True,
        )


def _refuse_other_topology(data_dir: Path, command: str) -> None:
    """A usage error when ``data_dir`` holds a cluster or a Sentinel set, not a server."""
    if (data_dir / srv.CLUSTER_RECORD).exists():
        raise click.UsageError(
            f"{data_dir} holds a local Redis Cluster: `server {command} --cluster`"
        )
    if (data_dir / srv.HA_RECORD).exists():
        raise click.UsageError(
            f"{data_dir} holds a primary with replicas and Sentinels: `server {command} --sentinel`"
        )


@server.command("stop", short_help="Stop the embedded server cleanly.")
@data_dir_option
@click.option(
    "--cluster", "is_cluster", is_flag=True, help="Stop the local cluster (server start --cluster)."
)
@click.option(
    "--sentinel",
    "--sentinels",
    "is_set",
    is_flag=True,
    help="Stop the local primary, replicas and Sentinels (server start --sentinels).",
)
@click.pass_obj
@friendly
def server_stop(state: State, is_cluster: bool, is_set: bool) -> None:
    """Stop the embedded server cleanly (the AOF is flushed first); with --cluster, every
    node of the local cluster; with --sentinel, the Sentinels, then every node of the
    local set.

    \b
    Example:
      rediscache server stop
      rediscache server stop --cluster
      rediscache server stop --sentinel
    """
    if is_cluster and is_set:
        raise click.UsageError("--cluster and --sentinel are two topologies: give one")
    if is_cluster:
        click.echo("stopped" if clu.stop(_cluster_dir(state)) else "not running")
        return
    if is_set:
        click.echo("stopped" if ha.stop(_set_dir(state)) else "not running")
        return
    data_dir = state.server_config().data_dir
    _refuse_other_topology(data_dir, "stop")
    if srv.status(data_dir).loading:
        click.echo("the server is loading its data; waiting for it to stop...", err=True)
    stopped = srv.stop(data_dir)
    click.echo("stopped" if stopped else "not running")


@server.command("status", short_help="Is the embedded server running?")
@data_dir_option
@click.option(
    "--show-password",
    is_flag=True,
    help="Include the owner's password in the printed URL, --json output too (it is also in "
    "server.json in the data directory, mode 0600; a cluster's in cluster.json).",
)
@click.option(
    "--cluster", "is_cluster", is_flag=True, help="The local cluster (server start --cluster)."
)
@click.option(
    "--sentinel",
    "--sentinels",
    "is_set",
    is_flag=True,
    help="The local primary, replicas and Sentinels (server start --sentinels).",
)
@json_option
@click.pass_obj
@friendly
def server_status(
    state: State, show_password: bool, is_cluster: bool, is_set: bool, as_json: bool
) -> None:
    """Is the embedded server running? Versions, address, memory, keys. With --cluster: is
    every node of the local cluster running, and its URL. With --sentinel: is every node
    and Sentinel of the local set running, which node is the primary, and its URL.

    Exit status 0 when running, 3 when not (or, with --sentinel, not whole).

    \b
    Example:
      rediscache server status
      rediscache server status --json
      rediscache server status --cluster --show-password
      rediscache server status --sentinel --show-password
    """
    if is_cluster and is_set:
        raise click.UsageError("--cluster and --sentinel are two topologies: give one")
    if is_set:
        _set_status(state, show_password, as_json)
        return
    if is_cluster:
        root = _cluster_dir(state)
        found = clu.status(root)
        if wants_json(state, as_json):
            described: dict[str, Any] = (
                clu.describe(found, show_password=show_password)
                if found
                else {"data_dir": str(_cluster_dir(state))}
            )
            live = clu.live_url(root) if found is None else None
            if live is not None:  # not whole: the nodes that run still serve
                password = clu.status_password(root)
                described["url"] = live if show_password else live.replace(password, "***")
            if found:
                described["replicas_per_primary"] = clu.replica_counts(found)
            click.echo(json.dumps({"running": found is not None, **described}, indent=2))
        elif found is None:
            down = [f"{name} (port {port})" for name, port, up in clu.nodes_status(root) if not up]
            if down and len(down) < len(clu.nodes_status(root)):
                live = clu.live_url(root) or ""
                if not show_password:
                    live = live.replace(clu.status_password(root), "***")
                click.echo(f"not whole: {', '.join(down)} not running (data dir {root}); "
                           "`server start --cluster N` starts what is down; the others "
                           f"answer at {live}")  # fmt: skip
            else:
                click.echo(f"not running (data dir {root})")
        else:
            url = found.url if show_password else found.url.replace(found.password, "***")
            counts = clu.replica_counts(found)
            shape = (
                f"{found.replicas} replica(s) each"
                if set(counts) == {found.replicas}
                else f"replicas per primary {', '.join(map(str, counts))} (not "
                f"{found.replicas} each: a failover or a node down; `server stop --cluster` "
                "and `server start --cluster N` set them again)"
            )
            click.echo(
                f"running: {found.primaries} primaries, {shape}\n"
                f"  url:     {url}\n"
                + "".join(f"  node:    {n.host}:{n.port} (pid {n.pid})\n" for n in found.nodes)
                + f"  data:    {found.data_dir}"
            )
        if found is None:
            sys.exit(3)
        return
    data_dir = state.server_config().data_dir
    _refuse_other_topology(data_dir, "status")
    st = srv.status(data_dir)
    if wants_json(state, as_json):
        out: dict[str, Any] = {"running": st.running, "data_dir": st.data_dir}
        if st.holder_pid is not None:
            out.update(pid=st.holder_pid, state_file_missing=True)
        if st.info is not None:
            out.update(_info_dict(st.info, show_password))
            if st.info.tls_port is not None:
                out["tls_running"] = srv.tls_running(st.info)
            out.update(
                used_memory=st.used_memory,  # bytes, as `stats --json` gives it
                used_memory_human=st.used_memory_human,
                keys=st.keys,
                uptime_seconds=st.uptime_seconds,
                loading=st.loading,
                loading_percent=st.loading_percent,
                busy=st.busy,
                indexing=st.indexing,
            )
        click.echo(json.dumps(out, indent=2))
    elif st.info is None and st.holder_pid is not None:
        click.echo(
            f"running: pid {st.holder_pid} holds {st.data_dir}, but its server.json is missing "
            "(address and password unknown here); `rediscache server stop` stops it cleanly"
        )
    elif st.info is None:
        click.echo(f"not running (data dir {st.data_dir})")
    else:
        i = st.info
        url = i.url if show_password else i.url.replace(i.password, "***")
        tls = ""
        if i.tls_url is not None:
            tls_url = i.tls_url if show_password else i.tls_url.replace(i.password, "***")
            up = (
                f"pid {i.tls_pid}"
                if srv.tls_running(i)
                else "NOT RUNNING: `server start` restarts it"
            )
            tls = f"  tls:     {tls_url} ({up})\n"
        click.echo(
            f"running: pid {i.pid}\n"
            f"  redis:   {i.redis_version} ({i.binary})\n"
            f"  search:  {i.search_version or '(known once loaded)'} ({i.module or 'built in'})\n"
            f"  url:     {url}\n"
            f"{tls}"
            f"  socket:  {i.unix_socket or '-'}\n"
            f"  data:    {i.data_dir}"
        )
        if st.used_memory_human is not None:
            click.echo(
                f"  memory:  {st.used_memory_human}, keys: {st.keys}, uptime: {st.uptime_seconds}s"
            )
        if st.loading:
            done = "" if st.loading_percent is None else f": {st.loading_percent:.1f}% replayed"
            click.echo(f"  loading its data{done} (commands wait until it is done)")
        if st.busy:
            click.echo("  busy running a long script (BUSY): it answers nobody until it ends")
        for name, percent in st.indexing.items():
            click.echo(
                f"  index {name} is being rebuilt: {percent:.1f}% (its searches wait for it)"
            )
    if not st.running:
        sys.exit(3)


def _set_status(state: State, show_password: bool, as_json: bool) -> None:
    """``server status --sentinel``: exit 3 unless every member runs."""
    root = _set_dir(state)
    found = ha.status(root)
    members = ha.members(root)
    for m in members:  # the words of the rest of rediscache, not Redis's
        if "role" in m:
            m["role"] = {"master": "primary", "slave": "replica"}.get(m["role"], m["role"])
        if m.get("link") not in (None, "in sync"):  # a replica that is not yet a copy
            m["role"] = f"{m['role']}, {m['link']}"
    if wants_json(state, as_json):
        described: dict[str, Any] = (
            ha.describe(found, show_password=show_password) if found else {"data_dir": str(root)}
        )
        click.echo(
            json.dumps({"running": found is not None, **described, "members": members}, indent=2)
        )
    elif found is None:
        down = [f"{m['name']} (port {m['port']})" for m in members if not m["running"]]
        if members and len(down) < len(members):
            count = sum(1 for m in members if m["name"].startswith("sentinel-"))
            click.echo(
                f"not whole: {', '.join(down)} not running (data dir {root}); `server start "
                f"--sentinels {count}` starts what is down (a node comes back as a replica "
                "of the current primary)"
            )
            for m in members:
                state_of = m.get("role") or ("running" if m["running"] else "NOT RUNNING")
                click.echo(f"  {m['name']:<11} port {m['port']} ({state_of})")
        else:
            click.echo(f"not running (data dir {root})")
    else:
        url = found.url if show_password else found.url.replace(found.password, "***")
        lines = [f"running: primary node-{found.primary}, "
                 f"{plural(len(found.nodes) - 1, 'replica')}, "
                 f"{plural(len(found.sentinels), 'Sentinel')}", f"  url:     {url}"]  # fmt: skip
        for m in members:
            role = m.get("role", "")
            lines.append(f"  {m['name']:<11} port {m['port']}" + (f" ({role})" if role else ""))
        lines.append(f"  data:    {found.data_dir}")
        click.echo("\n".join(lines))
    if found is None:
        sys.exit(3)


def _info_dict(info: srv.ServerInfo, show_password: bool = False) -> dict[str, Any]:
    """The server's facts for --json output: its password only with ``show_password``
    (in the URLs, as the text output shows it)."""
    out = asdict(info)

    def hide(url: str) -> str:
        return url if show_password else url.replace(info.password, "***")

    out["url"] = hide(info.url)
    if info.tls_url is not None:
        out["tls_url"] = hide(info.tls_url)
    out.pop("password")
    return out


# ---------------------------------------------------------------- demo


@cli.command(short_help="Load sample embeddings and search them.")
@click.pass_obj
@friendly
def demo(state: State) -> None:
    """Load 2,000 sample embeddings into the space 'demo' and run searches.

    Uses the embedded server unless --url is given. The space is recreated each run.

    \b
    Example:
      rediscache demo
      rediscache --url redis://:secret@localhost:6379 demo
    """
    from ..demo import run_demo

    hub = state.hub()
    run_demo(hub, click.echo)
    if hub.server is not None:
        click.echo(
            f"\nThe embedded server keeps running (pid {hub.server.pid}, data in "
            f"{hub.server.data_dir}) for later commands; `rediscache server stop` stops it."
        )


# ---------------------------------------------------------------- stats


@cli.command(short_help="Server and space statistics.")
@click.argument("space", required=False)
@json_option
@click.pass_obj
@friendly
def stats(state: State, space: str | None, as_json: bool) -> None:
    """Server and space statistics: counts, memory, index size, indexing failures, versions.

    Without SPACE: the server (Redis and search module versions, memory, keys) and one line
    per space. With SPACE: that space in detail.

    \b
    Example:
      rediscache stats
      rediscache stats items --json
    """
    hub = state.hub()
    server = hub.server_stats()
    names = [space] if space else hub.spaces()
    spaces = []
    for name in names:
        sp = hub.space(name)
        info = sp.info()
        # versions as a list, as `space info --json` gives them
        spaces.append({**asdict(info), "versions": [asdict(v) for v in sp.versions()]})
    if wants_json(state, as_json):
        emit({"server": server, "spaces": spaces})
        return
    where = (
        f"Redis Cluster of {plural(server.primaries, 'primary', 'primaries')} (sums), "
        if server.cluster
        else ""
    )
    click.echo(
        f"server: {where}Redis {server.redis_version}, search {server.search_version}; "
        f"memory {human_bytes(server.used_memory)} (peak {human_bytes(server.used_memory_peak)}"
        f"{', limit ' + human_bytes(server.maxmemory) if server.maxmemory else ''}); "
        f"{plural(server.keys, 'key') if server.keys is not None else 'keys not visible'}; "
        f"{plural(server.connected_clients, 'client')}; "
        f"up {server.uptime_seconds}s"
    )
    if not spaces:
        click.echo("no spaces")
    for s in spaces:
        state_text = f", indexing {s['percent_indexed'] * 100:.0f}%" if s["indexing"] else ""
        garbage = s.get("garbage") or {}
        if garbage.get("generations"):
            state_text += f", {plural(garbage['documents'], 'embedding')} of garbage left"
        click.echo(
            f"{s['name']}: {s['count']:,} embeddings, dim {s['dim']} {s['metric']} "
            f"{s['algorithm']} {s['dtype']}; memory {human_bytes(s['memory_bytes'])} "
            f"(vector index {human_bytes(s['vector_index_bytes'])}); "
            f"{plural(s['index_failures'], 'indexing failure')}; "
            f"{plural(len(s['versions']), 'version')}{state_text}"
        )
        if space:
            for line in generation_lines(s):
                click.echo(line)
