"""Admin subcommands that read the core or the configuration: config, gpu, models, embed, health."""

from __future__ import annotations

import json
import math
import platform

import grpc
from rich.console import Console
from rich.text import Text

from labs_cli.client import CoreClient
from labs_cli.errors import CliError, CoreError, CoreUnreachable
from labs_cli.render import human_bytes, table
from labs_core.proto import embeddings_pb2

MODEL_STATES = {0: "?", 1: "not loaded", 2: "loading", 3: "ready", 4: "failed"}
MODEL_KINDS = {0: "?", 1: "chat", 2: "embedding"}


def show_config(settings, console: Console) -> int:
    """Every effective value, where it came from and the variable that sets it (secrets masked)."""
    rows = [(row.key, row.shown_value, _source(row.source), row.env) for row in settings.describe()]
    console.print(table("effective configuration (CLI flags > LABS_* env / .env > labs.toml > defaults)",
                        ("key", "value", "source", "env var"), rows, no_wrap=("key",),
                        min_width={"value": 16, "source": 9, "env var": 12}))
    return 0


def _source(source) -> str:
    return source.kind if source.detail in ("", source.kind) else f"{source.kind} ({source.detail})"


def show_gpu(client: CoreClient, console: Console) -> int:
    """The core's devices when one runs (its view is the one that matters), else this machine's."""
    try:
        info = client.server_info()
    except CoreUnreachable:
        return _local_gpu(console, client.address)
    where = f"core at {client.address} (device {info.device or '?'}, torch {info.torch_version})"
    if not info.gpus:
        console.print(f"{where}: no GPU, serving on CPU")
        return 0
    console.print(_gpu_table(where, [(g.index, g.name, g.total_memory_bytes, g.free_memory_bytes, g.bf16_supported,
                                      g.compute_capability) for g in info.gpus]))
    return 0


def _gpu_table(title: str, rows) -> object:
    return table(title, ("#", "name", "memory", "free", "bf16", "compute"), [
        (i, name, human_bytes(total), human_bytes(free), "yes" if bf16 else "no", cc)
        for i, name, total, free, bf16, cc in rows])


def _local_gpu(console: Console, address: str) -> int:
    try:
        import torch  # only here: the CLI never needs torch otherwise
    except ImportError:
        console.print(f"no core at {address} and torch is not installed here, so no device information; "
                      "start a core (`labs serve`) or install torch")
        return 1
    title = f"this machine (no core at {address}), torch {torch.__version__}"
    if not torch.cuda.is_available():
        console.print(f"{title}: no CUDA GPU, {platform.processor() or platform.machine()} CPU")
        return 0
    rows = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        free, total = torch.cuda.mem_get_info(i)
        rows.append((i, props.name, total, free, torch.cuda.is_bf16_supported(), f"{props.major}.{props.minor}"))
    console.print(_gpu_table(title, rows))
    return 0


def show_models(client: CoreClient, console: Console) -> int:
    models = client.list_models()
    console.print(table(f"models on {client.address}",
                        ("name", "kind", "state", "default", "context", "dtype", "device", "path", "source"), [
        (m.name, MODEL_KINDS.get(m.kind, "?"), MODEL_STATES.get(m.state, "?") + (f": {m.error}" if m.error else ""),
         "yes" if m.is_default else "", m.context_length or m.embedding_dimensions or "", m.dtype, m.device,
         m.serving_path, m.source) for m in models]))
    return 0


def embed(client: CoreClient, console: Console, texts: list[str], model: str = "", as_json: bool = False) -> int:
    try:
        response = client.embed(embeddings_pb2.EmbedRequest(model=model, texts=texts))
    except CoreError as exc:
        if exc.code is grpc.StatusCode.UNIMPLEMENTED:
            raise CliError(f"the core at {client.address} does not serve embeddings yet (UNIMPLEMENTED)") from None
        raise
    if as_json:
        console.print_json(json.dumps({"model": response.model, "embeddings": [
            {"index": e.index, "tokens": e.tokens, "truncated": e.truncated, "values": list(e.values)}
            for e in response.embeddings]}))
        return 0
    rows = []
    for e in response.embeddings:
        norm = math.sqrt(sum(v * v for v in e.values))
        head = ", ".join(f"{v:+.4f}" for v in list(e.values)[:6])
        rows.append((e.index, len(e.values), e.tokens, f"{norm:.3f}", f"[{head}, …]"))
    console.print(table(f"embeddings ({response.model})", ("#", "dims", "tokens", "norm", "values"), rows))
    return 0


def health(client: CoreClient, console: Console) -> int:
    """grpc.health.v1 status plus each model's state; exit 0 only when serving with every model ready."""
    status = client.health()
    try:
        models = client.list_models()
    except CoreError as exc:
        console.print(Text(f"health: {status}; models: {exc}", style="yellow"))
        return 1
    ready = all(m.ready for m in models) and bool(models)
    ok = status == "SERVING" and ready
    console.print(Text.assemble(f"core {client.address}: ", (status, "green" if status == "SERVING" else "red")))
    for m in models:
        state = MODEL_STATES.get(m.state, "?") + (f" ({m.error})" if m.error else "")
        console.print(Text.assemble(f"  {MODEL_KINDS.get(m.kind, '?')} model {m.name}: ",
                                    (state, "green" if m.ready else "yellow")))
    return 0 if ok else 1
