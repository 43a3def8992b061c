"""The typed contexts check (``lvp.iglu_typed``): when it says a contexts text is valid, orjson
reads the text and both validators accept the wrapper and every entity; it does say so for the
contexts trackers send (the point of having it); and whatever it cannot type, it leaves alone."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from iglu_fixtures import MEDIA_ENTITY_SCHEMAS, SP, registry_with

from lvp.events import (
    CONTEXTS_SCHEMA,
    MEDIA_AD_BREAK_SCHEMA,
    MEDIA_AD_SCHEMA,
    MEDIA_PLAYER_SCHEMA,
    MEDIA_SESSION_SCHEMA,
    WEB_PAGE_SCHEMA,
)
from lvp.iglu import Registry
from lvp.iglu_typed import TypedContexts, entity_type, property_type

CLIENT_SESSION = f"iglu:{SP}/client_session/jsonschema/1-0-2"
BOUNDS = "iglu:com.acme/bounds/jsonschema/1-0-0"

BOUNDS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "n": {"type": "integer", "minimum": 1.5, "maximum": 9.5, "exclusiveMaximum": True},
        "m": {"type": ["integer", "null"], "minimum": 2, "exclusiveMinimum": True},
        "x": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1},
        "s": {"type": "string", "minLength": 2, "maxLength": 3},
        "k": {"type": ["string", "null"], "enum": ["ab", "abcd", "x y", None], "pattern": "^[a-z]+$"},
        "t": {"type": ["string", "null"], "enum": ["ab"]},
        "w": {"type": ["string", "null"], "format": "date-time"},
        "any": {"type": ["string", "number", "boolean", "null"]},
        "b": {"type": "boolean"},
    },
    "required": ["s"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return registry_with(tmp_path_factory.mktemp("typed-schemas"), BOUNDS, BOUNDS_SCHEMA)


@pytest.fixture(scope="module")
def typed(registry: Registry) -> TypedContexts:
    built = registry.typed_contexts()
    assert built is not None
    return built


def contexts(*entities: Any) -> str:
    return json.dumps(
        {"schema": CONTEXTS_SCHEMA, "data": list(entities)}, separators=(",", ":"), ensure_ascii=False
    )


def valid(registry: Registry, text: str) -> int | None:
    """The validators' verdict on a contexts text: the number of entities, or None."""
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or set(doc) != {"schema", "data"} or doc["schema"] != CONTEXTS_SCHEMA:
        return None
    if registry.validate(CONTEXTS_SCHEMA, doc["data"]):
        return None
    for entity in doc["data"]:
        if entity["schema"] not in registry or registry.validate(entity["schema"], entity["data"]):
            return None
    return len(doc["data"])


def held(registry: Registry, typed: TypedContexts, text: str) -> int | None:
    """The typed verdict, held to the validators' (a yes must be theirs too); returns it."""
    says = typed.check(text)
    if says is not None:
        assert valid(registry, text) == says, text
    return says


PLAYER = {"currentTime": 391.02, "paused": False, "ended": False, "label": "Big Buck Bunny", "mediaType": "video",
          "playerType": "html5", "duration": 596.47, "muted": False, "loop": False, "playbackRate": 1, "volume": 100}  # fmt: skip
SESSION_DATA = {"mediaSessionId": "8e2b86b8-86af-47df-a403-e5715a5b2c16", "startedAt": "2026-12-06T02:33:23.276Z",
                "pingInterval": 30, "timePaused": 0.003, "timePlayed": 391.022, "ads": 2, "adBreaks": 1,
                "avgPlaybackRate": 1, "contentWatched": 391}  # fmt: skip
TRACKER_CONTEXTS = contexts(
    {"schema": MEDIA_PLAYER_SCHEMA, "data": PLAYER},
    {"schema": MEDIA_SESSION_SCHEMA, "data": SESSION_DATA},
    {"schema": WEB_PAGE_SCHEMA, "data": {"id": "4afcbac6-5a45-4866-b91a-832649be7f80"}},
)


def test_the_media_plugins_contexts_are_typed(registry: Registry, typed: TypedContexts) -> None:
    for uri in (*MEDIA_ENTITY_SCHEMAS, BOUNDS):
        assert entity_type(uri, registry.schema(uri)) is not None, uri
    assert held(registry, typed, TRACKER_CONTEXTS) == 3
    ad = {
        "schema": MEDIA_AD_SCHEMA,
        "data": {"adId": "a1", "podPosition": 1, "duration": 15, "skippable": True},
    }
    brk = {"schema": MEDIA_AD_BREAK_SCHEMA, "data": {"breakId": "b1", "startTime": 0, "breakType": "linear"}}
    assert held(registry, typed, contexts(ad, brk, {"schema": MEDIA_PLAYER_SCHEMA, "data": PLAYER})) == 3


