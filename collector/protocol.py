"""Decoding the Snowplow tracker protocol: one event's parameters (strings) -> a checked
:class:`DecodedEvent`, or :class:`Rejected` with Snowplow-style failure messages.

Two kinds of failure, as Snowplow enrich reports them:

- ``tracker_protocol_violations``: a protocol field is missing or malformed (``e``, ``tv``, ``p``,
  ``eid``, timestamps, numbers, dimensions, base64 / JSON of ``ue_px``/``ue_pr``/``cx``/``co``).
  Messages: ``{"field", "value", "expectation"}``.
- ``schema_violations``: the self-describing event or an entity is not Iglu JSON, names an
  unknown schema, or does not validate. Messages: ``{"schemaKey", "error": {...}}`` with
  ``ValidationError`` data reports, ``ResolutionError``, ``NotIglu`` or ``CriterionMismatch``.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from collector.columns import (
    CHECK_DIM,
    CHECK_DOUBLE,
    CHECK_INT,
    CHECK_MS,
    CHECK_NONE,
    PARAMS,
    PUT_COPY,
    put,
)
from lvp.cache import BoundedCache
from lvp.enriched import N_FIELDS
from lvp.events import CONTEXTS_SCHEMA, UNSTRUCT_SCHEMA
from lvp.iglu import IgluError, Registry, SchemaKey, UnknownSchema

SP_VENDOR: Final = "com.snowplowanalytics.snowplow"
UNSTRUCT_PREFIX: Final = f"iglu:{SP_VENDOR}/unstruct_event/jsonschema/1-"
CONTEXTS_PREFIX: Final = f"iglu:{SP_VENDOR}/contexts/jsonschema/1-"
PAYLOAD_DATA_PREFIX: Final = f"iglu:{SP_VENDOR}/payload_data/jsonschema/1-"

#: tracker ``e`` -> enriched ``event`` column
EVENT_TYPES: Final[dict[str, str]] = {
    "pv": "page_view",
    "pp": "page_ping",
    "ue": "unstruct",
    "se": "struct",
    "tr": "transaction",
    "ti": "transaction_item",
}
PLATFORMS: Final = frozenset(("web", "mob", "pc", "srv", "app", "tv", "cnsl", "iot"))

MAX_MS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
INT_MAX: Final = 2_147_483_647

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
_DIM_RE = re.compile(r"^(\d{1,6})x(\d{1,6})\Z", re.ASCII)  # ASCII: no other scripts' digits
_INT_RE = re.compile(r"^-?\d{1,10}\Z", re.ASCII)
_MS_RE = re.compile(r"^\d{1,15}\Z", re.ASCII)
_DOUBLE_RE = re.compile(r"^-?\d{1,30}(?:\.\d{1,30})?(?:[eE][+-]?\d{1,3})?\Z", re.ASCII)
_B64_STD = str.maketrans("-_", "+/")
#: the parameters copied to their column as they are (no check): parameter -> column index
_COPIED_AS_IS: Final[dict[str, int]] = {
    name: i for name, (check, how, i, _) in PARAMS.items() if check == CHECK_NONE and how == PUT_COPY
}


#: well-formed dimensions seen (a few screen and window sizes come again and again) -> (w, h)
_DIMS: BoundedCache[str, tuple[str, str]] = BoundedCache(4096)


def _dims(value: str) -> tuple[str, str] | None:
    """(width, height) of a well-formed ``WIDTHxHEIGHT``, remembered; else None."""
    if _DIM_RE.match(value) is None:
        return None
    w, _, h = value.partition("x")
    return _DIMS.put(value, (w, h))


class Rejected(Exception):
    """An event that becomes a bad row of type ``kind`` with ``messages``."""

    def __init__(self, kind: str, messages: list[dict[str, Any]]) -> None:
        super().__init__(kind)
        self.kind = kind
        self.messages = messages


@dataclass(slots=True)
class DecodedEvent:
    """One event that passed every protocol and schema check. Numeric parameters are validated;
    the enricher copies their text as it is."""

    params: Mapping[str, str]
    event_type: str  # tracker code: pv, pp, ue, se, tr, ti
    dtm: int | None = None
    stm: int | None = None
    ttm: int | None = None
    ue: dict[str, Any] | None = None  # the inner self-describing event {"schema", "data"}
    ue_key: SchemaKey | None = None
    #: the entities; None when the typed check (lvp.iglu_typed) validated ``co_text`` without
    #: making dicts of them (parse ``co_text`` for them)
    entities: list[dict[str, Any]] | None = field(default_factory=list)
    # the JSON text of ue / co when it already is the enriched column (1-0-0 wrapper): reused as is
    ue_text: str | None = None
    co_text: str | None = None
    # the enriched columns the parameters fill directly (collector.columns), or None
    cols: list[str] | None = None


def b64url_decode(value: str) -> bytes:
    """base64url (or standard base64), with or without ``=`` padding; raises ``ValueError``."""
    text = value.strip().translate(_B64_STD)
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64url: {exc}") from None


def b64url_encode(data: bytes) -> str:
    """base64url without padding (what the JavaScript tracker sends)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _violation(name: str, value: str | None, expectation: str) -> dict[str, Any]:
    return {"field": name, "value": value, "expectation": expectation}


