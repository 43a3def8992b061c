"""The whole stack (`lvp up`) under `lvp simulate`: how many concurrent viewers it carries on this
machine with event → SSE p99 < 1 s, and where the CPU goes.

The figure comes from the whole path: simulator → collector → Kafka → profiles consumer →
changes topic → viewer → an SSE client of ``/api/viewers/stream`` (and, at one level, the live
page in Chromium). Event → SSE latency = the client's receive time of a push minus the pushed
profile's ``last_seen`` (the collector's receive time of the viewer's newest event). It is
reported separately for

* **status** pushes: the profile's status differs from the one the client held — published at
  once;
* **ping** pushes: the status is unchanged and the newest event is a media ping — the consumer
  may batch these (touches);
* **new** viewers: the first push of a viewer the client did not hold (its first events; the
  consumer first looks the viewer up in DynamoDB).

A push counts only when it carries news: a profile whose ``last_seen`` is the one the client
already held (a row re-sent) is not a sample. The SSE client and the page follow a **search
window** (``q``: viewer ids holding a short hex string, ~20 % of the audience up to 15,000
viewers, ~1.5 % above, at most ``MAX_LIMIT`` rows; no search up to 2,000 viewers, who all fit): its members stay in it whatever their
status, so every push of a member is a change of that member. (The default window, the first
rows in page order, shifts: a viewer moving into it is re-sent with an older ``last_seen``,
which is no latency.) The search costs the viewer a scan of the live view on each push that
concerns the window, which the figures include. The page's window is smaller (``PAGE_ROWS``),
so it searches for a longer string (``page_q``).

The events carried by pushes slower than 1 s are counted by name (``sse_slow_by_event``).

For each level of N viewers, `lvp simulate` (realistic media-plugin traffic: 30 s pings, ads,
pauses — some for minutes —, seeks, buffering, abandons replaced by new viewers, late and
duplicated events, raw ids in page URLs) lets N viewers join over a ramp (~400 a second), lets their pre-rolls end (``--settle``),
waits until the stack has absorbed the ramp (joiners make about twice the steady rate: the
simulator's not-yet-accepted events and the consumer's lag both under a second of traffic, up to
``--settle-max``; a level that never catches up does not hold), then runs for the measured window; it then
stops (SIGTERM) and delivers every event it generated. Measured in the window:
events/s accepted, latencies, CPU of every component per event (simulator, collector, profiles,
viewer, broker, DynamoDB; from /proc), DynamoDB write requests (the profiles consumer's
``lvp_profiles_flush_size`` sum) per viewer-hour next to the events per viewer-hour (what one
write per event would cost), and memory per viewer (RSS over the idle stack's, per viewer held).
After the load stopped: the time until the consumer has **processed** every event on the good
topic (its lag, ``lvp_profiles_consumer_lag``, back to 0), then the time until the group's
**committed** offsets reach the topic's end too — with lazy writes an offset is committed once
every viewer with an event before it is written, i.e. when the viewers still playing at the stop
have gone quiet (``LVP_ACTIVE_TIMEOUT_S``) and were flushed, so that second time is mostly that
timeout —, and lost events (accepted per the simulator minus counted good by the collector).
Each level runs on a stack started for it (``--one-stack``: all on one), so
that none inherits the previous level's viewers. DynamoDB Local runs in memory (``lvp up --in-memory``): its SQLite file on disk costs it ~3x the
CPU per write and would measure DynamoDB Local's disk, not this stack (AWS DynamoDB is the
deploy). The baseline, in the same run, is the idle stack (N = 0). With ``--runs K`` the stack is started K
times and every figure is the median over the runs.

    python -m bench.stack_bench [--levels 3000,10000,30000,100000] [--seconds 60] [--settle 30] [--runs 3]
    python -m bench.stack_bench --quick     # CI: 0 and 20 viewers, 4 s pings, 2 runs
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from lvp.local.broker import free_port

ROOT = Path(__file__).resolve().parent.parent
# the Chromium launcher and the viewer's test data are shared with the tests (tests/support/)
sys.path.insert(0, str(ROOT / "tests"))
TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}  # the viewer's API, stream and /metrics
PING_INTERVAL_S = 30.0  # the media plugin's default
QUICK_PING_INTERVAL_S = 4.0  # --quick: short windows still see pings
COMPONENTS = {
    "simulator": re.compile(r"lvp\.cli simulate"),
    "collector": re.compile(r"lvp\.cli collector"),
    "profiles": re.compile(r"lvp\.cli profiles"),
    "viewer": re.compile(r"lvp\.cli viewer"),
    "broker": re.compile(r"tansu"),
    "dynamodb": re.compile(r"DynamoDBLocal|moto"),
}
TICK = os.sysconf("SC_CLK_TCK")
MAX_LIMIT = 5000  # viewer.live.MAX_LIMIT: the most rows a window holds
PAGE_ROWS = 200  # the live page's window (MAX_ROWS in viewer-frontend/app.js)
COMMIT_WAIT_S = 240.0  # LVP_ACTIVE_TIMEOUT_S and a flush, with room
PAGE_HOOK_JS = """
(() => {
  const Orig = window.EventSource;
  if (!Orig || window.__lvpLat) return;
  window.__lvpLat = [];
  const seen = new Map();
  const at = new Map();  // the last_seen held per viewer: a row re-sent is no sample
  function Hooked(url, opts) {
    const es = new Orig(url, opts);
    es.addEventListener("snapshot", (e) => {
      try {
        for (const p of JSON.parse(e.data).viewers || []) { seen.set(p.viewer_id, p.status); at.set(p.viewer_id, p.last_seen); }
      } catch (_) {}
    });
    es.addEventListener("delta", (e) => {
      const now = Date.now();  // the page's own receive time of this push
      let d;
      try { d = JSON.parse(e.data); } catch (_) { return; }
      for (const p of d.upsert || []) {
        const prev = seen.get(p.viewer_id);
        seen.set(p.viewer_id, p.status);
        if (!p.last_seen || at.get(p.viewer_id) === p.last_seen) continue;
        at.set(p.viewer_id, p.last_seen);
        const kind = prev === undefined ? "new" : prev !== p.status ? "status"
          : p.last_event_name === "ping" ? "ping" : "other";
        window.__lvpLat.push([now / 1000, (now - Date.parse(p.last_seen)) / 1000, kind]);
      }
      const f = d.touch_fields || [];  // pings arrive as touch rows: [viewer_id, ...touch fields]
      const iSeen = f.indexOf("last_seen"), iName = f.indexOf("last_event_name");
      for (const row of d.touch || []) {
        const seenAt = iSeen >= 0 ? row[iSeen + 1] : null;
        if (!seenAt || at.get(row[0]) === seenAt) continue;
        at.set(row[0], seenAt);
        const kind = iName >= 0 && row[iName + 1] === "ping" ? "ping" : "other";
        window.__lvpLat.push([now / 1000, (now - Date.parse(seenAt)) / 1000, kind]);
      }
    });
    return es;
  }
  Hooked.prototype = Orig.prototype;
  Hooked.CONNECTING = 0; Hooked.OPEN = 1; Hooked.CLOSED = 2;
  window.EventSource = Hooked;
})();
"""


# --- /proc ----------------------------------------------------------------------------------------
def _proc_table() -> dict[int, tuple[int, str]]:
    out = {}
    for d in Path("/proc").glob("[0-9]*"):
        try:
            stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        out[int(d.name)] = (int(stat[1]), cmd)
    return out


def component_pids(root_pids: list[int]) -> dict[str, list[int]]:
    table = _proc_table()
    family = set(root_pids)
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _) in table.items():
            if ppid in family and pid not in family:
                family.add(pid)
                changed = True
    found: dict[str, list[int]] = {}
    for pid in family:
        cmd = table.get(pid, (0, ""))[1]
        for name, pattern in COMPONENTS.items():
            if pattern.search(cmd):
                found.setdefault(name, []).append(pid)
                break
    return found


def cpu_seconds(pid: int) -> float:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / TICK
    except OSError:
        return 0.0


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_by_component(pids: dict[str, list[int]]) -> dict[str, float]:
    out = {name: sum(cpu_seconds(p) for p in ps) for name, ps in pids.items()}
    out["bench"] = time.process_time()  # this process: the SSE client and the sampling
    return out


def rss_by_component(pids: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(rss_mb(p) for p in ps) for name, ps in pids.items()}


# --- Prometheus text --------------------------------------------------------------------------------
def scrape(url: str) -> str:
    try:
        return httpx.get(url, timeout=5, headers=AUTH).text
    except httpx.HTTPError:
        return ""


def metric_sum(text: str, name: str, match: str = "") -> float:
    total = 0.0
    for line in text.splitlines():
        if (line.startswith(name + "{") or line.startswith(name + " ")) and match in line:
            with contextlib.suppress(ValueError):
                total += float(line.rsplit(" ", 1)[1])
    return total


# --- the SSE client -----------------------------------------------------------------------------------
@dataclass
class SSEProbe:
    """A client of the live stream: (receive time, latency, kind) of every profile pushed."""

    url: str
    samples: list[tuple[float, float, str]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # the newest event's name, per sample
    deltas: int = 0
    statuses: dict[str, str] = field(default_factory=dict)
    seen: dict[str, str] = field(default_factory=dict)  # the last_seen held, per viewer
    stop: threading.Event = field(default_factory=threading.Event)
    connected: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=httpx.Timeout(10.0, read=None)) as client:
            while not self.stop.is_set():
                try:
                    with client.stream("GET", self.url, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                        event = ""
                        for line in resp.iter_lines():
                            if self.stop.is_set():
                                return
                            if line.startswith("event:"):
                                event = line[6:].strip()
                            elif line.startswith("data:"):
                                self._frame(event, line[5:], time.time())
                except httpx.HTTPError:
                    time.sleep(0.5)

    def _frame(self, event: str, data: str, now: float) -> None:
        doc = orjson.loads(data)
        if event == "snapshot":
            for p in doc.get("viewers", []):
                self.statuses[p["viewer_id"]] = p.get("status", "")
                self.seen[p["viewer_id"]] = p.get("last_seen") or ""
            self.connected.set()
            return
        if event.startswith("touch"):  # touches as an SSE event of their own
            doc = {"touches": doc}
        elif event != "delta":
            return
        self.deltas += 1
        statuses, held, add = self.statuses, self.seen, self.samples.append
        for p in doc.get("upsert", []):
            vid, status = p.get("viewer_id"), p.get("status")
            prev = statuses.get(vid)
            statuses[vid] = status
            seen = p.get("last_seen")
            if not seen or held.get(vid) == seen:
                continue  # no new event: the row re-sent
            held[vid] = seen
            name = p.get("last_event_name") or ""
            kind = (
                "new"
                if prev is None
                else "status"
                if prev != status
                else "ping"
                if name == "ping"
                else "other"
            )
            add((now, now - _epoch(seen), kind))
            self.names.append(name)
        for key, value in doc.items():  # pings batched as touches, whatever the delta calls them
            if key.startswith("touch") and key != "touch_fields":
                if isinstance(value, list) and isinstance(doc.get("touch_fields"), list):
                    value = {"fields": doc["touch_fields"], "touches": value}  # the viewer's rows
                for patch in _touch_patches(value):
                    seen = patch.get("last_seen")
                    vid = str(patch.get("viewer_id"))
                    if seen and held.get(vid) != seen:
                        held[vid] = seen
                        name = patch.get("last_event_name") or ""
                        add((now, now - _epoch(seen), "ping" if name == "ping" else "other"))
                        self.names.append(name)


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _touch_patches(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict) and isinstance(value.get("fields"), list):  # the changes topic's shape
        names = value["fields"]
        return [
            {"viewer_id": row[0], **dict(zip(names, row[1:], strict=False))}
            for row in value.get("touches", [])
            if isinstance(row, list) and row
        ]
    if isinstance(value, dict):
        return [v for v in value.values() if isinstance(v, dict)]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    return []


class PageProbe:
    """The live page in Chromium, its EventSource hooked to note its own receive time of each push."""

    def __init__(self, base: str, q: str) -> None:
        self.base = base
        self.q = q
        self.samples: list[tuple[float, float, str]] = []
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.error = ""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            from playwright.sync_api import sync_playwright
            from support.chromium import CHROMIUM, CHROMIUM_ARGS

            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.add_init_script(PAGE_HOOK_JS)
                page.goto(self.base + "/")
                page.fill("#token", TOKEN)
                page.click("#login-btn")
                if self.q:
                    page.fill("#search", self.q)  # the search window (see the module's docstring)
                page.wait_for_function("() => window.__lvpLat !== undefined", timeout=30000)
                self.ready.set()
                while not self.stop.wait(1.0):
                    self.samples += [tuple(x) for x in page.evaluate("() => window.__lvpLat.splice(0)")]
                self.samples += [tuple(x) for x in page.evaluate("() => window.__lvpLat.splice(0)")]
                browser.close()
        except Exception as exc:  # the page is an extra figure: report, do not fail the level
            self.error = f"{type(exc).__name__}: {exc}"[:300]
            self.ready.set()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(60)


# --- consumer lag, from the group's committed offsets --------------------------------------------
def committed_lag(bootstrap: str, topic: str, group: str) -> int | None:
    """Messages of ``topic`` past the group's committed offsets (None if it cannot be read). The
    ends come from a fetch (:func:`lvp.kafka.end_offsets`): Tansu's ListOffsets falls short."""
    from confluent_kafka import Consumer, TopicPartition

    from lvp.kafka import end_offsets

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        ends = end_offsets({"bootstrap.servers": bootstrap}, topic, timeout=10)
        committed = c.committed([TopicPartition(topic, p) for p in ends], timeout=10)
        return sum(max(0, ends[tp.partition] - max(tp.offset, 0)) for tp in committed)
    except Exception:
        return None
    finally:
        c.close()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1)))]


