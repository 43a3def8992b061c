"""Golden stored states: what :meth:`ViewerState.dump` wrote, per state version, and what the
engine must make of it.

Each scenario below scripts one viewer (enriched TSV lines from :mod:`enriched_factory`, the real
pipeline sample) up to a moment — watching, paused, in an ad break, buffering, ended, with events
pending inside the reorder window, returned after an erasure — and one next event. A fixture
(``tests/fixtures/states/v<N>/<name>.json``) keeps the exact ``state`` string, the profile it
gives, the next event and the profile and history changes after applying it. Fixtures of every
released version stay in the repository: ``tests/test_state_format.py`` loads each with the
current code and checks the same results. After a format change (a new ``STATE_VERSION``), write
the new version's fixtures with::

    .venv/bin/python tests/state_fixtures.py

(it refuses to overwrite an existing version's directory: a released format never changes).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from enriched_factory import MOBILE_UA, Ad, MediaSessionBuilder, full_session

from lvp.events import ViewerEvent, from_tsv_line
from profiles.engine import STATE_VERSION, HistoryEntry, ViewerState

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures" / "states"
SAMPLE = HERE / "fixtures" / "snowplow-enriched-sample.tsv"
START_MS = 1_733_000_000_000
WINDOW_S = 10.0


@dataclass
class Scenario:
    """``lines`` applied in this order (``reads``: indexes after which the consumer read the
    profile and drained the history), the state dumped, then ``next_line`` applied."""

    name: str
    about: str
    lines: list[str]
    next_line: str
    reads: set[int] = field(default_factory=set)
    erased_at_ms: int | None = None


def _lines(b: MediaSessionBuilder) -> list[str]:
    return [line for _key, line in b.lines()]


def _watching() -> Scenario:
    b = MediaSessionBuilder("fx-watching", START_MS, seed=1)
    b.page_view().wait(1).ready().wait(0.5).play()
    for _ in range(4):
        b.wait(30).ping()
    b.wait(3).volume_change(60).wait(2).fullscreen_change(True).wait(1).ping()
    lines = _lines(b)
    b.wait(30).ping()
    return Scenario("watching", "playing, pings, settings changed within the window", lines,
                    _lines(b)[-1], reads=set(range(0, len(lines), 2)))  # fmt: skip


def _paused() -> Scenario:
    b = MediaSessionBuilder("fx-paused", START_MS, seed=2, useragent=MOBILE_UA)
    b.page_view().wait(1).play().wait(30).ping().wait(12).seek(200).wait(4).pause().wait(2)
    b.percent_progress(50)
    lines = _lines(b)
    b.wait(5).play()
    return Scenario("paused", "mobile viewer paused after a seek; the play comes next", lines,
                    _lines(b)[-1], reads={0, 2, 4})  # fmt: skip


def _ad_break() -> Scenario:
    b = MediaSessionBuilder("fx-ad", START_MS, seed=3)
    b.page_view().wait(1).ready().wait(1).play().wait(20).ping().wait(5)
    b.ad_break_start("mid-1").ad_start(Ad("ad-1", duration_s=15))
    b.wait(4).ad_click().wait(2).ad_pause().wait(1).ad_resume()
    lines = _lines(b)
    b.wait(3).ad_quartile(50)
    return Scenario("ad_break", "inside a mid-roll, the ad clicked, paused and resumed", lines,
                    _lines(b)[-1], reads={3})  # fmt: skip


def _buffering() -> Scenario:
    b = MediaSessionBuilder("fx-buffering", START_MS, seed=4)
    b.page_view().wait(1).play().wait(25).ping().wait(6).rate(1.5).wait(2).quality_change("480p")
    b.buffering = True
    b.event("buffer_start")
    lines = _lines(b)
    b.wait(3)
    b.buffering = False
    b.event("buffer_end")
    return Scenario("buffering", "stalled; undrained history; the buffer end comes next", lines,
                    _lines(b)[-1])  # fmt: skip


def _ended() -> Scenario:
    b = full_session("fx-ended", START_MS, seed=5)
    lines = _lines(b)
    b.wait(40).page_ping()
    return Scenario("ended", "a complete session (pre-roll, mid-roll, error, end)", lines,
                    _lines(b)[-1], reads=set(range(0, len(lines), 5)))  # fmt: skip


def _late() -> Scenario:
    """Delivered out of order: a POST reversed, and the next event is late (inside the window),
    so applying it folds the pending events again and rewrites the history."""
    b = MediaSessionBuilder("fx-late", START_MS, seed=6)
    b.page_view().wait(1).ready().wait(1).play().wait(30).ping().wait(2).pause().wait(1).play()
    b.wait(1).pause().wait(1.5).play().wait(1).ping()
    lines = _lines(b)
    late = lines.pop(-4)  # the second pause: arrives after everything else
    lines[-3:] = reversed(lines[-3:])
    return Scenario("late_in_window", "events pending in the window, one of them still to come",
                    lines, late, reads={2, len(lines) - 2})  # fmt: skip


def _erased() -> Scenario:
    """A viewer erased mid-session who came back: the consumer dropped their events up to the
    erasure time, the stored item keeps ``erased_at_ms`` next to the new state."""
    b = MediaSessionBuilder("fx-erased", START_MS, seed=7)
    b.page_view().wait(1).play().wait(30).ping().wait(30).ping()
    cut = b.t_ms + 1000
    b.wait(20).page_view().wait(1).ready().wait(1).play().wait(8).ping().wait(3).pause()
    lines = [ln for ln in _lines(b) if from_tsv_line(ln).collector_ts * 1000 > cut]
    b.wait(4).play()
    return Scenario("erased", "returned after an erasure (erased_at_ms)", lines, _lines(b)[-1],
                    reads={1}, erased_at_ms=cut)  # fmt: skip


def _two_sessions() -> Scenario:
    """An ended media session, then a new one on the same page (session totals summed)."""
    a = MediaSessionBuilder("fx-sessions", START_MS, seed=8, duration_s=40.0)
    a.page_view().wait(1).play().wait(30).ping().wait(10).end()
    b = MediaSessionBuilder("fx-sessions", a.t_ms + 5000, seed=9, label="Sintel")
    b.ready().wait(1).play().wait(4).ping()
    lines = _lines(a) + _lines(b)
    b.wait(2).pause()
    return Scenario("two_sessions", "second media session after an ended one", lines,
                    _lines(b)[-1], reads={4})  # fmt: skip


def _sample() -> Scenario:
    """The real Snowplow pipeline sample (its delivery order), cut after 60 events."""
    lines = [ln for ln in SAMPLE.read_text().splitlines() if ln.strip()]
    return Scenario("pipeline_sample", "real Snowplow sample, first 60 events as delivered",
                    lines[:60], lines[60], reads=set(range(0, 60, 7)))  # fmt: skip


SCENARIOS: tuple[Callable[[], Scenario], ...] = (
    _watching, _paused, _ad_break, _buffering, _ended, _late, _erased, _two_sessions, _sample,
)  # fmt: skip


def _items(puts: list[HistoryEntry]) -> list[dict[str, str]]:
    return [h.item() for h in puts]


def run(sc: Scenario, state: ViewerState | None = None) -> dict[str, Any]:
    """Play ``sc`` on a fresh engine (or continue ``state``, a loaded dump); the fixture."""
    events: list[ViewerEvent] = [from_tsv_line(ln) for ln in sc.lines]
    vid = events[0].viewer_id
    s = ViewerState.new(vid, WINDOW_S)
    for i, e in enumerate(events):
        s.apply(e)
        if i in sc.reads:
            s.profile()
            s.history_changes()
    state_str = s.dump()
    doc: dict[str, Any] = {"version": STATE_VERSION, "scenario": sc.name, "about": sc.about}
    doc.update(viewer_id=vid, window_s=WINDOW_S, erased_at_ms=sc.erased_at_ms, state=state_str)
    doc["profile"] = s.profile()
    doc.update(after_next(s, sc.next_line))
    return doc


def after_next(s: ViewerState, next_line: str) -> dict[str, Any]:
    """Apply the next event to ``s``: what a fixture records of the result."""
    applied = s.apply(from_tsv_line(next_line))
    puts, dels = s.history_changes()
    return {
        "next_line": next_line,
        "next_applied": applied,
        "next_profile": s.profile(),
        "next_history_puts": _items(puts),
        "next_history_deletes": dels,
    }


def write(version_dir: Path) -> list[Path]:
    if version_dir.exists():
        raise SystemExit(f"{version_dir} exists: a released state format never changes")
    version_dir.mkdir(parents=True)
    out = []
    for make in SCENARIOS:
        sc = make()
        path = version_dir / f"{sc.name}.json"
        path.write_bytes(orjson.dumps(run(sc), option=orjson.OPT_INDENT_2) + b"\n")
        out.append(path)
    return out


def main() -> int:
    for p in write(FIXTURES / f"v{STATE_VERSION}"):
        print(p.relative_to(HERE.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
