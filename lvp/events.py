"""The event model shared by every stage after the collector.

A :class:`ViewerEvent` is what the profile state machine consumes: one media (or page) event of
one viewer, with the media player / media session / ad entities already picked out. It is built
from the columns of an enriched event (:func:`from_enriched`), whichever pipeline wrote them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from lvp.enriched import EnrichedFormatError, parse_tstamp

MEDIA_VENDOR = "com.snowplowanalytics.snowplow.media"
MEDIA_PLAYER = "iglu:com.snowplowanalytics.snowplow/media_player/jsonschema/2-"
MEDIA_SESSION = "iglu:com.snowplowanalytics.snowplow.media/session/jsonschema/1-"
MEDIA_AD = "iglu:com.snowplowanalytics.snowplow.media/ad/jsonschema/1-"
MEDIA_AD_BREAK = "iglu:com.snowplowanalytics.snowplow.media/ad_break/jsonschema/1-"

#: Every media plugin v4 event, by its short name (schema name without ``_event``).
MEDIA_EVENTS: tuple[str, ...] = (
    "ready", "play", "pause", "end", "seek_start", "seek_end", "playback_rate_change",
    "volume_change", "fullscreen_change", "picture_in_picture_change", "ping",
    "percent_progress", "ad_break_start", "ad_break_end", "ad_start", "ad_quartile",
    "ad_complete", "ad_skip", "ad_click", "ad_pause", "ad_resume", "buffer_start", "buffer_end",
    "quality_change", "error",
)  # fmt: skip

#: Non-media event names a profile also takes note of.
PAGE_EVENTS: tuple[str, ...] = ("page_view", "page_ping")

#: Media session running stats (entity field -> profile field), all monotonic within a session.
SESSION_STATS: dict[str, str] = {
    "timePlayed": "play_time_s",
    "timePaused": "paused_time_s",
    "timeSpentAds": "ad_time_s",
    "timeBuffering": "buffering_time_s",
    "adBreaks": "ad_breaks",
    "ads": "ads_started",
    "adsSkipped": "ads_skipped",
    "adsClicked": "ads_clicked",
}


@dataclass(slots=True)
class ViewerEvent:
    """One event of one viewer. Times are epoch seconds (floats)."""

    event_id: str
    name: str  # a MEDIA_EVENTS or PAGE_EVENTS name, else the raw event name
    viewer_id: str
    collector_ts: float  # the collector's clock: drives `last_seen` / `active`
    derived_ts: float  # device time corrected for clock skew: orders a viewer's events
    app_id: str = ""
    useragent: str = ""
    # media_player entity
    position_s: float | None = None
    duration_s: float | None = None
    media_label: str | None = None
    paused: bool | None = None
    ended: bool | None = None
    playback_rate: float | None = None
    volume: int | None = None
    muted: bool | None = None
    fullscreen: bool | None = None
    quality: str | None = None
    # media session entity
    media_session_id: str | None = None
    session_stats: dict[str, float] | None = None  # keys from SESSION_STATS present in the entity
    # ad entities (present while an ad / ad break plays)
    ad_id: str | None = None
    ad_name: str | None = None
    ad_break_id: str | None = None
    # the self-describing event's own data (percentProgress, error fields, new values, ...)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def is_media(self) -> bool:
        return self.name in _MEDIA_SET

    @property
    def order_key(self) -> tuple[float, str]:
        """Total order of a viewer's events: (derived time, event id)."""
        return (self.derived_ts, self.event_id)


_MEDIA_SET = frozenset(MEDIA_EVENTS)


def viewer_id_of(user_id: str | None, domain_userid: str | None, network_userid: str | None) -> str:
    """viewer id = user_id, else domain_userid, else network_userid."""
    return user_id or domain_userid or network_userid or ""


def media_event_name(schema_uri: str) -> str | None:
    """``iglu:com.snowplowanalytics.snowplow.media/play_event/jsonschema/1-0-0`` -> ``play``."""
    if not schema_uri.startswith("iglu:" + MEDIA_VENDOR + "/"):
        return None
    name = schema_uri[len(MEDIA_VENDOR) + 6 :].split("/", 1)[0]
    if name.endswith("_event"):
        name = name[:-6]
    return name if name in _MEDIA_SET else None


