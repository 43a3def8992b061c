"""The Snowplow enriched event: 131 tab-separated columns in Snowplow's order.

One module owns the layout. The collector writes lines with :func:`to_tsv`; the profiles consumer
reads lines from our collector or from a real Snowplow enrich / Snowbridge pipeline with
:func:`from_tsv`. JSON columns (``contexts``, ``unstruct_event``, ``derived_contexts``) hold the
self-describing JSON as Snowplow writes it. Timestamps are ``YYYY-MM-DD HH:MM:SS.mmm`` in UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
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


def parse_tstamp(value: str) -> float:
    """``2024-11-16 13:33:22.625`` (or ISO-8601 with ``T``/``Z``) -> epoch seconds."""
    # fast path (the hot loop of `lvp profiles`): exactly ``YYYY-MM-DD HH:MM:SS.mmm`` or
    # ``YYYY-MM-DDTHH:MM:SS.mmmZ``; same float as the strptime path below, which handles the rest
    n = len(value)
    if (n == 23 or (n == 24 and value[23] == "Z")) and value[19] == "." and value.isascii():
        day = _DAY_EPOCH.get(value[:10])
        if day is None and value[10] in " T":
            try:
                day = int(datetime.strptime(value[:10], "%Y-%m-%d").replace(tzinfo=UTC).timestamp())
            except ValueError:
                day = None
            else:
                if len(_DAY_EPOCH) >= 4096:
                    _DAY_EPOCH.clear()
                _DAY_EPOCH[value[:10]] = day
        h, mi, s, ms = value[11:13], value[14:16], value[17:19], value[20:23]
        if (
            day is not None
            and value[10] in " T" and value[13] == ":" and value[16] == ":"
            and h.isdigit() and mi.isdigit() and s.isdigit() and ms.isdigit()
            and int(h) < 24 and int(mi) < 60 and int(s) < 60
        ):  # fmt: skip
            return ((day + int(h) * 3600 + int(mi) * 60 + int(s)) * 1000 + int(ms)) / 1000
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


def looks_like_tsv(payload: bytes) -> bool:
    """Cheap format sniff: an enriched line has exactly 130 tabs."""
    return payload.count(b"\t") == N_FIELDS - 1
