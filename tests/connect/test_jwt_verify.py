"""The HS256 verification of every Jira and Projectrak request (`verify_symmetric`): PyJWT's decode with two of its
per-call costs taken out (addon/connect/jwt.py). What it accepts and refuses must stay PyJWT's."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.exceptions import DecodeError

from addon.connect.jwt import JwtError, _SegmentsCheckedAtOnce, verify_symmetric

SECRET = "a-shared-secret-of-sixty-four-or-more-characters-as-HS512-wants-x"
QSH = hashlib.sha256(b"POST&/events/projectrak/field-changes&").hexdigest()


def token(secret: str = SECRET, algorithm: str = "HS256", **changes: object) -> str:
    now = int(time.time())
    claims = {"iss": "client-key", "iat": now, "exp": now + 180, "qsh": QSH, "sub": "account"} | changes
    return jwt.encode(claims, secret, algorithm=algorithm)


def outcome(decode, segment: bytes) -> bytes | str:  # type: ignore[no-untyped-def]
    try:
        return decode(segment, "payload")
    except DecodeError as err:
        return f"DecodeError: {err}"


SEGMENT_BYTES = st.sampled_from(list(b"AZaz09-_=+/.! \n\xc3\xa9"))


@settings(max_examples=400, deadline=None)
@given(st.lists(SEGMENT_BYTES, max_size=24).map(bytes) | st.binary(max_size=24).map(
    lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=")))
def test_segments_are_decoded_and_refused_exactly_as_pyjwt_does(segment):
    assert outcome(_SegmentsCheckedAtOnce._decode_base64url_segment, segment) == \
        outcome(jwt.PyJWS._decode_base64url_segment, segment)


def test_a_valid_token_gives_its_claims():
    claims = verify_symmetric(token(), SECRET, expected_qsh=QSH)
    assert (claims["iss"], claims["sub"], claims["qsh"]) == ("client-key", "account", QSH)


def test_trailing_padding_is_accepted_as_pyjwt_accepts_it():
    """Some issuers pad their segments with `=`; PyJWT accepts them (signed as sent)."""
    payload = json_segment({"iss": "client-key", "iat": int(time.time()), "exp": int(time.time()) + 180,
                            "qsh": QSH, "sub": "account"})
    assert len(payload) % 4, "the test needs a payload segment that takes padding"
    padded = resign({"alg": "HS256", "typ": "JWT"}, payload + "=" * (-len(payload) % 4))
    assert verify_symmetric(padded, SECRET, expected_qsh=QSH)["iss"] == "client-key"


def refused(raw: str, secret: str = SECRET) -> str:
    with pytest.raises(JwtError) as err:
        verify_symmetric(raw, secret, expected_qsh=QSH)
    return str(err.value)


def json_segment(value: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def resign(header: dict, payload_segment: str, secret: str = SECRET) -> str:
    head = json_segment(header)
    signature = hmac.new(secret.encode(), f"{head}.{payload_segment}".encode(), hashlib.sha256).digest()
    return f"{head}.{payload_segment}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


@pytest.mark.parametrize("case", ["wrong secret", "HS512", "tampered payload", "bad character", "alg none",
                                  "HS256 header over an RS256 name", "expired", "no exp"])
def test_forged_and_broken_tokens_are_refused(case):
    good = token()
    header, payload, signature = good.split(".")
    raw = {
        "wrong secret": lambda: token(secret="another-secret-of-forty-or-more-characters-y"),
        "HS512": lambda: token(algorithm="HS512"),
        "tampered payload": lambda: ".".join([header, payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB"),
                                              signature]),
        "bad character": lambda: ".".join([header, payload[:5] + "!" + payload[6:], signature]),
        "alg none": lambda: f"{json_segment({'alg': 'none'})}.{payload}.",
        "HS256 header over an RS256 name": lambda: resign({"alg": "RS256", "typ": "JWT"}, payload),
        "expired": lambda: token(iat=int(time.time()) - 600, exp=int(time.time()) - 300),
        "no exp": lambda: jwt.encode({"iss": "client-key", "iat": int(time.time()), "qsh": QSH}, SECRET,
                                     algorithm="HS256"),
    }[case]()
    expected = {"expired": "token has expired", "no exp": "token lacks the exp claim"}
    assert refused(raw) == expected.get(case, "token signature or format is invalid")


def test_a_secret_shaped_like_a_public_key_is_refused_every_time():
    """PyJWT refuses an HMAC secret that looks like a public key (algorithm confusion); the check runs once per
    secret now, so its refusal must not be remembered as a pass."""
    pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"
    forged = resign({"alg": "HS256", "typ": "JWT"}, token().split(".")[1], secret=pem)
    assert refused(forged, pem) == "token signature or format is invalid"
    assert refused(forged, pem) == "token signature or format is invalid"
