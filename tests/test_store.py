"""DynamoDB store of profiles and history, on DynamoDB Local and on moto server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from enriched_factory import MediaSessionBuilder, full_session
from support.faults import ThrottlingProxy
from support.profiles import engine_for
from tcpproxy import TcpProxy

from lvp.config import ConfigError, Settings
from lvp.dynamo import create_tables, dynamodb_client
from lvp.enriched import iso, parse_tstamp
from lvp.profile_codec import shard_of
from lvp.tables import ACTIVE_INDEX
from profiles.engine import ViewerState
from profiles.store import (
    ProfileStore,
    ProfileWrite,
    StoreError,
    WriteFailed,
)


@pytest.fixture
def settings(make_settings: Callable[..., Settings], dynamodb_endpoint: str) -> Settings:
    s = make_settings(aws_endpoint_url=dynamodb_endpoint, active_shards=4)
    create_tables(s)
    return s


def write_viewers(store: ProfileStore, states: list[ViewerState]) -> dict[str, Any]:
    writes, puts, profiles = [], [], {}
    for st in states:
        p, d = st.history_changes()
        assert not d
        puts += p
        profiles[st.viewer_id] = st.profile()
        writes.append(ProfileWrite(st.viewer_id, profiles[st.viewer_id], st.dump()))
    assert store.write(writes, puts) == len(writes) + len(puts)
    return profiles


def test_item_layout_and_queries(settings: Settings) -> None:
    now_ms = int(time.time() * 1000)
    watching = MediaSessionBuilder("v-watching", now_ms - 20_000).page_view().ready().play().wait(10).ping()
    ended = full_session("v-ended", now_ms - 200_000)
    stale = MediaSessionBuilder("v-stale", now_ms - 3_600_000).ready().play().wait(5).pause()
    store = ProfileStore(settings)
    states = [engine_for(b) for b in (watching, ended, stale)]
    profiles = write_viewers(store, states)

    # the item: API fields as attributes (no nulls), state, ttl, last_seen_ms, sparse active_shard
    client = dynamodb_client(settings)
    item = client.get_item(TableName=settings.table_profiles, Key={"viewer_id": {"S": "v-watching"}})["Item"]
    assert item["status"] == {"S": "watching"}
    assert item["plays"] == {"N": "1"}
    assert "ad" not in item and "active" not in item  # null -> not stored; active is derived
    assert item["active_shard"] == {"S": shard_of("v-watching", 4)}
    last_seen = profiles["v-watching"]["last_seen"]
    assert int(item["last_seen_ms"]["N"]) == round(parse_tstamp(last_seen) * 1000)
    assert int(item["ttl"]["N"]) == int(item["last_seen_ms"]["N"]) // 1000 + settings.retention_days * 86400
    assert ViewerState.load("v-watching", item["state"]["S"]).profile() == profiles["v-watching"]
    key = {"viewer_id": {"S": "v-ended"}}
    ended_item = client.get_item(TableName=settings.table_profiles, Key=key)["Item"]
    assert ended_item["status"] == {"S": "ended"} and "active_shard" not in ended_item

    # reads give back exactly what was written
    for vid, profile in profiles.items():
        assert store.get_profile(vid) == profile
    assert store.get_profile("nobody") is None
    hist = list(store.history("v-ended"))
    assert [h["seq"] for h in hist] == sorted(h["seq"] for h in hist)
    assert [(h["prev_status"], h["status"]) for h in hist][-1] == ("watching", "ended")
    assert set(hist[0]) == {"viewer_id", "seq", "at", "status", "prev_status", "event_name", "event_id"}

    # active viewers: the GSI, per shard, last_seen within the timeout; ended never listed
    active = store.active_profiles(time.time(), settings.active_timeout_s)
    assert [p["viewer_id"] for p in active] == ["v-watching"]
    assert [p["viewer_id"] for p in store.active_profiles(time.time(), 7200)] == ["v-watching", "v-stale"]
    gsi = client.describe_table(TableName=settings.table_profiles)["Table"]["GlobalSecondaryIndexes"]
    assert [g["IndexName"] for g in gsi] == [ACTIVE_INDEX]

    # history deletes and erasure
    seq = hist[-1]["seq"]
    store.write([], [], [("v-ended", seq)])
    assert seq not in [h["seq"] for h in store.history("v-ended")]
    assert store.delete_viewer("v-ended") == (True, len(hist) - 1)
    assert store.get_profile("v-ended") is None and list(store.history("v-ended")) == []
    assert store.delete_viewer("v-ended") == (False, 0)
    store.close()


@pytest.mark.parametrize("fast_calls", [True, False], ids=["dynamo_http", "boto3"])
def test_batches_loads_and_clear(settings: Settings, fast_calls: bool) -> None:
    """Many viewers: concurrent 25-item batches, 100-key BatchGets, and the rebuild's clear();
    the bulk calls on our own client or on boto3's (what a proxy setting chooses)."""
    store = ProfileStore(settings, max_workers=3, fast_calls=fast_calls)
    assert (store._rpc is not None) == fast_calls
    base = int(time.time() * 1000)
    states = [
        engine_for(MediaSessionBuilder(f"v-{i:03d}", base + i).ready().play().wait(3).pause())
        for i in range(130)
    ]
    write_viewers(store, states)
    ids = [st.viewer_id for st in states]
    loaded = store.load_states([*ids, "unknown-1", "unknown-2"])
    assert set(loaded) == set(ids)
    assert ViewerState.load("v-042", loaded["v-042"]).profile() == states[42].profile()
    counts = store.clear()
    assert counts == {settings.table_profiles: 130, settings.table_history: 130 * 2}  # idle->watching->paused
    assert store.load_states(ids) == {}
    store.close()


