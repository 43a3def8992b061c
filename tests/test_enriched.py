from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from snowplow_analytics_sdk.event_transformer import ENRICHED_EVENT_FIELD_TYPES, transform

from lvp.enriched import (
    BOOL_FIELDS,
    DOUBLE_FIELDS,
    FIELDS,
    INT_FIELDS,
    TIMESTAMP_FIELDS,
    ColumnPicker,
    EnrichedFormatError,
    epoch_of,
    format_tstamp,
    from_tsv,
    iso,
    looks_like_tsv,
    parse_tstamp,
    to_tsv,
)
from lvp.events import from_enriched

SAMPLE = Path(__file__).parent / "fixtures" / "snowplow-enriched-sample.tsv"


def test_layout_matches_the_analytics_sdk() -> None:
    sdk = {name: conv.__name__ for name, conv in ENRICHED_EVENT_FIELD_TYPES}
    assert tuple(sdk) == FIELDS
    assert {n for n, c in sdk.items() if c == "convert_tstamp"} == TIMESTAMP_FIELDS
    assert {n for n, c in sdk.items() if c == "convert_int"} == INT_FIELDS
    assert {n for n, c in sdk.items() if c == "convert_bool"} == BOOL_FIELDS
    assert {n for n, c in sdk.items() if c == "convert_double"} == DOUBLE_FIELDS


def test_roundtrip_and_sdk_parses_our_line() -> None:
    ctx = {"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0", "data": []}
    line = to_tsv(
        {
            "app_id": "a\tb",
            "event_id": "e1",
            "collector_tstamp": format_tstamp(1_700_000_000_123),
            "br_cookies": True,
            "page_urlport": 443,
            "contexts": orjson.dumps(ctx).decode(),
            "page_title": "two\nlines",
        }
    )
    assert line.count("\t") == 130
    cols = from_tsv(line)
    assert cols["app_id"] == "a b" and cols["page_title"] == "two lines"
    assert cols["collector_tstamp"] == "2023-11-14 22:13:20.123"
    parsed = transform(line)
    assert parsed["br_cookies"] is True and parsed["page_urlport"] == 443
    assert parsed["collector_tstamp"] == "2023-11-14T22:13:20.123Z"


def test_timestamps() -> None:
    assert parse_tstamp("2023-11-14 22:13:20.123") == pytest.approx(1_700_000_000.123)
    assert parse_tstamp("2023-11-14T22:13:20.123Z") == pytest.approx(1_700_000_000.123)
    assert parse_tstamp("2023-11-14 22:13:20") == 1_700_000_000
    with pytest.raises(EnrichedFormatError):
        parse_tstamp("yesterday")


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (1731764001.958, "2024-11-16T13:33:21.958Z"),
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1731764001.9996, "2024-11-16T13:33:22.000Z"),  # rounds to the millisecond
        (1700000000, "2023-11-14T22:13:20.000Z"),
    ],
)
def test_iso(ts: float, text: str) -> None:
    assert iso(ts) == text
    assert parse_tstamp(text) == pytest.approx(round(ts, 3), abs=1e-6)


def test_a_timestamp_parse_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_tstamp("yesterday")


def test_timestamps_round_trip() -> None:
    assert epoch_of("2024-11-16T13:33:22.625Z") == pytest.approx(1731764002.625)
    assert iso(1731764002.625) == "2024-11-16T13:33:22.625Z"
    assert epoch_of("yesterday") is None and epoch_of(None) is None and epoch_of("") is None


def test_wrong_width_is_an_error() -> None:
    with pytest.raises(EnrichedFormatError, match="131"):
        from_tsv("a\tb")
    assert not looks_like_tsv(b'{"json": 1}')


def test_real_pipeline_sample_parses_into_viewer_events() -> None:
    lines = [line for line in SAMPLE.read_text().splitlines() if line]
    events = [from_enriched(from_tsv(line)) for line in lines]
    assert len(events) == 73
    assert {e.viewer_id for e in events} == {"143f9cb9-3db9-4e99-8d67-c8aea075d190"}
    names = [e.name for e in events]
    assert names.count("ad_break_start") == 3 and "play" in names and "page_view" in names
    ad_start = next(e for e in events if e.name == "ad_start")
    assert ad_start.ad_id == "288" and ad_start.ad_break_id == "287" and ad_start.ad_name == "Ad 1"
    assert ad_start.media_label == "Bugs Bunny" and ad_start.duration_s == pytest.approx(596.474195)
    assert ad_start.media_session_id == "e3a82b1d-e44e-4bbf-a797-672b4e879af3"
    assert ad_start.session_stats is not None and ad_start.session_stats["adBreaks"] == 1


@settings(max_examples=200, deadline=None)
@given(
    columns=st.lists(st.sampled_from(FIELDS), min_size=1, max_size=20),
    values=st.lists(st.sampled_from(["", "a", "bc", "é", "x\r"]), min_size=131, max_size=131),
    width=st.sampled_from([131, 131, 131, 130, 132, 1, 200]),
    ending=st.sampled_from(["", "\n", "\r\n"]),
    raw=st.sampled_from(["str", "bytes", "not utf-8"]),
)
def test_column_picker_reads_what_from_tsv_reads(
    columns: list[str], values: list[str], width: int, ending: str, raw: str
) -> None:
    picker = ColumnPicker(tuple(columns))
    line: str | bytes = "\t".join((values * 2)[:width]) + ending
    if raw != "str":
        line = line.encode() if raw == "bytes" else b"\xff" + line.encode()
    try:
        cols = from_tsv(line)
        want: tuple[str, ...] | str = tuple(cols.get(c, "") for c in columns)
    except EnrichedFormatError as exc:
        want = str(exc)
    try:
        got: tuple[str, ...] | str = picker(line)
    except EnrichedFormatError as exc:
        got = str(exc)
    assert got == want


def test_parse_tstamp_remembers_seconds_not_mistakes() -> None:
    assert parse_tstamp("2023-11-14 22:13:20.123") == 1_700_000_000.123
    assert parse_tstamp("2023-11-14T22:13:20.124Z") == 1_700_000_000.124  # same second, other form
    assert parse_tstamp("2023-11-14 22:13:20.999") == 1_700_000_000.999
    assert parse_tstamp("2023-11-14 22:13:20.1234") == 1_700_000_000.1234  # strptime's reading
    assert parse_tstamp("2023-11-14 22:13:2\u0660.123") == 1_700_000_000.123  # (strptime takes \d)
    for bad in ("2023-11-14 22:13:20.12x", "2023-11-14 22:13:20.123Y", "2023-11-14 22:13:20.12\u0663"):
        with pytest.raises(EnrichedFormatError):
            parse_tstamp(bad)
