"""Searches of one generation of a space (a :class:`~rediscache.target.Target`): k nearest
neighbours (search, search_many, similar) and range queries (within).

Each search is a plan (validation and the FT.SEARCH arguments, :mod:`rediscache.ftsearch`)
run in rounds: one round trip each, another only when hits vanished between the index and
their documents (expired or deleted). The live space is searched through its alias once its
index is known complete, a version through its own index; every round trip ends with the
state read that checks it (:meth:`rediscache.target.Target.checked`), so a search never
answers from another generation than the handle's, nor from a space dropped and made again
under its name.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Collection
from typing import Any, NamedTuple

import msgpack
import numpy.typing as npt

from . import ftsearch, query
from .codec import VectorCodec, check_flag, check_int, check_keys, unpack_metadata
from .config import SpaceConfig
from .effects import SLOW, Flow, Roundtrip, Slow
from .errors import InvalidInputError, KeyNotFoundError, reply_error
from .keys import META_FIELD, VECTOR_FIELD, GenKeys, shown_name
from .reads import Hit, Reads
from .state import SpaceState
from .target import Target
from .wire import Wire, frame

__all__ = ["Searches"]


class Searches:
    """The searches of one target; ``reads`` gives ``similar`` its stored vector."""

    def __init__(self, target: Target, reads: Reads) -> None:
        self.target = target
        self.reads = reads
        #: (k, with_vectors, with_metadata) -> the FT.SEARCH command of a plain search (no
        #: filter, ef, offset or exclude) around its query vector, filled by the first such
        #: search's plan: later ones send it without building a plan.
        self._simple: dict[tuple[int, bool, bool], _Prepared] = {}

    def search(
        self,
        vector: Any,
        k: int = 10,
        *,
        filter: query.FilterLike = None,
        ef: int | None = None,
        with_vectors: bool = False,
        with_metadata: bool = True,
        offset: int = 0,
        exclude: Collection[str] | None = None,
    ) -> Flow[list[Hit]]:
        """The ``k`` nearest embeddings to ``vector``, nearest first. One round trip (FT.SEARCH
        and an HGET of the space's state, which keeps the answer within the generation the
        handle knows: see docs/versions.md).

        ``filter`` restricts the candidates (dict form or :mod:`rediscache.query` filter
        objects); ``ef`` overrides the HNSW ``EF_RUNTIME`` for this query; ``exclude`` drops
        these keys from the ranked list (e.g. the inputs of an average) while still returning
        ``k`` hits when the space has them.

        Paging: ``offset`` skips that many hits of the ranked list (after ``exclude``). Pages
        of one query neither repeat nor skip hits when the space is not written between them
        and, in an HNSW space, every page uses the same ``ef`` of at least the deepest page's
        ``offset + k + len(exclude)`` (the default ef covers the first ``ef_runtime`` hits,
        100 unless the space says otherwise); an HNSW page past its ef raises
        InvalidInputError. FLAT spaces page exactly with any options.

        In an expiring space a hit whose entry expired is never returned: it is deleted and
        the query repeated (another round trip), so ``k`` live hits come back whenever the
        space has them (docs/serving.md).

        Raises:
            InvalidInputError: a bad vector, k, offset, ef, filter or flag.
            SpaceNotFoundError: the space was dropped since this handle opened it (also
                when a space of the name was created again).
            StaleStateError: rollbacks kept switching the space for 2 s
                (``target.STALE_SECONDS``; docs/versions.md).
            ServerError: the search failed (ServerBusyError while Redis runs a long script).
        """
        t = self.target
        first: list[Any] | None = None
        plain = _plain(t, filter, ef, exclude, offset, k, with_vectors, with_metadata)
        request = self._request(vector, k, with_vectors, with_metadata) if plain else None
        if request is not None:
            gen, state = t.gen, t.state_bytes
            first = yield request
            if first[1] != state or t.reconnected():
                first = None  # a switch, a drop, a restart: the general path, checked again
            else:
                del first[1]
                if not isinstance(first[0], Exception):
                    hits = _quick_hits(first[0], gen, t.codec, with_vectors)
                    if hits is not None:
                        return hits
        plan = self._search_plan(
            vector,
            k,
            filter=filter,
            ef=ef,
            with_vectors=with_vectors,
            with_metadata=with_metadata,
            offset=offset,
            exclude=exclude,
        )
        if plain and first is None:
            query_ = plan.prepare(*plan.window())
            self._simple[(k, with_vectors, with_metadata)] = _Prepared.of(
                ("FT.SEARCH", t.keys.index, *query_.head), query_.tail, t.codec.nbytes,
                t.check_command(), t.check_frame(),
            )  # fmt: skip
        return (yield from self._searched(plan, first))[0]

    def quick(
        self,
        wire: Wire,
        vector: Any,
        k: int = 10,
        *,
        with_vectors: bool = False,
        with_metadata: bool = True,
        **others: Any,
    ) -> list[Hit] | Slow:
        """:meth:`search` of the usual kind sent on ``wire`` without a flow (the sync hub
        on one server: ``Op``'s quick lane), or :data:`SLOW` when it is not of that kind
        (any other argument given, even at its default, is left to the flow) or its reply
        is not of the usual shape (then :meth:`search` runs: one more round trip in that
        rare case)."""
        t = self.target
        prepared = self._simple.get((k, with_vectors, with_metadata))
        if (
            prepared is None  # made only for a plain search (_plain): live, not expiring
            or others
            or type(k) is not int
            or type(with_vectors) is not bool
            or type(with_metadata) is not bool
        ):
            return SLOW
        gen, state, codec = t.gen, t.state_bytes, t.codec
        if gen.gen not in t.readiness.ready or t.reconnected():
            return SLOW  # an index to check first: the flow does
        blob = codec.checked_bytes(vector)
        # the request as _request builds it, inline: a shared helper measured 1.5% slower
        first = wire.roundtrip(
            [(*prepared.head, blob, *prepared.tail), prepared.check],
            prepared.before + blob + prepared.after,
        )
        if first[1] != state or t.reconnected() or isinstance(first[0], Exception):
            return SLOW
        hits = _quick_hits(first[0], gen, codec, with_vectors)
        return SLOW if hits is None else hits

    def _request(
        self, vector: Any, k: int, with_vectors: bool, with_metadata: bool
    ) -> Roundtrip | None:
        """The round trip of a plain search (:func:`_plain`) once its command is known
        (:attr:`_simple`) and the space's indexes are known complete, with the state read
        that checks it (:meth:`Target.with_check`); else None."""
        t = self.target
        if t.gen.gen not in t.readiness.ready or t.reconnected():
            return None
        prepared = self._simple.get((k, with_vectors, with_metadata))
        if prepared is None:
            return None
        blob = t.codec.checked_bytes(vector)
        return Roundtrip(
            [(*prepared.head, blob, *prepared.tail), prepared.check],
            prepared.before + blob + prepared.after,
        )

    def search_many(
        self,
        vectors: Any,
        k: int = 10,
        *,
        filter: query.FilterLike = None,
        ef: int | None = None,
        with_vectors: bool = False,
        with_metadata: bool = True,
    ) -> Flow[list[list[Hit]]]:
        """:meth:`search` for each row of an (n, dim) array, in one pipelined round trip (an
        empty array gives an empty list)."""
        plan = self._search_many_plan(
            vectors, k, filter=filter, ef=ef, with_vectors=with_vectors, with_metadata=with_metadata
        )
        return (yield from self._searched(plan))

    def within(
        self,
        vector: Any,
        radius: float,
        *,
        filter: query.FilterLike = None,
        limit: int = 100,
        offset: int = 0,
        with_vectors: bool = False,
        with_metadata: bool = True,
    ) -> Flow[list[Hit]]:
        """Embeddings within distance ``radius`` of ``vector``, nearest first (range search).

        Returns at most ``limit`` hits starting at ``offset`` (page with both: pages of one
        radius neither repeat nor skip hits while the space is not written). Distances are
        those of the space's metric (cosine: 1 - cos). One round trip (FT.SEARCH
        VECTOR_RANGE); expired entries as in :meth:`search`. Exact in a FLAT space; in an
        HNSW space approximate, with :data:`rediscache.ftsearch.RANGE_EPSILON`.

        ``radius`` is at least 0: RediSearch refuses a negative one. In an ``ip`` space of
        vectors that are not unit length, distances (1 - dot) go below 0 and every such
        hit is within any radius; ``search`` ranks them.

        Raises:
            InvalidInputError: a bad vector, radius (negative, NaN, infinite), limit,
                offset, filter or flag.
            SpaceNotFoundError: the space was dropped since this handle opened it.
        """
        plan = self._within_plan(
            vector,
            radius,
            filter=filter,
            limit=limit,
            offset=offset,
            with_vectors=with_vectors,
            with_metadata=with_metadata,
        )
        return (yield from self._searched(plan))[0]

    def similar(
        self,
        key: str,
        k: int = 10,
        *,
        filter: query.FilterLike = None,
        ef: int | None = None,
        with_vectors: bool = False,
        with_metadata: bool = True,
    ) -> Flow[list[Hit]]:
        """Neighbours of the stored embedding ``key``, excluding itself. Two round trips.

        Raises:
            KeyNotFoundError: ``key`` is not stored.
        """
        plan = self._similar_plan(
            key,
            (yield from self.reads.get(check_keys([key], "key")[0])),
            k,
            filter=filter,
            ef=ef,
            with_vectors=with_vectors,
            with_metadata=with_metadata,
        )
        return (yield from self._searched(plan))[0]

    def _searched(
        self, plan: ftsearch.SearchPlan, first: list[Any] | None = None
    ) -> Flow[list[list[Hit]]]:
        """Run ``plan``'s rounds (one round trip each; one unless hits vanished). ``first``:
        the replies of its first round, already sent (by :meth:`search`'s short path; its state
        read checked and removed).

        A single query without excluded keys in a space whose entries do not expire (the
        common case) reads its reply with :func:`_quick_hits`; a reply that cannot be read so
        (a hit vanished, a generation the client has not seen, fields in another order) goes
        on through the rounds as their first round's reply.
        """
        rounds = ftsearch.search_rounds(plan, self.target.keys.prefix, self._maker(plan))
        replies: Any = None
        if first is not None:
            next(rounds)  # its first round is the one already sent
            replies = self._raise_errors(first)
        elif len(plan.blobs) == 1 and not plan.exclude and not plan.vanishing:
            depth, start = plan.window()
            query = plan.prepare(depth, start).args(plan.blobs[0])
            replies = yield from self._search_round(ftsearch.SearchRound([query], []))
            t = self.target
            hits = _quick_hits(replies[0], t.gen, t.codec, plan.with_vectors)
            if hits is not None:
                return [hits]
            next(rounds)  # its first round is the one just sent
        while True:
            try:
                rnd = rounds.send(replies)
            except StopIteration as stop:
                pages: list[list[Hit]] = stop.value
                return pages
            replies = yield from self._search_round(rnd)

    def _search_round(self, rnd: ftsearch.SearchRound) -> Flow[list[Any]]:
        """One round of a search: the queries (and the purge of expired hits) in one round
        trip with the state checked (a switch meanwhile: the round again in the new state;
        a drop: SpaceNotFoundError); the live space through its alias, a version through its
        own index once complete (waiting for it as a live search waits, at most
        ``hub.index_wait`` seconds, then IndexBuildingError). Error replies raise."""
        t = self.target

        def make(index: str) -> list[tuple[Any, ...]]:
            commands: list[tuple[Any, ...]] = [("EXISTS", *rnd.purge)] if rnd.purge else []
            return commands + [("FT.SEARCH", index, *args) for args in rnd.queries]

        def checked(state: SpaceState, gen: GenKeys) -> Flow[list[Any]]:
            if not t.live:  # a version's (a stage's) own index, waited for while it builds
                t.note_connects()
                yield from t.searchable(gen, t.context.index_wait)
                index = gen.index
            elif gen.gen in t.readiness.ready and not t.reconnected():
                index = t.keys.index  # the usual case: the live alias, known complete
            else:
                index = yield from t.search_index(gen)
            return (yield from t.checked(make(index), state))

        for _ in range(2):
            replies = yield from t.attempts(checked)
            if not t.reconnected():
                break
            # The round trip opened a new connection: the server may have restarted and be
            # rebuilding the index. Search again once the index is checked.
        return self._raise_errors(replies[1:] if rnd.purge else replies)

    def _raise_errors(self, replies: list[Any]) -> list[Any]:
        """``replies`` of a round's queries; an error reply raises."""
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply_error(str(reply), f"search in {self.target.where()}")
        return replies

    # The pure halves: a plan holds what FT.SEARCH needs (ftsearch.SearchPlan), _hits
    # decodes the rounds' results.

    def _search_plan(
        self,
        vector: Any,
        k: int,
        *,
        filter: query.FilterLike,
        ef: int | None,
        with_vectors: bool,
        with_metadata: bool,
        offset: int,
        exclude: Collection[str] | None,
    ) -> ftsearch.SearchPlan:
        """The plan of :meth:`search` (raises its input errors)."""
        k, offset = check_window(k, offset)
        vec = self.target.codec.as_vector(vector)
        skip = check_exclude(exclude)
        return self._knn_plan([self.target.codec.encode(vec)], k, offset, skip, filter, ef,
                              with_vectors, with_metadata)  # fmt: skip

    def _search_many_plan(
        self,
        vectors: Any,
        k: int,
        *,
        filter: query.FilterLike,
        ef: int | None,
        with_vectors: bool,
        with_metadata: bool,
    ) -> ftsearch.SearchPlan:
        """The plan of :meth:`search_many`: one query per row (raises input errors)."""
        k = check_int(k, "k", high=query.MAX_RESULTS)
        arr = self.target.codec.as_matrix(vectors)
        blobs = self.target.codec.encode_matrix(arr)
        return self._knn_plan(blobs, k, 0, frozenset(), filter, ef, with_vectors, with_metadata)

    def _knn_plan(
        self,
        blobs: list[bytes],
        k: int,
        offset: int,
        exclude: frozenset[str],
        filter: query.FilterLike,
        ef: object,
        with_vectors: object,
        with_metadata: object,
    ) -> ftsearch.SearchPlan:
        vectors, metadata = (
            check_flag(with_vectors, "with_vectors"),
            check_flag(with_metadata, "with_metadata"),
        )
        ef = check_ef(self.target.config, ef)
        check_page(self.target.config, offset, k, len(exclude), ef)
        filter_str = self._filter_str(filter)
        probe = self.target.config.expiring

        def prepare(depth: int, start: int) -> ftsearch.KnnQuery:
            return ftsearch.knn_query(depth, start=start, filter_str=filter_str, ef=ef,
                                      with_vectors=vectors, with_metadata=metadata,
                                      probe=probe)  # fmt: skip

        return ftsearch.SearchPlan(tuple(blobs), offset, k, exclude, vectors, probe, prepare)

    def _within_plan(
        self,
        vector: Any,
        radius: float,
        *,
        filter: query.FilterLike,
        limit: int,
        offset: int,
        with_vectors: bool,
        with_metadata: bool,
    ) -> ftsearch.SearchPlan:
        """The plan of :meth:`within` (raises its input errors)."""
        r = ftsearch.check_radius(radius)
        limit, offset = check_window(limit, offset, "limit")
        vectors, metadata = (
            check_flag(with_vectors, "with_vectors"),
            check_flag(with_metadata, "with_metadata"),
        )
        vec = self.target.codec.as_vector(vector)
        filter_str = self._filter_str(filter)
        probe = self.target.config.expiring
        hnsw = self.target.config.algorithm == "hnsw"

        def prepare(depth: int, start: int) -> ftsearch.RangeQuery:
            return ftsearch.range_query(r, filter_str=filter_str, with_vectors=vectors,
                                        with_metadata=metadata, limit=depth - start,
                                        offset=start, probe=probe, hnsw=hnsw)  # fmt: skip

        return ftsearch.SearchPlan(
            (self.target.codec.encode(vec),), offset, limit, frozenset(), vectors, probe, prepare
        )

    def _similar_plan(
        self,
        key: str,
        vector: npt.NDArray[Any] | None,
        k: int,
        *,
        filter: query.FilterLike,
        ef: int | None,
        with_vectors: bool,
        with_metadata: bool,
    ) -> ftsearch.SearchPlan:
        """The plan of :meth:`similar`, once ``vector`` (the stored one of ``key``) is read."""
        if vector is None:
            raise KeyNotFoundError(f"{key!r} is not in {self.target.where()}", [key])
        return self._search_plan(
            vector,
            k,
            filter=filter,
            ef=ef,
            with_vectors=with_vectors,
            with_metadata=with_metadata,
            offset=0,
            exclude=(key,),
        )

    def _filter_str(self, filter: query.FilterLike) -> str | None:
        parsed = query.parse_filter(filter, self.target.config.fields)
        return query.render_filter(parsed, self.target.config.fields) if parsed else None

    def _maker(self, plan: ftsearch.SearchPlan) -> Callable[[str, float, Any, Any], Hit]:
        """How a reply's hit becomes a :class:`Hit` (metadata and vector decoded), made by
        the reply's parser in its one pass."""
        if plan.with_vectors:
            decode = self.target.codec.decode

            def hit(key: str, distance: float, meta: Any, vec: Any) -> Hit:
                return Hit(key, distance, unpack_metadata(meta),
                           decode(vec, key) if vec is not None else None)  # fmt: skip

            return hit
        return lambda key, distance, meta, _vec: Hit(key, distance, unpack_metadata(meta))


