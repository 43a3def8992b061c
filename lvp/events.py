"""The event model shared by every stage after the collector.

A :class:`ViewerEvent` is what the profile state machine consumes: one media (or page) event of
one viewer, with the media player / media session / ad entities already picked out. It is built
from the columns of an enriched event (:func:`from_enriched`), whichever pipeline wrote them, or
straight from an enriched TSV line (:func:`from_tsv_line`: the same event, reading only the
columns it is made of — the hot path of `lvp profiles`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
import orjson

from lvp.enriched import ColumnPicker, EnrichedFormatError, parse_tstamp

MEDIA_VENDOR = "com.snowplowanalytics.snowplow.media"

# Full URIs of what a media-tracking client sends (used by `lvp simulate` and the test factories).
PAYLOAD_DATA_SCHEMA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
UNSTRUCT_SCHEMA = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
CONTEXTS_SCHEMA = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0"
MEDIA_EVENT_SCHEMA = "iglu:" + MEDIA_VENDOR + "/{}_event/jsonschema/1-0-0"  # .format(short name)
MEDIA_PLAYER_SCHEMA = "iglu:com.snowplowanalytics.snowplow/media_player/jsonschema/2-0-0"
MEDIA_SESSION_SCHEMA = "iglu:" + MEDIA_VENDOR + "/session/jsonschema/1-0-0"
MEDIA_AD_SCHEMA = "iglu:" + MEDIA_VENDOR + "/ad/jsonschema/1-0-0"
MEDIA_AD_BREAK_SCHEMA = "iglu:" + MEDIA_VENDOR + "/ad_break/jsonschema/1-0-0"
WEB_PAGE_SCHEMA = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"
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
_intern = sys.intern


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


def _opt_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


# Entity kinds, by schema URI (a bounded cache of the startswith() tests below).
_PLAYER, _SESSION, _AD_BREAK, _AD, _OTHER = range(5)
_ENTITY_KIND: dict[str, int] = {}
_CACHE_MAX = 4096


def _entity_kind(schema: str) -> int:
    """The kind of entity ``schema`` is (and remember it)."""
    if schema.startswith(MEDIA_PLAYER):
        kind = _PLAYER
    elif schema.startswith(MEDIA_SESSION):
        kind = _SESSION
    elif schema.startswith(MEDIA_AD_BREAK):
        kind = _AD_BREAK
    elif schema.startswith(MEDIA_AD):
        kind = _AD
    else:
        kind = _OTHER
    if len(_ENTITY_KIND) >= _CACHE_MAX:
        _ENTITY_KIND.clear()
    _ENTITY_KIND[schema] = kind
    return kind


def apply_entities(ev: ViewerEvent, entities: list[Any]) -> None:
    """Fill the entity fields of ``ev`` from a list of self-describing entities."""
    # The hot loop of `lvp profiles`: ``type(v) is float`` / ``is int`` short-cut the common JSON
    # values; anything else goes through _opt_float / _opt_int, so the result is the same.
    for ent in entities:
        if not isinstance(ent, dict):
            continue
        schema = ent.get("schema")
        data = ent.get("data")
        if not isinstance(schema, str) or not isinstance(data, dict):
            continue
        kind = _ENTITY_KIND.get(schema)
        if kind is None:
            kind = _entity_kind(schema)
        if kind == _OTHER:
            continue
        get = data.get
        if kind == _PLAYER:
            v = get("currentTime")
            ev.position_s = v if type(v) is float else _opt_float(v)
            v = get("duration")
            ev.duration_s = v if type(v) is float else _opt_float(v)
            v = get("label")
            ev.media_label = _intern(v) if type(v) is str else None
            v = get("paused")
            ev.paused = v if v is True or v is False else None
            v = get("ended")
            ev.ended = v if v is True or v is False else None
            v = get("playbackRate")
            ev.playback_rate = v if type(v) is float else _opt_float(v)
            v = get("volume")
            ev.volume = v if type(v) is int else _opt_int(v)
            v = get("muted")
            ev.muted = v if v is True or v is False else None
            v = get("fullscreen")
            ev.fullscreen = v if v is True or v is False else None
            v = get("quality")
            ev.quality = _intern(v) if type(v) is str else None
        elif kind == _SESSION:
            sid = get("mediaSessionId")
            ev.media_session_id = sid if type(sid) is str else None
            stats = {}
            for key in SESSION_STATS:
                v = get(key)
                if v is not None:
                    v = v if type(v) is float else _opt_float(v)
                    if v is not None:
                        stats[key] = v
            ev.session_stats = stats
        elif kind == _AD_BREAK:
            bid = get("breakId")
            ev.ad_break_id = _intern(str(bid)) if isinstance(bid, (str, int)) else None
        else:  # _AD
            aid = get("adId")
            ev.ad_id = _intern(str(aid)) if isinstance(aid, (str, int)) else None
            name = get("name")
            ev.ad_name = _intern(name) if type(name) is str else None


# --- the contexts column's fast path ------------------------------------------------------------
# Typed msgspec decoders read a contexts text straight into the few fields a ViewerEvent takes:
# entities of other schemas are skipped unparsed (msgspec.Raw) and no dict is made. They accept
# only what apply_entities would read the same way (the same JSON types, integers in the range
# orjson keeps as integers); anything else -- a wrong type, malformed JSON -- makes the caller
# take the generic path (orjson + apply_entities), so the event, or the error, is the same.

_JSON_INT = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]  # int64; the generic path takes the rest


class _EntityData(msgspec.Struct):
    """The fields a ViewerEvent takes of any media entity, in one type: the media_player,
    session, ad_break and ad entities have no field name in common with different types, so
    one decoder reads them all (each entity's own fields are picked by its schema below)."""

    # media_player
    currentTime: float | None = None
    duration: float | None = None  # (also the ad's duration, not read)
    label: str | None = None
    paused: bool | None = None
    ended: bool | None = None
    playbackRate: float | None = None
    volume: _JSON_INT | None = None
    muted: bool | None = None
    fullscreen: bool | None = None
    quality: str | None = None
    # media session
    mediaSessionId: str | None = None
    timePlayed: float | None = None
    timePaused: float | None = None
    timeSpentAds: float | None = None
    timeBuffering: float | None = None
    adBreaks: float | None = None
    ads: float | None = None
    adsSkipped: float | None = None
    adsClicked: float | None = None
    # ad_break
    breakId: str | _JSON_INT | None = None
    # ad (name: also the ad break's, not read)
    adId: str | _JSON_INT | None = None
    name: str | None = None


class _Entity(msgspec.Struct):
    schema: str
    data: _EntityData


class _Contexts(msgspec.Struct):
    data: list[_Entity]


_decode_contexts = msgspec.json.Decoder(_Contexts).decode
_FAST_FAILS = (msgspec.MsgspecError, ValueError, RecursionError)


def _apply_contexts_fast(ev: ViewerEvent, text: str | bytes) -> bool:
    """Fill the entity fields of ``ev`` from a contexts text, as ``apply_entities`` would from its
    parsed entities; False (``ev`` untouched) when the text needs the generic path.

    One decode reads every entity's data into :class:`_EntityData`, so the data of an entity of
    any other schema (web_page, ...) must fit it too: when it does not (a field of the same name
    with another type, data that is not an object), the generic path reads the text instead."""
    try:
        entities = _decode_contexts(text).data
    except _FAST_FAILS:
        return False
    for ent in entities:
        kind = _ENTITY_KIND.get(ent.schema)
        if kind is None:
            kind = _entity_kind(ent.schema)
        if kind == _OTHER:
            continue
        d = ent.data
        if kind == _PLAYER:
            ev.position_s = d.currentTime
            ev.duration_s = d.duration
            ev.media_label = d.label if d.label is None else _intern(d.label)
            ev.paused = d.paused
            ev.ended = d.ended
            ev.playback_rate = d.playbackRate
            ev.volume = d.volume
            ev.muted = d.muted
            ev.fullscreen = d.fullscreen
            ev.quality = d.quality if d.quality is None else _intern(d.quality)
        elif kind == _SESSION:
            ev.media_session_id = d.mediaSessionId
            # written out, in SESSION_STATS order: real session entities leave some stats out
            # (ads skipped, buffering...), and a comprehension or loop over zip() cost 2-3x as much
            stats: dict[str, float] = {}
            v = d.timePlayed
            if v is not None:
                stats["timePlayed"] = v
            v = d.timePaused
            if v is not None:
                stats["timePaused"] = v
            v = d.timeSpentAds
            if v is not None:
                stats["timeSpentAds"] = v
            v = d.timeBuffering
            if v is not None:
                stats["timeBuffering"] = v
            v = d.adBreaks
            if v is not None:
                stats["adBreaks"] = v
            v = d.ads
            if v is not None:
                stats["ads"] = v
            v = d.adsSkipped
            if v is not None:
                stats["adsSkipped"] = v
            v = d.adsClicked
            if v is not None:
                stats["adsClicked"] = v
            ev.session_stats = stats
        elif kind == _AD_BREAK:
            ev.ad_break_id = None if d.breakId is None else _intern(str(d.breakId))
        else:  # _AD
            ev.ad_id = None if d.adId is None else _intern(str(d.adId))
            ev.ad_name = d.name if d.name is None else _intern(d.name)
    return True


def from_enriched(cols: Mapping[str, Any]) -> ViewerEvent:
    """A :class:`ViewerEvent` from enriched columns (as :func:`lvp.enriched.from_tsv` returns).

    JSON columns may be given encoded (TSV) or already decoded. Raises
    :class:`~lvp.enriched.EnrichedFormatError` when a required column is missing or malformed.
    """
    return _event(*map(cols.get, EVENT_COLUMNS))


#: The enriched columns an event is made of (nothing else of a line is looked at), in the order
#: of :func:`_event`'s parameters.
EVENT_COLUMNS: tuple[str, ...] = (
    "event_id", "user_id", "domain_userid", "network_userid", "collector_tstamp", "derived_tstamp",
    "dvce_created_tstamp", "event_name", "event", "app_id", "useragent", "contexts", "unstruct_event",
)  # fmt: skip
_pick_event_columns = ColumnPicker(EVENT_COLUMNS)


def from_tsv_line(line: str | bytes) -> ViewerEvent:
    """``from_enriched(from_tsv(line))`` — same event, same errors — without a dict of columns:
    the hot path of `lvp profiles`."""
    return _event(*_pick_event_columns(line))


def _event(
    event_id: Any, user_id: Any, domain_userid: Any, network_userid: Any, collector: Any,
    derived: Any, dvce_created: Any, event_name: Any, event: Any, app_id: Any, useragent: Any,
    contexts: Any, unstruct: Any,
) -> ViewerEvent:  # fmt: skip
    """The event from its columns (absent columns None or empty)."""
    if not event_id:
        raise EnrichedFormatError("missing event_id")
    viewer_id = viewer_id_of(user_id, domain_userid, network_userid)
    if not viewer_id:
        raise EnrichedFormatError("no user_id, domain_userid or network_userid")
    if not collector:
        raise EnrichedFormatError("missing collector_tstamp")
    collector_ts = parse_tstamp(collector)
    derived = derived or dvce_created
    derived_ts = parse_tstamp(derived) if derived else collector_ts

    name = str(event_name or event or "")
    data: dict[str, Any] = {}
    if unstruct:
        media_name, inner_data = _unstruct(unstruct)
        if media_name is not None:
            name = media_name
        if inner_data is not None:
            data = inner_data
    ev = ViewerEvent(  # (positional: the hot path; the order of ViewerEvent's fields)
        str(event_id), name, str(viewer_id), collector_ts, derived_ts,
        _intern(str(app_id or "")), _intern(str(useragent or "")), data=data,
    )  # fmt: skip
    if contexts and (type(contexts) is not str or not _apply_contexts_fast(ev, contexts)):
        co_obj = _json(contexts, "contexts")
        entities = co_obj.get("data") if isinstance(co_obj, dict) else co_obj
        if isinstance(entities, list):
            apply_entities(ev, entities)
    return ev


# unstruct_event text -> (media event name, the event's data): the same few texts recur (every
# viewer's pings, quartiles, ...). Only data of plain values is kept: each event gets a copy.
_UNSTRUCT: dict[str, tuple[str | None, dict[str, Any] | None]] = {}
_PLAIN = (str, int, float, bool, type(None))


def _unstruct(value: Any) -> tuple[str | None, dict[str, Any] | None]:
    """(media event name or None, the self-describing event's data or None) of the
    ``unstruct_event`` column (encoded or decoded)."""
    if type(value) is str:
        hit = _UNSTRUCT.get(value)
        if hit is not None:
            return hit[0], (dict(hit[1]) if hit[1] is not None else None)
    ue_obj = _json(value, "unstruct_event")
    inner = ue_obj.get("data") if isinstance(ue_obj, dict) else None
    media_name: str | None = None
    data: dict[str, Any] | None = None
    if isinstance(inner, dict) and isinstance(inner.get("schema"), str):
        media_name = media_event_name(inner["schema"])
        if isinstance(inner.get("data"), dict):
            data = inner["data"]
    if type(value) is str and (data is None or all(type(v) in _PLAIN for v in data.values())):
        if len(_UNSTRUCT) >= _CACHE_MAX:
            _UNSTRUCT.clear()
        _UNSTRUCT[value] = (media_name, dict(data) if data is not None else None)
    return media_name, data


def _json(value: Any, column: str) -> Any:
    if not isinstance(value, (str, bytes)):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise EnrichedFormatError(f"{column} is not JSON: {exc}") from None
