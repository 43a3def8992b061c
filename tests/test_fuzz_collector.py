"""Hostile input (issue 7): property-based fuzzing of every collector route and of the profiles
consumer's parser.

The collector app runs in process (``tests/support/asgi.py``: raw ASGI calls, so query strings,
header bytes and body chunks are exactly what the fuzzer chose) with its real Kafka sink on the
session Tansu broker. Inputs start from real tracker-shaped payload_data envelopes (media events
with their entities, as the JavaScript tracker sends them by POST and GET) and are mutated: fields
dropped, duplicated or of the wrong type, wrong encodings (latin-1, UTF-16, invalid UTF-8, lone
surrogates), base64 garbage, 10,000-level nesting, huge strings and numbers, NaN, absurd headers,
abused query strings, unknown paths and methods.

Every request must answer 2xx/4xx (503 only while the sink is unhealthy) without an exception
escaping the app or an error being logged; afterwards both topics are read back and every
request is accounted for: its events are exactly its good lines plus its bad rows (each bad row
a known type with a reason), and every good line is readable by the profiles consumer and by the
Snowplow Analytics SDK. The seed is a digest of the sources unless ``LVP_FUZZ_SEED`` gives one
(a number, or ``random``); it is printed, and ``LVP_FUZZ_SEED=<n>`` reproduces the run.

The consumer's :class:`~profiles.inputs.InputDecoder` gets random bytes and mutated real inputs
(enriched TSV from the Snowplow fixture, Analytics SDK JSON, accelerator JSON): it returns a
``ViewerEvent`` that the profile engine can apply, or raises ``InputError`` whose bad row is valid
JSON — nothing else.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import pytest
from collector_server import read_topic, unique
from hypothesis import HealthCheck, given, note, seed
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from snowplow_analytics_sdk.event_transformer import transform
from support.asgi import AsgiResponse, running_app

from collector.app import create_app
from collector.protocol import PAYLOAD_DATA_PREFIX
from lvp.badrows import BADROW_VERSIONS
from lvp.config import Settings
from lvp.enriched import INDEX, N_FIELDS
from lvp.events import CONTEXTS_SCHEMA, UNSTRUCT_SCHEMA, ViewerEvent
from lvp.kafka import create_topics
from lvp.pseudonym import Pseudonymizer
from profiles.engine import ViewerState
from profiles.inputs import InputDecoder, InputError


def _source_seed() -> int:
    """The run's seed when none is given: a digest of the project's Python sources, so every run of
    the same code (a fresh clone here, CI) fuzzes with the same inputs, and every change of the code
    fuzzes with new ones. ``LVP_FUZZ_SEED=random`` draws a fresh seed instead."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for package in ("collector", "lvp", "profiles", "viewer", "tests"):
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return int.from_bytes(digest.digest()[:4], "big")


def _seed(given_seed: str) -> int:
    if given_seed == "random":
        return random.SystemRandom().randrange(2**32)
    return int(given_seed) if given_seed else _source_seed()


SEED = _seed(os.environ.get("LVP_FUZZ_SEED", ""))
KEY = "fuzz-tests-pseudonym-key-0123456789"
ORIGIN = "https://site.example"
MAX_BODY = 64_000
MAX_EVENTS = 25
TP2 = "/com.snowplowanalytics.snowplow/tp2"
PIXELS = ("/i", "/com.snowplowanalytics.snowplow/i", "/ice.png")
PAYLOAD_DATA = PAYLOAD_DATA_PREFIX + "0-4"
MEDIA = "com.snowplowanalytics.snowplow.media"
PLAYER = "iglu:com.snowplowanalytics.snowplow/media_player/jsonschema/2-0-0"
SAMPLE_TSV = Path(__file__).parent / "fixtures" / "snowplow-enriched-sample.tsv"
#: collector fuzz cases per run (sum of the per-test budgets below; the last test checks it)
MIN_CASES = 10_000
SCALE = float(os.environ.get("LVP_FUZZ_SCALE") or 1)  # < 1 for quick local runs (the count test skips)
BUDGET = {
    "tp2": 3000,
    "tp2_raw": 1000,
    "pixel": 3000,
    "headers": 1300,
    "preflight": 1400,
    "other": 500,
}


def fuzz_settings(n: int) -> hsettings:
    return hsettings(
        max_examples=max(1, int(n * SCALE)),
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )


# --- JSON with raw fragments (NaN, 1e999, lone surrogate escapes, duplicate keys) ---------------


class Raw(str):
    """Already rendered JSON text (possibly invalid JSON on purpose)."""


class Pairs(list):  # type: ignore[type-arg]
    """A JSON object as (key, value) pairs: keys may repeat."""


