"""The store's interface, the same tests on every backend: memory, SQLite (a file) and a real
PostgreSQL server (tests/postgres.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest

from labs_gateway.store import KeyExists, KeyRecord, UsageRow, open_store
from labs_gateway.store.base import DAY, MINUTE, MONTH, window_end, window_start


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request, tmp_path):
    if request.param == "memory":
        return "memory"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'labs.db'}"
    return request.getfixturevalue("postgres_server").new_database()


@pytest.fixture()
async def store(store_url):
    s = open_store(store_url)
    await s.open()
    yield s
    await s.close()


def key(name: str, **kw) -> KeyRecord:
    return KeyRecord(name=name, secret_hash="h-" + name, prefix="labs-" + name[:3], created_at=int(time.time()),
                     updated_at=int(time.time()), **kw)


async def test_keys_round_trip(store):
    await store.create_key(key("alice", owner="team-a", models=("m1", "m2"), rpm=5, day_tokens=10**9))
    await store.create_key(key("bob", expires_at=int(time.time()) - 1))
    with pytest.raises(KeyExists):
        await store.create_key(key("alice"))
    found = await store.find_key("h-alice")
    assert found.name == "alice" and found.models == ("m1", "m2") and found.rpm == 5 and found.tpm is None
    assert found.day_tokens == 10**9 and found.owner == "team-a"
    assert await store.find_key("nope") is None
    assert [k.name for k in await store.list_keys()] == ["alice", "bob"]
    assert await store.keys_required(time.time())
    revoked = await store.update_key("alice", revoked_at=int(time.time()))
    assert revoked.revoked_at and not (await store.get_key("alice")).active()
    assert await store.keys_required(time.time())  # none is active, but keys were made through the API
    env = open_store("memory") if store.url == "memory" else store
    if env is store:
        await store.update_key("alice", source="env")
        await store.update_key("bob", source="env")
        assert not await store.keys_required(time.time())  # only revoked or expired LABS_API_KEYS entries
    assert await store.update_key("carol", owner="x") is None
    rotated = await store.update_key("bob", secret_hash="h-new", expires_at=None)
    assert rotated.active() and (await store.find_key("h-new")).name == "bob" and await store.find_key("h-bob") is None
    assert "secret_hash" not in rotated.public() and rotated.public()["status"] == "active"


async def test_hits_count_per_minute_window(store):
    minute = window_start(MINUTE, time.time())
    assert [await store.hit("alice", minute) for _ in range(3)] == [1, 2, 3]
    assert await store.hit("alice", minute + 60) == 1
    assert await store.hit("bob", minute) == 1


async def test_usage_rows_buckets_and_token_counters(store):
    now = time.time()
    base = int(now // 3600 * 3600 * 1000)
    rows = [UsageRow("alice", route="chat", model="m1", status=200, prompt_tokens=7, completion_tokens=3,
                     cached_tokens=2, latency_ms=12.5, finish_reason="stop", request_id="r1", ts_ms=base + 1000),
            UsageRow("alice", route="chat", model="m2", status=200, prompt_tokens=1, completion_tokens=1,
                     ts_ms=base + 61_000),
            UsageRow("bob", route="chat", model="m1", status=500, ts_ms=base + 2000),
            UsageRow("bob", route="chat", model="m1", status=200, finish_reason="error", ts_ms=base + 3000)]
    await store.record(rows)
    got = await store.usage_rows(base, base + 3_600_000)
    assert len(got) == 4 and got[0] == rows[0]
    assert [r.request_id for r in await store.usage_rows(base, base + 3_600_000, key="alice", model="m1")] == ["r1"]
    minutes = await store.usage_buckets(base, base + 3_600_000, 60)
    assert [(b.key_name, b.model, b.start - base // 1000, b.requests, b.errors) for b in minutes] == [
        ("alice", "m1", 0, 1, 0), ("bob", "m1", 0, 2, 2), ("alice", "m2", 60, 1, 0)]
    hour = await store.usage_buckets(base, base + 3_600_000, 3600, key="alice")
    assert [(b.model, b.prompt_tokens, b.completion_tokens, b.cached_tokens) for b in hour] == [
        ("m1", 7, 3, 2), ("m2", 1, 1, 0)]
    windows = [(w, window_start(w, (base + 1000) / 1000)) for w in (MINUTE, DAY, MONTH)]
    assert await store.tokens("alice", windows) == {MINUTE: 10, DAY: 12, MONTH: 12}
    assert await store.tokens("carol", windows) == {MINUTE: 0, DAY: 0, MONTH: 0}
    assert await store.prune(base + 2500, now) == 2
    assert len(await store.usage_rows(0, base + 3_600_000)) == 2


def test_windows_reset_at_utc_boundaries():
    t = 1_767_225_599.5  # 2025-12-31 23:59:59.5 UTC
    assert window_end(MINUTE, t) == window_end(DAY, t) == window_end(MONTH, t) == 1_767_225_600
    assert window_start(MONTH, t) == 1_764_547_200  # 2025-12-01
    assert window_end(MONTH, 1_767_225_600) == 1_769_904_000  # 2026-02-01


async def test_data_survives_reopening(store_url):
    if store_url == "memory":
        pytest.skip("the memory store is one process's")
    first = open_store(store_url)
    await first.open()
    await first.create_key(key("alice"))
    await first.record([UsageRow("alice", status=200, prompt_tokens=4)])
    await first.close()
    second = open_store(store_url)
    await second.open()  # migrations already applied: nothing to do, nothing lost
    try:
        assert (await second.get_key("alice")).name == "alice"
        assert len(await second.usage_rows(0, 2**62)) == 1
    finally:
        await second.close()


def test_sqlite_is_wal_and_private(tmp_path):
    path = tmp_path / "data" / "labs.db"

    async def main():
        s = open_store(f"sqlite:///{path}")
        await s.open()
        await s.close()

    asyncio.run(main())
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert path.stat().st_mode & 0o077 == 0


def test_concurrent_sqlite_writers_lose_no_rows(tmp_path):
    """Four stores (as four gateway workers would) on one file, each writing batches at once."""
    url = f"sqlite:///{tmp_path / 'labs.db'}"
    asyncio.run(_open_close(url))
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        async def main():
            s = open_store(url)
            await s.open()
            for batch in range(25):
                await s.record([UsageRow(f"k{n}", status=200, prompt_tokens=1, request_id=f"{n}-{batch}-{i}")
                                for i in range(20)])
                await s.hit("shared", 0)
            await s.close()

        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors

    async def count():
        s = open_store(url)
        await s.open()
        try:
            return len(await s.usage_rows(0, 2**62)), await s.hit("shared", 0)
        finally:
            await s.close()

    assert asyncio.run(count()) == (4 * 25 * 20, 4 * 25 + 1)


async def _open_close(url: str) -> None:
    s = open_store(url)
    await s.open()
    await s.close()


def test_bad_urls_are_refused():
    for url in ("mysql://x", "sqlite://relative.db", "sqlite:///"):
        with pytest.raises(ValueError):
            open_store(url)
    assert open_store("", "/tmp/labs-x").url == "sqlite:///tmp/labs-x/labs.db"
