"""An in-process hot cache for ``get`` / ``get_many``, kept correct by the server.

A model server asks for the same popular embeddings again and again; a hit served from the
process's memory costs a dictionary lookup instead of a round trip. Entries are the raw
vector bytes keyed by their Redis key, bounded by an item count and a byte budget (least
recently used first out).

Correctness comes from Redis server-assisted client-side caching (``CLIENT TRACKING`` in
broadcast mode): a dedicated connection subscribes to ``__redis__:invalidate`` and asks the
server for an invalidation message for every key written under the space's prefix, by any
client (writes, deletes, expiries, evictions). The listener thread drops those entries; a
write of the space's config (a snapshot, rollback or copy changes its state) clears the
cache when the state changed. Writes made through the same Space object are dropped from
the cache at once, so a client reads its own writes.

A user with a role on the space (not an owner; rediscache.access) may not turn tracking
on, which would let it learn the names of keys written under any prefix: its listener
subscribes instead to the keyspace notifications of the space's keys
(``__keyspace@<db>__:rc:{space}:*``), the channels its grant allows, which the server
publishes once an owner granted a role (``notify-keyspace-events``, set by ``hub.grant``):
the same events, handled the same way. Revoking the role makes the server close that
subscription, and the cache then stops serving.

Expiry: Redis sends an invalidation for an expired key only when it deletes the key, which
for a key nobody reads can be minutes later. So in an expiring space an entry is cached with
its deadline (the key's PTTL, counted from before the read that fetched it, so never later
than the real expiry) and a hit past the deadline is a miss: a hot-cache hit never returns
an entry past its expiry time.

Staleness: another client's write is seen once its invalidation message has reached this
process. A listener thread alone would see it only when Python schedules it, and a reader
thread busy in Python holds the GIL: measured on a 2-core box, the window then grew to tens
of ms. So every lookup first polls the listener's socket (one ``select`` syscall with no
timeout) and, when messages wait there, applies them itself before answering: a hit
never returns a value whose invalidation had arrived when the lookup began, whatever the
threads are doing. What remains is the message's flight from the server (docs/serving.md
has the measured window). A value read from the server is cached only if no invalidation of
its key (and no full clear) arrived since the read began. If the listener's connection
breaks, the cache is cleared and bypassed until the listener is back. The server keeps no
per-key state for broadcast tracking (its cost is proportional to the writes under the
prefix, not to what clients cache).
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis

from .guard import redact
from .wire import socket_fileno

__all__ = ["HotCache", "HotCacheStats"]

log = logging.getLogger(__name__)

#: The channel RESP2 clients receive invalidation messages on.
INVALIDATE_CHANNEL = "__redis__:invalidate"
#: Keys whose last invalidation is remembered (to refuse inserting values read before it).
_REMEMBERED = 65_536


@dataclass(frozen=True)
class HotCacheStats:
    """Counters of a :class:`HotCache` since it was created."""

    hits: int
    misses: int
    invalidations: int
    clears: int
    items: int
    bytes: int
    max_items: int
    max_bytes: int
    active: bool


class HotCache:
    """Raw vectors of one space's documents, invalidated by the server (see the module doc).

    Created by :meth:`rediscache.Space.enable_hot_cache`; ``close()`` stops its listener.
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        *,
        config_key: str,
        doc_marker: str,
        channels: str,
        state_of: Callable[[], bytes | None],
        max_items: int = 10_000,
        max_bytes: int = 64 << 20,
        node_of: Callable[[], redis.Redis] | None = None,
    ) -> None:
        self._client = client
        # on a cluster: the client of the node now holding the space (see get)
        self._node_of = node_of
        self._moved = False
        self._prefix = prefix
        self._config_key = config_key.encode()
        self._doc_marker = doc_marker.encode()
        self._channels = channels
        self._name = prefix.rstrip(":")  # for log lines
        # the channel of a keyspace notification is this, then the key
        self._channel_head = len(channels) - len(prefix) - 1
        self._tracking: bool | None = None  # how it listens: None until the first session
        self._refused: str | None = None  # why the server refused the listener (it stopped)
        self._sessions = 0  # sessions that started listening
        self._state_of = state_of
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        # key -> (raw vector, monotonic deadline or None: no expiry)
        self._entries: OrderedDict[bytes, tuple[bytes, float | None]] = OrderedDict()
        self._bytes = 0
        self._seq = 0  # grows at every invalidation
        self._clear_seq = 0  # seq of the last full clear
        self._floor_seq = 0  # invalidations older than the remembered ones are <= this
        self._last: OrderedDict[bytes, int] = OrderedDict()  # key -> seq of its invalidation
        self._hits = self._misses = self._invalidations = self._clears = 0
        # The listener connection, its socket's poller, and the lock of reading from it (the
        # listener thread and every lookup read invalidations from it).
        self._conn: redis.connection.AbstractConnection | None = None
        self._fd: int | None = None  # its socket, polled by lookups (None: not available)
        self._io = threading.Lock()
        self._state = state_of()
        self._active = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._listen, name="rediscache-hotcache", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 5.0
        while not self._active.wait(0.05):
            if self._refused is not None or time.monotonic() > deadline:
                self.close()
                raise redis.ConnectionError(
                    "the hot cache's invalidation listener did not start"
                    + (f": {self._refused}" if self._refused else "")
                )

    # ------------------------------------------------------------ lookups

    @property
    def active(self) -> bool:
        """True while invalidations are being received (the cache is then used)."""
        return self._active.is_set()

    def seq(self) -> int:
        """The invalidation sequence number; take it before a read to insert its result."""
        return self._seq

    def get(self, key: bytes) -> bytes | None:
        """The cached bytes of ``key`` (and a hit), or None (a miss; an entry past its
        deadline is dropped and a miss). Applies the invalidations waiting on the listener's
        socket first."""
        if self._node_of is not None and self._node_of() is not self._client:
            self._move(self._node_of())
        if not self._active.is_set():
            return None
        fd = self._fd
        # Messages wait on the socket, or the listener thread is applying some it read (and
        # may have been switched out mid-way): apply them before answering.
        if fd is not None and (self._io.locked() or select.select((fd,), (), (), 0)[0]):
            self._drain()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[1] is not None and time.monotonic() >= entry[1]:
                self._drop(key)
                entry = None
            if entry is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return entry[0]

    def insert(self, key: bytes, raw: bytes, seq: int, deadline: float | None = None) -> None:
        """Cache ``raw`` read from the server after ``seq()`` returned ``seq``, unless ``key``
        was invalidated (or the cache cleared) since. ``deadline``: the ``time.monotonic()``
        at which the entry expires (None: never)."""
        size = len(raw) + len(key) + 64
        if size > self.max_bytes or not self._active.is_set():
            return
        with self._lock:
            last = self._last.get(key, self._floor_seq if self._floor_seq > seq else 0)
            if last > seq or self._clear_seq > seq:
                return
            self._drop(key)
            self._entries[key] = (raw, deadline)
            self._bytes += size
            while self._entries and (
                len(self._entries) > self.max_items or self._bytes > self.max_bytes
            ):
                k, (v, _) = self._entries.popitem(last=False)
                self._bytes -= len(v) + len(k) + 64

    def _move(self, client: redis.Redis) -> None:
        """The space's slot moved to another cluster node (the hub read its new slot map):
        writes now go there, where this listener hears nothing. Start empty, bypassed until
        the listener listens on the new node."""
        with self._io:
            if client is self._client:
                return
            self._client = client
            self._moved = True
            self._active.clear()
            self.clear()
            if self._conn is not None:  # ends the session: the listener starts a new one
                with contextlib.suppress(redis.RedisError, OSError):
                    self._conn.disconnect()

    def _drop(self, key: bytes) -> None:
        """Remove ``key``'s entry, if any (the lock is held)."""
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old[0]) + len(key) + 64

    def invalidate(self, keys: Iterable[bytes]) -> None:
        """Drop ``keys`` (own writes, and the listener's messages)."""
        with self._lock:
            self._seq += 1
            for key in keys:
                self._invalidations += 1
                self._drop(key)
                self._last[key] = self._seq
                self._last.move_to_end(key)
            while len(self._last) > _REMEMBERED:
                _, seq = self._last.popitem(last=False)
                self._floor_seq = max(self._floor_seq, seq)

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._seq += 1
            self._clear_seq = self._seq
            self._clears += 1
            self._entries.clear()
            self._bytes = 0

    def stats(self) -> HotCacheStats:
        """The counters (no round trip)."""
        with self._lock:
            return HotCacheStats(
                self._hits, self._misses, self._invalidations, self._clears,
                len(self._entries), self._bytes, self.max_items, self.max_bytes,
                self._active.is_set(),
            )  # fmt: skip

    def close(self) -> None:
        """Stop the listener and drop the cache."""
        self._stop.set()
        self._active.clear()
        self._thread.join(timeout=2.0)  # the listener checks the flag every 0.1 s
        self.clear()

    # ------------------------------------------------------------ the listener

    def _listen(self) -> None:
        pause = 0.05
        failures = 0  # in a row: the first is logged as a warning, the next ones at debug
        while not self._stop.is_set():
            sessions = self._sessions
            try:
                self._session()
                pause = 0.05
                failures = 0
            except (redis.AuthenticationError, redis.exceptions.NoPermissionError) as exc:
                # credentials or grants taken away: retrying would not help; the cache
                # stays off (reads go to the server, which says why)
                self._refused = redact(str(exc))
                self._active.clear()
                self.clear()
                if not self._stop.is_set():
                    log.error(
                        "hot cache of %s: the server refused its invalidation listener (%s); "
                        "the cache is off",
                        self._name,
                        self._refused,
                    )
                return
            except (redis.RedisError, OSError) as exc:
                if self._stop.is_set():
                    return
                if self._moved:  # not a loss: it follows the space to its new node
                    self._moved = False
                    log.info("hot cache of %s: the space moved to another node", self._name)
                    continue
                if self._sessions != sessions:  # it had been listening: a new loss
                    failures = 0
                if failures == 0:
                    log.warning(
                        "hot cache of %s: invalidation listener lost (%s); the cache is off "
                        "until it is back, retrying",
                        self._name,
                        redact(str(exc)),
                    )
                else:
                    log.debug("hot cache of %s: still retrying (%s)", self._name, exc)
                failures += 1
            # Whatever happened while nobody listened is unknown: start empty.
            self._active.clear()
            self.clear()
            self._stop.wait(pause)
            pause = min(pause * 2, 2.0)

    def _drain(self) -> None:
        """Apply every invalidation waiting on the listener connection (any thread)."""
        with self._io:
            conn = self._conn
            if conn is None:
                return
            try:
                while conn.can_read(timeout=0):
                    self._handle(conn.read_response())
            except (redis.RedisError, OSError):
                # The listener thread sees the broken connection too and starts over;
                # meanwhile nothing may be served.
                self._active.clear()
                self.clear()

    def _wait(self, poller: select.poll) -> bool:
        """Block the listener until its socket is readable (or 0.1 s passed)."""
        return bool(poller.poll(100))

    def _handle(self, message: object) -> None:
        if not isinstance(message, list) or len(message) < 3:
            return
        if message[0] == b"message":  # tracking: the keys
            self._on_message(message[2])
        elif message[0] == b"pmessage" and len(message) >= 4:  # keyspace: one key's event
            self._on_message([message[2][self._channel_head :]])

    def _session(self) -> None:
        conn = self._client.connection_pool.make_connection()
        try:
            conn.connect()
            if self._tracking is not False:
                conn.send_command("CLIENT", "ID")
                client_id = conn.read_response()
                conn.send_command(
                    "CLIENT", "TRACKING", "ON", "REDIRECT", client_id,
                    "BCAST", "PREFIX", self._prefix,
                )  # fmt: skip
                try:
                    conn.read_response()
                    self._tracking = True
                except redis.exceptions.NoPermissionError:
                    self._tracking = False  # a role: its keyspace notifications instead
            if self._tracking:
                conn.send_command("SUBSCRIBE", INVALIDATE_CHANNEL)
            else:
                conn.send_command("PSUBSCRIBE", self._channels)
            conn.read_response()
            self._state = self._state_of()  # anything before this is covered by the clear
            self.clear()
            fd = socket_fileno(conn)
            poller = None
            if fd is not None:
                poller = select.poll()
                poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
            self._conn = conn
            self._fd = fd
            self._sessions += 1
            self._active.set()
            while not self._stop.is_set():
                if poller is not None:
                    # wait outside the lock, so that lookups can drain meanwhile
                    if self._wait(poller):
                        self._drain()
                    if not self._active.is_set():
                        raise redis.ConnectionError("the invalidation connection broke")
                    continue
                with self._io:  # no socket to poll: the listener alone reads
                    ready = conn.can_read(timeout=0.1)
                    while ready:
                        self._handle(conn.read_response())
                        ready = conn.can_read(timeout=0)
        finally:
            self._active.clear()
            self._fd = None
            with self._io:
                self._conn = None
                with contextlib.suppress(redis.RedisError, OSError):
                    conn.disconnect()

    def _on_message(self, keys: list[bytes] | None) -> None:
        if keys is None:  # the server flushed its tracking table (FLUSHDB, ...)
            self.clear()
            return
        docs = [k for k in keys if self._doc_marker in k]
        if docs:
            self.invalidate(docs)
        if self._config_key in keys:
            state = self._state_of()
            if state != self._state:
                self._state = state
                self.clear()
