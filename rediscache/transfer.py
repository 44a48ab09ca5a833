"""Import and export of embeddings as files: ``.npy`` (+ ``.jsonl`` metadata), ``.jsonl``
with vectors, and ``.parquet`` (when pyarrow is installed).

File formats (the same for import and export, so an export imports back unchanged):

* ``.npy``: an (n, dim) float array; row ``i``'s key and metadata are line ``i`` of a
  ``.jsonl`` metadata file (``{"id": ..., <metadata fields>}``), which import requires.
* ``.jsonl``: one JSON object per line, ``{"id": ..., "vector": [...], <metadata fields>}``.
* ``.parquet``: columns ``id``, ``vector`` (list of floats) and one column per metadata
  field; a null cell means the record has no such field.

Keys are strings: numeric ids in a file become their decimal strings (``7`` -> ``"7"``) and
are exported as strings. The id and vector field names can be changed (``id_field``,
``vector_field``).

Import writes through :meth:`Space.put_many` in chunks (each chunk atomic), so it is
idempotent: running it again replaces the same records. ``vectors_only=True`` writes through
:meth:`Space.update_vectors` instead: the vectors are replaced and the stored metadata kept
(a retrained model's file of ids and vectors). Rows that cannot be stored (not JSON, no id,
a vector of the wrong length or with NaN, a key seen earlier in the file, bad metadata) are
skipped and reported with their position in the file and reason; the others are written.

Positions in the file are 1-based for every format: ``line N`` of a ``.jsonl`` file (blank
lines counted), ``row N (index N-1)`` of a ``.npy`` array (its record in the metadata file)
or of a ``.parquet`` file. Every rejection and error of an import names the position and
the key, never a position inside a batch.

A batch whose write fails with an unknown outcome (the reply was lost: a timeout, a broken
connection), a server that cannot be reached or is busy, is written again, at most
:data:`ATTEMPTS` times in all: writing the same rows again is idempotent (the same records,
the same time to live).
Export writes to a temporary file beside the target and renames it at the end, so a failed
export leaves no half-written file.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import redis

from .codec import check_int
from .errors import (
    ConnectionFailedError,
    InvalidInputError,
    OutcomeUnknownError,
    PermissionDeniedError,
    ReadOnlyError,
    ServerBusyError,
    ServerError,
)
from .partitioned import PartitionedSpace, PartitionedStage, PartitionedVersionView
from .space import Space, Stage, VersionView

__all__ = [
    "FORMATS",
    "ExportReport",
    "ImportReport",
    "Progress",
    "Rejected",
    "export_file",
    "file_format",
    "import_file",
]

#: File formats by suffix.
FORMATS = {".npy": "npy", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
#: Rows per put_many call / per export batch.
BATCH = 1000
#: Writes of one import batch at most (the first and the retries), and the pause before the
#: first retry in seconds (doubling after each).
ATTEMPTS = 4
RETRY_PAUSE = 0.5
#: What a vectors-only import does with a key that has no record yet.
IMPORT_MISSING = ("create", "skip")
#: Called with (rows done, total rows or None) as an import or export advances.
Progress = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class Rejected:
    """A row of an imported file that was not stored: its 1-based position (the line of a
    ``.jsonl`` file, the row of a ``.npy`` or ``.parquet`` file), its key when it had one,
    why, and ``where``: the position in words (``"line 7001"``, ``"row 7001 (index 7000)"``)."""

    row: int
    key: str | None
    reason: str
    where: str = ""

    def __str__(self) -> str:
        key = "" if self.key is None else f" {self.key!r}"
        return f"{self.where or f'row {self.row}'}{key}: {self.reason}"


@dataclass(frozen=True)
class ImportReport:
    """What :func:`import_file` did: rows read, rows written, rows rejected, seconds.

    ``skipped``: keys a vectors-only import with ``missing="skip"`` left out (no record).
    ``ignored_fields``: metadata fields of the file that a vectors-only import did not write.
    ``dropped``: per metadata field, how many stored records lost it because their row in
    the file did not carry it (a plain import replaces whole records). ``retries``: batches
    written again after a lost reply or a busy or unreachable server. ``created``: records a
    vectors-only import created without metadata (``missing="create"``: no record before).
    """

    path: str
    space: str
    rows: int
    written: int
    rejected: list[Rejected] = field(default_factory=list)
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)
    ignored_fields: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    created: int = 0

    @property
    def rate(self) -> float:
        """Rows written per second."""
        return self.written / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_file` wrote."""

    path: str
    meta_path: str | None
    rows: int
    seconds: float

    @property
    def rate(self) -> float:
        """Rows written per second."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def file_format(path: str | os.PathLike[str]) -> str:
    """``"npy"``, ``"jsonl"`` or ``"parquet"`` from the file's suffix.

    Raises:
        InvalidInputError: another suffix.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InvalidInputError(
            f"{os.fspath(path)!r}: unknown file type {suffix or '(none)'!r}; "
            "use .npy (with a .jsonl of ids and metadata), .jsonl or .parquet"
        )
    return FORMATS[suffix]


