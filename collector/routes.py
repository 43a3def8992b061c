"""HTTP routes of the collector (Snowplow stream collector compatible).

- ``POST /com.snowplowanalytics.snowplow/tp2``: a payload_data envelope -> ``ok`` (200) once
  Kafka acknowledged every event and bad row of the request; 400 when none of its events is
  good (all became bad rows) or the body is not an envelope; 413 over the size / event limits;
  429 over the per-client rate; 408 when the body does not arrive within LVP_REQUEST_TIMEOUT_S;
  503 + Retry-After when Kafka cannot acknowledge.
- ``GET /i``, ``/com.snowplowanalytics.snowplow/i``, ``/ice.png``: one event in the query string ->
  the 1x1 GIF (same status rules).
- ``OPTIONS`` on those paths: CORS preflight (allowed origins from ``LVP_CORS_ORIGINS``).
- ``GET /health``, ``/sink-health`` (503 while Kafka is unreachable), ``/metrics``, ``/robots.txt``.

No handler lets an exception escape (never a 500): an event that fails unexpectedly becomes a
``generic_error`` bad row; a request that fails unexpectedly as a whole answers 400.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from collector.identity import Identities, RequestIdentity, client_ip
from collector.metrics import Metrics
from collector.pipeline import Outcome, Pipeline, RequestInfo
from collector.protocol import PAYLOAD_DATA_PREFIX
from collector.ratelimit import RateLimiter
from collector.sink import KafkaSink, Message, SinkUnavailable
from lvp.config import Settings
from lvp.iglu import Registry

log = logging.getLogger(__name__)
#: The largest body size a bad row reports (int64: what JSON consumers and orjson handle).
_MAX_DECLARED_SIZE = 2**63 - 1

TP2_PATH: Final = "/com.snowplowanalytics.snowplow/tp2"
PIXEL_PATHS: Final = ("/i", "/com.snowplowanalytics.snowplow/i", "/ice.png")
GIF: Final = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
NO_CACHE: Final = "no-cache, no-store, must-revalidate"


class Collector:
    """The request handlers, bound to one collector's settings, sink, schemas and metrics."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        identities: Identities,
        sink: KafkaSink,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.identities = identities
        self.sink = sink
        self.metrics = metrics
        self.pipeline = Pipeline(registry, identities, settings.topic_good, settings.topic_bad)
        max_message = getattr(sink, "max_message_bytes", None)
        if isinstance(max_message, int):
            self.pipeline.max_message_bytes = max_message - 4096  # room for the key and overhead
        origins = settings.cors_origin_list
        self.any_origin = "*" in origins
        self.origins = frozenset(o.rstrip("/") for o in origins if o != "*")
        self.max_body = settings.max_body_bytes
        self.max_events = settings.max_events_per_request
        self.retry_after = str(settings.retry_after_s)
        self.body_timeout_s = settings.request_timeout_s
        self._last_503_log = -1e9
        #: called with every batch of messages Kafka acknowledged (dev mode's /micro/* store)
        self.on_published: Callable[[list[Message]], None] | None = None
        self.limiter = (
            RateLimiter(settings.rate_limit_per_ip, identities.key)
            if settings.rate_limit_per_ip > 0
            else None
        )

    def routes(self) -> list[Route]:
        return [
            Route(TP2_PATH, self.tp2, methods=["POST"]),
            Route(TP2_PATH, self.preflight, methods=["OPTIONS"]),
            *(Route(p, self.pixel, methods=["GET", "HEAD"]) for p in PIXEL_PATHS),
            *(Route(p, self.preflight, methods=["OPTIONS"]) for p in PIXEL_PATHS),
            Route("/health", self.health, methods=["GET", "HEAD"]),
            Route("/sink-health", self.sink_health, methods=["GET", "HEAD"]),
            Route("/metrics", self.metrics_endpoint, methods=["GET"]),
            Route("/robots.txt", self.robots, methods=["GET"]),
        ]

    # -- CORS --
    def _allowed_origin(self, origin: str | None) -> bool:
        if origin is None:
            return True
        return self.any_origin or origin.rstrip("/") in self.origins

    @staticmethod
    def _cors(headers: dict[str, str], origin: str | None) -> None:
        if origin:
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Allow-Credentials"] = "true"
            headers["Vary"] = "Origin"

    async def preflight(self, request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin is None or not self._allowed_origin(origin):
            self.metrics.request("options", 403)
            return Response("origin not allowed", status_code=403, media_type="text/plain")
        headers = {
            "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type, SP-Anonymous",
            "Access-Control-Max-Age": "3600",
        }
        self._cors(headers, origin)
        self.metrics.request("options", 200)
        return Response(status_code=200, headers=headers)

    # -- the event routes --
    def _identity(self, request: Request, nuid_param: str | None) -> RequestIdentity:
        headers = request.headers
        cookies = request.cookies if "cookie" in headers else {}
        client = request.client
        return self.identities.for_request(headers, cookies, client.host if client else None, nuid_param)

    def _respond(
        self,
        route: str,
        status: int,
        body: bytes,
        media_type: str,
        origin: str | None,
        ident: RequestIdentity | None,
        *,
        retry: bool = False,
        cache: bool = False,
    ) -> Response:
        headers: dict[str, str] = {}
        self._cors(headers, origin)
        if retry:
            headers["Retry-After"] = self.retry_after
        if cache:
            headers["Cache-Control"] = NO_CACHE
        response = Response(body, status_code=status, headers=headers, media_type=media_type)
        if ident is not None and ident.set_cookie and status < 500:
            response.headers.append("Set-Cookie", self.identities.cookie_header(ident.nuid))
        self.metrics.request(route, status)
        return response

    def _limited(self, request: Request, route: str, origin: str | None) -> Response | None:
        if not self._allowed_origin(origin):
            return self._respond(route, 403, b"origin not allowed", "text/plain", None, None)
        if self.limiter is not None:
            client = request.client
            peer = client.host if client else None
            wait = self.limiter.check(client_ip(request.headers, peer, self.identities.trusted_proxies))
            if wait > 0:
                response = self._respond(route, 429, b"too many requests", "text/plain", origin, None)
                response.headers["Retry-After"] = str(self.limiter.retry_after(wait))
                return response
        return None

    async def _publish(self, messages: list[Message]) -> str | None:
        """None when Kafka acknowledged everything, else why not."""
        try:
            await self.sink.publish(messages)
        except SinkUnavailable as exc:
            return str(exc)
        if self.on_published is not None:
            self.on_published(messages)
        return None

    def _count(self, outcome: Outcome) -> None:
        self.metrics.good(outcome.good)
        for kind, n in outcome.bad.items():
            self.metrics.bad(kind, n)

    async def tp2(self, request: Request) -> Response:
        origin = request.headers.get("origin")
        ident: RequestIdentity | None = None
        try:
            refused = self._limited(request, "tp2", origin)
            if refused is not None:
                return refused
            if not self.sink.healthy:
                return self._unavailable("tp2", "Kafka is unreachable", origin)
            query = request.scope.get("query_string", b"").decode("latin-1")
            ident = self._identity(request, request.query_params.get("nuid") if query else None)
            req = RequestInfo(ident, int(time.time() * 1000), request.headers, "tp2", query)
            try:
                async with asyncio.timeout(self.body_timeout_s):
                    body, size, too_big = await self._read_body(request)
            except TimeoutError:  # a slow (slowloris) client: nothing was received, nothing kept
                response = self._respond(
                    "tp2", 408, b'{"error":"request timeout"}', "application/json", origin, None
                )
                response.headers["Connection"] = "close"
                return response
            if too_big:
                msg = {
                    "maximumAllowedSizeBytes": self.max_body,
                    "actualSizeBytes": size,
                    "expectation": f"a body of at most {self.max_body} bytes (LVP_MAX_BODY_BYTES)",
                }
                response = await self._request_failure(
                    "tp2", 413, "size_violation", [msg], body, req, origin, ident, body_size=size
                )
                response.headers["Connection"] = "close"  # do not read the rest of the body
                return response
            items, schema, problem = self._envelope(body)
            if problem is not None:
                return await self._request_failure(
                    "tp2", 400, "collector_payload_format_violation", [problem], body, req, origin, ident
                )
            if len(items) > self.max_events:
                msg = {
                    "maximumAllowedEvents": self.max_events,
                    "actualEvents": len(items),
                    "expectation": f"at most {self.max_events} events (LVP_MAX_EVENTS_PER_REQUEST)",
                }
                return await self._request_failure(
                    "tp2", 413, "size_violation", [msg], body, req, origin, ident
                )
            outcome = self.pipeline.process(items, req, self.registry.validator(schema))
            return await self._finish("tp2", outcome, origin, ident, b"ok", "text/plain")
        except ClientDisconnect:  # the client went away before sending its body: nobody to answer
            self.metrics.request("tp2", 499)
            return Response(status_code=400)
        except Exception as exc:
            return await self._unexpected("tp2", exc, origin, ident)

    async def pixel(self, request: Request) -> Response:
        origin = request.headers.get("origin")
        ident: RequestIdentity | None = None
        try:
            refused = self._limited(request, "i", origin)
            if refused is not None:
                return refused
            if not self.sink.healthy:
                return self._unavailable("i", "Kafka is unreachable", origin)
            query = request.scope.get("query_string", b"").decode("latin-1")
            params: dict[str, str] = {}
            for k, v in request.query_params.multi_items():
                if v and k not in params:
                    params[k] = v
            ident = self._identity(request, params.get("nuid"))
            req = RequestInfo(ident, int(time.time() * 1000), request.headers, "i", query)
            if len(query) > self.max_body:
                msg = {
                    "maximumAllowedSizeBytes": self.max_body,
                    "actualSizeBytes": len(query),
                    "expectation": f"a query string of at most {self.max_body} bytes",
                }
                return await self._request_failure("i", 413, "size_violation", [msg], b"", req, origin, ident)
            outcome = self.pipeline.process([params], req)
            return await self._finish("i", outcome, origin, ident, GIF, "image/gif", cache=True)
        except Exception as exc:
            return await self._unexpected("i", exc, origin, ident)

    async def _read_body(self, request: Request) -> tuple[bytes, int, bool]:
        """(body, size, too_big). Over LVP_MAX_BODY_BYTES only the first bytes are kept (for the
        bad row) and ``size`` is the declared Content-Length or what was read."""
        length = request.headers.get("content-length")
        declared = None
        if length is not None and length.isascii() and length.isdigit():
            # what a bad row (JSON, int64) can report: a longer claim is reported as the largest
            declared = min(int(length), _MAX_DECLARED_SIZE) if len(length) <= 19 else _MAX_DECLARED_SIZE
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            chunks.append(chunk)
            if size > self.max_body:
                return b"".join(chunks)[: self.max_body], max(size, declared or 0), True
        return b"".join(chunks), size, False

    def _envelope(self, body: bytes) -> tuple[list[Any], str, dict[str, Any] | None]:
        """(events, payload_data schema URI, problem or None)."""
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return [], "", {"error": "NotJSON", "message": f"the body is not JSON: {exc}"}
        if not isinstance(doc, dict) or not isinstance(doc.get("schema"), str) or "data" not in doc:
            return [], "", {"error": "NotIglu", "message": "expected a payload_data envelope {schema, data}"}
        schema = doc["schema"]
        if not schema.startswith(PAYLOAD_DATA_PREFIX) or schema not in self.registry:
            return (
                [],
                "",
                {
                    "error": "CriterionMismatch",
                    "message": f"schema {schema[:200]!r} is not a known payload_data version",
                },
            )
        data = doc["data"]
        if not isinstance(data, list) or not data:
            return (
                [],
                "",
                {"error": "ValidationError", "message": "payload_data `data` must be a non-empty array"},
            )
        return data, schema, None

    async def _request_failure(
        self,
        route: str,
        status: int,
        kind: str,
        messages: list[Any],
        body: bytes,
        req: RequestInfo,
        origin: str | None,
        ident: RequestIdentity,
        *,
        body_size: int | None = None,
    ) -> Response:
        row = self.pipeline.request_bad_row(kind, messages, body, req, body_size=body_size)
        problem = await self._publish([row])
        if problem is not None:
            return self._unavailable(route, problem, origin)
        self.metrics.bad(kind)
        text = orjson.dumps({"error": kind, "messages": messages})
        return self._respond(route, status, text, "application/json", origin, ident)

    async def _finish(
        self,
        route: str,
        outcome: Outcome,
        origin: str | None,
        ident: RequestIdentity,
        ok_body: bytes,
        media_type: str,
        *,
        cache: bool = False,
    ) -> Response:
        problem = await self._publish(outcome.messages)
        if problem is not None:
            return self._unavailable(route, problem, origin)
        self._count(outcome)
        if outcome.good:
            return self._respond(route, 200, ok_body, media_type, origin, ident, cache=cache)
        text = orjson.dumps({"error": "no good events", "bad": outcome.bad})
        return self._respond(route, 400, text, "application/json", origin, ident)

    def _unavailable(self, route: str, problem: str, origin: str | None) -> Response:
        now = time.monotonic()
        if now - self._last_503_log >= 10.0:  # at most one line per 10 s during an outage
            self._last_503_log = now
            log.warning("answering 503 (Kafka): %s", problem)
        text = orjson.dumps({"error": "unavailable", "message": problem})
        return self._respond(route, 503, text, "application/json", origin, None, retry=True)

    async def _unexpected(
        self, route: str, exc: Exception, origin: str | None, ident: RequestIdentity | None
    ) -> Response:
        # only the exception type: its message could quote request data
        log.error("unexpected %s while handling %s", type(exc).__name__, route)
        return self._respond(
            route, 400, b'{"error":"could not process the request"}', "application/json", origin, None
        )

    # -- operational routes --
    async def health(self, request: Request) -> Response:
        self.metrics.request("health", 200)
        return Response("ok", media_type="text/plain")

    async def sink_health(self, request: Request) -> Response:
        if self.sink.healthy:
            self.metrics.request("sink-health", 200)
            return Response("ok", media_type="text/plain")
        self.metrics.request("sink-health", 503)
        return Response(
            "Kafka is unreachable",
            status_code=503,
            media_type="text/plain",
            headers={"Retry-After": self.retry_after},
        )

    async def metrics_endpoint(self, request: Request) -> Response:
        body, content_type = self.metrics.render()
        return Response(body, headers={"Content-Type": content_type})

    async def robots(self, request: Request) -> Response:
        return Response("User-agent: *\nDisallow: /\n", media_type="text/plain")
