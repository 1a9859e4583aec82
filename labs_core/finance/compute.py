"""FinanceQuery -> FinanceResult with pandas, in integer cents so that every figure is exact.

Definitions (docs/finance.md): spending is expenses less refunds, shown as a positive figure; income
is income rows; net is income less spending; transfers between own accounts are neither.
"""

from __future__ import annotations

import calendar
from dataclasses import replace
from datetime import date
from typing import Any

import pandas as pd

from labs_core.finance import query as Q
from labs_core.finance.data import Dataset
from labs_core.finance.periods import Period
from labs_core.finance.query import BreakdownRow, FinanceQuery, FinanceResult
from labs_core.finance.transfers import account_flows, routes

SPEND_TYPES = ("expense", "refund")
ROW_COLUMNS = ("date", "description", "merchant", "category", "amount", "account", "currency", "type")
# Recurring-payment cadences: name, nominal days between charges, tolerance in days.
CADENCES = (("weekly", 7.0, 1.5), ("twice a month", 15.2, 2.5), ("monthly", 30.44, 4.0),
            ("every two months", 60.9, 8.0), ("quarterly", 91.3, 15.0), ("twice a year", 182.6, 20.0),
            ("yearly", 365.25, 20.0))
# Bills that recur but are not what people call subscriptions.
NOT_SUBSCRIPTIONS = frozenset({"rent", "payroll", "taxes", "tax", "utilities", "insurance", "bank fees", "loan",
                               "loans", "mortgage", "transfer", "professional services"})


WEEKDAY_ORDER = {name: i for i, name in enumerate(calendar.day_name)}  # Monday 0, as pandas' dayofweek


def _cents_to_value(cents: int | float) -> float:
    return round(int(cents) / 100, 2)


def measure_rows(frame: pd.DataFrame, measure: str) -> pd.DataFrame:
    if measure == Q.SPEND:
        return frame[frame["type"].isin(SPEND_TYPES)]
    if measure == Q.INCOME:
        return frame[frame["type"] == "income"]
    if measure == Q.REFUNDS:
        return frame[frame["type"] == "refund"]
    return frame[frame["type"] != "transfer"]  # NET


def measure_cents(rows: pd.DataFrame, measure: str) -> int:
    """The measure over rows already selected by measure_rows: spending comes out positive."""
    total = int(rows["cents"].sum())
    return -total if measure == Q.SPEND else total


def select(frame: pd.DataFrame, q: FinanceQuery, period: Period | None, *, amounts: bool = True) -> pd.DataFrame:
    mask = pd.Series(True, index=frame.index)
    if period is not None:
        mask &= (frame["date"] >= pd.Timestamp(period.start)) & (frame["date"] <= pd.Timestamp(period.end))
    if q.any_name and q.categories and q.merchants:  # "software and Amazon": either
        mask &= frame["category"].isin(q.categories) | frame["merchant"].isin(q.merchants)
    else:  # "Uber rides": both
        if q.categories:
            mask &= frame["category"].isin(q.categories)
        if q.merchants:
            mask &= frame["merchant"].isin(q.merchants)
    if q.accounts:
        mask &= frame["account"].isin(q.accounts)
    if q.types:
        mask &= frame["type"].isin(q.types)
    for column, left_out in (("category", q.exclude_categories), ("merchant", q.exclude_merchants),
                             ("account", q.exclude_accounts), ("type", q.exclude_types)):
        if left_out:
            mask &= ~frame[column].isin(left_out)
    cents = frame["cents"].abs()
    if amounts and q.min_amount is not None:
        low = round(q.min_amount * 100)
        mask &= (cents >= low) if q.min_inclusive else (cents > low)
    if amounts and q.max_amount is not None:
        high = round(q.max_amount * 100)
        mask &= (cents <= high) if q.max_inclusive else (cents < high)
    if q.days in ("weekend", "weekday"):  # (pandas: Monday is 0, Saturday 5)
        mask &= (frame["date"].dt.dayofweek >= 5) == (q.days == "weekend")
    elif q.days:  # one day of the week, by name
        mask &= frame["date"].dt.dayofweek == WEEKDAY_ORDER[q.days.capitalize()]
    return frame[mask]


