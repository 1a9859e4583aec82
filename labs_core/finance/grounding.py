"""The grounding guarantee's helpers: what a question names that the data does not have, and the
answer given when a question about the user's money cannot be parsed exactly.

The rule (docs/finance.md): once the router calls a chat message a question about the data, the model
never answers it. The message gets the exact answer, or the figures that can be computed for what was
recognised (its period, merchants, categories, accounts) with "I could not understand ..." for the
rest, or only "I could not understand ...". Every figure in such a reply comes from compute.py.
"""

from __future__ import annotations

import re
from datetime import date

from labs_core.finance.entities import Vocabulary, normalize
from labs_core.finance.periods import MONTHS, find_periods

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# Capitalised words that are not names of anything in a ledger.
ORDINARY = frozenset({"i", "i'm", "i've", "i'd", "ok", "okay", "usd", "us", "ytd", "mtd", "qtd", "fy", "q1", "q2",
                      "q3", "q4", "h1", "h2", "vs", "vs.", "total", "please", "thanks", "hi", "hey", "also", "and",
                      "what", "how", "the", "our", "my", "we", "show", "list", "give", "tell", "compare", "did",
                      *MONTHS, *WEEKDAYS, *(f"{day}s" for day in WEEKDAYS)})
# Words that may follow "at" without being a place of business.
AT_WORDS = frozenset("""the a an least most all any once home work night times first last least our my this that
these those it each every some what which""".split())
TOKEN = re.compile(r"[A-Za-z][\w&'.-]*")


def after_at_word(lower: str, index: int) -> bool:
    return re.search(r"\bat $", lower[max(0, index - 4):index]) is not None


def _sentence_start(text: str, index: int) -> bool:
    before = text[:index].rstrip()
    return not before or before[-1] in ".?!:;\"("


def unrecognised_names(question: str, vocabulary: Vocabulary, reference: date) -> list[str]:
    """Names the question uses that match no merchant, category or account of the data: capitalised
    words that do not start a sentence ("at Costco", "Netflix charges"), and the word after "at".
    Consecutive ones form one name ("Blue Bottle Coffee")."""
    text = re.sub(r"\s+", " ", question.replace("\u2019", "'").replace("\u2018", "'")).strip()
    lower = normalize(text)
    covered = [(e.start, e.end) for e in vocabulary.find(lower)]
    covered += [(f.start_idx, f.end_idx) for f in find_periods(lower, reference)]
    names: list[list[str]] = []
    last_end = -2
    for m in TOKEN.finditer(text):
        word = m.group(0).rstrip(".'-")
        key = word.lower()
        if any(m.start() < e and s < m.end() for s, e in covered) or key in ORDINARY:
            continue
        if word.isupper() and len(word) > 3 and not after_at_word(lower, m.start()):
            continue  # shouting ("SPENDING"), not a name; short capitals ("IBM") may be names
        after_at = after_at_word(lower, m.start()) and key not in AT_WORDS
        capitalised = word[0].isupper() and not _sentence_start(text, m.start())
        if not (capitalised or after_at):
            continue
        if names and m.start() - last_end <= 1:
            names[-1].append(word)
        else:
            names.append([word])
        last_end = m.end()
    return [" ".join(n) for n in names]


def unrecognised_note(names: list[str]) -> str:
    quoted = ", ".join(f'"{n}"' for n in names)
    return (f"I could not understand {quoted}: no merchant, category or account in the data has "
            f"{'that name' if len(names) == 1 else 'those names'}, so the figures below do not filter on "
            f"{'it' if len(names) == 1 else 'them'}.")


# "per employee": the data has no headcount, so such a ratio cannot be computed from it.
PER_HEAD = re.compile(r"\b(?:per|for each|each|a|an) (employee|head|person|staff(?: member)?|worker|team member|"
                      r"hire|fte|headcount|seat|user)s?\b|\bper capita\b")


def per_head_note(question: str) -> str:
    """The note for a question that divides by people, or "" when it does not."""
    m = PER_HEAD.search(normalize(question))
    if not m:
        return ""
    who = m.group(1) or "person"
    return (f"The data has no headcount, so the figures below are not per {who}: they are the totals; divide them "
            "by your headcount for the ratio.")


NOT_UNDERSTOOD = ("I could not understand that question well enough to answer it exactly from the transactions "
                  "data, and I do not guess figures.")
PARTIAL = ("I could not understand exactly what you asked, so I have not guessed a figure. What I can compute "
           "exactly for what I recognised:")
