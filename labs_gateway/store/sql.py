"""The SQL backends, SQLite and PostgreSQL, sharing one set of statements (written with "?"
placeholders; PostgreSQL's connection rewrites them to "%s").

Both drivers are synchronous and run in a small thread pool of the store's own, so the event loop
never waits on the disk or the network: SQLite on one thread with one connection (WAL mode, so
readers in other processes are not blocked), PostgreSQL on as many threads as its connection pool
holds (psycopg 3 + psycopg-pool). Migrations live in migrations/<dialect>/NNNN_name.sql and are
applied on open, under a lock (BEGIN IMMEDIATE / an advisory lock) so that gateways starting
together apply each one once.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from labs_gateway.store.base import (DAY, KEY_COLUMNS, MINUTE, MONTH, USAGE_COLUMNS, Bucket, KeyExists, KeyRecord,
                                     Store, StoreUnavailable, UsageRow, changed, counter_cutoffs, sum_tokens)

log = logging.getLogger("labs_gateway.store")
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
PG_MIGRATION_LOCK = 72_001_018  # any constant: the advisory lock gateways take while migrating

Conn = Any  # a connection with execute(sql, params) -> cursor


def migrations(dialect: str) -> list[tuple[int, str]]:
    """(version, sql) for each file in migrations/<dialect>/, in order."""
    out = []
    for path in sorted((MIGRATIONS / dialect).glob("*.sql")):
        out.append((int(path.name.split("_", 1)[0]), path.read_text()))
    return out


def statements(script: str) -> list[str]:
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _key(row: Sequence[Any]) -> KeyRecord:
    values = dict(zip(KEY_COLUMNS, row))
    values["models"] = tuple(m for m in (values["models"] or "").split(",") if m)
    return KeyRecord(**values)


def _key_values(key: KeyRecord) -> list[Any]:
    return [",".join(key.models) if c == "models" else getattr(key, c) for c in KEY_COLUMNS]


class SqlStore(Store):
    dialect = ""
    threads = 1

    def __init__(self, url: str):
        self.url = url
        self.pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix=f"labs-{self.dialect}")

    @abc.abstractmethod
    def connect(self) -> None: ...

    @abc.abstractmethod
    def transaction(self, migrate: bool = False) -> contextlib.AbstractContextManager[Conn]: ...

    def disconnect(self) -> None:
        pass

    def reading(self) -> contextlib.AbstractContextManager[Conn]:
        return self.transaction()

    def single(self) -> contextlib.AbstractContextManager[Conn]:
        """For one statement (atomic by itself): no BEGIN / COMMIT round trips where the driver can skip them."""
        return self.transaction()

    def unavailable(self) -> tuple[type[BaseException], ...]:
        """The driver's errors that mean "the database cannot be reached", not "this query is wrong"."""
        return (sqlite3.OperationalError,)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        except self.unavailable() as exc:
            raise StoreUnavailable(f"the {self.dialect} store is unavailable: {exc}") from exc

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self.connect()
        with self.transaction(migrate=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS labs_schema (version INTEGER PRIMARY KEY, applied_at TEXT)")
            done = {row[0] for row in conn.execute("SELECT version FROM labs_schema").fetchall()}
            for version, script in migrations(self.dialect):
                if version in done:
                    continue
                for statement in statements(script):
                    conn.execute(statement)
                conn.execute("INSERT INTO labs_schema (version, applied_at) VALUES (?, CURRENT_TIMESTAMP)",
                             (version,))
                log.info("store %s: applied migration %04d", self.dialect, version)

    async def close(self) -> None:
        await self._run(self.disconnect)
        self.pool.shutdown(wait=True)

    # keys
    async def create_key(self, key: KeyRecord) -> None:
        await self._run(self._create_key, key)

    def _create_key(self, key: KeyRecord) -> None:
        sql = (f"INSERT INTO labs_keys ({', '.join(KEY_COLUMNS)}) VALUES ({', '.join('?' * len(KEY_COLUMNS))})")
        try:
            with self.transaction() as conn:
                conn.execute(sql, _key_values(key))
        except Exception as exc:
            if self.is_conflict(exc):
                raise KeyExists(f"a key named {key.name!r} (or with that secret) exists already") from None
            raise

    def is_conflict(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.IntegrityError)

    async def update_key(self, name: str, **changes: Any) -> KeyRecord | None:
        return await self._run(self._update_key, name, changes)

    def _update_key(self, name: str, changes: dict[str, Any]) -> KeyRecord | None:
        with self.transaction() as conn:
            row = conn.execute(f"SELECT {', '.join(KEY_COLUMNS)} FROM labs_keys WHERE name = ?", (name,)).fetchone()
            if row is None:
                return None
            key = changed(_key(row), changes)
            columns = [c for c in KEY_COLUMNS if c != "name"]
            values = [v for c, v in zip(KEY_COLUMNS, _key_values(key)) if c != "name"]
            conn.execute(f"UPDATE labs_keys SET {', '.join(c + ' = ?' for c in columns)} WHERE name = ?",
                         [*values, name])
            return key

    async def get_key(self, name: str) -> KeyRecord | None:
        return await self._run(self._one_key, "name", name)

    async def find_key(self, secret_hash: str) -> KeyRecord | None:
        return await self._run(self._one_key, "secret_hash", secret_hash)

    def _one_key(self, column: str, value: str) -> KeyRecord | None:
        with self.reading() as conn:
            row = conn.execute(f"SELECT {', '.join(KEY_COLUMNS)} FROM labs_keys WHERE {column} = ?",
                               (value,)).fetchone()
        return _key(row) if row else None

    async def list_keys(self) -> list[KeyRecord]:
        return await self._run(self._list_keys)

    def _list_keys(self) -> list[KeyRecord]:
        with self.reading() as conn:
            rows = conn.execute(f"SELECT {', '.join(KEY_COLUMNS)} FROM labs_keys ORDER BY created_at, name").fetchall()
        return [_key(r) for r in rows]

    async def keys_required(self, now: float) -> bool:
        return await self._run(self._keys_required, int(now))

    def _keys_required(self, now: int) -> bool:
        with self.reading() as conn:
            return conn.execute("SELECT 1 FROM labs_keys WHERE source = 'api' OR (revoked_at IS NULL AND "
                                "(expires_at IS NULL OR expires_at > ?)) LIMIT 1", (now,)).fetchone() is not None

    # limits
    async def hit(self, name: str, minute: int) -> int:
        return await self._run(self._hit, name, minute)

    def _hit(self, name: str, minute: int) -> int:
        with self.single() as conn:
            return conn.execute(
                "INSERT INTO labs_counters (name, win, start, requests, tokens) VALUES (?, ?, ?, 1, 0) "
                "ON CONFLICT (name, win, start) DO UPDATE SET requests = labs_counters.requests + 1 "
                "RETURNING requests", (name, MINUTE, minute)).fetchone()[0]

    async def tokens(self, name: str, windows: list[tuple[str, int]]) -> dict[str, int]:
        return await self._run(self._tokens, name, windows)

    def _tokens(self, name: str, windows: list[tuple[str, int]]) -> dict[str, int]:
        out = {w: 0 for w, _ in windows}
        where = " OR ".join("(win = ? AND start = ?)" for _ in windows)
        params: list[Any] = [name] + [v for pair in windows for v in pair]
        with self.reading() as conn:
            for win, tokens in conn.execute(f"SELECT win, tokens FROM labs_counters WHERE name = ? AND ({where})",
                                            params).fetchall():
                out[win] = int(tokens)
        return out

    # usage
    async def record(self, rows: list[UsageRow]) -> None:
        if rows:
            await self._run(self._record, rows)

    def _record(self, rows: list[UsageRow]) -> None:
        insert = f"INSERT INTO labs_usage ({', '.join(USAGE_COLUMNS)}) VALUES ({', '.join('?' * len(USAGE_COLUMNS))})"
        add = ("INSERT INTO labs_counters (name, win, start, requests, tokens) VALUES (?, ?, ?, 0, ?) "
               "ON CONFLICT (name, win, start) DO UPDATE SET tokens = labs_counters.tokens + excluded.tokens")
        with self.transaction() as conn:
            conn.executemany(insert, [[getattr(r, c) for c in USAGE_COLUMNS] for r in rows])
            # sorted: concurrent flushes from several gateways lock counter rows in one order (no deadlock)
            conn.executemany(add, [(*k, v) for k, v in sorted(sum_tokens(rows).items())])

    def _filters(self, since_ms: int, until_ms: int, key: str | None, model: str | None) -> tuple[str, list[Any]]:
        where, params = ["ts_ms >= ?", "ts_ms < ?"], [since_ms, until_ms]
        if key is not None:
            where.append("key_name = ?")
            params.append(key)
        if model is not None:
            where.append("model = ?")
            params.append(model)
        return " AND ".join(where), params

    async def usage_rows(self, since_ms: int, until_ms: int, key: str | None = None, model: str | None = None,
                         limit: int = 1_000_000) -> list[UsageRow]:
        return await self._run(self._usage_rows, since_ms, until_ms, key, model, limit)

    def _usage_rows(self, since_ms: int, until_ms: int, key: str | None, model: str | None,
                    limit: int) -> list[UsageRow]:
        where, params = self._filters(since_ms, until_ms, key, model)
        with self.reading() as conn:
            rows = conn.execute(f"SELECT {', '.join(USAGE_COLUMNS)} FROM labs_usage WHERE {where} ORDER BY ts_ms, id "
                                f"LIMIT {int(limit)}", params).fetchall()
        return [UsageRow(**dict(zip(USAGE_COLUMNS, r))) for r in rows]

    async def usage_buckets(self, since_ms: int, until_ms: int, bucket_s: int, key: str | None = None,
                            model: str | None = None) -> list[Bucket]:
        return await self._run(self._usage_buckets, since_ms, until_ms, bucket_s, key, model)

    def _usage_buckets(self, since_ms: int, until_ms: int, bucket_s: int, key: str | None,
                       model: str | None) -> list[Bucket]:
        where, params = self._filters(since_ms, until_ms, key, model)
        width = int(bucket_s) * 1000
        sql = (f"SELECT key_name, model, (ts_ms / {width}) * {int(bucket_s)} AS bucket, COUNT(*), "
               "SUM(CASE WHEN status >= 400 OR finish_reason = 'error' THEN 1 ELSE 0 END), "
               "SUM(prompt_tokens), SUM(completion_tokens), SUM(cached_tokens) "
               f"FROM labs_usage WHERE {where} GROUP BY key_name, model, bucket ORDER BY bucket, key_name, model")
        with self.reading() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [Bucket(k, m, int(s), *(int(v or 0) for v in rest)) for k, m, s, *rest in rows]

    async def prune(self, usage_before_ms: int, now: float) -> int:
        return await self._run(self._prune, usage_before_ms, now)

    def _prune(self, usage_before_ms: int, now: float) -> int:
        cutoffs = counter_cutoffs(now)
        with self.transaction() as conn:
            gone = conn.execute("DELETE FROM labs_usage WHERE ts_ms < ?", (usage_before_ms,)).rowcount
            for window in (MINUTE, DAY, MONTH):
                conn.execute("DELETE FROM labs_counters WHERE win = ? AND start < ?", (window, cutoffs[window]))
        return gone


class SqliteStore(SqlStore):
    """One file, WAL mode; several processes may share it (busy timeout), one gateway host only."""

    dialect = "sqlite"
    threads = 1

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        super().__init__(f"sqlite://{self.path}")
        self.conn: sqlite3.Connection | None = None
        self.lock = threading.Lock()

    def connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a power cut may lose the last commits, never corrupt
        conn.execute("PRAGMA busy_timeout=10000")
        os.chmod(self.path, 0o600)  # hashes and usage: nobody else's business
        self.conn = conn

    def disconnect(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    @contextlib.contextmanager
    def transaction(self, migrate: bool = False) -> Iterator[Conn]:
        assert self.conn is not None, "the store is not open"
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    @contextlib.contextmanager
    def reading(self) -> Iterator[Conn]:
        """Reads need no write lock: autocommit, WAL lets them run beside another process's writes."""
        assert self.conn is not None, "the store is not open"
        with self.lock:
            yield self.conn

    def single(self) -> contextlib.AbstractContextManager[Conn]:
        return self.reading()  # autocommit: one statement is its own transaction


class _PgConn:
    """A psycopg connection that takes the "?" placeholders of the shared statements."""

    def __init__(self, conn: Any):
        self.conn = conn

    def execute(self, sql: str, params: Any = None) -> Any:
        return self.conn.execute(sql.replace("?", "%s"), params)

    def executemany(self, sql: str, rows: Any) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), rows)