def _pyarrow() -> Any:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InvalidInputError(
            "parquet files need pyarrow: pip install 'rediscache-hub[parquet]'"
        ) from exc
    return pq


# ---------------------------------------------------------------- reading files


@dataclass
class _Batch:
    """Parsed rows of a file: row numbers, keys, vectors, metadata; and rows rejected while
    parsing."""

    lines: bool = False  # positions are lines of a text file (else rows of an array/table)
    rows: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    vectors: list[Any] = field(default_factory=list)
    metadata: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    def where(self, row: int) -> str:
        """A 1-based position in words."""
        return f"line {row}" if self.lines else f"row {row} (index {row - 1})"

    def reject(self, row: int, key: str | None, reason: str) -> Rejected:
        return Rejected(row, key, reason, self.where(row))

    def add(self, row: int, record: dict[str, Any], vector: Any, id_field: str) -> None:
        key = _key_of(record.pop(id_field, None))
        if key is None:
            self.rejected.append(self.reject(row, None, f"no {id_field!r} (a string or integer)"))
            return
        self.rows.append(row)
        self.keys.append(key)
        self.vectors.append(vector)
        self.metadata.append(record)


def _key_of(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _json_lines(f: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, parsed object or the reason it is not one) for each non-blank line."""
    for number, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            yield number, f"not JSON: {exc}"
            continue
        if not isinstance(obj, dict):
            yield number, "not a JSON object"
            continue
        yield number, obj


def _count_records(path: Path) -> int:
    """Non-blank lines of a text file (one JSON record each)."""
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def _read_npy(
    path: Path, meta: Path, dim: int, id_field: str, batch: int
) -> tuple[int, Iterator[_Batch]]:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read {str(path)!r} as a .npy array: {exc}") from exc
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise InvalidInputError(
            f"{str(path)!r} holds an array of shape {arr.shape}; this space needs (n, {dim})"
        )
    if arr.dtype.kind not in "iuf":
        raise InvalidInputError(
            f"{str(path)!r} holds {arr.dtype} values; vectors must be real numbers (float or int)"
        )
    n = int(arr.shape[0])
    # Checked before anything is written: a metadata file that does not line up with the
    # array would attach every row's metadata to the wrong vector.
    records = _count_records(meta)
    if records != n:
        raise InvalidInputError(
            f"{str(meta)!r} has {records} records for the {n} rows of {str(path)!r}"
        )

    def batches() -> Iterator[_Batch]:
        with meta.open("rb") as f:
            b = _Batch()
            i = 0
            for number, obj in _json_lines(f):
                if i >= n:
                    raise InvalidInputError(f"{str(meta)!r} changed during the import")
                if isinstance(obj, str):
                    b.rejected.append(
                        b.reject(i + 1, None, f"{obj} (line {number} of {meta.name})")
                    )
                else:
                    b.add(i + 1, obj, arr[i], id_field)
                i += 1
                if len(b.rows) + len(b.rejected) >= batch:
                    yield b
                    b = _Batch()
            if i < n:
                raise InvalidInputError(f"{str(meta)!r} changed during the import")
            yield b

    return n, batches()


def _read_jsonl(
    path: Path, id_field: str, vector_field: str, batch: int
) -> tuple[int, Iterator[_Batch]]:
    total = _count_records(path)

    def batches() -> Iterator[_Batch]:
        with path.open("rb") as f:
            b = _Batch(lines=True)
            for number, obj in _json_lines(f):
                if isinstance(obj, str):
                    b.rejected.append(b.reject(number, None, obj))
                else:
                    b.add(number, obj, obj.pop(vector_field, None), id_field)
                if len(b.rows) + len(b.rejected) >= batch:
                    yield b
                    b = _Batch(lines=True)
            yield b

    return total, batches()


def _read_parquet(
    path: Path, id_field: str, vector_field: str, batch: int
) -> tuple[int, Iterator[_Batch]]:
    pq = _pyarrow()
    try:
        pf = pq.ParquetFile(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise InvalidInputError(f"cannot read {str(path)!r} as parquet: {exc}") from exc
    names = set(pf.schema_arrow.names)
    for needed in (id_field, vector_field):
        if needed not in names:
            raise InvalidInputError(
                f"{str(path)!r} has no column {needed!r} (columns: {', '.join(sorted(names))})"
            )

    def batches() -> Iterator[_Batch]:
        row = 0
        for record_batch in pf.iter_batches(batch_size=batch):
            b = _Batch()
            for record in record_batch.to_pylist():
                row += 1
                vector = record.pop(vector_field)
                clean = {k: v for k, v in record.items() if v is not None or k == id_field}
                b.add(row, clean, vector, id_field)
            yield b

    return int(pf.metadata.num_rows), batches()


# ---------------------------------------------------------------- import


def _path(value: object, what: str) -> Path:
    """``value`` as a Path (a str or os.PathLike), else InvalidInputError."""
    if not isinstance(value, str | os.PathLike) or not os.fspath(value):
        raise InvalidInputError(f"{what} must be a file path, got {value!r}")
    text = os.fspath(value)
    if not isinstance(text, str):
        raise InvalidInputError(f"{what} must be a file path as str, got {value!r}")
    return Path(text)


def _check_names(id_field: object, vector_field: object, progress: object) -> None:
    """The id and vector field names (two different non-empty str) and the progress
    callback (None or callable)."""
    for what, name in (("id_field", id_field), ("vector_field", vector_field)):
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"{what} must be a non-empty str, got {name!r}")
    if id_field == vector_field:
        raise InvalidInputError(f"id_field and vector_field are both {id_field!r}: pick two names")
    if progress is not None and not callable(progress):
        raise InvalidInputError(f"progress must be a function or None, got {progress!r}")


def import_file(
    space: Space | Stage | PartitionedSpace | PartitionedStage,
    path: str | os.PathLike[str],
    *,
    meta: str | os.PathLike[str] | None = None,
    id_field: str = "id",
    vector_field: str = "vector",
    batch_size: int = BATCH,
    progress: Progress | None = None,
    vectors_only: bool = False,
    missing: str = "create",
    replace_metadata: bool = False,
    warn: Callable[[str], None] | None = None,
) -> ImportReport:
    """Store the embeddings of a file in ``space``; returns an :class:`ImportReport`.

    ``path`` is a ``.npy`` (keys and metadata from the ``.jsonl`` ``meta``), a ``.jsonl``
    or a ``.parquet`` file (see the module docstring). Rows go in batches of ``batch_size``
    (each written with put_many: chunks of about 0.1 s of server time, each atomic);
    ``progress`` is called after each batch. Idempotent: importing the same file again
    replaces the same records. Bad rows are skipped and listed in the report's
    ``rejected`` with their position in the file.

    A plain import replaces whole records: a stored record whose row lacks a metadata field
    would lose it. Before each batch the import reads the stored metadata of its keys (one
    more round trip); when rows would remove stored fields it raises InvalidInputError before
    writing that batch (a retrained model's file of ids and vectors would wipe every
    record's metadata), unless ``replace_metadata=True``: then it counts what is lost in the
    report's ``dropped`` and, the first time, calls ``warn`` with a message before writing.
    ``vectors_only=True`` writes only the vectors (:meth:`Space.update_vectors`): stored
    metadata is kept and the file's metadata fields are ignored (listed in
    ``ignored_fields``); ``missing`` says what to do with a key that has no record:
    ``"create"`` it without metadata or ``"skip"`` it (listed in ``skipped``).

    A batch whose reply was lost, or that met a busy or unreachable server, is written
    again (at most :data:`ATTEMPTS` writes, pauses from :data:`RETRY_PAUSE` s doubling):
    its rows are the same records with the same time to live, so a row written twice is
    stored once.

    Raises:
        InvalidInputError: an unreadable file, an unknown format, a ``.npy`` whose dim is not
            the space's, a metadata file with fewer or more records than the array.
        ServerError: Redis failed (after the retries); the message names the rows of the
            file (positions and keys) whose fate is unknown and how many rows were written.
    """
    if not isinstance(space, Space | Stage | PartitionedSpace | PartitionedStage):
        if isinstance(space, VersionView | PartitionedVersionView):
            raise ReadOnlyError("a version is read-only: import into the space itself")
        raise InvalidInputError(f"import needs a Space or a Stage, got {type(space).__name__}")
    batch_size = check_int(batch_size, "batch_size", high=1_000_000)
    _check_names(id_field, vector_field, progress)
    if not isinstance(vectors_only, bool):
        raise InvalidInputError(f"vectors_only must be True or False, got {vectors_only!r}")
    if missing not in IMPORT_MISSING:
        raise InvalidInputError(f"missing must be 'create' or 'skip', got {missing!r}")
    if warn is not None and not callable(warn):
        raise InvalidInputError(f"warn must be a function or None, got {warn!r}")
    if not isinstance(replace_metadata, bool):
        raise InvalidInputError(f"replace_metadata must be True or False, got {replace_metadata!r}")
    src = _path(path, "path")
    fmt = file_format(src)
    meta_path = None if meta is None else _path(meta, "meta")
    for p in (src, meta_path):
        if p is not None and not p.is_file():
            raise InvalidInputError(f"cannot read {str(p)!r}: no such file")
    if meta_path is not None and fmt != "npy":
        raise InvalidInputError("a metadata file (meta) goes with a .npy file only")
    if meta_path is None and fmt == "npy":
        raise InvalidInputError(
            "a .npy file holds vectors only: give the .jsonl with an id (and metadata) per row "
            "as meta (--meta on the command line)"
        )
    dim = space.config.dim
    try:
        if meta_path is not None:
            total, batches = _read_npy(src, meta_path, dim, id_field, batch_size)
        elif fmt == "jsonl":
            total, batches = _read_jsonl(src, id_field, vector_field, batch_size)
        else:
            total, batches = _read_parquet(src, id_field, vector_field, batch_size)
    except OSError as exc:
        raise InvalidInputError(f"cannot read {str(src)!r}: {exc}") from exc

    started = time.perf_counter()
    job = _Import(space, src, dim, vector_field, vectors_only, missing, warn, replace_metadata)
    rows = 0
    try:
        for b in batches:
            if rows == 0:
                _check_dim(b, dim, space.name, src, vector_field)
            rows += len(b.rows) + len(b.rejected)
            job.rejected.extend(b.rejected)
            job.store(b)
            if progress is not None:
                progress(rows, total)
    except ServerError as exc:
        stopped = type(exc)(
            f"import of {str(src)!r} stopped after {job.written} rows were written: {exc}. "
            "Importing the file again is safe (it replaces the same records)."
        )
        raise _with_facts(stopped, exc) from exc
    except InvalidInputError:
        raise
    except (OSError, ValueError) as exc:  # a file cut short or corrupt mid-way (pyarrow too)
        raise InvalidInputError(
            f"reading {str(src)!r} failed after {job.written} rows were written: {exc}"
        ) from exc
    job.rejected.sort(key=lambda r: r.row)
    return ImportReport(
        str(src),
        space.name,
        rows,
        job.written,
        job.rejected,
        time.perf_counter() - started,
        skipped=job.skipped,
        ignored_fields=sorted(job.ignored),
        dropped=dict(sorted(job.dropped.items(), key=lambda kv: (-kv[1], kv[0]))),
        retries=job.retries,
        created=job.created,
    )


#: Errors after which an import batch is written again: the write may not have happened
#: (lost reply) or surely did not (busy, unreachable), and writing the rows again is safe.
_RETRIED = (
    OutcomeUnknownError,
    ConnectionFailedError,
    ServerBusyError,
    redis.ConnectionError,  # the reads before a batch (safe to repeat)
    redis.TimeoutError,
)


class _Import:
    """The state of one import: keys seen, rows written, rejected, skipped, dropped."""

    def __init__(
        self,
        space: Space | Stage | PartitionedSpace | PartitionedStage,
        src: Path,
        dim: int,
        vector_field: str,
        vectors_only: bool,
        missing: str,
        warn: Callable[[str], None] | None,
        replace_metadata: bool = True,
    ) -> None:
        self.space = space
        self.src = src
        self.dim = dim
        self.vector_field = vector_field
        self.vectors_only = vectors_only
        self.missing = missing
        self.warn = warn
        self.replace_metadata = replace_metadata
        self.seen: dict[str, str] = {}  # key -> where it appeared
        self.rejected: list[Rejected] = []
        self.skipped: list[str] = []
        self.created = 0
        self.ignored: set[str] = set()
        self.dropped: dict[str, int] = {}
        self.written = 0
        self.retries = 0

    def store(self, b: _Batch) -> None:
        """Write the good rows of one batch; reject the others."""
        rows: list[int] = []
        keys: list[str] = []
        vectors: list[Any] = []
        metas: list[dict[str, Any]] = []
        for row, key, vector, meta in zip(b.rows, b.keys, b.vectors, b.metadata):
            reason = _vector_problem(vector, self.dim, self.vector_field)
            if reason is None and key in self.seen:
                reason = f"the key already appeared at {self.seen[key]}"
            if reason is not None:
                self.rejected.append(b.reject(row, key, reason))
                continue
            self.seen[key] = b.where(row)
            rows.append(row)
            keys.append(key)
            vectors.append(vector)
            metas.append(meta)
        if not keys:
            return
        dtype = np.float64 if self.space.config.dtype == "float64" else np.float32
        matrix = np.array(vectors, dtype=dtype)
        if not self._valid(matrix, keys, metas):
            # Some row is refused (NaN, a zero vector in a cosine space, bad metadata): find
            # them one by one (only for a batch that has some) and write the others.
            good = []
            for i, (row, key, meta) in enumerate(zip(rows, keys, metas)):
                try:
                    self.space.validate_row(key, matrix[i], None if self.vectors_only else meta)
                    good.append(i)
                except InvalidInputError as exc:
                    del self.seen[key]
                    self.rejected.append(b.reject(row, key, str(exc)))
            rows = [rows[i] for i in good]
            keys = [keys[i] for i in good]
            metas = [metas[i] for i in good]
            matrix = matrix[good]
        if not keys:
            return
        if self.vectors_only:
            self.ignored.update(name for m in metas for name in m)
        self._write(b, rows, keys, matrix, metas)

    def _valid(self, matrix: Any, keys: list[str], metas: list[dict[str, Any]]) -> bool:
        try:
            self.space.validate(keys, matrix, None if self.vectors_only else metas)
        except InvalidInputError:
            return False
        return True

    def _count_dropped(
        self, b: _Batch, rows: list[int], keys: list[str], metas: list[dict[str, Any]]
    ) -> None:
        """Count (and warn about, once, before writing) stored metadata fields the rows of
        this batch would remove."""
        first: tuple[int, str] | None = None
        lost_here: set[str] = set()
        for row, key, meta, stored in zip(rows, keys, metas, self.space.get_metadata_many(keys)):
            lost = set(stored or ()) - set(meta)
            for name in lost:
                self.dropped[name] = self.dropped.get(name, 0) + 1
            if lost and first is None:
                first = (row, key)
            lost_here |= lost
        if first is not None and not self.replace_metadata:
            row, key = first
            before = f"; the {self.written:,} rows before it were written" if self.written else ""
            raise InvalidInputError(
                f"rows of {str(self.src)!r} lack metadata fields the stored records have "
                f"({', '.join(sorted(lost_here))}; first at {b.where(row)} {key!r}): a plain "
                "import replaces whole records and would remove them. Nothing of this batch "
                f"was written{before}. To replace only the vectors and keep the metadata, "
                "import with vectors_only (--vectors-only); to replace the records anyway, "
                "replace_metadata=True (--replace-metadata)"
            )
        if first is not None and self.warn is not None:
            row, key = first
            self.warn(
                f"rows of {str(self.src)!r} replace whole records and lack metadata fields "
                f"the stored records have ({', '.join(sorted(lost_here))}; first at "
                f"{b.where(row)} {key!r}): writing them removes those fields. To replace "
                "only the vectors and keep the metadata, import with vectors_only "
                "(--vectors-only)"
            )
            self.warn = None

    def _write(
        self, b: _Batch, rows: list[int], keys: list[str], matrix: Any, metas: list[Any]
    ) -> None:
        """One batch through put_many / update_vectors, written again after a lost reply or
        a busy or unreachable server (:data:`ATTEMPTS` writes at most)."""
        checked = self.vectors_only  # a plain import first reads what it would drop
        for attempt in range(1, ATTEMPTS + 1):
            try:
                if not checked:
                    self._count_dropped(b, rows, keys, metas)
                    checked = True
                if self.vectors_only:
                    done = self.space.update_vectors(keys, matrix, missing=self.missing)
                    self.skipped += done.skipped
                    self.created += done.created
                    self.written += len(keys) - len(done.skipped)
                else:
                    self.written += self.space.put_many(keys, matrix, metas)
                return
            except _RETRIED as exc:
                if attempt == ATTEMPTS:
                    raise self._failed(b, rows, keys, exc, attempt) from exc
                self.retries += 1
                time.sleep(RETRY_PAUSE * 2 ** (attempt - 1))
            except (ServerError, redis.RedisError) as exc:
                raise self._failed(b, rows, keys, exc, attempt) from exc

    def _failed(
        self, b: _Batch, rows: list[int], keys: list[str], exc: Exception, attempts: int
    ) -> ServerError:
        """``exc`` of a batch write, with the rows named by their position in the file."""
        start, end = getattr(exc, "rows", None) or (0, len(keys))
        span = f"{b.where(rows[start])} {keys[start]!r}"
        if end - start > 1:
            span += f" to {b.where(rows[end - 1])} {keys[end - 1]!r}"
        unknown = isinstance(exc, OutcomeUnknownError)
        fate = "may or may not be stored" if unknown else "were not stored"
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        # Rows of this batch before the failed chunk were stored by the last attempt.
        self.written += start
        # a refusal's own message names the user, the call and the role it needs
        cause = str(exc if isinstance(exc, PermissionDeniedError) else exc.__cause__ or exc)
        error = type(exc) if isinstance(exc, ServerError) else ConnectionFailedError
        return _with_facts(error(f"the rows from {span} {fate}{tries} ({cause})"), exc)


def _with_facts(error: ServerError, exc: BaseException) -> ServerError:
    """``error`` (a message about ``exc``) with ``exc``'s facts, when it is a refusal: the
    user, space and role of a PermissionDeniedError."""
    if isinstance(exc, PermissionDeniedError) and isinstance(error, PermissionDeniedError):
        error.user, error.space, error.needs = exc.user, exc.space, exc.needs
        error.reason, error.final = exc.reason, exc.final
    return error


def _check_dim(b: _Batch, dim: int, name: str, src: Path, vector_field: str = "vector") -> None:
    """Refuse, before anything is written, a file whose vectors all have another length, or
    whose first rows carry no vector at all (the wrong file for this space, or a metadata
    file), rather than rejecting every row."""
    if len(b.vectors) >= 2 and all(v is None for v in b.vectors):
        raise InvalidInputError(
            f"no row of the first {len(b.vectors):,} in {str(src)!r} has a {vector_field!r} "
            "field: is it a metadata file? (the ids and metadata of a .npy go with --meta / "
            "meta=; --vector-field names another field)"
        )
    lengths = {len(v) for v in b.vectors if isinstance(v, list)}
    if len(lengths) == 1 and len(b.vectors) == sum(isinstance(v, list) for v in b.vectors):
        (length,) = lengths
        if length != dim:
            raise InvalidInputError(
                f"the vectors in {str(src)!r} have {length} values; space {name!r} has dim {dim}"
            )


def _vector_problem(vector: Any, dim: int, vector_field: str) -> str | None:
    if isinstance(vector, np.ndarray):
        return None  # a row of a checked .npy array
    if not isinstance(vector, list):
        return f"no {vector_field!r} list of numbers"
    if len(vector) != dim:
        return f"{vector_field!r} has {len(vector)} values; the space's dim is {dim}"
    if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in vector):
        return f"{vector_field!r} holds something other than numbers"
    if any(isinstance(x, int) and not -(2**1023) < x < 2**1023 for x in vector):
        return f"{vector_field!r} holds an integer too large for a float"
    return None


# ---------------------------------------------------------------- export


def meta_path_of(npy: Path) -> Path:
    """The default ids-and-metadata file of a ``.npy`` export: ``<stem>.meta.jsonl``."""
    return npy.with_suffix(".meta.jsonl")


def _umask() -> int:
    """The process's umask (read without changing it where /proc tells)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def _atomic_target(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed to it when the block succeeds. The file
    gets ``0666`` less the umask, as a plain ``open()`` would give it (a temporary file
    starts ``0600``)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _record(
    key: str, meta: dict[str, Any], id_field: str, vector_field: str | None
) -> dict[str, Any]:
    for name in (id_field, vector_field):
        if name is not None and name in meta:
            raise InvalidInputError(
                f"the metadata of {key!r} has a field {name!r}, which the file format uses "
                f"for the {'id' if name == id_field else 'vector'}: choose another "
                f"{'id_field' if name == id_field else 'vector_field'}"
            )
    return {id_field: key, **meta}


def _dumps(obj: dict[str, Any], key: str) -> bytes:
    try:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False).encode() + b"\n"
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"the metadata of {key!r} cannot be written as JSON ({exc}); export to .parquet"
        ) from exc


