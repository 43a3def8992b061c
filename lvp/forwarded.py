"""Who is on the other end of a request behind load balancers: the client address from
``X-Forwarded-For`` and the scheme from ``X-Forwarded-Proto``, as far as the proxies in front of
us are trusted. The collector (``LVP_TRUSTED_PROXIES``) and the viewer
(``LVP_VIEWER_TRUSTED_PROXIES``) read them with the same rule:

* ``-1`` — the first (left-most) entry: what the client claims (Snowplow's collector does this);
* ``0`` — ignore the headers: the TCP peer and the connection's own scheme;
* ``N`` — the N-th entry from the right: the value the outermost of your N proxies saw (each
  proxy appends what it saw), or the first entry when there are fewer.
"""

from __future__ import annotations

from collections.abc import Mapping


def first_forwarded_for(value: str) -> str:
    """The client address in ``X-Forwarded-For`` (its first hop), without port or brackets."""
    return _address(value.split(",", 1)[0])


def _address(hop: str) -> str:
    """One ``X-Forwarded-For`` entry without port or brackets."""
    hop = hop.strip()
    if hop.startswith("["):  # [v6]:port
        return hop[1 : hop.find("]")] if "]" in hop else ""
    if hop.count(":") == 1:  # v4:port
        return hop.split(":", 1)[0]
    return hop


def forwarded_entry(value: str, trusted_proxies: int) -> str:
    """The entry of a comma-separated forwarding header that ``trusted_proxies`` selects
    (see the module doc); ``""`` for 0."""
    if trusted_proxies == 0:
        return ""
    entries = value.split(",")
    if trusted_proxies < 0:
        return entries[0].strip()
    return entries[max(0, len(entries) - trusted_proxies)].strip()


def client_ip(headers: Mapping[str, str], peer: str | None, trusted_proxies: int = -1) -> str:
    """The raw client IP: the ``X-Forwarded-For`` entry ``trusted_proxies`` selects, without port
    or brackets; the peer when there is no header (or with 0)."""
    xff = headers.get("x-forwarded-for") if trusted_proxies != 0 else None
    if xff:
        hop = _address(forwarded_entry(xff, trusted_proxies))
        if hop:
            return hop
    return peer or ""


def client_scheme(headers: Mapping[str, str], scheme: str, trusted_proxies: int) -> str:
    """``http`` or ``https`` as the client used it: the ``X-Forwarded-Proto`` entry that
    ``trusted_proxies`` selects, else the connection's own ``scheme``."""
    proto = headers.get("x-forwarded-proto") if trusted_proxies != 0 else None
    if proto:
        value = forwarded_entry(proto, trusted_proxies).lower()
        if value in ("http", "https"):
            return value
    return scheme
