"""Erasure (issue 7, privacy): `lvp profile delete --user-id RAW` (or ``--domain-userid``,
``--network-userid``) erases a viewer whose data went through the whole pipeline.

Events for four viewers go collector -> Tansu -> profiles consumer -> DynamoDB Local + changes
topic -> viewer API; a viewer is identified by ``uid``, one only by ``duid``, one only by the
``sp`` cookie (network user id) and one is kept as a control. Each erasure runs the real CLI in a
subprocess (the pseudonym is computed there, from the raw identifier and the key) and must
remove the profile and its whole history from DynamoDB, make the API answer 404 for both, and
drop the viewer from the live view (the tombstone on the changes topic -> SSE ``remove``),
leaving the control viewer untouched. A profile is keyed by ``uid``, else ``duid``, else the
network user id, so a viewer is erased by the identifier its profile is keyed by (a signed-in
viewer's ``duid`` finds nothing).

Later tests record what happens when the erased viewer comes back while the consumer still
holds it in memory: erasure is about past data, so the new event must start a new profile with
nothing of the erased one in it. The last one checks ``profiles.erasure.Erasures.forget`` on a
consumer's books alone, without Kafka or DynamoDB. The protocol: docs/contracts.md#erasure.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from collector_server import serve_collector
from support.profiles import FAST_GROUP, consumer_thread, pipeline, pipeline_settings, settings_env, wait_for
from support.viewer import SSEEvent, SSEStream

from lvp.config import Settings
from lvp.dynamo import dynamodb_client
from lvp.pseudonym import pseudonymize
from profiles.consumer import ProfilesConsumer

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "erasure-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
MEDIA = "com.snowplowanalytics.snowplow.media"
UNSTRUCT = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
CONTEXTS = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0"

#: (viewer name, tracker parameters, sp cookie, CLI flag, raw identifier to erase by)
VIEWERS: dict[str, tuple[dict[str, str], str, str | None, str | None]] = {
    "by_user_id": (
        {"uid": "erase.me@example.com", "duid": "6c1b5c2e-0d1e-4f4a-9b0e-1a2b3c4d5e6f"},
        "0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d",
        "--user-id",
        "erase.me@example.com",
    ),
    "by_domain_userid": (
        {"duid": "7e8f9a0b-1c2d-4e3f-8a4b-5c6d7e8f9a0b"},
        "1b2c3d4e-5f6a-4b7c-9d8e-9f0a1b2c3d4e",
        "--domain-userid",
        "7e8f9a0b-1c2d-4e3f-8a4b-5c6d7e8f9a0b",
    ),
    "by_network_userid": (
        {},
        "2c3d4e5f-6a7b-4c8d-8e9f-0a1b2c3d4e5f",
        "--network-userid",
        "2c3d4e5f-6a7b-4c8d-8e9f-0a1b2c3d4e5f",
    ),
    "control": ({"uid": "keep.me@example.com"}, "3d4e5f6a-7b8c-4d9e-8f0a-1b2c3d4e5f6a", None, None),
}
SCRIPT = ("ready", "play", "ping", "seek_start", "seek_end", "pause")


def viewer_id(settings: Settings, name: str) -> str:
    params, cookie, _flag, _raw = VIEWERS[name]
    raw = params.get("uid") or params.get("duid") or cookie
    return pseudonymize(raw, settings.pseudonym_key.encode())


def media_events(params: dict[str, str], names: tuple[str, ...], start_ms: int) -> list[dict[str, str]]:
    """Tracker-shaped media events (what the JS tracker POSTs), one second apart."""
    out = []
    for i, name in enumerate(names):
        ue = {
            "schema": UNSTRUCT,
            "data": {"schema": f"iglu:{MEDIA}/{name}_event/jsonschema/1-0-0", "data": {}},
        }
        player = {"currentTime": float(i), "duration": 600.0, "paused": name in ("ready", "pause"),
                  "ended": False, "label": "Erasure Movie"}  # fmt: skip
        co = {"schema": CONTEXTS, "data": [
            {"schema": "iglu:com.snowplowanalytics.snowplow/media_player/jsonschema/2-0-0", "data": player},
            {"schema": f"iglu:{MEDIA}/session/jsonschema/1-0-0", "data": {"mediaSessionId": str(uuid.uuid4())}},
        ]}  # fmt: skip
        t = start_ms + 1000 * i
        out.append({"e": "ue", "eid": str(uuid.uuid4()), "tv": "js-4.6.6", "p": "web", "aid": "erasure-app",
                    "dtm": str(t), "stm": str(t + 5), "ttm": str(t), "ue_pr": orjson.dumps(ue).decode(),
                    "co": orjson.dumps(co).decode(), **params})  # fmt: skip
    return out


def send(collector_url: str, name: str, names: tuple[str, ...], start_ms: int) -> None:
    params, cookie, _flag, _raw = VIEWERS[name]
    body = orjson.dumps({"schema": PAYLOAD_DATA, "data": media_events(params, names, start_ms)})
    r = httpx.post(collector_url + TP2, content=body, headers={"Cookie": f"sp={cookie}"}, timeout=15)
    assert r.status_code == 200, r.text


def history_items(settings: Settings, vid: str) -> list[dict[str, Any]]:
    resp = dynamodb_client(settings).query(
        TableName=settings.table_history,
        KeyConditionExpression="viewer_id = :v",
        ExpressionAttributeValues={":v": {"S": vid}},
        ConsistentRead=True,
    )
    return list(resp["Items"])


def raw_item(settings: Settings, vid: str) -> dict[str, Any] | None:
    resp = dynamodb_client(settings).get_item(
        TableName=settings.table_profiles, Key={"viewer_id": {"S": vid}}, ConsistentRead=True
    )
    item = resp.get("Item")
    return dict(item) if item is not None else None


def profile_item(settings: Settings, vid: str) -> dict[str, Any] | None:
    """The viewer's profile item; None when there is none or only the erasure marker."""
    item = raw_item(settings, vid)
    return item if item is not None and "state" in item else None


