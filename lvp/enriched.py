"""The Snowplow enriched event: 131 tab-separated columns in Snowplow's order.

One module owns the layout. The collector writes lines with :func:`to_tsv`; the profiles consumer
reads lines from our collector or from a real Snowplow enrich / Snowbridge pipeline with
:func:`from_tsv` (or, in its hot loop, a :class:`ColumnPicker`: the same, for a dozen columns).
JSON columns (``contexts``, ``unstruct_event``, ``derived_contexts``) hold the self-describing
JSON as Snowplow writes it. Timestamps are ``YYYY-MM-DD HH:MM:SS.mmm`` in UTC.

This module is also the one home of the timestamp helpers every component uses: the TSV form
(:func:`format_tstamp`), the profile's ISO-8601 form ``2024-11-16T13:33:22.625Z`` (:func:`iso`,
:func:`iso_from_tstamp`), and epoch seconds from either form (:func:`parse_tstamp`, which raises,
and :func:`epoch_of`, which answers None).
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

FIELDS: tuple[str, ...] = (
    "app_id", "platform", "etl_tstamp", "collector_tstamp", "dvce_created_tstamp", "event",
    "event_id", "txn_id", "name_tracker", "v_tracker", "v_collector", "v_etl", "user_id",
    "user_ipaddress", "user_fingerprint", "domain_userid", "domain_sessionidx", "network_userid",
    "geo_country", "geo_region", "geo_city", "geo_zipcode", "geo_latitude", "geo_longitude",
    "geo_region_name", "ip_isp", "ip_organization", "ip_domain", "ip_netspeed", "page_url",
    "page_title", "page_referrer", "page_urlscheme", "page_urlhost", "page_urlport",
    "page_urlpath", "page_urlquery", "page_urlfragment", "refr_urlscheme", "refr_urlhost",
    "refr_urlport", "refr_urlpath", "refr_urlquery", "refr_urlfragment", "refr_medium",
    "refr_source", "refr_term", "mkt_medium", "mkt_source", "mkt_term", "mkt_content",
    "mkt_campaign", "contexts", "se_category", "se_action", "se_label", "se_property", "se_value",
    "unstruct_event", "tr_orderid", "tr_affiliation", "tr_total", "tr_tax", "tr_shipping",
    "tr_city", "tr_state", "tr_country", "ti_orderid", "ti_sku", "ti_name", "ti_category",
    "ti_price", "ti_quantity", "pp_xoffset_min", "pp_xoffset_max", "pp_yoffset_min",
    "pp_yoffset_max", "useragent", "br_name", "br_family", "br_version", "br_type",
    "br_renderengine", "br_lang", "br_features_pdf", "br_features_flash", "br_features_java",
    "br_features_director", "br_features_quicktime", "br_features_realplayer",
    "br_features_windowsmedia", "br_features_gears", "br_features_silverlight", "br_cookies",
    "br_colordepth", "br_viewwidth", "br_viewheight", "os_name", "os_family", "os_manufacturer",
    "os_timezone", "dvce_type", "dvce_ismobile", "dvce_screenwidth", "dvce_screenheight",
    "doc_charset", "doc_width", "doc_height", "tr_currency", "tr_total_base", "tr_tax_base",
    "tr_shipping_base", "ti_currency", "ti_price_base", "base_currency", "geo_timezone",
    "mkt_clickid", "mkt_network", "etl_tags", "dvce_sent_tstamp", "refr_domain_userid",
    "refr_device_tstamp", "derived_contexts", "domain_sessionid", "derived_tstamp",
    "event_vendor", "event_name", "event_format", "event_version", "event_fingerprint",
    "true_tstamp",
)  # fmt: skip

N_FIELDS = len(FIELDS)  # 131
INDEX: dict[str, int] = {name: i for i, name in enumerate(FIELDS)}

TIMESTAMP_FIELDS = frozenset(
    ("etl_tstamp", "collector_tstamp", "dvce_created_tstamp", "dvce_sent_tstamp",
     "refr_device_tstamp", "derived_tstamp", "true_tstamp")
)  # fmt: skip
INT_FIELDS = frozenset(
    ("txn_id", "domain_sessionidx", "page_urlport", "refr_urlport", "ti_quantity",
     "pp_xoffset_min", "pp_xoffset_max", "pp_yoffset_min", "pp_yoffset_max", "br_viewwidth",
     "br_viewheight", "dvce_screenwidth", "dvce_screenheight", "doc_width", "doc_height")
)  # fmt: skip
BOOL_FIELDS = frozenset(
    ("br_features_pdf", "br_features_flash", "br_features_java", "br_features_director",
     "br_features_quicktime", "br_features_realplayer", "br_features_windowsmedia",
     "br_features_gears", "br_features_silverlight", "br_cookies", "dvce_ismobile")
)  # fmt: skip
DOUBLE_FIELDS = frozenset(
    ("geo_latitude", "geo_longitude", "tr_total", "tr_tax", "tr_shipping", "ti_price",
     "tr_total_base", "tr_tax_base", "tr_shipping_base", "ti_price_base")
)  # fmt: skip
JSON_FIELDS = frozenset(("contexts", "unstruct_event", "derived_contexts"))

# Identifier columns: pseudonymized by the collector, by `--pseudonymize-input` in profiles.
IDENTIFIER_FIELDS = ("user_id", "domain_userid", "network_userid", "user_fingerprint", "refr_domain_userid")

_CLEAN = str.maketrans({"\t": " ", "\n": " ", "\r": " "})


class EnrichedFormatError(ValueError):
    """A line is not a 131-column enriched event."""


def format_tstamp(ms: int | float) -> str:
    """Epoch milliseconds -> ``2024-11-16 13:33:22.625`` (UTC)."""
    dt = datetime.fromtimestamp(int(ms) / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{int(ms) % 1000:03d}"


_DAY_EPOCH: dict[str, int] = {}
# "YYYY-MM-DD HH:MM:SS" (or with "T") -> epoch milliseconds of that second, for strings the fast
# path below has checked; events of one moment share their second, so most parses are one lookup
_SECOND_MS: dict[str, int] = {}
_MILLIS: dict[str, int] = {f"{i:03d}": i for i in range(1000)}  # "000".."999" (ASCII digits only)
_CACHE_MAX = 4096


def parse_tstamp(value: str) -> float:
    """``2024-11-16 13:33:22.625`` (or ISO-8601 with ``T``/``Z``) -> epoch seconds."""
    # fast path (the hot loop of `lvp profiles`): exactly ``YYYY-MM-DD HH:MM:SS.mmm`` or
    # ``YYYY-MM-DDTHH:MM:SS.mmmZ``; same float as the strptime path below, which handles the rest
    n = len(value)
    if (n == 23 or (n == 24 and value[23] == "Z")) and value[19] == ".":
        ms = _MILLIS.get(value[20:23])
        if ms is not None:
            second = _SECOND_MS.get(value[:19])
            if second is not None:
                return (second + ms) / 1000
    if (n == 23 or (n == 24 and value[23] == "Z")) and value[19] == "." and value.isascii():
        day = _DAY_EPOCH.get(value[:10])
        if day is None and value[10] in " T":
            try:
                day = int(datetime.strptime(value[:10], "%Y-%m-%d").replace(tzinfo=UTC).timestamp())
            except ValueError:
                day = None
            else:
                if len(_DAY_EPOCH) >= _CACHE_MAX:
                    _DAY_EPOCH.clear()
                _DAY_EPOCH[value[:10]] = day
        h, mi, s, ms_text = value[11:13], value[14:16], value[17:19], value[20:23]
        if (
            day is not None
            and value[10] in " T" and value[13] == ":" and value[16] == ":"
            and h.isdigit() and mi.isdigit() and s.isdigit() and ms_text.isdigit()
            and int(h) < 24 and int(mi) < 60 and int(s) < 60
        ):  # fmt: skip
            second = (day + int(h) * 3600 + int(mi) * 60 + int(s)) * 1000
            if len(_SECOND_MS) >= _CACHE_MAX:
                _SECOND_MS.clear()
            _SECOND_MS[value[:19]] = second
            return (second + int(ms_text)) / 1000
    v = value.strip().replace("T", " ").rstrip("Z")
    if "+" in v[10:]:
        v = v[: 10 + v[10:].index("+")]
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in v else "%Y-%m-%d %H:%M:%S"
    try:
        return datetime.strptime(v, fmt).replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise EnrichedFormatError(f"bad timestamp {value!r}") from None


def iso_from_tstamp(value: str) -> str:
    """Snowplow TSV timestamp -> ISO-8601 UTC (``2024-11-16T13:33:22.625Z``)."""
    return value.replace(" ", "T") + "Z" if value else ""


@lru_cache(maxsize=4096)
def _iso_second(secs: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))


def iso(ts: float) -> str:
    """Epoch seconds -> ``2024-11-16T13:33:22.625Z`` (UTC, milliseconds): the profile's form."""
    secs, frac = divmod(round(ts * 1000), 1000)
    return f"{_iso_second(secs)}.{frac:03d}Z"


