"""Fan-out of `lvp viewer`: many SSE clients on one process, many active viewers.

Starts a Tansu broker (unless ``--bootstrap-servers``), preloads ``--viewers`` active profiles
into the changes topic, runs ``lvp viewer`` as its own process (push interval ``--push-interval``,
1 s = "1 Hz"), keeps every viewer alive with ``--changes-per-s`` profile changes per second
(about one media ping per viewer every 30 s by default), connects ``--clients`` SSE clients and
measures for ``--seconds``:

* push latency: the server's ``lvp_viewer_push_latency_seconds`` histogram (profile
  ``last_seen`` -> delta pushed), p50/p99 interpolated in its buckets;
* delivery: change published (its ``last_seen``) -> delta frame received, over every client
  (frame arrival) and the delta's profiles (parsed on a sample of clients), p50/p99;
* CPU of the viewer process (user + system, % of one core) and its RSS;
* event -> page: in Chromium (when ``/usr/bin/chromium`` exists, under the same load), a status
  change published to the changes topic until the row's status attribute changes (a
  MutationObserver timestamps it), p50/p99 (target p99 < 1 s).

"Event" here is the change message as `lvp profiles` publishes it (``last_seen`` = collector
time of the event); the profiles consumer adds its publish interval (``LVP_PUBLISH_INTERVAL_S``,
0.1 s) and one Kafka hop before that.

    python -m bench.viewer_bench                  # 1,000 clients, 10,000 viewers, 1 Hz, 30 s
    python -m bench.viewer_bench --quick          # CI: 40 clients, 400 viewers, 4 s
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import resource
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789abcdef"
ID_RE = re.compile(rb"id: (\d+)\nevent: delta\n")
SAMPLE_EVERY = 25  # every n-th client parses every delta fully
TARGET_PAGE_P99_S = 1.0


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def hist_quantile(metrics: str, name: str, q: float) -> float | None:
    """Quantile from a Prometheus histogram's cumulative buckets (linear within a bucket)."""
    buckets: list[tuple[float, float]] = []
    for line in metrics.splitlines():
        if line.startswith(name + "_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if bound == "+Inf" else float(bound), float(line.rsplit(" ", 1)[1])))
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    target = q * total
    prev_le, prev_n = 0.0, 0.0
    for le, n in buckets:
        if n >= target:
            if le == float("inf"):
                return prev_le
            frac = (target - prev_n) / (n - prev_n) if n > prev_n else 1.0
            return prev_le + (le - prev_le) * frac
        prev_le, prev_n = le, n
    return prev_le


def _counter(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


# --- load: keep the viewers alive with changes --------------------------------------------------
class ChangeLoad(threading.Thread):
    def __init__(self, settings: Any, profiles: list[dict[str, Any]], per_s: float) -> None:
        super().__init__(daemon=True, name="change-load")
        from confluent_kafka import Producer

        from lvp.kafka import producer_config

        self.settings = settings
        self.profiles = profiles
        self.per_s = per_s
        self.producer = Producer(producer_config(settings, log_level=2))
        self.stop = threading.Event()
        self.sent = 0

    def publish(self, profile: dict[str, Any]) -> None:
        from viewer.live import iso

        profile["last_seen"] = iso(time.time())
        profile["events"] = int(profile["events"]) + 1
        if profile.get("duration_s") and profile.get("position_s") is not None:
            profile["position_s"] = round(min(profile["duration_s"], profile["position_s"] + 1.0), 1)
        self.producer.produce(
            self.settings.topic_changes, key=str(profile["viewer_id"]).encode(), value=orjson.dumps(profile)
        )
        self.sent += 1

    def run(self) -> None:
        rng = random.Random(7)
        step = 0.05
        order = list(range(len(self.profiles)))
        rng.shuffle(order)
        i = 0
        carry = 0.0
        while not self.stop.is_set():
            carry += self.per_s * step
            n, carry = int(carry), carry - int(carry)
            for _ in range(n):
                self.publish(self.profiles[order[i % len(order)]])
                i += 1
            self.producer.poll(0)
            self.stop.wait(step)
        self.producer.flush(10)


# --- SSE clients ------------------------------------------------------------------------------------
class Client:
    def __init__(self, n: int, sample: bool) -> None:
        self.n = n
        self.sample = sample
        self.arrivals: dict[int, float] = {}
        self.snapshot = False
        self.bytes = 0
        self.status = 0
        self.latencies: list[float] = []  # last_seen -> arrival, sampled clients only
        self.generated: dict[int, float] = {}
        self.closed = False


async def run_client(base: str, client: Client, stop: asyncio.Event) -> None:
    from viewer.live import parse_ts

    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port), limit=2**22)
    writer.write(
        (
            f"GET /api/viewers/stream?limit=50 HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    client.status = int(head.split(b" ", 2)[1])
    tail = b""
    body = b""  # de-chunked text for sampled clients
    try:
        while not stop.is_set():
            data = await reader.read(1 << 18)
            if not data:
                break
            now = time.time()
            client.bytes += len(data)
            scan = tail + data
            if not client.snapshot and b"event: snapshot" in scan:
                client.snapshot = True
            for m in ID_RE.finditer(scan):
                client.arrivals.setdefault(int(m.group(1)), now)
            tail = scan[-48:]
            if client.sample:
                body += data
                # frames are whole chunks; find complete "data: ...\n\n" delta payloads
                while True:
                    start = body.find(b"event: delta\ndata: ")
                    if start < 0:
                        body = body[-64:]
                        break
                    end = body.find(b"\n\n", start)
                    if end < 0:
                        body = body[start:]
                        break
                    payload = body[start + len(b"event: delta\ndata: ") : end]
                    body = body[end + 2 :]
                    delta = orjson.loads(payload)
                    gen = parse_ts(delta["generated_at"])
                    if gen is not None:
                        client.generated[int(delta["seq"])] = gen
                    for p in delta["upsert"]:
                        seen = parse_ts(p["last_seen"])
                        if seen is not None:
                            client.latencies.append(now - seen)
    finally:
        client.closed = True
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def fan_out(
    base: str,
    clients: int,
    seconds: float,
    until: threading.Event | None = None,
    connected_event: threading.Event | None = None,
) -> dict[str, Any]:
    """Connect ``clients`` streams, then measure for ``seconds`` (or until ``until`` is set)."""
    stop = asyncio.Event()
    cs = [Client(i, i % SAMPLE_EVERY == 0) for i in range(clients)]
    tasks = []
    t_connect = time.monotonic()
    for c in cs:
        tasks.append(asyncio.create_task(run_client(base, c, stop)))
        if len(tasks) % 50 == 0:
            await asyncio.sleep(0.02)
    deadline = time.monotonic() + 60
    while sum(c.snapshot for c in cs) < clients and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    connected = sum(c.snapshot for c in cs)
    connect_s = time.monotonic() - t_connect
    for c in cs:  # measure only the window
        c.arrivals.clear()
        c.latencies.clear()
        c.bytes = 0
    if connected_event is not None:
        connected_event.set()
    t0 = time.time()
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (until is not None and until.is_set()):
        await asyncio.sleep(0.05)
    window = time.time() - t0
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    generated: dict[int, float] = {}
    for c in cs:
        generated.update(c.generated)
    fan_lag = [
        arrival - generated[seq] for c in cs for seq, arrival in c.arrivals.items() if seq in generated
    ]
    latencies = [x for c in cs for x in c.latencies]
    frames = [len(c.arrivals) for c in cs if c.snapshot]
    return {
        "clients_connected": connected,
        "connect_s": round(connect_s, 2),
        "window_s": round(window, 2),
        "frames_per_client_min": min(frames) if frames else 0,
        "frames_per_client_max": max(frames) if frames else 0,
        "bytes_per_s_total": round(sum(c.bytes for c in cs) / window),
        "delivery_p50_s": pct(latencies, 0.5),
        "delivery_p99_s": pct(latencies, 0.99),
        "fanout_lag_p50_s": pct(fan_lag, 0.5),
        "fanout_lag_p99_s": pct(fan_lag, 0.99),
    }


# --- event -> page in Chromium --------------------------------------------------------------------
OBSERVER_JS = """
(vid) => {
  window.__changes = window.__changes || [];
  const row = document.querySelector(`#rows tr[data-viewer="${vid}"]`);
  if (!row) return false;
  new MutationObserver(() => window.__changes.push([row.dataset.status, Date.now()]))
    .observe(row, { attributes: true, attributeFilter: ["data-status"] });
  return true;
}
"""


def page_latency(
    base: str, settings: Any, profile: dict[str, Any], flips: int, load: ChangeLoad
) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from lvp.chromium import CHROMIUM, CHROMIUM_ARGS
    from viewer.live import iso

    args = list(CHROMIUM_ARGS)
    vid = str(profile["viewer_id"])
    out: list[float] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(base + "/")
        page.fill("#token", TOKEN)
        page.click("#login-btn")
        page.fill("#search", vid[:12])  # keep the row on screen whatever the sort
        page.locator(f'#rows tr[data-viewer="{vid}"]').wait_for(timeout=30000)
        time.sleep(0.5)
        page.evaluate(OBSERVER_JS, vid)
        statuses = ["paused", "watching"]
        for k in range(flips):
            status = statuses[k % 2]
            profile["status"] = status
            profile["events"] = int(profile["events"]) + 1
            sent = time.time()
            profile["last_seen"] = iso(sent)
            load.producer.produce(settings.topic_changes, key=vid.encode(), value=orjson.dumps(profile))
            load.producer.flush(5)
            deadline = time.monotonic() + 5
            seen_at = None
            while time.monotonic() < deadline and seen_at is None:
                for st, at in page.evaluate("() => window.__changes.splice(0)"):
                    if st == status:
                        seen_at = at / 1000.0
                if seen_at is None:
                    time.sleep(0.02)
            out.append((seen_at - sent) if seen_at is not None else float("inf"))
            time.sleep(0.3)
        browser.close()
    finite = [x for x in out if x != float("inf")]
    return {
        "page_changes": len(out),
        "page_missed": len(out) - len(finite),
        "page_p50_s": pct(finite, 0.5),
        "page_p99_s": pct(finite, 0.99),
    }


# --- orchestration --------------------------------------------------------------------------------
class Viewer:
    """`lvp viewer` in its own process."""

    def __init__(self, env: dict[str, str], push_interval: float, log_name: str) -> None:
        from lvp.broker import free_port

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        log = open(ROOT / "test-output" / log_name, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lvp.cli", "--log-level", "WARNING", "viewer", "--port", str(self.port)],
            env={**env, "LVP_PUSH_INTERVAL_S": str(push_interval)},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.http = httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)

    def wait_loaded(self, viewers: int, timeout: float = 180) -> float:
        t0 = time.monotonic()
        while True:
            try:
                h = self.http.get("/health").json()  # no counts there: they come from the API
                if (
                    h["loaded"]
                    and self.http.get("/api/viewers", params={"limit": 1}).json()["active"] >= viewers
                ):
                    return time.monotonic() - t0
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() - t0 > timeout:
                raise RuntimeError("viewer did not load the viewers; see test-output/viewer-bench-*.log")
            time.sleep(0.1)

    def server_figures(self, cpu_s: float, wall_s: float) -> dict[str, Any]:
        metrics = self.http.get("/metrics").text
        return {
            "server_cpu_pct": round(100 * cpu_s / wall_s, 1),
            "server_rss_mb": round(proc_rss_mb(self.proc.pid), 1),
            "push_latency_p50_s": hist_quantile(metrics, "lvp_viewer_push_latency_seconds", 0.5),
            "push_latency_p99_s": hist_quantile(metrics, "lvp_viewer_push_latency_seconds", 0.99),
            "pushes": _counter(metrics, "lvp_viewer_pushes_total"),
            "sse_dropped": _counter(metrics, "lvp_viewer_sse_dropped_total"),
        }

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def phase(
    env: dict[str, str],
    args: argparse.Namespace,
    push_interval: float,
    settings: Any,
    load: ChangeLoad,
    page_profile: dict[str, Any] | None,
) -> dict[str, Any]:
    """One viewer process at ``push_interval``: fan-out figures, and event -> page if asked."""
    viewer = Viewer(env, push_interval, f"viewer-bench-{push_interval}s.log")
    try:
        out: dict[str, Any] = {
            "push_interval_s": push_interval,
            "load_s": round(viewer.wait_loaded(args.viewers), 2),
        }
        cpu0, t0 = proc_cpu_s(viewer.proc.pid), time.monotonic()
        if page_profile is None:
            out.update(asyncio.run(fan_out(viewer.base, args.clients, args.seconds)))
        else:
            until, connected = threading.Event(), threading.Event()
            box: dict[str, Any] = {}

            def clients() -> None:
                box.update(asyncio.run(fan_out(viewer.base, args.clients, 3600, until, connected)))

            th = threading.Thread(target=clients, daemon=True)
            th.start()
            connected.wait(120)
            try:
                out.update(page_latency(viewer.base, settings, page_profile, args.page_changes, load))
            finally:
                until.set()
                th.join(60)
            out.update(box)
        out.update(viewer.server_figures(proc_cpu_s(viewer.proc.pid) - cpu0, time.monotonic() - t0))
        return out
    finally:
        viewer.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--viewers", type=int, default=10_000)
    ap.add_argument("--changes-per-s", type=float, default=None, help="default: viewers / 30")
    ap.add_argument("--push-interval", type=float, default=1.0, help="fan-out phase (1 s = 1 Hz)")
    ap.add_argument("--page-push-interval", type=float, default=0.25, help="event -> page phase (default)")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--page-changes", type=int, default=20, help="status flips timed in Chromium; 0 = skip")
    ap.add_argument("--bootstrap-servers", default=None)
    ap.add_argument("--quick", action="store_true", help="CI: 40 clients, 400 viewers, 4 s, 5 flips")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if args.quick:
        args.clients, args.viewers, args.seconds, args.page_changes = 40, 400, 4.0, 5
    per_s = args.changes_per_s if args.changes_per_s is not None else args.viewers / 30.0

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.clients + 1024)), hard))
    (ROOT / "test-output").mkdir(exist_ok=True)

    from lvp.broker import free_port, start_broker, stop_process
    from lvp.config import Settings
    from lvp.kafka import create_topics
    from viewer.testing import demo_viewer

    broker_proc = None
    bootstrap = args.bootstrap_servers
    if bootstrap is None:
        broker_proc, bootstrap = start_broker()
    tag = uuid.uuid4().hex[:8]
    settings = Settings.from_env(
        {},
        kafka_bootstrap_servers=bootstrap,
        topic_good=f"bench-good-{tag}",
        topic_bad=f"bench-bad-{tag}",
        topic_changes=f"bench-changes-{tag}",
    )
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "LVP_TOPIC_CHANGES": settings.topic_changes,
        "LVP_API_TOKENS": TOKEN,
        "LVP_JWT_SECRET": "bench-secret-" + "x" * 32,
        "LVP_SSE_MAX_PER_TOKEN": str(args.clients + 100),
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",  # the stream never reads DynamoDB
    }
    setup = {"clients": args.clients, "viewers": args.viewers, "changes_per_s": round(per_s, 1)}
    results: list[dict[str, Any]] = []
    load = None
    try:
        create_topics(settings)
        now = time.time()
        profiles = [demo_viewer(i, now, key=tag) for i in range(args.viewers)]
        for p in profiles:
            if p["status"] == "idle":
                p["status"] = "watching"
        load = ChangeLoad(settings, profiles, per_s)
        for p in profiles:
            load.publish(p)
            load.producer.poll(0)
        load.producer.flush(30)
        load.start()
        results.append(phase(env, args, args.push_interval, settings, load, None))
        if args.page_changes and Path("/usr/bin/chromium").exists():
            results.append(phase(env, args, args.page_push_interval, settings, load, profiles[0]))
        setup["changes_sent"] = load.sent
    finally:
        if load is not None:
            load.stop.set()
        if broker_proc is not None:
            stop_process(broker_proc)
    print_table(setup, results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"setup": setup, "phases": results}, indent=2))
    ok = all(r.get("clients_connected") == args.clients for r in results)
    ok = ok and all(r.get("page_missed", 0) == 0 for r in results)
    return 0 if ok else 1


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if v < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return "-" if v is None else str(v)


def print_table(setup: dict[str, Any], results: list[dict[str, Any]]) -> None:
    print("\n## lvp viewer fan-out\n")
    print(", ".join(f"{k} {_fmt(v)}" for k, v in setup.items()))
    print()
    names = [f"push every {r['push_interval_s']} s" for r in results]
    print("| measure | " + " | ".join(names) + " |")
    print("| --- |" + " --- |" * len(results))
    keys: list[str] = []
    for r in results:
        keys += [k for k in r if k not in keys and k != "push_interval_s"]
    for k in keys:
        print(f"| {k} | " + " | ".join(_fmt(r.get(k)) for r in results) + " |")
    for r in results:
        p99 = r.get("page_p99_s")
        if p99 is not None:
            verdict = "meets" if p99 < TARGET_PAGE_P99_S else "misses"
            print(f"\nevent -> page p99 {p99:.3f} s {verdict} the < {TARGET_PAGE_P99_S:.0f} s target")


if __name__ == "__main__":
    sys.exit(main())
