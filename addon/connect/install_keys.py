"""Fetching the public keys that sign installs: `GET {ADDON_INSTALL_KEYS_URL}/{kid}`, successes cached, failures
remembered for a minute."""

from __future__ import annotations

import threading
import time

import requests
from cachetools import LRUCache, TTLCache
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from addon.connect.jwt import JwtError

FETCH_TIMEOUT_S = 5.0
MAX_KEY_BYTES = 10 * 1024
CACHE_SIZE = 64
#: A failed fetch is remembered per kid this long, so a flood of made-up kids costs one fetch per kid a minute.
FAILURE_TTL_S = 60.0
#: Failed kids remembered at most; a flood of more distinct kids forgets the oldest first (still one fetch each).
FAILURE_CACHE_SIZE = 4096
#: Fetches running at once. A fetch given up at its deadline may still be reading in its thread for a while
#: (until its socket's timeout); past this many, a new fetch fails at once rather than start another thread.
MAX_CONCURRENT_FETCHES = 8


class _Fetch:
    """One fetch of a kid, shared by every request that waits for that kid meanwhile."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.done = threading.Event()
        self.pem: bytes | None = None
        self.error: JwtError | None = None


class InstallKeyFetcher:
    """Fetches and caches install keys by kid; a rotated key gets a new kid, so entries never go stale.

    A fetch takes at most `timeout_s` in all (connecting, the headers and the body together, however slowly the
    server sends them) and at most `MAX_KEY_BYTES`; any failure is a `JwtError` (so the install answers 401).
    Requests for a kid being fetched wait for that fetch. Successes are cached, at most `cache_size` of them (the
    least recently used goes first); a failure is remembered for `failure_ttl_s` in a cache of its own, so that
    made-up kids neither cost a fetch each time nor push a real key out.
    """

    def __init__(self, base_url: str, cache_size: int = CACHE_SIZE, *, timeout_s: float = FETCH_TIMEOUT_S,
                 max_concurrent_fetches: int = MAX_CONCURRENT_FETCHES, failure_ttl_s: float = FAILURE_TTL_S,
                 failure_cache_size: int = FAILURE_CACHE_SIZE) -> None:
        self._base_url = base_url.rstrip("/")
        self._cache: LRUCache[str, bytes] = LRUCache(maxsize=cache_size)
        self._failures: TTLCache[str, str] = TTLCache(maxsize=failure_cache_size, ttl=failure_ttl_s,
                                                      timer=time.monotonic)
        self._timeout_s = timeout_s
        self._max_concurrent_fetches = max_concurrent_fetches
        self._fetching: dict[str, _Fetch] = {}
        self._threads = 0
        self._lock = threading.Lock()
        self._http = requests.Session()
        self._http.trust_env = False

    def __call__(self, kid: str) -> bytes:
        with self._lock:
            pem = self._cache.get(kid)  # (a get marks it as recently used)
            if pem is not None:
                return pem
            failure = self._failures.get(kid)
            if failure is not None:
                raise JwtError(failure)
            fetch = self._fetching.get(kid)
            if fetch is None or fetch.deadline <= time.monotonic():  # (one given up may still be reading)
                fetch = self._start(kid)
        if not fetch.done.wait(max(0.0, fetch.deadline - time.monotonic())):
            message = f"the install key could not be fetched within {self._timeout_s:g} s"
            with self._lock:  # a failure from now on, though its thread may go on reading for a while
                self._failures.setdefault(kid, message)
            raise JwtError(message)
        if fetch.pem is None:  # (a new error each time: the fetch's may be raised in other requests at once)
            raise JwtError(str(fetch.error or "the install key could not be fetched"))
        return fetch.pem

    def _start(self, kid: str) -> _Fetch:
        """Start fetching in a thread of its own (the caller holds the lock), so that the request can stop
        waiting at the deadline: a socket timeout bounds each read, not the whole (a server may send a byte every
        few seconds), and name resolution has no timeout at all. A fetch given up at its deadline may go on
        reading in its thread until its socket's timeout; past `max_concurrent_fetches` such threads, a new
        fetch fails at once."""
        if self._threads >= self._max_concurrent_fetches:
            raise JwtError("the install key could not be fetched (too many fetches in progress)")
        fetch = _Fetch(time.monotonic() + self._timeout_s)
        thread = threading.Thread(target=self._run, args=(kid, fetch), name="install-key-fetch", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no thread could be started
            raise JwtError("the install key could not be fetched") from None
        self._threads += 1
        self._fetching[kid] = fetch
        return fetch

    def _run(self, kid: str, fetch: _Fetch) -> None:
        try:
            fetch.pem = self._download(kid, fetch.deadline)
        except JwtError as err:
            fetch.error = err
        except Exception:  # noqa: BLE001 - whatever went wrong, the key could not be fetched
            fetch.error = JwtError("the install key could not be fetched")
        with self._lock:
            self._threads -= 1
            if self._fetching.get(kid) is fetch:
                del self._fetching[kid]
            if fetch.pem is not None and time.monotonic() < fetch.deadline:
                self._cache[kid] = fetch.pem
            else:
                if fetch.pem is not None:  # too late: whoever waited has given up, and nobody else may use it
                    fetch.pem = None
                    fetch.error = JwtError(f"the install key could not be fetched within {self._timeout_s:g} s")
                self._failures[kid] = str(fetch.error or "the install key could not be fetched")
        fetch.done.set()

    def _download(self, kid: str, deadline: float) -> bytes:
        remaining = deadline - time.monotonic()
        with self._http.get(f"{self._base_url}/{kid}", timeout=(remaining, remaining), stream=True,
                            allow_redirects=False, headers={"Accept-Encoding": "identity"}) as response:
            if response.status_code != 200:
                raise JwtError("the install key could not be fetched")
            body = bytearray()
            read = getattr(response.raw, "read1", response.raw.read)
            while len(body) <= MAX_KEY_BYTES:
                if time.monotonic() >= deadline:
                    raise JwtError("the install key could not be fetched in time")
                chunk = read(MAX_KEY_BYTES + 1 - len(body), decode_content=False)
                if not chunk:
                    break
                body += chunk
        if len(body) > MAX_KEY_BYTES:
            raise JwtError("the install key is too large")
        pem = bytes(body)
        try:
            key = load_pem_public_key(pem)
        except (ValueError, TypeError):
            raise JwtError("the install key is not a PEM public key") from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise JwtError("the install key is not an RSA key")
        return pem
