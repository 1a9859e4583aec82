"""Fixtures the finance tests share: the engine over the shipped CSV, and the same CSV as a frame
(amounts in integer cents) for truths computed apart from the parser."""

import pandas as pd
import pytest

from labs_core.finance.engine import FinanceEngine
from tests.labs_core.finance import reference as R


@pytest.fixture(scope="module")
def engine() -> FinanceEngine:
    return FinanceEngine(R.CSV)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    f = pd.read_csv(R.CSV, parse_dates=["date"])
    f["cents"] = (f["amount"] * 100).round().astype(int)
    return f
