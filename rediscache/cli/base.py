"""The root ``rediscache`` group and what every command shares: lazy connection, clean
errors, JSON output, confirmations and progress bars."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
import numpy as np
import redis

from .. import server as srv
from ..errors import InvalidInputError, PermissionDeniedError, RediscacheError, denied_message
from ..guard import redact
from ..hub import DATA_DIR_ENV, Hub, connect, resolve_target
from ..partitioned import PartitionedSpace
from ..space import Space

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "State",
    "Terminated",
    "cli",
    "emit",
    "friendly",
    "interrupted_status",
    "json_option",
    "plural",
    "progress",
]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is (as Ctrl-C raises KeyboardInterrupt), so that it
    ends the same way: what was done said in one line, exit status 143 instead of 130."""


def interrupted_status(exc: BaseException) -> int:
    """The exit status of a command ended by ``exc``: 143 for SIGTERM, 130 for Ctrl-C."""
    return 143 if isinstance(exc, Terminated) else 130


class State:
    """Global options, resolved lazily so that ``--help`` never connects."""

    def __init__(
        self, url: str | None, data_dir: Path | None, as_json: bool, verbose: int = 0
    ) -> None:
        self.url = url
        self.data_dir = data_dir
        self.as_json = as_json
        self.verbose = verbose
        self.started = time.perf_counter()
        self._hub: Hub | None = None

    def log(self, message: str) -> None:
        """Print ``message`` on stderr with -v (what a user may want to see: the server
        used, progress of long work, timings); nothing otherwise."""
        if self.verbose:
            click.echo(f"rediscache: {message}", err=True)

    def server_config(self, **overrides: Any) -> srv.ServerConfig:
        """The embedded server's config: --data-dir, else REDISCACHE_DATA_DIR, else the
        default data directory."""
        data_dir = self.data_dir or os.environ.get(DATA_DIR_ENV) or None
        if data_dir is not None:
            overrides["data_dir"] = data_dir
        return srv.ServerConfig(**overrides)

    def hub(self) -> Hub:
        """The hub, connected on first use, to the server :func:`rediscache.connect` would
        pick: --url, --data-dir, REDISCACHE_URL, REDISCACHE_DATA_DIR, the default."""
        if self._hub is None:
            url, data_dir = resolve_target(self.url, self.data_dir)
            began = time.perf_counter()
            if url is not None:
                self.log(f"server: {redact(url)}")
                self._hub = connect(url)
            else:
                config = self.server_config()
                if data_dir is not None:
                    config = srv.ServerConfig(data_dir=Path(data_dir))
                self.log(f"server: the embedded server in {config.data_dir}")
                line = StartProgressLine()
                try:
                    srv.ensure_running(config, progress=line)
                finally:
                    line.close()
                self._hub = connect(server=config)
            info = self._hub.server
            where = f" at {info.unix_socket or f'{info.host}:{info.port}'}" if info else ""
            self.log(f"connected{where} in {time.perf_counter() - began:.2f} s")
        return self._hub

    def space(self, name: str) -> Space | PartitionedSpace:
        """The space ``name``; an ACL user refused it hears which command it may not run
        there (not the library call that opens the space)."""
        try:
            return self.hub().space(name)
        except PermissionDeniedError as exc:
            ctx = click.get_current_context(silent=True)
            command = ctx.command_path.split(" ", 1)[-1] if ctx is not None else "open"
            error = PermissionDeniedError(
                denied_message(
                    f"{command} in space {name!r}",
                    user=exc.user,
                    space=name,
                    needs=exc.needs,
                    reason=exc.reason,
                )
            )
            error.user, error.space, error.needs = exc.user, name, exc.needs
            error.reason, error.operation, error.final = exc.reason, exc.operation, True
            raise error from exc

    def single(self, name: str, doing: str) -> Space:
        """The space ``name`` for a command that a partitioned space does not offer yet
        (``doing``: stages, diff), which then gets a clear error."""
        sp = self.space(name)
        if isinstance(sp, PartitionedSpace):
            raise InvalidInputError(
                f"space {name!r} is partitioned ({sp.partitions} partitions): {doing} "
                "is not available on partitioned spaces yet (docs/scale.md)"
            )
        return sp

    def close(self) -> None:
        if self._hub is not None:
            self._hub.close()
        self.log(f"done in {time.perf_counter() - self.started:.2f} s")


