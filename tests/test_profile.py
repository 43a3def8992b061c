"""The profile model: API field names (checked against docs/contracts.md), `active`, timestamps,
device classes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from profiles.engine import ViewerState
from profiles.profile import (
    DEVICE_CLASSES,
    PROFILE_FIELDS,
    STATUSES,
    device_class,
    is_active,
    iso,
    parse_iso,
    with_active,
)

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


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (1731764001.958, "2024-11-16T13:33:21.958Z"),
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1731764001.9996, "2024-11-16T13:33:22.000Z"),  # rounds to the millisecond
        (1700000000, "2023-11-14T22:13:20.000Z"),
    ],
)
def test_iso(ts: float, text: str) -> None:
    assert iso(ts) == text
    assert parse_iso(text) == pytest.approx(round(ts, 3), abs=1e-6)


def test_parse_iso_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_iso("yesterday")


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


UAS = [
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
        "desktop",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
        "desktop",
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/130.0.0.0 Safari/537.36",
        "desktop",
    ),
    (
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
        "desktop",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "mobile",
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36",
        "mobile",
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "tablet",
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
        "tablet",
    ),
    (
        "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/4.0 Chrome/76.0.3809.146 TV Safari/537.36",
        "tv",
    ),
    (
        "Mozilla/5.0 (Web0S; Linux/SmartTV) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/79.0.3945.79 Safari/537.36 WebAppManager",
        "tv",
    ),
    (
        "Mozilla/5.0 (Linux; Android 9; AFTMM Build/PS7233) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36",
        "tv",
    ),
    ("Roku/DVP-12.0 (12.0.0.4182-88)", "tv"),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "bot"),
    ("curl/8.5.0", "bot"),
    ("python-requests/2.32.3", "bot"),
    ("", "unknown"),
    ("SomethingElse/1.0", "unknown"),
]


@pytest.mark.parametrize(("ua", "expected"), UAS)
def test_device_class(ua: str, expected: str) -> None:
    assert device_class(ua) == expected
    assert expected in DEVICE_CLASSES
