"""``/api/profiles/{id}`` and ``/history`` read DynamoDB items in the contract layout, on both
DynamoDB API servers."""

from __future__ import annotations

import time

import httpx
import pytest
from confluent_kafka import Producer
from support.viewer import (
    make_profile,
    now_iso,
    produce_changes,
    put_history_item,
    put_profile_item,
    serve_in_thread,
)

from lvp.config import Settings
from lvp.dynamo import create_tables, dynamodb_client
from lvp.kafka import producer_config
from lvp.profile_codec import erasure_marker
from viewer.app import create_app

TOKEN = "test-token-profiles-api-42"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def settings(lvp_settings: Settings, dynamodb_endpoint: str) -> Settings:
    s = lvp_settings.with_(api_tokens=TOKEN, aws_endpoint_url=dynamodb_endpoint)
    create_tables(s)
    return s


def test_profile_and_history_from_dynamodb(settings: Settings) -> None:
    ddb = dynamodb_client(settings)
    vid = "a" * 64
    profile = make_profile(
        vid,
        "watching_ad",
        ad={"ad_id": "ad-7", "name": "Sneakers", "break_id": "pre-1"},
        last_error={"code": "E42", "message": "decode"},
        position_s=12.25,
        muted=True,
    )
    put_profile_item(ddb, settings, profile)
    put_profile_item(ddb, settings, make_profile("b" * 64, "ended", last_seen=now_iso(-3600)))
    put_history_item(ddb, settings, vid, now_iso(-30), "idle", None, "ready")
    put_history_item(ddb, settings, vid, now_iso(-20), "watching", "idle", "play")
    put_history_item(ddb, settings, vid, now_iso(-10), "watching_ad", "watching", "ad_start")

    app = create_app(settings, read_changes=False)
    with serve_in_thread(app) as base, httpx.Client(base_url=base, headers=AUTH) as http:
        got = http.get(f"/api/profiles/{vid}")
        assert got.status_code == 200
        body = got.json()
        assert body == {**profile, "active": True}
        assert not {"state", "ttl", "active_shard", "last_seen_ms"} & set(body)

        ended = http.get(f"/api/profiles/{'b' * 64}").json()
        assert ended["status"] == "ended" and ended["active"] is False

        hist = http.get(f"/api/profiles/{vid}/history").json()
        assert hist["viewer_id"] == vid
        assert [h["status"] for h in hist["items"]] == ["watching_ad", "watching", "idle"]  # newest first
        assert hist["items"][0] == {
            "at": hist["items"][0]["at"],
            "status": "watching_ad",
            "prev_status": "watching",
            "event_name": "ad_start",
            "event_id": hist["items"][0]["event_id"],
        }
        assert hist["items"][2]["prev_status"] is None
        asc = http.get(f"/api/profiles/{vid}/history", params={"order": "asc"}).json()
        assert [h["status"] for h in asc["items"]] == ["idle", "watching", "watching_ad"]

        # paging: limit 2 then the cursor gives the rest
        p1 = http.get(f"/api/profiles/{vid}/history", params={"limit": 2}).json()
        assert len(p1["items"]) == 2 and p1["next_cursor"]
        p2 = http.get(f"/api/profiles/{vid}/history", params={"limit": 2, "cursor": p1["next_cursor"]}).json()
        assert [h["status"] for h in p1["items"] + p2["items"]] == ["watching_ad", "watching", "idle"]

        # a profile with no history yet: empty list, not 404
        assert http.get(f"/api/profiles/{'b' * 64}/history").json()["items"] == []

        for path in (
            "/api/profiles/" + "c" * 64,
            "/api/profiles/" + "c" * 64 + "/history",
            "/api/profiles/bad%20id",
            "/api/profiles/" + "x" * 300,
        ):
            r = http.get(path)
            assert r.status_code == 404, path
            assert r.json()["error"] == "not found"
        assert http.get(f"/api/profiles/{vid}/history", params={"limit": 0}).status_code == 400
        assert http.get(f"/api/profiles/{vid}/history", params={"order": "sideways"}).status_code == 400
        assert http.get(f"/api/profiles/{vid}/history", params={"cursor": "!!"}).status_code == 400


def test_store_unavailable_is_503_not_500(lvp_settings: Settings) -> None:
    from lvp.local.broker import free_port

    settings = lvp_settings.with_(api_tokens=TOKEN, aws_endpoint_url=f"http://127.0.0.1:{free_port()}")
    app = create_app(settings, read_changes=False)
    with serve_in_thread(app) as base, httpx.Client(base_url=base, headers=AUTH, timeout=30) as http:
        r = http.get("/api/profiles/" + "a" * 64)
        assert r.status_code == 503
        assert r.headers["retry-after"]


