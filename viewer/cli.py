"""`lvp viewer [--host] [--port]`: the live viewer API and page in one uvicorn process."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from lvp.cli import setting_flag, settings_from_args

log = logging.getLogger("lvp.viewer")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("viewer", help="Run the live viewer API (SSE) and page.")
    setting_flag(p, "--host", "viewer_host")
    setting_flag(p, "--port", "viewer_port")
    setting_flag(p, "--push-interval", "push_interval_s")
    setting_flag(p, "--bootstrap-servers", "kafka_bootstrap_servers")
    setting_flag(p, "--endpoint-url", "aws_endpoint_url")
    p.set_defaults(func=_run)


def uvicorn_options() -> dict[str, Any]:
    """One process; no uvicorn access log (it would print query strings, which may carry an
    SSE ticket) — the app logs method, path, status and duration itself; no uvicorn proxy
    headers — the app reads them itself (``LVP_VIEWER_TRUSTED_PROXIES``, viewer.security)."""
    return {
        "access_log": False,
        "proxy_headers": False,
        "log_config": None,
        "http": "httptools",
        "loop": "uvloop",
        "server_header": False,
        "timeout_graceful_shutdown": 5,
    }


def _run(args: argparse.Namespace) -> int:
    import uvicorn

    from viewer.app import create_app

    settings = settings_from_args(args)
    app = create_app(settings)
    log.info("live page on http://%s:%d/", settings.viewer_host, settings.viewer_port)
    uvicorn.run(app, host=settings.viewer_host, port=settings.viewer_port, **uvicorn_options())
    return 0
