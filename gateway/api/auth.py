"""API keys: kept as SHA-256 digests, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from gateway.core.errors import AuthenticationFailed


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyChecker:
    def __init__(self, keys: list[str]) -> None:
        self._digests = [digest(key) for key in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def check(self, authorization: str | None) -> str | None:
        """The caller's key id (a digest prefix, safe to log), or None when auth is off."""
        if not self._digests:
            return None
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationFailed("Missing API key: send it as 'Authorization: Bearer <key>'.")
        offered = digest(token.strip())
        matched = False
        for known in self._digests:
            matched |= hmac.compare_digest(offered, known)
        if not matched:
            raise AuthenticationFailed("Incorrect API key provided.")
        return offered.hex()[:16]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def open_access_warning(host: str, keys: KeyChecker) -> str | None:
    """What to log when the API takes no key yet listens beyond this machine."""
    if keys.enabled or is_loopback(host):
        return None
    return (
        f"no API keys are configured and the server listens on {host}: anyone who reaches it "
        "can use every model; set TANDEM_API_KEYS or TANDEM_API_KEYS_FILE"
    )
