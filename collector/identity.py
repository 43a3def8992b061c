"""Who sent a request, and what of it may travel on: the network user id (``sp`` cookie), the
``SP-Anonymous`` header, the client IP, and the pseudonyms that replace raw identifiers.

Raw values never leave the collector's memory (its request processing and its bounded caches:
pseudonyms and scrub targets are kept per identifier and per viewer): the enriched event carries
HMAC pseudonyms (:mod:`lvp.pseudonym`) and an anonymized IP; :meth:`Identities.scrub` replaces
any raw identifier that still appears elsewhere in an outgoing message.
"""

from __future__ import annotations

import functools
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, quote_plus

import orjson

from collector.urlscrub import UrlScrubber
from lvp.cache import BoundedCache
from lvp.forwarded import client_ip
from lvp.forwarded import first_forwarded_for as first_forwarded_for  # re-exported
from lvp.pseudonym import CACHE_SIZE, Pseudonymizer, anonymize_ip

if TYPE_CHECKING:
    from lvp.config import Settings

ANONYMOUS_NUID: Final = "00000000-0000-0000-0000-000000000000"
COOKIE_MAX_AGE_S: Final = 365 * 24 * 3600
#: Tracker parameters that carry user identifiers (pseudonymized) or the IP (anonymized).
IDENTIFIER_PARAMS: Final = ("uid", "duid", "nuid", "tnuid", "fp")
IP_PARAM: Final = "ip"
#: Raw values shorter than this are not searched for in free text (too likely to hit by chance).
MIN_SCRUB_LENGTH: Final = 6
_CLIENT_SESSION: Final = "iglu:com.snowplowanalytics.snowplow/client_session/jsonschema/"
#: Containers nested deeper than this are cut from scrubbed JSON (orjson writes at most 255 levels).
MAX_SCRUB_DEPTH: Final = 100
_WHITESPACE: Final = str.maketrans({"\t": " ", "\n": " ", "\r": " "})
_URL_SAFE_PREFIX: Final = re.compile(r"[A-Za-z0-9_.\-~]*")
_COOKIE_VALUE_RE = re.compile(r"^[A-Za-z0-9._\-]{1,128}\Z")


@functools.lru_cache(maxsize=4096)
def text_forms(raw: str) -> tuple[str, ...]:
    """The forms ``raw`` takes in serialized text: as is, JSON-escaped (quotes, backslashes,
    control characters) and with tabs/newlines turned into spaces (TSV cleaning). The URL-encoded
    forms are :func:`url_forms`; :func:`forms_in` looks for both."""
    forms = [raw]
    try:
        escaped = orjson.dumps(raw).decode()[1:-1]
    except TypeError:  # lone surrogates: never in decoded input, but do not fail on them
        escaped = raw
    for form in (escaped, raw.translate(_WHITESPACE)):
        if form not in forms:
            forms.append(form)
    return tuple(forms)


def forms_in(raw: str, text: str) -> list[str]:
    """The :func:`text_forms` and :func:`url_forms` of ``raw`` that occur in ``text``. The URL
    forms are only worked out when ``text`` holds the part of ``raw`` before its first character
    that URL-encoding changes, followed by ``%`` or ``+`` (encoding is costly, and the raw value
    is new with every viewer)."""
    found = [form for form in text_forms(raw) if form in text]
    hints = url_hints(raw)
    if hints and any(hint in text for hint in hints):
        found += [form for form in url_forms(raw) if form in text and form not in found]
    return found


def probes(raw: str) -> tuple[str, ...]:
    """What to look for to tell whether ``raw`` may occur in a text, in any form: its
    :func:`text_forms` and :func:`url_hints` (a hit is then confirmed with :func:`forms_in`).
    Worked out in one go, not cached here: the hot path keeps the result per viewer
    (:meth:`Identities.scrub_targets`); a bad row works it out again."""
    forms: tuple[str, ...] = text_forms.__wrapped__(raw)
    end = _URL_SAFE_PREFIX.match(raw).end()  # type: ignore[union-attr]  # matches the empty string
    if end == len(raw):
        return forms
    head = raw[:end]
    return forms + ((head + "%", head + "+") if raw[end] == " " else (head + "%",))