def check_window(count: object, offset: object, what: str = "k") -> tuple[int, int]:
    """``count`` (``k``, or ``what``: a range search's ``limit``) and ``offset`` of a page,
    checked: ``count`` in 1..:data:`rediscache.query.MAX_RESULTS`, ``offset`` in 0..that,
    and their sum at most that (InvalidInputError)."""
    count = check_int(count, what, high=query.MAX_RESULTS)
    offset = check_int(offset, "offset", low=0, high=query.MAX_RESULTS)
    if offset + count > query.MAX_RESULTS:
        raise InvalidInputError(
            f"offset + {what} must be at most {query.MAX_RESULTS:,}, got {offset + count:,}"
        )
    return count, offset


def check_exclude(exclude: Collection[str] | None) -> frozenset[str]:
    """The keys of a search's ``exclude``, checked (InvalidInputError)."""
    if exclude is None:
        return frozenset()
    if isinstance(exclude, (str, bytes)):
        raise InvalidInputError("exclude must be a collection of keys, not a single string")
    return frozenset(check_keys(exclude, "exclude"))


def check_ef(config: SpaceConfig, ef: object) -> int | None:
    """A search's ``ef``, checked: None, or an int >= 1 in an HNSW space
    (InvalidInputError)."""
    if ef is None:
        return None
    if config.algorithm != "hnsw":
        raise InvalidInputError(
            f"ef applies to HNSW spaces; {shown_name(config.name)} is {config.algorithm}"
        )
    return check_int(ef, "ef", high=2**31 - 1)


