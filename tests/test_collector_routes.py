"""The collector over HTTP against the real Tansu broker: the real Snowplow Python tracker (GET
and POST, media events with entities), every bad-input class, CORS, cookies, SP-Anonymous,
limits and the operational routes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from collector_server import TEST_KEY, RunningCollector, read_topic, serve_collector, unique
from snowplow_analytics_sdk.event_transformer import transform
from snowplow_tracker import Emitter, SelfDescribingJson, Subject, Tracker
from snowplow_tracker.events import PageView, SelfDescribing

from collector.identity import ANONYMOUS_NUID
from collector.protocol import b64url_encode
from lvp.config import Settings
from lvp.enriched import from_tsv
from lvp.events import CONTEXTS_SCHEMA, UNSTRUCT_SCHEMA
from lvp.kafka import create_topics
from lvp.pseudonym import pseudonymize

TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
MEDIA = "com.snowplowanalytics.snowplow.media"
UID = "alice.viewer@example.com"
DUID = "7d1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"
IP = "203.0.113.77"
ORIGIN = "https://site.example"
KEY = TEST_KEY.encode()


@pytest.fixture(scope="module")
def running(broker: str) -> Iterator[RunningCollector]:
    settings = Settings.from_env(
        {},
        kafka_bootstrap_servers=broker,
        topic_good=unique("good"),
        topic_bad=unique("bad"),
        topic_changes=unique("changes"),
        pseudonym_key=TEST_KEY,
        max_body_bytes=30_000,
        max_events_per_request=20,
        cors_origins=f"{ORIGIN},https://other.example",
        cookie_domain=".site.example",
    )
    create_topics(settings)
    with serve_collector(settings) as running:
        yield running


@pytest.fixture
def client(running: RunningCollector) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running.url, timeout=15) as c:
        yield c


def good_lines(running: RunningCollector, marker: str, expected: int) -> list[tuple[bytes | None, str]]:
    s = running.settings
    found = read_topic(s.kafka_bootstrap_servers, s.topic_good, expected, lambda v: marker.encode() in v)
    return [(k, v.decode()) for k, v in found]


def bad_rows(running: RunningCollector, marker: str, expected: int) -> list[dict[str, Any]]:
    s = running.settings
    found = read_topic(s.kafka_bootstrap_servers, s.topic_bad, expected, lambda v: marker.encode() in v)
    return [orjson.loads(v) for _, v in found]


def all_bytes(running: RunningCollector) -> bytes:
    s = running.settings
    out = b""
    for topic in (s.topic_good, s.topic_bad):
        for key, value in read_topic(s.kafka_bootstrap_servers, topic, 0, timeout=10):
            out += (key or b"") + b"\n" + value + b"\n"
    return out


def kind(row: dict[str, Any]) -> str:
    return str(row["schema"]).split("/")[1]


# --- the real tracker ----------------------------------------------------------------------------


def media_entities(position: float, *, in_ad: bool = False) -> list[SelfDescribingJson]:
    ents = [
        SelfDescribingJson(
            "iglu:com.snowplowanalytics.snowplow/media_player/jsonschema/2-0-0",
            {"currentTime": position, "duration": 596.47, "ended": False, "paused": False,
             "label": "Big Buck Bunny", "mediaType": "video", "playerType": "html5", "muted": False,
             "playbackRate": 1, "volume": 100},
        ),
        SelfDescribingJson(
            f"iglu:{MEDIA}/session/jsonschema/1-0-0",
            {"mediaSessionId": "e3a82b1d-e44e-4bbf-a797-672b4e879af3",
             "startedAt": "2024-11-16T13:33:23.276Z", "timePlayed": position, "contentWatched": position},
        ),
        SelfDescribingJson(
            "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0",
            {"id": "b7272b85-472b-493a-91f1-734e138ef09a"},
        ),
    ]  # fmt: skip
    if in_ad:
        ents += [
            SelfDescribingJson(
                f"iglu:{MEDIA}/ad/jsonschema/1-0-0", {"adId": "288", "name": "Ad 1", "podPosition": 1}
            ),
            SelfDescribingJson(
                f"iglu:{MEDIA}/ad_break/jsonschema/1-0-0",
                {"breakId": "287", "startTime": 0, "breakType": "linear"},
            ),
        ]
    return ents


MEDIA_SCRIPT: list[tuple[str, dict[str, Any], bool]] = [
    ("ready_event", {}, False),
    ("play_event", {}, False),
    ("ad_break_start_event", {}, True),
    ("ad_start_event", {}, True),
    ("ad_quartile_event", {"percentProgress": 25}, True),
    ("ad_complete_event", {}, True),
    ("ad_break_end_event", {}, False),
    ("volume_change_event", {"previousVolume": 100, "newVolume": 50}, False),
    ("ping_event", {}, False),
    ("pause_event", {}, False),
]


def run_tracker(url: str, method: str, app_id: str, *, base64: bool = True) -> list[int]:
    """Send a page view and the media script with the real Python tracker; returns HTTP failures."""
    host = url.removeprefix("http://")
    failures: list[int] = []
    emitter = Emitter(
        host,
        protocol="http",
        method=method,  # type: ignore[arg-type]
        batch_size=5 if method == "post" else 1,
        on_failure=lambda n, evts: failures.append(len(evts)),
        custom_retry_codes={503: False},
    )
    subject = (
        Subject()
        .set_platform("web")
        .set_user_id(UID)
        .set_domain_user_id(DUID)
        .set_ip_address(IP)
        .set_useragent("Mozilla/5.0 (X11; Linux x86_64) Test")
        .set_lang("en-GB")
        .set_screen_resolution(1920, 1080)
        .set_viewport(1280, 720)
        .set_timezone("Europe/Lisbon")
        .set_domain_session_index(2)
    )
    tracker = Tracker(f"py-{method}", emitter, subject=subject, app_id=app_id, encode_base64=base64)
    tracker.track(
        PageView(page_url=f"https://site.example/watch?_sp={DUID}.1731764000000", page_title="Watch")
    )
    for i, (name, data, in_ad) in enumerate(MEDIA_SCRIPT):
        event = SelfDescribingJson(f"iglu:{MEDIA}/{name}/jsonschema/1-0-0", data)
        tracker.track(SelfDescribing(event, context=media_entities(i * 1.5, in_ad=in_ad)))
    tracker.flush()
    return failures


@pytest.mark.parametrize(("method", "base64"), [("post", True), ("post", False), ("get", True)])
def test_real_tracker_events_reach_the_good_topic(
    running: RunningCollector, method: str, base64: bool
) -> None:
    app_id = unique(f"app-{method}")
    assert run_tracker(running.url, method, app_id, base64=base64) == []
    expected = 1 + len(MEDIA_SCRIPT)
    lines = good_lines(running, app_id, expected)
    assert len(lines) == expected
    names = []
    for key, line in lines:
        ev = transform(line)  # the Snowplow Analytics SDK parses every line
        assert key == pseudonymize(UID, KEY).encode()
        assert ev["app_id"] == app_id and ev["user_id"] == pseudonymize(UID, KEY)
        assert ev["domain_userid"] == pseudonymize(DUID, KEY) and ev["user_ipaddress"] == "203.0.113.x"
        assert ev["v_tracker"].startswith("py-") and ev["name_tracker"] == f"py-{method}"
        assert ev["useragent"] == "Mozilla/5.0 (X11; Linux x86_64) Test" and ev["dvce_screenwidth"] == 1920
        names.append(ev["event_name"])
        if ev["event"] == "unstruct":  # the tracker's contexts 1-0-1 wrapper is written as 1-0-0
            assert orjson.loads(from_tsv(line)["contexts"])["schema"] == CONTEXTS_SCHEMA
            assert (
                ev["contexts_com_snowplowanalytics_snowplow_media_player_2"][0]["label"] == "Big Buck Bunny"
            )
            assert ev["contexts_com_snowplowanalytics_snowplow_media_session_1"]
            assert ev["contexts_com_snowplowanalytics_snowplow_web_page_1"]
            if ev["event_name"] == "ad_quartile_event":
                assert ev["unstruct_event_com_snowplowanalytics_snowplow_media_ad_quartile_event_1"] == {
                    "percentProgress": 25
                }
                assert ev["contexts_com_snowplowanalytics_snowplow_media_ad_1"][0]["adId"] == "288"
        else:
            assert ev["page_url"] == "https://site.example/watch"
            assert ev["refr_domain_userid"] == pseudonymize(DUID, KEY)
    assert sorted(names) == sorted(["page_view", *(n for n, _, _ in MEDIA_SCRIPT)])
    everything = all_bytes(running)
    for raw in (UID, DUID, IP):
        assert raw.encode() not in everything


# --- bad input --------------------------------------------------------------------------------------


def envelope(*events: dict[str, Any], schema: str = PAYLOAD_DATA) -> bytes:
    return orjson.dumps({"schema": schema, "data": list(events)})


def ev(marker: str, **params: str) -> dict[str, str]:
    base = {"e": "pv", "tv": "js-4.0.1", "p": "web", "aid": marker, "uid": UID, "duid": DUID, "ip": IP,
            "url": f"https://site.example/?_sp={DUID}.1"}  # fmt: skip
    base.update(params)
    return base


def ue(schema: str, data: Any) -> str:
    return orjson.dumps({"schema": UNSTRUCT_SCHEMA, "data": {"schema": schema, "data": data}}).decode()


def co(*entities: dict[str, Any]) -> str:
    return orjson.dumps({"schema": CONTEXTS_SCHEMA, "data": list(entities)}).decode()


PLAYER = "iglu:com.snowplowanalytics.snowplow/media_player/jsonschema/2-0-0"

BAD_POSTS: list[tuple[str, Any, int, str]] = [
    ("not-json", lambda m: f'not json {m} "uid":"{UID}"'.encode(), 400, "collector_payload_format_violation"),
    ("json-array", lambda m: orjson.dumps([m, {"uid": UID}]), 400, "collector_payload_format_violation"),
    ("wrong-envelope", lambda m: envelope(ev(m), schema="iglu:com.acme/x/jsonschema/1-0-0"), 400,
     "collector_payload_format_violation"),
    ("empty-data", lambda m: orjson.dumps({"schema": PAYLOAD_DATA, "data": [], "m": m, "uid": UID}), 400,
     "collector_payload_format_violation"),
    ("missing-e", lambda m: envelope({k: v for k, v in ev(m).items() if k != "e"}), 400,
     "tracker_protocol_violations"),
    ("bad-dtm", lambda m: envelope(ev(m, dtm="yesterday")), 400, "tracker_protocol_violations"),
    ("bad-base64", lambda m: envelope(ev(m, e="ue", ue_px="@@@")), 400, "tracker_protocol_violations"),
    ("unknown-schema", lambda m: envelope(ev(m, e="ue", ue_pr=ue("iglu:com.acme/nope/jsonschema/1-0-0", {})))
     , 400, "schema_violations"),
    ("invalid-entity", lambda m: envelope(ev(m, e="ue", ue_pr=ue(f"iglu:{MEDIA}/play_event/jsonschema/1-0-0",
                                                                   {}),
                                             co=co({"schema": PLAYER, "data": {"currentTime": "x"}})))
     , 400, "schema_violations"),
    ("unknown-param", lambda m: envelope(ev(m, whatever="1")), 400, "schema_violations"),
    ("too-big", lambda m: f'{{"schema":"{PAYLOAD_DATA}","m":"{m}","uid":"{UID}","data":["{"x" * 40_000}"]}}'
     .encode(), 413, "size_violation"),
    ("too-many", lambda m: envelope(*[ev(m) for _ in range(21)]), 413, "size_violation"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "body", "status", "badrow"), BAD_POSTS, ids=[c[0] for c in BAD_POSTS])
def test_bad_posts_become_bad_rows(
    running: RunningCollector, client: httpx.Client, case: str, body: Any, status: int, badrow: str
) -> None:
    marker = unique(case)
    r = client.post(
        TP2, content=body(marker), headers={"Content-Type": "application/json", "X-Forwarded-For": IP}
    )
    assert r.status_code == status, r.text
    whole_request = status == 413 or badrow == "collector_payload_format_violation"
    assert r.json()["error"] == (badrow if whole_request else "no good events")
    [row] = bad_rows(running, marker, 1)
    assert kind(row) == badrow
    assert row["data"]["failure"]["messages"]
    text = orjson.dumps(row)
    for raw in (UID.encode(), DUID.encode(), IP.encode()):
        assert raw not in text, (case, raw)
    assert not good_lines(running, marker, 0)


def test_bad_get_becomes_a_bad_row(running: RunningCollector, client: httpx.Client) -> None:
    marker = unique("bad-get")
    r = client.get("/i", params={"e": "pv", "p": "web", "aid": marker, "uid": UID})
    assert r.status_code == 400
    [row] = bad_rows(running, marker, 1)
    assert kind(row) == "tracker_protocol_violations"
    assert {"field": "tv", "value": None, "expectation": "the tracker version"} in row["data"]["failure"][
        "messages"
    ]
    params = {p["name"]: p["value"] for p in row["data"]["payload"]["raw"]["parameters"]}
    assert params["uid"] == pseudonymize(UID, KEY)


def test_raw_values_equal_to_parts_of_the_bad_row_leave_its_own_fields_intact(
    running: RunningCollector, client: httpx.Client
) -> None:
    """Raw identifiers are replaced wherever they appear in a bad row — but only in what came
    from the request. An ``ip`` of ``tracker`` and a ``uid`` of ``snowplow`` (found by the fuzz
    tests) must not rewrite the row's own schema URI, processor or timestamp."""
    marker = unique("scrub-fixed")
    r = client.get(
        "/i",
        params={
            "e": "pv",
            "p": "web",
            "aid": marker,
            "uid": "snowplow",
            "ip": "tracker",
            "duid": "expectation",
        },
    )
    assert r.status_code == 400
    [row] = bad_rows(running, marker, 1)
    assert row["schema"] == f"iglu:com.snowplowanalytics.snowplow.badrows/{kind(row)}/jsonschema/1-0-0"
    assert kind(row) == "tracker_protocol_violations"
    assert row["data"]["processor"]["artifact"].startswith("lvp-collector")
    assert row["data"]["failure"]["timestamp"].endswith("Z")
    assert {"field": "tv", "value": None, "expectation": "the tracker version"} in row["data"]["failure"][
        "messages"
    ]
    params = {p["name"]: p["value"] for p in row["data"]["payload"]["raw"]["parameters"]}
    assert params["uid"] == pseudonymize("snowplow", KEY)
    assert "tracker" not in orjson.dumps(row["data"]["payload"]).decode()