def export_file(
    source: Space | VersionView | PartitionedSpace | PartitionedVersionView,
    path: str | os.PathLike[str],
    *,
    meta: str | os.PathLike[str] | None = None,
    id_field: str = "id",
    vector_field: str = "vector",
    batch_size: int = BATCH,
    progress: Progress | None = None,
) -> ExportReport:
    """Write every embedding of a space (or of a version: ``space.at(v)``) to a file.

    The format follows the suffix of ``path`` (see the module docstring). A ``.npy`` export
    also writes the keys and metadata to ``meta`` (default: :func:`meta_path_of`, e.g.
    ``items.meta.jsonl`` beside ``items.npy``, so that it never collides with a ``.jsonl``
    export of the same name). Files get the usual permissions (``0666`` less the umask).
    Reads in batches of ``batch_size`` (one round trip each, via ``iter_batches``); rows come
    in the server's SCAN order. An export of the live space
    reads it as it is during the scan; export a version for an exact snapshot. A ``.npy`` or
    ``.parquet`` export holds the vectors in memory until the file is written.

    Raises:
        InvalidInputError: an unknown format, a missing directory, metadata that the format
            cannot hold, or a metadata field named like the id or vector field.
    """
    if not isinstance(source, Space | VersionView | PartitionedSpace | PartitionedVersionView):
        raise InvalidInputError(
            f"export needs a Space or a version view (space.at(v)), got {type(source).__name__}"
        )
    batch_size = check_int(batch_size, "batch_size", high=1_000_000)
    _check_names(id_field, vector_field, progress)
    dst = _path(path, "path")
    fmt = file_format(dst)
    meta_path = None
    if fmt == "npy":
        meta_path = _path(meta, "meta") if meta is not None else meta_path_of(dst)
        if meta_path.resolve() == dst.resolve():
            raise InvalidInputError("the metadata file must differ from the .npy file")
    elif meta is not None:
        raise InvalidInputError("a metadata file (meta) goes with a .npy file only")
    for p in (dst, meta_path):
        if p is not None and not p.parent.is_dir():
            raise InvalidInputError(f"cannot write {str(p)!r}: no such directory")
    total = len(source)
    started = time.perf_counter()
    batches = source.iter_batches(batch_size, with_metadata=True)
    try:
        if fmt == "jsonl":
            rows = _export_jsonl(batches, dst, id_field, vector_field, total, progress)
        elif fmt == "npy":
            assert meta_path is not None
            rows = _export_npy(batches, dst, meta_path, source.codec.dim, id_field, total, progress)
        else:
            rows = _export_parquet(batches, dst, id_field, vector_field, total, progress)
    except OSError as exc:
        raise InvalidInputError(f"writing {str(dst)!r} failed: {exc}") from exc
    return ExportReport(
        str(dst),
        None if meta_path is None else str(meta_path),
        rows,
        time.perf_counter() - started,
    )


