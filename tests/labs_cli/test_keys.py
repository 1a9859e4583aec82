"""`labs keys ...` and `labs usage` against a live gateway (fake core, SQLite store): the secret is
printed once and works, limits and models reach the key, revoke stops it, usage as a table and CSV."""

from __future__ import annotations

import csv
import io

import httpx
import pytest

from labs_cli import main as cli_main
from labs_cli.errors import CliError
from labs_cli.keys import parse_when
from labs_gateway import create_app
from tests.labs_gateway.fakes import FakeCore
from tests.labs_gateway.support import GatewayThread, GrpcThread, gateway_settings

CHAT = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    fake = FakeCore()
    db = tmp_path_factory.mktemp("store") / "labs.db"
    with GrpcThread(fake.register) as core:
        settings = gateway_settings([core.address], admin_key="sk-admin", store=f"sqlite://{db}", usage_flush_s=0.05)
        with GatewayThread(create_app(settings)) as gw:
            yield gw


def labs(monkeypatch, capsys, gateway, *argv: str) -> tuple[int, str, str]:
    monkeypatch.setenv("LABS_ADMIN_KEY", "sk-admin")
    monkeypatch.setenv("LABS_ENV_FILE", "/nonexistent/.env")
    monkeypatch.setenv("COLUMNS", "200")
    code = cli_main.main([*argv[:2], "--gateway", gateway.url, *argv[2:]] if argv[0] == "keys"
                         else [argv[0], "--gateway", gateway.url, *argv[1:]])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_keys_create_list_update_rotate_revoke(monkeypatch, capsys, gateway):
    code, out, _ = labs(monkeypatch, capsys, gateway, "keys", "create", "alice", "--owner", "team-a", "--rpm", "100",
                        "--day-tokens", "100000", "--models", "fake-chat,fake-drip", "--expires", "30d")
    assert code == 0 and "shown only this once" in out
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("labs-")
    headers = {"Authorization": f"Bearer {secret}"}
    assert httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers=headers).status_code == 200
    code, out, _ = labs(monkeypatch, capsys, gateway, "keys", "list")
    assert code == 0 and "alice" in out and "team-a" in out and "100 rpm" in out and secret not in out
    code, out, _ = labs(monkeypatch, capsys, gateway, "keys", "update", "alice", "--rpm", "none", "--models", "")
    assert code == 0 and "defaults" not in out and "models all" in out
    code, out, _ = labs(monkeypatch, capsys, gateway, "keys", "rotate", "alice")
    new = out.strip().splitlines()[-1]
    assert code == 0 and new != secret
    assert httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers=headers).status_code == 401
    code, out, _ = labs(monkeypatch, capsys, gateway, "keys", "revoke", "alice")
    assert code == 0 and "revoked" in out
    assert httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT,
                      headers={"Authorization": f"Bearer {new}"}).status_code == 401
    code, _, err = labs(monkeypatch, capsys, gateway, "keys", "create", "alice")
    assert code == 1 and "409" in err and "exists" in err


def test_usage_table_and_csv(monkeypatch, capsys, gateway, tmp_path):
    code, out, _ = labs(monkeypatch, capsys, gateway, "keys", "create", "bob")
    secret = out.strip().splitlines()[-1]
    for _ in range(3):
        httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {secret}"})
    code, out, _ = labs(monkeypatch, capsys, gateway, "usage", "--key", "bob")
    row = next(line for line in out.splitlines() if "bob" in line)
    cells = [c.strip() for c in row.split("│")[1:9]]
    assert code == 0 and cells == ["bob", "fake-chat", "3", "0", "21", "9", "6", "30"]
    target = tmp_path / "usage.csv"
    code, out, _ = labs(monkeypatch, capsys, gateway, "usage", "--key", "bob", "--csv", str(target))
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert code == 0 and "3 requests" in out and [r["key_name"] for r in rows] == ["bob"] * 3


def test_wrong_admin_key_and_no_gateway_are_one_line(monkeypatch, capsys, gateway):
    code, _, err = labs(monkeypatch, capsys, gateway, "keys", "list", "--admin-key", "wrong")
    assert code == 1 and "401" in err and "Traceback" not in err
    monkeypatch.setenv("LABS_ADMIN_KEY", "sk-admin")
    assert cli_main.main(["keys", "list", "--gateway", "http://127.0.0.1:9"]) == 1
    assert "no gateway at http://127.0.0.1:9" in capsys.readouterr().err


def test_parse_when():
    assert parse_when("30m", 10_000, future=False) == 10_000 - 1800
    assert parse_when("7d", 0, future=True) == 7 * 86400
    assert parse_when("never", 0, future=True) is None
    assert parse_when("2027-01-31", 0, future=True) == 1_801_353_600
    with pytest.raises(CliError):
        parse_when("soon", 0, future=True)


def test_up_banner_names_the_store_without_its_password():
    from labs_cli.launch import store_shown

    assert store_shown("", "/srv/labs") == "/srv/labs/labs.db (SQLite)"
    assert store_shown("postgresql://labs:s3cret@db:5432/labs", "") == "postgresql://labs:***@db:5432/labs"
    assert store_shown("sqlite:///x/labs.db", "") == "sqlite:///x/labs.db"
