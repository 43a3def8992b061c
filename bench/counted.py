"""Instruction counts under callgrind for the in-process benches (``decode_bench``,
``pipeline_bench``), and the table they print: a count does not move with the machine's load."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from pathlib import Path


def instructions(
    cmd: list[str], cwd: Path, *, instr_atstart: bool = True, timeout: float = 3600
) -> tuple[int, str]:
    """(instructions callgrind counted, the worker's stdout) of ``cmd`` run under callgrind.
    With ``instr_atstart=False`` nothing is counted until the worker switches instrumentation on
    itself (``callgrind_control --instr=on PID``)."""
    full = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    if not instr_atstart:
        full.append("--instr-atstart=no")
    proc = subprocess.run([*full, *cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind:\n{proc.stderr[-2000:]}")
    return int(found[1]), proc.stdout


def table(names: Mapping[str, str], per: Mapping[str, float], base: str, counted: bool) -> list[str]:
    """Markdown rows: each of ``names`` (key -> label) with its figure per event and its ratio to
    ``base``'s."""
    fmt = "{:,.0f}" if counted else "{:,.2f}"
    rows = ["| work | per event | vs the floor |", "| --- | ---: | ---: |"]
    for key, label in names.items():
        rows.append(f"| {label} | {fmt.format(per[key])} | {per[key] / per[base]:.2f} |")
    return rows
