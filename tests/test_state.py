"""The status state machine, row by row: every (status, event) cell of the transition table, through
the pure function and through the engine, plus the memory the machine keeps (where an ad break or
a stall returns to) and the README rendering."""

from __future__ import annotations

import pytest

from lvp.events import MEDIA_EVENTS, PAGE_EVENTS, ViewerEvent
from profiles import state as sm
from profiles.engine import ViewerState

# The status after each event, from each status, written out independently of the code. Context:
# watching_ad was entered from watching by ad_break_start, buffering from watching, and the events
# carry no player entity (so `return` goes back to the remembered status).
EXPECTED = """
event                      idle         watching     paused       watching_ad  buffering    ended
page_view                  idle         watching     paused       watching_ad  buffering    ended
page_ping                  idle         watching     paused       watching_ad  buffering    ended
ready                      idle         watching     paused       watching_ad  buffering    idle
play                       watching     watching     watching     watching_ad  watching     watching
pause                      paused       paused       paused       watching_ad  paused       ended
end                        ended        ended        ended        watching_ad  ended        ended
seek_start                 idle         watching     paused       watching_ad  buffering    ended
seek_end                   idle         watching     paused       watching_ad  buffering    ended
playback_rate_change       idle         watching     paused       watching_ad  buffering    ended
volume_change              idle         watching     paused       watching_ad  buffering    ended
fullscreen_change          idle         watching     paused       watching_ad  buffering    ended
picture_in_picture_change  idle         watching     paused       watching_ad  buffering    ended
ping                       idle         watching     paused       watching_ad  buffering    ended
percent_progress           idle         watching     paused       watching_ad  buffering    ended
ad_break_start             watching_ad  watching_ad  watching_ad  watching_ad  watching_ad  watching_ad
ad_break_end               idle         watching     paused       watching     buffering    ended
ad_start                   watching_ad  watching_ad  watching_ad  watching_ad  watching_ad  watching_ad
ad_quartile                idle         watching     paused       watching_ad  buffering    ended
ad_complete                idle         watching     paused       watching_ad  buffering    ended
ad_skip                    idle         watching     paused       watching_ad  buffering    ended
ad_click                   idle         watching     paused       watching_ad  buffering    ended
ad_pause                   idle         watching     paused       watching_ad  buffering    ended
ad_resume                  idle         watching     paused       watching_ad  buffering    ended
buffer_start               buffering    buffering    buffering    watching_ad  buffering    ended
buffer_end                 idle         watching     paused       watching_ad  watching     ended
quality_change             idle         watching     paused       watching_ad  buffering    ended
error                      idle         watching     paused       watching_ad  buffering    ended
"""


def _expected() -> dict[tuple[str, str], str]:
    lines = [ln.split() for ln in EXPECTED.strip().splitlines()]
    header, rows = lines[0][1:], lines[1:]
    assert tuple(header) == sm.STATUSES
    return {(status, row[0]): row[1 + i] for row in rows for i, status in enumerate(header)}


EXPECT = _expected()
CELLS = sorted(EXPECT)

CONTEXT: dict[str, sm.Machine] = {
    "idle": (sm.IDLE, None, False, False),
    "watching": (sm.WATCHING, None, False, False),
    "paused": (sm.PAUSED, None, False, False),
    "watching_ad": (sm.WATCHING_AD, sm.WATCHING, True, False),
    "buffering": (sm.BUFFERING, sm.WATCHING, False, False),
    "ended": (sm.ENDED, None, False, False),
}


def test_expected_table_covers_every_status_and_event() -> None:
    assert {e for _, e in EXPECT} == set(PAGE_EVENTS) | set(MEDIA_EVENTS) == set(sm.EVENTS)
    assert len(EXPECT) == len(sm.STATUSES) * len(sm.EVENTS)
    assert set(sm.TRANSITIONS) == set(EXPECT)


@pytest.mark.parametrize(("status", "event"), CELLS)
def test_transition_row(status: str, event: str) -> None:
    new = sm.transition(CONTEXT[status], event)
    assert new[0] == EXPECT[(status, event)]
    if new[0] != sm.WATCHING_AD:
        assert new[2] is False  # in_break only inside watching_ad
    if new[0] not in (sm.WATCHING_AD, sm.BUFFERING):
        assert new[1] is None  # nothing to return to


