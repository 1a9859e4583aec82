"""Wider phrasing, each figure checked against pandas over the CSV computed here (not the module):
superlatives, "what did X cost us", "what did we pay for Y", relative periods, casing, currency
symbols and "k" amounts, the plural "we"."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Callable

import pandas as pd
import pytest


SPEND = ["expense", "refund"]


def between(f: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    return f[(f["date"] >= start) & (f["date"] <= end)]


def spend(f: pd.DataFrame) -> int:
    return -f.loc[f["type"].isin(SPEND), "cents"].sum()


def largest_expense(f: pd.DataFrame) -> int:
    return -f.loc[f["type"] == "expense", "cents"].min()


@dataclass(frozen=True)
class Case:
    question: str
    truth: Callable[[pd.DataFrame], int]  # cents
    reference_date: date | None = None


Y2024, Y2025 = ("2024-01-01", "2024-12-31"), ("2025-01-01", "2025-12-31")
CASES = [
    # superlatives about one transaction
    Case("What was the single most expensive purchase we made in 2024?", lambda f: largest_expense(between(f, *Y2024))),
    Case("Priciest charge in 2025?", lambda f: largest_expense(between(f, *Y2025))),
    Case("What's the biggest bill we paid in 2024?", lambda f: largest_expense(between(f, *Y2024))),
    Case("largest payment we made in March 2025",
         lambda f: largest_expense(between(f, "2025-03-01", "2025-03-31"))),
    Case("Most expensive expense on software last year",
         lambda f: largest_expense(between(f[f["category"] == "Software"], *Y2024))),
    Case("What's the biggest payment we made to a vendor in 2024?", lambda f: largest_expense(between(f, *Y2024))),
    Case("Largest single payment we received in 2025",
         lambda f: between(f, *Y2025).loc[lambda x: x["type"] == "income", "cents"].max()),
    # "what did X cost us", "what did we pay for Y"
    Case("What did Adobe cost us last year?", lambda f: spend(between(f[f["merchant"] == "Adobe"], *Y2024))),
    Case("What did the AWS bill cost us in 2025?", lambda f: spend(between(f[f["merchant"] == "AWS"], *Y2025))),
    Case("What did we pay for rent in 2024?", lambda f: spend(between(f[f["category"] == "Rent"], *Y2024))),
    Case("What did we pay for insurance this year?",
         lambda f: spend(between(f[f["category"] == "Insurance"], *Y2025))),
    # relative periods against the data's last date and a reference date
    Case("How much did we spend last month?", lambda f: spend(between(f, "2025-11-01", "2025-11-30"))),
    Case("What did we spend this quarter?", lambda f: spend(between(f, "2025-10-01", "2025-12-31"))),
    Case("Our spending year to date", lambda f: spend(between(f, *Y2025))),
    Case("Our spending year to date", lambda f: spend(between(f, "2025-01-01", "2025-05-20")), date(2025, 5, 20)),
    Case("What did we spend this quarter?", lambda f: spend(between(f, "2024-07-01", "2024-08-15")),
         date(2024, 8, 15)),
    Case("How much did we spend two months ago?", lambda f: spend(between(f, "2025-10-01", "2025-10-31"))),
    # casing and currency amounts
    Case("TOTAL SPENT AT STAPLES IN 2025", lambda f: spend(between(f[f["merchant"] == "Staples"], *Y2025))),
    Case("expenses over $1k in 2025",
         lambda f: spend(between(f[f["cents"].abs() >= 100000], *Y2025))),
    Case("How much did we spend in transactions above 2.5k USD in 2024?",
         lambda f: spend(between(f[f["cents"].abs() >= 250000], *Y2024))),
    # plural we, income words, losses
    Case("How much did we make in 2024?",
         lambda f: between(f, *Y2024).loc[lambda x: x["type"] == "income", "cents"].sum()),
    Case("How much money did we lose in 2025?",
         lambda f: between(f, *Y2025).loc[lambda x: x["type"] == "income", "cents"].sum() - spend(between(f, *Y2025))),
    Case("What came out of PayPal in 2025?", lambda f: spend(between(f[f["account"] == "PayPal"], *Y2025))),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.question} @{c.reference_date}" for c in CASES])
def test_figure_matches_pandas(engine, frame, case: Case):
    result = engine.query(case.question, reference_date=case.reference_date)
    truth = int(case.truth(frame))
    assert result.understood and result.value is not None, result.answer
    assert round(abs(result.value) * 100) == abs(truth), result.answer
    assert f"{abs(truth) / 100:,.2f} USD" in result.answer


def test_burn_rate_is_the_monthly_average(engine, frame):
    result = engine.query("What's our burn rate this year?")
    assert result.intent == "monthly_average"
    assert round(result.value * 100) == round(spend(between(frame, *Y2025)) / 12)


@pytest.mark.parametrize("question,kind,merchant,pick", [
    ("First sale in 2025", "income", None, "first"),  # "sale" also names the Sales category
    ("When was the last payment to AWS?", "expense", "AWS", "last"),
    ("last payment to AWS", "expense", "AWS", "last"),
    ("last charge at Uber", "expense", "Uber", "last"),
])
def test_one_row_by_date_through_the_chat_path(engine, frame, question, kind, merchant, pick):
    """"The first sale", "the last payment to X": one transaction (the chat router takes the question,
    the figure is that row's amount), not a list of all of them or their total."""
    result = engine.answer_chat(question)
    assert result is not None and result.intent == "list" and result.understood, question
    rows = frame[frame["type"] == kind]
    if merchant:
        rows = rows[rows["merchant"] == merchant]
    else:
        rows = between(rows[rows["category"] == "Sales"], *Y2025)
    row = rows.sort_values("date", kind="stable").iloc[0 if pick == "first" else -1]
    assert round(abs(result.value) * 100) == abs(row["cents"]), result.answer
    assert str(row["date"].date()) in result.answer.splitlines()[0]


def weekend(f: pd.DataFrame) -> pd.DataFrame:
    return f[f["date"].dt.dayofweek >= 5]


@pytest.mark.parametrize("case", [
    Case("How much did we spend on weekends?", lambda f: spend(weekend(f))),
    Case("weekend spending at Uber last year", lambda f: spend(between(weekend(f[f["merchant"] == "Uber"]), *Y2024))),
    Case("How much did we spend during the week in 2025?",
         lambda f: spend(between(f[f["date"].dt.dayofweek < 5], *Y2025))),
], ids=lambda c: c.question)
def test_days_of_the_week_filter_the_rows_and_say_so(engine, frame, case: Case):
    """"On weekends" was dropped: the whole total came back as if it were the weekend's."""
    result = engine.answer_chat(case.question)
    truth = int(case.truth(frame))
    assert result is not None and result.understood
    assert round(abs(result.value) * 100) == abs(truth), result.answer
    assert " on week" in result.answer.splitlines()[0]


def test_growth_from_one_period_to_another_compares_them(engine, frame):
    """"Grow from 2024 to 2025" compares the two years; it was read as the 2024-2025 range against the
    two years before the data (0.00)."""
    result = engine.answer_chat("How much did revenue grow from 2024 to 2025?")
    income = frame[frame["type"] == "income"]
    change = int(between(income, *Y2025)["cents"].sum() - between(income, *Y2024)["cents"].sum())
    assert result.intent == "compare" and round(result.value * 100) == change, result.answer
    assert result.query.period.label == "2025" and result.query.compare_to.label == "2024"
    spread = engine.answer_chat("income between 2024 and 2025")  # a range stays a range without a change word
    assert spread.query.intent == "total" and spread.query.period.label == "2024 to 2025"


def test_a_balance_is_not_made_up(engine, frame):
    """The data has no opening balances: a balance question gets the net change of the account(s) over
    the period from every row (transfers included), and says so; the chat router takes it, where the
    model would otherwise invent a figure. Questions about balances in general stay the model's."""
    from labs_core.finance.convert import to_proto

    result = engine.answer_chat("What was the balance on the credit card at the end of 2024?")
    card = between(frame[frame["account"] == "Business Credit Card"], *Y2024)
    assert result.intent == "balance" and round(result.value * 100) == int(card["cents"].sum()), result.answer
    assert result.answer.startswith("The transactions data has no opening balances")
    assert to_proto(result).intent == "balance"
    ours = engine.answer_chat("What is our cash balance?")
    assert ours.intent == "balance" and round(ours.value * 100) == int(frame["cents"].sum())
    assert {b.key for b in ours.breakdown} == set(frame["account"])
    for general in ("What is a balance sheet?", "how do I balance my checkbook?",
                    "what is the minimum balance for a savings account?", "work life balance tips for our team"):
        assert engine.answer_chat(general) is None, general


def test_an_expense_category_question_ranks_categories(engine, frame):
    """"Biggest expense category" ranks categories; it was read as the biggest single expense."""
    result = engine.answer_chat("What's our biggest expense category this year?")
    year = between(frame[frame["type"].isin(SPEND)], *Y2025)
    by_category = (-year.groupby("category")["cents"].sum()).sort_values(ascending=False)
    assert result.query.intent == "breakdown" and result.query.group_by == "category", result.answer
    assert result.breakdown[0].key == by_category.index[0]
    assert round(result.breakdown[0].value * 100) == int(by_category.iloc[0])
    assert engine.answer_chat("biggest expense this year").query.intent == "top_transactions"


def test_what_we_owe_is_a_balance_question(engine, frame):
    result = engine.answer_chat("How much do we owe on the credit card?")
    card = frame[frame["account"] == "Business Credit Card"]
    assert result.intent == "balance" and round(result.value * 100) == int(card["cents"].sum()), result.answer


def test_a_season_is_its_three_months(engine, frame):
    """"In the summer of 2025" was read as all of 2025 (the season word dropped without a word)."""
    result = engine.answer_chat("How much did we spend on ads in the summer of 2025?")
    summer = between(frame[frame["category"] == "Marketing"], "2025-06-01", "2025-08-31")
    assert round(result.value * 100) == spend(summer), result.answer
    assert "summer 2025 (2025-06-01 to 2025-08-31)" in result.answer


@pytest.mark.parametrize("question,kind,category,years", [
    ("How many clients paid us in 2025?", "income", "Client Payments", Y2025),
    ("How many different vendors did we pay in 2024?", "expense", None, Y2024),
])
def test_how_many_payees_counts_different_merchants(engine, frame, question, kind, category, years):
    """"How many clients paid us" counted transactions (80), not clients."""
    result = engine.answer_chat(question)
    rows = between(frame[frame["type"] == kind], *years)
    if category:
        rows = rows[rows["category"] == category]
    assert result.query.intent == "count" and result.value == rows["merchant"].nunique(), result.answer
    assert result.answer.startswith(f"{rows['merchant'].nunique()} different merchants")
    assert result.row_count == len(rows)


@pytest.mark.parametrize("question,start,end", [
    ("What did we spend on the weekend of July 4th 2025?", "2025-07-05", "2025-07-06"),  # a Friday: the next two days
    ("What did we spend on the weekend of 2 June 2025?", "2025-05-31", "2025-06-01"),  # a Monday: the one before
    ("How much did we spend the week of 2025-03-12?", "2025-03-10", "2025-03-16"),  # its Monday to Sunday
])
def test_the_week_or_weekend_of_a_day(engine, frame, question, start, end):
    """"The weekend of July 4th 2025" was read as weekend rows on that Friday: 0.00."""
    result = engine.answer_chat(question)
    assert result.intent == "total_spend" and round(result.value * 100) == spend(between(frame, start, end))
    assert f"({start} to {end})" in result.answer and "days" not in dict(result.filters()), result.answer


def test_median_expense_and_median_month(engine, frame):
    """"Median" was dropped: "our median expense in 2025" answered with the year's total spending."""
    expenses = between(frame[frame["type"] == "expense"], *Y2025)
    result = engine.answer_chat("What is our median expense in 2025?")
    assert result.query.intent == "average_transaction" and result.query.median, result.answer
    assert result.value == round(float(expenses["cents"].abs().median()) / 100, 2)
    assert result.answer.startswith("Your median expense in 2025")
    months = between(frame[frame["type"].isin(SPEND)], *Y2025).groupby(lambda i: frame["date"][i].month)["cents"]
    result = engine.answer_chat("What was our median monthly spending in 2025?")
    assert result.query.intent == "monthly_average" and result.query.median, result.answer
    assert round(result.value * 100) == round(float((-months.sum()).median()))
    assert engine.answer_chat("What was our average monthly spending in 2025?").value != result.value


def test_runway_gives_the_burn_and_no_made_up_cash(engine, frame):
    """"What's our runway" went to the model, which has no cash figure to divide and would invent one."""
    result = engine.answer_chat("What's our runway?")
    months = frame["date"].dt.strftime("%Y-%m").nunique()
    net = frame.loc[frame["type"] != "transfer", "cents"].sum()
    assert result.intent == "runway" and result.value == round(net / 100 / months, 2), result.answer
    assert result.answer.startswith("The transactions data has no balances") and len(result.breakdown) == months
    assert "does not run down" in result.answer  # this business takes in more than it spends
    burning = engine.answer_chat("How long will our cash last, going by our spending on rent in 2025?")
    assert burning.intent == "runway" and burning.value < 0 and "divided by" in burning.answer, burning.answer
    assert engine.answer_chat("what is a runway in aviation?") is None


@pytest.mark.parametrize("question,category,years,per", [
    ("How much do we spend a month on software in 2025?", "Software", Y2025, 12),
    ("How much do we spend a year on insurance?", "Insurance", ("2024-01-01", "2025-12-31"), 2),
    ("How much do we spend a week on meals in 2024?", "Meals", Y2024, 366 / 7),
    ("What's our average daily spend on meals in 2025?", "Meals", Y2025, 365),  # was the monthly average
    ("How much did we spend on meals per day in 2025?", "Meals", Y2025, 365),  # was the total
])
def test_a_rate_is_an_average_not_the_total(engine, frame, question, category, years, per):
    """"How much do we spend a month on software" answered with the total of every month."""
    rows = between(frame[frame["category"] == category], *years)
    result = engine.answer_chat(question)
    assert result.query.intent == "monthly_average", result.answer
    assert result.value == round(spend(rows) / 100 / per, 2), result.answer


def test_per_employee_says_the_data_has_no_headcount(engine, frame):
    """"Per employee" was dropped without a word: the total read as if it were the ratio."""
    result = engine.answer_chat("How much did we spend per employee in 2025?")
    assert result.answer.startswith("The data has no headcount, so the figures below are not per employee")
    assert round(result.value * 100) == spend(between(frame, *Y2025))
    assert "headcount" not in engine.answer_chat("How much did we spend per month in 2025?").answer


@pytest.mark.parametrize("question,start,end", [
    ("What did we spend in the first week of January 2025?", "2025-01-01", "2025-01-07"),
    ("How much did we spend the last week of March 2025?", "2025-03-25", "2025-03-31"),  # was "last week" (December)
    ("What did we spend the last week of 2025?", "2025-12-25", "2025-12-31"),  # was all of 2025
    ("Spending on the first weekend of June 2025", "2025-06-07", "2025-06-08"),
])
def test_the_nth_week_of_a_month_or_year(engine, frame, question, start, end):
    result = engine.answer_chat(question)
    assert round(result.value * 100) == spend(between(frame, start, end)), result.answer
    assert f"{start} to {end}" in result.answer


@pytest.mark.parametrize("question,numerator,denominator", [
    ("What was our profit margin in 2025?", "net", "income"),
    ("What percent of revenue went to payroll in 2025?", "payroll", "income"),
    ("What percentage of our income did we spend on payroll in 2025?", "payroll", "income"),  # was a summary
    ("What share of our spending in 2025 was payroll?", "payroll", "spend"),
])
def test_margins_and_shares_of_income(engine, frame, question, numerator, denominator):
    """"Profit margin" gave the net in dollars; "percent of revenue went to payroll" gave 0.00% (payroll
    income); "sales tax" read as the Sales (income) and Taxes categories."""
    rows = between(frame[frame["type"] != "transfer"], *Y2025)
    income = rows.loc[rows["type"] == "income", "cents"].sum()
    part = {"net": rows["cents"].sum(), "payroll": spend(rows[rows["category"] == "Payroll"])}[numerator]
    whole = {"income": income, "spend": spend(rows)}[denominator]
    result = engine.answer_chat(question)
    assert result.intent == "share" and result.value == round(part / whole * 100, 2), result.answer
    taxes = engine.answer_chat("How much sales tax did we pay in 2025?")
    assert taxes.query.categories == ("Taxes",), taxes.answer


def test_counts_by_group_and_one_refund(engine, frame):
    """"How many transactions each month" gave one count; "the largest refund" listed five."""
    result = engine.answer_chat("How many transactions did we have each month in 2025?")
    rows = between(frame, *Y2025)
    per_month = rows.groupby(rows["date"].dt.strftime("%Y-%m")).size()
    assert result.query.intent == "count" and result.value == len(rows), result.answer
    assert [(b.key, b.count) for b in result.breakdown] == list(per_month.items())
    refund = engine.answer_chat("What was the largest refund we got?")
    refunds = frame[frame["type"] == "refund"]
    assert len(refund.rows) == 1 and round(refund.value * 100) == refunds["cents"].abs().max(), refund.answer


def test_two_periods_joined_by_and(engine, frame):
    """"During 2024 and 2025" answered with 2024 alone; two months apart get both figures."""
    acme = frame[(frame["merchant"] == "Acme Corp") & (frame["type"] == "income")]
    both = engine.answer_chat("How much revenue did Acme bring in during 2024 and 2025?")
    assert round(both.value * 100) == acme["cents"].sum() and "2024-01-01 to 2025-12-31" in both.answer
    apart = engine.answer_chat("What did we spend in January and March 2025?")
    assert apart.query.intent == "compare", apart.answer
    figures = {b.key: round(b.value * 100) for b in apart.breakdown}
    assert sorted(figures.values()) == sorted([spend(between(frame, "2025-01-01", "2025-01-31")),
                                               spend(between(frame, "2025-03-01", "2025-03-31"))]), figures


def test_a_ledger_phrase_with_a_period_is_answered_from_the_data(engine, frame):
    """"What is the total spend in 2024?" opens like a definition and went to the model."""
    result = engine.answer_chat("What is the total spend in 2024?")
    assert result is not None and round(result.value * 100) == spend(between(frame, *Y2024))


def test_one_day_of_the_week_and_the_first_payment(engine, frame):
    """"On Fridays" was dropped (the total of every day); "when did we first pay Adobe" listed five."""
    meals = between(frame[frame["category"] == "Meals"], *Y2025)
    result = engine.answer_chat("What did we spend on meals on Fridays in 2025?")
    assert round(result.value * 100) == spend(meals[meals["date"].dt.dayofweek == 4]), result.answer
    assert result.answer.startswith("You spent") and "on Fridays" in result.answer  # (no "could not understand")
    first = engine.answer_chat("When did we first pay Adobe?")
    adobe = frame[(frame["merchant"] == "Adobe") & (frame["type"] == "expense")]
    assert len(first.rows) == 1 and first.rows[0]["date"] == adobe["date"].min().date().isoformat(), first.answer


def test_each_day_is_a_breakdown_by_date(engine, frame):
    """"What did we spend each day last week" gave one daily average; "per day" stays the rate."""
    result = engine.answer_chat("What did we spend each day in the first week of March 2025?")
    rows = between(frame[frame["type"].isin(SPEND)], "2025-03-01", "2025-03-07")
    per_day = -rows.groupby(rows["date"].dt.strftime("%Y-%m-%d"))["cents"].sum()
    assert result.query.group_by == "day", result.answer
    assert [(b.key, round(b.value * 100)) for b in result.breakdown] == list(per_day.items())
    assert engine.answer_chat("How much did we spend per day in March 2025?").query.intent == "monthly_average"
