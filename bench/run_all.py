"""`make bench`: every benchmark at its full size, one after another (each prints its own
markdown table with the machine and its same-run baseline). Results to copy into BENCHMARKS.md.

    python -m bench.run_all [--quick]
"""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = (
    "bench.collector_bench",
    "bench.pipeline_bench",
    "bench.profiles_bench",
    "bench.decode_bench",
    "bench.writes_bench",
    "bench.engine_bench",
    "bench.freeze_bench",
    "bench.memory_bench",
    "bench.viewer_bench",
    "bench.stack_bench",
    "bench.dp_tradeoff",
    "bench.scrub_bench",
)


def main() -> int:
    extra = ["--quick"] if "--quick" in sys.argv[1:] else []
    failed = []
    for module in BENCHMARKS:
        print(f"\n## {module}\n", flush=True)
        if subprocess.run([sys.executable, "-m", module, *extra], check=False).returncode != 0:
            failed.append(module)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
