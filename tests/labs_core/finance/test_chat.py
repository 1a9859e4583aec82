"""The chat short-circuit without a model: what FinanceChat.maybe_answer streams, for a data question,
a not-understood one, a follow-up and a question for the model."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest

from labs_core.finance.chat import FinanceChat
from labs_core.finance.engine import FinanceEngine
from labs_core.proto import generation_pb2 as g
from tests.labs_core.finance import reference as R


@pytest.fixture(scope="module")
def chat() -> FinanceChat:
    return FinanceChat(FinanceEngine(R.CSV), enabled_by_default=True)


def ask(chat: FinanceChat, *turns: tuple[str, str]) -> list[g.GenerateResponse] | None:
    messages = [g.ChatMessage(role=role, content=text) for role, text in turns]
    return asyncio.run(chat.maybe_answer(messages, g.GenerateRequest(messages=messages), "r1", "tiny"))


def text(out: list[g.GenerateResponse]) -> str:
    return "".join(m.text for m in out)


def test_follow_up_in_a_chat(chat):
    f = pd.read_csv(R.CSV, parse_dates=["date"])
    rows = f[(f["date"].dt.year == 2024) & (f["category"] == "Software") & f["type"].isin(["expense", "refund"])]
    out = ask(chat, ("user", "How much did we spend on software in 2025?"), ("assistant", "You spent ..."),
              ("user", "and in 2024?"))
    assert out is not None and out[0].source == g.ANSWER_SOURCE_FINANCE
    assert f"{-rows['amount'].sum():,.2f} USD" in text(out)


def test_a_money_question_never_reaches_the_model(chat):
    out = ask(chat, ("user", "what's our zorblax ratio for our money in 2025"))
    assert out is not None and text(out).startswith("I could not understand")
    assert not out[0].finance.understood


def test_other_questions_go_to_the_model(chat):
    assert ask(chat, ("user", "What is compound interest?")) is None
    assert ask(chat, ("user", "How much did we spend on software in 2025?"), ("assistant", "..."),
               ("user", "and what is compound interest?")) is None