def check_page(config: SpaceConfig, offset: int, k: int, excluded: int, ef: int | None) -> None:
    """InvalidInputError for a page of an HNSW space that reaches deeper than its ``ef``
    (the space's ``EF_RUNTIME`` when None): ``offset + k + excluded`` past it. Pages of one
    query are consistent only when every page uses one ef at least that deep (see
    :meth:`Searches.search`); a partitioned space's pages ask each partition that deep."""
    if not offset or config.algorithm != "hnsw":
        return
    deepest = offset + k + excluded
    used = ef if ef is not None else config.hnsw.get("EF_RUNTIME", 10)
    if deepest > used:
        raise InvalidInputError(
            f"a page at offset {offset} with k={k}"
            + (f" and {excluded} excluded keys" if excluded else "")
            + f" reaches {deepest} hits deep, past ef={used}: pages of one query are "
            "consistent only when every page (the first too) uses one ef at least as "
            f"deep as the deepest page: pass ef={deepest} or more on every page"
        )


def _plain(
    t: Target,
    filter: Any,
    ef: Any,
    exclude: Any,
    offset: Any,
    k: Any,
    with_vectors: Any,
    with_metadata: Any,
) -> bool:
    """Whether a search is of the usual kind, which has a short path (``Searches._simple``,
    with every check of the general one): no filter, ef, offset or exclude, on a live
    space that does not expire."""
    return (
        filter is None and ef is None and exclude is None and t.live
        and type(offset) is int and offset == 0 and type(k) is int
        and type(with_vectors) is bool and type(with_metadata) is bool
        and not t.config.expiring
    )  # fmt: skip


