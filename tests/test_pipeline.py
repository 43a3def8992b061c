"""The whole spine over real connections: the real Snowplow Python tracker -> collector -> Tansu
-> profiles consumer -> DynamoDB Local + changes topic -> viewer API (REST and SSE).

Also the privacy proof of issues 7 and 12: known raw uid, duid, nuid and IPs are sent through the
whole pipeline — as identifiers, and (issue 12) inside page and referrer URL query strings and
fragments, page titles, e-commerce fields, 6to4 client addresses and base64 ``cx``/``ue_px`` of
bad events, as is, URL-encoded, double-encoded, base64 and base64url — then every byte of every
sink is scanned for every one of those forms (:mod:`leak_forms`): both Kafka topics and the
changes topic, every DynamoDB item, SSE output, API responses, logs and `/metrics` of all three
services. Zero hits allowed.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from collector_server import read_topic
from leak_forms import leak_hits
from snowplow_tracker import Emitter, SelfDescribingJson, Subject, Tracker
from snowplow_tracker.events import PageView, SelfDescribing
from support.profiles import pipeline, pipeline_settings, wait_for
from support.viewer import SSEStream

from lvp.config import Settings
from lvp.dynamo import dynamodb_client
from lvp.pseudonym import pseudonymize

MEDIA = "com.snowplowanalytics.snowplow.media"
UID = "carol.pipeline@example.com"
DUID = "5b3c0d9e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"
NUID = "0f9e8d7c-6b5a-4f3e-9d2c-1b0a9f8e7d6c"
TRACKER_IP = "198.51.100.201"
FORWARDED_IP = "2001:db8:abcd:12::77"
# issue 12: a second viewer whose page URLs, titles, orders and bad events carry personal data
EMAIL = "erin.leak+tv@example.net"
ERIN_DUID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
RESET_TOKEN = "pwreset-3c9e1f7a2b"
ORDER_ID = "order-erin-20261206"
SIXTOFOUR_IP = "2002:c633:64c9::1"  # 6to4 of 198.51.100.201 (TRACKER_IP)
RAW_VALUES = (UID, DUID, NUID, TRACKER_IP, FORWARDED_IP)  # anonymized forms (1.2.3.x) are allowed
PERSONAL_VALUES = (EMAIL, ERIN_DUID, RESET_TOKEN, ORDER_ID, SIXTOFOUR_IP, "c633:64c9")
TOKEN = "pipeline-test-token"
SESSION_ID = "3e0c7a52-93a1-4e7c-bb1e-1f3f6b0c9a10"


def entities(position: float, *, paused: bool, ad: bool = False) -> list[SelfDescribingJson]:
    out = [
        SelfDescribingJson(
            "iglu:com.snowplowanalytics.snowplow/media_player/jsonschema/2-0-0",
            {"currentTime": position, "duration": 600.0, "ended": False, "paused": paused,
             "label": "Pipeline Movie", "mediaType": "video", "playerType": "html5",
             "playbackRate": 1, "volume": 40 if position >= 45 else 100, "muted": False},
        ),
        SelfDescribingJson(
            f"iglu:{MEDIA}/session/jsonschema/1-0-0",
            {"mediaSessionId": SESSION_ID, "startedAt": "2026-01-01T00:00:00.000Z"},
        ),
    ]  # fmt: skip
    if ad:
        out += [
            SelfDescribingJson(
                f"iglu:{MEDIA}/ad/jsonschema/1-0-0", {"adId": "ad-7", "name": "Coffee", "podPosition": 1}
            ),
            SelfDescribingJson(f"iglu:{MEDIA}/ad_break/jsonschema/1-0-0", {"breakId": "pre", "startTime": 0}),
        ]
    return out


#: (event, data, player position, paused, in ad)
SCRIPT: list[tuple[str, dict[str, Any], float, bool, bool]] = [
    ("ready", {}, 0, True, False),
    ("ad_break_start", {}, 0, True, True),
    ("ad_start", {}, 0, True, True),
    ("ad_quartile", {"percentProgress": 25}, 0, True, True),
    ("ad_skip", {}, 0, True, True),
    ("ad_break_end", {}, 0, True, False),
    ("play", {}, 0, False, False),
    ("seek_start", {}, 10, False, False),
    ("seek_end", {}, 40, False, False),
    ("buffer_start", {}, 40, False, False),
    ("buffer_end", {}, 40, False, False),
    ("volume_change", {"previousVolume": 100, "newVolume": 40}, 45, False, False),
    ("ping", {}, 50, False, False),
    ("pause", {}, 60, True, False),
]


def send_with_real_tracker(collector_url: str, method: str) -> list[int]:
    failures: list[int] = []
    emitter = Emitter(
        collector_url.removeprefix("http://"),
        protocol="http",
        method=method,  # type: ignore[arg-type]
        batch_size=4 if method == "post" else 1,
        on_failure=lambda n, evts: failures.append(len(evts)),
    )
    subject = (
        Subject()
        .set_platform("web")
        .set_user_id(UID)
        .set_domain_user_id(DUID)
        .set_network_user_id(NUID)
        .set_ip_address(TRACKER_IP)
        .set_useragent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148 Safari/604.1")
    )
    tracker = Tracker(
        "pipeline", emitter, subject=subject, app_id="pipeline-app", encode_base64=method == "get"
    )
    # true timestamps one second apart, as a real viewer's events are spaced (derived_tstamp = ttm)
    start_ms = int(time.time() * 1000) - 30_000
    tracker.track(
        PageView(
            page_url=f"https://tv.example/watch?_sp={DUID}.1", page_title="Watch", true_timestamp=start_ms
        )
    )
    for i, (name, data, position, paused, ad) in enumerate(SCRIPT, start=1):
        event = SelfDescribingJson(f"iglu:{MEDIA}/{name}_event/jsonschema/1-0-0", data)
        tracker.track(
            SelfDescribing(
                event, context=entities(position, paused=paused, ad=ad), true_timestamp=start_ms + 1000 * i
            )
        )
    tracker.flush()
    return failures


def send_personal_data(collector_url: str) -> None:
    """Raw ids, e-mails, tokens and IPs where issue 12 found them passing the collector: page and
    referrer URLs (query, fragment, URL-encoded, double-encoded, bare), page title, e-commerce
    fields, a 6to4 client address, and base64 / base64url cx / ue_px of bad events."""
    e1, e2 = quote(EMAIL, safe=""), quote(quote(EMAIL, safe=""), safe="")
    url = (
        f"https://tv.example/account?utm_source=mail&email={EMAIL}&u={quote(UID, safe='')}&d={e2}&{e1}"
        f";ip={TRACKER_IP}&next=https%3A%2F%2Fa.example%2F%3Fuid%3D{e1}#access_token={RESET_TOKEN}&id={DUID}"
    )
    common = {
        "tv": "raw-1",
        "p": "web",
        "aid": "pipeline-app",
        "duid": ERIN_DUID,
        "url": url,
        "refr": f"https://mail.example/reset?token={RESET_TOKEN}&to={e1}#{EMAIL}",
        "page": f"Reset the password of {EMAIL} ({UID})",
    }
    headers = {"X-Forwarded-For": SIXTOFOUR_IP, "User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"}
    good = [
        {**common, "e": "pv"},
        {**common, "e": "tr", "tr_id": ORDER_ID, "tr_af": EMAIL, "tr_tt": "9.99", "tr_ci": "Porto"},
        {
            **common,
            "e": "ti",
            "ti_id": ORDER_ID,
            "ti_sk": "gift",
            "ti_nm": f"for {EMAIL}",
            "ti_pr": "9.99",
            "ti_qu": "1",
        },
    ]
    secret = {
        "email": EMAIL,
        "userId": UID,
        "ip": TRACKER_IP,
        "note": f"{EMAIL} {ERIN_DUID} {FORWARDED_IP}",
        "link": f"https://x.example/?t={RESET_TOKEN}",
    }
    ue = orjson.dumps(
        {
            "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
            "data": {"schema": "iglu:com.acme/unknown/jsonschema/1-0-0", "data": secret},
        }
    )
    co = orjson.dumps(
        {
            "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1",
            "data": [{"schema": "iglu:com.acme/who/jsonschema/1-0-0", "data": secret}],
        }
    )
    bad = [
        {**common, "e": "ue", "ue_px": base64.urlsafe_b64encode(ue).decode().rstrip("="),
         "cx": base64.b64encode(co).decode()},  # base64url and standard base64
        {**common, "e": "ue", "ue_px": "*" + base64.urlsafe_b64encode(ue).decode()},  # not base64url
    ]  # fmt: skip
    for params in good:
        assert httpx.get(collector_url + "/i", params=params, headers=headers).status_code == 200
    for params in bad:
        assert httpx.get(collector_url + "/i", params=params, headers=headers).status_code == 400
    body = {"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
            "data": [{**common, "e": "bogus", "co": co.decode()}]}  # fmt: skip
    assert (
        httpx.post(
            collector_url + "/com.snowplowanalytics.snowplow/tp2", json=body, headers=headers
        ).status_code
        == 400
    )


@pytest.fixture
def settings(make_settings: Callable[..., Settings], dynamodb_local: str) -> Settings:
    return pipeline_settings(make_settings, dynamodb_local, TOKEN)


@pytest.fixture
def stack(settings: Settings) -> Iterator[dict[str, Any]]:
    with pipeline(settings) as running:
        yield running


def test_tracker_to_live_view_and_nothing_raw_anywhere(
    settings: Settings, stack: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    viewer_url = stack["viewer"]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    vid = pseudonymize(UID, settings.pseudonym_key.encode())
    sse_bytes: list[bytes] = []

    with SSEStream(viewer_url, "/api/viewers/stream", headers=auth) as sse:
        first = sse.next_event(timeout=10)
        assert first is not None and first.event == "snapshot"

        assert send_with_real_tracker(stack["collector"].url, "post") == []
        # one more event by GET with a forwarded IPv6 client address
        r = httpx.get(
            stack["collector"].url + "/i",
            params={"e": "pv", "tv": "raw-1", "p": "web", "uid": UID, "duid": DUID, "aid": "pipeline-app",
                    "ttm": str(int(time.time() * 1000) - 10_000), "eid": "6a1c86a4-3c1e-4b8e-9d7e-2f3b4c5d6e7f"},
            headers={"X-Forwarded-For": FORWARDED_IP, "Cookie": f"sp={NUID}", "User-Agent": "Mozilla/5.0 (iPhone) Mobile"},
        )  # fmt: skip
        assert r.status_code == 200

        def paused_in_stream() -> bool:
            ev = sse.next_event(timeout=1)
            if ev is not None:
                sse_bytes.append(ev.data.encode())
                if ev.event == "delta" and any(
                    u["viewer_id"] == vid and u["status"] == "paused" for u in ev.json().get("upsert", [])
                ):
                    return True
            return False

        wait_for(paused_in_stream, timeout=30, what="the viewer's pause to reach the SSE stream")

    # the profile in DynamoDB, through the API
    def profile() -> dict[str, Any] | None:
        resp = httpx.get(f"{viewer_url}/api/profiles/{vid}", headers=auth)
        if resp.status_code != 200 or resp.json().get("events") != 16:
            return None
        return dict(resp.json())

    p = wait_for(profile, timeout=30, what="the profile to be flushed")
    assert p["status"] == "paused" and p["active"] is True
    assert (p["plays"], p["pauses"], p["seeks"], p["buffer_events"]) == (1, 1, 1, 1)
    assert (p["ad_breaks"], p["ads_started"], p["ads_skipped"], p["ads_completed"]) == (1, 1, 1, 0)
    assert p["media_label"] == "Pipeline Movie" and p["media_session_id"] == SESSION_ID
    assert p["app_id"] == "pipeline-app" and p["device_class"] == "mobile"
    assert p["volume"] == 40 and p["position_s"] == 60
    history = httpx.get(f"{viewer_url}/api/profiles/{vid}/history?order=asc", headers=auth).json()["items"]
    assert [h["status"] for h in history] == [
        "watching_ad",
        "idle",
        "watching",
        "buffering",
        "watching",
        "paused",
    ]

    snapshot = httpx.get(f"{viewer_url}/api/viewers", headers=auth).json()
    mine = [v for v in snapshot["viewers"] if v["viewer_id"] == vid]
    assert mine and mine[0]["status"] == "paused" and snapshot["by_status"].get("paused", 0) >= 1

    # issue 12's personal data, then the second viewer's profile (its events went all the way)
    send_personal_data(stack["collector"].url)
    erin = pseudonymize(ERIN_DUID, settings.pseudonym_key.encode())
    wait_for(
        lambda: httpx.get(f"{viewer_url}/api/profiles/{erin}", headers=auth).status_code == 200,
        timeout=30,
        what="the second viewer's profile",
    )

    # --- the leak scan: every sink ---------------------------------------------------------
    sinks: dict[str, bytes] = {}
    for topic in (settings.topic_good, settings.topic_bad, settings.topic_changes):
        msgs = read_topic(settings.kafka_bootstrap_servers, topic, 0, timeout=10)
        sinks[f"kafka:{topic}"] = b"\n".join((k or b"") + b"\t" + v for k, v in msgs)
    assert sinks[f"kafka:{settings.topic_good}"].count(b"\n") >= 15  # 16 events were written
    client = dynamodb_client(settings)
    for table in (settings.table_profiles, settings.table_history):
        items = [i for page in client.get_paginator("scan").paginate(TableName=table) for i in page["Items"]]
        assert items
        sinks[f"dynamodb:{table}"] = repr(items).encode()
    sinks["sse"] = b"\n".join(sse_bytes)
    sinks["api"] = b"\n".join(
        httpx.get(viewer_url + path, headers=auth).content
        for path in ("/api/viewers", "/api/stats", f"/api/profiles/{vid}", f"/api/profiles/{vid}/history",
                     f"/api/profiles/{erin}", f"/api/profiles/{erin}/history")
    )  # fmt: skip
    sinks["metrics:collector"] = httpx.get(stack["collector"].url + "/metrics").content
    sinks["metrics:viewer"] = httpx.get(viewer_url + "/metrics", headers=auth).content
    from prometheus_client import generate_latest

    sinks["metrics:profiles"] = generate_latest(stack["consumer"].metrics.registry)
    # every log record of the services (the test's own HTTP clients and the Snowplow tracker,
    # which hold the raw values by construction, are not sinks)
    clients = ("httpx", "httpcore", "urllib3", "snowplow_tracker", "requests")
    service_records = [r for r in caplog.records if not r.name.startswith(clients)]
    assert any(r.name.startswith(("collector", "profiles", "lvp", "viewer")) for r in service_records)
    sinks["logs"] = "\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in service_records).encode()

    raws = RAW_VALUES + PERSONAL_VALUES
    assert sinks[f"kafka:{settings.topic_bad}"].count(b"\n") >= 2  # 3 bad rows were written
    hits = leak_hits(sinks, raws)
    print(
        f"leak scan: {len(raws)} raw values in every encoded form x {len(sinks)} sinks "
        f"({sum(map(len, sinks.values()))} bytes): {len(hits)} hits"
    )
    assert hits == [], hits
