"""Period parsing: absolute and relative expressions, ranges, and year inference."""

from datetime import date as D

import pytest

from labs_core.finance.periods import Period, find_periods, month_period, quarter_period, year_period

REF = D(2025, 12, 31)


def one(text: str, ref: D = REF) -> Period:
    found = find_periods(text, ref, D(2024, 1, 1))
    assert len(found) == 1, (text, found)
    return found[0].period


@pytest.mark.parametrize("text,start,end,relative", [
    ("in March 2025", D(2025, 3, 1), D(2025, 3, 31), False),
    ("mar 2024", D(2024, 3, 1), D(2024, 3, 31), False),
    ("in 2024", D(2024, 1, 1), D(2024, 12, 31), False),
    ("Q3 2024", D(2024, 7, 1), D(2024, 9, 30), False),
    ("2024 q4", D(2024, 10, 1), D(2024, 12, 31), False),
    ("the third quarter of 2024", D(2024, 7, 1), D(2024, 9, 30), False),
    ("first half of 2025", D(2025, 1, 1), D(2025, 6, 30), False),
    ("H2 2024", D(2024, 7, 1), D(2024, 12, 31), False),
    ("on 2025-02-14", D(2025, 2, 14), D(2025, 2, 14), False),
    ("on 14 February 2025", D(2025, 2, 14), D(2025, 2, 14), False),
    ("on Feb 14, 2025", D(2025, 2, 14), D(2025, 2, 14), False),
    ("2025-03", D(2025, 3, 1), D(2025, 3, 31), False),
    ("between 1 Feb and 15 Apr 2025", D(2025, 2, 1), D(2025, 4, 15), False),
    ("from Jan 2024 to Mar 2024", D(2024, 1, 1), D(2024, 3, 31), False),
    ("2025-02-01 to 2025-02-14", D(2025, 2, 1), D(2025, 2, 14), False),
    ("between Nov and Feb 2025", D(2024, 11, 1), D(2025, 2, 28), False),
    ("FY2024", D(2024, 1, 1), D(2024, 12, 31), False),
    ("before June 2024", D(2024, 1, 1), D(2024, 5, 31), False),
    ("last quarter", D(2025, 7, 1), D(2025, 9, 30), True),
    ("this quarter", D(2025, 10, 1), D(2025, 12, 31), True),
    ("last month", D(2025, 11, 1), D(2025, 11, 30), True),
    ("this month", D(2025, 12, 1), D(2025, 12, 31), True),
    ("this year", D(2025, 1, 1), D(2025, 12, 31), True),
    ("last year", D(2024, 1, 1), D(2024, 12, 31), True),
    ("last week", D(2025, 12, 22), D(2025, 12, 28), True),
    ("yesterday", D(2025, 12, 30), D(2025, 12, 30), True),
    ("since June", D(2025, 6, 1), REF, True),
    ("since 1 March 2025", D(2025, 3, 1), REF, True),
    ("the last 30 days", D(2025, 12, 2), REF, True),
    ("past 3 months", D(2025, 10, 1), REF, True),
    ("over the past year", D(2025, 1, 1), REF, True),
    ("two months ago", D(2025, 10, 1), D(2025, 10, 31), True),
    ("year to date", D(2025, 1, 1), REF, True),
    ("in May", D(2025, 5, 1), D(2025, 5, 31), True),
    ("Q3", D(2025, 7, 1), D(2025, 9, 30), True),
    ("last March", D(2025, 3, 1), D(2025, 3, 31), True),
    # seasons: three months (northern hemisphere); winter YEAR starts in the December before
    ("the summer of 2025", D(2025, 6, 1), D(2025, 8, 31), False),
    ("fall 2024", D(2024, 9, 1), D(2024, 11, 30), False),
    ("winter 2025", D(2024, 12, 1), D(2025, 2, 28), False),
    ("this winter", D(2025, 12, 1), D(2026, 2, 28), True),
    ("last winter", D(2024, 12, 1), D(2025, 2, 28), True),
    ("in the spring", D(2025, 3, 1), D(2025, 5, 31), True),
    # a part of a relative year (a bare "the second quarter" is the latest Q2: 2025's)
    ("the second quarter of last year", D(2024, 4, 1), D(2024, 6, 30), True),
    ("Q1 this year", D(2025, 1, 1), D(2025, 3, 31), True),
    ("q4 of the previous year", D(2024, 10, 1), D(2024, 12, 31), True),
    ("the first half of last year", D(2024, 1, 1), D(2024, 6, 30), True),
    ("H2 this year", D(2025, 7, 1), D(2025, 12, 31), True),
    # days of one month
    ("between the 1st and 15th of March 2025", D(2025, 3, 1), D(2025, 3, 15), False),
    ("from the 3rd to the 10th of May", D(2025, 5, 3), D(2025, 5, 10), True),  # (the latest May, as "in May")
    # weekends: REF is a Wednesday
    ("last weekend", D(2025, 12, 27), D(2025, 12, 28), True),
    ("this weekend", D(2026, 1, 3), D(2026, 1, 4), True),
])
def test_expressions(text, start, end, relative):
    period = one(text)
    assert (period.start, period.end, period.relative) == (start, end, relative)


