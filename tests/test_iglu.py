from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lvp.events import MEDIA_EVENTS
from lvp.iglu import (
    BUNDLED_ROOT,
    FORMATS,
    IGLU_META_SCHEMA,
    IgluError,
    Registry,
    SchemaKey,
    UnknownSchema,
    load_schema_file,
)

SP = "com.snowplowanalytics.snowplow"
MEDIA = "com.snowplowanalytics.snowplow.media"
MEDIA_PLAYER = f"iglu:{SP}/media_player/jsonschema/2-0-0"
SESSION = f"iglu:{MEDIA}/session/jsonschema/1-0-0"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


def test_bundled_repository_has_every_required_schema(registry: Registry) -> None:
    uris = {k.uri for k in registry.keys()}  # noqa: SIM118 - a method, not a dict
    for v in ("1-0-0", "1-0-1", "1-0-2", "1-0-3", "1-0-4"):
        assert f"iglu:{SP}/payload_data/jsonschema/{v}" in uris
    for name in MEDIA_EVENTS:
        assert f"iglu:{MEDIA}/{name}_event/jsonschema/1-0-0" in uris
    assert len([u for u in uris if u.endswith("_event/jsonschema/1-0-0") and MEDIA in u]) == 25
    for uri in (
        f"iglu:{SP}/unstruct_event/jsonschema/1-0-0",
        f"iglu:{SP}/contexts/jsonschema/1-0-0",
        f"iglu:{SP}/contexts/jsonschema/1-0-1",
        MEDIA_PLAYER,
        SESSION,
        f"iglu:{MEDIA}/ad/jsonschema/1-0-0",
        f"iglu:{MEDIA}/ad_break/jsonschema/1-0-0",
        f"iglu:{SP}/web_page/jsonschema/1-0-0",
        f"iglu:{SP}/client_session/jsonschema/1-0-1",
        f"iglu:{SP}/client_session/jsonschema/1-0-2",
        f"iglu:{SP}/browser_context/jsonschema/1-0-0",
        f"iglu:{SP}/browser_context/jsonschema/2-0-0",
    ):
        assert uri in uris, uri


def test_every_bundled_file_is_an_iglu_self_describing_draft4_schema() -> None:
    files = [p for p in (BUNDLED_ROOT / "schemas").rglob("*") if p.is_file()]
    assert len(files) >= 42
    for path in files:
        key = SchemaKey(*path.relative_to(BUNDLED_ROOT / "schemas").parts)
        doc = load_schema_file(path, key)  # raises on any problem
        assert doc["$schema"] == IGLU_META_SCHEMA
        assert doc["self"] == key._asdict()


def test_schema_uris() -> None:
    key = SchemaKey.parse("iglu:com.acme-corp_x/my_event-1/jsonschema/10-0-12")
    assert key == SchemaKey("com.acme-corp_x", "my_event-1", "jsonschema", "10-0-12")
    assert key.uri == "iglu:com.acme-corp_x/my_event-1/jsonschema/10-0-12"
    for bad in (
        "iglu:a/b/jsonschema/0-1-0",
        "iglu:a/b/jsonschema/1-0",
        "http://a/b/c/1-0-0",
        "iglu:a/b/c/1-0-0\n",
        "",
    ):
        with pytest.raises(IgluError):
            SchemaKey.parse(bad)


def test_validation_and_precise_messages(registry: Registry) -> None:
    ok = {
        "currentTime": 12.5,
        "paused": False,
        "ended": False,
        "volume": 80,
        "mediaType": "video",
        "label": None,
    }
    assert registry.validate(MEDIA_PLAYER, ok) == []
    failures = registry.validate(MEDIA_PLAYER, {"currentTime": -1, "paused": "no", "volume": 101, "extra": 1})
    by_keyword = {f.keyword: f for f in failures}
    assert set(by_keyword) == {"required", "additionalProperties", "minimum", "type", "maximum"}
    assert by_keyword["required"].targets == ("ended",)
    assert by_keyword["additionalProperties"].targets == ("extra",)
    assert by_keyword["minimum"].path == "$.currentTime"
    assert by_keyword["maximum"].path == "$.volume"
    quartile = f"iglu:{MEDIA}/ad_quartile_event/jsonschema/1-0-0"
    assert registry.validate(quartile, {"percentProgress": 25}) == []
    assert registry.validate(quartile, {})[0].targets == ("percentProgress",)
    assert registry.validate(f"iglu:{MEDIA}/play_event/jsonschema/1-0-0", {"x": 1})
    with pytest.raises(UnknownSchema):
        registry.validate("iglu:com.acme/nothing/jsonschema/1-0-0", {})


