from __future__ import annotations

import statistics
import threading
from collections.abc import Callable
from typing import Any

import pytest

from lvp.config import Settings
from viewer.privacy import (
    SENSITIVITY,
    STATUS_KEYS,
    BudgetExhausted,
    PublicStatsReleaser,
    TrueCounts,
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


# --- the shared, durable budget over a real DynamoDB (DynamoDB Local and moto server) ---------
def _budget_table(endpoint: str) -> tuple[Settings, Callable[[], Any]]:
    import uuid

    from lvp.dynamo import dynamodb_client
    from lvp.tables import viewer_state_table

    settings = Settings.from_env(
        {}, aws_endpoint_url=endpoint, table_viewer_state=f"state-{uuid.uuid4().hex[:10]}"
    )
    client = dynamodb_client(settings)
    client.create_table(**viewer_state_table(settings.table_viewer_state))
    client.get_waiter("table_exists").wait(
        TableName=settings.table_viewer_state, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
    )
    return settings, lambda: dynamodb_client(settings)


def _holder(settings: Settings, clock: Clock, **changes: Any) -> PublicStatsReleaser:
    """One budget holder: its own DynamoDB client, as a separate viewer process has."""
    base: dict[str, Any] = {"dp_epsilon": "1", "dp_release_interval_s": 0.0, "dp_media_labels": "News"}
    s = settings.with_(**{**base, **changes})
    return releaser_from_settings(s, clock=clock)


def test_holders_sharing_the_table_cannot_overspend_the_lifetime_cap(dynamodb_endpoint: str) -> None:
    settings, _ = _budget_table(dynamodb_endpoint)
    clock = Clock()
    holders = [_holder(settings, clock, dp_budget=1000.0, dp_lifetime_budget=5.0) for _ in range(2)]
    draws: list[float] = []

    def counted() -> TrueCounts:  # read only to draw a new release
        draws.append(clock.t)
        return COUNTS

    for _ in range(5):
        for r in holders:  # the two holders take turns
            clock.t += 1
            r.release(counted)
    state = holders[0].store.state()
    assert state.lifetime_spent == 5.0 and len(draws) == 5  # the cap, across both holders
    final = holders[1].release(counted)
    assert final["budget"]["exhausted"] is True and final["budget"]["exhausted_by"] == "lifetime"
    assert final["budget"]["lifetime_spent"] == 5.0 and final["budget"]["lifetime_total"] == 5.0
    assert len(draws) == 5

    # a restart (a new holder, nothing in memory) does not reset it: the last release again
    clock.t += 10 * 3600  # later windows too
    restarted = _holder(settings, clock, dp_budget=1000.0, dp_lifetime_budget=5.0)
    again = restarted.release(counted)
    assert again["budget"]["exhausted_by"] == "lifetime"
    assert state.last is not None and again["released_at"] == state.last["released_at"]
    assert restarted.store.state().lifetime_spent == 5.0 and len(draws) == 5


def test_racing_holders_cannot_overspend(dynamodb_local: str) -> None:
    """Concurrent spends: DynamoDB (and DynamoDB Local) apply each conditional update atomically.
    (Not run on moto server: it does not serialize concurrent conditional writes.)"""
    settings, _ = _budget_table(dynamodb_local)
    clock = Clock()
    holders = [_holder(settings, clock, dp_budget=1000.0, dp_lifetime_budget=5.0) for _ in range(2)]
    draws: list[float] = []
    lock = threading.Lock()

    def counted() -> TrueCounts:
        with lock:
            draws.append(clock.t)
        return COUNTS

    def hammer(r: PublicStatsReleaser) -> None:
        for _ in range(8):
            r.release(counted)

    threads = [threading.Thread(target=hammer, args=(r,)) for r in holders for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert holders[0].store.state().lifetime_spent == 5.0
    assert 1 <= len(draws) <= 5  # never a draw without its own spend


def test_window_budget_is_shared_and_renews(dynamodb_endpoint: str) -> None:
    settings, _ = _budget_table(dynamodb_endpoint)
    clock = Clock()
    a, b = (_holder(settings, clock, dp_budget=2.0, dp_lifetime_budget=10.0) for _ in range(2))
    first = a.release(lambda: COUNTS)
    clock.t += 1
    second = b.release(lambda: COUNTS)
    assert not first["budget"]["exhausted"] and not second["budget"]["exhausted"]
    clock.t += 1
    third = a.release(lambda: COUNTS)  # the window's 2 ε were spent by a and b together
    assert third["budget"]["exhausted_by"] == "window"
    assert third["released_at"] == second["released_at"]  # b's release, served by a
    assert third["budget"]["renews_in_s"] > 0
    clock.t += 3600
    fourth = b.release(lambda: COUNTS)
    assert not fourth["budget"]["exhausted"] and fourth["budget"]["spent"] == 1.0
    assert b.store.state().lifetime_spent == 3.0


def test_a_fresh_release_of_another_holder_is_served_without_spending(dynamodb_endpoint: str) -> None:
    settings, _ = _budget_table(dynamodb_endpoint)
    clock = Clock()
    a, b = (_holder(settings, clock, dp_release_interval_s=60.0) for _ in range(2))
    first = a.release(lambda: COUNTS)
    clock.t += 30
    assert b.release(lambda: COUNTS)["released_at"] == first["released_at"]
    assert b.store.state().lifetime_spent == 1.0


def test_no_release_to_serve_is_an_error_with_a_reason() -> None:
    r = PublicStatsReleaser(1.0, 0, 0.5, 3600, clock=Clock())
    with pytest.raises(BudgetExhausted, match="window") as info:
        r.release(lambda: COUNTS)
    assert info.value.retry_in_s is not None and info.value.retry_in_s > 0


def test_sensitivity_is_derived_from_one_viewer_id() -> None:
    # adding one viewer id changes the released vector by exactly SENSITIVITY in L1
    r = PublicStatsReleaser(1.0, 0, 1e9, 1e9, media_labels=("News",), clock=Clock())
    one_more = TrueCounts(121, {**COUNTS.by_status, "paused": 26}, {**COUNTS.by_media, "News": 71})
    diff = sum(abs(x - y) for x, y in zip(r.vectorize(one_more), r.vectorize(COUNTS), strict=True))
    assert diff == SENSITIVITY == 3
    assert r.scale == SENSITIVITY / 1.0
