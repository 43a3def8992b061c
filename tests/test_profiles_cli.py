"""`lvp profile get|history|list|delete` and `lvp profiles --rebuild`, against real services."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from enriched_factory import MediaSessionBuilder, full_session, interleave
from support.profiles import committed_total, dump_tables, produce, read_topic, run_consumer, settings_env

from lvp.cli import main
from lvp.config import SETTINGS, Settings
from lvp.dynamo import create_tables, dynamodb_client
from lvp.kafka import create_topics
from lvp.profile import PROFILE_FIELDS
from lvp.pseudonym import pseudonymize
from profiles.engine import ViewerState
from profiles.store import ProfileStore, ProfileWrite

ROOT = Path(__file__).resolve().parent.parent
KEY = "test-pseudonym-key-not-secret-0123"
ALICE = pseudonymize("alice@example.com", KEY.encode())


@pytest.fixture
def loaded(
    make_settings: Callable[..., Settings], dynamodb_local: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Settings, int]:
    """Settings (also in the environment, as the CLI reads them) and profiles consumed from Kafka."""
    s = make_settings(aws_endpoint_url=dynamodb_local, flush_interval_s=0.1, profiles_metrics_port=0)
    create_topics(s)
    create_tables(s)
    for f in SETTINGS:
        monkeypatch.setenv(f.metadata["env"], settings_env(s)[f.metadata["env"]])
    now = int(time.time() * 1000)
    builders = [
        MediaSessionBuilder("cli-active", now - 20_000).page_view().ready().play().wait(8).ping(),
        MediaSessionBuilder(ALICE, now - 15_000, id_column="user_id").ready().play().wait(5).pause(),
        full_session("cli-ended", now - 200_000),
        MediaSessionBuilder("cli-stale", now - 7_200_000).ready().play().wait(30).pause(),
    ]
    pairs = interleave(builders)
    produce(s, pairs)
    run_consumer(s)
    return s, len(pairs)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_get_history_list_delete(loaded: tuple[Settings, int], capsys: pytest.CaptureFixture[str]) -> None:
    settings, _n = loaded
    stored = dump_tables(settings)

    code, out, err = cli(capsys, "profile", "get", "cli-active")
    assert code == 0 and err == ""
    profile = orjson.loads(out)
    assert out.count("\n") == 1 and list(profile)[: len(PROFILE_FIELDS)] == list(PROFILE_FIELDS)
    assert profile["active"] is True and profile["status"] == "watching"
    assert {k: v for k, v in profile.items() if k != "active"} == stored["cli-active"]["profile"]
    assert orjson.loads(cli(capsys, "profile", "get", "cli-stale")[1])["active"] is False
    assert orjson.loads(cli(capsys, "profile", "get", "cli-ended")[1])["active"] is False

    code, out, err = cli(capsys, "profile", "get", "nobody-here")
    assert (code, out) == (1, "") and "no profile" in err

    by_raw = cli(capsys, "profile", "get", "--user-id", "alice@example.com")
    assert by_raw[0] == 0 and orjson.loads(by_raw[1])["viewer_id"] == ALICE
    assert cli(capsys, "profile", "get", "cli-active", "--user-id", "alice@example.com")[0] == 2
    assert cli(capsys, "profile", "get")[0] == 2

    code, out, _ = cli(capsys, "profile", "history", "cli-ended")
    assert code == 0
    rows = [orjson.loads(line) for line in out.splitlines()]
    assert rows == stored["cli-ended"]["history"] and rows[-1]["status"] == "ended"
    order = ["viewer_id", "seq", "at", "status", "prev_status", "event_name", "event_id"]
    assert all(list(r) == order for r in rows)  # the contract's order, whatever DynamoDB returned
    assert cli(capsys, "profile", "history", "nobody-here")[0] == 1

    code, out, _ = cli(capsys, "profile", "list", "--active")
    listed = [orjson.loads(line) for line in out.splitlines()]
    assert code == 0 and sorted(p["viewer_id"] for p in listed) == sorted(["cli-active", ALICE])
    assert all(p["active"] is True for p in listed)
    assert cli(capsys, "profile", "list")[0] == 2  # no table scans

    code, out, err = cli(capsys, "profile", "delete", "--user-id", "alice@example.com")
    assert code == 0, err
    summary = orjson.loads(out)
    assert summary == {"viewer_id": ALICE, "profile_deleted": True, "history_deleted": 2, "tombstone": True}
    assert cli(capsys, "profile", "get", ALICE)[0] == 1
    assert ALICE not in dump_tables(settings)
    marker = dynamodb_client(settings).get_item(
        TableName=settings.table_profiles, Key={"viewer_id": {"S": ALICE}}
    )
    assert set(marker["Item"]) == {"viewer_id", "erased_at_ms", "ttl"}  # all that is left: the erasure record
    last = {}
    for k, v in read_topic(settings, settings.topic_changes):
        last[k.decode()] = v
    assert last[ALICE] is None and last["cli-active"] is not None  # tombstone for the erased viewer
    assert cli(capsys, "profile", "delete", ALICE)[0] == 1  # nothing left to erase


def test_rebuild_recomputes_everything(loaded: tuple[Settings, int], output_dir: Path) -> None:
    settings, n = loaded
    before = dump_tables(settings)
    # a profile that no event supports (e.g. written by an older state machine) must go
    store = ProfileStore(settings)
    bogus = ViewerState.new("bogus")
    store.write(
        [ProfileWrite("bogus", {**before["cli-active"]["profile"], "viewer_id": "bogus"}, bogus.dump())]
    )
    store.close()
    assert "bogus" in dump_tables(settings)

    proc = subprocess.run(
        [sys.executable, "-m", "lvp.cli", "--log-level", "WARNING", "profiles", "--rebuild", "--exit-at-end"],
        cwd=ROOT,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    (output_dir / "profiles-rebuild.log").write_text(proc.stderr)
    assert proc.returncode == 0, proc.stderr
    assert "rebuild: cleared" in proc.stderr and "caught up" in proc.stderr
    assert f"{n} events applied" in proc.stderr
    assert dump_tables(settings) == before
    assert committed_total(settings) == n


def test_delete_with_several_raw_ids_erases_every_one(
    loaded: tuple[Settings, int], capsys: pytest.CaptureFixture[str]
) -> None:
    settings, _n = loaded
    bob = pseudonymize("bob-duid", KEY.encode())
    carol = pseudonymize("carol-nuid", KEY.encode())
    now = int(time.time() * 1000)
    builders = [
        MediaSessionBuilder(bob, now - 9_000, id_column="domain_userid").ready().play(),
        MediaSessionBuilder(carol, now - 8_000, id_column="network_userid").ready().play(),
    ]
    produce(settings, interleave(builders))
    run_consumer(settings)
    assert {bob, carol} <= set(dump_tables(settings))
    code, out, err = cli(
        capsys, "profile", "delete", "--user-id", "alice@example.com", "--domain-userid", "bob-duid",
        "--network-userid", "carol-nuid", "--grace", "0.2",
    )  # fmt: skip
    assert code == 0, err
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert [x["viewer_id"] for x in lines] == [ALICE, bob, carol]
    assert all(x["profile_deleted"] and x["tombstone"] for x in lines)
    left = dump_tables(settings)
    assert not {ALICE, bob, carol} & set(left) and "cli-active" in left
    for vid in (ALICE, bob, carol):
        assert cli(capsys, "profile", "get", vid)[0] == 1


def live_cli_settings(
    make_settings: Callable[..., Settings],
    dynamodb_local: str,
    monkeypatch: pytest.MonkeyPatch,
    **overrides: object,
) -> Settings:
    """Settings of a quickly publishing consumer, with its topics and tables, and the CLI's
    environment set to them."""
    s = make_settings(
        aws_endpoint_url=dynamodb_local,
        flush_interval_s=0.1,
        publish_interval_s=0.05,
        touch_interval_s=0.1,
        profiles_metrics_port=0,
        **overrides,
    )
    create_topics(s)
    create_tables(s)
    for f in SETTINGS:
        monkeypatch.setenv(f.metadata["env"], settings_env(s)[f.metadata["env"]])
    return s


def test_get_is_as_fresh_as_the_live_view_while_dynamodb_lags(
    make_settings: Callable[..., Settings],
    dynamodb_local: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Pings are written to DynamoDB only at the cadence (here an hour); `lvp profile get` reads
    the changes topic's touches too, so it shows the newest position, and --stored-only does not."""
    from support.profiles import consumer_thread, wait_for

    s = live_cli_settings(make_settings, dynamodb_local, monkeypatch, profile_write_interval_s=3600.0)
    b = MediaSessionBuilder("fresh-1", int(time.time() * 1000) - 40_000).ready().play()
    produce(s, b.lines())
    with consumer_thread(s) as consumer:
        wait_for(lambda: cli(capsys, "profile", "get", "--stored-only", "fresh-1")[0] == 0, what="stored")
        n = len(b.lines())
        b.wait(10).ping().wait(10).ping()
        produce(s, b.lines()[n:])
        wait_for(lambda: consumer.stats.touches >= 1, what="touches published")
        code, out, err = cli(capsys, "profile", "get", "fresh-1")
        assert code == 0, err
        fresh = orjson.loads(out)
        stored = orjson.loads(cli(capsys, "profile", "get", "--stored-only", "fresh-1")[1])
    assert stored["events"] == 2 and stored["position_s"] == 0
    assert fresh["events"] == 4 and fresh["position_s"] == pytest.approx(20, abs=0.5)
    assert fresh["status"] == "watching" and fresh["last_seen"] > stored["last_seen"]


