"""DynamoDB writes per watching viewer-hour: lazy writes against writing every change.

An audience of viewers watches for a (scaled) hour with the media plugin's pings every 30 s: most
watch straight through, some sit through a mid-roll ad break, some pause for minutes and come
back. The real `lvp profiles` runs against Tansu and DynamoDB Local twice on the same traffic in
the same run:

* **lazy** — the current policy: new viewers and status changes written
  ``LVP_STATUS_WRITE_DELAY_S`` (30 s) later, with every change meanwhile,
  other changes (counters, ads, touches) with the viewer's next write or every
  ``LVP_PROFILE_WRITE_INTERVAL_S`` (300 s) or when the viewer goes quiet;
* **status at once** — the same, but new viewers and status changes written at the next flush
  (``LVP_STATUS_WRITE_DELAY_S=0``, the policy before the delay): what the delay saves;
* **eager** (baseline) — every change written at the next flush (``LVP_PROFILE_WRITE_INTERVAL_S``
  set to almost 0): what the consumer did before, about one write per event when events are more
  than a flush apart, as the Snowplow accelerator does.

Time is scaled by ``--scale`` (default 60: an hour in a minute): the sessions' own times (pings,
ads, pauses), the write interval, the active timeout and the reorder window are all divided by
it, so the counts per viewer-hour are those of real time.
Profile writes come from the consumer's ``lvp_profiles_writes_total``, write requests (profile
and history items) from its ``lvp_profiles_flush_size`` sum; CPU from /proc for the consumer and
DynamoDB Local. Medians over ``--runs``.

    python -m bench.writes_bench [--viewers 300] [--scale 60] [--runs 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
PING_S = 30.0
WRITE_INTERVAL_S = 300.0
MODES = ("lazy", "status at once", "eager")
ACTIVE_TIMEOUT_S = 75.0
TARGET = 15.0


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def audience(viewers: int, hours: float, start_ms: int, scale: float) -> list[list[tuple[float, str, str]]]:
    """Per viewer, (offset s into the run, key, enriched line) in time order. Every interval of
    the session is divided by ``scale``, so the events' own (collector) times advance as fast as
    the replay: the consumer's quiet rule reads event time."""
    sys.path.insert(0, str(ROOT / "tests"))
    from enriched_factory import Ad, MediaSessionBuilder

    from lvp.enriched import parse_tstamp

    out = []
    span = hours * 3600.0 / scale
    ping = PING_S / scale
    for i in range(viewers):
        rng = random.Random(i)
        b = MediaSessionBuilder(
            f"w{i:05d}-{uuid.uuid4().hex[:6]}",
            start_ms + rng.randrange(int(30_000 / scale)),
            duration_s=2 * span,
        )
        b.page_view().wait(1 / scale).ready().wait(0.5 / scale).play()
        kind = i % 10  # 0-5 straight through, 6-7 an ad break, 8-9 pause for minutes
        breaks = {6: [span * 0.5], 7: [span * 0.3, span * 0.7]}.get(kind, [])
        pause_at = span * (0.2 + 0.5 * rng.random()) if kind >= 8 else None
        while b.now_s - start_ms / 1000 < span - ping:
            b.wait(ping).ping()
            t = b.now_s - start_ms / 1000
            if breaks and t >= breaks[0]:
                breaks.pop(0)
                ads = [Ad(f"mid-{i % 4}", duration_s=15 / scale), Ad(f"mid-b{i % 3}", duration_s=15 / scale)]
                b.ad_break(ads)
            if pause_at is not None and t >= pause_at:
                pause_at = None
                b.pause().wait(ping).ping().wait(4 * 60 / scale).play()  # one paused ping, then silence
        base = start_ms / 1000
        pairs = zip(b.rows, b.lines(), strict=True)
        out.append([(parse_tstamp(r["collector_tstamp"]) - base, k, v) for r, (k, v) in pairs])
    return out


def _metric(url: str, name: str) -> dict[str, float]:
    import httpx

    out: dict[str, float] = {}
    for line in httpx.get(url, timeout=5).text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def _default_status_delay() -> float:
    """LVP_STATUS_WRITE_DELAY_S' default: what the lazy policy runs (scaled)."""
    from lvp.config import Settings

    return float(Settings.from_env({}).status_write_delay_s)


