"""The DynamoDB tables — the single definition used by `lvp tables create`, the LocalStack init
script (generated from / checked against :func:`table_definitions`) and Terraform (checked
against it by a test).

``viewer_profiles`` — one item per viewer (the current profile):
    hash key ``viewer_id`` (S). Attribute ``ttl`` (epoch s) expires it after the retention.
    GSI ``active-index``: hash ``active_shard`` (S, ``"0"`` .. ``"<LVP_ACTIVE_SHARDS-1>"``),
    range ``last_seen_ms`` (N). Sparse: only viewers that are not ``ended`` carry
    ``active_shard``, so "active viewers" is one query per shard with
    ``last_seen_ms >= now - LVP_ACTIVE_TIMEOUT_S`` — never a table scan.

``viewer_history`` — the status changes of each viewer, time-ordered:
    hash ``viewer_id`` (S), range ``seq`` (S) = ``<derived time ms, 15 digits>#<event_id>``, so a
    replay writes the same keys (idempotent) and a query returns the changes in order. TTL ``ttl``.

``viewer_state`` — what every `lvp viewer` process must agree on, one item per key ``pk`` (S):
    ``dp#public-stats``: the privacy budget of ``/api/public/stats`` (``lifetime_spent``,
    ``window``, ``window_spent``, spent only by conditional updates) and its last release;
    ``ticket#<jti>``: an SSE ticket already used (``ttl`` = its expiry), written with
    ``attribute_not_exists`` so a ticket opens one stream in the whole deployment.

Erasure marker — what `lvp profile delete` leaves of an erased viewer in ``viewer_profiles``:
    ``viewer_id``, ``erased_at_ms`` (the erasure time) and ``ttl``; no ``state``, no profile field.
    It is not a profile (API 404), but a consumer that loads it drops the viewer's events
    collected up to ``erased_at_ms`` (redelivered, lagging, or replayed by ``--rebuild``, which
    keeps markers). A profile written after the erasure carries ``erased_at_ms`` too.
"""

from __future__ import annotations

from typing import Any

ACTIVE_INDEX = "active-index"
TTL_ATTRIBUTE = "ttl"
ERASED_AT_ATTRIBUTE = "erased_at_ms"
#: The attributes of a ``viewer_history`` item besides ``ttl``, in the order readers show them.
HISTORY_ATTRIBUTES = ("viewer_id", "seq", "at", "status", "prev_status", "event_name", "event_id")


def is_erasure_marker(item: Any) -> bool:
    """A ``viewer_profiles`` item that marks an erased viewer (no profile in it)."""
    return ERASED_AT_ATTRIBUTE in item and "state" not in item


def profiles_table(name: str = "viewer_profiles") -> dict[str, Any]:
    return {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": "viewer_id", "AttributeType": "S"},
            {"AttributeName": "active_shard", "AttributeType": "S"},
            {"AttributeName": "last_seen_ms", "AttributeType": "N"},
        ],
        "KeySchema": [{"AttributeName": "viewer_id", "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": ACTIVE_INDEX,
                "KeySchema": [
                    {"AttributeName": "active_shard", "KeyType": "HASH"},
                    {"AttributeName": "last_seen_ms", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    }


def history_table(name: str = "viewer_history") -> dict[str, Any]:
    return {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": "viewer_id", "AttributeType": "S"},
            {"AttributeName": "seq", "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": "viewer_id", "KeyType": "HASH"},
            {"AttributeName": "seq", "KeyType": "RANGE"},
        ],
    }


def viewer_state_table(name: str = "viewer_state") -> dict[str, Any]:
    return {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
    }


def table_definitions(
    profiles: str = "viewer_profiles", history: str = "viewer_history", viewer_state: str = "viewer_state"
) -> list[dict[str, Any]]:
    """CreateTable requests for every table (TTL is enabled separately on ``ttl``)."""
    return [profiles_table(profiles), history_table(history), viewer_state_table(viewer_state)]


def history_seq(derived_ms: int, event_id: str) -> str:
    return f"{derived_ms:015d}#{event_id}"
