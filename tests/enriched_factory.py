"""Realistic Snowplow enriched events (131-column TSV) for tests and benchmarks, without a collector.

:class:`MediaSessionBuilder` scripts one viewer's media session the way the JavaScript tracker's
media plugin v4 reports it — every event carries the ``media_player`` 2-0-0 and media ``session``
entities (with running stats: ``timePlayed``, ``timePaused``, ``timeSpentAds``, ``timeBuffering``,
``ads``, ``adBreaks``, ``adsSkipped``, ``adsClicked``; zero stats omitted as the tracker does),
plus ``ad`` / ``ad_break`` while an ad plays, and ``web_page``. Lines are rendered with the shared
:func:`lvp.enriched.to_tsv`, timestamps as enrich writes them (``derived_tstamp`` corrected for
the device clock)::

    b = MediaSessionBuilder("viewer-1", start_ms=1_700_000_000_000)
    b.page_view().ready().play().wait(12).pause().wait(3).play()
    b.ad_break(ads=[Ad("ad-1", duration_s=6, skip_at_s=3, click=True)])
    b.wait(20).buffer(1.5).seek(120).wait(10).end()
    pairs = b.lines()  # [(kafka key, tsv line), ...] in device-time order

``b.stats`` holds the final running stats; ``b.count(name)`` counts emitted events by name.
Deterministic: event ids come from a PRNG seeded with the viewer id (or ``seed``).
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Self

import orjson

from lvp.enriched import format_tstamp, to_tsv
from lvp.events import (
    CONTEXTS_SCHEMA as CONTEXTS,
)
from lvp.events import (
    MEDIA_AD_BREAK_SCHEMA as AD_BREAK,
)
from lvp.events import (
    MEDIA_AD_SCHEMA as AD,
)
from lvp.events import (
    MEDIA_EVENT_SCHEMA as MEDIA,
)
from lvp.events import (
    MEDIA_PLAYER_SCHEMA as PLAYER,
)
from lvp.events import (
    MEDIA_SESSION_SCHEMA as SESSION,
)
from lvp.events import (
    UNSTRUCT_SCHEMA as UNSTRUCT,
)
from lvp.events import (
    WEB_PAGE_SCHEMA as WEB_PAGE,
)

DESKTOP_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"
MOBILE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)

_STAT_ORDER = (
    "timePlayed", "timePlayedMuted", "timePaused", "timeSpentAds", "timeBuffering",
    "ads", "adBreaks", "adsSkipped", "adsClicked",
)  # fmt: skip


@dataclass(frozen=True)
class Ad:
    """One ad of a pod: plays ``duration_s``, or is skipped at ``skip_at_s``; ``click`` clicks it
    halfway through what is watched; ``pause_s`` pauses it (ad_pause/ad_resume) for that long."""

    ad_id: str
    duration_s: float = 10.0
    name: str | None = None
    skip_at_s: float | None = None
    click: bool = False
    pause_s: float = 0.0


class MediaSessionBuilder:
    """One viewer's scripted media session, emitted as enriched events."""

    def __init__(
        self,
        viewer_id: str,
        start_ms: int,
        *,
        app_id: str = "lvp-demo",
        label: str = "Big Buck Bunny",
        duration_s: float = 596.0,
        useragent: str = DESKTOP_UA,
        media_session_id: str | None = None,
        id_column: str = "domain_userid",
        network_userid: str | None = None,
        seed: int | str | None = None,
        latency_ms: int = 40,
        send_delay_ms: int = 5,
        clock_skew_ms: int = 0,
        step_ms: int = 1,
        ping_interval_s: int = 30,
    ) -> None:
        self.viewer_id = viewer_id
        self.t_ms = int(start_ms)  # true time of the next event
        self.app_id = app_id
        self.label = label
        self.duration_s = duration_s
        self.useragent = useragent
        self.id_column = id_column
        self.network_userid = network_userid or ("n-" + viewer_id)
        self._rng = random.Random(f"{seed if seed is not None else viewer_id}")
        self.media_session_id = media_session_id or self._uuid()
        self.domain_sessionid = self._uuid()
        self.page_view_id = self._uuid()
        self.latency_ms = latency_ms
        self.send_delay_ms = send_delay_ms
        self.clock_skew_ms = clock_skew_ms
        self.step_ms = step_ms
        self.ping_interval_s = ping_interval_s
        self.session_started_ms = int(start_ms)
        # player
        self.position = 0.0
        self.playing = False
        self.ended = False
        self.buffering = False
        self.muted = False
        self.volume = 100
        self.speed = 1.0
        self.fullscreen = False
        self.quality: str | None = "1080p"
        # ads
        self.ad: Ad | None = None
        self.ad_pod_position = 0
        self.ad_paused = False
        self.break_id: str | None = None
        self.break_start_time = 0.0
        self.stats: dict[str, float] = dict.fromkeys(_STAT_ORDER, 0.0)
        self.rows: list[dict[str, Any]] = []
        self._counts: Counter[str] = Counter()

    # --- helpers -----------------------------------------------------------------------------------
    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def count(self, name: str) -> int:
        """Events emitted with this name (``play``, ``page_view``, ...)."""
        return self._counts[name]

    @property
    def now_s(self) -> float:
        return self.t_ms / 1000.0

    def wait(self, seconds: float) -> Self:
        """Let time pass; the player and the running stats move on as a real player's would."""
        ms = round(seconds * 1000)
        s = ms / 1000.0
        if self.ad is not None or self.break_id is not None:
            if not self.ad_paused:
                self.stats["timeSpentAds"] += s
        elif self.buffering:
            self.stats["timeBuffering"] += s
        elif self.playing:
            self.stats["timePlayed"] += s
            if self.muted:
                self.stats["timePlayedMuted"] += s
            self.position = min(self.duration_s, self.position + s * self.speed)
        elif not self.ended and self.count("play"):
            self.stats["timePaused"] += s
        self.t_ms += ms
        return self

    # --- entities ------------------------------------------------------------------------------------
    def _player(self) -> dict[str, Any]:
        return {
            "currentTime": round(self.position, 3),
            "duration": self.duration_s,
            "ended": self.ended,
            "paused": not self.playing or self.ad is not None,
            "label": self.label,
            "muted": self.muted,
            "volume": self.volume,
            "playbackRate": self.speed,
            "fullscreen": self.fullscreen,
            "pictureInPicture": False,
            "livestream": False,
            "loop": False,
            "mediaType": "video",
            "playerType": "com.snowplowanalytics-html5",
            "quality": self.quality,
        }

    def _session(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaSessionId": self.media_session_id,
            "startedAt": format_tstamp(self.session_started_ms).replace(" ", "T") + "Z",
            "pingInterval": self.ping_interval_s,
        }
        for key in _STAT_ORDER:
            v = self.stats[key]
            if v:
                out[key] = int(v) if key in ("ads", "adBreaks", "adsSkipped", "adsClicked") else round(v, 3)
        if self.stats["timePlayed"]:
            out["avgPlaybackRate"] = self.speed
        return out

    def _media_entities(self) -> list[dict[str, Any]]:
        ents: list[dict[str, Any]] = [
            {"schema": PLAYER, "data": self._player()},
            {"schema": SESSION, "data": self._session()},
        ]
        if self.ad is not None:
            ad = self.ad
            ents.append(
                {
                    "schema": AD,
                    "data": {
                        "adId": ad.ad_id,
                        "name": ad.name or f"Ad {ad.ad_id}",
                        "creativeId": "cr-" + ad.ad_id,
                        "podPosition": self.ad_pod_position,
                        "duration": ad.duration_s,
                        "skippable": ad.skip_at_s is not None,
                    },
                }
            )
        if self.break_id is not None:
            ents.append(
                {
                    "schema": AD_BREAK,
                    "data": {
                        "breakId": self.break_id,
                        "name": "mid-roll" if self.break_start_time else "pre-roll",
                        "breakType": "linear",
                        "startTime": round(self.break_start_time, 3),
                    },
                }
            )
        ents.append({"schema": WEB_PAGE, "data": {"id": self.page_view_id}})
        return ents

    # --- emitting ------------------------------------------------------------------------------------
    def _emit(
        self, event: str, *, name: str, vendor: str, unstruct: dict[str, Any] | None, ents: list[Any]
    ) -> None:
        true_ms = self.t_ms
        created = true_ms + self.clock_skew_ms
        sent = created + self.send_delay_ms
        collector = true_ms + self.send_delay_ms + self.latency_ms
        derived = collector - (sent - created)
        cols: dict[str, Any] = {
            "app_id": self.app_id,
            "platform": "web",
            "etl_tstamp": format_tstamp(collector + 7),
            "collector_tstamp": format_tstamp(collector),
            "dvce_created_tstamp": format_tstamp(created),
            "event": event,
            "event_id": self._uuid(),
            "name_tracker": "sp",
            "v_tracker": "js-4.6.6",
            "v_collector": "lvp-collector-0.1.0",
            "v_etl": "lvp-0.1.0",
            "user_ipaddress": "203.0.113.x",
            "domain_sessionidx": 1,
            "network_userid": self.network_userid,
            "page_url": "https://video.example.com/watch/big-buck-bunny",
            "page_title": "Big Buck Bunny - Example Video",
            "page_urlscheme": "https",
            "page_urlhost": "video.example.com",
            "page_urlport": 443,
            "page_urlpath": "/watch/big-buck-bunny",
            "contexts": orjson.dumps({"schema": CONTEXTS, "data": ents}).decode(),
            "useragent": self.useragent,
            "br_lang": "en-GB",
            "br_cookies": True,
            "br_colordepth": "24",
            "br_viewwidth": 1600,
            "br_viewheight": 773,
            "os_timezone": "Europe/London",
            "dvce_screenwidth": 1920,
            "dvce_screenheight": 1080,
            "doc_charset": "UTF-8",
            "doc_width": 1600,
            "doc_height": 2400,
            "dvce_sent_tstamp": format_tstamp(sent),
            "domain_sessionid": self.domain_sessionid,
            "derived_tstamp": format_tstamp(derived),
            "event_vendor": vendor,
            "event_name": name,
            "event_format": "jsonschema",
            "event_version": "1-0-0",
        }
        if self.id_column == "domain_userid":
            cols["domain_userid"] = self.viewer_id
        elif self.id_column == "user_id":
            cols["user_id"] = self.viewer_id
            cols["domain_userid"] = "d-" + self.viewer_id
        elif self.id_column == "network_userid":
            cols["network_userid"] = self.viewer_id
        else:
            raise ValueError(f"id_column {self.id_column!r}")
        if unstruct is not None:
            cols["unstruct_event"] = orjson.dumps({"schema": UNSTRUCT, "data": unstruct}).decode()
        self.rows.append(cols)
        self.t_ms += self.step_ms

    def event(self, name: str, data: dict[str, Any] | None = None) -> Self:
        """Any media plugin event by short name (``play``, ``ad_quartile``, ...)."""
        self._counts[name] += 1
        schema = MEDIA.format(name)
        self._emit(
            "unstruct",
            name=f"{name}_event",
            vendor="com.snowplowanalytics.snowplow.media",
            unstruct={"schema": schema, "data": data or {}},
            ents=self._media_entities(),
        )
        return self

    def page_view(self) -> Self:
        self._counts["page_view"] += 1
        self._emit(
            "page_view",
            name="page_view",
            vendor="com.snowplowanalytics.snowplow",
            unstruct=None,
            ents=[{"schema": WEB_PAGE, "data": {"id": self.page_view_id}}],
        )
        return self

    def page_ping(self) -> Self:
        self._counts["page_ping"] += 1
        self._emit(
            "page_ping",
            name="page_ping",
            vendor="com.snowplowanalytics.snowplow",
            unstruct=None,
            ents=[{"schema": WEB_PAGE, "data": {"id": self.page_view_id}}],
        )
        return self

    # --- content ---------------------------------------------------------------------------------------
    def ready(self) -> Self:
        return self.event("ready")

    def play(self) -> Self:
        if self.ended:  # replay from the start
            self.ended = False
            self.position = 0.0
        self.playing = True
        return self.event("play")

    def pause(self) -> Self:
        self.playing = False
        return self.event("pause")

    def end(self) -> Self:
        self.position = self.duration_s
        self.playing = False
        self.ended = True
        return self.event("end")

    def ping(self) -> Self:
        return self.event("ping")

    def percent_progress(self, percent: int) -> Self:
        return self.event("percent_progress", {"percentProgress": percent})

    def seek(self, to_s: float) -> Self:
        self.event("seek_start")
        self.position = max(0.0, min(self.duration_s, to_s))
        return self.event("seek_end")

    def buffer(self, seconds: float) -> Self:
        """A stall: buffer_start, ``seconds`` of buffering, buffer_end."""
        self.buffering = True
        self.event("buffer_start")
        self.wait(seconds)
        self.buffering = False
        return self.event("buffer_end")

    def rate(self, new_rate: float) -> Self:
        old, self.speed = self.speed, new_rate
        return self.event("playback_rate_change", {"previousRate": old, "newRate": new_rate})

    def volume_change(self, new_volume: int, muted: bool | None = None) -> Self:
        old, self.volume = self.volume, new_volume
        if muted is not None:
            self.muted = muted
        return self.event("volume_change", {"previousVolume": old, "newVolume": new_volume})

    def fullscreen_change(self, on: bool) -> Self:
        self.fullscreen = on
        return self.event("fullscreen_change", {"fullscreen": on})

    def quality_change(self, new_quality: str) -> Self:
        old, self.quality = self.quality, new_quality
        return self.event(
            "quality_change", {"previousQuality": old, "newQuality": new_quality, "automatic": True}
        )

    def error(self, code: str, description: str, name: str = "MEDIA_ERR") -> Self:
        return self.event("error", {"errorCode": code, "errorName": name, "errorDescription": description})

    # --- ads ---------------------------------------------------------------------------------------------
    def ad_break_start(self, break_id: str | None = None) -> Self:
        self.break_id = break_id or f"break-{self.stats['adBreaks'] + 1:.0f}"
        self.break_start_time = self.position
        self.ad_pod_position = 0
        self.stats["adBreaks"] += 1
        return self.event("ad_break_start")

    def ad_break_end(self) -> Self:
        self.event("ad_break_end")
        self.break_id = None
        return self

    def ad_start(self, ad: Ad) -> Self:
        self.ad = ad
        self.ad_pod_position += 1
        self.stats["ads"] += 1
        return self.event("ad_start")

    def ad_quartile(self, percent: int) -> Self:
        return self.event("ad_quartile", {"percentProgress": percent})

    def ad_click(self) -> Self:
        self.stats["adsClicked"] += 1
        return self.event("ad_click", {"percentProgress": 50})

    def ad_pause(self) -> Self:
        self.ad_paused = True
        return self.event("ad_pause")

    def ad_resume(self) -> Self:
        self.ad_paused = False
        return self.event("ad_resume")

    def ad_complete(self) -> Self:
        self.event("ad_complete")
        self.ad = None
        return self

    def ad_skip(self) -> Self:
        self.stats["adsSkipped"] += 1
        self.event("ad_skip", {"percentProgress": 50})
        self.ad = None
        return self

    def play_ad(self, ad: Ad) -> Self:
        """ad_start, quartiles as they are reached, optional click / pause, then complete or skip."""
        self.ad_start(ad)
        watch = ad.skip_at_s if ad.skip_at_s is not None else ad.duration_s
        marks = [(ad.duration_s * q / 4, q * 25) for q in (1, 2, 3)]
        done = 0.0
        clicked = False
        for at, pct in marks:
            if at > watch:
                break
            if ad.click and not clicked and at >= watch / 2:
                self.wait(watch / 2 - done)
                done = watch / 2
                self.ad_click()
                clicked = True
            self.wait(at - done)
            done = at
            self.ad_quartile(pct)
            if ad.pause_s and pct == 50:
                self.ad_pause()
                self.wait(ad.pause_s)
                self.ad_resume()
        if ad.click and not clicked:
            self.wait(max(0.0, watch / 2 - done))
            done = max(done, watch / 2)
            self.ad_click()
        self.wait(max(0.0, watch - done))
        return self.ad_skip() if ad.skip_at_s is not None else self.ad_complete()

    def ad_break(self, ads: Sequence[Ad], break_id: str | None = None, *, pause_content: bool = True) -> Self:
        """A whole break: the content pauses (as players do), the pod plays, the break ends and the
        content resumes if it was playing."""
        was_playing = self.playing
        self.ad_break_start(break_id)
        if pause_content and was_playing:
            self.playing = False
            self.event("pause")
        for ad in ads:
            self.play_ad(ad)
        self.ad_break_end()
        if pause_content and was_playing:
            self.play()
        return self

    # --- output ------------------------------------------------------------------------------------------
    def columns(self) -> list[dict[str, Any]]:
        """The enriched columns of every event, in emission (device-time) order."""
        return list(self.rows)

    def lines(self) -> list[tuple[str, str]]:
        """``(kafka key, enriched TSV line)`` of every event, in emission order."""
        return [(self.viewer_id, to_tsv(cols)) for cols in self.rows]


