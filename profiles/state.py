"""The viewer status state machine: one transition table over every media (and page) event.

A viewer's status is one of ``idle`` (seen, not yet playing: page view, ready), ``watching``,
``paused``, ``watching_ad``, ``buffering``, ``ended``. Next to the status the machine remembers
three things, because an ad break or a stall must return somewhere:

* ``resume`` — the content status to return to after the ad break / the stall;
* ``in_break`` — ``watching_ad`` was entered by ``ad_break_start`` (else by a bare ``ad_start``);
* ``explicit`` — a content ``play`` / ``pause`` / ``end`` happened *inside* the break, so it
  decides where the break returns to (it beats the player entity, whose ``paused`` flag on
  ``ad_break_end`` still describes the content player as it was during the ads).

:data:`TABLE` (``event -> {status -> rule}``) and its flat form :data:`TRANSITIONS`
(``(status, event) -> rule``) hold the rules; events not in it (structured events, other
self-describing events) leave everything unchanged. :func:`transition_table_markdown` renders
the table below from :data:`TABLE` itself (a test checks this docstring against it), so the
README and the code cannot drift. Rows are events, columns the current status:

| event | `idle` | `watching` | `paused` | `watching_ad` | `buffering` | `ended` |
| --- | --- | --- | --- | --- | --- | --- |
| `page_view` | = | = | = | = | = | = |
| `page_ping` | = | = | = | = | = | = |
| `ready` | idle | = | = | = | = | idle |
| `play` | watching | watching | watching | = (→ watching) | watching | watching |
| `pause` | paused | paused | paused | = (→ paused) | paused | = |
| `end` | ended | ended | ended | = (→ ended) | ended | ended |
| `seek_start` | = | = | = | = | = | = |
| `seek_end` | = | = | = | = | = | = |
| `playback_rate_change` | = | = | = | = | = | = |
| `volume_change` | = | = | = | = | = | = |
| `fullscreen_change` | = | = | = | = | = | = |
| `picture_in_picture_change` | = | = | = | = | = | = |
| `ping` | = | = | = | = | = | = |
| `percent_progress` | = | = | = | = | = | = |
| `ad_break_start` | ad break | ad break | ad break | ad break | ad break | ad break |
| `ad_break_end` | = | = | = | return | = | = |
| `ad_start` | ad | ad | ad | = | ad | ad |
| `ad_quartile` | = | = | = | = | = | = |
| `ad_complete` | = | = | = | ad over | = | = |
| `ad_skip` | = | = | = | ad over | = | = |
| `ad_click` | = | = | = | = | = | = |
| `ad_pause` | = | = | = | = | = | = |
| `ad_resume` | = | = | = | = | = | = |
| `buffer_start` | buffering | buffering | buffering | = | = | = |
| `buffer_end` | = | = | = | = | return | = |
| `quality_change` | = | = | = | = | = | = |
| `error` | = | = | = | = | = | = |

- `=`: unchanged. A status name: go there.
- `buffering`: go to `buffering`, remembering the status to return to.
- `ad break`: `watching_ad`, remembering the content status to return to (from `watching_ad`:
  stays, still returning where the first start said).
- `ad`: an ad without an ad break: `watching_ad` until the ad is over.
- `= (→ X)`: stays `watching_ad`; the content did X inside the break, so the break returns to X.
- `return`: leave for the return status: a content play / pause / end inside the break wins;
  else ended content stays `ended` and content that never started stays `idle`; else the
  player entity on the event (`ended` → `ended`, `paused` → `paused`, playing → `watching`);
  else the remembered status.
- `ad over`: inside an ad break stays `watching_ad` (`ad_break_end` ends it); after an ad
  without a break, `return`.
- Any other event: `=`. An event with a new `media_session_id` restarts the machine from
  `idle` before its own rule applies (a new media session leaves `ended`).

Choices worth knowing:

* ``pause`` and ``buffer_start`` after ``end`` leave the viewer ``ended`` (HTML5 fires ``pause``
  right before ``ended``; a stall after the end is not watching). ``play`` after ``end`` is a
  replay.
* Ad events other than ``ad_start`` / ``ad_break_start`` (quartiles, clicks, ``ad_pause``,
  ``ad_resume``, a late ``ad_complete``) never *enter* ``watching_ad``: a straggler sorted just
  after ``ad_break_end`` must not reopen the break.
* ``error`` (counted, ``last_error`` shown), seeks (``seeks`` counts ``seek_end``), rate /
  volume / fullscreen / picture-in-picture / quality changes, ``ping`` and ``percent_progress``
  never change the status.

This module is pure: no I/O, no clock.
"""