def render(value: Any, ascii_only: bool = False) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Pairs):
        return "{" + ",".join(f"{render(k, ascii_only)}:{render(v, ascii_only)}" for k, v in value) + "}"
    if isinstance(value, dict):
        return (
            "{" + ",".join(f"{render(k, ascii_only)}:{render(v, ascii_only)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(render(v, ascii_only) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=ascii_only)
    return json.dumps(value)  # ints of any size, NaN / Infinity literals, true/false/null


def parse_shallow(text: str | bytes) -> Any:
    """JSON to mutate further, or ``{}`` when it is not JSON or nested too deep for render()."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if not raw or raw.count(b"[") + raw.count(b"{") > 300:
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}


def to_bytes(text: str) -> bytes:
    """UTF-8, lone surrogates kept as their (invalid) 3-byte encodings."""
    return text.encode("utf-8", "surrogatepass")


def b64url(data: bytes, pad: bool = False) -> str:
    text = base64.urlsafe_b64encode(data).decode()
    return text if pad else text.rstrip("=")


# --- real tracker-shaped events -----------------------------------------------------------------

T0 = int(time.time() * 1000) - 3_600_000
UID = "fuzz.viewer@example.com"
DUID = "2f8d4c1a-9b7e-4d3c-a1f0-6e5d4c3b2a19"
SID = "c0ffee00-1234-4abc-8def-0123456789ab"


def _entities(position: float, *, ad: bool, paused: bool) -> list[dict[str, Any]]:
    ents: list[dict[str, Any]] = [
        {"schema": PLAYER, "data": {"currentTime": position, "duration": 596.47, "ended": False,
                                    "paused": paused, "label": "Big Buck Bunny", "mediaType": "video",
                                    "playerType": "html5", "muted": False, "playbackRate": 1,
                                    "volume": 100, "fullscreen": False, "livestream": False}},
        {"schema": f"iglu:{MEDIA}/session/jsonschema/1-0-0",
         "data": {"mediaSessionId": "e3a82b1d-e44e-4bbf-a797-672b4e879af3",
                  "startedAt": "2024-11-16T13:33:23.276Z", "pingInterval": 30,
                  "timePlayed": position, "contentWatched": position}},
        {"schema": "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0",
         "data": {"id": "b7272b85-472b-493a-91f1-734e138ef09a"}},
    ]  # fmt: skip
    if ad:
        ents += [
            {"schema": f"iglu:{MEDIA}/ad/jsonschema/1-0-0",
             "data": {"adId": "288", "name": "Ad 1", "podPosition": 1, "duration": 15, "skippable": True}},
            {"schema": f"iglu:{MEDIA}/ad_break/jsonschema/1-0-0",
             "data": {"breakId": "287", "startTime": 0, "breakType": "linear", "podSize": 2}},
        ]  # fmt: skip
    return ents


SCRIPT: list[tuple[str, dict[str, Any], bool, bool]] = [
    ("ready_event", {}, False, True),
    ("play_event", {}, False, False),
    ("ad_break_start_event", {}, True, True),
    ("ad_start_event", {}, True, True),
    ("ad_quartile_event", {"percentProgress": 25}, True, True),
    ("ad_skip_event", {"percentProgress": 30}, True, True),
    ("ad_click_event", {"percentProgress": 30}, True, True),
    ("ad_complete_event", {}, True, True),
    ("ad_break_end_event", {}, False, True),
    ("volume_change_event", {"previousVolume": 100, "newVolume": 50}, False, False),
    ("playback_rate_change_event", {"previousRate": 1, "newRate": 1.5}, False, False),
    ("seek_start_event", {}, False, False),
    ("seek_end_event", {}, False, False),
    ("buffer_start_event", {}, False, False),
    ("buffer_end_event", {}, False, False),
    ("quality_change_event", {"previousQuality": "1080p", "newQuality": "720p", "automatic": True},
     False, False),
    ("error_event", {"errorCode": "3", "errorName": "MEDIA_ERR_DECODE", "errorDescription": "x"},
     False, False),
    ("ping_event", {}, False, False),
    ("percent_progress_event", {"percentProgress": 50}, False, False),
    ("pause_event", {}, False, True),
    ("end_event", {}, False, True),
]  # fmt: skip


def _common(i: int) -> dict[str, str]:
    return {
        "eid": str(uuid.UUID(int=random.Random(i).getrandbits(128), version=4)),
        "tv": "js-4.6.6", "tna": "sp", "aid": "fuzz-site", "p": "web", "cookie": "1", "cs": "UTF-8",
        "lang": "en-GB", "res": "1920x1080", "cd": "24", "tz": "Europe/Lisbon", "vp": "1280x720",
        "ds": "1280x3000", "vid": "2", "sid": SID, "duid": DUID, "uid": UID,
        "dtm": str(T0 + 1000 * i), "stm": str(T0 + 1000 * i + 7),
        "url": f"https://site.example/watch?v=1&_sp={DUID}.{T0}", "refr": "https://site.example/",
        "page": "Watch — Big Buck Bunny",
    }  # fmt: skip


def tracker_events(encode_base64: bool) -> list[dict[str, str]]:
    """A page view, a page ping, a structured event and the media script, as the JS tracker v4
    sends them (POST: ``ue_pr``/``co`` JSON; GET: ``ue_px``/``cx`` base64url)."""
    out = [
        {**_common(0), "e": "pv"},
        {**_common(1), "e": "pp", "pp_mix": "0", "pp_max": "120", "pp_miy": "0", "pp_may": "2400"},
        {**_common(2), "e": "se", "se_ca": "video", "se_ac": "share", "se_la": "bbb", "se_va": "1.5"},
    ]
    for i, (name, data, ad, paused) in enumerate(SCRIPT, start=3):
        ue = {
            "schema": UNSTRUCT_SCHEMA,
            "data": {"schema": f"iglu:{MEDIA}/{name}/jsonschema/1-0-0", "data": data},
        }
        co = {"schema": CONTEXTS_SCHEMA, "data": _entities(i * 1.5, ad=ad, paused=paused)}
        ev = {**_common(i), "e": "ue"}
        if encode_base64:
            ev["ue_px"] = b64url(orjson.dumps(ue))
            ev["cx"] = b64url(orjson.dumps(co))
        else:
            ev["ue_pr"] = orjson.dumps(ue).decode()
            ev["co"] = orjson.dumps(co).decode()
        out.append(ev)
    return out


POST_EVENTS = tracker_events(encode_base64=False)
GET_EVENTS = tracker_events(encode_base64=True)
PROTOCOL_KEYS = sorted(
    {k for ev in POST_EVENTS + GET_EVENTS for k in ev} | {"ttm", "tnuid", "nuid", "ip", "fp"}
)
NUMERIC_KEYS = ("dtm", "stm", "ttm", "vid", "res", "vp", "ds", "pp_mix", "pp_max", "se_va", "cd")

# --- hostile values -----------------------------------------------------------------------------

SPECIAL_TEXT = [
    "", " ", "\t", "\n", "\r\n", "\x00", "\x00\x01\x7f", "a\tb\tc", "line\nbreak", "\u2028\u2029\x85",
    "\ufeff", "\ufffd", "NaN", "Infinity", "-Infinity", "1e999", "-0", "0x1F", "1_000", "١٢٣",
    "\uff19\uff19", "²", "9" * 400, "1.7976931348623157e309", "-1", "99999999999999999999", " 12", "12 ",
    "%ff%fe", "%ED%A0%80", "../../etc/passwd", "<script>alert(1)</script>", "' OR 1=1 --",
    "😀" * 20, "e\u0301\u0301\u0301", "iglu:", "iglu:com.acme/x/jsonschema/1-0-0", "{}", "[]",
    "null", '{"schema":', "=", "&", "a=b&c=d", "\\", '"', "\x1b[31m",
]  # fmt: skip

_huge = st.builds(
    lambda c, n: c * n,
    st.sampled_from(["x", "é", "😀", "\t", "%", "\\", '"', "\x00", "ab"]),
    st.one_of(st.integers(200, 5_000), st.integers(5_000, 70_000)),
)
_surrogate = st.builds(
    lambda a, s, b: a + chr(s) + b, st.text(max_size=5), st.integers(0xD800, 0xDFFF), st.text(max_size=5)
)


def weighted(*options: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of ``options``, picked with the given weights."""
    table = [strategy for weight, strategy in options for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


@dataclass(frozen=True)
class Values:
    """Hostile values of one kind: ``text`` (strings), ``json`` (any JSON value), ``deep``."""

    text: st.SearchStrategy[Any]
    json: st.SearchStrategy[Any]
    deep: st.SearchStrategy[Any]


def make_values(*, surrogates: bool, invalid_json: bool, max_depth: int) -> Values:
    """``surrogates``: lone surrogates (invalid UTF-8 once encoded); ``invalid_json``: NaN,
    Infinity, 1e999 literals; ``max_depth``: deepest nesting (orjson reads 1024 levels)."""
    text = weighted(
        (5, st.text(max_size=30)),
        (4, st.sampled_from(SPECIAL_TEXT)),
        (1, _huge),
        (1 if surrogates else 0, _surrogate),
        (2, st.binary(max_size=30).map(lambda b: b.decode("latin-1"))),
    )
    deep = st.one_of(
        st.integers(1, max_depth).map(lambda n: Raw("[" * n + "]" * n)),
        st.integers(1, max_depth // 2).map(lambda n: Raw('{"a":' * n + "1" + "}" * n)),
    )
    raws = [Raw("-0.0"), Raw("1E-400"), Raw("1" * 30), Raw("[]"), Raw("{}"), Raw("1E+2")]
    if invalid_json:
        raws += [Raw("1e999"), Raw("-1e400"), Raw("9" * 400), Raw('"\\ud800"'), Raw('"x\\udc00y"'),
                 Raw("NaN"), Raw("Infinity")]  # fmt: skip
    leaf = weighted(
        (1, st.none()),
        (1, st.booleans()),
        (2, st.integers()),
        (1, st.integers(-(10**40), 10**40)),
        (2, st.floats(allow_nan=False, allow_infinity=False)),
        (1 if invalid_json else 0, st.floats()),  # NaN / Infinity literals: not JSON
        (5, text),
        (1, st.sampled_from(raws)),
        (1, deep),
    )
    value = st.recursive(
        leaf,
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
        max_leaves=6,
    )
    return Values(text, value, deep)


#: anything, including what makes a whole body unreadable
ANY = make_values(surrogates=True, invalid_json=True, max_depth=10_000)
#: values that keep a JSON body readable (so the events inside are what gets tested)
SAFE = make_values(surrogates=False, invalid_json=False, max_depth=1_000)
#: JSON text inside a string parameter of a readable body (ue_pr, co, base64 cx)
INNER = make_values(surrogates=False, invalid_json=True, max_depth=10_000)
hostile_text = ANY.text
json_value = ANY.json
deep = ANY.deep
new_key = st.one_of(st.sampled_from(PROTOCOL_KEYS), st.text(max_size=10)).filter(lambda k: k != "ua")


def mutate_json(draw: Callable[..., Any], value: Any, values: Values = ANY, depth: int = 0) -> Any:
    """``value`` with one random change somewhere inside it."""
    op = draw(st.integers(0, 9))
    if isinstance(value, dict) and value and op < 8:
        key = draw(st.sampled_from(sorted(value)))
        new = dict(value)
        if op == 0:
            del new[key]
        elif op == 1:
            new[key] = draw(values.json)
        elif op == 2:
            new[draw(st.text(max_size=10))] = draw(values.json)
        elif op == 3:
            return Pairs([*new.items(), (key, draw(values.json))])
        else:
            new[key] = mutate_json(draw, new[key], values, depth + 1)
        return new
    if isinstance(value, list) and value and op < 8:
        i = draw(st.integers(0, len(value) - 1))
        new_list = list(value)
        if op == 0:
            del new_list[i]
        elif op == 1:
            new_list.insert(i, new_list[i])
        elif op == 2:
            new_list.append(draw(values.json))
        elif op == 3:
            new_list = new_list * draw(st.integers(2, 40))
        else:
            new_list[i] = mutate_json(draw, new_list[i], values, depth + 1)
        return new_list
    return draw(values.json)


def b64_garbage(values: Values) -> st.SearchStrategy[str]:
    return st.one_of(
        values.text,
        st.binary(max_size=200).map(b64url),
        st.binary(max_size=50).map(lambda b: b64url(b'{"schema":"' + b + b'"}')),
        st.sampled_from(["@@@", "e30", "e3", "e30==", "=", "====", "e 3 0", "e30\n", "YQ", "-_-_", "*"]),
    )


@st.composite
def mutated_event(draw: Callable[..., Any], pool: list[dict[str, str]], readable: bool = False) -> Any:
    """One real event with 0-4 random mutations (or, rarely, not an object at all). With
    ``readable`` the event still renders as readable JSON (its inner JSON strings need not)."""
    top, inner = (SAFE, INNER) if readable else (ANY, ANY)
    if draw(st.integers(0, 49)) == 0:
        return draw(top.json)
    ev: dict[str, Any] = dict(draw(st.sampled_from(pool)))
    duplicates: list[tuple[str, Any]] = []
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.integers(0, 11))
        keys = sorted(ev)
        if op == 0 and keys:
            del ev[draw(st.sampled_from(keys))]
        elif op in (1, 2):
            ev[draw(new_key)] = draw(top.text)
        elif op == 3:
            ev[draw(new_key)] = draw(top.json)
        elif op in (4, 5, 6, 7):
            fields = [k for k in ("ue_pr", "co", "ue_px", "cx") if isinstance(ev.get(k), str)]
            if not fields:
                continue
            name = draw(st.sampled_from(fields))
            encoded = name in ("ue_px", "cx")
            try:
                doc = parse_shallow(base64.urlsafe_b64decode(ev[name] + "===") if encoded else ev[name])
            except ValueError:
                doc = {}
            text = render(mutate_json(draw, doc, inner), draw(st.booleans()))
            ev[name] = b64url(to_bytes(text), draw(st.booleans())) if encoded else text
        elif op == 8:
            fields = [k for k in ("ue_px", "cx") if k in ev] or ["cx"]
            ev[draw(st.sampled_from(fields))] = draw(b64_garbage(top))
        elif op == 9 and keys:
            key = draw(st.sampled_from(keys))
            duplicates.append((key, draw(st.one_of(top.text, top.json))))
        elif op == 10:
            ev[draw(st.sampled_from(NUMERIC_KEYS))] = draw(st.sampled_from(SPECIAL_TEXT))
        elif op == 11:  # a well-formed event of the wrong kind for its fields
            ev["e"] = draw(st.sampled_from(["ue", "pv", "pp", "se", "tr", "ti", "UE", "x", ""]))
    if duplicates:
        return Pairs([*ev.items(), *duplicates])
    return ev


ENCODINGS = ["utf-8"] * 20 + ["latin-1", "cp1252", "utf-16", "utf-16-be", "utf-8-sig", "utf-32"]


def encode_text(text: str, encoding: str) -> bytes:
    if encoding.startswith("utf"):
        return text.encode(encoding, "surrogatepass")
    return text.encode(encoding, "replace")


@st.composite
def corrupt(draw: Callable[..., Any], data: bytes) -> bytes:
    """Random byte flips, insertions or a truncation (mostly none)."""
    op = draw(st.integers(0, 19))
    if not data or op >= 4:
        return data
    buf = bytearray(data)
    if op == 0:
        return bytes(buf[: draw(st.integers(0, len(buf)))])
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(buf) - 1))
        if op == 1:
            buf[i] = draw(st.integers(0, 255))
        elif op == 2:
            buf[i:i] = draw(st.binary(min_size=1, max_size=4))
        else:
            buf[i:i] = draw(st.sampled_from([b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\x00", b"\xe2\x82"]))
    return bytes(buf)


@st.composite
def chunked(draw: Callable[..., Any], body: bytes) -> list[bytes]:
    """The body as 1-5 chunks (empty chunks included), as a server may deliver it."""
    if len(body) < 2 or draw(st.integers(0, 3)):
        return [body]
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), min_size=1, max_size=4)))
    out, last = [], 0
    for c in cuts:
        out.append(body[last:c])
        last = c
    out.append(body[last:])
    return out


