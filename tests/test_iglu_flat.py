"""The generated checks for flat objects of scalars (``lvp.iglu._flat_object_accept``): what they
accept on their own, every validator accepts; whatever they do not, the complete validator
decides; and they do accept the media entities trackers send (the point of having them)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from iglu_fixtures import MEDIA_ENTITY_SCHEMAS, registry_with

from lvp.events import (
    MEDIA_AD_BREAK_SCHEMA,
    MEDIA_AD_SCHEMA,
    MEDIA_PLAYER_SCHEMA,
    MEDIA_SESSION_SCHEMA,
    WEB_PAGE_SCHEMA,
)
from lvp.iglu import Registry, SchemaValidator, _flat_object_accept

EDGES = "iglu:com.acme/edges/jsonschema/1-0-0"

EDGES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "xmin": {"type": "number", "minimum": 1, "exclusiveMinimum": True},
        "xmax": {"type": ["integer", "null"], "maximum": 10, "exclusiveMaximum": True},
        "s": {"type": "string", "minLength": 2, "maxLength": 3},
        "kind": {"type": ["string", "null"], "enum": ["a", "b"]},
        "code": {"type": "string", "pattern": "^[a-z]+$"},
        "when": {"type": ["string", "null"], "format": "date-time"},
        "flag": {"type": "boolean", "default": False},
    },
    "required": ["s"],
}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return registry_with(tmp_path_factory.mktemp("flat-schemas"), EDGES, EDGES_SCHEMA)


def _alone(v: SchemaValidator) -> Any:
    """The generated check without its fallback: True only when it accepts on its own."""
    accept = _flat_object_accept(v.schema, lambda _: False)
    assert accept is not None, v.key.uri
    return accept


def _check(registry: Registry, uri: str, instance: Any) -> bool:
    """The generated check's own verdict, held to both validators'; returns it."""
    v = registry.validator(uri)
    alone = _alone(v)(instance)
    compiled = v._compiled_check(instance)
    precise = v.errors(instance) == []
    if alone:
        assert compiled and precise, (uri, instance)
    assert v.is_valid(instance) == compiled == precise, (uri, instance)
    return bool(alone)


def test_media_entities_get_the_generated_check(registry: Registry) -> None:
    for uri in (*MEDIA_ENTITY_SCHEMAS, EDGES):
        assert registry.validator(uri).fast_check.__name__ == "accept", uri
    # the entities the media plugin sends are accepted without the complete validator
    player = {"currentTime": 12.5, "duration": 596.47, "paused": False, "ended": False, "muted": False,
              "label": "Big Buck Bunny", "mediaType": "video", "playerType": "html5", "volume": 100,
              "playbackRate": 1, "loop": False}  # fmt: skip
    session = {"mediaSessionId": "s1", "startedAt": "2026-12-06T02:33:23.276Z", "pingInterval": 30,
               "timePlayed": 12.5, "ads": 2, "avgPlaybackRate": 1, "contentWatched": 12}  # fmt: skip
    assert _check(registry, MEDIA_PLAYER_SCHEMA, player)
    assert _check(registry, MEDIA_SESSION_SCHEMA, session)
    assert _check(registry, WEB_PAGE_SCHEMA, {"id": "0b7a9c1e-4f3d-4c2b-9a8e-1d2c3b4a5f6e"})
    assert _check(registry, MEDIA_AD_BREAK_SCHEMA, {"breakId": "1", "startTime": 0, "breakType": "linear"})


EDGE_CASES: list[tuple[Any, bool]] = [
    ({"s": "ab"}, True),
    ({"s": "abc"}, True),
    ({"s": "a"}, False),
    ({"s": "abcd"}, False),
    ({"s": "ab", "xmin": 1}, False),  # exclusive
    ({"s": "ab", "xmin": 1.0000001}, True),
    ({"s": "ab", "xmin": True}, False),  # a boolean is no number
    ({"s": "ab", "xmin": math.nan}, False),  # left to the validators
    ({"s": "ab", "xmin": math.inf}, True),
    ({"s": "ab", "xmax": 9}, True),
    ({"s": "ab", "xmax": 10}, False),  # exclusive
    ({"s": "ab", "xmax": 9.0}, False),  # draft 4: not an integer
    ({"s": "ab", "xmax": None}, True),
    ({"s": "ab", "kind": "a"}, True),
    ({"s": "ab", "kind": "c"}, False),
    ({"s": "ab", "kind": None}, False),  # null is allowed by type, not by the enum
    ({"s": "ab", "code": "abc"}, True),
    ({"s": "ab", "code": "abc\n"}, False),  # `$` is the end of the string
    ({"s": "ab", "code": "ABC"}, False),
    ({"s": "ab", "when": "2026-12-06T02:33:23Z"}, True),
    ({"s": "ab", "when": "2026-02-30T02:33:23Z"}, False),
    ({"s": "ab", "flag": 0}, False),
    ({"s": "ab", "other": 1}, True),  # additionalProperties not false
    ({}, False),
    ([], False),
]


@pytest.mark.parametrize(("instance", "valid"), EDGE_CASES)
def test_edges(registry: Registry, instance: Any, valid: bool) -> None:
    """Accepted on its own exactly when expected (else the complete validators decide, NaN too:
    JSON has none, fastjsonschema lets it through)."""
    assert _check(registry, EDGES, instance) == valid


def test_other_shapes_keep_the_compiled_check(registry: Registry) -> None:
    base = {k: v for k, v in EDGES_SCHEMA.items() if k not in ("$schema", "self")}
    for change in (
        {"minProperties": 1},
        {"additionalProperties": {"type": "string"}},
        {"properties": {"n": {"type": "number", "multipleOf": 2}}},
        {"properties": {"o": {"type": "object"}}},
        {"properties": {"e": {"type": "integer", "enum": [1, 2]}}},  # JSON and Python equality differ
        {"properties": {"f": {"type": "string", "format": "no-such-format"}}},
    ):
        assert _flat_object_accept({**base, **change}, lambda _: False) is None, change


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**33), 2**33)
    | st.floats(allow_nan=False)
    | st.sampled_from([0, 1, 16, 17, 100, 101, 65535, 65536, 2147483647, 2147483648, -1, 0.0, 1.0])
    | st.text(max_size=10)
    | st.sampled_from(["video", "audio", "linear", "nonlinear", "VIDEO", "video\n", "", "x" * 4097])
    | st.sampled_from(["0b7a9c1e-4f3d-4c2b-9a8e-1d2c3b4a5f6e", "0b7a9c1e-4f3d-4c2b-9a8e-1d2c3b4a5f6e\n"])
    | st.sampled_from(["2026-12-06T02:33:23.276Z", "2026-12-06 02:33:23", "2026-13-01T00:00:00Z"])
    | st.lists(st.integers(), max_size=1)
    | st.dictionaries(st.text(max_size=2), st.integers(), max_size=1)
)
_KEYS = {
    MEDIA_PLAYER_SCHEMA: ["currentTime", "duration", "paused", "ended", "volume", "playbackRate", "mediaType",
                   "label", "loop", "x"],
    MEDIA_SESSION_SCHEMA: ["mediaSessionId", "startedAt", "pingInterval", "timePlayed", "ads", "avgPlaybackRate", "y"],
    WEB_PAGE_SCHEMA: ["id", "other"],
    MEDIA_AD_SCHEMA: ["adId", "podPosition", "duration", "skippable", "name"],
    MEDIA_AD_BREAK_SCHEMA: ["breakId", "startTime", "breakType", "podSize"],
    EDGES: ["s", "xmin", "xmax", "kind", "code", "when", "flag", "z"],
}  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_generated_checks_never_accept_more(registry: Registry, data: st.DataObject) -> None:
    uri = data.draw(st.sampled_from(sorted(_KEYS)))
    instance = data.draw(st.dictionaries(st.sampled_from(_KEYS[uri]), _scalars, max_size=6))
    _check(registry, uri, instance)