# --- the two validators agree ---------------------------------------------------------------------

TRICKY: list[tuple[str, Any]] = [
    (
        MEDIA_PLAYER,
        {"currentTime": 1.0, "paused": False, "ended": False, "volume": 1.0},
    ),  # 1.0 is not integer
    (MEDIA_PLAYER, {"currentTime": True, "paused": False, "ended": False}),  # bool is not a number
    (MEDIA_PLAYER, {"currentTime": 0, "paused": 0, "ended": False}),  # 0 is not a boolean
    (MEDIA_PLAYER, {"currentTime": 0, "paused": False, "ended": False, "volume": True}),
    (MEDIA_PLAYER, {"currentTime": 0, "paused": False, "ended": False, "mediaType": None}),
    (MEDIA_PLAYER, {"currentTime": 0, "paused": False, "ended": False, "mediaType": "Video"}),
    (MEDIA_PLAYER, {"currentTime": 2147483648, "paused": False, "ended": False}),
    (MEDIA_PLAYER, {"currentTime": 10**30, "paused": False, "ended": False}),
    (MEDIA_PLAYER, {"currentTime": 0, "paused": False, "ended": False, "playbackRate": 16.0000001}),
    (MEDIA_PLAYER, {"currentTime": 0, "paused": False, "ended": False, "label": "é" * 4096}),
    (MEDIA_PLAYER, {"currentTime": 0, "paused": False, "ended": False, "label": "😀" * 4097}),
    (MEDIA_PLAYER, []),
    (MEDIA_PLAYER, None),
    (f"iglu:{SP}/web_page/jsonschema/1-0-0", {"id": "e08f471e-3cb8-4023-91a6-805f23ba3412\n"}),  # $ = end
    (f"iglu:{SP}/web_page/jsonschema/1-0-0", {"id": "E08F471E-3CB8-4023-91A6-805F23BA3412"}),
    (f"iglu:{SP}/web_page/jsonschema/1-0-0", {"id": "e08f471e-3cb8-4023-91a6-805f23ba341٣"}),
    (f"iglu:{SP}/client_session/jsonschema/1-0-2", {"userId": "0123456789abcdef\n"}),
]
DATE_TIMES = [
    "2024-11-16T13:33:22.625Z",
    "2024-11-16t13:33:22z",
    "2024-11-16T13:33:22+01:00",
    "2024-11-16T13:33:60Z",  # leap second
    "2024-02-30T00:00:00Z",
    "2024-11-16T24:00:00Z",
    "2024-11-16T13:33:22",
    "2024-11-16 13:33:22Z",
    "2024-11-16T13:33:22+24:00",
    "2024-11-16T13:33:22.Z",
    "\uff12\uff10\uff12\uff14-11-16T13:33:22Z",  # fullwidth digits
]


def _agree(registry: Registry, uri: str, instance: Any) -> None:
    v = registry.validator(uri)
    assert v.is_valid(instance) == (v.errors(instance) == []), (uri, instance)


def test_validators_agree_on_tricky_instances(registry: Registry) -> None:
    for uri, instance in TRICKY:
        _agree(registry, uri, instance)
    for value in DATE_TIMES:
        _agree(registry, SESSION, {"mediaSessionId": "s", "startedAt": value})
    v = registry.validator(SESSION)
    assert v.is_valid({"mediaSessionId": "s", "startedAt": DATE_TIMES[0]})
    assert not v.is_valid({"mediaSessionId": "s", "startedAt": "2024-02-30T00:00:00Z"})
    # formats outside FORMATS (here: uuid) are ignored by both
    cs = {
        "userId": "0123456789abcdef",
        "sessionId": "not-a-uuid",
        "sessionIndex": 1,
        "storageMechanism": "COOKIE_1",
    }
    assert registry.validate(f"iglu:{SP}/client_session/jsonschema/1-0-2", cs) == []


