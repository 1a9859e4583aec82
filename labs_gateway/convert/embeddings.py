"""Embeddings and similarities: OpenAI's /v1/embeddings (float or base64 vectors) and our
/v1/similarities (a pairwise matrix, or a query ranked against documents)."""

from __future__ import annotations

import base64
import sys
from array import array
from typing import Any

from labs_core.proto import common_pb2, embeddings_pb2
from labs_gateway.errors import bad_request


def embed_request(body: dict[str, Any]) -> embeddings_pb2.EmbedRequest:
    request = embeddings_pb2.EmbedRequest(model=body.get("model") or "", dimensions=int(body.get("dimensions") or 0))
    data = body["input"]
    if isinstance(data, str):
        request.texts.append(data)
    elif isinstance(data[0], str):
        request.texts.extend(data)
    elif isinstance(data[0], list):
        request.token_inputs.extend(common_pb2.TokenIds(ids=[int(t) for t in ids]) for ids in data)
    else:
        request.token_inputs.append(common_pb2.TokenIds(ids=[int(t) for t in data]))
    if body.get("truncate") is not None:
        request.truncate = body["truncate"]
    return request


def vector_base64(values: Any) -> str:
    """OpenAI's base64 layout: little-endian float32, base64-encoded."""
    packed = array("f", values)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def embeddings_json(r: embeddings_pb2.EmbedResponse, encoding_format: str | None) -> dict[str, Any]:
    encode = vector_base64 if encoding_format == "base64" else list
    return {"object": "list", "model": r.model,
            "data": [{"object": "embedding", "index": e.index, "embedding": encode(e.values)} for e in r.embeddings],
            "usage": {"prompt_tokens": r.usage.prompt_tokens, "total_tokens": r.usage.total_tokens or
                      r.usage.prompt_tokens}}


def check_similarity_form(body: dict[str, Any]) -> None:
    """Which form the body asks for, by presence alone (runs before the schema, for clearer errors)."""
    sentences, query, documents = (body.get(k) for k in ("sentences", "query", "documents"))
    if sentences is not None:
        if query is not None or documents is not None:
            raise bad_request("give either sentences, or query and documents, not both", "sentences")
        if body.get("top_n") is not None:
            raise bad_request("top_n goes with query and documents", "top_n")
    elif query is None or documents is None:
        missing = "query" if query is None and documents is not None else "documents" if query is not None \
            else "sentences"
        raise bad_request(f"{missing} is required (send sentences, or query and documents)", missing)


def similarity_request(body: dict[str, Any]) -> embeddings_pb2.SimilarityRequest | embeddings_pb2.RankRequest:
    """`sentences` asks for the matrix; `query` + `documents` for a ranking (check_similarity_form ran)."""
    model = body.get("model") or ""
    if body.get("sentences") is not None:
        return embeddings_pb2.SimilarityRequest(model=model, sentences=body["sentences"])
    return embeddings_pb2.RankRequest(model=model, query=body["query"], documents=body["documents"],
                                      top_n=int(body.get("top_n") or 0))


def _usage(u: common_pb2.Usage) -> dict[str, int]:
    return {"prompt_tokens": u.prompt_tokens, "total_tokens": u.total_tokens or u.prompt_tokens}


def similarity_json(r: embeddings_pb2.SimilarityResponse) -> dict[str, Any]:
    return {"object": "list", "model": r.model,
            "data": [{"object": "similarities", "index": i, "similarities": list(row.values)}
                     for i, row in enumerate(r.rows)],
            "usage": _usage(r.usage)}


def rank_json(r: embeddings_pb2.RankResponse) -> dict[str, Any]:
    return {"object": "list", "model": r.model,
            "data": [{"object": "rank", "index": d.index, "score": d.score, "document": d.document}
                     for d in r.results],
            "usage": _usage(r.usage)}
