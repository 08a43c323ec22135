"""API keys: kept as SHA-256 digests, compared in constant time."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence

from gateway.api.keys import ApiKey, digest
from gateway.core.errors import AuthenticationFailed


class KeyChecker:
    def __init__(self, keys: Sequence[str | ApiKey]) -> None:
        self._keys = [key if isinstance(key, ApiKey) else ApiKey.plain(key) for key in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    @property
    def any_own_limits(self) -> bool:
        return any(key.rpm is not None or key.tpm is not None for key in self._keys)

    def check(self, authorization: str | None) -> ApiKey | None:
        """The caller's key (its name and id are safe to log), or None when auth is off."""
        if not self._keys:
            return None
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationFailed("Missing API key: send it as 'Authorization: Bearer <key>'.")
        offered = digest(token.strip())
        found: ApiKey | None = None
        for known in self._keys:  # every digest compared: the time says nothing of which
            if hmac.compare_digest(offered, known.digest):
                found = known
        if found is None:
            raise AuthenticationFailed("Incorrect API key provided.")
        return found


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
