"""API keys, kept in the store (labs_gateway.store): only a SHA-256 of each secret is stored, so
the secret is shown once, when the key is created or rotated. Callers are known by the key's name,
never the key itself: that name goes to the core (x-labs-key-id), into usage, limits and logs.

Keys from LABS_API_KEYS (entries "name:key" or a bare "key") are seeded into the store on start so
existing setups keep working; an env key no longer in the list is revoked. Auth is on as soon as the
store holds one active key, and stays on once a key was made through the admin API (revoking the
last key must not open the gateway). Each gateway trusts a key it looked up for key_cache_s (<= 1 s), which
bounds how long a revoked key keeps working anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from labs_gateway.errors import AUTHENTICATION, NOT_FOUND, PERMISSION, GatewayError, bad_request
from labs_gateway.store import KeyExists, KeyRecord, Store

log = logging.getLogger("labs_gateway")
ANONYMOUS = "anonymous"
SAFE_NAME = re.compile(r"[^A-Za-z0-9._@-]")
NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
SECRET_PREFIX = "labs-"
CACHE_ENTRIES = 10_000


@dataclass(frozen=True)
class Caller:
    name: str
    admin: bool = False
    key: KeyRecord | None = None


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


def hash_secret(secret: bytes | str) -> str:
    """Secrets are long random strings (or an operator's choice in LABS_API_KEYS): a plain SHA-256
    is what a lookup by hash needs, and no salt is needed to make guessing one hopeless."""
    return hashlib.sha256(secret.encode() if isinstance(secret, str) else secret).hexdigest()


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def shown_prefix(secret: bytes | str) -> str:
    text = secret.decode(errors="replace") if isinstance(secret, bytes) else secret
    return text[:len(SECRET_PREFIX) + 4] if text.startswith(SECRET_PREFIX) else text[:3] + "…"


class KeyRing:
    def __init__(self, store: Store, entries: tuple[str, ...] | list[str], admin_key: str = "",
                 cache_s: float = 0.5, clock=time.monotonic):
        self.store = store
        self.seeds = parse_keys(entries)
        self.admin_key = admin_key.encode()
        self.cache_s = cache_s
        self.clock = clock
        self._found: dict[str, tuple[float, KeyRecord | None]] = {}  # secret hash -> (looked up at, key)
        self._enabled: tuple[float, bool] = (float("-inf"), bool(self.seeds))

    async def seed(self) -> None:
        """Put LABS_API_KEYS into the store; revoke env keys that left the list."""
        now = int(time.time())
        names = set()
        for name, secret in self.seeds:
            names.add(name)
            digest = hash_secret(secret)
            existing = await self.store.get_key(name)
            if existing is None:
                try:
                    await self.store.create_key(KeyRecord(name=name, secret_hash=digest, prefix=shown_prefix(secret),
                                                          source="env", created_at=now, updated_at=now))
                except KeyExists:  # another gateway seeded it at the same moment, or a key has that secret
                    pass
            elif existing.source != "env":
                log.warning("LABS_API_KEYS names %r, a key created through the admin API: the store's key wins", name)
            elif existing.secret_hash != digest:
                await self.store.update_key(name, secret_hash=digest, prefix=shown_prefix(secret), updated_at=now)
        for key in await self.store.list_keys():
            if key.source == "env" and key.name not in names and key.revoked_at is None:
                await self.store.update_key(key.name, revoked_at=now, updated_at=now)
                log.info("API key %r is no longer in LABS_API_KEYS: revoked", key.name)
        self.forget()

    def forget(self) -> None:
        """Drop what this gateway remembers (after a change it made itself)."""
        self._found.clear()
        self._enabled = (float("-inf"), False)

    async def enabled(self) -> bool:
        at, on = self._enabled
        now = self.clock()
        if now - at > self.cache_s:
            on = await self.store.keys_required(time.time())
            self._enabled = (now, on)
        return on

    async def _lookup(self, digest: str) -> KeyRecord | None:
        now = self.clock()
        hit = self._found.get(digest)
        if hit is not None and now - hit[0] <= self.cache_s:
            return hit[1]
        key = await self.store.find_key(digest)
        if len(self._found) >= CACHE_ENTRIES:  # wrong keys must not grow memory without bound
            self._found.clear()
        self._found[digest] = (now, key)
        return key

    async def authenticate(self, authorization: str | None) -> Caller:
        """The caller for an Authorization header; 401 when keys are on and it matches no active key."""
        given = bearer(authorization)
        if not await self.enabled():
            # Keys look off from here (cached), but a key made a moment ago on another gateway is
            # still known by its own limits rather than served as anonymous.
            key = await self._lookup(hash_secret(given)) if given is not None else None
            return Caller(key.name, key=key) if key is not None and key.active() else Caller(ANONYMOUS)
        if given is None:
            raise GatewayError(401, "Missing API key: send it as 'Authorization: Bearer <key>'",
                               type=AUTHENTICATION, code="invalid_api_key")
        key = await self._lookup(hash_secret(given))
        if key is None:
            raise GatewayError(401, "Incorrect API key provided", type=AUTHENTICATION, code="invalid_api_key")
        if key.revoked_at is not None:
            raise GatewayError(401, f"API key {key.name!r} has been revoked", type=AUTHENTICATION,
                               code="invalid_api_key")
        if not key.active():
            raise GatewayError(401, f"API key {key.name!r} expired", type=AUTHENTICATION, code="expired_api_key")
        return Caller(key.name, key=key)

    async def authorize_admin(self, authorization: str | None) -> Caller:
        """Admin endpoints: the admin key when one is set or API keys are on; open on a keyless setup."""
        if not self.admin_key:
            if await self.enabled():
                raise GatewayError(403, "admin endpoints are disabled: set LABS_ADMIN_KEY", type=PERMISSION,
                                   code="admin_disabled")
            return Caller(ANONYMOUS, admin=True)
        given = bearer(authorization)
        if given is None or not hmac.compare_digest(given, self.admin_key):
            raise GatewayError(401, "admin endpoints need the admin key (Authorization: Bearer <admin key>)",
                               type=AUTHENTICATION, code="invalid_api_key")
        return Caller("admin", admin=True)

    # management (admin API)
    async def create(self, fields: dict[str, Any]) -> tuple[KeyRecord, str]:
        """A new key from checked fields (see labs_gateway.routes.keys); its secret, shown once."""
        self._require_admin_key()
        name = fields["name"]
        if not NAME.match(name):
            raise bad_request("name: 1-64 letters, digits, '.', '_', '@' or '-'", "name")
        secret = new_secret()
        now = int(time.time())
        key = KeyRecord(secret_hash=hash_secret(secret), prefix=shown_prefix(secret), source="api", created_at=now,
                        updated_at=now, **fields)
        try:
            await self.store.create_key(key)
        except KeyExists:
            raise GatewayError(409, f"a key named {name!r} exists already (revoked keys keep their names)",
                               param="name", code="key_exists") from None
        self.forget()
        return key, secret

    async def update(self, name: str, changes: dict[str, Any]) -> KeyRecord:
        self._require_admin_key()
        key = await self.store.update_key(name, **changes, updated_at=int(time.time()))
        if key is None:
            raise GatewayError(404, f"no API key named {name!r}", type=NOT_FOUND, code="key_not_found")
        self.forget()
        return key

    async def rotate(self, name: str) -> tuple[KeyRecord, str]:
        """A new secret for the key (same name, limits and usage); the old one stops at once."""
        secret = new_secret()
        existing = await self.store.get_key(name)
        if existing is not None and existing.revoked_at is not None:
            raise GatewayError(409, f"API key {name!r} is revoked; create a new key", code="key_revoked")
        key = await self.update(name, {"secret_hash": hash_secret(secret), "prefix": shown_prefix(secret)})
        return key, secret

    async def revoke(self, name: str) -> KeyRecord:
        existing = await self.store.get_key(name)
        if existing is not None and existing.revoked_at is not None:
            return existing
        return await self.update(name, {"revoked_at": int(time.time())})

    def _require_admin_key(self) -> None:
        if not self.admin_key:
            raise GatewayError(403, "managing keys needs LABS_ADMIN_KEY: without it the first key would lock the "
                               "admin endpoints", type=PERMISSION, code="admin_disabled")


def bearer(authorization: str | None) -> bytes | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip().encode()
