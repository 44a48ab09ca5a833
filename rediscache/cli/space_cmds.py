"""``rediscache space ...``, ``import`` and ``export``."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from .. import transfer
from ..errors import SchemaMismatchError
from ..space import VersionView
from .base import (
    State,
    Terminated,
    cli,
    confirm,
    emit,
    fail,
    friendly,
    human_bytes,
    interrupted_status,
    json_option,
    plural,
    progress,
    wants_json,
)
from .parse import parse_fields, version_ref
from .stage_cmds import stage_of

# ---------------------------------------------------------------- space


@cli.group(short_help="Create, list, inspect and drop spaces.")
def space() -> None:
    """Create, list, inspect and drop spaces (collections of embeddings of one dim).

    \b
    Example:
      rediscache space create items --dim 384 --field genre:tag --field year:numeric
      rediscache space list
      rediscache space info items
      rediscache space drop items --yes
    """


@space.command("create", short_help="Create the space NAME.")
@click.argument("name")
@click.option("--dim", type=click.IntRange(1, 32768), required=True, help="Vector length.")
@click.option(
    "--metric",
    type=click.Choice(["cosine", "l2", "ip"]),
    default="cosine",
    show_default=True,
    help="Distance: cosine (1 - cos), l2 (squared euclidean), ip (1 - dot).",
)
@click.option(
    "--algorithm",
    type=click.Choice(["hnsw", "flat"]),
    default="hnsw",
    show_default=True,
    help="hnsw (approximate, fast) or flat (exact brute force).",
)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "float64", "float16", "bfloat16"]),
    default="float32",
    show_default=True,
    help="How vectors are stored.",
)
@click.option(
    "--field",
    "fields",
    multiple=True,
    metavar="NAME:TYPE",
    help="A metadata field to index for filters: TYPE is tag, numeric or text. Repeatable.",
)
@click.option("--m", "hnsw_m", type=click.IntRange(2, 512), help="HNSW M (default 16).")
@click.option(
    "--ef-construction", type=click.IntRange(1, 4096), help="HNSW EF_CONSTRUCTION (default 200)."
)
@click.option("--ef-runtime", type=click.IntRange(1, 4096), help="HNSW EF_RUNTIME (default 100).")
@click.option(
    "--ttl",
    type=click.FloatRange(0.001),
    metavar="SECONDS",
    help="Default time to live of the embeddings written (a cache). Default: forever.",
)
@click.option(
    "--expiring",
    is_flag=True,
    help="Entries may expire (per-write ttls) although there is no default --ttl.",
)
@click.option(
    "--partitions",
    type=click.IntRange(1, 1024),
    default=1,
    show_default=True,
    help="Spread the space over N partitions, each with its own index; on a Redis "
    "Cluster they go to different primaries (a space larger than one shard).",
)
@click.option("--exist-ok", is_flag=True, help="Succeed if the same space already exists.")
@json_option
@click.pass_obj
@friendly
def space_create(
    state: State,
    name: str,
    dim: int,
    metric: str,
    algorithm: str,
    dtype: str,
    fields: tuple[str, ...],
    hnsw_m: int | None,
    ef_construction: int | None,
    ef_runtime: int | None,
    ttl: float | None,
    expiring: bool,
    partitions: int,
    exist_ok: bool,
    as_json: bool,
) -> None:
    """Create the space NAME for vectors of --dim values.

    \b
    Example:
      rediscache space create items --dim 384 --field genre:tag --field year:numeric
      rediscache space create faces --dim 512 --metric l2 --algorithm flat
      rediscache space create text-cache --dim 384 --ttl 3600
      rediscache --url redis+cluster://127.0.0.1:7000 space create big --dim 384 --partitions 3
    """
    hnsw = {
        k: v
        for k, v in (
            ("M", hnsw_m),
            ("ef_construction", ef_construction),
            ("ef_runtime", ef_runtime),
        )
        if v is not None
    }
    schema: dict[str, Any] = {
        "metric": metric,
        "algorithm": algorithm,
        "dtype": dtype,
        "fields": parse_fields(fields),
        "hnsw": hnsw or None,
        "ttl": ttl,
        "expiring": expiring or None,
        "partitions": partitions,
    }
    try:
        sp = state.hub().create_space(name, dim, **schema, exist_ok=exist_ok)
    except SchemaMismatchError:
        if exist_ok:
            raise  # another schema: the message says so
        # the library's message names exist_ok=; say it in options (a second look, which
        # raises the other-schema error when that is the cause)
        state.hub().create_space(name, dim, **schema, exist_ok=True)
        fail(f"space {name!r} already exists: add --exist-ok to reuse it")
    if wants_json(state, as_json):
        emit(sp.config)
    else:
        click.echo(f"created {sp!r}")


@space.command("list", short_help="List the spaces, their size and schema.")
@json_option
@click.pass_obj
@friendly
def space_list(state: State, as_json: bool) -> None:
    """List the spaces with their size and schema (as a user with roles: the spaces it
    holds a role on).

    \b
    Example:
      rediscache space list
      rediscache space list --json
    """
    hub = state.hub()
    rows: list[dict[str, Any]] = []
    for name in hub.spaces():
        sp = hub.space(name)
        c = sp.config
        rows.append(
            {
                "name": name,
                "count": len(sp),
                "dim": c.dim,
                "metric": c.metric,
                "algorithm": c.algorithm,
                "dtype": c.dtype,
                "fields": dict(c.fields),
                "partitions": len(c.partitions) or 1,
            }
        )
    if wants_json(state, as_json):
        emit(rows)
        return
    if not rows:
        click.echo("no spaces (create one with: rediscache space create NAME --dim N)")
    for r in rows:
        fields = " ".join(f"{k}:{v}" for k, v in r["fields"].items())
        parts = f"  {r['partitions']} partitions" if r["partitions"] > 1 else ""
        click.echo(
            f"{r['name']}  {r['count']:,} x {r['dim']}  {r['metric']} {r['algorithm']} "
            f"{r['dtype']}  {fields}".rstrip()
            + parts
        )


@space.command("info", short_help="Schema, size, index and versions of a space.")
@click.argument("name")
@json_option
@click.pass_obj
@friendly
def space_info(state: State, name: str, as_json: bool) -> None:
    """Schema, count, memory, index state and versions of a space.

    \b
    Example:
      rediscache space info items
    """
    sp = state.space(name)
    info = asdict(sp.info())
    info["versions"] = [asdict(v) for v in sp.versions()]
    hub = state.hub()
    if hub._nodes is not None:  # a cluster: which primary holds the space (or each partition)
        info["node"] = _node_of(hub, name)
        for part in info.get("partitions") or []:
            part["node"] = _node_of(hub, part["name"])
    if wants_json(state, as_json):
        emit(info)
        return
    for key in ("name", "dim", "metric", "algorithm", "dtype", "fields", "hnsw", "count"):
        click.echo(f"{key + ':':18}{info[key]}")
    if "node" in info:
        click.echo(f"{'node:':18}{info['node']} (a primary of the cluster)")
    click.echo(f"{'memory:':18}{human_bytes(info['memory_bytes'])}")
    click.echo(f"{'vector index:':18}{human_bytes(info['vector_index_bytes'])}")
    indexing = f"yes ({info['percent_indexed'] * 100:.0f}%)" if info["indexing"] else "no"
    click.echo(f"{'indexing:':18}{indexing}")
    click.echo(f"{'index failures:':18}{info['index_failures']}")
    click.echo(f"{'versions:':18}{plural(len(info['versions']), 'version')}")
    for line in generation_lines(info):
        click.echo(line)


def _node_of(hub: Any, name: str) -> str:
    """``host:port`` of the primary holding the space (or partition) ``name``."""
    kwargs = hub.node_client(name).connection_pool.connection_kwargs
    return f"{kwargs.get('host')}:{kwargs.get('port')}"


def generation_lines(info: dict[str, Any]) -> list[str]:
    """What each generation of a space costs (``space info``, ``stats SPACE``), and the
    garbage still to delete; for a partitioned space, those of each partition."""
    if info.get("partitions"):
        lines = [f"{'partitions:':18}{len(info['partitions'])}"]
        for part in info["partitions"]:
            node = f", on {part['node']}" if part.get("node") else ""
            lines.append(
                f"  {part['name']}: {part['count']:,} embeddings, "
                f"{human_bytes(part['memory_bytes'])}{node}"
            )
            lines += ["  " + line for line in generation_lines(part)]
        return lines
    lines = [f"{'generations:':18}{len(info['generations'])} (memory by what uses it)"]
    for g in info["generations"]:
        roles = ", ".join(g["roles"])
        size = human_bytes(g["index_bytes"] + g["document_bytes"])
        lines.append(
            f"  g{g['gen']:<5} {size:>10}  {g['count']:>10,} embeddings  {roles}"
            + ("" if g["indexed"] >= 1 else f"  (indexed {g['indexed'] * 100:.0f}%)")
        )
    garbage = info.get("garbage") or {}
    if garbage.get("generations"):
        lines.append(
            f"{'garbage:':18}{plural(garbage['documents'], 'embedding')} in "
            f"{plural(len(garbage['generations']), 'generation')}, being deleted"
        )
    return lines


@space.command("drop", short_help="Delete a space and all it holds.")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
@friendly
def space_drop(state: State, name: str, yes: bool) -> None:
    """Delete a space: its embeddings, versions and indexes. Asks first unless --yes.

    \b
    Example:
      rediscache space drop items --yes
    """
    sp = state.space(name)  # fails cleanly for an unknown space before asking
    confirm(yes, f"Drop space {name!r} with {len(sp):,} embeddings and all its versions?")
    deleted = state.hub().drop_space(name)
    click.echo(f"dropped {name!r} ({plural(deleted, 'key')} deleted)")


# ---------------------------------------------------------------- import / export


@cli.command("import", short_help="Load embeddings from FILE into SPACE.")
@click.argument("space_name", metavar="SPACE")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--meta",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Ids and metadata of a .npy file (.jsonl).",
)
@click.option("--id-field", default="id", show_default=True, help="Field holding the key.")
@click.option(
    "--vector-field", default="vector", show_default=True, help="Field holding the vector."
)
@click.option(
    "--vectors-only",
    is_flag=True,
    help="Replace only the vectors and keep the stored metadata (a retrained model's file "
    "of ids and vectors); metadata fields in FILE are ignored.",
)
@click.option(
    "--replace-metadata",
    is_flag=True,
    help="Let rows that lack stored metadata fields remove them (whole records replaced). "
    "Without it such an import stops before writing those rows.",
)
@click.option(
    "--missing",
    type=click.Choice(["create", "skip"]),
    default="create",
    show_default=True,
    help="With --vectors-only: what to do with an id that has no record yet (create it "
    "without metadata, or skip it).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=1000,
    show_default=True,
    help="Rows read and checked per step (written in atomic chunks of about 0.1 s).",
)
@click.option(
    "--rejects",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write every rejected row (row, where, key, reason) to this .jsonl file.",
)
@click.option(
    "--stage",
    "stage_label",
    metavar="LABEL",
    help="Write into the stage LABEL (created empty if it does not exist) instead of the "
    "live space: nothing is visible until `rediscache publish SPACE LABEL`.",
)
@json_option
@click.pass_obj
@friendly
def import_(
    state: State,
    space_name: str,
    file: Path,
    meta: Path | None,
    id_field: str,
    vector_field: str,
    vectors_only: bool,
    replace_metadata: bool,
    missing: str,
    batch_size: int,
    rejects: Path | None,
    stage_label: str | None,
    as_json: bool,
) -> None:
    """Load embeddings from FILE into SPACE, in atomic batches, with a progress bar.

    Re-running is safe: a row replaces the record with the same id. Rows that cannot be
    stored (bad JSON, no id, wrong vector length, NaN, duplicate id, bad metadata) are
    skipped and reported by position in FILE (line N of a .jsonl, row N of a .npy or
    .parquet; 1-based) and id; the exit status is then 1.

    A plain import replaces whole records: it stops, before writing, at rows that lack
    metadata fields the stored records have (a retrained model's file of ids and vectors
    would wipe them). --vectors-only replaces only the vectors and keeps the metadata;
    --replace-metadata removes the fields anyway (with a warning).

    \b
    Formats (by suffix):
      .npy      an (n, dim) array; ids and metadata from --meta FILE.jsonl,
                one JSON object per row: {"id": ..., <metadata fields>}
      .jsonl    one object per line: {"id": ..., "vector": [...], <metadata>}
      .parquet  columns id, vector and one per metadata field
                (needs pyarrow: pip install 'rediscache-hub[parquet]')

    \b
    Example:
      rediscache import items vectors.npy --meta meta.jsonl
      rediscache import items items.jsonl --rejects rejected.jsonl
      rediscache import items retrained.jsonl --vectors-only   # keep metadata
      rediscache import items model-b.npy --meta meta.jsonl --stage model-b   # a release
    """
    live = state.space(space_name)
    sp = live if stage_label is None else stage_of(live, stage_label)
    done = [0]
    started = time.perf_counter()

    def warn(message: str) -> None:
        click.echo(f"warning: {message}", err=True)

    try:
        with progress(f"importing {file.name}", None) as update:

            def tick(rows: int, total: int | None) -> None:
                done[0] = rows
                update(rows, total)
                state.log(
                    f"import: {rows:,} of {total if total is not None else '?'} rows read "
                    f"({time.perf_counter() - started:.1f} s)"
                )

            report = transfer.import_file(
                sp,
                file,
                meta=meta,
                id_field=id_field,
                vector_field=vector_field,
                batch_size=batch_size,
                progress=tick,
                vectors_only=vectors_only,
                missing=missing,
                replace_metadata=replace_metadata,
                warn=warn,
            )
    except KeyboardInterrupt as exc:
        how = "terminated" if isinstance(exc, Terminated) else "interrupted"
        click.echo(
            f"{how}: at least the first {plural(done[0], 'row')} of {str(file)!r} were "
            "imported (written, or rejected; the batch under way may be too); importing the "
            "file again is safe",
            err=True,
        )
        sys.exit(interrupted_status(exc))
    if rejects is not None:
        with rejects.open("w") as f:
            for r in report.rejected:
                f.write(json.dumps(asdict(r)) + "\n")
    if wants_json(state, as_json):
        emit({**asdict(report), "rate": report.rate})
    else:
        where = repr(space_name)
        if stage_label is not None:
            where = f"stage {stage_label!r} of {space_name!r}"
        click.echo(
            f"imported {report.written:,} of {report.rows:,} rows into {where} in "
            f"{report.seconds:.1f} s ({report.rate:,.0f} rows/s); "
            f"{len(report.rejected):,} rejected"
            + (f"; {len(report.skipped):,} skipped (no record)" if report.skipped else "")
            + (f"; {report.created:,} created without metadata" if report.created else "")
        )
        for r in report.rejected[:10]:
            click.echo(f"  {r}", err=True)
        if len(report.rejected) > 10:
            more = f" (all in {str(rejects)!r})" if rejects else " (--rejects FILE lists all)"
            click.echo(f"  ... and {len(report.rejected) - 10:,} more{more}", err=True)
    if report.dropped:
        lost = ", ".join(f"{name} ({n:,})" for name, n in report.dropped.items())
        warn(
            f"{plural(max(report.dropped.values()), 'stored record')} or more lost metadata "
            f"fields their rows did not carry: {lost}. --vectors-only replaces the vectors "
            "and keeps the metadata"
        )
    if report.ignored_fields:
        click.echo(
            f"note: --vectors-only kept the stored metadata; fields of the file not written: "
            f"{', '.join(report.ignored_fields)}",
            err=True,
        )
    if report.retries:
        state.log(f"import: {plural(report.retries, 'batch', 'batches')} written again")
    if report.rejected:
        raise SystemExit(1)


@cli.command("export", short_help="Write the embeddings of SPACE to FILE.")
@click.argument("space_name", metavar="SPACE")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--meta",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where a .npy export writes ids and metadata (default: FILE.meta.jsonl, e.g. "
    "items.meta.jsonl for items.npy).",
)
@click.option(
    "--version",
    "version",
    metavar="VERSION",
    help="Export this version (id as 3 or v3, or label) instead of the live space.",
)
@click.option("--id-field", default="id", show_default=True, help="Field holding the key.")
@click.option(
    "--vector-field", default="vector", show_default=True, help="Field holding the vector."
)
@click.option("--yes", "-y", is_flag=True, help="Overwrite FILE without asking.")
@json_option
@click.pass_obj
@friendly
def export(
    state: State,
    space_name: str,
    file: Path,
    meta: Path | None,
    version: str | None,
    id_field: str,
    vector_field: str,
    yes: bool,
    as_json: bool,
) -> None:
    """Write every embedding of SPACE (or of one of its versions) to FILE.

    The file imports back unchanged (ids become strings). The file appears only when
    complete. Export a version (--version) for an exact snapshot of a space being written.

    \b
    Example:
      rediscache export items items.jsonl
      rediscache export items items.npy --meta items-meta.jsonl --version before-retrain
    """
    sp = state.space(space_name)
    source = sp if version is None else sp.at(version_ref(version))
    if transfer.file_format(file) == "npy" and meta is None:
        meta = transfer.meta_path_of(file)
    for target in (file, meta):
        if target is not None and target.exists():
            confirm(yes, f"Overwrite {str(target)!r}?")
    with progress(f"exporting {space_name}", len(source)) as update:
        report = transfer.export_file(
            source,
            file,
            meta=meta,
            id_field=id_field,
            vector_field=vector_field,
            progress=update,
        )
    if wants_json(state, as_json):
        emit({**asdict(report), "rate": report.rate})
        return
    what = f"version {source.version}" if isinstance(source, VersionView) else "live"
    also = f" (ids and metadata: {report.meta_path})" if report.meta_path else ""
    click.echo(
        f"exported {report.rows:,} rows of {space_name!r} ({what}) to {report.path}{also} "
        f"in {report.seconds:.1f} s ({report.rate:,.0f} rows/s)"
    )


__all__ = ["export", "import_", "space"]
