"""What `lvp profiles` reads: one Kafka message -> one :class:`~lvp.events.ViewerEvent`.

The format is detected per message, so the consumer drops in behind either existing pipeline:

* **Snowplow enriched TSV** (131 columns) from our collector or from a real Snowplow enrich /
  Snowbridge pipeline — parsed by the shared :func:`lvp.events.from_tsv_line` (what
  :func:`lvp.enriched.from_tsv` + :func:`lvp.events.from_enriched` give, reading only the
  columns an event is made of).
* **Snowplow enriched JSON** in the Analytics SDK shape (what Snowbridge's ``spEnrichedToJson``
  transform and the Python/Go Analytics SDKs write): empty columns dropped, timestamps ISO-8601,
  entities flattened to ``contexts_<vendor>_<name>_<major>`` arrays and the event to
  ``unstruct_event_<vendor>_<name>_<major>``, where ``<vendor>`` has its dots turned into
  underscores and ``<name>`` is camelCase turned into snake_case. The media entities and events
  are mapped back to their Iglu schemas and handed to the same :func:`~lvp.events.from_enriched`.
* **The accelerator's 8-field JSON** ``{collector_tstamp, event_id, event_name, viewer_id,
  adsClicked, adsSkipped, adId, video_ts}`` (event names like ``pause_event``).

Raw Snowplow pipelines carry raw identifiers: with ``pseudonymize`` set (``--pseudonymize-input``)
the viewer id is replaced by the collector's keyed pseudonym of ``user_id`` / ``domain_userid`` /
``network_userid`` (or of the accelerator's ``viewer_id``) before anything else sees it.

A message that cannot be parsed raises :class:`InputError`; :meth:`InputDecoder.bad_row` turns it
into a ``loader_parsing_error`` bad row whose payload is truncated and carries no raw identifier.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from lvp import badrows
from lvp.enriched import IDENTIFIER_FIELDS, INDEX, N_FIELDS, EnrichedFormatError, parse_tstamp
from lvp.events import (
    EVENT_COLUMNS,
    MEDIA_AD,
    MEDIA_AD_BREAK,
    MEDIA_EVENTS,
    MEDIA_PLAYER,
    MEDIA_SESSION,
    MEDIA_VENDOR,
    ViewerEvent,
    from_enriched,
    from_tsv_line,
)
from lvp.pseudonym import anonymize_ip

PROCESSOR: Final = "lvp-profiles"
#: Longest bad-row payload (characters); the rest is cut off.
MAX_PAYLOAD_CHARS: Final = 2048

# Formats, as reported by :func:`detect_format`.
TSV: Final = "tsv"
SDK_JSON: Final = "sdk_json"
ACCELERATOR_JSON: Final = "accelerator_json"
UNKNOWN: Final = "unknown"

# Bad-message reasons (metric labels).
REASON_UNKNOWN_FORMAT: Final = "unknown_format"
REASON_INVALID_TSV: Final = "invalid_tsv"
REASON_INVALID_JSON: Final = "invalid_json"
REASON_INVALID_EVENT: Final = "invalid_event"

Pseudonymize = Callable[[str], str]


class InputError(ValueError):
    """A message is not an event we can read; ``reason`` is a short metric label."""

    def __init__(self, reason: str, message: str, fmt: str = UNKNOWN) -> None:
        super().__init__(message)
        self.reason = reason
        self.format = fmt


# --- Analytics SDK key naming -------------------------------------------------------------------

_SCHEMA_RE = re.compile(r"^iglu:([a-zA-Z0-9_.-]+)/([a-zA-Z0-9_-]+)/([a-zA-Z0-9_-]+)/([1-9][0-9]*)-\d+-\d+$")
_CAMEL_RE = re.compile(r"([^A-Z_])([A-Z])")


def sdk_key(prefix: str, schema_uri: str) -> str:
    """The Analytics SDK's column for a schema: ``sdk_key("contexts",
    "iglu:com.snowplowanalytics.snowplow/media_player/jsonschema/2-0-0")`` ->
    ``contexts_com_snowplowanalytics_snowplow_media_player_2``."""
    m = _SCHEMA_RE.match(schema_uri)
    if m is None:
        raise ValueError(f"not an Iglu schema URI: {schema_uri!r}")
    vendor, name, _fmt, major = m.groups()
    snake = _CAMEL_RE.sub(r"\1_\2", name).lower()
    return f"{prefix}_{vendor.replace('.', '_').lower()}_{snake}_{major}"


#: SDK context column -> the Iglu schema the entity had (the minor versions are not kept by the
#: SDK; every 2-x-x / 1-x-x revision of these schemas is read the same way).
SDK_CONTEXTS: Final[dict[str, str]] = {
    sdk_key("contexts", prefix + "0-0"): prefix + "0-0"
    for prefix in (MEDIA_PLAYER, MEDIA_SESSION, MEDIA_AD, MEDIA_AD_BREAK)
}
#: SDK unstruct column -> media event schema.
SDK_MEDIA_EVENTS: Final[dict[str, str]] = {
    sdk_key("unstruct_event", uri): uri
    for uri in (f"iglu:{MEDIA_VENDOR}/{name}_event/jsonschema/1-0-0" for name in MEDIA_EVENTS)
}

# --- detection ----------------------------------------------------------------------------------

_WS = b" \t\r\n"
# First bytes after which detect_format may answer "json" (anything else is TSV or unknown).
_JSON_HEADS: Final = frozenset((b"{", b" ", b"\r", b"\n"))


def detect_format(value: bytes) -> str:
    """Cheap sniff: enriched TSV lines have 130 tabs (checked first: the first column, app_id,
    may itself start with ``{``); JSON objects start with ``{``."""
    if value.count(b"\t") == N_FIELDS - 1:
        return TSV
    head = value[:1]
    if head == b"{" or (head in (b" ", b"\r", b"\n") and value.lstrip(_WS)[:1] == b"{"):
        return "json"
    return UNKNOWN


# --- decoding -----------------------------------------------------------------------------------


class InputDecoder:
    """Per-message decoding with optional input pseudonymization (one instance per consumer)."""

    __slots__ = ("pseudonymize",)

    def __init__(self, pseudonymize: Pseudonymize | None = None) -> None:
        self.pseudonymize = pseudonymize

    def decode(self, value: bytes | None) -> ViewerEvent:
        """The event in ``value``; raises :class:`InputError` when it is not one."""
        if not value:
            raise InputError(REASON_UNKNOWN_FORMAT, "empty message")
        if value[:1] not in _JSON_HEADS:
            # the common case first: a line from_tsv_line reads has exactly 130 tabs, so
            # detect_format would have said TSV; anything it refuses takes the path below
            try:
                ev = from_tsv_line(value)
            except EnrichedFormatError:
                pass
            else:
                ev = check_ranges(ev, TSV)
                if self.pseudonymize is not None:
                    ev.viewer_id = self.pseudonymize(ev.viewer_id)
                return ev
        kind = detect_format(value)
        if kind == TSV:
            ev = check_ranges(self._tsv(value), TSV)
        elif kind == "json":
            ev = check_ranges(self._json(value), "json")
        else:
            tabs = value.count(b"\t")
            if tabs:
                raise InputError(
                    REASON_INVALID_TSV, f"expected {N_FIELDS} tab-separated fields, got {tabs + 1}", TSV
                )
            raise InputError(REASON_UNKNOWN_FORMAT, "neither an enriched TSV line nor a JSON object")
        if self.pseudonymize is not None:
            ev.viewer_id = self.pseudonymize(ev.viewer_id)
        return ev

    def _tsv(self, value: bytes) -> ViewerEvent:
        try:
            return from_tsv_line(value)
        except EnrichedFormatError as exc:
            raise InputError(REASON_INVALID_TSV, str(exc), TSV) from None

    def _json(self, value: bytes) -> ViewerEvent:
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise InputError(REASON_INVALID_JSON, f"not JSON: {exc}", "json") from None
        if not isinstance(obj, dict):
            raise InputError(REASON_INVALID_JSON, "JSON message is not an object", "json")
        if "viewer_id" in obj:
            return accelerator_event(obj)
        if "event_id" in obj:
            return sdk_event(obj)
        raise InputError(
            REASON_INVALID_JSON,
            "JSON object is neither an Analytics SDK event nor an accelerator event",
            "json",
        )

    def bad_row(self, value: bytes | None, error: InputError, now_ms: int | None = None) -> dict[str, Any]:
        """A ``loader_parsing_error`` bad row for a message :meth:`decode` refused."""
        return badrows.bad_row(
            "loader_parsing_error",
            [{"format": error.format, "reason": error.reason, "message": str(error)[:500]}],
            redacted_payload(value or b"", self.pseudonymize),
            processor=PROCESSOR,
            now_ms=now_ms,
        )


def check_ranges(ev: ViewerEvent, fmt: str) -> ViewerEvent:
    """Refuse numbers no tracker sends and the profile cannot hold: timestamps outside years
    1970-9999 (its ISO times), session stats outside 0-1e12 (its integer counters)."""
    if not (0 <= ev.collector_ts < _MAX_EPOCH_S and 0 <= ev.derived_ts < _MAX_EPOCH_S):
        raise InputError(REASON_INVALID_EVENT, "timestamp out of range (years 1970-9999)", fmt)
    if ev.session_stats:
        for key, v in ev.session_stats.items():
            if not 0 <= v <= _MAX_STAT:
                raise InputError(REASON_INVALID_EVENT, f"session stat {key}={v!r:.40} out of range", fmt)
    return ev


_MAX_STAT: Final = 1e12


def sdk_event(obj: Mapping[str, Any]) -> ViewerEvent:
    """A :class:`ViewerEvent` from an Analytics SDK-shaped enriched event."""
    cols: dict[str, Any] = {}
    for name in _SDK_SCALARS:
        v = obj.get(name)
        if v is not None and v != "":
            if not isinstance(v, str):
                v = _scalar_str(name, v)
            cols[name] = v
    entities: list[dict[str, Any]] = []
    unstruct: dict[str, Any] | None = None
    for key, value in obj.items():
        if key.startswith("contexts_"):
            schema = SDK_CONTEXTS.get(key)
            if schema is None:
                continue
            if not isinstance(value, list):
                raise InputError(REASON_INVALID_EVENT, f"{key} is not an array", SDK_JSON)
            entities.extend({"schema": schema, "data": d} for d in value)
        elif key.startswith("unstruct_event_"):
            schema = SDK_MEDIA_EVENTS.get(key) or _unstruct_schema(obj)
            if schema is not None and isinstance(value, dict):
                unstruct = {"data": {"schema": schema, "data": value}}
    if entities:
        cols["contexts"] = entities
    if unstruct is not None:
        cols["unstruct_event"] = unstruct
    try:
        return from_enriched(cols)
    except EnrichedFormatError as exc:
        raise InputError(REASON_INVALID_EVENT, str(exc), SDK_JSON) from None


# Columns from_enriched reads besides contexts / unstruct_event.
_SDK_SCALARS: Final[tuple[str, ...]] = tuple(
    c for c in EVENT_COLUMNS if c not in ("contexts", "unstruct_event")
)


def _scalar_str(name: str, v: Any) -> str:
    if isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return str(v)
    raise InputError(REASON_INVALID_EVENT, f"{name} is not a string", SDK_JSON)


def _unstruct_schema(obj: Mapping[str, Any]) -> str | None:
    """A non-media self-describing event's schema, from the event_* columns."""
    parts = [obj.get(k) for k in ("event_vendor", "event_name", "event_format", "event_version")]
    if all(isinstance(p, str) and p for p in parts):
        return "iglu:{}/{}/{}/{}".format(*parts)
    return None


_MEDIA_SET = frozenset(MEDIA_EVENTS)


def accelerator_event(obj: Mapping[str, Any]) -> ViewerEvent:
    """A :class:`ViewerEvent` from the accelerator's 8-field JSON."""
    event_id = obj.get("event_id")
    viewer_id = obj.get("viewer_id")
    name = obj.get("event_name")
    if not isinstance(event_id, str) or not event_id:
        raise InputError(REASON_INVALID_EVENT, "missing event_id", ACCELERATOR_JSON)
    if not isinstance(viewer_id, str) or not viewer_id:
        raise InputError(REASON_INVALID_EVENT, "missing viewer_id", ACCELERATOR_JSON)
    if not isinstance(name, str) or not name:
        raise InputError(REASON_INVALID_EVENT, "missing event_name", ACCELERATOR_JSON)
    ts = _epoch(obj.get("collector_tstamp"))
    short = name[:-6] if name.endswith("_event") else name
    stats: dict[str, float] = {}
    for key in ("adsClicked", "adsSkipped"):
        n = _number(obj.get(key))
        if n is not None:
            stats[key] = n
    ad = obj.get("adId")
    return ViewerEvent(
        event_id=event_id,
        name=short if short in _MEDIA_SET else name,
        viewer_id=viewer_id,
        collector_ts=ts,
        derived_ts=ts,
        position_s=_number(obj.get("video_ts")),
        session_stats=stats or None,
        ad_id=str(ad) if ad not in (None, "", 0, "0") and not isinstance(ad, bool) else None,
    )


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _epoch(v: Any) -> float:
    """ISO / Snowplow timestamp string, or epoch seconds / milliseconds."""
    if isinstance(v, str) and v:
        try:
            return parse_tstamp(v)
        except EnrichedFormatError as exc:
            raise InputError(REASON_INVALID_EVENT, str(exc), ACCELERATOR_JSON) from None
    n = _number(v)
    if n is None:
        raise InputError(REASON_INVALID_EVENT, "missing collector_tstamp", ACCELERATOR_JSON)
    ts = n / 1000.0 if n > 1e11 else n
    if not 0 <= ts < _MAX_EPOCH_S:  # the profile's ISO timestamps end with year 9999
        raise InputError(REASON_INVALID_EVENT, f"collector_tstamp {v!r:.40} out of range", ACCELERATOR_JSON)
    return ts


_MAX_EPOCH_S: Final = 253_402_300_800.0  # 10000-01-01T00:00:00Z


# --- bad-row payloads ---------------------------------------------------------------------------

_ID_COLUMNS: Final = tuple(INDEX[f] for f in IDENTIFIER_FIELDS)
_IP_COLUMN: Final = INDEX["user_ipaddress"]
_ID_KEYS: Final = frozenset((*IDENTIFIER_FIELDS, "viewer_id"))
_SAFE_PREFIX_COLUMNS: Final = INDEX["user_id"]  # columns before the first identifier


def redacted_payload(value: bytes, pseudonymize: Pseudonymize | None) -> str:
    """The start of a refused message with no raw identifier left in it.

    Identifier columns / keys are replaced by their pseudonym when the input is raw
    (``pseudonymize`` set; already pseudonyms otherwise) and IP addresses are anonymized. When
    the input is raw and its layout is unknown, only what cannot identify anyone is kept.
    """
    text = value[: MAX_PAYLOAD_CHARS * 4].decode("utf-8", "replace")
    ident: Pseudonymize = pseudonymize if pseudonymize is not None else (lambda s: s)
    if "\t" in text and (text.count("\t") == N_FIELDS - 1 or not text.lstrip().startswith("{")):
        parts = text.split("\t")
        if len(parts) == N_FIELDS:
            for i in _ID_COLUMNS:
                parts[i] = ident(parts[i])
            parts[_IP_COLUMN] = anonymize_ip(parts[_IP_COLUMN])
            if pseudonymize is not None:  # raw entities may name people too
                for col in ("contexts", "derived_contexts", "unstruct_event", "page_url", "page_referrer"):
                    parts[INDEX[col]] = "" if not parts[INDEX[col]] else "<redacted>"
        elif pseudonymize is not None:
            # raw input whose columns cannot be trusted to be where they belong: withhold it all
            return f"<{len(parts)} tab-separated fields withheld: raw input of unknown layout>"
        else:
            kept = parts[:_SAFE_PREFIX_COLUMNS]
            parts = [*kept, f"<{len(parts) - len(kept)} more fields withheld>"]
        return _cut("\t".join(parts))
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        obj = None
    if isinstance(obj, dict):
        clean: dict[str, Any] = {}
        for k, v in obj.items():
            if k in _ID_KEYS:
                clean[k] = ident(v) if isinstance(v, str) else None
            elif k == "user_ipaddress":
                clean[k] = anonymize_ip(v) if isinstance(v, str) else None
            elif pseudonymize is not None and (
                k.startswith(("contexts_", "unstruct_event_", "page_", "refr_"))
            ):
                clean[k] = "<redacted>"
            else:
                clean[k] = v
        try:
            return _cut(orjson.dumps(clean).decode())
        except TypeError:  # nested deeper than orjson writes (it reads deeper than it writes)
            clean = {k: v if isinstance(v, (str, int, float, bool)) or v is None else "<withheld>"
                     for k, v in clean.items()}  # fmt: skip
            return _cut(orjson.dumps(clean).decode())
    if pseudonymize is not None:
        return f"<{len(value)} bytes withheld: raw input of unknown layout>"
    return _cut(text)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_PAYLOAD_CHARS else text[:MAX_PAYLOAD_CHARS] + "…"


__all__ = [
    "ACCELERATOR_JSON",
    "SDK_CONTEXTS",
    "SDK_JSON",
    "SDK_MEDIA_EVENTS",
    "TSV",
    "InputDecoder",
    "InputError",
    "accelerator_event",
    "detect_format",
    "redacted_payload",
    "sdk_event",
    "sdk_key",
]
