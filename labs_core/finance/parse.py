"""Question -> FinanceQuery, by rules: periods, the data's own names, and keyword patterns. No LLM.

The steps, each masking what it consumed so that later steps do not misread it: amount filters
("over $500"), periods ("Q3 2024"), entities (categories, merchants, accounts, refunds/transfers),
then keywords decide the measure (spend, income, net, refunds), the intent and any grouping.
`parse` returns None when no intent is recognised: the caller says it did not understand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, timedelta

from labs_core.finance import query as Q
from labs_core.finance.entities import ACCOUNT, CATEGORY, MERCHANT, TYPE, Vocabulary, normalize
from labs_core.finance.periods import NUMBER_WORDS, Period, find_periods, month_period, year_period


@dataclass(frozen=True)
class ParseContext:
    """What the parser needs to know about the data: its names and its dates."""

    vocabulary: Vocabulary
    reference_date: date
    first_date: date
    income_names: frozenset[str] = field(default_factory=frozenset)  # categories/merchants with only income


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_NUMBER = r"(?P<n>\d{1,3}|" + "|".join(w for w in NUMBER_WORDS if w not in ("a", "an")) + r")"
AMOUNT_FILTER = _re(
    r"\b(?P<op>over|above|more than|greater than|larger than|bigger than|exceeding|at least|no less than|"
    r"in excess of|under|below|less than|smaller than|at most|no more than|cheaper than)\s+"
    r"(?P<cur>\$|usd\s*|us\$)?(?P<num>\d[\d,]*(?:\.\d+)?)\s*(?P<k>k\b)?(?P<unit>\s*(?:dollars|usd|bucks)\b)?")
LOWER_OPS = ("under", "below", "less than", "smaller than", "at most", "no more than", "cheaper than")
INCLUSIVE_OPS = ("at least", "no less than", "at most", "no more than")  # the others leave the bound out

NET = _re(r"\b(net|profit|profits|profitable|lose|lost|loss|losses|bottom line|cash ?flow|saved|save|savings rate|left over|surplus|"
          r"deficit|margin|p&l|in the (?:black|red))\b")
NET_SPEND = _re(r"\bnet (?:spend|spending|expenses|costs?)\b")
INCOME = _re(r"\b(payments? received|received payments?|incoming payments?|payments? (?:we|i) (?:received|got)|"
             r"payments? (?:from|by) (?:clients?|customers?)|"
             r"income|incomes|revenue|revenues|earn|earned|earning|earnings|made|make|makes|making|receive|"
             r"received|receiving|got paid|get paid|paid me|paid us|pay me|pay us|pays me|pays us|inflows?|"
             r"money in(?! {2,})|came in|takings|turnover|brought in|bring in|sold|sell|"
             r"invoices?|invoiced|invoicing)\b")
# income unless a spending word is there too ("the invoices we paid"): what we make, what we invoice
WEAK_INCOME = ("made", "make", "makes", "making", "invoice", "invoices", "invoiced", "invoicing")
SPEND = _re(r"\b(spend|spent|spends|spending|expense|expenses|expenditures?|costs?|costing|paid|pay|paying|"
            r"payments?|charges?|charged|bills?|billed|outgoings?|outflows?|money out|purchases?|purchased|"
            r"bought|buy|buying|shell(?:ed)? out|burn(?:ed|t)?|go(?:es)? out|went out|c[ao]mes? out)\b")
# Words that are spending unless the names in the question only ever bring money in.
AMBIGUOUS_SPEND = frozenset({"pay", "paid", "paying", "payment", "payments", "charge", "charges", "bill", "bills",
                             "billed", "cost", "costs"})
CLIENT_WORDS = _re(r"\b(clients?|customers?|payers?|who paid|who pays|sources? of income|income sources?)\b")

UNUSUAL = _re(r"\b(unusual|anomal\w*|outliers?|suspicious|odd|strange|weird|out of the ordinary|abnormal|"
              r"unexpected|stand out|stands? out|spikes?|one-offs?|irregular)\b")
RECURRING = _re(r"\b(subscriptions?|subscribed|recurring|recur|repeat(?:ing|ed)? (?:payments?|charges?|bills?|"
                r"expenses?|costs?)|regular (?:payments?|charges?|bills?|expenses?)|standing orders?|"
                r"direct debits?|memberships?|fixed (?:costs?|charges?|expenses?)|"
                r"monthly (?:bills|charges|payments|fees|commitments|costs))\b")
SUBSCRIPTION = _re(r"\bsubscri")
# "which subscriptions went up", "did any bills increase in price"
PRICE_CHANGE = _re(r"\b(increas\w*|decreas\w*|went up|gone up|go(?:ne)? up|went down|raised|hik(?:e|ed|es)|"
                   r"more expensive|cheaper|price (?:change|increase|rise|hike)s?|changed? (?:in )?price|cost more|"
                   r"cost less)\b")
SUMMARY = _re(r"\b(summary|summari[sz]e|overview|recap|snapshot|p&l|profit and loss|income statement|"
              r"how (?:am i|are we|is (?:the|my|our) business) doing|financial (?:health|position|picture|report)|"
              r"finances|report card|big picture|at a glance)\b")
COMPARE = _re(r"\b(compare|compared|comparing|comparison|vs\.?|versus|year over year|year-over-year|yoy|"
              r"month over month|month-over-month|mom|difference between|differ|change from|changed|"
              r"(?:more|less|higher|lower|fewer|bigger|smaller|greater)(?:\W+\w+){0,5}?\W+than|against)\b")
YEAR_OVER_YEAR = _re(r"\b(year over year|year-over-year|yoy|same (?:month|quarter|period|time) (?:last|a|the previous) "
                     r"year|a year (?:earlier|before|ago))\b")
MONTH_OVER_MONTH = _re(r"\b(month over month|month-over-month|mom)\b")
# "did we spend more on marketing or software": which of two names (joined by "or") is larger
WHICH_MORE = _re(r"\b(more|most|less|least|bigger|biggest|higher|highest|larger|largest|greater|smaller|smallest|"
                 r"lower|lowest|cheaper|pricier|costlier)\b")
TREND = _re(r"\b(trend|trends|trending|(?:go|goes|going|gone|went) (?:up|down)|increas\w*|decreas\w*|grow|grew|growth|"
            r"growing|grown|rise|rose|rising|fall|fell|falling|drop|dropped|over time)\b")
# A balance: the data has none (no opening balances), so the answer is the net change per account.
BALANCE = _re(r"\b(balances?|how much (?:money|cash) (?:do|does) (?:we|i|the business|the company) have|owed?|"
              r"cash on hand|cash position|money (?:is )?(?:left )?in the bank)\b")
RUNWAY = _re(r"\b(runway|how long (?:will|would|can|does) (?:our|my|the) (?:cash|money) last)\b")
MARGIN = _re(r"\b(?:profit |net |operating )?margins?\b")
# "what percent of revenue went to payroll": the named spending as a share of income.
OF_INCOME = _re(r"\b(?:of|from|to) (?:our |my |the |total )?(?:revenues?|income|sales|turnover|earnings|takings)\b")
# Rows on some days of the week only ("on weekends"; "weekdays" alone is the by-weekday breakdown).
WEEKEND = _re(r"\b(weekends?|saturdays? (?:and|or|&) sundays?)\b")
WORKDAYS = _re(r"\b(on weekdays|during the week|on workdays|on business days|monday to friday|"
               r"monday through friday)\b")
_DAY_NAMES = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
ON_A_DAY = _re(rf"\b(?:on (?P<day>{_DAY_NAMES})s|every (?P<every>{_DAY_NAMES}))\b")
CHANGE_FROM_TO = _re(r"\b(grow|grew|grown|growing|increas\w*|decreas\w*|rise|risen|rose|fall|fell|fallen|drop|dropped|"
                    r"chang\w*|(?:go|goes|went|gone) (?:up|down))\b.*\bfrom\b.+\bto\b")
COUNT = _re(r"\b(how many|number of|count of|count|how often|how frequently)\b")
# "how many clients paid us": different merchants, not transactions
DISTINCT_PAYEES = _re(r"\b(?:how many|number of) (?:different |distinct |unique |separate )?(?:clients|customers|"
                      r"payers|vendors|suppliers|merchants|payees|stores|shops|companies|businesses)\b")
AVERAGE = _re(r"\b(burn rate|average|avg|mean|median|typical(?:ly)?|on average|normally|usually)\b")
MEDIAN = _re(r"\bmedian\b")
# "how much do we spend a month on software": a rate, not a total nor a breakdown (no week grouping exists).
RATE = _re(r"\ba (?:month|year|week|day)\b|\b(?:per|each|every) week\b|\bper day\b|\b(?:weekly|daily)\b")
MONTHLY = _re(r"\b(burn rate|monthly|per month|a month|each month|every month|month)\b")
PER_TRANSACTION = _re(r"\b(transactions?|expense(?!s)|purchases?|orders?|visits?|trips?|charges?|payments?|tickets?|"
                      r"bills?|"
                      r"invoices?|sales?|rides?|meals?|coffees?|flights?|lunch(?:es)?|deliver(?:y|ies)|receipts?|"
                      r"amounts?|size|each time|per (?:transaction|purchase|order|visit|time))\b")
TOP = _re(r"\b(largest|biggest|highest|most expensive|priciest|top|greatest|maximum|max|most(?! recent)|costliest|"
          r"heaviest|largest single)\b")
# "the biggest payment we made to a vendor": one transaction, even when a group word follows.
SINGLE_ITEM = _re(r"\b(?:largest|biggest|highest|most expensive|priciest|costliest|smallest|cheapest|lowest)\s+"
                  r"(?:single\s+|one\s+)?(?:expense|purchase|transaction|payment|charge|bill|order|sale|invoice)\b(?!s)"
                  r"(?!\s+(?:categor|merchant|vendor|supplier|payee|client|customer|account|month|quarter|year|day))")
# A follow-up's "the year before" / "a year earlier" (the same span a year back) or "the month / quarter /
# period before" (the one just before the previous question's)
SHIFT_BACK = _re(r"\b(?:(?P<year>(?:the )?(?:year|12 months) (?:before|earlier|prior)|a year (?:before|earlier|ago)|"
                 r"the (?:previous|prior) year)|(?:the )?(?:month|quarter|week|period|one) (?:before|earlier|prior)|"
                 r"the (?:previous|prior) (?:month|quarter|week|period))\b")
# "our best month", "the worst quarter for profit": ranked by income or net, or (spending) the other way
BEST = _re(r"\b(best|strongest)\b")
WORST = _re(r"\b(worst|weakest)\b")
RANKED_UNIT = _re(r"\b(?:best|worst|strongest|weakest|highest|lowest|biggest|largest|smallest)\s+"
                  r"(?:(?:revenue|income|sales|spending|expense|profit|earnings?)\s+)?(?P<unit>month|quarter|year|day)\b")
BOTTOM = _re(r"\b(smallest|lowest|cheapest|least expensive|least|minimum|min|tiniest)\b")
TOP_N = _re(r"\b(?:top|largest|biggest|highest|smallest|lowest|cheapest|first|last|latest|most recent)\s+" + _NUMBER
            + r"\b|\b" + _NUMBER.replace("?P<n>", "?P<n2>") + r"\s+(?:largest|biggest|highest|most expensive|"
            r"smallest|cheapest|lowest|latest|most recent)\b")
SINGULAR_ITEM = _re(r"\b(expense|purchase|transaction|payment|charge|bill|one|invoice|sale|refund|order|"
                    r"category|merchant|vendor|supplier|client|customer|month|quarter|year|account|day|store|shop)\b"
                    r"(?!s)")
PLURAL_ITEM = _re(r"\b(expenses|purchases|transactions|payments|charges|bills|ones|invoices|sales|refunds|orders|"
                  r"categories|merchants|vendors|suppliers|clients|customers|months|quarters|years|accounts|"
                  r"stores|shops|items)\b")
GROUPS: list[tuple[str, re.Pattern[str]]] = [
    ("weekday", _re(r"\b(weekdays?|day of (?:the )?week|days of (?:the )?week|which day|what day)\b")),
    ("day", _re(r"\b(each day|every day|day by day|by day|by date|per date|each date|daily breakdown)\b")),
    ("category", _re(r"\b(categor(?:y|ies)|by type|on what|what (?:did|do|have) (?:i|we) (?:spend|spent) "
                     r"(?:the )?(?:most|least|more|less)(?: money)? on|what (?:do|did) (?:i|we) spend (?:it|money) on|"
                     r"where (?:does|did|do) (?:my|our|the) money go|"
                     r"where (?:did|do|does|have) (?:i|we) (?:spend|spent))\b")),
    ("merchant", _re(r"\b(merchants?|vendors?|suppliers?|payees?|stores?|shops?|retailers?|companies|businesses|"
                     r"brands?|who (?:did|do|have) (?:i|we) (?:pay|paid)|where (?:did|do) (?:i|we) (?:shop|buy)|"
                     r"(?:which|what|top|biggest|largest|best|main|by|per|each|every|highest[- ]paying)\s+(?:\d+\s+)?"
                     r"(?:clients?|customers?|payers?)|who paid|who pays|sources? of income|income sources?)\b")),
    ("account", _re(r"\b(accounts|by account|per account|each account|which account|what account)\b")),
    ("quarter", _re(r"\b(quarterly|per quarter|by quarter|each quarter|quarters|which quarter|what quarter)\b")),
    ("year", _re(r"\b(yearly|annually|annual|per year|by year|each year|years|which year|what year|"
                 r"year by year)\b")),
    ("month", _re(r"\b(monthly|per month|by month|each month|every month|month by month|month-by-month|months|"
                  r"which month|what month|month)\b")),
]
BREAKDOWN = _re(r"\b(by|per|each|every|breakdown|break down|broken down|split|grouped|group|across|monthly|day by day|"
                r"quarterly|yearly|annually|month by month|year by year)\b")
_LAST_ROW = r"last (?:payment|charge|purchase|transaction|invoice|refund)s?"  # "the last payment to AWS": one row
LIST = _re(r"\b(show|list|display|give me|what were|see|itemi[sz]e|details|transactions|what did (?:i|we) "
           r"(?:buy|purchase|get)|when did|when was|last time|most recent|latest|find|all|any|anything|"
           r"were there|are there|" + _LAST_ROW + r")\b")
FIRST = _re(r"\b(first|earliest|oldest)\b")
SHARE = _re(r"(?:\b(?:percent(?:age)?|share|proportion|fraction|what part)\b|%)")
LATEST = _re(r"\b(when did|when was|last time|most recent|latest|recent|"
             r"last (?:\d{1,3}|two|three|four|five|six|seven|eight|nine|ten|few|couple)|"
             + _LAST_ROW + r")\b")
AGGREGATE = _re(r"\b(how much|total|sum|altogether|in total|overall|amount|costs?)\b")
# "what were our sales in Q4": a figure, not the list of rows ("what were our transactions")
WHAT_WERE_FIGURE = _re(r"\bwhat (?:were|was) (?:our|my|the) (?:total )?(?:sales|expenses|earnings|revenues?|profits?|"
                       r"costs|taxes|takings|income|spending|outgoings)\b")
HOW_MUCH = _re(r"\b(how much|what did (?:i|we) (?:spend|earn|make|pay)|what was|what were|what is|what's|"
               r"total|sum)\b")


# Moves between own accounts: transfer words, or moving words with an account named.
TRANSFER_ONLY = _re(r"\b(net (?:transfer )?flows?|(?:transfer|account) flows?|card payments?|"
                    r"between (?:our |my |the )?(?:own )?accounts|sweeps?|swept)\b")
MOVE = _re(r"\b(mov(?:e|ed|es|ing)|shift(?:ed|s)?|put|putting|pa(?:y|id) (?:off|down|towards?)|"
           r"(?:pay|paid) (?:off )?on)\b")
SPEND_ON = _re(r"\b(spen[dt]\w*|went on|go(?:es)? on|expenses?|costs?)\b")
INTO = _re(r"\b(?:into|in to|to|towards?|on|onto)\s+(?:the\s+|our\s+|my\s+)?$")
OUT_OF = _re(r"\b(?:out of|from|off|of)\s+(?:the\s+|our\s+|my\s+)?$")


def _number(text: str) -> int:
    return int(text) if text.isdigit() else NUMBER_WORDS[text]


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    chars = list(text)
    for start, end in spans:
        for i in range(start, end):
            chars[i] = " "
    return "".join(chars)


@dataclass(frozen=True)
class AmountBounds:
    """The amount filter a question states: "over $1,000" leaves 1,000 out, "at least $1,000" keeps it."""

    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True


EXCLUDING = _re(r"\b(?:excluding|exclude|excludes|except(?: for)?|without|other than|apart from|aside from|"
                r"not counting|not including|leaving out|ignoring|minus|but not)\s+(?:the\s+|our\s+|my\s+)?$")
AND_ALSO = _re(r"^\s*(?:,|and|or|nor|, and|, or|&)\s*(?:the\s+|our\s+|my\s+)?$")


def _split_excluded(text: str, entities: list) -> tuple[list, list, list[tuple[int, int]]]:
    """(named, excluded, spans of the excluding words): "total expenses excluding payroll and rent"
    leaves Payroll and Rent out instead of asking about them."""
    named, excluded, spans = [], [], []
    cut = 0
    for e in sorted(entities, key=lambda e: e.start):
        before = text[cut:e.start]
        word = EXCLUDING.search(before)
        if word or (excluded and excluded[-1].end == cut and AND_ALSO.search(before)):
            excluded.append(e)
            if word:
                spans.append((cut + word.start(), cut + word.end()))
        else:
            named.append(e)
        cut = e.end
    return named, excluded, spans


def _names_joined(text: str, entities: list) -> bool:
    """A category and a merchant joined by "and" / "or" ("software and Amazon"): either one's rows,
    where side by side they narrow each other ("Uber rides": Uber's Travel rows)."""
    ordered = sorted((e for e in entities if e.kind in (CATEGORY, MERCHANT)), key=lambda e: e.start)
    return any(first.kind != second.kind and AND_ALSO.search(text[first.end:second.start]) is not None
               for first, second in zip(ordered, ordered[1:]))


def _values(entities: list, kind: str) -> tuple[str, ...]:
    out: list[str] = []
    for e in entities:
        if e.kind == kind:
            out.extend(v for v in e.values if v not in out)
    return tuple(out)


def _names_either(text: str, entities: list) -> str | None:
    """The kind ("category", "merchant", "account") of two names of one kind joined by "or"."""
    ordered = sorted((e for e in entities if e.kind in (CATEGORY, MERCHANT, ACCOUNT)), key=lambda e: e.start)
    for first, second in zip(ordered, ordered[1:]):
        if first.kind == second.kind and text[first.end:second.start].strip(" ,") == "or":
            return first.kind  # (the kinds are the group names)
    return None


def _amount_filters(text: str) -> tuple[AmountBounds, list[tuple[int, int]]]:
    bounds = AmountBounds()
    spans = []
    for m in AMOUNT_FILTER.finditer(text):
        raw = m["num"].replace(",", "")
        looks_like_year = (not m["cur"] and not m["k"] and not m["unit"] and "." not in raw and "," not in m["num"]
                           and len(raw) == 4 and 1900 <= int(raw) <= 2100)
        if looks_like_year:
            continue
        value = float(raw) * (1000 if m["k"] else 1)
        inclusive = m["op"] in INCLUSIVE_OPS
        if m["op"] in LOWER_OPS:
            bounds = replace(bounds, high=value, high_inclusive=inclusive)
        else:
            bounds = replace(bounds, low=value, low_inclusive=inclusive)
        spans.append((m.start(), m.end()))
    return bounds, spans


def _measure(rest: str, names_income: bool, types: tuple[str, ...]) -> tuple[str, bool, bool]:
    """(measure, explicit, both): explicit when a word named it, both when income and spending were named."""
    if "refund" in types:
        return Q.REFUNDS, True, False
    if NET.search(rest) and not NET_SPEND.search(rest):
        return Q.NET, True, False
    income_hits = [m.group(0) for m in INCOME.finditer(rest)]
    spend_text = INCOME.sub(" ", rest)
    spend_hit = SPEND.search(spend_text) is not None
    strong_income = [h for h in income_hits if h not in WEAK_INCOME]
    spend_words = {m.group(0) for m in SPEND.finditer(spend_text)}
    if names_income and spend_words and spend_words <= AMBIGUOUS_SPEND and not strong_income:
        return Q.INCOME, True, False  # "the largest payment from Acme": Acme only ever pays in
    if strong_income and spend_hit:
        return Q.SPEND, True, True
    if strong_income or (income_hits and not spend_hit):
        return Q.INCOME, True, False
    if spend_hit:
        return Q.SPEND, True, False
    if CLIENT_WORDS.search(rest) or names_income:
        return Q.INCOME, False, False
    return Q.SPEND, False, False


def _group(text: str) -> str | None:
    for name, pattern in GROUPS:
        if pattern.search(text):
            return name
    return None


def _n(text: str) -> int | None:
    m = TOP_N.search(text)
    if not m:
        return None
    n = _number(m["n"] or m["n2"])
    return n if n > 0 else None


def _default_n(text: str) -> int:
    """1 for "the largest expense", 5 for "the largest expenses"."""
    plural = PLURAL_ITEM.search(text)
    singular = SINGULAR_ITEM.search(text)
    if plural and (not singular or plural.start() < singular.start()):
        return 5
    return 1 if singular else 5


@dataclass(frozen=True)
class Parts:
    """What a question names, intent aside: for answering what can be answered, and for follow-ups."""

    periods: tuple[Period, ...]
    categories: tuple[str, ...]
    merchants: tuple[str, ...]
    accounts: tuple[str, ...]
    types: tuple[str, ...]
    measure: str
    explicit_measure: bool
    exclude_categories: tuple[str, ...] = ()  # "excluding payroll"
    exclude_merchants: tuple[str, ...] = ()
    exclude_accounts: tuple[str, ...] = ()
    exclude_types: tuple[str, ...] = ()
    shift: str = ""  # "and the year before?": "year" (a year earlier), "previous" (the period just before)

    @property
    def excludes_something(self) -> bool:
        return bool(self.exclude_categories or self.exclude_merchants or self.exclude_accounts or self.exclude_types)

    @property
    def names_something(self) -> bool:
        return bool(self.periods or self.categories or self.merchants or self.accounts or self.types
                    or self.excludes_something or self.shift)


def parts(question: str, ctx: ParseContext) -> Parts:
    text = normalize(question).strip()
    text1 = _mask(text, _amount_filters(text)[1])
    found = find_periods(text1, ctx.reference_date, ctx.first_date)
    text2 = _mask(text1, [(f.start_idx, f.end_idx) for f in found])
    found_names = ctx.vocabulary.find(text2)
    entities, excluded, excluding = _split_excluded(text2, found_names)
    rest = _mask(text2, [(e.start, e.end) for e in found_names] + excluding)
    categories, merchants = _values(entities, CATEGORY), _values(entities, MERCHANT)
    named = [*categories, *merchants]
    names_income = bool(named) and all(n in ctx.income_names for n in named)
    types = _values(entities, TYPE)
    measure, explicit, _ = _measure(rest, names_income, types)
    shift = SHIFT_BACK.search(text1)
    return Parts(tuple(f.period for f in found), categories, merchants, _values(entities, ACCOUNT), types, measure,
                 explicit, *(_values(excluded, kind) for kind in (CATEGORY, MERCHANT, ACCOUNT, TYPE)),
                 shift=("year" if shift and shift["year"] else "previous") if shift else "")


def parse(question: str, ctx: ParseContext) -> Q.FinanceQuery | None:
    text = normalize(question).strip()
    ref = ctx.reference_date

    amounts, amount_spans = _amount_filters(text)
    text1 = _mask(text, amount_spans)
    comparing = COMPARE.search(text1) is not None
    # "how much did revenue grow from 2024 to 2025": two periods to compare, not the range they span
    found = find_periods(text1, ref, ctx.first_date, join_ranges=not (comparing or CHANGE_FROM_TO.search(text1)))
    periods = [f.period for f in found]
    separators = [text1[a.end_idx:b.start_idx].strip() for a, b in zip(found, found[1:])]
    if len(found) == 2 and separators[0] == "or" and WHICH_MORE.search(text1):
        comparing = True  # "did we spend more in Q1 or Q2 2025": the two side by side
    elif len(found) >= 2 and not comparing and all(s in ("and", "&", "+", ",", ", and") for s in separators):
        # "during 2024 and 2025", "Jan, Feb and Mar 2025": one period when they touch; two not touching
        # are both figures (a comparison)
        ordered = sorted(periods, key=lambda p: p.start)
        touching = all(b.start <= a.end + timedelta(days=1) for a, b in zip(ordered, ordered[1:]))
        if touching:
            names = [p.label.split(" (")[0] for p in ordered]  # "last year (2024)": "last year"
            label = ", ".join(names[:-1]) + f" and {names[-1]}"
            periods = [Period(ordered[0].start, max(p.end for p in ordered), label, "custom",
                              any(p.relative for p in ordered))]
        elif len(found) == 2:
            comparing = True
    text2 = _mask(text1, [(f.start_idx, f.end_idx) for f in found])
    found_names = ctx.vocabulary.find(text2)
    entities, excluded, excluding = _split_excluded(text2, found_names)
    rest = _mask(text2, [(e.start, e.end) for e in found_names] + excluding)
    categories, merchants, accounts, types = (_values(entities, kind) for kind in (CATEGORY, MERCHANT, ACCOUNT, TYPE))
    named = [*categories, *merchants]
    names_income = bool(named) and all(n in ctx.income_names for n in named)
    measure, explicit, both = _measure(rest, names_income, types)
    ranked_unit = RANKED_UNIT.search(text2)  # "our best quarter": quarters, ranked
    group = ranked_unit["unit"] if ranked_unit else _group(text2)
    if group == "merchant" and CLIENT_WORDS.search(text2) and not explicit:
        measure = Q.INCOME
    n = _n(text2)  # (not "the last 3 months": a period, masked in text2)
    period = periods[0] if periods else None
    one_day = ON_A_DAY.search(text2)
    # "weekdays vs weekends": the two parts of the week side by side, not a filter on one of them
    weekpart = bool(WEEKEND.search(text2) and re.search(r"\b(?:weekdays?|workdays?|during the week)\b", text2))
    if weekpart:
        group = "weekpart"
    days = "" if weekpart else "weekend" if WEEKEND.search(text2) else "weekday" if WORKDAYS.search(text2) else \
        (one_day["day"] or one_day["every"]) if one_day else ""
    common = dict(measure=measure, period=period, categories=categories, merchants=merchants, accounts=accounts,
                  types=types, min_amount=amounts.low, max_amount=amounts.high, min_inclusive=amounts.low_inclusive,
                  max_inclusive=amounts.high_inclusive, days=days, question=question,
                  any_name=_names_joined(text2, entities),
                  exclude_categories=_values(excluded, CATEGORY), exclude_merchants=_values(excluded, MERCHANT),
                  exclude_accounts=_values(excluded, ACCOUNT), exclude_types=_values(excluded, TYPE))

    def build(intent: str, **extra) -> Q.FinanceQuery:
        return Q.FinanceQuery(intent=intent, **{**common, **extra})

    moving = MOVE.search(text2) is not None and (bool(accounts) or re.search(r"\baccounts\b", text2) is not None)
    # "how much went from checking to savings": two of our accounts, one the source and one the target
    moving = moving or (len(accounts) >= 2 and re.search(r"\bfrom\b.+\b(?:to|into)\b", text2) is not None)
    if "transfer" in types or TRANSFER_ONLY.search(text2) or moving:
        if COUNT.search(rest) or (LIST.search(rest) and not AGGREGATE.search(rest)):
            types = common["types"] = ("transfer",)
        else:
            ordered, direction = _transfer_roles(text2, entities)
            return build(Q.TRANSFERS, accounts=ordered or accounts, types=("transfer",), direction=direction,
                         spend_asked=SPEND_ON.search(rest) is not None,
                         group_by=group if group in ("month", "quarter", "year") else None)

    if RUNWAY.search(rest):
        return build(Q.BALANCE, types=(), runway=True)
    if BALANCE.search(rest):
        return build(Q.BALANCE, types=())
    if UNUSUAL.search(rest):
        return build(Q.UNUSUAL)
    if RECURRING.search(rest):
        return build(Q.RECURRING, subscriptions_only=SUBSCRIPTION.search(rest) is not None,
                     price_changes=PRICE_CHANGE.search(rest) is not None and not periods)
    share_of_income = bool(SHARE.search(text2) and named and not names_income and OF_INCOME.search(text1))
    if share_of_income:  # "what percentage of our income did we spend on rent"
        return build(Q.TOTAL, measure=Q.SPEND, share=True, share_of=Q.INCOME)
    if SUMMARY.search(rest) or (both and len(periods) < 2 and not group and not COUNT.search(rest)):
        return build(Q.SUMMARY)
    if both:
        common["measure"] = Q.NET  # "income and expenses, 2025 vs 2024": compare the net
    trend = TREND.search(rest) is not None
    if weekpart and len(periods) < 2:  # (before the comparison of periods: one period here)
        return build(Q.BREAKDOWN, group_by="weekpart")
    either = _names_either(text2, entities)
    if either and len(periods) < 2 and WHICH_MORE.search(rest):
        return build(Q.BREAKDOWN, group_by=either)  # both figures, largest first
    if comparing or YEAR_OVER_YEAR.search(rest) or MONTH_OVER_MONTH.search(rest) or (trend and periods):
        # "Amazon vs Staples in 2025": two names of one kind and at most one period compare the names.
        same_kind = [kind for kind, values in (("merchant", merchants), ("category", categories),
                                               ("account", accounts)) if len(values) >= 2]
        if same_kind and len(periods) < 2 and comparing:
            return build(Q.BREAKDOWN, group_by=same_kind[0])
        compared = _comparison(rest, periods, ref)
        if compared is not None:
            first, second, note = compared
            if second.start > first.start:  # the change is always the later period against the earlier one
                first, second = second, first
            return build(Q.COMPARE, period=first, compare_to=second, compare_note=note)
    if COUNT.search(rest):
        if DISTINCT_PAYEES.search(text2):
            if not explicit and not types and CLIENT_WORDS.search(text2):  # "how many customers": who paid us
                return build(Q.COUNT, measure=Q.INCOME, types=("income",), group_by="merchant", distinct=True)
            return build(Q.COUNT, types=types or count_types(measure, explicit), group_by="merchant", distinct=True)
        per_group = group if group and BREAKDOWN.search(text2) else None  # "how many transactions each month"
        return build(Q.COUNT, types=types or count_types(measure, explicit), group_by=per_group)
    rate = RATE.search(rest)
    if AVERAGE.search(rest) or rate:
        monthly = MONTHLY.search(text2) is not None
        median = MEDIAN.search(rest) is not None
        word = rate.group(0).split()[-1] if rate else "month"  # "a month", "per week", "daily", ...
        unit = {"weekly": "week", "daily": "day"}.get(word, word)
        if monthly or rate or not PER_TRANSACTION.search(rest):
            return build(Q.MONTHLY_AVERAGE, median=median and unit == "month", rate=unit)
        return build(Q.AVERAGE, median=median)
    best, worst = BEST.search(rest), WORST.search(rest)
    if group and (best or worst) and not (TOP.search(rest) or BOTTOM.search(rest)):
        chosen = measure if explicit else Q.INCOME  # a "best month" with no measure named: by income
        least_first = bool(worst) if chosen != Q.SPEND else bool(best)  # spending: the best is the least
        return build(Q.BREAKDOWN, measure=chosen, group_by=group, n=n or 1, ascending=least_first)
    top, bottom = TOP.search(rest), BOTTOM.search(rest)
    if (top or bottom) and SINGLE_ITEM.search(text2):
        return build(Q.TOP, n=n or 1, ascending=bool(bottom) and (not top or bottom.start() < top.start()))
    if top or bottom:
        ascending = bool(bottom) and (not top or bottom.start() < top.start())
        if group:
            return build(Q.BREAKDOWN, group_by=group, n=n or _default_n(rest), ascending=ascending)
        if not (LATEST.search(rest) and not top):
            return build(Q.TOP, n=n or _default_n(text2), ascending=ascending)  # ("refund" is a name: in text2)
    if FIRST.search(rest) and not AGGREGATE.search(rest):  # ("first sale": "sale" also named Sales, gone from rest)
        when = re.search(r"\bwhen\b", rest) is not None  # "when did we first pay Adobe": one row
        return build(Q.LIST, types=types or count_types(measure, explicit), n=n or (1 if when else _default_n(text2)))
    if trend and not group and not periods:
        return build(Q.BREAKDOWN, group_by="month")
    if group and (BREAKDOWN.search(text2) or not AGGREGATE.search(rest)):
        return build(Q.BREAKDOWN, group_by=group, n=n)
    if LIST.search(rest) and not AGGREGATE.search(rest) and not WHAT_WERE_FIGURE.search(text1):
        latest = LATEST.search(rest) is not None
        return build(Q.LIST, types=types or (count_types(measure, explicit) if explicit else ()),
                     latest_first=latest, n=n or (1 if latest and not PLURAL_ITEM.search(rest) else None))
    # Without a money word, "how much"/"what's" needs a name from the data ("what's the total at
    # Amazon"); "what's our zorblax ratio in 2025" is not understood (the engine gives what it can).
    if measure == Q.NET and MARGIN.search(rest):  # "profit margin": the net as a percentage of income
        return build(Q.TOTAL, share=True, share_of=Q.INCOME)
    if explicit or (HOW_MUCH.search(rest) and (categories or merchants or accounts)):
        return build(Q.TOTAL, share=bool(SHARE.search(text2)) and bool(categories or merchants or accounts))
    return None


def _transfer_roles(text: str, entities) -> tuple[tuple[str, ...], str]:
    """Accounts in source-then-target order ("from checking to savings", "towards the card from
    checking") and, for a single account, whether money moved into it or out of it."""
    sources, targets, others = [], [], []
    for e in entities:
        if e.kind != ACCOUNT:
            continue
        before = text[:e.start]
        bucket = targets if INTO.search(before) else sources if OUT_OF.search(before) else others
        bucket.extend(v for v in e.values if v not in sources + targets + others)
    ordered = tuple(sources + others + targets)
    direction = ""
    if len(ordered) == 1:
        direction = "in" if targets else "out" if sources else ""
    return ordered, direction


def count_types(measure: str, explicit: bool) -> tuple[str, ...]:
    if not explicit:
        return ()
    return {Q.SPEND: ("expense",), Q.INCOME: ("income",), Q.REFUNDS: ("refund",)}.get(measure, ())


def _comparison(rest: str, periods: list[Period], ref: date) -> tuple[Period, Period, str] | None:
    """The two periods a comparison is about: the two named, or one named and the one before it
    (or a year before it, for "year over year"), or this year/month against the previous one."""
    if len(periods) >= 2:
        return periods[0], periods[1], ""
    yoy = YEAR_OVER_YEAR.search(rest) is not None
    if len(periods) == 1:
        first = periods[0]
        if yoy or re.search(r"\b(last|previous|prior) year\b", rest):
            return first, first.year_earlier(), "the same period a year earlier"
        return first, first.previous(), "the period just before"
    if MONTH_OVER_MONTH.search(rest):
        this = month_period(ref.year, ref.month)
        if ref < this.end:  # a month in progress: compare the same days
            this = Period(this.start, ref, f"{this.label} to date", "custom", True)
            return this, this.shift_months(-1, "the same days a month earlier"), "the same days a month earlier"
        return this, this.previous(), "the reference month against the month before"
    if yoy:
        this = year_period(ref.year)
        last = year_period(ref.year - 1)
        if ref < this.end:  # a year in progress: compare the same dates
            this = Period(this.start, ref, f"{ref.year} to date", "custom", True)
            return this, this.year_earlier(), "the same dates a year earlier"
        return this, last, ""
    return None