def row_dicts(rows: pd.DataFrame, limit: int) -> list[dict[str, Any]]:
    out = []
    for record in rows.head(limit).itertuples(index=False):
        item = {name: getattr(record, name) for name in ROW_COLUMNS}
        item["date"] = item["date"].date().isoformat()
        item["amount"] = _cents_to_value(record.cents)
        out.append(item)
    return out


def _largest_first(rows: pd.DataFrame) -> pd.DataFrame:
    order = rows["cents"].abs().sort_values(ascending=False, kind="stable").index
    return rows.loc[order]


def _months(start: date, end: date) -> list[tuple[int, int]]:
    out = []
    year, month = start.year, start.month
    while (year, month) <= (end.year, end.month):
        out.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def _group_keys(rows: pd.DataFrame, group: str) -> pd.Series:
    d = rows["date"]
    if group == "day":
        return d.dt.strftime("%Y-%m-%d")
    if group == "month":
        return d.dt.strftime("%Y-%m")
    if group == "quarter":
        return d.dt.year.astype(str) + "-Q" + d.dt.quarter.astype(str)
    if group == "year":
        return d.dt.year.astype(str)
    if group == "weekday":
        return d.dt.dayofweek.map(lambda i: calendar.day_name[i])
    if group == "weekpart":  # "weekdays vs weekends"
        return (d.dt.dayofweek >= 5).map({False: "weekdays", True: "weekends"})
    return rows[group]


