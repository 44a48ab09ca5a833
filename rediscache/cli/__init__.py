"""The ``rediscache`` command line: a thin layer over the library (the only package using
click). ``base`` holds the root group and shared helpers, ``parse`` the pure parsing of
option values; the other modules add the commands."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

import click

from . import acl_cmds, data_cmds, server_cmds, space_cmds, stage_cmds, version_cmds
from .base import Terminated, cli, interrupted_status

__all__ = ["cli", "main"]

_COMMANDS = (
    acl_cmds,
    data_cmds,
    server_cmds,
    space_cmds,
    stage_cmds,
    version_cmds,
)  # registered on import


def main() -> None:
    """Entry point of the ``rediscache`` console script.

    A reader that went away (``rediscache export ... | head``) ends the command quietly, as
    Unix tools do; Ctrl-C ends it with status 130 and one line (commands that write say how
    far they got before), SIGTERM the same way with status 143."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli(prog_name="rediscache", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt as exc:
        click.echo("terminated" if isinstance(exc, Terminated) else "interrupted", err=True)
        sys.exit(interrupted_status(exc))
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        # Python would complain once more when flushing stdout at exit: point it elsewhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated()
