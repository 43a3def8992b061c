from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.enrich import Enricher
from collector.identity import Identities
from collector.protocol import Decoder, Rejected, b64url_decode, b64url_encode, decode_event
from lvp.enriched import INDEX
from lvp.events import CONTEXTS_SCHEMA, UNSTRUCT_SCHEMA
from lvp.iglu import Registry

MEDIA = "com.snowplowanalytics.snowplow.media"
PLAYER = {
    "schema": "iglu:com.snowplowanalytics.snowplow/media_player/jsonschema/2-0-0",
    "data": {"currentTime": 3.2, "paused": False, "ended": False},
}
SESSION = {"schema": f"iglu:{MEDIA}/session/jsonschema/1-0-0", "data": {"mediaSessionId": "abc"}}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


def ue(schema: str, data: Any) -> str:
    return orjson.dumps({"schema": UNSTRUCT_SCHEMA, "data": {"schema": schema, "data": data}}).decode()


def co(*entities: Any, wrapper: str = CONTEXTS_SCHEMA) -> str:
    return orjson.dumps({"schema": wrapper, "data": list(entities)}).decode()


def event(**params: str | None) -> dict[str, str]:
    base = {
        "e": "ue",
        "tv": "js-4.0.1",
        "p": "web",
        "ue_pr": ue(f"iglu:{MEDIA}/play_event/jsonschema/1-0-0", {}),
    }
    merged: dict[str, str | None] = {**base, **params}
    return {k: v for k, v in merged.items() if v is not None}


def rejected(params: dict[str, Any], registry: Registry) -> Rejected:
    with pytest.raises(Rejected) as info:
        decode_event(params, registry)
    return info.value


@pytest.mark.parametrize("padding", [True, False])
def test_base64url_with_and_without_padding(padding: bool) -> None:
    raw = b'{"a":"\xc3\xa9?>>"}'
    text = base64.urlsafe_b64encode(raw).decode()
    if not padding:
        text = text.rstrip("=")
    assert b64url_decode(text) == raw
    assert b64url_decode(base64.b64encode(raw).decode()) == raw  # standard alphabet too
    assert b64url_decode(b64url_encode(raw)) == raw
    with pytest.raises(ValueError):
        b64url_decode("ab$c")
    with pytest.raises(ValueError):
        b64url_decode("a")


def test_a_media_event_with_entities_decodes(registry: Registry) -> None:
    params = event(
        eid="68859d61-0f9e-4e6d-89a6-9df092d6f7ef",
        dtm="1731764002000",
        stm="1731764002100",
        vid="3",
        res="1920x1080",
        cx=b64url_encode(co(PLAYER, SESSION).encode()),
    )
    ev = decode_event(params, registry)
    assert ev.event_type == "ue" and ev.dtm == 1731764002000 and ev.stm == 1731764002100 and ev.ttm is None
    assert ev.ue == {"schema": f"iglu:{MEDIA}/play_event/jsonschema/1-0-0", "data": {}}
    assert ev.ue_key is not None and ev.ue_key.name == "play_event"
    assert [e["schema"] for e in ev.entities] == [PLAYER["schema"], SESSION["schema"]]
    # the same in base64 (GET style) and with the server-side trackers' contexts 1-0-1 wrapper
    wrapper = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
    ev2 = decode_event(
        event(ue_pr=None, ue_px=b64url_encode(params["ue_pr"].encode()), co=co(PLAYER, wrapper=wrapper)),
        registry,
    )
    assert ev2.ue == ev.ue and ev2.entities == [PLAYER]


