from __future__ import annotations

import re
import uuid

import pytest

from collector.badrows import REDACTED, redact_text
from collector.identity import ANONYMOUS_NUID, Identities, client_ip, first_forwarded_for, uuid_shaped
from collector.ratelimit import RateLimiter
from lvp.pseudonym import pseudonymize

KEY = b"k"


@pytest.mark.parametrize(
    ("header", "ip"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("203.0.113.7, 10.0.0.1, 10.0.0.2", "203.0.113.7"),
        ("203.0.113.7:5555", "203.0.113.7"),
        ("[2001:db8::1]:443, 10.0.0.1", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
    ],
)
def test_first_forwarded_for_hop(header: str, ip: str) -> None:
    assert first_forwarded_for(header) == ip
    assert client_ip({"x-forwarded-for": header}, "10.9.9.9") == ip


@pytest.mark.parametrize(
    ("trusted", "header", "ip"),
    [
        (0, "203.0.113.7", "10.9.9.9"),  # X-Forwarded-For ignored: the peer
        (1, "203.0.113.7", "203.0.113.7"),
        (1, "6.6.6.6, 203.0.113.7", "203.0.113.7"),  # a claimed first hop is not believed
        (2, "6.6.6.6, 203.0.113.7, 10.0.0.1", "203.0.113.7"),
        (2, "203.0.113.7:5555, 10.0.0.1", "203.0.113.7"),
        (3, "203.0.113.7, 10.0.0.1", "203.0.113.7"),  # fewer hops than proxies: the first
        (1, "6.6.6.6, [2001:db8::1]:443", "2001:db8::1"),
        (-1, "6.6.6.6, 203.0.113.7", "6.6.6.6"),  # the default: the first hop, as Snowplow
        (1, " , ", "10.9.9.9"),  # an empty hop: the peer
    ],
)
def test_client_ip_with_trusted_proxies(trusted: int, header: str, ip: str) -> None:
    assert client_ip({"x-forwarded-for": header}, "10.9.9.9", trusted) == ip
    assert client_ip({}, "10.9.9.9", trusted) == "10.9.9.9"


def test_peer_address_without_forwarded_for() -> None:
    assert client_ip({}, "10.9.9.9") == "10.9.9.9"
    assert client_ip({"x-forwarded-for": " "}, "10.9.9.9") == "10.9.9.9"


def test_network_user_id_precedence() -> None:
    ids = Identities(KEY)
    existing = "11111111-2222-4333-8444-555555555555"
    param = ids.for_request({}, {"sp": existing}, "1.2.3.4", "from-param-123")
    assert param.nuid == "from-param-123" and param.set_cookie
    cookie = ids.for_request({}, {"sp": existing}, "1.2.3.4", None)
    assert cookie.nuid == existing and cookie.nuid_pseudonym == pseudonymize(existing, KEY)
    fresh = ids.for_request({}, {}, "1.2.3.4", None)
    assert uuid.UUID(fresh.nuid).version == 4
    assert ids.for_request({}, {"sp": "bad value;"}, None, None).nuid != "bad value;"
    anon = ids.for_request({"sp-anonymous": "*"}, {"sp": existing}, "1.2.3.4", "from-param-123")
    assert anon.anonymous and anon.nuid == ANONYMOUS_NUID and anon.ip == "" and not anon.set_cookie


def test_cookie_attributes() -> None:
    header = Identities(KEY, cookie_name="sp", cookie_domain=".example.com").cookie_header("abc")
    parts = header.split("; ")
    assert parts[0] == "sp=abc"
    assert {
        "Max-Age=31536000",
        "Path=/",
        "Domain=.example.com",
        "Secure",
        "HttpOnly",
        "SameSite=None",
    } <= set(parts)
    assert any(re.match(r"Expires=\w{3}, \d{2} \w{3} \d{4} \d\d:\d\d:\d\d GMT$", p) for p in parts)
    assert "Domain" not in Identities(KEY).cookie_header("abc")


def test_scrub_replaces_longest_raw_values_first() -> None:
    ids = Identities(KEY)
    ident = ids.for_request({}, {}, "203.0.113.77", None)
    pairs = ids.scrub_pairs({"uid": "alice", "duid": "alice-device-1", "ip": "198.51.100.5"}, ident)
    text = ids.scrub("alice-device-1 203.0.113.77 198.51.100.5 " + ident.nuid, pairs)
    assert "alice-device-1" not in text and pseudonymize("alice-device-1", KEY) in text
    assert "203.0.113.x" in text and "198.51.100.x" in text and ident.nuid not in text
    assert "alice" in ids.scrub("alice", pairs)  # too short to search for safely


def test_uuid_shaped_pseudonym() -> None:
    p = pseudonymize("x", KEY)
    assert uuid.UUID(uuid_shaped(p)).hex == p[:32]


def test_unparseable_payloads_are_redacted() -> None:
    text = (
        '{"uid":"alice","co":"{\\"userId\\":\\"dev-1\\"}","e":"pv"} '
        "e=pv&duid=dev-2&url=x&_sp=dev-3.1&tnuid=n1;fp=f1 ip=1.2.3.4 nuid=n2"
    )
    out = redact_text(text)
    for raw in ("alice", "dev-1", "dev-2", "dev-3", "n1", "f1", "n2"):
        assert raw not in out, raw
    assert out.count(REDACTED) == 8 and '"e":"pv"' in out and "url=x" in out


def test_rate_limiter_token_bucket() -> None:
    limiter = RateLimiter(2.0, KEY)  # 2 req/s, burst 2
    assert limiter.check("1.2.3.4", now=0.0) == 0
    assert limiter.check("1.2.3.4", now=0.0) == 0
    wait = limiter.check("1.2.3.4", now=0.0)
    assert wait == pytest.approx(0.5) and limiter.retry_after(wait) == 1
    assert limiter.check("5.6.7.8", now=0.0) == 0  # per client
    assert limiter.check("1.2.3.4", now=0.5) == 0  # refilled
    assert all("1.2.3.4" not in repr(k) for k in limiter._buckets)  # keyed by a hash, not the IP


def test_scrub_targets_are_kept_per_viewer_across_requests() -> None:
    ids = Identities(KEY)
    params = {"uid": "alice@example.com", "duid": "alice-device-1", "ip": "198.51.100.5", "e": "pv"}
    first = ids.scrub_targets(params, ids.for_request({}, {"sp": "cookie-123456"}, "203.0.113.7", None))
    again = ids.scrub_targets(dict(params), ids.for_request({}, {"sp": "cookie-123456"}, "203.0.113.7", None))
    # a later request of the same viewer: nothing worked out again (the same list; the tuple
    # around it is built anew on return when the module is compiled)
    assert again[0] is first[0] and again == first
    pairs, found = first
    raws = ["cookie-123456", "203.0.113.7", "alice@example.com", "alice-device-1", "198.51.100.5"]
    assert [raw for raw, _ in pairs] == raws
    assert pairs[2] == ("alice@example.com", pseudonymize("alice@example.com", KEY))
    # every probe once, in order: the e-mail's URL-encoded head ("alice%") too
    assert found == (*raws[:3], "alice%", *raws[3:])
    other = ids.scrub_targets(params, ids.for_request({}, {"sp": "cookie-654321"}, "203.0.113.7", None))
    assert other is not first and other[0][0] == ("cookie-654321", pseudonymize("cookie-654321", KEY))


def test_scrub_targets_of_an_anonymous_request_hold_no_request_identifiers() -> None:
    ids = Identities(KEY)
    params = {"duid": "device-123456"}
    anonymous = ids.for_request({"sp-anonymous": "*"}, {}, "203.0.113.7", None)
    named = ids.for_request({}, {"sp": ANONYMOUS_NUID}, "", None)  # same cookie value, not anonymous
    assert [raw for raw, _ in ids.scrub_pairs(params, anonymous)] == ["device-123456"]
    assert ids.scrub_pairs(params, named)[0][0] == ANONYMOUS_NUID


def test_scrub_targets_skip_values_that_are_not_text() -> None:
    ids = Identities(KEY)
    ident = ids.for_request({"sp-anonymous": "*"}, {}, None, None)
    pairs, found = ids.scrub_targets({"uid": 12345678, "duid": ["x"], "fp": "short"}, ident)
    assert pairs == [] and found == ()


@pytest.mark.parametrize(("size", "per_viewer"), [(12, 4), (100_000, 33_333), (2, 1)])
def test_the_caches_are_bounded_by_the_pseudonym_cache_size(size: int, per_viewer: int) -> None:
    """Pseudonyms: ``size`` identifiers; one entry per viewer: a third as many."""
    ids = Identities(KEY, pseudonym_cache_size=size)
    assert ids.viewer_cache_size == per_viewer
    ident = ids.for_request({"sp-anonymous": "*"}, {}, None, None)
    for i in range(min(size, 20) + 5):
        ids.scrub_targets({"duid": f"device-{i:06d}"}, ident)
        ids.urls(f"https://example.com/watch?viewer=device-{i:06d}")
        assert ids.for_request({}, {}, f"198.51.100.{i}", None).ip_anonymized == "198.51.100.x"
    assert 0 < len(ids._targets) <= per_viewer and 0 < len(ids.urls._cache) <= per_viewer
    assert 0 < len(ids._anonymized) <= per_viewer
    assert 0 < len(ids.pseudonym) <= size


def test_scrub_targets_of_values_that_cannot_be_keys_are_worked_out_each_time() -> None:
    ids = Identities(KEY)
    ident = ids.for_request({"sp-anonymous": "*"}, {}, None, None)
    params: dict[str, object] = {"duid": "device-123456", "uid": ["not", "text"], "fp": {"x": 1}}
    pairs, found = ids.scrub_targets(params, ident)
    assert pairs == [("device-123456", pseudonymize("device-123456", KEY))] and found == ("device-123456",)
    assert len(ids._targets) == 0  # (nothing kept under a key that cannot be one)


def test_a_viewers_address_is_anonymized_once() -> None:
    ids = Identities(KEY)
    first = ids.for_request({}, {}, "2001:db8:85a3:8d3:1319:8a2e:370:7348", None)
    again = ids.for_request({}, {}, "2001:db8:85a3:8d3:1319:8a2e:370:7348", None)
    assert first.ip_anonymized == again.ip_anonymized == "2001:db8:85a3:x:x:x:x:x"
    assert list(ids._anonymized.items()) == [
        ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3:x:x:x:x:x")
    ]
    assert ids.for_request({}, {}, "not an address", None).ip_anonymized == ""  # (dropped, as before)
