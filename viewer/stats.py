"""Aggregates for ``GET /api/stats``: active viewers over the last 15 minutes (one sample per
10 s, taken by the push loop), events per minute over sliding windows, QoE and the ad funnel.

Definitions
    events per minute  the increases of every profile's ``events`` counter, counted when the
                       change reaches this process, over the last 1/5/15 minutes (a window not
                       yet covered since the view loaded is scaled to the time covered).
    median startup     median ``startup_time_s`` of the active viewers that have one.
    rebuffering ratio  sum(buffering_time_s) / sum(play_time_s + buffering_time_s), active viewers.
    errors/viewer-hour sum(errors) / (sum of player time in hours: play + paused + ad + buffering).
    ad funnel          ad_breaks, ads_started, ads_completed, ads_skipped, ads_clicked summed.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from lvp.enriched import iso

WINDOWS_S: dict[str, int] = {"1m": 60, "5m": 300, "15m": 900}
SERIES_SPAN_S = 900
SERIES_STEP_S = 10
AD_FIELDS = ("ad_breaks", "ads_started", "ads_completed", "ads_skipped", "ads_clicked")
TIME_FIELDS = ("play_time_s", "paused_time_s", "ad_time_s", "buffering_time_s")
MIN_COVER_S = 10.0


def _num(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) if math.isfinite(value) else 0.0


class EventRate:
    """Events counted into one-second buckets; rates per minute over sliding windows."""

    def __init__(self, span_s: int = max(WINDOWS_S.values())) -> None:
        self.span_s = span_s
        self._buckets = [0] * span_s
        self._bucket_of = [-1] * span_s  # which absolute second each bucket holds
        self.since: float | None = None

    def start(self, now: float) -> None:
        if self.since is None:
            self.since = now

    def add(self, n: int, now: float) -> None:
        if n <= 0 or self.since is None:
            return
        sec = int(now)
        i = sec % self.span_s
        if self._bucket_of[i] != sec:
            self._bucket_of[i] = sec
            self._buckets[i] = 0
        self._buckets[i] += n

    def per_minute(self, now: float) -> dict[str, float | None]:
        if self.since is None:
            return dict.fromkeys(WINDOWS_S)
        sec = int(now)
        out: dict[str, float | None] = {}
        for name, window in WINDOWS_S.items():
            total = sum(
                self._buckets[i] for i in range(self.span_s) if sec - window < self._bucket_of[i] <= sec
            )
            covered = min(float(window), max(now - self.since, MIN_COVER_S))
            out[name] = round(total * 60.0 / covered, 2)
        return out


class ActiveSeries:
    """Active viewers sampled every ``step_s`` seconds (aligned) over ``span_s``."""

    def __init__(self, span_s: int = SERIES_SPAN_S, step_s: int = SERIES_STEP_S) -> None:
        self.step_s = step_s
        self._points: deque[tuple[int, int]] = deque(maxlen=span_s // step_s)

    def sample(self, now: float, active: int) -> bool:
        slot = int(now // self.step_s) * self.step_s
        if self._points and self._points[-1][0] >= slot:
            return False
        self._points.append((slot, active))
        return True

    def points(self) -> list[dict[str, Any]]:
        return [{"t": iso(t), "active": n} for t, n in self._points]


def qoe(profiles: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    startups: list[float] = []
    buffering = playing = player_time = errors = 0.0
    viewers = 0
    for p in profiles:
        viewers += 1
        s = p.get("startup_time_s")
        if isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s) and s >= 0:
            startups.append(float(s))
        buffering += _num(p.get("buffering_time_s"))
        playing += _num(p.get("play_time_s"))
        player_time += sum(_num(p.get(f)) for f in TIME_FIELDS)
        errors += _num(p.get("errors"))
    watched = playing + buffering
    return {
        "viewers": viewers,
        "median_startup_time_s": round(statistics.median(startups), 3) if startups else None,
        "rebuffering_ratio": round(buffering / watched, 4) if watched > 0 else None,
        "errors_per_viewer_hour": round(errors / (player_time / 3600.0), 3) if player_time > 0 else None,
        "errors": int(errors),
        "viewer_hours": round(player_time / 3600.0, 3),
    }


def ad_funnel(profiles: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    totals = dict.fromkeys(AD_FIELDS, 0)
    for p in profiles:
        for f in AD_FIELDS:
            totals[f] += int(_num(p.get(f)))
    return totals


def build_stats(
    *,
    now: float,
    counts: Mapping[str, Any],
    profiles: list[Mapping[str, Any]],
    series: ActiveSeries,
    rate: EventRate,
) -> dict[str, Any]:
    return {
        "generated_at": iso(now),
        "active": counts["active"],
        "active_series": {"step_s": series.step_s, "points": series.points()},
        "events_per_min": rate.per_minute(now),
        "by_status": counts["by_status"],
        "by_media": counts["by_media"],
        "qoe": qoe(profiles),
        "ads": ad_funnel(profiles),
    }
