"""profiles/metrics.py: the bulk event-age histogram gives what one ``observe`` per value gives."""

from __future__ import annotations

import math
import random

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from profiles.metrics import _AGE_BUCKETS, BulkHistogram, ProfilesMetrics


def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            if not s.name.endswith("_created"):
                out[(s.name, s.labels.get("le", ""))] = s.value
    return out


def test_observe_many_equals_one_observe_per_value() -> None:
    rng = random.Random(3)
    values = [0.0, -1.0, 0.05, 0.1, 0.25, 1, 2, 3600, 3600.5, 1e9]  # on and off the bounds
    values += [rng.expovariate(1 / 5) for _ in range(500)]
    ref_reg, bulk_reg = CollectorRegistry(), CollectorRegistry()
    ref = Histogram("age", "age", buckets=_AGE_BUCKETS, registry=ref_reg)
    bulk = BulkHistogram("age", "age", buckets=_AGE_BUCKETS, registry=bulk_reg)
    for chunk in (values[:7], values[7:300], [], values[300:]):
        for v in chunk:
            ref.observe(v)
        bulk.observe_many(chunk)
    want, got = samples(ref_reg), samples(bulk_reg)
    key = ("age_sum", "")
    assert math.isclose(got.pop(key), want.pop(key), rel_tol=1e-12)  # summed in another order
    assert got == want
    assert got[("age_count", "")] == len(values)

    odd = [*values, math.inf, math.nan]
    ref_reg, bulk_reg = CollectorRegistry(), CollectorRegistry()
    ref = Histogram("age", "age", buckets=_AGE_BUCKETS, registry=ref_reg)
    bulk = BulkHistogram("age", "age", buckets=_AGE_BUCKETS, registry=bulk_reg)
    for v in odd:
        ref.observe(v)
    bulk.observe_many(odd)  # +Inf: the last bucket; NaN: in no bucket, and the sum becomes NaN
    want, got = samples(ref_reg), samples(bulk_reg)
    assert {k: v for k, v in got.items() if k[0] != "age_sum"} == {
        k: v for k, v in want.items() if k[0] != "age_sum"
    }
    assert math.isnan(got[("age_sum", "")]) and math.isnan(want[("age_sum", "")])
    assert got[("age_count", "")] == len(values) + 1


def test_ages_clamp_negative_ages_to_zero() -> None:
    m = ProfilesMetrics()
    m.ages([-3.0, 0.07, 12.0])
    got = samples(m.registry)
    assert got[("lvp_profiles_event_age_seconds_bucket", "0.05")] == 1  # the negative age
    assert got[("lvp_profiles_event_age_seconds_bucket", "0.1")] == 2
    assert got[("lvp_profiles_event_age_seconds_bucket", "30.0")] == 3
    assert got[("lvp_profiles_event_age_seconds_count", "")] == 3
    assert math.isclose(got[("lvp_profiles_event_age_seconds_sum", "")], 12.07)
