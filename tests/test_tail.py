"""`lvp badrows tail` and `lvp events tail` against the real broker."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka import Producer

from lvp.badrows import bad_row, encode
from lvp.cli import main
from lvp.config import Settings
from lvp.enriched import to_tsv

TIER = "iglu:com.acme/viewer_tier/jsonschema/1-0-0"


def produce(settings: Settings, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for v in values:
        producer.produce(topic, v)
    assert producer.flush(15) == 0


def test_badrows_tail_prints_type_and_reasons(
    lvp_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    s = lvp_settings
    resolution = {"schemaKey": TIER, "error": {"error": "ResolutionError", "lookupHistory": [
        {"repository": "acme", "errors": [{"error": "NotFound"}]}]}}  # fmt: skip
    validation = {"schemaKey": TIER, "error": {"error": "ValidationError", "dataReports": [
        {"message": "'gold' is not one of ['free', 'premium']", "path": "$.tier", "keyword": "enum",
         "targets": []}]}}  # fmt: skip
    protocol = {"field": "e", "value": None, "expectation": "an event type"}
    produce(s, s.topic_bad, [
        encode(bad_row("schema_violations", [resolution, validation], {"aid": "site"}, now_ms=1_731_764_002_000)),
        encode(bad_row("tracker_protocol_violations", [protocol], {}, now_ms=1_731_764_003_000)),
        b"not json at all",
    ])  # fmt: skip
    base = ["badrows", "tail", "--bootstrap-servers", s.kafka_bootstrap_servers, "--topic", s.topic_bad,
            "--from-beginning", "--exit-after", "3"]  # fmt: skip
    assert main(base) == 0
    lines = sorted(capsys.readouterr().out.splitlines())  # partitions interleave in any order
    assert len(lines) == 3
    assert lines[1] == (
        f"2024-11-16T13:33:22.000Z schema_violations {TIER}: ResolutionError: acme: NotFound"
        f" | {TIER}: ValidationError: $.tier: 'gold' is not one of ['free', 'premium']"
    )
    assert lines[2] == "2024-11-16T13:33:23.000Z tracker_protocol_violations e: an event type"
    assert lines[0].startswith("- unknown not-json")
    assert main([*base, "--type", "tracker_protocol_violations"]) == 0
    assert capsys.readouterr().out.splitlines() == [lines[2]]
    assert main([*base, "--max", "1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_events_tail_prints_the_analytics_sdk_json(
    lvp_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    s = lvp_settings
    event_id = str(uuid.uuid4())
    contexts = {"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
                "data": [{"schema": TIER, "data": {"tier": "premium"}}]}  # fmt: skip
    line = to_tsv({"app_id": "site", "platform": "web", "collector_tstamp": "2024-11-16 13:33:22.625",
                   "event": "page_view", "event_id": event_id, "v_tracker": "js-4.0.1",
                   "v_collector": "lvp", "v_etl": "lvp", "domain_userid": "a1b2", "contexts": json.dumps(contexts),
                   "page_url": "https://site.example/watch"})  # fmt: skip
    produce(s, s.topic_good, [line.encode(), b"not an enriched line"])
    argv = ["events", "tail", "--bootstrap-servers", s.kafka_bootstrap_servers, "--topic", s.topic_good,
            "--from-beginning", "--exit-after", "3"]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["event_id"] == event_id and event["app_id"] == "site" and event["event"] == "page_view"
    assert event["collector_tstamp"] == "2024-11-16T13:33:22.625Z"
    assert event["contexts_com_acme_viewer_tier_1"] == [{"tier": "premium"}]
    assert "cannot read" in captured.err


def test_tail_of_a_missing_topic_is_one_clear_line(
    lvp_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["badrows", "tail", "--bootstrap-servers", lvp_settings.kafka_bootstrap_servers, "--topic",
            f"missing-{uuid.uuid4().hex[:8]}", "--exit-after", "1"]  # fmt: skip
    assert main(argv) == 1
    assert "does not exist" in capsys.readouterr().err