from __future__ import annotations

from typing import Final

from lvp.events import MEDIA_EVENTS, PAGE_EVENTS

IDLE: Final = "idle"
WATCHING: Final = "watching"
PAUSED: Final = "paused"
WATCHING_AD: Final = "watching_ad"
BUFFERING: Final = "buffering"
ENDED: Final = "ended"

STATUSES: tuple[str, ...] = (IDLE, WATCHING, PAUSED, WATCHING_AD, BUFFERING, ENDED)

# --- rules ---------------------------------------------------------------------------------------
SAME: Final = "="
BREAK: Final = "break"
AD: Final = "ad"
RETURN: Final = "return"
AD_OVER: Final = "ad_over"
HOLD_WATCHING: Final = "hold:watching"
HOLD_PAUSED: Final = "hold:paused"
HOLD_ENDED: Final = "hold:ended"

#: Every rule a table cell may hold (status names go to that status).
RULES: tuple[str, ...] = (
    IDLE, WATCHING, PAUSED, ENDED, BUFFERING, SAME, BREAK, AD, RETURN, AD_OVER,
    HOLD_WATCHING, HOLD_PAUSED, HOLD_ENDED,
)  # fmt: skip

_HOLD: Final[dict[str, str]] = {HOLD_WATCHING: WATCHING, HOLD_PAUSED: PAUSED, HOLD_ENDED: ENDED}
_GOTO: Final = frozenset((IDLE, WATCHING, PAUSED, ENDED))

#: Every event the table covers, in README order: page events, then the media plugin's events.
EVENTS: tuple[str, ...] = PAGE_EVENTS + MEDIA_EVENTS


def _row(default: str, **cells: str) -> dict[str, str]:
    unknown = set(cells) - set(STATUSES)
    if unknown:
        raise ValueError(f"unknown statuses {sorted(unknown)}")
    return {s: cells.get(s, default) for s in STATUSES}


_UNCHANGED = _row(SAME)

#: event -> {status -> rule}: the table, one row per event (columns = current status).
TABLE: dict[str, dict[str, str]] = {
    "page_view": _UNCHANGED,
    "page_ping": _UNCHANGED,
    "ready": _row(SAME, idle=IDLE, ended=IDLE),
    "play": _row(WATCHING, watching_ad=HOLD_WATCHING),
    "pause": _row(PAUSED, watching_ad=HOLD_PAUSED, ended=SAME),
    "end": _row(ENDED, watching_ad=HOLD_ENDED),
    "seek_start": _UNCHANGED,
    "seek_end": _UNCHANGED,
    "playback_rate_change": _UNCHANGED,
    "volume_change": _UNCHANGED,
    "fullscreen_change": _UNCHANGED,
    "picture_in_picture_change": _UNCHANGED,
    "ping": _UNCHANGED,
    "percent_progress": _UNCHANGED,
    "ad_break_start": _row(BREAK),
    "ad_break_end": _row(SAME, watching_ad=RETURN),
    "ad_start": _row(AD, watching_ad=SAME),
    "ad_quartile": _UNCHANGED,
    "ad_complete": _row(SAME, watching_ad=AD_OVER),
    "ad_skip": _row(SAME, watching_ad=AD_OVER),
    "ad_click": _UNCHANGED,
    "ad_pause": _UNCHANGED,
    "ad_resume": _UNCHANGED,
    "buffer_start": _row(BUFFERING, watching_ad=SAME, buffering=SAME, ended=SAME),
    "buffer_end": _row(SAME, buffering=RETURN),
    "quality_change": _UNCHANGED,
    "error": _UNCHANGED,
}

#: The same table flattened: ``(status, event) -> rule`` for every status and every event.
TRANSITIONS: dict[tuple[str, str], str] = {
    (status, event): rules[status] for event, rules in TABLE.items() for status in STATUSES
}

# Events whose rule is SAME from every status: the engine skips the machine for them.
PASSIVE_EVENTS: frozenset[str] = frozenset(e for e, r in TABLE.items() if all(v == SAME for v in r.values()))

#: A machine: (status, resume, in_break, explicit).
Machine = tuple[str, str | None, bool, bool]

INITIAL: Machine = (IDLE, None, False, False)