BOUNDS_CASES: list[tuple[dict[str, Any], bool]] = [
    ({"s": "ab"}, True),
    ({"s": "a"}, False),
    ({"s": "abcd"}, False),
    ({"s": "ab", "n": 2}, True),  # minimum 1.5: 2 is the first integer
    ({"s": "ab", "n": 1}, False),
    ({"s": "ab", "n": 9}, True),  # exclusive 9.5
    ({"s": "ab", "n": 10}, False),
    ({"s": "ab", "n": 2.0}, False),  # draft 4: not an integer
    ({"s": "ab", "n": 10**30}, False),
    ({"s": "ab", "m": 3}, True),
    ({"s": "ab", "m": 2}, False),  # exclusive
    ({"s": "ab", "m": None}, True),
    ({"s": "ab", "x": 0}, False),
    ({"s": "ab", "x": 1e-9}, True),
    ({"s": "ab", "x": 1}, True),
    ({"s": "ab", "x": True}, False),
    ({"s": "ab", "k": "ab"}, True),
    ({"s": "ab", "k": "abcd"}, True),
    ({"s": "ab", "k": "x y"}, False),  # in the enum, not matching the pattern
    ({"s": "ab", "k": None}, True),
    ({"s": "ab", "t": None}, False),  # null allowed by type, not by the enum
    ({"s": "ab", "w": "2026-12-06T02:33:23Z"}, True),
    ({"s": "ab", "w": "2026-02-30T02:33:23Z"}, False),
    ({"s": "ab", "w": None}, True),
    ({"s": "ab", "any": 1.5}, True),
    ({"s": "ab", "any": "x"}, True),
    ({"s": "ab", "any": [1]}, False),
    ({"s": "ab", "b": 0}, False),
    ({"s": "ab", "other": 1}, False),  # additionalProperties false
    ({"s": "\U0001f600\U0001f600"}, True),  # lengths in code points
    ({"s": "\U0001f600" * 4}, False),
]


@pytest.mark.parametrize(("data", "expected"), BOUNDS_CASES)
def test_bounds_enums_formats(
    registry: Registry, typed: TypedContexts, data: dict[str, Any], expected: bool
) -> None:
    text = contexts({"schema": BOUNDS, "data": data})
    assert (valid(registry, text) == 1) == expected  # (the case says what the validators say)
    assert (held(registry, typed, text) is not None) == expected


@pytest.mark.parametrize(
    "text",
    [
        TRACKER_CONTEXTS.replace('"paused":false', '"paused":false,"paused":1'),  # a duplicate, the last bad
        TRACKER_CONTEXTS.replace('"paused":false', '"paused":1,"paused":false'),  # the first bad
        TRACKER_CONTEXTS.replace(
            '"label":"Big Buck Bunny"', '"label":"Big \\u00e9 Bunny"'
        ),  # escapes: orjson's
        TRACKER_CONTEXTS.replace('"volume":100', '"volume":1' + "0" * 400),
        TRACKER_CONTEXTS.replace('"currentTime":391.02', '"currentTime":1e400'),
        TRACKER_CONTEXTS.replace(
            CONTEXTS_SCHEMA, CONTEXTS_SCHEMA.replace("1-0-0", "1-0-1")
        ),  # typed: 1-0-0 only
        TRACKER_CONTEXTS[:-1] + ',"extra":1}',  # a third key in the wrapper
        TRACKER_CONTEXTS[:-2],  # truncated
        TRACKER_CONTEXTS + "x",
        contexts(),  # minItems 1
        contexts({"schema": "iglu:com.acme/unknown/jsonschema/1-0-0", "data": {}}),
        contexts({"schema": CLIENT_SESSION, "data": {"userId": "u", "sessionId": "s", "sessionIndex": 1}}),
        contexts({"schema": WEB_PAGE_SCHEMA, "data": {"id": "p"}, "extra": 1}),
        contexts({"schema": WEB_PAGE_SCHEMA}),
        "[]",
        "",
    ],
)
def test_texts_it_leaves_to_the_validators(registry: Registry, typed: TypedContexts, text: str) -> None:
    assert held(registry, typed, text) is None


