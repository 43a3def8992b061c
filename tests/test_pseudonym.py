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
    for raw in ["a", "b", "c", "a", "d", "é", "\udcff", "a"]:
        assert p(raw) == pseudonymize(raw, b"k")
    assert Pseudonymizer(b"k2")("a") == pseudonymize("a", b"k2") != p("a")


def test_a_full_cache_drops_its_oldest_quarter_not_everything() -> None:
    p = Pseudonymizer(b"k", cache_size=8)
    for i in range(8):
        p(f"id-{i}")
    p("id-8")  # full: the two oldest go, the rest stay
    assert list(p._cache) == [f"id-{i}" for i in range(2, 9)]
    assert all(p._cache[f"id-{i}"] == pseudonymize(f"id-{i}", b"k") for i in range(2, 9))


def test_ip_anonymization() -> None:
    assert anonymize_ip("203.0.113.77") == "203.0.113.x"
    assert anonymize_ip("2001:db8:85a3:8d3:1319:8a2e:370:7348") == "2001:db8:85a3:x:x:x:x:x"
    assert anonymize_ip("::ffff:198.51.100.9") == "198.51.100.x"
    assert anonymize_ip("not-an-ip") == ""
    assert anonymize_ip("") == ""


def test_ipv6_transition_addresses_lose_their_embedded_ipv4() -> None:
    """6to4's /48 prefix is the whole IPv4 address, Teredo and NAT64 carry it in the low bits:
    each becomes its IPv4 address, masked, and no form of the full IPv4 survives (issue #12)."""
    cases = {
        "2002:c633:6465::1": "198.51.100.x",  # 6to4 of 198.51.100.101
        "2002:c633:6465:12:34:56:78:9a": "198.51.100.x",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2": "192.0.2.x",  # Teredo, client 192.0.2.45
        "64:ff9b::c633:6465": "198.51.100.x",  # NAT64 well-known prefix
        "64:ff9b::198.51.100.101": "198.51.100.x",
        "::ffff:198.51.100.101": "198.51.100.x",
        "::FFFF:C633:6465": "198.51.100.x",
    }
    for raw, expected in cases.items():
        out = anonymize_ip(raw)
        assert out == expected, raw
        assert "c633:6465" not in out and "c633:64" not in out and "198.51.100.101" not in out
    # an ordinary global address keeps its /48
    assert anonymize_ip("2a00:1450:4001:82b::200e") == "2a00:1450:4001:x:x:x:x:x"


def test_the_cache_size_is_a_setting_of_the_collector_and_the_consumer() -> None:
    """LVP_PSEUDONYM_CACHE_SIZE bounds the collector's cache (and a consumer's that
    pseudonymizes its input): an audience larger than the default needs a larger one."""
    from collector.identity import Identities
    from lvp.config import Settings
    from profiles.consumer import ProfilesConsumer

    key = b"k" * 32
    small = Settings.from_env({"LVP_PSEUDONYM_CACHE_SIZE": "8"})
    assert small.pseudonym_cache_size == 8 and Settings.from_env({}).pseudonym_cache_size == 100_000
    ids = Identities.from_settings(key, small)
    for i in range(50):
        assert ids.pseudonym(f"viewer-{i}") == pseudonymize(f"viewer-{i}", key)
    assert 0 < len(ids.pseudonym) <= 8
    large = Identities.from_settings(key, Settings.from_env({"LVP_PSEUDONYM_CACHE_SIZE": "1000"}))
    for i in range(50):
        large.pseudonym(f"viewer-{i}")
    assert len(large.pseudonym) == 50
    # `lvp profiles` pseudonymizing its input (an upstream pipeline's raw lines) takes it too
    consumer = ProfilesConsumer(
        small.with_(pseudonym_key="k" * 32, aws_endpoint_url="http://127.0.0.1:9"), pseudonymize_input=True
    )
    try:
        decode = consumer.decoder.pseudonymize
        assert decode is not None
        for i in range(50):
            assert decode(f"viewer-{i}") == pseudonymize(f"viewer-{i}", b"k" * 32)
        assert isinstance(decode, Pseudonymizer) and 0 < len(decode) <= 8
    finally:
        consumer._pool.shutdown()
        consumer._loader.shutdown()
