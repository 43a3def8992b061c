"""Differentially private public aggregates (served by ``GET /api/public/stats``).

A release publishes the active-viewer count, the counts by status and the counts by media
label, each with discrete Laplace noise drawn by OpenDP. Neighbouring data sets differ by one
viewer, who is in the total, in exactly one status and in exactly one media bucket, so the L1
sensitivity of the released vector is 3 and the noise scale is ``3 / ε``. Status names are public;
media labels come from a public catalogue (``LVP_DP_MEDIA_LABELS``) and every other label is
counted as ``other`` — releasing labels found in the data would itself leak.

Releases are cached for ``release_interval_s``; each new release spends ε from a budget that
renews every ``window_s`` (sequential composition). When the budget is spent, the last release
is served again (no new information) until the window renews.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PRESETS: dict[str, float] = {"high_privacy": 0.1, "balanced": 1.0, "high_utility": 10.0}
STATUS_KEYS = ("idle", "watching", "paused", "watching_ad", "buffering", "ended")
SENSITIVITY = 3  # total + one status bucket + one media bucket


def parse_epsilon(value: str | float) -> float:
    """A preset name or a positive number."""
    if isinstance(value, str) and value in PRESETS:
        return PRESETS[value]
    try:
        eps = float(value)
    except ValueError:
        raise ValueError(f"ε must be a number or one of {', '.join(PRESETS)}; got {value!r}") from None
    if not eps > 0:
        raise ValueError(f"ε must be positive; got {eps}")
    return eps


def _laplace_vector(scale: float) -> Callable[[list[int]], list[int]]:
    import opendp.prelude as dp

    dp.enable_features("contrib")
    space = dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int)
    meas = dp.m.make_laplace(*space, scale=scale)
    return lambda vec: list(meas(vec))


@dataclass
class TrueCounts:
    total: int
    by_status: Mapping[str, int]
    by_media: Mapping[str, int]


@dataclass
class PublicStatsReleaser:
    epsilon: float
    release_interval_s: float
    budget: float
    window_s: float
    media_labels: tuple[str, ...] = ()
    clock: Callable[[], float] = field(default=lambda: __import__("time").time())
    _mechanism: Callable[[list[int]], list[int]] | None = None
    _last: dict[str, Any] | None = None
    _last_at: float = float("-inf")
    _window_start: float = float("-inf")
    _spent: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def scale(self) -> float:
        return SENSITIVITY / self.epsilon

    def _keys(self) -> tuple[str, ...]:
        return (*self.media_labels, "other")

    def vectorize(self, counts: TrueCounts) -> list[int]:
        media = dict.fromkeys(self._keys(), 0)
        for label, n in counts.by_media.items():
            media[label if label in media else "other"] += int(n)
        return [int(counts.total), *(int(counts.by_status.get(s, 0)) for s in STATUS_KEYS), *media.values()]

    def release(self, counts: Callable[[], TrueCounts]) -> dict[str, Any]:
        """The current public release; draws a new one when the cached one is older than the
        release interval and the window's budget allows."""
        with self._lock:
            now = self.clock()
            if now - self._window_start >= self.window_s:
                self._window_start, self._spent = now, 0.0
            fresh = now - self._last_at >= self.release_interval_s
            affordable = self._spent + self.epsilon <= self.budget + 1e-12
            if self._last is not None and (not fresh or not affordable):
                return {**self._last, "budget": self._budget_info(now, exhausted=fresh and not affordable)}
            if self._last is None and not affordable:
                raise RuntimeError("privacy budget smaller than one release")
            if self._mechanism is None:
                self._mechanism = _laplace_vector(self.scale)
            noisy = [max(0, v) for v in self._mechanism(self.vectorize(counts()))]
            self._spent += self.epsilon
            self._last_at = now
            n_status = len(STATUS_KEYS)
            self._last = {
                "released_at": now,
                "active": noisy[0],
                "by_status": dict(zip(STATUS_KEYS, noisy[1 : 1 + n_status], strict=True)),
                "by_media": dict(zip(self._keys(), noisy[1 + n_status :], strict=True)),
                "epsilon": self.epsilon,
                "noise_scale": self.scale,
                "mechanism": "discrete Laplace (OpenDP), L1 sensitivity 3",
            }
            return {**self._last, "budget": self._budget_info(now, exhausted=False)}

    def _budget_info(self, now: float, *, exhausted: bool) -> dict[str, Any]:
        return {
            "window_s": self.window_s,
            "spent": round(self._spent, 6),
            "total": self.budget,
            "renews_in_s": max(0.0, round(self._window_start + self.window_s - now, 3)),
            "exhausted": exhausted,
        }


def releaser_from_settings(settings: Any, clock: Callable[[], float] | None = None) -> PublicStatsReleaser:
    labels: Iterable[str] = (x.strip() for x in settings.dp_media_labels.split(","))
    kwargs: dict[str, Any] = {}
    if clock is not None:
        kwargs["clock"] = clock
    return PublicStatsReleaser(
        epsilon=parse_epsilon(settings.dp_epsilon),
        release_interval_s=settings.dp_release_interval_s,
        budget=settings.dp_budget,
        window_s=settings.dp_window_s,
        media_labels=tuple(x for x in labels if x),
        **kwargs,
    )
