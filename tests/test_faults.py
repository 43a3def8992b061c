"""Faults — nothing lost, nothing counted twice (issue 7). Each test prints its figure
(``FIGURE ...``) for BENCHMARKS.md / the README's reliability section.

* the profiles consumer SIGKILLed 5 times at random points of a 20,000-event replay;
* the broker cut off for 30 s while `lvp simulate` drives the collector;
* DynamoDB cut off for 30 s while events flow, and DynamoDB throttling;
* the viewer API restarted under connected SSE clients.

Outages are cuts of a loopback TCP proxy in front of the real server (tests/tcpproxy.py), so the
server keeps its data; the session broker and DynamoDB Local are never stopped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from collector_server import serve_collector
from prometheus_client import generate_latest
from support.faults import (
    CommittedOffsets,
    ThrottlingProxy,
    broker_behind_proxy,
    feeding,
    metric,
    replay,
    tally,
    topic_event_counts,
)
from support.profiles import (
    consumer_thread,
    dump_tables,
    expected,
    produce,
    run_consumer,
    settings_env,
    wait_for,
)
from support.viewer import SSEEvent, SSEStream, make_profile, now_iso, produce_changes
from tcpproxy import TcpProxy

from lvp.config import Settings
from lvp.dynamo import create_tables
from lvp.kafka import create_topics
from lvp.local.broker import free_port
from lvp.local.simulate import Counters, Viewer, simulate
from lvp.pseudonym import pseudonymize
from profiles.metrics import ProfilesMetrics
from profiles.store import ProfileStore

ROOT = Path(__file__).resolve().parent.parent
LVP = [sys.executable, "-m", "lvp.cli", "--log-level", "WARNING"]
OUTAGE_S = 30.0


def ready(settings: Settings) -> Settings:
    create_topics(settings)
    create_tables(settings)
    return settings


def lines_of(pairs: list[tuple[str, str]]) -> list[str]:
    return [line for _key, line in pairs]


def fault_seed() -> int:
    """Random kill points each run; LVP_FAULT_SEED replays a run (the seed is in the figure)."""
    return int(os.environ.get("LVP_FAULT_SEED") or random.SystemRandom().randrange(1 << 32))


def figure(text: str) -> None:
    print(f"FIGURE {text}", flush=True)


# --------------------------------------------------------------------------------------------------
# 1. the consumer SIGKILLed at random points
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_consumer_sigkilled_five_times_loses_and_doubles_nothing(
    make_settings: Callable[..., Settings], dynamodb_local: str, output_dir: Path
) -> None:
    seed = fault_seed()
    rng = random.Random(seed)
    total, kills = 20_000, 5
    env = ready(
        make_settings(
            aws_endpoint_url=dynamodb_local,
            flush_interval_s=0.1,
            flush_max_dirty=150,
            # status changes wait 1 s for their write: a kill also finds some unwritten
            status_write_delay_s=1.0,
            profiles_metrics_port=0,
        )
    )
    pairs = replay("kill", 400, total, int(time.time() * 1000) - 3_600_000, seed=20241116)
    want = expected(lines_of(pairs))
    log = open(output_dir / "faults-sigkill.log", "ab")  # noqa: SIM115
    at_kill: list[tuple[int, int]] = []  # (offsets committed, events produced) at each kill
    # The replay is produced at a steady pace, so a kill before its end is mid-stream by
    # construction. Each consumer is killed once it has committed progress of its own, at a random
    # moment after that: mid-batch, mid-load, mid-flush or mid-commit.
    with CommittedOffsets(env) as committed, feeding(env, pairs, over_s=40) as feeder:
        try:
            for _ in range(kills):
                proc = subprocess.Popen(
                    [*LVP, "profiles"], cwd=ROOT, env=settings_env(env), stdout=log, stderr=log
                )
                try:
                    last = at_kill[-1][0] if at_kill else 0
                    wait_for(
                        lambda: proc.poll() is not None or committed.total() > last,  # noqa: B023
                        90,
                        "a commit by the restarted consumer",
                    )
                    assert proc.poll() is None, f"the consumer exited with {proc.returncode}"
                    time.sleep(rng.uniform(0, 1.0))
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(10)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
                at_kill.append((committed.total(), feeder.produced))
                assert at_kill[-1][0] < total, "a kill landed after the end of the replay"
        except BaseException:
            log.close()
            raise
    # the reference: one uninterrupted consumer over the same topic, into its own tables
    reference = ready(
        env.with_(
            consumer_group=env.consumer_group + "-ref",
            table_profiles=env.table_profiles + "-ref",
            table_history=env.table_history + "-ref",
            topic_changes=env.topic_changes + "-ref",
        )
    )
    ref_thread = threading.Thread(
        target=run_consumer, args=(reference,), kwargs={"timeout": 180}, daemon=True
    )
    ref_thread.start()
    with log, CommittedOffsets(env) as committed:
        final = subprocess.run(
            [*LVP, "profiles", "--exit-at-end"],
            cwd=ROOT,
            env=settings_env(env),
            stdout=log,
            stderr=log,
            timeout=180,
        )
        assert final.returncode == 0
        assert committed.total() == total

    got = dump_tables(env)
    ref_thread.join(180)
    assert not ref_thread.is_alive(), "the uninterrupted reference run did not finish"
    uninterrupted = dump_tables(reference)
    lost, double = tally(got, want)
    figure(
        f"consumer-sigkill: {kills} kills during a paced replay (committed/produced at the kills: "
        f"{', '.join(f'{c}/{p}' for c, p in at_kill)}), {total} events, "
        f"{len(want)} viewers, {lost} lost, {double} double-counted (seed {seed})"
    )
    assert (lost, double) == (0, 0)
    assert got == want  # profiles and histories exactly those of the in-order engine
    assert got == uninterrupted  # ... and of an uninterrupted consumer


# --------------------------------------------------------------------------------------------------
# 2. the broker cut off for 30 s during `lvp simulate`
# --------------------------------------------------------------------------------------------------
def collector_metrics(running: Any) -> str:
    return generate_latest(running.collector.metrics.registry).decode()


@pytest.mark.slow
def test_broker_outage_during_simulate_loses_no_accepted_event(
    make_settings: Callable[..., Settings], dynamodb_local: str, output_dir: Path
) -> None:
    with broker_behind_proxy(output_dir / "faults-broker.log") as (bootstrap, proxy):
        env = ready(
            make_settings(
                kafka_bootstrap_servers=bootstrap,
                aws_endpoint_url=dynamodb_local,
                retry_after_s=1,
                flush_interval_s=0.2,
                profiles_metrics_port=0,
            )
        )
        result: list[tuple[list[Viewer], Counters]] = []
        with serve_collector(env) as running, consumer_thread(env) as consumer:

            def drive() -> None:
                # One connection, like a tracker: each viewer's events leave in order. (With several,
                # a batch stuck in retries during the outage can land after newer events of the same
                # viewer; more than LVP_REORDER_WINDOW_S older, the engine ignores it as too late.)
                run = simulate(
                    running.url, 20, 240, ping_interval=10, time_scale=6, batch_size=10, connections=1,
                    seed=7, progress=None,
                )  # fmt: skip
                result.append(asyncio.run(run))

            sim = threading.Thread(target=drive, name="simulate", daemon=True)
            sim.start()
            wait_for(lambda: consumer.stats.applied >= 50, 60, "events flowing end to end")
            proxy.cut()
            cut_at = time.time()
            # the collector refuses with 503 + Retry-After while Kafka is unreachable
            wait_for(
                lambda: metric(collector_metrics(running), "lvp_collector_requests_total", code="503"),
                20,
                "503s",
            )
            probe = httpx.post(
                running.url + "/com.snowplowanalytics.snowplow/tp2",
                json={"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
                      "data": [{"e": "pv", "tv": "probe", "p": "web", "duid": "probe-viewer", "eid": "0b7f1a3c-1111-4a3c-9d6e-000000000001"}]},
                timeout=30,
            )  # fmt: skip
            assert probe.status_code == 503 and probe.headers["Retry-After"] == "1"
            time.sleep(max(0.0, cut_at + OUTAGE_S - time.time()))  # the outage itself
            assert sim.is_alive(), "the simulation ended during the outage: it did not span it"
            proxy.restore()
            restored_at = time.time()
            sim.join(180)
            assert not sim.is_alive() and result, "the simulator did not get every event accepted"
            population, counters = result[0]
            key = env.require_pseudonym_key()
            want = {pseudonymize(v.uid or v.duid, key): v for v in population}

            def mismatches() -> dict[str, tuple[int, int]]:
                stored = dump_tables(env)
                out = {}
                for vid, v in want.items():
                    got = ((stored.get(vid) or {}).get("profile") or {}).get("events") or 0
                    if got != v.events_sent:
                        out[vid] = (got, v.events_sent)
                return out

            try:
                wait_for(lambda: not mismatches(), 90, "every accepted event in the profiles")
            except AssertionError:
                in_topic = topic_event_counts(env)
                detail = {
                    vid[:12]: (got, sent, in_topic.get(vid, 0)) for vid, (got, sent) in mismatches().items()
                }
                raise AssertionError(f"stored vs sent vs unique in Kafka, per viewer: {detail}") from None
            served_503 = metric(collector_metrics(running), "lvp_collector_requests_total", code="503")
        stored = dump_tables(env)
    assert counters.retried > 0 and served_503 > 0
    assert counters.accepted == counters.sent == sum(v.events_sent for v in population)
    statuses = {vid: stored[vid]["profile"]["status"] for vid in want}
    assert statuses == {vid: v.status for vid, v in want.items()}
    in_profiles = sum(stored[vid]["profile"]["events"] for vid in want)
    figure(
        f"broker-outage: {restored_at - cut_at:.0f} s outage during `lvp simulate` ({len(population)} viewers, "
        f"{counters.sent} events), {served_503:.0f} 503 answers with Retry-After, {counters.retried} event "
        f"sends retried, {counters.accepted} accepted, {in_profiles} in the profiles, "
        f"{counters.accepted - in_profiles} lost"
    )


# --------------------------------------------------------------------------------------------------
# 3. DynamoDB cut off for 30 s while events flow; DynamoDB throttling
# --------------------------------------------------------------------------------------------------
def flush_backoffs(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The delays the consumer announced after failed flushes, in order."""
    pattern = re.compile(r"^DynamoDB: flush .*retrying in ([0-9.]+)s$")
    return [
        float(m.group(1))
        for r in caplog.records
        if r.name == "profiles.consumer" and (m := pattern.match(r.getMessage()))
    ]


