"""Equivalences the collector's hot path relies on: each faster form gives exactly what the
plainer one it replaced gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.enrich import columns_holding
from lvp.enriched import N_FIELDS


def _plain(cols: list[str], forms: list[str]) -> set[int]:
    """The column-by-column search :func:`columns_holding` replaces (forms without a tab)."""
    return {i for i, c in enumerate(cols) if any(form in c for form in forms)}


_pieces = st.sampled_from(["198.51.100.7", "a@b.c", "\\", "x", "198.51", ".7", "é", "\n"])
_text = st.lists(_pieces, max_size=5).map("".join)


@settings(max_examples=500, deadline=None)
@given(
    filled=st.dictionaries(st.integers(0, N_FIELDS - 1), _text, max_size=12),
    forms=st.lists(_text.filter(bool), min_size=1, max_size=3),
)
def test_columns_holding_finds_what_the_column_by_column_search_finds(
    filled: dict[int, str], forms: list[str]
) -> None:
    cols = [""] * N_FIELDS
    for i, value in filled.items():
        cols[i] = value
    assert columns_holding("\t".join(cols), forms) == _plain(cols, forms)


def test_columns_holding_examples() -> None:
    cols = [""] * N_FIELDS
    ip = "198.51.100.7"
    cols[3] = f"http://{ip}:3000/media"
    cols[5] = ip
    cols[7] = f"{ip}{ip}"  # twice in one column
    line = "\t".join(cols)
    assert columns_holding(line, [ip]) == {3, 5, 7}
    assert columns_holding(line, ["nowhere"]) == set()
    cols[9], cols[10] = "tail-198.51", "100.7-head"
    assert columns_holding("\t".join(cols), ["198.51\t100.7"]) == {9, 10}  # spans two columns
