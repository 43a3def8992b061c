"""Prometheus metrics of `lvp profiles` (names: docs/contracts.md).

Each consumer owns a :class:`ProfilesMetrics` with its own registry, so several consumers can
live in one process (tests) and ``--metrics-port`` serves exactly one consumer's numbers.

Consumer lag is computed from the high watermark the consumer *saw while fetching*
(``get_watermark_offsets(cached=True)``), never from a ListOffsets request: Tansu answers
ListOffsets with a high watermark short of the end (README: "Where Tansu is not Apache Kafka").
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

_AGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, float("inf"))
_FLUSH_SIZE_BUCKETS = (1, 5, 25, 100, 250, 1000, 2500, 5000, 10000, 25000, float("inf"))
_FLUSH_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, float("inf"))


class BulkHistogram(Histogram):
    """A :class:`~prometheus_client.Histogram` that also takes many observations at once.

    :meth:`observe_many` gives exactly the buckets, count and sum of calling ``observe`` once per
    value (up to float rounding of the sum), but finds each value's bucket with a bisection and
    updates each bucket and the sum once per call — instead of a locked increment and a linear
    bucket walk per value. It uses the same internals ``observe`` uses (``_upper_bounds``,
    ``_buckets``, ``_sum``; tests/test_profiles_metrics.py pins the equivalence), and hands the
    values it cannot bisect (NaN) to ``observe``."""

    def observe_many(self, amounts: Iterable[float]) -> None:
        self._raise_if_not_observable()
        bounds = self._upper_bounds
        counts = [0] * len(bounds)
        total = 0.0
        for a in amounts:
            if a != a:  # NaN: counted in no bucket by observe; let it do exactly that
                self.observe(a)
                continue
            counts[bisect_left(bounds, a)] += 1  # the first bound >= a (the last one is +Inf)
            total += a
        if not any(counts):
            return
        self._sum.inc(total)
        for bucket, n in zip(self._buckets, counts, strict=True):
            if n:
                bucket.inc(n)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class ProfilesMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events_applied = Counter(
            "lvp_profiles_events_applied_total",
            "Events applied to profiles, by event name.",
            ["event"],
            registry=r,
        )
        self.bad_messages = Counter(
            "lvp_profiles_bad_messages_total",
            "Messages sent to the bad-rows topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "lvp_profiles_consumer_lag",
            "Messages behind the high watermark seen while fetching, per partition.",
            ["partition"],
            registry=r,
        )
        self.flush_size = Histogram(
            "lvp_profiles_flush_size",
            "DynamoDB write requests per flush.",
            buckets=_FLUSH_SIZE_BUCKETS,
            registry=r,
        )
        self.flush_seconds = Histogram(
            "lvp_profiles_flush_seconds",
            "Duration of a DynamoDB flush.",
            buckets=_FLUSH_SECONDS_BUCKETS,
            registry=r,
        )
        self.dynamodb_retries = Counter(
            "lvp_profiles_dynamodb_retries_total",
            "DynamoDB calls retried (errors, unprocessed items).",
            registry=r,
        )
        self.dynamodb_throttles = Counter(
            "lvp_profiles_dynamodb_throttles_total", "DynamoDB calls refused by throttling.", registry=r
        )
        self.tracked_viewers = Gauge(
            "lvp_profiles_tracked_viewers", "Viewers whose state is held in memory.", registry=r
        )
        self.event_age = BulkHistogram(
            "lvp_profiles_event_age_seconds",
            "Collector timestamp to applied, per event.",
            buckets=_AGE_BUCKETS,
            registry=r,
        )
        self.writes = Counter(
            "lvp_profiles_writes_total",
            "Profiles written to DynamoDB, by reason: change (a new viewer or a status change), cadence "
            "(LVP_PROFILE_WRITE_INTERVAL_S), quiet (LVP_ACTIVE_TIMEOUT_S without events), final "
            "(revocation, shutdown, end of input).",
            ["reason"],
            registry=r,
        )
        self.published = Counter(
            "lvp_profiles_published_total",
            "Messages published to the changes topic, by kind (profile, touches).",
            ["kind"],
            registry=r,
        )
        self.touched = Counter(
            "lvp_profiles_touches_total",
            "Viewers published in touches messages (changes of position/last_seen/play time only).",
            registry=r,
        )
        self.erasure_reader_errors = Counter(
            "lvp_profiles_erasure_reader_errors_total",
            "Errors of the reader of erasure tombstones on the changes topic.",
            registry=r,
        )
        self.unreadable_states = Counter(
            "lvp_profiles_unreadable_states_total",
            "Stored viewer states this version cannot read (their partition is stopped).",
            registry=r,
        )
        self.stopped_partitions = Gauge(
            "lvp_profiles_stopped_partitions",
            "Partitions stopped because a viewer's stored state cannot be read.",
            registry=r,
        )
        self._applied_children: dict[str, Any] = {}
        self._server: Any = None

    # --- hot path helpers (called once per poll batch, not per event) ----------------------------
    def applied(self, tally: Tally[str]) -> None:
        children = self._applied_children
        for name, n in tally.items():
            child = children.get(name)
            if child is None:
                child = children[name] = self.events_applied.labels(name)
            child.inc(n)

    def bad(self, reason: str) -> None:
        self.bad_messages.labels(reason).inc()

    def ages(self, ages: list[float]) -> None:
        """One observation per event age (negative ages — clock skew — count as 0)."""
        self.event_age.observe_many([a if a > 0 else 0.0 for a in ages])

    # --- StoreMetrics -----------------------------------------------------------------------------
    def dynamodb_retry(self) -> None:
        self.dynamodb_retries.inc()

    def dynamodb_throttle(self) -> None:
        self.dynamodb_throttles.inc()

    # --- serving -----------------------------------------------------------------------------------
    def serve(self, port: int, host: str = "0.0.0.0", health: Callable[[], str | None] | None = None) -> int:
        """Serve ``/metrics`` (Prometheus) and ``/health`` on ``port`` (0 = off). ``/health``
        answers 503 with the reason while ``health()`` returns one (a stalled poll loop), else
        200. Returns the bound port or 0."""
        if port <= 0:
            return 0
        metrics_app = make_wsgi_app(self.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == "/health":
                problem = health() if health is not None else None
                status = "503 Service Unavailable" if problem else "200 OK"
                body = (problem or "ok").encode() + b"\n"
                start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
                return [body]
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]

        server = make_server(host, port, app, _ThreadingServer, handler_class=_QuietHandler)
        threading.Thread(target=server.serve_forever, name="lvp-metrics", daemon=True).start()
        self._server = server
        return int(server.server_address[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
