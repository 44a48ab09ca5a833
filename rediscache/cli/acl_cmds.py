"""``rediscache acl grant|revoke|list|passwd``: access control per space, enforced by the
server's Redis ACL (docs/security.md). Run them as an owner."""

from __future__ import annotations

import sys

import click

from ..access import OWNER, ROLES, Granted, UserGrants
from .base import State, cli, emit, fail, friendly, json_option, wants_json


def _grants_json(g: UserGrants) -> dict[str, object]:
    return {"user": g.user, "owner": g.owner, "spaces": dict(g.spaces), "on_server": g.on_server}


def _describe(g: UserGrants, existing: set[str] | None = None) -> str:
    """``g``'s grants in words; a space not in ``existing`` (an admin dropped it: its
    grants stay until an owner creates it again) is marked dropped."""
    if g.owner:
        return "owner (every space)"
    if not g.spaces:
        return "no spaces"
    gone = set(g.spaces) - existing if existing is not None else set()
    return ", ".join(
        f"{space}: {role}" + (" (dropped)" if space in gone else "")
        for space, role in sorted(g.spaces.items())
    )


def _show_password(granted: Granted, shown: bool) -> None:
    """Print a password made by rediscache once, on stderr (never in --json output)."""
    if granted.password is None or not shown:
        return
    click.echo(
        f"password of {granted.grants.user!r} (shown once, rediscache keeps no copy): "
        f"{granted.password}",
        err=True,
    )


@cli.group()
def acl() -> None:
    """Give users roles on spaces (Redis ACL).

    Access control per space, enforced by the Redis server's ACL.
    Roles on a space: read (get, search), write (read + put, delete, snapshot),
    admin (write + rollback, publish, drop); owner: everything, on every space.
    Connect as a user with a URL holding its name and password, e.g.
    redis://search-team:PASSWORD@host:6379. See docs/security.md.

    \b
    Example:
      rediscache acl grant search-team items --role read
      rediscache acl grant ingest items --role write
      rediscache acl list
      rediscache acl passwd ingest --keep-old
      rediscache acl revoke search-team
    """


@acl.command("grant")
@click.argument("user")
@click.argument("spaces", nargs=-1, metavar="[SPACE]...")
@click.option(
    "--role",
    type=click.Choice([*ROLES, OWNER]),
    required=True,
    help="read, write or admin on each SPACE; owner takes no SPACE.",
)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from stdin (first line) instead of making a random one; "
    "replaces the passwords of an existing user.",
)
@json_option
@click.pass_obj
@friendly
def grant(
    state: State,
    user: str,
    spaces: tuple[str, ...],
    role: str,
    password_stdin: bool,
    as_json: bool,
) -> None:
    """Give USER a role on each SPACE.

    Its roles on other spaces stay; --role owner takes no SPACE. A new user gets a random
    password, printed once on stderr (never in --json output): store it where the user's
    service reads its secrets.

    \b
    Example:
      rediscache acl grant search-team items users --role read
      rediscache acl grant ingest items --role write --json
      printf '%s\\n' "$PASSWORD" | rediscache acl grant etl items --role admin --password-stdin
    """
    if role == OWNER and spaces:
        raise click.UsageError("--role owner takes no SPACE: an owner holds every space")
    if role != OWNER and not spaces:
        raise click.UsageError(f"give at least one SPACE for --role {role}")
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    granted = state.hub().grant(user, list(spaces) or None, role, password=password)
    if wants_json(state, as_json):
        emit(_grants_json(granted.grants))
    else:
        click.echo(f"{user}: {_describe(granted.grants)}")
    _show_password(granted, shown=not password_stdin)


@acl.command("revoke")
@click.argument("user")
@click.argument("spaces", nargs=-1, metavar="[SPACE]...")
@json_option
@click.pass_obj
@friendly
def revoke(state: State, user: str, spaces: tuple[str, ...], as_json: bool) -> None:
    """Take USER's roles away, or delete USER.

    With SPACE arguments, only the roles on them go (the others stay); with none, the user
    is deleted and the server closes its open connections. Exits 1 when there was nothing
    to revoke (no such user, or no role on a SPACE).

    \b
    Example:
      rediscache acl revoke search-team users
      rediscache acl revoke search-team
    """
    hub = state.hub()
    if not hub.revoke(user, list(spaces) or None):
        grants = hub.users().get(user)
        if grants is None:
            fail(
                f"no user {user!r} was granted a role: nothing to revoke (see rediscache acl list)"
            )
        else:
            fail(
                f"user {user!r} has no role on {', '.join(map(repr, spaces))}: nothing to "
                f"revoke (it has: {_describe(grants)})"
            )
    if wants_json(state, as_json):
        emit({"user": user, "revoked": True, "spaces": list(spaces) or None})
    elif spaces:
        click.echo(f"{user}: no longer on {', '.join(spaces)}")
    else:
        click.echo(f"{user}: deleted")


@acl.command("list")
@json_option
@click.pass_obj
@friendly
def list_(state: State, as_json: bool) -> None:
    """List users with their spaces and roles.

    Every user rediscache granted a role. A user marked 'missing' was forgotten by the
    server (restarted without an ACL file): grant it again. A space marked 'dropped' was
    dropped by an admin: its grants end when an owner creates it again (or revoke them).

    \b
    Example:
      rediscache acl list
      rediscache acl list --json
    """
    hub = state.hub()
    users = hub.users()
    existing = set(hub.spaces())
    if wants_json(state, as_json):
        emit(
            [
                {**_grants_json(g), "dropped": sorted(set(g.spaces) - existing)}
                for g in users.values()
            ]
        )
        return
    if not users:
        click.echo("no users (grant one with: rediscache acl grant USER SPACE --role read)")
    for g in users.values():
        missing = "" if g.on_server else "  [missing on the server: grant it again]"
        click.echo(f"{g.user}: {_describe(g, existing)}{missing}")


@acl.command("passwd")
@click.argument("user")
@click.option(
    "--keep-old",
    is_flag=True,
    help="Keep the current passwords valid too, while clients move to the new one; run "
    "again without it to remove them.",
)
@click.option("--password-stdin", is_flag=True, help="Read the new password from stdin.")
@json_option
@click.pass_obj
@friendly
def passwd(state: State, user: str, keep_old: bool, password_stdin: bool, as_json: bool) -> None:
    """Give USER a new password.

    A random one unless --password-stdin, printed once on stderr.

    \b
    Example:
      rediscache acl passwd ingest --keep-old    # both passwords work while clients move
      rediscache acl passwd ingest               # then only the new one
    """
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    granted = state.hub().passwd(user, password, keep_old=keep_old)
    if wants_json(state, as_json):
        emit({"user": user, "kept_old": keep_old})
    else:
        click.echo(f"{user}: new password set" + (" (old ones still valid)" if keep_old else ""))
    _show_password(granted, shown=not password_stdin)
