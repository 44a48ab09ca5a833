"""Vectors <-> little-endian bytes and metadata <-> msgpack. Pure functions, no I/O.

Every vector is checked here before anything is sent to Redis: shape, dtype, finiteness
and (for cosine spaces) a non-zero norm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import msgpack
import numpy as np
import numpy.typing as npt

from .errors import CorruptDataError, InvalidInputError

__all__ = [
    "DTYPES",
    "DType",
    "Vector",
    "VectorCodec",
    "check_keys",
    "pack_metadata",
    "ttl_to_ms",
    "unpack_metadata",
]

DType = Literal["float32", "float64", "float16", "bfloat16"]
#: Storage dtypes and their RediSearch VECTOR TYPE names.
DTYPES: dict[str, str] = {
    "float32": "FLOAT32",
    "float64": "FLOAT64",
    "float16": "FLOAT16",
    "bfloat16": "BFLOAT16",
}
Vector = npt.NDArray[np.floating[Any]]


def _check_finite(arr: npt.NDArray[Any], what: str) -> None:
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))
        where = tuple(int(i) for i in bad[0])
        raise InvalidInputError(f"{what} contains NaN or Inf (first at index {where})")


class VectorCodec:
    """Encodes and decodes vectors of one space (``dim``, ``dtype``, ``metric``).

    Vectors are returned as float32 arrays for float32/float16/bfloat16 spaces and as float64
    for float64 spaces. bfloat16 is stored as the upper 16 bits of float32 (round to nearest even).
    """

    def __init__(self, dim: int, dtype: str, metric: str) -> None:
        if dtype not in DTYPES:
            raise InvalidInputError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
        self.dim = dim
        self.dtype = dtype
        self.metric = metric
        self.store_dtype: np.dtype[Any] = np.dtype(
            {"float32": "<f4", "float64": "<f8", "float16": "<f2", "bfloat16": "<u2"}[dtype]
        )
        self.out_dtype: np.dtype[Any] = np.dtype("<f8" if dtype == "float64" else "<f4")
        self.nbytes = dim * self.store_dtype.itemsize

    # ------------------------------------------------------------ checking

    def as_matrix(self, vectors: Any, what: str = "vectors") -> npt.NDArray[Any]:
        """Check an (n, dim) array-like and return it as a C-contiguous float array."""
        try:
            arr = np.asarray(vectors)
        except (ValueError, TypeError) as exc:
            raise InvalidInputError(f"{what} is not an array of numbers: {exc}") from exc
        if arr.dtype == object or not (
            np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
        ):
            raise InvalidInputError(
                f"{what} must hold real numbers, got dtype {arr.dtype}; pass floats"
            )
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise InvalidInputError(f"{what} must have shape (n, {self.dim}), got {arr.shape}")
        arr = arr.astype(self.out_dtype, copy=False)
        _check_finite(arr, what)
        if self.metric == "cosine" and arr.shape[0]:
            zero = np.flatnonzero(~np.any(arr != 0, axis=1))
            if zero.size:
                raise InvalidInputError(
                    f"{what}: row {int(zero[0])} is a zero vector, which has no direction in a "
                    "cosine space"
                )
        return np.ascontiguousarray(arr)

    def as_vector(self, vector: Any, what: str = "vector") -> npt.NDArray[Any]:
        """Check one vector of length ``dim`` and return it as a 1-D float array."""
        if (
            isinstance(vector, np.ndarray)
            and vector.shape == (self.dim,)
            and vector.dtype.kind == "f"
        ):
            # Hot path (every search): two reductions instead of the general checks. A float64
            # sum of floats is finite iff every element is; the float32 dot is 0 only for a
            # vector that is zero in float32 terms (what the server computes with).
            arr = np.ascontiguousarray(vector, dtype=self.out_dtype)
            if math.isfinite(float(arr.sum(dtype=np.float64))) and (
                self.metric != "cosine" or float(np.dot(arr, arr)) != 0.0
            ):
                return arr
        try:
            arr = np.asarray(vector)
        except (ValueError, TypeError) as exc:
            raise InvalidInputError(f"{what} is not an array of numbers: {exc}") from exc
        if arr.ndim != 1:
            raise InvalidInputError(
                f"{what} must be 1-D of length {self.dim}, got shape {arr.shape}"
            )
        row: npt.NDArray[Any] = self.as_matrix(arr.reshape(1, -1), what)[0]
        return row

    # ------------------------------------------------------------ encoding

    def encode_matrix(self, arr: npt.NDArray[Any]) -> list[bytes]:
        """Rows of a checked matrix as stored bytes (one ``bytes`` per row)."""
        raw = self._to_store(arr)
        n = self.nbytes
        buf = raw.tobytes()
        return [buf[i : i + n] for i in range(0, len(buf), n)]

    def encode(self, vec: npt.NDArray[Any]) -> bytes:
        """One checked vector as stored bytes."""
        return self._to_store(vec).tobytes()

    def _to_store(self, arr: npt.NDArray[Any]) -> npt.NDArray[Any]:
        if self.dtype == "bfloat16":
            bits = np.ascontiguousarray(arr, dtype="<f4").view("<u4")
            # round to nearest even on the dropped 16 bits
            rounded = bits + (np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1)))
            high: npt.NDArray[Any] = (rounded >> 16).astype("<u2")
            return high
        return np.ascontiguousarray(arr, dtype=self.store_dtype)

    # ------------------------------------------------------------ decoding

    def decode(self, raw: bytes, key: str = "?") -> npt.NDArray[Any]:
        """Stored bytes back to a vector; a wrong byte length raises :class:`CorruptDataError`."""
        if len(raw) != self.nbytes:
            raise CorruptDataError(
                f"stored vector of {key!r} has {len(raw)} bytes, expected {self.nbytes} "
                f"({self.dim} x {self.dtype}); it was written by another tool or another schema"
            )
        arr = np.frombuffer(raw, dtype=self.store_dtype)
        return self._from_store(arr)

    def decode_many(self, raws: list[bytes], keys: list[str]) -> npt.NDArray[Any]:
        """Several stored vectors into one (n, dim) array (all must be present)."""
        for raw, key in zip(raws, keys):
            if len(raw) != self.nbytes:
                self.decode(raw, key)  # raises with the key named
        arr = np.frombuffer(b"".join(raws), dtype=self.store_dtype).reshape(len(raws), self.dim)
        return self._from_store(arr)

    def _from_store(self, arr: npt.NDArray[Any]) -> npt.NDArray[Any]:
        if self.dtype == "bfloat16":
            widened: npt.NDArray[Any] = (arr.astype("<u4") << 16).view("<f4")
            return widened
        if arr.dtype == self.out_dtype:
            copied: npt.NDArray[Any] = arr.copy()  # frombuffer views are read-only
            return copied
        converted: npt.NDArray[Any] = arr.astype(self.out_dtype)
        return converted


def check_keys(keys: Any, what: str = "keys") -> list[str]:
    """Check that ``keys`` is a sequence of non-empty str; return it as a list."""
    if isinstance(keys, (str, bytes)):
        raise InvalidInputError(f"{what} must be a sequence of strings, not a single string")
    try:
        out = list(keys)
    except TypeError as exc:
        raise InvalidInputError(f"{what} must be a sequence of strings") from exc
    for i, k in enumerate(out):
        if not isinstance(k, str) or not k:
            raise InvalidInputError(f"{what}[{i}] = {k!r}: keys must be non-empty strings")
    return out


def pack_metadata(meta: Mapping[str, Any] | None, what: str = "metadata") -> bytes | None:
    """Metadata dict as msgpack bytes (None or empty: None)."""
    if meta is None or (isinstance(meta, Mapping) and not meta):
        return None
    if not isinstance(meta, Mapping):
        raise InvalidInputError(f"{what} must be a dict, got {type(meta).__name__}")
    for k in meta:
        if not isinstance(k, str):
            raise InvalidInputError(f"{what} keys must be strings, got {k!r}")
    try:
        return bytes(msgpack.packb(dict(meta), use_bin_type=True))
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInputError(f"{what} cannot be stored: {exc}") from exc


def unpack_metadata(raw: bytes | None) -> dict[str, Any]:
    """msgpack bytes back to a metadata dict (None: empty dict)."""
    if not raw:
        return {}
    try:
        out = msgpack.unpackb(raw, raw=False)
    except (ValueError, msgpack.ExtraData) as exc:
        raise CorruptDataError(f"stored metadata is not valid msgpack: {exc}") from exc
    if not isinstance(out, dict):
        raise CorruptDataError("stored metadata is not a map")
    return out


def ttl_to_ms(ttl: object, what: str = "ttl") -> int:
    """Seconds to live as whole milliseconds (0 stays 0: no expiry).

    Raises:
        InvalidInputError: not a finite number >= 0, or a positive one under 1 ms.
    """
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl):
        raise InvalidInputError(f"{what} must be a number of seconds >= 0, got {ttl!r}")
    if ttl < 0 or 0 < ttl < 0.001:
        raise InvalidInputError(
            f"{what} must be 0 (never expires) or at least 0.001 s, got {ttl!r}"
        )
    return round(ttl * 1000)
