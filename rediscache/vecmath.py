"""Pure helpers for the embedding operations (average, combine, update_mean). No I/O.

The operations mix stored keys and vector literals. Keys travel to a Lua script (which reads
them atomically); literals are folded here into one constant float64 vector, weighted, so a
script only ever sees ``sum(coef_i * stored_i) + constant``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from .codec import VectorCodec, check_text
from .errors import InvalidInputError

__all__ = [
    "Terms",
    "check_weights",
    "ema_coefficients",
    "evaluate",
    "split_terms",
    "unit",
]

F64 = npt.NDArray[np.float64]


class Terms(NamedTuple):
    """A linear combination split for a script: stored keys with coefficients, and a constant."""

    keys: list[str]
    coefs: F64
    constant: F64 | None


def check_weights(weights: Any, n: int, *, positive_sum: bool) -> F64:
    """Weights as float64 (ones when None): one finite value per item.

    ``positive_sum`` (for means) also requires the weights to sum to more than zero.
    """
    if weights is None:
        return np.ones(n, dtype=np.float64)
    try:
        raw = np.asarray(weights)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInputError(f"weights must be numbers: {exc}") from exc
    if raw.dtype.kind not in "iuf":  # no str, bool, object (ints beyond 64 bits)
        raise InvalidInputError(f"weights must be numbers, got {raw.dtype} values: {weights!r:.60}")
    w = raw.astype(np.float64)
    if w.shape != (n,):
        raise InvalidInputError(f"{n} items but weights of shape {w.shape}")
    if not np.isfinite(w).all():
        raise InvalidInputError("weights contain NaN or Inf")
    with np.errstate(all="ignore"):
        total = float(np.abs(w).sum())
    if not math.isfinite(total):
        raise InvalidInputError("weights are too large: their sum overflows a double")
    total = float(w.sum())
    if positive_sum and not total > 0:
        raise InvalidInputError(f"weights must sum to more than 0, got {total!r}")
    return w


def split_terms(items: Sequence[Any], coefs: F64, codec: VectorCodec, what: str) -> Terms:
    """Split items (keys or vectors) with their coefficients into stored keys and a constant.

    Every literal is checked against ``codec`` (dim, finite in float64); a literal may be zero
    even in a cosine space (only the result has to have a direction and be storable).
    """
    keys: list[str] = []
    key_coefs: list[float] = []
    constant: F64 | None = None
    for i, (item, c) in enumerate(zip(items, coefs)):
        if isinstance(item, str):
            if not item:
                raise InvalidInputError(f"{what}[{i}] is an empty key")
            if not item.isascii():
                check_text(item, f"{what}[{i}]")
            keys.append(item)
            key_coefs.append(float(c))
            continue
        if isinstance(item, bytes):
            raise InvalidInputError(f"{what}[{i}]: keys must be str, got bytes")
        vec = _literal(item, codec, f"{what}[{i}]")
        with np.errstate(all="ignore"):  # an overflow is caught when the result is checked
            term = float(c) * vec.astype(np.float64)
            constant = term if constant is None else constant + term
    return Terms(keys, np.asarray(key_coefs, dtype=np.float64), constant)


def _literal(item: Any, codec: VectorCodec, what: str) -> npt.NDArray[Any]:
    # An operand only has to be finite: a zero or a huge literal is legitimate in a sum,
    # whose result is checked as a stored vector.
    return codec.as_operand(item, what)


def ema_coefficients(m: int, alpha: float) -> tuple[float, F64, F64]:
    """Coefficients of an exponential moving average folding ``m`` items in order.

    ``v <- (1 - alpha) * v + alpha * x`` for each item gives
    ``(1-alpha)^m * old + sum_i alpha (1-alpha)^(m-i) x_i``. Without an old value the first
    item starts the average: its coefficient is ``(1-alpha)^(m-1)``.
    Returns ``(old_coef, item_coefs_with_old, item_coefs_without_old)``.
    """
    keep = 1.0 - alpha
    with_old = np.array([alpha * keep ** (m - i) for i in range(1, m + 1)], dtype=np.float64)
    without_old = with_old.copy()
    without_old[0] = keep ** (m - 1)
    return keep**m, with_old, without_old


def evaluate(
    stored: npt.NDArray[Any], coefs: F64, constant: F64 | None, *, mean: bool
) -> tuple[F64, float]:
    """``sum(coefs[i] * stored[i]) + constant`` in float64 (divided by ``sum(coefs)`` if mean).

    Returns the vector and the sum of the coefficients. Raises InvalidInputError for a mean
    whose coefficients sum to <= 0 (e.g. every key was skipped).
    """
    total = float(coefs.sum())
    with np.errstate(all="ignore"):  # an overflow is caught when the result is checked
        out = coefs @ stored.astype(np.float64) if len(coefs) else np.zeros(stored.shape[1])
        if constant is not None:
            out = out + constant
    if mean:
        if len(coefs) == 0 or total <= 0:
            raise InvalidInputError(
                "nothing to average: no input was found, or the weights of the inputs found "
                "sum to <= 0"
            )
        out = out / total
    result: F64 = np.asarray(out, dtype=np.float64)
    return result, total


def unit(vec: F64) -> F64:
    """``vec`` scaled to unit length; InvalidInputError for the zero vector (and for one
    whose length is not finite in float64)."""
    scale = float(np.max(np.abs(vec))) if len(vec) else 0.0
    if scale == 0.0:
        raise InvalidInputError("the result is the zero vector; it cannot be normalized")
    if not math.isfinite(scale):
        raise InvalidInputError("the result is not finite; it cannot be normalized")
    scaled = vec / scale  # no overflow or underflow in the norm of huge or tiny vectors
    out: F64 = scaled / math.sqrt(float(scaled @ scaled))
    return out
