"""Access control of the viewer API: every /api/* route refuses requests without valid
credentials, sessions and tickets work where they should and nowhere else, the per-token SSE
limit holds, and no token or ticket ever reaches a log."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from starlette.routing import Route
from support.viewer import (
    SSEStream,
    create_viewer_state_table,
    make_profile,
    produce_changes,
    serve_in_thread,
)

from lvp.config import Settings
from viewer.app import create_app
from viewer.auth import COOKIE, Authenticator, is_open_path

TOKEN = "tok-A-7f3c9e1d2b4a"
OTHER = "tok-B-0a9b8c7d6e5f"
SECRET = "jwt-secret-for-tests-only-0123456789abcdef"


@pytest.fixture
def settings(lvp_settings: Settings, dynamodb_local: str) -> Settings:
    s = lvp_settings.with_(
        api_tokens=f"{TOKEN}, {OTHER}",
        jwt_secret=SECRET,
        aws_endpoint_url=dynamodb_local,
        push_interval_s=0.05,
        sse_max_per_token=2,
    )
    create_viewer_state_table(s)
    return s


@pytest.fixture
def server(settings: Settings) -> Iterator[tuple[str, Any]]:
    app = create_app(settings)
    with serve_in_thread(app) as base:
        yield base, app


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def api_routes(app: Any) -> list[tuple[str, str]]:
    """(method, concrete path) of every protected /api route of the app."""
    out = []
    for route in app.routes:
        if not isinstance(route, Route) or not route.path.startswith("/api/"):
            continue
        path = route.path.replace("{viewer_id}", "a" * 64)
        if is_open_path(path, metrics_public=True):
            continue
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            out.append((method, path))
    return out


def make_jwt(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def test_every_api_route_refuses_missing_or_wrong_credentials(server: tuple[str, Any]) -> None:
    base, app = server
    routes = api_routes(app)
    paths = {p for _, p in routes}
    assert {"/api/viewers", "/api/viewers/stream", "/api/stats", "/api/profiles/" + "a" * 64} <= paths
    routes.append(("GET", "/api/no-such-route"))
    now = int(time.time())
    wrong = {
        "none": {},
        "wrong token": bearer("not-a-token"),
        "empty bearer": {"Authorization": "Bearer"},
        "basic scheme": {"Authorization": "Basic dG9rOnRvaw=="},
        "jwt, wrong key": bearer(
            make_jwt({"sub": "x", "exp": now + 60}, "another-secret-of-enough-length-0123456789")
        ),
        "jwt, expired": bearer(make_jwt({"sub": "x", "exp": now - 60})),
        "session as bearer": bearer(make_jwt({"sub": "x", "aud": "lvp-session", "exp": now + 60})),
        "ticket as bearer": bearer(make_jwt({"sub": "x", "aud": "lvp-ticket", "exp": now + 60})),
        "forged cookie": {
            "Cookie": f"{COOKIE}=" + make_jwt({"sub": "x", "aud": "lvp-session", "exp": now + 60}, "b" * 40)
        },
    }
    with httpx.Client(base_url=base, timeout=10) as http:
        for method, path in routes:
            for name, headers in wrong.items():
                r = http.request(method, path, headers=headers)
                assert r.status_code in (401, 403), (method, path, name, r.status_code)
                assert r.headers.get("www-authenticate", "").startswith("Bearer"), (method, path, name)
        # a valid ticket opens the stream only, never another route
        ticket = http.post("/api/stream-ticket", headers=bearer(TOKEN)).json()["ticket"]
        for method, path in routes:
            if path != "/api/viewers/stream":
                r = http.request(method, path, params={"ticket": ticket})
                assert r.status_code == 401, (method, path)
        # the open ones stay open
        assert http.get("/health").status_code == 200
        assert http.get("/metrics").status_code == 401  # private unless LVP_METRICS_PUBLIC
        assert http.get("/metrics", headers=bearer(TOKEN)).status_code == 200
        assert http.get("/api/public/anything").status_code == 404  # open prefix, nothing there yet
        assert http.post("/api/login", json={"token": "nope"}).status_code == 401


def test_tokens_and_jwts_are_accepted(server: tuple[str, Any]) -> None:
    base, _ = server
    now = int(time.time())
    with httpx.Client(base_url=base, timeout=10) as http:
        for headers in (
            bearer(TOKEN),
            bearer(OTHER),
            bearer(make_jwt({"sub": "alice", "exp": now + 60})),
            bearer(make_jwt({"sub": "bob", "aud": "lvp-api", "exp": now + 60})),
        ):
            assert http.get("/api/viewers", headers=headers).status_code == 200
            assert http.get("/api/session", headers=headers).json()["authenticated"] is True


def test_login_sets_a_strict_httponly_session_cookie(server: tuple[str, Any]) -> None:
    base, _ = server
    with httpx.Client(base_url=base, timeout=10) as http:
        assert http.get("/api/session").status_code == 401
        not_json = http.post("/api/login", content=b"not json", headers={"Content-Type": "application/json"})
        assert not_json.status_code == 400
        assert http.post("/api/login", json={}).status_code == 400
        assert http.post("/api/login", json={"token": "wrong"}).status_code == 401
        r = http.post("/api/login", json={"token": TOKEN})
        assert r.status_code == 200
        cookie = r.headers["set-cookie"]
        attrs = [a.strip().lower() for a in cookie.split(";")]
        assert "httponly" in attrs and "samesite=strict" in attrs and "path=/" in attrs
        assert any(a.startswith("max-age=") and 0 < int(a.split("=")[1]) <= 3600 for a in attrs)
        assert TOKEN not in cookie
        assert TOKEN not in r.text
        # the cookie alone now authenticates the API and the stream
        assert http.get("/api/session").json()["via"] == "session"
        assert http.get("/api/viewers").status_code == 200
        session_value = http.cookies[COOKIE]
        with SSEStream(base, "/api/viewers/stream", {"Cookie": f"{COOKIE}={session_value}"}) as sse:
            assert sse.status == 200
            ev = sse.next_event()
            assert ev is not None and ev.event == "snapshot"
        # logout clears it
        out = http.post("/api/logout", json={})
        assert out.status_code == 200 and "max-age=0" in out.headers["set-cookie"].lower()
        http.cookies.clear()
        assert http.get("/api/session").status_code == 401


def test_stream_ticket_opens_the_stream_and_expires(server: tuple[str, Any]) -> None:
    base, _ = server
    with httpx.Client(base_url=base, timeout=10) as http:
        r = http.post("/api/stream-ticket", headers=bearer(TOKEN))
        assert r.status_code == 200
        ticket = r.json()["ticket"]
        assert 0 < r.json()["expires_in"] <= 60
        with SSEStream(base, f"/api/viewers/stream?ticket={ticket}") as sse:
            assert sse.status == 200
            ev = sse.next_event()
            assert ev is not None and ev.event == "snapshot"
        expired = make_jwt({"sub": "x", "aud": "lvp-ticket", "exp": int(time.time()) - 60})
        tampered = ticket[:-4] + ("AAAA" if not ticket.endswith("AAAA") else "BBBB")
        for bad in (expired, tampered, "garbage"):
            with SSEStream(base, f"/api/viewers/stream?ticket={bad}") as sse:
                assert sse.status == 401


def test_sse_connections_are_limited_per_token(server: tuple[str, Any], settings: Settings) -> None:
    base, _ = server
    produce_changes(settings, [("v-1", make_profile("v-1"))])
    streams: list[SSEStream] = []
    try:
        for _ in range(2):
            s = SSEStream(base, "/api/viewers/stream", bearer(TOKEN))
            assert s.status == 200
            streams.append(s)
        third = SSEStream(base, "/api/viewers/stream", bearer(TOKEN))
        assert third.status == 429
        assert int(third.headers["retry-after"]) > 0
        third.close()
        # a session made from the same token counts against the same token
        with httpx.Client(base_url=base) as http:
            http.post("/api/login", json={"token": TOKEN})
            cookie = http.cookies[COOKIE]
        via_cookie = SSEStream(base, "/api/viewers/stream", {"Cookie": f"{COOKIE}={cookie}"})
        assert via_cookie.status == 429
        via_cookie.close()
        # another token has its own allowance
        other = SSEStream(base, "/api/viewers/stream", bearer(OTHER))
        assert other.status == 200
        streams.append(other)
        # closing a stream frees its slot
        streams.pop(0).close()
        deadline = time.monotonic() + 10
        while True:
            again = SSEStream(base, "/api/viewers/stream", bearer(TOKEN))
            if again.status == 200:
                streams.append(again)
                break
            again.close()
            assert time.monotonic() < deadline, "slot never freed"
            time.sleep(0.05)
    finally:
        for s in streams:
            s.close()


def test_tokens_and_tickets_never_reach_the_logs(settings: Settings) -> None:
    records: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Capture(level=logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    # an earlier in-process uvicorn with its default log config stops "uvicorn*" propagating
    uvicorn_loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    old_state = [(lg.propagate, lg.level) for lg in uvicorn_loggers]
    for lg in uvicorn_loggers:
        lg.propagate, lg.level = True, logging.NOTSET
    secrets_seen: list[str] = [TOKEN, OTHER, SECRET, "wrong-token-xyz"]
    try:
        app = create_app(settings)
        with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=10) as http:
            http.get("/api/viewers", headers=bearer(TOKEN))
            http.get("/api/viewers", headers=bearer("wrong-token-xyz"))
            http.post("/api/login", json={"token": "wrong-token-xyz"})
            login = http.post("/api/login", json={"token": OTHER})
            secrets_seen.append(http.cookies[COOKIE])
            assert login.status_code == 200
            ticket = http.post("/api/stream-ticket").json()["ticket"]
            secrets_seen.append(ticket)
            with SSEStream(base, f"/api/viewers/stream?ticket={ticket}&limit=5") as sse:
                assert sse.next_event() is not None
            with SSEStream(base, f"/api/viewers/stream?ticket={ticket}x") as sse:
                assert sse.status == 401
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for lg, (prop, level) in zip(uvicorn_loggers, old_state, strict=True):
            lg.propagate, lg.level = prop, level
    # httpx/httpcore are this test's own HTTP client (at DEBUG they print response headers)
    server_side = [r for r in records if not r.name.startswith(("httpx", "httpcore"))]
    assert any(r.name.startswith("uvicorn") for r in server_side)
    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in server_side)
    assert "GET /api/viewers/stream 200" in text, "the access log records the request..."
    assert "?ticket" not in text and "ticket=" not in text, "...but never its query string"
    for secret in secrets_seen:
        assert secret not in text


def test_sessions_end_when_their_token_is_withdrawn(settings: Settings) -> None:
    before = Authenticator(settings)
    principal = before.check_bearer(TOKEN)
    assert principal is not None
    cookie, _ = before.issue_session(principal)
    ticket, _ = before.issue_ticket(principal)
    assert before.check_session(cookie) is not None
    assert before.check_session(ticket) is None  # a ticket is not a session
    assert before.check_ticket(cookie) is None  # and a session is not a ticket
    after = Authenticator(settings.with_(api_tokens=OTHER))
    assert after.check_session(cookie) is None
    assert after.check_ticket(ticket) is None
    assert after.check_bearer(TOKEN) is None


def test_sessions_renew_while_used_but_end_12_h_after_sign_in(server: tuple[str, Any]) -> None:
    base, app = server
    key = app.state.auth.check_bearer(TOKEN).key
    now = int(time.time())

    def session(auth_time: int | None, exp: int) -> dict[str, str]:
        claims: dict[str, Any] = {"sub": key, "aud": "lvp-session", "exp": exp}
        if auth_time is not None:
            claims["auth_time"] = auth_time
        return {"Cookie": f"{COOKIE}={make_jwt(claims)}"}

    with httpx.Client(base_url=base, timeout=10) as http:
        fresh = http.get("/api/session", headers=session(now - 60, now + 3500))
        assert fresh.status_code == 200 and "set-cookie" not in fresh.headers
        half_spent = http.get("/api/session", headers=session(now - 3600, now + 600))
        assert half_spent.status_code == 200
        renewed = half_spent.headers["set-cookie"]
        assert renewed.startswith(f"{COOKIE}=") and "HttpOnly" in renewed
        value = renewed.split(";")[0].split("=", 1)[1]
        claims = jwt.decode(value, SECRET, algorithms=["HS256"], audience="lvp-session")
        assert claims["auth_time"] == now - 3600 and claims["exp"] > now + 3000
        assert http.get("/api/session", headers=session(now - 13 * 3600, now + 600)).status_code == 401
        assert http.get("/api/session", headers=session(None, now + 600)).status_code == 401


def test_repeated_failed_sign_ins_are_throttled(server: tuple[str, Any]) -> None:
    base, app = server
    app.state.login_throttle.max_failures = 3
    with httpx.Client(base_url=base, timeout=10) as http:
        for _ in range(3):
            assert http.post("/api/login", json={"token": "guess"}).status_code == 401
        blocked = http.post("/api/login", json={"token": TOKEN})  # even the right one, for a while
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    app.state.login_throttle.window_s = 0.0  # the window has passed
    with httpx.Client(base_url=base, timeout=10) as http:
        assert http.post("/api/login", json={"token": TOKEN}).status_code == 200
