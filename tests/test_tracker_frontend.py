"""The demo player (tracker-frontend/) and its site (lvp/local/tracker_site.py).

The browser test drives the built page in Debian's Chromium and checks what the REAL Snowplow
tracker + media plugin send, through a tiny stand-in for the collector's HTTP surface (tp2 POST
with CORS preflight). The real-collector end-to-end test lives with the pipeline tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from support.chromium import CHROMIUM, CHROMIUM_ARGS

from lvp.local.broker import free_port
from lvp.local.tracker_site import config_js, create_app, validate_collector_url

ROOT = Path(__file__).resolve().parent.parent
FRONTEND = ROOT / "tracker-frontend"
DIST = FRONTEND / "dist"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
MEDIA_PLAYER = "iglu:com.snowplowanalytics.snowplow/media_player/jsonschema/2-0-0"
MEDIA_SESSION = "iglu:com.snowplowanalytics.snowplow.media/session/jsonschema/1-0-0"
MEDIA_AD = "iglu:com.snowplowanalytics.snowplow.media/ad/jsonschema/1-0-0"
MEDIA_AD_BREAK = "iglu:com.snowplowanalytics.snowplow.media/ad_break/jsonschema/1-0-0"
APP_ID = "tracker-frontend-test"


# --- build -------------------------------------------------------------------------------------


def _stale() -> bool:
    index = DIST / "index.html"
    if not index.is_file():
        return True
    built = index.stat().st_mtime
    sources = [*FRONTEND.joinpath("src").iterdir(), FRONTEND / "build.mjs", FRONTEND / "package-lock.json"]
    return any(p.stat().st_mtime > built for p in sources)


@pytest.fixture(scope="module")
def dist() -> Path:
    """The built page; built here (npm ci + npm run build) when missing or older than src/."""
    if _stale():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is needed to build tracker-frontend (run `make setup`)")
        if not (FRONTEND / "node_modules" / ".package-lock.json").is_file():
            subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=FRONTEND, check=True, timeout=300)
        subprocess.run([npm, "run", "build"], cwd=FRONTEND, check=True, timeout=300)
    return DIST


def test_build_output_bundles_the_real_tracker_and_media_plugin(dist: Path) -> None:
    index = (dist / "index.html").read_text()
    assert 'src="config.js"' in index and "app.js?v=" in index and "%BUILD%" not in index
    bundle = (dist / "app.js").read_text()
    # the media plugin's schemas and the tracker's POST path are in the bundle
    for needle in (
        "com.snowplowanalytics.snowplow.media/",
        "media_player/jsonschema/2-0-0",
        "ad_quartile",
        "com.snowplowanalytics.snowplow/tp2",
        "payload_data/jsonschema/1-0-4",
    ):
        assert needle in bundle, needle
    info = json.loads((dist / "build-info.json").read_text())
    assert info["packages"]["@snowplow/browser-tracker"] == "4.6.6"
    assert info["packages"]["@snowplow/browser-plugin-media"] == "4.6.6"
    clips = sorted(p.name for p in (dist / "media").glob("*.webm"))
    assert clips == ["ad1.webm", "ad2.webm", "ad3.webm", "content-180p.webm", "content-360p.webm"]
    assert sum((dist / "media" / c).stat().st_size for c in clips) < 600_000


def test_dependencies_are_pinned_exactly() -> None:
    pkg = json.loads((FRONTEND / "package.json").read_text())
    lock = json.loads((FRONTEND / "package-lock.json").read_text())
    for section in ("dependencies", "devDependencies"):
        for name, version in pkg[section].items():
            assert version[0].isdigit(), f"{name} {version} is not an exact pin"
            assert lock["packages"][f"node_modules/{name}"]["version"] == version
    assert (
        pkg["dependencies"]["@snowplow/browser-tracker"]
        == pkg["dependencies"]["@snowplow/browser-plugin-media"]
    )


# --- the site ----------------------------------------------------------------------------------


def client_for(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://site.test")


async def test_site_serves_page_config_and_media(dist: Path) -> None:
    app = create_app(dist, "http://collector.example:9090/", APP_ID, live_url="http://live.example/")
    async with client_for(app) as client:
        page = await client.get("/")
        assert page.status_code == 200 and "Your viewer id" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        cfg = await client.get("/config.js")
        assert cfg.headers["content-type"].startswith("text/javascript")
        assert cfg.headers["cache-control"] == "no-store"
        body = cfg.text.removeprefix("window.LVP_CONFIG = ").removesuffix(";\n")
        assert json.loads(body) == {
            "collectorUrl": "http://collector.example:9090",
            "appId": APP_ID,
            "pingIntervalS": 10.0,
            "liveUrl": "http://live.example/",
        }
        clip = await client.get("/media/ad1.webm", headers={"Range": "bytes=0-99"})
        assert clip.status_code == 206 and len(clip.content) == 100
        assert (await client.get("/app.js")).status_code == 200
        assert (await client.get("/health")).text == "ok"
        assert (await client.get("/nope.js")).status_code == 404


async def test_site_without_a_build_explains_how_to_build(tmp_path: Path) -> None:
    async with client_for(create_app(tmp_path / "missing", ":9090", APP_ID)) as client:
        page = await client.get("/")
        assert page.status_code == 503 and "npm run build" in page.text
        assert '"collectorUrl": ":9090"' in (await client.get("/config.js")).text


@pytest.mark.parametrize("url", ["", "ftp://x", "127.0.0.1:9090", "http://", "http://h/?q=1", ":abc"])
def test_site_rejects_a_bad_collector_url(url: str) -> None:
    with pytest.raises(ValueError, match="collector URL"):
        validate_collector_url(url)


def test_site_rejects_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="app id"):
        create_app(tmp_path, ":9090", " ")
    with pytest.raises(ValueError, match="ping interval"):
        create_app(tmp_path, ":9090", APP_ID, ping_interval_s=0)
    with pytest.raises(ValueError, match="live page"):
        create_app(tmp_path, ":9090", APP_ID, live_url="javascript:alert(1)")


def test_config_js_cannot_break_out_of_its_string() -> None:
    js = config_js("http://c", 'x"</script><script>alert(1)//')
    assert "</script>" not in js and '\\"' in js


# --- browser -----------------------------------------------------------------------------------


class Capture:
    """Stands in for the collector's HTTP surface: records tp2 POST bodies, answers CORS."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.preflights = 0

    def cors(self, request: Request) -> dict[str, str]:
        origin = request.headers.get("origin", "*")
        return {
            "access-control-allow-origin": origin,
            "access-control-allow-credentials": "true",
            "access-control-allow-headers": "Content-Type, SP-Anonymous",
            "access-control-allow-methods": "POST, GET, OPTIONS",
            "vary": "Origin",
        }

    async def tp2(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            self.preflights += 1
            return Response(status_code=200, headers=self.cors(request))
        body = json.loads(await request.body())
        with self.lock:
            self.bodies.append(body)
        return PlainTextResponse("ok", headers=self.cors(request))

    def events(self) -> list[dict[str, str]]:
        with self.lock:
            return [e for b in self.bodies for e in b["data"]]

    def app(self) -> Starlette:
        return Starlette(
            routes=[Route("/com.snowplowanalytics.snowplow/tp2", self.tp2, methods=["POST", "OPTIONS"])]
        )


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def name_of(ev: dict[str, str]) -> str:
    if ev["e"] == "pv":
        return "page_view"
    if ev["e"] == "pp":
        return "page_ping"
    schema = json.loads(ev["ue_pr"])["data"]["schema"]
    return str(schema.split("/")[1].removesuffix("_event"))


def entities(ev: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {c["schema"]: c["data"] for c in json.loads(ev.get("co", '{"data": []}'))["data"]}


def event_data(ev: dict[str, str]) -> dict[str, Any]:
    return dict(json.loads(ev["ue_pr"])["data"]["data"])


EXPECTED = {
    "page_view", "ready", "ad_break_start", "ad_start", "ad_quartile", "ad_click", "ad_pause",
    "ad_resume", "ad_complete", "ad_skip", "ad_break_end", "play", "pause", "seek_start", "seek_end",
    "volume_change", "quality_change", "playback_rate_change", "percent_progress", "ping", "end",
}  # fmt: skip


@pytest.mark.browser
def test_browser_plays_through_ads_and_content(dist: Path, output_dir: Path) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `make setup-system`")
    from playwright.sync_api import sync_playwright

    capture = Capture()
    with serve(capture.app()) as collector:
        site_app = create_app(dist, collector, APP_ID, live_url="http://127.0.0.1:1/", ping_interval_s=1)
        with serve(site_app) as site, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
            try:
                page = browser.new_page(viewport={"width": 1360, "height": 900}, bypass_csp=True)
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                shots = _drive(page, site, output_dir)
                session_id = page.text_content("#media-session-id") or ""
                duid = page.text_content("#viewer-id") or ""
                assert page.get_attribute("#live-link", "href") == "http://127.0.0.1:1/"
                _wait(lambda: {name_of(e) for e in capture.events()} >= EXPECTED, "all media events")
                page.wait_for_function("Number(document.getElementById('event-count').textContent) > 30")
                page.screenshot(path=str(output_dir / "tracker-5-log.png"))
                assert errors == [], errors
            finally:
                browser.close()
    assert len(shots) == 4
    _check_events(capture, duid, session_id)


def _wait(cond: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _drive(page: Any, site: str, out: Path) -> list[Path]:
    """Pre-roll (click ad 1, pause/skip ad 2), pause, quality, seek past the mid-roll, resume,
    mid-roll, faster playback to the end."""
    shots: list[Path] = []

    def shot(name: str) -> None:
        shots.append(out / f"tracker-{name}.png")
        page.screenshot(path=str(shots[-1]))

    state = "document.getElementById('player').dataset"
    page.goto(site + "/")
    page.wait_for_function(f"document.body.dataset.trackerReady === 'true' && {state}.ready === 'true'")
    page.wait_for_function("document.getElementById('event-count').textContent !== '0'")  # page view
    shot("1-start")
    page.click("#start")
    page.wait_for_function(f"{state}.ad === '1/2' && {state}.playing === 'true'")
    assert page.text_content("#ad-badge") == "Ad 1 of 2"
    page.wait_for_function("document.getElementById('ad-video').currentTime > 0.3")
    page.click("#ad-click-area")  # ad_click + ad_pause
    page.wait_for_selector("#click-through", state="visible")
    shot("2-click-through")
    page.click("#close-click-through")  # ad_resume
    page.eval_on_selector("#ad-video", "v => { v.playbackRate = 4; }")  # quartiles, then ad_complete
    page.wait_for_function(f"{state}.ad === '2/2'")
    page.click("#play-pause")  # ad_pause
    page.wait_for_function(f"{state}.playing === 'false'")
    page.eval_on_selector("#ad-video", "v => { v.currentTime = 5.2; }")
    page.wait_for_selector("#skip-ad:not([disabled])")
    shot("3-skip")
    page.click("#skip-ad")  # ad_skip, ad_break_end, play
    page.wait_for_function(f"{state}.state === 'playing'")
    page.wait_for_function("document.getElementById('content-video').currentTime > 2.6")  # 10 %
    page.click("#mute")  # volume_change
    page.click("#play-pause")  # pause
    page.wait_for_function(f"{state}.state === 'paused'")
    page.select_option("#quality", "180p")  # quality_change
    page.wait_for_function(f"{state}.switching === 'false' && {state}.quality === '180p'")
    box = page.locator("#progress").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + box["height"] / 2)  # seek to 18 s
    page.wait_for_function("Math.abs(document.getElementById('content-video').currentTime - 18) < 0.5")
    shot("4-paused")
    page.click("#play-pause")  # resume -> the mid-roll (18 s is past 50 %)
    page.wait_for_function(f"{state}.ad === '1/1'")
    page.eval_on_selector("#ad-video", "v => { v.playbackRate = 8; }")
    page.wait_for_function(f"{state}.state === 'playing'")
    page.eval_on_selector("#content-video", "v => { v.playbackRate = 4; }")  # playback_rate_change
    page.wait_for_function(f"{state}.state === 'ended'", timeout=20_000)
    page.screenshot(path=str(out / "tracker-6-ended.png"))
    return shots


def _check_events(capture: Capture, duid: str, session_id: str) -> None:
    assert capture.preflights >= 1
    assert all(b["schema"] == PAYLOAD_DATA for b in capture.bodies)
    events = capture.events()
    assert all(isinstance(v, str) for e in events for v in e.values())
    assert {e["aid"] for e in events} == {APP_ID}
    assert {e["duid"] for e in events} == {duid}
    assert len({e["eid"] for e in events}) == len(events)
    events.sort(key=lambda e: (int(e["dtm"]), e["eid"]))
    media = [e for e in events if e["e"] == "ue"]
    for ev in media:
        ents = entities(ev)
        player = ents[MEDIA_PLAYER]
        assert player["label"] == "Big Stream Demo" and player["mediaType"] == "video"
        assert isinstance(player["volume"], int) and 0 <= player["volume"] <= 100
        assert ents[MEDIA_SESSION]["mediaSessionId"] == session_id
        assert ents[MEDIA_SESSION]["pingInterval"] == 1
    by_name: dict[str, list[dict[str, str]]] = {}
    for ev in media:
        by_name.setdefault(name_of(ev), []).append(ev)

    # ads: the pre-roll pod (ad 1 clicked, paused by the click-through, resumed, completed; ad 2
    # paused and skipped) and the mid-roll (completed)
    breaks = [entities(e)[MEDIA_AD_BREAK] for e in by_name["ad_break_start"]]
    assert [(b["breakId"], b["podSize"], b["breakType"]) for b in breaks] == [
        ("pre-roll", 2, "linear"),
        ("mid-roll", 1, "linear"),
    ]
    starts = [entities(e)[MEDIA_AD] for e in by_name["ad_start"]]
    assert [(a["adId"], a["podPosition"]) for a in starts] == [
        ("ad-acme-rocket-skates", 1),
        ("ad-nimbus-coffee", 2),
        ("ad-polar-bytes", 1),
    ]
    assert all(a["skippable"] is True and a["duration"] > 5 for a in starts)
    assert entities(by_name["ad_click"][0])[MEDIA_AD]["adId"] == "ad-acme-rocket-skates"
    assert [entities(e)[MEDIA_AD]["adId"] for e in by_name["ad_skip"]] == ["ad-nimbus-coffee"]
    assert [entities(e)[MEDIA_AD]["adId"] for e in by_name["ad_complete"]] == [
        "ad-acme-rocket-skates",
        "ad-polar-bytes",
    ]
    quartiles = [
        (entities(e)[MEDIA_AD]["adId"], event_data(e)["percentProgress"]) for e in by_name["ad_quartile"]
    ]
    # ad 1 played through (at 4x); ad 2 was moved past 75 % by a seek: no quartiles for it
    assert quartiles[:3] == [("ad-acme-rocket-skates", q) for q in (25, 50, 75)]
    assert not any(ad == "ad-nimbus-coffee" for ad, _ in quartiles)
    assert len(by_name["ad_pause"]) == 2 and len(by_name["ad_resume"]) == 1
    assert all(MEDIA_AD_BREAK not in entities(e) for e in by_name["play"])

    # content: play after each break, pause, seek to 18 s, faster playback, end
    names = [name_of(e) for e in media]
    assert names.index("ad_break_start") < names.index("play")
    assert names.index("ad_skip") < names.index("ad_break_end") < names.index("play")
    assert len(by_name["play"]) == 2 and len(by_name["pause"]) == 1
    assert abs(entities(by_name["seek_end"][-1])[MEDIA_PLAYER]["currentTime"] - 18) < 0.6
    assert entities(by_name["seek_start"][0])[MEDIA_PLAYER]["currentTime"] < 10
    assert event_data(by_name["quality_change"][0]) == {
        "previousQuality": "360p",
        "newQuality": "180p",
        "bitrate": 33000,
        "automatic": False,
    }
    assert event_data(by_name["playback_rate_change"][-1])["newRate"] == 4
    assert event_data(by_name["volume_change"][0]) == {"previousVolume": 80, "newVolume": 80}
    assert entities(by_name["volume_change"][0])[MEDIA_PLAYER]["muted"] is True
    # one event per boundary crossed (10 while playing from 0; 75 and 90 after the seek to 75 %),
    # carrying the position's percentage (the plugin sends e.g. 91 when 90 was crossed between
    # two updates at 4x speed)
    progress = sorted(event_data(e)["percentProgress"] for e in by_name["percent_progress"])
    reached = sorted(max(b for b in (10, 25, 50, 75, 90) if b <= p) for p in progress)
    assert reached == [10, 75, 90], progress
    end = entities(by_name["end"][0])
    assert end[MEDIA_PLAYER]["ended"] is True and end[MEDIA_PLAYER]["paused"] is True
    assert names.index("end") > max(i for i, n in enumerate(names) if n == "play")
    stats = end[MEDIA_SESSION]
    assert (stats["adBreaks"], stats["ads"], stats["adsSkipped"], stats["adsClicked"]) == (2, 3, 1, 1)


@pytest.mark.browser
def test_browser_query_overrides_the_served_config(dist: Path) -> None:
    """``?collector=`` and ``?app_id=`` win over /config.js (here pointing at a dead port)."""
    from playwright.sync_api import sync_playwright

    capture = Capture()
    with (
        serve(capture.app()) as collector,
        serve(create_app(dist, f"http://127.0.0.1:{free_port()}", APP_ID)) as site,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page(bypass_csp=True)
            page.goto(f"{site}/?collector={collector}&app_id=override-app")
            _wait(lambda: any(e["e"] == "pv" for e in capture.events()), "the page view")
            assert page.text_content("#cfg-collector") == collector
            assert page.text_content("#cfg-app-id") == "override-app"
            assert page.is_hidden("#live-link")
        finally:
            browser.close()
    assert {e["aid"] for e in capture.events()} == {"override-app"}
