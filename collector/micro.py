"""Snowplow Micro-compatible inspection of what the collector accepted, in dev mode only.

``GET|POST /micro/all`` -> ``{"total", "good", "bad"}``; ``GET /micro/good`` -> every good event
held, newest first, each ``{"rawEvent", "eventType", "schema", "contexts", "event"}``; ``POST
/micro/good`` with a JSON body ``{"event_type", "schema", "contexts", "limit"}`` (all optional;
the same names work as query parameters of a GET, ``contexts`` repeated or comma-separated)
filters them as Micro does: equal event type, equal event schema, every listed context present,
the newest ``limit``. ``GET /micro/bad`` -> ``{"collectorPayload", "rawEvent", "errors"}`` per bad
event; ``POST /micro/bad`` filters on ``vendor``, ``version``, ``limit``. ``GET|POST
/micro/reset`` empties both and answers the (zero) summary.

Privacy: the store is fed after Kafka acknowledged the messages, from the very messages the
collector published: the pseudonymized enriched lines and the bad rows (already scrubbed). So
``event`` holds the keyed pseudonyms of ``user_id``/``domain_userid``/``network_userid``/
``user_fingerprint`` and the masked IP, never the raw values; ``rawEvent`` is rebuilt from that
enriched event (Micro's holds the tracker's raw parameters; ours the pseudonymized ones), so it
carries no raw identifier either (its ``api.version`` is ``tp2`` for every event: the enriched
event does not say whether it came by POST or by the pixel). Memory: at most
``LVP_MICRO_MAX_EVENTS`` good and as many bad messages are kept (the oldest are dropped) and
converted to JSON only when asked for.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collector import COLLECTOR_VERSION
from collector.sink import Message
from lvp.enriched import (
    BOOL_FIELDS,
    DOUBLE_FIELDS,
    FIELDS,
    INT_FIELDS,
    JSON_FIELDS,
    N_FIELDS,
    TIMESTAMP_FIELDS,
    iso_from_tstamp,
    parse_tstamp,
)

VENDOR: Final = "com.snowplowanalytics.snowplow"

#: enriched column -> tracker parameter, for the rebuilt ``rawEvent``
_PARAMS: Final = (
    ("event_id", "eid"), ("app_id", "aid"), ("platform", "p"), ("name_tracker", "tna"),
    ("v_tracker", "tv"), ("user_id", "uid"), ("domain_userid", "duid"),
    ("network_userid", "nuid"), ("user_fingerprint", "fp"), ("domain_sessionidx", "vid"),
    ("domain_sessionid", "sid"), ("page_url", "url"), ("page_title", "page"),
    ("page_referrer", "refr"), ("br_lang", "lang"), ("br_colordepth", "cd"),
    ("br_cookies", "cookie"), ("os_timezone", "tz"), ("doc_charset", "cs"),
    ("se_category", "se_ca"), ("se_action", "se_ac"), ("se_label", "se_la"),
    ("se_property", "se_pr"), ("se_value", "se_va"), ("pp_xoffset_min", "pp_mix"),
    ("pp_xoffset_max", "pp_max"), ("pp_yoffset_min", "pp_miy"), ("pp_yoffset_max", "pp_may"),
    ("contexts", "co"), ("unstruct_event", "ue_pr"),
)  # fmt: skip
_TIME_PARAMS: Final = (("dvce_created_tstamp", "dtm"), ("dvce_sent_tstamp", "stm"), ("true_tstamp", "ttm"))
_SIZE_PARAMS: Final = (
    ("dvce_screenwidth", "dvce_screenheight", "res"),
    ("br_viewwidth", "br_viewheight", "vp"),
    ("doc_width", "doc_height", "ds"),
)
_EVENT_CODES: Final = {
    "page_view": "pv", "page_ping": "pp", "unstruct": "ue", "struct": "se",
    "transaction": "tr", "transaction_item": "ti",
}  # fmt: skip


def event_json(parts: Sequence[str]) -> dict[str, Any]:
    """The enriched event as JSON with typed values, as the Analytics SDKs read it (every column,
    ``null`` when empty; timestamps ISO-8601 UTC; the JSON columns parsed)."""
    out: dict[str, Any] = {}
    for name, v in zip(FIELDS, parts, strict=True):
        if v == "":
            out[name] = None
        elif name in TIMESTAMP_FIELDS:
            out[name] = iso_from_tstamp(v)
        elif name in JSON_FIELDS:
            try:
                out[name] = orjson.loads(v)
            except orjson.JSONDecodeError:
                out[name] = v
        elif name in BOOL_FIELDS:
            out[name] = v == "1" if v in ("0", "1") else v
        else:
            try:
                out[name] = int(v) if name in INT_FIELDS else float(v) if name in DOUBLE_FIELDS else v
            except ValueError:
                out[name] = v
    return out


def _ms(value: str) -> str:
    return str(round(parse_tstamp(value) * 1000))


def raw_event(ev: dict[str, Any], parts: Sequence[str]) -> dict[str, Any]:
    """Micro's ``rawEvent`` rebuilt from the enriched event: the tracker parameters as the
    enriched event holds them (identifiers pseudonymized), the request context (masked IP)."""
    col = dict(zip(FIELDS, parts, strict=True))
    params: dict[str, str] = {}
    code = _EVENT_CODES.get(col["event"])
    if code:
        params["e"] = code
    for column, param in _PARAMS:
        if col[column]:
            params[param] = col[column]
    for column, param in _TIME_PARAMS:
        if col[column]:
            with contextlib.suppress(ValueError):
                params[param] = _ms(col[column])
    for width, height, param in _SIZE_PARAMS:
        if col[width] and col[height]:
            params[param] = f"{col[width]}x{col[height]}"
    return {
        "api": {"vendor": VENDOR, "version": "tp2"},
        "parameters": params,
        "contentType": None,
        "source": {"name": col["v_collector"] or COLLECTOR_VERSION, "encoding": "UTF-8", "hostname": None},
        "context": {
            "timestamp": ev["collector_tstamp"],
            "ipAddress": ev["user_ipaddress"],
            "useragent": ev["useragent"],
            "refererUri": ev["page_referrer"],
            "headers": [],
            "userId": ev["network_userid"],
        },
    }


def good_event(line: bytes) -> dict[str, Any] | None:
    """Micro's GoodEvent for one enriched line (None if it is not one)."""
    try:
        parts = line.decode("utf-8").rstrip("\r\n").split("\t")
    except UnicodeDecodeError:
        return None
    if len(parts) != N_FIELDS:
        return None
    ev = event_json(parts)
    key = (ev["event_vendor"], ev["event_name"], ev["event_format"], ev["event_version"])
    contexts = ev["contexts"]
    data = contexts.get("data") if isinstance(contexts, dict) else None
    return {
        "rawEvent": raw_event(ev, parts),
        "eventType": ev["event"],
        "schema": "iglu:" + "/".join(key) if all(key) else None,
        "contexts": [
            c["schema"] for c in data or [] if isinstance(c, dict) and isinstance(c.get("schema"), str)
        ],
        "event": ev,
    }


