"""The URL-scrub benchmark (`python -m bench.scrub_bench --quick`) keeps running and its table
holds sane figures: every scenario (and its pre-issue-#12 policy twin) has a positive CPU cost
per event, every event was enriched, and no raw e-mail or IP is left in any enriched line."""

from __future__ import annotations

from support.bench import run_bench

SCENARIOS = {
    "plain",
    "campaign",
    "email in query",
    "email in query, before (all query values kept)",
    "IP in query",
    "IP in query, before (all query values kept)",
    "IP in path",
}


def test_scrub_bench_quick() -> None:
    out = run_bench("scrub_bench", "--quick", timeout=300)
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] in SCENARIOS:
            print(f"FIGURE scrub_bench {line.strip()}")
            rows[cells[0]] = (float(cells[1]), float(cells[2]), int(cells[3]), int(cells[4]), int(cells[5]))
    assert set(rows) == SCENARIOS
    for name, (cpu_us, ratio, events, lost, leaks) in rows.items():
        assert cpu_us > 0 and ratio > 0, name
        assert events == 1_000 and lost == 0 and leaks == 0, name
    assert rows["plain"][1] == 1.0
