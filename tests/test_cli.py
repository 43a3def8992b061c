"""The `lvp` entry point: a closed output pipe ends a command quietly (exit 141, no traceback); a
stale compiled build is warned about."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lvp.local.broker import free_port


def test_a_reader_that_goes_away_gets_no_traceback() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `lvp profile list --active | head -1` once head has its line
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "lvp.cli", "settings"],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert proc.returncode == 141, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr


def _lvp(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lvp.cli", *args],
        env={**os.environ, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.slow  # waits out the 15 s Kafka and DynamoDB connection timeouts
def test_an_unreachable_service_is_one_clear_line() -> None:
    closed = free_port()  # nothing listens there
    topics = _lvp("topics", "create", KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{closed}")
    tables = _lvp("tables", "create", AWS_ENDPOINT_URL=f"http://127.0.0.1:{closed}")
    assert (topics.returncode, tables.returncode) == (1, 1)
    kafka_line = f"lvp: Kafka at 127.0.0.1:{closed} (KAFKA_BOOTSTRAP_SERVERS) did not answer within 15 s"
    assert kafka_line in topics.stderr.splitlines()  # after librdkafka's own connection errors
    assert tables.stderr.startswith(f"lvp: DynamoDB at http://127.0.0.1:{closed} (AWS_ENDPOINT_URL): ")
    assert "Traceback" not in topics.stderr + tables.stderr


def test_a_stale_compiled_build_is_warned_about(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lvp import cli, compiled

    line = "compiled modules older than their source (run `make setup`): collector.protocol"
    monkeypatch.setattr(compiled, "stale", lambda: ["collector.protocol"])
    assert cli.main(["settings"]) == 0
    assert line in capsys.readouterr().err
    monkeypatch.setattr(compiled, "stale", lambda: [])
    assert cli.main(["settings"]) == 0
    assert "compiled modules" not in capsys.readouterr().err