def test_get_shows_status_changes_dynamodb_has_not_got_yet(
    make_settings: Callable[..., Settings],
    dynamodb_local: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With a long LVP_STATUS_WRITE_DELAY_S a new viewer and its pause are not in DynamoDB yet;
    `lvp profile get` answers from the changes topic all the same, --stored-only finds nothing."""
    from support.profiles import consumer_thread, wait_for

    s = live_cli_settings(make_settings, dynamodb_local, monkeypatch, status_write_delay_s=600.0)
    b = MediaSessionBuilder("late-1", int(time.time() * 1000) - 40_000).ready().play()
    produce(s, b.lines())
    with consumer_thread(s) as consumer:
        wait_for(lambda: consumer.stats.published >= 1, what="the new viewer published")
        watching = orjson.loads(cli(capsys, "profile", "get", "late-1")[1])
        n = len(b.lines())
        b.wait(5).pause()
        produce(s, b.lines()[n:])
        wait_for(lambda: consumer.stats.published >= 2, what="the pause published")
        code, out, err = cli(capsys, "profile", "get", "late-1")
        assert code == 0, err
        paused = orjson.loads(out)
        assert cli(capsys, "profile", "get", "--stored-only", "late-1")[0] == 1  # not written yet
        assert consumer.stats.written["change"] == 0
    assert watching["status"] == "watching" and watching["events"] == 2
    assert paused["status"] == "paused" and paused["events"] == 3


def test_the_changes_topic_is_read_back_past_the_status_write_delay(
    make_settings: Callable[..., Settings],
) -> None:
    from profiles.fresh import look_back_s

    assert look_back_s(make_settings(active_timeout_s=75.0, status_write_delay_s=30.0)) == 105.0
    assert look_back_s(make_settings(active_timeout_s=75.0, status_write_delay_s=200.0)) == 230.0