def test_schemas_it_does_not_translate() -> None:
    base = {k: v for k, v in BOUNDS_SCHEMA.items() if k not in ("$schema", "self")}
    assert entity_type(BOUNDS, base) is not None
    for change in (
        {"minProperties": 1},
        {"additionalProperties": {"type": "string"}},
        {"required": ["s", "undescribed"]},
        {"properties": {"n": {"type": "number", "multipleOf": 2}}},
        {"properties": {"o": {"type": "object"}}},
        {"properties": {"e": {"type": "integer", "enum": [1, 2]}}},
        {"properties": {"f": {"type": "string", "format": "no-such-format"}}},
        {"properties": {"r": {"$ref": "#/definitions/x"}}},
    ):
        assert entity_type(BOUNDS, {**base, **change}) is None, change
    assert property_type({"type": "string", "enum": ["abc"], "maxLength": 2}) is None  # nothing accepted
    assert TypedContexts.build({"type": "object"}, [(WEB_PAGE_SCHEMA, {"type": "object"})]) is None


_values = (
    st.none()
    | st.booleans()
    | st.integers(-(2**65), 2**65)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, 1, 1.5, 2, 9, 9.5, 10, 100, 2147483647, 2147483648, -1, 0.0, 1.0, 1e-9])
    | st.text(max_size=5)
    | st.sampled_from(
        ["ab", "abcd", "x y", "video", "audio", "VIDEO", "", "x" * 4097, "\U0001f600\U0001f600"]
    )
    | st.sampled_from(["2026-12-06T02:33:23.276Z", "2026-12-06 02:33:23", "2026-13-01T00:00:00Z"])
    | st.lists(st.integers(), max_size=1)
    | st.dictionaries(st.text(max_size=2), st.integers(), max_size=1)
)
_KEYS = {
    MEDIA_PLAYER_SCHEMA: ["currentTime", "duration", "paused", "ended", "volume", "playbackRate", "mediaType", "label", "q"],
    MEDIA_SESSION_SCHEMA: ["mediaSessionId", "startedAt", "pingInterval", "timePlayed", "ads", "avgPlaybackRate", "y"],
    WEB_PAGE_SCHEMA: ["id", "other"],
    MEDIA_AD_SCHEMA: ["adId", "podPosition", "duration", "skippable", "name"],
    MEDIA_AD_BREAK_SCHEMA: ["breakId", "startTime", "breakType", "podSize"],
    BOUNDS: ["s", "n", "m", "x", "k", "t", "w", "any", "b", "z"],
}  # fmt: skip
_BASE = {MEDIA_PLAYER_SCHEMA: {"currentTime": 1, "paused": False, "ended": False}, MEDIA_SESSION_SCHEMA: {"mediaSessionId": "s"},
         WEB_PAGE_SCHEMA: {"id": "p"}, MEDIA_AD_SCHEMA: {"adId": "a"}, MEDIA_AD_BREAK_SCHEMA: {"breakId": "b"}, BOUNDS: {"s": "ab"}}  # fmt: skip


def _entity_text(data: st.DataObject, likely_valid: bool = False) -> str:
    uri = data.draw(st.sampled_from(sorted(_KEYS)))
    pairs = list(_BASE[uri].items()) if likely_valid or data.draw(st.booleans()) else []
    extra = st.tuples(st.sampled_from(_KEYS[uri]), _values)  # (duplicate keys too)
    pairs += data.draw(st.lists(extra, max_size=1 if likely_valid else 5))
    body = ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs)  # (NaN, Infinity: not JSON)
    return f'{{"schema":{json.dumps(uri)},"data":{{{body}}}}}'


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_it_never_says_yes_where_the_validators_say_no(
    registry: Registry, typed: TypedContexts, data: st.DataObject
) -> None:
    entities = [_entity_text(data) for _ in range(data.draw(st.integers(0, 3)))]
    held(registry, typed, f'{{"schema":"{CONTEXTS_SCHEMA}","data":[{",".join(entities)}]}}')


def test_it_says_yes_to_most_generated_valid_contexts(registry: Registry, typed: TypedContexts) -> None:
    """Not vacuous: of the generated texts the validators accept, the typed check accepts those
    without unknown keys (and so most of them)."""
    seen = yes = 0

    @settings(max_examples=300, deadline=None, database=None)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        nonlocal seen, yes
        text = f'{{"schema":"{CONTEXTS_SCHEMA}","data":[{_entity_text(data, likely_valid=True)}]}}'
        if valid(registry, text) is not None:
            seen += 1
            yes += held(registry, typed, text) is not None

    run()
    assert seen >= 20 and yes >= seen // 2, (seen, yes)


def test_the_registry_builds_it_once(registry: Registry) -> None:
    assert registry.typed_contexts() is registry.typed_contexts()
    assert Registry(bundled=False).typed_contexts() is None  # no contexts schema
