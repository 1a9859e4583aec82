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


def test_a_follow_up_of_a_follow_up(chat):
    """"What about travel?" after "and in 2024?" went to the model: the chain is followed back to the
    data question, so it is travel in 2024."""
    f = pd.read_csv(R.CSV, parse_dates=["date"])
    rows = f[(f["date"].dt.year == 2024) & (f["category"] == "Travel") & f["type"].isin(["expense", "refund"])]
    out = ask(chat, ("user", "How much did we spend on software in 2025?"), ("assistant", "You spent ..."),
              ("user", "and in 2024?"), ("assistant", "You spent ..."), ("user", "what about travel?"))
    assert out is not None and out[0].source == g.ANSWER_SOURCE_FINANCE
    assert f"{-rows['amount'].sum():,.2f} USD" in text(out)
    unrelated = ask(chat, ("user", "How much did we spend on software in 2025?"), ("assistant", "..."),
                    ("user", "tell me a joke"), ("assistant", "..."), ("user", "what about travel?"))
    assert unrelated is None  # the chain stops at a message that is neither


def test_a_question_about_the_answer_just_given(engine):
    """"How many payments was that?" and "how does that compare to the quarter before?" went to the
    model: they ask about the previous answer's rows (engine.answer_chat with the earlier questions)."""
    f = pd.read_csv(R.CSV, parse_dates=["date"])
    gusto = f[(f["merchant"] == "Gusto") & (f["type"] == "expense") & (f["date"].dt.year == 2025)]
    count = engine.answer_chat("how many payments was that?", ["How much did we pay Gusto in 2025?"])
    assert count is not None and count.query.intent == "count" and count.value == len(gusto), count
    compared = engine.answer_chat("how does that compare to the quarter before?", ["What was our revenue in Q3 2025?"])
    assert compared is not None and compared.query.intent == "compare", compared
    assert (compared.query.compare_to.start.isoformat(), compared.query.compare_to.end.isoformat()) == (
        "2025-04-01", "2025-06-30")
    yearly = engine.answer_chat("how does that compare to last year?",
                                ["How much did we spend on meals in March 2025?"])
    assert yearly.query.compare_to.start.isoformat() == "2024-03-01"
    assert engine.answer_chat("how does that compare to other restaurants?",
                              ["How much did we spend on meals in March 2025?"]) is None
    assert engine.answer_chat("how many was that?", ["Tell me a joke"]) is None


def test_excluding_follow_ups_leave_names_out_on_top_of_the_previous_ones(engine):
    """"Excluding payroll?" after a total went to the model; each such follow-up leaves more out."""
    f = pd.read_csv(R.CSV, parse_dates=["date"])
    year = f[(f["date"].dt.year == 2025) & f["type"].isin(["expense", "refund"])]
    first = "How much did we spend in 2025?"
    payroll = engine.answer_chat("excluding payroll?", [first])
    assert payroll is not None and payroll.query.exclude_categories == ("Payroll",)
    assert payroll.value == pytest.approx(-year[year["category"] != "Payroll"]["amount"].sum())
    both = engine.answer_chat("and without rent?", [first, "excluding payroll?"])
    assert both.query.exclude_categories == ("Payroll", "Rent") and both.query.categories == ()
    assert both.value == pytest.approx(-year[~year["category"].isin(["Payroll", "Rent"])]["amount"].sum())
    assert engine.answer_chat("without a doubt, what's the best pizza?", [first]) is None  # names nothing


def test_the_year_before_and_the_month_before_move_the_previous_period(engine):
    """"And the year before?" went to the model."""
    f = pd.read_csv(R.CSV, parse_dates=["date"])
    spent = f["type"].isin(["expense", "refund"])
    chain = ["What did we spend on travel in 2025?", "how about meals?"]
    year_before = engine.answer_chat("and the year before?", chain)
    meals_2024 = f[spent & (f["category"] == "Meals") & (f["date"].dt.year == 2024)]
    assert year_before is not None and year_before.query.period.start.isoformat() == "2024-01-01"
    assert year_before.value == pytest.approx(-meals_2024["amount"].sum())
    month_before = engine.answer_chat("and the month before?", ["How much did we spend on software in March 2025?"])
    assert (month_before.query.period.start.isoformat(), month_before.query.period.end.isoformat()) == (
        "2025-02-01", "2025-02-28")


def test_a_money_question_never_reaches_the_model(chat):
    out = ask(chat, ("user", "what's our zorblax ratio for our money in 2025"))
    assert out is not None and text(out).startswith("I could not understand")
    assert not out[0].finance.understood


def test_other_questions_go_to_the_model(chat):
    assert ask(chat, ("user", "What is compound interest?")) is None
    assert ask(chat, ("user", "How much did we spend on software in 2025?"), ("assistant", "..."),
               ("user", "and what is compound interest?")) is None
