"""The ``rediscache`` command line: a thin layer over the library (the only package using
click). ``base`` holds the root group and shared helpers, ``parse`` the pure parsing of
option values; the other modules add the commands."""

from __future__ import annotations

from . import data_cmds, server_cmds, space_cmds, version_cmds
from .base import cli

__all__ = ["cli", "main"]

_COMMANDS = (data_cmds, server_cmds, space_cmds, version_cmds)  # registered on import


def main() -> None:
    """Entry point of the ``rediscache`` console script."""
    cli(prog_name="rediscache")
