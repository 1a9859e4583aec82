"""GGUF files load once: the converted weights, config and tokenizer are saved as a plain
transformers directory (safetensors) in a cache keyed by the file's hash, so later starts skip
the parsing and de-quantization.

transformers reads a GGUF's metadata three times (config, weights, tokenizer), and each read
parses every field of the file, the tokenizer's ~50k strings included (seconds each on a small
CPU); its tensor-name mapping rebuilds the same table for every submodule. `fast_gguf_reads`
makes a first load parse the file once and build the table once.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)

CACHE_VERSION = "1"  # bump when what is saved changes


def cache_root() -> Path:
    """$XDG_CACHE_HOME/labs, else ~/.cache/labs (LABS_CACHE_DIR overrides it in the settings)."""
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "labs"


def file_hash(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def cache_dir_for(gguf_path: Path, dtype_name: str, root: Path | None = None) -> Path:
    """Where the conversion of this file (by content) to this dtype lives."""
    return (root or cache_root()) / "gguf" / f"{file_hash(gguf_path)[:24]}-{dtype_name}-v{CACHE_VERSION}"


def is_complete(directory: Path) -> bool:
    return (directory / "config.json").is_file() and any(directory.glob("*.safetensors")) \
        and (directory / "tokenizer_config.json").is_file()


def save(model: Any, tokenizer: Any, directory: Path) -> bool:
    """Write the converted model next to its final place, then rename: a reader never sees half a
    directory, and two processes converting at once both succeed. False (logged) when it cannot."""
    started = time.perf_counter()
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=directory.parent))
        try:
            save_weights(model, staging)
            tokenizer.save_pretrained(staging)
            os.replace(staging, directory)
        except OSError:
            if not is_complete(directory):
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except Exception as exc:  # a read-only home is no reason to fail the load
        log.warning("could not cache the converted GGUF weights in %s: %s", directory, exc)
        return False
    log.info("cached the converted GGUF weights in %s (%.1fs)", directory, time.perf_counter() - started)
    return True


def save_weights(model: Any, directory: Path) -> None:
    """The model as plain weights: save_pretrained refuses a model loaded from GGUF (its config
    says "quantized with gguf", though the weights are de-quantized by then)."""
    from safetensors.torch import save_model

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(directory)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(directory)
    save_model(model, str(directory / "model.safetensors"), metadata={"format": "pt"})


@contextlib.contextmanager
def fast_gguf_reads() -> Iterator[None]:
    """Within: one GGUFReader per file and one tensor-name table per (architecture, layers)."""
    import gguf

    original_reader, original_map = gguf.GGUFReader, gguf.get_tensor_name_map

    @functools.lru_cache(maxsize=4)
    def reader(path: str, mode: str = "r") -> Any:
        return original_reader(path, mode)

    gguf.GGUFReader = lambda path, mode="r": reader(str(path), mode)
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=8)(original_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = original_reader, original_map
