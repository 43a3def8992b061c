"""Page and referrer URLs lose query/fragment values unless kept or pseudonymized (issue #12)."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.urlscrub import UrlScrubber, decode_fully, strip_userinfo
from lvp.pseudonym import Pseudonymizer, pseudonymize

KEY = b"urlscrub-tests-pseudonym-key-0123456789"
EMAIL = "alice.smith@example.com"
P_EMAIL = pseudonymize(EMAIL, KEY)


@pytest.fixture
def scrub() -> UrlScrubber:
    return UrlScrubber(Pseudonymizer(KEY), keep=("utm_*", "v"), pseudonymize=("uid", "email"))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # the common path: nothing to do, the very same object comes back
        ("https://tv.example/watch/42", "https://tv.example/watch/42"),
        # kept (prefix and exact), pseudonymized, removed
        (f"https://tv.example/w?v=42&utm_source=news&token=s3cr3t&email={EMAIL}",
         f"https://tv.example/w?v=42&utm_source=news&token=&email={P_EMAIL}"),
        # names are matched case-insensitively, values of removed names are gone whatever they are
        (f"https://tv.example/?UTM_Medium=mail&Email={EMAIL}&reset=abc%20def",
         f"https://tv.example/?UTM_Medium=mail&Email={P_EMAIL}&reset="),
        # URL-encoded and double-encoded values pseudonymize to the raw value's pseudonym
        (f"https://tv.example/?email={quote(EMAIL, safe='')}", f"https://tv.example/?email={P_EMAIL}"),
        (f"https://tv.example/?email={quote(quote(EMAIL, safe=''), safe='')}", f"https://tv.example/?email={P_EMAIL}"),
        ("https://tv.example/?email=alice.smith%2540example.com", f"https://tv.example/?email={P_EMAIL}"),
        # an encoded name is decoded to be matched (a kept pair stays verbatim); a name that is not a plain name is dropped
        ("https://tv.example/?utm%5Fsource=news&a%40b.c=1&x%3Dy=2", "https://tv.example/?utm%5Fsource=news"),
        # a parameter without a value is all value: dropped (an e-mail as a bare query)
        (f"https://tv.example/?{EMAIL}&v=1&flag", "https://tv.example/?v=1"),
        (f"https://tv.example/?{quote(EMAIL)}", "https://tv.example/"),
        # `;` separates parameters too
        (f"https://tv.example/?v=1;email={EMAIL};sid=123", f"https://tv.example/?v=1&email={P_EMAIL}&sid="),
        # fragments are scrubbed like query strings (OAuth implicit flow), anchors are dropped
        ("https://tv.example/cb#access_token=ya29.a0AfH6SM&token_type=Bearer&expires_in=3599",
         "https://tv.example/cb#access_token=&token_type=&expires_in="),
        ("https://tv.example/doc#section-2", "https://tv.example/doc"),
        (f"https://tv.example/?v=1#{EMAIL}", "https://tv.example/?v=1"),
        ("https://tv.example/?code=4/0AY0e&state=xyz#/route?uid=bob", "https://tv.example/?code=&state="),
        # user info in the authority goes, also with the password
        ("https://alice:hunter2@tv.example/w?v=1", "https://tv.example/w?v=1"),
        ("https://alice%40corp@tv.example", "https://tv.example"),
        # an @ in the path is not user info
        ("https://tv.example/u/@alice", "https://tv.example/u/@alice"),
        # empty query / fragment
        ("https://tv.example/?", "https://tv.example/"),
        ("https://tv.example/#", "https://tv.example/"),
        ("https://tv.example/?uid=", "https://tv.example/?uid="),
    ],
)  # fmt: skip
def test_scrub(scrub: UrlScrubber, url: str, expected: str) -> None:
    assert scrub(url) == expected
    assert scrub(url) == expected  # cached


def test_default_policy_keeps_only_campaign_parameters() -> None:
    scrub = UrlScrubber(Pseudonymizer(KEY))
    url = (
        "https://tv.example/w?utm_source=news&utm_medium=email&utm_campaign=dec&utm_term=x&utm_content=y"
        f"&gclid=abc&v=42&email={EMAIL}"
    )
    assert scrub(url) == (
        "https://tv.example/w?utm_source=news&utm_medium=email&utm_campaign=dec&utm_term=x&utm_content=y"
        "&gclid=&v=&email="
    )


def test_decode_fully() -> None:
    assert decode_fully("a%252540b") == "a@b"
    assert decode_fully("a+b%2Bc") == "a+b+c"  # identifiers have plus signs, not spaces
    assert decode_fully("plain") == "plain"
    assert decode_fully("%zz") == "%zz"


def test_strip_userinfo() -> None:
    assert strip_userinfo("https://u:p@h:8/x@y") == "https://h:8/x@y"
    assert strip_userinfo("mailto:a@b.c") == "mailto:a@b.c"  # no authority: nothing to strip


@settings(max_examples=120, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["q", "email", "token", "utm_source", "v", "uid", "e%2Dmail"]), st.emails()
        ),
        max_size=5,
    ),
    st.sampled_from(["&", ";"]),
    st.booleans(),
)
def test_no_removed_or_pseudonymized_value_survives_in_any_encoding(
    pairs: list[tuple[str, str]], sep: str, in_fragment: bool
) -> None:
    """Whatever e-mail addresses a URL carries, in whatever encoding, only kept parameters keep them."""
    scrub = UrlScrubber(Pseudonymizer(KEY), keep=("utm_*", "v"), pseudonymize=("uid", "email"))
    encodings = [lambda s: s, lambda s: quote(s, safe=""), lambda s: quote(quote(s, safe=""), safe="")]
    text = sep.join(f"{name}={encodings[i % 3](value)}" for i, (name, value) in enumerate(pairs))
    out = scrub("https://tv.example/p" + ("#" if in_fragment else "?") + text)
    for name, value in pairs:
        if name not in ("utm_source", "v"):
            for enc in encodings:
                if len(enc(value)) > 3:
                    kept = any(n in ("utm_source", "v") and v == value for n, v in pairs)
                    assert kept or enc(value) not in out


def test_plus_in_an_encoded_email_survives_decoding() -> None:
    raw = "alice+tag@example.com"
    for form in (raw, quote(raw, safe=""), quote(quote(raw, safe=""), safe="")):
        assert decode_fully(form) == raw
