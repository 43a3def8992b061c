"""lvp.events: the one-pass TSV reader (the consumer's hot path) gives exactly what the two-step
``from_enriched(from_tsv(line))`` gives — the same event or the same error — for real lines and for
lines broken in every column it reads; entity values are read with the documented types."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from enriched_factory import full_session
from hypothesis import given, settings
from hypothesis import strategies as st

from lvp import events as events_module
from lvp.enriched import INDEX, EnrichedFormatError, from_tsv
from lvp.events import (
    EVENT_COLUMNS,
    MEDIA_AD,
    MEDIA_AD_BREAK,
    MEDIA_PLAYER,
    MEDIA_SESSION,
    ViewerEvent,
    apply_entities,
    from_enriched,
    from_tsv_line,
)

SAMPLE = Path(__file__).parent / "fixtures" / "snowplow-enriched-sample.tsv"


def lines() -> list[str]:
    real = [line for line in SAMPLE.read_text().splitlines() if line]
    made = [line for _key, line in full_session("viewer-events", 1_700_000_000_000).lines()]
    return real + made


LINES = lines()


def outcome(read: Any, line: str | bytes) -> tuple[str, Any]:
    try:
        return ("event", dataclasses.asdict(read(line)))
    except EnrichedFormatError as exc:
        return ("error", str(exc))


def two_step(line: str | bytes) -> ViewerEvent:
    return from_enriched(from_tsv(line))


def test_real_and_generated_lines_read_the_same_twice() -> None:
    for line in LINES + LINES:  # the second round hits the decoder's caches
        assert outcome(from_tsv_line, line) == outcome(two_step, line)
        assert outcome(from_tsv_line, line.encode()) == outcome(two_step, line)


def test_events_of_one_line_are_independent() -> None:
    line = next(ln for ln in LINES if '"percentProgress"' in ln)
    from_tsv_line(line)  # now the decoder has seen it
    first = from_tsv_line(line)
    first.data["percentProgress"] = -1
    first.data["extra"] = True
    second = from_tsv_line(line)
    assert second.data is not first.data
    assert second == two_step(line)


TIMESTAMPS = [
    "", "2024-11-16 13:33:22.625", "2024-11-16T13:33:22.625Z", "2024-11-16 13:33:22", "garbage",
    "2024-11-16 13:33:22.6\u06625", "2024-11-16 24:00:00.000", "2024-02-30 10:00:00.000",
    "2024-11-16 13:33:22.625+00:00", "2024-11-16 13:33:22,625",
]  # fmt: skip
INT64 = st.integers(-(2**63), 2**63 - 1)  # what orjson (and a JSON producer) can write
JSON_VALUES = st.one_of(
    st.none(), st.booleans(), INT64, st.floats(allow_nan=False),
    st.text(max_size=5), st.lists(INT64, max_size=2), st.dictionaries(st.text(max_size=3), INT64, max_size=2),
)  # fmt: skip
ENTITY_KEYS = [
    "currentTime", "duration", "label", "paused", "ended", "playbackRate", "volume", "muted",
    "fullscreen", "quality", "mediaSessionId", "timePlayed", "adBreaks", "ads", "breakId", "adId", "name",
]  # fmt: skip
SCHEMAS = [
    MEDIA_PLAYER + "0-0",
    MEDIA_SESSION + "0-0",
    MEDIA_AD + "0-0",
    MEDIA_AD_BREAK + "0-0",
    "iglu:x/y/jsonschema/1-0-0",
]
ENTITIES = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {
                "schema": st.sampled_from(SCHEMAS),
                "data": st.dictionaries(st.sampled_from(ENTITY_KEYS), JSON_VALUES),
            }
        ),
        JSON_VALUES,
    ),
    max_size=4,
)
CONTEXTS = st.one_of(
    ENTITIES.map(lambda e: orjson.dumps({"schema": "iglu:c", "data": e}).decode()),
    ENTITIES.map(lambda e: orjson.dumps(e).decode()),
    st.sampled_from(
        ["", "{not json", '{"data": "x"}', '{"data":[{"schema":"' + SCHEMAS[0] + '","data":{"x":1e400}}]}']
    ),
)
UNSTRUCT = st.one_of(
    st.builds(
        lambda name, data: orjson.dumps({"data": {"schema": name, "data": data}}).decode(),
        st.sampled_from(
            [
                "iglu:com.snowplowanalytics.snowplow.media/ping_event/jsonschema/1-0-0",
                "iglu:com.snowplowanalytics.snowplow.media/nosuch_event/jsonschema/1-0-0",
                "iglu:x/y/jsonschema/1-0-0",
            ]
        ),
        st.one_of(st.dictionaries(st.text(max_size=3), JSON_VALUES, max_size=3), JSON_VALUES),
    ),
    st.sampled_from(["", "[1]", "{bad", '{"data": 5}']),
)
COLUMN_VALUES = {
    "contexts": CONTEXTS,
    "unstruct_event": UNSTRUCT,
    **{c: st.sampled_from(TIMESTAMPS) for c in EVENT_COLUMNS if c.endswith("tstamp")},
}


@settings(max_examples=300, deadline=None)
@given(
    base=st.sampled_from(LINES),
    changes=st.lists(
        st.sampled_from([*EVENT_COLUMNS, "page_url", "derived_contexts"]).flatmap(
            lambda c: st.tuples(st.just(c), COLUMN_VALUES.get(c, st.sampled_from(["", "x", "é", "0"])))
        ),
        max_size=4,
    ),
    width=st.sampled_from([0, 0, 0, 0, -1, 1]),
    ending=st.sampled_from(["", "\n", "\r\n"]),
    raw=st.booleans(),
)
def test_broken_lines_give_the_same_event_or_error(
    base: str, changes: list[tuple[str, str]], width: int, ending: str, raw: bool
) -> None:
    parts = base.split("\t")
    for column, value in changes:
        parts[INDEX[column]] = value
    if width < 0:
        del parts[40]
    elif width > 0:
        parts.insert(40, "extra")
    line = "\t".join(parts) + ending
    data: str | bytes = line.encode() if raw else line
    if raw and "\u06625" in line:
        data = data.replace(b"\xd9\xa2", b"\xff")  # not UTF-8 either
    assert outcome(from_tsv_line, data) == outcome(two_step, data)
    assert outcome(from_tsv_line, data) == outcome(from_tsv_line, data)  # the caches change nothing


@pytest.mark.parametrize(
    ("value", "number", "flag", "integer"),
    [
        (1.5, 1.5, None, None),
        (2, 2.0, None, 2),
        (True, None, True, None),
        (False, None, False, None),
        ("3", None, None, None),
        (None, None, None, None),
        ([1], None, None, None),
    ],
)
def test_entity_values_keep_their_documented_types(
    value: Any, number: float | None, flag: bool | None, integer: int | None
) -> None:
    ev = ViewerEvent("e", "play", "v", 0.0, 0.0)
    player = {
        k: value for k in ("currentTime", "duration", "playbackRate", "paused", "ended", "volume", "muted")
    }
    session = {"mediaSessionId": value, "timePlayed": value, "ads": value}
    apply_entities(
        ev,
        [
            {"schema": MEDIA_PLAYER + "0-0", "data": player},
            {"schema": MEDIA_SESSION + "0-0", "data": session},
        ],
    )
    assert (ev.position_s, ev.duration_s, ev.playback_rate) == (number, number, number)
    assert type(ev.position_s) is (float if number is not None else type(None))
    assert (ev.paused, ev.ended, ev.muted) == (flag, flag, flag)
    assert ev.volume == integer and type(ev.volume) is type(integer)
    assert ev.media_session_id == (value if isinstance(value, str) else None)
    assert ev.session_stats == ({} if number is None else {"timePlayed": number, "ads": number})


# --- the contexts fast path (typed msgspec decoding) gives what the generic path gives --------------
# Raw JSON texts for entity values, including what the two JSON parsers could read differently:
# integers beyond int64 / uint64, exponents, -0.0, escapes, lone surrogates, nesting.
RAW_VALUES = [
    "null", "true", "false", "0", "40", "-1", "40.0", "4e1", "1E2", "-0.0", "1.5", "1e400", "-1e400",
    "9223372036854775807", "9223372036854775808", "18446744073709551615", "18446744073709551616",
    "-9223372036854775808", "-9223372036854775809", "99999999999999999999999", '"x"', '""',
    '"\\u00e9\\n"', '"\\ud800"', '"\\ud83d\\ude00"', '"a\\u0000b"', "[]", "[1]", "{}", '{"a":[1,{"b":2}]}',
]  # fmt: skip


def _entity_text(schema: str, pairs: list[tuple[str, str]]) -> str:
    members = ",".join(f'"{key}":{value}' for key, value in pairs)
    return f'{{"schema":"{schema}","data":{{{members}}}}}'


def _contexts_text(entities: list[str]) -> str:
    return f'{{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":[{",".join(entities)}]}}'


RAW_ENTITY = st.builds(
    _entity_text,
    st.sampled_from([*SCHEMAS, "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"]),
    st.lists(st.tuples(st.sampled_from(ENTITY_KEYS), st.sampled_from(RAW_VALUES)), max_size=6),
)
RAW_CONTEXTS = st.lists(st.one_of(RAW_ENTITY, st.sampled_from(RAW_VALUES)), max_size=4).map(_contexts_text)


def _with_contexts(contexts: Any) -> dict[str, Any]:
    cols = from_tsv(LINES[-1])
    cols["contexts"] = contexts
    return cols


def check_contexts_text(text: str) -> None:
    """The TSV reader takes contexts text through typed decoders, the Analytics SDK reader hands
    over parsed entities: the same entities make the same event. Text that orjson refuses (an
    infinite number, a lone surrogate) is an error, or, where only values the reader does not
    read are at fault, the event the rest makes."""
    from_text = outcome(from_enriched, _with_contexts(text))
    try:
        parsed = orjson.loads(text) if text else ""
    except orjson.JSONDecodeError:
        try:
            lenient = json.loads(text)  # reads 1e400 as inf, keeps lone surrogates
        except (ValueError, RecursionError):
            assert from_text[0] == "error" and "contexts is not JSON" in from_text[1]
            return
        if from_text[0] == "event":
            assert from_text == outcome(from_enriched, _with_contexts(lenient))
        else:
            assert "contexts is not JSON" in from_text[1]
        return
    assert from_text == outcome(from_enriched, _with_contexts(parsed))


def test_every_entity_value_reads_as_parsed() -> None:
    """Each entity key of each schema with each raw value, alone and after a duplicate key."""
    for schema in SCHEMAS:
        for key in ENTITY_KEYS:
            for value in RAW_VALUES:
                check_contexts_text(_contexts_text([_entity_text(schema, [(key, value)])]))
                check_contexts_text(_contexts_text([_entity_text(schema, [(key, "1"), (key, value)])]))


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(RAW_CONTEXTS, CONTEXTS))
def test_contexts_text_reads_as_its_parsed_entities(text: str) -> None:
    check_contexts_text(text)


def test_contexts_of_real_lines_take_the_fast_path() -> None:
    """The typed decoders accept what real trackers send (else every event pays for both paths)."""
    ev = ViewerEvent("e", "play", "v", 0.0, 0.0)
    contexts = [cols["contexts"] for cols in map(from_tsv, LINES) if "contexts" in cols]
    assert len(contexts) > 10
    for text in contexts:
        assert events_module._apply_contexts_fast(ev, text), text[:200]


def test_other_entity_with_a_media_field_name_of_another_type_reads_as_parsed() -> None:
    """One typed decoder reads every entity's data: an entity of another schema whose field
    shares a media field's name with another type (``label`` a number, ``volume`` a float) sends
    the text to the generic path, and the event is still the one its parsed entities make."""
    player = _entity_text(SCHEMAS[0], [("currentTime", "12.5"), ("label", '"Film"'), ("volume", "40")])
    for pairs in ([("label", "5")], [("volume", "1.5")], [("duration", '"long"')]):
        other = _entity_text("iglu:com.acme/thing/jsonschema/1-0-0", pairs)
        text = _contexts_text([player, other])
        assert not events_module._apply_contexts_fast(ViewerEvent("e", "play", "v", 0.0, 0.0), text)
        check_contexts_text(text)
        kind, ev = outcome(from_enriched, _with_contexts(text))
        assert kind == "event" and ev["media_label"] == "Film" and ev["volume"] == 40