@st.composite
def tp2_body(draw: Callable[..., Any]) -> bytes:
    """Mostly (3 in 4) a readable envelope whose events are mutated; else anything goes."""
    readable = draw(st.integers(0, 3)) > 0
    events = draw(st.lists(mutated_event(POST_EVENTS, readable), min_size=1, max_size=6))
    shape = draw(st.integers(0, 29))
    if shape == 0:
        events = events * draw(st.integers(2, 12))  # may exceed LVP_MAX_EVENTS_PER_REQUEST
    schema: Any = PAYLOAD_DATA
    if shape == 1:
        schema = draw(
            st.one_of(
                st.sampled_from(
                    [PAYLOAD_DATA_PREFIX + v for v in ("0-0", "0-1", "0-2", "0-3", "0-9", "1-0")]
                ),
                st.sampled_from(["iglu:com.acme/payload_data/jsonschema/1-0-4", PAYLOAD_DATA + " ", ""]),
                json_value,
            )
        )
    envelope: Any = {"schema": schema, "data": events}
    if shape == 2:
        envelope["data"] = draw(json_value)
    elif shape == 3:
        del envelope["data"]
    elif shape == 4:
        del envelope["schema"]
    elif shape == 5:
        envelope[draw(st.text(max_size=8))] = draw(json_value)
    elif shape == 6:
        envelope["data"] = []
    elif shape == 7:
        envelope = draw(deep)
    elif shape == 8:
        envelope = Pairs([("schema", schema), ("data", events), ("data", draw(json_value))])
    text = render(envelope, draw(st.booleans()))
    if readable:
        return to_bytes(text)
    return draw(corrupt(encode_text(text, draw(st.sampled_from(ENCODINGS)))))  # type: ignore[no-any-return]


def query_of(pairs: list[tuple[str, str]], style: int) -> bytes:
    if style == 0:
        return "&".join(
            quote(to_bytes(k), safe="") + "=" + quote(to_bytes(v), safe="") for k, v in pairs
        ).encode()
    if style == 1:  # raw, unescaped bytes (spaces, & and = inside values break the structure)
        return b"&".join(to_bytes(k) + b"=" + to_bytes(v) for k, v in pairs)
    if style == 2:  # percent-encoded latin-1 instead of UTF-8
        return "&".join(
            quote(k.encode("latin-1", "replace"), safe="")
            + "="
            + quote(v.encode("latin-1", "replace"), safe="")
            for k, v in pairs
        ).encode()
    return urlencode([(to_bytes(k), to_bytes(v)) for k, v in pairs]).encode()  # + for spaces


# --- the exact oracle: events whose outcome is known from the request alone -------------------

#: An event type the protocol does not have (or none): a tracker protocol violation.
INVALID_E = ("UE", "x", "")


def known_outcomes(pool: list[dict[str, str]]) -> list[tuple[dict[str, str], str]]:
    """(event, outcome): every real tracker event is ``good``; the same event with an invalid
    ``e`` (or without ``e``), as :func:`mutated_event` makes them, is a
    ``tracker_protocol_violations`` bad row."""
    out: list[tuple[dict[str, str], str]] = [(dict(ev), "good") for ev in pool]
    for ev in pool:
        for bad in INVALID_E:
            out.append(({**ev, "e": bad}, "tracker_protocol_violations"))
        out.append(({k: v for k, v in ev.items() if k != "e"}, "tracker_protocol_violations"))
    return out


POST_OUTCOMES = known_outcomes(POST_EVENTS)


def outcome_of(event: Any) -> str | None:
    """``good``, a bad row type, or None when the oracle cannot tell from the event alone."""
    if isinstance(event, dict):
        for known, outcome in POST_OUTCOMES:
            if event == known:
                return outcome
    return None


QUERY_GARBAGE = [b"%", b"%zz", b"%ED%A0%80", b"%00", b"&&", b";", b"=", b"a=b=c", b"%FF%FE", b"e",
                 b"&e=", b"#frag", b"e=ue&e=pv", b"%2", b"+", b"\xff\xfe", b"tv=&p=", b"?"]  # fmt: skip


#: The query strings of known events, correctly encoded (styles 0 and 3 of :func:`query_of`).
GET_OUTCOMES: dict[bytes, str] = {
    query_of(list(ev.items()), style): outcome
    for ev, outcome in known_outcomes(GET_EVENTS)
    for style in (0, 3)
}


@st.composite
def pixel_query(draw: Callable[..., Any]) -> bytes:
    ev = draw(mutated_event(GET_EVENTS, draw(st.integers(0, 3)) > 0))
    if isinstance(ev, Pairs):
        items = list(ev)
    elif isinstance(ev, dict):
        items = list(ev.items())
    else:
        items = [(draw(st.text(max_size=5)), render(ev))]
    pairs = [(str(k), v if isinstance(v, str) else render(v)) for k, v in items]
    query = query_of(pairs, draw(st.integers(0, 3)))
    for _ in range(max(0, draw(st.integers(-4, 3)))):
        i = draw(st.integers(0, len(query)))
        query = query[:i] + draw(st.sampled_from(QUERY_GARBAGE)) + query[i:]
    if draw(st.integers(0, 24)) == 0:
        query += b"&" + b"&".join(b"k%d=v" % i for i in range(draw(st.integers(100, 3000))))
    if draw(st.integers(0, 49)) == 0:
        query = b""
    return query


# --- header abuse -------------------------------------------------------------------------------

