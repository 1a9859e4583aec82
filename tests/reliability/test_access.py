"""Access: TLS and the token on the core's gRPC port, API keys and CORS on the gateway, no secret in
any log line or error body, trust_remote_code off unless configured, and no request field that can
name a file. One core (TLS + token) and one gateway (keys, debug logging), both child processes, so
that their logs are exactly what an operator would read."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from labs_core.proto import generation_pb2 as g
from labs_core.proto import (generation_pb2_grpc, models_pb2, models_pb2_grpc, server_pb2,
                             server_pb2_grpc)
from tests.reliability.processes import CoreProcess, GatewayProcess, core_env, free_port, gateway_env

pytestmark = pytest.mark.slow

CORE_TOKEN = "core-token-Zq81xVv3"
API_KEY = "sk-alice-Jx7Pq2Lm9Rt4"
ADMIN_KEY = "sk-admin-Hw5Ny8Kd1Fe6"
WRONG_KEY = "sk-guess-Tb3Ms6Qc0Ua2"  # a caller's wrong guess is a secret too (a typo of a real key)
SECRETS = (CORE_TOKEN, API_KEY, ADMIN_KEY, WRONG_KEY)
ORIGIN = "https://console.example"


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, valid for a day, and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "labs test core")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "core.crt", folder / "core.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def secured(tmp_path_factory, tiny_llama_dir):
    """(core, gateway, cert): the core with TLS and a token, the gateway with API keys, an admin key,
    CORS for one origin, and debug logging on both."""
    folder = tmp_path_factory.mktemp("secured")
    cert, key = self_signed(folder)
    core = CoreProcess(core_env(tiny_llama_dir, free_port(), LABS_GRPC_TLS_CERT=str(cert), LABS_GRPC_TLS_KEY=str(key),
                                LABS_CORE_TOKEN=CORE_TOKEN, LABS_LOG_LEVEL="debug", LABS_SERVED_MODEL_NAME="tiny"),
                       folder / "core.log")
    gateway = GatewayProcess(gateway_env(core.address, free_port(), LABS_CORE_TOKEN=CORE_TOKEN,
                                         LABS_GRPC_TLS_CERT=str(cert), LABS_API_KEYS=f"alice:{API_KEY}",
                                         LABS_ADMIN_KEY=ADMIN_KEY, LABS_CORS_ORIGINS=ORIGIN,
                                         LABS_LOG_LEVEL="debug"),
                             folder / "gateway.log")
    with core.start(), gateway.start():
        core.wait_health("SERVING", credentials=tls(cert))
        gateway.wait_status("/ready", 200)
        yield core, gateway, cert


def tls(cert: Path) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


# --- the core: TLS and token ---------------------------------------------------------------------------

def test_core_refuses_plaintext(secured):
    core, _, _ = secured
    assert core.health(timeout=3) == "UNAVAILABLE"
    with grpc.insecure_channel(core.address) as channel:
        with pytest.raises(grpc.RpcError) as info:
            models_pb2_grpc.ModelsStub(channel).ListModels(models_pb2.ListModelsRequest(), metadata=auth(CORE_TOKEN),
                                                           timeout=3)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("metadata", [(), auth("not-the-token"), (("authorization", CORE_TOKEN),)],
                         ids=["missing", "wrong", "not-bearer"])
def test_core_token_required_for_every_service(secured, metadata):
    core, _, cert = secured
    with grpc.secure_channel(core.address, tls(cert)) as channel:
        calls = [
            lambda: models_pb2_grpc.ModelsStub(channel).ListModels(models_pb2.ListModelsRequest(), metadata=metadata,
                                                                   timeout=5),
            lambda: server_pb2_grpc.ServerStub(channel).GetServerInfo(server_pb2.ServerInfoRequest(),
                                                                      metadata=metadata, timeout=5),
            lambda: list(generation_pb2_grpc.GenerationStub(channel).Generate(
                g.GenerateRequest(prompt="hi", sampling=g.SamplingParams(max_tokens=2)), metadata=metadata,
                timeout=5)),
        ]
        for call in calls:
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert CORE_TOKEN not in (info.value.details() or "")


def test_health_and_reflection_need_no_token_and_the_right_token_works(secured):
    core, _, cert = secured
    with grpc.secure_channel(core.address, tls(cert)) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        names = {s.name for r in reflection for s in r.list_services_response.service}
        assert "labs.v1.Generation" in names
        replies = list(generation_pb2_grpc.GenerationStub(channel).Generate(
            g.GenerateRequest(prompt="hi", sampling=g.SamplingParams(max_tokens=2, temperature=0)),
            metadata=auth(CORE_TOKEN), timeout=30))
        assert replies[-1].usage.completion_tokens == 2
        info = server_pb2_grpc.ServerStub(channel).GetServerInfo(server_pb2.ServerInfoRequest(),
                                                                 metadata=auth(CORE_TOKEN), timeout=10)
        shown = {c.key: c.value for c in info.config}
        assert shown["core.core_token"] == "***"


# --- the gateway: keys, CORS, secrets ---------------------------------------------------------------

def test_api_keys_and_admin_key_over_a_tls_core(secured):
    _, gateway, _ = secured
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        ok = http.post("/v1/chat/completions", json=chat, headers={"Authorization": f"Bearer {API_KEY}"})
        assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 2
        for headers in ({}, {"Authorization": f"Bearer {WRONG_KEY}"}, {"Authorization": API_KEY},
                        {"Authorization": f"Bearer {ADMIN_KEY}"}):
            refused = http.post("/v1/chat/completions", json=chat, headers=headers)
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key", headers
        assert http.get("/admin/usage", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 401
        usage = http.get("/admin/usage", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert usage.status_code == 200 and "alice" in usage.json()["keys"]
        assert http.get("/health").status_code == 200 and http.get("/ready").status_code == 200


def test_cors_allowlist(secured):
    _, gateway, _ = secured
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        allowed = http.options("/v1/chat/completions", headers={"Origin": ORIGIN, **preflight})
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ORIGIN
        answer = http.get("/v1/models", headers={"Origin": ORIGIN, "Authorization": f"Bearer {API_KEY}"})
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == ORIGIN
        for origin in ("https://evil.example", "https://console.example.evil.example", "null"):
            denied = http.options("/v1/chat/completions", headers={"Origin": origin, **preflight})
            assert "access-control-allow-origin" not in denied.headers, origin
            simple = http.get("/v1/models", headers={"Origin": origin, "Authorization": f"Bearer {API_KEY}"})
            assert "access-control-allow-origin" not in simple.headers, origin


def test_no_secret_in_any_log_line_or_error(secured):
    """Every kind of request with keys (right, wrong, misplaced), failures on both sides included;
    then neither process's log, nor any answer, holds a key or the core token."""
    core, gateway, _ = secured
    answers: list[str] = []
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        for key in (API_KEY, WRONG_KEY, ADMIN_KEY):
            headers = {"Authorization": f"Bearer {key}", "X-Request-ID": "secret-check"}
            for method, path, body in [
                ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
                ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stream": True,
                                                  "max_tokens": 2}),
                ("POST", "/v1/chat/completions", {"messages": [{"role": "wizard", "content": "hi"}]}),
                ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                                                  "model": "no-such-model"}),
                ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi " * 3000}]}),
                ("POST", "/v1/completions", {"prompt": "hi", "max_tokens": 5000}),
                ("POST", "/v1/embeddings", {"input": "hi"}),  # embeddings are off on this core: an error
                ("GET", "/v1/models", None), ("GET", "/admin/usage", None), ("GET", "/admin/stats", None),
                ("GET", "/metrics", None), ("GET", "/openapi.json", None),
            ]:
                response = http.request(method, path, json=body, headers=headers)
                answers.append(f"{response.status_code} {response.headers} {response.text}")
        # The key in places it does not belong: the query string and the body.
        answers.append(http.post(f"/v1/chat/completions?api_key={WRONG_KEY}", json={
            "messages": [{"role": "user", "content": "hi"}], "api_key": WRONG_KEY}).text)
    assert any(a.startswith("200") for a in answers) and any(a.startswith("401") for a in answers)
    assert any(a.startswith("400") for a in answers) and any(a.startswith("404") for a in answers)
    logs = {"core": core.log(), "gateway": gateway.log()}
    assert "DEBUG" in logs["core"] and "DEBUG" in logs["gateway"], "debug logging was not on"
    assert "alice" in logs["gateway"]  # the key's name is logged, the key itself is not
    for where, text in [*logs.items(), *(("answer", a) for a in answers)]:
        for secret in SECRETS:
            assert secret not in text, f"{secret[:6]}... appears in the {where}"


def test_server_processes_freeze_their_start_up_objects(secured):
    """(Here because these processes log at debug level.) labs-core and the gateway each move their
    start-up objects out of garbage collection (labs_core/gc_pauses.py), the core again once its
    model is loaded (in process on a CPU: the engine process's own freeze is the same call)."""
    core, gateway, _ = secured
    frozen = "start-up objects frozen out of garbage collection"
    core_log = core.log().splitlines()
    for what in ("labs core started", "model tiny loaded"):
        assert any(f"{what}: " in line and frozen in line for line in core_log), what
    assert any("labs gateway started" in line and frozen in line for line in gateway.log().splitlines())