def test_the_dynamodb_client_setting_switches_the_bulk_calls(settings: Settings) -> None:
    """LVP_DYNAMODB_CLIENT=botocore: an operator's switch back to boto3 for BatchWriteItem and
    BatchGetItem. Both clients write the same items, and each reads what the other wrote."""
    base = int(time.time() * 1000)
    http = ProfileStore(settings.with_(dynamodb_client="http"))
    boto = ProfileStore(Settings.from_env({"LVP_DYNAMODB_CLIENT": "botocore"}, **_fields(settings)))
    assert http._rpc is not None and boto._rpc is None
    try:
        a = [engine_for(MediaSessionBuilder(f"h-{i}", base + i).ready().play().wait(2)) for i in range(30)]
        b = [engine_for(MediaSessionBuilder(f"b-{i}", base + i).ready().play().wait(2)) for i in range(30)]
        write_viewers(http, a)
        write_viewers(boto, b)
        ids = [st.viewer_id for st in a + b]
        by_http, by_boto = http.load(ids), boto.load(ids)
        assert by_http == by_boto and set(by_http[0]) == set(ids)
        raw = dynamodb_client(settings)
        for vid in ("h-3", "b-3"):  # the stored items have the same layout whoever wrote them
            item = raw.get_item(TableName=settings.table_profiles, Key={"viewer_id": {"S": vid}})["Item"]
            assert set(item) >= {"viewer_id", "state", "ttl", "last_seen_ms", "active_shard", "status"}
            assert http.get_profile(vid) == boto.get_profile(vid) is not None
            assert list(http.history(vid)) == list(boto.history(vid)) != []
    finally:
        http.close()
        boto.close()
    with pytest.raises(ConfigError, match="LVP_DYNAMODB_CLIENT"):
        ProfileStore(settings.with_(dynamodb_client="curl"))


def _fields(settings: Settings) -> dict[str, Any]:
    return {k: getattr(settings, k) for k in settings.__dataclass_fields__ if k != "dynamodb_client"}