_header_bytes = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.integers(1_000, 60_000).map(lambda n: b"x" * n),
)
_ip = st.one_of(
    st.ip_addresses().map(str),
    st.sampled_from(["unknown", "", " ", "[::1", "[::1]:80", "1.2.3.4:99999", "300.1.1.1", "::ffff:1.2.3.4",
                     "fe80::1%eth0", "0", "localhost", "1.2.3.4, 5.6.7.8"]),
    st.text(max_size=12),
)  # fmt: skip
_xff = st.one_of(
    st.lists(_ip, min_size=1, max_size=30).map(lambda hops: ", ".join(hops).encode("utf-8", "surrogatepass")),
    st.integers(100, 2_000).map(
        lambda n: ", ".join(f"10.0.{i // 256 % 256}.{i % 256}" for i in range(n)).encode()
    ),
    st.sampled_from([b",,,,", b",", b"\xff\xfe", b"1.2.3.4\x00", b" , 1.2.3.4"]),
)
_cookie = st.one_of(
    st.builds(lambda v: b"sp=" + v, _header_bytes),
    st.integers(10, 5_000).map(lambda n: b"; ".join(b"c%d=v%d" % (i, i) for i in range(n)) + b"; sp=abc"),
    st.integers(1_000, 100_000).map(lambda n: b"sp=" + b"a" * n),
    st.sampled_from([b"sp", b"sp=", b"=sp", b";;;;", b"sp=a; sp=b", b'sp="quoted"', b"sp=\xff\xfe",
                     b"sp=00000000-0000-0000-0000-000000000000", b"SP=upper"]),
)  # fmt: skip
_origin = st.one_of(
    st.sampled_from([ORIGIN.encode(), (ORIGIN + "/").encode(), (ORIGIN + "//").encode(), b"null", b"",
                     b"https://site.example.evil", b"HTTPS://SITE.EXAMPLE", b"https://evil.example",
                     b"file://", b"https://site.example\x00", "https://sité.example".encode()]),
    _header_bytes,
)  # fmt: skip
_content_type = st.one_of(
    st.sampled_from([b"application/json", b"application/json; charset=UTF-8", b"text/plain", b"",
                     b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x",
                     b"application/json; charset=utf-16", b"application/json; charset=\xff",
                     b";;;;", b"*/*"]),
    _header_bytes,
)  # fmt: skip
_content_length = st.sampled_from(
    [b"abc", b"-1", "²".encode("latin-1"), b"99999999999999999999999", b"0", b" 12 ", b"1e3", b"",
     "٣".encode(), b"12, 12", b"+5"]
)  # fmt: skip
_header_name = st.binary(min_size=1, max_size=20).filter(lambda n: n.lower() != b"user-agent")
abusive_headers = st.lists(
    st.one_of(
        st.tuples(st.just(b"content-type"), _content_type),
        st.tuples(st.just(b"cookie"), _cookie),
        st.tuples(st.just(b"x-forwarded-for"), _xff),
        st.tuples(st.just(b"origin"), _origin),
        st.tuples(st.just(b"sp-anonymous"), _header_bytes),
        st.tuples(st.just(b"host"), _header_bytes),
        st.tuples(st.just(b"content-length"), _content_length),
        st.tuples(st.just(b"referer"), _header_bytes),
        st.tuples(
            st.just(b"transfer-encoding"), st.sampled_from([b"chunked", b"gzip", b"x", b"chunked, chunked"])
        ),
        st.tuples(st.just(b"accept-encoding"), _header_bytes),
        st.tuples(_header_name, _header_bytes),
    ),
    max_size=6,
)
_client = st.one_of(
    st.just(("203.0.113.9", 40000)),
    st.none(),
    st.tuples(st.sampled_from(["::1", "2001:db8::1", "", "unix-socket", "300.1.2.3"]), st.integers(0, 65535)),
)


# --- the harness: send, check the status at once, account for every event later --------------


@dataclass
class Sent:
    marker: str
    case: str
    route: str  # "tp2", "i" or "other"
    status: int
    expected: int  # Kafka messages (good lines + bad rows) the request must have produced
    request: str  # short description for failure reports
    #: outcomes the oracle knows for some of the request's events (``good`` or a bad row type);
    #: ``exact`` when it knows them for every event
    known: Counter[str] = field(default_factory=Counter)
    exact: bool = False
    #: the whole query string and headers, for a report of messages that cannot be found
    whole: tuple[bytes, list[tuple[bytes, bytes]]] = (b"", [])


@dataclass
class Fuzzer:
    harness: Any
    settings: Settings
    app: Any
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    sent: list[Sent] = field(default_factory=list)
    errors: list[logging.LogRecord] = field(default_factory=list)
    cases: Counter[str] = field(default_factory=Counter)
    done: set[str] = field(default_factory=set)

    @property
    def registry(self) -> Any:
        return self.app.state.collector.registry

    @property
    def sink_healthy(self) -> bool:
        return bool(self.app.state.collector.sink.healthy)

    def send(
        self,
        case: str,
        method: str,
        path: str,
        *,
        query: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
        chunks: list[bytes] | None = None,
        client: tuple[str, int] | None = ("203.0.113.9", 40000),
    ) -> AsgiResponse:
        n = sum(self.cases.values())
        marker = f"fz{self.run}q{n:x}z"
        hdrs = [(b"user-agent", marker.encode()), *(headers or [])]
        body = b"".join(chunks or [])
        route, expected, allowed = self.oracle(method, path, query, hdrs, body)
        known: Counter[str] = Counter()
        exact = False
        # the exact oracle, for requests with the tracker's own headers (abused headers may make
        # a well-formed body unreadable, e.g. a charset it is not in)
        if case in EXACT_CASES and allowed == {200, 400} and not self.refused(hdrs):
            known, exact = self.event_outcomes(route, query, body)
            allowed = self.statuses(known, exact, allowed)
        errors_before = len(self.errors)
        note(
            f"LVP_FUZZ_SEED={SEED}; {method} {path} query={query[:300]!r} headers={hdrs!r:.600} body={body[:600]!r}"
        )
        response = self.harness.request(method, path, query, hdrs, chunks or [b""], client)
        self.cases[case] += 1
        status = response.status
        if status == 503:
            assert not self.sink_healthy, "503 while the Kafka sink is healthy"
            expected = 0
        else:
            assert status in allowed, (
                f"status {status}, expected one of {sorted(allowed)}: {response.body[:300]!r}"
            )
        if status in (403, 429):
            expected = 0
        new_errors = self.errors[errors_before:]
        assert not new_errors, f"the collector logged errors: {[r.getMessage() for r in new_errors]}"
        desc = f"{method} {path}?{query[:120]!r} body[:200]={body[:200]!r}"
        self.sent.append(Sent(marker, case, route, status, expected, desc, known, exact, (query, hdrs)))
        return response

    @staticmethod
    def refused(headers: list[tuple[bytes, bytes]]) -> bool:
        origin = next((v.decode("latin-1") for k, v in headers if k.lower() == b"origin"), None)
        return origin is not None and origin.rstrip("/") != ORIGIN

    @staticmethod
    def event_outcomes(route: str, query: bytes, body: bytes) -> tuple[Counter[str], bool]:
        """(known outcomes of the request's events, whether every event's outcome is known)."""
        if route == "i":
            outcome = GET_OUTCOMES.get(query)
            return (Counter([outcome]), True) if outcome else (Counter(), False)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return Counter(), False
        # the envelope the real tracker sends (older payload_data versions allow fewer fields)
        if (
            not isinstance(doc, dict)
            or doc.get("schema") != PAYLOAD_DATA
            or not isinstance(doc["data"], list)
        ):
            return Counter(), False
        events = doc["data"]
        outcomes = [outcome_of(ev) for ev in events]
        return Counter(o for o in outcomes if o is not None), None not in outcomes

    @staticmethod
    def statuses(known: Counter[str], exact: bool, allowed: set[int]) -> set[int]:
        """A request with a good event answers 200; one whose events are all known to be bad, 400."""
        if known["good"]:
            return {200}
        if exact:
            return {400}
        return allowed

    def oracle(
        self, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[str, int, set[int]]:
        """(route, messages expected, statuses allowed) worked out from the request alone."""
        origin = next((v.decode("latin-1") for k, v in headers if k.lower() == b"origin"), None)
        refused = origin is not None and origin.rstrip("/") != ORIGIN
        if path == TP2 and method == "POST":
            if refused:
                return "tp2", 0, {403}
            n, statuses = self.tp2_expectation(body)
            return "tp2", n, statuses
        if path in PIXELS and method in ("GET", "HEAD"):
            if refused:
                return "i", 0, {403}
            too_big = len(query.decode("latin-1")) > MAX_BODY
            return "i", 1, {413} if too_big else {200, 400}
        if path in (TP2, *PIXELS) and method == "OPTIONS":
            return "other", 0, {403} if origin is None or refused else {200}
        known = {
            TP2: {"POST", "OPTIONS"},
            **{p: {"GET", "HEAD", "OPTIONS"} for p in PIXELS},
            "/health": {"GET", "HEAD"},
            "/sink-health": {"GET", "HEAD"},
            "/metrics": {"GET", "HEAD"},
            "/robots.txt": {"GET", "HEAD"},
        }
        if path in known:
            return "other", 0, {200} if method in known[path] else {405}
        return "other", 0, {404}  # no redirects (e.g. to the path without a trailing slash)

    def tp2_expectation(self, body: bytes) -> tuple[int, set[int]]:
        if len(body) > MAX_BODY:
            return 1, {413}
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return 1, {400}
        if not isinstance(doc, dict) or not isinstance(doc.get("schema"), str) or "data" not in doc:
            return 1, {400}
        if not doc["schema"].startswith(PAYLOAD_DATA_PREFIX) or doc["schema"] not in self.registry:
            return 1, {400}
        data = doc["data"]
        if not isinstance(data, list) or not data:
            return 1, {400}
        if len(data) > MAX_EVENTS:
            return 1, {413}
        return len(data), {200, 400}

    # -- accounting --
    def account(self, case: str) -> None:
        """Read both topics back and check every request of ``case`` against them."""
        sent = [s for s in self.sent if s.case == case]
        s = self.settings
        prefix = f"fz{self.run}q".encode()
        good = read_topic(s.kafka_bootstrap_servers, s.topic_good, 0, lambda v: prefix in v, timeout=60)
        bad = read_topic(s.kafka_bootstrap_servers, s.topic_bad, 0, lambda v: prefix in v, timeout=60)
        by_marker: dict[str, list[tuple[str, bytes]]] = {}
        ua = INDEX["useragent"]
        for _, line in good:
            cols = line.split(b"\t")
            assert len(cols) == N_FIELDS, f"a good line with {len(cols)} columns: {line[:300]!r}"
            by_marker.setdefault(cols[ua].decode(), []).append(("good", line))
        for _, value in bad:
            try:
                row = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                raise AssertionError(f"a bad row that is not JSON ({exc}): {value[:1500]!r}") from None
            payload = row["data"]["payload"]
            marker = (payload.get("raw") or payload).get("useragent")
            by_marker.setdefault(str(marker), []).append(("bad", value))
        decoder = InputDecoder()
        problems: list[str] = []
        statuses: Counter[int] = Counter()
        kinds: Counter[str] = Counter()
        n_good = n_bad = decoded = exact_checked = known_checked = 0
        for req in sent:
            statuses[req.status] += 1
            msgs = by_marker.get(req.marker, [])
            goods = [v for k, v in msgs if k == "good"]
            bads = [orjson.loads(v) for k, v in msgs if k == "bad"]
            n_good += len(goods)
            n_bad += len(bads)
            if len(goods) + len(bads) != req.expected:
                markers = {r.marker for r in self.sent}  # (every case of this run)
                strays = [m for m in by_marker if m not in markers]  # (a user agent not as sent)
                problems.append(
                    f"{req.request}: status {req.status}, {req.expected} events expected, "
                    f"{len(goods)} good + {len(bads)} bad rows found; marker {req.marker}, "
                    f"messages under no sent marker: {strays[:5]!r}; the request: {req.whole!r:.20000}"
                )
                continue
            if req.route != "other" and req.status == 200 and not goods:
                problems.append(f"{req.request}: 200 without a good event")
            if req.route != "other" and req.status in (400, 413) and goods:
                problems.append(f"{req.request}: {req.status} although {len(goods)} events were accepted")
            if req.status not in (403, 429, 503):
                found = Counter(str(r.get("schema", "")).split("/")[1] for r in bads)
                found["good"] = len(goods)
                short = {o: n for o, n in req.known.items() if found[o] < n}
                if short or (req.exact and +found != +req.known):
                    problems.append(
                        f"{req.request}: expected {dict(req.known)}{'' if req.exact else ' at least'}, "
                        f"found {dict(+found)}"
                    )
                exact_checked += req.exact
                known_checked += sum(req.known.values())
            for row in bads:
                kind = str(row.get("schema", "")).split("/")[1]
                kinds[kind] += 1
                messages = row["data"]["failure"]["messages"]
                if kind not in BADROW_VERSIONS or not isinstance(messages, list) or not messages:
                    problems.append(f"{req.request}: bad row without a reason: {row!r:.300}")
                if req.status == 413 and kind != "size_violation":
                    problems.append(f"{req.request}: 413 with a {kind} bad row")
            for line in goods:
                try:
                    decoder.decode(line)
                    decoded += 1
                except InputError as exc:
                    problems.append(
                        f"{req.request}: the consumer refuses a good line ({exc}): {line[:200]!r}"
                    )
                try:
                    transform(line.decode())
                except Exception as exc:
                    problems.append(f"{req.request}: the Analytics SDK refuses a good line ({exc!r:.1500})")
        print(
            f"FIGURE fuzz {case}: {len(sent)} requests, statuses {dict(sorted(statuses.items()))}, "
            f"{n_good} good events, {n_bad} bad rows {dict(kinds.most_common())}, "
            f"{decoded}/{n_good} good lines decoded by the consumer; {exact_checked} requests with every "
            f"event's outcome known, {known_checked} event outcomes checked; accounting problems: {len(problems)}"
        )
        assert not problems, "\n".join(problems[:10])
        if case in EXACT_CASES and len(sent) >= 20:
            assert exact_checked and statuses[200] and known_checked, "the exact oracle checked nothing"
        self.done.add(case)


class _Errors(logging.Handler):
    def __init__(self, sink: list[logging.LogRecord]) -> None:
        super().__init__(logging.ERROR)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record)


