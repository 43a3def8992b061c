"""The device class of a viewer, from its user agent (the profile's ``device_class``).

Pure code, used by the engine (:mod:`profiles.fold`, :mod:`profiles.engine`). The profile model
itself (fields, ``active``) is :mod:`lvp.profile`, shared with the viewer.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["DEVICE_CLASSES", "device_class"]

DEVICE_CLASSES: tuple[str, ...] = ("desktop", "mobile", "tablet", "tv", "bot", "unknown")


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
