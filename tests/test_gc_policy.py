"""lvp.gc_policy: the services' garbage-collector policy, applied while they run and put back."""

from __future__ import annotations

import gc
import threading

import pytest

from lvp.gc_policy import SERVICE_GC_THRESHOLDS, service_gc


@pytest.fixture(autouse=True)
def _default_thresholds() -> object:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


def test_thresholds_raised_within_and_restored_after() -> None:
    with service_gc():
        assert gc.get_threshold() == SERVICE_GC_THRESHOLDS
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_what_exists_on_entry_is_frozen_and_later_objects_are_not() -> None:
    class Node:
        pass

    before = Node()
    with service_gc():
        assert gc.get_freeze_count() > 0
        after = Node()
        tracked = {id(o) for o in gc.get_objects()}
        assert id(after) in tracked and id(before) not in tracked  # (frozen: out of collections)
    assert id(before) in {id(o) for o in gc.get_objects()}


def test_cycles_are_still_collected_within() -> None:
    class Node:
        other: object = None

    with service_gc():
        a, b = Node(), Node()
        a.other, b.other = b, a
        probe = id(a)
        del a, b
        assert any(id(o) == probe for o in gc.get_objects())
        gc.collect()
        assert not any(id(o) == probe for o in gc.get_objects())


def test_overlapping_services_restore_the_thresholds_from_before_the_first() -> None:
    """Two services whose lifetimes overlap (not nested), as the tests run them in threads: the
    first to leave does not put the defaults back under the other; the last one does."""
    first = service_gc()
    second = service_gc()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert gc.get_threshold() == SERVICE_GC_THRESHOLDS
    assert gc.get_freeze_count() > 0
    second.__exit__(None, None, None)
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_threads_entering_and_leaving_together_end_with_the_defaults() -> None:
    barrier = threading.Barrier(8)

    def run() -> None:
        barrier.wait()
        for _ in range(20):
            with service_gc((5_000, 5, 5)):
                pass

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0
