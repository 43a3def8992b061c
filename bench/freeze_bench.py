"""What ``LVP_FREEZE_AFTER_S`` does to a live audience: memory per tracked viewer and CPU per
event, for several settings, in the steady state of viewers who are watching. Not a test.

Viewers are the profiles benchmark's ten-minute sessions (pre-roll, a ping every 30 s, a pause, a
mid-roll pod, an end), started at random moments over five minutes, decoded from enriched TSV
once. Their events are replayed in collector-time order against the engine with the consumer's
policy, in virtual time: every second the changed viewers are flushed (profile, history, state)
and compacted; every ``freeze_after_s`` the viewers flushed before the previous pass and quiet
since are frozen. Memory is the Python heap reachable from the tracked states (each object once:
strings viewers share count once), sampled every 30 virtual seconds while every viewer is
tracked; CPU is the process time of the replay (apply, flush, compact, freeze, thaw). The
baseline in the same run is "never" (no freezing).

    python -m bench.freeze_bench [--viewers 2000] [--quick]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from typing import Any

from bench.profiles_bench import ROOT, _deep_size, watch_session

SETTINGS = (None, 45.0, 20.0, 10.0, 5.0, 2.0)  # None: never freeze
FLUSH_S = 1.0
SAMPLE_S = 30.0


def _events(viewers: int) -> list[Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    from profiles.inputs import InputDecoder

    decode = InputDecoder().decode
    rng = random.Random(7)
    start = 1_700_000_000_000
    events: list[Any] = []
    for i in range(viewers):
        vid = f"{uuid.UUID(int=i, version=4).hex}{i:032x}"
        b = watch_session(vid, start + int(rng.uniform(0, 300_000)), i)
        events.extend(decode(line.encode()) for _key, line in b.lines())
    events.sort(key=lambda ev: ev.collector_ts)
    return events


def replay(events: list[Any], freeze_after_s: float | None) -> tuple[float, float, float]:
    """(CPU µs per event, mean heap bytes per tracked viewer, share of viewers frozen)."""
    from profiles.engine import ViewerState

    t0 = events[0].collector_ts
    sample_from = t0 + 300.0  # every viewer has started
    sample_to = t0 + 600.0  # the first ones end about now
    states: dict[str, ViewerState] = {}
    dirty: set[str] = set()
    unfrozen: set[str] = set()  # flushed since last frozen
    flushed: set[str] = set()  # flushed since the last freeze pass
    next_flush = t0 + FLUSH_S
    next_freeze = t0 + (freeze_after_s or 0.0)
    next_sample = sample_from
    samples: list[tuple[float, float]] = []
    cpu = 0.0

    def tick(now: float) -> None:
        nonlocal next_flush, next_freeze
        while now >= next_flush:
            for vid in dirty:
                st = states[vid]
                st.profile()
                st.history_changes()
                st.dump()
                st.compact()
            unfrozen.update(dirty)
            flushed.update(dirty)
            dirty.clear()
            next_flush += FLUSH_S
        if freeze_after_s is not None and now >= next_freeze:
            busy = flushed | dirty
            for vid in unfrozen - busy:
                states[vid].compact(freeze=True)
            unfrozen.intersection_update(busy)
            flushed.clear()
            next_freeze = now + freeze_after_s

    c0 = time.process_time()
    for ev in events:
        now = ev.collector_ts
        tick(now)
        if now >= next_sample and next_sample <= sample_to:
            cpu += time.process_time() - c0
            heap = _deep_size(list(states.values()), set()) / len(states)
            samples.append((heap, sum(st.frozen for st in states.values()) / len(states)))
            next_sample += SAMPLE_S
            c0 = time.process_time()
        st = states.get(ev.viewer_id)
        if st is None:
            st = states[ev.viewer_id] = ViewerState.new(ev.viewer_id)
        if st.apply(ev):
            dirty.add(ev.viewer_id)
    tick(events[-1].collector_ts + FLUSH_S)
    cpu += time.process_time() - c0
    heap = sum(h for h, _f in samples) / len(samples)
    frozen = sum(f for _h, f in samples) / len(samples)
    return cpu / len(events) * 1e6, heap, frozen


def run(viewers: int) -> str:
    events = _events(viewers)
    rows = [
        f"{viewers} viewers, {len(events):,} events (a ping every 30 s while playing); flush every "
        f"{FLUSH_S:g} s; memory sampled every {SAMPLE_S:g} s over minutes 5-10",
        "",
        "| LVP_FREEZE_AFTER_S | memory per tracked viewer | frozen (mean) | CPU per event |",
        "| --- | ---: | ---: | ---: |",
    ]
    for setting in SETTINGS:
        cpu, heap, frozen = replay(events, setting)
        label = "never (baseline)" if setting is None else f"{setting:g} s"
        rows.append(f"| {label} | {heap:,.0f} B | {frozen:.0%} | {cpu:.1f} µs |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--viewers", type=int, default=2000)
    p.add_argument("--quick", action="store_true", help="CI size (100 viewers)")
    args = p.parse_args(argv)
    print(run(100 if args.quick else args.viewers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
