"""Prometheus metrics of `lvp viewer` (names as in docs/contracts.md), in a registry per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

LATENCY_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0, 1.25, 1.5, 2.0,
    3.0, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
BUILD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class ViewerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        self.sse_clients = Gauge("lvp_viewer_sse_clients", "Connected SSE clients.", registry=r)
        self.push_latency = Histogram(
            "lvp_viewer_push_latency_seconds",
            "Event collector_tstamp (profile last_seen) to SSE push.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.snapshot_build = Histogram(
            "lvp_viewer_snapshot_build_seconds",
            "Time to build and encode a snapshot.",
            buckets=BUILD_BUCKETS,
            registry=r,
        )
        self.active_viewers = Gauge(
            "lvp_viewer_active_viewers", "Active viewers by status.", ["status"], registry=r
        )
        self.sse_dropped = Counter(
            "lvp_viewer_sse_dropped_total", "SSE clients dropped because they fell behind.", registry=r
        )
        self.sse_rejected = Counter(
            "lvp_viewer_sse_rejected_total", "SSE connections refused by the per-token limit.", registry=r
        )
        self.changes = Counter(
            "lvp_viewer_changes_total",
            "Change messages read from the changes topic.",
            ["outcome"],
            registry=r,
        )
        self.pushes = Counter("lvp_viewer_pushes_total", "Deltas pushed.", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