class _Prepared(NamedTuple):
    """The FT.SEARCH command of a plain search: its arguments before (``head``) and after
    (``tail``) the query vector, the state read that checks it (``check``: the live
    space's, :meth:`Target.check_command`), and the two in RESP (``before`` and ``after``
    the vector's ``nbytes`` bytes, ``after`` ending with the state read: see
    :func:`rediscache.wire.frame`), so a search joins three byte strings instead of packing
    its commands."""

    head: tuple[Any, ...]
    tail: tuple[Any, ...]
    check: tuple[Any, ...]
    before: bytes
    after: bytes

    @classmethod
    def of(
        cls,
        head: tuple[Any, ...],
        tail: tuple[Any, ...],
        nbytes: int,
        check: tuple[Any, ...],
        check_frame: bytes,
    ) -> _Prepared:
        before, after = frame((*head, b"", *tail), len(head), nbytes)
        return cls(head, tail, check, before, after + check_frame)


_unpackb = msgpack.unpackb
_chain = itertools.chain.from_iterable
_HIT = functools.partial(tuple.__new__, Hit)  # a Hit of one (key, distance, meta, vec) tuple
_NONE = itertools.repeat(None)
_NUL = b"\x00"
_EMPTY_MAP = b"\x80"  # msgpack's empty map
_HASH = b"#"
_META_B = META_FIELD.encode()
_VEC_B = VECTOR_FIELD.encode()