def _json_param(
    params: Mapping[str, Any], json_name: str, b64_name: str, errors: list[dict[str, Any]]
) -> tuple[Any, str | None]:
    """(JSON value, its text) of ``json_name`` (plain) or ``b64_name`` (base64url); (None, None)
    when absent or malformed (then ``errors`` says why)."""
    raw = params.get(json_name)
    if raw:
        if not isinstance(raw, str):
            return None, None  # reported by the type check
        try:
            return orjson.loads(raw), raw
        except orjson.JSONDecodeError as exc:
            errors.append(_violation(json_name, None, f"JSON: {exc}"))
            return None, None
    raw = params.get(b64_name)
    if raw:
        if not isinstance(raw, str):
            return None, None
        try:
            decoded = b64url_decode(raw)
        except ValueError as exc:
            errors.append(_violation(b64_name, None, f"base64url-encoded JSON: {exc}"))
            return None, None
        try:
            return orjson.loads(decoded), decoded.decode("utf-8")
        except (orjson.JSONDecodeError, UnicodeDecodeError) as exc:
            errors.append(_violation(b64_name, None, f"base64url-encoded JSON: {exc}"))
            return None, None
    return None, None


_E_EXPECTED: Final = "one of " + ", ".join(EVENT_TYPES)
_P_EXPECTED: Final = "one of " + ", ".join(sorted(PLATFORMS))


def _check_value(name: str, check: int, raw: str, ev: DecodedEvent, errors: list[dict[str, Any]]) -> bool:
    """Is ``raw`` well-formed for ``check``? Records the violation when not."""
    if check == CHECK_MS:
        if _MS_RE.match(raw) and int(raw) <= MAX_MS:
            setattr(ev, name, int(raw))
            return True
        errors.append(_violation(name, raw[:64], "epoch milliseconds (digits, before year 10000)"))
    elif check == CHECK_INT:
        if _INT_RE.match(raw) and -INT_MAX - 1 <= int(raw) <= INT_MAX:
            return True
        errors.append(_violation(name, raw[:64], "a 32-bit integer"))
    elif check == CHECK_DOUBLE:
        if _DOUBLE_RE.match(raw) and math.isfinite(float(raw)):
            return True
        errors.append(_violation(name, raw[:64], "a finite decimal number (e.g. 12.5)"))
    elif check == CHECK_DIM:
        if _DIM_RE.match(raw):
            return True
        errors.append(_violation(name, raw[:64], "WIDTHxHEIGHT in pixels (e.g. 1920x1080)"))
    else:
        return True
    return False


