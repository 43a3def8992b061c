"""Snowplow Micro's API in dev mode (collector/micro.py): the real Snowplow Python tracker sends
through the real collector and Tansu, then /micro/all, /micro/good (filters), /micro/bad and
/micro/reset answer in Micro's JSON shapes; ``event`` agrees with the Snowplow Analytics SDK's
reading of the very line on the Kafka topic; nothing held carries a raw identifier; the buffer is
bounded; outside dev mode the routes do not exist."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from collector_server import TEST_KEY, RunningCollector, read_topic, serve_collector, unique
from snowplow_analytics_sdk.event_transformer import transform
from test_collector_routes import DUID, IP, MEDIA, MEDIA_SCRIPT, UID, envelope, ev, run_tracker, ue

from collector.micro import MicroStore, good_event
from lvp.config import Settings
from lvp.kafka import create_topics
from lvp.pseudonym import pseudonymize

TP2 = "/com.snowplowanalytics.snowplow/tp2"
KEY = TEST_KEY.encode()
PLAYER = "iglu:com.snowplowanalytics.snowplow/media_player/jsonschema/2-0-0"
AD = f"iglu:{MEDIA}/ad/jsonschema/1-0-0"
ORIGIN = "https://site.example"


def _settings(broker: str, **extra: Any) -> Settings:
    settings = Settings.from_env(
        {},
        kafka_bootstrap_servers=broker,
        topic_good=unique("good"),
        topic_bad=unique("bad"),
        topic_changes=unique("changes"),
        pseudonym_key=TEST_KEY,
        cors_origins=ORIGIN,
        **extra,
    )
    create_topics(settings)
    return settings


@pytest.fixture
def dev(broker: str) -> Iterator[RunningCollector]:
    with serve_collector(_settings(broker, dev=True)) as running:
        yield running


def test_micro_shapes_filters_and_reset_with_the_real_tracker(dev: RunningCollector) -> None:
    app_id = unique("app-micro")
    assert run_tracker(dev.url, "post", app_id) == []
    n = 1 + len(MEDIA_SCRIPT)
    with httpx.Client(base_url=dev.url, timeout=15) as c:
        # a bad event too (unknown event schema), carrying raw identifiers
        bad = ev(app_id, e="ue", ue_pr=ue("iglu:com.acme/nope/jsonschema/1-0-0", {"a": 1}))
        assert (
            c.post(TP2, content=envelope(bad), headers={"Content-Type": "application/json"}).status_code
            == 400
        )

        assert c.get("/micro/all").json() == {"total": n + 1, "good": n, "bad": 1}
        assert c.post("/micro/all").json() == {"total": n + 1, "good": n, "bad": 1}

        good = c.get("/micro/good").json()
        assert len(good) == n
        for g in good:
            assert set(g) == {"rawEvent", "eventType", "schema", "contexts", "event"}
        # newest first, as Micro: the page view was tracked first
        assert good[-1]["eventType"] == "page_view"
        assert good[-1]["schema"] == "iglu:com.snowplowanalytics.snowplow/page_view/jsonschema/1-0-0"
        assert good[0]["schema"] == f"iglu:{MEDIA}/{MEDIA_SCRIPT[-1][0]}/jsonschema/1-0-0"

        # `event` is the enriched line on the topic, as the Analytics SDK reads it
        s = dev.settings
        lines = read_topic(s.kafka_bootstrap_servers, s.topic_good, n, lambda v: app_id.encode() in v)
        by_id = {g["event"]["event_id"]: g for g in good}
        assert len(lines) == n and set(by_id) == {transform(v.decode())["event_id"] for _, v in lines}
        for _, value in lines:
            sdk = transform(value.decode())
            g = by_id[sdk["event_id"]]
            event = g["event"]
            for name, v in sdk.items():
                if name.startswith(("contexts_", "unstruct_event_")):
                    continue
                assert event[name] == v, name
            flat = [e for k, ents in sdk.items() if k.startswith("contexts_") for e in ents]
            entities = event["contexts"]["data"] if event["contexts"] else []
            assert sorted(map(orjson.dumps, (e["data"] for e in entities))) == sorted(map(orjson.dumps, flat))
            assert g["contexts"] == [e["schema"] for e in entities]
            assert g["eventType"] == sdk["event"]
            if sdk["event"] == "unstruct":
                assert g["schema"] == event["unstruct_event"]["data"]["schema"]
            raw = g["rawEvent"]
            assert raw["api"] == {"vendor": "com.snowplowanalytics.snowplow", "version": "tp2"}
            params = raw["parameters"]
            assert params["eid"] == sdk["event_id"] and params["aid"] == app_id
            assert params["uid"] == pseudonymize(UID, KEY) and params["duid"] == pseudonymize(DUID, KEY)
            assert raw["context"]["ipAddress"] == "203.0.113.x"
            assert event["user_id"] == pseudonymize(UID, KEY)

        # filters: Micro's names, in a POST body or as query parameters
        def post(body: Any) -> list[dict[str, Any]]:
            r = c.post("/micro/good", json=body)
            assert r.status_code == 200, r.text
            return list(r.json())

        assert [g["eventType"] for g in post({"event_type": "page_view"})] == ["page_view"]
        assert len(post({"event_type": "unstruct"})) == n - 1
        play = post({"schema": f"iglu:{MEDIA}/play_event/jsonschema/1-0-0"})
        assert len(play) == 1 and play[0]["event"]["event_name"] == "play_event"
        assert len(post({"contexts": [PLAYER]})) == n - 1
        assert len(post({"contexts": [PLAYER, AD]})) == sum(1 for *_, in_ad in MEDIA_SCRIPT if in_ad)
        assert post({"limit": 3}) == good[:3]
        assert post({}) == good
        assert c.get("/micro/good", params={"event_type": "unstruct", "limit": "2"}).json() == good[:2]
        both = c.get(f"/micro/good?contexts={PLAYER}&contexts={AD}").json()
        assert len(both) == sum(1 for *_, in_ad in MEDIA_SCRIPT if in_ad)
        assert c.post("/micro/good", content=b"[1]").status_code == 400
        assert c.post("/micro/good", json={"limit": -1}).status_code == 400
        assert c.post("/micro/good", json={"contexts": "x"}).status_code == 400

        bads = c.get("/micro/bad").json()
        assert len(bads) == 1
        b = bads[0]
        assert set(b) == {"collectorPayload", "rawEvent", "errors"}
        assert b["collectorPayload"]["api"] == {"vendor": "com.snowplowanalytics.snowplow", "version": "tp2"}
        assert b["rawEvent"]["parameters"]["aid"] == app_id
        assert b["rawEvent"]["parameters"]["uid"] == pseudonymize(UID, KEY)
        assert "schema_violations" in b["errors"][0]
        assert orjson.loads(b["errors"][1])["schema"].startswith(
            "iglu:com.snowplowanalytics.snowplow.badrows/"
        )
        assert len(c.post("/micro/bad", json={"vendor": "com.snowplowanalytics.snowplow"}).json()) == 1
        assert c.post("/micro/bad", json={"version": "i"}).json() == []

        # privacy: nothing the API returns holds a raw identifier or the raw IP
        everything = c.get("/micro/good").content + c.get("/micro/bad").content + c.get("/micro/all").content
        for raw_value in (UID, DUID, IP):
            assert raw_value.encode() not in everything

        # CORS, as Micro: the allowed origin may read the API from a page
        pre = c.options("/micro/good", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == ORIGIN
        assert (
            c.get("/micro/all", headers={"Origin": ORIGIN}).headers["access-control-allow-origin"] == ORIGIN
        )
        assert (
            "access-control-allow-origin"
            not in c.get("/micro/all", headers={"Origin": "https://evil.example"}).headers
        )

        assert c.post("/micro/reset").json() == {"total": 0, "good": 0, "bad": 0}
        assert c.get("/micro/good").json() == [] and c.get("/micro/bad").json() == []
        assert c.get("/micro/all").json() == {"total": 0, "good": 0, "bad": 0}
        assert c.get("/micro/reset").json() == {"total": 0, "good": 0, "bad": 0}


def test_micro_keeps_only_the_newest_events(broker: str) -> None:
    with serve_collector(_settings(broker, dev=True, micro_max_events=4)) as running:
        app_id = unique("app-ring")
        assert run_tracker(running.url, "get", app_id) == []
        with httpx.Client(base_url=running.url, timeout=15) as c:
            assert c.get("/micro/all").json() == {"total": 4, "good": 4, "bad": 0}
            names = [g["event"]["event_name"] for g in c.get("/micro/good").json()]
    assert names == [name for name, *_ in reversed(MEDIA_SCRIPT[-4:])]


def test_micro_is_off_outside_dev_mode(broker: str) -> None:
    with serve_collector(_settings(broker)) as running, httpx.Client(base_url=running.url) as c:
        for path in ("/micro/all", "/micro/good", "/micro/bad", "/micro/reset"):
            assert c.get(path).status_code == 404
            assert c.post(path).status_code == 404
        assert running.app.state.micro is None


def test_store_conversion_of_odd_messages() -> None:
    store = MicroStore(3, "good", "bad")
    store.record([("good", None, b"not an enriched line"), ("bad", None, b"not json"), ("other", None, b"x")])
    assert store.summary() == {"total": 2, "good": 1, "bad": 1}
    assert store.good() == []  # unreadable lines are skipped, never a 500
    assert store.bad()[0]["errors"][0] == "Not a bad row."
    assert good_event(b"\xff\xfe") is None
