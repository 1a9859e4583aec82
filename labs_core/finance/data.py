"""Loading and checking the transactions CSV, and a store that reloads it when the file changes.

A bad file must never crash the core or give a wrong figure: every problem becomes a
FinanceDataError (FAILED_PRECONDITION over gRPC) that names the file and the first offending line.
The store re-reads the file when its modification time or size changes, so an updated export is
picked up without a restart, and remembers a failure for an unchanged file so that it is not parsed
again on every question.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd

from labs_core.errors import PreconditionFailed
from labs_core.finance.entities import Vocabulary

log = logging.getLogger(__name__)

COLUMNS = ("date", "description", "merchant", "category", "amount", "account", "currency", "type")
TYPES = ("income", "expense", "refund", "transfer")
# Which sign each type must have: income and refunds bring money in, expenses take it out.
SIGN_RULES = {"income": ">= 0", "refund": ">= 0", "expense": "<= 0"}
AMOUNT_PATTERN = r"-?\d+(?:\.\d{1,2})?"


class FinanceDataError(PreconditionFailed):
    """The transactions file is missing or malformed."""


@dataclass(frozen=True)
class Dataset:
    """One loaded file. `frame` has the CSV's columns (date as datetime64) plus `cents` (int64, signed)."""

    frame: pd.DataFrame
    path: Path
    currency: str
    first_date: date
    last_date: date
    vocabulary: Vocabulary

    @property
    def rows(self) -> int:
        return len(self.frame)


def _line(index: int) -> int:
    return int(index) + 2  # header is line 1


def load(path: Path) -> Dataset:
    """Reads and validates the CSV; raises FinanceDataError with a readable reason."""
    where = f"finance data file {path}"
    if not path.is_file():
        raise FinanceDataError(f"{where} does not exist (set LABS_FINANCE_CSV or [finance] finance_csv)",
                               param="finance_csv")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise FinanceDataError(f"{where} is empty", param="finance_csv") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise FinanceDataError(f"{where} cannot be read as CSV: {exc}", param="finance_csv") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise FinanceDataError(f"{where} lacks column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}",
                               param="finance_csv")
    frame = frame[list(COLUMNS)].copy()
    if frame.empty:
        raise FinanceDataError(f"{where} has no rows", param="finance_csv")
    for column in COLUMNS:
        frame[column] = frame[column].astype(str).str.strip()

    dates = pd.to_datetime(frame["date"], format="%Y-%m-%d", errors="coerce")
    bad = dates.isna()
    if bad.any():
        i = bad.idxmax()
        raise FinanceDataError(f"{where}, line {_line(i)}: date {frame.at[i, 'date']!r} is not YYYY-MM-DD",
                               param="finance_csv")
    frame["date"] = dates

    valid = frame["amount"].str.fullmatch(AMOUNT_PATTERN)
    if not valid.all():
        i = (~valid).idxmax()
        raise FinanceDataError(f"{where}, line {_line(i)}: amount {frame.at[i, 'amount']!r} is not a number "
                               "with at most two decimals", param="finance_csv")
    frame["cents"] = (pd.to_numeric(frame["amount"]) * 100).round().astype("int64")
    frame["amount"] = frame["cents"] / 100

    frame["type"] = frame["type"].str.lower()
    unknown = ~frame["type"].isin(TYPES)
    if unknown.any():
        i = unknown.idxmax()
        raise FinanceDataError(f"{where}, line {_line(i)}: type {frame.at[i, 'type']!r} is not one of "
                               f"{', '.join(TYPES)}", param="finance_csv")
    for kind, rule in SIGN_RULES.items():
        rows = frame["type"] == kind
        wrong = rows & ((frame["cents"] < 0) if rule == ">= 0" else (frame["cents"] > 0))
        if wrong.any():
            i = wrong.idxmax()
            raise FinanceDataError(f"{where}, line {_line(i)}: a {kind} must have amount {rule} "
                                   f"(got {frame.at[i, 'amount']}); see data/README.md", param="finance_csv")

    currencies = sorted(set(frame["currency"]) - {""})
    if len(currencies) != 1:
        raise FinanceDataError(f"{where}: expected a single currency, found {currencies or 'none'}",
                               param="finance_csv")
    for column in ("merchant", "category", "account"):
        frame[column] = frame[column].mask(frame[column] == "", "Unknown")
    frame = frame.sort_values("date", kind="stable").reset_index(drop=True)
    flown = frame["description"].str.contains(AIRLINE_DESCRIPTION, regex=True, na=False)
    vocabulary = Vocabulary(frame["category"].unique(), frame["merchant"].unique(), frame["account"].unique(),
                            airlines=frame.loc[flown, "merchant"].unique())
    return Dataset(frame=frame, path=path, currency=currencies[0], first_date=frame["date"].iloc[0].date(),
                   last_date=frame["date"].iloc[-1].date(), vocabulary=vocabulary)


# "DELTA AIR 2813837", "UNITED AIRLINES": a merchant that sells flights ("AIRBNB" is one word: not one)
AIRLINE_DESCRIPTION = r"(?i)\b(?:air|airlines?|airways)\b"


class TransactionStore:
    """The configured file, loaded lazily and reloaded when it changes on disk (mtime or size)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser().resolve()
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._dataset: Dataset | None = None
        self._error: FinanceDataError | None = None
        self.loads = 0  # how many times the file was parsed (tests check reloads)

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def get(self) -> Dataset:
        """The current data; raises FinanceDataError when the file is missing or malformed."""
        stamp = self._stat()
        with self._lock:
            if stamp is None:
                self._stamp, self._dataset = None, None
                self._error = FinanceDataError(
                    f"finance data file {self.path} does not exist (set LABS_FINANCE_CSV or [finance] finance_csv)",
                    param="finance_csv")
                raise self._error
            if stamp != self._stamp:
                self._stamp = stamp
                self.loads += 1
                try:
                    self._dataset, self._error = load(self.path), None
                    log.info("finance: loaded %d transactions from %s", self._dataset.rows, self.path)
                except FinanceDataError as exc:
                    self._dataset, self._error = None, exc
                    log.error("finance: %s", exc.message)
            if self._error is not None:
                raise self._error
            assert self._dataset is not None
            return self._dataset

    def check(self) -> str | None:
        """Loads the file now (at start) and returns the problem, if any, for the log."""
        try:
            self.get()
        except FinanceDataError as exc:
            return exc.message
        return None
