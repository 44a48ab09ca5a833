"""Vectors <-> little-endian bytes and metadata <-> msgpack. Pure functions, no I/O.

Every vector is checked here before anything is sent to Redis: shape, dtype, finiteness
and (for cosine spaces) a non-zero norm.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any, Literal

import msgpack
import numpy as np
import numpy.typing as npt

from .errors import CorruptDataError, InvalidInputError

__all__ = [
    "DTYPES",
    "MAX_TTL",
    "DType",
    "Vector",
    "VectorCodec",
    "check_flag",
    "check_int",
    "check_keys",
    "check_text",
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


#: What RediSearch computes distances in, per storage dtype: float32 for the 16- and 32-bit
#: types, float64 for float64 (VecSim widens float16/bfloat16 to float32 first).
_COMPUTE: dict[str, type[np.floating[Any]]] = {
    "float32": np.float32,
    "float64": np.float64,
    "float16": np.float32,
    "bfloat16": np.float32,
}


#: Largest finite value of each storage dtype.
_LARGEST = {
    "float32": float(np.finfo(np.float32).max),
    "float64": float(np.finfo(np.float64).max),
    "float16": float(np.finfo(np.float16).max),
    "bfloat16": 3.3895313892515355e38,  # 0x7f7f: float32's exponent, 7 bits of mantissa
}


class VectorCodec:
    """Encodes, decodes and checks the vectors of one space (``dim``, ``dtype``, ``metric``).

    Vectors are returned as float32 arrays for float32/float16/bfloat16 spaces and as float64
    for float64 spaces. bfloat16 is stored as the upper 16 bits of float32 (round to nearest
    even).

    Every vector that is stored or used as a query is judged as it will be stored (after the
    cast to the space's dtype), because that is what RediSearch computes with:

    * every stored value is finite: 70000 overflows float16 (largest 65504) and is refused;
    * its squared L2 norm, in the precision RediSearch computes distances in (float32, or
      float64 for float64 spaces), is at most :attr:`max_norm_sq` (a quarter of the largest
      float), so every L2 distance (``|a-b|^2 <= 2|a|^2 + 2|b|^2``) and every inner product
      (``|a.b| <= |a||b|``) between two accepted vectors is finite;
    * in a cosine space its squared norm is at least the smallest normal float of that
      precision, so it has a direction: 1e-8 in float16 stores as zeros and is refused.

    Raises :class:`InvalidInputError` naming the row (and value) at fault.
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
        compute = np.finfo(_COMPUTE[dtype])
        #: Largest squared L2 norm accepted (see the class docstring).
        self.max_norm_sq = float(compute.max) / 4
        #: Smallest squared L2 norm accepted (0, or the smallest normal float for cosine).
        self.min_norm_sq = float(compute.tiny) if metric == "cosine" else 0.0
        # float32/float64 store exactly what as_matrix returns: no cast to judge.
        self._exact = dtype in ("float32", "float64")
        #: float32 spaces: a float32 vector's norm can be judged in float64 (as_vector).
        self._narrow = dtype == "float32"
        self._shape = (dim,)

    # ------------------------------------------------------------ checking

    def as_matrix(self, vectors: Any, what: str = "vectors") -> npt.NDArray[Any]:
        """Check an (n, dim) array-like and return it as a C-contiguous float array.

        An empty sequence is an empty batch of shape (0, dim).
        """
        arr = self._numbers(vectors, what)
        if arr.ndim == 1 and arr.size == 0:
            arr = arr.reshape(0, self.dim)
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise InvalidInputError(f"{what} must have shape (n, {self.dim}), got {arr.shape}")
        with np.errstate(all="ignore"):  # overflow in the cast is reported below, by row
            cast = np.ascontiguousarray(arr, dtype=self.out_dtype)
        self.check_stored(cast, what, given=arr)
        return cast

    def as_vector(self, vector: Any, what: str = "vector") -> npt.NDArray[Any]:
        """Check one vector of length ``dim`` and return it as a 1-D float array."""
        if self._narrow_ok(vector):
            return vector if vector.flags.c_contiguous else np.ascontiguousarray(vector)
        if (
            isinstance(vector, np.ndarray)
            and vector.shape == (self.dim,)
            and vector.dtype.kind == "f"
            and self._exact
        ):
            # Hot path (every search): one reduction. The squared norm in the compute
            # precision is NaN or inf when any element is, and above max_norm_sq when the
            # vector is too large, so one comparison covers every check.
            with np.errstate(all="ignore"):
                arr = np.ascontiguousarray(vector, dtype=self.out_dtype)
                sq = float(np.dot(arr, arr))
            if self.min_norm_sq <= sq <= self.max_norm_sq:
                return arr
        arr = self._numbers(vector, what)
        if arr.ndim != 1:
            raise InvalidInputError(
                f"{what} must be 1-D of length {self.dim}, got shape {arr.shape}"
            )
        if arr.shape[0] != self.dim:
            raise InvalidInputError(
                f"{what} must be 1-D of length {self.dim}, got shape {arr.shape}"
            )
        arr = arr.reshape(1, -1)
        with np.errstate(all="ignore"):
            cast = np.ascontiguousarray(arr, dtype=self.out_dtype)
        self.check_stored(cast, what, given=arr, single=True)
        row: npt.NDArray[Any] = cast[0]
        return row

    def as_operand(self, vector: Any, what: str = "vector") -> npt.NDArray[np.float64]:
        """Check a vector literal of an arithmetic operation (``combine``, ``update_mean``):
        length ``dim`` and finite in float64. Not judged as stored: only the result of the
        operation is (:meth:`check_stored`), so a zero or a huge operand is fine."""
        arr = self._numbers(vector, what)
        if arr.ndim != 1 or arr.shape[0] != self.dim:
            raise InvalidInputError(
                f"{what} must be 1-D of length {self.dim}, got shape {arr.shape}"
            )
        with np.errstate(all="ignore"):
            out: npt.NDArray[np.float64] = arr.astype(np.float64)
        if not np.isfinite(out).all():
            i = int(np.flatnonzero(~np.isfinite(out))[0])
            raise InvalidInputError(f"{what} contains NaN or Inf (first at index {i})")
        return out

    def _numbers(self, values: Any, what: str) -> npt.NDArray[Any]:
        try:
            arr = np.asarray(values)
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidInputError(f"{what} is not an array of numbers: {exc}") from exc
        if arr.dtype == object or not (
            np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
        ):
            raise InvalidInputError(
                f"{what} must hold real numbers, got dtype {arr.dtype}; pass floats"
            )
        return arr

    def check_stored(
        self,
        arr: npt.NDArray[Any],
        what: str = "vectors",
        given: npt.NDArray[Any] | None = None,
        *,
        single: bool = False,
    ) -> None:
        """Raise :class:`InvalidInputError` unless every row of the (n, dim) float array
        ``arr`` is acceptable once stored in this space's dtype (see the class docstring).
        ``given``: the values as the caller gave them, for the message; ``single``: ``arr``
        is one vector (messages give positions in it, no row)."""
        if arr.shape[0] == 0:
            return
        if self._exact:
            stored = arr
        else:
            with np.errstate(all="ignore"):
                stored = self._from_store(self._to_store(arr))
        finite = np.isfinite(stored)
        if not finite.all():
            row, col = (int(i) for i in np.argwhere(~finite)[0])
            value = float((arr if given is None else given)[row, col])
            at = col if single else (row, col)
            if math.isfinite(value):
                wider = "float64" if self._exact else "float32"
                raise InvalidInputError(
                    f"{what}: value {value:g} at {at} is out of range for "
                    f"{self.dtype} (largest {_LARGEST[self.dtype]:.5g}): scale the vectors "
                    f"or use a {wider} space"
                )
            raise InvalidInputError(f"{what} contains NaN or Inf (first at index {at})")
        with np.errstate(all="ignore"):
            compute = stored.astype(_COMPUTE[self.dtype], copy=False)
            sq = np.einsum("ij,ij->i", compute, compute)
        big = np.flatnonzero(~(sq <= self.max_norm_sq))
        if big.size:
            which = "it" if single else f"row {int(big[0])}"
            raise InvalidInputError(
                f"{what}: {which} is too large (squared norm above "
                f"{self.max_norm_sq:.3g}): distances to it would overflow "
                f"{np.dtype(_COMPUTE[self.dtype]).name}; scale the vectors"
            )
        if self.metric == "cosine":
            small = np.flatnonzero(sq < self.min_norm_sq)
            if small.size:
                row = int(small[0])
                cast = "" if self._exact else f" once stored as {self.dtype}"
                raise InvalidInputError(
                    f"{what}: {'it' if single else f'row {row}'} is a zero vector{cast} (or too "
                    "small to normalize), "
                    "which has no direction in a cosine space"
                )

    def as_result(self, vec: npt.NDArray[np.float64], what: str) -> npt.NDArray[Any]:
        """A computed float64 vector (an average, a combination) in the output dtype, checked
        as :meth:`check_stored` would check it (raises InvalidInputError naming ``what``)."""
        if self._exact:
            # Fast path: a squared norm within bounds in float64 means no element can
            # overflow the cast; the cast vector's own norm then decides.
            with np.errstate(all="ignore"):
                wide = float(np.dot(vec, vec))
            if wide <= self.max_norm_sq:
                out: npt.NDArray[Any] = vec.astype(self.out_dtype)
                if self.min_norm_sq <= float(np.dot(out, out)) <= self.max_norm_sq:
                    return out
        with np.errstate(all="ignore"):  # overflow is reported by check_stored
            out = vec.astype(self.out_dtype)
        self.check_stored(out[None, :], what, given=vec[None, :])
        return out

    def as_stored(self, arr: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """The values a read returns once the checked (n, dim) array ``arr`` is stored: the
        same array in float32/float64 spaces, the values rounded to float16/bfloat16 (and
        widened to float32) in the others."""
        if self._exact:
            return arr
        return self._from_store(self._to_store(arr))

    # ------------------------------------------------------------ encoding

    def _usual(self, vector: Any) -> bool:
        """Whether ``vector`` is a float32 (dim,) array and the space float32 (the usual
        query), so that its bytes are what the space stores."""
        return (
            self._narrow
            and type(vector) is np.ndarray
            and vector.dtype == self.out_dtype
            and vector.shape == self._shape
        )

    def _narrow_ok(self, vector: Any) -> bool:
        """Whether ``vector`` is :meth:`_usual` and accepted as it is: the hottest check (every
        search, every put of one vector). One reduction in float32, the precision
        RediSearch computes distances in: the squared norm is NaN when an element is, inf
        when it overflows, so one comparison covers every check. ``np.vdot`` sets no
        floating-point warning for an overflow, where ``np.dot`` does (and entering
        ``np.errstate`` costs 1.5 us); under warnings made errors, a warning it raised
        means: judge it the general way. False means: judge it the general way."""
        if self._usual(vector):
            try:
                sq = float(np.vdot(vector, vector))
            except (RuntimeWarning, FloatingPointError):
                return False
            return self.min_norm_sq <= sq <= self.max_norm_sq
        return False

    def checked_bytes(self, vector: Any, what: str = "vector") -> bytes:
        """The stored bytes of one query vector, once checked (:meth:`as_vector`'s checks:
        InvalidInputError for a bad one): a float32 (dim,) array in a float32 space as it
        is, after one reduction (:meth:`_narrow_ok`), anything else converted first."""
        if self._narrow_ok(vector):
            return vector.tobytes()  # type: ignore[no-any-return]
        return self.encode(self.as_vector(vector, what))

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
        """Several stored vectors into one (n, dim) array (all must be present; a wrong byte
        length raises :class:`CorruptDataError` naming its key). The bytes are joined into
        a bytearray, which the array then uses: one copy (joined bytes were copied again,
        frombuffer's views of bytes being read-only)."""
        nbytes = self.nbytes
        if list(map(len, raws)).count(nbytes) != len(raws):
            for raw, key in zip(raws, keys):
                if len(raw) != nbytes:
                    self.decode(raw, key)  # raises with the key named
        if self.store_dtype != self.out_dtype:  # float16, bfloat16: widened
            joined = np.frombuffer(b"".join(raws), dtype=self.store_dtype)
            return self._from_store(joined.reshape(len(raws), self.dim))
        arr = np.frombuffer(bytearray().join(raws), dtype=self.out_dtype)
        return arr.reshape(len(raws), self.dim)

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
    """Check that ``keys`` is a sequence of non-empty str that UTF-8 can encode (no lone
    surrogates) and without NUL; return it as a list."""
    if isinstance(keys, (str, bytes)):
        raise InvalidInputError(f"{what} must be a sequence of strings, not a single string")
    try:
        out = list(keys)
    except TypeError as exc:
        raise InvalidInputError(f"{what} must be a sequence of strings") from exc
    for i, k in enumerate(out):
        check_key(k, f"{what}[{i}]")
    return out


def check_key(key: Any, what: str = "key") -> str:
    """Check one key as :func:`check_keys` does (``what`` names it in messages); return it."""
    if not isinstance(key, str) or not key:
        raise InvalidInputError(f"{what} = {key!r}: keys must be non-empty strings")
    if not key.isascii():
        check_text(key, what)
    if "\x00" in key:
        raise InvalidInputError(
            f"{what} = {key!r}: keys cannot contain NUL (RediSearch cannot load such "
            "a document for a search)"
        )
    return key


def check_int(value: object, what: str, *, low: int = 1, high: int = 2**63 - 1) -> int:
    """An integer argument (numpy's too; bool refused) in ``low..high``, as an int.

    Raises:
        InvalidInputError: naming ``what``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidInputError(f"{what} must be an int, got {type(value).__name__} {value!r}")
    number = int(value)
    if not low <= number <= high:
        raise InvalidInputError(f"{what} must be in {low}..{high:,}, got {value!r}")
    return number


def check_flag(value: object, what: str) -> bool:
    """A bool argument (numpy's bool too), as a bool.

    Raises:
        InvalidInputError: anything else, naming ``what``.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InvalidInputError(f"{what} must be True or False, got {type(value).__name__} {value!r}")


def check_text(text: str, what: str) -> str:
    """Return ``text`` if UTF-8 can encode it (Redis stores bytes), else raise
    :class:`InvalidInputError` (a lone surrogate such as ``"\\ud800"`` cannot be stored)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{what} = {text[:40]!r} cannot be stored: it is not valid Unicode text "
            f"({exc.reason} at position {exc.start})"
        ) from None
    return text


def _plain(value: Any) -> Any:
    """msgpack's fallback for values it cannot pack: numpy scalars as their Python values,
    numpy arrays as lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"can not serialize {type(value).__name__!r} object")


def pack_metadata(meta: Mapping[str, Any] | None, what: str = "metadata") -> bytes | None:
    """Metadata dict as msgpack bytes (None or empty: None).

    Values may be None, bool, int (64-bit), float, str, bytes, lists/tuples and dicts of
    those; numpy scalars are stored as their Python values (``np.int64(3)`` as 3) and numpy
    arrays as lists.

    Raises:
        InvalidInputError: not a dict, a key that is not a str, or a value that cannot be
            stored (naming ``what``).
    """
    if meta is None:
        return None
    plain = type(meta) is dict  # the usual case: no ABC check, no copy
    if not plain and not isinstance(meta, Mapping):
        raise InvalidInputError(f"{what} must be a dict, got {type(meta).__name__}")
    if not meta:
        return None
    for k, v in meta.items():
        if not isinstance(k, str):
            raise InvalidInputError(f"{what} keys must be strings, got {k!r}")
        if isinstance(v, (dict, list, tuple)):
            _check_nested_keys(v, what)
    try:
        return bytes(msgpack.packb(meta if plain else dict(meta), use_bin_type=True,
                                   default=_plain))  # fmt: skip
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInputError(f"{what} cannot be stored: {exc}") from exc


def _check_nested_keys(value: Any, what: str) -> None:
    """Refuse a map key that is not a str anywhere inside ``value`` (msgpack writes one, but
    reads only str keys back: the record could not be read)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidInputError(f"{what}: nested map keys must be strings too, got {k!r}")
            if isinstance(v, (dict, list, tuple)):
                _check_nested_keys(v, what)
    else:
        for v in value:
            if isinstance(v, (dict, list, tuple)):
                _check_nested_keys(v, what)


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


#: Longest time to live accepted, in seconds (about 31,700 years): its expiry time in
#: milliseconds stays below 2**53, exact in the double an index stores, and far below the
#: 64-bit limit Redis checks (PEXPIRE refuses anything past it, mid-script).
MAX_TTL = 1e12


def ttl_to_ms(ttl: object, what: str = "ttl") -> int:
    """Seconds to live as whole milliseconds (0 stays 0: no expiry).

    Raises:
        InvalidInputError: not a finite real number (bool excluded) in 0 or 0.001..MAX_TTL.
    """
    if isinstance(ttl, bool) or not isinstance(ttl, numbers.Real):
        raise InvalidInputError(f"{what} must be a number of seconds >= 0, got {ttl!r}")
    seconds = float(ttl)
    if not math.isfinite(seconds) or seconds < 0 or 0 < seconds < 0.001:
        raise InvalidInputError(
            f"{what} must be 0 (never expires) or at least 0.001 s, got {ttl!r}"
        )
    if seconds > MAX_TTL:
        raise InvalidInputError(
            f"{what} of {ttl!r} s is too long: at most {MAX_TTL:.0e} s (about 31,700 years)"
        )
    return round(seconds * 1000)