def test_partly_good_request_keeps_the_good_events(running: RunningCollector, client: httpx.Client) -> None:
    marker = unique("partly")
    body = envelope(
        ev(marker, eid=str(uuid.uuid4())),
        ev(marker, e="bogus"),
        ev(
            marker,
            e="ue",
            ue_pr=ue(f"iglu:{MEDIA}/ad_quartile_event/jsonschema/1-0-0", {"percentProgress": 101}),
        ),
        ev(marker, e="ue", ue_px=b64url_encode(ue(f"iglu:{MEDIA}/play_event/jsonschema/1-0-0", {}).encode())),
    )
    r = client.post(TP2, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.text == "ok"
    lines = good_lines(running, marker, 2)
    assert sorted(transform(line)["event_name"] for _, line in lines) == ["page_view", "play_event"]
    rows = bad_rows(running, marker, 2)
    assert sorted(kind(r) for r in rows) == ["schema_violations", "tracker_protocol_violations"]
    violation = next(r for r in rows if kind(r) == "schema_violations")["data"]["failure"]["messages"][0]
    assert violation["schemaKey"] == f"iglu:{MEDIA}/ad_quartile_event/jsonschema/1-0-0"
    assert violation["error"]["dataReports"][0]["path"] == "$.percentProgress"


# --- CORS, cookie, SP-Anonymous -------------------------------------------------------------------


def test_cors(running: RunningCollector, client: httpx.Client) -> None:
    pre = client.options(TP2, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == ORIGIN
    assert pre.headers["access-control-allow-credentials"] == "true"
    assert {h.strip().lower() for h in pre.headers["access-control-allow-headers"].split(",")} >= {
        "content-type",
        "sp-anonymous",
    }
    assert client.options("/i", headers={"Origin": "https://other.example"}).status_code == 200
    assert client.options(TP2, headers={"Origin": "https://evil.example"}).status_code == 403
    marker = unique("cors")
    r = client.post(TP2, content=envelope(ev(marker)), headers={"Origin": ORIGIN})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
    assert r.headers["access-control-allow-credentials"] == "true"
    r = client.get("/i", params=ev(marker), headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    assert len(good_lines(running, marker, 1)) == 1


def test_network_user_id_cookie(running: RunningCollector, client: httpx.Client) -> None:
    marker = unique("cookie")
    first = client.get("/i", params=ev(marker, se_ca="first", e="se", se_ac="a"))
    assert first.status_code == 200 and first.headers["content-type"] == "image/gif"
    assert first.headers["cache-control"].startswith("no-cache")
    cookie = first.headers["set-cookie"]
    nuid = cookie.split(";", 1)[0].removeprefix("sp=")
    assert uuid.UUID(nuid).version == 4
    for attr in ("Max-Age=31536000", "Secure", "HttpOnly", "SameSite=None", "Domain=.site.example", "Path=/"):
        assert attr in cookie
    again = httpx.get(
        running.url + "/com.snowplowanalytics.snowplow/i",
        params=ev(marker, se_ca="again", e="se", se_ac="a"),
        headers={"Cookie": f"sp={nuid}"},
    )
    assert again.headers["set-cookie"].startswith(f"sp={nuid};")
    param = client.post(TP2 + "?nuid=chosen-by-redirect-1", content=envelope(ev(marker, e="se", se_ca="param",
                                                                                se_ac="a")))  # fmt: skip
    assert param.headers["set-cookie"].startswith("sp=chosen-by-redirect-1;")
    anon = client.post(
        TP2, content=envelope(ev(marker, e="se", se_ca="anon", se_ac="a")), headers={"SP-Anonymous": "*"}
    )
    assert anon.status_code == 200 and "set-cookie" not in anon.headers
    by_category = {
        transform(line)["se_category"]: transform(line) for _, line in good_lines(running, marker, 4)
    }
    assert (
        by_category["first"]["network_userid"]
        == by_category["again"]["network_userid"]
        == pseudonymize(nuid, KEY)
    )
    assert by_category["param"]["network_userid"] == pseudonymize("chosen-by-redirect-1", KEY)
    assert (
        by_category["anon"]["network_userid"] == ANONYMOUS_NUID
        and "user_ipaddress" not in by_category["anon"]
    )
    assert nuid.encode() not in all_bytes(running)


# --- operational routes and robustness --------------------------------------------------------------


def test_operational_routes(running: RunningCollector, client: httpx.Client) -> None:
    assert client.get("/health").text == "ok"
    assert client.get("/sink-health").status_code == 200
    assert "Disallow: /" in client.get("/robots.txt").text
    client.post(TP2, content=envelope(ev(unique("metrics"))))
    metrics = client.get("/metrics").text
    assert 'lvp_collector_requests_total{code="200",route="tp2"}' in metrics
    assert 'lvp_collector_events_total{outcome="good",reason="ok"}' in metrics
    assert "lvp_collector_kafka_delivery_seconds_bucket" in metrics
    assert "lvp_collector_producer_queue_depth" in metrics
    assert IP not in metrics and "127.0.0.1" not in metrics


GARBAGE: list[tuple[str, str, bytes, dict[str, str]]] = [
    ("POST", TP2, b"\xff\xfe\x00garbage", {}),
    ("POST", TP2, b"[" * 100_000, {}),
    ("POST", TP2, b'{"schema":"' + PAYLOAD_DATA.encode() + b'","data":[1,"x",null,[],{"e":{}}]}', {}),
    ("POST", TP2, b"", {"Content-Type": "text/plain"}),
    ("POST", TP2, b"{}", {"Content-Length": "abc"}),
    ("GET", "/i?e=pv&tv=%ff%fe&p=web&url=http://[::1", b"", {}),
    ("GET", "/i?" + "&".join(f"k{i}=v" for i in range(2000)), b"", {}),
    ("HEAD", "/i?e=pv&tv=t&p=web", b"", {}),
    ("GET", "/i?e=ue&tv=t&p=web&ue_px=e30", b"", {"X-Forwarded-For": "not an ip, 1.2.3.4"}),
    ("POST", "/i", b"", {}),
]


def test_no_input_gets_a_server_error(running: RunningCollector) -> None:
    with httpx.Client(base_url=running.url, timeout=15) as c:
        for method, path, body, headers in GARBAGE:
            try:
                r = c.request(method, path, content=body, headers=headers)
            except httpx.HTTPError:  # the server may refuse a malformed request at the HTTP layer
                continue
            assert r.status_code < 500, (method, path[:40], r.status_code)
        assert c.get("/health").status_code == 200


def test_any_origin_and_rate_limit_per_client(broker: str) -> None:
    settings = Settings.from_env(
        {}, kafka_bootstrap_servers=broker, topic_good=unique("good"), topic_bad=unique("bad"),
        pseudonym_key=TEST_KEY, rate_limit_per_ip=0.5, retry_after_s=7,
    )  # fmt: skip
    create_topics(settings)
    with serve_collector(settings) as running, httpx.Client(base_url=running.url, timeout=15) as c:
        pre = c.options(TP2, headers={"Origin": "https://anywhere.example"})  # LVP_CORS_ORIGINS=* (default)
        assert (
            pre.status_code == 200
            and pre.headers["access-control-allow-origin"] == "https://anywhere.example"
        )
        body = envelope(ev(unique("rate")))
        assert c.post(TP2, content=body, headers={"X-Forwarded-For": IP}).status_code == 200
        limited = c.post(TP2, content=body, headers={"X-Forwarded-For": IP})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert c.post(TP2, content=body, headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 200
        assert IP not in c.get("/metrics").text
        assert 'code="429"' in c.get("/metrics").text


def test_trusted_proxies_decide_the_client_ip_for_the_limit_and_the_event(broker: str) -> None:
    """Behind one load balancer (LVP_TRUSTED_PROXIES=1) the client IP is the address it appended:
    an X-Forwarded-For first hop the client made up neither dodges the rate limit nor ends up
    in the event. With 0 the header is ignored: the TCP peer (here 127.0.0.1) is the client."""
    for trusted, real in ((1, IP), (0, "127.0.0.1")):
        settings = Settings.from_env(
            {}, kafka_bootstrap_servers=broker, topic_good=unique("good"), topic_bad=unique("bad"),
            pseudonym_key=TEST_KEY, rate_limit_per_ip=0.5, trusted_proxies=trusted,
        )  # fmt: skip
        create_topics(settings)
        marker = unique(f"proxies-{trusted}")
        event = {k: v for k, v in ev(marker).items() if k != "ip"}  # no tracker-set IP: the request's
        with serve_collector(settings) as running, httpx.Client(base_url=running.url, timeout=15) as c:
            first = c.post(TP2, content=envelope(event), headers={"X-Forwarded-For": f"6.6.6.6, {IP}"})
            assert first.status_code == 200
            spoofed = c.post(TP2, content=envelope(event), headers={"X-Forwarded-For": f"7.7.7.7, {IP}"})
            assert spoofed.status_code == 429, trusted  # the same client, whatever it claims
            [(_key, line)] = good_lines(running, marker, 1)
        user_ip = from_tsv(line)["user_ipaddress"]
        assert user_ip == real.rsplit(".", 1)[0] + ".x", (trusted, user_ip)


def test_enriched_lines_carry_no_raw_values(running: RunningCollector) -> None:
    s = running.settings
    for _, value in read_topic(s.kafka_bootstrap_servers, s.topic_good, 0, timeout=10):
        cols = from_tsv(value)
        for name in ("user_id", "domain_userid", "network_userid", "user_fingerprint"):
            v = cols.get(name, "")
            assert v == "" or v == ANONYMOUS_NUID or (len(v) == 64 and int(v, 16) >= 0), (name, v)


def test_event_route_shortcut_answers_like_the_full_app(
    running: RunningCollector, client: httpx.Client
) -> None:
    """POST tp2 and GET pixel requests skip Starlette's middleware and router (CollectorApp);
    every answer is the one the full app gives, and the events reach the topic either way."""
    app: Any = running.app
    assert set(app.shortcuts) == {("POST", TP2), ("GET", "/i"), ("GET", "/ice.png"),
                                  ("GET", "/com.snowplowanalytics.snowplow/i")}  # fmt: skip
    saved = app.shortcuts
    marker = uuid.uuid4().hex

    def answers() -> list[tuple[int, bytes, str, str, bool]]:
        event = {"e": "pv", "tv": "js-4.6.6", "p": "web", "url": f"http://x.example/{marker}"}
        requests = [
            ("POST", TP2, orjson.dumps({"schema": PAYLOAD_DATA, "data": [event]})),
            ("POST", TP2, b"{not json"),
            ("POST", TP2 + "/", b"{}"),  # not a route: 404 from the router
            ("GET", "/i", None),
            ("HEAD", "/i", None),  # not a shortcut
            ("OPTIONS", TP2, None),
        ]
        out = []
        for method, path, body in requests:
            params = event if method in ("GET", "HEAD") else None
            r = client.request(method, path, content=body, params=params, headers={"Origin": ORIGIN})
            cookie = r.headers.get("set-cookie", "")
            out.append((r.status_code, r.content, r.headers.get("content-type", ""),
                        r.headers.get("access-control-allow-origin", ""), cookie.startswith("sp=")))  # fmt: skip
        return out

    try:
        fast = answers()
        app.shortcuts = {}
        full = answers()
    finally:
        app.shortcuts = saved
    assert fast == full
    assert [a[0] for a in fast] == [200, 400, 404, 200, 200, 200]
    assert len(good_lines(running, marker, 6)) == 6  # tp2 + GET + HEAD, twice
