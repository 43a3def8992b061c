"""Snowplow-style bad rows: self-describing JSON
``iglu:com.snowplowanalytics.snowplow.badrows/<type>/jsonschema/<version>`` with the processor,
the failure (timestamp and precise messages) and the payload.

Callers must pass payloads whose identifiers are already pseudonymized or redacted: a bad row is
as public as a good event.
"""

from __future__ import annotations

import time
from typing import Any, Final

import orjson

from lvp import __version__
from lvp.enriched import format_tstamp

VENDOR: Final = "com.snowplowanalytics.snowplow.badrows"

#: bad row type -> schema version
BADROW_VERSIONS: Final[dict[str, str]] = {
    "collector_payload_format_violation": "1-0-0",
    "tracker_protocol_violations": "1-0-0",
    "schema_violations": "2-0-0",
    "size_violation": "1-0-0",
    "adapter_failures": "1-0-0",
    "loader_parsing_error": "2-0-0",
    "generic_error": "1-0-0",
}


def badrow_schema(kind: str) -> str:
    return f"iglu:{VENDOR}/{kind}/jsonschema/{BADROW_VERSIONS[kind]}"


def bad_row(
    kind: str,
    messages: list[Any],
    payload: Any,
    *,
    processor: str = "lvp-collector",
    now_ms: int | None = None,
) -> dict[str, Any]:
    """A bad row of type ``kind``. ``messages`` are strings or structured failure objects
    (e.g. ``{"field": "e", "value": None, "expectation": "..."}``)."""
    if kind not in BADROW_VERSIONS:
        raise ValueError(f"unknown bad row type {kind!r}")
    ts = format_tstamp(now_ms if now_ms is not None else int(time.time() * 1000))
    return {
        "schema": badrow_schema(kind),
        "data": {
            "processor": {"artifact": processor, "version": __version__},
            "failure": {"timestamp": ts.replace(" ", "T") + "Z", "messages": messages},
            "payload": payload,
        },
    }


def encode(row: dict[str, Any]) -> bytes:
    return orjson.dumps(row)


def reason_of(row: dict[str, Any]) -> str:
    """The bad row type, for metrics labels."""
    return str(row.get("schema", "")).split("/")[1] if "/" in str(row.get("schema", "")) else "unknown"
