"""Expected figures computed straight from the CSV with the csv module and Decimal: deliberately none
of the module's pandas code, so that the tests check the module against an independent reading of
data/README.md's definitions (spending = expenses less refunds; income; net = income - spending)."""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

CSV = Path(__file__).resolve().parents[3] / "data" / "all_transactions.csv"


@dataclass(frozen=True)
class Row:
    date: date
    description: str
    merchant: str
    category: str
    amount: Decimal
    account: str
    currency: str
    type: str


@lru_cache(maxsize=None)
def rows(path: Path = CSV) -> tuple[Row, ...]:
    with open(path, newline="", encoding="utf-8") as f:
        return tuple(Row(date.fromisoformat(r["date"]), r["description"], r["merchant"], r["category"],
                         Decimal(r["amount"]), r["account"], r["currency"], r["type"]) for r in csv.DictReader(f))


def pick(start: date | None = None, end: date | None = None, *, category: str | Iterable[str] | None = None,
         merchant: str | Iterable[str] | None = None, account: str | None = None, type: str | None = None,
         min_abs: Decimal | None = None, over: Decimal | None = None, where: Callable[[Row], bool] | None = None) -> list[Row]:
    def matches(value: str, wanted: str | Iterable[str] | None) -> bool:
        return wanted is None or (value == wanted if isinstance(wanted, str) else value in set(wanted))

    return [r for r in rows() if (start is None or r.date >= start) and (end is None or r.date <= end)
            and matches(r.category, category) and matches(r.merchant, merchant) and matches(r.account, account)
            and (type is None or r.type == type) and (min_abs is None or abs(r.amount) >= min_abs)
            and (over is None or abs(r.amount) > over)
            and (where is None or where(r))]


def spend(selected: list[Row]) -> Decimal:
    return -sum((r.amount for r in selected if r.type in ("expense", "refund")), Decimal(0))


def income(selected: list[Row]) -> Decimal:
    return sum((r.amount for r in selected if r.type == "income"), Decimal(0))


def refunds(selected: list[Row]) -> Decimal:
    return sum((r.amount for r in selected if r.type == "refund"), Decimal(0))


def net(selected: list[Row]) -> Decimal:
    return income(selected) - spend(selected)


def expenses(selected: list[Row]) -> list[Row]:
    return [r for r in selected if r.type == "expense"]


def grouped(selected: list[Row], key: Callable[[Row], str],
            measure: Callable[[list[Row]], Decimal]) -> dict[str, Decimal]:
    groups: dict[str, list[Row]] = defaultdict(list)
    for r in selected:
        groups[key(r)].append(r)
    return {k: measure(v) for k, v in groups.items()}


def money(value: Decimal | float) -> str:
    """How the answer writes a figure: thousands separators, two decimals."""
    return f"{Decimal(str(value)).quantize(Decimal('0.01')):,.2f}"
