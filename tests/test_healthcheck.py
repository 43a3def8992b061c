"""lvp.healthcheck: the containers' curl-free health probe, against a real local HTTP server."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lvp.config import Settings
from lvp.healthcheck import default_urls, main, probe
from lvp.local.broker import free_port


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = 200 if self.path in ("/health", "/metrics") else 503
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"ok" if code == 200 else b"down")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_probe_reports_status_and_connection_errors(server: str) -> None:
    assert probe(f"{server}/health") is None
    assert probe(f"{server}/broken") == f"{server}/broken: HTTP 503"
    closed = f"http://127.0.0.1:{free_port()}/health"
    problem = probe(closed, timeout=2)
    assert problem is not None and problem.startswith(closed)
    assert probe("not a url") is not None


def test_main_passes_when_any_url_is_healthy(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    closed = f"http://127.0.0.1:{free_port()}/health"
    assert main([closed, f"{server}/metrics"]) == 0
    assert main([closed, f"{server}/broken"]) == 1
    assert "unhealthy" in capsys.readouterr().err


def test_default_urls_follow_the_settings() -> None:
    s = Settings.from_env(
        {"LVP_COLLECTOR_PORT": "9999", "LVP_VIEWER_PORT": "8888", "LVP_PROFILES_METRICS_PORT": "0"}
    )
    assert default_urls(s) == ["http://127.0.0.1:9999/health", "http://127.0.0.1:8888/health"]
    assert "http://127.0.0.1:9091/health" in default_urls(Settings.from_env({}))


def test_module_runs_as_a_command(server: str) -> None:
    ok = subprocess.run([sys.executable, "-m", "lvp.healthcheck", f"{server}/health"], timeout=60)
    bad = subprocess.run(
        [sys.executable, "-m", "lvp.healthcheck", f"{server}/broken"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0
    assert bad.returncode == 1 and "HTTP 503" in bad.stderr