_Batches = Iterator[tuple[list[str], npt.NDArray[Any], "list[dict[str, Any]] | None"]]


def _export_jsonl(
    batches: _Batches,
    dst: Path,
    id_field: str,
    vector_field: str,
    total: int,
    progress: Progress | None,
) -> int:
    rows = 0
    with _atomic_target(dst) as tmp, tmp.open("wb") as f:
        for keys, vectors, metas in batches:
            for key, vector, meta in zip(keys, vectors.tolist(), metas or [{}] * len(keys)):
                record = _record(key, meta, id_field, vector_field)
                record[vector_field] = vector
                f.write(_dumps(record, key))
            rows += len(keys)
            if progress is not None:
                progress(rows, total)
    return rows


def _export_npy(
    batches: _Batches,
    dst: Path,
    meta_path: Path,
    dim: int,
    id_field: str,
    total: int,
    progress: Progress | None,
) -> int:
    parts: list[npt.NDArray[Any]] = []
    rows = 0
    with _atomic_target(meta_path) as tmp_meta, _atomic_target(dst) as tmp:
        with tmp_meta.open("wb") as f:
            for keys, vectors, metas in batches:
                for key, meta in zip(keys, metas or [{}] * len(keys)):
                    f.write(_dumps(_record(key, meta, id_field, None), key))
                parts.append(vectors)
                rows += len(keys)
                if progress is not None:
                    progress(rows, total)
        arr = np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)
        with tmp.open("wb") as out:
            np.save(out, arr, allow_pickle=False)
    return rows


