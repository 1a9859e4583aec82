"""sentence-transformers models that are a Transformer, a Pooling and maybe a Normalize module, run
with transformers alone.

Importing sentence-transformers costs ~3 s of every core start on a 2-core machine (it pulls in
scikit-learn and SciPy), and for these models, the usual kind (all-MiniLM, bge, e5, gte), it
does a forward pass and an average. So a local model directory whose modules.json lists only those
modules is run here, with the same tokenization (truncation to max_seq_length, lower-casing when
configured), pooling and normalisation; anything else (Dense layers, prompts, other pooling modes,
hub ids) loads through sentence-transformers as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

TRANSFORMER = "sentence_transformers.models.Transformer"
POOLING = "sentence_transformers.models.Pooling"
NORMALIZE = "sentence_transformers.models.Normalize"
POOLING_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                 "pooling_mode_max_tokens": "max", "pooling_mode_lasttoken": "lasttoken"}


@dataclass(frozen=True)
class LeanPlan:
    transformer_dir: Path
    pooling: str  # mean, cls, max or lasttoken
    normalize: bool
    max_seq_length: int | None
    do_lower_case: bool
    dimensions: int


def plan(location: str | Path) -> LeanPlan | None:
    """How to run the model at `location` without sentence-transformers, or None when it needs it."""
    root = Path(location)
    try:
        modules = json.loads((root / "modules.json").read_text())
    except (OSError, ValueError):
        return None
    types = [m.get("type") for m in modules]
    if types not in ([TRANSFORMER, POOLING], [TRANSFORMER, POOLING, NORMALIZE]):
        return None
    transformer_dir = root / modules[0].get("path", "")
    try:
        pooling = json.loads((root / modules[1]["path"] / "config.json").read_text())
        st_config = json.loads((transformer_dir / "sentence_bert_config.json").read_text())
    except (OSError, ValueError, KeyError):
        return None
    modes = [name for key, name in POOLING_MODES.items() if pooling.get(key)]
    others = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v and k not in POOLING_MODES]
    if len(modes) != 1 or others or pooling.get("include_prompt") is False:
        return None
    return LeanPlan(transformer_dir, modes[0], len(types) == 3, st_config.get("max_seq_length"),
                    bool(st_config.get("do_lower_case")), int(pooling["word_embedding_dimension"]))


class LeanSentenceModel:
    """The part of SentenceTransformer's interface EmbeddingModel uses."""

    def __init__(self, lean: LeanPlan, auto_model: Any, tokenizer: Any):
        self.lean = lean
        self.auto_model = auto_model
        self.tokenizer = tokenizer
        self.max_seq_length = lean.max_seq_length

    @classmethod
    def load(cls, lean: LeanPlan, device: str, trust_remote_code: bool = False) -> "LeanSentenceModel":
        from transformers import AutoModel, AutoTokenizer

        model = AutoModel.from_pretrained(lean.transformer_dir, trust_remote_code=trust_remote_code).to(device)
        tokenizer = AutoTokenizer.from_pretrained(lean.transformer_dir, trust_remote_code=trust_remote_code)
        return cls(lean, model.eval(), tokenizer)

    @property
    def device(self) -> Any:
        return self.auto_model.device

    def parameters(self) -> Any:
        return self.auto_model.parameters()

    def eval(self) -> "LeanSentenceModel":
        self.auto_model.eval()
        return self

    def get_sentence_embedding_dimension(self) -> int:
        return self.lean.dimensions

    def encode(self, sentences: Sequence[str], batch_size: int = 32, normalize_embeddings: bool = False,
               convert_to_numpy: bool = True, show_progress_bar: bool = False) -> Any:
        import torch
        import torch.nn.functional as F

        if self.lean.do_lower_case:
            sentences = [s.lower() for s in sentences]
        limit = self.max_seq_length or self.tokenizer.model_max_length
        parts = []
        with torch.inference_mode():
            for start in range(0, len(sentences), batch_size):
                features = self.tokenizer(list(sentences[start:start + batch_size]), padding=True,
                                          truncation="longest_first", max_length=limit,
                                          return_tensors="pt").to(self.device)
                hidden = self.auto_model(**features).last_hidden_state
                vectors = pool(hidden, features["attention_mask"], self.lean.pooling)
                if self.lean.normalize or normalize_embeddings:
                    vectors = F.normalize(vectors, p=2, dim=1)
                parts.append(vectors.float().cpu())
        out = torch.cat(parts) if parts else torch.zeros(0, self.lean.dimensions)
        return out.numpy() if convert_to_numpy else out


def pool(hidden: Any, mask: Any, mode: str) -> Any:
    """[batch, dims] from [batch, tokens, dims], as sentence-transformers' Pooling computes it."""
    import torch

    weights = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "mean":
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    if mode == "max":
        return hidden.masked_fill(weights == 0, torch.finfo(hidden.dtype).min).max(1).values
    if mode == "cls":
        return hidden[:, 0]
    last = mask.sum(1) - 1  # right padding: the last real token of each row
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
