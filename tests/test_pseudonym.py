from __future__ import annotations

import hashlib
import hmac

from lvp.pseudonym import Pseudonymizer, anonymize_ip, is_pseudonym, pseudonymize


def test_pseudonym_is_keyed_hmac_sha256_hex() -> None:
    expected = hmac.new(b"k1", b"alice@example.com", hashlib.sha256).hexdigest()
    assert pseudonymize("alice@example.com", b"k1") == expected
    assert pseudonymize("alice@example.com", b"k2") != expected
    assert is_pseudonym(expected) and not is_pseudonym("alice")
    assert pseudonymize("", b"k1") == ""


def test_cached_pseudonymizer_agrees() -> None:
    p = Pseudonymizer(b"k", cache_size=2)
    for raw in ["a", "b", "c", "a", "d"]:
        assert p(raw) == pseudonymize(raw, b"k")


def test_ip_anonymization() -> None:
    assert anonymize_ip("203.0.113.77") == "203.0.113.x"
    assert anonymize_ip("2001:db8:85a3:8d3:1319:8a2e:370:7348") == "2001:db8:85a3:x:x:x:x:x"
    assert anonymize_ip("::ffff:198.51.100.9") == "198.51.100.x"
    assert anonymize_ip("not-an-ip") == ""
    assert anonymize_ip("") == ""
