"""DynamoDB items ⇄ profiles and history: the one definition of the stored format.

Layout (docs/contracts.md, "DynamoDB items"; tables in :mod:`lvp.tables`): ``viewer_profiles``
holds one item per viewer: every stored field of the profile (:data:`lvp.profile.STORED_FIELDS`)
as a top-level attribute (null values not stored), plus the :data:`INTERNAL_ATTRIBUTES`:
``state`` (the engine's JSON state, for restarts and rebalances), ``ttl`` (epoch s:
``last_seen`` + retention), ``last_seen_ms``, ``active_shard`` — only while the status is not
``ended``: the hash key of the sparse ``active-index`` GSI (:func:`shard_of`) — and
``erased_at_ms`` (only for a viewer erased before). An erasure marker is ``viewer_id``,
``erased_at_ms`` and ``ttl`` only (:func:`erasure_marker`). ``viewer_history`` holds the status
changes, keyed ``viewer_id`` + ``seq`` (time-ordered).

The writer (:class:`profiles.store.ProfileStore`, for `lvp profiles`) encodes with
:func:`profile_item`, :func:`history_item` and :func:`erasure_marker`; both readers — that store
(`lvp profile get` / `list` / `history`) and the viewer's API
(:class:`viewer.profiles_api.ProfileReader`) — decode with :func:`item_to_profile` and
:func:`item_to_history`. Items are in DynamoDB's low-level JSON form (``{"S": "..."}``), as
both boto3 clients and our own HTTP client give and take them. Pure code: no I/O.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from decimal import Decimal
from math import isfinite
from typing import Any, Final, Protocol

from lvp.enriched import epoch_of
from lvp.profile import STORED_FIELDS
from lvp.tables import ERASED_AT_ATTRIBUTE, HISTORY_ATTRIBUTES

__all__ = [
    "INTERNAL_ATTRIBUTES",
    "HistoryRecord",
    "erasure_marker",
    "from_attr",
    "history_item",
    "item_to_history",
    "item_to_profile",
    "profile_item",
    "shard_of",
    "to_attr",
]

#: Attributes of a profile item that are storage details, not API fields.
INTERNAL_ATTRIBUTES: Final = frozenset(("state", "ttl", "last_seen_ms", "active_shard", ERASED_AT_ATTRIBUTE))


class HistoryRecord(Protocol):
    """One status change to store (the engine's ``HistoryEntry``)."""

    @property
    def viewer_id(self) -> str: ...
    @property
    def seq(self) -> str: ...
    @property
    def at(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def prev_status(self) -> str: ...
    @property
    def event_name(self) -> str: ...
    @property
    def event_id(self) -> str: ...


# --- attribute values -------------------------------------------------------------------------


def to_attr(v: Any) -> dict[str, Any] | None:
    """A Python/JSON value as a DynamoDB attribute value (``None`` -> not stored)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return {"BOOL": v}
    if isinstance(v, str):
        return {"S": v}
    if isinstance(v, int):
        return {"N": str(v)}
    if isinstance(v, float):
        if not isfinite(v):
            return None
        s = repr(v)
        return {"N": format(Decimal(s), "f") if "e" in s else s}
    if isinstance(v, Mapping):
        return {"M": {str(k): a for k, x in v.items() if (a := to_attr(x)) is not None}}
    if isinstance(v, (list, tuple)):
        return {"L": [to_attr(x) or {"NULL": True} for x in v]}
    raise TypeError(f"cannot store {type(v).__name__} in DynamoDB")


def _number(n: str) -> int | float:
    return float(n) if any(c in n for c in ".eE") else int(n)


def from_attr(a: Mapping[str, Any]) -> Any:
    """A DynamoDB attribute value as a Python/JSON value (numbers: int when integral text;
    string and number sets: lists; binary, which has no JSON form and which the writer never
    stores: None)."""
    if "S" in a:
        return a["S"]
    if "N" in a:
        return _number(a["N"])
    if "BOOL" in a:
        return bool(a["BOOL"])
    if "NULL" in a:
        return None
    if "M" in a:
        return {k: from_attr(x) for k, x in a["M"].items()}
    if "L" in a:
        return [from_attr(x) for x in a["L"]]
    if "SS" in a:
        return list(a["SS"])
    if "NS" in a:
        return [_number(n) for n in a["NS"]]
    if "B" in a or "BS" in a:
        return None
    raise ValueError(f"unsupported attribute value {list(a)}")


def shard_of(viewer_id: str, shards: int) -> str:
    """Stable shard of the active-viewer index (same on every machine and Python run)."""
    return str(zlib.crc32(viewer_id.encode("utf-8")) % max(1, shards))


# --- encoding (the writer) --------------------------------------------------------------------


def profile_item(
    viewer_id: str,
    profile: Mapping[str, Any],
    state: str,
    *,
    erased_at_ms: int | None = None,
    retention_s: int,
    shards: int,
    now: float,
) -> dict[str, Any]:
    """The ``viewer_profiles`` item for one profile (the API dict; ``active`` and any internal
    attribute in it are left out) and the engine's ``state``. ``now`` stands in for an
    unreadable ``last_seen``."""
    item: dict[str, Any] = {}
    for k, v in profile.items():
        if k == "active" or k in INTERNAL_ATTRIBUTES:
            continue
        a = to_attr(v)
        if a is not None:
            item[k] = a
    item["viewer_id"] = {"S": viewer_id}
    item["state"] = {"S": state}
    last_seen = epoch_of(profile.get("last_seen"))
    if last_seen is None:
        last_seen = now
    item["last_seen_ms"] = {"N": str(round(last_seen * 1000))}
    item["ttl"] = {"N": str(int(last_seen) + retention_s)}
    if profile.get("status") != "ended":
        item["active_shard"] = {"S": shard_of(viewer_id, shards)}
    if erased_at_ms is not None:
        item[ERASED_AT_ATTRIBUTE] = {"N": str(erased_at_ms)}
    return item


def erasure_marker(viewer_id: str, erased_at_ms: int, *, retention_s: int) -> dict[str, Any]:
    """The ``viewer_profiles`` item left of an erased viewer (layout: :mod:`lvp.tables`)."""
    return {
        "viewer_id": {"S": viewer_id},
        ERASED_AT_ATTRIBUTE: {"N": str(erased_at_ms)},
        "ttl": {"N": str(erased_at_ms // 1000 + retention_s)},
    }


def history_item(h: HistoryRecord, *, retention_s: int, now: float) -> dict[str, Any]:
    """The ``viewer_history`` item for one status change. ``now`` stands in for an unreadable
    ``at``."""
    at = epoch_of(h.at)
    return {
        "viewer_id": {"S": h.viewer_id},
        "seq": {"S": h.seq},
        "at": {"S": h.at},
        "status": {"S": h.status},
        "prev_status": {"S": h.prev_status},
        "event_name": {"S": h.event_name},
        "event_id": {"S": h.event_id},
        "ttl": {"N": str(int(now if at is None else at) + retention_s)},
    }


# --- decoding (both readers) ------------------------------------------------------------------


def item_to_profile(item: Mapping[str, Any]) -> dict[str, Any]:
    """The API dict (without ``active``) of a ``viewer_profiles`` item: every stored field in
    order, absent ones null, then any other non-internal attribute the item has."""
    out: dict[str, Any] = dict.fromkeys(STORED_FIELDS)
    for k, a in item.items():
        if k not in INTERNAL_ATTRIBUTES:
            out[k] = from_attr(a)
    return out


def item_to_history(item: Mapping[str, Any]) -> dict[str, Any]:
    """A ``viewer_history`` item as a dict (docs/contracts.md order, ``ttl`` left out)."""
    out = {k: from_attr(item[k]) for k in HISTORY_ATTRIBUTES if k in item}
    out.update((k, from_attr(a)) for k, a in item.items() if k not in out and k != "ttl")
    return out