def one_run(
    mode: str, args: argparse.Namespace, bootstrap: str, endpoint: str, db_pid: int
) -> dict[str, Any]:
    from confluent_kafka import Producer

    from lvp.config import Settings
    from lvp.dynamo import create_tables
    from lvp.kafka import create_topics, producer_config
    from lvp.local.broker import free_port

    tag = f"wb-{mode.replace(' ', '-')}-{uuid.uuid4().hex[:8]}"
    scale = args.scale
    settings = Settings.from_env(
        {},
        kafka_bootstrap_servers=bootstrap,
        aws_endpoint_url=endpoint,
        topic_good=tag,
        topic_bad=tag + "-bad",
        topic_changes=tag + "-changes",
        consumer_group=tag,
        table_profiles=tag + "-profiles",
        table_history=tag + "-history",
        pseudonym_key="bench",
        profiles_metrics_port=free_port(),
        flush_interval_s=0.1,
        publish_interval_s=0.05,
        touch_interval_s=0.1,
        active_timeout_s=ACTIVE_TIMEOUT_S / scale,
        reorder_window_s=10.0 / scale,
        profile_write_interval_s=WRITE_INTERVAL_S / scale if mode != "eager" else 0.001,
        status_write_delay_s=_default_status_delay() / scale if mode == "lazy" else 0.0,
    )
    create_topics(settings)
    create_tables(settings)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
    env.update({"KAFKA_SESSION_TIMEOUT_MS": "2000", "KAFKA_HEARTBEAT_INTERVAL_MS": "300"})
    for name, value in (
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap), ("AWS_ENDPOINT_URL", endpoint), ("LVP_TOPIC_GOOD", tag),
        ("LVP_TOPIC_BAD", tag + "-bad"), ("LVP_TOPIC_CHANGES", tag + "-changes"), ("LVP_CONSUMER_GROUP", tag),
        ("LVP_TABLE_PROFILES", tag + "-profiles"), ("LVP_TABLE_HISTORY", tag + "-history"),
        ("LVP_PROFILES_METRICS_PORT", str(settings.profiles_metrics_port)), ("LVP_FLUSH_INTERVAL_S", "0.1"),
        ("LVP_PUBLISH_INTERVAL_S", "0.05"), ("LVP_TOUCH_INTERVAL_S", "0.1"),
        ("LVP_ACTIVE_TIMEOUT_S", str(settings.active_timeout_s)),
        ("LVP_REORDER_WINDOW_S", str(settings.reorder_window_s)),
        ("LVP_PROFILE_WRITE_INTERVAL_S", str(settings.profile_write_interval_s)), ("LVP_PSEUDONYM_KEY", "bench"),
        ("LVP_STATUS_WRITE_DELAY_S", str(settings.status_write_delay_s)),
    ):  # fmt: skip
        env[name] = value
    log = open(Path(tempfile.gettempdir()) / f"{tag}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "lvp.cli", "--log-level", "WARNING", "profiles"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{settings.profiles_metrics_port}/metrics"
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"consumer did not start (log {log.name})") from None
                time.sleep(0.2)
        time.sleep(3)  # the group join
        # each event is produced when the clock reaches its own collector time (as a collector
        # would stamp it), so the consumer sees event time and wall time move together
        epoch0 = time.time() + 2.0 + args.viewers * args.hours * 4e-3
        viewers = audience(args.viewers, args.hours, int(epoch0 * 1000), scale)
        timeline = sorted((t, k, v) for rows in viewers for t, k, v in rows)
        producer = Producer(producer_config(settings, **{"linger.ms": 5}))
        cpu0, db0 = _cpu_s(proc.pid), _cpu_s(db_pid)
        for at, key, value in timeline:
            delay = epoch0 + at - time.time()
            if delay > 0:
                producer.poll(0)
                time.sleep(delay)
            producer.produce(tag, key=key.encode(), value=value.encode())
        assert producer.flush(30) == 0
        # until every event is applied and every viewer written (the quiet timeout does it)
        events = len(timeline)
        deadline = time.monotonic() + 60 + 2 * WRITE_INTERVAL_S / scale
        while time.monotonic() < deadline:
            applied = sum(_metric(url, "lvp_profiles_events_applied_total").values())
            if applied >= events:
                break
            time.sleep(0.2)
        time.sleep(ACTIVE_TIMEOUT_S / scale + 1.0)
        writes = _metric(url, "lvp_profiles_writes_total")
        requests = sum(_metric(url, "lvp_profiles_flush_size_sum").values())
        cpu, db = _cpu_s(proc.pid) - cpu0, _cpu_s(db_pid) - db0
        applied = sum(_metric(url, "lvp_profiles_events_applied_total").values())
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
    by = {k.split('reason="')[1].rstrip('"}'): v for k, v in writes.items() if "reason=" in k}
    viewer_hours = args.viewers * args.hours
    return {
        "events": events,
        "applied": applied,
        "writes": sum(by.get(r, 0) for r in ("change", "cadence", "quiet")),
        "by_reason": by,
        "writes_per_viewer_hour": sum(by.get(r, 0) for r in ("change", "cadence", "quiet")) / viewer_hours,
        "requests_per_viewer_hour": requests / viewer_hours,
        "events_per_viewer_hour": events / viewer_hours,
        "consumer_cpu_us_per_event": cpu / events * 1e6,
        "dynamodb_cpu_us_per_event": db / events * 1e6,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Both policies, ``args.runs`` times each: medians and every run."""
    from lvp.local.broker import start_broker, stop_process
    from lvp.local.localdb import start_dynamodb_local

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ.setdefault("AWS_REGION", "us-east-1")
    broker, bootstrap = start_broker()
    db, endpoint = start_dynamodb_local()
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    try:
        for i in range(args.runs):
            for mode in MODES:
                r = one_run(mode, args, bootstrap, endpoint, db.pid)
                results[mode].append(r)
                print(
                    f"run {i + 1}/{args.runs} {mode}: {r['writes_per_viewer_hour']:.1f} profile writes per viewer-hour "
                    f"({r['by_reason']}), {r['requests_per_viewer_hour']:.1f} write requests with history, "
                    f"{r['events_per_viewer_hour']:.1f} events per viewer-hour, "
                    f"consumer {r['consumer_cpu_us_per_event']:.0f} µs/event, "
                    f"DynamoDB Local {r['dynamodb_cpu_us_per_event']:.0f} µs/event",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        stop_process(db)
        stop_process(broker)

    keys = (
        "writes_per_viewer_hour",
        "requests_per_viewer_hour",
        "events_per_viewer_hour",
        "consumer_cpu_us_per_event",
        "dynamodb_cpu_us_per_event",
    )
    medians = {m: {k: statistics.median(r[k] for r in rs) for k in keys} for m, rs in results.items()}
    lost = max(r["events"] - r["applied"] for m in results.values() for r in m)
    return {"medians": medians, "runs": results, "lost": lost}


def run(args: argparse.Namespace) -> str:
    out = measure(args)
    medians, lost = out["medians"], out["lost"]

    def med(mode: str, key: str) -> float:
        return float(medians[mode][key])

    lazy, eager = med("lazy", "writes_per_viewer_hour"), med("eager", "writes_per_viewer_hour")
    events = med("lazy", "events_per_viewer_hour")

    def row(mode: str, label: str) -> str:
        w, r = med(mode, "writes_per_viewer_hour"), med(mode, "requests_per_viewer_hour")
        bold = "**" if mode == "lazy" else ""
        return (
            f"| {label} | {bold}{w:.1f}{bold} | {r:.1f} | {med(mode, 'events_per_viewer_hour'):.1f} | "
            f"{med(mode, 'consumer_cpu_us_per_event'):.0f} | {med(mode, 'dynamodb_cpu_us_per_event'):.0f} |"
        )

    lines = [
        f"## DynamoDB writes per watching viewer-hour ({time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()})",
        "",
        f"{args.viewers} viewers, {args.hours:g} h each (60 % straight through, 20 % with ad breaks, 20 % pausing "
        f"for 4 min), pings every 30 s; time scaled x{args.scale:g}; medians of {args.runs} runs per policy, "
        "both policies in the same run against the same Tansu and DynamoDB Local.",
        "",
        "| policy | profile writes per viewer-hour | write requests per viewer-hour (profiles and history) "
        "| events per viewer-hour | consumer CPU µs/event | DynamoDB Local CPU µs/event |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| one write per event (arithmetic) | {events:.1f} | | {events:.1f} | | |",
        row("eager", "eager: every change at the next flush (baseline)"),
        row("status at once", "lazy, status changes at the next flush (LVP_STATUS_WRITE_DELAY_S=0)"),
        row(
            "lazy",
            f"**lazy** (LVP_PROFILE_WRITE_INTERVAL_S=300, LVP_STATUS_WRITE_DELAY_S={_default_status_delay():g})",
        ),
        "",
        f"Target ≤ {TARGET:g} writes per watching viewer-hour: {'met' if lazy <= TARGET else 'NOT met'} "
        f"({lazy / eager:.2f} x the eager policy). Events not applied: {lost:g}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--viewers", type=int, default=300)
    p.add_argument("--hours", type=float, default=1.0, help="viewer-hours per viewer (before scaling)")
    p.add_argument("--scale", type=float, default=60.0, help="time compression (60: an hour in a minute)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="CI size: 40 viewers, 15 min, x60, one run")
    args = p.parse_args(argv)
    if args.quick:
        args.viewers, args.hours, args.runs = 40, 0.25, 1
    print(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