@functools.lru_cache(maxsize=4096)
def url_hints(raw: str) -> tuple[str, ...]:
    """What every :func:`url_forms` of ``raw`` starts with: its head up to the first character
    URL-encoding changes, then ``%`` (or ``+`` for a space); empty when encoding changes nothing."""
    end = _URL_SAFE_PREFIX.match(raw).end()  # type: ignore[union-attr]  # matches the empty string
    if end == len(raw):
        return ()
    head = raw[:end]
    return (head + "%", head + "+") if raw[end] == " " else (head + "%",)


@functools.lru_cache(maxsize=4096)
def url_forms(raw: str) -> tuple[str, ...]:
    """``raw`` URL-encoded (``%20`` and ``+`` for spaces, upper- and lowercase hex) and
    double-encoded, where that differs from ``raw`` (an e-mail's ``@``, an IPv6 address's ``:``)."""
    if _URL_SAFE_PREFIX.fullmatch(raw):  # UUIDs, IPv4 addresses, most ids: encoding leaves them be
        return ()
    forms: list[str] = []
    try:
        once = quote(raw, safe="")
        candidates = (once, once.lower(), quote_plus(raw, safe=""), quote(once, safe=""))
    except UnicodeEncodeError:  # lone surrogates
        return ()
    for form in candidates:
        if form != raw and form not in forms:
            forms.append(form)
    return tuple(forms)


def uuid_shaped(pseudonym: str) -> str:
    """A 64-hex pseudonym as a lowercase UUID (its first 128 bits), for schema fields that must
    be UUIDs (``client_session.userId``)."""
    h = pseudonym
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


@dataclass(slots=True)
class RequestIdentity:
    """Identity facts of one request (raw values: in memory only)."""

    anonymous: bool
    nuid: str  # raw network user id (cookie value we set / keep); ANONYMOUS_NUID when anonymous
    nuid_pseudonym: str
    ip: str  # raw client IP ("" when anonymous)
    ip_anonymized: str
    set_cookie: bool
    scrub_pairs: list[tuple[str, str]] = field(default_factory=list)  # (raw, replacement)


#: (raw, replacement) pairs of one event's identifiers, and every probe of their raw values
ScrubTargets = tuple[list[tuple[str, str]], tuple[str, ...]]


