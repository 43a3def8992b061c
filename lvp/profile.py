"""The viewer profile both sides share: its fields, the derived ``active``, the dict shapes.

A profile is a plain dict whose keys are :data:`STORED_FIELDS`: the API fields of
docs/contracts.md without ``active``. `lvp profiles` builds it (:mod:`profiles.engine`),
publishes it on the changes topic (:mod:`lvp.changes`) and stores it in DynamoDB
(:mod:`lvp.profile_codec`); `lvp viewer` and `lvp profile` read it back. ``active`` is never
stored: readers derive it with :func:`is_active` against their own clock, because it changes
with time, not with events. Timestamps are ISO-8601 UTC strings (:func:`lvp.enriched.iso`).
Pure code: the caller passes ``now``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lvp.enriched import epoch_of

__all__ = ["PROFILE_FIELDS", "STORED_FIELDS", "api_profile", "is_active", "with_active"]

#: The API fields, in order (docs/contracts.md), including the derived ``active``.
PROFILE_FIELDS: tuple[str, ...] = (
    "viewer_id", "status", "active", "app_id", "media_label", "media_session_id", "position_s",
    "duration_s", "percent_progress", "ad",
    "plays", "pauses", "seeks", "ad_breaks", "ads_started", "ads_completed", "ads_skipped",
    "ads_clicked", "buffer_events", "errors",
    "play_time_s", "paused_time_s", "ad_time_s", "buffering_time_s", "startup_time_s",
    "first_seen", "last_seen", "last_event_id", "last_event_name", "events", "device_class",
    "last_error", "playback_rate", "volume", "muted", "fullscreen", "quality",
)  # fmt: skip

#: Every API field but the derived ``active``, in order: what the engine builds, the changes
#: topic carries and DynamoDB stores.
STORED_FIELDS: tuple[str, ...] = tuple(f for f in PROFILE_FIELDS if f != "active")


def is_active(profile: Mapping[str, Any], now: float, timeout_s: float) -> bool:
    """Status is not ``ended`` and ``last_seen`` (collector clock) is within ``timeout_s`` of ``now``.

    A profile without a readable ``last_seen`` is not active.
    """
    if profile.get("status") == "ended":
        return False
    last_seen = profile.get("last_seen")
    if isinstance(last_seen, str):
        seen = epoch_of(last_seen)
        if seen is None:
            return False
    elif isinstance(last_seen, (int, float)) and not isinstance(last_seen, bool):
        seen = float(last_seen)
    else:
        return False
    return now - seen <= timeout_s


def compare_versions(a: Mapping[str, Any], b: Mapping[str, Any]) -> int:
    """Which of two versions of one viewer's profile (or touch patch) is the later: 1 ``a``, -1
    ``b``, 0 the same or not known. More ``events`` is later; as many (or a side without the
    count), the later ``last_seen``; no readable ``last_seen`` on a side: not known."""
    ea, eb = a.get("events"), b.get("events")
    if type(ea) is int and type(eb) is int and ea != eb:
        return 1 if ea > eb else -1
    sa, sb = epoch_of(a.get("last_seen")), epoch_of(b.get("last_seen"))
    if sa is None or sb is None or sa == sb:
        return 0
    return 1 if sa > sb else -1


def with_active(profile: Mapping[str, Any], now: float, timeout_s: float) -> dict[str, Any]:
    """The profile with ``active`` filled in, keys in :data:`PROFILE_FIELDS` order, anything
    extra the caller stored kept after them (`lvp profile get` / `list`)."""
    active = is_active(profile, now, timeout_s)
    out = {k: (active if k == "active" else profile.get(k)) for k in PROFILE_FIELDS}
    for k, v in profile.items():  # keep anything extra the caller stored
        if k not in out:
            out[k] = v
    return out


def api_profile(
    raw: Mapping[str, Any], viewer_id: str | None = None, active: bool | None = None
) -> dict[str, Any]:
    """Only the API fields of ``raw`` (absent -> None), in contract order; ``active`` included
    when given (the viewer's API and live view). Anything else in ``raw`` (engine state, TTLs,
    index keys) is left out."""
    out: dict[str, Any] = {}
    for name in PROFILE_FIELDS:
        if name == "active":
            if active is not None:
                out["active"] = active
        else:
            out[name] = raw.get(name)
    if viewer_id is not None:
        out["viewer_id"] = viewer_id
    return out
