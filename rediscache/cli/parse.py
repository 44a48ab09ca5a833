"""Parsing of command-line values: filters, vectors, fields, version references.

Pure (no connection): each helper raises :class:`click.BadParameter` (exit status 2) for
text that cannot mean anything, and leaves checks that need the space to the library.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
import numpy as np
import numpy.typing as npt

from .. import query

__all__ = ["parse_fields", "parse_filters", "parse_vector", "split_unescaped", "version_ref"]

_FIELD_TYPES = ("tag", "numeric", "text")


def parse_fields(values: tuple[str, ...]) -> dict[str, str]:
    """``("genre:tag", "year:numeric")`` -> ``{"genre": "tag", "year": "numeric"}``."""
    fields: dict[str, str] = {}
    for value in values:
        name, sep, ftype = value.partition(":")
        if not sep or not name or ftype not in _FIELD_TYPES:
            raise click.BadParameter(
                f"{value!r}: use NAME:TYPE with TYPE one of {', '.join(_FIELD_TYPES)}",
                param_hint="--field",
            )
        if name in fields:
            raise click.BadParameter(f"field {name!r} given twice", param_hint="--field")
        fields[name] = ftype
    return fields


_INT = re.compile(r"[+-]?[0-9]+")


def _number(text: str, spec: str) -> float | int:
    """An integer exactly as written (the library refuses one a double cannot hold), or a
    float."""
    if _INT.fullmatch(text.strip()):
        return int(text)
    try:
        return float(text)
    except ValueError:
        raise click.BadParameter(
            f"{spec!r}: {text!r} is not a number", param_hint="--filter"
        ) from None


def split_unescaped(text: str, sep: str) -> list[str]:
    """``text`` split at each ``sep`` not preceded by a backslash; ``\\<sep>`` stands for a
    literal ``sep`` and ``\\\\`` for a backslash (other backslashes stay as they are)."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in (sep, "\\"):
            current.append(text[i + 1])
            i += 2
            continue
        if c == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    parts.append("".join(current))
    return parts


def parse_filters(values: tuple[str, ...], fields: dict[str, str]) -> query.Filter | None:
    """``--filter`` values combined with AND, typed by the space's ``fields``.

    * tag: ``genre=drama``; any of several: ``genre=drama|noir``; a literal ``|`` in a
      value is ``\\|`` and a literal backslash before it ``\\\\`` (``genre=rock\\|pop``)
    * numeric: ``year=1999``, ``year=1990..2000`` (inclusive), ``year=1990..``, ``year=..2000``
    * text: ``title=new york`` (a phrase)
    """
    parts: list[query.Filter] = []
    for spec in values:
        name, sep, value = spec.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{spec!r}: use FIELD=VALUE", param_hint="--filter")
        ftype = fields.get(name)
        if ftype is None:
            known = ", ".join(sorted(fields)) or "none"
            raise click.BadParameter(
                f"{spec!r}: {name!r} is not an indexed field of the space (indexed: {known})",
                param_hint="--filter",
            )
        if ftype == "tag":
            parts.append(query.Tag(name, split_unescaped(value, "|")))
        elif ftype == "numeric":
            low, dots, high = value.partition("..")
            if dots:
                parts.append(
                    query.Num(
                        name,
                        _number(low, spec) if low else None,
                        _number(high, spec) if high else None,
                    )
                )
            else:
                number = _number(value, spec)
                parts.append(query.Num(name, number, number))
        else:
            parts.append(query.Text(name, value))
    if not parts:
        return None
    result = parts[0]
    for part in parts[1:]:
        result = result & part
    return result


def parse_vector(text: str | None, path: Path | None) -> npt.NDArray[Any] | None:
    """A vector from ``--vector '[0.1, ...]'`` or ``--vector-file`` (.npy, or a JSON list)."""
    if text is not None and path is not None:
        raise click.UsageError("give --vector or --vector-file, not both")
    if text is not None:
        try:
            values = json.loads(text)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--vector") from None
        return _as_vector(values, "--vector")
    if path is None:
        return None
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise click.BadParameter(f"{str(path)!r}: {exc}", param_hint="--vector-file") from None
        return _as_vector(arr.reshape(-1) if arr.ndim == 2 and arr.shape[0] == 1 else arr, "")
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{str(path)!r}: {exc}", param_hint="--vector-file") from None
    return _as_vector(values, "--vector-file")


def _as_vector(values: Any, hint: str) -> npt.NDArray[Any]:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "fiu":
        raise click.BadParameter(
            "expected a flat list of numbers", param_hint=hint or "--vector-file"
        )
    return arr.astype(np.float64)


def version_ref(text: str) -> int | str:
    """A version id (all ASCII digits) or a label (labels are never all digits)."""
    return int(text) if text.isascii() and text.isdigit() else text
