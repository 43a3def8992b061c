"""Instructions per event of the collector's in-process work, for a small and a large audience,
counted by callgrind: a measure that does not move with the machine's other load.

``bench/collector_bench.py`` compares whole servers in CPU time, which moves by ±15 % between
runs on a shared machine; this bench counts what the collector's Python does per event
(``collector.pipeline.Pipeline.process``: protocol and Iglu checks, pseudonyms, URL and
identifier scrubbing, the enriched line; no HTTP, no Kafka) on the collector bench's traffic
(``bench.collector_bench.traffic``: media batches, pixels, repeats, raw ids in page URLs):

* **forward floor**: what the bare forwarder does per event in process: parse the body (orjson)
  and serialize each event again for Kafka;
* **pipeline, N viewers**: the requests come from N viewers. With the default 200 every viewer
  is back within a few requests, so every cache (pseudonyms, scrub targets, URLs) answers; with
  a large audience (``--viewers``, default 5,000: each viewer sends one request per round of the
  traffic, so it comes back only after all the others) the caches must hold the whole audience.

Each figure is one steady round of the traffic: a worker prepares the requests, runs one round
(every viewer seen once), then the measured round, the only part callgrind instruments
(``--instr-atstart=no``, switched on and off by ``callgrind_control``); divided by the round's
events. Without valgrind the bench says so and takes the measured round's process CPU time
instead (best of 3).

    python -m bench.pipeline_bench [--viewers 5000] [--requests 5000] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from bench import counted

ROOT = Path(__file__).resolve().parent.parent
SMALL_AUDIENCE = 200

#: (route, headers, cookies, events, payload_data schema or None, query string, POST body or b"")
Prepared = tuple[str, dict[str, str], dict[str, str], list[Any], str | None, str, bytes]


def prepare(requests: int, viewers: int) -> tuple[list[Prepared], int]:
    """The collector bench's requests as the routes hand them to the pipeline (:data:`Prepared`),
    and the events per round."""
    import orjson

    from bench.collector_bench import traffic

    out: list[Prepared] = []
    events = 0
    for r in traffic(requests, viewers=viewers):
        first, *lines = r.head.decode().split("\r\n")
        method, target, _ = first.split(" ")
        headers = dict((k.lower(), v) for k, _, v in (ln.partition(": ") for ln in lines if ln))
        cookies = dict(c.strip().partition("=")[::2] for c in headers.get("cookie", "").split(";") if c)
        if method == "POST":
            doc = orjson.loads(r.body)
            out.append(("tp2", headers, cookies, doc["data"], doc["schema"], "", r.body))
        else:
            query = urlsplit(target).query
            params: dict[str, str] = {}
            for k, v in parse_qsl(query, keep_blank_values=True):
                if v and k not in params:
                    params[k] = v
            out.append(("i", headers, cookies, [params], None, query, b""))
        events += r.events
    return out, events


def work(mode: str, requests: int, viewers: int, instrumented: bool) -> tuple[float, int]:
    """Prepare the traffic, run one round of ``mode`` to warm up, then one measured round; returns
    (its process CPU seconds, its events). ``instrumented``: the worker runs under callgrind started
    with ``--instr-atstart=no``, and only the measured round is instrumented (``callgrind_control``)."""
    import orjson

    from bench.collector_bench import BENCH_KEY
    from collector.identity import Identities
    from collector.pipeline import Pipeline, RequestInfo
    from lvp.config import Settings
    from lvp.iglu import Registry

    settings = Settings.from_env({}, pseudonym_key=BENCH_KEY)
    registry = Registry.from_settings(settings)
    registry.compile_all()
    identities = Identities.from_settings(settings.require_pseudonym_key(), settings)
    pipeline = Pipeline(registry, identities, "good", "bad")
    prepared, events = prepare(requests, viewers)
    now_ms = int(time.time() * 1000)

    def one_round() -> None:
        if mode == "floor":
            for _r, _h, _c, items, _s, _q, body in prepared:
                for event in orjson.loads(body)["data"] if body else items:
                    orjson.dumps(event)
            return
        for route, headers, cookies, items, schema, query, _body in prepared:
            ident = identities.for_request(headers, cookies, "127.0.0.1", None)
            info = RequestInfo(ident, now_ms, headers, route, query)
            out = pipeline.process(items, info, registry.validator(schema) if schema else None)
            if out.good != len(items):
                raise RuntimeError(f"bad rows in the bench traffic: {out.bad}")

    one_round()  # every viewer seen once: the caches as they are in a steady state
    pid = str(os.getpid())
    if instrumented:
        subprocess.run(["callgrind_control", "--instr=on", pid], check=True, capture_output=True)
    t0 = time.process_time()
    one_round()
    seconds = time.process_time() - t0
    if instrumented:
        subprocess.run(["callgrind_control", "--instr=off", pid], check=True, capture_output=True)
    return seconds, events


def _worker_cmd(mode: str, requests: int, viewers: int) -> list[str]:
    return [
        sys.executable, "-m", "bench.pipeline_bench", "--worker", mode, "--requests", str(requests),
        "--viewers", str(viewers),
    ]  # fmt: skip


def _instructions(cmd: list[str]) -> float:
    """Instructions per event of the worker's measured round, under callgrind."""
    count, out = counted.instructions([*cmd, "--counted"], ROOT, instr_atstart=False)
    return count / int(out.split()[-1])


def _cpu_us(cmd: list[str], repeats: int = 3) -> float:
    """µs of process CPU per event of the worker's measured round, best of ``repeats``."""
    best = float("inf")
    for _ in range(repeats):
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800, check=True)
        seconds, events = out.stdout.split()[-2:]
        best = min(best, float(seconds) / int(events) * 1e6)
    return best


def run(requests: int, viewers: int) -> str:
    have_valgrind = shutil.which("valgrind") is not None
    measure = _instructions if have_valgrind else _cpu_us
    per = {
        "floor": measure(_worker_cmd("floor", requests, SMALL_AUDIENCE)),
        "small": measure(_worker_cmd("pipeline", requests, SMALL_AUDIENCE)),
        "large": measure(_worker_cmd("pipeline", requests, viewers)),
    }
    unit = "instructions per event (callgrind)" if have_valgrind else (
        "µs of CPU per event (valgrind not found: process CPU time, best of 3)"
    )  # fmt: skip
    names = {
        "floor": "forward floor: parse the body, serialize each event (the forwarder's in-process work)",
        "small": f"collector pipeline, {SMALL_AUDIENCE:,} viewers",
        "large": f"collector pipeline, {viewers:,} viewers (each back after all the others)",
    }
    rows = [
        f"{requests:,} requests of the collector bench's traffic per round; one steady round; {unit}",
        "",
        *counted.table(names, per, "floor", have_valgrind),
    ]
    rows += ["", f"large audience / small audience: {per['large'] / per['small']:.2f}"]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=5000, help="requests per round (default 5000)")
    p.add_argument("--viewers", type=int, default=5000, help="the large audience (default 5000)")
    p.add_argument("--quick", action="store_true", help="CI size: 300 requests of 300 viewers")
    p.add_argument("--worker", choices=("floor", "pipeline"), help=argparse.SUPPRESS)
    p.add_argument("--counted", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        seconds, events = work(args.worker, args.requests, args.viewers, args.counted)
        print(seconds, events)
        return 0
    os.environ.setdefault("PYTHONHASHSEED", "0")  # the workers' dicts laid out the same every run
    if args.quick:
        args.requests = args.viewers = 300
    print(run(args.requests, args.viewers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
