"""The viewer API over real connections: a Tansu broker feeding the changes topic, the app in a
uvicorn thread, httpx for HTTP and a raw streaming reader for SSE."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from support.viewer import (
    SSEEvent,
    SSEStream,
    create_viewer_state_table,
    make_profile,
    now_iso,
    produce_changes,
    serve_in_thread,
)

from lvp.config import Settings
from lvp.gc_policy import SERVICE_GC_THRESHOLDS
from viewer.app import create_app

TOKEN = "test-token-app-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def poll(fn: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Call ``fn`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


@contextmanager
def running(settings: Settings, **app_kw: Any) -> Iterator[tuple[str, httpx.Client]]:
    app = create_app(settings, **app_kw)
    with serve_in_thread(app) as base, httpx.Client(base_url=base, headers=AUTH, timeout=10) as http:
        poll(lambda: http.get("/health").json()["loaded"])
        yield base, http


def sse_clients(http: httpx.Client) -> int:
    """Open SSE streams, from the (token-protected) metrics: /health gives no counts."""
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("lvp_viewer_sse_clients "):
            return int(float(line.split()[1]))
    raise AssertionError("lvp_viewer_sse_clients missing from /metrics")


@pytest.fixture
def settings(lvp_settings: Settings, dynamodb_local: str) -> Settings:
    s = lvp_settings.with_(
        api_tokens=TOKEN,
        jwt_secret="app-test-secret-0123456789abcdef0123",
        push_interval_s=0.05,
        aws_endpoint_url=dynamodb_local,
    )
    create_viewer_state_table(s)
    return s


def test_snapshot_holds_exactly_the_active_viewers(settings: Settings) -> None:
    produce_changes(
        settings,
        [
            ("v-a", make_profile("v-a", "watching", last_seen=now_iso(-3), media_label="Movie A")),
            ("v-b", make_profile("v-b", "paused", last_seen=now_iso(-2), media_label="Movie A")),
            ("v-c", make_profile("v-c", "watching_ad", last_seen=now_iso(-1), media_label="Movie B")),
            ("v-ended", make_profile("v-ended", "ended", last_seen=now_iso(-1))),
            ("v-stale", make_profile("v-stale", "watching", last_seen=now_iso(-600))),
            ("v-erased", make_profile("v-erased", "watching", last_seen=now_iso())),
            ("v-erased", None),
        ],
    )
    with running(settings) as (_base, http):
        snap = poll(lambda: (s := http.get("/api/viewers").json())["active"] == 3 and s)
        assert snap["by_status"]["watching"] == 1
        assert snap["by_status"]["paused"] == 1
        assert snap["by_status"]["watching_ad"] == 1
        assert snap["by_media"] == {"Movie A": 2, "Movie B": 1}
        ids = [v["viewer_id"] for v in snap["viewers"]]
        assert ids == ["v-a", "v-c", "v-b"]  # page order: status (watching, ad, ...), title, id
        assert all(v["active"] is True for v in snap["viewers"])
        assert set(snap["viewers"][0]) == {*make_profile("x"), "active"}
        assert snap["generated_at"].endswith("Z")

        # paging with a cursor visits every active viewer exactly once
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = http.get("/api/viewers", params=params).json()
            seen += [v["viewer_id"] for v in page["viewers"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == ids

        assert http.get("/api/viewers", params={"limit": 0}).status_code == 400
        assert http.get("/api/viewers", params={"limit": "x"}).status_code == 400
        assert http.get("/api/viewers", params={"cursor": "%%%"}).status_code == 400


def test_stream_starts_with_snapshot_and_delivers_a_change(settings: Settings) -> None:
    produce_changes(settings, [("v-1", make_profile("v-1", "watching"))])
    with running(settings) as (base, http):
        poll(lambda: http.get("/api/viewers").json()["active"] == 1)
        with SSEStream(base, "/api/viewers/stream", AUTH) as sse:
            assert sse.status == 200
            assert sse.headers["content-type"].startswith("text/event-stream")
            first = sse.next_event()
            assert first is not None and first.event == "snapshot"
            snap = first.json()
            assert isinstance(snap, dict)
            assert snap["active"] == 1 and snap["viewers"][0]["status"] == "watching"
            assert int(first.id or "") == snap["seq"]
            assert sse.retry is not None and sse.retry > 0

            produce_changes(settings, [("v-1", make_profile("v-1", "paused", events=6))])
            ev = sse.wait_for(lambda e: _upserted(e, "v-1", "paused"))
            assert ev is not None, "the paused status never reached the stream"
            delta = ev.json()
            assert isinstance(delta, dict)
            assert int(ev.id or "") == delta["seq"] > snap["seq"]
            assert delta["counts"]["by_status"]["paused"] == 1
            assert delta["counts"]["active"] == 1

            produce_changes(settings, [("v-1", make_profile("v-1", "ended", events=7))])
            ev2 = sse.wait_for(lambda e: e.event == "delta" and "v-1" in e.json()["remove"])
            assert ev2 is not None
            assert int(ev2.id or "") > int(ev.id or "")
            assert ev2.json()["counts"]["active"] == 0


def _upserted(ev: SSEEvent, viewer_id: str, status: str) -> bool:
    if ev.event != "delta":
        return False
    data = ev.json()
    assert isinstance(data, dict)
    return any(p["viewer_id"] == viewer_id and p["status"] == status for p in data["upsert"])


def test_resume_with_last_event_id_gets_missed_deltas(settings: Settings) -> None:
    produce_changes(settings, [("v-r", make_profile("v-r", "watching"))])
    with running(settings) as (base, http):
        poll(lambda: http.get("/api/viewers").json()["active"] == 1)
        with SSEStream(base, "/api/viewers/stream", AUTH) as sse:
            first = sse.next_event()
            assert first is not None and first.event == "snapshot"
            last_id = first.id
        assert last_id is not None

        # while disconnected: two changes, pushed as deltas
        produce_changes(settings, [("v-r", make_profile("v-r", "paused", events=6))])
        poll(lambda: http.get("/api/viewers").json()["seq"] > int(last_id))
        produce_changes(settings, [("v-new", make_profile("v-new", "buffering"))])
        poll(lambda: http.get("/api/viewers").json()["active"] == 2)
        current = poll(lambda: (s := http.get("/api/viewers").json())["seq"] > int(last_id) + 1 and s["seq"])

        with SSEStream(base, "/api/viewers/stream", {**AUTH, "Last-Event-ID": last_id}) as sse:
            got: list[SSEEvent] = []
            while not got or int(got[-1].id or 0) < current:
                ev = sse.next_event(5)
                assert ev is not None
                got.append(ev)
            assert all(e.event == "delta" for e in got), [e.event for e in got]
            ids = [int(e.id or 0) for e in got]
            assert ids == list(range(int(last_id) + 1, current + 1))
            upserts = [p for e in got for p in e.json()["upsert"]]
            assert {(p["viewer_id"], p["status"]) for p in upserts} >= {
                ("v-r", "paused"),
                ("v-new", "buffering"),
            }

        # the same id as query parameter (for clients that reconnect themselves) works too
        with SSEStream(base, f"/api/viewers/stream?last_event_id={last_id}", AUTH) as sse:
            ev = sse.next_event()
            assert ev is not None and ev.event == "delta" and int(ev.id or 0) == int(last_id) + 1

        # an id we never issued (another process, or too old) gets a fresh snapshot
        for unknown in ("1", str(current + 1000), "garbage"):
            with SSEStream(base, "/api/viewers/stream", {**AUTH, "Last-Event-ID": unknown}) as sse:
                ev = sse.next_event()
                assert ev is not None and ev.event == "snapshot"
                assert ev.json()["active"] == 2


def test_slow_client_is_dropped_and_others_keep_up(settings: Settings) -> None:
    with running(settings, client_queue_frames=3) as (base, http):
        fast_seen: set[str] = set()  # viewers the fast client has received
        fast = SSEStream(base, "/api/viewers/stream", AUTH)
        stop = threading.Event()

        def read_fast() -> None:
            while not stop.is_set():
                ev = fast.next_event(0.5)
                if ev is not None and ev.event == "delta":
                    fast_seen.update(p["viewer_id"] for p in ev.json()["upsert"])

        reader = threading.Thread(target=read_fast, daemon=True)
        reader.start()
        slow = SSEStream(base, "/api/viewers/stream", AUTH, rcvbuf=4096)  # connects, never reads
        try:
            poll(lambda: sse_clients(http) == 2)
            big = "x" * 300_000  # a few large deltas fill the slow client's socket buffers
            for i in range(200):
                produce_changes(settings, [(f"v-{i}", make_profile(f"v-{i}", media_label=big))])
                # paced by the fast client: it is never more than one delta behind
                wanted = f"v-{i}"
                poll(lambda: wanted in fast_seen)  # noqa: B023 - called before the next iteration
                if sse_clients(http) == 1:
                    break
            poll(lambda: sse_clients(http) == 1)
            metrics = http.get("/metrics").text
            assert "lvp_viewer_sse_dropped_total 1.0" in metrics
            # the fast client is still connected and receives what comes next
            produce_changes(settings, [("v-last", make_profile("v-last", "paused"))])
            poll(lambda: "v-last" in fast_seen)
        finally:
            stop.set()
            reader.join(5)
            fast.close()
            slow.close()


def test_stats_aggregate_the_active_viewers(settings: Settings) -> None:
    produce_changes(
        settings,
        [
            (
                "s-1",
                make_profile(
                    "s-1",
                    "watching",
                    startup_time_s=1.0,
                    play_time_s=90.0,
                    buffering_time_s=10.0,
                    paused_time_s=0.0,
                    ad_time_s=0.0,
                    errors=1,
                    ad_breaks=1,
                    ads_started=2,
                    ads_completed=1,
                    ads_skipped=1,
                    ads_clicked=0,
                ),
            ),
            (
                "s-2",
                make_profile(
                    "s-2",
                    "buffering",
                    startup_time_s=3.0,
                    play_time_s=170.0,
                    buffering_time_s=30.0,
                    paused_time_s=60.0,
                    ad_time_s=0.0,
                    errors=0,
                    ad_breaks=2,
                    ads_started=2,
                    ads_completed=2,
                    ads_skipped=0,
                    ads_clicked=1,
                ),
            ),
            (
                "s-3",
                make_profile("s-3", "watching", startup_time_s=2.0, play_time_s=0.0, buffering_time_s=0.0),
            ),
        ],
    )
    with running(settings) as (_base, http):
        poll(lambda: http.get("/api/viewers").json()["active"] == 3)
        stats = poll(lambda: (s := http.get("/api/stats").json())["active"] == 3 and s)
        assert stats["by_status"]["watching"] == 2 and stats["by_status"]["buffering"] == 1
        assert stats["qoe"]["median_startup_time_s"] == 2.0
        assert stats["qoe"]["rebuffering_ratio"] == pytest.approx(40 / 300, abs=1e-4)
        # 1 error over (100 + 260 + 0) s of player time = 360 s
        assert stats["qoe"]["errors_per_viewer_hour"] == pytest.approx(1 / (360 / 3600), rel=1e-3)
        assert stats["ads"] == {
            "ad_breaks": 3,
            "ads_started": 4,
            "ads_completed": 3,
            "ads_skipped": 1,
            "ads_clicked": 1,
        }
        assert stats["active_series"]["step_s"] == 10
        assert stats["active_series"]["points"], "the push loop samples the active count"
        assert set(stats["events_per_min"]) == {"1m", "5m", "15m"}

        # events counted from the increase of a profile's counter, once the view has loaded
        produce_changes(settings, [("s-3", make_profile("s-3", "watching", events=25))])
        after = poll(lambda: (s := http.get("/api/stats").json())["events_per_min"]["1m"] > 0 and s)
        assert after["events_per_min"]["15m"] > 0


def test_health_metrics_and_cors(settings: Settings) -> None:
    settings = settings.with_(viewer_cors_origins="https://ops.example.com", metrics_public=True)
    produce_changes(settings, [("m-1", make_profile("m-1", "watching"))])
    with running(settings) as (base, http):
        poll(lambda: http.get("/api/viewers").json()["active"] == 1)
        with SSEStream(base, "/api/viewers/stream", AUTH) as sse:
            assert sse.next_event() is not None
            produce_changes(settings, [("m-1", make_profile("m-1", "paused", events=9))])
            assert sse.wait_for(lambda e: _upserted(e, "m-1", "paused")) is not None
            with httpx.Client(base_url=base) as anon:
                health = anon.get("/health")
                assert health.status_code == 200 and health.json()["loaded"] is True
                text = anon.get("/metrics").text
            assert "lvp_viewer_sse_clients 1.0" in text
            assert 'lvp_viewer_active_viewers{status="paused"} 1.0' in text
            assert "lvp_viewer_push_latency_seconds_count" in text
            assert "lvp_viewer_snapshot_build_seconds_count" in text

        allowed = http.get("/api/viewers", headers={"Origin": "https://ops.example.com"})
        assert allowed.headers.get("access-control-allow-origin") == "https://ops.example.com"
        other = http.get("/api/viewers", headers={"Origin": "https://evil.example.net"})
        assert "access-control-allow-origin" not in other.headers
        pre = http.options(
            "/api/viewers",
            headers={
                "Origin": "https://ops.example.com",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert pre.status_code == 200
        assert "authorization" in pre.headers["access-control-allow-headers"].lower()

        page = httpx.get(base + "/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert http.get("/api/nope").status_code == 404


def test_the_garbage_collector_policy_holds_while_the_viewer_serves(settings: Settings) -> None:
    """lvp.gc_policy: raised thresholds from the lifespan's start to its end, then what was there."""
    before = gc.get_threshold()
    with running(settings) as (_base, http):
        assert http.get("/health").status_code == 200
        assert gc.get_threshold() == SERVICE_GC_THRESHOLDS
    assert gc.get_threshold() == before