@pytest.mark.parametrize("text,ref,start,end", [
    ("last quarter", D(2025, 2, 10), D(2024, 10, 1), D(2024, 12, 31)),
    ("this year", D(2025, 6, 30), D(2025, 1, 1), D(2025, 6, 30)),
    ("last month", D(2024, 1, 15), D(2023, 12, 1), D(2023, 12, 31)),
    ("in March", D(2025, 2, 1), D(2024, 3, 1), D(2024, 3, 31)),  # the latest March that has started
    ("since June", D(2025, 3, 1), D(2024, 6, 1), D(2025, 3, 1)),
    ("the last 7 days", D(2024, 3, 1), D(2024, 2, 24), D(2024, 3, 1)),
    ("last summer", D(2025, 7, 10), D(2024, 6, 1), D(2024, 8, 31)),  # the current one has not ended
    ("summer", D(2025, 7, 10), D(2025, 6, 1), D(2025, 8, 31)),
    ("last weekend", D(2025, 12, 28), D(2025, 12, 20), D(2025, 12, 21)),  # on a Sunday: the one before
    ("this weekend", D(2025, 12, 27), D(2025, 12, 27), D(2025, 12, 27)),  # on a Saturday: up to today
    ("the third quarter of this year", D(2025, 8, 15), D(2025, 7, 1), D(2025, 8, 15)),  # not past today
])
def test_relative_to_reference_date(text, ref, start, end):
    period = one(text, ref)
    assert (period.start, period.end) == (start, end)


@pytest.mark.parametrize("text", ["may I ask a question", "what should I march for", "how much did I spend",
                                  "the top 5 merchants", "over $2024", "did spending fall"])
def test_no_period(text):
    assert find_periods(text, REF) == []


@pytest.mark.parametrize("text,want", [
    ("january, february and march 2024", [(D(2024, 1, 1), D(2024, 1, 31)), (D(2024, 2, 1), D(2024, 2, 29)),
                                          (D(2024, 3, 1), D(2024, 3, 31))]),
    ("q1 or q2 2024", [(D(2024, 1, 1), D(2024, 3, 31)), (D(2024, 4, 1), D(2024, 6, 30))]),
    ("december and january 2025", [(D(2024, 12, 1), D(2024, 12, 31)), (D(2025, 1, 1), D(2025, 1, 31))]),
])
def test_a_list_lends_its_year_to_the_bare_ones(text, want):
    """Each bare month was the latest one (January 2025), whatever year the list ended with."""
    assert [(f.period.start, f.period.end) for f in find_periods(text, REF)] == want


def test_comparison_keeps_two_periods():
    text = "compare march 2025 to march 2024"
    joined = find_periods(text, REF)
    assert len(joined) == 1  # read as a range
    apart = find_periods(text, REF, join_ranges=False)
    assert [(f.period.start, f.period.end) for f in apart] == [(D(2025, 3, 1), D(2025, 3, 31)),
                                                               (D(2024, 3, 1), D(2024, 3, 31))]


def test_previous_and_year_earlier():
    assert month_period(2025, 1).previous() == month_period(2024, 12)
    assert quarter_period(2025, 1).previous() == quarter_period(2024, 4)
    assert year_period(2025).previous() == year_period(2024)
    assert quarter_period(2025, 3).year_earlier() == quarter_period(2024, 3)
    custom = Period(D(2025, 2, 1), D(2025, 2, 10), "x")
    assert (custom.previous().start, custom.previous().end) == (D(2025, 1, 22), D(2025, 1, 31))
    assert (custom.year_earlier().start, custom.year_earlier().end) == (D(2024, 2, 1), D(2024, 2, 10))


def test_impossible_day_falls_back_to_the_month():
    period = one("on 31 February 2025")
    assert (period.start, period.end) == (D(2025, 2, 1), D(2025, 2, 28))


def test_describe_shows_dates():
    assert year_period(2024).describe() == "2024 (2024-01-01 to 2024-12-31)"
    assert one("last quarter").describe() == "last quarter (Q3 2025: 2025-07-01 to 2025-09-30)"
