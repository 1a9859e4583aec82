"""The chat router: data questions are captured, everything else goes to the model."""

import pytest

from labs_core.finance import router
from tests.labs_core.finance import reference as R
from tests.labs_core.finance.router_cases import FINANCE, NOT_FINANCE


def test_enough_cases():
    assert len(FINANCE) + len(NOT_FINANCE) >= 60 and len(NOT_FINANCE) >= 30


def test_precision_and_recall(engine):
    """The chat decision is router + parser: both must say yes for the answer to bypass the model."""
    captured = {q: engine.answer_chat(q) is not None for q in FINANCE + NOT_FINANCE}
    true_pos = sum(captured[q] for q in FINANCE)
    false_pos = [q for q in NOT_FINANCE if captured[q]]
    missed = [q for q in FINANCE if not captured[q]]
    precision = true_pos / (true_pos + len(false_pos))
    recall = true_pos / len(FINANCE)
    assert precision >= 0.98, f"captured non-finance prompts: {false_pos}"
    assert recall >= 0.98, f"missed finance prompts: {missed}"


@pytest.mark.parametrize("text", [
    "What is a budget?", "write a poem about money", "How can I reduce my spending?",
    "I spent the weekend hiking, any trail suggestions?", "Tell me about Starbucks",
    "What year did the 2008 financial crisis start?", "", "Did we make the deadline?",
    "What was the best year for movies?", "How do we find our biggest customers?", "how many calories did we burn",
    "what is the year over year growth in sales for restaurants", "show me how to pay with Stripe",
    "why did netflix subscriptions go up in price for everyone", "did we lose the game last night?",
    "What are the most expensive months to travel?",
])
def test_not_finance(engine, text):
    assert not router.is_finance_question(text, engine.store.get().vocabulary, (R.rows()[0].date, R.rows()[-1].date))


@pytest.mark.parametrize("text", [
    "how much did I spend on software last quarter?", "Amazon spending in 2024", "total spend in 2024",
    "largest expenses this year", "How much did we make in fiscal year 2025?", "What was our best month ever?",
    "Who is our biggest customer?", "How many customers do we have?", "which client pays us the most?",
    "How much cash did we burn in Q3?", "What's the month over month change in revenue?",
    "Show me all payments to Lee Legal", "Which subscriptions increased in price?",
    "How much did we lose in August 2025?", "How many times did we eat out in 2025?",
    "What were the 3 most expensive months in 2025?",
])
def test_finance(engine, text):
    assert router.is_finance_question(text, engine.store.get().vocabulary, (R.rows()[0].date, R.rows()[-1].date))


def test_long_messages_are_left_to_the_model():
    text = "Here is my report: " + "how much did I spend on software " * 20
    assert not router.is_finance_question(text, None)


def test_without_data_the_generic_cues_still_work():
    assert router.is_finance_question("How much did I spend last month?", None)
    assert not router.is_finance_question("What is a budget?", None)