def test_metrics_can_require_a_token(settings: Settings) -> None:
    with running(settings.with_(metrics_public=False)) as (base, http):
        assert httpx.get(base + "/metrics").status_code == 401
        assert http.get("/metrics").status_code == 200


def test_public_stats_are_open_noisy_and_budgeted(settings: Settings) -> None:
    settings = settings.with_(dp_epsilon="balanced", dp_release_interval_s=0.0, dp_budget=2.0)
    produce_changes(settings, [(f"p-{i}", make_profile(f"p-{i}", "watching")) for i in range(5)])
    with running(settings) as (base, http):
        poll(lambda: http.get("/api/viewers").json()["active"] == 5)
        with httpx.Client(base_url=base) as anon:  # no token
            first = anon.get("/api/public/stats")
            assert first.status_code == 200
            r1 = first.json()
            assert r1["epsilon"] == 1.0 and r1["noise_scale"] == 3.0
            assert set(r1["by_status"]) >= {"watching", "paused"} and "other" in r1["by_media"]
            assert all(isinstance(v, int) and v >= 0 for v in r1["by_status"].values())
            r2 = anon.get("/api/public/stats").json()
            assert r2["budget"]["spent"] == 2.0 and not r2["budget"]["exhausted"]
            r3 = anon.get("/api/public/stats").json()  # budget spent: the last release again
            assert r3["budget"]["exhausted"] is True
            assert (r3["active"], r3["released_at"]) == (r2["active"], r2["released_at"])
            assert TOKEN not in first.text