def friendly(fn: F) -> F:
    """Turn expected failures into one clean line on stderr and exit status 1."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RediscacheError as exc:
            _trace()
            fail(str(exc))
        except redis.RedisError as exc:  # a server that went away mid-command
            _trace()
            fail(f"redis: {exc}")
        except BrokenPipeError:
            raise  # the reader went away: main() ends quietly
        except OSError as exc:
            _trace()
            fail(str(exc))

    return wrapper  # type: ignore[return-value]


def _trace() -> None:
    """With -v, the traceback of the exception being handled, on stderr (before the one
    line of the error): where an expected failure came from."""
    ctx = click.get_current_context(silent=True)
    state = ctx.find_object(State) if ctx is not None else None
    if state is not None and state.verbose:
        click.echo(traceback.format_exc().rstrip(), err=True)


class _Redacting(logging.Filter):
    """Hides passwords in every log line the CLI prints (-v, -vv: redis-py's too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        return True


def fail(message: str) -> None:
    """Print ``error: message`` (passwords hidden) on stderr and exit with status 1."""
    click.echo(f"error: {redact(message)}", err=True)
    sys.exit(1)


def json_option(fn: F) -> F:
    """``--json`` on a read command (the same as the global ``rediscache --json``)."""
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")(fn)


def _take_data_dir(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        ctx.ensure_object(State).data_dir = value


def data_dir_option(fn: F) -> F:
    """``--data-dir`` on a server command (the same as the global ``rediscache
    --data-dir``, which it overrides), so that it may follow the command too."""
    return click.option(
        "--data-dir",
        type=click.Path(path_type=Path),
        expose_value=False,
        callback=_take_data_dir,
        help="Data directory of the embedded server or local cluster (as rediscache --data-dir).",
    )(fn)


def wants_json(state: State, as_json: bool) -> bool:
    return state.as_json or as_json


def _plain(value: Any) -> Any:
    """JSON-ready form of dataclasses, numpy values and tuples."""
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):  # metadata may hold bytes: shown as text, odd bytes escaped
        return value.decode("utf-8", "backslashreplace")
    return value


def emit(value: Any) -> None:
    """Print ``value`` as stable, indented JSON on stdout."""
    click.echo(json.dumps(_plain(value), indent=2, ensure_ascii=False))


def plural(n: int, word: str, many: str | None = None) -> str:
    """``"1 key"``, ``"2 keys"``, ``"1,000 rows"``."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def confirm(yes: bool, question: str) -> None:
    """Ask ``question`` unless ``--yes``; stop with status 1 when declined or not asked."""
    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"{question.rstrip('?')}: refusing without --yes (no terminal to ask on)")
    if not click.confirm(question, default=False, err=True):
        fail("aborted")


@contextmanager
def progress(label: str, total: int | None = None) -> Iterator[Callable[[int, int | None], None]]:
    """A callback ``(done, total)`` drawing a progress bar with rate and ETA on stderr when
    it is a terminal; silent otherwise (pipes, CI, tests). The bar appears at the first
    call, sized by the total it reports (or ``total``)."""
    if not sys.stderr.isatty():
        yield lambda done, total: None
        return
    started = time.perf_counter()
    shown = [0]
    bars: list[Any] = []

    def rate(_: Any) -> str:
        elapsed = time.perf_counter() - started
        return f"{shown[0] / elapsed:,.0f} rows/s" if elapsed > 0 and shown[0] else ""

    def update(done: int, reported: int | None) -> None:
        if not bars:
            bar = click.progressbar(
                length=reported or total or 0,
                label=label,
                file=sys.stderr,
                show_pos=True,
                item_show_func=rate,
            )
            bars.append(bar.__enter__())
        delta, shown[0] = done - shown[0], done
        bars[0].update(delta, done)

    try:
        yield update
    finally:
        if bars:
            bars[0].__exit__(None, None, None)


class StartProgressLine:
    """A :func:`rediscache.server.start` progress callback: one line on stderr when the
    server turns out to be loading its data, and on a terminal that line kept up to date
    (percent of the AOF replayed, bytes, elapsed seconds, Redis's estimate of the rest).
    :meth:`close` ends the line."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.said = False
        self.drawn = False
        self.last: srv.StartProgress | None = None

    def __call__(self, p: srv.StartProgress) -> None:
        if p.phase != "loading":
            return
        if not self.said:
            self.said = True
            click.echo(
                f"redis-server (pid {p.pid}) is loading its data (replaying the AOF and "
                "rebuilding indexes); waiting for it...",
                err=True,
            )
        if not self.tty:
            return
        if p.percent is not None:  # a busy load may not answer every probe: keep the last
            self.last = p
        seen = self.last
        parts = ["loading"]
        if seen is not None and seen.percent is not None:
            stale = "" if seen is p else " (last answer)"
            parts = [f"loading: {seen.percent:5.1f}%{stale}"]
            if seen.loaded_bytes is not None and seen.total_bytes:
                parts.append(f"{human_bytes(seen.loaded_bytes)} of {human_bytes(seen.total_bytes)}")
        parts.append(f"{p.elapsed:.0f} s")
        if p.eta_seconds is not None:
            parts.append(f"Redis estimates {p.eta_seconds:.0f} s left")
        click.echo("\r" + ", ".join(parts) + "\x1b[K", nl=False, err=True)
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            click.echo("", err=True)
            self.drawn = False


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} GB"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--url",
    metavar="URL",
    help="Redis with the search module (redis://, rediss://, unix://; a Redis Cluster: "
    "redis+cluster://, or any node's redis://; for TLS add ?ssl_ca_certs=/path/ca.pem). "
    "Default: the embedded local server. Env: REDISCACHE_URL.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help="Data directory of the embedded server (default ~/.local/share/rediscache/server). "
    "Env: REDISCACHE_DATA_DIR.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Say more on stderr: the server used, progress and timings, the traceback of an "
    "error (-vv also the library's debug log).",
)
@click.version_option(package_name="rediscache-hub", prog_name="rediscache")
@click.pass_context
def cli(
    ctx: click.Context, url: str | None, data_dir: Path | None, as_json: bool, verbose: int
) -> None:
    """rediscache: an embedding hub on Redis.

    Store, fetch, search, average and version embeddings in Redis with vector search.
    Without --url, commands use the embedded local server, started on demand. Read
    commands print JSON with --json (here or after the command). Expected failures print
    one line and exit 1; usage errors exit 2.

    \b
    Example:
      rediscache demo                                  # sample embeddings, searched
      rediscache space create items --dim 384 --field genre:tag
      rediscache import items vectors.npy --meta meta.jsonl
      rediscache search items --key item:7 -k 5 --filter genre=drama
      rediscache snapshot items --label before-retrain
    """
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _Redacting) for f in handler.filters):
            handler.addFilter(_Redacting())
    state = State(url, data_dir, as_json, verbose)
    ctx.obj = state
    ctx.call_on_close(state.close)