def assert_marker_only(settings: Settings, vid: str) -> None:
    """All that is left of an erased viewer: its pseudonym, the erasure time, a ttl."""
    item = raw_item(settings, vid)
    assert item is not None and set(item) == {"viewer_id", "erased_at_ms", "ttl"}, item


def erase(settings: Settings, flag: str, raw: str) -> tuple[int, dict[str, Any], str]:
    """`lvp profile delete FLAG RAW` in a subprocess, configured by the environment only."""
    proc = subprocess.run(
        [sys.executable, "-m", "lvp.cli", "--log-level", "WARNING", "profile", "delete", flag, raw],
        cwd=ROOT,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    summary = orjson.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, summary, proc.stderr


@pytest.fixture
def settings(make_settings: Callable[..., Settings], dynamodb_local: str) -> Settings:
    return pipeline_settings(make_settings, dynamodb_local, TOKEN)


@pytest.fixture
def stack(settings: Settings) -> Iterator[dict[str, Any]]:
    with pipeline(settings) as running:
        yield {**running, "collector": running["collector"].url}


def load_viewers(settings: Settings, stack: dict[str, Any]) -> dict[str, int]:
    """Send every viewer's script; wait until DynamoDB holds each full profile and its history.
    Returns viewer name -> history items."""
    start = int(time.time() * 1000) - 20_000
    for name in VIEWERS:
        send(stack["collector"], name, SCRIPT, start)
    counts = {}
    for name in VIEWERS:
        vid = viewer_id(settings, name)

        def stored(vid: str = vid) -> bool:
            r = httpx.get(f"{stack['viewer']}/api/profiles/{vid}", headers=AUTH)
            return (
                r.status_code == 200
                and r.json()["events"] == len(SCRIPT)
                and bool(history_items(settings, vid))
            )

        wait_for(stored, timeout=60, what=f"{name}'s profile and history in DynamoDB")
        counts[name] = len(history_items(settings, vid))
    return counts


def test_erasure_by_each_identifier_removes_profile_history_and_live_view(
    settings: Settings, stack: dict[str, Any]
) -> None:
    viewer = stack["viewer"]
    history = load_viewers(settings, stack)
    control = viewer_id(settings, "control")
    # a profile is keyed by uid, else duid, else nuid: a signed-in viewer's duid finds nothing
    signed_in = VIEWERS["by_user_id"][0]
    code, summary, _ = erase(settings, "--domain-userid", signed_in["duid"])
    assert code == 1 and summary["profile_deleted"] is False
    assert profile_item(settings, viewer_id(settings, "by_user_id")) is not None
    with SSEStream(viewer, "/api/viewers/stream", headers=AUTH) as sse:
        first = sse.next_event(timeout=10)
        assert first is not None and first.event == "snapshot"
        live = {v["viewer_id"] for v in first.json()["viewers"]}
        if len(live) < len(VIEWERS):  # the live view may still be catching up with the changes topic
            ev = sse.wait_for(
                lambda e: (
                    e.event == "delta"
                    and {v["viewer_id"] for v in e.json()["upsert"]} | live
                    >= {viewer_id(settings, n) for n in VIEWERS}
                ),
                timeout=30,
            )
            assert ev is not None, "the live view never showed every viewer"
        for name, (_params, _cookie, flag, raw) in VIEWERS.items():
            if flag is None or raw is None:
                continue
            vid = viewer_id(settings, name)
            code, summary, stderr = erase(settings, flag, raw)
            assert code == 0, stderr
            assert summary == {
                "viewer_id": vid,
                "profile_deleted": True,
                "history_deleted": history[name],
                "tombstone": True,
            }
            assert raw not in stderr and raw not in orjson.dumps(summary).decode()
            # DynamoDB: nothing left of the viewer but the erasure marker
            assert_marker_only(settings, vid)
            assert history_items(settings, vid) == []
            # the API: 404 for the profile and its history
            assert httpx.get(f"{viewer}/api/profiles/{vid}", headers=AUTH).status_code == 404
            assert httpx.get(f"{viewer}/api/profiles/{vid}/history", headers=AUTH).status_code == 404

            # the live view: removed (tombstone on the changes topic -> SSE remove)
            def removes(e: SSEEvent, vid: str = vid) -> bool:
                return e.event == "delta" and vid in e.json()["remove"]

            removed = sse.wait_for(removes, timeout=30)
            assert removed is not None, f"{name}: no SSE remove for the erased viewer"
            snapshot = httpx.get(f"{viewer}/api/viewers", headers=AUTH).json()
            assert vid not in {v["viewer_id"] for v in snapshot["viewers"]}
            # erasing again: nothing left (exit 1), still a tombstone
            again = erase(settings, flag, raw)
            assert again[0] == 1 and again[1]["profile_deleted"] is False and again[1]["history_deleted"] == 0
    # the control viewer is untouched
    assert profile_item(settings, control) is not None
    assert len(history_items(settings, control)) == history["control"]
    assert httpx.get(f"{viewer}/api/profiles/{control}", headers=AUTH).status_code == 200
    snapshot = httpx.get(f"{viewer}/api/viewers", headers=AUTH).json()
    assert {v["viewer_id"] for v in snapshot["viewers"]} == {control}
    erased = sum(v for k, v in history.items() if k != "control")
    print(
        f"FIGURE erasure: 3 viewers erased by --user-id / --domain-userid / --network-userid "
        f"({erased} history items); DynamoDB empty for them, API 404, SSE remove; control viewer intact"
    )


def test_a_viewer_who_returns_after_erasure_starts_a_new_profile(
    settings: Settings, stack: dict[str, Any]
) -> None:
    """The consumer still holds the erased viewer in memory when a new event arrives. Erasure
    covers past data only: the new event is new data, so it must start a fresh profile (events
    = 1, first_seen = the new event, no history from before), not resurrect the erased one."""
    viewer = stack["viewer"]
    load_viewers(settings, stack)
    _params, _cookie, flag, raw = VIEWERS["by_user_id"]
    assert flag is not None and raw is not None
    vid = viewer_id(settings, "by_user_id")
    before = httpx.get(f"{viewer}/api/profiles/{vid}", headers=AUTH).json()
    assert erase(settings, flag, raw)[0] == 0
    assert profile_item(settings, vid) is None

    comeback_ms = int(time.time() * 1000)
    send(stack["collector"], "by_user_id", ("play",), comeback_ms)
    seen: list[int] = []  # `events` of every profile the API served meanwhile

    def stored() -> dict[str, Any] | None:
        r = httpx.get(f"{viewer}/api/profiles/{vid}", headers=AUTH)
        if r.status_code != 200:
            return None
        seen.append(r.json()["events"])
        return dict(r.json()) if r.json()["last_event_name"] == "play" else None

    after = wait_for(stored, timeout=60, what="the returning viewer's profile")
    # the delete came after the consumer forgot the viewer: the old state was never written back
    assert set(seen) == {1}, seen
    history = [orjson.loads(orjson.dumps(h)) for h in history_items(settings, vid)]
    print(
        f"FIGURE erasure comeback: before erasure events={before['events']} plays={before['plays']} "
        f"first_seen={before['first_seen']}; after one new play event: events={after['events']} "
        f"plays={after['plays']} first_seen={after['first_seen']} history items={len(history)}"
    )
    assert after["events"] == 1, "the erased viewer's past events came back from the consumer's memory"
    assert after["plays"] == 1 and after["seeks"] == 0
    assert after["first_seen"] != before["first_seen"]
    assert len(history) <= 1


def test_an_event_folded_into_the_erased_state_before_the_tombstone_is_read_moves_to_a_new_profile(
    settings: Settings, stack: dict[str, Any]
) -> None:
    """The input topic and the changes topic are not ordered with each other: the consumer may
    fold the returning viewer's new event into the erased state, and write it back, before it
    reads the tombstone. Here it is made to (its erasure reader is held back until then). Reading
    the tombstone must undo it: the resurrected profile is deleted again, the partition read
    again, and the new event (collected after the erasure) ends up alone in a new profile while
    the other viewers' replayed events count once."""
    consumer = stack["consumer"]
    viewer = stack["viewer"]
    gate = threading.Event()
    poll = consumer._poll_erasures
    consumer._poll_erasures = lambda: poll() if gate.is_set() else True
    load_viewers(settings, stack)
    vid = viewer_id(settings, "by_user_id")
    control = viewer_id(settings, "control")
    control_before = httpx.get(f"{viewer}/api/profiles/{control}", headers=AUTH).json()
    control_history = len(history_items(settings, control))
    _params, _cookie, flag, raw = VIEWERS["by_user_id"]
    assert flag is not None and raw is not None
    assert erase(settings, flag, raw)[0] == 0
    assert profile_item(settings, vid) is None
    send(stack["collector"], "by_user_id", ("play",), int(time.time() * 1000))

    def resurrected() -> bool:
        item = profile_item(settings, vid)
        return item is not None and item["events"]["N"] == str(len(SCRIPT) + 1)

    wait_for(resurrected, timeout=60, what="the new event folded into the erased state and written")
    assert consumer.stats.replays == 0
    gate.set()

    def fresh() -> dict[str, Any] | None:
        item = profile_item(settings, vid)
        if item is None or item["events"]["N"] != "1":
            return None
        r = httpx.get(f"{viewer}/api/profiles/{vid}", headers=AUTH)
        return dict(r.json()) if r.status_code == 200 else None

    after = wait_for(fresh, timeout=60, what="the new event alone in a new profile")
    assert after["plays"] == 1 and after["seeks"] == 0
    assert consumer.stats.erased_dropped >= 1
    time.sleep(1.0)  # the consumer reads back the tombstone it republished: already done
    assert consumer.stats.replays == 1
    assert profile_item(settings, vid) is not None
    assert len(history_items(settings, vid)) <= 1
    # the partition was read again: the control viewer's events are duplicates, counted once
    control_after = httpx.get(f"{viewer}/api/profiles/{control}", headers=AUTH).json()
    assert control_after["events"] == control_before["events"] == len(SCRIPT)
    assert len(history_items(settings, control)) == control_history
    print(
        f"FIGURE erasure race: new event folded into the erased state first; after the tombstone: "
        f"{consumer.stats.replays} partition re-read(s), {consumer.stats.erased_dropped} pre-erasure "
        f"event(s) dropped, new profile events={after['events']}"
    )


def test_an_erasure_while_the_consumer_is_down_holds_after_its_restart(
    settings: Settings, make_settings: Callable[..., Settings]
) -> None:
    """The consumer is down (or lagging) when the viewer is erased: events collected before the
    erasure are still in Kafka, uncommitted. The tombstone is gone by the time it restarts (it
    reads the changes topic from its end), so the erasure marker in DynamoDB is what tells it:
    it must drop those events, and start a new profile with the first event collected after."""
    with serve_collector(settings) as collector:
        start = int(time.time() * 1000) - 20_000
        send(collector.url, "by_user_id", SCRIPT, start)
        send(collector.url, "control", SCRIPT, start)
        _params, _cookie, flag, raw = VIEWERS["by_user_id"]
        assert flag is not None and raw is not None
        vid = viewer_id(settings, "by_user_id")
        code, summary, _ = erase(settings, flag, raw)  # nothing stored yet: only the marker
        assert code == 1 and summary["profile_deleted"] is False and summary["tombstone"] is True
        assert_marker_only(settings, vid)
        time.sleep(0.05)
        send(collector.url, "by_user_id", ("play",), int(time.time() * 1000))
    control = viewer_id(settings, "control")
    with consumer_thread(settings) as consumer:
        wait_for(lambda: profile_item(settings, control) is not None, what="the control viewer's profile")
        item = wait_for(lambda: profile_item(settings, vid), what="the returning viewer's new profile")
        assert item["events"]["N"] == "1" and item["plays"]["N"] == "1"
        assert "erased_at_ms" in item  # the new profile keeps the erasure time (see the rebuild test)
        assert len(history_items(settings, vid)) <= 1
        assert consumer.stats.erased_dropped == len(SCRIPT)
    assert profile_item(settings, control) is not None
    assert int(profile_item(settings, control)["events"]["N"]) == len(SCRIPT)  # type: ignore[index]


def test_a_rebuild_does_not_bring_an_erased_viewer_back(settings: Settings, stack: dict[str, Any]) -> None:
    """`lvp profiles --rebuild` replays the whole input topic, erased viewers' events included:
    the erasure records (kept by the rebuild's clear) make it drop what was collected before."""
    load_viewers(settings, stack)
    _params, _cookie, flag, raw = VIEWERS["by_user_id"]
    assert flag is not None and raw is not None
    vid = viewer_id(settings, "by_user_id")
    assert erase(settings, flag, raw)[0] == 0
    send(stack["collector"], "by_user_id", ("play",), int(time.time() * 1000))
    wait_for(lambda: profile_item(settings, vid), what="the returning viewer's new profile")
    rebuilt = replace(settings, consumer_group=settings.consumer_group + "-rebuild")
    result: list[int] = []
    rebuild = ProfilesConsumer(rebuilt, rebuild=True, exit_at_end=True, consumer_overrides=FAST_GROUP)
    t = threading.Thread(target=lambda: result.append(rebuild.run()), daemon=True)
    t.start()
    t.join(120)
    assert result == [0]
    item = profile_item(settings, vid)
    assert item is not None and item["events"]["N"] == "1", item
    assert len(history_items(settings, vid)) <= 1
    assert rebuild.stats.erased_dropped == len(SCRIPT)
    for other in ("by_domain_userid", "by_network_userid", "control"):
        other_item = profile_item(settings, viewer_id(settings, other))
        assert other_item is not None and other_item["events"]["N"] == str(len(SCRIPT))


# --- profiles/erasure.py without Kafka or DynamoDB: what forgetting does to a consumer's books ---


class _Store:
    def __init__(self) -> None:
        self.deleted: list[tuple[str, int]] = []

    def delete_viewer(self, vid: str, erased_at_ms: int) -> tuple[bool, int]:
        self.deleted.append((vid, erased_at_ms))
        return True, 0


class _Kafka:
    def __init__(self) -> None:
        self.seeks: list[tuple[int, int]] = []

    def seek(self, tp: Any) -> None:
        self.seeks.append((tp.partition, tp.offset))


def test_forget_drops_every_trace_deletes_again_republishes_and_reads_the_partition_again() -> None:
    from profiles.dirty import DirtyLedger
    from profiles.engine import ViewerState
    from profiles.erasure import ERASED_KEEP_S, ERASURE_CLOCK_SKEW_S, Erasures
    from profiles.metrics import ProfilesMetrics
    from profiles.offsets import OffsetLedger
    from profiles.tracked import TrackedViewers

    settings = Settings(pseudonym_key="k" * 32)
    tracked = TrackedViewers(DirtyLedger(300.0, 75.0, 0.0))
    offsets = OffsetLedger()
    offsets.assign(0)
    offsets.assign(1)
    now = time.time()
    offsets.read({0: 0, 1: 0}, {0: 49, 1: 9}, wall=now - 60)
    offsets.read({0: 50, 1: 10}, {0: 99, 1: 19}, wall=now - 1)
    for vid, p in (("erased", 0), ("other", 0)):
        tracked.states[vid] = ViewerState.new(vid)
        tracked.partition[vid] = p
        tracked.mark_dirty(vid, p, 60, 0.0, urgent=True)
        tracked.changed.add(vid)
        tracked.pending_hist[(vid, "1#e")] = None
    tracked.loading["waiting"] = [(1, 12, None)]
    tracked.waiting = 1
    store, kafka = _Store(), _Kafka()
    produced: list[tuple[str, bytes, None, int]] = []
    metrics = ProfilesMetrics()
    erasure = Erasures(
        settings,
        topic="good",
        metrics=metrics,
        store=store,
        tracked=tracked,
        offsets=offsets,  # type: ignore[arg-type]
    )
    t = now - 10  # the erasure time: partition 0 was read since, partition 1 too
    replays = erasure.forget(
        {"erased": t, "waiting": t, "unknown": t},
        kafka,  # type: ignore[arg-type]
        lambda topic, key, value, ts: produced.append((topic, key, value, ts)),
    )
    metrics.close()
    assert "erased" not in tracked.states and "erased" not in tracked.dirty
    assert not tracked.loading and tracked.waiting == 0
    assert all(k[0] == "other" for k in tracked.pending_hist)
    assert "other" in tracked.states and tracked.dirty.earliest() == {0: 60}
    # held here: deleted again and its tombstone republished, stamped with the same erasure time
    ms = int(t * 1000)
    assert sorted(store.deleted) == [("erased", ms), ("waiting", ms)]
    assert sorted(produced) == [
        (settings.topic_changes, b"erased", None, ms),
        (settings.topic_changes, b"waiting", None, ms),
    ]
    # every erasure time is kept (also of a viewer not held here), for an hour
    assert erasure.erased == {"erased": t, "waiting": t, "unknown": t}
    assert t - ERASURE_CLOCK_SKEW_S > now - 60
    # both partitions are read again from the checkpoint before T - skew; commits hold there
    assert replays == 2 and sorted(kafka.seeks) == [(0, 0), (1, 0)]
    assert offsets.committable() == {0: 0, 1: 0}
    erasure.expire(now + ERASED_KEEP_S + 1)
    assert erasure.erased == {}