def test_page_view_needs_no_self_describing_event(registry: Registry) -> None:
    ev = decode_event({"e": "pv", "tv": "py-1.1.0", "p": "srv", "url": "https://a.example/"}, registry)
    assert ev.event_type == "pv" and ev.ue is None and ev.entities == []


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ({}, {"e", "tv", "p"}),
        (event(e="xx"), {"e"}),
        (event(p="desktop"), {"p"}),
        (event(tv=""), {"tv"}),
        (event(eid="not-a-uuid"), {"eid"}),
        (event(dtm="12.5", stm="-1", ttm="99999999999999999"), {"dtm", "stm", "ttm"}),
        (event(vid="x", pp_mix="1e3"), {"vid", "pp_mix"}),
        (
            event(se_va="NaN", tr_tt="abc", tr_tx="1_000", tr_sh=" 2", ti_pr="1e999"),
            {"se_va", "tr_tt", "tr_tx", "tr_sh", "ti_pr"},
        ),
        (event(res="1920*1080", vp="x"), {"res", "vp"}),
        (event(vid="\u0663", dtm="\u0661\u0662"), {"vid", "dtm"}),  # Arabic-Indic digits are not numbers here
        (event(ue_pr=None), {"ue_pr"}),
        (event(ue_pr="{not json"), {"ue_pr"}),
        (event(ue_pr=None, ue_px="%%%"), {"ue_px"}),
        (event(cx="bm90IGpzb24"), {"cx"}),  # base64 of "not json"
        (event(co="[1,"), {"co"}),
        ({"e": "pv", "tv": "t", "p": "web", "vid": 3}, {"vid"}),  # values must be strings
    ],
)
def test_tracker_protocol_violations(registry: Registry, params: dict[str, Any], fields: set[str]) -> None:
    err = rejected(params, registry)
    assert err.kind == "tracker_protocol_violations"
    assert {m["field"] for m in err.messages} == fields
    assert all(m["expectation"] for m in err.messages)


def test_dimensions_seen_before_give_the_same_columns(registry: Registry) -> None:
    first = decode_event(event(res="1280x720", vp="1280x720"), registry)
    again = decode_event(event(res="1280x720", vp="1280x720"), registry)
    assert first.cols == again.cols and first.cols is not None
    assert first.cols[INDEX["dvce_screenwidth"]] == first.cols[INDEX["br_viewwidth"]] == "1280"
    assert first.cols[INDEX["dvce_screenheight"]] == "720"
    err = rejected(event(res="1280x720", vp="1280x720 "), registry)  # a remembered prefix is no help
    assert [m["field"] for m in err.messages] == ["vp"]


def test_schema_violations_are_precise(registry: Registry) -> None:
    bad_player = {"schema": PLAYER["schema"], "data": {"currentTime": -1, "paused": False, "ended": False}}
    unknown = {"schema": "iglu:com.acme/nope/jsonschema/1-0-0", "data": {}}
    err = rejected(
        event(
            ue_pr=ue(f"iglu:{MEDIA}/ad_quartile_event/jsonschema/1-0-0", {}),
            co=co(bad_player, unknown, SESSION),
        ),
        registry,
    )
    assert err.kind == "schema_violations"
    by_key = {m["schemaKey"]: m["error"] for m in err.messages}
    quartile = by_key[f"iglu:{MEDIA}/ad_quartile_event/jsonschema/1-0-0"]
    assert quartile["error"] == "ValidationError"
    assert quartile["dataReports"][0]["targets"] == ["percentProgress"]
    player = by_key[PLAYER["schema"]]
    assert player["dataReports"][0]["path"] == "$.currentTime"
    assert by_key["iglu:com.acme/nope/jsonschema/1-0-0"]["error"] == "ResolutionError"
    assert len(err.messages) == 3  # the valid session entity adds nothing


@pytest.mark.parametrize(
    ("params", "error"),
    [
        (event(ue_pr='"just a string"'), "NotIglu"),
        (event(ue_pr='{"schema": "iglu:com.acme/x/jsonschema/1-0-0", "data": {}}'), "CriterionMismatch"),
        (event(co=co(PLAYER, wrapper="iglu:com.acme/contexts/jsonschema/1-0-0")), "CriterionMismatch"),
        (event(co=co({"schema": "bad uri", "data": {}})), "ValidationError"),
        (event(co=orjson.dumps({"schema": CONTEXTS_SCHEMA, "data": {"a": 1}}).decode()), "ValidationError"),
        (event(ue_pr=ue("iglu:com.acme/nope/jsonschema/1-0-0", {})), "ResolutionError"),
    ],
)  # fmt: skip
def test_wrappers_must_be_iglu(registry: Registry, params: dict[str, Any], error: str) -> None:
    err = rejected(params, registry)
    assert err.kind == "schema_violations"
    assert [m["error"]["error"] for m in err.messages] == [error]


