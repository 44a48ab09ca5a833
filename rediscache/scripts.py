"""The Lua scripts in ``lua/`` and one typed wrapper per script.

Scripts are read from ``rediscache/lua/`` inside an installed wheel, or from the top-level
``lua/`` folder of a source checkout. Each runs through redis-py's ``Script`` object, which
uses EVALSHA and reloads the script on NOSCRIPT, so scripts keep working after a server
restart or ``SCRIPT FLUSH``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt
import redis
from redis.commands.core import Script

from .errors import CorruptDataError, InvalidInputError, KeyNotFoundError, ServerError

if TYPE_CHECKING:
    from importlib.abc import Traversable

__all__ = [
    "Combined",
    "Folded",
    "Gathered",
    "available",
    "combine",
    "gather",
    "lua_dir",
    "source",
    "update_mean",
]

#: Every script's header must mention these words (see STYLE.md: purpose, KEYS, ARGV, reply,
#: errors, cost, why atomic).
HEADER_WORDS = ("KEYS[", "ARGV[", "Reply:", "Errors:", "Cost:", "Atomic because:")


def lua_dir() -> Traversable:
    """Where the scripts are: inside the installed package, else the source tree's ``lua/``."""
    packaged = resources.files("rediscache") / "lua"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "lua"


def available() -> list[str]:
    """Names (without ``.lua``) of all scripts found."""
    return sorted(p.name[:-4] for p in lua_dir().iterdir() if p.name.endswith(".lua"))


@cache
def source(name: str) -> str:
    """The text of script ``name``; raises FileNotFoundError naming where it looked."""
    path = lua_dir() / f"{name}.lua"
    if not path.is_file():
        raise FileNotFoundError(f"Lua script {name}.lua not found in {lua_dir()}")
    text: str = path.read_text(encoding="utf-8")
    return text


def _run(client: redis.Redis, name: str, keys: list[str], args: list[Any]) -> Any:
    """EVALSHA script ``name`` on ``client`` (loading it on NOSCRIPT). One round trip."""
    return _script(name)(keys=keys, args=args, client=client)


@cache
def _script(name: str) -> Any:
    # One Script object per script, hashed once; the client is given at call time. The SHA
    # is loaded into the server lazily and again after NOSCRIPT (restart, SCRIPT FLUSH).
    return Script(None, source(name).encode("utf-8"))


def _script_error(
    exc: redis.ResponseError, script: str, names: Sequence[str], first: int = 1
) -> Exception:
    """Map a script's ``RC_*`` error reply to the library's exception.

    ``names[0]`` is the user's name of the key the script numbers ``first``.
    """
    msg = str(exc)
    code, _, rest = msg.partition(" ")
    args = rest.split()
    if code == "RC_MISSING":
        return KeyNotFoundError(
            f"{names[int(args[0]) - first]!r} does not exist (nothing was computed or stored)"
        )
    if code == "RC_BADLEN":
        return CorruptDataError(
            f"stored vector of {names[int(args[0]) - first]!r} has {args[1]} bytes, which does not "
            "match the space's dim and dtype"
        )
    if code == "RC_NOWEIGHT":
        return InvalidInputError(
            "nothing to average: no input was found, or the weights of the inputs found sum "
            "to <= 0 (nothing stored)"
        )
    if code == "RC_ZERO":
        return InvalidInputError(
            "the result is the zero vector, which cannot be normalized or stored in a cosine "
            "space (nothing stored)"
        )
    return ServerError(f"{script}.lua failed: {msg}")


def _f64(values: npt.NDArray[np.float64] | None) -> bytes:
    return b"" if values is None else np.ascontiguousarray(values, dtype="<f8").tobytes()


class Gathered(NamedTuple):
    """Reply of ``gather.lua``: which keys were found, and the found vectors' bytes in order."""

    found: list[bool]
    blobs: list[bytes]


def gather(
    client: redis.Redis,
    doc_keys: Sequence[str],
    *,
    field: str,
    nbytes: int,
    skip_missing: bool,
    names: Sequence[str],
) -> Gathered:
    """Run ``gather.lua``: one atomic read of many vectors. One round trip.

    ``names`` are the user's keys (for error messages). Raises KeyNotFoundError (a key is
    missing and ``skip_missing`` is False) or CorruptDataError (wrong byte length).
    """
    try:
        reply = _run(
            client, "gather", list(doc_keys), [field, nbytes, "skip" if skip_missing else "raise"]
        )
    except redis.ResponseError as exc:
        raise _script_error(exc, "gather", names) from exc
    return Gathered([c == 0x31 for c in reply[0]], reply[1:])


class Combined(NamedTuple):
    """Reply of ``combine.lua``: the result (float64), inputs used and inputs skipped."""

    vector: npt.NDArray[np.float64]
    used: int
    missing: int


def combine(
    client: redis.Redis,
    doc_keys: Sequence[str],
    target: str,
    *,
    field: str,
    dim: int,
    element: str,
    coefs: npt.NDArray[np.float64],
    constant: npt.NDArray[np.float64] | None,
    mean: bool,
    normalize: bool,
    nonzero: bool,
    skip_missing: bool,
    names: Sequence[str],
) -> Combined:
    """Run ``combine.lua``: ``sum(coefs[i] * v_i) + constant`` (divided by the coefficients
    used when ``mean``), optionally normalized, stored in ``target``. One round trip, atomic.

    ``element`` is ``"f"`` (float32) or ``"d"`` (float64). Raises KeyNotFoundError,
    CorruptDataError or InvalidInputError (zero result, zero weight); nothing is stored then.
    """
    try:
        used, missing, raw = _run(
            client,
            "combine",
            [*doc_keys, target],
            [
                field,
                dim,
                element,
                "skip" if skip_missing else "raise",
                _f64(coefs),
                _f64(constant),
                "mean" if mean else "sum",
                int(normalize),
                int(nonzero),
            ],
        )
    except redis.ResponseError as exc:
        raise _script_error(exc, "combine", names) from exc
    return Combined(np.frombuffer(raw, dtype="<f8").copy(), int(used), int(missing))


class Folded(NamedTuple):
    """Reply of ``update_mean.lua``: items folded in so far and the new vector (float64)."""

    items: int
    vector: npt.NDArray[np.float64]


def update_mean(
    client: redis.Redis,
    target: str,
    item_keys: Sequence[str],
    *,
    field: str,
    count_field: str,
    dim: int,
    element: str,
    items: int,
    ema: bool,
    old_coef: float,
    with_old: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64] | None],
    without_old: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64] | None],
    nonzero: bool,
    names: Sequence[str],
) -> Folded:
    """Run ``update_mean.lua``: fold ``items`` new items into the running embedding ``target``.

    ``with_old`` / ``without_old`` are (coefficients of the key items, constant term) for when
    a stored vector exists or not (see the script's header). One round trip, atomic.
    ``names[0]`` names the target, ``names[1:]`` the item keys.
    """
    try:
        count, raw = _run(
            client,
            "update_mean",
            [target, *item_keys],
            [
                field,
                count_field,
                dim,
                element,
                items,
                "ema" if ema else "mean",
                repr(float(old_coef)),
                _f64(with_old[0]),
                _f64(with_old[1]),
                _f64(without_old[0]),
                _f64(without_old[1]),
                int(nonzero),
            ],
        )
    except redis.ResponseError as exc:
        raise _script_error(exc, "update_mean", names, first=0) from exc
    return Folded(int(count), np.frombuffer(raw, dtype="<f8").copy())
