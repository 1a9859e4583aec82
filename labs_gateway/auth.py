"""API keys: optional Bearer keys from settings (entries "name:key" or a bare "key"), compared in
constant time. Callers are known by the key's name, never the key itself: that name is what goes
to the core (x-labs-key-id), into usage accounting, limits and logs."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from labs_gateway.errors import AUTHENTICATION, PERMISSION, GatewayError

ANONYMOUS = "anonymous"
SAFE_NAME = re.compile(r"[^A-Za-z0-9._@-]")


@dataclass(frozen=True)
class Caller:
    name: str
    admin: bool = False


def parse_keys(entries: tuple[str, ...] | list[str]) -> list[tuple[str, bytes]]:
    """(name, key) pairs; a bare key is named after a short hash of itself."""
    keys = []
    for entry in entries:
        name, sep, key = entry.partition(":")
        if not sep:
            name, key = "key-" + hashlib.sha256(entry.encode()).hexdigest()[:8], entry
        name = SAFE_NAME.sub("_", name.strip()) or "key"
        if not key.strip():
            raise ValueError(f"API key entry for {name!r} has an empty key")
        keys.append((name, key.strip().encode()))
    return keys


class KeyRing:
    def __init__(self, entries: tuple[str, ...] | list[str], admin_key: str = ""):
        self.keys = parse_keys(entries)
        self.admin_key = admin_key.encode()

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def authenticate(self, authorization: str | None) -> Caller:
        """The caller for an Authorization header; 401 when keys are configured and it matches none."""
        if not self.keys:
            return Caller(ANONYMOUS)
        given = bearer(authorization)
        if given is None:
            raise GatewayError(401, "Missing API key: send it as 'Authorization: Bearer <key>'",
                               type=AUTHENTICATION, code="invalid_api_key")
        found = None
        for name, key in self.keys:  # no early exit: the time taken does not depend on which key matched
            if hmac.compare_digest(given, key) and found is None:
                found = name
        if found is None:
            raise GatewayError(401, "Incorrect API key provided", type=AUTHENTICATION, code="invalid_api_key")
        return Caller(found)

    def authorize_admin(self, authorization: str | None) -> Caller:
        """Admin endpoints: the admin key when one is set or API keys are on; open on a keyless setup."""
        if not self.admin_key:
            if self.keys:
                raise GatewayError(403, "admin endpoints are disabled: set LABS_ADMIN_KEY", type=PERMISSION,
                                   code="admin_disabled")
            return Caller(ANONYMOUS, admin=True)
        given = bearer(authorization)
        if given is None or not hmac.compare_digest(given, self.admin_key):
            raise GatewayError(401, "admin endpoints need the admin key (Authorization: Bearer <admin key>)",
                               type=AUTHENTICATION, code="invalid_api_key")
        return Caller("admin", admin=True)


def bearer(authorization: str | None) -> bytes | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip().encode()
