"""Follow-up questions in a chat: "and in 2024?", "what about Uber?", "same for last month".

A short message that opens like a follow-up and names a period, a name from the data or a measure
is read as the previous finance question with those parts replaced: a new period replaces the
period, new names replace the names (of every kind), a named measure replaces the measure.
"""

from __future__ import annotations

import re
from dataclasses import replace

from labs_core.finance import query as Q
from labs_core.finance.parse import Parts

FOLLOW_UP = re.compile(r"^\s*(?:(?:ok(?:ay)?|and|so|now|then|also)[,\s]+)*(?:and|what about|how about|same (?:for|with|but|in)|"
                       r"and for|and in|and at|and on|what of|ok(?:ay)?,? (?:and|now)|now for|now|also for|"
                       r"and the same for|what if)\b", re.IGNORECASE)
MAX_CHARS = 120


def is_follow_up(text: str) -> bool:
    return len(text) <= MAX_CHARS and FOLLOW_UP.search(text) is not None


def strip_opener(text: str) -> str:
    """The follow-up without "and", "what about": "and what is compound interest?" -> "what is ..."."""
    return FOLLOW_UP.sub("", text, count=1).strip(" ,")


def merge(previous: Q.FinanceQuery, new: Parts) -> Q.FinanceQuery:
    """The previous question with the follow-up's parts in place of its own."""
    changes: dict = {}
    if new.periods:
        changes["period"] = new.periods[0]
        if previous.intent == Q.COMPARE:
            changes["compare_to"] = new.periods[1] if len(new.periods) > 1 else new.periods[0].previous()
    if new.categories or new.merchants or new.accounts:
        changes.update(categories=new.categories, merchants=new.merchants, accounts=new.accounts)
    if new.explicit_measure and previous.intent not in (Q.TRANSFERS, Q.COUNT, Q.LIST):
        changes["measure"] = new.measure
    return replace(previous, **changes)
