"""Pure helpers of versions: state strings, labels, drift statistics, version records."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from rediscache import Space
from rediscache.config import SpaceConfig
from rediscache.context import HubContext
from rediscache.diff import drift_stats
from rediscache.drive import SyncDriver
from rediscache.errors import CorruptDataError, InvalidInputError
from rediscache.generations import Version, parse_versions
from rediscache.state import SpaceState, new_origin
from rediscache.versions import check_label
from rediscache.wire import ConnectCounter


def test_drift_stats_match_numpy() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(100, 16)), rng.normal(size=(100, 16))
    a[0] = b[0] = 0.0  # both zero: no drift
    a[1] = 0.0  # one zero: orthogonal
    dist, d = drift_stats(a, b)
    x, y = a[2:], b[2:]
    cos = np.sum(x * y, axis=1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
    np.testing.assert_allclose(dist[2:], 1 - cos, rtol=1e-12)
    assert dist[0] == 0.0 and dist[1] == 1.0
    assert d.count == 100 and d.mean == pytest.approx(dist.mean())
    assert d.p50 == pytest.approx(np.percentile(dist, 50)) and d.max == dist.max()
    assert d.p90 <= d.p99 <= d.max
    assert drift_stats(np.empty((0, 4)), np.empty((0, 4)))[1].count == 0


def test_identical_vectors_drift_exactly_zero() -> None:
    # cosine of a vector with itself rounds to 1 - 4.4e-16; a reader wants 0
    a = np.random.default_rng(4).normal(size=(50, 384)).astype(np.float32)
    dist, d = drift_stats(a, a.copy())
    assert not dist.any() and d.max == 0.0 and d.mean == 0.0


def test_state_strings() -> None:
    s = SpaceState.parse(b"12 3 1 abc")
    assert (s.epoch, s.live, s.shared, s.fork, s.raw) == (12, 3, True, "abc", "12 3 1 abc")
    assert not s.writable
    assert SpaceState.initial().writable and SpaceState.initial().raw == "1 1 0 -"
    assert not SpaceState.parse("2 1 1 -").writable
    assert not SpaceState.parse("2 1 0 tok").writable
    five = SpaceState.parse("4 2 0 - 9f3a")  # with the space's origin
    assert (five.epoch, five.live, five.fork, five.origin) == (4, 2, None, "9f3a")
    assert SpaceState.parse("1 1 0 -").origin is None  # spaces created before origins
    assert SpaceState.initial("ab").raw == "1 1 0 - ab"
    assert new_origin() != new_origin() and len(new_origin()) == 12
    for bad in (None, b"", "1 1 0", "x 1 0 -", "1 1 2 -", "0 1 0 -", "1 0 0 -", "1 1 0 - x y",
                "1 1 0 - "):  # fmt: skip
        with pytest.raises(CorruptDataError):
            SpaceState.parse(bad)


@pytest.mark.parametrize("bad", ["", "42", "live", "a\tb", "x" * 101, None, 3, " v1", "prod ", " "])
def test_bad_labels(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="label"):
        check_label(bad)


def test_a_bad_label_is_told_what_is_wrong() -> None:
    for bad, said in (("x" * 101, "got 101"), (" v1", "spaces around"), ("42", "digits"),
                      ("a\tb", "printable"), ("live", "live space"), (3, "string")):  # fmt: skip
        with pytest.raises(InvalidInputError, match=said):
            check_label(bad)


def test_good_labels_and_records() -> None:
    assert check_label("model-2026-11 (retrain)") == "model-2026-11 (retrain)"
    raw = {
        b"2": json.dumps({"label": None, "created_at": "2.5", "count": 7, "gen": 4}).encode(),
        b"1": json.dumps({"label": "a", "created_at": "1.0", "count": 3, "gen": 1}).encode(),
    }
    table = parse_versions(raw, "items")
    assert list(table) == [1, 2]
    assert table[1] == (Version(1, "a", 1.0, 3, "items"), 1)
    assert table[2] == (Version(2, None, 2.5, 7, "items"), 4)
    assert str(table[1][0]) == "v1 (a)" and str(table[2][0]) == "v2"


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.at([1]),
        lambda s: s.at(1.5),
        lambda s: s.rollback(None),
        lambda s: s.version({}),
        lambda s: s.delete_version(-1),
        lambda s: s.delete_version(0),
        lambda s: s.diff("v1", 3.5),
        lambda s: s.diff(b"v1"),
    ],
)
def test_bad_version_refs_are_refused_before_anything_is_sent(call: Any) -> None:
    """The space's driver has no client: any round trip would fail with another error."""
    hub = SimpleNamespace(_driver=SyncDriver(None), _context=HubContext(ConnectCounter(), 1.0))
    config = SpaceConfig("t", 4, "l2", "flat", "float32", {}, {})
    space = Space(hub, config, SpaceState.initial())  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        call(space)


def test_a_version_is_found_as_it_is_shown() -> None:
    """'v3' names version 3, as str(Version) and the CLI show it, unless a version has the
    label 'v3', which comes first; other strings are labels only."""
    from rediscache.errors import VersionNotFoundError
    from rediscache.versions import find_version

    table = {
        i: (Version(i, label, 0.0, 0, "s"), i) for i, label in ((1, None), (3, "prod"), (7, "v1"))
    }
    assert find_version(table, "v3", "s")[0].id == 3
    assert str(find_version(table, "v3", "s")[0]).startswith("v3")
    assert find_version(table, "v1", "s")[0].id == 7  # the label first
    assert find_version(table, "v7", "s")[0].id == 7
    assert find_version(table, "prod", "s")[0].id == 3
    assert find_version(table, "3", "s")[0].id == 3  # an id as text (labels are not digits)
    for ref in ("v2", "v03", "V3", "v3 ", "2", "03x", "v"):
        with pytest.raises(VersionNotFoundError):
            find_version(table, ref, "s")


def test_labels_are_one_whatever_their_unicode_form() -> None:
    """A label written with a combining accent ("e" + U+0301) and one typed with the
    composed letter are the same label: stored in NFC, and found in either form, also for
    a label stored before in the other form (before, each form found only itself)."""
    from rediscache.keys import stage_field
    from rediscache.versions import find_version

    assert check_label("pre\u0301d") == "pr\u00e9d"
    assert stage_field("pre\u0301d") == stage_field("pr\u00e9d")
    table = {i: (Version(i, label, 0.0, 0, "s"), i) for i, label in ((1, "pre\u0301d"), (2, "x"))}
    assert find_version(table, "pr\u00e9d", "s")[0].id == 1
    assert find_version(table, "pre\u0301d", "s")[0].id == 1
