"""Transfers between own accounts as a measure, refunds, fees and interest on their own; the truths
come from pandas over the CSV here, not from the module."""

from __future__ import annotations

import pandas as pd
import pytest



def transfers(frame: pd.DataFrame, year: int) -> pd.DataFrame:
    return frame[(frame["type"] == "transfer") & (frame["date"].dt.year == year)]


def usd(cents: int) -> str:
    return f"{cents / 100:,.2f} USD"


def test_moved_between_accounts(engine, frame):
    rows = transfers(frame, 2025)
    moved = -rows.loc[rows["cents"] < 0, "cents"].sum()
    result = engine.query("How much money did we move between accounts in 2025?")
    assert result.intent == "transfers" and round(result.value * 100) == moved
    assert usd(moved) in result.answer
    for account, group in rows.groupby("account"):
        out, into = -group.loc[group["cents"] < 0, "cents"].sum(), group.loc[group["cents"] > 0, "cents"].sum()
        assert f"- {account}: out {usd(out)}, in {usd(into)}" in result.answer


@pytest.mark.parametrize("question", ["How much did we spend on Transfer in 2025?",
                                      "How much went on Transfer in 2025?", "spend on transfers in 2025"])
def test_spend_on_transfer_explains_and_gives_the_figures(engine, frame, question):
    rows = transfers(frame, 2025)
    result = engine.query(question)
    assert result.intent == "transfers", result.answer
    assert "not spending" in result.answer and "You spent 0.00" not in result.answer
    assert round(result.value * 100) == -rows.loc[rows["cents"] < 0, "cents"].sum()


def test_into_out_of_and_net_per_account(engine, frame):
    rows = transfers(frame, 2024)
    savings = rows[rows["account"] == "Business Savings"]
    checking = rows[rows["account"] == "Business Checking"]
    paypal = rows[rows["account"] == "PayPal"]
    into = engine.query("How much did we transfer into savings in 2024?")
    assert dict(into.filters())["direction"] == "into the account"
    assert round(into.value * 100) == savings.loc[savings["cents"] > 0, "cents"].sum()
    out = engine.query("Total transfers out of checking in 2024")
    assert round(out.value * 100) == -checking.loc[checking["cents"] < 0, "cents"].sum()
    net = engine.query("What's the net transfer flow for PayPal in 2024?")
    assert round(net.value * 100) == paypal["cents"].sum() and "direction" not in dict(net.filters())


def test_route_from_one_account_to_another(engine, frame):
    rows = transfers(frame, 2024)
    card_in = rows[(rows["account"] == "Business Credit Card") & (rows["cents"] > 0)]
    for question in ("How much did we pay off on the credit card from checking in 2024?",
                     "Transfers from checking to the credit card in 2024",
                     "How much went from checking to the credit card in 2024?"):  # (was both accounts' spending)
        result = engine.query(question)
        assert result.intent == "transfers" and round(result.value * 100) == card_in["cents"].sum(), result.answer
        assert result.filters() and dict(result.filters())["account"].startswith("Business Checking")


def test_lists_and_counts_of_transfers_stay_lists_and_counts(engine, frame):
    rows = transfers(frame, 2025)
    assert engine.query("How many transfers were there in 2025?").value == len(rows)
    listed = engine.query("List the transfers in 2025")
    assert listed.intent == "list" and listed.row_count == len(rows)


def test_refunds_fees_interest_on_their_own(engine, frame):
    y2024 = frame[frame["date"].dt.year == 2024]
    refunds = y2024.loc[y2024["type"] == "refund", "cents"].sum()
    fees = -y2024.loc[y2024["category"] == "Bank Fees", "cents"].sum()
    interest = y2024.loc[y2024["category"] == "Interest", "cents"].sum()
    assert round(engine.query("How much were we refunded in 2024?").value * 100) == refunds
    assert round(engine.query("How much did we pay in fees in 2024?").value * 100) == fees
    result = engine.query("How much interest did we earn in 2024?")
    assert result.intent == "total_income" and round(result.value * 100) == interest


@pytest.mark.parametrize("text", ["How much did we move between accounts in 2025?", "How much did we move into savings?",
                                  "what did we shift from checking to the card last year",
                                  "How much went on Transfer last year?"])
def test_transfer_questions_are_routed_to_the_data(engine, text):
    result = engine.answer_chat(text)
    assert result is not None and result.intent == "transfers", text


@pytest.mark.parametrize("text", ["We moved into a new office in 2024, any decorating tips?",
                                  "How do I move money into a savings account?", "How long does a bank transfer take?"])
def test_moving_in_general_goes_to_the_model(engine, text):
    assert engine.answer_chat(text) is None


def test_transfers_per_period(engine, frame):
    rows = transfers(frame, 2025)
    result = engine.query("Transfers by month in 2025")
    want = {f"2025-{m:02d}": -part.loc[part["cents"] < 0, "cents"].sum() for m, part in rows.groupby(rows["date"].dt.month)}
    got = {key: round(value * 100) for key, value, _ in result.details["by_period"]}
    assert got == want and f"- 2025-01: {usd(want['2025-01'])}" in result.answer
    savings = frame[(frame["type"] == "transfer") & (frame["account"] == "Business Savings")]
    by_quarter = engine.query("How much did we move into savings each quarter?")
    quarters = savings.groupby(savings["date"].dt.year.astype(str) + "-Q" + savings["date"].dt.quarter.astype(str))
    assert {k: round(v * 100) for k, v, _ in by_quarter.details["by_period"]} == \
        {k: part["cents"].sum() for k, part in quarters}
