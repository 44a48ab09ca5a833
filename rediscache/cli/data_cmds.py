"""``rediscache get``, ``search``, ``average`` and ``combine``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np
import numpy.typing as npt

from ..errors import InvalidInputError, KeyNotFoundError
from ..operations import Averaged
from .base import State, cli, emit, friendly, json_option, wants_json
from .parse import parse_filters, parse_vector, version_ref


def _vector_text(vec: npt.NDArray[Any], full: bool) -> str:
    values = [float(x) for x in vec]
    if full or len(values) <= 8:
        return json.dumps(values)
    head = ", ".join(f"{x:.6g}" for x in values[:6])
    return f"[{head}, ...] ({len(values)} values, norm {float(np.linalg.norm(vec)):.4g})"


@cli.command(short_help="Print the vector and metadata of KEY.")
@click.argument("space_name", metavar="SPACE")
@click.argument("key")
@click.option("--version", metavar="VERSION", help="Read this version (id as 3 or v3, or label).")
@click.option("--full", is_flag=True, help="Print every value of the vector.")
@json_option
@click.pass_obj
@friendly
def get(
    state: State, space_name: str, key: str, version: str | None, full: bool, as_json: bool
) -> None:
    """Print the vector and metadata stored under KEY.

    \b
    Example:
      rediscache get items item:7
      rediscache get items item:7 --json | jq .metadata
    """
    sp = state.space(space_name)
    source = sp if version is None else sp.at(version_ref(version))
    record = source.get_record(key)
    if record is None:
        raise KeyNotFoundError(f"no embedding {key!r} in space {space_name!r}")
    if wants_json(state, as_json):
        emit({"key": key, "vector": record.vector, "metadata": record.metadata})
        return
    click.echo(f"key:      {key}")
    click.echo(f"vector:   {_vector_text(record.vector, full)}")
    click.echo(f"metadata: {json.dumps(record.metadata, ensure_ascii=False, default=str)}")


@cli.command(short_help="Find the K nearest embeddings.")
@click.argument("space_name", metavar="SPACE")
@click.option("--key", help="Search from the embedding stored under this key (itself excluded).")
@click.option("--vector", "vector_text", metavar="JSON", help="Search from a vector: '[0.1, ...]'.")
@click.option(
    "--vector-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Search from a vector in a .npy file or a JSON list.",
)
@click.option("-k", type=click.IntRange(1, 10_000), default=10, show_default=True, help="Hits.")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Restrict to matching metadata (repeatable, combined with AND): genre=drama, "
    "genre=drama|noir (any of), year=1999, year=1990..2000, year=1990.., title=new york.",
)
@click.option("--ef", type=click.IntRange(1, 100_000), help="HNSW EF_RUNTIME for this query.")
@click.option(
    "--offset",
    type=click.IntRange(0, 9_999),
    default=0,
    help="Skip this many hits (paging). In an HNSW space every page must use one --ef of at "
    "least the deepest offset + k.",
)
@click.option("--version", metavar="VERSION", help="Search this version (id as 3 or v3, or label).")
@json_option
@click.pass_obj
@friendly
def search(
    state: State,
    space_name: str,
    key: str | None,
    vector_text: str | None,
    vector_file: Path | None,
    k: int,
    filters: tuple[str, ...],
    ef: int | None,
    offset: int,
    version: str | None,
    as_json: bool,
) -> None:
    """Find the K nearest embeddings to a stored key or a given vector.

    \b
    Example:
      rediscache search items --key item:7 -k 5
      rediscache search items --key item:7 --filter genre=drama
      rediscache search items --vector "$(python3 -c 'print([0.1] * 384)')"   # the space's dim
      rediscache search items --vector-file q.npy --filter year=1990..2000 --json
      rediscache search items --key item:7 -k 10 --offset 10 --ef 20   # the second page
    """
    vector = parse_vector(vector_text, vector_file)
    if (vector is None) == (key is None):
        raise click.UsageError("give exactly one of --key, --vector or --vector-file")
    sp = state.space(space_name)
    source = sp if version is None else sp.at(version_ref(version))
    flt = parse_filters(filters, dict(sp.config.fields))
    if key is not None:
        stored = source.get(key)
        if stored is None:
            raise KeyNotFoundError(f"no embedding {key!r} in space {space_name!r}")
        hits = source.search(stored, k, filter=flt, ef=ef, offset=offset, exclude=[key])
    else:
        hits = source.search(vector, k, filter=flt, ef=ef, offset=offset)
    if wants_json(state, as_json):
        emit([{"key": h.key, "distance": h.distance, "metadata": h.metadata} for h in hits])
        return
    if not hits:
        click.echo("no hits")
        return
    width = max(len("key"), *(len(h.key) for h in hits))
    click.echo(f"{'#':>3}  {'key':<{width}}  {'distance':>10}  metadata   (lower = closer)")
    for rank, h in enumerate(hits, 1):
        meta = json.dumps(h.metadata, ensure_ascii=False, default=str) if h.metadata else ""
        click.echo(f"{rank:>3}  {h.key:<{width}}  {h.distance:>10.6f}  {meta}".rstrip())


def _result(
    state: State, as_json: bool, vec: npt.NDArray[Any], into: str | None, **extra: Any
) -> None:
    if wants_json(state, as_json):
        emit({"vector": vec, "stored_as": into, **extra})
        return
    for name, value in extra.items():
        shown = (", ".join(value) or "-") if isinstance(value, list) else value
        click.echo(f"{name}: {shown}")
    click.echo(f"vector: {_vector_text(vec, False)}")
    if into is not None:
        click.echo(f"stored as {into!r}")


@cli.command(short_help="Average the embeddings of KEYS.")
@click.argument("space_name", metavar="SPACE")
@click.argument("keys", nargs=-1, required=True)
@click.option("--weights", metavar="W,W,...", help="One weight per key (default: equal).")
@click.option("--normalize", is_flag=True, help="Scale the mean to unit length.")
@click.option(
    "--skip-missing", is_flag=True, help="Average the keys that exist; list the missing ones."
)
@click.option("--into", metavar="KEY", help="Also store the mean under KEY (atomic).")
@json_option
@click.pass_obj
@friendly
def average(
    state: State,
    space_name: str,
    keys: tuple[str, ...],
    weights: str | None,
    normalize: bool,
    skip_missing: bool,
    into: str | None,
    as_json: bool,
) -> None:
    """Average the embeddings of KEYS on the server (atomic), optionally storing it.

    \b
    Example:
      rediscache average items item:7 item:9 item:12
      rediscache average items item:7 item:9 --weights 2,1 --normalize --into user:42
    """
    sp = state.space(space_name)
    w = _weights(weights)
    if skip_missing:
        done = sp.average(list(keys), weights=w, into=into, normalize=normalize, missing="skip")
        assert isinstance(done, Averaged)
        _result(state, as_json, done.vector, into, used=done.used, skipped=done.skipped,
                missing=list(done.missing))  # fmt: skip
    else:
        vec = sp.average(list(keys), weights=w, into=into, normalize=normalize)
        assert not isinstance(vec, Averaged)
        _result(state, as_json, vec, into)


def _weights(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: use numbers separated by commas", param_hint="--weights"
        ) from None


@cli.command(short_help="Add and subtract embeddings on the server.")
@click.argument("space_name", metavar="SPACE")
@click.option("--add", "add", multiple=True, metavar="KEY", help="A key to add (repeat for more).")
@click.option(
    "--subtract", multiple=True, metavar="KEY", help="A key to subtract (repeat for more)."
)
@click.option("--weights", metavar="W,W,...", help="One weight per item, --add items first.")
@click.option("--no-normalize", is_flag=True, help="Keep the raw sum (default: unit length).")
@click.option("--into", metavar="KEY", help="Also store the result under KEY (atomic).")
@click.option(
    "-k",
    type=click.IntRange(0, 1000),
    default=0,
    help="Also show the K nearest hits, inputs excluded.",
)
@json_option
@click.pass_obj
@friendly
def combine(
    state: State,
    space_name: str,
    add: tuple[str, ...],
    subtract: tuple[str, ...],
    weights: str | None,
    no_normalize: bool,
    into: str | None,
    k: int,
    as_json: bool,
) -> None:
    """Vector arithmetic on the server: the sum of --add minus the sum of --subtract.

    \b
    Example:
      rediscache combine words --add king --add woman --subtract man -k 5
      rediscache combine items --add item:7 --add item:9 --subtract item:3 --into mix:1

    Every --add and --subtract names one key, as every KEY of `average` does: keys are never
    split at commas.
    """
    plus, minus = list(add), list(subtract)
    if not plus and not minus:
        raise click.UsageError("give at least one --add or --subtract key")
    sp = state.space(space_name)
    vec = sp.combine(plus, minus, weights=_weights(weights), into=into, normalize=not no_normalize)
    hits: list[dict[str, Any]] = []
    if k:
        try:
            found = sp.search(vec, k, exclude=[*plus, *minus, *([into] if into else [])])
        except InvalidInputError as exc:
            raise InvalidInputError(f"searching from the result: {exc}") from exc
        hits = [{"key": h.key, "distance": h.distance, "metadata": h.metadata} for h in found]
    if wants_json(state, as_json):
        emit({"vector": vec, "stored_as": into, "hits": hits})
        return
    _result(state, False, vec, into)
    if hits:
        click.echo(f"{'#':>3}  key  distance (lower = closer)")
    for rank, h in enumerate(hits, 1):
        click.echo(f"{rank:>3}  {h['key']}  {h['distance']:.6f}")


__all__ = ["average", "combine", "get", "search"]