def check_protocol(
    params: Mapping[str, Any], *, parse_ue: bool = True, parse_co: bool = True
) -> tuple[DecodedEvent, Any, Any]:
    """Protocol checks; returns the event (without schema checks) and the decoded ``ue``/``co``
    JSON (``ue`` only when ``parse_ue``, ``co`` only when ``parse_co``). Raises :class:`Rejected`
    (``tracker_protocol_violations``) listing every violation."""
    errors: list[dict[str, Any]] = []
    e = params.get("e")
    ev = DecodedEvent(params=params, event_type=e if isinstance(e, str) else "")
    cols = ev.cols = [""] * N_FIELDS
    specs = PARAMS
    copied = _COPIED_AS_IS
    for name, value in params.items():
        if type(value) is not str:
            errors.append(_violation(name, None, f"a string (got {type(value).__name__})"))
            continue
        i = copied.get(name)  # the most common case first: copied without a check
        if i is not None:
            if value:
                cols[i] = value
            continue
        spec = specs.get(name)
        if spec is None or not value:
            continue
        check, how, i, j = spec
        if check == CHECK_MS and len(value) < 15 and value.isascii() and value.isdigit():
            setattr(ev, name, int(value))  # < 10**14 ms: before year 5138
        elif check == CHECK_INT and len(value) < 10 and value.isascii() and value.isdigit():
            pass  # below 10**9: a 32-bit integer
        elif check == CHECK_DIM and (dims := _DIMS.get(value) or _dims(value)) is not None:
            cols[i], cols[j] = dims
            continue
        elif check and not _check_value(name, check, value, ev, errors):
            continue
        if how == PUT_COPY:
            cols[i] = value
        elif how:
            put(cols, how, i, j, value)
    if not e or not isinstance(e, str):
        errors.append(_violation("e", None, "the event type, " + _E_EXPECTED))
    elif e not in EVENT_TYPES:
        errors.append(_violation("e", e[:64], _E_EXPECTED))
    tv = params.get("tv")
    if not tv or not isinstance(tv, str):
        errors.append(_violation("tv", None, "the tracker version"))
    elif len(tv) > 100:
        errors.append(_violation("tv", tv[:100], "at most 100 characters"))
    p = params.get("p")
    if not p or not isinstance(p, str):
        errors.append(_violation("p", None, "the platform, " + _P_EXPECTED))
    elif p not in PLATFORMS:
        errors.append(_violation("p", p[:64], _P_EXPECTED))
    eid = params.get("eid")
    if eid and isinstance(eid, str) and not _UUID_RE.match(eid):
        errors.append(_violation("eid", eid[:64], "a UUID"))

    ue_json = None
    if e == "ue":
        if not params.get("ue_pr") and not params.get("ue_px"):
            errors.append(
                _violation("ue_pr", None, "a self-describing event in ue_pr (JSON) or ue_px (base64url)")
            )
        elif parse_ue:
            ue_json, ev.ue_text = _json_param(params, "ue_pr", "ue_px", errors)
    co_json = None
    if parse_co:
        co_json, ev.co_text = _json_param(params, "co", "cx", errors)
    if errors:
        raise Rejected("tracker_protocol_violations", errors)
    return ev, ue_json, co_json


# --- schema checks -------------------------------------------------------------------------------


def _not_iglu(what: str, message: str) -> dict[str, Any]:
    return {"schemaKey": None, "error": {"error": "NotIglu", "message": f"{what}: {message}"}}


def _validate(registry: Registry, uri: Any, instance: Any, errors: list[dict[str, Any]]) -> bool:
    """The slow path: look the schema up (compiling it on first use), report failures."""
    try:
        validator = registry.validator(uri)
    except UnknownSchema:
        errors.append(
            {
                "schemaKey": uri,
                "error": {
                    "error": "ResolutionError",
                    "lookupHistory": [{"repository": "lvp-iglu", "errors": [{"error": "NotFound"}]}],
                },
            }
        )
        return False
    except IgluError as exc:
        errors.append({"schemaKey": uri, "error": {"error": "ResolutionError", "message": str(exc)}})
        return False
    if validator.is_valid(instance):
        return True
    reports = [f.as_dict() for f in validator.errors(instance)]
    errors.append({"schemaKey": uri, "error": {"error": "ValidationError", "dataReports": reports}})
    return False


def _wrapper(value: Any, prefix: str, what: str, errors: list[dict[str, Any]]) -> tuple[str, Any] | None:
    if not isinstance(value, dict) or not isinstance(value.get("schema"), str) or "data" not in value:
        errors.append(_not_iglu(what, "expected a JSON object with `schema` (Iglu URI) and `data`"))
        return None
    uri = value["schema"]
    if not uri.startswith(prefix):
        errors.append(
            {
                "schemaKey": uri,
                "error": {
                    "error": "CriterionMismatch",
                    "criterion": prefix + "*-*",
                    "message": f"{what} wrapper",
                },
            }
        )
        return None
    return uri, value["data"]


