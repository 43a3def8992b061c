"""The profile model (lvp.profile): API field names (checked against docs/contracts.md), `active`,
the dict shapes. Timestamps: tests/test_enriched.py; device classes: tests/test_device.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lvp.enriched import iso
from lvp.profile import PROFILE_FIELDS, STORED_FIELDS, api_profile, compare_versions, is_active, with_active
from profiles.engine import ViewerState
from profiles.state import STATUSES

CONTRACTS = Path(__file__).resolve().parent.parent / "docs" / "contracts.md"


def test_profile_fields_match_the_contract() -> None:
    text = CONTRACTS.read_text()
    section = text[text.index("## The profile") : text.index("`active` = status")]
    names = [t for t in re.findall(r"`([^`]+)`", section) if re.fullmatch(r"[a-z_]+", t)]
    assert tuple(names) == PROFILE_FIELDS
    assert STATUSES == ("idle", "watching", "paused", "watching_ad", "buffering", "ended")


def test_engine_profile_has_every_field_but_active_in_order() -> None:
    p = ViewerState.new("v").profile()
    assert tuple(p) == tuple(f for f in PROFILE_FIELDS if f != "active")
    assert p["status"] == "idle" and p["events"] == 0 and p["first_seen"] is None and p["ad"] is None


NOW = 1_731_764_100.0


@pytest.mark.parametrize(
    ("status", "age", "active"),
    [
        ("watching", 0.0, True),
        ("watching", 75.0, True),  # the timeout itself still counts
        ("watching", 75.5, False),
        ("paused", 10.0, True),
        ("idle", 10.0, True),
        ("idle", 80.0, False),
        ("buffering", 5.0, True),
        ("watching_ad", 5.0, True),
        ("ended", 0.0, False),
        ("ended", 80.0, False),
    ],
)
def test_is_active(status: str, age: float, active: bool) -> None:
    profile = {"status": status, "last_seen": iso(NOW - age)}
    assert is_active(profile, NOW, 75.0) is active


def test_is_active_without_last_seen_or_with_garbage() -> None:
    assert not is_active({"status": "watching"}, NOW, 75.0)
    assert not is_active({"status": "watching", "last_seen": "soon"}, NOW, 75.0)
    assert is_active({"status": "watching", "last_seen": NOW - 1}, NOW, 75.0)  # epoch seconds work too


def test_with_active_orders_the_fields() -> None:
    base = ViewerState.new("v").profile()
    base["last_seen"] = iso(NOW)
    out = with_active(base, NOW, 75.0)
    assert tuple(out) == PROFILE_FIELDS
    assert out["active"] is True


def test_stored_fields_are_the_api_fields_but_active() -> None:
    assert tuple(f for f in PROFILE_FIELDS if f != "active") == STORED_FIELDS
    assert tuple(ViewerState.new("v").profile()) == STORED_FIELDS


def test_api_profile_keeps_only_api_fields_and_with_active_keeps_extras() -> None:
    raw = {"status": "paused", "last_seen": iso(NOW), "state": "{}", "extra": 1}
    api = api_profile(raw, "from-key", active=True)
    assert tuple(api) == PROFILE_FIELDS and api["viewer_id"] == "from-key" and api["active"] is True
    assert tuple(api_profile(raw)) == STORED_FIELDS  # no `active` unless given
    out = with_active(raw, NOW, 75.0)
    assert tuple(out) == (*PROFILE_FIELDS, "state", "extra") and out["active"] is True


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (
            {"events": 7, "last_seen": "2026-01-01T00:00:01.000Z"},
            {"events": 6, "last_seen": "2026-01-01T00:00:05.000Z"},
            1,
        ),
        (
            {"events": 6, "last_seen": "2026-01-01T00:00:05.000Z"},
            {"events": 7, "last_seen": "2026-01-01T00:00:01.000Z"},
            -1,
        ),
        (
            {"events": 6, "last_seen": "2026-01-01T00:00:02.000Z"},
            {"events": 6, "last_seen": "2026-01-01T00:00:01.000Z"},
            1,
        ),
        (
            {"events": 6, "last_seen": "2026-01-01T00:00:01.000Z"},
            {"events": 6, "last_seen": "2026-01-01T00:00:01.000Z"},
            0,
        ),
        (
            {"last_seen": "2026-01-01T00:00:01.000Z"},
            {"events": 6, "last_seen": "2026-01-01T00:00:02.000Z"},
            -1,
        ),
        ({"events": 9, "last_seen": None}, {"events": 9, "last_seen": "2026-01-01T00:00:02.000Z"}, 0),
        (
            {"events": True, "last_seen": "2026-01-01T00:00:03.000Z"},
            {"events": 6, "last_seen": "2026-01-01T00:00:02.000Z"},
            1,
        ),
    ],
)
def test_compare_versions_row_by_row(a: dict[str, object], b: dict[str, object], expected: int) -> None:
    """More events is later; as many, or a count missing (or not an int), the later last_seen;
    an unreadable last_seen: not known (0)."""
    assert compare_versions(a, b) == expected
    assert compare_versions(b, a) == -expected
