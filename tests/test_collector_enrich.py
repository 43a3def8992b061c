from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from snowplow_analytics_sdk.event_transformer import transform

from collector import COLLECTOR_VERSION
from collector.enrich import Enricher, derived_ms, join_columns, strip_sp, tstamp, url_parts
from collector.identity import ANONYMOUS_NUID, Identities, uuid_shaped
from collector.protocol import MAX_MS, decode_event
from lvp.enriched import FIELDS, N_FIELDS, format_tstamp, from_tsv, to_tsv
from lvp.events import CONTEXTS_SCHEMA, UNSTRUCT_SCHEMA, from_enriched
from lvp.iglu import Registry
from lvp.pseudonym import pseudonymize

KEY = b"test-key"
SP = "com.snowplowanalytics.snowplow"
MEDIA = "com.snowplowanalytics.snowplow.media"
UID = "viewer-alice@example.com"
DUID = "143f9cb9-3db9-4e99-8d67-c8aea075d190"
COOKIE = "5b4c3d2e-1f00-4a5b-8c7d-9e8f7a6b5c4d"
IP = "203.0.113.77"
COLLECTOR_MS = 1_731_764_003_000


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


@pytest.fixture
def identities() -> Identities:
    return Identities(KEY)


def media_params(**extra: str) -> dict[str, str]:
    entities = [
        {
            "schema": "iglu:com.snowplowanalytics.snowplow/media_player/jsonschema/2-0-0",
            "data": {"currentTime": 12.5, "paused": False, "ended": False, "label": "Film", "volume": 80},
        },
        {
            "schema": f"iglu:{MEDIA}/session/jsonschema/1-0-0",
            "data": {"mediaSessionId": "ms-1", "timePlayed": 12.0},
        },
        {"schema": f"iglu:{MEDIA}/ad/jsonschema/1-0-0", "data": {"adId": "ad-7", "name": "Ad"}},
        {"schema": f"iglu:{MEDIA}/ad_break/jsonschema/1-0-0", "data": {"breakId": "b-1", "startTime": 0}},
        {
            "schema": "iglu:com.snowplowanalytics.snowplow/client_session/jsonschema/1-0-2",
            "data": {"userId": DUID, "sessionId": "0f3d2c1b-aaaa-4bbb-8ccc-123456789abc", "sessionIndex": 4,
                     "storageMechanism": "COOKIE_1"},
        },
    ]  # fmt: skip
    params = {
        "e": "ue",
        "tv": "js-4.0.1",
        "tna": "sp1",
        "aid": "site",
        "p": "web",
        "eid": "68859D61-0F9E-4E6D-89A6-9DF092D6F7EF",
        "dtm": "1731764002000",
        "stm": "1731764002400",
        "uid": UID,
        "duid": DUID,
        "vid": "4",
        "sid": "0f3d2c1b-aaaa-4bbb-8ccc-123456789abc",
        "ip": IP,
        "fp": "1234567890",
        "url": f"https://www.example.com:8443/watch/film?v=1&_sp={DUID}.1731764000000#t=5",
        "refr": "http://search.example/q?x=y",
        "page": "Film\tpage",
        "lang": "en-GB",
        "res": "1920x1080",
        "vp": "1280x720",
        "ds": "1280x3000",
        "cd": "24",
        "tz": "Europe/Lisbon",
        "cs": "UTF-8",
        "cookie": "1",
        "ue_pr": orjson.dumps(
            {"schema": UNSTRUCT_SCHEMA, "data": {"schema": f"iglu:{MEDIA}/ad_quartile_event/jsonschema/1-0-0",
                                              "data": {"percentProgress": 25}}}
        ).decode(),
        "co": orjson.dumps({"schema": CONTEXTS_SCHEMA, "data": entities}).decode(),
    }  # fmt: skip
    params.update(extra)
    return params


def enrich(
    params: dict[str, str], registry: Registry, identities: Identities, **headers: str
) -> tuple[str, str]:
    ident = identities.for_request(headers, {"sp": COOKIE}, "10.1.2.3", None)
    key, line = Enricher(identities).enrich(
        decode_event(params, registry), ident, COLLECTOR_MS, "Mozilla/5.0 (X)"
    )
    return key, line.decode()


