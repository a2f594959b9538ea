"""Standard Webhooks signing (CONTRACT §6.1), checked against the `standardwebhooks` reference library."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from addon.sending.signing import generate_secret, new_message_id, secret_key, signature_headers

BODY = b'{"data":{"event":"updated","user":null,"timestamp":1675182117615,"project":{"id":1}}}'


def test_secret_format() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    encoded = secret[len("whsec_") :]
    assert len(encoded) == 44 and encoded.endswith("=")  # padded standard base64 of 32 bytes
    assert len(base64.b64decode(encoded, validate=True)) == 32
    assert secret_key(secret) == base64.b64decode(encoded)
    assert len({generate_secret() for _ in range(100)}) == 100


def test_hmac_key_is_the_32_decoded_bytes() -> None:
    secret = generate_secret()
    key = base64.b64decode(secret[len("whsec_") :])
    headers = signature_headers("msg_1", 1_700_000_000, BODY, [secret])
    expected = hmac.new(key, b"msg_1.1700000000." + BODY, hashlib.sha256).digest()
    assert headers == {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": "v1," + base64.b64encode(expected).decode(),
    }


def test_reference_library_verifies() -> None:
    secret = generate_secret()
    now = int(time.time())
    headers = signature_headers(new_message_id(), now, BODY, [secret])
    assert Webhook(secret).verify(BODY, headers)["data"]["event"] == "updated"
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, headers)


def test_rotation_signs_with_every_live_secret() -> None:
    old, new = generate_secret(), generate_secret()
    headers = signature_headers("msg_rot", int(time.time()), BODY, [new, old])
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    assert Webhook(new).verify(BODY, headers)
    assert Webhook(old).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, headers)


def test_non_ascii_body_is_signed_as_its_utf8_bytes() -> None:
    secret = generate_secret()
    body = '{"name":"Proyecto ñandú ✓"}'.encode()
    assert Webhook(secret).verify(body, signature_headers("msg_u", int(time.time()), body, [secret]))


def test_refuses_what_cannot_be_signed() -> None:
    with pytest.raises(ValueError):
        signature_headers("msg_1", 1, BODY, [])
    with pytest.raises(ValueError):
        signature_headers("msg_1", 1, b"\xff\xfe", [generate_secret()])
    with pytest.raises(ValueError):
        signature_headers("msg_1", 1, BODY, ["not-a-secret"])
    with pytest.raises(ValueError):
        signature_headers("msg 1", 1, BODY, [generate_secret()])
    with pytest.raises(ValueError):
        secret_key("whsec_!!!!")


def test_message_ids() -> None:
    ids = [new_message_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(re.fullmatch(r"msg_[0-9A-HJKMNP-TV-Z]{26}", i) for i in ids)
    # The first 10 characters encode the millisecond time: later ids never sort before earlier ones.
    assert [i[:14] for i in ids] == sorted(i[:14] for i in ids)
