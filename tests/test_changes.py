"""lvp/changes.py: the significance hash the consumer publishes by (pure)."""

from __future__ import annotations

from lvp.changes import TOUCH_FIELDS, significant_signer
from lvp.profile import PROFILE_FIELDS
from profiles.engine import ViewerState

significant = significant_signer(PROFILE_FIELDS)


def test_touch_fields_alone_never_change_the_signature() -> None:
    profile = ViewerState.new("v").profile()
    touched = {**profile, "position_s": 42.0, "last_seen": "2024-11-16T13:33:22.625Z", "events": 9}
    assert set(touched) - set(profile) == set()
    assert significant(touched) == significant(profile)
    assert all(f in PROFILE_FIELDS for f in TOUCH_FIELDS)


def test_every_significant_change_changes_the_signature() -> None:
    profile = ViewerState.new("v").profile()
    base = significant(profile)
    for changed in (
        {"status": "watching"},
        {"plays": 1},
        {"ad": {"ad_id": "a", "name": "n", "break_id": "b"}},
        {"last_error": {"code": "E1", "message": "m"}},
        {"volume": 50},
    ):
        assert significant({**profile, **changed}) != base, changed
    ad = {**profile, "ad": {"ad_id": "a", "name": "n", "break_id": "b"}}
    other_ad = {**profile, "ad": {"ad_id": "b", "name": "n", "break_id": "b"}}
    assert significant(ad) != significant(other_ad)
