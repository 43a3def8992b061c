"""profiles/dirty.py: the ledger of unwritten viewers (pure: the test passes the time)."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from profiles.dirty import DirtyLedger


def ledger(interval: float = 300.0, quiet: float = 75.0) -> DirtyLedger:
    return DirtyLedger(interval, quiet, start=1000.0)


def never_quiet(_vid: str, _p: int) -> float:
    return 1e9


def test_first_unwritten_offset_is_kept_and_lowered_never_raised() -> None:
    d = ledger()
    assert d.mark("a", 2, 40, 1000.0) is True
    assert d.mark("a", 2, 45, 1001.0) is False
    assert d.first("a") == (2, 40)
    d.mark("a", 2, 7, 1002.0)  # a failed write restores an earlier offset
    assert d.first("a") == (2, 7)
    d.mark("b", 2, 90, 1000.0)
    d.mark("c", 3, 5, 1000.0)
    assert d.earliest() == {2: 7, 3: 5}
    assert d.pop("a") == (2, 7) and "a" not in d and d.first("a") is None
    assert d.earliest() == {2: 90, 3: 5}
    assert sorted(d) == ["b", "c"] and len(d) == 2 and bool(d)


def test_unknown_partition_and_whole_partition_hold_round_trip() -> None:
    d = ledger()
    d.mark("x", -1, -1, 1000.0)
    d.mark("y", 65534, 2**40, 1000.0)
    assert d.first("x") == (-1, -1)
    assert d.first("y") == (65534, 2**40)


def test_cadence_makes_a_viewer_due_and_nothing_before() -> None:
    d = ledger(interval=300.0, quiet=75.0)
    d.mark("a", 0, 1, 1000.0)
    for t in range(1000, 1300, 7):
        d.mark("a", 0, 2, float(t))  # pings keep coming: never quiet
        assert d.due(float(t), never_quiet) == {}
    assert d.due(1300.5, never_quiet) == {"a": "cadence"}
    assert "a" in d  # due is a question; the caller pops it when it writes


def test_quiet_viewers_are_due_before_the_cadence() -> None:
    d = ledger(interval=300.0, quiet=75.0)
    d.mark("a", 0, 1, 1000.0)
    d.mark("b", 0, 2, 1000.0)
    left = {"a": 0.0, "b": 30.0}
    due = d.due(1080.0, lambda vid, p: left[vid])
    assert due == {"a": "quiet"}
    left["b"] = 0.0
    assert d.due(1100.0, lambda vid, p: left[vid]) == {}  # b is looked at again after 30 s
    assert d.due(1112.0, lambda vid, p: left[vid]) == {"b": "quiet"}


def test_a_written_viewer_is_not_due_and_a_new_dirty_period_counts_from_its_start() -> None:
    d = ledger(interval=300.0, quiet=75.0)
    d.mark("a", 0, 1, 1000.0)
    d.pop("a")  # written (a status change)
    d.mark("a", 0, 9, 1200.0)
    assert d.due(1301.0, never_quiet) == {}  # 300 s after 1200, not after 1000
    assert d.due(1501.0, never_quiet) == {"a": "cadence"}


def test_spread_moves_cadences_earlier_never_later_and_apart() -> None:
    """With spread 0.1 every viewer is due between 270 and 300 s after it became dirty, and
    viewers dirty since the same moment (an audience joining together) are due at different
    times; spread 0 is the exact interval."""
    d = DirtyLedger(300.0, 75.0, start=1000.0, spread=0.1)
    viewers = [f"v{i}" for i in range(200)]
    for v in viewers:
        d.mark(v, 0, 1, 1000.0)
    due_at: dict[str, float] = {}
    for t in range(1001, 1302):
        for v in d.due(float(t), never_quiet):
            due_at[v] = float(t)
            d.pop(v)
    assert sorted(due_at) == sorted(viewers)
    assert min(due_at.values()) >= 1270.0 and max(due_at.values()) <= 1301.0
    assert len(set(due_at.values())) >= 20  # spread over the last 30 s, not one burst
    assert all(270.0 <= d.cadence_after(v, 5) <= 300.0 for v in viewers)
    assert ledger().cadence_after("v1", 5) == 300.0
    with pytest.raises(ValueError, match="spread"):
        DirtyLedger(300.0, 75.0, start=0.0, spread=1.0)


def test_it_is_small() -> None:
    """One packed int per dirty viewer and one list slot in the wheel, not tuples and floats."""
    d = ledger()
    for i in range(1000):
        d.mark(f"v{i:063d}", i % 4, 10**9 + i, 1000.0 + i % 60)
    per_viewer = sys.getsizeof(next(iter(d._entries.values())))
    assert per_viewer <= 40


@given(
    st.lists(
        st.tuples(
            st.sampled_from(("mark", "mark", "pop", "earliest")),
            st.integers(0, 5),
            st.integers(-1, 1),
            st.integers(-1, 50),
        ),
        max_size=200,
    )
)
def test_earliest_is_the_smallest_first_offset_of_each_partition(
    ops: list[tuple[str, int, int, int]],
) -> None:
    """Against the plain walk over every dirty viewer, whatever marks, lowerings, pops and
    earlier questions came before (the heaps keep stale entries until they come to the top)."""
    d = ledger()
    for op, viewer, p, off in ops:
        vid = f"v{viewer}"
        if op == "mark":
            known = d.first(vid)
            d.mark(vid, known[0] if known else p, off, 1000.0)  # a viewer stays in its partition
        elif op == "pop":
            d.pop(vid)
        else:
            assert d.earliest() == naive(d)
    assert d.earliest() == naive(d)


def naive(d: DirtyLedger) -> dict[int, int]:
    out: dict[int, int] = {}
    for v in d:
        vp, voff = d.first(v)  # type: ignore[misc]
        out[vp] = min(voff, out.get(vp, voff))
    return out
