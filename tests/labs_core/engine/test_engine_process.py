"""The engine in a process of its own (LABS_ENGINE_PROCESS): what gRPC clients get is the same as
from the engine in the serving process; a dead engine process fails its streams and the model, and
never hangs them; stopping the core stops the engine process."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from labs_core.proto import generation_pb2 as g
from labs_core.proto import generation_pb2_grpc, models_pb2, models_pb2_grpc, server_pb2, server_pb2_grpc
from tests.support import CoreThread, core_settings

pytestmark = pytest.mark.slow
PROMPTS = ["Tell me a story", "What is 2 + 2?", "List three colours", "Hello there", "Why is the sky blue?",
           "Write a haiku", "Name a fruit", "Count to five"]


@pytest.fixture(scope="module")
def process_core(tiny_llama_dir):
    settings = core_settings(tiny_llama_dir, model={"served_name": "tiny"}, engine={"engine_process": "true"},
                             embeddings={"embedding_model": ""})
    with CoreThread(settings) as server:
        yield server


def engine_process(core: CoreThread):
    return core.server.state.registry.find("tiny").obj.backend


def stream(address: str, prompt: str, seed: int, max_tokens: int = 24) -> tuple[str, list[int], g.GenerateResponse]:
    with grpc.insecure_channel(address) as channel:
        stub = generation_pb2_grpc.GenerationStub(channel)
        request = g.GenerateRequest(messages=[g.ChatMessage(role="user", content=prompt)],
                                    sampling=g.SamplingParams(max_tokens=max_tokens, temperature=0.8, seed=seed,
                                                              ignore_eos=True))
        responses = list(stub.Generate(request))
    return "".join(r.text for r in responses), [t for r in responses for t in r.token_ids], responses[-1]


def test_model_is_served_by_a_child_process(process_core):
    backend = engine_process(process_core)
    assert type(backend).__name__ == "EngineProcess"
    assert backend.process.pid != os.getpid() and backend.process.poll() is None
    with grpc.insecure_channel(process_core.address) as channel:
        models = models_pb2_grpc.ModelsStub(channel).ListModels(models_pb2.ListModelsRequest()).models
    tiny = next(m for m in models if m.name == "tiny")
    assert tiny.ready and tiny.serving_path == "paged" and tiny.architecture == "LlamaForCausalLM"
    assert tiny.context_length == 1024 and tiny.parameter_count > 0


def test_concurrent_streams_equal_the_in_process_engine(process_core, tiny_llama_dir):
    def run_all(address: str) -> list[tuple[str, list[int]]]:
        with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as pool:
            results = list(pool.map(lambda i: stream(address, PROMPTS[i], seed=i), range(len(PROMPTS))))
        for _, tokens, last in results:
            assert last.usage.completion_tokens == 24 and len(tokens) == 24
        return [(text, tokens) for text, tokens, _ in results]

    served = run_all(process_core.address)
    in_process = core_settings(tiny_llama_dir, model={"served_name": "tiny"}, engine={"engine_process": "false"},
                               embeddings={"embedding_model": ""})
    with CoreThread(in_process) as reference:
        assert type(engine_process(reference)).__name__ == "AsyncEngine"
        expected = run_all(reference.address)
    assert served == expected


def test_cancelled_stream_frees_the_engine(process_core):
    with grpc.insecure_channel(process_core.address) as channel:
        stub = generation_pb2_grpc.GenerationStub(channel)
        call = stub.Generate(g.GenerateRequest(prompt="a b c", sampling=g.SamplingParams(
            max_tokens=900, temperature=0, ignore_eos=True)))
        next(call)
        call.cancel()
        server = server_pb2_grpc.ServerStub(channel)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(0.6)  # the engine process reports its figures every half second
            engine = server.GetStats(server_pb2.StatsRequest()).engines[0]
            if engine.running == 0 and engine.kv_blocks_used == 0:
                break
        assert engine.running == 0 and engine.waiting == 0 and engine.kv_blocks_used == 0
        assert engine.requests_finished >= 8


def test_a_dead_engine_process_fails_streams_and_the_model(tiny_llama_dir):
    settings = core_settings(tiny_llama_dir, model={"served_name": "tiny"}, engine={"engine_process": "true"},
                             embeddings={"embedding_model": ""})
    with CoreThread(settings) as core, grpc.insecure_channel(core.address) as channel:
        backend = engine_process(core)
        stub = generation_pb2_grpc.GenerationStub(channel)
        call = stub.Generate(g.GenerateRequest(prompt="a b c", sampling=g.SamplingParams(
            max_tokens=900, temperature=0, ignore_eos=True)), timeout=60)
        next(call)
        os.kill(backend.process.pid, signal.SIGKILL)
        with pytest.raises(grpc.RpcError) as failed:
            for _ in call:
                pass
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "engine process exited" in failed.value.details()
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 5
        while health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        tiny = models_pb2_grpc.ModelsStub(channel).GetModel(models_pb2.GetModelRequest(name="tiny"))
        assert tiny.state == models_pb2.MODEL_STATE_FAILED and "engine process exited" in tiny.error
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.Generate(g.GenerateRequest(prompt="again")))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_load_failure_in_the_engine_process_names_the_reason(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama", "vocab_size": "not a number"}')
    settings = core_settings(tmp_path, model={"served_name": "broken"}, engine={"engine_process": "true"},
                             embeddings={"embedding_model": ""})
    with CoreThread(settings) as core, grpc.insecure_channel(core.address) as channel:
        broken = models_pb2_grpc.ModelsStub(channel).GetModel(models_pb2.GetModelRequest(name="broken"))
    assert broken.state == models_pb2.MODEL_STATE_FAILED and broken.error


def test_stopping_the_core_stops_the_engine_process(tiny_llama_dir):
    settings = core_settings(tiny_llama_dir, model={"served_name": "tiny"}, engine={"engine_process": "true"},
                             embeddings={"embedding_model": ""})
    core = CoreThread(settings)
    process = engine_process(core).process
    assert process.poll() is None
    core.stop()
    assert process.wait(timeout=15) == 0
