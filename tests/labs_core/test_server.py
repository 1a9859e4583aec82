"""The core as a client sees it: health, reflection, models, generation and error statuses."""

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from labs_core.proto import generation_pb2 as g
from labs_core.proto import generation_pb2_grpc, models_pb2, models_pb2_grpc, server_pb2, server_pb2_grpc
from tests.support import CoreThread, core_settings


@pytest.fixture(scope="module")
def core(tiny_llama_dir):
    with CoreThread(core_settings(tiny_llama_dir, model={"served_name": "tiny"})) as server:
        yield server


@pytest.fixture()
def channel(core):
    with grpc.insecure_channel(core.address) as ch:
        yield ch


def test_health_serving_after_load(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "labs.v1.Generation"):
        assert stub.Check(health_pb2.HealthCheckRequest(service=service)).status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_services(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"labs.v1.Generation", "labs.v1.Models", "labs.v1.Server", "grpc.health.v1.Health"} <= names


def test_list_models(channel):
    models = models_pb2_grpc.ModelsStub(channel).ListModels(models_pb2.ListModelsRequest()).models
    tiny = next(m for m in models if m.name == "tiny")
    assert tiny.ready and tiny.is_default and tiny.context_length == 1024 and tiny.architecture == "LlamaForCausalLM"
    assert tiny.serving_path == "paged"


def test_generate_streams_and_ends_with_usage(channel):
    stub = generation_pb2_grpc.GenerationStub(channel)
    req = g.GenerateRequest(messages=[g.ChatMessage(role="user", content="Hi")],
                            sampling=g.SamplingParams(max_tokens=8, temperature=0, ignore_eos=True))
    responses = list(stub.Generate(req))
    assert responses[-1].usage.completion_tokens == 8
    assert responses[-1].usage.prompt_tokens > 0
    finals = [r for r in responses if r.finish_reason]
    assert len(finals) == 1 and finals[0].finish_reason == g.FINISH_REASON_LENGTH
    assert sum(len(r.token_ids) for r in responses) == 8
    assert all(r.request_id == responses[0].request_id for r in responses)
    # the prompt's tokens come first too, for a caller that cancels before the usage
    assert responses[0].prompt_tokens == responses[-1].usage.prompt_tokens
    assert all(r.prompt_tokens == 0 for r in responses[1:])


@pytest.mark.parametrize("request_kwargs,code,param", [
    (dict(prompt="hi", sampling=g.SamplingParams(temperature=5)), grpc.StatusCode.INVALID_ARGUMENT, "temperature"),
    (dict(prompt="hi", model="nope"), grpc.StatusCode.NOT_FOUND, "model"),
    (dict(), grpc.StatusCode.INVALID_ARGUMENT, "messages"),
    (dict(messages=[g.ChatMessage(role="wizard", content="x")]), grpc.StatusCode.INVALID_ARGUMENT, "messages[0].role"),
    (dict(prompt="hi", sampling=g.SamplingParams(max_tokens=5000)), grpc.StatusCode.RESOURCE_EXHAUSTED, "max_tokens"),
    (dict(prompt="hi " * 2000), grpc.StatusCode.RESOURCE_EXHAUSTED, "prompt"),
])
def test_errors_map_to_status_codes(channel, request_kwargs, code, param):
    stub = generation_pb2_grpc.GenerationStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Generate(g.GenerateRequest(**request_kwargs)))
    assert info.value.code() == code
    assert dict(info.value.trailing_metadata())["labs-error-param"] == param
    assert info.value.details()


def test_server_info_masks_secrets_and_reports_config(channel):
    info = server_pb2_grpc.ServerStub(channel).GetServerInfo(server_pb2.ServerInfoRequest())
    keys = {c.key: c for c in info.config}
    assert keys["model.served_name"].value == "tiny" and keys["model.served_name"].source == "cli"
    assert info.version and info.torch_version


def test_tokenize(channel):
    stub = generation_pb2_grpc.GenerationStub(channel)
    out = stub.Tokenize(g.TokenizeRequest(text="hello world", return_tokens=True))
    assert out.count == len(out.token_ids) == len(out.tokens) > 0 and out.max_model_len == 1024


def test_stats_and_prometheus_text_after_a_request(channel):
    stub = generation_pb2_grpc.GenerationStub(channel)
    list(stub.Generate(g.GenerateRequest(prompt="count", sampling=g.SamplingParams(max_tokens=3, ignore_eos=True))))
    stats = server_pb2_grpc.ServerStub(channel).GetStats(server_pb2.StatsRequest())
    engine = next(e for e in stats.engines if e.model == "tiny")
    assert engine.requests_finished >= 1 and engine.kv_blocks_total > 0 and engine.running == 0
    assert engine.kv_blocks_used == 0  # finished requests hold no blocks (cached ones are free)
    text = stats.prometheus_text
    assert 'labs_engine_requests_finished{model="tiny"}' in text
    assert 'labs_engine_ttft_s_bucket{model="tiny",le="+Inf"}' in text
