"""`lvp badrows tail` and `lvp events tail`: read the bad-rows / good-events topics from the
command line, one line per message.

- bad rows: ``<failure time> <type> <reasons>`` (each failure message summarized: the schema, the
  error and what it says), optionally only one ``--type``;
- good events: the Snowplow Analytics SDK's JSON of each enriched line
  (``snowplow_analytics_sdk.event_transformer.transform``), one JSON object a line.

Both read every partition from the end (new messages only) or ``--from-beginning``, without a
consumer group's commits (nothing is ever committed), until Ctrl-C, ``--max`` messages or
``--exit-after`` seconds without a new one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from lvp.cli import setting_flag, settings_from_args
from lvp.config import Settings
from lvp.errors import Unavailable


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("badrows", help="Bad rows on LVP_TOPIC_BAD.")
    bsub = p.add_subparsers(dest="action", metavar="ACTION")
    bsub.required = True
    t = bsub.add_parser("tail", help="Print bad rows, one a line: time, type and reasons.")
    setting_flag(t, "--topic", "topic_bad")
    t.add_argument(
        "--type", dest="kind", default=None, help="Only bad rows of this type (schema_violations...)."
    )
    _common(t)
    t.set_defaults(func=_badrows_tail)

    p = sub.add_parser("events", help="Good enriched events on LVP_TOPIC_GOOD.")
    esub = p.add_subparsers(dest="action", metavar="ACTION")
    esub.required = True
    t = esub.add_parser("tail", help="Print good events as the Snowplow Analytics SDK's JSON, one a line.")
    setting_flag(t, "--topic", "topic_good")
    _common(t)
    t.set_defaults(func=_events_tail)


def _common(p: argparse.ArgumentParser) -> None:
    setting_flag(p, "--bootstrap-servers", "kafka_bootstrap_servers")
    p.add_argument(
        "--from-beginning", action="store_true", help="Start at the oldest message (default: new ones)."
    )
    p.add_argument("--max", type=int, default=None, help="Stop after this many lines.")
    p.add_argument(
        "--exit-after", type=float, default=None, help="Stop after this many seconds without a new message."
    )


def messages(
    settings: Settings, topic: str, from_beginning: bool, exit_after: float | None
) -> Iterator[bytes]:
    """Values of ``topic`` (every partition), never committing an offset."""
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition

    from lvp.kafka import consumer_config

    consumer = Consumer(consumer_config(settings, group_id=f"lvp-tail-{uuid.uuid4().hex[:12]}"))
    try:
        try:
            meta = consumer.list_topics(topic, timeout=15)
        except KafkaException as exc:
            raise Unavailable(
                f"Kafka at {settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS) did not answer: {exc}"
            ) from None
        info = meta.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            raise Unavailable(f"topic {topic} does not exist on {settings.kafka_bootstrap_servers}")
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign([TopicPartition(topic, p, start) for p in sorted(info.partitions)])
        last = time.monotonic()
        while exit_after is None or time.monotonic() - last < exit_after:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                continue  # partition EOF and transient errors: librdkafka retries
            last = time.monotonic()
            value = msg.value()
            if value is not None:
                yield value
    finally:
        consumer.close()


def _summary(message: Any) -> str:
    """One failure message of a bad row, in a few words."""
    if not isinstance(message, dict):
        return str(message)
    if "field" in message or "expectation" in message:
        return f"{message.get('field')}: {message.get('expectation') or message.get('message')}"
    error = message.get("error")
    key = message.get("schemaKey")
    parts = [str(key)] if key else []
    if isinstance(error, dict):
        parts.append(str(error.get("error", "")))
        if error.get("message"):
            parts.append(str(error["message"]))
        for report in error.get("dataReports") or []:
            if isinstance(report, dict):
                parts.append(f"{report.get('path')}: {report.get('message')}")
        for lookup in error.get("lookupHistory") or []:
            if isinstance(lookup, dict):
                errs = ",".join(str(e.get("error", e)) if isinstance(e, dict) else str(e)
                                for e in lookup.get("errors") or [])  # fmt: skip
                parts.append(f"{lookup.get('repository')}: {errs}")
    elif error is not None:
        parts.append(str(error))
    else:
        parts.append(json.dumps(message, sort_keys=True)[:300])
    return ": ".join(p for p in parts if p)


def format_bad_row(row: Any) -> tuple[str, str]:
    """(type, line) of one bad row."""
    if not isinstance(row, dict):
        return "unknown", f"- unknown {json.dumps(row)[:300]}"
    schema = str(row.get("schema", ""))
    kind = schema.split("/")[1] if schema.count("/") >= 3 else "unknown"
    data: dict[str, Any] = row["data"] if isinstance(row.get("data"), dict) else {}
    failure: dict[str, Any] = data["failure"] if isinstance(data.get("failure"), dict) else {}
    when = failure.get("timestamp", "-")
    messages = failure.get("messages")
    if not isinstance(messages, list):
        messages = [messages] if messages is not None else []
    reasons = " | ".join(_summary(m) for m in messages) or "(no messages)"
    return kind, f"{when} {kind} {reasons}".replace("\n", " ")


def tail_bad_rows(values: Iterator[bytes], kind: str | None, limit: int | None, out: TextIO) -> int:
    n = 0
    for value in values:
        try:
            row = json.loads(value)
        except ValueError:
            row_kind, line = "unknown", f"- unknown not-json {value[:200]!r}"
        else:
            row_kind, line = format_bad_row(row)
        if kind is not None and row_kind != kind:
            continue
        print(line, file=out, flush=True)
        n += 1
        if limit is not None and n >= limit:
            break
    return n


def tail_events(values: Iterator[bytes], limit: int | None, out: TextIO, err: TextIO) -> int:
    from snowplow_analytics_sdk.event_transformer import transform

    convert: Callable[[str], dict[str, Any]] = transform
    n = 0
    for value in values:
        try:
            event = convert(value.decode("utf-8"))
        except Exception as exc:  # the SDK raises its own exceptions for malformed lines
            print(f"lvp events tail: a line the Analytics SDK cannot read: {exc}", file=err, flush=True)
            continue
        print(json.dumps(event, ensure_ascii=False, sort_keys=True), file=out, flush=True)
        n += 1
        if limit is not None and n >= limit:
            break
    return n


def _badrows_tail(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    values = messages(settings, settings.topic_bad, args.from_beginning, args.exit_after)
    tail_bad_rows(values, args.kind, args.max, sys.stdout)
    return 0


def _events_tail(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    values = messages(settings, settings.topic_good, args.from_beginning, args.exit_after)
    tail_events(values, args.max, sys.stdout, sys.stderr)
    return 0
