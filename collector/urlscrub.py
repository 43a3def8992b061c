"""Query strings and fragments of page and referrer URLs, made safe to travel (issue #12).

A URL's query string and fragment often carry personal data: ``?email=alice@example.com``, a
password reset token, ``#access_token=...`` of an OAuth implicit flow. Like Snowplow's PII
enrichment, the collector keeps the parameter *names* and decides per name what happens to the
*value*:

- names in ``LVP_URL_KEEP_PARAMS`` (default ``utm_*``: campaign parameters) keep their value
  verbatim;
- names in ``LVP_URL_PSEUDONYMIZE_PARAMS`` get the keyed pseudonym (HMAC-SHA256, the same
  function as ``user_id``) of their value, URL-decoded until it no longer changes (so
  ``a%40b.c``, ``a%2540b.c`` and ``a@b.c`` give one pseudonym, the one ``uid=a@b.c`` gets; a
  ``+`` stays a ``+``);
- every other value is removed (``email=``).

Both ``&`` and ``;`` separate parameters (the output uses ``&``). A part without ``=`` (``?a@b.c``,
``#section-2``) is all value: it is dropped. So is a parameter whose name, decoded, is not a
plain name (letters, digits, ``_ - . [ ]``, at most 64). A fragment is treated like a query
string. User info (``https://user:password@host/``) is removed from the authority. A URL without
``?``, ``#`` or ``@`` is returned as is, at the cost of three substring tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Final
from urllib.parse import unquote

from lvp.cache import BoundedCache

#: How many rounds of URL-decoding a value gets before it is pseudonymized (double-encoded
#: values are common: a URL inside a ``redirect=`` parameter).
MAX_DECODE_ROUNDS: Final = 4
_PLAIN_NAME: Final = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,64}\Z")
_SEPARATORS: Final = re.compile(r"[&;]")


def decode_fully(value: str) -> str:
    """``value`` URL-decoded until it stops changing (at most 4 rounds). ``+`` stays a ``+``:
    identifiers hold plus signs (``alice+tag@example.com``) far more often than spaces, and the
    pseudonym must be the one the raw identifier gets."""
    for _ in range(MAX_DECODE_ROUNDS):
        if "%" not in value:
            break
        decoded = unquote(value)
        if decoded == value:
            break
        value = decoded
    return value


class _Names:
    """A set of parameter names, lowercase; ``name*`` matches every name with that prefix."""

    __slots__ = ("exact", "prefixes")

    def __init__(self, patterns: Iterable[str]) -> None:
        pats = [p.strip().lower() for p in patterns if p.strip()]
        self.exact = frozenset(p for p in pats if not p.endswith("*"))
        self.prefixes = tuple(p[:-1] for p in pats if p.endswith("*"))

    def __contains__(self, name: str) -> bool:
        return name in self.exact or (bool(self.prefixes) and name.startswith(self.prefixes))


class UrlScrubber:
    """Scrubs URLs under one policy (see the module docstring); one per collector."""

    def __init__(
        self,
        pseudonym: Callable[[str], str],
        keep: Iterable[str] = ("utm_*",),
        pseudonymize: Iterable[str] = (),
        cache_size: int = 10_000,
    ) -> None:
        self.pseudonym = pseudonym
        self.keep = _Names(keep)
        self.pseudonymized = _Names(pseudonymize)
        self._cache: BoundedCache[str, str] = BoundedCache(cache_size)

    def __call__(self, url: str) -> str:
        """``url`` with its query and fragment values scrubbed and its user info removed."""
        if "?" not in url and "#" not in url and "@" not in url:
            return url
        hit = self._cache.get(url)
        if hit is None:
            hit = self._cache.put(url, self.scrub(url))
        return hit

    def scrub(self, url: str) -> str:
        base, hash_, fragment = url.partition("#")
        head, q, query = base.partition("?")
        if "@" in head:
            head = strip_userinfo(head)
        out = head
        if q:
            query = self.params(query)
            if query:
                out += "?" + query
        if hash_:
            fragment = self.params(fragment)
            if fragment:
                out += "#" + fragment
        return out

    def params(self, text: str) -> str:
        """A query string (or query-like fragment) with each value kept, pseudonymized or removed."""
        out: list[str] = []
        for part in _SEPARATORS.split(text) if ";" in text else text.split("&"):
            name, eq, value = part.partition("=")
            if not eq:
                continue  # empty, or a bare value (``?alice@example.com``)
            key = decode_fully(name) if "%" in name or "+" in name else name
            if not _PLAIN_NAME.match(key):
                continue
            low = key.lower()
            if low in self.keep:
                out.append(part)
            elif value and low in self.pseudonymized:
                out.append(key + "=" + self.pseudonym(decode_fully(value)))
            else:
                out.append(key + "=")
        return "&".join(out)


def strip_userinfo(head: str) -> str:
    """``scheme://user:password@host/path`` -> ``scheme://host/path`` (``head`` has no query)."""
    scheme, sep, rest = head.partition("//")
    if not sep:
        return head
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return head
    return scheme + sep + authority.rpartition("@")[2] + slash + path
