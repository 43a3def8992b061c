"""The whole product in Debian's Chromium: the demo player (tracker-frontend/, real Snowplow
tracker + media plugin) -> the REAL collector -> Tansu -> the REAL profiles consumer -> DynamoDB
Local + changes topic -> the REAL viewer app, whose live page is open in a second browser page.

One viewer plays through the pre-roll (clicks ad 1, skips ad 2), pauses, seeks, resumes, sits
through the mid-roll and reaches the end. Each status the player goes through must show up on the
live page while the player is in it (polled with deadlines, nothing timed), the row must go away
once the viewer ended, the collector must have accepted every event (no bad rows), and the
profile stored in DynamoDB must carry the counters of what was done. Screenshots of both pages go
to test-output/e2e-player-*.png and test-output/e2e-live-*.png.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from collector_server import read_topic, serve_collector
from support.chromium import CHROMIUM, CHROMIUM_ARGS
from support.profiles import consumer_thread, pipeline_settings
from support.viewer import serve_in_thread

from lvp.config import Settings
from lvp.local.tracker_site import create_app as create_tracker_site
from lvp.pseudonym import pseudonymize
from profiles.store import ProfileStore
from viewer.app import create_app as create_viewer

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
FRONTEND = ROOT / "tracker-frontend"
DIST = FRONTEND / "dist"
TOKEN = "e2e-token"
APP_ID = "e2e-player"
#: how long a status may take from the player's click to the live page (a deadline, not a check)
LIVE_DEADLINE_S = 8.0
PLAYER = "document.getElementById('player').dataset"

# Records every status the viewer's row shows on the live page, in order ("-" = no row), so the
# test sees transitions even between two polls.
OBSERVE_ROW = """vid => {
  window.__seen = [];
  const look = () => {
    const row = document.querySelector(`#rows tr[data-viewer="${vid}"]`);
    const status = row ? row.getAttribute("data-status") : "-";
    if (window.__seen[window.__seen.length - 1] !== status) window.__seen.push(status);
  };
  new MutationObserver(look).observe(document.getElementById("rows"),
    {subtree: true, childList: true, attributes: true, attributeFilter: ["data-status"]});
  look();
}"""


def _built_dist() -> Path:
    """The built player page; built here (npm ci + npm run build) when missing or stale."""
    index = DIST / "index.html"
    sources = [*FRONTEND.joinpath("src").iterdir(), FRONTEND / "build.mjs", FRONTEND / "package-lock.json"]
    if index.is_file() and all(p.stat().st_mtime <= index.stat().st_mtime for p in sources):
        return DIST
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is needed to build tracker-frontend (run `make setup`)")
    if not (FRONTEND / "node_modules" / ".package-lock.json").is_file():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=FRONTEND, check=True, timeout=300)
    subprocess.run([npm, "run", "build"], cwd=FRONTEND, check=True, timeout=300)
    return DIST


def wait_until(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out ({timeout}s) waiting for {what}")
        time.sleep(0.05)


def collector_events(collector_url: str) -> dict[str, float]:
    """``lvp_collector_events_total`` by outcome from the collector's /metrics."""
    out: dict[str, float] = {}
    for line in httpx.get(collector_url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("lvp_collector_events_total{"):
            labels, _, value = line.rpartition(" ")
            outcome = labels.split('outcome="', 1)[1].split('"', 1)[0]
            out[outcome] = out.get(outcome, 0.0) + float(value)
    return out


@pytest.fixture
def settings(make_settings: Callable[..., Settings], dynamodb_local: str) -> Settings:
    return pipeline_settings(make_settings, dynamodb_local, TOKEN)


@pytest.fixture
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `make setup-system`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            yield b
        finally:
            b.close()


class LivePage:
    """The viewer app's live page, watching one viewer's row."""

    def __init__(self, page: Any, out: Path) -> None:
        self.page = page
        self.out = out
        self.vid = ""

    def login(self, base: str) -> None:
        self.page.goto(base + "/")
        self.page.locator("#login:not([hidden])").wait_for()
        self.page.fill("#token", TOKEN)
        self.page.click("#login-btn")
        wait_until(
            lambda: self.page.get_attribute("#conn", "data-state") == "live", 15, "the live page to connect"
        )

    def follow(self, vid: str) -> None:
        self.vid = vid
        self.page.evaluate(OBSERVE_ROW, vid)

    def status(self) -> str | None:
        """The row's status, or None without a row (read in one step: rows come and go)."""
        return self.page.evaluate(  # type: ignore[no-any-return]
            'vid => document.querySelector(`#rows tr[data-viewer="${vid}"]`)?.dataset.status ?? null',
            self.vid,
        )

    def seeks(self) -> str | None:
        """The row's "Seeks" cell (numeric cells: plays, pauses, seeks, ads, buffers, errors)."""
        return self.page.evaluate(  # type: ignore[no-any-return]
            'vid => document.querySelectorAll(`#rows tr[data-viewer="${vid}"] td.num`)[2]?.textContent ?? null',
            self.vid,
        )

    def wait_status(self, status: str | None, what: str) -> None:
        wait_until(lambda: self.status() == status, LIVE_DEADLINE_S, f"the live page to show {what}")

    def seen(self) -> list[str]:
        return list(self.page.evaluate("window.__seen"))

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.out / f"e2e-live-{name}.png"), full_page=True)