class Executor:
    """Runs one query over one dataset. A new instance per question: no state survives a question."""

    def __init__(self, data: Dataset, reference_date: date, reference_is_data_end: bool, max_rows: int = 20):
        self.data = data
        self.frame = data.frame
        self.ref = reference_date
        self.ref_is_end = reference_is_data_end
        self.max_rows = max_rows

    def result(self, q: FinanceQuery, **kwargs: Any) -> FinanceResult:
        return FinanceResult(understood=True, intent=kwargs.pop("intent", q.intent), currency=self.data.currency,
                             reference_date=self.ref, reference_is_data_end=self.ref_is_end, query=q,
                             data_first=self.data.first_date, data_last=self.data.last_date, **kwargs)

    def run(self, q: FinanceQuery) -> FinanceResult:
        handler = {
            Q.TOTAL: self.total, Q.TOP: self.top, Q.BREAKDOWN: self.breakdown, Q.MONTHLY_AVERAGE: self.monthly_average,
            Q.AVERAGE: self.average, Q.COUNT: self.count, Q.COMPARE: self.compare, Q.RECURRING: self.recurring,
            Q.UNUSUAL: self.unusual, Q.SUMMARY: self.summary, Q.LIST: self.list, Q.TRANSFERS: self.transfers,
            Q.BALANCE: self.runway if q.runway else self.balance,
        }[q.intent]
        return handler(q)

    # -- one figure ---------------------------------------------------------------------------------------

    def total(self, q: FinanceQuery) -> FinanceResult:
        rows = measure_rows(select(self.frame, q, q.period), q.measure)
        cents = measure_cents(rows, q.measure)
        details: dict[str, Any] = {"measure": q.measure}
        if q.measure == Q.SPEND:
            expenses = rows[rows["type"] == "expense"]
            refunds = rows[rows["type"] == "refund"]
            details.update(gross=_cents_to_value(-expenses["cents"].sum()), expenses=len(expenses),
                           refunds=_cents_to_value(refunds["cents"].sum()), refund_count=len(refunds))
        elif q.measure == Q.NET:
            income = rows[rows["type"] == "income"]
            spend = rows[rows["type"].isin(SPEND_TYPES)]
            details.update(income=_cents_to_value(income["cents"].sum()),
                           spend=_cents_to_value(-spend["cents"].sum()))
        ordered = _largest_first(rows)
        details["largest"] = row_dicts(ordered, 3)
        intent = {Q.SPEND: "total_spend", Q.INCOME: "total_income", Q.NET: "net", Q.REFUNDS: "total_refunds"}[q.measure]
        value = _cents_to_value(cents)
        if q.share:
            unnamed = replace(q, categories=(), merchants=(), accounts=())
            base = q.share_of or q.measure
            whole = measure_cents(measure_rows(select(self.frame, unnamed, q.period), base), base)
            details.update(part=value, whole=_cents_to_value(whole))
            intent, value = "share", (round(cents / whole * 100, 2) if whole else None)
        return self.result(q, intent=intent, value=value, rows=row_dicts(ordered, self.max_rows),
                           row_count=len(rows), details=details)

    def top(self, q: FinanceQuery) -> FinanceResult:
        selected = select(self.frame, q, q.period)
        kind = {Q.SPEND: "expense", Q.NET: "expense", Q.INCOME: "income", Q.REFUNDS: "refund"}[q.measure]
        rows = selected[selected["type"] == kind]
        magnitude = rows["cents"].abs().sort_values(ascending=q.ascending, kind="stable")
        ordered = rows.loc[magnitude.index]
        n = q.n or 5
        value = _cents_to_value(abs(ordered["cents"].iloc[0])) if len(ordered) else None
        what = {"expense": "expenses", "income": "income", "refund": "refunds"}[kind]
        intent = f"{'smallest' if q.ascending else 'largest'}_{what}"
        return self.result(q, intent=intent, value=value, rows=row_dicts(ordered, min(n, self.max_rows)),
                           row_count=len(rows), details={"n": n, "kind": kind})

    def count(self, q: FinanceQuery) -> FinanceResult:
        rows = select(self.frame, q, q.period)
        if q.group_by and not q.distinct:  # how many in each month, category, ...: in the groups' order
            sizes = rows.groupby(_group_keys(rows, q.group_by), sort=True).size()
            breakdown = [BreakdownRow(str(k), float(n), int(n)) for k, n in sizes.items()]
            if q.group_by == "weekday":
                breakdown.sort(key=lambda b: WEEKDAY_ORDER[b.key])
            elif q.group_by in ("category", "merchant", "account"):
                breakdown.sort(key=lambda b: (-b.count, b.key))
            return self.result(q, value=float(len(rows)), rows=row_dicts(rows, self.max_rows), row_count=len(rows),
                               breakdown=breakdown)
        if q.group_by:  # how many different merchants: each with its transactions and total, most first
            groups = rows.groupby(q.group_by, sort=False)["cents"]
            ranked = groups.size().sort_values(ascending=False, kind="stable")
            totals = groups.sum()
            breakdown = [BreakdownRow(str(k), _cents_to_value(totals[k]), int(n)) for k, n in ranked.items()]
            return self.result(q, value=float(len(ranked)), rows=row_dicts(rows, self.max_rows), row_count=len(rows),
                               breakdown=breakdown)
        by_type = rows["type"].value_counts()
        breakdown = [BreakdownRow(t, float(c), int(c)) for t, c in by_type.items()]
        return self.result(q, value=float(len(rows)), rows=row_dicts(rows, self.max_rows), row_count=len(rows),
                           breakdown=breakdown)

    def balance(self, q: FinanceQuery) -> FinanceResult:
        """Every row counts (income, expenses, refunds, transfers in and out): the net change of each
        account over the period, which is what the rows can say about a balance."""
        rows = select(self.frame, q, q.period)
        by_account = rows.groupby("account", sort=True)["cents"]
        breakdown = [BreakdownRow(str(a), _cents_to_value(c), int(n))
                     for (a, c), n in zip(by_account.sum().items(), by_account.size())]
        cents = rows["cents"]
        return self.result(q, value=_cents_to_value(cents.sum()), rows=row_dicts(rows.iloc[::-1], self.max_rows),
                           row_count=len(rows), breakdown=breakdown,
                           details={"in": _cents_to_value(cents[cents > 0].sum()),
                                    "out": _cents_to_value(-cents[cents < 0].sum())})

    def runway(self, q: FinanceQuery) -> FinanceResult:
        """What a runway divides the cash by (the data has no cash figure): the average monthly net,
        transfers between own accounts aside, with each month's net as the breakdown."""
        burn = self.monthly_average(replace(q, intent=Q.MONTHLY_AVERAGE, measure=Q.NET))
        burn.intent, burn.query = "runway", q
        return burn

    def average(self, q: FinanceQuery) -> FinanceResult:
        selected = select(self.frame, q, q.period)
        kind = {Q.SPEND: "expense", Q.NET: "expense", Q.INCOME: "income", Q.REFUNDS: "refund"}[q.measure]
        rows = selected[selected["type"] == kind]
        sizes = rows["cents"].abs()
        middle = (sizes.median() if q.median else sizes.mean()) if len(rows) else None
        value = _cents_to_value(round(middle)) if middle is not None else None  # round() halves to even: cents
        exact = middle / 100 if middle is not None else None
        return self.result(q, value=value, rows=row_dicts(_largest_first(rows), self.max_rows), row_count=len(rows),
                           details={"kind": kind, "exact": exact,
                                    "total": _cents_to_value(rows["cents"].abs().sum())})

    def monthly_average(self, q: FinanceQuery) -> FinanceResult:
        start = max(q.period.start, self.data.first_date) if q.period else self.data.first_date
        end = min(q.period.end, self.data.last_date) if q.period else self.data.last_date
        rows = measure_rows(select(self.frame, q, q.period), q.measure)
        months = _months(start, end) if start <= end else []
        per_month = rows.groupby(rows["date"].dt.strftime("%Y-%m"))
        sums = per_month["cents"].sum()
        counts = per_month.size()
        breakdown = []
        for year, month in months:
            key = f"{year:04d}-{month:02d}"
            cents = int(sums.get(key, 0))
            breakdown.append(BreakdownRow(key, _cents_to_value(-cents if q.measure == Q.SPEND else cents),
                                          int(counts.get(key, 0))))
        total = measure_cents(rows, q.measure)
        value = round(total / 100 / len(months), 2) if months else None
        days = (end - start).days + 1
        if q.median and months:  # the middle month's figure; months without transactions count as 0
            value = round(float(pd.Series([row.value for row in breakdown]).median()), 2)
        elif q.rate == "year" and months:  # annualised from the calendar months spanned
            value = round(total / 100 * 12 / len(months), 2)
        elif q.rate in ("week", "day") and days > 0:
            value = round(total / 100 * (7 if q.rate == "week" else 1) / days, 2)
        return self.result(q, value=value, rows=row_dicts(_largest_first(rows), self.max_rows), row_count=len(rows),
                           breakdown=breakdown, details={"months": len(months), "total": _cents_to_value(total),
                                                         "start": start, "end": end, "days": days})

    # -- groups -------------------------------------------------------------------------------------------

    def _grouped(self, rows: pd.DataFrame, group: str, measure: str) -> list[BreakdownRow]:
        if rows.empty:
            return []
        keys = _group_keys(rows, group)
        grouped = rows.groupby(keys, sort=True)
        sums, counts = grouped["cents"].sum(), grouped.size()
        sign = -1 if measure == Q.SPEND else 1
        return [BreakdownRow(str(k), _cents_to_value(sign * int(sums[k])), int(counts[k])) for k in sums.index]

    def breakdown(self, q: FinanceQuery) -> FinanceResult:
        group = q.group_by or "category"
        rows = measure_rows(select(self.frame, q, q.period), q.measure)
        groups = self._grouped(rows, group, q.measure)
        ranked = q.n is not None or group in ("category", "merchant", "account")
        if group == "weekday":
            groups.sort(key=lambda r: WEEKDAY_ORDER[r.key])
        if ranked:
            groups.sort(key=lambda r: (r.value, r.key) if q.ascending else (-r.value, r.key))
        shown = groups[:q.n] if q.n else groups
        total = measure_cents(rows, q.measure)
        value = shown[0].value if q.n and shown else _cents_to_value(total)
        return self.result(q, value=value, rows=row_dicts(_largest_first(rows), self.max_rows), row_count=len(rows),
                           breakdown=shown, details={"group": group, "total": _cents_to_value(total),
                                                     "ranked": q.n is not None, "groups": len(groups)})

    def compare(self, q: FinanceQuery) -> FinanceResult:
        assert q.period is not None and q.compare_to is not None
        a_rows = measure_rows(select(self.frame, q, q.period), q.measure)
        b_rows = measure_rows(select(self.frame, q, q.compare_to), q.measure)
        a, b = measure_cents(a_rows, q.measure), measure_cents(b_rows, q.measure)
        diff = a - b
        pct = (diff / abs(b) * 100) if b else None
        breakdown = [BreakdownRow(q.period.label, _cents_to_value(a), len(a_rows)),
                     BreakdownRow(q.compare_to.label, _cents_to_value(b), len(b_rows))]
        movers: list[tuple[str, float]] = []
        if q.measure in (Q.SPEND, Q.INCOME):
            group = "merchant" if q.measure == Q.INCOME or q.categories else "category"
            sa = {r.key: r.value for r in self._grouped(a_rows, group, q.measure)}
            sb = {r.key: r.value for r in self._grouped(b_rows, group, q.measure)}
            changes = {k: round(sa.get(k, 0.0) - sb.get(k, 0.0), 2) for k in set(sa) | set(sb)}
            movers = sorted(changes.items(), key=lambda kv: (-abs(kv[1]), kv[0]))[:3]
        rows = pd.concat([a_rows, b_rows]).drop_duplicates()
        return self.result(q, value=_cents_to_value(diff), rows=row_dicts(_largest_first(rows), self.max_rows),
                           row_count=len(a_rows) + len(b_rows), breakdown=breakdown,
                           details={"a": _cents_to_value(a), "b": _cents_to_value(b), "pct": pct,
                                    "movers": movers, "movers_group": "merchant" if q.measure == Q.INCOME or
                                    q.categories else "category"})

    def transfers(self, q: FinanceQuery) -> FinanceResult:
        """Moves between own accounts: routes (from -> to), and per account out, in and net. With one
        account named, the figure is what moved into it, out of it, or its net flow (q.direction);
        with two, what moved from the first to the second; otherwise everything moved. By month,
        quarter or year when asked."""
        rows = select(self.frame, replace(q, accounts=(), types=("transfer",)), q.period)
        shown_routes, flows, cents = _transfer_figures(rows, q)
        by_period = []
        if q.group_by in ("month", "quarter", "year") and not rows.empty:
            for key, part in rows.groupby(_group_keys(rows, q.group_by), sort=True):
                part_routes, _, part_cents = _transfer_figures(part, q)
                by_period.append((str(key), _cents_to_value(part_cents), sum(r.count for r in part_routes)))
        breakdown = [BreakdownRow(f"{r.source} -> {r.target}", _cents_to_value(r.cents), r.count) for r in shown_routes]
        if q.accounts:
            rows = rows[rows["account"].isin(q.accounts)]
        details = {"flows": [(f.account, _cents_to_value(f.out_cents), _cents_to_value(f.in_cents),
                              _cents_to_value(f.net_cents), f.count) for f in flows],
                   "moved": _cents_to_value(sum(r.cents for r in shown_routes)), "by_period": by_period}
        return self.result(q, value=_cents_to_value(cents), rows=row_dicts(_largest_first(rows), self.max_rows),
                           row_count=len(rows), breakdown=breakdown, details=details)

    # -- patterns -----------------------------------------------------------------------------------------

    def recurring(self, q: FinanceQuery) -> FinanceResult:
        history = select(self.frame, q, None)
        history = history[(history["type"] == "expense") & (history["date"] <= pd.Timestamp(self.ref))]
        series = find_recurring(history, self.ref)
        if q.subscriptions_only:
            series = [s for s in series if s["fixed"] and s["category"].lower() not in NOT_SUBSCRIPTIONS]
        if q.price_changes:  # "which subscriptions went up": fixed charges whose latest amount is not the first
            series = [s for s in series if s["fixed"] and abs(s["last_amount"] - s["first_amount"])
                      > PRICE_CHANGE_SHARE * s["first_amount"]]
        active = [s for s in series if s["active"]]
        if q.period is not None:
            in_period = select(history, q, q.period)
            keys = {(s["merchant"], s["description"]) for s in series}
            pairs = zip(in_period["merchant"], in_period["description"])
            in_series = pd.Series([(m, _stem(d)) in keys for m, d in pairs], index=in_period.index, dtype=bool)
            paid = in_period[in_series]
            value = _cents_to_value(-paid["cents"].sum())
            row_count = len(paid)
        else:
            value = round(sum(s["monthly"] for s in active), 2)
            row_count = sum(s["count"] for s in series)
        series.sort(key=lambda s: (not s["active"], -s["monthly"], s["merchant"]))
        breakdown = [BreakdownRow(f"{s['merchant']} ({s['cadence']}{'' if s['active'] else ', stopped'})",
                                  s["last_amount"], s["count"]) for s in series]
        last_rows = pd.DataFrame([s["last_row"] for s in series]) if series else history.head(0)
        return self.result(q, intent="subscriptions" if q.subscriptions_only else "recurring", value=value,
                           rows=row_dicts(last_rows, self.max_rows), row_count=row_count, breakdown=breakdown,
                           details={"series": series, "active": len(active), "by_period": q.period is not None,
                                    "relative": True, "price_changes": q.price_changes})

    def unusual(self, q: FinanceQuery) -> FinanceResult:
        scope = select(self.frame, q, q.period)
        flagged = find_unusual(self.frame, scope)
        rows = pd.DataFrame([f["row"] for f in flagged]) if flagged else scope.head(0)
        breakdown = [BreakdownRow(f"{f['row']['date'].date().isoformat()} {f['row']['merchant']}",
                                  _cents_to_value(f["row"]["cents"]), 1) for f in flagged]
        return self.result(q, value=float(len(flagged)), rows=row_dicts(rows, self.max_rows), row_count=len(scope),
                           breakdown=breakdown, details={"flagged": flagged})

    def summary(self, q: FinanceQuery) -> FinanceResult:
        rows = select(self.frame, q, q.period)
        income = measure_rows(rows, Q.INCOME)
        spend = measure_rows(rows, Q.SPEND)
        refunds = measure_rows(rows, Q.REFUNDS)
        income_c, spend_c = measure_cents(income, Q.INCOME), measure_cents(spend, Q.SPEND)
        categories = sorted(self._grouped(spend, "category", Q.SPEND), key=lambda r: (-r.value, r.key))
        sources = sorted(self._grouped(income, "merchant", Q.INCOME), key=lambda r: (-r.value, r.key))
        expenses = spend[spend["type"] == "expense"]
        largest = row_dicts(expenses.loc[expenses["cents"].sort_values(kind="stable").index], 1)
        start = max(q.period.start, self.data.first_date) if q.period else self.data.first_date
        end = min(q.period.end, self.data.last_date) if q.period else self.data.last_date
        months = len(_months(start, end)) if start <= end else 0
        details = {"income": _cents_to_value(income_c), "spend": _cents_to_value(spend_c),
                   "net": _cents_to_value(income_c - spend_c), "refunds": _cents_to_value(refunds["cents"].sum()),
                   "transactions": len(rows), "largest": largest[0] if largest else None,
                   "months": months, "monthly_spend": round(spend_c / 100 / months, 2) if months else None,
                   "top_sources": sources[:3], "start": start, "end": end}
        return self.result(q, value=_cents_to_value(income_c - spend_c), rows=row_dicts(_largest_first(spend),
                           self.max_rows), row_count=len(rows), breakdown=categories[:5], details=details)

    def list(self, q: FinanceQuery) -> FinanceResult:
        rows = select(self.frame, q, q.period)
        rows = rows.iloc[::-1] if q.latest_first else rows
        limit = min(q.n or self.max_rows, self.max_rows)
        shown = rows.head(limit)
        if (q.latest_first or q.n == 1) and len(rows):
            value = _cents_to_value(rows["cents"].iloc[0])
        else:
            value = _cents_to_value(rows["cents"].sum())
        return self.result(q, value=value, rows=row_dicts(shown, limit), row_count=len(rows),
                           details={"latest_first": q.latest_first, "sum": _cents_to_value(rows["cents"].sum())})