def _opt_float(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def apply_entities(ev: ViewerEvent, entities: list[Any]) -> None:
    """Fill the entity fields of ``ev`` from a list of self-describing entities."""
    for ent in entities:
        if not isinstance(ent, dict):
            continue
        schema = ent.get("schema")
        data = ent.get("data")
        if not isinstance(schema, str) or not isinstance(data, dict):
            continue
        if schema.startswith(MEDIA_PLAYER):
            ev.position_s = _opt_float(data.get("currentTime"))
            ev.duration_s = _opt_float(data.get("duration"))
            label = data.get("label")
            ev.media_label = label if isinstance(label, str) else None
            ev.paused = data.get("paused") if isinstance(data.get("paused"), bool) else None
            ev.ended = data.get("ended") if isinstance(data.get("ended"), bool) else None
            ev.playback_rate = _opt_float(data.get("playbackRate"))
            vol = data.get("volume")
            ev.volume = vol if isinstance(vol, int) and not isinstance(vol, bool) else None
            ev.muted = data.get("muted") if isinstance(data.get("muted"), bool) else None
            ev.fullscreen = data.get("fullscreen") if isinstance(data.get("fullscreen"), bool) else None
            q = data.get("quality")
            ev.quality = q if isinstance(q, str) else None
        elif schema.startswith(MEDIA_SESSION):
            sid = data.get("mediaSessionId")
            ev.media_session_id = sid if isinstance(sid, str) else None
            stats = {}
            for key in SESSION_STATS:
                v = _opt_float(data.get(key))
                if v is not None:
                    stats[key] = v
            ev.session_stats = stats
        elif schema.startswith(MEDIA_AD_BREAK):
            bid = data.get("breakId")
            ev.ad_break_id = str(bid) if isinstance(bid, (str, int)) else None
        elif schema.startswith(MEDIA_AD):
            aid = data.get("adId")
            ev.ad_id = str(aid) if isinstance(aid, (str, int)) else None
            name = data.get("name")
            ev.ad_name = name if isinstance(name, str) else None


def from_enriched(cols: Mapping[str, Any]) -> ViewerEvent:
    """A :class:`ViewerEvent` from enriched columns (as :func:`lvp.enriched.from_tsv` returns).

    JSON columns may be given encoded (TSV) or already decoded. Raises
    :class:`~lvp.enriched.EnrichedFormatError` when a required column is missing or malformed.
    """
    event_id = cols.get("event_id")
    if not event_id:
        raise EnrichedFormatError("missing event_id")
    viewer_id = viewer_id_of(cols.get("user_id"), cols.get("domain_userid"), cols.get("network_userid"))
    if not viewer_id:
        raise EnrichedFormatError("no user_id, domain_userid or network_userid")
    collector = cols.get("collector_tstamp")
    if not collector:
        raise EnrichedFormatError("missing collector_tstamp")
    collector_ts = parse_tstamp(collector)
    derived = cols.get("derived_tstamp") or cols.get("dvce_created_tstamp")
    derived_ts = parse_tstamp(derived) if derived else collector_ts

    name = str(cols.get("event_name") or cols.get("event") or "")
    data: dict[str, Any] = {}
    ue = cols.get("unstruct_event")
    if ue:
        ue_obj = _json(ue, "unstruct_event")
        inner = ue_obj.get("data") if isinstance(ue_obj, dict) else None
        if isinstance(inner, dict) and isinstance(inner.get("schema"), str):
            media_name = media_event_name(inner["schema"])
            if media_name is not None:
                name = media_name
            if isinstance(inner.get("data"), dict):
                data = inner["data"]
    ev = ViewerEvent(
        event_id=str(event_id),
        name=name,
        viewer_id=str(viewer_id),
        collector_ts=collector_ts,
        derived_ts=derived_ts,
        app_id=str(cols.get("app_id") or ""),
        useragent=str(cols.get("useragent") or ""),
        data=data,
    )
    co = cols.get("contexts")
    if co:
        co_obj = _json(co, "contexts")
        entities = co_obj.get("data") if isinstance(co_obj, dict) else co_obj
        if isinstance(entities, list):
            apply_entities(ev, entities)
    return ev


def _json(value: Any, column: str) -> Any:
    if not isinstance(value, (str, bytes)):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise EnrichedFormatError(f"{column} is not JSON: {exc}") from None
