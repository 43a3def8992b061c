"""One decoded event -> one Snowplow enriched event (131-column TSV, :mod:`lvp.enriched` layout).

What is filled: timestamps (``collector_tstamp``, ``etl_tstamp``, ``dvce_created_tstamp``,
``dvce_sent_tstamp``, ``true_tstamp``, ``derived_tstamp`` by Snowplow's formula), event and tracker
fields, ``event_vendor/name/format/version``, ``v_collector``/``v_etl``, pseudonymized identifiers,
the anonymized IP, user agent, page and referrer URL parts (``_sp`` stripped), browser/screen/
document fields, structured-event and e-commerce fields, and the ``contexts`` / ``unstruct_event``
JSON. The line is built column by column with :data:`lvp.enriched.INDEX` and cleaned exactly as
:func:`lvp.enriched.to_tsv` cleans (tabs/newlines -> spaces); a test keeps the two equal.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import SplitResult, urlsplit

import orjson

from collector import COLLECTOR_VERSION, ETL_VERSION
from collector.columns import PARAMS, put
from collector.identity import Identities, RequestIdentity
from collector.protocol import CONTEXTS_URI, EVENT_TYPES, MAX_MS, SP_VENDOR, UNSTRUCT_URI, DecodedEvent
from lvp.enriched import INDEX, N_FIELDS
from lvp.events import viewer_id_of
from lvp.pseudonym import anonymize_ip

#: Schema of the non-self-describing event types (Snowplow enrich's values).
EVENT_SCHEMAS: Final[dict[str, tuple[str, str, str, str]]] = {
    "pv": (SP_VENDOR, "page_view", "jsonschema", "1-0-0"),
    "pp": (SP_VENDOR, "page_ping", "jsonschema", "1-0-0"),
    "se": ("com.google.analytics", "event", "jsonschema", "1-0-0"),
    "tr": (SP_VENDOR, "transaction", "jsonschema", "1-0-0"),
    "ti": (SP_VENDOR, "transaction_item", "jsonschema", "1-0-0"),
}

_PAGE_URL: Final = tuple(
    INDEX[c]
    for c in ("page_url", "page_urlscheme", "page_urlhost", "page_urlport", "page_urlpath", "page_urlquery",
              "page_urlfragment")
)  # fmt: skip
_REFR_URL: Final = tuple(
    INDEX[c]
    for c in ("page_referrer", "refr_urlscheme", "refr_urlhost", "refr_urlport", "refr_urlpath",
              "refr_urlquery", "refr_urlfragment")
)  # fmt: skip
I_APP_ID = INDEX["app_id"]
I_ETL = INDEX["etl_tstamp"]
I_COLLECTOR = INDEX["collector_tstamp"]
I_DVCE_CREATED = INDEX["dvce_created_tstamp"]
I_DVCE_SENT = INDEX["dvce_sent_tstamp"]
I_TRUE = INDEX["true_tstamp"]
I_DERIVED = INDEX["derived_tstamp"]
I_EVENT = INDEX["event"]
I_EVENT_ID = INDEX["event_id"]
I_V_COLLECTOR = INDEX["v_collector"]
I_V_ETL = INDEX["v_etl"]
I_USER_ID = INDEX["user_id"]
I_IP = INDEX["user_ipaddress"]
I_FINGERPRINT = INDEX["user_fingerprint"]
I_DOMAIN_USERID = INDEX["domain_userid"]
I_NETWORK_USERID = INDEX["network_userid"]
I_USERAGENT = INDEX["useragent"]
I_CONTEXTS = INDEX["contexts"]
I_UNSTRUCT = INDEX["unstruct_event"]
I_VENDOR = INDEX["event_vendor"]
I_NAME = INDEX["event_name"]
I_FORMAT = INDEX["event_format"]
I_VERSION = INDEX["event_version"]
I_REFR_DUID = INDEX["refr_domain_userid"]
I_REFR_DVCE = INDEX["refr_device_tstamp"]

_CONTEXTS_HEAD: Final = b'{"schema":"' + CONTEXTS_URI.encode() + b'","data":'
_UNSTRUCT_HEAD: Final = b'{"schema":"' + UNSTRUCT_URI.encode() + b'","data":'
_CLEAN: Final = str.maketrans({"\t": " ", "\n": " ", "\r": " "})
_JSON_COLUMNS: Final = frozenset((I_CONTEXTS, I_UNSTRUCT))
_DEFAULT_PORTS: Final = {"http": "80", "https": "443"}


# --- timestamps ---------------------------------------------------------------------------------

_SECONDS: dict[int, str] = {}


def tstamp(ms: int) -> str:
    """Epoch ms -> ``2024-11-16 13:33:22.625`` (UTC); same output as :func:`lvp.enriched.format_tstamp`,
    cached per second for the hot path."""
    sec, milli = divmod(ms, 1000)
    head = _SECONDS.get(sec)
    if head is None:
        if len(_SECONDS) > 4096:
            _SECONDS.clear()
        head = _SECONDS[sec] = time.strftime("%Y-%m-%d %H:%M:%S.", time.gmtime(sec))
    return f"{head}{milli:03d}"


def derived_ms(collector_ms: int, dtm: int | None, stm: int | None, ttm: int | None) -> int:
    """Snowplow's derived timestamp: the true timestamp when sent; else the device's created time
    corrected for its clock skew, ``collector - (dvce_sent - dvce_created)``; else the collector's."""
    if ttm is not None:
        return ttm
    if dtm is not None and stm is not None and dtm <= stm:
        derived = collector_ms - (stm - dtm)
        if 0 <= derived <= MAX_MS:
            return derived
    return collector_ms