def test_cli_flags_set_the_viewer_settings() -> None:
    from lvp.cli import build_parser, settings_from_args

    argv = ["viewer", "--host", "0.0.0.0", "--port", "8123", "--push-interval", "0.5"]
    args = build_parser().parse_args(argv)
    s = settings_from_args(args)
    assert (s.viewer_host, s.viewer_port, s.push_interval_s) == ("0.0.0.0", 8123, 0.5)
    assert args.func is not None


def _touch(settings: Settings, rows: list[dict[str, Any]]) -> None:
    """One touches message per partition, as `lvp profiles` publishes them."""
    from confluent_kafka import Producer

    from lvp.changes import TOUCH_KEY_PREFIX, encode_touches, partition_for, touch_patch
    from lvp.kafka import producer_config

    producer = Producer(producer_config(settings, log_level=2))
    meta = producer.list_topics(settings.topic_changes, timeout=10).topics[settings.topic_changes]
    n = len(meta.partitions)
    by_partition: dict[int, list[list[Any]]] = {}
    for p in rows:
        vid = str(p["viewer_id"])
        by_partition.setdefault(partition_for(vid.encode(), n), []).append([vid, *touch_patch(p)])
    for part, touches in by_partition.items():
        key = TOUCH_KEY_PREFIX + str(part).encode()
        producer.produce(settings.topic_changes, key=key, value=encode_touches(touches), partition=part)
    assert producer.flush(15) == 0