def full_session(viewer_id: str, start_ms: int, **kwargs: Any) -> MediaSessionBuilder:
    """A complete session touching every status: page view, ready, a pre-roll pod (one ad
    completed, one skipped and clicked), play, pauses, a seek, a stall, a rate / volume / quality
    change, a non-fatal error, a mid-roll with an ad pause, pings, and the end."""
    b = MediaSessionBuilder(viewer_id, start_ms, **kwargs)
    b.page_view().wait(1.2).ready().wait(0.8)
    b.ad_break([Ad("pre-1", duration_s=8), Ad("pre-2", duration_s=12, skip_at_s=5, click=True)], "pre")
    b.play().wait(15).ping().wait(10).pause().wait(4).play().wait(6)
    b.seek(120).wait(9).buffer(2.5).wait(20).percent_progress(25)
    b.rate(1.5).wait(10).volume_change(40, muted=False).quality_change("720p").wait(5)
    b.error("3", "decode error, recovered", "MEDIA_ERR_DECODE").wait(5)
    b.ad_break([Ad("mid-1", duration_s=10, pause_s=2.0)], "mid")
    b.wait(30).ping().wait(12).page_ping().wait(3).end()
    return b


def interleave(builders: Iterable[MediaSessionBuilder]) -> list[tuple[str, str]]:
    """All builders' lines merged in device-time order (as a collector would receive them)."""
    rows: list[tuple[str, int, str]] = []
    for b in builders:
        for cols, (key, line) in zip(b.rows, b.lines(), strict=True):
            rows.append((cols["collector_tstamp"], len(rows), key + "\0" + line))
    rows.sort()
    out = []
    for _ts, _i, packed in rows:
        key, line = packed.split("\0", 1)
        out.append((key, line))
    return out
