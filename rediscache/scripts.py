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

from .errors import CorruptDataError, InvalidInputError, KeyNotFoundError, ServerError

if TYPE_CHECKING:
    from importlib.abc import Traversable

__all__ = ["AverageResult", "available", "average", "lua_dir", "source"]

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


def _script(client: redis.Redis, name: str) -> Any:
    # register_script only hashes the text; the SHA is loaded lazily and on NOSCRIPT.
    return client.register_script(source(name))


class AverageResult(NamedTuple):
    """Reply of ``average.lua``: the mean (float64), vectors used and keys skipped."""

    mean: npt.NDArray[np.float64]
    used: int
    missing: int


def average(
    client: redis.Redis,
    doc_keys: Sequence[str],
    *,
    field: str,
    dim: int,
    element: str,
    skip_missing: bool,
    weights: npt.NDArray[np.float64] | None,
    user_keys: Sequence[str],
) -> AverageResult:
    """Run ``average.lua``: the weighted mean of the vectors in ``doc_keys``. One round trip.

    ``element`` is ``"f"`` (float32) or ``"d"`` (float64); ``user_keys`` name the keys in
    errors. Raises KeyNotFoundError, CorruptDataError or InvalidInputError (zero weight).
    """
    packed = b"" if weights is None else np.asarray(weights, dtype="<f8").tobytes()
    try:
        used, missing, raw = _script(client, "average")(
            keys=list(doc_keys),
            args=[field, dim, element, "skip" if skip_missing else "raise", packed],
        )
    except redis.ResponseError as exc:
        msg = str(exc)
        if msg.startswith("RC_MISSING"):
            key = user_keys[int(msg.split()[1]) - 1]
            raise KeyNotFoundError(f"{key!r} does not exist (pass missing='skip' to skip)") from exc
        if msg.startswith("RC_BADLEN"):
            _, i, n = msg.split()
            raise CorruptDataError(
                f"stored vector of {user_keys[int(i) - 1]!r} has {n} bytes; expected {dim} floats"
            ) from exc
        if msg.startswith("RC_NOWEIGHT"):
            raise InvalidInputError(
                "nothing to average: no key was found, or the weights of the found keys sum to <= 0"
            ) from exc
        raise ServerError(f"average.lua failed: {msg}") from exc
    mean = np.frombuffer(raw, dtype="<f8").copy()
    return AverageResult(mean, int(used), int(missing))