def test_format_checks_are_the_same_functions() -> None:
    assert set(FORMATS) == {"date-time", "email", "ipv4", "ipv6", "uri"}
    assert FORMATS["ipv4"]("192.168.0.1") and not FORMATS["ipv4"]("192.168.0.01")
    assert FORMATS["ipv6"]("::1") and not FORMATS["ipv6"]("::g")
    assert FORMATS["uri"]("https://a.example/x?y=1") and not FORMATS["uri"]("/relative")
    assert FORMATS["email"]("a@b.c") and not FORMATS["email"]("a b@c")


FORMAT_SCHEMA = {
    "$schema": IGLU_META_SCHEMA,
    "self": {"vendor": "com.acme", "name": "formats", "format": "jsonschema", "version": "1-0-0"},
    "type": "object",
    "properties": {
        "dt": {"type": "string", "format": "date-time"},
        "ip4": {"type": "string", "format": "ipv4"},
        "ip6": {"type": "string", "format": "ipv6"},
        "mail": {"type": "string", "format": "email"},
        "link": {"type": "string", "format": "uri"},
        "host": {"type": "string", "format": "hostname"},
        "n": {"type": "integer", "enum": [1, 2]},
        "tags": {"type": "array", "uniqueItems": True},
        "code": {"type": "string", "pattern": "^[a-z]+$"},
    },
}