# --- the same rows through the engine, driven by real events -------------------------------------
PREFIX: dict[str, list[str]] = {
    "idle": ["page_view"],
    "watching": ["ready", "play"],
    "paused": ["ready", "play", "pause"],
    "watching_ad": ["ready", "play", "ad_break_start"],
    "buffering": ["ready", "play", "buffer_start"],
    "ended": ["ready", "play", "end"],
}


def _event(name: str, i: int) -> ViewerEvent:
    media = name in MEDIA_EVENTS
    return ViewerEvent(
        event_id=f"e{i:04d}",
        name=name,
        viewer_id="v",
        collector_ts=1_700_000_000.0 + i,
        derived_ts=1_700_000_000.0 + i,
        media_session_id="s1" if media else None,
        position_s=float(i) if media else None,
    )


@pytest.mark.parametrize(("status", "event"), CELLS)
def test_engine_row(status: str, event: str) -> None:
    s = ViewerState.new("v")
    names = [*PREFIX[status], event]
    for i, name in enumerate(names):
        assert s.apply(_event(name, i))
        if i == len(names) - 2:
            assert s.status == status
    assert s.status == EXPECT[(status, event)]
    # the history is a chain of changes from idle to the final status
    puts, dels = s.history_changes()
    assert dels == []
    chain = [sm.IDLE] + [h.status for h in puts]
    assert [h.prev_status for h in puts] == chain[:-1]
    assert chain[-1] == s.status
    assert all(h.prev_status != h.status for h in puts)


def test_unknown_event_changes_nothing() -> None:
    for machine in CONTEXT.values():
        assert sm.transition(machine, "struct") == machine
        assert sm.transition(machine, "link_click") == machine


# --- what the machine remembers -------------------------------------------------------------------
def run(
    events: list[str | tuple[str, bool | None, bool | None]], start: sm.Machine = sm.INITIAL
) -> sm.Machine:
    """Fold event names (or (name, paused, ended) with player entity flags) from ``start``."""
    m = start
    for e in events:
        name, paused, ended = (e, None, None) if isinstance(e, str) else e
        m = sm.transition(m, name, paused, ended)
    return m


def test_play_inside_a_break_beats_the_paused_entity_at_break_end() -> None:
    # the real pipeline sample: content paused for the ads, play sent just before ad_break_end
    m = run(
        ["play", "ad_break_start", "ad_start", "pause", "ad_complete", "play", ("ad_break_end", True, False)]
    )
    assert m == (sm.WATCHING, None, False, False)


def test_pause_and_end_inside_a_break() -> None:
    assert run(["play", "ad_break_start", "pause", ("ad_break_end", False, False)])[0] == sm.PAUSED
    assert run(["play", "ad_break_start", "end", ("ad_break_end", False, False)])[0] == sm.ENDED
    assert run(["play", "ad_break_start", "buffer_start", "buffer_end", "ad_break_end"])[0] == sm.WATCHING


def test_break_end_follows_the_player_entity_without_content_events() -> None:
    assert run(["play", "pause", "ad_break_start", ("ad_break_end", True, False)])[0] == sm.PAUSED
    assert run(["play", "pause", "ad_break_start", ("ad_break_end", False, False)])[0] == sm.WATCHING
    assert run(["play", "pause", "ad_break_start", "ad_break_end"])[0] == sm.PAUSED  # no entity: remembered
    assert run(["play", "ad_break_start", ("ad_break_end", None, True)])[0] == sm.ENDED


def test_post_roll_after_end_returns_to_ended() -> None:
    for flags in ((None, None), (True, True), (False, False)):
        m = run(["play", "end", "ad_break_start", "ad_start", "ad_complete", ("ad_break_end", *flags)])
        assert m[0] == sm.ENDED


def test_pre_roll_before_play_returns_to_idle_then_play_watches() -> None:
    m = run(["ready", "ad_break_start", "ad_start", "ad_skip", ("ad_break_end", True, False)])
    assert m[0] == sm.IDLE
    assert run(["play"], m)[0] == sm.WATCHING


