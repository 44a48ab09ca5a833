"""Atomic embedding operations of a space: average, combine (analogies), running means.

Each is one round trip to one Lua script, so it is atomic. Without ``into`` the script only
reads the inputs (``gather.lua``, a consistent snapshot) and numpy does the arithmetic in
float64: the server is blocked for the reads only. With ``into`` (and for ``update_mean``) the
arithmetic runs in Lua so that reading and storing happen in one step (``combine.lua``,
``update_mean.lua``). docs/lua.md has the measurements behind this split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar, overload

import numpy as np
import numpy.typing as npt

from . import scripts, vecmath
from .codec import VectorCodec, check_keys
from .errors import InvalidInputError
from .keys import COUNT_FIELD, VECTOR_FIELD, GenKeys, SpaceKeys

if TYPE_CHECKING:
    import redis

    from .space import SpaceConfig
    from .state import SpaceState

T = TypeVar("T")

__all__ = ["Averaged", "VectorOps"]


class Averaged(NamedTuple):
    """Result of ``average(..., missing="skip")``: the mean and how many keys it used/skipped."""

    vector: npt.NDArray[Any]
    used: int
    skipped: int


class VectorOps:
    """The embedding operations, mixed into :class:`rediscache.Space`."""

    config: SpaceConfig
    keys: SpaceKeys
    codec: VectorCodec
    _client: redis.Redis

    # Provided by Space: run a read / a write with the space's current state (retrying when
    # a snapshot or rollback changed it).
    def _attempts(self, call: Callable[[SpaceState, GenKeys], T]) -> T:
        raise NotImplementedError

    def _writing(self, call: Callable[[SpaceState, GenKeys], T]) -> T:
        raise NotImplementedError

    def _lua_element(self, op: str) -> str:
        """struct format of the space's stored floats, for operations that compute in Lua."""
        if self.config.dtype == "float32":
            return "f"
        if self.config.dtype == "float64":
            return "d"
        raise InvalidInputError(
            f"{op} computes on the server, which supports float32 and float64 spaces; "
            f"{self.config.name!r} is {self.config.dtype} (without into=, average and combine "
            "work on any dtype)"
        )

    def _result(self, vec: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
        out: npt.NDArray[Any] = vec.astype(self.codec.out_dtype)
        return out

    # ------------------------------------------------------------ average

    @overload
    def average(
        self,
        keys: Sequence[str],
        *,
        weights: Any = None,
        into: str | None = None,
        normalize: bool = False,
        missing: Literal["raise"] = "raise",
    ) -> npt.NDArray[Any]: ...

    @overload
    def average(
        self,
        keys: Sequence[str],
        *,
        weights: Any = None,
        into: str | None = None,
        normalize: bool = False,
        missing: Literal["skip"],
    ) -> Averaged: ...

    def average(
        self,
        keys: Sequence[str],
        *,
        weights: Any = None,
        into: str | None = None,
        normalize: bool = False,
        missing: Literal["raise", "skip"] = "raise",
    ) -> npt.NDArray[Any] | Averaged:
        """The (weighted) mean of the stored vectors of ``keys``.

        ``weights``: one finite number per key, summing to more than 0 (default: equal).
        ``normalize``: scale the mean to unit length. ``into``: also store the mean as the
        embedding ``into`` of this space (indexed and searchable at once; its metadata is
        kept). ``missing="skip"`` leaves out missing keys and returns an :class:`Averaged`
        with the counts; the default raises.

        One round trip, atomic: the inputs are read (and ``into`` written) in one step.

        Raises:
            InvalidInputError: empty ``keys``, bad weights, nothing left to average, a zero
                mean with ``normalize`` (or stored into a cosine space).
            KeyNotFoundError: a key is missing (default ``missing="raise"``); nothing stored.
        """
        key_list = check_keys(keys)
        if not key_list:
            raise InvalidInputError("average needs at least one key")
        if missing not in ("raise", "skip"):
            raise InvalidInputError("missing must be 'raise' or 'skip'")
        w = vecmath.check_weights(weights, len(key_list), positive_sum=True)
        skip = missing == "skip"
        if into is None:
            found, stored = self._gather(key_list, skip)
            vec, _ = vecmath.evaluate(stored, w[found], None, mean=True)
            used = int(found.sum())
            if normalize:
                vec = vecmath.unit(vec)
        else:
            res = self._combine_into(
                key_list, w, None, into, mean=True, normalize=normalize, skip=skip
            )
            vec, used = res.vector, res.used
        out = self._result(vec)
        return Averaged(out, used, len(key_list) - used) if skip else out

    def _gather(self, key_list: list[str], skip: bool) -> tuple[npt.NDArray[np.bool_], Any]:
        g = self._attempts(
            lambda state, gen: scripts.gather(
                self._client,
                gen.docs(key_list),
                self.keys.config,
                state=state.raw,
                field=VECTOR_FIELD,
                nbytes=self.codec.nbytes,
                skip_missing=skip,
                names=key_list,
            )
        )
        found = np.array(g.found, dtype=bool)
        n = int(found.sum())
        stored = (
            self.codec.decode_many(g.blobs, [k for k, f in zip(key_list, g.found) if f])
            if n
            else np.empty((0, self.codec.dim))
        )
        return found, stored

    def _combine_into(
        self,
        key_list: list[str],
        coefs: npt.NDArray[np.float64],
        constant: npt.NDArray[np.float64] | None,
        into: str,
        *,
        mean: bool,
        normalize: bool,
        skip: bool,
    ) -> scripts.Combined:
        target = check_keys([into], "into")[0]
        element = self._lua_element("storing a result with into=")
        return self._writing(
            lambda state, gen: scripts.combine(
                self._client,
                gen.docs(key_list),
                gen.doc(target),
                self.keys.config,
                state=state.raw,
                count_field=gen.count_field,
                field=VECTOR_FIELD,
                dim=self.codec.dim,
                element=element,
                coefs=coefs,
                constant=constant,
                mean=mean,
                normalize=normalize,
                nonzero=self.config.metric == "cosine",
                skip_missing=skip,
                names=key_list,
            )
        )

    # ------------------------------------------------------------ combine

    def combine(
        self,
        add: Sequence[Any] = (),
        subtract: Sequence[Any] = (),
        *,
        weights: Any = None,
        into: str | None = None,
        normalize: bool = True,
    ) -> npt.NDArray[Any]:
        """``sum(add) - sum(subtract)``: analogies such as king - man + woman.

        Items are stored keys (str) or vector literals (array-likes of length dim), mixed
        freely. ``weights`` (one finite number per item, ``add`` items first, then
        ``subtract``) scale the items. ``normalize`` (default True) returns a unit vector.
        ``into`` also stores the result as an embedding of this space.

        One round trip, atomic. To search from the result without its inputs:
        ``space.search(space.combine(add=[a, c], subtract=[b]), k, exclude=[a, b, c])``.

        Raises:
            InvalidInputError: no items, a literal of the wrong dim or with NaN, bad weights,
                a zero result with ``normalize`` (or stored into a cosine space).
            KeyNotFoundError: a key does not exist; nothing stored.
        """
        items = [*add, *subtract]
        if not items:
            raise InvalidInputError("combine needs at least one item in add or subtract")
        signs = np.array([1.0] * len(add) + [-1.0] * len(subtract))
        w = vecmath.check_weights(weights, len(items), positive_sum=False)
        terms = vecmath.split_terms(items, signs * w, self.codec, "items")
        if into is not None:
            res = self._combine_into(
                terms.keys,
                terms.coefs,
                terms.constant,
                into,
                mean=False,
                normalize=normalize,
                skip=False,
            )
            return self._result(res.vector)
        if terms.keys:
            _, stored = self._gather(terms.keys, False)
        else:
            stored = np.empty((0, self.codec.dim))
        vec, _ = vecmath.evaluate(stored, terms.coefs, terms.constant, mean=False)
        return self._result(vecmath.unit(vec) if normalize else vec)

    # ------------------------------------------------------------ running means

    def update_mean(
        self, key: str, items: Sequence[Any], *, alpha: float | None = None
    ) -> npt.NDArray[Any]:
        """Fold ``items`` (keys or vectors, in order) into the running embedding ``key``.

        Without ``alpha`` the embedding is the exact mean of every item ever folded in (a
        count is kept beside it; an embedding written by ``put`` counts as one item). With
        ``alpha`` in (0, 1] it is an exponential moving average, each item applied as
        ``v = (1 - alpha) * v + alpha * item``; the first item starts an absent embedding.
        The embedding stays indexed. Returns the new vector.

        One round trip, atomic: concurrent updates of one key never lose an item.

        Raises:
            InvalidInputError: no items, bad alpha, a literal of the wrong dim, a float16 or
                bfloat16 space, a zero result in a cosine space.
            KeyNotFoundError: an item key does not exist; nothing stored.
        """
        target = check_keys([key], "key")[0]
        item_list = list(items)
        if isinstance(items, (str, bytes)) or not item_list:
            raise InvalidInputError("items must be a non-empty list of keys or vectors")
        m = len(item_list)
        element = self._lua_element("update_mean")
        if alpha is None:
            ones = np.ones(m, dtype=np.float64)
            terms = vecmath.split_terms(item_list, ones, self.codec, "items")
            with_old = without_old = (terms.coefs, terms.constant)
            old_coef = 1.0
        else:
            if isinstance(alpha, bool) or not 0.0 < float(alpha) <= 1.0:
                raise InvalidInputError(f"alpha must be in (0, 1], got {alpha!r}")
            old_coef, c_old, c_new = vecmath.ema_coefficients(m, float(alpha))
            t_old = vecmath.split_terms(item_list, c_old, self.codec, "items")
            t_new = vecmath.split_terms(item_list, c_new, self.codec, "items")
            terms = t_old
            with_old, without_old = (t_old.coefs, t_old.constant), (t_new.coefs, t_new.constant)
        res = self._writing(
            lambda state, gen: scripts.update_mean(
                self._client,
                gen.doc(target),
                gen.docs(terms.keys),
                self.keys.config,
                state=state.raw,
                doc_count_field=gen.count_field,
                field=VECTOR_FIELD,
                count_field=COUNT_FIELD,
                dim=self.codec.dim,
                element=element,
                items=m,
                ema=alpha is not None,
                old_coef=old_coef,
                with_old=with_old,
                without_old=without_old,
                nonzero=self.config.metric == "cosine",
                names=[target, *terms.keys],
            )
        )
        return self._result(res.vector)