# --- one level ------------------------------------------------------------------------------------
@dataclass
class Stack:
    up: subprocess.Popen[bytes]
    ports: dict[str, int]
    env: dict[str, str]
    state: Path

    @property
    def collector(self) -> str:
        return f"http://127.0.0.1:{self.ports['collector']}"

    @property
    def viewer(self) -> str:
        return f"http://127.0.0.1:{self.ports['viewer']}"

    @property
    def metrics(self) -> str:
        return f"http://127.0.0.1:{self.ports['metrics']}/metrics"

    def counters(self) -> dict[str, float]:
        col, prof, view = (
            scrape(self.collector + "/metrics"),
            scrape(self.metrics),
            scrape(self.viewer + "/metrics"),
        )
        return {
            "good": metric_sum(col, "lvp_collector_events_total", 'outcome="good"'),
            "bad": metric_sum(col, "lvp_collector_events_total", 'outcome="bad"'),
            "applied": metric_sum(prof, "lvp_profiles_events_applied_total"),
            "writes": metric_sum(prof, "lvp_profiles_flush_size_sum"),
            "tracked": metric_sum(prof, "lvp_profiles_tracked_viewers"),
            "active": metric_sum(view, "lvp_viewer_active_viewers"),
            "watching": metric_sum(view, "lvp_viewer_active_viewers", 'status="watching"'),
        }


