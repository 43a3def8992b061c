"""Issue #12 on the viewer, over real connections (the app in uvicorn threads, DynamoDB Local for
the shared state, the Tansu broker for the changes topic): /health gives nothing away, the
privacy budget is shared and survives restarts, sign-in bodies are bounded, X-Forwarded-* is
read from trusted proxies only, JWTs need exp and bound their sessions, tickets are single-use
across processes, CORS and /metrics are closed by default, and sign-in refuses other origins."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from support.viewer import (
    SSEStream,
    create_viewer_state_table,
    make_profile,
    produce_changes,
    serve_in_thread,
)

from lvp.config import Settings
from viewer.app import create_app
from viewer.auth import COOKIE

TOKEN = "tok-sec-5e1f0c2b9a7d"
SECRET = "jwt-secret-security-tests-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def settings(lvp_settings: Settings, dynamodb_local: str) -> Settings:
    s = lvp_settings.with_(
        api_tokens=TOKEN,
        jwt_secret=SECRET,
        aws_endpoint_url=dynamodb_local,
        push_interval_s=0.05,
    )
    create_viewer_state_table(s)
    return s


@contextmanager
def running(settings: Settings, **app_kw: Any) -> Iterator[tuple[str, Any]]:
    app = create_app(settings, **app_kw)
    with serve_in_thread(app) as base:
        deadline = time.monotonic() + 20
        while not httpx.get(base + "/health").json()["loaded"] and app_kw.get("read_changes", True):
            assert time.monotonic() < deadline, "the view did not load"
            time.sleep(0.05)
        yield base, app


def raw_request(base: str, request: bytes, timeout: float = 10.0) -> bytes:
    """Send bytes as they are (no client-side URL normalisation); the whole answer."""
    u = urlsplit(base)
    with socket.create_connection((u.hostname or "127.0.0.1", u.port or 80), timeout=timeout) as sock:
        sock.sendall(request)
        out = b""
        while b"\r\n\r\n" not in out:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


def make_jwt(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256")


# --- 1. /health and the privacy budget --------------------------------------------------------
def test_health_gives_no_counts_and_no_broker_names(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    produce_changes(settings, [(f"h-{i}", make_profile(f"h-{i}", "watching")) for i in range(3)])
    with running(settings) as (base, app):
        with httpx.Client(base_url=base, headers=AUTH) as http:
            deadline = time.monotonic() + 15
            while http.get("/api/viewers").json()["active"] != 3:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        health = httpx.get(base + "/health").json()
        assert set(health) == {"status", "loaded", "reader_error"}
        assert "3" not in str({k: v for k, v in health.items() if k != "status"})

        # a reader failure: the detail (it names brokers) is logged, /health says only that it failed
        real_reader = app.state.service.reader
        detail = "KafkaError: Connect to ipv4#10.1.2.3:9098 b-1.secret-cluster.kafka.internal failed"
        app.state.service.reader = SimpleNamespace(error=detail)
        try:
            with caplog.at_level(logging.WARNING, logger="lvp.viewer.service"):
                answer = httpx.get(base + "/health")
        finally:
            app.state.service.reader = real_reader
        assert answer.status_code == 200
        assert answer.json()["reader_error"] == "the changes topic cannot be read"
        assert "secret-cluster" not in answer.text and "10.1.2.3" not in answer.text
        assert any("secret-cluster" in r.getMessage() for r in caplog.records)


def test_public_stats_budget_is_shared_by_processes_and_survives_restarts(settings: Settings) -> None:
    settings = settings.with_(
        dp_epsilon="1", dp_release_interval_s=0.0, dp_budget=100.0, dp_lifetime_budget=3.0
    )
    produce_changes(settings, [(f"p-{i}", make_profile(f"p-{i}", "watching")) for i in range(4)])
    fresh: list[float] = []
    with running(settings) as (a, _), running(settings) as (b, _):  # two viewer processes
        for _ in range(4):
            for base in (a, b):
                r = httpx.get(base + "/api/public/stats").json()
                if not r["budget"]["exhausted"]:
                    fresh.append(r["released_at"])
        last = httpx.get(b + "/api/public/stats").json()
    assert len(fresh) == 3  # the lifetime cap, across both
    assert last["budget"]["exhausted_by"] == "lifetime" and last["budget"]["lifetime_spent"] == 3.0
    with running(settings) as (c, _):  # a restart does not reset it
        again = httpx.get(c + "/api/public/stats").json()
        assert again["budget"]["exhausted_by"] == "lifetime"
        assert again["released_at"] == last["released_at"] == fresh[-1]


def test_public_stats_before_any_release_without_budget_is_503_with_a_reason(settings: Settings) -> None:
    with running(settings.with_(dp_epsilon="1", dp_budget=0.5), read_changes=False) as (base, _):
        r = httpx.get(base + "/api/public/stats")
        assert r.status_code == 503 and "budget" in r.json()["error"]
        assert int(r.headers["retry-after"]) > 0


# --- 2. the sign-in body ----------------------------------------------------------------------
def test_login_body_is_capped_and_has_a_deadline(settings: Settings) -> None:
    with running(settings.with_(request_timeout_s=0.5), read_changes=False) as (base, _):
        big = httpx.post(base + "/api/login", content=b'{"token": "' + b"x" * 10_000 + b'"}', headers=JSON)
        assert big.status_code == 413 and "larger than" in big.json()["error"]
        # a body that never completes: 408 after LVP_REQUEST_TIMEOUT_S
        host = urlsplit(base).netloc
        head = (
            f"POST /api/login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "Content-Length: 200\r\n\r\n"
        ).encode()
        t0 = time.monotonic()
        answer = raw_request(base, head + b'{"token": "')
        assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
        assert time.monotonic() - t0 < 5
        # a streamed (chunked) body without Content-Length is capped as it arrives
        chunks = (b"x" * 1000 for _ in range(10))
        assert httpx.post(base + "/api/login", content=chunks, headers=JSON).status_code == 413
        assert httpx.post(base + "/api/login", json={"token": TOKEN}).status_code == 200


# --- 3. behind the load balancer ---------------------------------------------------------------
def test_forwarded_scheme_and_client_from_trusted_proxies_only(settings: Settings) -> None:
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    with running(settings.with_(viewer_trusted_proxies=1), read_changes=False) as (base, app):
        r = httpx.post(base + "/api/login", json={"token": TOKEN}, headers=https)
        assert r.status_code == 200
        assert "secure" in [a.strip().lower() for a in r.headers["set-cookie"].split(";")]
        assert r.headers["strict-transport-security"].startswith("max-age=")
        assert httpx.get(base + "/health", headers=https).headers["strict-transport-security"]
        # the throttle counts per client, not per load balancer (all requests share one peer)
        app.state.login_throttle.max_failures = 2
        attacker = {"X-Forwarded-For": "198.51.100.66"}
        for _ in range(3):
            httpx.post(base + "/api/login", json={"token": "guess"}, headers=attacker)
        assert httpx.post(base + "/api/login", json={"token": TOKEN}, headers=attacker).status_code == 429
        other = {"X-Forwarded-For": "192.0.2.10"}
        assert httpx.post(base + "/api/login", json={"token": TOKEN}, headers=other).status_code == 200
        # only the entry the ALB appended counts: a client cannot pick its address
        spoof = {"X-Forwarded-For": "192.0.2.10, 198.51.100.66"}
        assert httpx.post(base + "/api/login", json={"token": TOKEN}, headers=spoof).status_code == 429

    with running(settings, read_changes=False) as (base, _):  # default 0: headers are not trusted
        r = httpx.post(base + "/api/login", json={"token": TOKEN}, headers=https)
        assert "secure" not in r.headers["set-cookie"].lower()
        assert "strict-transport-security" not in r.headers


# --- 4. tokens -----------------------------------------------------------------------------------
def test_api_jwts_need_exp_and_sessions_do_not_outlive_them(settings: Settings) -> None:
    now = int(time.time())
    with running(settings, read_changes=False) as (base, app):
        no_exp = make_jwt({"sub": "ops"})
        assert (
            httpx.get(base + "/api/stats", headers={"Authorization": f"Bearer {no_exp}"}).status_code == 401
        )
        assert httpx.post(base + "/api/login", json={"token": no_exp}).status_code == 401

        short = make_jwt({"sub": "ops", "exp": now + 300})
        r = httpx.post(base + "/api/login", json={"token": short})
        assert r.status_code == 200 and r.json()["expires_in"] <= 300
        value = r.headers["set-cookie"].split(";")[0].split("=", 1)[1]
        claims = jwt.decode(value, SECRET, algorithms=["HS256"], audience="lvp-session")
        assert claims["exp"] <= now + 300 and claims["lim"] == now + 300
        # renewing a half-spent session made from it still ends when the JWT does
        half = make_jwt(
            {
                "sub": "jwt:ops",
                "aud": "lvp-session",
                "exp": now + 100,
                "auth_time": now - 3000,
                "lim": now + 300,
            }
        )
        renewed = httpx.get(base + "/api/session", headers={"Cookie": f"{COOKIE}={half}"})
        assert renewed.status_code == 200
        new_value = renewed.headers["set-cookie"].split(";")[0].split("=", 1)[1]
        new_claims = jwt.decode(new_value, SECRET, algorithms=["HS256"], audience="lvp-session")
        assert now + 100 < new_claims["exp"] <= now + 300
        # and a ticket made from it too
        ticket = httpx.post(base + "/api/stream-ticket", headers={"Cookie": f"{COOKIE}={new_value}"}).json()
        assert ticket["expires_in"] <= 300
        assert app.state.auth.check_bearer(short).not_after == now + 300


def test_stream_tickets_are_single_use_across_processes(settings: Settings) -> None:
    produce_changes(settings, [("t-1", make_profile("t-1", "watching"))])
    with running(settings) as (a, _), running(settings) as (b, _):  # two viewer processes
        ticket = httpx.post(a + "/api/stream-ticket", headers=AUTH).json()["ticket"]
        path = f"/api/viewers/stream?ticket={ticket}"
        with SSEStream(b, path) as first:
            assert first.status == 200
            ev = first.next_event()
            assert ev is not None and ev.event == "snapshot"
        for base in (a, b):  # a replay, to the other process or the same one
            with SSEStream(base, path) as replay:
                assert replay.status == 401
        fresh = httpx.post(a + "/api/stream-ticket", headers=AUTH).json()["ticket"]
        with SSEStream(a, f"/api/viewers/stream?ticket={fresh}") as ok:
            assert ok.status == 200


# --- 5. CORS ---------------------------------------------------------------------------------------
def test_viewer_cors_has_its_own_origins_and_never_star_with_credentials(settings: Settings) -> None:
    s = settings.with_(cors_origins="https://shop.example.com", viewer_cors_origins="https://ops.example.com")
    with running(s, read_changes=False) as (base, _):
        ops = httpx.get(base + "/api/stats", headers={**AUTH, "Origin": "https://ops.example.com"})
        assert ops.headers["access-control-allow-origin"] == "https://ops.example.com"
        assert ops.headers["access-control-allow-credentials"] == "true"
        shop = httpx.get(base + "/api/stats", headers={**AUTH, "Origin": "https://shop.example.com"})
        assert "access-control-allow-origin" not in shop.headers  # the collector's origins only
    with running(settings, read_changes=False) as (base, _):  # default: same origin only
        r = httpx.get(base + "/api/stats", headers={**AUTH, "Origin": "https://ops.example.com"})
        assert "access-control-allow-origin" not in r.headers
    with running(settings.with_(viewer_cors_origins="*"), read_changes=False) as (base, _):
        r = httpx.get(base + "/api/public/stats", headers={"Origin": "https://any.example.org"})
        assert r.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in r.headers


# --- 6. /metrics -----------------------------------------------------------------------------------
def test_metrics_need_a_token_by_default_even_percent_encoded(settings: Settings) -> None:
    assert Settings.from_env({}).metrics_public is False
    with running(settings, read_changes=False) as (base, _):
        assert httpx.get(base + "/metrics").status_code == 401
        host = urlsplit(base).netloc
        for path in ("/%6detrics", "/%6D%65trics", "/metrics?x=1"):
            answer = raw_request(base, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            assert answer.startswith(b"HTTP/1.1 401"), (path, answer[:60])
        assert httpx.get(base + "/metrics", headers=AUTH).status_code == 200


# --- 7. login CSRF ----------------------------------------------------------------------------------
def test_sign_in_and_out_refuse_other_origins_and_non_json(settings: Settings) -> None:
    s = settings.with_(viewer_cors_origins="https://ops.example.com")
    with running(s, read_changes=False) as (base, _):
        form = httpx.post(base + "/api/login", data={"token": TOKEN})  # what an HTML form sends
        assert form.status_code == 415 and "application/json" in form.json()["error"]
        plain = httpx.post(
            base + "/api/login", content=b'{"token": "x"}', headers={"Content-Type": "text/plain"}
        )
        assert plain.status_code == 415
        evil = httpx.post(
            base + "/api/login", json={"token": TOKEN}, headers={"Origin": "https://evil.example"}
        )
        assert evil.status_code == 403 and "set-cookie" not in evil.headers
        assert (
            httpx.post(base + "/api/login", json={"token": TOKEN}, headers={"Origin": "null"}).status_code
            == 403
        )
        cross = httpx.post(
            base + "/api/login", json={"token": TOKEN}, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert cross.status_code == 403
        # same origin, a listed origin, and clients that send no Origin (curl) are accepted
        assert (
            httpx.post(base + "/api/login", json={"token": TOKEN}, headers={"Origin": base}).status_code
            == 200
        )
        listed = {"Origin": "https://ops.example.com"}
        assert httpx.post(base + "/api/login", json={"token": TOKEN}, headers=listed).status_code == 200
        assert httpx.post(base + "/api/login", json={"token": TOKEN}).status_code == 200
        # sign-out too (it needs the session)
        with httpx.Client(base_url=base) as page:
            assert page.post("/api/login", json={"token": TOKEN}, headers={"Origin": base}).status_code == 200
            out = page.post("/api/logout", json={}, headers={"Origin": "https://evil.example"})
            assert out.status_code == 403 and "set-cookie" not in out.headers
            assert page.post("/api/logout", content=b"", headers={"Origin": base}).status_code == 415
            done = page.post("/api/logout", json={}, headers={"Origin": base})
            assert done.status_code == 200 and "max-age=0" in done.headers["set-cookie"].lower()
