"""Throughput of `lvp profiles`: events/s from Kafka into viewer state with coalesced DynamoDB
writes, against the raw confluent-kafka consume rate of the same messages in the same run.

Messages are real-sized enriched media events (131-column TSV, ~2 KB, media_player / session /
ad entities) from ``tests/enriched_factory.py``: cohorts of concurrent viewers, each a complete
session (ads, pauses, seeks, buffering, end). Both consumers run in their own process pinned to
CPU 0 (``taskset``-equivalent ``sched_setaffinity``); the broker (Tansu) and DynamoDB Local are
pinned to the other CPUs when the benchmark starts them. Prints a markdown table.

    python -m bench.profiles_bench [--viewers 5000] [--quick] [--bootstrap-servers H:P --endpoint-url URL]

Targets (issue 3): >= 50,000 events/s on one core, >= 45% of the raw consume rate, < 1 KB RSS
per tracked viewer.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET_EPS = 50_000
TARGET_RATIO = 0.45
TARGET_RSS = 1024
COHORT = 500


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _pin(pid: int, cpus: set[int]) -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(pid, cpus)


def _settings(args: argparse.Namespace) -> Any:
    from lvp.config import Settings

    return Settings.from_env(
        {},
        kafka_bootstrap_servers=args.bootstrap_servers,
        aws_endpoint_url=args.endpoint_url,
        topic_good=args.topic,
        topic_bad=args.topic + "-bad",
        topic_changes=args.topic + "-changes",
        consumer_group=args.group,
        table_profiles=args.topic + "-profiles",
        table_history=args.topic + "-history",
        pseudonym_key="bench",
        profiles_metrics_port=0,
        topic_partitions=args.partitions,
    )


# --- workers (run pinned in their own process) -----------------------------------------------------


def _worker_raw(args: argparse.Namespace) -> dict[str, Any]:
    from confluent_kafka import Consumer

    from lvp.kafka import consumer_config

    s = _settings(args)
    c = Consumer(consumer_config(s, group_id=args.group + "-raw"))
    marks: dict[str, float] = {}

    def on_assign(consumer: Any, partitions: list[Any]) -> None:
        marks.setdefault("assigned", time.perf_counter())  # fetching starts: the clock starts

    c.subscribe([s.topic_good], on_assign=on_assign)
    n = 0
    size = 0
    last = 0.0
    deadline = time.monotonic() + args.timeout
    while n < args.expect and time.monotonic() < deadline:
        msgs = c.consume(2000, 0.2)
        if not msgs:
            continue
        for m in msgs:
            if m.error() is None:
                v = m.value()
                m.key()
                size += len(v) if v else 0
                n += 1
        last = time.perf_counter()
    c.close()
    return {"messages": n, "seconds": last - marks["assigned"], "bytes": size}


def _worker_profiles(args: argparse.Namespace) -> dict[str, Any]:
    from profiles.consumer import ProfilesConsumer

    s = _settings(args)
    consumer = ProfilesConsumer(s, exit_at_end=True)
    marks: dict[str, float] = {}
    handle, assign = consumer._handle, consumer._on_assign

    def on_assign(c: Any, partitions: list[Any]) -> None:
        marks.setdefault("first", time.perf_counter())  # fetching starts: the clock starts
        assign(c, partitions)

    def timed(msgs: list[Any]) -> None:
        if "rss_first" not in marks:
            marks["rss_first"] = _rss()
        handle(msgs)
        marks["applied"] = time.perf_counter()
        if consumer.stats.applied + consumer.stats.duplicates >= args.expect and "rss_all" not in marks:
            marks["rss_all"] = _rss()
            marks["all_applied"] = time.perf_counter()

    consumer._handle = timed  # type: ignore[method-assign]
    consumer._on_assign = on_assign  # type: ignore[method-assign]
    consumer._drop_partitions = lambda parts: None  # type: ignore[method-assign] # keep states to measure
    rc = consumer.run()
    end = time.perf_counter()
    tracked = len(consumer.states)
    gc.collect()
    rss_with = _rss()
    consumer.states.clear()
    consumer.viewer_partition.clear()
    consumer._touched.clear()
    consumer._touched_prev.clear()
    gc.collect()
    rss_without = _rss()
    st = consumer.stats
    return {
        "rc": rc,
        "applied": st.applied,
        "duplicates": st.duplicates,
        "bad": st.bad,
        "writes": st.writes,
        "flushes": st.flushes,
        "published": st.published,
        "apply_seconds": marks.get("all_applied", marks.get("applied", end)) - marks.get("first", end),
        "end_seconds": end - marks.get("first", end),
        "tracked": tracked,
        "rss_per_viewer_drop": (rss_with - rss_without) / tracked if tracked else 0,
        "rss_per_viewer_growth": (marks.get("rss_all", 0) - marks.get("rss_first", 0)) / tracked
        if tracked
        else 0,
    }


def _run_worker(kind: str, args: argparse.Namespace, expect: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.profiles_bench", "--worker", kind, "--expect", str(expect)]
    for flag in ("bootstrap_servers", "endpoint_url", "topic", "group", "partitions", "timeout"):
        cmd += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "local")}
    env.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    env.setdefault("KAFKA_SESSION_TIMEOUT_MS", "2000")
    env.setdefault("KAFKA_HEARTBEAT_INTERVAL_MS", "300")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not args.no_pin:
        _pin(proc.pid, {0})
    out, err = proc.communicate(timeout=args.timeout + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} worker failed ({proc.returncode}):\n{err[-3000:]}")
    return dict(json.loads(out.strip().splitlines()[-1]))


# --- the benchmark ------------------------------------------------------------------------------------


def _produce(args: argparse.Namespace) -> tuple[int, int]:
    sys.path.insert(0, str(ROOT / "tests"))
    from confluent_kafka import Producer
    from enriched_factory import DESKTOP_UA, MOBILE_UA, full_session, interleave

    from lvp.kafka import producer_config

    s = _settings(args)
    producer = Producer(producer_config(s, **{"linger.ms": 20, "message.timeout.ms": 120_000}))
    start = int(time.time() * 1000) - 3_600_000
    n = size = 0
    for c0 in range(0, args.viewers, COHORT):
        builders = [
            full_session(
                f"{uuid.UUID(int=i, version=4).hex}{i:032x}",
                start + c0 * 40 + (i - c0) * 37,
                useragent=MOBILE_UA if i % 3 else DESKTOP_UA,
            )
            for i in range(c0, min(args.viewers, c0 + COHORT))
        ]
        for key, line in interleave(builders):
            value = line.encode()
            while True:
                try:
                    producer.produce(s.topic_good, key=key.encode(), value=value)
                    break
                except BufferError:
                    producer.poll(0.05)
            n += 1
            size += len(value)
        producer.poll(0)
    assert producer.flush(120) == 0
    return n, size


def run(args: argparse.Namespace) -> str:
    from lvp.broker import start_broker, stop_process
    from lvp.dynamo import create_tables
    from lvp.kafka import create_topics
    from lvp.localdb import start_dynamodb_local

    procs = []
    others = set(range(1, os.cpu_count() or 1)) or {0}
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    try:
        if not args.bootstrap_servers:
            proc, args.bootstrap_servers = start_broker()
            procs.append(proc)
            if not args.no_pin:
                _pin(proc.pid, others)
        if not args.endpoint_url:
            proc, args.endpoint_url = start_dynamodb_local()
            procs.append(proc)
            if not args.no_pin:
                _pin(proc.pid, others)
        tag = uuid.uuid4().hex[:8]
        args.topic = f"bench-good-{tag}"
        args.group = f"bench-{tag}"
        s = _settings(args)
        create_topics(s)
        create_tables(s)
        t0 = time.perf_counter()
        n, size = _produce(args)
        produced_s = time.perf_counter() - t0
        raw = _run_worker("raw", args, n)
        prof = _run_worker("profiles", args, n)
    finally:
        for proc in procs:
            stop_process(proc)
    raw_rate = raw["messages"] / raw["seconds"] if raw["seconds"] > 0 else 0.0
    apply_rate = n / prof["apply_seconds"] if prof["apply_seconds"] > 0 else 0.0
    end_rate = n / prof["end_seconds"] if prof["end_seconds"] > 0 else 0.0
    writes_rate = prof["writes"] / prof["end_seconds"] if prof["end_seconds"] > 0 else 0.0
    ratio = apply_rate / raw_rate if raw_rate else 0.0
    rss = max(prof["rss_per_viewer_drop"], 0.0)

    def ok(cond: bool) -> str:
        return "yes" if cond else "**no**"

    rows = [
        "| measure | value | target | met |",
        "| --- | ---: | ---: | :---: |",
        f"| messages (enriched TSV, avg {size / n:.0f} B) | {n:,} ({args.viewers:,} viewers) | | |",
        f"| raw confluent-kafka consume, same messages | {raw_rate:,.0f} msg/s | | |",
        f"| `lvp profiles`: Kafka → state (events/s) | {apply_rate:,.0f} | ≥ {TARGET_EPS:,} "
        f"| {ok(apply_rate >= TARGET_EPS)} |",
        f"| … as share of the raw consume rate | {ratio:.0%} | ≥ {TARGET_RATIO:.0%} "
        f"| {ok(ratio >= TARGET_RATIO)} |",
        f"| `lvp profiles`: end to end incl. last flush + commit (events/s) | {end_rate:,.0f} | | |",
        f"| DynamoDB writes/s (coalesced, BatchWriteItem) | {writes_rate:,.0f} | | |",
        f"| DynamoDB writes per event | {prof['writes'] / n:.3f} | | |",
        f"| flushes | {prof['flushes']:,} | | |",
        f"| profile changes published | {prof['published']:,} | | |",
        f"| tracked viewers | {prof['tracked']:,} | | |",
        f"| RSS per tracked viewer (freed when dropped) | {rss:,.0f} B | < {TARGET_RSS:,} B "
        f"| {ok(rss < TARGET_RSS)} |",
        f"| RSS growth per viewer during the run (incl. Kafka buffers) "
        f"| {prof['rss_per_viewer_growth']:,.0f} B | | |",
    ]
    pin = "consumers pinned to CPU 0" if not args.no_pin else "not pinned"
    note = (
        f"\n\n{pin}; produced in {produced_s:.1f}s; {os.cpu_count()} CPUs; Python {sys.version.split()[0]}."
    )
    return "\n".join(rows) + note


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--viewers", type=int, default=5000, help="Viewers (40 events each).")
    p.add_argument("--quick", action="store_true", help="CI size (200 viewers).")
    p.add_argument("--bootstrap-servers", default="", help="Use this broker (default: start Tansu).")
    p.add_argument(
        "--endpoint-url", default="", help="Use this DynamoDB endpoint (default: start DynamoDB Local)."
    )
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--no-pin", action="store_true", help="Do not pin the consumers to CPU 0.")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--worker", choices=("raw", "profiles"), help=argparse.SUPPRESS)
    p.add_argument("--expect", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--topic", default="", help=argparse.SUPPRESS)
    p.add_argument("--group", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        result = _worker_raw(args) if args.worker == "raw" else _worker_profiles(args)
        print(json.dumps(result))
        return 0
    if args.quick:
        args.viewers = min(args.viewers, 200)
    print(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
