"""Transfers between the business's own accounts, as a measure of their own (pandas, integer cents).

A transfer is two rows of type `transfer`: money out of one account (negative) and the same amount
into another (positive) on the same date. They are neither spending nor income, so the spending and
income figures leave them out; this module answers "how much did we move": out of / into each
account, the net flow per account, and the routes (from -> to), over any period.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

UNPAIRED = "(no matching account)"


@dataclass(frozen=True)
class AccountFlow:
    account: str
    out_cents: int   # moved out of the account, positive
    in_cents: int    # moved into the account
    count: int

    @property
    def net_cents(self) -> int:
        return self.in_cents - self.out_cents


@dataclass(frozen=True)
class Route:
    source: str
    target: str
    cents: int
    count: int


def routes(rows: pd.DataFrame) -> list[Route]:
    """Pairs each outgoing transfer with an incoming one of the same date and amount (first unused);
    a row without its other half is shown against UNPAIRED."""
    outs = rows[rows["cents"] < 0]
    ins = rows[rows["cents"] > 0]
    waiting: dict[tuple, list[str]] = {}
    for d, cents, account in zip(ins["date"], ins["cents"], ins["account"]):
        waiting.setdefault((d, int(cents)), []).append(account)
    totals: dict[tuple[str, str], list[int]] = {}
    for d, cents, account in zip(outs["date"], outs["cents"], outs["account"]):
        candidates = waiting.get((d, -int(cents)), [])
        target = next((a for a in candidates if a != account), None)
        if target is not None:
            candidates.remove(target)
        entry = totals.setdefault((account, target or UNPAIRED), [0, 0])
        entry[0] += -int(cents)
        entry[1] += 1
    for (d, cents), left in waiting.items():
        for account in left:
            entry = totals.setdefault((UNPAIRED, account), [0, 0])
            entry[0] += cents
            entry[1] += 1
    return sorted((Route(s, t, c, n) for (s, t), (c, n) in totals.items()), key=lambda r: (-r.cents, r.source, r.target))


def account_flows(rows: pd.DataFrame) -> list[AccountFlow]:
    out = []
    for account, group in rows.groupby("account", sort=True):
        cents = group["cents"]
        out.append(AccountFlow(str(account), int(-cents[cents < 0].sum()), int(cents[cents > 0].sum()), len(group)))
    return out