def test_a_stream_gets_only_its_window(settings: Settings) -> None:
    """A client subscribed to a page (here: 2 watching viewers) receives the counts of all and the
    rows of its page only: touches of its rows as compact patches, nothing of other rows."""
    viewers = {f"w-{i}": make_profile(f"w-{i}", "watching", events=5) for i in range(4)}
    viewers["p-0"] = make_profile("p-0", "paused", events=5)
    produce_changes(settings, list(viewers.items()))
    with running(settings) as (base, http):
        poll(lambda: http.get("/api/viewers").json()["active"] == 5)
        assert http.get("/api/viewers/stream", params={"status": "ended"}).status_code == 400
        assert http.get("/api/viewers/stream", params={"q": "x" * 100}).status_code == 400
        with SSEStream(base, "/api/viewers/stream?limit=2&status=watching", AUTH) as sse:
            first = sse.next_event()
            assert first is not None and first.event == "snapshot"
            snap = first.json()
            assert [p["viewer_id"] for p in snap["viewers"]] == ["w-0", "w-1"]
            assert snap["active"] == 5 and snap["total"] == 4 and snap["touch_fields"]

            # a touch of a row outside the page and one of a row in it
            moved = {**viewers["w-1"], "position_s": 77.0, "events": 6, "last_seen": now_iso()}
            _touch(
                settings, [{**viewers["w-3"], "position_s": 9.0, "events": 6, "last_seen": now_iso()}, moved]
            )
            ev = sse.wait_for(lambda e: e.event == "delta" and bool(e.json()["touch"]))
            assert ev is not None, "the touch never reached the stream"
            delta = ev.json()
            fields = delta["touch_fields"]
            assert [row[0] for row in delta["touch"]] == ["w-1"]  # not w-3: not on this page
            assert dict(zip(fields, delta["touch"][0][1:], strict=True))["position_s"] == 77.0
            assert delta["upsert"] == [] and delta["remove"] == []

            # a status change outside the page: counts only; then one that moves a row out
            produce_changes(settings, [("p-0", make_profile("p-0", "buffering", events=6))])
            ev = sse.wait_for(
                lambda e: e.event == "delta" and e.json()["counts"]["by_status"]["buffering"] == 1
            )
            assert ev is not None and ev.json()["upsert"] == [] and ev.json()["remove"] == []
            produce_changes(settings, [("w-0", make_profile("w-0", "paused", events=6))])
            ev = sse.wait_for(lambda e: e.event == "delta" and e.json()["remove"] == ["w-0"])
            assert ev is not None
            delta = ev.json()
            assert [p["viewer_id"] for p in delta["upsert"]] == ["w-2"]  # the next one moves up
            assert delta["counts"]["total"] == 3