def check_schemas(ev: DecodedEvent, ue_json: Any, co_json: Any, registry: Registry) -> None:
    """Validate the self-describing event and every entity; fills ``ev.ue``/``ev.entities``.
    Raises :class:`Rejected` (``schema_violations``) listing every failure."""
    errors: list[dict[str, Any]] = []
    fast = registry.fast_checks
    if ev.event_type == "ue" and ue_json is not None:
        wrapped = _wrapper(ue_json, UNSTRUCT_PREFIX, "unstruct_event", errors)
        if wrapped is not None:
            uri, inner = wrapped
            check = fast.get(uri)
            if (check is not None and check(inner)) or _validate(registry, uri, inner, errors):
                inner_uri, data = inner["schema"], inner["data"]
                check = fast.get(inner_uri)
                if (check is not None and check(data)) or _validate(registry, inner_uri, data, errors):
                    ev.ue = inner
                    ev.ue_key = registry.key_of(inner_uri)
                    if uri != UNSTRUCT_SCHEMA or len(ue_json) != 2:  # other keys are dropped
                        ev.ue_text = None
    if co_json is not None:
        wrapped = _wrapper(co_json, CONTEXTS_PREFIX, "contexts", errors)
        if wrapped is not None:
            uri, entities = wrapped
            check = fast.get(uri)
            if (check is not None and check(entities)) or _validate(registry, uri, entities, errors):
                ok = True
                for entity in entities:
                    entity_uri, data = entity["schema"], entity["data"]
                    check = fast.get(entity_uri)
                    if (check is None or not check(data)) and not _validate(
                        registry, entity_uri, data, errors
                    ):
                        ok = False
                if ok:
                    ev.entities = entities
                    if uri != CONTEXTS_SCHEMA or len(co_json) != 2:  # other keys are dropped
                        ev.co_text = None
    if errors:
        raise Rejected("schema_violations", errors)


def decode_event(params: Mapping[str, Any], registry: Registry) -> DecodedEvent:
    """Protocol and schema checks of one event; raises :class:`Rejected`."""
    ev, ue_json, co_json = check_protocol(params)
    check_schemas(ev, ue_json, co_json, registry)
    return ev


def _contexts_text(params: Mapping[str, Any]) -> str | None:
    """The JSON text of ``co`` (or of base64url ``cx``) as :func:`_json_param` reads it; None when
    absent or not decodable (that path then reports it)."""
    raw = params.get("co")
    if raw:
        return raw if type(raw) is str else None
    raw = params.get("cx")
    if not raw or type(raw) is not str:
        return None
    try:
        return b64url_decode(raw).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


class Decoder:
    """:func:`decode_event` bound to one registry, with two shortcuts that give the same events
    and bad rows:

    - it remembers the self-describing events it has validated: most media events carry
      byte-identical ``ue_pr``/``ue_px`` text (``play_event`` with ``{}``), which is then parsed
      and validated once, not per event (the registry does not change while a collector runs);
    - the contexts are checked by one typed decode (:mod:`lvp.iglu_typed`) when it can say they
      are valid; they are then not made into dicts (``DecodedEvent.entities`` is None). Anything
      it cannot say yes to takes the complete path."""

    MAX_MEMO = 4096

    def __init__(self, registry: Registry, *, typed: bool = True) -> None:
        self.registry = registry
        self._ue_memo: dict[str, tuple[dict[str, Any], SchemaKey, str | None]] = {}
        self._typed = registry.typed_contexts() if typed else None

    def decode(self, params: Mapping[str, Any]) -> DecodedEvent:
        memo = raw = None
        if params.get("e") == "ue":
            raw = params.get("ue_pr") or params.get("ue_px")
            if type(raw) is str:
                memo = self._ue_memo.get(raw)
        typed_text, n = None, None
        if self._typed is not None:
            typed_text = _contexts_text(params)
            if typed_text is not None:
                n = self._typed.check(typed_text)
        ev, ue_json, co_json = check_protocol(params, parse_ue=memo is None, parse_co=n is None)
        if n:  # valid: the entities stay text
            ev.co_text = typed_text
            ev.entities = None
        if memo is not None:
            ev.ue, ev.ue_key, ev.ue_text = memo
        check_schemas(ev, ue_json, co_json, self.registry)
        if memo is None and ev.ue is not None and ev.ue_key is not None and type(raw) is str:
            if len(self._ue_memo) >= self.MAX_MEMO:
                self._ue_memo.clear()
            self._ue_memo[raw] = (ev.ue, ev.ue_key, ev.ue_text)
        return ev
