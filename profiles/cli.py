"""`lvp profiles` (the consumer) and `lvp profile get|history|list|delete` (DynamoDB queries)."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any

import orjson

from lvp.cli import setting_flag, settings_from_args
from lvp.config import Settings
from lvp.pseudonym import pseudonymize

#: `lvp profile delete`: time between the tombstone and the delete (consumers poll for tombstones
#: at every turn of their loop, a fraction of a second apart).
ERASE_GRACE_S = 2.0
_ID_FLAGS = (
    ("--user-id", "user_id"),
    ("--domain-userid", "domain_userid"),
    ("--network-userid", "network_userid"),
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "profiles",
        help="Run the profiles consumer: Kafka enriched events -> live profiles in DynamoDB.",
        description="Consume LVP_TOPIC_GOOD in consumer group LVP_CONSUMER_GROUP, keep every viewer's "
        "profile, write it to DynamoDB (offsets committed only after the write) and publish "
        "changes to LVP_TOPIC_CHANGES. SIGTERM/SIGINT: final flush and commit, then exit.",
    )
    setting_flag(p, "--group", "consumer_group", metavar="GROUP")
    setting_flag(p, "--metrics-port", "profiles_metrics_port", metavar="PORT")
    setting_flag(p, "--bootstrap-servers", "kafka_bootstrap_servers", metavar="HOST:PORT")
    setting_flag(p, "--endpoint-url", "aws_endpoint_url", metavar="URL")
    p.add_argument(
        "--pseudonymize-input",
        action="store_true",
        help="Input comes from a raw Snowplow pipeline: replace user_id / domain_userid / "
        "network_userid (accelerator: viewer_id) by their keyed pseudonyms (needs LVP_PSEUDONYM_KEY).",
    )
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="Clear the profile and history tables, reset the group to the earliest retained offsets "
        "and recompute every profile (progress on stderr), then keep consuming.",
    )
    p.add_argument(
        "--exit-at-end",
        action="store_true",
        help="Exit once every assigned partition is consumed, flushed and committed.",
    )
    p.set_defaults(func=_run)

    p = sub.add_parser("profile", help="Read or erase stored profiles (queries DynamoDB directly).")
    psub = p.add_subparsers(dest="action", metavar="ACTION")
    psub.required = True
    g = psub.add_parser(
        "get",
        help="Print one profile as a JSON object (exit 1 if unknown): the stored profile brought up "
        "to date with what LVP_TOPIC_CHANGES published recently (as fresh as the live page).",
    )
    _viewer_args(g)
    g.add_argument(
        "--stored-only",
        action="store_true",
        help="Only DynamoDB: no Kafka read; may lag the live page by up to LVP_PROFILE_WRITE_INTERVAL_S.",
    )
    setting_flag(g, "--bootstrap-servers", "kafka_bootstrap_servers", metavar="HOST:PORT")
    g.set_defaults(func=_get)
    h = psub.add_parser("history", help="Print a viewer's status changes, oldest first (JSON Lines).")
    _viewer_args(h)
    h.set_defaults(func=_history)
    lst = psub.add_parser("list", help="Print the active viewers' profiles (JSON Lines; no table scan).")
    lst.add_argument("--active", action="store_true", help="Active viewers (required: lists use the GSI).")
    setting_flag(lst, "--endpoint-url", "aws_endpoint_url", metavar="URL")
    lst.set_defaults(func=_list)
    d = psub.add_parser(
        "delete",
        help="Erase a viewer: a tombstone on LVP_TOPIC_CHANGES (running consumers forget the viewer), "
        "then its profile and history. Several of --user-id / --domain-userid / --network-userid "
        "erase every one of those viewers (one JSON line each).",
    )
    _viewer_args(d)
    d.add_argument(
        "--grace",
        type=float,
        default=ERASE_GRACE_S,
        metavar="SECONDS",
        help=f"Wait this long between the tombstone and the delete, so that running consumers have "
        f"forgotten the viewer and cannot write it back (default {ERASE_GRACE_S}).",
    )
    setting_flag(d, "--bootstrap-servers", "kafka_bootstrap_servers", metavar="HOST:PORT")
    d.set_defaults(func=_delete)


def _viewer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("viewer_id", nargs="?", help="Viewer id (the pseudonym).")
    for flag, _field in _ID_FLAGS:
        p.add_argument(
            flag, dest="raw_" + _field, metavar="RAW", help=f"Look up by raw {_field} (pseudonymized)."
        )
    setting_flag(p, "--endpoint-url", "aws_endpoint_url", metavar="URL")


class _UsageError(Exception):
    pass


def viewer_ids_from_args(args: argparse.Namespace, settings: Settings) -> list[str]:
    """The viewer ids: one given directly, or the keyed pseudonyms of the raw identifiers given
    (distinct, in flag order)."""
    given = [(f, getattr(args, "raw_" + f)) for _flag, f in _ID_FLAGS if getattr(args, "raw_" + f, None)]
    if args.viewer_id and given:
        raise _UsageError("give either a viewer id or --user-id / --domain-userid / --network-userid")
    if given:
        key = settings.require_pseudonym_key()
        return list(dict.fromkeys(pseudonymize(raw, key) for _f, raw in given))
    if not args.viewer_id:
        raise _UsageError("a viewer id (or --user-id / --domain-userid / --network-userid) is required")
    return [str(args.viewer_id)]


def viewer_id_from_args(args: argparse.Namespace, settings: Settings) -> str:
    """The viewer id: given directly, or the keyed pseudonym of exactly one raw identifier."""
    ids = viewer_ids_from_args(args, settings)
    if len(ids) > 1:
        raise _UsageError("give only one of --user-id / --domain-userid / --network-userid")
    return ids[0]


def _out(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj).decode() + "\n")


def _err(msg: str) -> None:
    print(f"lvp: {msg}", file=sys.stderr)


def _store(settings: Settings) -> Any:
    from profiles.store import ProfileStore

    return ProfileStore(settings)


def _query(args: argparse.Namespace, action: Any, several: bool = False) -> int:
    from profiles.store import StoreError

    settings = settings_from_args(args)
    try:
        if not hasattr(args, "viewer_id"):
            vid: Any = ""
        elif several:
            vid = viewer_ids_from_args(args, settings)
        else:
            vid = viewer_id_from_args(args, settings)
    except _UsageError as exc:
        _err(str(exc))
        return 2
    store = _store(settings)
    try:
        return int(action(store, settings, vid))
    except StoreError as exc:
        _err(f"DynamoDB: {exc}")
        return 1
    finally:
        store.close()


def _get(args: argparse.Namespace) -> int:
    from lvp.profile import with_active
    from profiles.fresh import LiveReadError, freshen

    def action(store: Any, settings: Settings, vid: str) -> int:
        profile = store.get_profile(vid)
        if not args.stored_only:
            try:
                profile = freshen(settings, vid, profile)
            except LiveReadError as exc:
                _err(
                    f"{exc}; showing the stored profile, which may lag the live view by up to "
                    f"{settings.profile_write_interval_s:g}s (--stored-only skips this read)"
                )
        if profile is None:
            _err(f"no profile for viewer {vid}")
            return 1
        _out(with_active(profile, time.time(), settings.active_timeout_s))
        return 0

    return _query(args, action)


def _history(args: argparse.Namespace) -> int:
    def action(store: Any, settings: Settings, vid: str) -> int:
        n = 0
        for entry in store.history(vid):
            _out(entry)
            n += 1
        if n == 0 and store.get_profile(vid) is None:
            _err(f"no profile for viewer {vid}")
            return 1
        return 0

    return _query(args, action)


def _list(args: argparse.Namespace) -> int:
    from lvp.profile import is_active, with_active

    if not args.active:
        _err("only `lvp profile list --active` is supported: listing every profile would scan the table")
        return 2

    def action(store: Any, settings: Settings, _vid: str) -> int:
        now = time.time()
        for profile in store.active_profiles(now, settings.active_timeout_s):
            if is_active(profile, now, settings.active_timeout_s):
                _out(with_active(profile, now, settings.active_timeout_s))
        return 0

    return _query(args, action)


def _delete(args: argparse.Namespace) -> int:
    """Erase viewers: see docs/contracts.md#erasure (profiles/erasure.py)."""
    from profiles.erasure import erase

    def action(store: Any, settings: Settings, vids: list[str]) -> int:
        code = 0
        results = []
        for result in erase(settings, store, vids, args.grace):
            results.append(result)
            _out(result)
            if not result["tombstone"]:
                _err(
                    f"could not publish the tombstone of {result['viewer_id']} to {settings.topic_changes}; "
                    "run the delete again"
                )
                code = 1
        if not any(r["profile_deleted"] or r["history_deleted"] for r in results):
            _err("no profile for viewer " + ", ".join(vids))
            code = 1
        return code

    return _query(args, action, several=True)


def _run(args: argparse.Namespace) -> int:
    from profiles.consumer import ProfilesConsumer
    from profiles.store import ProfileStore, StoreError

    settings = settings_from_args(args)
    if args.pseudonymize_input:
        settings.require_pseudonym_key()
    from profiles.metrics import ProfilesMetrics

    metrics = ProfilesMetrics()
    store = ProfileStore(settings, metrics=metrics)
    try:
        store.check_tables()
    except StoreError as exc:
        _err(f"{exc} (create them with `lvp tables create`)")
        store.close()
        return 2
    consumer = ProfilesConsumer(
        settings,
        pseudonymize_input=args.pseudonymize_input,
        rebuild=args.rebuild,
        exit_at_end=args.exit_at_end,
        store=store,
        metrics=metrics,
        progress=(lambda line: print(line, file=sys.stderr, flush=True)) if args.rebuild else None,
    )

    def _stop(signum: int, _frame: Any) -> None:
        consumer.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        return consumer.run()
    finally:
        store.close()