def test_large_view_stats_are_built_off_the_loop(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above STATS_OFFLOAD_ABOVE viewers the QoE and ad aggregates are computed in a worker
    thread: the first answer carries empty aggregates, a later one the audience's."""
    import viewer.service
    from viewer.stats import ad_funnel

    monkeypatch.setattr(viewer.service, "STATS_OFFLOAD_ABOVE", 0)
    threads: list[str] = []
    real_qoe = viewer.service.qoe

    def recording_qoe(profiles: Any) -> Any:
        if profiles:  # the placeholder (no profiles) is built at once
            threads.append(threading.current_thread().name)
        return real_qoe(profiles)

    monkeypatch.setattr(viewer.service, "qoe", recording_qoe)
    profiles = [make_profile(f"s-{i}", ads_started=i, ads_completed=1, ad_breaks=2) for i in range(4)]
    produce_changes(settings, [(str(p["viewer_id"]), p) for p in profiles])
    with running(settings) as (_base, http):
        poll(lambda: http.get("/api/viewers").json()["active"] == 4)
        expected = ad_funnel(profiles)
        assert expected["ads_started"] == 6
        stats = poll(lambda: (s := http.get("/api/stats").json())["ads"] == expected and s)
        assert stats["active"] == 4 and stats["qoe"]
    # built in a worker thread, never on the server's event loop (the uvicorn thread)
    assert threads and not any(t.startswith("uvicorn-") for t in threads), threads
