"""FinanceResult -> the answer text: the figure (currency, two decimals), what was understood, and the
rows or aggregate behind it. Plain text with a few "- " lists, readable in a terminal and in Markdown."""

from __future__ import annotations

from typing import Any

from labs_core.finance import query as Q
from labs_core.finance.periods import Period
from labs_core.finance.query import FinanceQuery, FinanceResult

MAX_LINES = 36  # longest list in the text; the full breakdown is in FinanceQueryResponse
EXAMPLES = ("How much did I spend on software last quarter?", "Top 5 merchants in 2025",
            "Compare income 2025 vs 2024", "Largest expenses in March 2025", "What subscriptions do I have?",
            "Any unusual transactions this year?", "Financial summary for 2024")
MEASURE_NOUN = {Q.SPEND: "spending", Q.INCOME: "income", Q.NET: "net (income less spending)", Q.REFUNDS: "refunds"}


def money(value: float | None, currency: str, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    sign = "+" if signed and value > 0 else ""
    return f"{sign}{value:,.2f} {currency}"


def _period(q: FinanceQuery, result: FinanceResult) -> str:
    if q.period is None:
        first, last = result.data_first, result.data_last
        if not (first and last):
            return "over all the data"
        return f"over all the data ({first.isoformat()} to {last.isoformat()})"
    return _when(q.period)


def _when(p: Period) -> str:
    """A period with its preposition: "in Q3 2025", "on 2025-03-03", "last month (...)", "since ..."."""
    if p.start == p.end and p.label == p.start.isoformat():
        return f"on {p.start.isoformat()}"
    if p.label == f"{p.start.isoformat()} to {p.end.isoformat()}":
        return f"from {p.label}"
    preposition = "" if p.label.startswith(("since", "before", "until", "after", "through", "up to", "last", "this",
                                            "year to", "month to", "quarter to", "yesterday", "today")) \
        or " ago" in p.label else "in "  # ("in the last 30 days", "in the past year")
    return preposition + p.describe()


def _filters(q: FinanceQuery) -> str:
    parts = []
    names = []
    if q.categories:
        names.append("on " + " or ".join(q.categories))
    if q.merchants:
        names.append(("from " if q.measure == Q.INCOME else "at ") + " or ".join(q.merchants))
    if names:
        parts.append((" or " if q.any_name else " ").join(names))
    if q.accounts:
        parts.append("on the " + " or ".join(q.accounts) + (" accounts" if len(q.accounts) > 1 else " account"))
    if q.types and q.intent in (Q.COUNT, Q.LIST):
        parts.append("of type " + " or ".join(q.types))
    left_out = [*q.exclude_categories, *q.exclude_merchants, *q.exclude_accounts,
                *(f"{t}s" for t in q.exclude_types)]
    if left_out:
        parts.append("excluding " + (", ".join(left_out[:-1]) + " and " if len(left_out) > 1 else "") + left_out[-1])
    if q.min_amount is not None or q.max_amount is not None:
        bounds = [f"{'of at least' if q.min_inclusive else 'over'} {q.min_amount:,.2f}" if q.min_amount is not None
                  else "",
                  f"{'of at most' if q.max_inclusive else 'under'} {q.max_amount:,.2f}" if q.max_amount is not None
                  else ""]
        parts.append("with amounts " + " and ".join(b for b in bounds if b))
    if q.days:
        parts.append({"weekend": "on weekends", "weekday": "on weekdays (Monday to Friday)"}.get(
            q.days, f"on {q.days.capitalize()}s"))
    return (" " + " ".join(parts)) if parts else ""


def _row(row: dict[str, Any], currency: str) -> str:
    return (f"{row['date']} {row['merchant']} ({row['category']}, {row['account']}) "
            f"{money(row['amount'], currency)}: {row['description']}")


def _understood(result: FinanceResult) -> str:
    shown = [f"{name} = {value}" for name, value in result.filters() if name != "intent"]
    return f"Understood: {result.intent}" + (f"; {'; '.join(shown)}" if shown else "") + "."


def _reference(result: FinanceResult) -> str:
    ref = result.reference_date.isoformat()
    if result.reference_is_data_end:
        return f"Relative dates resolve against {ref}, the latest date in the data."
    return f"Relative dates resolve against the reference date {ref}."


def render(result: FinanceResult) -> str:
    if not result.understood or result.query is None:
        return ("Questions that work: "
                + "; ".join(f'"{e}"' for e in EXAMPLES) + ".")
    q = result.query
    body = RENDERERS[q.intent](result, q)
    lines = [body, _understood(result)]
    if result.uses_relative_dates:
        lines.append(_reference(result))
    coverage = _coverage(result)
    if coverage:
        lines.append(coverage)
    return "\n".join(lines)


def _coverage(result: FinanceResult) -> str:
    """A note when a period reaches outside the data, so that a zero is not mistaken for "nothing spent"."""
    q, first, last = result.query, result.data_first, result.data_last
    if q is None or first is None or last is None:
        return ""
    periods = [p for p in (q.period, q.compare_to) if p is not None]
    if any(p.start < first or p.end > last for p in periods):
        return f"Note: the data covers {first.isoformat()} to {last.isoformat()} only."
    return ""


def _total(r: FinanceResult, q: FinanceQuery) -> str:
    c, d = r.currency, r.details
    where = f"{_filters(q)} {_period(q, r)}"
    if q.share:
        noun, whole = MEASURE_NOUN[q.measure], MEASURE_NOUN[q.share_of or q.measure]
        if r.value is None:
            return f"There is no {whole} {_period(q, r)} to take a share of."
        basis = f"\nBasis: {r.row_count} transactions{_filters(q)}."
        if q.share_of and q.measure == Q.NET:
            return (f"Your net margin{where} was {r.value:.2f}%: net (income less spending) {money(d['part'], c)} "
                    f"of income {money(d['whole'], c)}.{basis}")
        if q.share_of:
            return (f"{noun.capitalize()}{where} was {r.value:.2f}% of your {whole}: {money(d['part'], c)} of "
                    f"{money(d['whole'], c)}.{basis}")
        return (f"{r.value:.2f}% of your {noun} {_period(q, r)} was{_filters(q)}: {money(d['part'], c)} of "
                f"{money(d['whole'], c)}.{basis}")
    if q.measure == Q.SPEND:
        head = f"You spent {money(r.value, c)}{where}."
        basis = f"Basis: {d['expenses']} expense(s) totalling {money(d['gross'], c)}"
        basis += f", less {d['refund_count']} refund(s) of {money(d['refunds'], c)}." if d["refund_count"] else "."
    elif q.measure == Q.INCOME:
        head = f"Your income{where} was {money(r.value, c)}."
        basis = f"Basis: {r.row_count} income transaction(s)."
    elif q.measure == Q.NET:
        head = f"Your net (income less spending){where} was {money(r.value, c)}."
        basis = f"Basis: income {money(d['income'], c)} less spending {money(d['spend'], c)} " \
                f"({r.row_count} transactions, transfers excluded)."
    else:
        head = f"You received {money(r.value, c)} in refunds{where}."
        basis = f"Basis: {r.row_count} refund(s)."
    if d.get("largest"):
        basis += " Largest: " + "; ".join(_row(row, c) for row in d["largest"]) + "."
    return f"{head}\n{basis}"


def _top(r: FinanceResult, q: FinanceQuery) -> str:
    c, kind = r.currency, r.details["kind"]
    noun, nouns = {"expense": ("expense", "expenses"), "income": ("payment received", "payments received"),
                   "refund": ("refund", "refunds")}[kind]
    which = "smallest" if q.ascending else "largest"
    where = f"{_filters(q)} {_period(q, r)}"
    if not r.rows:
        return f"There is no {noun}{where}."
    if len(r.rows) == 1:
        return (f"Your {which} {noun}{where} was {money(r.value, c)}: {_row(r.rows[0], c)}.\n"
                f"Basis: {r.row_count} {nouns} compared.")
    lines = [f"Your {len(r.rows)} {which} {nouns}{where} (the {which}: {money(r.value, c)}):"]
    lines += [f"{i}. {_row(row, c)}" for i, row in enumerate(r.rows, 1)]
    lines.append(f"Basis: {r.row_count} {nouns} compared.")
    return "\n".join(lines)


GROUP_NOUN = {"category": "category", "merchant": "merchant", "account": "account", "month": "month",
              "quarter": "quarter", "year": "year", "weekday": "day of the week", "day": "day",
              "weekpart": "weekdays (Monday to Friday) and weekends"}


def _breakdown(r: FinanceResult, q: FinanceQuery) -> str:
    c, d = r.currency, r.details
    group = d["group"]
    noun = MEASURE_NOUN[q.measure]
    where = f"{_filters(q)} {_period(q, r)}"
    if not r.breakdown:
        return f"No {noun}{where}."
    lines = []
    if d["ranked"]:
        top = r.breakdown[0]
        which = "lowest" if q.ascending else "highest"
        group_noun = "payer" if group == "merchant" and q.measure == Q.INCOME else GROUP_NOUN[group]
        share = f", {top.value / d['total'] * 100:.1f}% of the total {money(d['total'], c)}" \
            if d["total"] > 0 and top.value > 0 else ""  # ("what share of revenue comes from our top client")
        lines.append(f"The {group_noun} with the {which} {noun}{where} was {top.key}: {money(top.value, c)} "
                     f"({top.count} transactions{share}).")
        if len(r.breakdown) > 1:
            lines.append(f"Top {len(r.breakdown)} by {noun}:")
    else:
        average = f", {money(d['total'] / d['groups'], c)} per {GROUP_NOUN[group]} on average over the " \
                  f"{d['groups']} {GROUP_NOUN[group]}(s) with transactions" \
            if group in ("month", "quarter", "year") and d["groups"] else ""
        lines.append(f"{noun.capitalize()} by {GROUP_NOUN[group]}{where}: total {money(d['total'], c)}{average}.")
    for row in r.breakdown[:MAX_LINES] if (len(r.breakdown) > 1 or not d["ranked"]) else []:
        lines.append(f"- {row.key}: {money(row.value, c)} ({row.count} transactions)")
    if len(r.breakdown) > MAX_LINES:
        lines.append(f"- ... {len(r.breakdown) - MAX_LINES} more in the breakdown")
    lines.append(f"Basis: {r.row_count} transactions in {d['groups']} group(s).")
    return "\n".join(lines)


def _monthly_average(r: FinanceResult, q: FinanceQuery) -> str:
    c, d = r.currency, r.details
    noun = MEASURE_NOUN[q.measure]
    if not d["months"]:
        return f"The data has no months in {_period(q, r)}."
    span = (f"{d['months']} calendar month(s) from {d['start'].isoformat()} to {d['end'].isoformat()} "
            f"({r.row_count} transactions)")
    if q.rate in ("week", "day"):
        weeks = f" ({d['days'] / 7:.1f} weeks)" if q.rate == "week" else ""
        return (f"Your average {'weekly' if q.rate == 'week' else 'daily'} {noun}{_filters(q)} {_period(q, r)} was "
                f"{money(r.value, c)}.\nBasis: {money(d['total'], c)} over {d['days']} days{weeks} from "
                f"{d['start'].isoformat()} to {d['end'].isoformat()} ({r.row_count} transactions).")
    if q.rate == "year":
        return (f"Your {noun}{_filters(q)} {_period(q, r)} came to {money(r.value, c)} a year.\n"
                f"Basis: {money(d['total'], c)} over {span}, times 12 / {d['months']}.")
    if q.median:
        low, high = min(r.breakdown, key=lambda b: b.value), max(r.breakdown, key=lambda b: b.value)
        return (f"Your median monthly {noun}{_filters(q)} {_period(q, r)} was {money(r.value, c)}: half the months "
                f"were at or below it.\nBasis: the {noun} of each of {span}; lowest {low.key} "
                f"{money(low.value, c)}, highest {high.key} {money(high.value, c)}, total {money(d['total'], c)}.")
    return (f"Your average monthly {noun}{_filters(q)} {_period(q, r)} was {money(r.value, c)}.\n"
            f"Basis: {money(d['total'], c)} over {span}.")


def _average(r: FinanceResult, q: FinanceQuery) -> str:
    c, d = r.currency, r.details
    noun = {"expense": "expense", "income": "income transaction", "refund": "refund"}[d["kind"]]
    if not r.row_count:
        return f"There is no {noun}{_filters(q)} {_period(q, r)}."
    if q.median:
        return (f"Your median {noun}{_filters(q)} {_period(q, r)} was {money(r.value, c)}: half of the "
                f"{r.row_count} {noun}(s) were at or below it.\n"
                f"Basis: the middle of {r.row_count} {noun}(s) by size (their mean is "
                f"{money(d['total'] / r.row_count, c)}).")
    return (f"Your average {noun}{_filters(q)} {_period(q, r)} was {money(r.value, c)}.\n"
            f"Basis: {money(d['total'], c)} over {r.row_count} {noun}(s).")


def _count(r: FinanceResult, q: FinanceQuery) -> str:
    if q.group_by and not q.distinct:
        lines = [f"There are {r.row_count} transactions{_filters(q)} {_period(q, r)}; by {GROUP_NOUN[q.group_by]}:"]
        lines += [f"- {b.key}: {b.count}" for b in r.breakdown[:MAX_LINES]]
        if len(r.breakdown) > MAX_LINES:
            lines.append(f"- ... {len(r.breakdown) - MAX_LINES} more in the breakdown")
        return "\n".join(lines + ["Basis: every row the filters select" + ("" if q.types else ", transfers included")
                                  + "."])
    if q.group_by:
        lines = [f"{int(r.value or 0)} different merchants{_filters(q)} {_period(q, r)}, over {r.row_count} "
                 "transactions; the most frequent:"]
        lines += [f"- {b.key}: {b.count} transactions, {money(b.value, r.currency)}" for b in r.breakdown[:10]]
        return "\n".join(lines)
    kinds = ", ".join(f"{row.count} {row.key}" for row in r.breakdown)
    return (f"There are {r.row_count} transactions{_filters(q)} {_period(q, r)}" + (f" ({kinds})." if kinds else ".")
            + "\nBasis: every row the filters select" + ("" if q.types else ", transfers included") + ".")


def _compare(r: FinanceResult, q: FinanceQuery) -> str:
    c, d = r.currency, r.details
    noun = MEASURE_NOUN[q.measure]
    a, b = r.breakdown
    assert q.period is not None and q.compare_to is not None
    if r.value == 0:
        change = "the same"
    else:
        direction = "more" if (r.value or 0) > 0 else "less"
        pct = f", {d['pct']:+.1f}%" if d["pct"] is not None else ""
        change = f"{money(abs(r.value or 0), c)} {direction} ({money(r.value, c, signed=True)}{pct})"
    lines = [f"{noun.capitalize()}{_filters(q)} {_when(q.period)} was {money(a.value, c)} against "
             f"{money(b.value, c)} {_when(q.compare_to)}: {change}."]
    if q.compare_note:
        lines.append(f"Compared with {q.compare_note}.")
    if d["movers"]:
        lines.append(f"Biggest changes by {d['movers_group']}: "
                     + ", ".join(f"{k} {money(v, c, signed=True)}" for k, v in d["movers"]) + ".")
    lines.append(f"Basis: {a.count} and {b.count} transactions.")
    return "\n".join(lines)


def _recurring(r: FinanceResult, q: FinanceQuery) -> str:
    c, d = r.currency, r.details
    series = d["series"]
    noun = "subscriptions" if q.subscriptions_only else "recurring payments"
    if d["price_changes"]:
        return _price_changes(series, noun, q, c)
    if not series:
        return f"I found no {noun}{_filters(q)}."
    active = [s for s in series if s["active"]]
    stopped = [s for s in series if not s["active"]]
    if d["by_period"]:
        head = f"You paid {money(r.value, c)} to {len(series)} {noun}{_filters(q)} {_period(q, r)}."
    else:
        head = (f"You have {len(active)} active {noun}{_filters(q)}, about {money(r.value, c)} a month "
                f"(monthly equivalent of the latest charges).")
    lines = [head]
    for s in active[:MAX_LINES]:
        amount = f"{money(s['last_amount'], c)}" if s["fixed"] else f"about {money(s['typical'], c)} (varies)"
        lines.append(f"- {s['merchant']} ({s['category']}): {amount} {s['cadence']}, {s['count']} charges since "
                     f"{s['first'].isoformat()}")
    if stopped:
        lines.append("Stopped: " + "; ".join(f"{s['merchant']} ({s['cadence']}, last {s['last'].isoformat()})"
                                             for s in stopped) + ".")
    lines.append("Basis: expense series with the same merchant and description at a regular interval"
                 + (", fixed amount, excluding rent, payroll, taxes, utilities, insurance, bank fees and "
                    "professional services." if q.subscriptions_only else "."))
    return "\n".join(lines)


def _price_changes(series: list[dict[str, Any]], noun: str, q: FinanceQuery, c: str) -> str:
    if not series:
        return f"None of your fixed-amount {noun}{_filters(q)} changed price: each latest charge equals its first."
    series = sorted(series, key=lambda s: -(s["last_amount"] - s["first_amount"]) / s["first_amount"])
    lines = [f"{len(series)} of your fixed-amount {noun}{_filters(q)} changed price (first charge -> latest):"]
    for s in series[:MAX_LINES]:
        change = (s["last_amount"] - s["first_amount"]) / s["first_amount"] * 100
        lines.append(f"- {s['merchant']} ({s['category']}, {s['cadence']}): {money(s['first_amount'], c)} on "
                     f"{s['first'].isoformat()} -> {money(s['last_amount'], c)} on {s['last'].isoformat()} "
                     f"({change:+.1f}%)" + ("" if s["active"] else ", stopped"))
    lines.append("Basis: expense series with the same merchant and description at a regular interval whose last "
                 "three charges agree within 2%; a price change is a latest charge more than 2% from the first.")
    return "\n".join(lines)


def _unusual(r: FinanceResult, q: FinanceQuery) -> str:
    c = r.currency
    flagged = r.details["flagged"]
    where = f"{_filters(q)} {_period(q, r)}"
    if not flagged:
        return f"No transaction{where} stands out against its merchant's or category's history."
    lines = [f"{len(flagged)} transaction(s){where} stand out against their history:"]
    for f in flagged[:MAX_LINES]:
        row = f["row"]
        lines.append(f"- {row['date'].date().isoformat()} {row['merchant']} ({row['category']}) "
                     f"{money(row['cents'] / 100, c)}: {f['ratio']}x the usual {money(f['median'], c)} "
                     f"({f['basis']} median)")
    lines.append(f"Basis: {r.row_count} transactions checked; flagged when at least 3x the median of the same "
                 "merchant (or category) and far outside its usual spread.")
    return "\n".join(lines)


def _summary(r: FinanceResult, q: FinanceQuery) -> str:
    c, d = r.currency, r.details
    lines = [f"Financial summary{_filters(q)} {_period(q, r)}:",
             f"- Income: {money(d['income'], c)}",
             f"- Spending: {money(d['spend'], c)} (expenses less {money(d['refunds'], c)} of refunds)",
             f"- Net: {money(d['net'], c)}"]
    if d["monthly_spend"] is not None:
        lines.append(f"- Average monthly spending: {money(d['monthly_spend'], c)} over {d['months']} month(s)")
    if r.breakdown:
        lines.append("- Top spending categories: " + ", ".join(f"{b.key} {money(b.value, c)}" for b in r.breakdown))
    if d["top_sources"]:
        lines.append("- Top income sources: " + ", ".join(f"{b.key} {money(b.value, c)}" for b in d["top_sources"]))
    if d["largest"]:
        lines.append(f"- Largest expense: {_row(d['largest'], c)}")
    lines.append(f"Basis: {d['transactions']} transactions, transfers between own accounts excluded from the figures.")
    return "\n".join(lines)


def _list(r: FinanceResult, q: FinanceQuery) -> str:
    c, d = r.currency, r.details
    where = f"{_filters(q)} {_period(q, r)}"
    if not r.row_count:
        return f"No transactions{where}."
    if len(r.rows) == 1 and (d["latest_first"] or q.n == 1):
        which = "most recent" if d["latest_first"] else "first"
        return f"The {which} transaction{where} was {_row(r.rows[0], c)}.\nBasis: {r.row_count} matching."
    order = "most recent first" if d["latest_first"] else "by date"
    lines = [f"{r.row_count} transaction(s){where}, summing to {money(d['sum'], c)}; "
             f"{'all' if len(r.rows) == r.row_count else f'the first {len(r.rows)}'} shown, {order}:"]
    lines += [f"- {_row(row, c)}" for row in r.rows[:MAX_LINES]]
    return "\n".join(lines)


def _transfers(r: FinanceResult, q: FinanceQuery) -> str:
    c, d = r.currency, r.details
    where = f" {_period(q, r)}"
    lines = []
    if q.spend_asked:
        lines.append("Transfers between your own accounts are not spending (nor income): the money stays yours, "
                     "so spending and income figures leave them out. The transfer figures:")
    if not r.breakdown:
        lines.append(f"No transfers between your accounts{_filters(q)}{where}.")
        return "\n".join(lines)
    if len(q.accounts) == 1:
        account, moved_out, moved_in, net, _ = d["flows"][0] if d["flows"] else (q.accounts[0], 0.0, 0.0, 0.0, 0)
        head = {"in": f"Moved into {account}{where}: {money(moved_in, c)}.",
                "out": f"Moved out of {account}{where}: {money(moved_out, c)}."}.get(
            q.direction, f"Net transfer flow for {account}{where}: {money(net, c, signed=True)} "
                         f"({money(moved_in, c)} in, {money(moved_out, c)} out).")
    elif q.accounts:
        head = f"Moved from {q.accounts[0]} to {' or '.join(q.accounts[1:])}{where}: {money(r.value, c)}."
    else:
        head = f"Moved between your own accounts{where}: {money(r.value, c)} in {sum(b.count for b in r.breakdown)} " \
               f"transfer(s)."
    lines.append(head)
    if d["by_period"]:
        lines.append(f"By {GROUP_NOUN[q.group_by or 'month']}:")
        lines += [f"- {key}: {money(value, c, signed=len(q.accounts) == 1 and not q.direction)} ({count} transfers)"
                  for key, value, count in d["by_period"][:MAX_LINES]]
    lines.append("By route:")
    lines += [f"- {b.key}: {money(b.value, c)} ({b.count} transfers)" for b in r.breakdown[:MAX_LINES]]
    lines.append("By account (out, in, net):")
    lines += [f"- {a}: out {money(o, c)}, in {money(i, c)}, net {money(n, c, signed=True)}"
              for a, o, i, n, _ in d["flows"]]
    lines.append(f"Basis: {r.row_count} transfer rows (each transfer is one row out of an account and one into "
                 "another).")
    return "\n".join(lines)


def _balance(r: FinanceResult, q: FinanceQuery) -> str:
    c, d = r.currency, r.details
    where = f"{_filters(q)} {_period(q, r)}"
    if q.runway:
        return _runway(r, q, where)
    lines = ["The transactions data has no opening balances, so it cannot give a balance. What it gives is the "
             f"net change{where}: {money(r.value or 0.0, c)} (money in {money(d['in'], c)}, money out "
             f"{money(d['out'], c)}; transfers between your own accounts included)."]
    if len(r.breakdown) > 1:
        lines += [f"- {b.key}: {money(b.value, c)} ({b.count} transactions)" for b in r.breakdown]
    lines.append(f"Basis: {r.row_count} transactions. Add the net change to a balance on a date before the period "
                 "(from a bank statement) to get the balance at its end.")
    return "\n".join(lines)


def _runway(r: FinanceResult, q: FinanceQuery, where: str) -> str:
    c, d = r.currency, r.details
    monthly = r.value
    lines = ["The transactions data has no balances, so it cannot say how much cash you have, nor how long it "
             "lasts (the runway is cash on hand divided by the monthly burn)."]
    if monthly is None:
        lines.append(f"It has no months{where} to measure a burn over.")
    elif monthly < 0:
        lines.append(f"The burn it can give: income less spending averaged {money(monthly, c)} a month{where}, so "
                     f"the runway is your cash on hand divided by {money(-monthly, c)}.")
    else:
        lines.append(f"It shows no burn: income exceeded spending by {money(monthly, c)} a month on average{where}, "
                     "so at that pace the cash does not run down.")
    if monthly is not None:
        lines.append(f"Basis: net {money(d['total'], c)} over {d['months']} calendar month(s) from "
                     f"{d['start'].isoformat()} to {d['end'].isoformat()}; transfers between your own "
                     "accounts left out.")
    return "\n".join(lines)


RENDERERS = {
    Q.TOTAL: _total, Q.TOP: _top, Q.BREAKDOWN: _breakdown, Q.MONTHLY_AVERAGE: _monthly_average, Q.AVERAGE: _average,
    Q.COUNT: _count, Q.COMPARE: _compare, Q.RECURRING: _recurring, Q.UNUSUAL: _unusual, Q.SUMMARY: _summary,
    Q.LIST: _list, Q.TRANSFERS: _transfers, Q.BALANCE: _balance,
}
