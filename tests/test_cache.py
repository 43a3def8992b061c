from __future__ import annotations

import pytest

from lvp.cache import BoundedCache


def test_put_stores_and_returns_the_value_and_get_reads_it() -> None:
    c: BoundedCache[str, int] = BoundedCache(4)
    assert c.put("a", 1) == 1
    assert c.get("a") == 1 and c.get("b") is None and len(c) == 1


def test_a_full_cache_drops_its_oldest_quarter_first() -> None:
    c: BoundedCache[int, int] = BoundedCache(8)
    for i in range(8):
        c.put(i, i * 10)
    c.put(8, 80)  # full: 8 // 4 = 2 oldest go
    assert list(c) == [2, 3, 4, 5, 6, 7, 8]
    c.put(9, 9)
    assert len(c) == 8 and next(iter(c)) == 2  # fills up to the limit again before dropping
    c.put(10, 10)
    assert list(c) == [4, 5, 6, 7, 8, 9, 10]


def test_replacing_a_key_of_a_full_cache_drops_nothing() -> None:
    c: BoundedCache[str, int] = BoundedCache(2)
    c.put("a", 1)
    c.put("b", 2)
    c.put("a", 3)
    assert c == {"a": 3, "b": 2}


@pytest.mark.parametrize(("limit", "kept"), [(0, 1), (1, 1), (3, 3)])
def test_small_limits_drop_at_least_one_entry(limit: int, kept: int) -> None:
    c: BoundedCache[int, int] = BoundedCache(limit)
    for i in range(10):
        c.put(i, i)
        assert len(c) <= max(1, limit)
    assert len(c) == kept and 9 in c
