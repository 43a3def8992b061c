"""Capacity of the whole local stack (`lvp up`): the most concurrent simulated viewers it sustains
on this machine with a 10 s ping interval while event → SSE latency stays p99 < 1 s and the
consumer lag stays bounded.

For each level of N viewers it runs `lvp simulate` against the stack for a while and measures,
from the outside: events/s accepted, event → SSE push latency at a connected client (push time
minus the profile's `last_seen`, the collector's receive time of its newest event), consumer
lag (from the profiles consumer's Prometheus endpoint), CPU and RSS of every component (from
/proc). The baseline in the same run is the stack idle (N = 0).

    python -m bench.stack_bench [--levels 1000,2000,5000] [--seconds 60] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
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

from lvp.broker import free_port

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
COMPONENTS = {
    "collector": re.compile(r"lvp\.cli collector"),
    "profiles": re.compile(r"lvp\.cli profiles"),
    "viewer": re.compile(r"lvp\.cli viewer"),
    "broker": re.compile(r"tansu"),
    "dynamodb": re.compile(r"DynamoDBLocal|moto"),
    "simulator": re.compile(r"lvp\.cli simulate"),
}
TICK = os.sysconf("SC_CLK_TCK")


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


def component_pids(root_pid: int, extra: list[int]) -> dict[str, list[int]]:
    table = _proc_table()
    family = {root_pid, *extra}
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


@dataclass
class SSEProbe:
    """A client of the live stream that records event → push latencies."""

    url: str
    latencies: list[float] = field(default_factory=list)
    deltas: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=None) as client:
            while not self.stop.is_set():
                try:
                    with client.stream("GET", self.url, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                        event = ""
                        for line in resp.iter_lines():
                            if self.stop.is_set():
                                return
                            if line.startswith("event:"):
                                event = line[6:].strip()
                            elif line.startswith("data:") and event == "delta":
                                now = time.time()
                                self.deltas += 1
                                for p in json.loads(line[5:]).get("upsert", []):
                                    seen = p.get("last_seen")
                                    if seen:
                                        ts = datetime.fromisoformat(seen.replace("Z", "+00:00")).timestamp()
                                        self.latencies.append(now - ts)
                except httpx.HTTPError:
                    time.sleep(0.5)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1)))]


def scrape_lag(url: str) -> float:
    try:
        text = httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return float("nan")
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("lvp_profiles_consumer_lag{")
    )


def run_level(
    n: int, seconds: float, ports: dict[str, int], up_pid: int, env: dict[str, str]
) -> dict[str, Any]:
    viewer = f"http://127.0.0.1:{ports['viewer']}"
    probe = SSEProbe(viewer + "/api/viewers/stream")
    t = threading.Thread(target=probe.run, daemon=True)
    t.start()
    time.sleep(1.0)
    sim: subprocess.Popen[bytes] | None = None
    out = tempfile.NamedTemporaryFile(prefix="sim-", suffix=".log", delete=False)  # noqa: SIM115
    if n:
        sim = subprocess.Popen(
            [sys.executable, "-m", "lvp.cli", "simulate", "--viewers", str(n),
             "--duration", str(seconds * 2), "--ping-interval", "10", "--batch-size", "200",
             "--connections", "16", "--quiet", "--collector", f"http://127.0.0.1:{ports['collector']}"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    pids = component_pids(up_pid, [sim.pid] if sim else [])
    cpu0 = {name: sum(cpu_seconds(p) for p in ps) for name, ps in pids.items()}
    lags: list[float] = []
    rss: dict[str, float] = {}
    start = time.monotonic()
    warmup = min(10.0, seconds / 3)
    probe_start = 0
    while time.monotonic() - start < seconds:
        time.sleep(1.0)
        if time.monotonic() - start >= warmup and not probe_start:
            probe_start = len(probe.latencies)
            cpu0 = {name: sum(cpu_seconds(p) for p in ps) for name, ps in pids.items()}
            t0 = time.monotonic()
        lags.append(scrape_lag(f"http://127.0.0.1:{ports['metrics']}/metrics"))
        for name, ps in pids.items():
            rss[name] = max(rss.get(name, 0.0), sum(rss_mb(p) for p in ps))
    elapsed = time.monotonic() - t0
    cpu = {name: 100 * (sum(cpu_seconds(p) for p in ps) - cpu0[name]) / elapsed for name, ps in pids.items()}
    accepted = _collector_events(ports)
    if sim is not None:
        sim.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            sim.wait(10)
        if sim.poll() is None:
            sim.kill()
    probe.stop.set()
    lat = probe.latencies[probe_start:]
    return {
        "viewers": n,
        "events_total": accepted,
        "latency_p50_s": percentile(lat, 0.5),
        "latency_p99_s": percentile(lat, 0.99),
        "latency_samples": len(lat),
        "lag_max": max((x for x in lags if x == x), default=float("nan")),
        "lag_last": lags[-1] if lags else float("nan"),
        "cpu_pct": cpu,
        "rss_mb": rss,
    }


def _collector_events(ports: dict[str, int]) -> float:
    try:
        text = httpx.get(f"http://127.0.0.1:{ports['collector']}/metrics", timeout=2).text
    except httpx.HTTPError:
        return float("nan")
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("lvp_collector_events_total{") and 'outcome="good"' in line
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levels", default="1000,2000,5000,10000", help="viewer counts, comma-separated")
    ap.add_argument("--seconds", type=float, default=60.0, help="measurement time per level")
    ap.add_argument("--quick", action="store_true", help="CI size: 0 and 20 viewers, 12 s each")
    args = ap.parse_args(argv)
    levels = [0, 20] if args.quick else [0, *(int(x) for x in args.levels.split(","))]
    seconds = 12.0 if args.quick else args.seconds

    ports = {n: free_port() for n in ("collector", "viewer", "tracker", "broker", "dynamodb", "metrics")}
    state = tempfile.mkdtemp(prefix="lvp-bench-")
    env = {**os.environ, "LVP_STATE_DIR": state, "LVP_API_TOKENS": TOKEN, "LVP_DEV": "1"}
    for var in ("KAFKA_BOOTSTRAP_SERVERS", "AWS_ENDPOINT_URL", "LVP_PSEUDONYM_KEY"):
        env.pop(var, None)
    log = open(Path(state) / "lvp-up.log", "wb")  # noqa: SIM115
    up = subprocess.Popen(
        [sys.executable, "-m", "lvp.cli", "up",
         "--collector-port", str(ports["collector"]), "--viewer-port", str(ports["viewer"]),
         "--tracker-port", str(ports["tracker"]), "--broker-port", str(ports["broker"]),
         "--dynamodb-port", str(ports["dynamodb"]), "--metrics-port", str(ports["metrics"])],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    results = []
    try:
        deadline = time.monotonic() + 180
        while b"is up" not in (Path(state) / "lvp-up.log").read_bytes():
            if up.poll() is not None or time.monotonic() > deadline:
                print((Path(state) / "lvp-up.log").read_text()[-3000:], file=sys.stderr)
                return 1
            time.sleep(0.3)
        for n in levels:
            r = run_level(n, seconds, ports, up.pid, env)
            results.append(r)
            print(f"level {n}: {json.dumps(r)}", file=sys.stderr, flush=True)
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
    print(report(results, seconds))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"stack-{'quick' if args.quick else 'full'}.json").write_text(json.dumps(results, indent=2))
    return 0 if all(r["latency_samples"] > 0 for r in results[1:]) else 1


def report(results: list[dict[str, Any]], seconds: float) -> str:
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{seconds:.0f} s per level, 10 s ping interval",
        "",
        "| viewers | good events (cum.) | event→SSE p50 | p99 | max lag | CPU % collector / profiles / viewer / broker / dynamodb / simulator | RSS MB collector / profiles / viewer |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        c, m = r["cpu_pct"], r["rss_mb"]
        cpu = " / ".join(
            f"{c.get(k, 0):.0f}"
            for k in ("collector", "profiles", "viewer", "broker", "dynamodb", "simulator")
        )
        rss = " / ".join(f"{m.get(k, 0):.0f}" for k in ("collector", "profiles", "viewer"))
        lines.append(
            f"| {r['viewers']} | {r['events_total']:.0f} | {r['latency_p50_s']:.3f} s | {r['latency_p99_s']:.3f} s | "
            f"{r['lag_max']:.0f} | {cpu} | {rss} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