@pytest.fixture(scope="module")
def fuzz(broker: str) -> Iterator[Fuzzer]:
    settings = Settings.from_env(
        {},
        kafka_bootstrap_servers=broker,
        topic_good=unique("fuzz-good"),
        topic_bad=unique("fuzz-bad"),
        topic_changes=unique("fuzz-changes"),
        pseudonym_key=KEY,
        cors_origins=ORIGIN,
        max_body_bytes=MAX_BODY,
        max_events_per_request=MAX_EVENTS,
    )
    create_topics(settings)
    app = create_app(settings)
    print(f"FIGURE fuzz seed {SEED} (LVP_FUZZ_SEED={SEED} reproduces this run)")
    with running_app(app) as harness:
        fuzzer = Fuzzer(harness, settings, app)
        handler = _Errors(fuzzer.errors)
        logger = logging.getLogger("collector")
        logger.addHandler(handler)
        try:
            yield fuzzer
        finally:
            logger.removeHandler(handler)


#: Cases whose requests carry the tracker's own headers (:func:`base_headers`): the exact oracle
#: applies to them.
EXACT_CASES = ("tp2", "pixel")


def base_headers(draw: Callable[..., Any], content_type: bool = True) -> list[tuple[bytes, bytes]]:
    headers = []
    if content_type:
        headers.append((b"content-type", b"application/json; charset=UTF-8"))
    if draw(st.booleans()):
        headers.append((b"origin", ORIGIN.encode()))
    if draw(st.integers(0, 3)) == 0:
        headers.append((b"cookie", b"sp=" + str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1)))).encode()))
    if draw(st.integers(0, 3)) == 0:
        headers.append((b"x-forwarded-for", b"198.51.100.23"))
    if draw(st.integers(0, 9)) == 0:
        headers.append((b"sp-anonymous", b"*"))
    return headers


# --- the collector fuzz tests -------------------------------------------------------------------


def test_fuzz_tp2_with_mutated_real_payloads(fuzz: Fuzzer) -> None:
    @seed(SEED)
    @fuzz_settings(BUDGET["tp2"])
    @given(st.data())
    def case(data: st.DataObject) -> None:
        body = data.draw(tp2_body())
        chunks = data.draw(chunked(body))
        headers = base_headers(data.draw)
        query = data.draw(
            st.sampled_from([b"", b"nuid=chosen-by-redirect", b"nuid=%ff", b"nuid=" + b"a" * 200])
        )
        fuzz.send("tp2", "POST", TP2, query=query, headers=headers, chunks=chunks)

    case()
    fuzz.account("tp2")


def test_fuzz_tp2_with_random_bodies(fuzz: Fuzzer) -> None:
    """Bodies that are not tracker payloads at all: random bytes, random JSON, deep nesting."""
    body_strategy = st.one_of(
        st.binary(max_size=2_000),
        json_value.map(lambda v: to_bytes(render(v))),
        deep.map(lambda r: str(r).encode()),
        st.integers(1, 10_000).map(lambda n: b'{"schema":"' + PAYLOAD_DATA.encode() + b'","data":' + b"[" * n + b"]" * n + b"}"),
        st.integers(MAX_BODY - 10, MAX_BODY + 10).map(lambda n: b"x" * n),
        st.sampled_from([b"", b"{}", b"null", b"[]", b'{"schema":null,"data":null}', b"\xef\xbb\xbf{}",
                         b"\xff\xfe{\x00}\x00", b"NaN", b"1e999", b'"\\ud800"']),
    )  # fmt: skip

    @seed(SEED)
    @fuzz_settings(BUDGET["tp2_raw"])
    @given(st.data())
    def case(data: st.DataObject) -> None:
        body = data.draw(body_strategy)
        fuzz.send("tp2_raw", "POST", TP2, headers=base_headers(data.draw), chunks=data.draw(chunked(body)))

    case()
    fuzz.account("tp2_raw")


def test_fuzz_pixel_get_and_head_with_abused_query_strings(fuzz: Fuzzer) -> None:
    @seed(SEED)
    @fuzz_settings(BUDGET["pixel"])
    @given(st.data())
    def case(data: st.DataObject) -> None:
        method = data.draw(st.sampled_from(["GET"] * 4 + ["HEAD"]))
        path = data.draw(st.sampled_from(PIXELS))
        query = data.draw(pixel_query())
        fuzz.send("pixel", method, path, query=query, headers=base_headers(data.draw, content_type=False))

    case()
    fuzz.account("pixel")


def test_fuzz_header_abuse_on_every_event_route(fuzz: Fuzzer) -> None:
    @seed(SEED)
    @fuzz_settings(BUDGET["headers"])
    @given(st.data())
    def case(data: st.DataObject) -> None:
        headers = data.draw(abusive_headers)
        client = data.draw(_client)
        if data.draw(st.booleans()):
            body = data.draw(tp2_body())
            fuzz.send("headers", "POST", TP2, headers=headers, chunks=[body], client=client)
        else:
            method = data.draw(st.sampled_from(["GET", "HEAD"]))
            query = data.draw(pixel_query())
            fuzz.send(
                "headers",
                method,
                data.draw(st.sampled_from(PIXELS)),
                query=query,
                headers=headers,
                client=client,
            )

    case()
    fuzz.account("headers")


