"""Nothing accepted is lost: a private Tansu broker is stopped and restarted under a running
collector. While it is down the collector answers 503 + Retry-After (never 200) and /sink-health
says 503; when it is back (same port, topics recreated) events are accepted again without
restarting the collector, and every event that got a 200 is on the topic."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from collector_server import TEST_KEY, read_topic, serve_collector, unique

from collector.sink import KafkaSink, SinkUnavailable
from lvp.config import Settings
from lvp.enriched import from_tsv
from lvp.kafka import create_topics
from lvp.local.broker import free_port, start_broker

TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


@pytest.fixture
def private_broker(output_dir) -> Iterator[tuple[int, Callable[[], None], Callable[[], None]]]:  # type: ignore[no-untyped-def]
    """(port, stop, start) of a Tansu broker this test may stop and restart."""
    port = free_port()
    procs = [start_broker(port=port, log_path=output_dir / "tansu-private.log")[0]]

    def stop() -> None:  # a crash: SIGKILL (also quicker than Tansu's graceful exit)
        procs[-1].kill()
        procs[-1].wait()

    def start() -> None:
        procs.append(start_broker(port=port, log_path=output_dir / "tansu-private.log")[0])

    yield port, stop, start
    for proc in procs:
        proc.kill()
        proc.wait()


def body(eid: str) -> bytes:
    event = {
        "e": "pv",
        "tv": "js-4.0.1",
        "p": "web",
        "eid": eid,
        "duid": "d-" + eid,
        "url": "https://a.example/",
    }
    return orjson.dumps({"schema": PAYLOAD_DATA, "data": [event]})


def poll_until(deadline_s: float, check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_broker_down_means_503_and_back_means_accepted(private_broker) -> None:  # type: ignore[no-untyped-def]
    port, stop, start = private_broker
    settings = Settings.from_env(
        {},
        kafka_bootstrap_servers=f"127.0.0.1:{port}",
        topic_good=unique("good"),
        topic_bad=unique("bad"),
        topic_changes=unique("changes"),
        pseudonym_key=TEST_KEY,
        produce_timeout_s=2.0,
        retry_after_s=3,
    )
    create_topics(settings)
    accepted: list[str] = []
    with serve_collector(settings) as running, httpx.Client(base_url=running.url, timeout=30) as c:

        def send() -> httpx.Response:
            eid = str(uuid.uuid4())
            r = c.post(TP2, content=body(eid))
            assert r.status_code in (200, 503), r.text
            if r.status_code == 200:
                accepted.append(eid)
            else:
                assert r.headers["retry-after"] == "3"
            return r

        assert send().status_code == 200
        stop()
        # the first requests may still be in flight to the dying broker; soon every answer is 503
        assert poll_until(30, lambda: send().status_code == 503)
        assert c.get("/sink-health").status_code == 503
        for _ in range(3):
            assert send().status_code == 503
        start()
        create_topics(settings)  # the in-memory broker came back empty
        assert poll_until(40, lambda: send().status_code == 200)
        assert poll_until(10, lambda: c.get("/sink-health").status_code == 200)
        for _ in range(3):
            assert send().status_code == 200
    # every event that got a 200 after the restart is on the good topic (the ones before it were
    # lost with the in-memory broker's data, not by the collector)
    after_restart = accepted[-4:]
    lines = read_topic(settings.kafka_bootstrap_servers, settings.topic_good, len(after_restart))
    on_topic = {from_tsv(v)["event_id"] for _, v in lines}
    assert set(after_restart) <= on_topic


def test_a_full_producer_queue_is_unavailable_not_lost(lvp_settings: Settings) -> None:
    overrides: dict[str, Any] = {"queue.buffering.max.messages": 2}
    sink = KafkaSink(lvp_settings, **overrides)
    sink.start()
    try:

        async def publish(n: int) -> None:
            await sink.publish([(lvp_settings.topic_good, b"k", b"v%d" % i) for i in range(n)])

        asyncio.run(publish(2))
        with pytest.raises(SinkUnavailable, match="queue is full"):
            asyncio.run(publish(10))
    finally:
        sink.close()


def test_unreachable_broker_at_start(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}", produce_timeout_s=1.0)
    sink = KafkaSink(settings)
    sink.start(connect_timeout=0.5)
    try:
        assert not sink.healthy

        async def publish() -> None:
            await sink.publish([(settings.topic_good, None, b"v")])

        with pytest.raises(SinkUnavailable, match="unreachable"):
            asyncio.run(publish())
    finally:
        sink.close(timeout=1)
