"""Where keys, limit counters and usage live (LABS_STORE): "memory", "sqlite:///path" (the default,
<data dir>/labs.db) or a PostgreSQL URL ("postgresql://user:pass@host/db") that several gateways share."""

from __future__ import annotations

from pathlib import Path

from labs_gateway.store.base import Bucket, KeyExists, KeyRecord, Store, StoreUnavailable, UsageRow
from labs_gateway.store.memory import MemoryStore

__all__ = ["Bucket", "KeyExists", "KeyRecord", "Store", "StoreUnavailable", "UsageRow", "MemoryStore", "open_store", "default_url",
           "redact"]


def default_url(data_dir: str) -> str:
    return f"sqlite://{Path(data_dir).expanduser().absolute() / 'labs.db'}"


def open_store(url: str, data_dir: str = "~/.labs") -> Store:
    """The store for a LABS_STORE value (not yet opened: `await store.open()` connects and migrates)."""
    url = url.strip() or default_url(data_dir)
    if url == "memory":
        return MemoryStore()
    if url.startswith("sqlite://"):
        from labs_gateway.store.sql import SqliteStore

        path = url[len("sqlite://"):]
        if not path.startswith("/") or path == "/":
            raise ValueError(f"LABS_STORE {url!r}: use sqlite:///absolute/path/labs.db")
        return SqliteStore(path)
    if url.startswith(("postgresql://", "postgres://")):
        from labs_gateway.store.sql import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"LABS_STORE {redact(url)!r}: expected memory, sqlite:///path or postgresql://...")


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url