def test_media_event_becomes_a_full_enriched_event(registry: Registry) -> None:
    # these URL parameters and the page title are kept on purpose (by default they are not)
    identities = Identities(KEY, url_keep=("v", "t", "x"), keep_page_title=True)
    key, line = enrich(media_params(), registry, identities)
    assert line.count("\t") == N_FIELDS - 1
    ev = transform(line)  # the Snowplow Analytics SDK parses it
    p = lambda raw: pseudonymize(raw, KEY)  # noqa: E731
    assert key == p(UID)
    assert ev["user_id"] == p(UID) and ev["domain_userid"] == p(DUID) and ev["network_userid"] == p(COOKIE)
    assert ev["user_fingerprint"] == p("1234567890") and ev["user_ipaddress"] == "203.0.113.x"
    assert ev["refr_domain_userid"] == p(DUID) and ev["refr_device_tstamp"] == "2024-11-16T13:33:20.000Z"
    assert ev["collector_tstamp"] == "2024-11-16T13:33:23.000Z" == ev["etl_tstamp"]
    assert ev["dvce_created_tstamp"] == "2024-11-16T13:33:22.000Z"
    assert ev["dvce_sent_tstamp"] == "2024-11-16T13:33:22.400Z"
    assert ev["derived_tstamp"] == "2024-11-16T13:33:22.600Z"  # collector - (sent - created)
    assert "true_tstamp" not in ev
    assert (ev["event"], ev["event_vendor"], ev["event_name"], ev["event_format"], ev["event_version"]) == (
        "unstruct", MEDIA, "ad_quartile_event", "jsonschema", "1-0-0")  # fmt: skip
    assert ev["event_id"] == "68859d61-0f9e-4e6d-89a6-9df092d6f7ef"
    assert ev["v_collector"] == COLLECTOR_VERSION and ev["v_etl"].startswith("lvp-enrich-")
    assert (ev["name_tracker"], ev["v_tracker"], ev["app_id"], ev["platform"]) == (
        "sp1",
        "js-4.0.1",
        "site",
        "web",
    )
    assert ev["useragent"] == "Mozilla/5.0 (X)"
    assert ev["page_url"] == "https://www.example.com:8443/watch/film?v=1#t=5"
    assert (ev["page_urlscheme"], ev["page_urlhost"], ev["page_urlport"], ev["page_urlpath"]) == (
        "https", "www.example.com", 8443, "/watch/film")  # fmt: skip
    assert (ev["page_urlquery"], ev["page_urlfragment"]) == ("v=1", "t=5")
    assert (ev["refr_urlhost"], ev["refr_urlport"], ev["refr_urlpath"], ev["refr_urlquery"]) == (
        "search.example", 80, "/q", "x=y")  # fmt: skip
    assert ev["page_title"] == "Film page"
    assert (ev["dvce_screenwidth"], ev["dvce_screenheight"], ev["br_viewwidth"], ev["doc_height"]) == (
        1920, 1080, 1280, 3000)  # fmt: skip
    assert (ev["br_cookies"], ev["br_lang"], ev["os_timezone"], ev["doc_charset"], ev["br_colordepth"]) == (
        True, "en-GB", "Europe/Lisbon", "UTF-8", "24")  # fmt: skip
    assert ev["domain_sessionidx"] == 4 and ev["domain_sessionid"] == "0f3d2c1b-aaaa-4bbb-8ccc-123456789abc"
    assert ev["unstruct_event_com_snowplowanalytics_snowplow_media_ad_quartile_event_1"] == {
        "percentProgress": 25
    }
    assert ev["contexts_com_snowplowanalytics_snowplow_media_player_2"][0]["currentTime"] == 12.5
    assert ev["contexts_com_snowplowanalytics_snowplow_media_ad_1"] == [{"adId": "ad-7", "name": "Ad"}]
    session = ev["contexts_com_snowplowanalytics_snowplow_client_session_1"][0]
    assert session["userId"] == uuid_shaped(p(DUID))  # pseudonymized, still a UUID
    cols = from_tsv(line)
    assert orjson.loads(cols["contexts"])["schema"] == CONTEXTS_SCHEMA
    # what the profiles consumer reads from it
    viewer = from_enriched(cols)
    assert viewer.viewer_id == p(UID) and viewer.name == "ad_quartile" and viewer.ad_id == "ad-7"
    assert (
        viewer.position_s == 12.5
        and viewer.media_session_id == "ms-1"
        and viewer.data == {"percentProgress": 25}
    )
    for raw in (UID, DUID, COOKIE, IP, "1234567890", "10.1.2.3", "_sp="):
        assert raw not in line