# --- the Decoder's typed contexts check gives what the complete path gives ------------------------

_KEY = b"k" * 32
_WEB_PAGE = {
    "schema": "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0",
    "data": {"id": "4afcbac6-5a45-4866-b91a-832649be7f80"},
}
_CLIENT_SESSION = {
    "schema": "iglu:com.snowplowanalytics.snowplow/client_session/jsonschema/1-0-2",
    "data": {"userId": "0b7a9c1e-4f3d-4c2b-9a8e-1d2c3b4a5f6e", "sessionId": "1b7a9c1e-4f3d-4c2b-9a8e-1d2c3b4a5f6e",
             "sessionIndex": 1, "previousSessionId": None, "storageMechanism": "COOKIE_1"},
}  # fmt: skip


def _outcome(decoder: Decoder, params: dict[str, str]) -> tuple[Any, ...]:
    """What the collector makes of ``params``: the enriched line, or the bad row's kind and messages."""
    identities = Identities(_KEY)
    ident = identities.for_request({}, {"sp": "c0ffee00-0000-4000-8000-000000000001"}, "10.1.2.3", None)
    try:
        ev = decoder.decode(params)
    except Rejected as rej:
        return ("bad", rej.kind, rej.messages)
    return ("good", *Enricher(identities).enrich(ev, ident, 1_765_000_000_000, "UA"))


def test_typed_contexts_are_not_parsed_and_give_the_same_line(registry: Registry) -> None:
    params = event(eid="68859d61-0f9e-4e6d-89a6-9df092d6f7ef", co=co(PLAYER, SESSION, _WEB_PAGE))
    typed, plain = Decoder(registry), Decoder(registry, typed=False)
    assert typed.decode(params).entities is None  # checked without making dicts
    assert plain.decode(params).entities == [PLAYER, SESSION, _WEB_PAGE]
    assert _outcome(typed, params) == _outcome(plain, params)
    # an entity it cannot type (client_session: its user id is pseudonymized) takes the complete path
    with_session = event(eid="68859d61-0f9e-4e6d-89a6-9df092d6f7ef", co=co(PLAYER, _CLIENT_SESSION))
    assert typed.decode(with_session).entities == [PLAYER, _CLIENT_SESSION]
    good = _outcome(typed, with_session)
    assert good == _outcome(plain, with_session) and "0b7a9c1e" not in good[2].decode()


_edge_values = st.sampled_from(
    [
        None,
        True,
        0,
        -1,
        1.5,
        2**63,
        1e300,
        "",
        "x" * 5000,
        "video",
        "client_session",
        "2026-13-01T00:00:00Z",
        [1],
        {},
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    changes=st.lists(
        st.tuples(
            st.sampled_from(["player", "session", "page"]),
            st.sampled_from(
                ["currentTime", "paused", "mediaType", "label", "mediaSessionId", "startedAt", "id", "x"]
            ),
            _edge_values,
        ),
        max_size=3,
    ),
    duplicate=st.booleans(),
    as_cx=st.booleans(),
    wrapper=st.sampled_from(
        [CONTEXTS_SCHEMA, "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"]
    ),
)
def test_typed_contexts_decide_as_the_complete_path(
    registry: Registry, changes: list[tuple[str, str, Any]], duplicate: bool, as_cx: bool, wrapper: str
) -> None:
    entities = {
        "player": dict(PLAYER["data"]),
        "session": dict(SESSION["data"]),
        "page": dict(_WEB_PAGE["data"]),
    }
    for which, name, value in changes:
        entities[which][name] = value
    schemas = {"player": PLAYER["schema"], "session": SESSION["schema"], "page": _WEB_PAGE["schema"]}
    text = co(*({"schema": schemas[k], "data": v} for k, v in entities.items()), wrapper=wrapper)
    if duplicate:  # a duplicated key whose first value was valid
        text = text.replace('"paused":false', '"paused":false,"paused":"no"', 1)
    params = event(eid="68859d61-0f9e-4e6d-89a6-9df092d6f7ef")
    params["cx" if as_cx else "co"] = b64url_encode(text.encode()) if as_cx else text
    assert _outcome(Decoder(registry), params) == _outcome(Decoder(registry, typed=False), params)
