"""Keys, budgets and usage through the gateway's HTTP API (fake core, in-process gateways): the
admin key API, hashed secrets, allowed models, every limit's 429, usage rows with their fields,
buckets and CSV, and LABS_API_KEYS seeding. Restarts and several gateways on one PostgreSQL are in
tests/reliability/test_store_processes.py."""

from __future__ import annotations

import csv
import io
import sqlite3
import time

import httpx
import pytest

from labs_gateway import create_app
from tests.labs_gateway.support import GatewayThread, gateway_settings

CHAT = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}]}  # fake core: 7 + 3 tokens
ADMIN = {"Authorization": "Bearer sk-admin"}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def chat(gw: GatewayThread, secret: str, **body) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/chat/completions", json={**CHAT, **body}, headers=bearer(secret), timeout=30)


@pytest.fixture()
def admin_gw(fake_core, tmp_path):
    settings = gateway_settings([fake_core.address], admin_key="sk-admin", store=f"sqlite://{tmp_path / 'labs.db'}",
                                usage_flush_s=0.05)
    with GatewayThread(create_app(settings)) as gw:
        gw.db = tmp_path / "labs.db"
        yield gw


def create(gw: GatewayThread, **fields) -> dict:
    answer = httpx.post(f"{gw.url}/admin/keys", json=fields, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_key_lifecycle_and_hashed_secrets(admin_gw):
    gw = admin_gw
    assert chat(gw, "anything").status_code == 200  # no key yet: keys are off
    made = create(gw, name="alice", owner="team-a")
    secret = made["secret"]
    assert secret.startswith("labs-") and made["status"] == "active" and "secret_hash" not in made
    assert chat(gw, "anything").status_code == 401  # the first key turns keys on
    assert chat(gw, secret).status_code == 200
    listed = httpx.get(f"{gw.url}/admin/keys", headers=ADMIN).json()["data"]
    assert [(k["name"], k["owner"], k["source"]) for k in listed] == [("alice", "team-a", "api")]
    assert all("secret" not in k for k in listed) and listed[0]["prefix"] == secret[:9]
    assert httpx.post(f"{gw.url}/admin/keys", json={"name": "alice"}, headers=ADMIN).status_code == 409
    assert httpx.post(f"{gw.url}/admin/keys", json={"name": "bad name"}, headers=ADMIN).status_code == 400
    assert httpx.post(f"{gw.url}/admin/keys", json={"name": "x", "rpm": -1}, headers=ADMIN).status_code == 400
    assert httpx.get(f"{gw.url}/admin/keys", headers=bearer(secret)).status_code == 401

    rotated = httpx.post(f"{gw.url}/admin/keys/alice/rotate", headers=ADMIN).json()
    assert rotated["secret"] != secret
    assert chat(gw, secret).status_code == 401 and chat(gw, rotated["secret"]).status_code == 200
    revoked = httpx.delete(f"{gw.url}/admin/keys/alice", headers=ADMIN).json()
    assert revoked["status"] == "revoked"
    refused = chat(gw, rotated["secret"])
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
    assert httpx.post(f"{gw.url}/admin/keys/alice/rotate", headers=ADMIN).status_code == 409
    assert httpx.delete(f"{gw.url}/admin/keys/nobody", headers=ADMIN).status_code == 404

    expired = create(gw, name="old", expires_at=int(time.time()) - 1)
    assert chat(gw, expired["secret"]).json()["error"]["code"] == "expired_api_key"

    # The database holds hashes, never a secret.
    dump = "\n".join(sqlite3.connect(gw.db).iterdump())
    for s in (secret, rotated["secret"], expired["secret"]):
        assert s not in dump and s[5:] not in dump


def test_key_management_needs_an_admin_key(fake_core):
    with GatewayThread(create_app(gateway_settings([fake_core.address]))) as gw:
        answer = httpx.post(f"{gw.url}/admin/keys", json={"name": "alice"})
        assert answer.status_code == 403 and "LABS_ADMIN_KEY" in answer.json()["error"]["message"]


def test_allowed_models(admin_gw):
    secret = create(admin_gw, name="narrow", models=["fake-drip"])["secret"]
    refused = chat(admin_gw, secret)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_not_allowed"
    assert chat(admin_gw, secret, model="fake-drip").status_code == 200
    widened = httpx.patch(f"{admin_gw.url}/admin/keys/narrow", json={"models": []}, headers=ADMIN).json()
    assert widened["models"] == []
    assert chat(admin_gw, secret).status_code == 200


def test_requests_per_minute_says_which_limit_and_when(admin_gw):
    _away_from_minute_end()
    secret = create(admin_gw, name="rpm", rpm=3)["secret"]
    assert [chat(admin_gw, secret).status_code for _ in range(5)] == [200, 200, 200, 429, 429]
    error = chat(admin_gw, secret)
    body = error.json()["error"]
    assert body["code"] == "rate_limit_exceeded" and body["param"] == "rpm" and body["type"] == "rate_limit_error"
    assert "3 requests per minute" in body["message"] and "resets at" in body["message"]
    assert 1 <= int(error.headers["retry-after"]) <= 60


def test_token_budgets_are_a_hard_stop(admin_gw):
    day = create(admin_gw, name="daily", day_tokens=25)["secret"]
    for _ in range(3):  # 10 tokens each: 30 >= 25 after the third
        assert chat(admin_gw, day).status_code == 200
    time.sleep(0.7)  # one flush (0.05 s) and the limit's cache (0.5 s)
    stopped = chat(admin_gw, day)
    body = stopped.json()["error"]
    assert stopped.status_code == 429 and body["code"] == "insufficient_quota" and body["param"] == "day_tokens"
    assert "25 tokens per day" in body["message"] and "T00:00:00Z" in body["message"]
    assert int(stopped.headers["retry-after"]) >= 1
    month = create(admin_gw, name="monthly", month_tokens=5)["secret"]
    assert chat(admin_gw, month).status_code == 200
    time.sleep(0.7)
    assert chat(admin_gw, month).json()["error"]["param"] == "month_tokens"
    raised = httpx.patch(f"{admin_gw.url}/admin/keys/monthly", json={"month_tokens": None}, headers=ADMIN)
    assert raised.json()["month_tokens"] is None
    assert chat(admin_gw, month).status_code == 200
    _away_from_minute_end()
    tpm = create(admin_gw, name="tpm", tpm=10)["secret"]
    assert chat(admin_gw, tpm).status_code == 200
    time.sleep(0.7)
    assert chat(admin_gw, tpm).json()["error"]["param"] == "tpm"


def test_usage_rows_buckets_and_csv(admin_gw):
    gw = admin_gw
    secret = create(gw, name="alice")["secret"]
    assert chat(gw, secret).status_code == 200
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json={**CHAT, "model": "fake-drip", "stream": True},
                      headers=bearer(secret)) as stream:
        assert stream.status_code == 200 and "[DONE]" in "".join(stream.iter_text())
    assert chat(gw, secret, model="fake-invalid").status_code == 400
    usage = httpx.get(f"{gw.url}/admin/usage?key=alice&bucket=hour", headers=ADMIN).json()
    alice = usage["keys"]["alice"]
    assert usage["bucket_seconds"] == 3600 and alice["totals"]["requests"] == 3 and alice["totals"]["errors"] == 1
    assert alice["models"]["fake-chat"]["prompt_tokens"] == 7 and alice["models"]["fake-chat"]["completion_tokens"] == 3
    assert alice["models"]["fake-drip"]["requests"] == 1
    assert alice["buckets"][0]["start"] % 3600 == 0
    text = httpx.get(f"{gw.url}/admin/usage?key=alice&format=csv", headers=ADMIN)
    assert text.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text.text)))
    assert [r["status"] for r in rows] == ["200", "200", "400"]
    assert rows[0]["model"] == "fake-chat" and rows[0]["key_name"] == "alice"
    assert rows[0]["finish_reason"] in ("stop", "length")
    assert rows[0]["route"] == "/v1/chat/completions" and float(rows[0]["latency_ms"]) > 0 and rows[0]["request_id"]
    assert rows[1]["model"] == "fake-drip" and int(rows[1]["completion_tokens"]) > 0 and rows[0]["time"].endswith("Z")
    later = httpx.get(f"{gw.url}/admin/usage?since={time.time() + 60}", headers=ADMIN).json()
    assert later["keys"] == {}
    assert httpx.get(f"{gw.url}/admin/usage?bucket=week", headers=ADMIN).status_code == 400
    metrics = httpx.get(f"{gw.url}/metrics").text
    assert 'labs_gateway_key_requests_total{key="alice",status="200"} 2.0' in metrics
    assert 'labs_gateway_key_tokens_total{direction="prompt",key="alice"}' in metrics


