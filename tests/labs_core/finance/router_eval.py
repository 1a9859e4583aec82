"""Router precision and recall on a labelled prompt set (jsonl: {"text", "finance"}).

The sets were written apart from the parser: router_set_v2.jsonl (the tuning set, a test fixture),
router_holdout.jsonl (measured once before tuning, kept to watch for overfitting) and router_fresh.jsonl
(60 prompts written after the tuning, first measured at precision 0.938, recall 1.000). A prompt counts as
captured when the chat path answers it from the data (FinanceEngine.answer_chat returns a result).

    PYTHONPATH=. python -m tests.labs_core.finance.router_eval [set.jsonl ...]
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from labs_core.finance.engine import FinanceEngine
from tests.labs_core.finance import reference as R

HERE = Path(__file__).resolve().parent
SET_V2 = HERE / "router_set_v2.jsonl"
HOLDOUT = HERE / "router_holdout.jsonl"
FRESH = HERE / "router_fresh.jsonl"


@dataclass
class Score:
    total: int
    precision: float
    recall: float
    false_positives: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)


def load(path: Path) -> list[tuple[str, bool]]:
    with open(path, encoding="utf-8") as f:
        return [(item["text"], bool(item["finance"])) for item in map(json.loads, f) if item]


def score(engine: FinanceEngine, cases: list[tuple[str, bool]]) -> Score:
    captured = {text: engine.answer_chat(text) is not None for text, _ in cases}
    positives = [text for text, finance in cases if finance]
    true_pos = sum(captured[t] for t in positives)
    false_pos = [text for text, finance in cases if not finance and captured[text]]
    missed = [t for t in positives if not captured[t]]
    precision = true_pos / (true_pos + len(false_pos)) if true_pos + len(false_pos) else 1.0
    return Score(len(cases), precision, true_pos / len(positives) if positives else 1.0, false_pos, missed)


def main(paths: list[str]) -> None:
    engine = FinanceEngine(R.CSV)
    for path in paths or [str(SET_V2), str(HOLDOUT), str(FRESH)]:
        s = score(engine, load(Path(path)))
        print(f"{Path(path).name}: {s.total} prompts, precision {s.precision:.3f}, recall {s.recall:.3f}")
        for text in s.false_positives:
            print(f"  false positive: {text}")
        for text in s.missed:
            print(f"  missed: {text}")


if __name__ == "__main__":
    main(sys.argv[1:])
