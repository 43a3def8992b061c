"""The viewer profile as the API shows it: field names, ``active``, device class, timestamps.

The profile is a plain dict whose keys are :data:`PROFILE_FIELDS` (docs/contracts.md). The
engine (:mod:`profiles.engine`) builds it without ``active``; readers derive ``active`` with
:func:`is_active` against their own clock, because it changes with time, not with events.
Pure code: the caller passes ``now``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from lvp.enriched import EnrichedFormatError, parse_tstamp
from profiles.state import STATUSES

__all__ = [
    "DEVICE_CLASSES",
    "PROFILE_FIELDS",
    "STATUSES",
    "device_class",
    "is_active",
    "iso",
    "parse_iso",
    "with_active",
]

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

DEVICE_CLASSES: tuple[str, ...] = ("desktop", "mobile", "tablet", "tv", "bot", "unknown")


@lru_cache(maxsize=4096)
def _iso_second(secs: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))


def iso(ts: float) -> str:
    """Epoch seconds -> ``2024-11-16T13:33:22.625Z`` (UTC, milliseconds)."""
    secs, frac = divmod(round(ts * 1000), 1000)
    return f"{_iso_second(secs)}.{frac:03d}Z"


def parse_iso(value: str) -> float:
    """``2024-11-16T13:33:22.625Z`` -> epoch seconds; ValueError when it is not a timestamp."""
    try:
        return parse_tstamp(value)
    except EnrichedFormatError as exc:
        raise ValueError(str(exc)) from None


def is_active(profile: Mapping[str, Any], now: float, timeout_s: float) -> bool:
    """Status is not ``ended`` and ``last_seen`` (collector clock) is within ``timeout_s`` of ``now``.

    A profile without a readable ``last_seen`` is not active.
    """
    if profile.get("status") == "ended":
        return False
    last_seen = profile.get("last_seen")
    if isinstance(last_seen, str):
        try:
            seen = parse_iso(last_seen)
        except ValueError:
            return False
    elif isinstance(last_seen, (int, float)) and not isinstance(last_seen, bool):
        seen = float(last_seen)
    else:
        return False
    return now - seen <= timeout_s


def with_active(profile: Mapping[str, Any], now: float, timeout_s: float) -> dict[str, Any]:
    """The profile with ``active`` filled in, keys in :data:`PROFILE_FIELDS` order."""
    active = is_active(profile, now, timeout_s)
    out = {k: (active if k == "active" else profile.get(k)) for k in PROFILE_FIELDS}
    for k, v in profile.items():  # keep anything extra the caller stored
        if k not in out:
            out[k] = v
    return out


# --- device class --------------------------------------------------------------------------------
_BOT = re.compile(
    r"\bbot\b|bot/|bot;|crawl|spider|slurp|facebookexternalhit|bingpreview|mediapartners|"
    r"\bcurl/|\bwget/|python-requests|python-urllib|libwww|phantomjs|lighthouse|pingdom|uptimerobot",
)
_TV = re.compile(
    r"smart-?tv|smarttv|googletv|google tv|appletv|apple tv|\bcrkey\b|hbbtv|netcast|\bwebos|web0s|"
    r"tizen.*\btv\b|\btv\b.*tizen|roku|\baft[a-z]{1,2}\b|bravia|viera|aquos|philipstv|"
    r"playstation|xbox|nintendo|\bdtv\b|; tv;|\btv safari\b|android tv|firetv|fire tv|vidaa",
)
_TABLET = re.compile(
    r"ipad|tablet|kindle|\bsilk\b|playbook|nexus (7|9|10)\b|sm-t\d|\bgt-p\d|\bkf[a-z]{2,4}\b"
)
_MOBILE = re.compile(
    r"mobi|iphone|ipod|android.*mobile|windows phone|iemobile|blackberry|\bbb10\b|opera mini|"
    r"\bsymbian|\bnokia|webos.*(pre|pixi)",
)
_DESKTOP = re.compile(r"windows nt|macintosh|mac os x|\bx11\b|\blinux\b|\bcros\b|freebsd|openbsd")


@lru_cache(maxsize=1024)
def device_class(useragent: str) -> str:
    """``desktop`` | ``mobile`` | ``tablet`` | ``tv`` | ``bot`` | ``unknown`` from a user agent.

    Order matters: self-declared crawlers and HTTP tools first (a headless browser is classed by
    its platform like any browser), then TVs and consoles, tablets (``iPad``, Android without
    ``Mobile``), phones, then desktop platforms.
    """
    ua = useragent.strip().lower() if isinstance(useragent, str) else ""
    if not ua:
        return "unknown"
    if _BOT.search(ua):
        return "bot"
    if _TV.search(ua):
        return "tv"
    if _TABLET.search(ua):
        return "tablet"
    if "android" in ua and "mobile" not in ua:
        return "tablet"
    if _MOBILE.search(ua):
        return "mobile"
    if _DESKTOP.search(ua):
        return "desktop"
    return "unknown"
