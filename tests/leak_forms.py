"""The forms a raw value can take in a sink: as is, JSON-escaped, URL-encoded (``%40``, ``+``,
lowercase hex), double-encoded, and base64 / base64url at each of the three byte alignments (a
raw value inside a longer base64-encoded text). Leak scans look for every one of them."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus


def _b64_fragments(raw: bytes) -> list[bytes]:
    """The base64 characters that encode ``raw`` wherever it starts in a longer text."""
    out = []
    for k in range(3):
        encoded = base64.b64encode(b"\0" * k + raw)
        skip = (k * 8 + 5) // 6  # characters that also carry bits of the bytes before
        full = (k + len(raw)) * 8 // 6  # characters made only of known bits
        frag = encoded[skip:full]
        out += [frag, frag.translate(bytes.maketrans(b"+/", b"-_"))]
    return out


def encoded_forms(raw: str) -> set[bytes]:
    once = quote(raw, safe="")
    forms = {
        raw,
        json.dumps(raw)[1:-1],
        json.dumps(raw, ensure_ascii=True)[1:-1],
        once,
        once.lower(),
        quote_plus(raw, safe=""),
        quote(raw),
        quote(once, safe=""),
        quote(quote(once, safe=""), safe=""),
    }
    out = {f.encode() for f in forms}
    for f in (raw, once):
        out.update(_b64_fragments(f.encode()))
    return {f for f in out if len(f) >= 6}


def leak_hits(sinks: Mapping[str, bytes], raws: Iterable[str]) -> list[tuple[str, str, bytes]]:
    """(sink, raw value, the form found) for every form of every raw value found in a sink."""
    return [
        (sink, raw, form)
        for raw in raws
        for form in sorted(encoded_forms(raw))
        for sink, blob in sinks.items()
        if form in blob
    ]
