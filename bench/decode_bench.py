"""Instructions per event of the profiles consumer's in-process work against the decode floor's,
counted by callgrind: a measure that does not move with the machine's other load.

The CPU-time rates of ``bench/profiles_bench.py`` move by ±15 % between runs on a shared machine,
more than most single changes save; an instruction count of the same lines is the same on every
run (to a few hundred instructions per event). Three workers read the same enriched lines (the
profiles bench's sessions: ads, pings, a pause, progress, the end) from a file, one after the
other, each under ``valgrind --tool=callgrind``:

* **floor**: what any consumer of these lines must do (the profiles bench's decode floor, without
  Kafka): split the 131 columns, ``orjson.loads`` the contexts and unstruct columns, keep the
  last event per viewer;
* **decode**: ``profiles.inputs.InputDecoder.decode`` of every line (what `lvp profiles` does
  first);
* **decode + engine**: decode, then each viewer's :class:`profiles.engine.ViewerState` applies
  the event; every 1,000 events the viewers changed since are published as the consumer does
  (``profile_view()`` folds, then ``settle()``), and at the end every viewer is snapshotted for
  its write (``history_changes()``, ``profile()``, ``dump()``, ``compact()``).

Each count has the cost of starting Python and loading the lines (a worker that only loads them)
taken out, and is divided by the number of lines. No Kafka, no DynamoDB, no threads: that part of
the consumer is in ``bench/profiles_bench.py``. Without valgrind the bench says so and counts
process CPU time instead (best of 5).

    python -m bench.decode_bench [--viewers 200] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench import counted

ROOT = Path(__file__).resolve().parent.parent
MODES = ("load", "floor", "decode", "engine")
PUBLISH_EVERY = 1000


def write_lines(path: Path, viewers: int) -> int:
    """The profiles bench's sessions for ``viewers`` viewers, interleaved, one line each."""
    sys.path.insert(0, str(ROOT / "tests"))
    from enriched_factory import interleave

    from bench.profiles_bench import watch_session

    start = 1_760_000_000_000
    builders = [
        watch_session(f"{uuid.UUID(int=i, version=4).hex}{i:032x}", start + i * 37, i) for i in range(viewers)
    ]
    lines = [line for _key, line in interleave(builders)]
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


def work(mode: str, path: Path) -> int:
    """Run ``mode`` over the lines of ``path`` once; returns the number of lines. Every mode
    imports the same modules and loads the lines, so that ``load`` (only that) can be taken out."""
    import orjson

    from lvp.enriched import INDEX
    from lvp.gc_policy import SERVICE_GC_THRESHOLDS
    from profiles.engine import ViewerState
    from profiles.inputs import InputDecoder

    gc.set_threshold(*SERVICE_GC_THRESHOLDS)  # as the consumer runs
    lines = [line.encode() for line in path.read_text().splitlines()]
    decode = InputDecoder().decode
    if mode == "floor":
        i_ctx, i_ue, i_duid = INDEX["contexts"], INDEX["unstruct_event"], INDEX["domain_userid"]
        last = {}
        for m in lines:
            cols = m.decode().split("\t")
            ctx, ue = cols[i_ctx], cols[i_ue]
            last[cols[i_duid]] = (cols, orjson.loads(ctx) if ctx else None, orjson.loads(ue) if ue else None)
    elif mode == "decode":
        for m in lines:
            decode(m)
    elif mode == "engine":
        states: dict[str, ViewerState] = {}
        changed: set[str] = set()
        for k, m in enumerate(lines, 1):
            ev = decode(m)
            st = states.get(ev.viewer_id)
            if st is None:
                st = states[ev.viewer_id] = ViewerState.new(ev.viewer_id, 10.0)
            st.apply(ev)
            changed.add(ev.viewer_id)
            if k % PUBLISH_EVERY == 0:
                for vid in changed:
                    states[vid].profile_view()
                    states[vid].settle()
                changed.clear()
        for st in states.values():
            st.history_changes()
            st.profile()
            st.dump()
            st.compact()
    return len(lines)


def _instructions(mode: str, path: Path) -> int:
    cmd = [sys.executable, "-m", "bench.decode_bench", "--worker", mode, "--lines", str(path)]
    return counted.instructions(cmd, ROOT, timeout=1800)[0]


def _cpu_seconds(mode: str, path: Path, repeats: int = 5) -> float:
    cmd = [sys.executable, "-m", "bench.decode_bench", "--worker", mode, "--lines", str(path), "--time"]
    best = float("inf")
    for _ in range(repeats):
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=True).stdout
        best = min(best, float(out.split()[-1]))
    return best


def run(viewers: int) -> str:
    with tempfile.TemporaryDirectory(prefix="lvp-decode-bench-") as tmp:
        path = Path(tmp) / "lines.tsv"
        n = write_lines(path, viewers)
        have_valgrind = shutil.which("valgrind") is not None
        if have_valgrind:
            raw = {mode: float(_instructions(mode, path)) for mode in MODES}
            per = {mode: (raw[mode] - raw["load"]) / n for mode in MODES[1:]}
            unit = "instructions per event (callgrind)"
        else:
            raw = {mode: _cpu_seconds(mode, path) for mode in MODES}
            per = {mode: (raw[mode] - raw["load"]) / n * 1e6 for mode in MODES[1:]}
            unit = "µs of CPU per event (valgrind not found: process CPU time, best of 5)"
    names = {
        "floor": "decode floor: split the 131 columns, orjson the contexts + unstruct, last event per viewer",
        "decode": "`InputDecoder.decode` (what `lvp profiles` does first)",
        "engine": "decode + engine: apply, publish (fold, profile, settle), snapshot for the write",
    }
    rows = [
        f"{n:,} enriched lines of {viewers:,} viewers (the profiles bench's sessions); {unit}",
        "",
        *counted.table(names, per, "floor", have_valgrind),
        "",
        f"floor / (decode + engine): {per['floor'] / per['engine']:.2f}",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--viewers", type=int, default=200, help="viewers of ~46 events each")
    p.add_argument("--quick", action="store_true", help="CI size: 20 viewers")
    p.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--lines", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--time", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        t0 = time.process_time()
        work(args.worker, args.lines)
        if args.time:  # (the load mode's time is what the others subtract)
            print(time.process_time() - t0)
        return 0
    os.environ.setdefault("PYTHONHASHSEED", "0")  # the workers' dicts laid out the same every run
    print(run(20 if args.quick else args.viewers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