def test_break_from_buffering_returns_to_what_the_stall_interrupted() -> None:
    m = run(["play", "pause", "buffer_start", "ad_break_start"])
    assert m == (sm.WATCHING_AD, sm.PAUSED, True, False)
    assert run(["ad_break_end"], m)[0] == sm.PAUSED


def test_second_break_start_keeps_the_return_status() -> None:
    m = run(["play", "pause", "ad_break_start", "play", "ad_break_start"])
    assert m == (sm.WATCHING_AD, sm.WATCHING, True, True)
    assert run(["ad_break_end"], m)[0] == sm.WATCHING


def test_ad_without_a_break_ends_with_the_ad() -> None:
    m = run(["play", "ad_start", "ad_quartile", "pause"])
    assert m == (sm.WATCHING_AD, sm.PAUSED, False, True)
    assert run(["ad_complete"], m)[0] == sm.PAUSED
    assert run(["play", "ad_start", ("ad_skip", False, False)])[0] == sm.WATCHING
    assert run(["play", "ad_start", ("ad_complete", True, False)])[0] == sm.PAUSED
    # an ad_break_start after the ad opens a break: now the break end decides
    assert run(["play", "ad_start", "ad_break_start", "ad_complete"])[0] == sm.WATCHING_AD


def test_stragglers_do_not_reopen_a_finished_break() -> None:
    m = run(["play", "ad_break_start", "ad_start", ("ad_break_end", False, False)])
    assert m[0] == sm.WATCHING
    for late in ("ad_complete", "ad_skip", "ad_quartile", "ad_click", "ad_pause", "ad_resume"):
        assert run([late], m)[0] == sm.WATCHING


def test_buffering_returns_by_entity_or_memory() -> None:
    assert run(["play", "pause", "buffer_start", "buffer_end"])[0] == sm.PAUSED
    assert run(["play", "pause", "buffer_start", ("buffer_end", False, False)])[0] == sm.WATCHING
    assert run(["play", "buffer_start", ("buffer_end", True, False)])[0] == sm.PAUSED
    assert run(["play", "buffer_start", ("buffer_end", True, True)])[0] == sm.ENDED
    assert run(["ready", "buffer_start", ("buffer_end", False, False)])[0] == sm.IDLE


def test_replay_after_end() -> None:
    assert run(["play", "end", "play"])[0] == sm.WATCHING
    assert run(["play", "end", "ready"])[0] == sm.IDLE


@pytest.mark.parametrize(
    ("resume", "explicit", "paused", "ended", "expected"),
    [
        ("paused", True, False, False, "paused"),
        ("watching", True, True, True, "watching"),
        ("ended", False, False, False, "ended"),
        ("idle", False, False, False, "idle"),
        ("watching", False, None, True, "ended"),
        ("watching", False, True, False, "paused"),
        ("paused", False, False, None, "watching"),
        ("paused", False, None, None, "paused"),
        (None, False, None, None, "watching"),
    ],
)
def test_resolve_return(
    resume: str | None, explicit: bool, paused: bool | None, ended: bool | None, expected: str
) -> None:
    assert sm.resolve_return(resume, explicit, paused, ended) == expected


# --- the README table -----------------------------------------------------------------------------
def test_markdown_is_rendered_from_the_table() -> None:
    md = sm.transition_table_markdown()
    lines = md.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[1:] == [f"`{s}`" for s in sm.STATUSES]
    rows = [ln for ln in lines[2:] if ln.startswith("| `")]
    assert [r.split("|")[1].strip().strip("`") for r in rows] == list(sm.EVENTS)
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        event = cells[0].strip("`")
        assert cells[1:] == [sm.cell_text(sm.TABLE[event][s]) for s in sm.STATUSES]
    assert "= (→ watching)" in md and "ad break" in md and "return" in md


def test_module_docstring_carries_the_rendered_table() -> None:
    assert sm.__doc__ is not None
    assert sm.transition_table_markdown() in sm.__doc__


def test_passive_events_are_exactly_the_all_unchanged_rows() -> None:
    for event in sm.EVENTS:
        unchanged = all(EXPECT[(s, event)] == s for s in sm.STATUSES if s != sm.WATCHING_AD)
        if event in sm.PASSIVE_EVENTS:
            assert unchanged
    assert "ping" in sm.PASSIVE_EVENTS and "play" not in sm.PASSIVE_EVENTS
