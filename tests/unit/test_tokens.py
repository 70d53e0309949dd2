"""Access tokens: what verifies, what is refused, and with which code."""

from __future__ import annotations

import jwt
import pytest

from collab.protocol.tokens import Grant, TokenError, TokenVerifier, mint, parse_key

KEY = parse_key("k1:" + "a" * 32)
NOW = 1_900_000_000


def verifier() -> TokenVerifier:
    return TokenVerifier([KEY, parse_key("k2:" + "b" * 32)])


def test_a_minted_token_verifies_with_its_claims() -> None:
    tok = mint(KEY, "notes/*", "r", 60, subject="u1", now=NOW)
    assert verifier().verify(tok, now=NOW) == Grant("notes/*", "r", NOW + 60, "u1")


def test_tokens_from_other_backends_verify() -> None:
    """Any JWT library can mint them: header kid, HS256, the four claims."""
    tok = jwt.encode({"doc": "d", "perm": "w", "exp": NOW + 5}, "b" * 32, headers={"kid": "k2"})
    assert verifier().authorize(tok, "d", write=True, now=NOW).can_write


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"doc": "d", "perm": "w"}, "invalid token"),  # no exp
        ({"doc": "d", "perm": "x", "exp": NOW + 5}, "claims"),
        ({"doc": 5, "perm": "w", "exp": NOW + 5}, "claims"),
        ({"doc": "d", "perm": "w", "exp": NOW - 31}, "expired"),
    ],
)
def test_bad_claims_are_4401(claims: dict, reason: str) -> None:
    tok = jwt.encode(claims, "a" * 32, headers={"kid": "k1"})
    with pytest.raises(TokenError, match=reason) as caught:
        verifier().verify(tok, now=NOW)
    assert caught.value.code == 4401


def test_expiry_has_a_small_leeway_for_clock_skew() -> None:
    tok = mint(KEY, "d", "w", -10, now=NOW)
    assert verifier().verify(tok, now=NOW).doc == "d"


@pytest.mark.parametrize(
    "tok",
    [
        None,
        "",
        "x" * 5000,
        "a.b.c",
        jwt.encode({"doc": "d", "perm": "w", "exp": NOW + 5}, "a" * 32, headers={"kid": "k9"}),
        jwt.encode({"doc": "d", "perm": "w", "exp": NOW + 5}, "z" * 32, headers={"kid": "k1"}),
        jwt.encode({"doc": "d", "perm": "w", "exp": NOW + 5}, key=None, algorithm="none"),
    ],
    ids=["none", "empty", "huge", "garbage", "unknown-kid", "forged", "alg-none"],
)
def test_missing_or_forged_tokens_are_4401(tok: str | None) -> None:
    with pytest.raises(TokenError) as caught:
        verifier().verify(tok, now=NOW)
    assert caught.value.code == 4401


@pytest.mark.parametrize(
    ("granted", "doc_id", "ok"),
    [
        ("a", "a", True),
        ("a", "ab", False),
        ("notes/*", "notes/x", True),
        ("notes/*", "notes/x/y", True),
        ("notes/*", "notes", False),
        ("notes/*", "notesx", False),
        ("*", "anything/at/all", True),
    ],
)
def test_document_scope(granted: str, doc_id: str, ok: bool) -> None:
    tok = mint(KEY, granted, "w", 60, now=NOW)
    if ok:
        assert verifier().authorize(tok, doc_id, now=NOW)
    else:
        with pytest.raises(TokenError) as caught:
            verifier().authorize(tok, doc_id, now=NOW)
        assert caught.value.code == 4403


def test_writing_needs_a_write_token() -> None:
    with pytest.raises(TokenError) as caught:
        verifier().authorize(mint(KEY, "d", "r", 60, now=NOW), "d", write=True, now=NOW)
    assert caught.value.code == 4403


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError):
        parse_key("short")