@pytest.mark.parametrize(
    ("e", "extra", "schema"),
    [
        ("pv", {}, (SP, "page_view")),
        ("pp", {"pp_mix": "0", "pp_max": "10", "pp_miy": "-5", "pp_may": "300"}, (SP, "page_ping")),
        ("se", {"se_ca": "video", "se_ac": "play", "se_va": "1.5"}, ("com.google.analytics", "event")),
        ("tr", {"tr_id": "o1", "tr_tt": "9.99", "tr_cu": "EUR"}, (SP, "transaction")),
        ("ti", {"ti_id": "o1", "ti_sk": "sku", "ti_pr": "2.5", "ti_qu": "3"}, (SP, "transaction_item")),
    ],
)  # fmt: skip
def test_other_event_types(
    registry: Registry, identities: Identities, e: str, extra: dict[str, str], schema: tuple[str, str]
) -> None:
    params = {"e": e, "tv": "py-1.1.0", "p": "srv", "duid": DUID, "url": "http://a.example/", **extra}
    key, line = enrich(params, registry, identities)
    ev = transform(line)
    assert key == pseudonymize(DUID, KEY)
    assert (ev["event_vendor"], ev["event_name"]) == schema
    assert ev["derived_tstamp"] == ev["collector_tstamp"]  # no device timestamps
    assert ev["page_urlport"] == 80 and "unstruct_event" not in line
    if e == "pp":
        assert (ev["pp_xoffset_max"], ev["pp_yoffset_min"]) == (10, -5)
    if e == "ti":  # e-commerce fields are dropped by default (issue #12)
        assert not any(k.startswith(("ti_", "tr_")) for k in ev)
        kept = transform(enrich(params, registry, Identities(KEY, keep_transaction_fields=True))[1])
        assert kept["ti_quantity"] == 3 and kept["ti_price"] == 2.5 and kept["ti_sku"] == "sku"


def test_network_user_id_tnuid_and_anonymous(registry: Registry, identities: Identities) -> None:
    params = {"e": "pv", "tv": "t", "p": "web", "ip": IP}
    ev = transform(enrich(params, registry, identities)[1])
    assert ev["network_userid"] == pseudonymize(COOKIE, KEY) and ev["user_ipaddress"] == "203.0.113.x"
    ev = transform(enrich({**params, "tnuid": "tracker-nuid-1"}, registry, identities)[1])
    assert ev["network_userid"] == pseudonymize("tracker-nuid-1", KEY)
    key, line = enrich(params, registry, identities, **{"sp-anonymous": "*"})
    ev = transform(line)
    assert key == ANONYMOUS_NUID == ev["network_userid"]
    assert "user_ipaddress" not in ev and IP not in line and "10.1.2." not in line
    # the client IP comes from the first X-Forwarded-For hop when the tracker sends none
    ev = transform(enrich({"e": "pv", "tv": "t", "p": "web"}, registry, identities,
                          **{"x-forwarded-for": "198.51.100.23, 10.0.0.1"})[1])  # fmt: skip
    assert ev["user_ipaddress"] == "198.51.100.x"


def test_true_timestamp_wins_and_raw_ids_elsewhere_are_scrubbed(
    registry: Registry, identities: Identities
) -> None:
    params = media_params(ttm="1731764000123", url=f"https://a.example/?user={UID}", page=f"Hello {UID}")
    line = enrich(params, registry, identities)[1]
    ev = transform(line)
    assert ev["derived_tstamp"] == ev["true_tstamp"] == "2024-11-16T13:33:20.123Z"
    assert UID not in line and ev["page_url"] == "https://a.example/?user="  # value removed
    # in the path (which is not scrubbed by parameter) the raw id becomes its pseudonym, also
    # URL-encoded (``%40``) and double-encoded (``%2540``)
    for form in (UID, quote(UID, safe=""), quote(quote(UID, safe=""), safe="")):
        line = enrich(media_params(url=f"https://a.example/u/{form}/x"), registry, identities)[1]
        assert UID not in line and quote(UID, safe="") not in line and "%2540" not in line
        assert transform(line)["page_url"] == f"https://a.example/u/{pseudonymize(UID, KEY)}/x"


