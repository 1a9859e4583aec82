"""The grounding guarantee and the router figures: a message about the user's money is answered from
the data (exactly, or partly with "I could not understand ..."), never by the model; the router
keeps precision and recall >= 0.99 on router_set_v2.jsonl (written apart from the parser)."""

from __future__ import annotations

import random
import re
import string
import time

import pytest

from tests.labs_core.finance.router_eval import FRESH, HOLDOUT, SET_V2, load, score


def test_router_set_is_large_and_balanced():
    cases = load(SET_V2)
    positives = sum(finance for _, finance in cases)
    assert len(cases) >= 400 and len({t for t, _ in cases}) == len(cases)
    assert 0.45 <= positives / len(cases) <= 0.55
    general = [t for t, finance in cases if not finance and re.search(r"interest|refund|transfer|fee|budget", t, re.I)]
    assert len(general) >= 15  # general money questions that are not about the data


def test_router_precision_and_recall(engine):
    s = score(engine, load(SET_V2))
    assert s.precision >= 0.99, f"captured non-finance prompts: {s.false_positives}"
    assert s.recall >= 0.99, f"missed finance prompts: {s.missed}"


@pytest.mark.parametrize("path", [HOLDOUT, FRESH], ids=["holdout", "fresh"])
def test_router_on_sets_it_was_not_tuned_on(engine, path):
    """The holdout was measured once before tuning at precision 0.966, recall 0.933, the fresh set
    after it at 0.938 / 1.000 (see docs/finance.md); kept to see that the rules did not only learn
    the tuning set."""
    s = score(engine, load(path))
    assert s.precision >= 0.95 and s.recall >= 0.95, (s.false_positives, s.missed)


def test_every_finance_prompt_is_answered_from_the_data(engine):
    for text, finance in load(SET_V2):
        if not finance:
            continue
        result = engine.answer_chat(text)
        assert result is not None, text
        assert result.understood or result.answer.startswith("I could not understand"), (text, result.answer)


@pytest.mark.parametrize("question", [
    "How about our money in 2024, zorblax-wise?",
    "what's our zorblax ratio for our money in 2025",
])
def test_not_understood_money_question_gives_computed_figures_or_says_so(engine, frame, question):
    result = engine.answer_chat(question)
    assert result is not None and result.answer.startswith("I could not understand")
    if "2024" in question:  # the period was recognised: its exact figures (a summary), nothing else
        year = frame[frame["date"].dt.year == 2024]
        spend = -year.loc[year["type"].isin(["expense", "refund"]), "cents"].sum()
        assert f"{spend / 100:,.2f} USD" in result.answer and result.value is None


def test_names_the_data_lacks_are_said(engine, frame):
    result = engine.answer_chat("How much did we spend at Costco in 2024?")
    assert result.answer.startswith('I could not understand "Costco"')
    assert dict(result.filters()).get("merchant") is None


def test_misspelt_merchants_are_matched(engine, frame):
    for question, merchant in (("How much did we spend at Starbuks in 2024?", "Starbucks"),
                               ("what did we spend at chipotel in 2024", "Chipotle"),
                               ("spend at AMAZN in 2024", "Amazon"), ("dropbx charges in 2024", "Dropbox")):
        rows = frame[(frame["merchant"] == merchant) & (frame["date"].dt.year == 2024)
                     & frame["type"].isin(["expense", "refund"])]
        result = engine.query(question)
        assert dict(result.filters())["merchant"] == merchant, result.answer
        assert round(result.value * 100) == -rows["cents"].sum()


def test_ordinary_words_are_not_read_as_misspelt_merchants(engine):
    for text in ("How do I apply for a business loan?", "Write a story about a banker",
                 "Explain what revenue means", "What is a user fee?"):
        assert engine.answer_chat(text) is None, text


def test_follow_ups_reuse_the_previous_question(engine, frame):
    first = "How much did we spend on software in 2025?"
    year = frame[(frame["date"].dt.year == 2024) & frame["type"].isin(["expense", "refund"])]
    result = engine.answer_chat("and in 2024?", [first])
    assert round(result.value * 100) == -year.loc[year["category"] == "Software", "cents"].sum()
    assert result.answer.startswith(f'Following on from "{first}"')
    uber = frame[(frame["date"].dt.year == 2025) & (frame["merchant"] == "Uber")
                 & frame["type"].isin(["expense", "refund"])]
    assert round(engine.answer_chat("what about Uber?", [first]).value * 100) == -uber["cents"].sum()
    assert engine.answer_chat("and what is compound interest?", [first]) is None
    assert engine.answer_chat("and in 2024?", ["Write a poem about spring"]) is None


@pytest.mark.parametrize("kind", ["letters", "words", "digits", "repeat"])
def test_pathological_messages_are_fast(engine, kind):
    """A 2,000-character message (the RPC's limit) must not stall the parser (regexes, fuzzy names)."""
    rng = random.Random(7)
    text = {
        "letters": lambda: "".join(rng.choice(string.ascii_letters + " ") for _ in range(2000)),
        "words": lambda: " ".join(rng.choice(["spend", "2024", "over", "$5k", "march", "to", "amazn", "the", "last",
                                              "between", "and", "Starbuks", "at", "Q3"]) for _ in range(400))[:2000],
        "digits": lambda: "".join(rng.choice("0123456789 -,.$k") for _ in range(2000)),
        "repeat": lambda: ("a" * 1999) + "!",
    }[kind]()
    started = time.perf_counter()
    engine.query(text)
    engine.answer_chat(text)
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize("text", [
    "What did Amazon announce in 2024?", "Did Apple release a new iPhone in 2025?", "Was Zoom popular in 2024?",
    "Did Shell raise gas prices in 2024?", "What new features did Slack add in 2025?", "How did Hilton do in Q3 2024?",
    "What did Microsoft buy in 2024?", "Is Starbucks open on Christmas 2025?",
])
def test_news_about_a_merchant_goes_to_the_model(engine, text):
    """A merchant of the data and a year it covers are not enough: the merchants are public companies."""
    assert engine.answer_chat(text) is None
