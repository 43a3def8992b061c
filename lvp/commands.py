"""Infrastructure subcommands: `lvp broker`, `lvp topics create`, `lvp tables create`,
`lvp settings`."""

from __future__ import annotations

import argparse
import json

from lvp.cli import setting_flag, settings_from_args
from lvp.config import settings_table


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("broker", help="Run the embedded Kafka-protocol broker (Tansu) until Ctrl-C.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9092)
    p.add_argument("--storage", default=None, help="Tansu storage engine (default memory://tansu/).")
    p.set_defaults(func=_broker)

    p = sub.add_parser("topics", help="Kafka topics of the project.")
    tsub = p.add_subparsers(dest="action", metavar="ACTION")
    tsub.required = True
    c = tsub.add_parser("create", help="Create the good, bad and changes topics (idempotent).")
    setting_flag(c, "--bootstrap-servers", "kafka_bootstrap_servers")
    setting_flag(c, "--partitions", "topic_partitions")
    c.set_defaults(func=_topics_create)

    p = sub.add_parser("tables", help="DynamoDB tables of the project.")
    tsub = p.add_subparsers(dest="action", metavar="ACTION")
    tsub.required = True
    c = tsub.add_parser("create", help="Create the profiles and history tables with TTL (idempotent).")
    setting_flag(c, "--endpoint-url", "aws_endpoint_url")
    c.set_defaults(func=_tables_create)
    d = tsub.add_parser("describe", help="Print the table definitions the code uses (JSON).")
    d.set_defaults(func=_tables_describe)

    p = sub.add_parser("settings", help="Print the settings table (markdown).")
    p.set_defaults(func=lambda args: print(settings_table()))


def _broker(args: argparse.Namespace) -> int:
    from lvp.local.broker import run_foreground

    return run_foreground(args.host, args.port, args.storage)


def _topics_create(args: argparse.Namespace) -> int:
    from lvp.kafka import create_topics

    for topic, outcome in create_topics(settings_from_args(args)).items():
        print(f"{topic}: {outcome}")
    return 0


def _tables_create(args: argparse.Namespace) -> int:
    from lvp.dynamo import create_tables

    for table, outcome in create_tables(settings_from_args(args)).items():
        print(f"{table}: {outcome}")
    return 0


def _tables_describe(args: argparse.Namespace) -> int:
    from lvp.tables import table_definitions

    s = settings_from_args(args)
    print(json.dumps(table_definitions(s.table_profiles, s.table_history, s.table_viewer_state), indent=2))
    return 0