def _quick_hits(
    reply: Any, gen: GenKeys, codec: VectorCodec, with_vectors: bool
) -> list[Hit] | None:
    """The hits of an ``FT.SEARCH ... WITHSORTKEYS`` reply (:mod:`rediscache.ftsearch`) in
    the usual shape, with no Python loop over the hits: every document under generation
    ``gen``'s prefix (the generation the client knows), every sort key ``#<distance>``, and
    either no fields at all (``NOCONTENT``: no metadata or vectors asked for) or every hit
    with the same fields in ``RETURN`` order (``meta``, then ``vec`` when asked for; or
    none: no metadata stored). None for anything else, which
    :func:`rediscache.ftsearch.parse_search_reply` then reads (and reports).

    The ids are joined with NUL, decoded and split on NUL and the prefix in three calls (so
    every id is checked to carry the prefix: one lacking it makes one part fewer; an id
    holding a NUL is left to the full parser); the sort keys are joined and split on ``#``
    (one lacking it makes one part fewer); the metadata of all hits are decoded in one
    msgpack call (as one array); the Hits are made by ``map`` without their generated
    ``__new__``. For 10 hits, in situ between two searches on the 2-core dev box (medians,
    of the reader of ``RETURN __dist`` before sort keys): 38 us without metadata and 55 us
    with, where one loop over the hits took 47 and 59 us; taken hot, in a loop, half the
    time."""
    if type(reply) is not list:
        return None
    length = len(reply)
    if length == 1:
        return []
    try:
        stride = 2 if length < 4 or type(reply[3]) is bytes else 3
        if length % stride != 1:
            return None
        n = length // stride
        ids = _NUL.join(reply[1::stride])
        if ids.count(_NUL) != n - 1:
            return None
        keys = ("\x00" + ids.decode()).split(gen.doc_split)
        if len(keys) != n + 1:
            return None
        del keys[0]
        sortkeys = b"".join(reply[2::stride]).split(_HASH)
        if len(sortkeys) != n + 1 or sortkeys[0]:
            return None
        del sortkeys[0]
        distances = list(map(float, sortkeys))
        if stride == 2:  # NOCONTENT: no metadata or vectors asked for
            if with_vectors:
                return None
            return list(map(_HIT, zip(keys, distances, [{} for _ in keys], _NONE)))
        values = reply[3::stride]
        sizes = list(map(len, values))  # a vanished hit's nil: TypeError, the full parser
        size = sizes[0]
        if sizes != [size] * n:
            return None
        if size == 0 and not with_vectors:  # no metadata stored
            return list(map(_HIT, zip(keys, distances, [{} for _ in keys], _NONE)))
        flat = list(_chain(values))
        if size != (4 if with_vectors else 2) or flat[0::size] != [_META_B] * n:
            return None
        metas = flat[1::size]
        if b"" in metas:
            metas = [meta or _EMPTY_MAP for meta in metas]
        head = bytes((0x90 | n,)) if n < 16 else b"\xdc" + n.to_bytes(2, "big")
        decoded = _unpackb(head + b"".join(metas))  # msgpack 1.x: str keys, not raw
        if list(map(type, decoded)) != [dict] * n:
            return None
        if with_vectors:
            if flat[2::size] != [_VEC_B] * n:
                return None
            return [Hit(key, distance, meta, codec.decode(raw, key)) for key, distance, meta, raw
                    in zip(keys, distances, decoded, flat[3::size])]  # fmt: skip
    except (AttributeError, TypeError, ValueError, OverflowError):  # the full parser reads
        return None  # (and reports) odd ids, distances or metadata
    return list(map(_HIT, zip(keys, distances, decoded, _NONE)))
