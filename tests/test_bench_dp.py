"""The differential-privacy trade-off benchmark (`python -m bench.dp_tradeoff --quick`) keeps
running, and its table says what it should: one row per ε preset, the error falling as ε grows.
(The public endpoint itself, without a token and with its budget, is tested end to end in
``test_viewer_app.py::test_public_stats_are_open_noisy_and_budgeted``.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from viewer.privacy import PRESETS

ROOT = Path(__file__).resolve().parent.parent


def test_dp_tradeoff_quick() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.dp_tradeoff", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {}
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] in PRESETS:
            print(f"FIGURE dp_tradeoff {line.strip()}")
            rows[cells[0]] = (float(cells[1]), float(cells[2]), float(cells[3]))
    assert set(rows) == set(PRESETS)
    for name, (eps, scale, _err) in rows.items():
        assert eps == PRESETS[name] and scale == round(3 / eps, 1)
    errors = [err for _eps, _scale, err in sorted(rows.values())]  # by ε, ascending
    assert errors == sorted(errors, reverse=True) and errors[0] > errors[-1]
