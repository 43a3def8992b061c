"""Collector throughput: events/s through the whole collector (tp2 POSTs of 10 media events
shaped like the JavaScript tracker's, ~1.8 KB each: decoded, validated against the Iglu schemas,
pseudonymized, enriched and acknowledged by Kafka before the 200), against the request rate of a
bare Starlette POST endpoint measured in the same run with the same bodies and setup.

The server under test runs in its own process pinned to one CPU (``--server-cpu``, default 0) with
uvicorn + uvloop + httptools; the load generator (raw asyncio HTTP/1.1 keep-alive connections)
and, when the benchmark starts it, the Tansu broker are pinned to the other CPU (``--load-cpu``).
Results go to ``bench/results/`` (JSON) and a markdown table on stdout.

    python -m bench.collector_bench [--duration 20] [--connections 32] [--quick]
    python -m bench.collector_bench --bootstrap-servers HOST:PORT   # an existing broker

Target (issue 2): collector events/s >= 40% of (bare endpoint requests/s x 10).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
MEDIA = "com.snowplowanalytics.snowplow.media"
TARGET_RATIO = 0.40
BENCH_KEY = "collector-bench-pseudonym-key-0123"


# --- request bodies shaped like the JavaScript tracker's ----------------------------------------

_SCRIPT = [
    ("play_event", {}, False),
    ("ping_event", {}, False),
    ("ad_break_start_event", {}, True),
    ("ad_start_event", {}, True),
    ("ad_quartile_event", {"percentProgress": 25}, True),
    ("ad_complete_event", {}, True),
    ("ad_break_end_event", {}, False),
    ("volume_change_event", {"previousVolume": 100, "newVolume": 60}, False),
    ("percent_progress_event", {"percentProgress": 10}, False),
    ("pause_event", {}, False),
]


def tracker_event(
    rng: random.Random, viewer: str, session: str, media_session: str, n: int
) -> dict[str, str]:
    """One self-describing media event as the JS tracker v4 POSTs it (every value a string)."""
    name, data, in_ad = _SCRIPT[n % len(_SCRIPT)]
    now = int(time.time() * 1000) - rng.randint(0, 5000)
    position = round(rng.uniform(0, 590), 6)
    entities: list[dict[str, Any]] = [
        {
            "schema": "iglu:com.snowplowanalytics.snowplow/media_player/jsonschema/2-0-0",
            "data": {"currentTime": position, "paused": name == "pause_event", "ended": False,
                     "label": "Bugs Bunny", "mediaType": "video", "playerType": "html5",
                     "duration": 596.474195, "muted": False, "loop": False, "playbackRate": 1, "volume": 100},
        },
        {
            "schema": f"iglu:{MEDIA}/session/jsonschema/1-0-0",
            "data": {"mediaSessionId": media_session, "startedAt": "2024-11-16T13:33:23.276Z",
                     "timePaused": 0.003, "timePlayed": round(position, 3), "timeSpentAds": 8.993, "ads": 2,
                     "adBreaks": 1, "avgPlaybackRate": 1, "contentWatched": int(position)},
        },
    ]  # fmt: skip
    if in_ad:
        entities += [
            {"schema": f"iglu:{MEDIA}/ad/jsonschema/1-0-0",
             "data": {"podPosition": 1, "adId": "288", "name": "Ad 1", "creativeId": "ad-1", "duration": 4,
                      "skippable": True}},
            {"schema": f"iglu:{MEDIA}/ad_break/jsonschema/1-0-0",
             "data": {"startTime": 0, "name": "break", "breakId": "287", "breakType": "linear"}},
        ]  # fmt: skip
    entities.append(
        {"schema": "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0", "data": {"id": session}}
    )
    ue = {
        "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
        "data": {"schema": f"iglu:{MEDIA}/{name}/jsonschema/1-0-0", "data": data},
    }
    co = {"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0", "data": entities}
    return {
        "e": "ue", "eid": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "tv": "js-4.6.6", "tna": "sp",
        "aid": "lvp-demo", "p": "web", "cookie": "1", "cs": "UTF-8", "lang": "en-US", "res": "1920x1080",
        "cd": "24", "tz": "Europe/Lisbon", "dtm": str(now), "vp": "1600x773", "ds": "1600x2200", "vid": "2",
        "sid": session, "duid": viewer, "refr": "http://localhost:3000/", "url": "http://localhost:3000/media",
        "ue_pr": json.dumps(ue, separators=(",", ":")), "co": json.dumps(co, separators=(",", ":")),
        "stm": str(now + 3),
    }  # fmt: skip


def request_bodies(count: int, batch: int, seed: int = 7) -> list[bytes]:
    """``count`` different tp2 bodies of ``batch`` events each (one viewer per body)."""
    rng = random.Random(seed)
    bodies = []
    for _ in range(count):
        viewer, session, media_session = (
            str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(3)
        )
        events = [
            tracker_event(rng, viewer, session, media_session, rng.randrange(100)) for _ in range(batch)
        ]
        bodies.append(json.dumps({"schema": PAYLOAD_DATA, "data": events}, separators=(",", ":")).encode())
    return bodies


# --- the servers under test (run in a pinned child process) --------------------------------------


def bare_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def tp2(request: Request) -> Response:
        await request.body()
        return Response("ok", media_type="text/plain")

    async def health(request: Request) -> Response:
        return Response("ok", media_type="text/plain")

    return Starlette(routes=[Route(TP2, tp2, methods=["POST"]), Route("/health", health)])


def serve(kind: str, port: int) -> None:
    import uvicorn

    if kind == "bare":
        app = bare_app()
    else:
        from collector.app import create_app
        from lvp.config import Settings

        app = create_app(Settings.from_env())
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


def _pinned(cmd: list[str], cpu: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, cwd=ROOT, start_new_session=True)
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(proc.pid, {cpu})  # what `taskset -c CPU` does
    return proc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError("server not ready")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the load generator --------------------------------------------------------------------------


class _Conn(asyncio.Protocol):
    """One keep-alive connection sending requests back to back, reading minimal HTTP/1.1."""

    def __init__(self, requests: list[bytes], stats: dict[str, Any], start: int) -> None:
        self.requests = requests
        self.i = start
        self.stats = stats
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.t0 = 0
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        if self.stats["stop"] or self.transport is None:
            if self.transport is not None:
                self.transport.close()
            return
        self.t0 = time.perf_counter_ns()
        self.transport.write(self.requests[self.i % len(self.requests)])
        self.i += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buf[:head_end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            total = head_end + 4 + length
            if len(self.buf) < total:
                return
            status = int(head[9:12])
            self.buf = self.buf[total:]
            if self.stats["measure"]:
                self.stats["codes"][status] = self.stats["codes"].get(status, 0) + 1
                self.stats["lat"].append(time.perf_counter_ns() - self.t0)
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _load(
    port: int, bodies: list[bytes], connections: int, warmup: float, duration: float, server_pid: int | None
) -> dict[str, Any]:
    requests = [
        (
            f"POST {TP2} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(b)}\r\n\r\n"
        ).encode()
        + b
        for b in bodies
    ]
    stats: dict[str, Any] = {"stop": False, "measure": False, "codes": {}, "lat": []}
    loop = asyncio.get_running_loop()
    conns = []
    for c in range(connections):
        factory = functools.partial(_Conn, requests, stats, c * 7919)
        _, proto = await loop.create_connection(factory, "127.0.0.1", port)
        conns.append(proto)
    await asyncio.sleep(warmup)
    stats["measure"] = True
    t0, cpu0 = time.perf_counter(), _cpu_seconds(server_pid)
    await asyncio.sleep(duration)
    stats["measure"] = False
    elapsed, cpu = time.perf_counter() - t0, _cpu_seconds(server_pid) - cpu0
    stats["stop"] = True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(c.closed for c in conns)), 30)
    lat = sorted(stats["lat"])
    n = len(lat)
    ok = stats["codes"].get(200, 0)
    return {
        "requests": n,
        "ok": ok,
        "codes": {str(k): v for k, v in sorted(stats["codes"].items())},
        "seconds": elapsed,
        "requests_per_s": ok / elapsed,
        "server_cpu_s": cpu,
        "server_cpu_share": cpu / elapsed,  # 1.0 = the server had its CPU to itself
        "cpu_us_per_request": cpu / n * 1e6 if n else None,
        "p50_ms": lat[n // 2] / 1e6 if n else None,
        "p99_ms": lat[min(n - 1, int(n * 0.99))] / 1e6 if n else None,
    }


def run_load(
    port: int,
    bodies: list[bytes],
    connections: int,
    warmup: float,
    duration: float,
    server_pid: int | None = None,
) -> dict[str, Any]:
    coro = _load(port, bodies, connections, warmup, duration, server_pid)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# --- orchestration -------------------------------------------------------------------------------


def _count_topic(bootstrap: str, topic: str, expected: int, timeout: float) -> int:
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.partition.eof": True,
        }
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        count, eof, deadline = 0, set(), time.monotonic() + timeout
        while time.monotonic() < deadline:
            msgs = consumer.consume(10_000, 0.5)
            for m in msgs:
                if m.error() is None:
                    count += 1
                    eof.discard(m.partition())
                elif m.error().code() == KafkaError._PARTITION_EOF:  # type: ignore[union-attr]
                    eof.add(m.partition())
            if count >= expected and len(eof) == len(parts):
                break
        return count
    finally:
        consumer.close()


def _machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    return {
        "cpu": model or platform.processor(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from lvp.broker import start_broker, stop_process
    from lvp.config import Settings
    from lvp.kafka import create_topics

    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {args.load_cpu})
    bodies = request_bodies(args.bodies, args.batch)
    event_bytes = statistics.mean(len(b) for b in bodies) / args.batch
    broker_proc = None
    bootstrap = args.bootstrap_servers
    if not bootstrap:
        broker_proc, bootstrap = start_broker()
        with contextlib.suppress(AttributeError, OSError):
            os.sched_setaffinity(broker_proc.pid, {args.load_cpu})
    suffix = uuid.uuid4().hex[:8]
    settings = Settings.from_env(
        {},
        kafka_bootstrap_servers=bootstrap,
        topic_good=f"bench-good-{suffix}",
        topic_bad=f"bench-bad-{suffix}",
        topic_changes=f"bench-changes-{suffix}",
        pseudonym_key=BENCH_KEY,
    )
    create_topics(settings)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "LVP_TOPIC_GOOD": settings.topic_good,
        "LVP_TOPIC_BAD": settings.topic_bad,
        "LVP_PSEUDONYM_KEY": BENCH_KEY,
        "LVP_DEV": "0",
    }
    results: dict[str, Any] = {
        "machine": _machine(),
        "setup": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "events_per_request": args.batch,
            "mean_event_bytes": round(event_bytes),
            "mean_body_bytes": round(event_bytes * args.batch),
            "server_cpu": args.server_cpu,
            "load_cpu": args.load_cpu,
            "broker": "tansu (started by the benchmark)" if broker_proc else bootstrap,
        },
    }
    try:
        for kind in ("bare", "collector"):
            port = _free_port()
            cmd = [sys.executable, "-m", "bench.collector_bench", "--serve", kind, "--port", str(port)]
            proc = _pinned(cmd, args.server_cpu, env)
            try:
                _wait_ready(port, proc)
                results[kind] = run_load(port, bodies, args.connections, args.warmup, args.duration, proc.pid)
            finally:
                _stop(proc)
        bad_codes = {k: v for k, v in results["collector"]["codes"].items() if k != "200"}
        results["collector"]["events_per_s"] = results["collector"]["requests_per_s"] * args.batch
        # every acknowledged request's events are on the good topic (warm-up and drain included)
        results["collector"]["non_200"] = bad_codes
        expected = results["collector"]["ok"] * args.batch
        results["collector"]["events_on_topic"] = _count_topic(bootstrap, settings.topic_good, expected, 60)
        results["collector"]["bad_rows"] = _count_topic(bootstrap, settings.topic_bad, 0, 10)
    finally:
        if broker_proc is not None:
            stop_process(broker_proc)
    baseline_events = results["bare"]["requests_per_s"] * args.batch
    results["ratio"] = results["collector"]["events_per_s"] / baseline_events if baseline_events else 0.0
    results["target_ratio"] = TARGET_RATIO
    return results


def table(r: dict[str, Any]) -> str:
    s, b, c, m = r["setup"], r["bare"], r["collector"], r["machine"]
    n = s["events_per_request"]
    lines = [
        f"Collector benchmark: {m['cpu']} ({m['cpus']} CPUs), Python {m['python']}; server pinned to CPU "
        f"{s['server_cpu']}, load generator and broker on CPU {s['load_cpu']}; {s['connections']} keep-alive "
        f"connections, {s['duration_s']} s per phase; POST bodies of {n} media events, "
        f"{s['mean_event_bytes']} B per event ({s['mean_body_bytes']} B).",
        "",
        "| setup | requests/s | events/s | p50 ms | p99 ms | server CPU share | CPU us/request | non-200 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        f"| bare Starlette POST endpoint (baseline) | {b['requests_per_s']:,.0f} | "
        f"({b['requests_per_s'] * n:,.0f} = x{n}) | {b['p50_ms']:.1f} | {b['p99_ms']:.1f} | "
        f"{b['server_cpu_share']:.0%} | {b['cpu_us_per_request'] or 0:,.0f} | {b['requests'] - b['ok']} |",
        f"| collector: validated, pseudonymized, enriched, acked | {c['requests_per_s']:,.0f} | "
        f"{c['events_per_s']:,.0f} | {c['p50_ms']:.1f} | {c['p99_ms']:.1f} | {c['server_cpu_share']:.0%} | "
        f"{c['cpu_us_per_request'] or 0:,.0f} | {c['non_200'] or 0} |",
        "",
        f"Collector events/s / (baseline requests/s x {n}) = **{r['ratio']:.0%}** (target >= "
        f"{r['target_ratio']:.0%}). Events on the good topic after the run: {c['events_on_topic']:,} "
        f"(>= {c['ok'] * n:,} acknowledged in the measured window); bad rows: {c['bad_rows']}. "
        f"With a whole CPU, the collector's CPU cost per request means "
        f"{1e6 / (c['cpu_us_per_request'] or 1e9) * n:,.0f} events/s.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per phase (default 20)")
    p.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each phase")
    p.add_argument("--connections", type=int, default=32, help="keep-alive connections (default 32)")
    p.add_argument("--batch", type=int, default=10, help="events per POST (default 10)")
    p.add_argument("--bodies", type=int, default=200, help="distinct request bodies cycled (default 200)")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    p.add_argument("--bootstrap-servers", default="", help="use this broker instead of starting Tansu")
    p.add_argument("--quick", action="store_true", help="CI size: 2 s phases, 4 connections")
    p.add_argument(
        "--json", type=Path, default=None, help="results file (default bench/results/collector-*.json)"
    )
    p.add_argument("--serve", choices=("bare", "collector"), help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port)
        return 0
    if (os.cpu_count() or 1) < 2:
        args.load_cpu = args.server_cpu
    if args.quick:
        args.duration, args.warmup, args.connections, args.bodies = 2.0, 0.5, 4, 20
    results = run(args)
    out = args.json or RESULTS / f"collector-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"\n(results: {out})")
    ok = results["collector"]["ok"] > 0 and results["bare"]["ok"] > 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
