"""profiles/offsets.py: what the consumer may commit per partition (pure: no Kafka).

Row by row, as the consumer uses it: a batch read moves the next offset; the holds (a dirty
viewer's first unwritten event, an event waiting for its viewer's stored state) keep the commit
at the first unwritten event; a flush removes a hold; a revoked partition is forgotten; an
erasure reads a partition again from a checkpoint before the erasure time.
"""

from __future__ import annotations

from profiles.dirty import DirtyLedger
from profiles.offsets import CHECKPOINT_EVERY_S, CHECKPOINT_KEEP_S, OffsetLedger


def ledger(*parts: int) -> OffsetLedger:
    o = OffsetLedger()
    for p in parts:
        o.assign(p)
    return o


def test_without_holds_the_next_offset_of_each_assigned_partition_is_committable() -> None:
    o = ledger(0, 1)
    assert o.committable() == {}  # nothing read yet
    o.read({0: 0, 1: 0}, {0: 9, 1: 4}, wall=100.0)
    assert o.committable() == {0: 10, 1: 5}
    o.read({0: 10}, {0: 19}, wall=100.1)
    assert o.committable() == {0: 20, 1: 5}


def test_commits_are_held_at_each_viewers_first_unwritten_event() -> None:
    o = ledger(0, 1)
    dirty = DirtyLedger(300.0, 75.0, start=0.0)
    o.read({0: 0, 1: 0}, {0: 99, 1: 49}, wall=100.0)
    dirty.mark("a", 0, 40, 1.0)  # a ping at 40 not written yet
    dirty.mark("a", 0, 70, 2.0)  # (a later one keeps the first)
    dirty.mark("b", 0, 55, 1.0)
    assert o.committable(dirty.earliest()) == {0: 40, 1: 50}
    # an event waiting for its viewer's stored state holds its partition too
    assert o.committable(dirty.earliest(), {1: 12}) == {0: 40, 1: 12}
    # a hold past what was read, or on a partition not assigned, changes nothing
    assert o.committable({0: 500, 7: 3}) == {0: 100, 1: 50}


def test_a_flush_advances_the_commit_to_the_next_unwritten_event() -> None:
    o = ledger(0)
    dirty = DirtyLedger(300.0, 75.0, start=0.0)
    o.read({0: 0}, {0: 99}, wall=100.0)
    dirty.mark("a", 0, 40, 1.0)
    dirty.mark("b", 0, 55, 1.0)
    offsets = o.committable(dirty.earliest())
    assert offsets == {0: 40}
    assert o.uncommitted(offsets) and o.to_commit(offsets) == {0: 40}
    o.mark_committed(o.to_commit(offsets))
    assert not o.uncommitted(o.committable(dirty.earliest()))
    dirty.pop("a")  # a's write was submitted and succeeded
    offsets = o.committable(dirty.earliest())
    assert offsets == {0: 55} and o.to_commit(offsets) == {0: 55}
    o.mark_committed(o.to_commit(offsets))
    dirty.pop("b")
    assert o.committable(dirty.earliest()) == {0: 100}
    o.mark_committed(o.to_commit(o.committable()))
    assert o.committed == {0: 100} and not o.uncommitted(o.committable())


def test_a_commit_never_goes_backwards() -> None:
    o = ledger(0)
    o.read({0: 0}, {0: 9}, wall=100.0)
    o.mark_committed({0: 10})
    assert o.to_commit({0: 4}) == {}  # e.g. a hold restored after a failed write
    assert not o.uncommitted({0: 4})


def test_a_revoked_partition_is_neither_committable_nor_remembered() -> None:
    o = ledger(0, 1)
    o.read({0: 0, 1: 0}, {0: 9, 1: 9}, wall=100.0)
    o.mark_committed({0: 10, 1: 10})
    o.eof.add(1)
    o.revoke(1)
    assert o.assigned == {0}
    assert o.committable({1: 3}) == {0: 10}
    assert o.to_commit({1: 20}) == {}
    assert 1 not in o.next_offsets and 1 not in o.committed and 1 not in o.eof
    assert o.replay_offset(1, 0.0) is None
    # assigned again (to this consumer): starts from nothing
    o.assign(1)
    assert o.committable() == {0: 10}


def test_checkpoints_find_where_to_read_again_after_an_erasure() -> None:
    o = ledger(0)
    o.read({0: 0}, {0: 9}, wall=100.0)
    o.read({0: 10}, {0: 19}, wall=100.0 + CHECKPOINT_EVERY_S / 2)  # too soon: no new checkpoint
    o.read({0: 20}, {0: 29}, wall=101.0)
    o.read({0: 30}, {0: 39}, wall=102.0)
    assert [off for _at, off in o.checkpoints[0]] == [0, 20, 30]
    # every message read at or after `since` is at or after the offset returned
    assert o.replay_offset(0, 101.5) == 20
    assert o.replay_offset(0, 102.0) == 30
    assert o.replay_offset(0, 50.0) == 0  # before the first checkpoint: the oldest
    assert o.replay_offset(0, 103.0) is None  # nothing read since: nothing to read again
    assert o.oldest_checkpoint(0) == 100.0


def test_replay_after_an_erasure_seek_holds_the_commit_until_read_again() -> None:
    o = ledger(0)
    o.read({0: 0}, {0: 49}, wall=100.0)
    o.read({0: 50}, {0: 99}, wall=101.0)
    o.mark_committed({0: 100})
    o.eof.add(0)
    since = 100.5
    off = o.replay_offset(0, since)
    assert off == 0
    o.seek(0, off, wall=110.0)
    assert o.next_offsets[0] == 0 and 0 not in o.eof
    # every checkpoint now covers the re-read: a second erasure finds the replay's start
    assert all(cp_off <= off for _at, cp_off in o.checkpoints[0])
    assert o.replay_offset(0, 105.0) == 0
    # nothing new to commit while the partition is read again (the commit never goes back)
    assert not o.uncommitted(o.committable())
    o.read({0: 0}, {0: 99}, wall=110.2)
    o.read({0: 100}, {0: 119}, wall=111.0)
    assert o.committable() == {0: 120} and o.to_commit(o.committable()) == {0: 120}


def test_a_seek_forward_does_not_skip_unread_messages() -> None:
    o = ledger(0)
    o.read({0: 0}, {0: 9}, wall=100.0)
    o.seek(0, 50, wall=101.0)
    assert o.next_offsets[0] == 10


def test_old_checkpoints_are_dropped_but_one_older_than_the_horizon_is_kept() -> None:
    o = ledger(0)
    o.read({0: 0}, {0: 9}, wall=0.0)
    o.read({0: 10}, {0: 19}, wall=10.0)
    o.read({0: 20}, {0: 29}, wall=CHECKPOINT_KEEP_S + 20.0)
    assert [off for _at, off in o.checkpoints[0]] == [10, 20]