@pytest.mark.slow
def test_dynamodb_outage_stops_commits_backs_off_and_resumes_exactly(
    make_settings: Callable[..., Settings], dynamodb_local: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="profiles.consumer")
    proxy = TcpProxy("127.0.0.1", int(dynamodb_local.rsplit(":", 1)[1]))
    try:
        env = ready(
            make_settings(
                aws_endpoint_url=proxy.url, flush_interval_s=0.2, flush_max_dirty=30, profiles_metrics_port=0
            )
        )
        pairs = replay("ddb-outage", 150, 7_500, int(time.time() * 1000) - 3_600_000, seed=7)
        n = len(pairs)
        before, during, after = pairs[: n // 5], pairs[n // 5 : n * 4 // 5], pairs[n * 4 // 5 :]
        produce(env, before)
        with consumer_thread(env) as c, CommittedOffsets(env) as committed:
            wait_for(lambda: committed.total() == len(before), 60, "commits before the outage")
            published = c.stats.published
            proxy.cut()
            cut_at = time.monotonic()
            with feeding(env, during, OUTAGE_S * 0.8):  # events keep coming during the outage
                wait_for(lambda: c.stats.flush_failures >= 1, 30, "a failed flush")
                frozen = committed.offsets()
                checks = 0
                while time.monotonic() < cut_at + OUTAGE_S:
                    assert committed.offsets() == frozen, "an offset was committed while DynamoDB was down"
                    checks += 1
                    time.sleep(0.5)
            applied_in_outage = c.stats.applied - len(before)
            assert applied_in_outage > 0  # consumption went on in memory ...
            assert c.stats.published > published  # ... and the live view kept getting changes
            assert c.stats.load_failures >= 1  # viewers first seen in the outage waited for their state
            proxy.restore()
            outage = time.monotonic() - cut_at
            produce(env, after)
            wait_for(lambda: committed.total() == n, 120, "every offset committed after recovery")
            backoffs = flush_backoffs(caplog)
            flush_failures = c.stats.flush_failures
            messages = [r.getMessage() for r in caplog.records if r.name == "profiles.consumer"]
        got = dump_tables(env)
    finally:
        proxy.close()
    want = expected(lines_of(pairs))
    lost, double = tally(got, want)
    figure(
        f"dynamodb-outage: {outage:.0f} s outage with events flowing ({n} events, {len(want)} viewers, "
        f"{applied_in_outage} applied in memory during it), committed offsets unchanged in {checks} checks, "
        f"{flush_failures} failed flushes with backoff {backoffs} s, {lost} lost, {double} double-counted"
    )
    assert backoffs == sorted(backoffs) and backoffs[-1] >= 8 * backoffs[0]  # exponential backoff
    assert any("consumption paused" in m for m in messages)  # backpressure while dirty viewers piled up
    assert any("DynamoDB writes succeed again" in m for m in messages)
    assert (lost, double) == (0, 0)
    assert got == want


@pytest.mark.slow
def test_dynamodb_throttling_is_counted_retried_and_loses_nothing(
    make_settings: Callable[..., Settings], dynamodb_local: str
) -> None:
    proxy = ThrottlingProxy(dynamodb_local, operations=("BatchWriteItem",))
    try:
        env = ready(make_settings(aws_endpoint_url=proxy.url, flush_interval_s=0.1, profiles_metrics_port=0))
        pairs = replay("ddb-throttle", 80, 4_000, int(time.time() * 1000) - 3_600_000, seed=11)
        n = len(pairs)
        # a short burst while every write is throttled (a failed flush stops at its first batch that gives up)
        first, second, third = pairs[: n * 3 // 10], pairs[n * 3 // 10 : n * 4 // 10], pairs[n * 4 // 10 :]
        produce(env, first)
        with consumer_thread(env) as c, CommittedOffsets(env) as committed:
            wait_for(lambda: committed.total() == len(first), 60, "commits before throttling")
            proxy.fraction = 1.0  # every write throttled: flushes fail, nothing is committed
            produce(env, second)
            wait_for(lambda: c.stats.flush_failures >= 1, 30, "a throttled flush")
            frozen = committed.offsets()
            wait_for(lambda: c.stats.flush_failures >= 3, 60, "two more throttled flushes")
            assert committed.offsets() == frozen, "an offset was committed while every write was throttled"
            assert c.stats.applied == len(first) + len(second)
            proxy.fraction = 0.3  # some writes throttled: the store's retries get them through
            produce(env, third)
            wait_for(lambda: committed.total() == n, 120, "every offset committed under throttling")
            throttles = metric(
                generate_latest(c.metrics.registry).decode(), "lvp_profiles_dynamodb_throttles_total"
            )
            throttled, forwarded, failures = proxy.throttled, proxy.forwarded, c.stats.flush_failures
        got = dump_tables(env)
    finally:
        proxy.close()
    want = expected(lines_of(pairs))
    lost, double = tally(got, want)
    figure(
        f"dynamodb-throttling: {throttled} BatchWriteItem calls answered ProvisionedThroughputExceeded "
        f"(100% then 30%), {throttles:.0f} counted in lvp_profiles_dynamodb_throttles_total, {failures} failed "
        f"flushes retried, {n} events, {lost} lost, {double} double-counted"
    )
    assert throttles == throttled > 0  # every throttle answer counted
    assert forwarded > 0
    assert (lost, double) == (0, 0)
    assert got == want


@pytest.mark.slow
def test_half_throttled_backlog_commits_step_by_step_and_ends_exact(
    make_settings: Callable[..., Settings], dynamodb_local: str
) -> None:
    """A backlog of ~70 write batches, half the BatchWriteItem calls throttled and 3 attempts per
    batch (one batch in 8 gives up): nearly every flush fails somewhere, but keeps what it wrote
    and commits up to its first unwritten event, so the committed offsets rise flush after flush
    and the end is exact. (Retrying whole flushes could not finish: all batches of one flush
    would have to get through, about 1 chance in 10,000.)"""
    proxy = ThrottlingProxy(dynamodb_local, operations=("BatchWriteItem",), seed=3)
    try:
        env = ready(make_settings(aws_endpoint_url=proxy.url, flush_interval_s=0.1, profiles_metrics_port=0))
        pairs = replay("ddb-backlog", 200, 4_000, int(time.time() * 1000) - 3_600_000, seed=13)
        n = len(pairs)
        produce(env, pairs)
        proxy.fraction = 0.5
        metrics = ProfilesMetrics()
        store = ProfileStore(env, max_attempts=3, base_delay_s=0.02, metrics=metrics)
        seen: list[int] = []  # the committed total each time it changed
        with consumer_thread(env, store=store, metrics=metrics) as c, CommittedOffsets(env) as committed:

            def all_committed() -> bool:
                total = committed.total()
                if not seen or total != seen[-1]:
                    seen.append(total)
                return total == n

            wait_for(all_committed, 240, "every offset committed under 50% throttling")
            failures, partial, writes = c.stats.flush_failures, c.stats.partial_flushes, c.stats.writes
        store.close()
        got = dump_tables(env)
    finally:
        proxy.close()
    want = expected(lines_of(pairs))
    lost, double = tally(got, want)
    steps = [t for t in seen if 0 < t < n]
    figure(
        f"dynamodb-throttled-backlog: {n} events ({len(want)} viewers, {writes} writes) with 50% of "
        f"BatchWriteItem calls throttled and 3 attempts per batch: {failures} flushes failed part-way "
        f"({partial} kept what they wrote), committed offsets rose in {len(steps) + 1} steps, "
        f"{lost} lost, {double} double-counted"
    )
    assert failures >= 1 and partial >= 1
    assert seen == sorted(seen)  # commits only move forward ...
    assert steps, f"nothing committed before the end: {seen}"  # ... and advance while flushes fail
    assert (lost, double) == (0, 0)
    assert got == want


# --------------------------------------------------------------------------------------------------
# 4. the viewer API restarted under connected SSE clients
# --------------------------------------------------------------------------------------------------
TOKEN = "faults-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STREAM = "/api/viewers/stream"


class LiveClient:
    """What the page keeps: the viewers of the last snapshot, updated by every delta."""

    def __init__(self) -> None:
        self.viewers: dict[str, dict[str, Any]] = {}
        self.events: list[SSEEvent] = []

    def apply(self, ev: SSEEvent) -> None:
        self.events.append(ev)
        data = ev.json()
        if ev.event == "snapshot":
            self.viewers = {p["viewer_id"]: p for p in data["viewers"]}
        elif ev.event == "delta":
            for p in data["upsert"]:
                self.viewers[p["viewer_id"]] = p
            for vid in data["remove"]:
                self.viewers.pop(vid, None)

    def statuses(self) -> dict[str, str]:
        return {vid: p["status"] for vid, p in self.viewers.items()}


def reconnect(
    base: str, last_id: str, interval_s: float = 0.05, deadline_s: float = 60
) -> tuple[SSEStream, float]:
    """Reconnect with the id of the last event received, retrying every ``interval_s`` until the
    server answers (EventSource waits ``retry`` ms; polling faster hits the worst case: the first
    moment the new process accepts). Returns the stream and the seconds until its headers came."""
    started = time.monotonic()
    while True:
        try:
            sse = SSEStream(base, STREAM, {**AUTH, "Last-Event-ID": last_id})
        except OSError:
            if time.monotonic() - started > deadline_s:
                raise
            time.sleep(interval_s)
            continue
        return sse, time.monotonic() - started


def _loaded(base: str) -> bool:
    try:
        return bool(httpx.get(base + "/health", timeout=2).json()["loaded"])
    except (httpx.HTTPError, ValueError, KeyError):
        return False


def follow(sse: SSEStream, client: LiveClient, done: Callable[[], bool], timeout: float = 20) -> None:
    """Apply the stream's events to ``client`` until ``done()``."""
    deadline = time.monotonic() + timeout
    while not done():
        left = deadline - time.monotonic()
        ev = sse.next_event(left) if left > 0 else None
        if ev is None:
            raise AssertionError(f"the stream ended or stalled with the client at {client.statuses()}")
        client.apply(ev)


def test_viewer_restart_gives_reconnecting_clients_a_fresh_snapshot(
    lvp_settings: Settings, dynamodb_local: str, output_dir: Path
) -> None:
    settings = lvp_settings.with_(
        api_tokens=TOKEN,
        jwt_secret="faults-test-secret-0123456789abcdef012",
        push_interval_s=0.05,
        aws_endpoint_url=dynamodb_local,
        viewer_port=free_port(),
    )
    base = f"http://127.0.0.1:{settings.viewer_port}"
    counts: dict[str, int] = {}
    current: dict[str, str] = {}

    def change(vid: str, status: str) -> tuple[str, dict[str, object]]:
        counts[vid] = counts.get(vid, 5) + 1
        if status == "ended":
            current.pop(vid, None)
        else:
            current[vid] = status
        return vid, make_profile(vid, status, events=counts[vid], last_seen=now_iso())

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*LVP, "viewer"], cwd=ROOT, env=settings_env(settings), stdout=log, stderr=log
        )

    produce_changes(settings, [change("v-1", "watching"), change("v-2", "paused")])
    client = LiveClient()
    rounds = (  # how the process ends, changes while it is down, a change once reconnected
        (signal.SIGTERM, [("v-2", "watching_ad"), ("v-3", "buffering")], ("v-2", "watching")),
        (signal.SIGKILL, [("v-1", "ended"), ("v-3", "watching")], ("v-3", "paused")),
    )
    results: list[str] = []
    log = open(output_dir / "faults-viewer.log", "ab")  # noqa: SIM115
    proc = start()
    try:
        wait_for(lambda: _loaded(base), 60, "the viewer's live view loaded")
        sse = SSEStream(base, STREAM, AUTH)
        first = sse.next_event()
        assert first is not None and first.event == "snapshot"
        client.apply(first)
        assert client.statuses() == current
        retry_ms = sse.retry
        assert retry_ms is not None and retry_ms > 0  # tells EventSource how soon to reconnect
        produce_changes(settings, [change("v-1", "paused")])
        follow(sse, client, lambda: client.statuses() == current)

        for sig, while_down, once_back in rounds:
            proc.send_signal(sig)
            proc.wait(30)
            assert sse.next_event(10) is None and sse.closed, "the stream outlived its process"
            sse.close()
            produce_changes(settings, [change(v, st) for v, st in while_down])
            last_id = client.events[-1].id
            assert last_id is not None
            proc = start()
            sse, took = reconnect(base, last_id)
            ev = sse.next_event(10)
            assert ev is not None and ev.event == "snapshot", f"resumed with {ev!r}, not a fresh snapshot"
            assert ev.id != last_id
            client.apply(ev)
            assert client.statuses() == current, "the snapshot after the restart is not the current data"
            produce_changes(settings, [change(*once_back)])  # live again, from the new process
            follow(sse, client, lambda: client.statuses() == current)
            assert client.events[-1].event == "delta"
            results.append(f"{signal.Signals(sig).name}: fresh snapshot {took:.1f} s after the restart")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        log.close()
    figure(
        f"viewer-restart: {len(rounds)} restarts under a connected SSE client ({'; '.join(results)}); each "
        f"reconnect with the old Last-Event-ID got a fresh snapshot holding the current data (changes made while "
        f"down included), then live deltas from the new process"
    )
