"""The store across processes, the way gateways run in production (child processes over the fake
core): keys and usage survive SIGTERM and SIGKILL restarts (SQLite and PostgreSQL); two gateways on
one PostgreSQL enforce one per-minute limit and one budget between them, and a key revoked through
one is refused by the other within a second; a database outage is a 503, and usage waits for it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.labs_gateway.support import GatewayThread
from tests.postgres import wait_until
from tests.reliability.processes import GatewayProcess, free_port, gateway_env

CHAT = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}]}  # 7 + 3 tokens
ADMIN = {"Authorization": "Bearer sk-admin"}
FLUSH_S = 0.2


def start(fake_core, store: str, log: Path, **labs: str) -> GatewayProcess:
    env = gateway_env(fake_core.address, free_port(), LABS_STORE=store, LABS_ADMIN_KEY="sk-admin",
                      LABS_USAGE_FLUSH_S=str(FLUSH_S), **labs)
    gw = GatewayProcess(env, log).start()
    gw.wait_status("/health", timeout=60)
    return gw


def create(gw: GatewayProcess | GatewayThread, **fields) -> str:
    answer = httpx.post(f"{gw.url}/admin/keys", json=fields, headers=ADMIN, timeout=10)
    assert answer.status_code == 201, answer.text
    return answer.json()["secret"]


def chat(gw: GatewayProcess | GatewayThread, secret: str) -> int:
    return httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {secret}"},
                      timeout=30).status_code


def requests_of(gw: GatewayProcess | GatewayThread, key: str) -> int:
    usage = httpx.get(f"{gw.url}/admin/usage?key={key}&since=0", headers=ADMIN, timeout=10).json()
    return usage["keys"].get(key, {}).get("totals", {}).get("requests", 0)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'data' / 'labs.db'}"
    return request.getfixturevalue("postgres_server").new_database()


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_keys_and_usage_survive_a_restart(fake_core, store, tmp_path, how):
    gw = start(fake_core, store, tmp_path / "first.log")
    try:
        secret = create(gw, name="alice", owner="team-a", rpm=1000)
        assert [chat(gw, secret) for _ in range(5)] == [200] * 5
        if how == "SIGTERM":
            # drained (uvicorn re-raises SIGTERM): the last batch is written on the way out
            assert gw.stop() in (0, -15)
        else:
            time.sleep(FLUSH_S * 3)  # a SIGKILL loses at most the last flush interval (docs/security.md)
            gw.kill()
    finally:
        gw.stop()
    again = start(fake_core, store, tmp_path / "second.log")
    try:
        assert chat(again, secret) == 200  # the key, hashed in the store, still works; no other key does
        assert chat(again, "labs-wrong") == 401
        keys = httpx.get(f"{again.url}/admin/keys", headers=ADMIN).json()["data"]
        assert [(k["name"], k["owner"], k["rpm"]) for k in keys] == [("alice", "team-a", 1000)]
        assert requests_of(again, "alice") == 6
    finally:
        again.stop()
    assert secret not in database_text(store) and secret[5:] not in database_text(store)


def database_text(url: str) -> str:
    """Every row of the store's database as text (to look for secrets in it)."""
    if url.startswith("sqlite://"):
        import sqlite3

        return "\n".join(sqlite3.connect(url[len("sqlite://"):]).iterdump())
    import psycopg

    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        assert {"labs_keys", "labs_usage", "labs_counters"} <= set(tables)
        return "\n".join(str(row) for t in tables for row in conn.execute(f"SELECT * FROM {t}"))


@pytest.fixture()
def two_gateways(fake_core, postgres_server, tmp_path):
    url = postgres_server.new_database()
    first = start(fake_core, url, tmp_path / "a.log")
    second = None
    try:
        second = start(fake_core, url, tmp_path / "b.log")
        yield first, second
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_two_gateways_on_one_postgres_enforce_one_limit(two_gateways):
    a, b = two_gateways
    if time.time() % 60 > 45:  # the per-minute window resets on the minute: stay inside one
        time.sleep(61 - time.time() % 60)
    secret = create(a, name="shared", rpm=10)
    codes: list[int] = []
    lock = threading.Lock()

    def client(gw: GatewayProcess) -> None:
        for _ in range(8):
            code = chat(gw, secret)
            with lock:
                codes.append(code)

    threads = [threading.Thread(target=client, args=(gw,)) for gw in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(codes) == 32 and codes.count(200) == 10 and codes.count(429) == 22

    budget = create(b, name="budget", day_tokens=35)  # 10 tokens a request: the 4th is the last
    served = 0
    for gw in (a, b, a, b, a, b, a, b):
        if chat(gw, budget) == 200:
            served += 1
        time.sleep(FLUSH_S + 0.6)  # each gateway's flush, then the other's cached count expires
    assert served == 4


def test_a_revoked_key_stops_on_every_gateway_within_a_second(two_gateways):
    a, b = two_gateways
    secret = create(a, name="leaving")
    assert chat(a, secret) == 200 and chat(b, secret) == 200  # both have it cached now
    revoked_at = time.monotonic()
    assert httpx.delete(f"{a.url}/admin/keys/leaving", headers=ADMIN).json()["status"] == "revoked"
    assert chat(a, secret) == 401  # the gateway that revoked it: at once
    served = [2]  # requests served to the key, on either gateway

    def refused() -> bool:
        code = chat(b, secret)
        served[0] += code == 200
        return code == 401

    assert wait_until(refused, timeout=5, every=0.01)
    assert time.monotonic() - revoked_at < 1.0
    assert wait_until(lambda: requests_of(b, "leaving") == served[0], timeout=3)  # both gateways' usage rows


def test_a_lost_database_is_a_503_and_usage_waits_for_it(fake_core, tmp_path):
    """PostgreSQL stopped under a running gateway: requests get 503 store_unavailable (not a hang, not
    a 500), and the usage rows recorded meanwhile are written once the database is back."""
    from labs_gateway import create_app
    from tests.labs_gateway.support import gateway_settings
    from tests.postgres import PostgresServer

    with PostgresServer() as pg:
        url = pg.new_database()
        settings = gateway_settings([fake_core.address], store=url, admin_key="sk-admin", usage_flush_s=0.1)
        with GatewayThread(create_app(settings)) as gw:
            secret = create(gw, name="alice", rpm=100)
            assert chat(gw, secret) == 200
            pg.pause()
            time.sleep(0.6)  # past the key cache
            started = time.monotonic()
            down = httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, timeout=30,
                              headers={"Authorization": f"Bearer {secret}"})
            assert down.status_code == 503 and down.json()["error"]["code"] == "store_unavailable"
            assert down.headers["retry-after"] == "2" and time.monotonic() - started < 10
            pg.resume()
            assert wait_until(lambda: chat(gw, secret) == 200, timeout=20, every=0.2)
            assert wait_until(lambda: requests_of(gw, "alice") >= 2, timeout=10)
