"""Standard Webhooks signing (CONTRACT §6.1): secrets, message ids and the three `webhook-*` headers.

A secret is `whsec_` + the standard padded base64 of 32 random bytes, and the HMAC-SHA256 key is those
32 bytes (the `standardwebhooks` package strips the prefix and base64-decodes, which is what a receiver's
library does too). The signed content is `msg_id.timestamp.body`; during a secret rotation every live
secret signs, giving one space-separated `v1,<base64>` per secret.
"""

from __future__ import annotations

import base64
import functools
import secrets as _secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MESSAGE_ID_PREFIX = "msg_"

_CROCKFORD32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def generate_secret() -> str:
    """A new signing secret: `whsec_` + padded standard base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key a secret stands for (the decoded bytes after `whsec_`); raises ValueError if malformed."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError:
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("a webhook secret holds 24 to 64 bytes")
    return key


def new_message_id() -> str:
    """A fresh `webhook-id`: `msg_` + a 26-character ULID (48-bit ms timestamp, 80 random bits).

    Time-ordered ids make logs and receivers' dedup tables easier to read; uniqueness comes from the
    80 random bits.
    """
    value = (time.time_ns() // 1_000_000 & (2**48 - 1)) << 80 | _secrets.randbits(80)
    chars = [_CROCKFORD32[(value >> shift) & 31] for shift in range(125, -1, -5)]
    return MESSAGE_ID_PREFIX + "".join(chars)


@functools.lru_cache(maxsize=4096)
def _signer(secret: str) -> Webhook:
    """The `standardwebhooks` signer of a secret, checked and built once per secret rather than per attempt (a
    worker signs every delivery; the secret's decoding was a visible part of it). Malformed secrets raise
    ValueError rather than sign with a garbled key, and are not remembered."""
    secret_key(secret)
    return Webhook(secret)


def signature_headers(message_id: str, timestamp: int, body: bytes, secrets: Sequence[str]) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt: `webhook-id`, `webhook-timestamp`, `webhook-signature`.

    `timestamp` is the attempt's Unix time in seconds; `body` must be the exact UTF-8 bytes sent.
    One `v1,…` signature per secret, in the order given. Raises ValueError without a secret or when the
    body is not UTF-8 (the standardwebhooks libraries sign text).
    """
    if not secrets:
        raise ValueError("at least one signing secret is needed")
    if not message_id or any(c in message_id for c in " \r\n"):
        raise ValueError("message id must be non-empty, without spaces or line breaks")
    text = body.decode("utf-8")
    when = datetime.fromtimestamp(int(timestamp), tz=UTC)
    signatures = [_signer(secret).sign(message_id, when, text) for secret in secrets]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": " ".join(signatures),
    }