def _transfer_figures(rows: pd.DataFrame, q: FinanceQuery) -> tuple[list, list, int]:
    """(routes shown, account flows shown, the figure in cents) for transfer rows and the accounts named."""
    shown_routes, flows = routes(rows), account_flows(rows)
    named = set(q.accounts)
    if len(named) == 1:
        shown_routes = [r for r in shown_routes if r.source in named or r.target in named]
    elif named:
        shown_routes = [r for r in shown_routes if r.source in named and r.target in named]
    if named:
        flows = [f for f in flows if f.account in named]
    if len(q.accounts) == 1:
        flow = flows[0] if flows else None
        cents = 0 if flow is None else {"in": flow.in_cents, "out": flow.out_cents}.get(q.direction, flow.net_cents)
    elif q.accounts:
        cents = sum(r.cents for r in shown_routes if r.source == q.accounts[0] and r.target in q.accounts[1:])
    else:
        cents = sum(r.cents for r in shown_routes)
    return shown_routes, flows, cents


def _stem(description: str) -> str:
    """A description without its varying parts (numbers, reference codes), to tell series apart."""
    words = [w for w in str(description).split() if not any(c.isdigit() for c in w)]
    return " ".join(words)


def _cadence(gaps: list[int]) -> tuple[str, float] | None:
    if not gaps:
        return None
    ordered = sorted(gaps)
    median = ordered[len(ordered) // 2] if len(ordered) % 2 else (ordered[len(ordered) // 2 - 1] +
                                                                   ordered[len(ordered) // 2]) / 2
    for name, days, tolerance in CADENCES:
        if abs(median - days) <= tolerance:
            regular = sum(1 for g in gaps if abs(g - days) <= tolerance * 1.5) / len(gaps)
            return (name, days) if regular >= 0.75 else None
    return None


PRICE_CHANGE_SHARE = 0.02  # a fixed charge's price changed: its latest amount differs from its first by more


def find_recurring(expenses: pd.DataFrame, ref: date) -> list[dict[str, Any]]:
    """Series of charges to one merchant with the same description stem at a regular cadence
    (weekly .. yearly, 75% of gaps on time). Fixed: the last three charges within 2% of each other.
    Active: the last charge is no older than 1.5 cadences before the reference date."""
    out: list[dict[str, Any]] = []
    if expenses.empty:
        return out
    stems = expenses["description"].map(_stem)
    for (merchant, stem), rows in expenses.groupby([expenses["merchant"], stems], sort=True):
        dates = sorted(set(rows["date"].dt.date))
        if len(dates) < 3 and not (len(dates) == 2 and (dates[1] - dates[0]).days >= 330):
            continue
        gaps = [(b - a).days for a, b in zip(dates, dates[1:])]
        cadence = _cadence(gaps)
        if cadence is None or len(rows) > len(dates) * 1.2:
            continue
        name, days = cadence
        amounts = (-rows.sort_values("date", kind="stable")["cents"]).tolist()
        recent = amounts[-3:]
        fixed = max(recent) - min(recent) <= 0.02 * max(recent)
        last = rows.sort_values("date", kind="stable").iloc[-1]
        last_amount = amounts[-1]
        typical = last_amount if fixed else sorted(amounts)[len(amounts) // 2]
        active = (ref - last["date"].date()).days <= days * 1.5 + 3
        out.append({
            "merchant": merchant, "description": stem, "category": last["category"], "cadence": name,
            "days": days, "count": len(rows), "fixed": fixed, "active": active,
            "first": dates[0], "last": dates[-1], "last_amount": _cents_to_value(last_amount),
            "first_amount": _cents_to_value(amounts[0]),
            "typical": _cents_to_value(typical), "monthly": round(typical / 100 * 30.4375 / days, 2),
            "total": _cents_to_value(sum(amounts)), "last_row": last,
        })
    return out


def _median(values: list[int]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return float(ordered[mid]) if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def find_unusual(frame: pd.DataFrame, scope: pd.DataFrame) -> list[dict[str, Any]]:
    """Transactions (expenses and income) in `scope` that are large against the history of the same
    merchant (at least 4 other transactions), or else of the same category (at least 8; and then only
    a new record for the category): at least 3x the median and 5 robust deviations above it, and with
    no similar amount (within 10%) elsewhere in that history, which would make it a known charge."""
    history = frame[frame["type"].isin(("expense", "income"))]
    candidates = scope[scope["type"].isin(("expense", "income"))]
    if candidates.empty:
        return []
    magnitude = history["cents"].abs()
    bases = (("merchant", ["merchant", "type"], 4), ("category", ["category", "type"], 8))
    groups = {name: {k: v.abs().astype(int) for k, v in history.groupby(cols)["cents"]} for name, cols, _ in bases}
    # Cheap first pass on the basis that will decide: 2.5x its median (the row itself included).
    by_merchant = magnitude.groupby([history["merchant"], history["type"]])
    by_category = magnitude.groupby([history["category"], history["type"]])
    use_merchant = by_merchant.transform("size") - 1 >= bases[0][2]
    loose = (use_merchant & (magnitude >= 2.5 * by_merchant.transform("median"))) | (
        ~use_merchant & (by_category.transform("size") - 1 >= bases[1][2])
        & (magnitude >= 2.5 * by_category.transform("median")))
    survivors = candidates.index.intersection(loose[loose].index)
    flagged = []
    for index in survivors:
        row = candidates.loc[index]
        amount = abs(int(row["cents"]))
        for name, cols, needed in bases:
            values = groups[name].get(tuple(row[c] for c in cols))
            others = values.drop(index).tolist() if values is not None else []
            if len(others) < needed:
                continue
            median = _median(others)
            mad = _median([abs(v - median) for v in others])
            scale = max(1.4826 * mad, 0.1 * median, 100.0)
            score = (amount - median) / scale
            similar = any(abs(v - amount) <= 0.1 * amount for v in others)
            # Against a category (a mix of merchants), only a new record for that category counts.
            record = name == "merchant" or amount > max(others)
            if amount >= 3 * median and score >= 5 and not similar and record:
                flagged.append({"row": row, "basis": name, "median": round(median / 100, 2),
                                "ratio": round(amount / median, 1) if median else None, "score": round(score, 1)})
            break  # the merchant's history, when there is enough of it, decides
    flagged.sort(key=lambda f: -f["score"])
    return flagged
