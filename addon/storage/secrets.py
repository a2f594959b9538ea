"""Encryption at rest of tenants' shared secrets and webhooks' signing secrets (Fernet, `ADDON_SECRET_KEY`)."""

from __future__ import annotations

import threading

from cachetools import LRUCache
from cryptography.fernet import Fernet, InvalidToken

_ENCRYPTED = "fernet:"
_PLAIN = "plain:"


class SecretBox:
    """Seals values before they are stored; opens both sealed and plain values so the key can be added later.

    Opened values are remembered per sealed value (at most `MEMORY_SIZE`): every authenticated request and
    every claimed delivery needs a secret, and a Fernet decryption each time was a visible share of both. A
    replaced or rotated secret is a new sealed value, so what is remembered is never stale.
    """

    MEMORY_SIZE = 4096

    def __init__(self, key: str | None) -> None:
        self._fernet = Fernet(key.encode()) if key else None
        self._opened: LRUCache[str, str] = LRUCache(self.MEMORY_SIZE)
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe

    def seal(self, value: str) -> str:
        if self._fernet is None:
            return _PLAIN + value
        return _ENCRYPTED + self._fernet.encrypt(value.encode()).decode()

    def open(self, stored: str) -> str:
        with self._lock:
            opened = self._opened.get(stored)
        if opened is None:
            opened = self._open(stored)  # outside the lock: a decryption takes a while
            with self._lock:
                self._opened[stored] = opened
        return opened

    def _open(self, stored: str) -> str:
        if stored.startswith(_PLAIN):
            return stored[len(_PLAIN) :]
        if stored.startswith(_ENCRYPTED):
            if self._fernet is None:
                raise RuntimeError("a stored secret is encrypted but ADDON_SECRET_KEY is not set")
            try:
                return self._fernet.decrypt(stored[len(_ENCRYPTED) :].encode()).decode()
            except InvalidToken:
                raise RuntimeError("a stored secret cannot be decrypted with ADDON_SECRET_KEY") from None
        return stored
