"""Differentially private public aggregates (served by ``GET /api/public/stats``).

Unit of privacy: **one viewer id** — the pseudonymous ``viewer_id`` of one profile in the live
view. Neighbouring data sets differ by adding or removing one viewer id. That viewer is counted
once in the total, in exactly one status bucket and in exactly one media bucket, so the L1
sensitivity of the released vector is 1 + 1 + 1 = 3 (:data:`SENSITIVITY`) and each count gets
discrete Laplace noise (OpenDP) of scale ``3 / ε``. A person seen under k viewer ids (several
devices or browsers, cleared cookies) is protected at k·ε per release, not ε. Status names are
public; media labels come from a public catalogue (``LVP_DP_MEDIA_LABELS``) and every other label
is counted as ``other`` — releasing labels found in the data would itself leak.

Budget (sequential composition): each new release spends ε. At most ``budget`` ε is spent per
window (windows are aligned: ``floor(time / window_s)``) and at most ``lifetime_budget`` ε ever.
The spent amounts live in a :class:`BudgetStore`; in production that is the DynamoDB table
``LVP_TABLE_VIEWER_STATE`` (:class:`DynamoBudget`), shared by every viewer process and kept
across restarts, and spent with one conditional update that checks both caps, so processes racing
each other cannot spend more than the caps in total. The last release is kept there too: a
process serves a release another one drew (within ``release_interval_s``) instead of drawing its
own, and when a cap is reached every process serves the last release again (no new information)
— until the window renews, or for ever once the lifetime budget is spent. Only when there has
never been a release does a refusal become an error (:class:`BudgetExhausted`, HTTP 503).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import orjson

log = logging.getLogger("lvp.privacy")

STATUS_KEYS = ("idle", "watching", "paused", "watching_ad", "buffering", "ended")
#: What one viewer id (the unit of privacy) adds to each part of the released vector.
CONTRIBUTIONS: dict[str, int] = {"active": 1, "by_status": 1, "by_media": 1}
SENSITIVITY = sum(CONTRIBUTIONS.values())  # L1: 3
BUDGET_KEY = "dp#public-stats"
WINDOW = "window"  # a refusal: the window's budget is spent
LIFETIME = "lifetime"  # a refusal: the lifetime budget is spent


class BudgetExhausted(RuntimeError):
    """No release can be drawn and there is none to serve again."""

    def __init__(self, message: str, retry_in_s: float | None) -> None:
        super().__init__(message)
        self.retry_in_s = retry_in_s


class BudgetUnavailable(RuntimeError):
    """The budget store cannot be reached and there is no release to serve again."""

    retry_in_s: float | None = 5.0


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


# --- budget stores --------------------------------------------------------------------------
@dataclass
class BudgetState:
    window: int | None = None
    window_spent: float = 0.0
    lifetime_spent: float = 0.0
    last: dict[str, Any] | None = None  # the last release drawn by any holder


class BudgetStore(Protocol):
    def spend(self, epsilon: float, window: int, window_budget: float, lifetime_budget: float) -> str | None:
        """Spend ``epsilon`` in ``window`` if neither cap is passed: None when spent, else the
        cap that refused it (:data:`WINDOW` or :data:`LIFETIME`)."""
        ...

    def state(self) -> BudgetState: ...

    def publish(self, release: dict[str, Any]) -> None:
        """Keep ``release`` as the last one (unless a newer one is kept already)."""
        ...


def _dec(x: float) -> Decimal:
    return Decimal(repr(float(x)))


def _fits(spent: float, epsilon: float, cap: float) -> bool:
    return math.isinf(cap) or _dec(spent) + _dec(epsilon) <= _dec(cap)


class MemoryBudget:
    """A budget kept in this process only (tests, benchmarks)."""

    def __init__(self) -> None:
        self._state = BudgetState()
        self._lock = threading.Lock()

    def spend(self, epsilon: float, window: int, window_budget: float, lifetime_budget: float) -> str | None:
        with self._lock:
            s = self._state
            window_spent = s.window_spent if s.window == window else 0.0
            if not _fits(s.lifetime_spent, epsilon, lifetime_budget):
                return LIFETIME
            if not _fits(window_spent, epsilon, window_budget):
                return WINDOW
            s.window, s.window_spent = window, float(_dec(window_spent) + _dec(epsilon))
            s.lifetime_spent = float(_dec(s.lifetime_spent) + _dec(epsilon))
            return None

    def state(self) -> BudgetState:
        with self._lock:
            s = self._state
            return BudgetState(s.window, s.window_spent, s.lifetime_spent, s.last)

    def publish(self, release: dict[str, Any]) -> None:
        with self._lock:
            last = self._state.last
            if last is None or last["released_at"] < release["released_at"]:
                self._state.last = release


class DynamoBudget:
    """The budget in one item of ``LVP_TABLE_VIEWER_STATE`` (key ``pk`` = :data:`BUDGET_KEY`):
    ``lifetime_spent``, ``window``, ``window_spent``, ``last_release`` (JSON), ``released_at``.
    A spend is one conditional ``UpdateItem`` that checks both caps (numbers are decimal in
    DynamoDB: 0.1 spent ten times is exactly 1)."""

    def __init__(self, client_factory: Callable[[], Any], table: str, key: str = BUDGET_KEY) -> None:
        self._factory = client_factory
        self._client: Any = None
        self.table = table
        self.key = {"pk": {"S": key}}

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._factory()
        return self._client

    def _update(self, expression: str, condition: str, values: dict[str, Any]) -> bool:
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self.key,
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#w": "window"},
                ExpressionAttributeValues=values,
            )
            return True
        except self.client.exceptions.ConditionalCheckFailedException:
            return False

    def spend(self, epsilon: float, window: int, window_budget: float, lifetime_budget: float) -> str | None:
        eps = _dec(epsilon)
        if window_budget < epsilon:
            return WINDOW
        values: dict[str, Any] = {":e": {"N": str(eps)}, ":w": {"N": str(window)}}
        same, new = ["#w = :w"], ["(attribute_not_exists(#w) OR #w < :w)"]
        if not math.isinf(window_budget):
            values[":wmax"] = {"N": str(_dec(window_budget) - eps)}
            same.append("window_spent <= :wmax")
        if not math.isinf(lifetime_budget):
            values[":lmax"] = {"N": str(_dec(lifetime_budget) - eps)}
            same.append("lifetime_spent <= :lmax")
            new.append("(attribute_not_exists(lifetime_spent) OR lifetime_spent <= :lmax)")
        new_values = {k: v for k, v in values.items() if k != ":wmax"}
        for _ in range(2):  # a holder may open the new window between our two attempts
            if self._update("ADD lifetime_spent :e, window_spent :e", " AND ".join(same), values):
                return None
            if self._update(
                "SET #w = :w, window_spent = :e ADD lifetime_spent :e", " AND ".join(new), new_values
            ):
                return None
        state = self.state()
        return LIFETIME if not _fits(state.lifetime_spent, epsilon, lifetime_budget) else WINDOW

    def state(self) -> BudgetState:
        item = self.client.get_item(TableName=self.table, Key=self.key, ConsistentRead=True).get("Item") or {}

        def num(name: str) -> float:
            return float(item[name]["N"]) if name in item else 0.0

        last = orjson.loads(item["last_release"]["S"]) if "last_release" in item else None
        window = int(item["window"]["N"]) if "window" in item else None
        return BudgetState(window, num("window_spent"), num("lifetime_spent"), last)

    def publish(self, release: dict[str, Any]) -> None:
        with contextlib.suppress(self.client.exceptions.ConditionalCheckFailedException):
            self.client.update_item(  # unless another holder kept a newer release
                TableName=self.table,
                Key=self.key,
                UpdateExpression="SET last_release = :r, released_at = :t",
                ConditionExpression="attribute_not_exists(released_at) OR released_at < :t",
                ExpressionAttributeValues={
                    ":r": {"S": orjson.dumps(release).decode()},
                    ":t": {"N": repr(float(release["released_at"]))},
                },
            )


# --- releases -------------------------------------------------------------------------------
@dataclass
class PublicStatsReleaser:
    epsilon: float
    release_interval_s: float
    budget: float
    window_s: float
    media_labels: tuple[str, ...] = ()
    clock: Callable[[], float] = field(default=lambda: __import__("time").time())
    lifetime_budget: float = float("inf")
    store: BudgetStore = field(default_factory=MemoryBudget)
    _mechanism: Callable[[list[int]], list[int]] | None = None
    _last: dict[str, Any] | None = None
    _last_at: float = float("-inf")  # when this process last drew, adopted or re-served a release
    _info: dict[str, Any] = field(default_factory=dict)
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

    def window_of(self, now: float) -> int:
        return 0 if math.isinf(self.window_s) else int(now // self.window_s)

    def _renews_in(self, now: float) -> float | None:
        if math.isinf(self.window_s):
            return None
        return max(0.0, round((self.window_of(now) + 1) * self.window_s - now, 3))

    def release(self, counts: Callable[[], TrueCounts]) -> dict[str, Any]:
        """The current public release: the cached one while younger than the release interval,
        else one another holder drew within the interval, else a new one if both caps allow,
        else the last one again. Raises :class:`BudgetExhausted` / :class:`BudgetUnavailable`
        when there is nothing to serve."""
        with self._lock:
            now = self.clock()
            if self._last is not None and now - self._last_at < self.release_interval_s:
                return {**self._last, "budget": self._info}
            try:
                return self._refresh(now, counts)
            except (BudgetExhausted, BudgetUnavailable):
                raise
            except Exception as exc:  # the store is unreachable: never draw without spending
                log.warning("privacy budget store: %s", exc)
                if self._last is not None:
                    return {**self._last, "budget": {**self._info, "stale": True}}
                raise BudgetUnavailable("privacy budget store unavailable") from exc

    def _refresh(self, now: float, counts: Callable[[], TrueCounts]) -> dict[str, Any]:
        state = self.store.state()
        if state.last is not None and now - float(state.last["released_at"]) < self.release_interval_s:
            return self._serve(now, state.last, state, None)  # drawn by another holder
        refused = self.store.spend(self.epsilon, self.window_of(now), self.budget, self.lifetime_budget)
        if refused is not None:
            state = self.store.state()
            last = state.last or self._last
            if last is None:
                retry = self._renews_in(now) if refused == WINDOW else None
                raise BudgetExhausted(f"privacy budget exhausted ({refused}) before a first release", retry)
            return self._serve(now, last, state, refused)
        if self._mechanism is None:
            self._mechanism = _laplace_vector(self.scale)
        noisy = [max(0, v) for v in self._mechanism(self.vectorize(counts()))]
        n_status = len(STATUS_KEYS)
        release = {
            "released_at": now,
            "active": noisy[0],
            "by_status": dict(zip(STATUS_KEYS, noisy[1 : 1 + n_status], strict=True)),
            "by_media": dict(zip(self._keys(), noisy[1 + n_status :], strict=True)),
            "epsilon": self.epsilon,
            "noise_scale": self.scale,
            "mechanism": f"discrete Laplace (OpenDP), L1 sensitivity {SENSITIVITY} per viewer id",
        }
        self.store.publish(release)
        window = self.window_of(now)
        spent_before = state.window_spent if state.window == window else 0.0
        state = BudgetState(
            window,
            float(_dec(spent_before) + _dec(self.epsilon)),
            float(_dec(state.lifetime_spent) + _dec(self.epsilon)),
            release,
        )
        return self._serve(now, release, state, None)

    def _serve(
        self, now: float, release: dict[str, Any], state: BudgetState, refused: str | None
    ) -> dict[str, Any]:
        window_spent = state.window_spent if state.window == self.window_of(now) else 0.0
        self._info = {
            "window_s": self.window_s,
            "spent": round(window_spent, 6),
            "total": self.budget,
            "renews_in_s": self._renews_in(now),
            "lifetime_spent": round(state.lifetime_spent, 6),
            "lifetime_total": None if math.isinf(self.lifetime_budget) else self.lifetime_budget,
            "exhausted": refused is not None,
            "exhausted_by": refused,
        }
        self._last, self._last_at = release, now
        return {**release, "budget": self._info}


def releaser_from_settings(
    settings: Any, clock: Callable[[], float] | None = None, store: BudgetStore | None = None
) -> PublicStatsReleaser:
    """The releaser of ``lvp viewer``: its budget in DynamoDB (``LVP_TABLE_VIEWER_STATE``) unless
    ``store`` is given; the client is made on first use."""
    labels: Iterable[str] = (x.strip() for x in settings.dp_media_labels.split(","))
    kwargs: dict[str, Any] = {}
    if clock is not None:
        kwargs["clock"] = clock
    if store is None:
        from lvp.dynamo import dynamodb_client

        store = DynamoBudget(lambda: dynamodb_client(settings), settings.table_viewer_state)
    return PublicStatsReleaser(
        epsilon=settings.dp_epsilon_value,  # (checked by lvp.config.Settings)
        release_interval_s=settings.dp_release_interval_s,
        budget=settings.dp_budget,
        window_s=settings.dp_window_s,
        media_labels=tuple(x for x in labels if x),
        lifetime_budget=settings.dp_lifetime_budget,
        store=store,
        **kwargs,
    )