# --- URLs ---------------------------------------------------------------------------------------


def strip_sp(url: str) -> tuple[str, str | None]:
    """Remove the ``_sp`` cross-domain linker parameter; returns (url, its value or None)."""
    if "_sp=" not in url:
        return url, None
    base, hash_, fragment = url.partition("#")
    path, q, query = base.partition("?")
    if not q:
        return url, None
    kept, value = [], None
    for part in query.split("&"):
        if part.startswith("_sp="):
            value = part[4:] if value is None else value
        else:
            kept.append(part)
    out = path + ("?" + "&".join(kept) if kept else "")
    return out + hash_ + fragment, value


_URL_CACHE: dict[str, tuple[str, ...]] = {}


def url_parts(raw: str) -> tuple[tuple[str, ...], str | None]:
    """(url without ``_sp``, scheme, host, port, path, query, fragment), and the ``_sp`` value.
    Unparseable URLs keep the (stripped) URL with empty parts."""
    hit = _URL_CACHE.get(raw)
    if hit is not None and "_sp=" not in raw:
        return hit, None
    url, sp = strip_sp(raw)
    try:
        s: SplitResult = urlsplit(url)
        port = s.port
        scheme = s.scheme.lower()
        parts: tuple[str, ...] = (
            url,
            scheme,
            s.hostname or "",
            str(port) if port is not None else _DEFAULT_PORTS.get(scheme, "") if s.hostname else "",
            s.path,
            s.query,
            s.fragment,
        )
    except ValueError:
        parts = (url, "", "", "", "", "", "")
    if sp is None:
        if len(_URL_CACHE) > 10_000:
            _URL_CACHE.clear()
        _URL_CACHE[raw] = parts
    return parts, sp


def parameter_columns(params: Mapping[str, Any]) -> list[str]:
    """The columns the (already checked) parameters fill directly."""
    cols = [""] * N_FIELDS
    for name, value in params.items():
        spec = PARAMS.get(name)
        if spec is not None and value and isinstance(value, str):
            put(cols, spec[1], spec[2], spec[3], value)
    return cols


def join_columns(cols: list[str]) -> str:
    """The TSV line of 131 string columns, exactly as :func:`lvp.enriched.to_tsv` writes it (tabs
    and newlines inside values become spaces), but cleaning only when a value needs it."""
    line = "\t".join(cols)
    if line.count("\t") != N_FIELDS - 1 or "\n" in line or "\r" in line:
        line = "\t".join(c.translate(_CLEAN) for c in cols)
    return line


def columns_holding(cols: list[str], raws: list[str]) -> list[int]:
    """The indexes of the non-empty columns that contain one of ``raws`` as it is, and of the JSON
    columns holding a backslash (a raw value may be escaped there), in order. Found by searching
    the columns joined with tabs once (a raw value without a tab lies inside one column), not
    every column for every raw value; when a column or a raw value holds a tab (or a raw value is
    empty) the search goes column by column."""
    joined = "\t".join(cols)
    if joined.count("\t") != len(cols) - 1 or any(not raw or "\t" in raw for raw in raws):
        return [
            i
            for i, c in enumerate(cols)
            if c and (any(raw in c for raw in raws) or (i in _JSON_COLUMNS and "\\" in c))
        ]
    hits = {i for i in _JSON_COLUMNS if "\\" in cols[i]}
    for raw in raws:
        pos = joined.find(raw)
        while pos >= 0:
            hits.add(joined.count("\t", 0, pos))
            pos = joined.find(raw, pos + 1)
    return sorted(hits)


# --- the enricher -------------------------------------------------------------------------------