def resolve_return(resume: str | None, explicit: bool, paused: bool | None, ended: bool | None) -> str:
    """Where a finished ad break / ad / stall returns to (the ``return`` rule)."""
    if explicit and resume is not None:
        return resume
    if resume in (ENDED, IDLE):
        return resume
    if ended:
        return ENDED
    if paused is True:
        return PAUSED
    if paused is False:
        return WATCHING
    return resume or WATCHING


def _content(status: str, resume: str | None) -> str:
    """The content status behind ``status`` (a stall returns to what it interrupted)."""
    if status in (BUFFERING, WATCHING_AD):
        return resume or WATCHING
    return status


def transition(
    machine: Machine, event: str, paused: bool | None = None, ended: bool | None = None
) -> Machine:
    """The machine after ``event``; ``paused`` / ``ended`` are the player entity's flags (or None)."""
    status, resume, in_break, explicit = machine
    rule = TRANSITIONS.get((status, event), SAME)
    if rule == SAME:
        return machine
    if rule in _GOTO:
        return (rule, None, False, False)
    if rule == BUFFERING:
        return (BUFFERING, status, False, False)
    if rule == BREAK:
        if status == WATCHING_AD:
            return (WATCHING_AD, resume, True, explicit)
        return (WATCHING_AD, _content(status, resume), True, False)
    if rule == AD:
        return (WATCHING_AD, _content(status, resume), False, False)
    hold = _HOLD.get(rule)
    if hold is not None:
        return (WATCHING_AD, hold, in_break, True)
    if rule == AD_OVER and in_break:
        return machine
    # RETURN, or AD_OVER after an ad without a break
    return (resolve_return(resume, explicit, paused, ended), None, False, False)


# --- documentation -------------------------------------------------------------------------------
_CELL: Final[dict[str, str]] = {
    SAME: "=",
    BUFFERING: "buffering",
    BREAK: "ad break",
    AD: "ad",
    RETURN: "return",
    AD_OVER: "ad over",
    HOLD_WATCHING: "= (→ watching)",
    HOLD_PAUSED: "= (→ paused)",
    HOLD_ENDED: "= (→ ended)",
}

LEGEND: tuple[str, ...] = (
    "- `=`: unchanged. A status name: go there.",
    "- `buffering`: go to `buffering`, remembering the status to return to.",
    "- `ad break`: `watching_ad`, remembering the content status to return to (from `watching_ad`:",
    "  stays, still returning where the first start said).",
    "- `ad`: an ad without an ad break: `watching_ad` until the ad is over.",
    "- `= (→ X)`: stays `watching_ad`; the content did X inside the break, so the break returns to X.",
    "- `return`: leave for the return status: a content play / pause / end inside the break wins;",
    "  else ended content stays `ended` and content that never started stays `idle`; else the",
    "  player entity on the event (`ended` → `ended`, `paused` → `paused`, playing → `watching`);",
    "  else the remembered status.",
    "- `ad over`: inside an ad break stays `watching_ad` (`ad_break_end` ends it); after an ad",
    "  without a break, `return`.",
    "- Any other event: `=`. An event with a new `media_session_id` restarts the machine from",
    "  `idle` before its own rule applies (a new media session leaves `ended`).",
)


def cell_text(rule: str) -> str:
    """How a rule is written in the README table."""
    return _CELL.get(rule, rule)


def transition_table_markdown() -> str:
    """The full transition table as Markdown (rows = events, columns = current status), with its
    legend. The module docstring carries the same text (a test keeps them equal)."""
    lines = [
        "| event | " + " | ".join(f"`{s}`" for s in STATUSES) + " |",
        "| --- |" + " --- |" * len(STATUSES),
    ]
    for event in EVENTS:
        rules = TABLE[event]
        lines.append(f"| `{event}` | " + " | ".join(cell_text(rules[s]) for s in STATUSES) + " |")
    lines.append("")
    lines.extend(LEGEND)
    return "\n".join(lines)


def _check_table() -> None:
    missing = set(EVENTS) - set(TABLE)
    extra = set(TABLE) - set(EVENTS)
    if missing or extra:
        raise AssertionError(f"table rows differ from the event list: missing {missing}, extra {extra}")
    for event, rules in TABLE.items():
        for status, rule in rules.items():
            if rule not in RULES:
                raise AssertionError(f"bad rule {rule!r} for ({status}, {event})")


_check_table()
