"""A model that cannot load: a clear error line at start, health NOT_SERVING, ModelInfo.state FAILED
with the reason, generation UNAVAILABLE with that reason; the server itself stays up and answers.
A bad configuration value (the dtype) stops the core at once with a message naming the variable."""

from __future__ import annotations

import logging
import time

import grpc
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

from labs_core.proto import generation_pb2 as g
from labs_core.proto import generation_pb2_grpc, models_pb2, models_pb2_grpc
from tests.support import CoreThread, core_settings

pytestmark = pytest.mark.slow


def failed_model(address: str) -> models_pb2.ModelInfo:
    with grpc.insecure_channel(address) as channel:
        models = models_pb2_grpc.ModelsStub(channel).ListModels(models_pb2.ListModelsRequest(), timeout=5).models
    (chat,) = [m for m in models if m.is_default]
    return chat


def generate_error(address: str) -> grpc.RpcError:
    with grpc.insecure_channel(address) as channel:
        stub = generation_pb2_grpc.GenerationStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Generate(g.GenerateRequest(prompt="hi", sampling=g.SamplingParams(max_tokens=2)), timeout=10))
    return info.value


def test_bad_model_path_fails_the_model_not_the_server(start_core, tmp_path):
    missing = tmp_path / "no-such-model"
    core = start_core(LABS_MODEL=str(missing))
    deadline = time.monotonic() + 60
    while "failed to load" not in core.log():
        assert core.alive(), core.log()[-3000:]
        assert time.monotonic() < deadline, core.log()[-3000:]
        time.sleep(0.1)
    line = next(line for line in core.log().splitlines() if "failed to load" in line)
    assert "ERROR" in line and str(missing) in line and "does not exist" in line
    assert core.health() == "NOT_SERVING"
    info = failed_model(core.address)
    assert info.state == models_pb2.MODEL_STATE_FAILED and not info.ready
    assert str(missing) in info.error and "does not exist" in info.error
    error = generate_error(core.address)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "failed to load" in error.details() and "does not exist" in error.details()


def test_bad_dtype_stops_the_core_with_the_variable_named(start_core):
    core = start_core(LABS_TORCH_DTYPE="fp64")
    assert core.wait(60) == 2
    log = core.log()
    assert "configuration error" in log and "LABS_TORCH_DTYPE" in log and "fp64" in log
    assert "Traceback" not in log


def out_of_memory_in_weights(monkeypatch: pytest.MonkeyPatch) -> str:
    def load(*args, **kwargs):
        raise MemoryError("cannot allocate 14.2 GiB for the weights")

    monkeypatch.setattr("labs_core.models.chat_loader.load_causal_lm", load)
    return "MemoryError: cannot allocate 14.2 GiB for the weights"


def out_of_memory_in_kv_cache(monkeypatch: pytest.MonkeyPatch) -> str:
    def resize(self, blocks, dtype=""):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr("labs_core.engine.model_runner.ModelRunner.resize_kv", resize)
    return "OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB"


@pytest.mark.parametrize("inject", [out_of_memory_in_weights, out_of_memory_in_kv_cache])
def test_out_of_memory_while_loading(monkeypatch, caplog, tiny_llama_dir, inject):
    reason = inject(monkeypatch)
    settings = core_settings(tiny_llama_dir, model={"served_name": "tiny"}, embeddings={"embedding_model": ""})
    with caplog.at_level(logging.ERROR), CoreThread(settings) as core:
        with grpc.insecure_channel(core.address) as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        info = failed_model(core.address)
        assert info.name == "tiny" and info.state == models_pb2.MODEL_STATE_FAILED and info.error == reason
        error = generate_error(core.address)
        assert error.code() == grpc.StatusCode.UNAVAILABLE and reason in error.details()
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("tiny" in m and "failed to load" in m and reason in m for m in logged), logged
