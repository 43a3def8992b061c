from __future__ import annotations

import statistics

import pytest

from lvp.config import Settings
from lvp.privacy import (
    PRESETS,
    STATUS_KEYS,
    PublicStatsReleaser,
    TrueCounts,
    parse_epsilon,
    releaser_from_settings,
)

COUNTS = TrueCounts(
    total=120,
    by_status={"watching": 80, "paused": 25, "watching_ad": 15},
    by_media={"News": 70, "Secret Doc": 50},
)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(
    eps: float = 1.0, budget: float = 3.0, interval: float = 60, window: float = 3600
) -> tuple[PublicStatsReleaser, Clock]:
    clock = Clock()
    return PublicStatsReleaser(eps, interval, budget, window, media_labels=("News",), clock=clock), clock


def test_presets_and_validation() -> None:
    assert [parse_epsilon(p) for p in ("high_privacy", "balanced", "high_utility")] == [0.1, 1.0, 10.0]
    assert parse_epsilon("2.5") == 2.5
    for bad in ("0", "-1", "lots"):
        with pytest.raises(ValueError):
            parse_epsilon(bad)
    assert set(PRESETS) == {"high_privacy", "balanced", "high_utility"}


def test_release_shape_hides_labels_outside_the_catalogue() -> None:
    r, _ = make()
    out = r.release(lambda: COUNTS)
    assert set(out["by_status"]) == set(STATUS_KEYS)
    assert set(out["by_media"]) == {"News", "other"}  # "Secret Doc" never named
    assert all(v >= 0 for v in [out["active"], *out["by_status"].values(), *out["by_media"].values()])
    assert out["epsilon"] == 1.0 and out["noise_scale"] == 3.0


def test_cached_between_releases_and_budget_enforced() -> None:
    r, clock = make(eps=1.0, budget=2.0)
    calls = []

    def counts() -> TrueCounts:
        calls.append(1)
        return COUNTS

    first = r.release(counts)
    clock.t += 10
    assert r.release(counts)["released_at"] == first["released_at"]  # cached, no new draw
    clock.t += 60
    second = r.release(counts)
    assert second["released_at"] == clock.t and second["budget"]["spent"] == 2.0
    clock.t += 60
    third = r.release(counts)  # budget spent: last release served again
    assert third["released_at"] == second["released_at"] and third["budget"]["exhausted"] is True
    assert len(calls) == 2
    clock.t += 3600  # window renews
    fourth = r.release(counts)
    assert fourth["released_at"] == clock.t and fourth["budget"]["spent"] == 1.0


def test_noise_scale_tracks_epsilon() -> None:
    errors = {}
    for eps in (0.1, 10.0):
        r = PublicStatsReleaser(eps, 0, 1e9, 1e9, clock=Clock())
        errs = [abs(r.release(lambda: COUNTS)["active"] - 120) for _ in range(400)]
        errors[eps] = statistics.mean(errs)
    # expected mean |noise| ≈ scale = 3/ε: 30 at ε=0.1, 0.3 at ε=10 (wide margins: not flaky)
    assert errors[0.1] > 15
    assert errors[10.0] < 1.5


def test_from_settings() -> None:
    s = Settings.from_env({"LVP_DP_EPSILON": "high_privacy", "LVP_DP_MEDIA_LABELS": "A, B"})
    r = releaser_from_settings(s)
    assert r.epsilon == 0.1 and r.media_labels == ("A", "B")