def _context(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "timestamp": raw.get("timestamp"),
        "ipAddress": raw.get("ipAddress"),
        "useragent": raw.get("useragent"),
        "refererUri": raw.get("refererUri"),
        "headers": raw.get("headers") or [],
        "userId": raw.get("userId"),
    }


def bad_event(value: bytes) -> dict[str, Any]:
    """Micro's BadEvent for one of our bad rows: the collector payload (redacted as in the bad
    row), the event's parameters when the row is about one event, and the errors: a summary,
    then the bad row itself (compact JSON), as Micro lists them."""
    text = value.decode("utf-8", "replace")
    try:
        row = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {"collectorPayload": None, "rawEvent": None, "errors": ["Not a bad row.", text]}
    data = row.get("data") if isinstance(row, dict) else None
    payload = data.get("payload") if isinstance(data, dict) else None
    payload = payload if isinstance(payload, dict) else {}
    per_event = isinstance(payload.get("raw"), dict)
    raw: dict[str, Any] = payload["raw"] if per_event else payload
    api = {"vendor": raw.get("vendor"), "version": raw.get("version")}
    source = {"name": raw.get("loaderName"), "encoding": raw.get("encoding"), "hostname": raw.get("hostname")}
    query = raw.get("querystring")
    collector_payload = {
        "api": api,
        "querystring": [{"name": k, "value": v} for k, v in parse_qsl(query, keep_blank_values=True)]
        if isinstance(query, str)
        else [],
        "contentType": raw.get("contentType"),
        "body": raw.get("body"),
        "source": source,
        "context": _context(raw),
    }
    raw_ev = None
    if per_event:
        params = {
            p["name"]: p.get("value")
            for p in raw.get("parameters") or []
            if isinstance(p, dict) and isinstance(p.get("name"), str)
        }
        raw_ev = {
            "api": api,
            "parameters": params,
            "contentType": raw.get("contentType"),
            "source": source,
            "context": _context(raw),
        }
    schema = row.get("schema") if isinstance(row, dict) else None
    kind = schema.split("/")[1] if isinstance(schema, str) and schema.count("/") >= 2 else "bad row"
    summary = (
        f"Error while validating the event ({kind})."
        if per_event
        else f"Error while extracting event(s) from collector payload ({kind})."
    )
    return {"collectorPayload": collector_payload, "rawEvent": raw_ev, "errors": [summary, text]}


