"""The stored ``state`` format is versioned: every released version's golden states
(``tests/fixtures/states/v*/``, written by ``tests/state_fixtures.py``) load with the current code,
give the profile they gave when written and react to the next event the same way; anything else
raises :class:`UnreadableState` instead of starting the viewer afresh."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from state_fixtures import FIXTURES, SCENARIOS, after_next, run

from profiles.engine import STATE_VERSION, UnreadableState, ViewerState

GOLDEN = sorted(FIXTURES.glob("v*/*.json"))


def _load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(path.read_bytes())
    return doc


def test_every_released_version_has_golden_states() -> None:
    versions = {int(p.parent.name[1:]) for p in GOLDEN}
    assert versions == set(range(1, STATE_VERSION + 1))
    names = {make().name for make in SCENARIOS}
    for v in versions:
        assert {p.stem for p in GOLDEN if p.parent.name == f"v{v}"} == names


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_golden_state_loads_and_continues_as_before(path: Path) -> None:
    fx = _load(path)
    assert orjson.loads(fx["state"])["v"] == fx["version"] == int(path.parent.name[1:])
    s = ViewerState.load(fx["viewer_id"], fx["state"], fx["window_s"])
    assert s.profile() == fx["profile"]
    assert after_next(s, fx["next_line"]) == {k: v for k, v in fx.items() if k.startswith("next_")}


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_golden_state_survives_a_dump_in_the_current_format(path: Path) -> None:
    fx = _load(path)
    s = ViewerState.load(fx["viewer_id"], fx["state"], fx["window_s"])
    state = s.dump()
    assert orjson.loads(state)["v"] == STATE_VERSION
    again = ViewerState.load(fx["viewer_id"], state, fx["window_s"])
    assert again.profile() == fx["profile"]
    assert after_next(again, fx["next_line"])["next_profile"] == fx["next_profile"]


def test_current_code_writes_the_current_golden_states() -> None:
    """The scenarios played now give exactly the current version's fixtures (so a format change
    without a version bump fails here)."""
    for make in SCENARIOS:
        sc = make()
        assert run(sc) == _load(FIXTURES / f"v{STATE_VERSION}" / f"{sc.name}.json"), sc.name


def test_unknown_version_or_garbage_is_unreadable() -> None:
    fx = _load(FIXTURES / f"v{STATE_VERSION}" / "watching.json")
    good = fx["state"]
    doc = orjson.loads(good)
    bad_states: list[str | bytes] = [
        orjson.dumps({**doc, "v": STATE_VERSION + 1}),
        orjson.dumps({**doc, "v": 0}),
        orjson.dumps({**doc, "v": "1"}),
        orjson.dumps({k: v for k, v in doc.items() if k != "v"}),
        good[: len(good) // 2],  # truncated
        b"\xff\xfe not utf-8",
        "",
        "null",
        "[1]",
        orjson.dumps({**doc, "s": [1, 2, 3]}),
        orjson.dumps({**doc, "p": [["x"]]}),
    ]
    for bad in bad_states:
        with pytest.raises(UnreadableState):
            ViewerState.load("v", bad)
    assert issubclass(UnreadableState, ValueError)  # callers catching ValueError still do


def test_no_user_agent_is_stored_only_its_device_class() -> None:
    """Issue #12: the stored state (and the compacted engine) keep the device class, never the
    raw user agent; a v1 state holding one is converted on load."""
    from enriched_factory import MOBILE_UA, full_session

    from lvp.events import from_tsv_line

    s = ViewerState.new("v-ua")
    for _key, line in full_session("v-ua", 1_733_000_000_000, useragent=MOBILE_UA).lines():
        s.apply(from_tsv_line(line))
    s.history_changes()
    s.compact()
    assert s._packed is not None and b"Mozilla" not in s._packed  # compact() packed it: settle()
    state = s.dump()
    assert "Mozilla" not in state and "iPhone" not in state
    assert s.profile()["device_class"] == "mobile"
    s.apply(from_tsv_line(full_session("v-ua", 1_733_000_200_000, useragent=MOBILE_UA).lines()[0][1]))
    assert s._pending and all("Mozilla" not in str(row) for row in s._pending)  # in memory: rows
    v1 = _load(FIXTURES / "v1" / "paused.json")
    assert "iPhone" in v1["state"]
    converted = ViewerState.load(v1["viewer_id"], v1["state"])
    assert "iPhone" not in converted.dump() and converted.profile()["device_class"] == "mobile"
