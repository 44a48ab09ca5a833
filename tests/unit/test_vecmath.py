"""Pure helpers behind average / combine / update_mean."""

from __future__ import annotations

import numpy as np
import pytest

from rediscache.codec import VectorCodec
from rediscache.errors import InvalidInputError
from rediscache.vecmath import check_weights, ema_coefficients, evaluate, split_terms, unit


def test_ema_coefficients_match_sequential_folding() -> None:
    rng = np.random.default_rng(0)
    old, items, alpha = rng.standard_normal(3), rng.standard_normal((4, 3)), 0.3
    keep, with_old, without_old = ema_coefficients(4, alpha)
    v = old.copy()
    for x in items:
        v = (1 - alpha) * v + alpha * x
    np.testing.assert_allclose(keep * old + with_old @ items, v)
    v = items[0].copy()
    for x in items[1:]:
        v = (1 - alpha) * v + alpha * x
    np.testing.assert_allclose(without_old @ items, v)


def test_split_terms_folds_literals_into_one_constant() -> None:
    codec = VectorCodec(2, "float32", "cosine")
    terms = split_terms(["a", [1, 2], "b", [0, 0]], np.array([1.0, 2.0, -1.0, 5.0]), codec, "x")
    assert terms.keys == ["a", "b"] and terms.coefs.tolist() == [1.0, -1.0]
    assert terms.constant is not None and terms.constant.tolist() == [2.0, 4.0]  # zero literal ok
    for bad, match in ((["", "a"], "empty key"), ([b"a"], "bytes"), ([[1, 2, 3]], "shape")):
        with pytest.raises(InvalidInputError, match=match):
            split_terms(bad, np.ones(len(bad)), codec, "x")


def test_weights() -> None:
    assert check_weights(None, 3, positive_sum=True).tolist() == [1, 1, 1]
    assert check_weights([1, -1], 2, positive_sum=False).tolist() == [1, -1]
    for w, match in (([1], "shape"), ([1, np.inf], "NaN or Inf"), ([1, -1], "sum to more")):
        with pytest.raises(InvalidInputError, match=match):
            check_weights(w, 2, positive_sum=True)


def test_evaluate_and_unit() -> None:
    stored = np.array([[1.0, 0.0], [0.0, 4.0]], dtype=np.float32)
    vec, total = evaluate(stored, np.array([1.0, 3.0]), np.array([1.0, 1.0]), mean=True)
    assert total == 4.0 and vec.tolist() == [0.5, 3.25]
    with pytest.raises(InvalidInputError, match="nothing to average"):
        evaluate(np.empty((0, 2)), np.empty(0), None, mean=True)
    assert unit(np.array([3.0, 4.0])).tolist() == [0.6, 0.8]
    with pytest.raises(InvalidInputError, match="zero vector"):
        unit(np.zeros(2))