def wait_caught_up(stack: Stack, summary: Path, rate: float, deadline: float) -> bool:
    """Wait until the stack has absorbed the ramp: the simulator has less than a second of
    traffic (``rate`` events) not yet accepted, and the consumer less than that unprocessed,
    three polls in a row; False if ``deadline`` (monotonic) comes first. Joining viewers make
    about twice the steady rate (page views, pre-rolls): a stack that falls behind during the
    ramp would otherwise be measured while it still works through the ramp's backlog."""
    good = 0
    while time.monotonic() < deadline:
        try:
            pending = float(json.loads(summary.read_text()).get("pending", 0))
        except (OSError, ValueError):
            pending = float("inf")  # (not written yet)
        text = scrape(stack.metrics)  # ("" when the scrape failed: not caught up)
        lag = metric_sum(text, "lvp_profiles_consumer_lag") if text else float("inf")
        good = good + 1 if pending <= max(rate, 500) and lag <= max(rate, 500) else 0
        if good >= 3:
            return True
        time.sleep(1.0)
    return False


def run_level(
    stack: Stack,
    n: int,
    seconds: float,
    ramp: float,
    page: bool,
    idle_rss: dict[str, float],
    ping_interval: float,
    settle: float = 0.0,
    settle_max: float = 0.0,
) -> dict[str, Any]:
    q = window_q(n)
    probe = SSEProbe(f"{stack.viewer}/api/viewers/stream?limit={MAX_LIMIT}&q={q}")
    threading.Thread(target=probe.run, daemon=True).start()
    probe.connected.wait(30)
    page_probe = PageProbe(stack.viewer, page_q(n)) if page else None
    if page_probe is not None:
        page_probe.ready.wait(60)
    summary = stack.state / f"sim-{n}-{time.time_ns()}.json"
    sim: subprocess.Popen[bytes] | None = None
    begin = stack.counters()
    if n:
        sim = subprocess.Popen(
            [sys.executable, "-m", "lvp.cli", "simulate", "--viewers", str(n), "--duration", "3600",
             "--ping-interval", str(ping_interval), "--ramp", str(ramp),
             "--run-for", str(ramp + max(settle, settle_max) + seconds + 60),
             "--batch-size", "500", "--connections", "4", "--linger", "0.1", "--quiet", "--summary", str(summary),
             "--collector", stack.collector],
            env=stack.env, stdout=subprocess.DEVNULL, stderr=open(stack.state / "simulate.log", "ab"),  # noqa: SIM115
        )  # fmt: skip
    roots = [stack.up.pid] + ([sim.pid] if sim else [])
    started = time.monotonic()
    time.sleep(ramp + settle if n else 1.0)  # the window starts once the audience has settled
    caught_up: bool | None = None  # (not waited for: --quick, or the idle level)
    if n and settle_max > 0:
        caught_up = wait_caught_up(stack, summary, n / 12, started + ramp + max(settle, settle_max))
    settled_s = time.monotonic() - started - ramp if n else 0.0
    pids = component_pids(roots)
    cpu0, c0, t0, wall0 = cpu_by_component(pids), stack.counters(), time.monotonic(), time.time()
    load0 = os.getloadavg()[0]
    rss: dict[str, float] = {}
    while time.monotonic() - t0 < seconds:
        time.sleep(min(2.0, max(0.0, seconds - (time.monotonic() - t0))))
        for name, mb in rss_by_component(pids).items():
            rss[name] = max(rss.get(name, 0.0), mb)
    cpu1, c1, elapsed, wall1 = cpu_by_component(pids), stack.counters(), time.monotonic() - t0, time.time()
    load1 = os.getloadavg()[0]
    sim_summary: dict[str, Any] = {}
    sim_backlog = False
    window_end = time.monotonic()
    if sim is not None:
        sim.send_signal(signal.SIGTERM)
        # the simulator stops generating at the window's end and delivers what it generated; a
        # stack that could not keep up leaves it a backlog it would take too long to deliver:
        # the level did not hold, and the simulator is stopped without it (not "accepted" events)
        try:
            sim.wait(max(120.0, 2 * seconds))
        except subprocess.TimeoutExpired:
            sim_backlog = True
            sim.kill()
            sim.wait(30)
        with contextlib.suppress(OSError, ValueError):
            sim_summary = json.loads(summary.read_text())
    stopped_at = time.monotonic()
    # the load has stopped: time until the consumer has processed every event on the good topic
    # (its lag gauge, refreshed every few seconds, back to 0 and the applied count still)
    lag: float | None = None
    drain_deadline = stopped_at + max(120.0, 3 * seconds)
    applied = -1.0
    while time.monotonic() < drain_deadline:
        text = scrape(stack.metrics)
        lag = metric_sum(text, "lvp_profiles_consumer_lag") if text else None
        now_applied = metric_sum(text, "lvp_profiles_events_applied_total")
        if lag == 0 and now_applied == applied:
            break
        applied = now_applied
        time.sleep(1.0)
    drain_s = time.monotonic() - stopped_at
    time.sleep(1.5)  # the last publications reach the client
    # then until the group's committed offsets reach the end too (lazy writes: the viewers still
    # playing at the stop are written once quiet, LVP_ACTIVE_TIMEOUT_S)
    bootstrap = f"127.0.0.1:{stack.ports['broker']}"
    topic = stack.env.get("LVP_TOPIC_GOOD", "snowplow-enriched-good")
    group = stack.env.get("LVP_CONSUMER_GROUP", "lvp-profiles")
    committed: int | None = None
    commit_deadline = time.monotonic() + COMMIT_WAIT_S
    while time.monotonic() < commit_deadline:
        committed = committed_lag(bootstrap, topic, group)
        if committed == 0:
            break
        time.sleep(1.0)
    commit_s = time.monotonic() - stopped_at
    end = stack.counters()
    probe.stop.set()
    page_samples: list[tuple[float, float, str]] = []
    page_error = ""
    if page_probe is not None:
        page_probe.close()
        page_samples, page_error = page_probe.samples, page_probe.error

    def lat(samples: list[tuple[float, float, str]], kind: str) -> list[float]:
        return [x for t, x, k in samples if wall0 <= t <= wall1 and (k == kind or kind == "any")]

    events = c1["good"] - c0["good"]
    cpu_s = {k: cpu1[k] - cpu0.get(k, cpu1[k]) for k in cpu1}
    hours = elapsed / 3600
    out: dict[str, Any] = {
        "viewers": n,
        "window_s": round(elapsed, 1),
        "ramp_s": ramp if n else 0.0,
        "settle_s": round(settled_s, 1),
        "caught_up": caught_up,
        "load_avg": round((load0 + load1) / 2, 2),
        "events_per_s": events / elapsed,
        "events": events,
        "bad_rows": end["bad"] - begin["bad"],
        "sim_sent": sim_summary.get("sent", 0),
        "sim_accepted": sim_summary.get("accepted", 0),
        "sim_duplicates": sim_summary.get("duplicates", 0),
        "sim_late": sim_summary.get("late", 0),
        "sessions": sim_summary.get("sessions", 0),
        "collector_good": end["good"] - begin["good"],
        "lost": sim_summary.get("accepted", 0) - (end["good"] - begin["good"])
        if n and not sim_backlog
        else 0,
        "sim_backlog_killed": sim_backlog,
        "sim_flush_s": round(stopped_at - window_end, 1),
        "lag_after": lag,
        "drain_s": round(drain_s, 1),
        "committed_lag_after": committed,
        "commit_s": round(commit_s, 1),
        "window_q": q,
        "window_viewers": len(probe.seen),  # distinct viewers the SSE client was sent
        "cpu_pct": {k: 100 * v / elapsed for k, v in cpu_s.items()},
        "cpu_us_per_event": {k: (1e6 * v / events if events else 0.0) for k, v in cpu_s.items()},
        "dynamodb_writes": c1["writes"] - c0["writes"],
        "active_viewers": c1["active"],
        "watching_viewers": c1["watching"],
        "rss_mb": rss,
        "tracked_viewers": c1["tracked"],
    }
    slow: dict[str, int] = {}  # which events the pushes slower than 1 s carried
    for (t, x, _), name in zip(probe.samples[:], probe.names[:], strict=False):
        if wall0 <= t <= wall1 and x > 1.0:
            slow[name] = slow.get(name, 0) + 1
    out["sse_slow_by_event"] = dict(sorted(slow.items(), key=lambda kv: -kv[1]))
    for kind in ("status", "ping", "new", "other", "any"):
        xs = lat(probe.samples, kind)
        out[f"sse_{kind}_n"] = len(xs)
        out[f"sse_{kind}_p50_s"] = percentile(xs, 0.5)
        out[f"sse_{kind}_p99_s"] = percentile(xs, 0.99)
    if page_probe is not None:
        for kind in ("status", "ping", "new"):
            xs = lat(page_samples, kind)
            out[f"page_{kind}_n"] = len(xs)
            out[f"page_{kind}_p50_s"] = percentile(xs, 0.5)
            out[f"page_{kind}_p99_s"] = percentile(xs, 0.99)
        out["page_error"] = page_error
    if n and hours:
        out["writes_per_viewer_hour"] = out["dynamodb_writes"] / (n * hours)
        out["events_per_viewer_hour"] = events / (
            n * hours
        )  # = writes per viewer-hour at one write per event
        out["writes_per_event"] = out["dynamodb_writes"] / events if events else 0.0
        held = {"profiles": max(c1["tracked"], 1.0), "viewer": max(c1["active"], 1.0)}
        out["bytes_per_viewer"] = {
            k: 1024 * 1024 * max(0.0, rss.get(k, 0.0) - idle_rss.get(k, 0.0)) / held[k] for k in held
        }
    return out


