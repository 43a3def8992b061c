"""Our bundled schemas accept everything the public Iglu Central versions accept.

Each instance below carries every optional property the public schema of the same
vendor/name/version allows (values, then nulls where the public schema allows null): a schema of
ours that is stricter than the public one turns real tracker events into bad rows (as happened with
``ad_pause_event``/``ad_resume_event`` and ``percentProgress`` from the JS media plugin 4.6.6).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from collector.protocol import b64url_encode, decode_event
from lvp.events import CONTEXTS_SCHEMA, MEDIA_EVENTS, UNSTRUCT_SCHEMA
from lvp.iglu import Registry

SP = "com.snowplowanalytics.snowplow"
MEDIA = "com.snowplowanalytics.snowplow.media"
UUID_A = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
UUID_B = "9a8b7c6d-5e4f-4321-8fed-cba987654321"

#: media event name -> instances that must validate (every optional property set, then null)
MEDIA_EVENT_INSTANCES: dict[str, list[dict[str, Any]]] = {
    "ready": [{}],
    "play": [{}],
    "pause": [{}],
    "end": [{}],
    "seek_start": [{}],
    "seek_end": [{}],
    "ping": [{}],
    "buffer_start": [{}],
    "buffer_end": [{}],
    "ad_break_start": [{}],
    "ad_break_end": [{}],
    "ad_start": [{}],
    "ad_complete": [{}],
    "playback_rate_change": [{"previousRate": 1, "newRate": 1.5}, {"previousRate": None, "newRate": 0}],
    "volume_change": [{"previousVolume": 30, "newVolume": 100}, {"previousVolume": None, "newVolume": 0}],
    "fullscreen_change": [{"fullscreen": True}, {"fullscreen": False}],
    "picture_in_picture_change": [{"pictureInPicture": True}, {"pictureInPicture": False}],
    "percent_progress": [{"percentProgress": 50}, {"percentProgress": None}, {}],
    "ad_quartile": [{"percentProgress": 25}, {"percentProgress": 75}],
    "ad_skip": [{"percentProgress": 40}, {"percentProgress": None}, {}],
    "ad_click": [{"percentProgress": 10}, {"percentProgress": None}, {}],
    "ad_pause": [{"percentProgress": 33}, {"percentProgress": None}, {}],
    "ad_resume": [{"percentProgress": 33}, {"percentProgress": None}, {}],
    "quality_change": [
        {
            "previousQuality": "480p",
            "newQuality": "1080p",
            "bitrate": 5_000_000,
            "framesPerSecond": 60,
            "automatic": True,
        },
        {
            "previousQuality": None,
            "newQuality": None,
            "bitrate": None,
            "framesPerSecond": None,
            "automatic": None,
        },
        {},
    ],
    "error": [
        {"errorCode": "E42", "errorName": "MEDIA_ERR_DECODE", "errorDescription": "decoder gave up"},
        {"errorCode": None, "errorName": None, "errorDescription": None},
        {},
    ],
}

#: other schema URIs -> instances that must validate
ENTITY_INSTANCES: list[tuple[str, Any]] = [
    (
        f"iglu:{SP}/media_player/jsonschema/2-0-0",
        {
            "currentTime": 12.5,
            "duration": 600.25,
            "ended": False,
            "fullscreen": True,
            "livestream": False,
            "label": "Big Buck Bunny",
            "loop": False,
            "mediaType": "video",
            "muted": True,
            "paused": False,
            "pictureInPicture": False,
            "playbackRate": 1.25,
            "playerType": "com.snowplowanalytics.snowplow/html5",
            "quality": "720p",
            "volume": 80,
        },
    ),
    (
        f"iglu:{SP}/media_player/jsonschema/2-0-0",
        {
            "currentTime": 0,
            "duration": None,
            "ended": True,
            "fullscreen": None,
            "livestream": None,
            "label": None,
            "loop": None,
            "mediaType": None,
            "muted": None,
            "paused": True,
            "pictureInPicture": None,
            "playbackRate": None,
            "playerType": None,
            "quality": None,
            "volume": None,
        },
    ),
    (
        f"iglu:{MEDIA}/session/jsonschema/1-0-0",
        {
            "mediaSessionId": UUID_A,
            "startedAt": "2024-11-16T13:33:22.625Z",
            "pingInterval": 30,
            "timePlayed": 120.5,
            "timePlayedMuted": 10,
            "timePaused": 4.25,
            "contentWatched": 110,
            "timeBuffering": 1.5,
            "timeSpentAds": 30,
            "ads": 2,
            "adsClicked": 1,
            "adsSkipped": 1,
            "adBreaks": 1,
            "avgPlaybackRate": 1.1,
        },
    ),
    (
        f"iglu:{MEDIA}/session/jsonschema/1-0-0",
        {
            "mediaSessionId": "s",
            "startedAt": None,
            "pingInterval": None,
            "timePlayed": None,
            "timePlayedMuted": None,
            "timePaused": None,
            "contentWatched": None,
            "timeBuffering": None,
            "timeSpentAds": None,
            "ads": None,
            "adsClicked": None,
            "adsSkipped": None,
            "adBreaks": None,
            "avgPlaybackRate": None,
        },
    ),
    (
        f"iglu:{MEDIA}/ad/jsonschema/1-0-0",
        {
            "name": "Spot",
            "adId": "ad-1",
            "creativeId": "cr-9",
            "podPosition": 1,
            "duration": 15.5,
            "skippable": True,
        },
    ),
    (
        f"iglu:{MEDIA}/ad/jsonschema/1-0-0",
        {
            "name": None,
            "adId": "ad-1",
            "creativeId": None,
            "podPosition": None,
            "duration": None,
            "skippable": None,
        },
    ),
    (
        f"iglu:{MEDIA}/ad_break/jsonschema/1-0-0",
        {"name": "pre-roll", "breakId": "b1", "startTime": 0, "breakType": "linear", "podSize": 3},
    ),
    (
        f"iglu:{MEDIA}/ad_break/jsonschema/1-0-0",
        {"name": None, "breakId": "b1", "startTime": 12.5, "breakType": None, "podSize": None},
    ),
    (f"iglu:{SP}/web_page/jsonschema/1-0-0", {"id": UUID_A}),
    (
        f"iglu:{SP}/client_session/jsonschema/1-0-1",
        {
            "userId": UUID_A,
            "sessionId": UUID_B,
            "sessionIndex": 3,
            "previousSessionId": UUID_A,
            "storageMechanism": "COOKIE_1",
            "firstEventId": UUID_B,
        },
    ),
    (
        f"iglu:{SP}/client_session/jsonschema/1-0-1",
        {
            "userId": "0123456789abcdef",
            "sessionId": UUID_B,
            "sessionIndex": 0,
            "previousSessionId": None,
            "storageMechanism": "LOCAL_STORAGE",
            "firstEventId": None,  # the public 1-0-1 allows null here
        },
    ),
    (
        f"iglu:{SP}/client_session/jsonschema/1-0-2",
        {
            "userId": UUID_A,
            "sessionId": UUID_B,
            "sessionIndex": 3,
            "eventIndex": 7,
            "previousSessionId": UUID_A,
            "storageMechanism": "COOKIE_1",
            "firstEventId": UUID_B,
            "firstEventTimestamp": "2024-11-16T13:33:22.625Z",
        },
    ),
    (
        f"iglu:{SP}/client_session/jsonschema/1-0-2",
        {
            "userId": UUID_A,
            "sessionId": UUID_B,
            "sessionIndex": 1,
            "eventIndex": None,
            "previousSessionId": None,
            "storageMechanism": "SQLITE",
            "firstEventId": None,
            "firstEventTimestamp": None,
        },
    ),
    *[
        (
            f"iglu:{SP}/browser_context/jsonschema/{version}",
            {
                "viewport": "1200x900",
                "documentSize": "1200x3000",
                "resolution": "1920x1080",
                "colorDepth": 24,
                "devicePixelRatio": 1.5,
                "cookiesEnabled": True,
                "online": True,
                "browserLanguage": "en-GB",
                "documentLanguage": "en",
                "webdriver": False,
                "deviceMemory": 8,
                "hardwareConcurrency": 4,
                "tabId": UUID_A,
            },
        )
        for version in ("1-0-0", "2-0-0")
    ],
    *[
        (
            f"iglu:{SP}/browser_context/jsonschema/{version}",
            {
                "viewport": "1x1",
                "documentSize": "1x1",
                "resolution": "1x1",
                "colorDepth": 0,
                "devicePixelRatio": None,
                "cookiesEnabled": False,
                "online": False,
                "browserLanguage": None,
                "documentLanguage": None,
                "webdriver": None,
                "deviceMemory": None,
                "hardwareConcurrency": None,
                "tabId": None,
            },
        )
        for version in ("1-0-0", "2-0-0")
    ],
    (
        f"iglu:{SP}/browser_context/jsonschema/2-0-0",
        {
            "viewport": "1x1",
            "documentSize": "1x1",
            "resolution": "1x1",
            "colorDepth": 24,
            "cookiesEnabled": True,
            "online": True,
            "deviceMemory": 0.5,  # browsers report fractions; 2-0-0 allows them
        },
    ),
    (f"iglu:{SP}/contexts/jsonschema/1-0-1", []),  # 1-0-1 dropped 1-0-0's minItems
    (
        f"iglu:{SP}/contexts/jsonschema/1-0-0",
        [{"schema": f"iglu:{SP}/web_page/jsonschema/1-0-0", "data": {}}],
    ),
]

#: instances the public schemas reject, and so must ours
REJECTED: list[tuple[str, Any]] = [
    (f"iglu:{SP}/contexts/jsonschema/1-0-0", []),  # minItems 1
    (f"iglu:{MEDIA}/ad_pause_event/jsonschema/1-0-0", {"percentProgress": 101}),
    (f"iglu:{MEDIA}/ad_resume_event/jsonschema/1-0-0", {"percentProgress": 12.5}),
    (f"iglu:{MEDIA}/ad_resume_event/jsonschema/1-0-0", {"percent": 12}),
    (
        f"iglu:{SP}/client_session/jsonschema/1-0-1",
        {
            "userId": UUID_A,
            "sessionId": UUID_B,
            "sessionIndex": 0,
            "previousSessionId": None,
            "storageMechanism": "INDEXED_DB",
        },
    ),
]


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


def _media_cases() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"iglu:{MEDIA}/{name}_event/jsonschema/1-0-0", instance)
        for name, instances in MEDIA_EVENT_INSTANCES.items()
        for instance in instances
    ]


def test_every_media_event_has_instances() -> None:
    assert set(MEDIA_EVENT_INSTANCES) == set(MEDIA_EVENTS)


@pytest.mark.parametrize(("uri", "instance"), _media_cases() + ENTITY_INSTANCES)
def test_public_schema_instances_validate(registry: Registry, uri: str, instance: Any) -> None:
    v = registry.validator(uri)
    assert v.errors(instance) == [], uri
    assert v.is_valid(instance), uri


@pytest.mark.parametrize(("uri", "instance"), REJECTED)
def test_instances_the_public_schemas_reject_fail(registry: Registry, uri: str, instance: Any) -> None:
    v = registry.validator(uri)
    assert not v.is_valid(instance)
    assert v.errors(instance) != []


def test_ad_pause_with_progress_passes_the_collector(registry: Registry) -> None:
    """What the JS media plugin 4.6.6 sent for an ad pause (percentProgress set) is not a bad row."""
    for name in ("ad_pause", "ad_resume"):
        inner = {"schema": f"iglu:{MEDIA}/{name}_event/jsonschema/1-0-0", "data": {"percentProgress": 50}}
        contexts = {
            "schema": CONTEXTS_SCHEMA,
            "data": [
                {
                    "schema": f"iglu:{SP}/media_player/jsonschema/2-0-0",
                    "data": {"currentTime": 3, "paused": True, "ended": False},
                },
                {"schema": f"iglu:{MEDIA}/ad/jsonschema/1-0-0", "data": {"adId": "ad-1"}},
            ],
        }
        params = {
            "e": "ue",
            "tv": "js-4.6.6",
            "p": "web",
            "ue_px": b64url_encode(orjson.dumps({"schema": UNSTRUCT_SCHEMA, "data": inner})),
            "cx": b64url_encode(orjson.dumps(contexts)),
        }
        ev = decode_event(params, registry)
        assert ev.ue == inner