def test_a_stream_the_client_cancels_is_charged_what_it_was_sent(admin_gw):
    """The core's usage comes on a stream's last message, which a cancelled stream never gets; the
    row still charges the prompt (on the first message) and the tokens relayed, so walking away just
    before the end is no way around a token budget."""
    gw = admin_gw
    secret = create(gw, name="quitter")["secret"]
    received = []
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json={**CHAT, "model": "fake-drip", "stream": True},
                      headers=bearer(secret)) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: {"):
                received.append(line)
            if len(received) == 4:
                break  # leaves the with: the connection closes mid-stream
    deadline = time.monotonic() + 10
    while True:
        rows = list(csv.DictReader(io.StringIO(
            httpx.get(f"{gw.url}/admin/usage?key=quitter&format=csv", headers=ADMIN).text)))
        if rows or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(rows) == 1 and rows[0]["finish_reason"] == "cancelled"
    assert int(rows[0]["prompt_tokens"]) == 3  # (fake-drip: a prompt of 3, ten tokens of one each)
    assert 4 <= int(rows[0]["completion_tokens"]) < 10


def test_env_keys_are_seeded_and_removed_ones_revoked(fake_core, tmp_path):
    store = f"sqlite://{tmp_path / 'labs.db'}"
    settings = gateway_settings([fake_core.address], api_keys=("alice:sk-alice", "bob:sk-bob"), admin_key="sk-admin",
                                store=store)
    with GatewayThread(create_app(settings)) as gw:
        assert chat(gw, "sk-bob").status_code == 200
        sources = {k["name"]: k["source"] for k in httpx.get(f"{gw.url}/admin/keys", headers=ADMIN).json()["data"]}
        assert sources == {"alice": "env", "bob": "env"}
    settings = gateway_settings([fake_core.address], api_keys=("alice:sk-alice2",), admin_key="sk-admin", store=store)
    with GatewayThread(create_app(settings)) as gw:
        assert chat(gw, "sk-bob").status_code == 401  # left LABS_API_KEYS: revoked
        assert chat(gw, "sk-alice").status_code == 401  # its secret changed in the environment
        assert chat(gw, "sk-alice2").status_code == 200


def _away_from_minute_end() -> None:
    """Per-minute counters reset on the minute: keep a test's requests inside one."""
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)


def test_default_store_is_sqlite_in_the_data_dir(fake_core, tmp_path):
    settings = gateway_settings([fake_core.address], store="", data_dir=str(tmp_path / "data"), admin_key="sk-admin")
    with GatewayThread(create_app(settings)) as gw:
        create(gw, name="alice")
    db = tmp_path / "data" / "labs.db"
    assert db.is_file() and [r[0] for r in sqlite3.connect(db).execute("SELECT name FROM labs_keys")] == ["alice"]
