"""Models, readiness and engine statistics as JSON."""

from __future__ import annotations

from typing import Any

from labs_core.proto import common_pb2, models_pb2, server_pb2

KINDS = {common_pb2.MODEL_KIND_CHAT: "chat", common_pb2.MODEL_KIND_EMBEDDING: "embedding"}
STATES = {models_pb2.MODEL_STATE_NOT_LOADED: "not_loaded", models_pb2.MODEL_STATE_LOADING: "loading",
          models_pb2.MODEL_STATE_READY: "ready", models_pb2.MODEL_STATE_FAILED: "failed"}


def model_json(m: models_pb2.ModelInfo) -> dict[str, Any]:
    """OpenAI's model object; what else we know sits under `labs`."""
    details = {"kind": KINDS.get(m.kind, "unspecified"), "state": STATES.get(m.state, "unspecified"),
               "ready": m.ready, "is_default": m.is_default, "source": m.source}
    for name in ("context_length", "dtype", "device", "serving_path", "architecture", "parameter_count",
                 "quantization", "weight_bytes", "embedding_dimensions", "error", "loading_phase"):
        value = getattr(m, name)
        if value:
            details[name] = value
    if m.kind == common_pb2.MODEL_KIND_CHAT:
        details["has_chat_template"] = m.has_chat_template
        details["reasoning"] = m.reasoning
    return {"id": m.name, "object": "model", "created": m.created, "owned_by": "labs", "labs": details}


def models_json(models: list[models_pb2.ModelInfo]) -> dict[str, Any]:
    seen: dict[str, models_pb2.ModelInfo] = {}
    for m in models:  # several cores may serve the same model: list it once, ready wins
        if m.name not in seen or (m.ready and not seen[m.name].ready):
            seen[m.name] = m
    return {"object": "list", "data": [model_json(m) for m in seen.values()]}


def flat(message: Any) -> dict[str, Any]:
    return {f.name: getattr(message, f.name) for f in message.DESCRIPTOR.fields}


def stats_json(stats: server_pb2.ServerStats, with_prometheus: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"active_streams": stats.active_streams, "engines": [flat(e) for e in stats.engines]}
    for engine in out["engines"]:
        total = engine.get("kv_blocks_total") or 0
        engine["kv_cache_usage"] = (engine.get("kv_blocks_used", 0) / total) if total else None
    if with_prometheus:
        out["prometheus_text"] = stats.prometheus_text
    return out
