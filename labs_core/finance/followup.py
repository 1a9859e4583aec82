"""Follow-up questions in a chat: "and in 2024?", "what about Uber?", "same for last month".

A short message that opens like a follow-up and names a period, a name from the data or a measure
is read as the previous finance question with those parts replaced: a new period replaces the
period, new names replace the names (of every kind), a named measure replaces the measure.
A short message that points back at the answer ("how many payments was that?", "how does that
compare to the quarter before?") asks a new question about the same rows (`reframe`).
"""

from __future__ import annotations

import re
from dataclasses import replace

from labs_core.finance import query as Q
from labs_core.finance.parse import Parts, count_types

FOLLOW_UP = re.compile(r"^\s*(?:(?:ok(?:ay)?|and|so|now|then|also)[,\s]+)*(?:and|what about|how about|same (?:for|with|but|in)|"
                       r"and for|and in|and at|and on|what of|ok(?:ay)?,? (?:and|now)|now for|now|also for|"
                       r"and the same for|what if|"
                       # "excluding payroll?", "and without rent?": the previous question, with names left out
                       r"excluding|except(?: for)?|without|not counting|not including|other than|apart from|"
                       r"leaving out|minus|but (?:not|without|excluding))\b", re.IGNORECASE)
MAX_CHARS = 120
_THAT = r"\b(?:that|those|this|it|them)\b"
COUNT_THAT = re.compile(r"^\s*(?:and\s+|so\s+)?how many\b(?:\s+\w+){0,3}?\s+(?:was|were|is|are|did|does|do)\b.*" + _THAT
                        + r"|^\s*(?:and\s+)?how many (?:of them|were there|times)\s*\??\s*$", re.IGNORECASE)
COMPARE_THAT = re.compile(r"^\s*(?:and\s+|so\s+)?(?:how (?:does|did|do|is|was) (?:that|those|this|it|them) compare|"
                          r"compared? (?:to|with)\b)", re.IGNORECASE)
# What the answer is compared with must be a time ("the quarter before", "last year") or left unsaid.
EARLIER_TIME = re.compile(r"^\s*(?:(?:to|with)\s+)?(?:the\s+|a\s+)?(?:(?:previous|prior|preceding|last|same)\b|"
                          r"(?:month|quarter|year|week|period|one) (?:before|earlier)\b|year (?:ago|earlier|before)\b|"
                          r"before\b)|^\s*\??\s*$", re.IGNORECASE)
A_YEAR_EARLIER = re.compile(r"\b(?:last year|a year (?:earlier|before|ago)|the year before|same \w+ (?:of )?last year|"
                            r"previous year|prior year)\b", re.IGNORECASE)


def is_follow_up(text: str) -> bool:
    return len(text) <= MAX_CHARS and FOLLOW_UP.search(text) is not None


def refers_back(text: str) -> bool:
    """A new question about the previous answer's rows ("how many payments was that?")."""
    return len(text) <= MAX_CHARS and (COUNT_THAT.search(text) is not None or COMPARE_THAT.search(text) is not None)


def reframe(previous: Q.FinanceQuery, text: str) -> Q.FinanceQuery | None:
    """How many rows the previous answer was made of, or its figure against the period before it (a
    year earlier for "last year"); None when the message asks neither, or there is no period to move."""
    plain = dict(group_by=None, n=None, share=False, share_of="", median=False, latest_first=False)
    if COUNT_THAT.search(text):
        return replace(previous, intent=Q.COUNT, types=previous.types or count_types(previous.measure, True), **plain)
    compared = COMPARE_THAT.search(text)
    if compared and EARLIER_TIME.search(text[compared.end():]) and previous.period is not None \
            and previous.intent not in (Q.COMPARE, Q.TRANSFERS):
        yearly = A_YEAR_EARLIER.search(text) is not None
        other = previous.period.year_earlier() if yearly else previous.period.previous()
        note = "the same period a year earlier" if yearly else "the period just before"
        return replace(previous, intent=Q.COMPARE, compare_to=other, compare_note=note, **plain)
    return None


def strip_opener(text: str) -> str:
    """The follow-up without "and", "what about": "and what is compound interest?" -> "what is ..."."""
    return FOLLOW_UP.sub("", text, count=1).strip(" ,")


def merge(previous: Q.FinanceQuery, new: Parts) -> Q.FinanceQuery:
    """The previous question with the follow-up's parts in place of its own."""
    changes: dict = {}
    if not new.periods and new.shift and previous.period is not None and previous.intent != Q.COMPARE:
        changes["period"] = previous.period.year_earlier() if new.shift == "year" else previous.period.previous()
    if new.periods:
        changes["period"] = new.periods[0]
        if previous.intent == Q.COMPARE:
            changes["compare_to"] = new.periods[1] if len(new.periods) > 1 else new.periods[0].previous()
    if new.categories or new.merchants or new.accounts:
        changes.update(categories=new.categories, merchants=new.merchants, accounts=new.accounts)
    if new.explicit_measure and previous.intent not in (Q.TRANSFERS, Q.COUNT, Q.LIST):
        changes["measure"] = new.measure
    for field in ("exclude_categories", "exclude_merchants", "exclude_accounts", "exclude_types"):
        added = getattr(new, field)  # left out on top of what the previous question left out
        if added:
            changes[field] = tuple(dict.fromkeys(getattr(previous, field) + added))
    return replace(previous, **changes)
