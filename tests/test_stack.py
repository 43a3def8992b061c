"""`lvp up` smoke test: the whole stack as one subprocess (embedded Tansu and DynamoDB Local),
50 simulated viewers through the real collector, the live API agrees with the simulator's
expected statuses, Ctrl-C stops everything and leaves no process behind."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from lvp.local.broker import free_port, stop_process, wait_for_port
from lvp.local.stack import EMBEDDED_PARTITIONS, embedded_partitions

TOKEN = "stack-smoke-token"


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_lvp_up_runs_the_stack_and_stops_cleanly(tmp_path: Path, output_dir: Path) -> None:
    ports = {
        name: free_port() for name in ("collector", "viewer", "tracker", "broker", "dynamodb", "metrics")
    }
    env = {
        **os.environ,
        "LVP_STATE_DIR": str(tmp_path / "state"),
        "LVP_API_TOKENS": TOKEN,
        "LVP_ACTIVE_TIMEOUT_S": "300",
        "LVP_FLUSH_INTERVAL_S": "0.5",
        "KAFKA_SESSION_TIMEOUT_MS": "2000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "300",
    }
    for var in ("KAFKA_BOOTSTRAP_SERVERS", "AWS_ENDPOINT_URL", "LVP_PSEUDONYM_KEY", "LVP_DEV"):
        env.pop(var, None)
    log = (output_dir / "lvp-up.log").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "lvp.cli", "up",
         "--collector-port", str(ports["collector"]), "--viewer-port", str(ports["viewer"]),
         "--tracker-port", str(ports["tracker"]), "--broker-port", str(ports["broker"]),
         "--dynamodb-port", str(ports["dynamodb"]), "--metrics-port", str(ports["metrics"])],
        env=env, stdout=log, stderr=subprocess.STDOUT,
        # as a script's background job starts it: SIGINT ignored, so Python installs no Ctrl-C
        # handler of its own; the SIGINT below must stop it all the same
        preexec_fn=_ignore_sigint,
    )  # fmt: skip
    viewer = f"http://127.0.0.1:{ports['viewer']}"
    try:
        deadline = time.monotonic() + 120
        while b"is up" not in (output_dir / "lvp-up.log").read_bytes():
            assert up.poll() is None, (output_dir / "lvp-up.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "lvp up did not come up"
            time.sleep(0.3)
        text = (output_dir / "lvp-up.log").read_text()
        assert f"http://127.0.0.1:{ports['tracker']}/" in text and TOKEN in text
        assert topic_partitions(ports["broker"]) == {
            "snowplow-enriched-good": 1, "snowplow-bad-rows": 1, "lvp-viewer-changes": 1,
        }  # fmt: skip
        assert httpx.get(f"http://127.0.0.1:{ports['tracker']}/").status_code == 200

        expect = tmp_path / "expect.jsonl"
        sim = subprocess.run(
            [sys.executable, "-m", "lvp.cli", "simulate", "--viewers", "50", "--duration", "60",
             "--time-scale", "20", "--ping-interval", "5", "--seed", "7", "--quiet",
             "--collector", f"http://127.0.0.1:{ports['collector']}", "--expect", str(expect)],
            env={**env, "LVP_DEV": "1"}, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert sim.returncode == 0, sim.stdout + sim.stderr
        rows = [orjson.loads(line) for line in expect.read_text().splitlines()]
        assert len(rows) == 50 and all(r["viewer_id"] for r in rows)
        want_active = {r["viewer_id"]: r["expected_status"] for r in rows if r["expected_status"] != "ended"}
        ended = {r["viewer_id"] for r in rows if r["expected_status"] == "ended"}

        auth = {"Authorization": f"Bearer {TOKEN}"}
        got: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            snap = httpx.get(f"{viewer}/api/viewers?limit=500", headers=auth).json()
            got = {v["viewer_id"]: v["status"] for v in snap["viewers"]}
            if got == want_active:
                break
            time.sleep(0.5)
        assert got == want_active
        assert not ended & set(got)
        print(f"FIGURE lvp-up: 50 viewers, {len(want_active)} active as expected, {len(ended)} ended")
        # profiles are in DynamoDB too (the viewer API reads them from there)
        some = next(iter(ended or want_active))
        assert httpx.get(f"{viewer}/api/profiles/{some}", headers=auth).status_code == 200
    finally:
        family = descendants(up.pid)
        up.send_signal(signal.SIGINT)
        try:
            code = up.wait(60)
        except subprocess.TimeoutExpired:
            for pid in (up.pid, *family):  # leave nothing running for the tests after this one
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            raise
        log.close()
    assert code == 0
    time.sleep(0.5)
    left = [pid for pid in family if alive(pid)]
    assert len(family) >= 6  # broker, DynamoDB, collector, profiles, viewer, tracker page
    assert left == [], f"orphan processes: {left}"


def topic_partitions(broker_port: int) -> dict[str, int]:
    """Partition count of every topic on the broker at ``broker_port``."""
    from confluent_kafka.admin import AdminClient

    meta = AdminClient({"bootstrap.servers": f"127.0.0.1:{broker_port}"}).list_topics(timeout=10)
    return {name: len(t.partitions) for name, t in meta.topics.items() if not name.startswith("__")}


def test_the_embedded_broker_gets_one_partition_unless_one_is_set() -> None:
    assert embedded_partitions(None, {}) == EMBEDDED_PARTITIONS == 1
    assert embedded_partitions(None, {"LVP_TOPIC_PARTITIONS": " "}) == 1  # empty: not set
    assert embedded_partitions(None, {"LVP_TOPIC_PARTITIONS": "6"}) is None  # the setting as set
    assert embedded_partitions(2, {}) is None  # --partitions 2
    assert embedded_partitions(2, {"LVP_TOPIC_PARTITIONS": "6"}) is None


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _up(ports: dict[str, int], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "lvp.cli", "up",
         "--collector-port", str(ports["collector"]), "--viewer-port", str(ports["viewer"]),
         "--tracker-port", str(ports["tracker"]), "--broker-port", str(ports["broker"]),
         "--dynamodb-port", str(ports["dynamodb"]), "--metrics-port", str(ports["metrics"])],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def _stack_env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "LVP_STATE_DIR": str(tmp_path / "state"), "LVP_API_TOKENS": TOKEN}
    for var in ("KAFKA_BOOTSTRAP_SERVERS", "AWS_ENDPOINT_URL", "LVP_PSEUDONYM_KEY", "LVP_DEV"):
        env.pop(var, None)
    return env


PORT_NAMES = ("collector", "viewer", "tracker", "broker", "dynamodb", "metrics")


@pytest.mark.slow
def test_sigterm_stops_the_whole_stack(tmp_path: Path, output_dir: Path) -> None:
    """A process manager's SIGTERM (docker stop, systemd, timeout) stops every child and the
    embedded broker and DynamoDB, as Ctrl-C does."""
    ports = {name: free_port() for name in PORT_NAMES}
    log = output_dir / "lvp-up-sigterm.log"
    up = _up(ports, {**_stack_env(tmp_path), "LVP_TOPIC_PARTITIONS": "3"}, log)
    try:
        deadline = time.monotonic() + 120
        while b"is up" not in log.read_bytes():
            assert up.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "lvp up did not come up"
            time.sleep(0.3)
        # a partition count that is set is kept (the default for the embedded broker is 1)
        assert set(topic_partitions(ports["broker"]).values()) == {3}
        family = descendants(up.pid)
        assert len(family) >= 6
        up.send_signal(signal.SIGTERM)
        code = up.wait(60)
    finally:
        if up.poll() is None:
            up.kill()
    assert code == 0 and "stopping" in log.read_text()
    time.sleep(0.5)
    assert [pid for pid in family if alive(pid)] == []


def test_ports_in_use_are_refused_before_anything_starts(tmp_path: Path, output_dir: Path) -> None:
    ports = {name: free_port() for name in PORT_NAMES}
    with (
        socket.create_server(("127.0.0.1", ports["viewer"])),
        socket.create_server(("127.0.0.1", ports["broker"])),
    ):
        log = output_dir / "lvp-up-busy.log"
        up = _up(ports, _stack_env(tmp_path), log)
        family: set[int] = set()
        try:
            code = up.wait(60)
        finally:
            if up.poll() is None:
                family = descendants(up.pid)
                up.kill()
    text = log.read_text()
    assert code == 2, text
    assert f"127.0.0.1:{ports['viewer']} (--viewer-port)" in text
    assert f"127.0.0.1:{ports['broker']} (--broker-port)" in text
    assert f"{ports['collector']}" not in text.split("already in use")[1]  # only the busy ones
    assert "Kafka: embedded" not in text and not family  # nothing was started


@pytest.mark.services  # a Tansu broker
def test_lvp_broker_stops_its_broker_on_sigterm() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lvp.cli", "broker", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, timeout=30, proc=proc)
        family = descendants(proc.pid)
        assert family  # the tansu process
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.3)
    assert [pid for pid in family if alive(pid)] == []


@pytest.mark.services  # DynamoDB Local
def test_profiles_survive_a_restart_unless_fresh(tmp_path: Path) -> None:
    """`lvp up`'s DynamoDB Local keeps its data in LVP_STATE_DIR/dynamodb: a profile written
    before a stop is there after a start, and `--fresh` starts empty."""
    from lvp.config import Settings
    from lvp.dynamo import create_tables, dynamodb_client
    from lvp.local.stack import DB_DIR, start_local_dynamodb

    state = tmp_path / "state"
    settings = Settings.from_env({}, table_profiles="viewer_profiles", table_history="viewer_history")
    key = {"viewer_id": {"S": "3f9a0c2e" * 8}}

    def run(fresh: bool, check: Callable[[Any], None], in_memory: bool = False) -> None:
        proc, url, kind = start_local_dynamodb(state, free_port(), fresh=fresh, in_memory=in_memory)
        try:
            assert kind == "dynamodb-local"
            s = settings.with_(aws_endpoint_url=url)
            create_tables(s)  # what `lvp up` does next: idempotent
            check(dynamodb_client(s))
        finally:
            stop_process(proc)  # what `lvp up` does at the stop (SIGTERM)

    def write(db: Any) -> None:
        item = {**key, "status": {"S": "watching"}, "plays": {"N": "3"}}
        db.put_item(TableName=settings.table_profiles, Item=item)

    def kept(db: Any) -> None:
        item = db.get_item(TableName=settings.table_profiles, Key=key, ConsistentRead=True).get("Item")
        assert item is not None and item["status"] == {"S": "watching"} and item["plays"] == {"N": "3"}

    def gone(db: Any) -> None:
        assert "Item" not in db.get_item(TableName=settings.table_profiles, Key=key, ConsistentRead=True)

    run(False, write)
    assert any((state / DB_DIR).iterdir())  # the data lives in the state folder
    run(False, kept)
    run(False, kept)
    run(True, gone)
    run(False, gone)
    run(False, write)
    # --in-memory: DynamoDB Local neither reads nor writes the state folder
    files_before = sorted(p.stat().st_mtime_ns for p in (state / DB_DIR).iterdir())
    run(False, gone, in_memory=True)
    run(False, write, in_memory=True)
    run(False, gone, in_memory=True)
    assert sorted(p.stat().st_mtime_ns for p in (state / DB_DIR).iterdir()) == files_before
    run(False, kept)  # what was kept on disk is still there


def test_up_has_a_fresh_flag() -> None:
    from lvp.cli import build_parser

    args = build_parser().parse_args(["up", "--fresh"])
    assert args.fresh is True
    assert build_parser().parse_args(["up"]).fresh is False
    assert build_parser().parse_args(["up", "--in-memory"]).in_memory is True
    assert build_parser().parse_args(["up"]).in_memory is False