class Identities:
    """Pseudonyms, the network user id cookie, and scrubbing; one per collector.

    ``pseudonym_cache_size`` bounds the pseudonyms it remembers (about three identifiers per
    viewer: cookie, domain user id, user id); its caches of one entry per viewer (the scrub
    targets of each combination of identifiers, and the enricher's and URL scrubber's URLs, when
    URLs differ per viewer) hold a third as many, :attr:`viewer_cache_size`."""

    def __init__(
        self,
        key: bytes,
        cookie_name: str = "sp",
        cookie_domain: str = "",
        trusted_proxies: int = -1,
        *,
        url_keep: Iterable[str] = ("utm_*",),
        url_pseudonymize: Iterable[str] = (),
        keep_page_title: bool = False,
        keep_transaction_fields: bool = False,
        pseudonym_cache_size: int = CACHE_SIZE,
    ) -> None:
        self.trusted_proxies = trusted_proxies
        self.key = key
        self.pseudonym = Pseudonymizer(key, pseudonym_cache_size)
        self.viewer_cache_size = max(1, pseudonym_cache_size // 3)
        self._targets: BoundedCache[tuple[Any, ...], ScrubTargets] = BoundedCache(self.viewer_cache_size)
        #: client address -> anonymized (a viewer's requests come from one address)
        self._anonymized: BoundedCache[str, str] = BoundedCache(self.viewer_cache_size)
        self.cookie_name = cookie_name
        self.cookie_domain = cookie_domain
        self._expires_at = 0
        self._expires = ""
        #: page and referrer URLs: query/fragment values kept, pseudonymized or removed
        self.urls = UrlScrubber(self.pseudonym, url_keep, url_pseudonymize, self.viewer_cache_size)
        self.keep_page_title = keep_page_title
        self.keep_transaction_fields = keep_transaction_fields

    @classmethod
    def from_settings(cls, key: bytes, settings: Settings) -> Identities:
        return cls(
            key,
            settings.cookie_name,
            settings.cookie_domain,
            settings.trusted_proxies,
            url_keep=settings.url_keep_param_list,
            url_pseudonymize=settings.url_pseudonymize_param_list,
            keep_page_title=settings.keep_page_title,
            keep_transaction_fields=settings.keep_transaction_fields,
            pseudonym_cache_size=settings.pseudonym_cache_size,
        )

    # -- per request --
    def for_request(
        self,
        headers: Mapping[str, str],
        cookies: Mapping[str, str],
        peer: str | None,
        nuid_param: str | None,
    ) -> RequestIdentity:
        anonymous = "sp-anonymous" in headers
        if anonymous:
            return RequestIdentity(True, ANONYMOUS_NUID, ANONYMOUS_NUID, "", "", False)
        nuid = nuid_param or cookies.get(self.cookie_name) or ""
        if not nuid or not _COOKIE_VALUE_RE.match(nuid):
            nuid = str(uuid.uuid4())
        ip = client_ip(headers, peer, self.trusted_proxies)
        anonymized = self._anonymized.get(ip)
        if anonymized is None:
            anonymized = self._anonymized.put(ip, anonymize_ip(ip))
        ident = RequestIdentity(False, nuid, self.pseudonym(nuid), ip, anonymized, True)
        if len(nuid) >= MIN_SCRUB_LENGTH:
            ident.scrub_pairs.append((nuid, ident.nuid_pseudonym))
        if len(ip) >= MIN_SCRUB_LENGTH:
            ident.scrub_pairs.append((ip, ident.ip_anonymized or "x"))
        return ident

    def cookie_header(self, nuid: str) -> str:
        """``Set-Cookie`` for the network user id: 1 year, Secure, HttpOnly, SameSite=None."""
        now = int(time.time())
        if now != self._expires_at:
            self._expires_at = now
            self._expires = formatdate(now + COOKIE_MAX_AGE_S, usegmt=True)
        parts = [
            f"{self.cookie_name}={nuid}",
            f"Expires={self._expires}",
            f"Max-Age={COOKIE_MAX_AGE_S}",
            "Path=/",
        ]
        if self.cookie_domain:
            parts.append(f"Domain={self.cookie_domain}")
        parts += ["Secure", "HttpOnly", "SameSite=None"]
        return "; ".join(parts)

    # -- per event --
    def scrub_pairs(self, params: Mapping[str, Any], ident: RequestIdentity) -> list[tuple[str, str]]:
        """(raw, replacement) for every identifier of one event long enough to search for."""
        return self.scrub_targets(params, ident)[0]

    def scrub_targets(self, params: Mapping[str, Any], ident: RequestIdentity) -> ScrubTargets:
        """:meth:`scrub_pairs` and every :func:`probes` of their raw values (in that order, each
        once). A viewer's events share them from request to request (same cookie, address and
        ids), so they are kept per combination of identifiers (:attr:`viewer_cache_size` of
        them)."""
        get = params.get
        key = (
            ident.anonymous, ident.nuid, ident.ip,
            get("uid"), get("duid"), get("nuid"), get("tnuid"), get("fp"), get(IP_PARAM),
        )  # fmt: skip
        try:
            hit = self._targets.get(key)
        except TypeError:  # a value that is not text, nor hashable: worked out, not kept
            return self._scrub_targets(params, ident)
        if hit is None:
            hit = self._targets.put(key, self._scrub_targets(params, ident))
        return hit

    def _scrub_targets(self, params: Mapping[str, Any], ident: RequestIdentity) -> ScrubTargets:
        get = params.get
        pairs = list(ident.scrub_pairs)
        for name in IDENTIFIER_PARAMS:
            raw = get(name)
            if isinstance(raw, str) and len(raw) >= MIN_SCRUB_LENGTH:
                pairs.append((raw, self.pseudonym(raw)))
        raw_ip = get(IP_PARAM)
        if isinstance(raw_ip, str) and len(raw_ip) >= MIN_SCRUB_LENGTH:
            pairs.append((raw_ip, anonymize_ip(raw_ip) or "x"))
        return pairs, tuple(dict.fromkeys(p for raw, _ in pairs for p in probes(raw)))

    @staticmethod
    def scrub(text: str, pairs: Iterable[tuple[str, str]]) -> str:
        """Replace every raw value in ``text``, and its :func:`url_forms` (longest first, so no
        raw value survives partly). Only for plain text: in serialized JSON or TSV a raw value
        may span the syntax (a run of tabs, ``{"schema":``), so serialized data is scrubbed with
        :meth:`scrub_structure`."""
        for raw, replacement in sorted(pairs, key=lambda p: -len(p[0])):
            if raw in text:
                text = text.replace(raw, replacement)
            for form in url_forms(raw):
                if form in text:
                    text = text.replace(form, replacement)
        return text

    @staticmethod
    def appears(text: str, pairs: Iterable[tuple[str, str]]) -> bool:
        """Does any raw value occur in serialized ``text``, in any of its :func:`forms_in`?"""
        return any(p in text for raw, _ in pairs for p in probes(raw)) and any(
            forms_in(raw, text) for raw, _ in pairs
        )

    def scrub_structure(self, value: Any, pairs: list[tuple[str, str]], depth: int = 0) -> Any:
        """A JSON value with every raw value replaced inside its strings (keys included); the
        structure itself is never touched. Containers deeper than MAX_SCRUB_DEPTH are cut."""
        if isinstance(value, str):
            return self.scrub(value, pairs)
        if isinstance(value, (dict, list, tuple)) and depth >= MAX_SCRUB_DEPTH:
            return "<nested too deep>"
        if isinstance(value, dict):
            return {
                self.scrub(str(k), pairs): self.scrub_structure(v, pairs, depth + 1) for k, v in value.items()
            }
        if isinstance(value, (list, tuple)):
            return [self.scrub_structure(v, pairs, depth + 1) for v in value]
        return value

    def scrub_json_text(self, text: str, pairs: list[tuple[str, str]]) -> str:
        """:meth:`scrub_structure` of JSON text (text that is not JSON is scrubbed as plain text)."""
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            return self.scrub(text, pairs)
        try:
            return orjson.dumps(self.scrub_structure(doc, pairs)).decode()
        except TypeError:
            return self.scrub(text, pairs)

    def pseudonymize_entities(self, entities: list[dict[str, Any]]) -> bool:
        """Replace user identifiers inside known entities (``client_session.userId``), in place;
        True when something was replaced. The replacement is UUID-shaped (the schema requires it)
        and is the first 128 bits of the same pseudonym ``domain_userid`` gets, so the two stay
        linkable."""
        changed = False
        for ent in entities:
            schema = ent.get("schema")
            if isinstance(schema, str) and schema.startswith(_CLIENT_SESSION):
                data = ent.get("data")
                if isinstance(data, dict) and isinstance(data.get("userId"), str) and data["userId"]:
                    data["userId"] = uuid_shaped(self.pseudonym(data["userId"]))
                    changed = True
        return changed
