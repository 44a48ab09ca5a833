"""``rediscache stage``, ``stages``, ``publish``, ``discard`` and ``collect-garbage``: model
releases built aside (``rediscache import SPACE FILE --stage LABEL`` loads them)."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict

import click

from ..errors import StageNotFoundError
from ..partitioned import PartitionedSpace, PartitionedStage
from ..space import Space, Stage
from .base import State, cli, confirm, emit, friendly, json_option, wants_json


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def stage_of(space: Space | PartitionedSpace, label: str) -> Stage | PartitionedStage:
    """The stage ``label`` of ``space``, staged (empty) when it does not exist yet."""
    try:
        return space.staged(label)
    except StageNotFoundError:
        return space.stage(label)


@cli.command(short_help="Open a stage: a release built aside.")
@click.argument("space_name", metavar="SPACE")
@click.argument("label", required=False)
@click.option(
    "--from-live",
    is_flag=True,
    help="Start from a copy of the live contents (for a partial update) instead of empty. "
    "Live writers wait while the copy is made (about 25-40 us per embedding on a 2-core "
    "box: docs/versions.md).",
)
@json_option
@click.pass_obj
@friendly
def stage(state: State, space_name: str, label: str | None, from_live: bool, as_json: bool) -> None:
    """Open a stage of SPACE: a release built aside, invisible to readers until published.

    Load it with `rediscache import SPACE FILE --stage LABEL`, compare it with
    `rediscache diff SPACE --stage LABEL`, make it live with `rediscache publish`.

    \b
    Example:
      rediscache stage items model-b
      rediscache import items model-b.npy --meta meta.jsonl --stage model-b
      rediscache diff items --stage model-b && rediscache publish items model-b
    """
    made = state.space(space_name).stage(label, empty=not from_live)
    count = made.count()
    if wants_json(state, as_json):
        emit({"space": space_name, "label": made.label, "count": count})
    else:
        click.echo(f"staged {made.label!r} of {space_name!r} ({count:,} embeddings)")


@cli.command()
@click.argument("space_name", metavar="SPACE")
@json_option
@click.pass_obj
@friendly
def stages(state: State, space_name: str, as_json: bool) -> None:
    """List the stages of SPACE, oldest first.

    \b
    Example:
      rediscache stages items --json
    """
    found = state.space(space_name).stages()
    if wants_json(state, as_json):
        emit([asdict(s) for s in found])
        return
    if not found:
        click.echo(f"no stages (open one with: rediscache stage {space_name} LABEL)")
    for s in found:
        note = "" if s.complete else "  incomplete (its copy was interrupted: discard it)"
        click.echo(f"{s.label:<24} {_when(s.created_at)}  {s.count:>10,}{note}")


@cli.command(short_help="Make the stage LABEL the live SPACE.")
@click.argument("space_name", metavar="SPACE")
@click.argument("label")
@click.option(
    "--keep/--no-keep",
    default=True,
    show_default=True,
    help="Keep the replaced live contents as a version (to roll back to).",
)
@click.option("--version-label", help="Label of the version keeping the replaced contents.")
@click.option(
    "--timeout",
    type=click.FloatRange(0),
    default=600.0,
    show_default=True,
    help="Longest wait (s) for the stage's index to be built before the switch.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_obj
@friendly
def publish(
    state: State,
    space_name: str,
    label: str,
    keep: bool,
    version_label: str | None,
    timeout: float,
    yes: bool,
    as_json: bool,
) -> None:
    """Make the stage LABEL the live SPACE, in one atomic switch.

    Its index is built first if needed (readers are not affected meanwhile). The replaced
    contents become a version (unless --no-keep): `rediscache rollback SPACE VERSION`
    undoes the release.

    \b
    Example:
      rediscache publish items model-b --version-label model-a
      rediscache publish items model-b --no-keep --yes
    """
    sp = state.space(space_name)
    staged = sp.staged(label)
    count = staged.count()
    live = sp.count()
    what = "kept as a version" if keep else "deleted"
    confirm(
        yes,
        f"Make stage {label!r} ({count:,} embeddings) the live {space_name!r} (now {live:,}; "
        f"its contents {what})?",
    )
    state.log(f"publish: building the index of {count:,} embeddings if needed")
    version = staged.publish(keep=keep, label=version_label if keep else None, timeout=timeout)
    sp.collect_garbage()  # this process may exit now: finish what the switch left to delete
    if wants_json(state, as_json):
        emit({"space": space_name, "published": label, "count": count, "kept": version})
    elif version is None:
        click.echo(f"{space_name!r} is now stage {label!r} ({count:,} embeddings)")
    else:
        click.echo(
            f"{space_name!r} is now stage {label!r} ({count:,} embeddings); the replaced "
            f"contents are version {version}: `rediscache rollback {space_name} {version.id}` "
            f"goes back to them (snapshot first to keep this release too)"
        )


@cli.command(short_help="Discard the stage LABEL of SPACE.")
@click.argument("space_name", metavar="SPACE")
@click.argument("label")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
@friendly
def discard(state: State, space_name: str, label: str, yes: bool) -> None:
    """Discard the stage LABEL of SPACE (the live space is untouched).

    \b
    Example:
      rediscache discard items model-b --yes
    """
    sp = state.space(space_name)
    count = sp.staged(label).count()  # an unknown stage fails here, before asking
    confirm(yes, f"Discard stage {label!r} of {space_name!r} ({count:,} embeddings)?")
    sp.discard_stage(label)
    sp.collect_garbage()  # this process may exit now: finish the deletion
    click.echo(f"discarded stage {label!r} ({count:,} embeddings)")


@cli.command("collect-garbage", short_help="Delete what SPACE no longer uses, now.")
@click.argument("space_name", metavar="SPACE")
@json_option
@click.pass_obj
@friendly
def collect_garbage(state: State, space_name: str, as_json: bool) -> None:
    """Delete now what SPACE no longer uses (replaced generations, deleted versions,
    discarded stages), which is otherwise deleted in the background.

    \b
    Example:
      rediscache collect-garbage items
    """
    deleted = state.space(space_name).collect_garbage()
    if wants_json(state, as_json):
        emit({"space": space_name, "deleted": deleted})
    else:
        click.echo(f"deleted {deleted:,} embeddings no longer used by {space_name!r}")


__all__ = ["collect_garbage", "discard", "publish", "stage", "stage_of", "stages"]
