"""Access control per space, enforced by the Redis server's ACL (docs/security.md).

A *grant* gives a Redis ACL user one role on one space:

* ``read``: get, get_many, get_record, search (every variant), reads of versions and stages,
  average/combine without ``into``;
* ``write``: read, plus put, put_many, update_vectors, delete, average/combine with
  ``into``, update_mean, snapshot and writes into an open stage;
* ``admin``: write, plus rollback, publish, delete_version, stage/discard, building a
  stage's index, drop, and garbage collection;

and a hub-level ``owner`` may do everything: create spaces and grant.

Each role is a set of ACL rules that :func:`rules` derives from the user's grants, and
``ACL SETUSER`` installs (:class:`Access`). What the server then enforces:

* key patterns: a role on ``items`` reaches only ``rc:{items}:*`` (every key and index name
  of the space lies under that prefix; :mod:`rediscache.keys`), read-only for ``read``
  except the index names (RediSearch declares FT.SEARCH's index name read-write); the
  registry of space names ``rc:spaces`` is read-only but for ``admin`` (drop removes the
  name);
* commands: only those the role's operations send (:data:`READ_COMMANDS` ...); no FT.CREATE,
  FT.DROPINDEX or FT.ALIAS* below ``admin``; no FLUSH*, CONFIG, KEYS, SCAN, MODULE, ACL
  (but WHOAMI), SCRIPT (but LOAD), EVAL or FUNCTION for anyone but the owner;
* scripts: EVALSHA only of the hub's own scripts the role needs, by digest
  (``+evalsha|<sha1>``: Redis checks the command's first argument), and EVALSHA_RO of the
  reading ones (Redis declares its keys read-only and refuses writes inside); a script runs
  with the caller's rules, so every key and command in it is checked too.

Grants are recorded in the hash ``rc:acl`` (user -> JSON), which only owners can read; the
rules of a user are rebuilt from its record at every change, so a user's rules never hold a
space it was not granted. Passwords are never stored by rediscache: Redis keeps their
SHA-256.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import redis

from . import generations, scripts
from .effects import Broadcast, Command, Flow, Pipeline
from .errors import InvalidInputError, SpaceNotFoundError
from .keys import ACL_RECORDS, REGISTRY, SpaceKeys, partitions_prefix, validate_space_name

__all__ = [
    "ADMIN_COMMANDS",
    "ADMIN_SCRIPTS",
    "BASE_COMMANDS",
    "KEYSPACE_EVENTS",
    "OWNER",
    "READ_COMMANDS",
    "READ_SCRIPTS",
    "ROLES",
    "WRITE_COMMANDS",
    "WRITE_SCRIPTS",
    "Access",
    "Granted",
    "UserGrants",
    "rules",
    "validate_user",
]

#: The roles a user can hold on a space, weakest first.
ROLES = ("read", "write", "admin")
#: The hub-level role: every command on every key (create spaces, grant, revoke).
OWNER = "owner"

#: Commands every role needs to connect: the handshake, the server's version and modules
#: (INFO, COMMAND INFO), loading the hub's scripts after a restart (SCRIPT LOAD only compiles
#: a script; running it needs its digest granted), transactions (their commands are checked
#: one by one), WAIT/WAITAOF for durable writes. Not CLIENT TRACKING: its broadcast mode
#: would tell a user the names of keys written under any prefix, other spaces' too (Redis
#: checks no key pattern there), so a role's hot cache follows keyspace notifications of its
#: own spaces instead (:func:`_selector`). Not SELECT either, but of the hub's database.
BASE_COMMANDS = (
    "acl|whoami",
    "asking",
    "auth",
    "client|getname",
    "client|id",
    "client|info",
    "client|setinfo",
    "client|setname",
    "cluster|slots",
    "command",
    "command|docs",
    "command|info",
    "discard",
    "echo",
    "exec",
    "hello",
    "info",
    "multi",
    "ping",
    "punsubscribe",
    "quit",
    "readonly",
    "readwrite",
    "reset",
    "role",
    "script|exists",
    "script|load",
    "unwatch",
    "wait",
    "waitaof",
)
#: Reads of a space: its hashes, expiries, sets (versions, garbage), searches and the
#: index's progress, WATCH (the state check of a transaction).
READ_COMMANDS = (
    "exists",
    "ft.aggregate",
    "ft.cursor",
    "ft.info",
    "ft.search",
    "hexists",
    "hget",
    "hgetall",
    "hlen",
    "hmget",
    "hstrlen",
    "hvals",
    "memory|usage",
    "pttl",
    "scard",
    "sismember",
    "smembers",
    "srandmember",
    "ttl",
    "type",
    "watch",
)
#: Writes of documents and of the space's bookkeeping (counters, versions, copy leases).
#: Not COPY: its DB option copies into another database, where the same key names may be
#: another hub's spaces (a role's copies run copy_docs.lua instead).
WRITE_COMMANDS = (
    "del",
    "get",
    "hdel",
    "hincrby",
    "hset",
    "persist",
    "pexpire",
    "sadd",
    "set",
    "srem",
    "unlink",
)
#: Index management: creating, dropping and re-pointing a space's indexes (rollback,
#: publish, stages, garbage collection, drop).
ADMIN_COMMANDS = (
    "ft._list",
    "ft.aliasadd",
    "ft.aliasdel",
    "ft.aliasupdate",
    "ft.create",
    "ft.dropindex",
)
#: The hub's scripts each role may run (by digest), beyond those of the weaker roles.
READ_SCRIPTS = ("gather",)
WRITE_SCRIPTS = (
    "combine",
    "copy_docs",
    "fork_abort",
    "fork_begin",
    "fork_commit",
    "mark_built",
    "snapshot",
    "update_mean",
    "write",
)
ADMIN_SCRIPTS = (
    "drop_version",
    "gc_config",
    "gc_create_listing",
    "gc_drop_index",
    "gc_unlink",
    "publish",
    "rollback",
    "stage",
    "stage_commit",
    "stage_drop",
)
#: The keyspace notifications a role's hot cache needs (``notify-keyspace-events``): keyspace
#: channels (K) of hash commands (h), generic ones such as DEL and EXPIRE (g), expiries (x)
#: and evictions (e). :meth:`Access.grant` turns them on.
KEYSPACE_EVENTS = "Khgxe"

_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


def validate_user(user: object) -> str:
    """``user`` if it is a valid ACL user name for rediscache: 1-64 of letters, digits and
    ``_ . @ -``, not starting with a symbol, and not ``default`` (Redis's own user, which
    unauthenticated connections use). Raises InvalidInputError."""
    if not isinstance(user, str) or not _USER.fullmatch(user):
        raise InvalidInputError(
            f"a user name is 1-64 letters, digits, '_', '.', '@' or '-', starting with a "
            f"letter or digit; got {user!r}"
        )
    if user == "default":
        raise InvalidInputError(
            "'default' is Redis's own user (what connections without a user name are): "
            "grant roles to named users, and give 'default' a password or turn it off"
        )
    return user


@dataclass(frozen=True)
class UserGrants:
    """What one user may do: ``owner`` (everything), or a role per space name.
    ``on_server``: whether the server knows the user (a server restarted without an ACL
    file forgets its users; :meth:`Access.grant` installs them again)."""

    user: str
    owner: bool = False
    spaces: Mapping[str, str] = field(default_factory=dict)
    on_server: bool = True

    def to_json(self) -> str:
        """The record kept in ``rc:acl``."""
        return json.dumps({"owner": self.owner, "spaces": dict(sorted(self.spaces.items()))})

    @classmethod
    def from_json(cls, user: str, raw: bytes | str, *, on_server: bool = True) -> UserGrants:
        """Parse a record of ``rc:acl``."""
        data = json.loads(raw)
        return cls(user, bool(data.get("owner")), dict(data.get("spaces", {})), on_server)


@dataclass(frozen=True)
class Granted:
    """What :meth:`Access.grant` and :meth:`Access.passwd` return: the user's grants now,
    and the password when one was made or set by this call (shown once: rediscache keeps
    no copy; None when the user kept its password)."""

    grants: UserGrants
    password: str | None = field(default=None, repr=False)


def _selector(space: str, role: str, db: int) -> str:
    """The ACL selector of one grant: the space's key patterns with the commands and script
    digests of ``role``, the channels of its keys' keyspace notifications in database
    ``db`` (a role's hot cache), and reading the mark of a dropped space. A selector grants
    its commands on its own keys only, so a user who is admin of one space and reader of
    another cannot drop the other's indexes."""
    keys = SpaceKeys.for_space(space)
    # the space's keys, and its partitions' when it is partitioned (rc:{space#<n>}:...;
    # no other space's name contains '#')
    parts: list[str] = []
    for prefix in (keys.prefix, partitions_prefix(space)):
        if role == "read":
            # documents, config and versions read-only; the index names read-write, as
            # RediSearch declares FT.SEARCH/FT.INFO/FT.AGGREGATE's index argument
            parts += [f"%R~{prefix}*", f"~{prefix}idx", f"~{prefix}g*:idx", f"~{prefix}g*:ls"]
        else:
            parts += [f"~{prefix}*"]
    parts += [f"%R~{keys.dropped}", f"&{keys.keyspace_channels(db)}", "+psubscribe"]
    level = ROLES.index(role)
    commands = list(READ_COMMANDS)
    names = list(READ_SCRIPTS)
    if level >= 1:
        commands += WRITE_COMMANDS
        names += WRITE_SCRIPTS
    if level >= 2:
        commands += ADMIN_COMMANDS
        names += ADMIN_SCRIPTS
    parts += [f"+{c}" for c in commands]
    parts += [f"+evalsha_ro|{scripts.sha(n)}" for n in READ_SCRIPTS]
    parts += [f"+evalsha|{scripts.sha(n)}" for n in names if n not in READ_SCRIPTS]
    return "(" + " ".join(parts) + ")"


def rules(grants: UserGrants, db: int = 0) -> list[str]:
    """The ACL SETUSER rules of ``grants`` in database ``db`` (passwords and ``on`` are not
    among them): everything for an owner; else the keyless :data:`BASE_COMMANDS` (and
    SELECT of ``db`` when it is not 0), reading the registry of space names, and one
    selector per granted space (:func:`_selector`). An admin may also mark its spaces
    dropped (SETNX of :attr:`SpaceKeys.dropped`, which it can never delete) but not change
    the registry, which only owners write."""
    base = ["resetkeys", "resetchannels", "clearselectors"]
    if grants.owner:
        return [*base, "allkeys", "allchannels", "+@all"]
    out = [*base, "-@all"]
    out += [f"+{c}" for c in BASE_COMMANDS]
    if db:
        out.append(f"+select|{db}")
    out += ["+smembers", "+sismember", f"%R~{REGISTRY}"]
    for space, role in sorted(grants.spaces.items()):
        out.append(_selector(space, role, db))
        if role == "admin":
            out.append(f"(~{SpaceKeys.for_space(space).dropped} +setnx)")
    return out


def _names(spaces: str | Iterable[str] | None) -> list[str]:
    if spaces is None:
        return []
    names = [spaces] if isinstance(spaces, str) else list(spaces)
    for name in names:
        validate_space_name(name)
    return sorted(set(names))


def _no_aclfile(exc: redis.ResponseError) -> bool:
    return "acl file" in str(exc).lower()


class Access:
    """The hub's access control flows (``hub.grant``, ``hub.revoke``, ``hub.users``,
    ``hub.passwd``): they need an owner's connection (ACL SETUSER); any other user gets
    PermissionDeniedError from the server. ``db``: the hub's database (a role may SELECT
    it and no other; its hot cache's notification channels name it)."""

    def __init__(self, db: int = 0) -> None:
        self.db = db

    def grant(
        self,
        user: str,
        spaces: str | Iterable[str] | None,
        role: str,
        *,
        password: str | None = None,
    ) -> Flow[Granted]:
        """Give ``user`` the ``role`` (``"read"``, ``"write"``, ``"admin"``) on each of
        ``spaces`` (a name or names; they must exist), or make it an ``"owner"`` (``spaces``
        None). Grants on other spaces stay; a role on a space replaces the one it had. A
        user the server does not know yet is created with ``password``, or a new random
        one (32 URL-safe characters) that the result holds, once; ``password`` given for
        an existing user replaces its passwords. Three round trips, the change itself one
        transaction; saved to the server's ACL file when it has one.

        Raises:
            InvalidInputError: a bad user name or role, spaces with ``owner``, none without,
                or the user this hub is connected as (it would lock itself out).
            SpaceNotFoundError: a space does not exist.
            PermissionDeniedError: this hub's user is not an owner.
        """
        user = validate_user(user)
        if role == OWNER:
            if _names(spaces):
                raise InvalidInputError("role 'owner' takes no spaces: an owner holds every space")
            names: list[str] = []
        elif role in ROLES:
            names = _names(spaces)
            if not names:
                raise InvalidInputError(f"role {role!r} needs at least one space")
        else:
            raise InvalidInputError(f"role must be one of {(*ROLES, OWNER)}, got {role!r}")
        if password is not None and (not isinstance(password, str) or not password):
            raise InvalidInputError("a password is a non-empty string")
        current, known = yield from self._current(user)  # first: only owners may read it
        yield from self._not_self(user)
        if names:
            existing = yield from generations.existing_spaces(names)
            missing = [n for n in names if n not in existing]
            if missing:
                raise SpaceNotFoundError(f"no space named {', '.join(map(repr, missing))}")
        if role == OWNER:
            new = UserGrants(user, True, dict(current.spaces))
        else:
            new = UserGrants(user, current.owner, {**current.spaces, **dict.fromkeys(names, role)})
        if password is None and not known:
            password = secrets.token_urlsafe(24)
        secret = ["resetpass", f">{password}"] if password is not None else []
        if names:
            yield from _keyspace_events()
        yield from self._install(new, secret)
        return Granted(new, password)

    def revoke(self, user: str, spaces: str | Iterable[str] | None = None) -> Flow[bool]:
        """Take ``user``'s roles on ``spaces`` away (its other grants stay), or with
        ``spaces`` None delete the user from the server (ACL DELUSER: its connections are
        closed) and from the records. True when something was revoked. Raises as
        :meth:`grant` does."""
        user = validate_user(user)
        current, known = yield from self._current(user)  # first: only owners may read it
        yield from self._not_self(user)
        if spaces is None:
            deleted, forgotten = yield Pipeline(
                [("ACL", "DELUSER", user), ("HDEL", ACL_RECORDS, user)], transaction=True
            )
            # users are per node: on a cluster every other node, replicas too
            others = yield Broadcast(("ACL", "DELUSER", user), replicas=True)
            yield from _save()
            # known or recorded before: the replies of a transaction sent again after a
            # lost reply say 0 for what its first send deleted
            existed = known or current.owner or bool(current.spaces)
            return bool(existed or deleted or forgotten or any(others))
        names = _names(spaces)
        left = {s: r for s, r in current.spaces.items() if s not in names}
        if left == dict(current.spaces):
            return False
        yield from self._install(UserGrants(user, current.owner, left), [])
        return True

    def passwd(
        self, user: str, password: str | None = None, *, keep_old: bool = False
    ) -> Flow[Granted]:
        """Set a new password of ``user`` (a random one when None, returned once). With
        ``keep_old`` its current passwords stay valid too, so clients can move over
        before a second call without it removes them. Raises InvalidInputError for a user
        rediscache did not grant, or as :meth:`grant` does."""
        user = validate_user(user)
        if password is not None and (not isinstance(password, str) or not password):
            raise InvalidInputError("a password is a non-empty string")
        current, known = yield from self._current(user)
        if not known:
            raise InvalidInputError(f"no user {user!r} on the server: grant it a role first")
        password = password or secrets.token_urlsafe(24)
        secret = [f">{password}"] if keep_old else ["resetpass", f">{password}"]
        yield Command(("ACL", "SETUSER", user, *secret), at=ACL_RECORDS)
        yield from self._spread(current)
        yield from _save()
        return Granted(current, password)

    def users(self) -> Flow[dict[str, UserGrants]]:
        """Every user rediscache granted a role, by name: its grants, and whether the server
        still knows it (``on_server``). Two round trips."""
        raw, on_server = yield Pipeline([("HGETALL", ACL_RECORDS), ("ACL", "USERS")])
        present = {u.decode() if isinstance(u, bytes) else u for u in on_server}
        out = {}
        for name, record in sorted(raw.items()):
            user = name.decode()
            out[user] = UserGrants.from_json(user, record, on_server=user in present)
        return out

    def forget_space(self, space: str) -> Flow[None]:
        """Remove every grant on ``space`` (it was dropped, or is being created again: a
        space created later is reachable only by the users granted on it). Nothing to do
        when no user is recorded; skipped when this hub's user may not read the records (it
        is then not an owner, and cannot create spaces either)."""
        try:
            raw = yield Command(("HGETALL", ACL_RECORDS))
        except redis.exceptions.NoPermissionError:
            return
        for name, record in raw.items():
            grants = UserGrants.from_json(name.decode(), record)
            if space in grants.spaces:
                left = {s: r for s, r in grants.spaces.items() if s != space}
                yield from self._install(UserGrants(grants.user, grants.owner, left), [])

    def _not_self(self, user: str) -> Flow[None]:
        me = yield Command(("ACL", "WHOAMI"))
        if (me.decode() if isinstance(me, bytes) else me) == user:
            raise InvalidInputError(
                f"{user!r} is the user this hub is connected as: changing its own rules could "
                "lock it out; connect as another owner to change them"
            )

    def _current(self, user: str) -> Flow[tuple[UserGrants, bool]]:
        """The recorded grants of ``user`` (none when unrecorded), and whether the server
        knows the user."""
        record, users = yield Pipeline([("HGET", ACL_RECORDS, user), ("ACL", "USERS")])
        known = any((u.decode() if isinstance(u, bytes) else u) == user for u in users)
        grants = UserGrants(user) if record is None else UserGrants.from_json(user, record)
        return grants, known

    def _install(self, grants: UserGrants, secret: list[str]) -> Flow[None]:
        """Set the user's rules from ``grants`` and record them, in one transaction, then
        copy the user to every other node (:meth:`_spread`)."""
        setuser = ("ACL", "SETUSER", grants.user, "on", *secret, *rules(grants, self.db))
        yield Pipeline(
            [setuser, ("HSET", ACL_RECORDS, grants.user, grants.to_json())], transaction=True
        )
        yield from self._spread(grants)
        yield from _save()

    def _spread(self, grants: UserGrants) -> Flow[None]:
        """Make the user the same on every node of a cluster, replicas included (users are
        not replicated, and a replica may be promoted): the rules of ``grants`` and the
        password hashes the node of the records holds (``ACL GETUSER``), so a node that
        lacked the user gets its passwords too. Two round trips; on one server it sets the
        same user again (ACL SETUSER is idempotent)."""
        found = yield Command(("ACL", "GETUSER", grants.user), at=ACL_RECORDS)
        fields = found if isinstance(found, dict) else dict(zip(found[::2], found[1::2]))
        hashes = fields.get(b"passwords", fields.get("passwords")) or []
        secret = ["resetpass", *(f"#{h.decode() if isinstance(h, bytes) else h}" for h in hashes)]
        yield Broadcast(
            ("ACL", "SETUSER", grants.user, "on", *secret, *rules(grants, self.db)),
            replicas=True,
        )


def _keyspace_events() -> Flow[None]:
    """Make the server publish the keyspace notifications a role's hot cache follows
    (:data:`KEYSPACE_EVENTS`, added to what it already publishes), and keep the setting in
    its config file when it has one (CONFIG REWRITE; the embedded server writes it into
    its config at every start while its ACL file holds roles). Publishing costs the server
    a little on every write (docs/security.md has the measured cost); nothing when set."""
    # per node, replicas too (one may be promoted)
    replies = yield Broadcast(("CONFIG", "GET", "notify-keyspace-events"), replicas=True)
    for reply in replies:
        values = reply.values() if isinstance(reply, dict) else reply[1::2]
        current = next(iter(values), b"")
        current = current.decode() if isinstance(current, bytes) else str(current)
        have = set(current.replace("A", "g$lshzxetd"))
        if not set(KEYSPACE_EVENTS) <= have:
            break
    else:
        return
    # the union of what any node publishes, and the hub's: every node the same
    yield Broadcast(
        ("CONFIG", "SET", "notify-keyspace-events", current + KEYSPACE_EVENTS), replicas=True
    )
    with contextlib.suppress(redis.ResponseError):  # no config file to keep it in
        yield Broadcast(("CONFIG", "REWRITE"), replicas=True)


def _save() -> Flow[None]:
    """ACL SAVE when the server keeps its users in an ACL file (the embedded server does)."""
    try:
        yield Broadcast(("ACL", "SAVE"), replicas=True)
    except redis.ResponseError as exc:
        if not _no_aclfile(exc):
            raise
