"""The whole spine over real connections: the real Snowplow Python tracker -> collector -> Tansu
-> profiles consumer -> DynamoDB Local + changes topic -> viewer API (REST and SSE).

Also the privacy proof of issue 7: known raw uid, duid, nuid and IPs are sent through the whole
pipeline, then every byte of every sink is scanned for them — both Kafka topics and the changes
topic, every DynamoDB item, SSE output, API responses, logs and `/metrics` of all three
services. Zero hits allowed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from collector_server import read_topic
from profiles_support import pipeline, pipeline_settings, wait_for
from snowplow_tracker import Emitter, SelfDescribingJson, Subject, Tracker
from snowplow_tracker.events import PageView, SelfDescribing

from lvp.config import Settings
from lvp.dynamo import dynamodb_client
from lvp.pseudonym import pseudonymize
from viewer.testing import SSEStream

MEDIA = "com.snowplowanalytics.snowplow.media"
UID = "carol.pipeline@example.com"
DUID = "5b3c0d9e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"
NUID = "0f9e8d7c-6b5a-4f3e-9d2c-1b0a9f8e7d6c"
TRACKER_IP = "198.51.100.201"
FORWARDED_IP = "2001:db8:abcd:12::77"
RAW_VALUES = (UID, DUID, NUID, TRACKER_IP, FORWARDED_IP)  # anonymized forms (1.2.3.x) are allowed
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
        for path in ("/api/viewers", "/api/stats", f"/api/profiles/{vid}", f"/api/profiles/{vid}/history")
    )
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

    hits = [(sink, raw) for sink, blob in sinks.items() for raw in RAW_VALUES if raw.encode() in blob]
    print(
        f"leak scan: {len(RAW_VALUES)} raw values x {len(sinks)} sinks ({sum(map(len, sinks.values()))} bytes): {len(hits)} hits"
    )
    assert hits == [], hits
