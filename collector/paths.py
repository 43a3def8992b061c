"""Custom collector paths (``LVP_COLLECTOR_PATHS``), as the Snowplow collector's ``paths`` setting.

Trackers can post to a path of their own (the JavaScript tracker's ``postPath``, the mobile
trackers' ``customPostPath``) so that content blockers, which know the standard
``/com.snowplowanalytics.snowplow/tp2``, do not drop their requests. The app rewrites
each custom path to the standard one it stands for before routing, so the handlers (tp2 POST, the
pixel, the CORS preflight on either) do not know the difference and the events are the same.
The rewrite happens first thing in :class:`collector.app.CollectorApp`, so custom paths take the
same shortcut as the standard ones.

Rules (Snowplow's, where they apply): a custom path has exactly two segments (``/vendor/version``)
and starts with a slash; it maps to one of the paths this collector serves for events (tp2, or a
pixel path such as ``/i``: an extension, Snowplow maps only two-segment paths to tp2, ``/r/tp2``
and the Iglu webhook, which this collector does not serve); the standard paths keep working;
a custom path may not shadow a path the collector already serves. Matching is exact (no trailing
slash, case-sensitive), as in Snowplow.
"""

from __future__ import annotations

from typing import Final

from collector.routes import PIXEL_PATHS, TP2_PATH
from lvp.config import ConfigError

#: What a custom path may stand for.
TARGETS: Final = (TP2_PATH, *PIXEL_PATHS)
#: Paths the collector serves itself, which a custom path may not shadow.
RESERVED_PREFIXES: Final = ("/micro/",)
_SEGMENT_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")


def parse_paths(spec: str) -> dict[str, str]:
    """``"/acme/track=/com.snowplowanalytics.snowplow/tp2,/acme/pix=/i"`` -> {custom: standard}.
    :class:`ConfigError` naming the pair for anything malformed."""
    out: dict[str, str] = {}
    for pair in spec.split(","):
        pair = pair.strip()
        if not pair:
            continue
        custom, sep, target = (p.strip() for p in pair.partition("="))
        where = f"LVP_COLLECTOR_PATHS: {pair!r}"
        if not sep:
            raise ConfigError(f"{where} is not CUSTOM=STANDARD")
        segments = custom.split("/")
        if (
            not custom.startswith("/")
            or len(segments) != 3
            or not all(segments[1:])
            or not all(set(s) <= _SEGMENT_CHARS for s in segments[1:])
        ):
            raise ConfigError(
                f"{where}: the custom path must have two segments, like /acme/track "
                "(letters, digits, - . _ ~)"
            )
        if target not in TARGETS:
            raise ConfigError(f"{where}: {target!r} is not one of the collector's paths {', '.join(TARGETS)}")
        if custom in TARGETS or custom.startswith(RESERVED_PREFIXES):
            raise ConfigError(f"{where}: {custom!r} is a path the collector already serves")
        if custom in out:
            raise ConfigError(f"{where}: {custom!r} is mapped twice")
        out[custom] = target
    return out