def test_fuzz_preflight_and_operational_routes(fuzz: Fuzzer) -> None:
    paths = [TP2, *PIXELS, "/health", "/sink-health", "/metrics", "/robots.txt"]

    @seed(SEED)
    @fuzz_settings(BUDGET["preflight"])
    @given(st.data())
    def case(data: st.DataObject) -> None:
        path = data.draw(st.sampled_from(paths))
        method = "OPTIONS" if path in (TP2, *PIXELS) else data.draw(st.sampled_from(["GET", "HEAD"]))
        headers = data.draw(abusive_headers)
        if data.draw(st.booleans()):
            headers.append((b"access-control-request-method", data.draw(_header_bytes)))
            headers.append((b"access-control-request-headers", data.draw(_header_bytes)))
        query = data.draw(st.one_of(st.just(b""), pixel_query()))
        response = fuzz.send(
            "preflight",
            method,
            path,
            query=query,
            headers=headers,
            chunks=[data.draw(st.binary(max_size=100))],
        )
        if method == "OPTIONS" and response.status == 200:
            assert response.header("access-control-allow-origin") == next(
                v.decode("latin-1") for k, v in headers if k.lower() == b"origin"
            )

    case()
    fuzz.account("preflight")


def test_fuzz_unknown_paths_and_methods(fuzz: Fuzzer) -> None:
    path_strategy = st.one_of(
        st.text(max_size=40).map(lambda t: "/" + t),
        st.sampled_from(["/I", "/HEALTH", "/com.snowplowanalytics.snowplow/TP2", TP2 + "/", "/i/", "/health/",
                         "//i", "/./i", "/../i", "/com.snowplowanalytics.snowplow/tp1", "/i%00", "/\x00",
                         "/" + "a" * 10_000, "/com.snowplowanalytics.snowplow/tp2/extra", "/robots.txt/"]),
    )  # fmt: skip
    method_strategy = st.one_of(
        st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT", "OPTIONS", "HEAD", "PROPFIND"]),
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ-", min_size=1, max_size=12),
    )  # fmt: skip

    @seed(SEED)
    @fuzz_settings(BUDGET["other"])
    @given(st.data())
    def case(data: st.DataObject) -> None:
        method = data.draw(method_strategy)
        path = data.draw(path_strategy)
        known = path in (TP2, *PIXELS)
        if known and method in ("POST", "GET", "HEAD", "OPTIONS"):
            path = path + "/x"  # the event routes have their own tests
        body = data.draw(st.one_of(st.just(b""), tp2_body()))
        fuzz.send(
            "other",
            method,
            path,
            query=data.draw(pixel_query()),
            headers=data.draw(abusive_headers),
            chunks=[body],
        )

    case()
    fuzz.account("other")


# --- the HTTP layer: raw bytes to the collector served as `lvp collector` serves it ---------------

_BAD_HEADER_LINES = [
    b"NoColon", b": empty-name", b"Bad Name: x", b" folded: continuation", b"X-Nul: a\x00b",
    b"Content-Length: -1", b"Content-Length: 1e3", b"Connection: upgrade", b"Upgrade: websocket",
    b"Transfer-Encoding: chunked", b"Content-Length: 99999999999999999999",
]  # fmt: skip
_HOSTILE_HEADER_LINES = [
    b"Expect: 100-continue", b"Origin: https://evil.example", b"Origin: " + ORIGIN.encode(),
    b"Cookie: sp=" + b"a" * 5000, b"X-Forwarded-For: " + b"1.2.3.4, " * 500, b"SP-Anonymous: *",
    b"Content-Type: text/plain; charset=\xff", b"Accept-Encoding: gzip, br, zstd", b"Connection: close",
]  # fmt: skip


@st.composite
def raw_http_request(draw: Callable[..., Any]) -> bytes:
    """A request as bytes on the wire: well-formed HTTP/1.1 with hostile content (2 in 3), or
    with one or more broken parts (request line, line endings, framing, header syntax)."""
    broken = draw(st.integers(0, 2)) == 0
    method = draw(st.sampled_from([b"POST"] * 3 + [b"GET"] * 3 + [b"HEAD", b"OPTIONS", b"PUT"]))
    path = draw(st.sampled_from([TP2.encode(), *[p.encode() for p in PIXELS], b"/health", b"/nope"]))
    query = quote(draw(pixel_query())[:4000], safe="&=%+;,/:@!$'()*").encode()
    target = path + (b"?" + query if method != b"POST" or draw(st.booleans()) else b"")
    version, eol = b"HTTP/1.1", b"\r\n"
    body = draw(st.one_of(st.just(b""), tp2_body().map(lambda b: b[:20_000]))) if method != b"GET" else b""
    headers = [b"Host: collector.test", b"User-Agent: fuzz-http", b"Content-Type: application/json"]
    headers += draw(st.lists(st.one_of(st.sampled_from(_HOSTILE_HEADER_LINES),
                                       _header_bytes.map(lambda v: b"X-Fuzz: " + v[:2000].translate(None, b"\r\n"))),
                             max_size=3))  # fmt: skip
    framing = b"Content-Length: %d" % len(body)
    payload = body
    if broken:
        for _ in range(draw(st.integers(1, 2))):
            op = draw(st.integers(0, 8))
            if op == 0:
                method = draw(st.sampled_from([b"G\x00T", b"", b"get", b"X" * 300, b"POST POST"]))
            elif op == 1:
                target = draw(st.one_of(
                    st.sampled_from([b"*", b"http://evil.example/i", b"/i?a b", b"", b"/i#frag", b"i"]),
                    st.binary(max_size=60).map(lambda b: b"/" + b),
                    st.integers(10_000, 200_000).map(lambda n: b"/i?x=" + b"a" * n),
                ))  # fmt: skip
            elif op == 2:
                version = draw(
                    st.sampled_from([b"HTTP/1.0", b"HTTP/2.0", b"HTTP/0.9", b"http/1.1", b"HTTP/9", b""])
                )
            elif op == 3:
                eol = draw(st.sampled_from([b"\n", b"\r", b"\r\r\n", b"\x00\r\n"]))
            elif op == 4:
                headers.insert(draw(st.integers(1, len(headers))), draw(st.sampled_from(_BAD_HEADER_LINES)))
            elif op == 5:  # chunked, well or badly encoded
                framing = b"Transfer-Encoding: chunked"
                payload = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
                if draw(st.booleans()):
                    payload = draw(
                        st.sampled_from(
                            [b"zz\r\n", b"-1\r\n", b"ffffffffffffffffff\r\nx", b"5\r\nab\r\n0\r\n\r\n"]
                        )
                    )
            elif op == 6:  # request smuggling shape
                framing = b"Content-Length: %d\r\nTransfer-Encoding: chunked" % len(body)
            elif op == 7:  # conflicting lengths
                framing = b"Content-Length: %d\r\nContent-Length: %d" % (len(body), len(body) + 5)
            else:
                headers.append(draw(st.binary(min_size=1, max_size=40)))
    head = method + b" " + target + b" " + version + eol + eol.join([*headers, framing]) + eol + eol
    return head + payload


