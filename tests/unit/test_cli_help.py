"""The CLI's help listings: every command's summary is complete (click cuts a summary
longer than its limit with "..."). No server."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from rediscache.cli import cli


def _commands(group: click.Group, path: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        found.append((f"{path} {name}".strip(), command))
        if isinstance(command, click.Group):
            found += _commands(command, f"{path} {name}")
    return found


@pytest.mark.parametrize(("path", "command"), _commands(cli), ids=lambda x: str(x))
def test_every_command_summary_is_short_and_complete(path: str, command: click.Command) -> None:
    summary = command.get_short_help_str(limit=45)  # click's default limit
    assert summary and not summary.endswith("..."), (path, summary)


@pytest.mark.parametrize("group", [[], ["acl"], ["space"], ["server"]])
def test_no_listing_truncates_a_summary(group: list[str]) -> None:
    res = CliRunner().invoke(cli, [*group, "--help"], terminal_width=80)
    assert res.exit_code == 0
    listing = res.output.split("Commands:", 1)[1]
    assert "..." not in listing, listing
