"""Per-message input formats of `lvp profiles`: enriched TSV, Analytics SDK JSON, accelerator JSON,
input pseudonymization and bad rows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from enriched_factory import full_session
from hypothesis import given, settings
from hypothesis import strategies as st
from snowplow_analytics_sdk.event_transformer import transform

from lvp.enriched import FIELDS, EnrichedFormatError, format_tstamp, from_tsv, parse_tstamp
from lvp.events import from_enriched
from lvp.pseudonym import Pseudonymizer, pseudonymize
from profiles.inputs import (
    MAX_PAYLOAD_CHARS,
    SDK_CONTEXTS,
    SDK_MEDIA_EVENTS,
    InputDecoder,
    InputError,
    detect_format,
    sdk_key,
)

FIXTURE = Path(__file__).parent / "fixtures" / "snowplow-enriched-sample.tsv"
KEY = b"test-pseudonym-key-not-secret-0123"
RAW_DUID = "143f9cb9-3db9-4e99-8d67-c8aea075d190"
RAW_NUID = "d8aae409-b64d-40c0-99d7-5324fcb27735"


def fixture_lines() -> list[str]:
    return FIXTURE.read_text().splitlines()


def test_tsv_uses_the_shared_parser() -> None:
    decoder = InputDecoder()
    for line in fixture_lines():
        assert decoder.decode(line.encode()) == from_enriched(from_tsv(line))
    assert detect_format(fixture_lines()[0].encode()) == "tsv"


def test_sdk_key_naming() -> None:
    assert (
        sdk_key("contexts", "iglu:com.snowplowanalytics.snowplow/media_player/jsonschema/2-0-0")
        == "contexts_com_snowplowanalytics_snowplow_media_player_2"
    )
    assert sdk_key("contexts", "iglu:com.acme-corp.video/adBreakInfo/jsonschema/3-1-2") == (
        "contexts_com_acme-corp_video_ad_break_info_3"
    )
    assert "unstruct_event_com_snowplowanalytics_snowplow_media_ad_break_start_event_1" in SDK_MEDIA_EVENTS
    assert "contexts_com_snowplowanalytics_snowplow_media_ad_break_1" in SDK_CONTEXTS


@pytest.mark.parametrize("source", ["snowplow-sample", "factory"])
def test_analytics_sdk_json_reads_like_the_tsv(source: str) -> None:
    """The real Analytics SDK turns each line into its JSON shape; both decode to one event."""
    if source == "factory":
        lines = [line for _key, line in full_session("v-json", 1_763_000_000_000).lines()]
    else:
        lines = fixture_lines()
    decoder = InputDecoder()
    media = 0
    for line in lines:
        as_json = orjson.dumps(transform(line))
        assert detect_format(as_json) == "json"
        ev = decoder.decode(as_json)
        assert ev == decoder.decode(line.encode())
        media += ev.is_media
    assert media > 20


def test_accelerator_json() -> None:
    msg = {
        "collector_tstamp": "2024-11-17T10:10:56.957Z",
        "event_id": "039e8653-5d30-4135-a273-86d42ce7ea1b",
        "event_name": "pause_event",
        "viewer_id": RAW_DUID,
        "adsClicked": 1,
        "adsSkipped": 4,
        "adId": 0,
        "video_ts": 126.105709,
    }
    ev = InputDecoder().decode(orjson.dumps(msg))
    assert (ev.name, ev.viewer_id, ev.event_id) == ("pause", RAW_DUID, msg["event_id"])
    assert ev.collector_ts == ev.derived_ts == 1731838256.957
    assert ev.position_s == 126.105709
    assert ev.session_stats == {"adsClicked": 1.0, "adsSkipped": 4.0}
    assert ev.ad_id is None
    ev = InputDecoder(Pseudonymizer(KEY)).decode(
        orjson.dumps({**msg, "event_name": "ad_start_event", "adId": 7})
    )
    assert (ev.name, ev.ad_id, ev.viewer_id) == ("ad_start", "7", pseudonymize(RAW_DUID, KEY))


def test_pseudonymize_input() -> None:
    decoder = InputDecoder(Pseudonymizer(KEY))
    ev = decoder.decode(fixture_lines()[5].encode())
    assert ev.viewer_id == pseudonymize(RAW_DUID, KEY)  # domain_userid: there is no user_id
    cols = dict.fromkeys(FIELDS, "")
    cols.update(from_tsv(fixture_lines()[5]))
    cols["user_id"] = "alice@example.com"
    line = "\t".join(cols[f] for f in FIELDS)
    assert decoder.decode(line.encode()).viewer_id == pseudonymize("alice@example.com", KEY)
    assert InputDecoder().decode(line.encode()).viewer_id == "alice@example.com"


def _broken_tsv() -> str:
    cols = dict.fromkeys(FIELDS, "")
    cols.update(from_tsv(fixture_lines()[5]))
    cols["user_id"] = "alice@example.com"
    cols["collector_tstamp"] = "yesterday"
    return "\t".join(cols[f] for f in FIELDS)


BAD = [
    (b"", "unknown_format"),
    (b"hello world", "unknown_format"),
    (b"a\tb\tc", "invalid_tsv"),
    (b"{not json", "invalid_json"),
    (b"[1, 2]", "unknown_format"),
    (b'{"a": [1, 2]', "invalid_json"),
    (b'{"foo": 1}', "invalid_json"),
    (orjson.dumps({"viewer_id": RAW_DUID, "event_name": "play_event"}), "invalid_event"),
    (orjson.dumps({"event_id": "e1", "domain_userid": RAW_DUID}), "invalid_event"),
    (_broken_tsv().encode(), "invalid_tsv"),
    (("\t".join([RAW_DUID] * 140)).encode(), "invalid_tsv"),
]


@pytest.mark.parametrize(("value", "reason"), BAD)
def test_bad_messages_become_bad_rows_without_raw_identifiers(value: bytes, reason: str) -> None:
    decoder = InputDecoder(Pseudonymizer(KEY))
    with pytest.raises(InputError) as info:
        decoder.decode(value)
    assert info.value.reason == reason
    row = decoder.bad_row(value, info.value, now_ms=1_731_764_001_000)
    assert row["schema"].endswith("badrows/loader_parsing_error/jsonschema/2-0-0")
    data = row["data"]
    assert data["processor"]["artifact"] == "lvp-profiles"
    assert data["failure"]["messages"][0]["reason"] == reason
    assert isinstance(data["payload"], str) and len(data["payload"]) <= MAX_PAYLOAD_CHARS + 1
    text = orjson.dumps(row).decode()
    for raw in (RAW_DUID, RAW_NUID, "alice@example.com", "172.29.0.1"):
        assert raw not in text


def test_bad_row_payload_keeps_pseudonymous_context() -> None:
    """Input from our collector is already pseudonymous: the payload keeps the ids for debugging."""
    line = _broken_tsv().replace("alice@example.com", "a" * 64)
    decoder = InputDecoder()
    with pytest.raises(InputError) as info:
        decoder.decode(line.encode())
    payload = decoder.bad_row(line.encode(), info.value)["data"]["payload"]
    assert "a" * 64 in payload and "172.29.0.x" in payload and "yesterday" in payload
    assert len(payload) <= MAX_PAYLOAD_CHARS + 1


@settings(max_examples=500, deadline=None)
@given(
    ms=st.integers(0, 4_102_444_799_999),
    iso_form=st.booleans(),
    garbage=st.sampled_from(["", "x", "Z", "+00:00", "9"]),
    spot=st.integers(0, 22),
)
def test_parse_tstamp_fast_path_equals_strptime(ms: int, iso_form: bool, garbage: str, spot: int) -> None:
    """lvp.enriched.parse_tstamp's fast path (added for this consumer's hot loop) gives exactly
    the strptime result, and refuses exactly what strptime refuses."""
    text = format_tstamp(ms)
    if iso_form:
        text = text.replace(" ", "T") + "Z"
    variants = [text, text[:spot] + garbage + text[spot + 1 :]]
    for value in variants:
        try:
            want: float | None = _strptime_epoch(value)
        except ValueError:
            want = None
        try:
            got: float | None = parse_tstamp(value)
        except EnrichedFormatError:
            got = None
        assert got == want, value
    assert parse_tstamp(text) == ms / 1000


def _strptime_epoch(value: str) -> float:
    v = value.strip().replace("T", " ").rstrip("Z")
    if "+" in v[10:]:
        v = v[: 10 + v[10:].index("+")]
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in v else "%Y-%m-%d %H:%M:%S"
    return datetime.strptime(v, fmt).replace(tzinfo=UTC).timestamp()