def test_fuzz_http_layer_of_the_production_server(broker: str) -> None:
    """Raw, partly broken HTTP/1.x requests to the collector under uvicorn as `lvp collector`
    runs it: every answer is a 2xx/4xx status (or the connection is closed without one), and the
    server keeps serving."""
    from support.asgi import raw_exchange, serve_production, status_of

    settings = Settings.from_env(
        {}, kafka_bootstrap_servers=broker, topic_good=unique("fuzz-good"), topic_bad=unique("fuzz-bad"),
        pseudonym_key=KEY, cors_origins=ORIGIN, max_body_bytes=MAX_BODY, max_events_per_request=MAX_EVENTS,
        request_timeout_s=0.3,
    )  # fmt: skip
    create_topics(settings)
    statuses: Counter[int | None] = Counter()
    with serve_production(settings) as server:

        @seed(SEED)
        @fuzz_settings(HTTP_CASES)
        @given(raw_http_request())
        def case(request: bytes) -> None:
            note(f"LVP_FUZZ_SEED={SEED}; request={request[:1500]!r}")
            response = raw_exchange(server.host, server.port, request, timeout=10)
            status = status_of(response)
            statuses[status] += 1
            assert status is None or 200 <= status < 500, response[:300]
            if status is None:
                assert response == b"", f"not an HTTP response: {response[:300]!r}"

        case()
        health = raw_exchange(server.host, server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(health) == 200
    total = sum(statuses.values())
    print(
        f"FIGURE fuzz http layer: {total} raw requests, statuses {dict(statuses.most_common())} (None = closed)"
    )
    assert total >= HTTP_CASES * SCALE * 0.9


HTTP_CASES = 500


def test_fuzz_total_case_count(fuzz: Fuzzer) -> None:
    """Runs last: the collector saw at least MIN_CASES fuzz cases in this run."""
    if not set(BUDGET) <= fuzz.done or SCALE < 1:
        pytest.skip(f"only {sorted(fuzz.done)} of the collector fuzz tests ran")
    total = sum(fuzz.cases.values())
    print(f"FIGURE fuzz collector cases: {total} ({dict(fuzz.cases)}), seed {SEED}")
    assert total >= MIN_CASES


# --- the consumer's parser ------------------------------------------------------------------------

SAMPLE_LINES = [line for line in SAMPLE_TSV.read_bytes().split(b"\n") if line.count(b"\t") == N_FIELDS - 1]
SDK_EVENTS = [transform(line.decode()) for line in SAMPLE_LINES]
ACCELERATOR = {
    "collector_tstamp": "2024-11-16 13:33:22.625",
    "event_id": "68859d61-0f9e-4e6d-89a6-9df092d6f7ef",
    "event_name": "ad_skip_event",
    "viewer_id": "d8aae409-b64d-40c0-99d7-5324fcb27735",
    "adsClicked": 1,
    "adsSkipped": 2,
    "adId": "288",
    "video_ts": 12.5,
}
TIMESTAMPS = ["2024-11-16 13:33:22.625", "2024-13-45 99:99:99.999", "0000-00-00 00:00:00", "9999-12-31 23:59:59.999",
              "10000-01-01 00:00:00", "2024-11-16T13:33:22.625Z", "2024-11-16", "1731764002", "", "  ",
              "2024-11-16 13:33:22.625\x00", "2024-02-30 00:00:00.000", "-2024-11-16 13:33:22.625"]  # fmt: skip
_TS_COLUMNS = [INDEX[c] for c in ("collector_tstamp", "derived_tstamp", "dvce_created_tstamp", "etl_tstamp")]
_JSON_COLUMNS = [INDEX[c] for c in ("contexts", "unstruct_event", "derived_contexts")]
_ID_COLUMNS = [
    INDEX[c] for c in ("event_id", "user_id", "domain_userid", "network_userid", "event_name", "event")
]


@st.composite
def mutated_tsv(draw: Callable[..., Any]) -> bytes:
    cols = draw(st.sampled_from(SAMPLE_LINES)).decode().split("\t")
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 8))
        i = draw(st.integers(0, len(cols) - 1)) if cols else 0
        if op == 0 and cols:
            cols[i] = draw(hostile_text)
        elif op == 1:
            cols[draw(st.sampled_from(_TS_COLUMNS))] = draw(
                st.one_of(st.sampled_from(TIMESTAMPS), hostile_text)
            )
        elif op == 2:
            j = draw(st.sampled_from(_JSON_COLUMNS))
            doc = parse_shallow(cols[j])
            cols[j] = render(mutate_json(draw, doc, INNER), draw(st.booleans()))
        elif op == 3:
            cols[draw(st.sampled_from(_ID_COLUMNS))] = draw(st.one_of(st.just(""), hostile_text))
        elif op == 4 and cols:
            del cols[i]
        elif op == 5 and cols:
            cols.insert(i, cols[i])
        elif op == 6:
            j = draw(st.sampled_from(_JSON_COLUMNS))
            cols[j] = str(draw(deep))
        elif op == 7 and cols:
            cols[i] = cols[i].replace("e", "\t")
        # op 8: unchanged column layout, only byte corruption below
    return draw(corrupt(to_bytes("\t".join(cols))))  # type: ignore[no-any-return]


@st.composite
def mutated_sdk_json(draw: Callable[..., Any]) -> bytes:
    doc: Any = dict(draw(st.sampled_from(SDK_EVENTS)))
    for _ in range(draw(st.integers(1, 3))):
        doc = mutate_json(draw, doc)
    return draw(corrupt(to_bytes(render(doc, draw(st.booleans())))))  # type: ignore[no-any-return]


@st.composite
def mutated_accelerator_json(draw: Callable[..., Any]) -> bytes:
    doc: Any = dict(ACCELERATOR)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.integers(0, 3))
        if op == 0 and isinstance(doc, dict):
            doc["collector_tstamp"] = draw(
                st.one_of(st.sampled_from(TIMESTAMPS), st.integers(), st.floats(), st.integers(-(10**30), 10**30),
                          st.sampled_from([Raw("1e308"), Raw("-1e308"), Raw("1e-320")]))
            )  # fmt: skip
        elif op == 1 and isinstance(doc, dict):
            doc[draw(st.sampled_from(sorted(ACCELERATOR)))] = draw(json_value)
        else:
            doc = mutate_json(draw, doc)
    return draw(corrupt(to_bytes(render(doc, draw(st.booleans())))))  # type: ignore[no-any-return]


consumer_inputs = st.one_of(
    st.binary(max_size=3_000),
    mutated_tsv(),
    mutated_sdk_json(),
    mutated_accelerator_json(),
    st.binary(max_size=200).map(lambda b: b"\t" * (N_FIELDS - 1) + b),
    st.sampled_from([b"", b"{", b"{}", b"[]", b"\t", b"\xef\xbb\xbf{}", b' {"event_id":1}', b"\n{}"]),
)
PSEUDONYMIZE = Pseudonymizer(KEY.encode())
#: two real media events (play, then pause) around each fuzzed one: the engine sees it in context
REAL_EVENTS = [
    ev for ev in (InputDecoder().decode(line) for line in SAMPLE_LINES) if ev.name in ("play", "pause")
][:2]
CONSUMER_CASES = 5_000


def test_fuzz_consumer_parser() -> None:
    outcomes: Counter[str] = Counter()

    @seed(SEED)
    @fuzz_settings(CONSUMER_CASES)
    @given(consumer_inputs, st.booleans())
    def case(value: bytes, raw_input: bool) -> None:
        note(f"LVP_FUZZ_SEED={SEED}")
        decoder = InputDecoder(PSEUDONYMIZE if raw_input else None)
        try:
            ev = decoder.decode(value)
        except InputError as exc:
            assert exc.reason and str(exc)
            row = decoder.bad_row(value, exc, now_ms=1_731_764_002_625)
            text = orjson.dumps(row)  # valid JSON, no exception
            back = orjson.loads(text)
            assert (
                back["schema"]
                == "iglu:com.snowplowanalytics.snowplow.badrows/loader_parsing_error/jsonschema/2-0-0"
            )
            assert back["data"]["failure"]["messages"][0]["reason"] == exc.reason
            assert isinstance(back["data"]["payload"], str) and len(back["data"]["payload"]) <= 2049
            outcomes[f"InputError:{exc.reason}"] += 1
            return
        assert isinstance(ev, ViewerEvent)
        assert isinstance(ev.viewer_id, str) and ev.viewer_id
        # the profile engine must take whatever the parser lets through (a poison message would
        # stop the consumer's partition)
        state = ViewerState.new(ev.viewer_id)
        before, after = (dataclasses.replace(real, viewer_id=ev.viewer_id) for real in REAL_EVENTS)
        for event in (before, ev, after):
            state.apply(event)
            orjson.dumps(state.profile())
        ViewerState.load(ev.viewer_id, state.dump())
        outcomes["event"] += 1

    case()
    total = sum(outcomes.values())
    print(
        f"FIGURE fuzz consumer parser: {total} inputs, outcomes {dict(outcomes.most_common())}, seed {SEED}"
    )
    assert total >= CONSUMER_CASES * 0.9 * SCALE
    assert outcomes["event"] > 0


# --- regressions: each bug these fuzzers found, pinned ------------------------------------------


@pytest.fixture(scope="module")
def pipeline() -> Any:
    from collector.identity import Identities
    from collector.pipeline import Pipeline
    from lvp.iglu import Registry

    registry = Registry.from_settings(Settings.from_env({}, pseudonym_key=KEY))
    registry.compile_all()
    identities = Identities(KEY.encode())
    return Pipeline(registry, identities, "good", "bad"), identities


def process(
    pipeline: Any, *events: Any, headers: dict[str, str] | None = None
) -> tuple[list[bytes], list[Any]]:
    """(good lines, bad rows) of one request's events."""
    from collector.pipeline import RequestInfo

    pipe, identities = pipeline
    hdrs = headers or {}
    ident = identities.for_request(hdrs, {}, "203.0.113.9", None)
    out = pipe.process(list(events), RequestInfo(ident, 1_731_764_002_625, hdrs, "tp2"))
    good = [value for topic, _, value in out.messages if topic == "good"]
    bad = [orjson.loads(value) for topic, _, value in out.messages if topic == "bad"]  # JSON, or it fails
    assert out.good + sum(out.bad.values()) == len(events)
    return good, bad


