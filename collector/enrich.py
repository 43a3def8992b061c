"""One decoded event -> one Snowplow enriched event (131-column TSV, :mod:`lvp.enriched` layout).

What is filled: timestamps (``collector_tstamp``, ``etl_tstamp``, ``dvce_created_tstamp``,
``dvce_sent_tstamp``, ``true_tstamp``, ``derived_tstamp`` by Snowplow's formula), event and tracker
fields, ``event_vendor/name/format/version``, ``v_collector``/``v_etl``, pseudonymized identifiers,
the anonymized IP, user agent, page and referrer URL parts (``_sp`` stripped, user info removed,
query and fragment values kept, pseudonymized or removed by :mod:`collector.urlscrub`), browser/
screen/document fields, structured-event fields, and the ``contexts`` / ``unstruct_event`` JSON.
``page_title`` and the e-commerce ``tr_*``/``ti_*`` fields are dropped unless
``LVP_KEEP_PAGE_TITLE`` / ``LVP_KEEP_TRANSACTION_FIELDS``. The line is built column by column
with :data:`lvp.enriched.INDEX` and cleaned exactly as :func:`lvp.enriched.to_tsv` cleans
(tabs/newlines -> spaces); a test keeps the two equal.
"""

from __future__ import annotations

import operator
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import SplitResult, urlsplit

import orjson

from collector import COLLECTOR_VERSION, ETL_VERSION
from collector.columns import PARAMS, put
from collector.identity import Identities, RequestIdentity, forms_in
from collector.protocol import EVENT_TYPES, MAX_MS, SP_VENDOR, DecodedEvent
from lvp.cache import BoundedCache
from lvp.enriched import INDEX, N_FIELDS
from lvp.events import CONTEXTS_SCHEMA, UNSTRUCT_SCHEMA, viewer_id_of
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
# the parts after the URL itself are adjacent columns: written as one slice
_PAGE_PARTS: Final = slice(_PAGE_URL[1], _PAGE_URL[-1] + 1)
_REFR_PARTS: Final = slice(_REFR_URL[1], _REFR_URL[-1] + 1)
assert _PAGE_URL[1:] == tuple(range(_PAGE_PARTS.start, _PAGE_PARTS.stop))
assert _REFR_URL[1:] == tuple(range(_REFR_PARTS.start, _REFR_PARTS.stop))
I_APP_ID = INDEX["app_id"]
I_PAGE_URL = INDEX["page_url"]
I_REFERRER = INDEX["page_referrer"]
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
I_PAGE_TITLE = INDEX["page_title"]
#: The e-commerce columns (order id, affiliation, city, state, country, items, amounts).
TRANSACTION_COLUMNS: Final = tuple(i for c, i in INDEX.items() if c.startswith(("tr_", "ti_")))

_CONTEXTS_HEAD: Final = b'{"schema":"' + CONTEXTS_SCHEMA.encode() + b'","data":'
_UNSTRUCT_HEAD: Final = b'{"schema":"' + UNSTRUCT_SCHEMA.encode() + b'","data":'
_CLEAN: Final = str.maketrans({"\t": " ", "\n": " ", "\r": " "})
_JSON_COLUMNS: Final = frozenset((I_CONTEXTS, I_UNSTRUCT))
_DEFAULT_PORTS: Final = {"http": "80", "https": "443"}


# --- timestamps ---------------------------------------------------------------------------------

_SECONDS: dict[int, str] = {}
_MILLIS: Final = tuple(f"{i:03d}" for i in range(1000))


def tstamp(ms: int) -> str:
    """Epoch ms -> ``2024-11-16 13:33:22.625`` (UTC); same output as :func:`lvp.enriched.format_tstamp`,
    cached per second for the hot path."""
    sec, milli = divmod(ms, 1000)
    head = _SECONDS.get(sec)
    if head is None:
        if len(_SECONDS) > 4096:
            _SECONDS.clear()
        head = _SECONDS[sec] = time.strftime("%Y-%m-%d %H:%M:%S.", time.gmtime(sec))
    return head + _MILLIS[milli]


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


_URL_CACHE: BoundedCache[str, tuple[str, ...]] = BoundedCache(10_000)


