"""Fetching the public keys that sign installs: `GET {ADDON_INSTALL_KEYS_URL}/{kid}`, successes cached."""

from __future__ import annotations

import threading
from collections import OrderedDict

import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from addon.connect.jwt import JwtError

FETCH_TIMEOUT_S = 5.0
MAX_KEY_BYTES = 10 * 1024


class InstallKeyFetcher:
    """Fetches and caches install keys by kid; a rotated key gets a new kid, so entries never go stale."""

    def __init__(self, base_url: str, cache_size: int = 64) -> None:
        self._base_url = base_url.rstrip("/")
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._http = requests.Session()
        self._http.trust_env = False

    def __call__(self, kid: str) -> bytes:
        with self._lock:
            if kid in self._cache:
                self._cache.move_to_end(kid)
                return self._cache[kid]
        pem = self._fetch(kid)
        with self._lock:
            self._cache[kid] = pem
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return pem

    def _fetch(self, kid: str) -> bytes:
        try:
            with self._http.get(f"{self._base_url}/{kid}", timeout=FETCH_TIMEOUT_S, stream=True,
                                allow_redirects=False) as response:
                if response.status_code != 200:
                    raise JwtError("the install key could not be fetched")
                pem = response.raw.read(MAX_KEY_BYTES + 1, decode_content=True)
        except requests.RequestException:
            raise JwtError("the install key could not be fetched") from None
        if len(pem) > MAX_KEY_BYTES:
            raise JwtError("the install key is too large")
        try:
            key = load_pem_public_key(pem)
        except ValueError:
            raise JwtError("the install key is not a PEM public key") from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise JwtError("the install key is not an RSA key")
        return pem
