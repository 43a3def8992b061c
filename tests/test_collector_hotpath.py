"""Equivalences the collector's hot path relies on: each faster form gives exactly what the
plainer one it replaced gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.enrich import _JSON_COLUMNS, columns_holding
from lvp.enriched import N_FIELDS


def _plain(cols: list[str], raws: list[str]) -> list[int]:
    """The column-by-column search :func:`columns_holding` replaces."""
    return [
        i
        for i, c in enumerate(cols)
        if c and (any(raw in c for raw in raws) or (i in _JSON_COLUMNS and "\\" in c))
    ]


_pieces = st.sampled_from(["198.51.100.7", "a@b.c", "\t", "\\", "x", "198.51", ".7", "", "é", "\n"])
_text = st.lists(_pieces, max_size=5).map("".join)


@settings(max_examples=500, deadline=None)
@given(
    filled=st.dictionaries(st.integers(0, N_FIELDS - 1), _text, max_size=12),
    raws=st.lists(_text, min_size=1, max_size=3),
)
def test_columns_holding_finds_what_the_column_by_column_search_finds(
    filled: dict[int, str], raws: list[str]
) -> None:
    cols = [""] * N_FIELDS
    for i, value in filled.items():
        cols[i] = value
    assert columns_holding(cols, raws) == _plain(cols, raws)


def test_columns_holding_examples() -> None:
    cols = [""] * N_FIELDS
    ip = "198.51.100.7"
    cols[3] = f"http://{ip}:3000/media"
    cols[5] = ip
    cols[7] = f"{ip}{ip}"  # twice in one column
    contexts = sorted(_JSON_COLUMNS)[0]
    cols[contexts] = '{"a":"\\u0041"}'  # an escape: a raw value could hide in it
    assert columns_holding(cols, [ip]) == [3, 5, 7, contexts]
    assert columns_holding(cols, ["nowhere"]) == [contexts]
    assert columns_holding(cols, [f"{ip}\t"]) == _plain(cols, [f"{ip}\t"])  # spans columns