# --- the stack ------------------------------------------------------------------------------------
def start_stack(quick: bool = False) -> Stack:
    ports = {n: free_port() for n in ("collector", "viewer", "tracker", "broker", "dynamodb", "metrics")}
    state = Path(tempfile.mkdtemp(prefix="lvp-bench-"))
    env = {**os.environ, "LVP_STATE_DIR": str(state), "LVP_API_TOKENS": TOKEN, "LVP_DEV": "1"}
    if quick:  # 4 s pings: viewers go quiet (and are written, and committed) sooner
        env["LVP_ACTIVE_TIMEOUT_S"] = "15"
        env["LVP_STATUS_WRITE_DELAY_S"] = "2"  # status changes written within a 10 s window
    for var in ("KAFKA_BOOTSTRAP_SERVERS", "AWS_ENDPOINT_URL", "LVP_PSEUDONYM_KEY"):
        env.pop(var, None)
    log = open(state / "lvp-up.log", "wb")  # noqa: SIM115
    up = subprocess.Popen(
        [sys.executable, "-m", "lvp.cli", "up",
         "--collector-port", str(ports["collector"]), "--viewer-port", str(ports["viewer"]),
         "--tracker-port", str(ports["tracker"]), "--broker-port", str(ports["broker"]),
         "--dynamodb-port", str(ports["dynamodb"]), "--metrics-port", str(ports["metrics"]), "--in-memory"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    stack = Stack(up, ports, env, state)
    deadline = time.monotonic() + 240
    while b"is up" not in (state / "lvp-up.log").read_bytes():
        if up.poll() is not None or time.monotonic() > deadline:
            stop_stack(stack)
            raise RuntimeError("lvp up did not come up:\n" + (state / "lvp-up.log").read_text()[-3000:])
        time.sleep(0.3)
    return stack


def stop_stack(stack: Stack) -> None:
    stack.up.send_signal(signal.SIGTERM)  # (SIGINT is ignored by a stack started from a background job)
    try:
        stack.up.wait(60)
    except subprocess.TimeoutExpired:
        stack.up.kill()


def window_q(n: int) -> str:
    """The SSE client's search text: none while the whole audience fits in one window; ids (hex)
    holding "ab" (~22 % of them) up to 15,000 viewers, "abc" (~1.5 %) above, so that the window
    holds its members well under MAX_LIMIT rows."""
    return "" if n <= 2_000 else "ab" if n <= 15_000 else "abc"


def page_q(n: int) -> str:
    """The live page's search text: its window shows PAGE_ROWS rows, so fewer members than that
    (ids holding "abc": ~1.5 % of them; "abcd": ~0.09 %)."""
    return "" if n <= 150 else "abc" if n <= 7_900 else "abcd"


def ramp_for(n: int, quick: bool) -> float:
    """Viewers join over this long: ~400 a second (each join is a burst of ~12 events)."""
    return 2.0 if quick else max(10.0, n / 400)


def one_run(
    levels: list[int],
    seconds: float,
    quick: bool,
    page_level: int | None,
    ping_interval: float,
    settle: float,
    settle_max: float = 0.0,
    stack_per_level: bool = True,
) -> list[dict[str, Any]]:
    """Every level in order; with ``stack_per_level`` each loaded level on a stack started for
    it (the idle level, first, on its own), so that no level inherits the previous one's viewers
    (their states, their quiet writes, a consumer still catching up)."""
    stack = start_stack(quick)
    results: list[dict[str, Any]] = []
    try:
        idle_rss: dict[str, float] = {}
        for i, n in enumerate(levels):
            if stack_per_level and i > 0:
                stop_stack(stack)
                stack = start_stack(quick)
            r = run_level(
                stack,
                n,
                seconds if n else min(seconds, 15.0),
                ramp_for(n, quick),
                n == page_level,
                idle_rss,
                ping_interval,
                settle,
                settle_max,
            )
            if n == 0:
                idle_rss = r["rss_mb"]
            r["stack"] = stack.state.name  # which stack ran the level (its state directory)
            results.append(r)
            print(f"level {n}: {json.dumps(r)}", file=sys.stderr, flush=True)
    finally:
        stop_stack(stack)
    return results


def median_of(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per level, the median of every numeric figure over the runs (dicts figure by figure)."""

    def med(values: list[Any]) -> Any:
        if all(isinstance(v, dict) for v in values):
            keys = {k for v in values for k in v}
            return {k: med([v.get(k, 0.0) for v in values]) for k in keys}
        if values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            nums = [v for v in values if v == v]  # NaN: no sample in that run
            return statistics.median(nums) if nums else float("nan")
        return values[0] if all(v == values[0] for v in values) else values

    out = []
    for i, first in enumerate(runs[0]):
        merged = {k: med([run[i].get(k) for run in runs]) for k in first}
        merged["runs"] = len(runs)
        out.append(merged)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levels", default="3000,10000,30000,100000", help="viewer counts, comma-separated")
    ap.add_argument("--seconds", type=float, default=60.0, help="measured window per level (after the ramp)")
    ap.add_argument(
        "--runs", type=int, default=3, help="start the stack this many times; figures are medians"
    )
    ap.add_argument(
        "--settle",
        type=float,
        default=30.0,
        help="after the ramp, before the window (the joiners' pre-rolls end)",
    )
    ap.add_argument(
        "--settle-max",
        type=float,
        default=180.0,
        help="after --settle, wait up to this long (from the ramp's end) for the stack to catch up "
        "with the ramp (simulator and consumer less than a second behind) before the window",
    )
    ap.add_argument(
        "--page-level", type=int, default=None, help="level with the Chromium page (default: first)"
    )
    ap.add_argument(
        "--one-stack",
        action="store_true",
        help="run every level on the same stack (default: a freshly started stack per level)",
    )
    ap.add_argument("--quick", action="store_true", help="CI size: 0 and 20 viewers, 10 s windows, 2 runs")
    args = ap.parse_args(argv)
    levels = [0, 20] if args.quick else [0, *(int(x) for x in args.levels.split(","))]
    seconds = 10.0 if args.quick else args.seconds
    runs = 2 if args.quick else args.runs
    page_level = args.page_level if args.page_level is not None else levels[1]
    if not Path("/usr/bin/chromium").exists():
        page_level = None
    ping = QUICK_PING_INTERVAL_S if args.quick else PING_INTERVAL_S
    settle = 0.0 if args.quick else args.settle
    settle_max = 0.0 if args.quick else args.settle_max
    all_runs = [
        one_run(levels, seconds, args.quick, page_level, ping, settle, settle_max, not args.one_stack)
        for _ in range(runs)
    ]
    results = median_of(all_runs)
    text = report(results, seconds, runs, ping, not args.one_stack)
    print(text)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    name = "quick" if args.quick else "full"
    (out / f"stack-{name}.json").write_text(json.dumps({"median": results, "runs": all_runs}, indent=2))
    (out / f"stack-{name}.md").write_text(text + "\n")
    ok = all(
        r["sse_any_n"] > 0 and r["lost"] == 0 and r["lag_after"] == 0 and r["committed_lag_after"] == 0
        for r in results[1:]
    )
    return 0 if ok else 1


def held(r: dict[str, Any]) -> bool:
    """A level holds: status and ping pushes p99 < 1 s, lag back to 0 (processed, then committed),
    the simulator's events all delivered without a backlog, and the ramp's backlog absorbed
    before the window (when waited for)."""
    p99s = [r[f"sse_{k}_p99_s"] for k in ("status", "ping") if r.get(f"sse_{k}_n")]
    return (
        r["viewers"] > 0
        and bool(p99s)
        and all(x < 1.0 for x in p99s)
        and r["lag_after"] == 0
        and r.get("committed_lag_after", 0) == 0
        and not r.get("sim_backlog_killed")
        and r.get("caught_up") is not False
    )


def _pair(r: dict[str, Any], name: str) -> str:
    p50, p99 = r.get(f"{name}_p50_s", float("nan")), r.get(f"{name}_p99_s", float("nan"))
    return "—" if p99 != p99 else f"{p50:.2f} / {p99:.2f} s"


def _caught_up(r: dict[str, Any]) -> str:
    settled = r.get("settle_s", 0.0)
    if r.get("caught_up") is None:
        return f"not waited for ({settled:.0f} s)"
    return f"yes, {settled:.0f} s" if r["caught_up"] is True else f"**no** in {settled:.0f} s"


def report(
    results: list[dict[str, Any]],
    seconds: float,
    runs: int,
    ping_interval: float,
    stack_per_level: bool = True,
) -> str:
    comps = ("simulator", "collector", "profiles", "viewer", "broker", "dynamodb")
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{seconds:.0f} s measured per level after the ramp, {ping_interval:g} s pings, median of {runs} run(s), "
        f"{'a stack started for each level' if stack_per_level else 'every level on one stack'}, "
        f"{datetime.now().date()}",
        "",
        "| viewers | events/s | event→SSE status p50 / p99 | ping p50 / p99 | new viewer p50 / p99 | "
        "page status / ping p99 | lag 0 after stop | lost | "
        "CPU % " + " / ".join(comps) + " | CPU µs/event " + " / ".join(comps) + " | load avg |",
        "| ---: | ---: | --- | --- | --- | --- | --- | ---: | --- | --- | ---: |",
    ]
    for r in results:
        c, u = r["cpu_pct"], r["cpu_us_per_event"]
        page = (
            " / ".join("—" if v != v else f"{v:.2f}" for v in (r["page_status_p99_s"], r["page_ping_p99_s"]))
            + " s"
            if "page_status_p99_s" in r
            else "—"
        )
        lines.append(
            f"| {r['viewers']:,.0f} | {r['events_per_s']:,.0f} | {_pair(r, 'sse_status')} | {_pair(r, 'sse_ping')} | "
            f"{_pair(r, 'sse_new')} | {page} | "
            f"{'yes' if r['lag_after'] == 0 else 'NO'} ({r['drain_s']:.0f} s; committed "
            f"{'' if r.get('committed_lag_after') == 0 else 'NOT '}{r.get('commit_s', 0):.0f} s) | "
            f"{'backlog' if r.get('sim_backlog_killed') else format(r['lost'], '.0f')} | "
            + " / ".join(f"{c.get(k, 0):.0f}" for k in comps)
            + " | "
            + (" / ".join(f"{u.get(k, 0):.0f}" for k in comps) if r["viewers"] else "—")
            + f" | {r['load_avg']:.1f} |"
        )
    lines += [
        "",
        "| viewers | held | caught up with the ramp (after its end) | DynamoDB writes / viewer-hour | "
        "events / viewer-hour (one write per event) | writes / event | "
        "profiles B / viewer | viewer B / viewer | RSS MB profiles / viewer |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results[1:]:
        b, m = r["bytes_per_viewer"], r["rss_mb"]
        lines.append(
            f"| {r['viewers']:,.0f} | {'yes' if held(r) else 'no'} | {_caught_up(r)} | "
            f"{r['writes_per_viewer_hour']:,.1f} | {r['events_per_viewer_hour']:,.1f} | "
            f"{r['writes_per_event']:.2f} | {b['profiles']:,.0f} | {b['viewer']:,.0f} | "
            f"{m.get('profiles', 0):.0f} / {m.get('viewer', 0):.0f} |"
        )
    lines += [
        "",
        "Marginal CPU per event between consecutive levels (extra CPU-seconds / extra events: the idle "
        "cost of each process taken out):",
        "",
        "| levels | " + " | ".join(comps) + " | total |",
        "| --- |" + " ---: |" * (len(comps) + 1),
    ]
    for lo, hi in itertools.pairwise(results):
        d_rate = hi["events_per_s"] - lo["events_per_s"]
        if d_rate <= 0:
            continue
        us = [1e4 * (hi["cpu_pct"].get(k, 0) - lo["cpu_pct"].get(k, 0)) / d_rate for k in comps]
        lines.append(
            f"| {lo['viewers']:,.0f} → {hi['viewers']:,.0f} | "
            + " | ".join(f"{x:,.0f}" for x in us)
            + f" | {sum(us):,.0f} µs |"
        )
    holding = [r["viewers"] for r in results if held(r)]
    lines += [
        "",
        f"Largest level that holds (status and ping p99 < 1 s, lag back to 0): {max(holding, default=0):,.0f}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