def url_parts(
    raw: str,
    scrub: Callable[[str], str] | None = None,
    cache: BoundedCache[str, tuple[str, ...]] | None = None,
) -> tuple[tuple[str, ...], str | None]:
    """(url without ``_sp``, scheme, host, port, path, query, fragment), and the ``_sp`` value.
    Unparseable URLs keep the (stripped) URL with empty parts. ``scrub`` (the collector's
    :class:`collector.urlscrub.UrlScrubber`) is applied after ``_sp`` is taken out; ``cache`` must
    belong to that scrubber."""
    if cache is None:
        cache = _URL_CACHE
    hit = cache.get(raw)
    if hit is not None and "_sp=" not in raw:
        return hit, None
    url, sp = strip_sp(raw)
    if scrub is not None:
        url = scrub(url)
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
        cache.put(raw, parts)
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


def columns_holding(line: str, forms: list[str]) -> set[int]:
    """Indexes of the columns of the TSV ``line`` (as :func:`join_columns` made it) that hold, or
    share, an occurrence of one of ``forms``."""
    out: set[int] = set()
    for form in forms:
        start = line.find(form)
        while start != -1:
            first = line.count("\t", 0, start)
            out.update(range(first, first + form.count("\t") + 1))
            start = line.find(form, start + 1)
    return out


# --- the enricher -------------------------------------------------------------------------------


class Enricher:
    """Builds enriched lines; holds the pseudonymizer (via :class:`Identities`)."""

    def __init__(self, identities: Identities) -> None:
        self.identities = identities
        #: page and referrer URL -> its parts (a site's pages, or one per viewer when URLs carry ids)
        self._url_cache: BoundedCache[str, tuple[str, ...]] = BoundedCache(identities.viewer_cache_size)
        # page title and e-commerce fields: free text and order data, dropped unless kept
        self._dropped = (() if identities.keep_page_title else (I_PAGE_TITLE,)) + (
            () if identities.keep_transaction_fields else TRANSACTION_COLUMNS
        )
        self._dropped_of = operator.itemgetter(*self._dropped) if len(self._dropped) > 1 else None

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
        entities, text = ev.entities, ev.co_text
        if entities is None and text is not None and "client_session" in text:
            entities = orjson.loads(text)["data"]  # (validated, not parsed: see DecodedEvent)
        if entities:
            # entity identifiers (client_session.userId) are rare: skip the walk when the text says so
            changed = (text is None or "client_session" in text) and self.identities.pseudonymize_entities(
                entities
            )
            if changed or text is None:
                text = (_CONTEXTS_HEAD + orjson.dumps(entities) + b"}").decode()
            cols[I_CONTEXTS] = text
        elif entities is None and text:
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

        if self._dropped_of is not None and any(self._dropped_of(cols)):  # one C call when all empty
            for i in self._dropped:
                cols[i] = ""
        elif self._dropped:
            cols[self._dropped[0]] = ""

        # URLs (query and fragment values scrubbed: collector.urlscrub)
        scrub, cache = self.identities.urls, self._url_cache
        url = get("url")
        if url:
            parts, sp = url_parts(url, scrub, cache)
            cols[I_PAGE_URL] = parts[0]
            cols[_PAGE_PARTS] = parts[1:]
            if sp:
                refr_duid, _, refr_ts = sp.partition(".")
                if refr_duid:
                    cols[I_REFR_DUID] = p(refr_duid)
                if refr_ts.isdigit() and int(refr_ts) <= MAX_MS:
                    cols[I_REFR_DVCE] = tstamp(int(refr_ts))
        refr = get("refr")
        if refr:
            parts, _ = url_parts(refr, scrub, cache)
            cols[I_REFERRER] = parts[0]
            cols[_REFR_PARTS] = parts[1:]

        line = join_columns(cols)
        pairs, probes = self.identities.scrub_targets(params, ident)
        # the forms of raw values found in the line (usually none: one substring test per probe)
        found = (
            [(raw, rep, forms) for raw, rep in pairs if (forms := forms_in(raw, line))]
            if any(probe in line for probe in probes)
            else None
        )
        if found:
            # column by column, before the TSV cleaning: a raw value may contain tabs or span
            # JSON syntax, so a scrub of the joined line could break the line or its JSON; only
            # the raw values found, and only the columns holding one of their forms
            ids = self.identities
            raws = [(raw, rep) for raw, rep, _ in found]
            for i in columns_holding(line, [form for _, _, forms in found for form in forms]):
                c = cols[i]
                if c:
                    cols[i] = ids.scrub_json_text(c, raws) if i in _JSON_COLUMNS else ids.scrub(c, raws)
            line = join_columns(cols)
        return viewer_id_of(uid, duid, nuid), line.encode()
