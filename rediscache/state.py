"""The state of a space: which generation is live, and whether it may be written in place.

Stored as one string in the ``state`` field of the space's config hash, so that a Lua
script compares a whole state with one HGET::

    "<epoch> <live generation> <shared: 0|1> <copy token or ->"

* ``epoch`` grows by one at every change (snapshot, rollback, version deleted, a copy started
  or finished). States never repeat, so a client that built key names from a state and finds
  the same state string after its reads knows that nothing switched in between.
* ``shared`` is 1 while a version points at the live generation: the live space must not be
  written in place until the generation is copied for the version (a *fork*).
* the copy token is set while a client copies the live generation (writers wait meanwhile).

Pure code: parsing and formatting only.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import CorruptDataError

__all__ = ["SpaceState"]

#: Field of the config hash holding the state string.
STATE_FIELD = "state"


@dataclass(frozen=True)
class SpaceState:
    """One parsed state string of a space."""

    epoch: int
    live: int
    shared: bool
    fork: str | None
    raw: str

    @classmethod
    def initial(cls) -> SpaceState:
        """The state of a new space: epoch 1, generation 1 live, no versions."""
        return cls.parse("1 1 0 -")

    @classmethod
    def parse(cls, raw: bytes | str | None) -> SpaceState:
        """Parse a state string; raises CorruptDataError for anything else."""
        text = (raw.decode() if isinstance(raw, bytes) else raw) or ""
        parts = text.split(" ")
        try:
            epoch, live, shared, fork = parts
            parsed = cls(int(epoch), int(live), shared == "1", None if fork == "-" else fork, text)
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
