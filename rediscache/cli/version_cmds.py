"""``rediscache snapshot``, ``versions``, ``rollback``, ``diff`` and ``delete-version``."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict

import click

from ..partitioned import PartitionedSpace
from ..space import Space
from ..versions import LIVE, Version
from .base import State, cli, confirm, emit, friendly, json_option, wants_json
from .parse import version_ref


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _version(sp: Space | PartitionedSpace, text: str) -> Version:
    return sp.version(version_ref(text))


@cli.command(short_help="Freeze SPACE as a version (instant).")
@click.argument("space_name", metavar="SPACE")
@click.option("--label", help="A unique name for the version (not only digits).")
@click.option(
    "--keep-last", type=click.IntRange(1), help="Then delete all but the N newest versions."
)
@json_option
@click.pass_obj
@friendly
def snapshot(
    state: State, space_name: str, label: str | None, keep_last: int | None, as_json: bool
) -> None:
    """Freeze the current contents of SPACE as a version (instant, nothing copied).

    \b
    Example:
      rediscache snapshot items --label before-retrain
      rediscache snapshot items --label nightly-2026-11-24 --keep-last 7
    """
    v = state.space(space_name).snapshot(label, keep_last=keep_last)
    if wants_json(state, as_json):
        emit(v)
    else:
        click.echo(f"snapshot {v}: {v.count:,} embeddings, {_when(v.created_at)}")


@cli.command()
@click.argument("space_name", metavar="SPACE")
@json_option
@click.pass_obj
@friendly
def versions(state: State, space_name: str, as_json: bool) -> None:
    """List the versions of SPACE, oldest first.

    \b
    Example:
      rediscache versions items
    """
    found = state.space(space_name).versions()
    if wants_json(state, as_json):
        emit([asdict(v) for v in found])
        return
    if not found:
        click.echo(f"no versions (make one with: rediscache snapshot {space_name})")
    for v in found:
        click.echo(f"v{v.id:<4} {_when(v.created_at)}  {v.count:>10,}  {v.label or ''}".rstrip())


@cli.command(short_help="Make the live SPACE exactly VERSION.")
@click.argument("space_name", metavar="SPACE")
@click.argument("version")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_obj
@friendly
def rollback(state: State, space_name: str, version: str, yes: bool, as_json: bool) -> None:
    """Make the live SPACE exactly VERSION (id as 3 or v3, or label): an atomic, instant switch.

    The live contents are replaced; snapshot first to be able to come back to them. VERSION
    is looked up as a label first: a version labelled "v1" wins over the id shown as v1
    (`versions` lists both).

    \b
    Example:
      rediscache snapshot items --label bad-model && rediscache rollback items before-retrain
      rediscache rollback items 3 --yes
    """
    sp = state.space(space_name)
    v = _version(sp, version)
    confirm(yes, f"Replace the live contents of {space_name!r} with version {v} ({v.count:,})?")
    done = sp.rollback(v)
    sp.collect_garbage()  # this process may exit now: finish what the switch left to delete
    if wants_json(state, as_json):
        emit(done)
    else:
        click.echo(f"{space_name!r} is now version {done} ({done.count:,} embeddings)")


@cli.command(short_help="Compare two versions of SPACE.")
@click.argument("space_name", metavar="SPACE")
@click.argument("a", required=False)
@click.argument("b", default=LIVE)
@click.option(
    "--stage",
    "stage_label",
    metavar="LABEL",
    help="Compare the live space with the stage LABEL instead (a release before publishing).",
)
@click.option(
    "--sample",
    type=click.IntRange(0),
    default=100,
    show_default=True,
    help="Keys whose neighbours are compared.",
)
@click.option(
    "-k",
    type=click.IntRange(1, 1000),
    default=10,
    show_default=True,
    help="Neighbours per sampled key.",
)
@click.option(
    "--show",
    type=click.IntRange(0),
    default=5,
    show_default=True,
    help="Keys listed per kind of change.",
)
@json_option
@click.pass_obj
@friendly
def diff(
    state: State,
    space_name: str,
    a: str | None,
    b: str,
    stage_label: str | None,
    sample: int,
    k: int,
    show: int,
    as_json: bool,
) -> None:
    """Compare version A with version B (default: the live space): keys added, removed and
    changed, how far the vectors moved (cosine distance) and how much neighbourhoods changed.

    \b
    Example:
      rediscache diff items before-retrain            # that version -> live
      rediscache diff items 3 5 --sample 500 --json
      rediscache diff items --stage model-b           # live -> the stage, before publishing
    """
    sp = state.single(space_name, "diff")
    if (a is None) == (stage_label is None):
        raise click.UsageError("give a version A, or --stage LABEL (not both)")
    if stage_label is not None:
        d = sp.staged(stage_label).diff(sample=sample, k=k)
    else:
        assert a is not None
        d = sp.diff(
            LIVE if a == LIVE else version_ref(a),
            LIVE if b == LIVE else version_ref(b),
            sample=sample,
            k=k,
        )
    if wants_json(state, as_json):
        emit(d)
        return
    click.echo(f"{d.a} -> {d.b}")
    for name, keys in (("added", d.added), ("removed", d.removed), ("changed", d.changed)):
        listed = ", ".join(keys[:show]) + (", ..." if len(keys) > show else "")
        click.echo(f"  {name + ':':9}{len(keys):>9,}  {listed}".rstrip())
    click.echo(f"  {'same:':9}{d.unchanged:>9,}")
    for label, dr in (("common", d.drift), ("changed", d.changed_drift)):
        click.echo(
            f"  drift (cosine distance over {dr.count:,} {label} keys): mean {dr.mean:.4g}, "
            f"p50 {dr.p50:.4g}, p90 {dr.p90:.4g}, p99 {dr.p99:.4g}, max {dr.max:.4g}"
        )
    if d.neighbour_overlap is None:
        click.echo("  neighbour overlap: - (fewer than 2 common keys)")
    else:
        click.echo(
            f"  top-{d.k_used} neighbour overlap on {d.overlap_sample} keys: "
            f"{d.neighbour_overlap:.3f} (1.0 = unchanged)"
        )
        if d.overlap_note:
            click.echo(f"  note: {d.overlap_note}")


@cli.command("delete-version", short_help="Delete a version of SPACE.")
@click.argument("space_name", metavar="SPACE")
@click.argument("version")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
@friendly
def delete_version(state: State, space_name: str, version: str, yes: bool) -> None:
    """Delete VERSION of SPACE (id as 3 or v3, or label; a label "v1" wins over the id
    shown as v1); memory nothing else uses is reclaimed.

    \b
    Example:
      rediscache delete-version items before-retrain --yes
    """
    sp = state.space(space_name)
    v = _version(sp, version)
    confirm(yes, f"Delete version {v} of {space_name!r}?")
    sp.delete_version(v)
    sp.collect_garbage()  # this process may exit now: finish what the deletion left
    click.echo(f"deleted version {v}")


__all__ = ["delete_version", "diff", "rollback", "snapshot", "versions"]
