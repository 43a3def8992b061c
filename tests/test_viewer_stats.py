"""Stats: event-rate windows, the sampled active series, QoE and the ad funnel."""

from __future__ import annotations

from typing import Any

import pytest

from viewer.stats import ActiveSeries, EventRate, ad_funnel, qoe

T0 = 1_700_000_000.0


def test_event_rate_windows() -> None:
    rate = EventRate()
    rate.add(100, T0)  # before the view loaded: not counted
    rate.start(T0 - 900)
    rate.add(60, T0 - 800)  # only in the 15-min window
    rate.add(50, T0 - 200)  # 5 and 15
    rate.add(30, T0 - 10)  # all three
    per_min = rate.per_minute(T0)
    assert per_min["1m"] == 30.0
    assert per_min["5m"] == pytest.approx(80 / 5)
    assert per_min["15m"] == pytest.approx(140 / 15, abs=0.01)


def test_event_rate_scales_a_window_not_yet_covered() -> None:
    rate = EventRate()
    assert rate.per_minute(T0) == {"1m": None, "5m": None, "15m": None}
    rate.start(T0 - 30)
    rate.add(15, T0 - 5)
    per_min = rate.per_minute(T0)
    assert per_min["1m"] == per_min["15m"] == 30.0  # 15 events in 30 s


def test_bucket_reuse_after_wraparound() -> None:
    rate = EventRate()
    rate.start(T0 - 2000)
    rate.add(7, T0 - 900)  # same bucket index as T0, 15 minutes earlier
    rate.add(3, T0)
    assert rate.per_minute(T0)["1m"] == 3.0


def test_active_series_samples_every_10_s_for_15_min() -> None:
    series = ActiveSeries()
    assert series.sample(T0, 5)
    assert not series.sample(T0 + 3, 6)  # same 10-s slot
    for i in range(1, 120):
        series.sample(T0 + 10 * i, i)
    points = series.points()
    assert len(points) == 90
    assert points[-1]["active"] == 119 and points[0]["active"] == 30
    assert points[-1]["t"].endswith("Z")


def test_qoe_and_ads() -> None:
    profiles: list[dict[str, Any]] = [
        {"startup_time_s": 1.0, "play_time_s": 90, "buffering_time_s": 10, "errors": 2, "ad_breaks": 1},
        {
            "startup_time_s": 5.0,
            "play_time_s": 0,
            "buffering_time_s": 0,
            "paused_time_s": 0,
            "ads_clicked": 2,
        },
        {"startup_time_s": None, "play_time_s": 80, "buffering_time_s": 20, "ad_time_s": 80, "errors": 1},
        {"startup_time_s": True, "play_time_s": "x", "ads_started": 3},
    ]
    q = qoe(profiles)
    assert q["viewers"] == 4
    assert q["median_startup_time_s"] == 3.0
    assert q["rebuffering_ratio"] == pytest.approx(30 / 200)
    assert q["errors_per_viewer_hour"] == pytest.approx(3 / (280 / 3600), rel=1e-3)
    assert ad_funnel(profiles) == {
        "ad_breaks": 1,
        "ads_started": 3,
        "ads_completed": 0,
        "ads_skipped": 0,
        "ads_clicked": 2,
    }
    assert qoe([]) == {
        "viewers": 0,
        "median_startup_time_s": None,
        "rebuffering_ratio": None,
        "errors_per_viewer_hour": None,
        "errors": 0,
        "viewer_hours": 0.0,
    }