def test_a_proxy_setting_leaves_the_bulk_calls_to_boto3(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our client speaks to the endpoint directly; with an HTTP(S) proxy configured, botocore
    (which honours it) makes every call."""
    store = ProfileStore(settings)
    assert store._rpc is not None
    store.close()
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    store = ProfileStore(settings)
    assert store._rpc is None
    store.close()


def test_erasure_markers_survive_loads_queries_and_rebuild_clear(settings: Settings) -> None:
    """Erasure leaves a marker (viewer id, erasure time, ttl) instead of the profile: no profile
    for queries, the erasure time for loads, and `--rebuild`'s clear() keeps it — also for a
    profile written after the erasure, which carries the time and becomes the marker again."""
    store = ProfileStore(settings)
    client = dynamodb_client(settings)
    base = int(time.time() * 1000)
    erased, back, control = (
        engine_for(MediaSessionBuilder(v, base).ready().play().wait(2).pause())
        for v in ("v-erased", "v-back", "v-control")
    )
    write_viewers(store, [erased, back, control])
    t = base + 5_000
    assert store.delete_viewer("v-erased", t) == (True, 2)
    item = client.get_item(TableName=settings.table_profiles, Key={"viewer_id": {"S": "v-erased"}})["Item"]
    assert item == {
        "viewer_id": {"S": "v-erased"},
        "erased_at_ms": {"N": str(t)},
        "ttl": {"N": str(t // 1000 + int(settings.retention_days * 86400))},
    }
    assert store.get_profile("v-erased") is None and list(store.history("v-erased")) == []
    assert store.delete_viewer("v-erased", t) == (False, 0)  # again: only the marker was left
    # a viewer erased, then back with a new profile written since
    assert store.delete_viewer("v-back", t) == (True, 2)
    fresh = engine_for(MediaSessionBuilder("v-back", t + 1_000).ready().play())
    store.write([ProfileWrite("v-back", fresh.profile(), fresh.dump(), t)], [])
    assert store.get_profile("v-back") == fresh.profile()  # erased_at_ms is no API field
    states, erasures = store.load(["v-erased", "v-back", "v-control", "v-unknown"])
    assert set(states) == {"v-back", "v-control"}
    assert erasures == {"v-erased": t, "v-back": t}
    # the rebuild's clear: profiles go, erasure records stay (as markers)
    store.clear()
    states, erasures = store.load(["v-erased", "v-back", "v-control"])
    assert states == {} and erasures == {"v-erased": t, "v-back": t}
    left = client.scan(TableName=settings.table_profiles)["Items"]
    assert sorted(i["viewer_id"]["S"] for i in left) == ["v-back", "v-erased"]
    assert all(set(i) == {"viewer_id", "erased_at_ms", "ttl"} for i in left)
    # deleting without an erasure time (not an erasure) removes the item altogether
    assert store.delete_viewer("v-erased") == (False, 0)
    assert store.load(["v-erased"]) == ({}, {})
    store.close()


def test_unreachable_dynamodb_raises_store_error_then_recovers(
    make_settings: Callable[..., Settings], dynamodb_local: str
) -> None:
    port = int(dynamodb_local.rsplit(":", 1)[1])
    proxy = TcpProxy("127.0.0.1", port)
    try:
        settings = make_settings(aws_endpoint_url=proxy.url)
        create_tables(settings)
        store = ProfileStore(settings, max_attempts=3, base_delay_s=0.01)
        st = engine_for(MediaSessionBuilder("v-outage", int(time.time() * 1000)).ready().play())
        write = ProfileWrite("v-outage", st.profile(), st.dump())
        proxy.cut()
        with pytest.raises(StoreError):
            store.write([write])
        with pytest.raises(StoreError):
            store.load_states(["v-outage"])
        proxy.restore()
        store.write([write])
        assert store.get_profile("v-outage") == st.profile()
        assert iso(time.time())[:4] == st.profile()["last_seen"][:4]
        store.close()
    finally:
        proxy.close()


def cheap_writes(prefix: str, n: int) -> list[ProfileWrite]:
    """``n`` small profiles (the store does not read the state)."""
    seen = iso(time.time())
    return [
        ProfileWrite(
            f"{prefix}-{i:04d}",
            {"viewer_id": f"{prefix}-{i:04d}", "status": "watching", "last_seen": seen},
            "{}",
        )
        for i in range(n)
    ]


def test_a_failed_write_keeps_what_it_wrote_and_names_the_rest(
    make_settings: Callable[..., Settings], dynamodb_local: str
) -> None:
    """Half the BatchWriteItem calls throttled and one attempt per batch: every write fails
    somewhere, yet writing only what it names as unwritten converges (retrying everything could
    not: all 12 batches would have to pass at once, 1 chance in 2^12). A profile is never written
    before its history."""
    proxy = ThrottlingProxy(dynamodb_local, operations=("BatchWriteItem",), seed=5)
    try:
        settings = make_settings(aws_endpoint_url=proxy.url)
        create_tables(settings)
        store = ProfileStore(settings, max_attempts=1, max_workers=4)
        base = int(time.time() * 1000)
        states = [
            engine_for(MediaSessionBuilder(f"v-{i:03d}", base + i).ready().play().wait(3).pause())
            for i in range(100)
        ]
        profiles = {st.viewer_id: (st.profile(), st.dump()) for st in states}
        history = {(h.viewer_id, h.seq): h for st in states for h in st.history_changes()[0]}
        assert len(history) == 200  # 8 history batches, 4 profile batches
        proxy.fraction = 0.5
        todo_p, todo_h = set(profiles), set(history)
        calls = failures = 0
        while todo_p or todo_h:
            calls += 1
            assert calls <= 60, f"no convergence: {len(todo_p)} profiles, {len(todo_h)} history left"
            writes = [ProfileWrite(v, *profiles[v]) for v in sorted(todo_p)]
            try:
                assert store.write(writes, [history[k] for k in sorted(todo_h)]) == len(writes) + len(todo_h)
                todo_p, todo_h = set(), set()
            except WriteFailed as exc:
                failures += 1
                assert exc.unwritten_profiles <= todo_p and exc.unwritten_history <= todo_h
                assert exc.written == len(todo_p) + len(todo_h) - len(exc.unwritten_profiles) - len(
                    exc.unwritten_history
                )
                # history first: a viewer with an unwritten change has an unwritten profile
                assert {v for v, _seq in exc.unwritten_history} <= exc.unwritten_profiles
                written = todo_p - exc.unwritten_profiles
                stored = store.load_states(written)
                assert stored == {v: profiles[v][1] for v in written}  # what it wrote stays written
                for v in sorted(written)[:3]:
                    assert len(list(store.history(v))) == 2
                todo_p, todo_h = set(exc.unwritten_profiles), set(exc.unwritten_history)
        assert failures >= 1
        proxy.fraction = 0.0
        assert store.load_states(profiles) == {v: d for v, (_p, d) in profiles.items()}
        scan = dynamodb_client(settings).get_paginator("scan").paginate(TableName=settings.table_history)
        stored_history = {(i["viewer_id"]["S"], i["seq"]["S"]) for page in scan for i in page["Items"]}
        assert stored_history == set(history)
        store.close()
    finally:
        proxy.close()


def test_fully_throttled_write_fails_fast_then_loads_do_not_wait_behind_writes(
    make_settings: Callable[..., Settings], dynamodb_local: str
) -> None:
    proxy = ThrottlingProxy(dynamodb_local, operations=("BatchWriteItem",))
    try:
        settings = make_settings(aws_endpoint_url=proxy.url)
        create_tables(settings)
        store = ProfileStore(settings, max_attempts=3, base_delay_s=0.01, max_workers=4)
        writes = cheap_writes("t", 1000)  # 40 batches
        proxy.fraction = 1.0
        with pytest.raises(WriteFailed) as failed:
            store.write(writes)
        exc = failed.value
        assert exc.written == 0 and exc.unwritten_profiles == {w.viewer_id for w in writes}
        # the first batch to give up stops the others: at most one ladder per worker, not 40
        assert 3 <= proxy.throttled <= 4 * 3
        proxy.fraction = 0.0
        assert store.write(writes) == 1000

        # every flush worker busy: a multi-batch load still completes (its own pool)
        release = threading.Event()
        busy = [store._pool.submit(release.wait, 60) for _ in range(store.max_workers)]
        try:
            ids = [w.viewer_id for w in writes[:250]]  # 3 BatchGetItem calls
            loaded = ThreadPoolExecutor(1).submit(store.load_states, ids)
            assert set(loaded.result(timeout=60)) == set(ids)
            assert not any(f.done() for f in busy)
        finally:
            release.set()
        store.close()
    finally:
        proxy.close()
