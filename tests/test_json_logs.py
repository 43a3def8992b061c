"""LVP_LOG_FORMAT=json: every service (`lvp collector`, `lvp profiles`, `lvp viewer`, `lvp topics
create`) run as a real process against the session broker and DynamoDB Local writes only JSON
objects, one per line, with time, level, logger and message (and exception for tracebacks)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from lvp.config import Settings
from lvp.dynamo import create_tables
from lvp.kafka import create_topics
from lvp.local.broker import free_port
from lvp.logs import JsonFormatter, setup_logging

KEYS = {"time", "level", "logger", "message"}


def json_lines(text: str) -> list[dict[str, object]]:
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}\n--- all output ---\n{text}")
        assert isinstance(record, dict) and set(record) >= KEYS, line
        assert str(record["time"]).endswith("Z") and record["level"] in {"DEBUG", "INFO", "WARNING", "ERROR"}
        records.append(record)
    return records


def env_of(settings: Settings, endpoint: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LVP_", "KAFKA_"))}
    env.update(
        {
            "LVP_LOG_FORMAT": "json",
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "LVP_TOPIC_GOOD": settings.topic_good,
            "LVP_TOPIC_BAD": settings.topic_bad,
            "LVP_TOPIC_CHANGES": settings.topic_changes,
            "LVP_CONSUMER_GROUP": settings.consumer_group,
            "LVP_TABLE_PROFILES": settings.table_profiles,
            "LVP_TABLE_HISTORY": settings.table_history,
            "LVP_PSEUDONYM_KEY": "json-logs-test-key-0123456789abcdef",
            "LVP_API_TOKENS": "json-logs-token",
            "AWS_ENDPOINT_URL": endpoint,
            **extra,
        }
    )
    return env


def run_until_up(args: list[str], env: dict[str, str], url: str, tmp_path: Path) -> tuple[str, str]:
    """Start `lvp <args>`, wait until ``url`` answers 200, stop it with SIGTERM; (stdout, stderr)."""
    out, err = tmp_path / f"{args[0]}.out", tmp_path / f"{args[0]}.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([sys.executable, "-m", "lvp.cli", *args], env=env, stdout=o, stderr=e)
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, f"lvp {args[0]} exited:\n{err.read_text()}"
                try:
                    with urllib.request.urlopen(url, timeout=2) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    pass
                assert time.monotonic() < deadline, f"lvp {args[0]} did not come up:\n{err.read_text()}"
                time.sleep(0.2)
            # and until it logged something (the consumer logs its partition assignment)
            deadline = time.monotonic() + 30
            while not err.read_text().strip() and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.5)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return out.read_text(), err.read_text()


@pytest.fixture
def stack(make_settings: Callable[..., Settings], dynamodb_local: str) -> tuple[Settings, str]:
    settings = make_settings(aws_endpoint_url=dynamodb_local)
    create_topics(settings)
    create_tables(settings)
    return settings, dynamodb_local


@pytest.mark.parametrize("service", ["collector", "profiles", "viewer"])
def test_each_service_writes_json_lines(service: str, stack: tuple[Settings, str], tmp_path: Path) -> None:
    settings, endpoint = stack
    port = free_port()
    args, url = {
        "collector": (["collector", "--port", str(port)], f"http://127.0.0.1:{port}/health"),
        "profiles": (["profiles", "--metrics-port", str(port)], f"http://127.0.0.1:{port}/metrics"),
        "viewer": (["viewer", "--port", str(port)], f"http://127.0.0.1:{port}/health"),
    }[service]
    stdout, stderr = run_until_up(args, env_of(settings, endpoint), url, tmp_path)
    records = json_lines(stderr) + json_lines(stdout)
    assert records, f"lvp {service} logged nothing"
    assert any(
        str(r["logger"]).startswith(("lvp", "collector", "profiles", "viewer", "uvicorn")) for r in records
    )


def test_the_topics_job_writes_json_lines(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    env = env_of(settings, "")
    proc = subprocess.run(
        [sys.executable, "-m", "lvp.cli", "topics", "create"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    json_lines(proc.stderr)


def test_text_stays_the_default_and_a_bad_format_is_refused(make_settings: Callable[..., Settings]) -> None:
    env = env_of(make_settings(), "", LVP_LOG_FORMAT="xml")
    proc = subprocess.run(
        [sys.executable, "-m", "lvp.cli", "settings"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "LVP_LOG_FORMAT" in proc.stderr
    assert Settings.from_env({}).log_format == "text"


def test_tracebacks_go_into_the_exception_field(capsys: pytest.CaptureFixture[str]) -> None:
    saved = logging.getLogger().handlers[:], logging.getLogger().level
    try:
        setup_logging(logging.INFO, "json")
        try:
            raise RuntimeError("kaput")
        except RuntimeError:
            logging.getLogger("lvp.test").exception("it failed: %s", "badly")
    finally:
        root = logging.getLogger()
        root.handlers[:], root.level = saved
    (record,) = json_lines(capsys.readouterr().err)
    assert (record["level"], record["logger"], record["message"]) == ("ERROR", "lvp.test", "it failed: badly")
    assert "RuntimeError: kaput" in str(record["exception"]) and "Traceback" in str(record["exception"])
    assert json.loads(JsonFormatter().format(logging.makeLogRecord({"msg": "x"})))["message"] == "x"
