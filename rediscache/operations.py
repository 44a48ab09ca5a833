"""Atomic embedding operations of a space: average, combine (analogies), running means.

Each is one round trip to one Lua script, so it is atomic. Without ``into`` the script only
reads the inputs (``gather.lua``, a consistent snapshot) and numpy does the arithmetic in
float64: the server is blocked for the reads only. With ``into`` (and for ``update_mean``) the
arithmetic runs in Lua so that reading and storing happen in one step (``combine.lua``,
``update_mean.lua``). docs/lua.md has the measurements behind this split.

A script blocks every client of the server while it runs, so calls are bounded by the work
they give one script (floats read, :data:`GATHER_FLOATS` and :data:`COMPUTE_FLOATS`: 33-51 ms
of server time each on the 2-core dev box, docs/lua.md): a read-only call larger than that
is read in several scripts (each atomic, all within one generation of the space), a call that
computes and stores on the server is refused with the limit. Every result is checked like a
vector being stored (:meth:`rediscache.codec.VectorCodec.check_stored`): finite in the space's
dtype, distances to it finite, a direction in a cosine space.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, NamedTuple, TypeVar, cast

import numpy as np
import numpy.typing as npt

from . import scripts, vecmath
from .codec import check_flag, check_keys
from .effects import Flow
from .errors import InvalidInputError, StaleStateError
from .keys import COUNT_FIELD, VECTOR_FIELD, GenKeys, shown_name
from .state import SpaceState
from .target import Target

R = TypeVar("R")
T = TypeVar("T")

__all__ = ["COMPUTE_FLOATS", "GATHER_FLOATS", "Averaged", "Operations", "Planned"]

#: Floats one gather.lua call reads at most (keys x dim): 5,208 keys at dim 384 took 33-51 ms
#: of server time here (docs/lua.md). average/combine without into= read more in chunks.
GATHER_FLOATS = 2_000_000
#: Floats one combine.lua / update_mean.lua call reads at most (inputs x dim): 1,041 keys at
#: dim 384 (260 at 1536) took 33-49 ms of server time here (docs/lua.md).
COMPUTE_FLOATS = 400_000


class Averaged(NamedTuple):
    """Result of ``average(..., missing="skip")``: the mean, how many keys it used and
    skipped, and the skipped keys (in input order)."""

    vector: npt.NDArray[Any]
    used: int
    skipped: int
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class Planned(Generic[R, T]):
    """An operation reduced to script calls and the pure code around them (no I/O).

    ``script(state, gen)`` builds the calls for the space's current state, run one after
    another in that state (None: nothing to send); ``writes`` says whether they need a
    writable live generation (run through ``_writing``) or only read (``_attempts``);
    ``finish`` turns the calls' parsed replies (an empty list when nothing was sent) into the
    operation's result, run by :meth:`Operations._perform`.
    """

    script: Callable[[SpaceState, GenKeys], list[scripts.ScriptCall[R]]] | None
    writes: bool
    finish: Callable[[list[R]], T]


class Operations:
    """The embedding operations of a target's live space.

    Each public method is a plan (``_*_plan``: validation, the script calls to make, the
    arithmetic on their replies; all pure) run by :meth:`_perform`.
    """

    def __init__(self, target: Target) -> None:
        self.target = target
        self.config = target.config
        self.keys = target.keys
        self.codec = target.codec

    def _default_ttl_ms(self) -> int:
        """The space's default time to live in ms, given to results stored by into= and
        update_mean (0: none, their expiry is left as it is)."""
        return round(self.config.ttl * 1000) if self.config.ttl else 0

    def _perform(self, plan: Planned[R, T]) -> Flow[T]:
        """Run ``plan``: its scripts (one round trip each per attempt), then its finish."""
        build = plan.script
        if build is None:
            return plan.finish([])

        def run(state: SpaceState, gen: GenKeys) -> Flow[list[R]]:
            out: list[R] = []
            for c in build(state, gen):
                out.append((yield from scripts.run(c)))
            return out

        t = self.target
        if plan.writes:
            return plan.finish((yield from t.writing(run)))
        state = t.state
        try:  # the usual case, one attempt in the cached state, without the retry loop
            calls = build(state, t.gen)
            if len(calls) == 1:
                return plan.finish([(yield from scripts.run(calls[0]))])
            return plan.finish((yield from run(state, t.gen)))
        except StaleStateError:
            if t.state is state:
                yield from t.refresh()
        return plan.finish((yield from t.attempts(run)))

    def _lua_element(self, op: str) -> str:
        """struct format of the space's stored floats, for operations that compute in Lua."""
        if self.config.dtype == "float32":
            return "f"
        if self.config.dtype == "float64":
            return "d"
        raise InvalidInputError(
            f"{op} computes on the server, which supports float32 and float64 spaces; "
            f"{shown_name(self.config.name)} is {self.config.dtype} (without "
            "into=, average and combine work on any dtype)"
        )

    def _result(self, vec: npt.NDArray[np.float64], op: str) -> npt.NDArray[Any]:
        """The result of ``op`` in the output dtype, checked like a vector being stored."""
        return self.codec.as_result(vec, f"the result of {op}")

    def _bounded(self, keys: int, op: str, into: bool, *, reserved: int = 0) -> None:
        """Refuse a call whose one script would read more than COMPUTE_FLOATS (into=,
        update_mean: ``keys`` stored inputs plus ``reserved`` vectors of its own, the target
        and the constant term); read-only calls are split instead (GATHER_FLOATS)."""
        if into and (keys + reserved) * self.codec.dim > COMPUTE_FLOATS:
            most = max(1, COMPUTE_FLOATS // self.codec.dim - reserved)
            raise InvalidInputError(
                f"{op} computes on the server in one script, which blocks every other client "
                f"while it runs: at most {most:,} stored inputs at dim {self.codec.dim} "
                f"(about 25 ms; got {keys:,}). Compute the result without storing it (read "
                "in chunks) and put it, or split the inputs (docs/lua.md)"
            )

    # ------------------------------------------------------------ average

    def average(
        self,
        keys: Sequence[str],
        *,
        weights: Any = None,
        into: str | None = None,
        normalize: bool = False,
        missing: Literal["raise", "skip"] = "raise",
    ) -> Flow[npt.NDArray[Any] | Averaged]:
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
        plan = self._average_plan(keys, weights, into, normalize, missing)
        return self._perform(plan)  # the flow itself: one generator less per call

    def _average_plan(
        self,
        keys: Sequence[str],
        weights: Any,
        into: str | None,
        normalize: bool,
        missing: str,
    ) -> Planned[Any, npt.NDArray[Any] | Averaged]:
        """The plan of :meth:`average` (pure; raises its input errors at once)."""
        key_list = check_keys(keys)
        if not key_list:
            raise InvalidInputError("average needs at least one key")
        if missing not in ("raise", "skip"):
            raise InvalidInputError("missing must be 'raise' or 'skip'")
        w = vecmath.check_weights(weights, len(key_list), positive_sum=True)
        skip = missing == "skip"
        normalize = check_flag(normalize, "normalize")
        self._bounded(len(key_list), "storing an average", into is not None)

        def result(
            vec: npt.NDArray[np.float64], found: Sequence[bool]
        ) -> npt.NDArray[Any] | Averaged:
            out = self._result(vec, "average")
            if not skip:
                return out
            gone = tuple(k for k, f in zip(key_list, found) if not f)
            return Averaged(out, len(key_list) - len(gone), len(gone), gone)

        if into is None:

            def mean(g: list[scripts.Gathered]) -> npt.NDArray[Any] | Averaged:
                found, stored = self._gathered(key_list, g)
                vec, _ = vecmath.evaluate(stored, w[found], None, mean=True)
                return result(vecmath.unit(vec) if normalize else vec, found.tolist())

            return Planned(self._gather_script(key_list, skip), False, mean)

        def stored(res: list[scripts.Combined]) -> npt.NDArray[Any] | Averaged:
            return result(res[0].vector, res[0].found)

        script = self._combine_script(
            key_list, w, None, into, mean=True, normalize=normalize, skip=skip
        )
        return Planned(script, True, stored)

    def _gather_script(
        self, key_list: list[str], skip: bool
    ) -> Callable[[SpaceState, GenKeys], list[scripts.ScriptCall[scripts.Gathered]]]:
        """The gather.lua calls reading ``key_list`` in a given state: one per
        :data:`GATHER_FLOATS` worth of vectors (each atomic; all in one generation, since
        each checks the state)."""
        size = max(1, GATHER_FLOATS // self.codec.dim)

        def calls(state: SpaceState, gen: GenKeys) -> list[scripts.ScriptCall[scripts.Gathered]]:
            return [
                scripts.gather_call(
                    gen.docs(part),
                    self.keys.config,
                    state=state.raw,
                    field=VECTOR_FIELD,
                    nbytes=self.codec.nbytes,
                    skip_missing=skip,
                    names=part,
                )
                for part in (key_list[i : i + size] for i in range(0, len(key_list), size))
            ]

        return calls

    def _gathered(
        self, key_list: list[str], parts: list[scripts.Gathered]
    ) -> tuple[npt.NDArray[np.bool_], Any]:
        """Which keys were found, and their decoded vectors (no parts: no key was read)."""
        found = np.array([f for g in parts for f in g.found], dtype=bool)
        blobs = [b for g in parts for b in g.blobs]
        if not blobs:
            return found, np.empty((0, self.codec.dim))
        return found, self.codec.decode_many(blobs, [k for k, f in zip(key_list, found) if f])

    def _combine_script(
        self,
        key_list: list[str],
        coefs: npt.NDArray[np.float64],
        constant: npt.NDArray[np.float64] | None,
        into: str,
        *,
        mean: bool,
        normalize: bool,
        skip: bool,
    ) -> Callable[[SpaceState, GenKeys], list[scripts.ScriptCall[scripts.Combined]]]:
        """The combine.lua call storing into ``into`` (checked now) in a given state."""
        target = check_keys([into], "into")[0]
        element = self._lua_element("storing a result with into=")
        return lambda state, gen: [
            scripts.combine_call(
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
                ttl_ms=self._default_ttl_ms(),
            )
        ]

    # ------------------------------------------------------------ combine

    def combine(
        self,
        add: Sequence[Any] = (),
        subtract: Sequence[Any] = (),
        *,
        weights: Any = None,
        into: str | None = None,
        normalize: bool = True,
    ) -> Flow[npt.NDArray[Any]]:
        """``sum(add) - sum(subtract)``: analogies such as king - man + woman.

        Items are stored keys (str) or vector literals (array-likes of length dim), mixed
        freely. ``weights`` (one finite number per item, ``add`` items first, then
        ``subtract``) scale the items. ``normalize`` (default True) returns a unit vector.
        ``into`` also stores the result as an embedding of this space.

        One round trip (none when every item is a literal and there is no ``into``), atomic.
        To search from the result without its inputs:
        ``space.search(space.combine(add=[a, c], subtract=[b]), k, exclude=[a, b, c])``.

        Raises:
            InvalidInputError: no items, a literal of the wrong dim or with NaN, bad weights,
                a zero result with ``normalize`` (or stored into a cosine space).
            KeyNotFoundError: a key does not exist; nothing stored.
        """
        plan = self._combine_plan(add, subtract, weights, into, normalize)
        return self._perform(plan)  # the flow itself: one generator less per call

    def _combine_plan(
        self,
        add: Sequence[Any],
        subtract: Sequence[Any],
        weights: Any,
        into: str | None,
        normalize: bool,
    ) -> Planned[Any, npt.NDArray[Any]]:
        """The plan of :meth:`combine` (pure; raises its input errors at once)."""
        plus, minus = _items(add, "add"), _items(subtract, "subtract")
        items = [*plus, *minus]
        if not items:
            raise InvalidInputError("combine needs at least one item in add or subtract")
        normalize = check_flag(normalize, "normalize")
        signs = np.array([1.0] * len(plus) + [-1.0] * len(minus))
        w = vecmath.check_weights(weights, len(items), positive_sum=False)
        terms = vecmath.split_terms(items, signs * w, self.codec, "items")
        self._bounded(len(terms.keys), "storing a combination", into is not None, reserved=1)
        if into is not None:
            script = self._combine_script(
                terms.keys,
                terms.coefs,
                terms.constant,
                into,
                mean=False,
                normalize=normalize,
                skip=False,
            )
            return Planned(script, True, self._folded_result)

        def evaluate(g: list[scripts.Gathered]) -> npt.NDArray[Any]:
            _, stored = self._gathered(terms.keys, g)
            vec, _ = vecmath.evaluate(stored, terms.coefs, terms.constant, mean=False)
            return self._result(vecmath.unit(vec) if normalize else vec, "combine")

        gather = self._gather_script(terms.keys, False) if terms.keys else None
        return Planned(gather, False, evaluate)

    def _folded_result(
        self, res: list[scripts.Combined] | list[scripts.Folded]
    ) -> npt.NDArray[Any]:
        """The vector a combine.lua / update_mean.lua reply carries, in the output dtype
        (checked by the script already; a cast cannot overflow it)."""
        with np.errstate(all="ignore"):
            out: npt.NDArray[Any] = res[0].vector.astype(self.codec.out_dtype)
        return out

    # ------------------------------------------------------------ running means

    def update_mean(
        self, key: str, items: Sequence[Any], *, alpha: float | None = None
    ) -> Flow[npt.NDArray[Any]]:
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
        return self._perform(self._update_mean_plan(key, items, alpha))

    def _update_mean_plan(
        self, key: str, items: Sequence[Any], alpha: float | None
    ) -> Planned[scripts.Folded, npt.NDArray[Any]]:
        """The plan of :meth:`update_mean` (pure; raises its input errors at once)."""
        target = check_keys([key], "key")[0]
        item_list = _items(items, "items")
        if not item_list:
            raise InvalidInputError("items must be a non-empty list of keys or vectors")
        m = len(item_list)
        element = self._lua_element("update_mean")
        if alpha is None:
            ones = np.ones(m, dtype=np.float64)
            terms = vecmath.split_terms(item_list, ones, self.codec, "items")
            with_old = without_old = (terms.coefs, terms.constant)
            old_coef = 1.0
        else:
            if (
                isinstance(alpha, bool)
                or not isinstance(alpha, numbers.Real)
                or not 0.0 < float(alpha) <= 1.0
            ):
                raise InvalidInputError(f"alpha must be a number in (0, 1], got {alpha!r}")
            old_coef, c_old, c_new = vecmath.ema_coefficients(m, float(alpha))
            t_old = vecmath.split_terms(item_list, c_old, self.codec, "items")
            t_new = vecmath.split_terms(item_list, c_new, self.codec, "items")
            terms = t_old
            with_old, without_old = (t_old.coefs, t_old.constant), (t_new.coefs, t_new.constant)

        self._bounded(len(terms.keys), "update_mean", True, reserved=2)

        def script(state: SpaceState, gen: GenKeys) -> list[scripts.ScriptCall[scripts.Folded]]:
            return [
                scripts.update_mean_call(
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
                    ttl_ms=self._default_ttl_ms(),
                )
            ]

        return Planned(script, True, self._folded_result)


def _items(items: object, what: str) -> list[Any]:
    """``items`` (keys and vector literals) as a list; a lone str or a mapping is refused
    rather than taken apart."""
    if isinstance(items, (str, bytes, Mapping)):
        raise InvalidInputError(
            f"{what} must be a list of keys and vectors, got {type(items).__name__} {items!r:.60}"
        )
    if isinstance(items, np.ndarray):
        return list(items) if items.ndim > 1 else [items]
    try:
        return list(cast(Any, items))
    except TypeError:
        raise InvalidInputError(
            f"{what} must be a list of keys and vectors, got {type(items).__name__}"
        ) from None