def test_player_to_live_page_and_profile(settings: Settings, browser: Any, output_dir: Path) -> None:
    dist = _built_dist()
    with ExitStack() as stack:
        collector = stack.enter_context(serve_collector(settings))
        stack.enter_context(consumer_thread(settings))
        viewer_url = stack.enter_context(serve_in_thread(create_viewer(settings, push_interval_s=0.1)))
        site = stack.enter_context(
            serve_in_thread(create_tracker_site(dist, collector.url, APP_ID, live_url=viewer_url + "/"))
        )
        live_context = browser.new_context(viewport={"width": 1480, "height": 900})
        player_context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
        # pages close before the servers stop (an open event stream would hold the viewer app up)
        stack.callback(live_context.close)
        stack.callback(player_context.close)
        live = LivePage(live_context.new_page(), output_dir)
        player = player_context.new_page()
        errors: list[str] = []
        for p in (live.page, player):
            p.on("pageerror", lambda exc: errors.append(str(exc)))
        live.login(viewer_url)

        def pshot(name: str) -> None:
            player.screenshot(path=str(output_dir / f"e2e-player-{name}.png"))

        # --- the player opens: a page view and `ready` (status idle) ------------------------------
        player.goto(site + "/")
        player.wait_for_function(
            f"document.body.dataset.trackerReady === 'true' && {PLAYER}.ready === 'true'"
        )
        duid = player.text_content("#viewer-id") or ""
        assert duid and duid == player.evaluate("document.body.dataset.duid")
        vid = pseudonymize(duid, settings.pseudonym_key.encode())
        live.follow(vid)
        assert player.get_attribute("#live-link", "href") == viewer_url + "/"

        # --- pre-roll: ad 1 is clicked (click-through overlay), ad 2 is skipped ---------------------
        player.click("#start")
        player.wait_for_function(f"{PLAYER}.ad === '1/2' && {PLAYER}.playing === 'true'")
        live.wait_status("watching_ad", "the pre-roll")
        live.shot("1-watching-ad")
        player.click("#ad-click-area")  # ad_click + ad_pause
        player.wait_for_selector("#click-through", state="visible")
        pshot("1-click-through")
        player.click("#close-click-through")  # ad_resume
        player.eval_on_selector("#ad-video", "v => { v.playbackRate = 8; }")  # quartiles, ad_complete
        player.wait_for_function(f"{PLAYER}.ad === '2/2'")
        player.eval_on_selector("#ad-video", "v => { v.currentTime = 5.2; }")
        player.wait_for_selector("#skip-ad:not([disabled])")
        pshot("2-skip")
        player.click("#skip-ad")  # ad_skip, ad_break_end, play

        # --- content, pause, seek while paused, resume ------------------------------------------
        player.wait_for_function(f"{PLAYER}.state === 'playing'")
        live.wait_status("watching", "the content playing")
        live.shot("2-watching")
        player.click("#play-pause")  # pause
        player.wait_for_function(f"{PLAYER}.state === 'paused'")
        live.wait_status("paused", "the pause")
        box = player.locator("#progress").bounding_box()
        player.mouse.click(box["x"] + box["width"] * 0.2, box["y"] + box["height"] / 2)  # seek to ~4.8 s
        player.wait_for_function("Math.abs(document.getElementById('content-video').currentTime - 4.8) < 0.5")
        # the media plugin holds seek events back until the seek settles (flushTimeoutMs 1.5 s)
        player.wait_for_selector('#event-log li[data-event="seek_end"]', state="attached")
        wait_until(lambda: live.seeks() == "1", LIVE_DEADLINE_S, "the seek on the live page")
        assert live.status() == "paused"  # a seek while paused keeps the viewer paused
        pshot("3-paused-after-seek")
        live.shot("3-paused-after-seek")
        player.click("#play-pause")  # play (resume at ~4.8 s; the mid-roll is at 12 s)
        player.wait_for_function(f"{PLAYER}.state === 'playing'")
        live.wait_status("watching", "the resumed content")

        # --- faster to the mid-roll and the end --------------------------------------------------
        player.eval_on_selector("#content-video", "v => { v.playbackRate = 4; }")
        player.wait_for_function(f"{PLAYER}.ad === '1/1'", timeout=15_000)
        player.eval_on_selector("#ad-video", "v => { v.playbackRate = 8; }")
        player.wait_for_function(f"{PLAYER}.state === 'ended'", timeout=20_000)
        pshot("4-ended")
        live.wait_status(None, "the ended viewer's row gone")
        live.shot("4-ended")

        # --- the collector accepted everything the page sent --------------------------------------
        wait_until(
            lambda: (
                collector_events(collector.url).get("good") == int(player.text_content("#event-count") or 0)
            ),
            10,
            "the page's accepted count to match the collector's",
        )
        assert player.get_attribute("#collector-status", "data-ok") == "true"
        logged = player.eval_on_selector_all(
            "#event-log li[data-event]", "els => els.map(e => e.dataset.event)"
        )
        for name in ("ad_break_start", "ad_click", "ad_skip", "play", "pause", "seek_end", "end"):
            assert name in logged, (name, logged)
        shown = int(player.text_content("#event-count") or 0)
        player_context.close()  # no more pings: the counts below are final

        # --- the profile in DynamoDB ----------------------------------------------------------
        store = ProfileStore(settings)
        try:

            def final() -> tuple[dict[str, Any], dict[str, float]] | None:
                counts = collector_events(collector.url)
                p = store.get_profile(vid)
                if p and p["status"] == "ended" and p["events"] == counts.get("good"):
                    return p, counts
                return None

            profile, counts = wait_until(final, 15, "the final profile in DynamoDB")
        finally:
            store.close()
        assert counts.get("bad", 0) == 0 and counts["good"] >= shown, counts
        seen = live.seen()
        assert errors == [], errors

    # everything on the good topic is this viewer's, keyed by its pseudonym; nothing went bad
    good = read_topic(settings.kafka_bootstrap_servers, settings.topic_good, int(counts["good"]))
    assert len(good) == counts["good"] and {k for k, _ in good} == {vid.encode()}
    assert duid.encode() not in b"".join(v for _, v in good)
    assert read_topic(settings.kafka_bootstrap_servers, settings.topic_bad, 0, timeout=5) == []

    assert profile["viewer_id"] == vid and profile["app_id"] == APP_ID
    assert profile["media_label"] == "Big Stream Demo"
    assert profile["status"] == "ended"
    counters = {
        k: profile[k] for k in ("ad_breaks", "ads_started", "ads_completed", "ads_skipped", "ads_clicked")
    }
    assert counters == {
        "ad_breaks": 2,
        "ads_started": 3,
        "ads_completed": 2,
        "ads_skipped": 1,
        "ads_clicked": 1,
    }
    # plays: after the pre-roll, the resume, after the mid-roll; the seek while paused is one seek
    assert (profile["plays"], profile["pauses"], profile["seeks"]) == (3, 1, 1)
    assert profile["errors"] == 0 and profile["percent_progress"] >= 90
    assert profile["ad_time_s"] > 0 and profile["play_time_s"] > 0 and profile["paused_time_s"] > 0

    # the live page showed the viewer go through the statuses in order, then drop out
    assert seen[-1] == "-", seen
    order = [s for s in seen if s in ("watching_ad", "watching", "paused")]
    compact = [s for i, s in enumerate(order) if i == 0 or order[i - 1] != s]
    it = iter(compact)
    assert all(s in it for s in ("watching_ad", "watching", "paused", "watching")), seen
    print(f"live page statuses seen: {seen}")
