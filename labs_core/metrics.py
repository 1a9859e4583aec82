"""The core's Prometheus exposition: engine counters, gauges and histograms per model, rendered as
text for Server.GetStats (the gateway re-exports it on /metrics)."""

from __future__ import annotations

from typing import Any, Iterable

from labs_core.engine.metrics import Histogram
from labs_core.models.registry import CHAT, ModelRegistry, ModelState

GAUGES = {
    "running": "Sequences being decoded or prefilled",
    "waiting": "Sequences waiting for a slot",
    "kv_blocks_total": "KV-cache blocks",
    "kv_blocks_used": "KV-cache blocks in use",
    "prefix_cache_hit_rate": "Fraction of prompt tokens served from the prefix cache",
    "generation_tokens_per_s": "Generated tokens per second, last 5 s",
    "prompt_tokens_per_s": "Prompt tokens per second, last 5 s",
}
COUNTERS = {
    "requests_finished": "Requests finished",
    "requests_rejected": "Requests refused because the queue was full",
    "prompt_tokens_total": "Prompt tokens computed",
    "generation_tokens_total": "Tokens generated",
    "preemptions_total": "Sequences preempted for lack of KV blocks",
}
HISTOGRAMS = {
    "ttft_s": "Time to first token, seconds",
    "inter_token_s": "Time between tokens of a sequence, seconds",
    "batch_size": "Sequences per engine step",
}


def _label(model: str) -> str:
    return '{model="' + model.replace("\\", "\\\\").replace('"', '\\"') + '"}'


def _histogram(name: str, model: str, h: Histogram) -> Iterable[str]:
    cumulative = 0
    escaped = model.replace("\\", "\\\\").replace('"', '\\"')
    for bound, count in zip((*h.buckets, float("inf")), h.counts):
        cumulative += count
        le = "+Inf" if bound == float("inf") else f"{bound:g}"
        yield f'{name}_bucket{{model="{escaped}",le="{le}"}} {cumulative}'
    yield f"{name}_sum{_label(model)} {h.total:g}"
    yield f"{name}_count{_label(model)} {h.count}"


def render(registry: ModelRegistry, active_streams: int) -> str:
    engines: list[tuple[str, Any]] = []
    for entry in registry.entries(CHAT):
        if entry.state is ModelState.READY:
            engines.append((entry.name, entry.obj.backend))
    lines = ["# HELP labs_core_active_streams Generation streams open on this core",
             "# TYPE labs_core_active_streams gauge", f"labs_core_active_streams {active_streams}"]
    stats = [(name, backend.stats()) for name, backend in engines]
    for key, help_text in {**GAUGES, **COUNTERS}.items():
        kind = "counter" if key in COUNTERS else "gauge"
        name = f"labs_engine_{key}"
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{_label(model)} {values[key]:g}" for model, values in stats if key in values]
    for key, help_text in HISTOGRAMS.items():
        name = f"labs_engine_{key}"
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        for model, backend in engines:
            histograms = backend.histograms() if hasattr(backend, "histograms") else {}
            if key in histograms:
                lines += _histogram(name, model, histograms[key])
    return "\n".join(lines) + "\n"
