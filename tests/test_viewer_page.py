"""The live page in Debian Chromium (Playwright): log in, see the viewers, watch a status change
arrive, open a profile with its history. Screenshots go to test-output/."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.chromium import CHROMIUM, CHROMIUM_ARGS
from support.viewer import demo_viewer, produce_changes, put_history_item, put_profile_item, serve_in_thread

from lvp.config import Settings
from lvp.dynamo import create_tables, dynamodb_client
from lvp.enriched import iso
from viewer.app import create_app

pytestmark = pytest.mark.browser

TOKEN = "page-test-token-5c1d2e3f4a5b"


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is not installed: run `make setup-system`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        yield b
        b.close()


def wait_until(fn: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.05)


def test_live_page(browser: Any, lvp_settings: Settings, dynamodb_local: str, output_dir: Path) -> None:
    settings = lvp_settings.with_(api_tokens=TOKEN, aws_endpoint_url=dynamodb_local)
    create_tables(settings)
    ddb = dynamodb_client(settings)
    now = time.time()
    viewers = [demo_viewer(i, now, key=settings.topic_changes) for i in range(15)]
    for v in viewers:
        put_profile_item(ddb, settings, v)
    target = next(v for v in viewers if v["status"] == "watching")
    vid = str(target["viewer_id"])
    for k, (status, prev, event) in enumerate(
        [("idle", None, "ready"), ("watching", "idle", "play"), ("paused", "watching", "pause")]
    ):
        put_history_item(ddb, settings, vid, iso(now - 120 + 30 * k), status, prev, event)
    put_history_item(ddb, settings, vid, iso(now - 5), "watching", "paused", "play")
    produce_changes(settings, [(str(v["viewer_id"]), v) for v in viewers])

    app = create_app(settings)
    with serve_in_thread(app) as base:
        page = browser.new_page(viewport={"width": 1480, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(base + "/")

        # the login step
        page.locator("#login:not([hidden])").wait_for()
        page.fill("#token", "wrong-token")
        page.click("#login-btn")
        wait_until(lambda: page.text_content("#login-error"), 5, "error for a wrong token")
        page.fill("#token", TOKEN)
        page.click("#login-btn")

        # the viewers produced to the changes topic, live
        rows = page.locator("#rows tr")
        rows.nth(14).wait_for(timeout=15000)
        assert rows.count() == 15
        wait_until(lambda: page.get_attribute("#conn", "data-state") == "live", 10, "connection live")
        assert page.text_content("#kpi-active") == "15"
        row = page.locator(f'#rows tr[data-viewer="{vid}"]')
        assert row.get_attribute("data-status") == "watching"
        shown_id = row.locator("td.vid span").first
        assert shown_id.get_attribute("title") == vid  # full pseudonym on hover, short in the cell
        assert vid not in (shown_id.text_content() or "")
        page.screenshot(path=str(output_dir / "viewer-page.png"), full_page=True)

        # a status change reaches the page within 2 s
        events = int(str(target["events"])) + 1
        changed = {**target, "status": "paused", "events": events, "last_seen": iso(time.time())}
        produce_changes(settings, [(vid, changed)])
        wait_until(lambda: row.get_attribute("data-status") == "paused", 2.0, "status change on the page")
        wait_until(lambda: "Paused" in (row.locator(".badge").text_content() or ""), 2.0, "paused badge")

        # a status filter subscribes the stream to that window: only paused rows, counts of all
        page.click('#status-list li[data-status="paused"]')
        wait_until(
            lambda: page.evaluate(
                "() => { const r = [...document.querySelectorAll('#rows tr')];"
                " return r.length > 0 && r.every((tr) => tr.dataset.status === 'paused'); }"
            ),
            5,
            "only paused rows",
        )
        paused = sum(1 for v in viewers if v["status"] == "paused") + 1
        assert page.locator("#rows tr").count() == paused
        assert page.text_content("#kpi-active") == "15"
        page.click('#status-list li[data-status="paused"]')  # back to every status
        rows.nth(14).wait_for(timeout=5000)

        # a profile and its history
        row.click()
        page.locator("#panel.open").wait_for()
        page.locator(".timeline li .when").nth(3).wait_for(timeout=10000)
        assert page.text_content("#panel-title") == vid
        assert "Paused" in (page.text_content(".now .badge") or "")
        page.screenshot(path=str(output_dir / "viewer-page-panel.png"))
        page.keyboard.press("Escape")
        page.locator("#panel:not(.open)").wait_for()

        # nothing secret in the browser's reach
        assert page.evaluate("() => document.cookie") == ""  # the session cookie is HttpOnly
        assert page.evaluate("() => localStorage.length + sessionStorage.length") == 0
        assert errors == []


def test_page_reconnects_after_a_viewer_restart(
    browser: Any, lvp_settings: Settings, dynamodb_local: str
) -> None:
    from lvp.local.broker import free_port

    settings = lvp_settings.with_(
        api_tokens=TOKEN, jwt_secret="page-test-jwt-secret-0123456789abcdef", aws_endpoint_url=dynamodb_local
    )
    now = time.time()
    viewers = [demo_viewer(i, now, key=settings.topic_changes) for i in range(3)]
    produce_changes(settings, [(str(v["viewer_id"]), v) for v in viewers])
    port = free_port()
    page = browser.new_page()
    with serve_in_thread(create_app(settings), port=port) as base:
        page.goto(base + "/")
        page.fill("#token", TOKEN)
        page.click("#login-btn")
        page.locator("#rows tr").nth(2).wait_for(timeout=15000)
        wait_until(lambda: page.get_attribute("#conn", "data-state") == "live", 10, "live")
    # the viewer process is gone: the page says so and keeps trying
    wait_until(
        lambda: page.get_attribute("#conn", "data-state") in ("reconnecting", "offline"), 10, "outage shown"
    )
    added = demo_viewer(3, time.time(), key=settings.topic_changes)
    produce_changes(settings, [(str(added["viewer_id"]), added)])
    with serve_in_thread(create_app(settings), port=port):
        # a new process: the page reconnects by itself (same session cookie) and gets a fresh snapshot
        wait_until(lambda: page.get_attribute("#conn", "data-state") == "live", 20, "reconnected")
        page.locator(f'#rows tr[data-viewer="{added["viewer_id"]}"]').wait_for(timeout=10000)
        assert page.locator("#rows tr").count() == 4
        assert page.locator("#login").is_hidden()
