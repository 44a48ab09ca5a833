"""Vector and metadata encoding: round trips and every kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest

from rediscache.codec import VectorCodec, check_keys, pack_metadata, unpack_metadata
from rediscache.errors import CorruptDataError, InvalidInputError


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_round_trip(dtype: str) -> None:
    codec = VectorCodec(5, dtype, "l2")
    m = np.array([[1.0, -2.5, 0.0, 3.25, 1e-3], [7, 8, 9, 10, 11]], dtype=np.float64)
    blobs = codec.encode_matrix(codec.as_matrix(m))
    assert [len(b) for b in blobs] == [codec.nbytes] * 2
    back = codec.decode_many(blobs, ["a", "b"])
    tol = {"float32": 1e-7, "float64": 0, "float16": 1e-3, "bfloat16": 1e-2}[dtype]
    np.testing.assert_allclose(back, m, rtol=tol, atol=tol)
    np.testing.assert_allclose(codec.decode(blobs[0]), back[0])


def test_float32_bytes_are_little_endian() -> None:
    codec = VectorCodec(2, "float32", "l2")
    assert codec.encode(codec.as_vector([1.0, 2.0])) == np.array([1, 2], "<f4").tobytes()


def test_bfloat16_rounds_to_nearest() -> None:
    codec = VectorCodec(1, "bfloat16", "l2")
    x = np.float32(1.0) + np.float32(2**-8) * 1.5  # between two bf16 values, nearer the upper
    assert codec.decode(codec.encode(codec.as_vector([x])))[0] == np.float32(1 + 2**-7)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ([[1, 2]], "shape"),
        ([1, 2, 3], "shape"),
        ([[1, 2, np.nan]], "NaN"),
        ([[1, np.inf, 2]], "NaN or Inf"),
        ([["a", "b", "c"]], "real numbers"),
        ([[0, 0, 0]], "zero vector"),
        ([[1, 2], [3]], "not an array|real numbers"),
    ],
)
def test_bad_vectors(value: object, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        VectorCodec(3, "float32", "cosine").as_matrix(value)


def test_zero_vector_allowed_in_l2() -> None:
    assert VectorCodec(3, "float32", "l2").as_matrix([[0, 0, 0]]).shape == (1, 3)


def test_wrong_byte_length_is_detected() -> None:
    with pytest.raises(CorruptDataError, match="'k' has 8 bytes, expected 12"):
        VectorCodec(3, "float32", "l2").decode(b"\0" * 8, "k")
    with pytest.raises(CorruptDataError, match="'b'"):
        VectorCodec(3, "float32", "l2").decode_many([b"\0" * 12, b"\0"], ["a", "b"])


def test_keys_checked() -> None:
    assert check_keys(("a", "b")) == ["a", "b"]
    for bad in ("abc", ["a", ""], ["a", 3], [b"x"], 5):
        with pytest.raises(InvalidInputError):
            check_keys(bad)


def test_metadata_round_trip_and_errors() -> None:
    meta = {"genre": "drama", "year": 1999, "tags": ["a", "b"], "score": 0.5, "x": None}
    assert unpack_metadata(pack_metadata(meta)) == meta
    assert pack_metadata(None) is None and pack_metadata({}) is None
    assert unpack_metadata(None) == {}
    with pytest.raises(InvalidInputError):
        pack_metadata({1: "a"})  # type: ignore[dict-item]
    with pytest.raises(InvalidInputError):
        pack_metadata({"a": object()})
    with pytest.raises(CorruptDataError):
        unpack_metadata(b"\xc1")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_ndarray_fast_path_still_checks(dtype: type) -> None:
    codec = VectorCodec(3, "float32", "cosine")
    ok = codec.as_vector(np.array([1, 2, 3], dtype=dtype))
    assert ok.dtype == np.float32 and ok.tolist() == [1, 2, 3]
    for bad, match in (([1, np.nan, 3], "NaN"), ([np.inf, 0, 0], "Inf"), ([0, 0, 0], "zero")):
        with pytest.raises(InvalidInputError, match=match):
            codec.as_vector(np.array(bad, dtype=dtype))
    with pytest.raises(InvalidInputError, match="shape"):
        codec.as_vector(np.ones(4, dtype=dtype))
    # values whose distances would overflow float32 are refused on the fast path too ...
    with pytest.raises(InvalidInputError, match="too large"):
        VectorCodec(2, "float32", "l2").as_vector(np.array([3e38, 3e38], dtype=np.float32))
    # ... while the largest accepted vectors keep every distance finite
    l2 = VectorCodec(2, "float32", "l2")
    edge = np.float32(np.sqrt(l2.max_norm_sq / 2) * 0.999)
    a = l2.as_vector(np.array([edge, edge], dtype=np.float32))
    b = l2.as_vector(np.array([-edge, -edge], dtype=np.float32))
    assert np.isfinite(np.sum((a - b) ** 2, dtype=np.float32))


def test_nested_map_keys_must_be_strings_too() -> None:
    """msgpack writes {1: 2} but reads back only str keys: such metadata was accepted and
    then every read of the record failed (CorruptDataError)."""
    from rediscache.codec import pack_metadata, unpack_metadata
    from rediscache.errors import InvalidInputError

    for bad in ({"x": {1: 2}}, {"x": [{"a": {(1, 2): 3}}]}, {"x": ({2.5: "y"},)}):
        with pytest.raises(InvalidInputError, match="nested map keys"):
            pack_metadata(bad)
    ok = {"x": {"a": [1, {"b": None}]}, "y": [[1, 2], "s"]}
    assert unpack_metadata(pack_metadata(ok)) == {"x": {"a": [1, {"b": None}]}, "y": [[1, 2], "s"]}
