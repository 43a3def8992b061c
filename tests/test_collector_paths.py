"""Custom collector paths (LVP_COLLECTOR_PATHS, collector/paths.py), as Snowplow's collector
``paths``: the real Snowplow Python tracker and plain HTTP posting to a custom path give the same
enriched events as the standard path (real collector, real Tansu); the pixel maps too; the CORS
preflight works on the custom path; unknown paths still 404; malformed settings are refused."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import orjson
import pytest
from collector_server import TEST_KEY, RunningCollector, read_topic, serve_collector, unique
from snowplow_analytics_sdk.event_transformer import transform
from snowplow_tracker import Emitter, Subject, Tracker
from snowplow_tracker.events import PageView

from collector.app import create_app
from collector.paths import parse_paths
from lvp.config import ConfigError, Settings
from lvp.enriched import from_tsv
from lvp.kafka import create_topics

TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
ORIGIN = "https://site.example"
PATHS = f"/acme/track={TP2}, /acme/pix=/i"
#: columns that differ between two sends of the same event: the collector's clock
CLOCK = {"collector_tstamp", "etl_tstamp", "derived_tstamp", "dvce_sent_tstamp"}


@pytest.fixture(scope="module")
def running(broker: str) -> Iterator[RunningCollector]:
    settings = Settings.from_env(
        {},
        kafka_bootstrap_servers=broker,
        topic_good=unique("good"),
        topic_bad=unique("bad"),
        topic_changes=unique("changes"),
        pseudonym_key=TEST_KEY,
        cors_origins=ORIGIN,
        collector_paths=PATHS,
    )
    create_topics(settings)
    with serve_collector(settings) as running:
        yield running


def lines(running: RunningCollector, marker: str, expected: int) -> list[str]:
    s = running.settings
    found = read_topic(s.kafka_bootstrap_servers, s.topic_good, expected, lambda v: marker.encode() in v)
    return [v.decode() for _, v in found]


def comparable(line: str) -> dict[str, str]:
    return {k: v for k, v in from_tsv(line).items() if k not in CLOCK}


def event(aid: str, eid: str) -> dict[str, str]:
    return {"e": "pv", "eid": eid, "tv": "py-test", "p": "web", "aid": aid, "uid": "alice@example.com",
            "duid": "0d2b6f5e-9d1c-4c6e-8f3b-5a7d2e1c9b40", "url": "https://site.example/watch",
            "dtm": "1731764000000", "stm": "1731764000100"}  # fmt: skip


def test_plain_http_on_the_custom_paths_gives_the_same_events(running: RunningCollector) -> None:
    aid = unique("app-paths")
    eid = str(uuid.uuid4())
    body = orjson.dumps({"schema": PAYLOAD_DATA, "data": [event(aid, eid)]})
    # the same network user id cookie each time (else each request gets a new one)
    headers = {"Content-Type": "application/json", "User-Agent": "paths-test", "Cookie": f"sp={uuid.uuid4()}"}
    with httpx.Client(base_url=running.url, timeout=15) as c:
        fresh = c.post("/acme/track", content=body, headers={"Content-Type": "application/json"})
        assert fresh.status_code == 200 and "sp=" in fresh.headers["set-cookie"]  # as on tp2
        assert c.post(TP2, content=body, headers=headers).status_code == 200
        custom = c.post("/acme/track", content=body, headers=headers)
        assert custom.status_code == 200 and custom.text == "ok"
        assert c.get("/i", params=event(aid, eid), headers=headers).status_code == 200
        pixel = c.get("/acme/pix", params=event(aid, eid), headers=headers)
        assert pixel.status_code == 200 and pixel.headers["content-type"] == "image/gif"
    got = lines(running, aid, 5)
    assert len(got) == 5
    standard = comparable(got[1])
    for line in got[2:]:
        other = comparable(line)
        assert other == standard, {
            k for k in standard.keys() | other.keys() if standard.get(k) != other.get(k)
        }
    assert all(transform(line)["event_id"] == eid for line in got)


def test_real_tracker_on_a_custom_post_path(running: RunningCollector) -> None:
    aid = unique("app-tracker")
    failures: list[int] = []
    sent: dict[str, str] = {}
    for path in (TP2, "/acme/track"):
        emitter = Emitter(
            running.url.removeprefix("http://"),
            protocol="http",
            method="post",
            batch_size=1,
            on_failure=lambda n, evts: failures.append(len(evts)),
            custom_retry_codes={503: False},
        )
        # the Python tracker has no option for it: a custom postPath is just another URL
        emitter.endpoint = running.url + path
        subject = Subject().set_platform("web").set_user_id("bob@example.com").set_useragent("paths-test")
        tracker = Tracker(f"py-{path.count('acme')}", emitter, subject=subject, app_id=aid)
        tracker.track(PageView(page_url=f"https://site.example/{path.count('acme')}", page_title="T"))
        tracker.flush()
        sent[path] = emitter.endpoint
    assert failures == []
    got = [transform(line) for line in lines(running, aid, 2)]
    assert sorted(e["name_tracker"] for e in got) == ["py-0", "py-1"]
    a, b = sorted(got, key=lambda e: e["name_tracker"])
    same = {"app_id", "user_id", "event", "event_name", "platform", "useragent", "page_urlhost"}
    assert {k: a[k] for k in same} == {k: b[k] for k in same}


def test_preflight_and_unknown_paths(running: RunningCollector) -> None:
    with httpx.Client(base_url=running.url, timeout=15) as c:
        pre = c.options(
            "/acme/track",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "content-type"},
        )  # fmt: skip
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in pre.headers["access-control-allow-methods"]
        assert c.options("/acme/track", headers={"Origin": "https://evil.example"}).status_code == 403
        for path in ("/acme/other", "/acme/track/", "/acme", "/ACME/track", "/acme/pix/x"):
            assert c.post(path, content=b"{}").status_code == 404, path
            assert c.get(path).status_code == 404, path
        assert c.get("/health").status_code == 200


@pytest.mark.parametrize(
    "spec",
    [
        "/acme/track",  # no target
        "/acme=/i",  # one segment
        "/a/b/c=/i",  # three segments
        "acme/track=/i",  # no leading slash
        "/acme/track=/r/tp2",  # not served here
        f"/acme/track={TP2},/acme/track=/i",  # twice
        f"/com.snowplowanalytics.snowplow/i={TP2}",  # shadows a served path
        "/micro/all=/i",  # shadows the Micro API
        "/ac me/track=/i",
    ],
)
def test_malformed_paths_are_refused(spec: str) -> None:
    with pytest.raises(ConfigError, match="LVP_COLLECTOR_PATHS"):
        parse_paths(spec)
    with pytest.raises(ConfigError, match="LVP_COLLECTOR_PATHS"):
        create_app(Settings.from_env({}, pseudonym_key=TEST_KEY, collector_paths=spec))


def test_parse_paths() -> None:
    assert parse_paths("") == {}
    assert parse_paths(PATHS) == {"/acme/track": TP2, "/acme/pix": "/i"}
    assert parse_paths(" /a.b/v1=/ice.png ,") == {"/a.b/v1": "/ice.png"}