class Enricher:
    """Builds enriched lines; holds the pseudonymizer (via :class:`Identities`)."""

    def __init__(self, identities: Identities) -> None:
        self.identities = identities

    def enrich(
        self,
        ev: DecodedEvent,
        ident: RequestIdentity,
        collector_ms: int,
        useragent: str,
        collector_tstamp: str | None = None,
    ) -> tuple[str, bytes]:
        """(viewer id, enriched TSV line as UTF-8 bytes). ``collector_tstamp`` is
        ``tstamp(collector_ms)`` when the caller has it already (one per request)."""
        params: Mapping[str, Any] = ev.params
        get = params.get
        p = self.identities.pseudonym
        cols = ev.cols if ev.cols is not None else parameter_columns(params)

        # timestamps (etl = collector: this collector enriches as it receives)
        cols[I_COLLECTOR] = cols[I_ETL] = collector_tstamp or tstamp(collector_ms)
        dtm, stm, ttm = ev.dtm, ev.stm, ev.ttm
        if dtm is not None:
            cols[I_DVCE_CREATED] = tstamp(dtm)
        if stm is not None:
            cols[I_DVCE_SENT] = tstamp(stm)
        if ttm is not None:
            cols[I_TRUE] = cols[I_DERIVED] = tstamp(ttm)
        else:
            derived = derived_ms(collector_ms, dtm, stm, None)
            cols[I_DERIVED] = cols[I_COLLECTOR] if derived == collector_ms else tstamp(derived)

        # event
        e = ev.event_type
        cols[I_EVENT] = EVENT_TYPES[e]
        cols[I_EVENT_ID] = (get("eid") or "").lower() or str(uuid.uuid4())
        cols[I_V_COLLECTOR] = COLLECTOR_VERSION
        cols[I_V_ETL] = ETL_VERSION
        if ev.ue is not None and ev.ue_key is not None:
            cols[I_VENDOR], cols[I_NAME], cols[I_FORMAT], cols[I_VERSION] = ev.ue_key
            cols[I_UNSTRUCT] = ev.ue_text or (_UNSTRUCT_HEAD + orjson.dumps(ev.ue) + b"}").decode()
        elif e in EVENT_SCHEMAS:
            cols[I_VENDOR], cols[I_NAME], cols[I_FORMAT], cols[I_VERSION] = EVENT_SCHEMAS[e]
        if ev.entities:
            text = ev.co_text
            # entity identifiers (client_session.userId) are rare: skip the walk when the text says so
            changed = (text is None or "client_session" in text) and self.identities.pseudonymize_entities(
                ev.entities
            )
            if changed or text is None:
                text = (_CONTEXTS_HEAD + orjson.dumps(ev.entities) + b"}").decode()
            cols[I_CONTEXTS] = text

        # identity
        uid = p(get("uid") or "")
        duid = p(get("duid") or "")
        tnuid = get("tnuid")
        nuid = p(tnuid) if tnuid else ident.nuid_pseudonym
        cols[I_USER_ID] = uid
        cols[I_DOMAIN_USERID] = duid
        cols[I_NETWORK_USERID] = nuid
        fp = get("fp")
        if fp:
            cols[I_FINGERPRINT] = p(fp)
        if not ident.anonymous:
            ip_param = get("ip")
            cols[I_IP] = anonymize_ip(ip_param) if ip_param else ident.ip_anonymized
        cols[I_USERAGENT] = get("ua") or useragent

        # URLs
        url = get("url")
        if url:
            parts, sp = url_parts(url)
            for idx, value in zip(_PAGE_URL, parts, strict=True):
                cols[idx] = value
            if sp:
                refr_duid, _, refr_ts = sp.partition(".")
                if refr_duid:
                    cols[I_REFR_DUID] = p(refr_duid)
                if refr_ts.isdigit() and int(refr_ts) <= MAX_MS:
                    cols[I_REFR_DVCE] = tstamp(int(refr_ts))
        refr = get("refr")
        if refr:
            parts, _ = url_parts(refr)
            for idx, value in zip(_REFR_URL, parts, strict=True):
                cols[idx] = value

        line = join_columns(cols)
        pairs = self.identities.scrub_pairs(params, ident)
        if pairs and self.identities.appears(line, pairs):
            # column by column, before the TSV cleaning: a raw value may contain tabs or span
            # JSON syntax, so a scrub of the joined line could break the line or its JSON
            ids = self.identities
            raws = [raw for raw, _ in pairs]
            for i in columns_holding(cols, raws):
                # a column holding no raw value is left as it is (JSON without escapes included:
                # its strings are then verbatim parts of its text)
                c = cols[i]
                cols[i] = ids.scrub_json_text(c, pairs) if i in _JSON_COLUMNS else ids.scrub(c, pairs)
            line = join_columns(cols)
        return viewer_id_of(uid, duid, nuid), line.encode()