def _write(root: Path, doc: dict[str, Any]) -> None:
    s = doc["self"]
    path = root / "schemas" / s["vendor"] / s["name"] / s["format"] / s["version"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def user_registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    root = tmp_path_factory.mktemp("user-schemas")
    _write(root, FORMAT_SCHEMA)
    return Registry([root])


def test_validators_agree_on_bool_number_corners(user_registry: Registry) -> None:
    uri = "iglu:com.acme/formats/jsonschema/1-0-0"
    corners: list[Any] = [
        {"n": True},
        {"n": 1.0},
        {"tags": [1, True]},
        {"tags": [{"a": 1}, {"a": True}]},
        {"tags": [0, False]},
        {"tags": [1, 1.0]},
        {"code": "abc\n"},
        {"host": "-bad-"},
    ]
    for instance in corners:
        _agree(user_registry, uri, instance)


_scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=30)
json_values = st.recursive(
    _scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=10,
)
format_strings = st.sampled_from(
    [
        *DATE_TIMES,
        "1.2.3.4",
        "256.1.1.1",
        "::1",
        "fe80::1%eth0",
        "a@b",
        "@b",
        "http://x",
        "x:",
        "no scheme",
        "a-b.c",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.dictionaries(
        st.sampled_from(["dt", "ip4", "ip6", "mail", "link", "host", "n", "tags", "code", "other"]),
        format_strings | json_values,
        max_size=6,
    )
)
def test_validators_agree_on_generated_instances(user_registry: Registry, data: dict[str, Any]) -> None:
    _agree(user_registry, "iglu:com.acme/formats/jsonschema/1-0-0", data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    overrides=st.dictionaries(
        st.sampled_from(
            ["currentTime", "paused", "ended", "volume", "playbackRate", "mediaType", "label", "x"]
        ),
        json_values,
        max_size=4,
    )
)
def test_validators_agree_on_mutated_media_player(registry: Registry, overrides: dict[str, Any]) -> None:
    _agree(registry, MEDIA_PLAYER, {"currentTime": 1, "paused": True, "ended": False, **overrides})


# --- user schema directories -----------------------------------------------------------------------


def test_user_schema_dirs_add_and_override(tmp_path: Path) -> None:
    custom: dict[str, Any] = {
        "$schema": IGLU_META_SCHEMA,
        "self": {"vendor": "com.acme", "name": "thing", "format": "jsonschema", "version": "1-0-0"},
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
    }
    _write(tmp_path, custom)
    looser = {k: v for k, v in custom.items() if k != "required"}
    looser["self"] = {**custom["self"], "vendor": SP, "name": "web_page"}
    _write(tmp_path, looser)
    reg = Registry([tmp_path])
    assert reg.validate("iglu:com.acme/thing/jsonschema/1-0-0", {"n": 1}) == []
    assert reg.validate("iglu:com.acme/thing/jsonschema/1-0-0", {"n": "1"})
    assert reg.validate(f"iglu:{SP}/web_page/jsonschema/1-0-0", {}) == []  # the user's version wins
    assert Registry().validate(f"iglu:{SP}/web_page/jsonschema/1-0-0", {})


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("self"), "no `self` block"),
        (lambda d: d.update({"$schema": "http://json-schema.org/draft-04/schema#"}), r"`\$schema` must be"),
        (lambda d: d.update({"type": "thing"}), "not a valid JSON Schema draft 4"),
        (lambda d: d["self"].update({"name": "other"}), "but the file is at"),
    ],
)
def test_malformed_user_schemas_are_refused_clearly(tmp_path: Path, mutate: Any, message: str) -> None:
    doc = json.loads(json.dumps(FORMAT_SCHEMA))
    _write(tmp_path, doc)
    path = next(p for p in tmp_path.rglob("1-0-0"))
    mutate(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(IgluError, match=message):
        Registry([tmp_path])


def test_refs_resolve_only_inside_the_registry(tmp_path: Path) -> None:
    doc: dict[str, Any] = {
        "$schema": IGLU_META_SCHEMA,
        "self": {"vendor": "com.acme", "name": "wrapper", "format": "jsonschema", "version": "1-0-0"},
        "type": "object",
        "properties": {"player": {"$ref": f"iglu:{SP}/media_player/jsonschema/2-0-0"}},
    }
    _write(tmp_path, doc)
    remote = dict(
        doc, self={**doc["self"], "name": "remote"}, properties={"x": {"$ref": "https://example.com/s"}}
    )
    _write(tmp_path, remote)
    reg = Registry([tmp_path])
    uri = "iglu:com.acme/wrapper/jsonschema/1-0-0"
    assert reg.validate(uri, {"player": {"currentTime": 0, "paused": False, "ended": False}}) == []
    failures = reg.validate(uri, {"player": {"currentTime": -5, "paused": False, "ended": False}})
    assert failures and failures[0].path == "$.player.currentTime"
    with pytest.raises(IgluError, match="not allowed"):
        reg.validator("iglu:com.acme/remote/jsonschema/1-0-0")


PAYLOAD_FIELDS = ["e", "tv", "p", "eid", "uid", "ue_pr", "co", "stm", "ttm", "unknown", "ua"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=st.lists(
        st.dictionaries(
            st.sampled_from(PAYLOAD_FIELDS), st.text(max_size=3) | st.integers() | st.none(), max_size=6
        )
        | json_values,
        max_size=3,
    )
)
def test_set_based_fast_path_agrees_with_both_validators(registry: Registry, events: list[Any]) -> None:
    for version in ("1-0-0", "1-0-4"):
        v = registry.validator(f"iglu:{SP}/payload_data/jsonschema/{version}")
        assert v.fast_check is not v._compiled_check  # the flat shape was recognized
        assert v.fast_check(events) == v._compiled_check(events) == (v.errors(events) == [])
        for event in events:
            item = registry.validator(f"iglu:{SP}/payload_data/jsonschema/{version}")
            assert item.fast_check([event]) == (item.errors([event]) == [])


URIS = [
    MEDIA_PLAYER,
    "iglu:com.acme/x/jsonschema/1-0-0\n",
    "iglu:com.acme/x/jsonschema/1-0",
    "iglu:a.b/c_d/jsonschema/10-2-3",
    "not a uri",
    "",
]
sdj = st.dictionaries(
    st.sampled_from(["schema", "data", "extra"]), st.sampled_from(URIS) | json_values, max_size=3
) | st.fixed_dictionaries({"schema": st.sampled_from(URIS) | json_values, "data": json_values})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(instance=sdj | st.lists(sdj, max_size=4) | json_values)
def test_wrapper_fast_paths_agree_with_both_validators(registry: Registry, instance: Any) -> None:
    for uri in (
        f"iglu:{SP}/unstruct_event/jsonschema/1-0-0",
        f"iglu:{SP}/contexts/jsonschema/1-0-0",
        f"iglu:{SP}/contexts/jsonschema/1-0-1",
    ):
        v = registry.validator(uri)
        assert v.fast_check is not v._compiled_check  # the wrapper shape was recognized
        assert v.fast_check(instance) == v._compiled_check(instance) == (v.errors(instance) == []), uri
