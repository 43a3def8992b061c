"""The stored format (lvp.profile_codec): attribute values, every profile field through an item
and back, history items, and items written by `lvp profiles`' writer read by both readers (the
CLI's store and the viewer's API reader) on DynamoDB Local and on moto server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from enriched_factory import MediaSessionBuilder, full_session
from support.profiles import engine_for

from lvp.config import Settings
from lvp.dynamo import create_tables, dynamodb_client
from lvp.enriched import iso
from lvp.profile import PROFILE_FIELDS, STORED_FIELDS, api_profile, with_active
from lvp.profile_codec import (
    INTERNAL_ATTRIBUTES,
    erasure_marker,
    from_attr,
    history_item,
    item_to_history,
    item_to_profile,
    profile_item,
    shard_of,
    to_attr,
)
from profiles.engine import HistoryEntry
from profiles.store import ProfileStore, ProfileWrite
from viewer.profiles_api import ProfileReader, history_view, profile_view

RETENTION_S = 30 * 86400


def full_profile(viewer_id: str, seen: float) -> dict[str, Any]:
    """A profile with every stored field set (no nulls), one value of each kind the API has."""
    values: dict[str, Any] = {
        "viewer_id": viewer_id,
        "status": "watching_ad",
        "app_id": "web-player",
        "media_label": "Big Buck Bunny",
        "media_session_id": "sess-1",
        "position_s": 12.25,
        "duration_s": 596.5,
        "percent_progress": 2,
        "ad": {"ad_id": "ad-7", "name": "Sneakers", "break_id": "pre-1"},
        "plays": 1,
        "pauses": 2,
        "seeks": 3,
        "ad_breaks": 1,
        "ads_started": 1,
        "ads_completed": 0,
        "ads_skipped": 0,
        "ads_clicked": 1,
        "buffer_events": 4,
        "errors": 1,
        "play_time_s": 40.125,
        "paused_time_s": 0.5,
        "ad_time_s": 7.75,
        "buffering_time_s": 1.5,
        "startup_time_s": 1.2,
        "first_seen": iso(seen - 60),
        "last_seen": iso(seen),
        "last_event_id": "00000000-0000-4000-8000-000000000000",
        "last_event_name": "ad_start",
        "events": 42,
        "device_class": "tv",
        "last_error": {"code": "E42", "message": "decode"},
        "playback_rate": 1.25,
        "volume": 80,
        "muted": True,
        "fullscreen": False,
        "quality": "1080p",
    }
    assert tuple(values) == STORED_FIELDS
    return values


def typed(profile: dict[str, Any]) -> list[tuple[str, Any, type]]:
    return [(k, v, type(v)) for k, v in profile.items()]


# --- pure: no DynamoDB --------------------------------------------------------------------------


def test_attribute_values_round_trip() -> None:
    values = ("x", "", 0, 7, -3, 1.5, 0.1 + 0.2, 1e-7, 1e21, True, False, {"a": 1, "b": None}, [1, "x", None])
    for v in values:
        a = to_attr(v)
        assert a is not None
        back = from_attr(a)
        if isinstance(v, dict):
            assert back == {"a": 1}
        else:
            assert back == v  # numbers: DynamoDB normalises 3.0 to 3, so only the value counts
            assert type(back) is type(v) or isinstance(v, float)
    assert to_attr(None) is None and to_attr(float("nan")) is None
    assert shard_of("viewer-1", 8) == shard_of("viewer-1", 8) and 0 <= int(shard_of("viewer-1", 8)) < 8


def test_attribute_values_the_writer_never_stores_still_decode() -> None:
    assert from_attr({"SS": ["a", "b"]}) == ["a", "b"]
    assert from_attr({"NS": ["1", "2.5"]}) == [1, 2.5]
    assert from_attr({"B": b"\x00"}) is None and from_attr({"BS": [b"\x00"]}) is None
    with pytest.raises(ValueError, match="unsupported"):
        from_attr({"X": 1})


def test_every_field_round_trips_through_an_item() -> None:
    now = 1_731_764_100.0
    profile = full_profile("v-full", now - 5)
    item = profile_item(
        "v-full", {**profile, "active": True}, '{"s": 1}', retention_s=RETENTION_S, shards=8, now=now
    )
    assert "active" not in item and set(item) == {*STORED_FIELDS, *(INTERNAL_ATTRIBUTES - {"erased_at_ms"})}
    assert item["state"] == {"S": '{"s": 1}'}
    assert item["last_seen_ms"] == {"N": str(round((now - 5) * 1000))}
    assert item["ttl"] == {"N": str(int(now - 5) + RETENTION_S)}
    assert item["active_shard"] == {"S": shard_of("v-full", 8)}
    back = item_to_profile(item)
    assert typed(back) == typed(profile)  # every field, in order, same value and type

    # nulls are not stored and come back null; ended: no active_shard; erased: its time is kept
    sparse = {**profile, "ad": None, "last_error": None, "quality": None, "status": "ended"}
    item = profile_item("v-full", sparse, "{}", erased_at_ms=123, retention_s=RETENTION_S, shards=8, now=now)
    assert not {"ad", "last_error", "quality", "active_shard"} & set(item)
    assert item["erased_at_ms"] == {"N": "123"}
    assert typed(item_to_profile(item)) == typed(sparse)

    # an unreadable last_seen: `now` stands in for it
    item = profile_item("v-x", {"last_seen": "soon"}, "{}", retention_s=RETENTION_S, shards=8, now=now)
    assert item["last_seen_ms"] == {"N": str(round(now * 1000))}


def test_history_items_round_trip() -> None:
    h = HistoryEntry("v-1", "000001731764100#e-1", iso(1_731_764_100.0), "paused", "watching", "pause", "e-1")
    item = history_item(h, retention_s=RETENTION_S, now=0.0)
    assert item["ttl"] == {"N": str(1_731_764_100 + RETENTION_S)}
    assert item_to_history(item) == h.item()
    assert tuple(item_to_history(item)) == tuple(h.item())
    assert history_view(item) == {k: v for k, v in h.item().items() if k not in ("viewer_id", "seq")}


def test_both_readers_decode_an_item_alike() -> None:
    profile = full_profile("v-full", time.time())
    item = profile_item("v-full", profile, "{}", retention_s=RETENTION_S, shards=8, now=time.time())
    now = time.time()
    assert typed(profile_view(item, 75.0, now)) == typed(with_active(item_to_profile(item), now, 75.0))
    assert tuple(profile_view(item, 75.0, now)) == PROFILE_FIELDS


# --- the real writer and both readers, on both DynamoDB API servers -----------------------------


@pytest.fixture
def settings(make_settings: Callable[..., Settings], dynamodb_endpoint: str) -> Settings:
    s = make_settings(aws_endpoint_url=dynamodb_endpoint, active_shards=4)
    create_tables(s)
    return s


async def read_with_the_viewer(settings: Settings, viewer_ids: list[str]) -> dict[str, Any]:
    reader = ProfileReader(settings)
    await reader.open()
    try:
        out: dict[str, Any] = {}
        for vid in viewer_ids:
            history, _next = await reader.history(vid, 500, None, True)
            out[vid] = (await reader.get_profile(vid), history, await reader.exists(vid))
        return out
    finally:
        await reader.close()


def test_items_written_by_the_writer_read_by_both_readers(settings: Settings) -> None:
    now_ms = int(time.time() * 1000)
    states = [
        engine_for(full_session("v-ended", now_ms - 200_000)),
        engine_for(
            MediaSessionBuilder("v-watching", now_ms - 20_000).page_view().ready().play().wait(10).ping()
        ),
    ]
    full = full_profile("v-full", time.time())
    writes = [ProfileWrite(st.viewer_id, st.profile(), st.dump()) for st in states]
    writes.append(ProfileWrite("v-full", full, "{}"))
    puts = [h for st in states for h in st.history_changes()[0]]
    store = ProfileStore(settings)
    try:
        store.write(writes, puts)
        store.delete_viewer("v-erased", now_ms)  # an erasure marker: no profile for either reader
        ids = [w.viewer_id for w in writes]
        by_store = {vid: (store.get_profile(vid), list(store.history(vid))) for vid in [*ids, "v-erased"]}
    finally:
        store.close()
    by_viewer = asyncio.run(read_with_the_viewer(settings, [*ids, "v-erased", "nobody"]))

    assert by_store["v-erased"] == (None, []) and by_viewer["v-erased"] == (None, [], False)
    assert by_viewer["nobody"] == (None, [], False)
    for w in writes:
        stored, history = by_store[w.viewer_id]
        api, api_history, exists = by_viewer[w.viewer_id]
        assert stored == dict(w.profile)  # the CLI's reader: what was written
        assert api is not None and exists
        assert tuple(api) == PROFILE_FIELDS  # the viewer's reader: the same, with `active`
        assert typed({k: v for k, v in api.items() if k != "active"}) == typed(api_profile(stored))
        assert api["active"] is (w.viewer_id != "v-ended")
        assert api_history == [{k: v for k, v in h.items() if k not in ("viewer_id", "seq")} for h in history]
    assert [h["status"] for h in by_store["v-ended"][1]][-1] == "ended"
    assert by_store["v-full"][0] == full

    # the stored layout: no `active`, no nulls, the internal attributes
    item = dynamodb_client(settings).get_item(
        TableName=settings.table_profiles, Key={"viewer_id": {"S": "v-full"}}
    )
    assert set(item["Item"]) == {*STORED_FIELDS, "state", "ttl", "last_seen_ms", "active_shard"}
    assert erasure_marker("v-erased", now_ms, retention_s=store.retention_s) == (
        dynamodb_client(settings)
        .get_item(TableName=settings.table_profiles, Key={"viewer_id": {"S": "v-erased"}})
        .get("Item")
    )
