"""Prometheus metrics of the collector (names fixed in docs/contracts.md). Each app has its own
registry, so several collectors can live in one process (tests, benchmarks). Labels never carry
identifiers or IPs: routes are fixed names, reasons are bad row types."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

DELIVERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "lvp_collector_requests",
            "HTTP requests by route and status code.",
            ["route", "code"],
            registry=self.registry,
        )
        self.events = Counter(
            "lvp_collector_events",
            "Events by outcome (good|bad) and reason (ok or the bad row type).",
            ["outcome", "reason"],
            registry=self.registry,
        )
        self.delivery = Histogram(
            "lvp_collector_kafka_delivery_seconds",
            "Time from producing a request's messages to Kafka's acknowledgement of the last of them.",
            buckets=DELIVERY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "lvp_collector_producer_queue_depth",
            "Messages waiting in the producer queue (not yet acknowledged).",
            registry=self.registry,
        )
        self._requests: dict[tuple[str, int], Counter] = {}
        self._good = self.events.labels("good", "ok")
        self._bad: dict[str, Counter] = {}

    def request(self, route: str, code: int) -> None:
        child = self._requests.get((route, code))
        if child is None:
            child = self._requests[(route, code)] = self.requests.labels(route, str(code))
        child.inc()

    def good(self, n: int) -> None:
        if n:
            self._good.inc(n)

    def bad(self, reason: str, n: int = 1) -> None:
        child = self._bad.get(reason)
        if child is None:
            child = self._bad[reason] = self.events.labels("bad", reason)
        child.inc(n)

    def bind_queue_depth(self, fn: Callable[[], float]) -> None:
        self.queue_depth.set_function(fn)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
