"""The differential-privacy trade-off benchmark (`python -m bench.dp_tradeoff --quick`) keeps
running, and its table says what it should: one row per ε preset, the error falling as ε grows.
(The public endpoint itself, without a token and with its budget, is tested end to end in
``test_viewer_app.py::test_public_stats_are_open_noisy_and_budgeted``.)"""

from __future__ import annotations

from support.bench import run_bench

from lvp.config import DP_EPSILON_PRESETS


def test_dp_tradeoff_quick() -> None:
    out = run_bench("dp_tradeoff", "--quick", timeout=120)
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] in DP_EPSILON_PRESETS:
            print(f"FIGURE dp_tradeoff {line.strip()}")
            rows[cells[0]] = (float(cells[1]), float(cells[2]), float(cells[3]))
    assert set(rows) == set(DP_EPSILON_PRESETS)
    for name, (eps, scale, _err) in rows.items():
        assert eps == DP_EPSILON_PRESETS[name] and scale == round(3 / eps, 1)
    errors = [err for _eps, _scale, err in sorted(rows.values())]  # by ε, ascending
    assert errors == sorted(errors, reverse=True) and errors[0] > errors[-1]
