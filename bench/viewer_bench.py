"""`lvp viewer` at a large live audience: many active viewers, 1 to 1,000 SSE clients, the page.

Component bench: the changes topic is written directly, in the formats `lvp profiles`
publishes (:mod:`lvp.changes`): ``--viewers`` profiles preloaded, then, while measuring, every
viewer's media ping every ``--ping-s`` (30 s) as **touches** (one touches message per partition
per second carrying all of that partition's due pings) and ``--changes-per-s`` significant
changes (status flips watching <-> paused, full profile messages). One `lvp viewer` process
(default push interval, 0.25 s) reads it all. Then, for each SSE client count of ``--clients``
(1, 100, 1000), ``--runs`` windows of ``--seconds``, medians reported:

* viewer CPU (user + system of its process) per change applied (touch row or profile message)
  and in % of one core — the baseline for "CPU grows with changes, not clients" is the same
  run's 1-client figure;
* bytes per push per client (the delta frames clients received / frames), frames per client;
* push latency p50/p99 (the server's ``lvp_viewer_push_latency_seconds`` over the window:
  collector ``last_seen`` -> the push reflecting it);
* lost: clients dropped or disconnected, plus clients that received no frame (must be 0).

Clients subscribe like the live page does: a window of 200 rows, spread over the page's windows
(all, and each status filter). Also measured: the live view's memory per viewer (tracemalloc
of a :class:`viewer.live.LiveView` holding the same profiles, next to their JSON size as the
baseline), the viewer process's RSS, snapshot bytes (the stream's first frame for a 200-row
window, and ``GET /api/viewers?limit=200``), and the page's CPU in Chromium over
``--page-seconds`` (Chrome DevTools ``Performance.getMetrics``: main-thread task time / wall
time) under the load, against the same page with the load paused (baseline, same run).

    python -m bench.viewer_bench            # 100,000 viewers, clients 1/100/1000, 3 runs, page 60 s
    python -m bench.viewer_bench --quick    # CI: 2,000 viewers, clients 1/10/40, 2 runs, page 4 s
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
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
# the Chromium launcher and the viewer's test data are shared with the tests (tests/support/)
sys.path.insert(0, str(ROOT / "tests"))
TOKEN = "bench-token-0123456789abcdef"
ID_RE = re.compile(rb"id: (\d+)\nevent: delta\n")
WINDOWS = (
    "",
    "&status=watching",
    "&status=paused",
    "&status=buffering",
    "&status=watching_ad",
    "&status=idle",
)
ROWS = 200  # the page's window


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def hist_buckets(metrics: str, name: str) -> list[tuple[float, float]]:
    """A Prometheus histogram's cumulative buckets ``[(le, count), ...]``."""
    out: list[tuple[float, float]] = []
    for line in metrics.splitlines():
        if line.startswith(name + "_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            out.append((float("inf") if bound == "+Inf" else float(bound), float(line.rsplit(" ", 1)[1])))
    return out


def hist_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Quantile from cumulative buckets (linear within a bucket)."""
    if not buckets or buckets[-1][1] == 0:
        return None
    target = q * buckets[-1][1]
    prev_le, prev_n = 0.0, 0.0
    for le, n in buckets:
        if n >= target:
            if le == float("inf"):
                return prev_le
            frac = (target - prev_n) / (n - prev_n) if n > prev_n else 1.0
            return prev_le + (le - prev_le) * frac
        prev_le, prev_n = le, n
    return prev_le


def hist_diff(
    after: list[tuple[float, float]], before: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    old = dict(before)
    return [(le, n - old.get(le, 0.0)) for le, n in after]


def counter(metrics: str, name: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


# --- the audience: profiles, then pings as touches and significant changes ----------------------
class Load(threading.Thread):
    """Keeps ``profiles`` alive the way `lvp profiles` would publish them: every viewer's ping
    every ``ping_s`` in the touches message of its partition (one per partition per second), and
    ``changes_per_s`` status flips as full profile messages."""

    def __init__(
        self, settings: Any, profiles: list[dict[str, Any]], ping_s: float, changes_per_s: float
    ) -> None:
        super().__init__(daemon=True, name="load")
        from confluent_kafka import Producer

        from lvp.kafka import producer_config

        self.settings = settings
        self.profiles = profiles
        self.ping_s = ping_s
        self.changes_per_s = changes_per_s
        self.producer = Producer(producer_config(settings, log_level=2, **{"linger.ms": 20}))
        meta = self.producer.list_topics(settings.topic_changes, timeout=10).topics[settings.topic_changes]
        self.partitions = len(meta.partitions)
        self.stop = threading.Event()
        self.paused = threading.Event()
        self.no_flip: set[int] = set()  # viewers whose status the page latency phase owns
        self.touches_sent = 0  # touch rows (one per ping)
        self.profiles_sent = 0

    def publish(self, profile: dict[str, Any]) -> None:
        self.producer.produce(
            self.settings.topic_changes, key=str(profile["viewer_id"]).encode(), value=orjson.dumps(profile)
        )
        self.profiles_sent += 1

    def _ping(self, profile: dict[str, Any], now: float) -> None:
        from lvp.enriched import iso

        profile["last_seen"] = iso(now)
        profile["events"] = int(profile["events"]) + 1
        profile["last_event_name"] = "ping"
        if profile.get("status") == "watching" and profile.get("position_s") is not None:
            duration = profile.get("duration_s") or 0
            pos = profile["position_s"] + self.ping_s
            profile["position_s"] = round(min(duration, pos) if duration else pos, 1)
            profile["play_time_s"] = round(float(profile.get("play_time_s") or 0) + self.ping_s, 1)

    def run(self) -> None:
        from lvp.changes import TOUCH_KEY_PREFIX, encode_touches, partition_for, touch_patch
        from lvp.enriched import iso

        rng = random.Random(7)
        parts = [partition_for(str(p["viewer_id"]).encode(), self.partitions) for p in self.profiles]
        n = len(self.profiles)
        per_tick = n / self.ping_s  # pings per 1 s tick
        cursor, carry, flip_carry = 0, 0.0, 0.0
        next_tick = time.monotonic()
        while not self.stop.is_set():
            next_tick += 1.0
            if not self.paused.is_set():
                now = time.time()
                carry += per_tick
                k, carry = int(carry), carry - int(carry)
                rows: dict[int, list[list[Any]]] = {}
                for _ in range(k):
                    i = cursor % n
                    cursor += 1
                    p = self.profiles[i]
                    self._ping(p, now)
                    rows.setdefault(parts[i], []).append([p["viewer_id"], *touch_patch(p)])
                for part, touches in rows.items():
                    self.producer.produce(
                        self.settings.topic_changes,
                        key=TOUCH_KEY_PREFIX + str(part).encode(),
                        value=encode_touches(touches),
                        partition=part,
                    )
                    self.touches_sent += len(touches)
                flip_carry += self.changes_per_s
                flips, flip_carry = int(flip_carry), flip_carry - int(flip_carry)
                for _ in range(flips):
                    i = rng.randrange(n)
                    if i in self.no_flip:
                        continue
                    p = self.profiles[i]
                    p["status"] = "paused" if p["status"] == "watching" else "watching"
                    p["events"] = int(p["events"]) + 1
                    p["last_seen"] = iso(time.time())
                    self.publish(p)
                self.producer.poll(0)
            self.stop.wait(max(0.0, next_tick - time.monotonic()))
        self.producer.flush(10)

    def sent(self) -> int:
        return self.touches_sent + self.profiles_sent


# --- SSE clients --------------------------------------------------------------------------------------
class Client:
    def __init__(self, n: int, window: str) -> None:
        self.n = n
        self.window = window
        self.snapshot_bytes = 0
        self.frames = 0
        self.bytes = 0
        self.status = 0
        self.closed = False
        self.measuring = False
        self.ended_early = False  # the server ended the stream while we were measuring


async def run_client(base: str, client: Client, stop: asyncio.Event) -> None:
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port), limit=2**22)
    writer.write(
        (
            f"GET /api/viewers/stream?limit={ROWS}{client.window} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    client.status = int(head.split(b" ", 2)[1])
    pending = b""
    try:
        while not stop.is_set():
            data = await reader.read(1 << 18)
            if not data:
                client.ended_early = client.measuring
                break
            if not client.snapshot_bytes:
                pending += data
                end = pending.find(b"\n\n", pending.find(b"event: snapshot"))
                if b"event: snapshot" in pending and end > 0:
                    client.snapshot_bytes = end + 2 - pending.find(b"id: ")
                    pending = b""
                continue
            if client.measuring:
                client.bytes += len(data)
                client.frames += len(ID_RE.findall(data))
    finally:
        client.closed = True
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def connect_clients(
    base: str, n: int, stop: asyncio.Event
) -> tuple[list[Client], list[asyncio.Task[None]]]:
    cs = [Client(i, WINDOWS[i % len(WINDOWS)]) for i in range(n)]
    tasks = []
    for c in cs:
        tasks.append(asyncio.create_task(run_client(base, c, stop)))
        if len(tasks) % 50 == 0:
            await asyncio.sleep(0.05)
    deadline = time.monotonic() + 120
    while sum(bool(c.snapshot_bytes) for c in cs) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return cs, tasks


# --- the viewer process -----------------------------------------------------------------------------
class Viewer:
    """`lvp viewer` in its own process."""

    def __init__(self, env: dict[str, str], log_name: str) -> None:
        from lvp.local.broker import free_port

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        log = open(ROOT / "test-output" / log_name, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lvp.cli", "--log-level", "WARNING", "viewer", "--port", str(self.port)],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.http = httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)

    def wait_loaded(self, viewers: int, timeout: float = 600) -> float:
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
                raise RuntimeError("viewer did not load the viewers; see test-output/viewer-bench.log")
            time.sleep(0.2)

    def metrics(self) -> str:
        return self.http.get("/metrics").text

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def window(viewer: Viewer, load: Load, clients: int, seconds: float) -> dict[str, Any]:
    """Connect ``clients`` streams, then measure for ``seconds``."""
    stop = asyncio.Event()
    cs, tasks = await connect_clients(viewer.base, clients, stop)
    connected = sum(bool(c.snapshot_bytes) for c in cs)
    await asyncio.sleep(1.0)  # past the first (catch-up) push after the connects
    m0 = await asyncio.to_thread(viewer.metrics)
    cpu0, sent0, t0 = proc_cpu_s(viewer.proc.pid), load.sent(), time.monotonic()
    for c in cs:
        c.measuring = True
    await asyncio.sleep(seconds)
    for c in cs:
        c.measuring = False
    cpu, sent, wall = proc_cpu_s(viewer.proc.pid) - cpu0, load.sent() - sent0, time.monotonic() - t0
    m1 = await asyncio.to_thread(viewer.metrics)
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    lat = hist_diff(
        hist_buckets(m1, "lvp_viewer_push_latency_seconds"),
        hist_buckets(m0, "lvp_viewer_push_latency_seconds"),
    )
    frames = [c.frames for c in cs]
    dropped = int(counter(m1, "lvp_viewer_sse_dropped_total") - counter(m0, "lvp_viewer_sse_dropped_total"))
    silent = sum(1 for f in frames if f == 0)
    ended = sum(1 for c in cs if c.ended_early)
    return {
        "clients_connected": connected,
        "changes_per_s": sent / wall,
        "cpu_pct": 100 * cpu / wall,
        "cpu_us_per_change": 1e6 * cpu / sent if sent else None,
        "pushes_per_s": (counter(m1, "lvp_viewer_pushes_total") - counter(m0, "lvp_viewer_pushes_total"))
        / wall,
        "frames_per_client_s": statistics.median(frames) / wall if frames else 0.0,
        "bytes_per_push_per_client": sum(c.bytes for c in cs) / max(1, sum(frames)),
        "bytes_per_s_all_clients": sum(c.bytes for c in cs) / wall,
        "snapshot_frame_bytes": statistics.median(c.snapshot_bytes for c in cs) if cs else 0,
        "push_latency_p50_s": hist_quantile(lat, 0.5),
        "push_latency_p99_s": hist_quantile(lat, 0.99),
        "dropped": dropped,
        "silent": silent,
        "lost": dropped + (clients - connected) + silent + ended,
    }


# --- memory per viewer held in the live view ------------------------------------------------------------
def view_memory(profiles: list[dict[str, Any]], timeout_s: float) -> dict[str, Any]:
    """Bytes the live view holds per viewer (tracemalloc), and the profiles' JSON size (baseline)."""
    from viewer.live import LiveView

    payloads = [orjson.dumps(p) for p in profiles]
    json_bytes = sum(len(b) for b in payloads) / len(payloads)
    decoded = [orjson.loads(b) for b in payloads]  # what the reader hands over: fresh objects
    del payloads
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    view = LiveView(timeout_s)
    now = time.time()
    for p in decoded:
        view.apply(str(p["viewer_id"]), p, now)
    del decoded  # the view keeps its own API dicts
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return {
        "viewers_held": len(view),
        "view_bytes_per_viewer": held / max(1, len(view)),
        "profile_json_bytes": json_bytes,
    }


# --- the page in Chromium ---------------------------------------------------------------------------------
def descendants_cpu_s(root: int, name: str = "chromium") -> float:
    """User + system CPU seconds of the processes under ``root`` whose command is ``name``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0.0, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/comm") as fh:
                comm = fh.read().strip()
            if name in comm:
                total += proc_cpu_s(pid)
        except OSError:
            continue
    return total


def page_cpu(base: str, load: Load, seconds: float) -> dict[str, Any]:
    """The live page's main-thread CPU (DevTools TaskDuration / wall) under the load and, as the
    baseline, with the load paused; its rows and JS heap."""
    from playwright.sync_api import sync_playwright
    from support.chromium import CHROMIUM, CHROMIUM_ARGS

    out: dict[str, Any] = {}
    me = os.getpid()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        page = browser.new_page(viewport={"width": 1480, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(base + "/")
        page.fill("#token", TOKEN)
        page.click("#login-btn")
        page.locator("#rows tr").nth(ROWS - 1).wait_for(timeout=60000)
        cdp = page.context.new_cdp_session(page)
        cdp.send("Performance.enable")

        def measure(label: str, seconds: float) -> None:
            def metrics() -> dict[str, float]:
                return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}

            time.sleep(2.0)
            m0, c0, t0 = metrics(), descendants_cpu_s(me), time.monotonic()
            time.sleep(seconds)
            m1, c1, wall = metrics(), descendants_cpu_s(me), time.monotonic() - t0
            # CPU time of every Chromium process (browser, renderer, GPU/viz; from /proc), and the
            # renderer main thread's busy time as DevTools reports it (wall time of its tasks,
            # inflated when the machine is oversubscribed)
            out[f"page_chromium_cpu_pct_{label}"] = 100 * (c1 - c0) / wall
            out[f"page_main_thread_busy_pct_{label}"] = 100 * (m1["TaskDuration"] - m0["TaskDuration"]) / wall
            out[f"page_script_pct_{label}"] = 100 * (m1["ScriptDuration"] - m0["ScriptDuration"]) / wall
            out[f"page_heap_mb_{label}"] = m1["JSHeapUsedSize"] / 1e6

        measure("load", seconds)
        out["page_rows"] = page.locator("#rows tr").count()
        out["page_active_shown"] = page.text_content("#kpi-active")
        page.screenshot(path=str(ROOT / "test-output" / "viewer-bench-page.png"))
        load.paused.set()
        try:
            # shorter than the time before the oldest pings time out (75 - 30 s): really idle
            measure("idle", min(seconds, 30.0))
            page.emulate_media(reduced_motion="reduce")  # the page's CSS animations off
            measure("idle_no_animation", min(seconds, 30.0))
        finally:
            load.paused.clear()
        out["page_errors"] = len(errors)
        browser.close()
    return out


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


def page_latency(base: str, settings: Any, profile: dict[str, Any], flips: int, load: Load) -> dict[str, Any]:
    """Event -> page: a status change published to the changes topic until the row's status
    attribute changes on the page (a MutationObserver timestamps it); the page searches for the
    viewer (a server-side window) so its row is on screen among 100,000."""
    from playwright.sync_api import sync_playwright
    from support.chromium import CHROMIUM, CHROMIUM_ARGS

    from lvp.enriched import iso

    args = list(CHROMIUM_ARGS)
    vid = str(profile["viewer_id"])
    out: list[float] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(base + "/")
        page.fill("#token", TOKEN)
        page.click("#login-btn")
        page.fill("#search", vid[:12])  # the stream's window: this viewer
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
            load.publish(profile)
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
def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the runs (``lost``: the sum, every run must lose nothing)."""
    out: dict[str, Any] = {"runs": len(runs)}
    for key in runs[0]:
        values = [r[key] for r in runs if r.get(key) is not None]
        if key == "lost":
            out[key] = sum(values)
        elif values:
            out[key] = statistics.median(values)
        else:
            out[key] = None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--viewers", type=int, default=100_000)
    ap.add_argument("--clients", default="1,100,1000", help="SSE client counts, comma-separated")
    ap.add_argument("--runs", type=int, default=3, help="windows per client count (medians reported)")
    ap.add_argument("--seconds", type=float, default=20.0, help="one measuring window")
    ap.add_argument("--ping-s", type=float, default=30.0, help="each viewer's ping interval (touches)")
    ap.add_argument("--changes-per-s", type=float, default=None, help="status flips/s; default viewers / 600")
    ap.add_argument("--page-seconds", type=float, default=60.0, help="Chromium page CPU window; 0 = skip")
    ap.add_argument("--page-changes", type=int, default=20, help="status flips timed in Chromium; 0 = skip")
    ap.add_argument("--bootstrap-servers", default=None)
    ap.add_argument("--quick", action="store_true", help="CI: 2,000 viewers, clients 1/10/40, 2 runs of 3 s")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if args.quick:
        args.viewers, args.clients, args.runs, args.seconds, args.page_seconds = 2000, "1,10,40", 2, 3.0, 4.0
        args.page_changes = 5
    counts = [int(x) for x in str(args.clients).split(",") if x.strip()]
    flips = args.changes_per_s if args.changes_per_s is not None else args.viewers / 600.0

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * max(counts) + 1024)), hard))
    (ROOT / "test-output").mkdir(exist_ok=True)

    from support.viewer import demo_viewer

    from lvp.config import Settings
    from lvp.kafka import create_topics
    from lvp.local.broker import free_port, start_broker, stop_process

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
        "LVP_SSE_MAX_PER_TOKEN": str(max(counts) + 100),
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",  # the stream never reads DynamoDB
    }
    setup: dict[str, Any] = {
        "viewers": args.viewers,
        "touches_per_s": round(args.viewers / args.ping_s, 1),
        "status_changes_per_s": round(flips, 1),
        "window_s": args.seconds,
        "runs": args.runs,
    }
    results: dict[str, Any] = {}
    load = viewer = None
    try:
        create_topics(settings)
        now = time.time()
        profiles = [demo_viewer(i, now, key=tag) for i in range(args.viewers)]
        for p in profiles:
            if p["status"] == "idle":
                p["status"] = "watching"
        results["memory"] = view_memory(profiles, settings.active_timeout_s)
        load = Load(settings, profiles, args.ping_s, flips)
        from lvp.enriched import iso

        for p in profiles:
            p["last_seen"] = iso(time.time())  # seen now: the preload itself takes a while
            load.publish(p)
            load.producer.poll(0)
        load.producer.flush(120)
        load.start()
        viewer = Viewer(env, "viewer-bench.log")
        setup["load_s"] = round(viewer.wait_loaded(args.viewers), 1)
        results["memory"]["server_rss_mb"] = proc_rss_mb(viewer.proc.pid)
        results["memory"]["server_rss_bytes_per_viewer"] = proc_rss_mb(viewer.proc.pid) * 1e6 / args.viewers
        rest = viewer.http.get("/api/viewers", params={"limit": ROWS})
        results["snapshot_rest_bytes"] = len(rest.content)
        results["fan_out"] = {}
        for n in counts:
            runs = [asyncio.run(window(viewer, load, n, args.seconds)) for _ in range(args.runs)]
            results["fan_out"][str(n)] = median_of(runs)
            print(f"clients {n}: {json.dumps(results['fan_out'][str(n)])}", flush=True)
        if args.page_seconds and Path("/usr/bin/chromium").exists():
            results["page"] = page_cpu(viewer.base, load, args.page_seconds)
        if args.page_changes and Path("/usr/bin/chromium").exists():
            # a viewer the load does not flip (it picks at random: keep this one to ourselves)
            load.no_flip.add(len(profiles) - 1)
            target = profiles[-1]
            results.setdefault("page", {}).update(
                page_latency(viewer.base, settings, target, args.page_changes, load)
            )
        setup["changes_sent"] = load.sent()
    finally:
        if viewer is not None:
            viewer.stop()
        if load is not None:
            load.stop.set()
            load.join(15)
        if broker_proc is not None:
            stop_process(broker_proc)
    print_table(setup, results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"setup": setup, **results}, indent=2))
    fan = results.get("fan_out", {})
    ok = bool(fan) and all(r["lost"] == 0 and r["clients_connected"] == int(n) for n, r in fan.items())
    ok = ok and results.get("page", {}).get("page_errors", 0) == 0
    ok = ok and results.get("page", {}).get("page_missed", 0) == 0
    return 0 if ok else 1


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v == 0:
            return "0"
        return f"{v:.3f}" if abs(v) < 10 else f"{v:,.1f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return "-" if v is None else str(v)


def print_table(setup: dict[str, Any], results: dict[str, Any]) -> None:
    print("\n## lvp viewer at a live audience\n")
    print(", ".join(f"{k} {_fmt(v)}" for k, v in setup.items()))
    fan = results.get("fan_out", {})
    if fan:
        print()
        print(
            "| measure (median of runs) | "
            + " | ".join(f"{n} client{'s' if n != '1' else ''}" for n in fan)
            + " |"
        )
        print("| --- |" + " ---: |" * len(fan))
        keys = list(next(iter(fan.values())))
        for k in keys:
            print(f"| {k} | " + " | ".join(_fmt(r.get(k)) for r in fan.values()) + " |")
    print()
    for k, v in {
        **results.get("memory", {}),
        "snapshot_rest_bytes": results.get("snapshot_rest_bytes"),
    }.items():
        print(f"| {k} | {_fmt(v)} |")
    for k, v in results.get("page", {}).items():
        print(f"| {k} | {_fmt(v)} |")


if __name__ == "__main__":
    sys.exit(main())
