"""Bad row payloads with no raw identifier in them.

A parsed event's payload is its parameters with ``uid``/``duid``/``nuid``/``tnuid``/``fp``
pseudonymized, ``ip`` anonymized, ``_sp`` removed from URLs and ``client_session.userId``
pseudonymized inside ``co``/``cx``. A body that cannot be parsed is kept (truncated) with the
identifier parameters redacted by pattern. Finally every raw identifier known for the request is
replaced wherever it still appears in the bad row (failure messages included).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson

from collector import COLLECTOR_VERSION
from collector.enrich import strip_sp, tstamp
from collector.identity import IDENTIFIER_PARAMS, IP_PARAM, Identities, RequestIdentity
from collector.protocol import b64url_decode, b64url_encode
from lvp.badrows import bad_row
from lvp.pseudonym import anonymize_ip

REDACTED: Final = "<redacted>"
#: Values of a failure message written by the collector itself (never request data).
_OWN_MESSAGE_KEYS: Final = frozenset(("field", "expectation"))
#: Longest unparseable body (characters) kept in a bad row.
MAX_KEPT_BODY: Final = 64_000

_ID_NAMES = "|".join((*IDENTIFIER_PARAMS, IP_PARAM, "userId", "_sp"))
_JSON_ID_RE = re.compile(r'(\\*")(' + _ID_NAMES + r')\1(\s*:\s*)\1(?:[^"\\]|\\[^"])*')
_QUERY_ID_RE = re.compile(r"(^|[?&;\s])(" + _ID_NAMES + r")=[^&#;\s\"\\]*")


def redact_text(text: str) -> str:
    """Identifier parameters redacted from text that could not be parsed (JSON or query string)."""
    text = _JSON_ID_RE.sub(
        lambda m: f"{m.group(1)}{m.group(2)}{m.group(1)}{m.group(3)}{m.group(1)}{REDACTED}", text
    )
    return _QUERY_ID_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}={REDACTED}", text)


def _shallow(value: Any, depth: int = 0) -> Any:
    """``value`` with whatever lies deeper than 100 levels replaced by a marker string."""
    if depth >= 100:
        return "<nested too deep>"
    if isinstance(value, dict):
        return {str(k): _shallow(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_shallow(v, depth + 1) for v in value]
    return value


class BadRows:
    """Builds bad rows (already encoded) for one collector."""

    def __init__(self, identities: Identities) -> None:
        self.identities = identities

    # -- payload pieces --
    def scrub_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        p = self.identities.pseudonym
        out: dict[str, Any] = {}
        for name, value in params.items():
            if not isinstance(value, str):
                out[name] = value
            elif name in IDENTIFIER_PARAMS:
                out[name] = p(value)
            elif name == IP_PARAM:
                out[name] = anonymize_ip(value)
            elif name in ("url", "refr"):
                out[name] = strip_sp(value)[0]
            elif name in ("co", "ue_pr"):
                out[name] = self._scrub_json(value, encoded=False)
            elif name in ("cx", "ue_px"):
                out[name] = self._scrub_json(value, encoded=True)
            else:
                out[name] = value
        return out

    def _scrub_json(self, value: str, *, encoded: bool) -> str:
        try:
            doc = orjson.loads(b64url_decode(value) if encoded else value)
        except (ValueError, orjson.JSONDecodeError):
            return redact_text(value)
        data = doc.get("data") if isinstance(doc, dict) else None
        if isinstance(data, list):
            self.identities.pseudonymize_entities([e for e in data if isinstance(e, dict)])
        try:
            text = orjson.dumps(doc)
        except TypeError:  # nested deeper than orjson writes (it reads deeper than it writes)
            return redact_text(value)
        return b64url_encode(text) if encoded else text.decode()

    @staticmethod
    def _raw_event(
        version: str,
        params: Mapping[str, Any] | None,
        ident: RequestIdentity,
        collector_ms: int,
        headers: Mapping[str, str],
        *,
        referer: str = "",
    ) -> dict[str, Any]:
        return {
            "vendor": "com.snowplowanalytics.snowplow",
            "version": version,
            "parameters": [{"name": k, "value": v} for k, v in (params or {}).items()],
            "contentType": headers.get("content-type"),
            "loaderName": COLLECTOR_VERSION,
            "encoding": "UTF-8",
            "hostname": headers.get("host"),
            "timestamp": tstamp(collector_ms).replace(" ", "T") + "Z",
            "ipAddress": ident.ip_anonymized or None,
            "useragent": headers.get("user-agent"),
            "refererUri": strip_sp(referer)[0] if referer else None,
            "headers": [],
            "userId": ident.nuid_pseudonym,
        }

    def _encode(self, row: dict[str, Any], pairs: Iterable[tuple[str, str]]) -> bytes:
        try:
            text = orjson.dumps(row).decode()
        except TypeError:  # a value nested deeper than orjson writes: keep its shallow part
            row = _shallow(row)
            text = orjson.dumps(row).decode()
        pairs = list(pairs)
        if pairs and self.identities.appears(text, pairs):
            # inside the strings only: a raw value may span JSON syntax (e.g. `{"schema":`)
            text = orjson.dumps(self._scrubbed(row, pairs)).decode()
        return text.encode()

    def _scrubbed(self, row: dict[str, Any], pairs: list[tuple[str, str]]) -> dict[str, Any]:
        """``row`` with raw identifiers replaced in what came from the request — the payload and
        the failure messages — but not in what the collector wrote itself (the bad row schema,
        the processor, the failure timestamp): a raw value that happens to be part of those
        (an ``ip`` of ``tracker``) must not turn them into something else."""
        scrub = self.identities.scrub_structure
        data = row.get("data")
        if not isinstance(data, dict):
            return dict(scrub(row, pairs))
        out: dict[str, Any] = {}
        for k, v in data.items():
            if k == "processor":
                out[k] = v
            elif k == "failure" and isinstance(v, dict):
                out[k] = {
                    fk: fv if fk == "timestamp" else self._scrub_messages(fv, pairs) for fk, fv in v.items()
                }
            else:
                out[k] = scrub(v, pairs)
        return {**row, "data": out}

    def _scrub_messages(self, value: Any, pairs: list[tuple[str, str]]) -> Any:
        """Failure messages: their keys are the collector's own, and so are a protocol
        violation's ``field`` and ``expectation``; the rest (the ``value``, a schema violation's
        error reports) may hold what the request sent."""
        scrub = self.identities.scrub_structure
        if isinstance(value, list):
            return [
                {mk: mv if mk in _OWN_MESSAGE_KEYS else scrub(mv, pairs) for mk, mv in m.items()}
                if isinstance(m, dict)
                else scrub(m, pairs)
                for m in value
            ]
        return scrub(value, pairs)

    # -- the bad rows --
    def event_row(
        self,
        kind: str,
        messages: list[Any],
        params: Mapping[str, Any],
        ident: RequestIdentity,
        collector_ms: int,
        headers: Mapping[str, str],
        version: str,
    ) -> bytes:
        """A bad row for one event (``tracker_protocol_violations``, ``schema_violations``,
        ``generic_error``)."""
        raw = self._raw_event(
            version,
            self.scrub_params(params),
            ident,
            collector_ms,
            headers,
            referer=headers.get("referer", ""),
        )
        payload = {"raw": raw}
        row = bad_row(kind, messages, payload, processor=COLLECTOR_VERSION, now_ms=collector_ms)
        return self._encode(row, self.identities.scrub_pairs(params, ident))

    def request_row(
        self,
        kind: str,
        messages: list[Any],
        body: bytes,
        querystring: str,
        ident: RequestIdentity,
        collector_ms: int,
        headers: Mapping[str, str],
        version: str,
        *,
        body_size: int | None = None,
    ) -> bytes:
        """A bad row for a whole request that could not be parsed (``collector_payload_format_
        violation``, ``size_violation``): body and query string kept redacted and truncated."""
        text = body[: MAX_KEPT_BODY * 4].decode("utf-8", "replace")
        truncated = (
            len(text) > MAX_KEPT_BODY
            or (body_size is not None and body_size > len(body))
            or len(querystring) > MAX_KEPT_BODY
        )
        payload = {
            **self._raw_event(
                version, None, ident, collector_ms, headers, referer=headers.get("referer", "")
            ),
            "querystring": redact_text(querystring[:MAX_KEPT_BODY]) if querystring else None,
            "body": redact_text(text[:MAX_KEPT_BODY]) if text else None,
            "bodyTruncated": truncated,
        }
        del payload["parameters"]
        row = bad_row(kind, messages, payload, processor=COLLECTOR_VERSION, now_ms=collector_ms)
        return self._encode(row, ident.scrub_pairs)
