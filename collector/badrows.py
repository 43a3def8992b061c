"""Bad row payloads with no raw identifier in them.

A parsed event's payload is its parameters with ``uid``/``duid``/``nuid``/``tnuid``/``fp``
pseudonymized, ``ip`` anonymized, ``url``/``refr`` (and the ``Referer`` header) scrubbed like the
good event's URLs (``_sp`` removed, query and fragment values kept, pseudonymized or removed:
:mod:`collector.urlscrub`), ``page`` and ``tr_*``/``ti_*`` redacted unless the settings keep them.
``co``/``ue_pr`` JSON is decoded and redacted inside; base64url ``cx``/``ue_px`` is decoded first
and the redacted JSON is kept **decoded**, as ``co``/``ue_pr`` text (the equivalent tracker
parameters), so that no identifier hides inside base64 (``cx``/``ue_px`` that is not base64url is
redacted whole). Inside that JSON, values of identifier keys (``userId``, ``uid``, ``email``, ...)
become pseudonyms, IP-valued keys are anonymized, and in every string URLs are scrubbed, IP
addresses masked and e-mail addresses redacted; the same free-text redaction applies to every
other parameter value and to the failure messages. A body that cannot be parsed is kept
(truncated) with the identifier parameters (and ``cx``/``ue_px``/``page``/``tr_*``/``ti_*``)
redacted by pattern and the same free-text redaction. Finally every raw identifier known for the
request is replaced wherever it still appears in the bad row (failure messages included).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson

from collector import COLLECTOR_VERSION
from collector.enrich import strip_sp, tstamp
from collector.identity import IDENTIFIER_PARAMS, IP_PARAM, Identities, RequestIdentity
from collector.protocol import b64url_decode
from lvp.badrows import bad_row
from lvp.pseudonym import anonymize_ip

REDACTED: Final = "<redacted>"
#: Values of a failure message written by the collector itself (never request data).
_OWN_MESSAGE_KEYS: Final = frozenset(("field", "expectation"))
#: Longest unparseable body (characters) kept in a bad row.
MAX_KEPT_BODY: Final = 64_000

_ID_NAMES = "|".join((*IDENTIFIER_PARAMS, IP_PARAM, "userId", "_sp", "cx", "ue_px", "page", r"t[ri]_\w+"))
_JSON_ID_RE = re.compile(r'(\\*")(' + _ID_NAMES + r')\1(\s*:\s*)\1(?:[^"\\]|\\[^"])*')
_QUERY_ID_RE = re.compile(r"(^|[?&;\s])(" + _ID_NAMES + r")=[^&#;\s\"\\]*")
#: Free text: URLs (scrubbed), e-mail addresses (redacted), IPv4 and IPv6 addresses (masked).
# (every repetition before the fixed part is bounded: texts are up to 64,000 characters, and an
# unbounded one would be tried from every position of a long run: quadratic)
_URL_RE = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]{0,31}://[^\s\"'<>\\]+")
_EMAIL_RE = re.compile(
    r"[A-Za-z0-9._%+\-]{1,64}(?:@|%40|%2540)[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){1,8}"
)
_IPV4_RE = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w.])")
_IPV6_RE = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.\d{1,3}){0,3}(?![\w:])")
#: JSON keys whose (string) values are user identifiers / IP addresses, lowercase.
_ID_KEYS: Final = frozenset(
    ("userid", "user_id", "uid", "duid", "nuid", "tnuid", "fp", "domain_userid", "network_userid",
     "email", "e-mail", "mail", "username", "user_name", "login", "phone", "fingerprint",
     "user_fingerprint"))  # fmt: skip
_IP_KEYS: Final = frozenset(("ip", "ipaddress", "ip_address", "user_ipaddress", "clientip", "client_ip"))


def redact_text(text: str) -> str:
    """Identifier parameters redacted from text that could not be parsed (JSON or query string)."""
    text = _JSON_ID_RE.sub(
        lambda m: f"{m.group(1)}{m.group(2)}{m.group(1)}{m.group(3)}{m.group(1)}{REDACTED}", text
    )
    return _QUERY_ID_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}={REDACTED}", text)


def _ip_or_text(m: re.Match[str]) -> str:
    masked = anonymize_ip(m.group(0))
    return masked or m.group(0)


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

    # -- free text --
    def redact_free_text(self, text: str) -> str:
        """URLs scrubbed, e-mail addresses redacted, IP addresses masked."""
        if "://" in text:
            text = _URL_RE.sub(lambda m: self.identities.urls(m.group(0)), text)
        if "@" in text or "%40" in text or "%2540" in text:
            text = _EMAIL_RE.sub(REDACTED, text)
        if "." in text:
            text = _IPV4_RE.sub(_ip_or_text, text)
        if ":" in text:
            text = _IPV6_RE.sub(_ip_or_text, text)
        return text

    def redact_unparsed(self, text: str) -> str:
        """Text that could not be parsed: free-text redaction (URLs first, while they are whole),
        then identifier parameters by pattern (:func:`redact_text`)."""
        return redact_text(self.redact_free_text(text))

    def redact_structure(self, value: Any, depth: int = 0) -> Any:
        """A JSON value with :meth:`redact_free_text` applied to its strings (keys included), the
        values of identifier keys pseudonymized and of IP keys anonymized."""
        if isinstance(value, str):
            return self.redact_free_text(value)
        if depth >= 100 and isinstance(value, (dict, list, tuple)):
            return "<nested too deep>"
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                key = self.redact_free_text(str(k))
                low = key.lower()
                if isinstance(v, str) and low in _ID_KEYS:
                    out[key] = self.identities.pseudonym(v)
                elif isinstance(v, str) and low in _IP_KEYS:
                    out[key] = anonymize_ip(v) or (REDACTED if v else v)
                else:
                    out[key] = self.redact_structure(v, depth + 1)
            return out
        if isinstance(value, (list, tuple)):
            return [self.redact_structure(v, depth + 1) for v in value]
        return value

    # -- payload pieces --
    def scrub_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        ids = self.identities
        p = ids.pseudonym
        out: dict[str, Any] = {}
        for name, value in params.items():
            if not isinstance(value, str):
                out[name] = self.redact_structure(value)
            elif name in IDENTIFIER_PARAMS:
                out[name] = p(value)
            elif name == IP_PARAM:
                out[name] = anonymize_ip(value)
            elif name in ("url", "refr"):
                out[name] = ids.urls(strip_sp(value)[0])
            elif (name == "page" and not ids.keep_page_title) or (
                name.startswith(("tr_", "ti_")) and not ids.keep_transaction_fields
            ):
                out[name] = REDACTED
            elif name in ("co", "ue_pr"):
                out[name] = self._scrub_json(value, encoded=False)
            elif name in ("cx", "ue_px"):
                # kept decoded (under the name of the unencoded parameter, when that is free)
                plain = "co" if name == "cx" else "ue_pr"
                text = self._scrub_json(value, encoded=True)
                out[name if text == REDACTED or plain in params or plain in out else plain] = text
            else:
                out[name] = self.redact_free_text(value)
        return out

    def _scrub_json(self, value: str, *, encoded: bool) -> str:
        """JSON text (base64url-encoded when ``encoded``) -> the redacted JSON text, decoded."""
        try:
            raw = b64url_decode(value) if encoded else value.encode("utf-8", "surrogatepass")
        except ValueError:
            return REDACTED  # not base64url: nothing can be read (or redacted) inside
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return self.redact_unparsed(raw.decode("utf-8", "replace"))
        data = doc.get("data") if isinstance(doc, dict) else None
        if isinstance(data, list):
            self.identities.pseudonymize_entities([e for e in data if isinstance(e, dict)])
        try:
            return orjson.dumps(self.redact_structure(doc)).decode()
        except TypeError:  # nested deeper than orjson writes (it reads deeper than it writes)
            return self.redact_unparsed(raw.decode("utf-8", "replace"))

    def _raw_event(
        self,
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
            "refererUri": self.identities.urls(strip_sp(referer)[0]) if referer else None,
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

    def _redact_messages(self, messages: list[Any]) -> list[Any]:
        """:meth:`redact_structure` of what failure messages quote from the request."""
        return [
            {mk: mv if mk in _OWN_MESSAGE_KEYS else self.redact_structure(mv) for mk, mv in m.items()}
            if isinstance(m, dict)
            else self.redact_structure(m)
            for m in messages
        ]

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
        row = bad_row(
            kind, self._redact_messages(messages), payload, processor=COLLECTOR_VERSION, now_ms=collector_ms
        )
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
            "querystring": self.redact_unparsed(querystring[:MAX_KEPT_BODY]) if querystring else None,
            "body": self.redact_unparsed(text[:MAX_KEPT_BODY]) if text else None,
            "bodyTruncated": truncated,
        }
        del payload["parameters"]
        row = bad_row(
            kind, self._redact_messages(messages), payload, processor=COLLECTOR_VERSION, now_ms=collector_ms
        )
        return self._encode(row, ident.scrub_pairs)