def _export_parquet(
    batches: _Batches,
    dst: Path,
    id_field: str,
    vector_field: str,
    total: int,
    progress: Progress | None,
) -> int:
    pq = _pyarrow()
    import pyarrow as pa

    records: list[dict[str, Any]] = []
    parts: list[npt.NDArray[Any]] = []
    for keys, vectors, metas in batches:
        for key, meta in zip(keys, metas or [{}] * len(keys)):
            records.append(_record(key, meta, id_field, vector_field))
        parts.append(vectors)
        if progress is not None:
            progress(len(records), total)
    if not records:
        raise InvalidInputError("the space is empty: nothing to write to parquet")
    arr = np.concatenate(parts)
    columns: dict[str, Any] = {}
    for name in dict.fromkeys(n for r in records for n in r):
        try:
            columns[name] = pa.array([r.get(name) for r in records])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidInputError(
                f"metadata field {name!r} mixes types that parquet cannot hold in one column "
                f"({exc}); export to .jsonl"
            ) from exc
    dtype = pa.float64() if arr.dtype == np.float64 else pa.float32()
    flat = pa.array(arr.reshape(-1), type=dtype)
    columns[vector_field] = pa.FixedSizeListArray.from_arrays(flat, arr.shape[1])
    table = pa.table(columns)
    with _atomic_target(dst) as tmp:
        pq.write_table(table, tmp)
    return len(records)
