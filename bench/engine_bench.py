"""Micro-benchmark of the per-viewer engine (:mod:`profiles.engine`): µs per applied event, cost
of profile()/dump()/load()/compact(), and memory per tracked viewer. Not a test.

Events are the real Snowplow pipeline sample (tests/fixtures/snowplow-enriched-sample.tsv, one
viewer, 73 events, 3 ad breaks) cloned for many viewers with fresh ids and shifted times. The
baseline in the same run is a loop that only reads the fields the engine reads.

    python -m bench.engine_bench [--viewers 500] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import gc
import time
import tracemalloc
import uuid
from pathlib import Path

from lvp.enriched import from_tsv
from lvp.events import ViewerEvent, from_enriched
from profiles.engine import ViewerState

SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "snowplow-enriched-sample.tsv"


def sample_events() -> list[ViewerEvent]:
    return [from_enriched(from_tsv(line)) for line in SAMPLE.read_text().splitlines() if line.strip()]


def clone(events: list[ViewerEvent], viewers: int) -> list[list[ViewerEvent]]:
    """``viewers`` copies of the sample, each with its own viewer/event ids and time offset."""
    out = []
    for v in range(viewers):
        vid = str(uuid.uuid4())
        shift = v * 0.37
        evs = []
        for ev in events:
            c = copy.copy(ev)
            c.viewer_id = vid
            c.event_id = str(uuid.uuid4())
            c.collector_ts = ev.collector_ts + shift
            c.derived_ts = ev.derived_ts + shift
            evs.append(c)
        out.append(evs)
    return out


def per_event(label: str, seconds: float, n: int) -> None:
    print(f"{label:<44} {seconds / n * 1e6:8.2f} µs/event  ({n / seconds:,.0f} events/s)")


def consumer_loop(sessions: list[list[ViewerEvent]], flush_every: int) -> None:
    """What `lvp profiles` does: events of all viewers interleaved as the collector received
    them; every ``flush_every`` events each changed viewer gives its profile, history changes and
    state; viewers quiet for 5 flushes are compacted, for 30 flushes frozen."""
    stream = sorted((ev for evs in sessions for ev in evs), key=lambda e: e.collector_ts)
    n = len(stream)
    states: dict[str, ViewerState] = {}
    last_dirty: dict[str, int] = {}
    dirty: set[str] = set()
    t_apply = t_flush = t_trim = 0.0
    flushes = 0
    for k, start in enumerate(range(0, n, flush_every)):
        t0 = time.perf_counter()
        for ev in stream[start : start + flush_every]:
            s = states.get(ev.viewer_id)
            if s is None:
                s = states[ev.viewer_id] = ViewerState.new(ev.viewer_id)
            if s.apply(ev):
                dirty.add(ev.viewer_id)
        t1 = time.perf_counter()
        for vid in dirty:
            s = states[vid]
            s.profile()
            s.history_changes()
            s.dump()
            last_dirty[vid] = k
        flushes += len(dirty)
        dirty.clear()
        t2 = time.perf_counter()
        for vid, at in list(last_dirty.items()):
            if k - at == 5:
                states[vid].compact()
            elif k - at == 30:
                states[vid].compact(freeze=True)
                del last_dirty[vid]
        t3 = time.perf_counter()
        t_apply += t1 - t0
        t_flush += t2 - t1
        t_trim += t3 - t2
    print(
        f"consumer loop, flush every {flush_every:>6} events: apply {t_apply / n * 1e6:5.2f} + flush "
        f"{t_flush / n * 1e6:5.2f} + trim {t_trim / n * 1e6:5.2f} = "
        f"{(t_apply + t_flush + t_trim) / n * 1e6:5.2f}"
        f" µs/event ({flushes / n:.2f} viewer flushes/event, {t_flush / max(flushes, 1) * 1e6:.1f} µs each)"
    )


def ping_cost(states: list[ViewerState], base: list[ViewerEvent]) -> None:
    """What LVP_FREEZE_AFTER_S trades: a playing viewer's next ping (30 s later) applied, its
    profile, history and state written, then compacted again — kept hot, or kept frozen between
    pings (thawed and frozen again around each)."""
    template = next(ev for ev in base if ev.name == "ping")
    for label, freeze in (("hot (compact())", False), ("frozen (compact(freeze=True))", True)):
        pings = []
        for s in states:
            s.compact(freeze=freeze)
            ping = copy.copy(template)
            ping.viewer_id = s.viewer_id
            ping.event_id = str(uuid.uuid4())
            ping.collector_ts = ping.derived_ts = (s.last_seen or 0.0) + 30.0
            pings.append(ping)
        gc.collect()
        t0 = time.perf_counter()
        for s, ping in zip(states, pings, strict=True):
            s.apply(ping)
            s.profile()
            s.history_changes()
            s.dump()
            s.compact(freeze=freeze)
        dt = time.perf_counter() - t0
        print(f"{'a ping to a quiet viewer kept ' + label:<44} {dt / len(states) * 1e6:8.2f} µs/viewer")


def run(viewers: int) -> None:
    base = sample_events()
    sessions = clone(base, viewers)
    n = sum(len(s) for s in sessions)
    print(f"{viewers} viewers x {len(base)} events = {n} events\n")

    # baseline: touch the fields the engine reads
    t0 = time.perf_counter()
    acc = 0.0
    for evs in sessions:
        for ev in evs:
            acc += ev.derived_ts + (ev.position_s or 0.0)
            _ = (ev.name, ev.event_id, ev.session_stats, ev.ad_id, ev.media_session_id)
    per_event("baseline (read fields only)", time.perf_counter() - t0, n)

    # one viewer at a time, folded at the end
    ordered = [sorted(evs, key=lambda e: (min(e.derived_ts, e.collector_ts), e.event_id)) for evs in sessions]
    for label, source in (("apply+fold, in device order", ordered), ("apply+fold, as delivered", sessions)):
        gc.collect()
        t0 = time.perf_counter()
        states = []
        for evs in source:
            s = ViewerState.new(evs[0].viewer_id)
            for ev in evs:
                s.apply(ev)
            s.history_changes()
            states.append(s)
        per_event(label, time.perf_counter() - t0, n)
    t0 = time.perf_counter()
    for s, evs in zip(states, sessions, strict=True):
        for ev in evs:
            s.apply(ev)
    per_event("apply, Kafka redelivery (duplicates)", time.perf_counter() - t0, n)

    print()
    # the sample's viewers send ~0.6 events/s: 100 events of 300 viewers ~ a 1 s flush interval
    for flush_every in (100, 2_000, 50_000):
        consumer_loop(sessions, flush_every)

    for s in states:
        s.compact()
    t1 = time.perf_counter()
    profiles = [s.profile() for s in states]
    t2 = time.perf_counter()
    dumps = [s.dump() for s in states]
    t3 = time.perf_counter()
    loaded = [ViewerState.load(s.viewer_id, d) for s, d in zip(states, dumps, strict=True)]
    t4 = time.perf_counter()
    for s in states:
        s.compact()
    t5 = time.perf_counter()
    assert [s.profile() for s in loaded] == profiles
    print()
    for label, dt in (
        ("profile()", t2 - t1),
        ("dump()", t3 - t2),
        ("load()", t4 - t3),
        ("compact()", t5 - t4),
    ):
        print(f"{label:<44} {dt / viewers * 1e6:8.2f} µs/viewer (compacted state)")
    print(f"{'dump() size':<44} {sum(map(len, dumps)) / viewers:8.0f} bytes/viewer")

    ping_cost(states, base)

    # memory per tracked viewer: states only (the events are dropped), after compact()
    del loaded, profiles, dumps, states
    modes = (("as applied", None), ("compacted", False), ("frozen (compact(freeze=True))", True))
    for label, freeze in modes:
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        evs_all = clone(base, viewers)  # traced too: kept events count, dropped ones do not
        kept = []
        for evs in evs_all:
            s = ViewerState.new(evs[0].viewer_id)
            for ev in evs:
                s.apply(ev)
            s.history_changes()
            if freeze is not None:
                s.compact(freeze=freeze)
            kept.append(s)
        del evs_all, evs
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        print(f"{'memory per viewer, ' + label:<44} {used / viewers:8.0f} bytes")
        del kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--viewers", type=int, default=500)
    ap.add_argument("--quick", action="store_true", help="CI size (50 viewers)")
    args = ap.parse_args()
    run(50 if args.quick else args.viewers)


if __name__ == "__main__":
    main()
