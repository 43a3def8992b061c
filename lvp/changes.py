"""The changes topic (``LVP_TOPIC_CHANGES``): what `lvp profiles` publishes and `lvp viewer` reads.

Three kinds of message, all on the partition :func:`partition_for` gives the viewer id, so that
every message about one viewer is read in the order it was published:

* **profile** — key = viewer id, value = the profile JSON (the API dict without ``active``).
  Published within ``LVP_PUBLISH_INTERVAL_S`` whenever a *significant* field changed (status,
  counters, ad, media, device, ... — everything but :data:`TOUCH_FIELDS`).
* **erasure** — key = viewer id, value = null (a tombstone); its timestamp is the erasure time.
* **touches** — key = :data:`TOUCH_KEY_PREFIX` + the partition number, value =
  ``{"touches": [[viewer_id, v1, v2, ...], ...], "fields": [names of v1, v2, ...]}``: the
  viewers of that partition whose newest events (pings, progress) changed only
  :data:`TOUCH_FIELDS`. One message per partition per ``LVP_TOUCH_INTERVAL_S`` carries all of
  them, so a ping costs a few dozen bytes of a shared message, not a publication of its own.
  A reader applies a touch as a patch on the profile it holds for that viewer (and ignores it
  for a viewer it does not hold). Because a touch and the viewer's profiles share a partition,
  a reader never applies a touch older than the profile it holds.

Compaction keeps each viewer's last profile and each partition's last touches message.
Pure code: no Kafka client here.
"""

from __future__ import annotations

import operator
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

__all__ = [
    "TOUCH_FIELDS",
    "TOUCH_KEY_PREFIX",
    "Change",
    "encode_touches",
    "parse_message",
    "partition_for",
    "significant_signer",
    "touch_patch",
]

#: The profile fields a ping or progress event changes. A change of only these is a *touch*:
#: published in the batched touches message and written to DynamoDB lazily.
TOUCH_FIELDS: Final[tuple[str, ...]] = (
    "position_s", "duration_s", "percent_progress", "play_time_s", "paused_time_s", "ad_time_s",
    "buffering_time_s", "last_seen", "last_event_id", "last_event_name", "events",
)  # fmt: skip
_TOUCH_SET: Final = frozenset(TOUCH_FIELDS)

#: Key prefix of touches messages (a viewer id never starts with a NUL byte).
TOUCH_KEY_PREFIX: Final = b"\x00touches/"


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of a keyed message: CRC-32 of the key modulo the partition count, which is
    what librdkafka's default partitioner (``consistent_random``) picks for a non-empty key."""
    return (zlib.crc32(key) & 0xFFFFFFFF) % partitions


#: The two profile fields whose values are objects (or null): hashed by their values.
_NESTED: Final = ("ad", "last_error")


def significant_signer(fields: Iterable[str]) -> Callable[[Mapping[str, Any]], int]:
    """A hash of every significant field of a profile whose fields are ``fields`` (every
    field but :data:`TOUCH_FIELDS` and ``active``): equal hashes = only touch fields changed.
    Built once for the field list (``lvp/`` does not know the profile's: the caller passes
    ``lvp.profile.PROFILE_FIELDS``), it reads the values directly — the consumer calls it for
    every changed viewer. A hash is only ever compared with another of the same signer."""
    scalars = tuple(f for f in fields if f not in _TOUCH_SET and f != "active" and f not in _NESTED)
    values = operator.itemgetter(*scalars)
    ad_field, error_field = _NESTED

    def significant_signature(profile: Mapping[str, Any]) -> int:
        ad, error = profile[ad_field], profile[error_field]
        return hash((
            values(profile),
            None if ad is None else tuple(ad.values()),
            None if error is None else tuple(error.values()),
        ))  # fmt: skip

    return significant_signature


def touch_patch(profile: Mapping[str, Any]) -> list[Any]:
    """The touch values of ``profile``, in :data:`TOUCH_FIELDS` order."""
    return [profile.get(f) for f in TOUCH_FIELDS]


def encode_touches(rows: Iterable[Sequence[Any]]) -> bytes:
    """``[[viewer_id, *touch_patch(profile)], ...]`` -> the touches message value."""
    return orjson.dumps({"fields": TOUCH_FIELDS, "touches": list(rows)})


@dataclass(frozen=True, slots=True)
class Change:
    """One message of the changes topic, decoded.

    ``kind`` is ``"profile"`` (``viewer_id`` and ``profile`` set), ``"erasure"`` (``viewer_id``)
    or ``"touches"`` (``touches``: viewer id -> the patch, field name -> value)."""

    kind: str
    viewer_id: str | None = None
    profile: dict[str, Any] | None = None
    touches: dict[str, dict[str, Any]] | None = None


def parse_message(key: bytes | None, value: bytes | None) -> Change | None:
    """One message -> a :class:`Change`; None when it cannot be used (never raises)."""
    if key is not None and key.startswith(TOUCH_KEY_PREFIX):
        return _parse_touches(value)
    viewer_id: str | None = None
    if key:
        try:
            viewer_id = key.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if value is None:
        return Change("erasure", viewer_id=viewer_id) if viewer_id else None
    try:
        profile = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(profile, dict):
        return None
    if not viewer_id:
        vid = profile.get("viewer_id")
        viewer_id = vid if isinstance(vid, str) else None
    if not viewer_id:
        return None
    return Change("profile", viewer_id=viewer_id, profile=profile)


def _parse_touches(value: bytes | None) -> Change | None:
    if value is None:
        return None
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    fields, rows = doc.get("fields"), doc.get("touches")
    if not isinstance(fields, list) or not isinstance(rows, list):
        return None
    names = [f for f in fields if isinstance(f, str) and f in _TOUCH_SET]
    if len(names) != len(fields):
        return None  # a field this reader does not know as a touch field: not safe to patch
    out: dict[str, dict[str, Any]] = {}
    width = len(names) + 1
    for row in rows:
        if isinstance(row, list) and len(row) == width and isinstance(row[0], str) and row[0]:
            out[row[0]] = dict(zip(names, row[1:], strict=True))
    return Change("touches", touches=out)
