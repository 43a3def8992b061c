"""One request's events -> Kafka messages: enriched lines for the good topic, bad rows for the bad
topic. Pure and synchronous (no I/O); the routes publish the result and wait for the acks."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from collector.badrows import BadRows
from collector.enrich import Enricher, tstamp
from collector.identity import Identities, RequestIdentity
from collector.protocol import Decoder, Rejected
from collector.sink import Message
from lvp.iglu import Registry, SchemaValidator

log = logging.getLogger(__name__)

#: librdkafka's default ``message.max.bytes``, less room for the key and record overhead
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000 - 4096


@dataclass(slots=True)
class RequestInfo:
    """What the pipeline needs to know about the HTTP request."""

    ident: RequestIdentity
    collector_ms: int
    headers: Mapping[str, str]
    version: str  # "tp2" (POST) or "i" (GET)
    querystring: str = ""
    collector_tstamp: str = ""  # tstamp(collector_ms), once per request

    @property
    def useragent(self) -> str:
        return self.headers.get("user-agent", "")


@dataclass(slots=True)
class Outcome:
    messages: list[Message] = field(default_factory=list)
    good: int = 0
    bad: dict[str, int] = field(default_factory=dict)

    def add_bad(self, topic: str, kind: str, row: bytes) -> None:
        self.messages.append((topic, None, row))
        self.bad[kind] = self.bad.get(kind, 0) + 1


class Pipeline:
    def __init__(self, registry: Registry, identities: Identities, topic_good: str, topic_bad: str) -> None:
        self.registry = registry
        self.identities = identities
        self.decoder = Decoder(registry)
        self.enricher = Enricher(identities)
        self.badrows = BadRows(identities)
        self.topic_good = topic_good
        self.topic_bad = topic_bad
        #: larger messages become size_violation bad rows (Kafka would refuse them: a 503 for ever)
        self.max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES

    def process(
        self, items: Sequence[Any], req: RequestInfo, envelope: SchemaValidator | None = None
    ) -> Outcome:
        """Every event becomes either an enriched line or a bad row. ``envelope`` is the
        payload_data validator of a POST: events that pass the protocol checks but not the
        envelope schema (unknown parameters) become ``schema_violations``."""
        out = Outcome()
        check_items = envelope is not None and not envelope.is_valid(list(items))
        # once per request, shared by its events
        if not req.collector_tstamp:
            req.collector_tstamp = tstamp(req.collector_ms)
        useragent = req.useragent
        for item in items:
            try:
                self._one(item, req, out, envelope if check_items else None, useragent)
            except Exception as exc:  # a bug must not lose the rest of the request or crash it
                log.error("event processing failed: %s", type(exc).__name__)
                messages = [{"error": type(exc).__name__}]
                try:
                    self._bad(out, "generic_error", messages, item, req)
                except Exception:  # not even its payload can be written: a bad row without it
                    self._bad(out, "generic_error", messages, {}, req)
        return out

    def _one(
        self, item: Any, req: RequestInfo, out: Outcome, envelope: SchemaValidator | None, useragent: str
    ) -> None:
        if not isinstance(item, dict):
            msg = {"field": "event", "value": None, "expectation": "a JSON object of tracker parameters"}
            self._bad(out, "tracker_protocol_violations", [msg], {}, req)
            return
        try:
            ev = self.decoder.decode(item)
            if envelope is not None:
                failures = envelope.errors([item])
                if failures:
                    reports = [f.as_dict() for f in failures]
                    error = {"error": "ValidationError", "dataReports": reports}
                    raise Rejected("schema_violations", [{"schemaKey": envelope.key.uri, "error": error}])
        except Rejected as rej:
            self._bad(out, rej.kind, rej.messages, item, req)
            return
        key, line = self.enricher.enrich(ev, req.ident, req.collector_ms, useragent, req.collector_tstamp)
        if len(line) > self.max_message_bytes:
            self._too_big(out, line, req, "enriched event")
            return
        out.messages.append((self.topic_good, key.encode(), line))
        out.good += 1

    def _bad(self, out: Outcome, kind: str, messages: list[Any], item: Any, req: RequestInfo) -> None:
        params = item if isinstance(item, dict) else {}
        row = self.badrows.event_row(
            kind, messages, params, req.ident, req.collector_ms, req.headers, req.version
        )
        if len(row) > self.max_message_bytes:
            self._too_big(out, row, req, "bad row")
            return
        out.add_bad(self.topic_bad, kind, row)

    def _too_big(self, out: Outcome, value: bytes, req: RequestInfo, what: str) -> None:
        """A size_violation bad row (the message kept truncated) in place of ``value``."""
        limit = self.max_message_bytes
        msg = {
            "maximumAllowedSizeBytes": limit,
            "actualSizeBytes": len(value),
            "expectation": f"an {what} of at most {limit} bytes (the Kafka message size limit)",
        }
        row = self.badrows.request_row(
            "size_violation",
            [msg],
            value,
            req.querystring,
            req.ident,
            req.collector_ms,
            req.headers,
            req.version,
            body_size=len(value),
        )
        out.add_bad(self.topic_bad, "size_violation", row)

    def request_bad_row(
        self, kind: str, messages: list[Any], body: bytes, req: RequestInfo, *, body_size: int | None = None
    ) -> Message:
        row = self.badrows.request_row(
            kind,
            messages,
            body,
            req.querystring,
            req.ident,
            req.collector_ms,
            req.headers,
            req.version,
            body_size=body_size,
        )
        return (self.topic_bad, None, row)