def test_profile_of_an_active_viewer_comes_from_the_live_view(settings: Settings) -> None:
    """DynamoDB lags for a viewer whose only changes were pings: the API answers with the
    profile the live page shows (the profile message, then the touch applied on it)."""
    from lvp.changes import TOUCH_KEY_PREFIX, encode_touches, partition_for, touch_patch

    ddb = dynamodb_client(settings)
    vid = "d" * 64
    stored = make_profile(vid, "watching", position_s=40.0, events=5, last_seen=now_iso(-20))
    put_profile_item(ddb, settings, stored)  # written at the last significant change
    produce_changes(settings, [(vid, stored)])
    touched = {**stored, "position_s": 58.5, "events": 7, "last_seen": now_iso(-1), "last_event_name": "ping"}
    producer = Producer(producer_config(settings, log_level=2))
    meta = producer.list_topics(settings.topic_changes, timeout=10).topics[settings.topic_changes]
    partition = partition_for(vid.encode(), len(meta.partitions))
    producer.produce(
        settings.topic_changes,
        key=TOUCH_KEY_PREFIX + str(partition).encode(),
        value=encode_touches([[vid, *touch_patch(touched)]]),
        partition=partition,
    )
    assert producer.flush(15) == 0

    app = create_app(settings)
    with serve_in_thread(app) as base, httpx.Client(base_url=base, headers=AUTH) as http:
        deadline = time.monotonic() + 20
        while http.get(f"/api/profiles/{vid}").json().get("position_s") != 58.5:
            assert time.monotonic() < deadline, "the touch never reached the API"
            time.sleep(0.05)
        body = http.get(f"/api/profiles/{vid}").json()
        assert body == {**touched, "active": True}  # the touched position, last_seen and events
        item = ddb.get_item(TableName=settings.table_profiles, Key={"viewer_id": {"S": vid}})["Item"]
        assert float(item["position_s"]["N"]) == 40.0 and item["last_seen"]["S"] == stored["last_seen"]
        # the same shape as a profile read from DynamoDB (a viewer the view does not hold)
        other = make_profile("e" * 64, "ended", last_seen=now_iso(-3600))
        put_profile_item(ddb, settings, other)
        assert list(http.get(f"/api/profiles/{'e' * 64}").json()) == list(body)
        # an erased viewer leaves the view at once: not served from it any more
        produce_changes(settings, [(vid, None)])
        ddb.delete_item(TableName=settings.table_profiles, Key={"viewer_id": {"S": vid}})
        deadline = time.monotonic() + 20
        while http.get(f"/api/profiles/{vid}").status_code != 404:
            assert time.monotonic() < deadline, "the erasure never reached the API"
            time.sleep(0.05)


def test_a_viewer_who_just_left_is_not_answered_with_what_came_before(settings: Settings) -> None:
    """The page drops a viewer at its end at once; DynamoDB gets the end a flush later. Until
    then the API answers with the ended profile the view kept, not DynamoDB's older one; once
    DynamoDB holds a newer version (a late event written since), DynamoDB's."""
    ddb = dynamodb_client(settings)
    vid, new_vid = "f" * 64, "0f" * 32
    watching = make_profile(vid, "watching", position_s=300.0, events=5, last_seen=now_iso(-3))
    put_profile_item(ddb, settings, watching)  # written at its last significant change
    ended = {**watching, "status": "ended", "events": 6, "last_seen": now_iso(-1), "last_event_name": "end"}
    # a viewer who ended before its first write reached DynamoDB (a consumer under lag)
    short = make_profile(new_vid, "ended", events=4, last_seen=now_iso(-1))
    produce_changes(settings, [(vid, watching), (vid, ended), (new_vid, short)])

    app = create_app(settings)
    with serve_in_thread(app) as base, httpx.Client(base_url=base, headers=AUTH) as http:
        deadline = time.monotonic() + 20
        while http.get(f"/api/profiles/{new_vid}").status_code != 200:
            assert time.monotonic() < deadline, "the changes never reached the view"
            time.sleep(0.05)
        assert http.get(f"/api/profiles/{new_vid}").json() == {**short, "active": False}
        assert http.get(f"/api/profiles/{vid}").json() == {**ended, "active": False}
        item = ddb.get_item(TableName=settings.table_profiles, Key={"viewer_id": {"S": vid}})["Item"]
        assert item["status"]["S"] == "watching"  # DynamoDB still has the version before the end
        assert app.state.service.view.get(vid) is None  # and the page does not show the viewer
        # DynamoDB gets a later version (the end and a late event after it): it answers again
        later = {**ended, "events": 7, "last_seen": now_iso()}
        put_profile_item(ddb, settings, later)
        assert http.get(f"/api/profiles/{vid}").json() == {**later, "active": False}
        # erased after it ended, its tombstone not read by this view (not sent, or still on its
        # way): DynamoDB's erasure marker wins over the kept profile, which is from before it
        marker = erasure_marker(new_vid, int(time.time() * 1000) + 1, retention_s=3600)
        ddb.put_item(TableName=settings.table_profiles, Item=marker)
        assert app.state.service.view.left_profile(new_vid) is not None
        assert http.get(f"/api/profiles/{new_vid}").status_code == 404