class MicroStore:
    """Ring buffers of the last good and bad messages the collector published."""

    def __init__(self, max_events: int, topic_good: str, topic_bad: str) -> None:
        self.topic_good = topic_good
        self.topic_bad = topic_bad
        size = max(1, max_events)
        self._good: collections.deque[bytes] = collections.deque(maxlen=size)
        self._bad: collections.deque[bytes] = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def record(self, messages: Iterable[Message]) -> None:
        """The hook: called with the messages Kafka acknowledged."""
        with self._lock:
            for topic, _key, value in messages:
                if topic == self.topic_good:
                    self._good.append(value)
                elif topic == self.topic_bad:
                    self._bad.append(value)

    def summary(self) -> dict[str, int]:
        with self._lock:
            good, bad = len(self._good), len(self._bad)
        return {"total": good + bad, "good": good, "bad": bad}

    def reset(self) -> None:
        with self._lock:
            self._good.clear()
            self._bad.clear()

    def good(
        self,
        event_type: str | None = None,
        schema: str | None = None,
        contexts: Sequence[str] = (),
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        with self._lock:
            lines = list(self._good)
        out: list[dict[str, Any]] = []
        for line in reversed(lines):  # newest first, as Micro
            if limit is not None and len(out) >= limit:
                break
            ev = good_event(line)
            if ev is None:
                continue
            if event_type is not None and ev["eventType"] != event_type:
                continue
            if schema is not None and ev["schema"] != schema:
                continue
            if any(c not in ev["contexts"] for c in contexts):
                continue
            out.append(ev)
        return out

    def bad(
        self, vendor: str | None = None, version: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        with self._lock:
            rows = list(self._bad)
        out: list[dict[str, Any]] = []
        for value in reversed(rows):
            if limit is not None and len(out) >= limit:
                break
            ev = bad_event(value)
            api = (ev["collectorPayload"] or {}).get("api") or {}
            if vendor is not None and api.get("vendor") not in (None, vendor):
                continue
            if version is not None and api.get("version") not in (None, version):
                continue
            out.append(ev)
        return out


class FilterError(ValueError):
    pass


async def _filters(request: Request, names: dict[str, type]) -> dict[str, Any]:
    """The filters of a request: a POST's JSON body, else the query parameters."""
    raw: dict[str, Any] = {}
    if request.method == "POST":
        body = await request.body()
        if body.strip():
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise FilterError("the body is not JSON") from None
            if not isinstance(doc, dict):
                raise FilterError("the body must be a JSON object of filters")
            raw = doc
    else:
        for k, v in request.query_params.multi_items():
            if k == "contexts":
                raw.setdefault("contexts", []).extend(c for c in v.split(",") if c)
            else:
                raw[k] = v
    out: dict[str, Any] = {}
    for name, type_ in names.items():
        value = raw.get(name)
        if value is None:
            continue
        if type_ is int:
            if isinstance(value, str) and value.isdigit():
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise FilterError(f"{name} must be a non-negative integer")
        elif type_ is list:
            if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
                raise FilterError(f"{name} must be a list of schema URIs")
        elif not isinstance(value, str):
            raise FilterError(f"{name} must be a string")
        out[name] = value
    return out


def micro_routes(store: MicroStore, allowed_origin: Callable[[str | None], bool]) -> list[Route]:
    """The /micro/* routes (mounted in dev mode only)."""

    def respond(request: Request, body: Any, status: int = 200) -> Response:
        headers = {
            "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type",
            "Cache-Control": "no-store",
        }
        origin = request.headers.get("origin")
        if origin and allowed_origin(origin):
            headers["Access-Control-Allow-Origin"] = origin
            headers["Vary"] = "Origin"
        return Response(orjson.dumps(body), status, headers, media_type="application/json")

    async def all_(request: Request) -> Response:
        return respond(request, store.summary())

    async def reset(request: Request) -> Response:
        store.reset()
        return respond(request, store.summary())

    async def good(request: Request) -> Response:
        try:
            f = await _filters(request, {"event_type": str, "schema": str, "contexts": list, "limit": int})
        except FilterError as exc:
            return respond(request, {"error": str(exc)}, 400)
        # converted off the event loop: thousands of events must not stall the collector
        found = await asyncio.to_thread(
            store.good, f.get("event_type"), f.get("schema"), f.get("contexts", ()), f.get("limit")
        )
        return respond(request, found)

    async def bad(request: Request) -> Response:
        try:
            f = await _filters(request, {"vendor": str, "version": str, "limit": int})
        except FilterError as exc:
            return respond(request, {"error": str(exc)}, 400)
        found = await asyncio.to_thread(store.bad, f.get("vendor"), f.get("version"), f.get("limit"))
        return respond(request, found)

    async def options(request: Request) -> Response:
        if not allowed_origin(request.headers.get("origin")):
            return Response("origin not allowed", 403, media_type="text/plain")
        response = respond(request, None)
        response.body = b""
        response.headers["content-length"] = "0"
        return response

    paths = {"/micro/all": all_, "/micro/reset": reset, "/micro/good": good, "/micro/bad": bad}
    return [
        *(Route(p, h, methods=["GET", "POST"]) for p, h in paths.items()),
        *(Route(p, options, methods=["OPTIONS"]) for p in paths),
    ]