def test_derived_timestamp_formula() -> None:
    assert derived_ms(10_000, 1_000, 1_500, None) == 9_500
    assert derived_ms(10_000, 1_000, 1_500, 7) == 7
    assert derived_ms(10_000, 1_000, None, None) == 10_000
    assert derived_ms(10_000, None, 1_500, None) == 10_000
    assert derived_ms(10_000, 2_000, 1_500, None) == 10_000  # created after sent: clock nonsense
    assert derived_ms(10_000, 0, 50_000, None) == 10_000  # would be before 1970


@settings(max_examples=300, deadline=None)
@given(st.integers(0, MAX_MS))
def test_fast_timestamps_match_lvp_enriched(ms: int) -> None:
    assert tstamp(ms) == format_tstamp(ms)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.text(alphabet=st.sampled_from("ab \t\n\r\x00é"), max_size=6), min_size=N_FIELDS, max_size=N_FIELDS
    )
)
def test_join_columns_matches_to_tsv(cols: list[str]) -> None:
    assert join_columns(cols) == to_tsv(dict(zip(FIELDS, cols, strict=True)))


@pytest.mark.parametrize(
    ("url", "stripped", "sp"),
    [
        ("https://a.b/p?_sp=x.1", "https://a.b/p", "x.1"),
        ("https://a.b/p?a=1&_sp=x.1&b=2#f", "https://a.b/p?a=1&b=2#f", "x.1"),
        ("https://a.b/p?a=1#_sp=x", "https://a.b/p?a=1#_sp=x", None),  # only the query carries it
        ("https://a.b/p?x_sp=1", "https://a.b/p?x_sp=1", None),
        ("https://a.b/p", "https://a.b/p", None),
    ],
)
def test_strip_sp(url: str, stripped: str, sp: str | None) -> None:
    assert strip_sp(url) == (stripped, sp)


def test_url_parts_of_odd_urls() -> None:
    assert url_parts("https://A.Example/x")[0][1:4] == ("https", "a.example", "443")
    assert url_parts("https://a.example:99999/x")[0] == ("https://a.example:99999/x", "", "", "", "", "", "")
    assert url_parts("android-app://com.x/y")[0][1:4] == ("android-app", "com.x", "")


def test_entities_without_identifiers_are_untouched(identities: Identities) -> None:
    entities: list[dict[str, Any]] = [{"schema": "iglu:com.acme/x/jsonschema/1-0-0", "data": {"userId": "u"}}]
    identities.pseudonymize_entities(entities)
    assert entities[0]["data"] == {"userId": "u"}


def test_lines_do_not_depend_on_the_caches_size(registry: Registry) -> None:
    """Many viewers, each with its own page URL (ids in it), through caches far too small for
    them and through ample ones, twice: the same lines, and the small caches stay bounded."""
    small, ample = Identities(KEY, pseudonym_cache_size=6), Identities(KEY)
    lines: dict[str, list[bytes]] = {"small": [], "ample": []}
    for name, ids in (("small", small), ("ample", ample)):
        enricher = Enricher(ids)
        for _round in range(2):
            for i in range(12):
                params = media_params(
                    uid=f"viewer-{i}@example.com",
                    duid=f"device-{i:08d}",
                    url=f"https://www.example.com/watch/{i}?email=viewer-{i}%40example.com&utm_source=x",
                    refr=f"https://{IP}/from/{i}",
                )
                ident = ids.for_request({}, {"sp": f"cookie-{i:08d}"}, "10.1.2.3", None)
                lines[name].append(
                    enricher.enrich(decode_event(params, registry), ident, COLLECTOR_MS, "UA")[1]
                )
        assert enricher._url_cache.limit == ids.viewer_cache_size
    assert lines["small"] == lines["ample"]
    assert all(b"viewer-" not in line and IP.encode() not in line for line in lines["small"])
    assert small.viewer_cache_size == 2 and len(small._targets) <= 2 and len(small.urls._cache) <= 2
