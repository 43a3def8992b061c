"""Memory per playing viewer and CPU per event of the engine in the consumer's write-on-change
regime (issue #11), against the engine as it was before (a copy under ``bench/baseline/``),
side by side in one run. Not a test.

Viewers are the profiles benchmark's ten-minute sessions (pre-roll, a ping every 30 s, a pause, a
mid-roll pod, an end), started at random over five minutes, decoded from enriched TSV once,
replayed in collector-time order in virtual time with the consumer's policy:

* every event is applied as it comes; every 0.1 s each changed viewer's profile is read (to
  publish it) — then the new engine is told so with :meth:`ViewerState.settle`;
* every second, the viewers whose status changed since their last write, or written more than
  ``LVP_PROFILE_WRITE_INTERVAL_S`` (300 s) ago, are written: profile, history changes, state
  (:meth:`dump`), :meth:`compact`. A playing viewer is therefore not written between pings.

Memory is the Python heap reachable from the tracked states (each object once: strings viewers
share count once), sampled every 30 virtual seconds over minutes 5-10, for the viewers whose
last published status is ``watching`` ("playing") and for all tracked viewers; CPU is the
process time of the replay (apply, profile, settle, write, compact), without decoding or Kafka.
Each figure is the median over ``--runs`` replays (baseline and new alternate).

    python -m bench.memory_bench [--viewers 2000] [--runs 5] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.freeze_bench import _events
from bench.profiles_bench import _deep_size

PUBLISH_S = 0.1
FLUSH_S = 1.0
WRITE_INTERVAL_S = 300.0
SAMPLE_S = 30.0


def _machine() -> str:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    return f"{model or platform.processor()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def replay(
    events: list[Any], new: Callable[[str], Any], settle: bool
) -> tuple[tuple[float, float, float], dict[str, Any]]:
    """((CPU µs per event, heap bytes per playing viewer, heap bytes per tracked viewer), the
    final profiles)."""
    t0 = events[0].collector_ts
    sample_from, sample_to = t0 + 300.0, t0 + 600.0
    states: dict[str, Any] = {}
    changed: set[str] = set()
    dirty: set[str] = set()
    status: dict[str, str] = {}  # last published
    written: dict[str, tuple[str, float]] = {}  # status and time of the last write
    next_publish, next_flush, next_sample = t0 + PUBLISH_S, t0 + FLUSH_S, sample_from
    playing: list[float] = []
    tracked: list[float] = []
    cpu = 0.0

    def tick(now: float) -> None:
        nonlocal next_publish, next_flush
        while now >= next_publish:
            for vid in changed:
                st = states[vid]
                status[vid] = st.profile()["status"]
                if settle:
                    st.settle()
            dirty.update(changed)
            changed.clear()
            next_publish += PUBLISH_S
        while now >= next_flush:
            done = []
            for vid in dirty:
                last = written.get(vid)
                if last is None or last[0] != status[vid] or now - last[1] >= WRITE_INTERVAL_S:
                    st = states[vid]
                    st.profile()
                    st.history_changes()
                    st.dump()
                    st.compact()
                    written[vid] = (status[vid], now)
                    done.append(vid)
            dirty.difference_update(done)
            next_flush += FLUSH_S

    c0 = time.process_time()
    for ev in events:
        now = ev.collector_ts
        tick(now)
        if now >= next_sample and next_sample <= sample_to:
            cpu += time.process_time() - c0
            play = [states[v] for v, s in status.items() if s == "watching"]
            playing.append(_deep_size(play, set()) / max(1, len(play)))
            tracked.append(_deep_size(list(states.values()), set()) / len(states))
            next_sample += SAMPLE_S
            c0 = time.process_time()
        vid = ev.viewer_id
        st = states.get(vid)
        if st is None:
            st = states[vid] = new(vid)
        if st.apply(ev):
            changed.add(vid)
    tick(events[-1].collector_ts + WRITE_INTERVAL_S + FLUSH_S)
    cpu += time.process_time() - c0
    figures = (cpu / len(events) * 1e6, statistics.fmean(playing), statistics.fmean(tracked))
    return figures, {vid: st.profile() for vid, st in states.items()}


def run(viewers: int, runs: int) -> str:
    from bench.baseline.engine import ViewerState as Baseline
    from profiles.engine import ViewerState

    events = _events(viewers)
    figures: dict[str, list[tuple[float, float, float]]] = {"baseline": [], "new": []}
    differ = 0
    for _ in range(runs):
        base_fig, want = replay(events, Baseline.new, settle=False)
        new_fig, got = replay(events, ViewerState.new, settle=True)
        figures["baseline"].append(base_fig)
        figures["new"].append(new_fig)
        differ += sum(got.get(vid) != p for vid, p in want.items())
    med = {k: tuple(statistics.median(x[i] for x in v) for i in range(3)) for k, v in figures.items()}
    base, new = med["baseline"], med["new"]
    rows = [
        f"{viewers} viewers, {len(events):,} events (a ping every 30 s while playing); profile read "
        f"every {PUBLISH_S:g} s, written on a status change or every {WRITE_INTERVAL_S:g} s; "
        f"median of {runs} runs; {_machine()}",
        "",
        "| engine | memory per playing viewer | memory per tracked viewer | CPU per event |",
        "| --- | ---: | ---: | ---: |",
        f"| before issue #11 (baseline) | {base[1]:,.0f} B | {base[2]:,.0f} B | {base[0]:.2f} µs |",
        f"| settle() after each read | {new[1]:,.0f} B | {new[2]:,.0f} B | {new[0]:.2f} µs |",
        "",
        f"new / baseline: memory per playing viewer {new[1] / base[1]:.2f}x, CPU per event "
        f"{new[0] / base[0]:.2f}x",
        f"final profiles that differ from the baseline engine's: {differ} of {len(want) * runs}",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--viewers", type=int, default=2000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="CI size (100 viewers, 3 runs)")
    args = p.parse_args(argv)
    print(run(100 if args.quick else args.viewers, 3 if args.quick else args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
