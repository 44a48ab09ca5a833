"""The state of a space: which generation is live, and whether it may be written in place.

Stored as one string in the ``state`` field of the space's config hash, so that a Lua
script compares a whole state with one HGET::

    "<epoch> <live generation> <shared: 0|1> <copy token or -> <origin>"

* ``epoch`` grows by one at every change (snapshot, rollback, version deleted, a copy started
  or finished). States never repeat, so a client that built key names from a state and finds
  the same state string after its reads knows that nothing switched in between.
* ``shared`` is 1 while a version points at the live generation: the live space must not be
  written in place until the generation is copied for the version (a *fork*).
* the copy token is set while a client copies the live generation (writers wait meanwhile).
* ``origin`` is drawn at random when the space is created and kept by every change (the
  scripts carry it over). A space dropped and created again under the same name starts
  again at epoch 1, so without it a handle opened before the drop would find its old state
  string again and write into the new space (with its old schema); with it, no state of the
  old space equals one of the new, and a handle that sees another origin refuses to go on
  (:meth:`rediscache.target.Target.set_state`). Spaces created before it had none: their
  states have four parts, and keep them.

Pure code: parsing and formatting only.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from .errors import CorruptDataError

__all__ = ["RELEASE_FIELD", "STATE_FIELD", "SpaceState", "new_origin"]

#: Field of the config hash holding the state string.
STATE_FIELD = "state"
#: Field of a partitioned space's config and of each of its partitions' configs holding
#: its release number ("<n>", or "~<n>" while a partition switches to release n):
#: rediscache.partitioned.
RELEASE_FIELD = "release"


@dataclass(frozen=True)
class SpaceState:
    """One parsed state string of a space."""

    epoch: int
    live: int
    shared: bool
    fork: str | None
    raw: str
    origin: str | None = None

    @classmethod
    def initial(cls, origin: str | None = None) -> SpaceState:
        """The state of a new space: epoch 1, generation 1 live, no versions, and ``origin``
        (:func:`new_origin`; None: a state of four parts, as spaces created before it had)."""
        return cls.parse("1 1 0 -" if origin is None else f"1 1 0 - {origin}")

    @classmethod
    def parse(cls, raw: bytes | str | None) -> SpaceState:
        """Parse a state string; raises CorruptDataError for anything else."""
        text = (raw.decode() if isinstance(raw, bytes) else raw) or ""
        parts = text.split(" ")
        try:
            epoch, live, shared, fork, *rest = parts
            origin = rest.pop() if len(rest) == 1 and rest[0] else None
            if rest:
                raise ValueError(f"{len(parts)} parts")
            parsed = cls(
                int(epoch), int(live), shared == "1", None if fork == "-" else fork, text, origin
            )
        except ValueError as exc:
            raise CorruptDataError(
                f"unreadable space state {raw!r}: the space was created by another version "
                "of rediscache or its config hash was edited"
            ) from exc
        if shared not in ("0", "1") or parsed.epoch < 1 or parsed.live < 1:
            raise CorruptDataError(f"unreadable space state {raw!r}")
        return parsed

    @property
    def writable(self) -> bool:
        """True when the live generation may be written in place."""
        return not self.shared and self.fork is None


def new_origin() -> str:
    """The origin of a space being created: 48 random bits in hex (two creations of one name
    share it with probability 2**-48)."""
    return secrets.token_hex(6)
