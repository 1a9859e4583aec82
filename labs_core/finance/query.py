"""The typed question (what the parser understood) and the typed answer (what the executor computed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from labs_core.finance.periods import Period

# What is computed.
TOTAL = "total"                      # one figure: spend, income, net or refunds
TOP = "top_transactions"             # largest (or smallest) single transactions
BREAKDOWN = "breakdown"              # grouped by category, merchant, account, month, quarter, year, weekday
MONTHLY_AVERAGE = "monthly_average"  # total / months the period spans (or a week's or a year's worth: `rate`)
AVERAGE = "average_transaction"      # mean size of one transaction
COUNT = "count"                      # number of rows
COMPARE = "compare"                  # one measure over two periods
RECURRING = "recurring"              # recurring payments and subscriptions
UNUSUAL = "unusual"                  # transactions large against their merchant's or category's history
SUMMARY = "summary"                  # income, spending, net, top categories, ...
LIST = "list"                        # the matching transactions
TRANSFERS = "transfers"              # money moved between own accounts: out of / into each, net, routes
BALANCE = "balance"                  # no opening balances in the data: the net change of each account instead
INTENTS = (TOTAL, TOP, BREAKDOWN, MONTHLY_AVERAGE, AVERAGE, COUNT, COMPARE, RECURRING, UNUSUAL, SUMMARY, LIST,
           TRANSFERS, BALANCE)

# What is measured.
SPEND = "spend"      # expenses less refunds, as a positive figure
INCOME = "income"    # income rows
NET = "net"          # income less spending
REFUNDS = "refunds"  # refund rows
MEASURES = (SPEND, INCOME, NET, REFUNDS)

GROUPS = ("category", "merchant", "account", "month", "quarter", "year", "weekday", "day", "weekpart")


@dataclass(frozen=True)
class FinanceQuery:
    intent: str
    measure: str = SPEND
    period: Period | None = None
    compare_to: Period | None = None       # COMPARE: the second period
    categories: tuple[str, ...] = ()
    merchants: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    types: tuple[str, ...] = ()            # restricts rows to these types (refund, transfer, ...)
    any_name: bool = False                 # "software and Amazon": rows of the categories OR the merchants
    exclude_categories: tuple[str, ...] = ()  # "excluding payroll": rows of these left out
    exclude_merchants: tuple[str, ...] = ()
    exclude_accounts: tuple[str, ...] = ()
    exclude_types: tuple[str, ...] = ()
    group_by: str | None = None
    n: int | None = None                   # TOP / BREAKDOWN ranking size
    ascending: bool = False                # TOP: smallest first
    min_amount: float | None = None        # on the absolute amount
    max_amount: float | None = None
    min_inclusive: bool = True             # False: "over $1,000" (the bound itself left out)
    max_inclusive: bool = True
    days: str = ""                         # "weekend" (Sat, Sun), "weekday" (Mon-Fri) or a day's name ("friday")
    latest_first: bool = False             # LIST: most recent first ("when did I last ...")
    runway: bool = False                   # BALANCE: how long the cash lasts, so also the monthly burn
    rate: str = "month"                    # MONTHLY_AVERAGE: the figure a "month", "day", "week" or "year"
    distinct: bool = False                 # COUNT by group_by: how many groups (different merchants), not rows
    median: bool = False                   # AVERAGE, MONTHLY_AVERAGE: the middle value, not the mean
    subscriptions_only: bool = False       # RECURRING: fixed-amount subscriptions, not all recurring bills
    price_changes: bool = False            # RECURRING: only the fixed charges whose price changed
    share: bool = False                    # TOTAL: as a percentage of the same measure without the name filters
    share_of: str = ""                     # TOTAL with share: the whole's measure when not the same (income)
    compare_note: str = ""                 # how the second period was chosen
    direction: str = ""                    # TRANSFERS with one account: "in" (into it), "out" (out of it)
    spend_asked: bool = False              # TRANSFERS: the question asked for spending on transfers
    question: str = ""

    def filters(self) -> list[tuple[str, str]]:
        """What was understood, as (name, value) pairs for the answer and FinanceQueryResponse.filters."""
        out: list[tuple[str, str]] = [("intent", self.intent)]
        if self.intent not in (COUNT, LIST, RECURRING, UNUSUAL, SUMMARY, TRANSFERS, BALANCE):
            out.append(("measure", self.measure))
        if self.period is not None:
            out.append(("period", self.period.describe()))
        if self.compare_to is not None:
            out.append(("compare_to", self.compare_to.describe()))
        for name, values in (("category", self.categories), ("merchant", self.merchants),
                             ("account", self.accounts), ("type", self.types)):
            if values:
                out.append((name, ", ".join(values)))
        if self.any_name:
            out.append(("match", "any of the categories and merchants named"))
        for name, values in (("exclude_category", self.exclude_categories),
                             ("exclude_merchant", self.exclude_merchants),
                             ("exclude_account", self.exclude_accounts), ("exclude_type", self.exclude_types)):
            if values:
                out.append((name, ", ".join(values)))
        if self.group_by:
            out.append(("group_by", self.group_by))
        if self.n:
            out.append(("top_n", str(self.n)))
        for name, bound, inclusive in (("min_amount", self.min_amount, self.min_inclusive),
                                       ("max_amount", self.max_amount, self.max_inclusive)):
            if bound is not None:
                out.append((name, f"{bound:.2f}"))
                if not inclusive:  # "over $1,000": the bound itself is left out
                    out.append((f"{name}_excluded", "true"))
        if self.days:
            out.append(("days", {"weekend": "Saturday and Sunday", "weekday": "Monday to Friday"}.get(
                self.days, self.days.capitalize())))
        if self.latest_first:
            out.append(("order", "most recent first"))
        if self.share:
            whole = f"the {self.share_of} total" if self.share_of else "the total"
            out.append(("share", f"percent of {whole} without the category/merchant/account filters"))
        if self.direction:
            out.append(("direction", {"in": "into the account", "out": "out of the account"}[self.direction]))
        if self.price_changes:
            out.append(("price_changes", "fixed charges whose latest amount differs from their first"))
        if self.runway:
            out.append(("runway", "average monthly net, transfers excluded"))
        if self.intent == MONTHLY_AVERAGE and self.rate != "month":
            out.append(("rate", f"per {self.rate}"))
        if self.median:
            out.append(("statistic", "median"))
        if self.subscriptions_only:
            out.append(("subscriptions_only", "true"))
        return out


@dataclass(frozen=True)
class BreakdownRow:
    key: str
    value: float
    count: int


@dataclass
class FinanceResult:
    """What compute returns and render turns into text; convert turns it into FinanceQueryResponse."""

    understood: bool
    intent: str
    currency: str
    reference_date: date
    reference_is_data_end: bool
    query: FinanceQuery | None = None
    value: float | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)  # at most max_rows, as plain dicts
    row_count: int = 0
    breakdown: list[BreakdownRow] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # intent-specific figures for the renderer
    answer: str = ""
    data_first: date | None = None
    data_last: date | None = None

    def filters(self) -> list[tuple[str, str]]:
        return self.query.filters() if self.query else []

    @property
    def uses_relative_dates(self) -> bool:
        q = self.query
        return bool(q and ((q.period and q.period.relative) or (q.compare_to and q.compare_to.relative)
                           or self.details.get("relative")))