class PostgresStore(SqlStore):
    """PostgreSQL through a psycopg connection pool: the store several gateways share."""

    dialect = "postgres"
    threads = 8

    def __init__(self, url: str, min_size: int = 1, max_size: int = 8, wait_s: float = 3.0):
        super().__init__(url)
        self.min_size, self.max_size, self.wait_s = min_size, max_size, wait_s
        self.pg: Any = None

    def connect(self) -> None:
        try:
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise ValueError("LABS_STORE is a PostgreSQL URL but psycopg is not installed "
                             "(pip install 'psycopg[binary]' psycopg-pool, or labs[gateway])") from None
        # autocommit: one statement is one round trip; transaction() adds BEGIN / COMMIT where needed
        # timeout: a request waits this long for a connection when the database is down, then gets a 503
        self.pg = ConnectionPool(self.url, min_size=self.min_size, max_size=self.max_size, open=False,
                                 kwargs={"autocommit": True, "connect_timeout": 5}, name="labs-store",
                                 timeout=self.wait_s)
        self.pg.open(wait=True, timeout=30)

    def disconnect(self) -> None:
        if self.pg is not None:
            self.pg.close()
            self.pg = None

    def is_conflict(self, exc: Exception) -> bool:
        import psycopg

        return isinstance(exc, psycopg.errors.UniqueViolation)

    def unavailable(self) -> tuple[type[BaseException], ...]:
        import psycopg

        return (psycopg.OperationalError,)  # the pool's PoolTimeout included

    @contextlib.contextmanager
    def transaction(self, migrate: bool = False) -> Iterator[Conn]:
        assert self.pg is not None, "the store is not open"
        with self.pg.connection() as conn, conn.transaction():  # commits on a clean exit, else rolls back
            if migrate:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (PG_MIGRATION_LOCK,))
            yield _PgConn(conn)

    @contextlib.contextmanager
    def single(self) -> Iterator[Conn]:
        assert self.pg is not None, "the store is not open"
        with self.pg.connection() as conn:
            yield _PgConn(conn)

    def reading(self) -> contextlib.AbstractContextManager[Conn]:
        return self.single()
