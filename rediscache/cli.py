"""The ``rediscache`` command line: a thin layer over the library (the only module using click)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from dataclasses import asdict
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from . import server as srv
from .errors import RediscacheError
from .hub import Hub, connect

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["main"]


class State:
    """Global options, resolved lazily so that ``--help`` never connects."""

    def __init__(self, url: str | None, data_dir: Path | None, as_json: bool) -> None:
        self.url = url
        self.data_dir = data_dir
        self.as_json = as_json
        self._hub: Hub | None = None

    def server_config(self, **overrides: Any) -> srv.ServerConfig:
        if self.data_dir is not None:
            overrides["data_dir"] = self.data_dir
        return srv.ServerConfig(**overrides)

    def hub(self) -> Hub:
        if self._hub is None:
            self._hub = connect(self.url, server=self.server_config())
        return self._hub

    def close(self) -> None:
        if self._hub is not None:
            self._hub.close()


def _friendly(fn: F) -> F:
    """Turn expected library errors into one clean line on stderr and exit status 1."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RediscacheError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    envvar="REDISCACHE_URL",
    metavar="URL",
    help="Redis with the search module (redis://, rediss://, unix://). "
    "Default: the embedded local server. Env: REDISCACHE_URL.",
)
@click.option(
    "--data-dir",
    envvar="REDISCACHE_DATA_DIR",
    type=click.Path(path_type=Path),
    help="Data directory of the embedded server (default ~/.local/share/rediscache/server). "
    "Env: REDISCACHE_DATA_DIR.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
@click.pass_context
def cli(
    ctx: click.Context, url: str | None, data_dir: Path | None, as_json: bool, verbose: int
) -> None:
    """rediscache: an embedding hub on Redis.

    Store, fetch, search and average embeddings in Redis with vector search.
    Without --url, commands use the embedded local server, started on demand.

    \b
    Example:
      rediscache demo                      # load sample embeddings and search them
      rediscache server status             # versions, address, memory
    """
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    state = State(url, data_dir, as_json)
    ctx.obj = state
    ctx.call_on_close(state.close)


# ---------------------------------------------------------------- server


@cli.group()
def server() -> None:
    """Start, stop and inspect the embedded local Redis server.

    \b
    Example:
      rediscache server start --port 6390
      rediscache server status --json
      rediscache server stop
    """


@server.command("start")
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
@click.pass_obj
@_friendly
def server_start(
    state: State,
    port: int | None,
    appendfsync: str,
    redis_server: Path | None,
    search_module: Path | None,
    maxmemory: str | None,
) -> None:
    """Start the embedded server (or report the one already running).

    \b
    Example:
      rediscache server start
      rediscache --data-dir /srv/rc server start --port 6390 --appendfsync always
    """
    config = state.server_config(
        port=port,
        appendfsync=appendfsync,
        redis_server=redis_server,
        search_module=search_module,
        maxmemory=maxmemory,
    )
    info, started = srv.start(config)
    if state.as_json:
        out = _info_dict(info)
        out["started"] = started
        click.echo(json.dumps(out, indent=2))
        return
    verb = "started" if started else "already running"
    click.echo(
        f"{verb}: Redis {info.redis_version} + search {info.search_version} on "
        f"{info.host}:{info.port} (pid {info.pid}, data {info.data_dir})"
    )


@server.command("stop")
@click.pass_obj
@_friendly
def server_stop(state: State) -> None:
    """Stop the embedded server cleanly (the AOF is flushed first).

    \b
    Example:
      rediscache server stop
    """
    stopped = srv.stop(state.server_config().data_dir)
    click.echo("stopped" if stopped else "not running")


@server.command("status")
@click.option("--show-password", is_flag=True, help="Include the password in the URL.")
@click.pass_obj
@_friendly
def server_status(state: State, show_password: bool) -> None:
    """Is the embedded server running? Versions, address, memory, keys.

    Exit status 0 when running, 3 when not.

    \b
    Example:
      rediscache server status
      rediscache server status --json
    """
    st = srv.status(state.server_config().data_dir)
    if state.as_json:
        out: dict[str, Any] = {"running": st.running, "data_dir": st.data_dir}
        if st.info is not None:
            out.update(_info_dict(st.info, show_password))
            out.update(
                used_memory=st.used_memory_human, keys=st.keys, uptime_seconds=st.uptime_seconds
            )
        click.echo(json.dumps(out, indent=2))
    elif st.info is None:
        click.echo(f"not running (data dir {st.data_dir})")
    else:
        i = st.info
        url = i.url if show_password else i.url.replace(i.password, "***")
        click.echo(
            f"running: pid {i.pid}\n"
            f"  redis:   {i.redis_version} ({i.binary})\n"
            f"  search:  {i.search_version} ({i.module or 'built in'})\n"
            f"  url:     {url}\n"
            f"  socket:  {i.unix_socket or '-'}\n"
            f"  data:    {i.data_dir}\n"
            f"  memory:  {st.used_memory_human}, keys: {st.keys}, uptime: {st.uptime_seconds}s"
        )
    if not st.running:
        sys.exit(3)


def _info_dict(info: srv.ServerInfo, show_password: bool = False) -> dict[str, Any]:
    out = asdict(info)
    out["url"] = info.url if show_password else info.url.replace(info.password, "***")
    if not show_password:
        out.pop("password")
    return out


# ---------------------------------------------------------------- demo


@cli.command()
@click.pass_obj
@_friendly
def demo(state: State) -> None:
    """Load 2,000 sample embeddings into the space 'demo' and run searches.

    Uses the embedded server unless --url is given. The space is recreated each run.

    \b
    Example:
      rediscache demo
      rediscache --url redis://:secret@localhost:6379 demo
    """
    from .demo import run_demo

    run_demo(state.hub(), click.echo)


def main() -> None:
    """Entry point of the ``rediscache`` console script."""
    cli(prog_name="rediscache")
