"""`lvp collector`: run the collector (uvicorn, uvloop + httptools, one process; see
:mod:`collector.server`)."""

from __future__ import annotations

import argparse

from lvp.cli import setting_flag, settings_from_args


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("collector", help="Run the Snowplow-compatible collector (tracker protocol -> Kafka).")
    setting_flag(p, "--host", "collector_host")
    setting_flag(p, "--port", "collector_port")
    setting_flag(p, "--bootstrap-servers", "kafka_bootstrap_servers")
    setting_flag(p, "--topic-good", "topic_good")
    setting_flag(p, "--topic-bad", "topic_bad")
    setting_flag(p, "--cors-origins", "cors_origins")
    setting_flag(p, "--schema-dirs", "schema_dirs")
    setting_flag(p, "--iglu-resolver", "iglu_resolver")
    setting_flag(p, "--request-timeout", "request_timeout_s")
    setting_flag(p, "--dev", "dev")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import uvicorn

    from collector.app import create_app
    from collector.server import uvicorn_options

    settings = settings_from_args(args)
    app = create_app(settings)
    uvicorn.run(app, **uvicorn_options(settings))  # httptools with slow-client deadlines
    return 0