def epoch_of(value: object) -> float | None:
    """A timestamp string in either form -> epoch seconds (:func:`parse_tstamp`); None for
    anything else (not a string, empty, not a timestamp)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_tstamp(value)
    except ValueError:  # (EnrichedFormatError is one)
        return None


def to_tsv(event: Mapping[str, Any]) -> str:
    """One enriched line from a mapping of column name -> value (missing columns are empty).

    Values must already be strings (JSON columns already encoded); tabs and newlines inside a
    value are replaced by spaces, as Snowplow enrich does, so a line is always 131 columns.
    """
    out = []
    get = event.get
    for name in FIELDS:
        v = get(name)
        if v is None or v == "":
            out.append("")
        elif isinstance(v, bool):
            out.append("1" if v else "0")
        else:
            out.append(str(v).translate(_CLEAN))
    return "\t".join(out)


def from_tsv(line: str | bytes, columns: tuple[str, ...] | None = None) -> dict[str, str]:
    """The non-empty columns of an enriched line, by name (raw strings, nothing converted);
    only those named in ``columns`` when given (a reader's hot path needs a dozen of 131)."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EnrichedFormatError(f"not UTF-8: {exc}") from None
    parts = line.rstrip("\r\n").split("\t")
    if len(parts) != N_FIELDS:
        raise EnrichedFormatError(f"expected {N_FIELDS} tab-separated fields, got {len(parts)}")
    if columns is not None:
        return {name: v for name in columns if (v := parts[INDEX[name]])}
    return {name: v for name, v in zip(FIELDS, parts, strict=True) if v}


class ColumnPicker:
    """Reads a fixed set of columns of enriched lines — :func:`from_tsv` for a hot loop.

    ``picker(line)`` returns the raw strings of the ``columns`` given at construction, in that
    order, ``""`` for an empty column, and raises exactly what :func:`from_tsv` raises for the same
    line. It does not make a string of every column: the line is split from the left up to the
    wanted column before the widest run of unwanted columns and from the right back to the wanted
    column after it; that run stays one string whose tabs are only counted.
    """

    __slots__ = ("_get", "_head", "_mid_tabs", "_tail")

    def __init__(self, columns: tuple[str, ...]) -> None:
        idx = [INDEX[name] for name in columns]  # KeyError for an unknown column
        if not idx:
            raise ValueError("no columns to pick")
        bounds = [-1, *sorted(set(idx)), N_FIELDS]
        gap = max(range(len(bounds) - 1), key=lambda k: bounds[k + 1] - bounds[k])
        head = bounds[gap] + 1  # columns 0..head-1 are split off from the left
        first_tail = bounds[gap + 1]
        if first_tail == head:  # no unwanted column at all: that column alone is the middle
            first_tail += 1
        self._head = head
        self._tail = N_FIELDS - first_tail  # the last `tail` columns are split off from the right
        self._mid_tabs = first_tail - head - 1  # tabs inside the middle
        # the parts list is: head columns, the rest (unused), the middle, the tail columns
        slots = [i if i < head else head + 1 if i < first_tail else i - first_tail + head + 2 for i in idx]
        get = operator.itemgetter(*slots)
        self._get: Callable[[list[str]], tuple[str, ...]] = (
            get if len(slots) > 1 else lambda parts: (get(parts),)
        )

    def __call__(self, line: str | bytes) -> tuple[str, ...]:
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise EnrichedFormatError(f"not UTF-8: {exc}") from None
        line = line.rstrip("\r\n")
        parts = line.split("\t", self._head)
        if len(parts) == self._head + 1:
            rest = parts[-1].rsplit("\t", self._tail)
            if len(rest) == self._tail + 1 and rest[0].count("\t") == self._mid_tabs:
                parts += rest
                return self._get(parts)
        raise EnrichedFormatError(f"expected {N_FIELDS} tab-separated fields, got {line.count(chr(9)) + 1}")


def looks_like_tsv(payload: bytes) -> bool:
    """Cheap format sniff: an enriched line has exactly 130 tabs."""
    return payload.count(b"\t") == N_FIELDS - 1