def test_regression_nesting_orjson_reads_but_cannot_write(
    pipeline: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """orjson reads 1024 levels but writes 255: a 300-level ue_pr made the bad row unwritable and
    the whole request (its good events too) failed with a logged TypeError."""
    deep_ue = '{"schema":"' + UNSTRUCT_SCHEMA + '","data":' + "[" * 300 + "]" * 300 + "}"
    ok = {**POST_EVENTS[0]}
    good, bad = process(
        pipeline, {**POST_EVENTS[5], "ue_pr": deep_ue}, ok, {**ok, "extra": [[["x"] * 3] * 3] * 300}
    )
    kinds = [r["schema"].split("/")[1] for r in bad]
    assert len(good) == 1 and kinds == ["schema_violations", "tracker_protocol_violations"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_regression_identifier_of_another_type(pipeline: Any) -> None:
    """``"duid": []`` (not a string) crashed the identifier scrubbing (an unhashable cache key)."""
    good, bad = process(pipeline, {**POST_EVENTS[0], "duid": []}, {**POST_EVENTS[0], "uid": {"a": 1}})
    assert good == [] and {r["schema"].split("/")[1] for r in bad} == {"tracker_protocol_violations"}


@pytest.mark.parametrize("raw_uid", ['{"schema":', '","value":"', "\t" * 6, "\t\t\t\t\t\tweb", '"}},{"'])
def test_regression_raw_identifier_spanning_syntax(pipeline: Any, raw_uid: str) -> None:
    """Raw identifiers were scrubbed from the serialized line / bad row: a uid like ``{"schema":``
    or six tabs matched JSON syntax or runs of empty TSV columns, and the replacement broke the
    bad row's JSON or the enriched line's 131 columns (the consumer then refused it)."""
    good, _ = process(pipeline, {**POST_EVENTS[5], "uid": raw_uid, "page": f"x{raw_uid}y"})
    [line] = good
    assert line.count(b"\t") == N_FIELDS - 1
    ev = InputDecoder().decode(line)
    assert ev.viewer_id == PSEUDONYMIZE(raw_uid) and ev.name == "ad_break_start"
    assert not [s for s in line_strings(line) if raw_uid in s]
    _, [row] = process(pipeline, {**POST_EVENTS[5], "uid": raw_uid, "page": f"x{raw_uid}y", "e": "nope"})
    assert not [s for s in json_strings(row) if raw_uid in s]


def json_strings(value: Any) -> Iterator[str]:
    """Every string (keys included) inside a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from json_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from json_strings(v)


def line_strings(line: bytes) -> Iterator[str]:
    """Every column of an enriched line, and every string inside its JSON columns."""
    for i, col in enumerate(line.decode().split("\t")):
        if i in (INDEX["contexts"], INDEX["unstruct_event"]) and col:
            yield from json_strings(orjson.loads(col))
        else:
            yield col


def test_regression_escaped_raw_identifier_inside_json(pipeline: Any) -> None:
    """A raw identifier with a character JSON escapes (``"``) was searched for only as is, so
    its escaped form inside the contexts column and bad rows was not replaced."""
    raw = 'ali"ce@example.com'
    co = render({"schema": CONTEXTS_SCHEMA, "data": [
        {"schema": PLAYER, "data": {"currentTime": 1, "paused": False, "ended": False, "label": raw}}]})  # fmt: skip
    good, _ = process(pipeline, {**POST_EVENTS[5], "uid": raw, "co": co})
    [line] = good
    assert not [s for s in line_strings(line) if raw in s]
    _, [row] = process(pipeline, {**POST_EVENTS[5], "uid": raw, "co": co, "e": "nope"})
    assert not [s for s in json_strings(row) if raw in s]


def test_regression_non_ascii_digit_content_length(fuzz: Fuzzer) -> None:
    """``Content-Length: ²`` passed ``str.isdigit`` and failed ``int()``: the request failed as
    a whole (400, no bad row, an error logged)."""
    body = to_bytes(render({"schema": PAYLOAD_DATA, "data": [POST_EVENTS[0]]}))

    @seed(SEED)
    @fuzz_settings(1)
    @given(st.just(None))
    def case(_: None) -> None:
        for value in ("²".encode("latin-1"), "٣".encode(), b"\xb9\xb2"):
            r = fuzz.send("regression", "POST", TP2, headers=[(b"content-length", value)], chunks=[body])
            assert r.status == 200

    case()
    fuzz.account("regression")


def test_regression_scoped_ipv6_and_trailing_slash_with_a_binary_query(fuzz: Fuzzer) -> None:
    """``X-Forwarded-For: fe80::1%eth0`` (an IPv6 zone) raised AddressValueError in the IP
    anonymization (the request failed as a whole), and a path with a trailing slash and a query
    string that is not UTF-8 was a 500 from Starlette's redirect to the path without it."""
    body = to_bytes(render({"schema": PAYLOAD_DATA, "data": [POST_EVENTS[0]]}))

    @seed(SEED)
    @fuzz_settings(1)
    @given(st.just(None))
    def case(_: None) -> None:
        for hop in (b"fe80::1%eth0", b"fe80::1%1, 10.0.0.1", b"::ffff:1.2.3.4%x"):
            r = fuzz.send("regression2", "POST", TP2, headers=[(b"x-forwarded-for", hop)], chunks=[body])
            assert r.status == 200
        assert fuzz.send("regression2", "GET", "/robots.txt/", query=b"\xff\xfee=pv").status == 404
        assert fuzz.send("regression2", "GET", "/i/", query=b"\xff\xfee=pv").status == 404

    case()
    fuzz.account("regression2")


def test_regression_extra_keys_of_the_self_describing_wrappers_are_dropped(pipeline: Any) -> None:
    """The ue_pr / co text was copied into the enriched line as it came, keys beyond ``schema``
    and ``data`` of the outer wrapper included (Snowplow keeps only those two): junk in the line,
    and deep junk the Snowplow Analytics SDK cannot read."""
    ev = dict(POST_EVENTS[5])
    ue = {**orjson.loads(ev["ue_pr"]), "junk": Raw('{"a":' * 900 + "1" + "}" * 900)}
    co = {**orjson.loads(ev["co"]), "more": "junk"}
    good, _ = process(pipeline, {**ev, "ue_pr": render(ue), "co": render(co)})
    [line] = good
    cols = line.decode().split("\t")
    assert set(orjson.loads(cols[INDEX["unstruct_event"]])) == {"schema", "data"}
    assert set(orjson.loads(cols[INDEX["contexts"]])) == {"schema", "data"}
    assert transform(line.decode())["event_name"] == "ad_break_start_event"


def test_regression_messages_over_the_kafka_limit(fuzz: Fuzzer, pipeline: Any) -> None:
    """A bad row or enriched line over Kafka's message size limit (librdkafka
    ``message.max.bytes``) failed at produce time: 503 for a request that could never succeed
    (the tracker retries it for ever). A 1.1 MB query string was copied whole into its
    size_violation row; and with the default LVP_MAX_BODY_BYTES (1 MB) one event close to 1 MB
    makes a line or bad row over the limit. Such a message becomes a size_violation bad row."""

    @seed(SEED)
    @fuzz_settings(1)
    @given(st.just(None))
    def case(_: None) -> None:
        query = b"e=pv&tv=t&p=web&page=" + b"%F0%9F%98%80" * 100_000
        assert fuzz.send("regression3", "GET", "/i", query=query).status == 413

    case()
    fuzz.account("regression3")

    pipe, _ = pipeline
    saved, pipe.max_message_bytes = pipe.max_message_bytes, 70_000
    try:
        good, bad = process(
            pipeline,
            # (the user agent, not the page title: titles are dropped by default, issue #12)
            {**POST_EVENTS[0], "ua": "x" * 80_000},
            {**POST_EVENTS[0], "e": "nope", "ua": "y" * 80_000},
            POST_EVENTS[0],
        )
    finally:
        pipe.max_message_bytes = saved
    assert len(good) == 1
    assert [r["schema"].split("/")[1] for r in bad] == ["size_violation", "size_violation"]
    for row in bad:
        [failure] = row["data"]["failure"]["messages"]
        assert failure["maximumAllowedSizeBytes"] == 70_000 and failure["actualSizeBytes"] > 80_000
        assert row["data"]["payload"]["bodyTruncated"] is True and len(orjson.dumps(row)) < 70_000


def test_regression_consumer_reads_tsv_whose_app_id_starts_with_a_brace() -> None:
    """A valid enriched line with ``app_id`` = ``{...`` was sniffed as JSON and refused."""
    cols = SAMPLE_LINES[5].decode().split("\t")
    cols[INDEX["app_id"]] = '{"x":1}'
    ev = InputDecoder().decode("\t".join(cols).encode())
    assert ev.app_id == '{"x":1}'


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"collector_tstamp": 1e20}, "out of range"),
        ({"collector_tstamp": -5}, "out of range"),
        ({"adsClicked": 1e20}, "session stat adsClicked"),
        ({"adsSkipped": -1}, "session stat adsSkipped"),
    ],
)
def test_regression_consumer_refuses_numbers_the_profile_cannot_hold(
    change: dict[str, Any], message: str
) -> None:
    """A timestamp past year 9999 crashed the engine's ISO formatting (OverflowError) and a
    counter of 1e20 its JSON output (an integer over 64 bits): poison messages."""
    value = orjson.dumps({**ACCELERATOR, **change})
    decoder = InputDecoder()
    with pytest.raises(InputError, match=message) as err:
        decoder.decode(value)
    assert orjson.loads(orjson.dumps(decoder.bad_row(value, err.value)))


def test_regression_consumer_bad_row_of_deep_json() -> None:
    """The bad row of a JSON message nested deeper than orjson writes raised TypeError."""
    value = b'{"event_id":"e","viewer_id":"v","x":' + b"[" * 600 + b"]" * 600 + b"}"
    decoder = InputDecoder()
    with pytest.raises(InputError) as err:
        decoder.decode(value)
    row = decoder.bad_row(value, err.value)
    assert "<withheld>" in orjson.dumps(row).decode()
