"""Date ranges in plain English -> inclusive [start, end] periods (standard library only).

Absolute expressions ("March 2025", "Q3 2024", "between 1 Feb and 15 Apr 2025", "2024") resolve
on their own. Relative ones ("last quarter", "this year", "since June", "the last 30 days") resolve
against a reference date: the caller passes the data's latest date unless the user gave one. The
rules, documented in docs/finance.md:

- "last/previous month|quarter|year|week" is the previous complete calendar unit before the one
  holding the reference date; "this ..." is the unit holding it, up to the reference date.
- "the last/past N days|weeks|months|years" and "the past month|year" are rolling windows ending on
  the reference date.
- A month, quarter or day without a year ("March", "Q3", "1 Feb") is the latest one that has started
  by the reference date; "since X" runs from X to the reference date.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Callable

MONTHS = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4, "may": 5,
    "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9, "sept": 9, "sep": 9,
    "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
}
NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "eighteen": 18, "twenty": 20,
                "thirty": 30, "sixty": 60, "ninety": 90}
ORDINALS = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4,
            "last": 4}


@dataclass(frozen=True)
class Period:
    """An inclusive date range with a human label; `relative` says it depended on the reference date."""

    start: date
    end: date
    label: str
    kind: str = "custom"  # day, week, month, quarter, half, year, custom
    relative: bool = False

    def describe(self) -> str:
        """The label with its dates: "Q3 2024 (2024-07-01 to 2024-09-30)", "last quarter (Q3 2025:
        2025-07-01 to 2025-09-30)"."""
        dates = self.start.isoformat() if self.start == self.end else \
            f"{self.start.isoformat()} to {self.end.isoformat()}"
        if self.label == dates:
            return dates
        if self.label.endswith(")"):
            return f"{self.label[:-1]}: {dates})"
        return f"{self.label} ({dates})"

    def shift_months(self, months: int, label: str | None = None) -> "Period":
        """The same span `months` earlier (negative) or later; month ends stay month ends."""
        return replace(self, start=add_months(self.start, months), end=add_months(self.end, months, keep_end=True),
                       label=label or f"{self.label} shifted {months:+d} months", relative=self.relative)

    def previous(self) -> "Period":
        """The period of the same kind just before this one (previous month, quarter, year, or an
        equally long span for custom ranges)."""
        if self.kind == "month":
            return month_period(*ym(add_months(self.start, -1)))
        if self.kind == "quarter":
            return quarter_period(*ym(add_months(self.start, -3)), by_month=True)
        if self.kind == "half":
            start = add_months(self.start, -6)
            return half_period(start.year, 1 if start.month == 1 else 2)
        if self.kind == "year" and self.start.month == 1 and self.start.day == 1:
            return year_period(self.start.year - 1)
        length = (self.end - self.start).days + 1
        end = self.start - timedelta(days=1)
        start = end - timedelta(days=length - 1)
        return Period(start, end, f"the {length} days before {self.start.isoformat()}", "custom", self.relative)

    def year_earlier(self) -> "Period":
        """The same span one year before (the same month, quarter or year, or the same dates)."""
        if self.kind == "month":
            return month_period(self.start.year - 1, self.start.month)
        if self.kind == "quarter":
            return quarter_period(self.start.year - 1, (self.start.month - 1) // 3 + 1)
        if self.kind == "year" and self.end == date(self.start.year, 12, 31):
            return year_period(self.start.year - 1)
        shifted = self.shift_months(-12)
        return replace(shifted, label="the same dates a year earlier", kind="custom")


def ym(day: date) -> tuple[int, int]:
    return day.year, day.month


def month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def add_months(day: date, months: int, keep_end: bool = False) -> date:
    total = day.year * 12 + day.month - 1 + months
    year, month = divmod(total, 12)
    month += 1
    last = calendar.monthrange(year, month)[1]
    if keep_end and day == month_end(day.year, day.month):
        return date(year, month, last)
    return date(year, month, min(day.day, last))


def month_period(year: int, month: int) -> Period:
    return Period(date(year, month, 1), month_end(year, month), f"{calendar.month_name[month]} {year}", "month")


def quarter_period(year: int, quarter_or_month: int, by_month: bool = False) -> Period:
    quarter = (quarter_or_month - 1) // 3 + 1 if by_month else quarter_or_month
    first = 3 * (quarter - 1) + 1
    return Period(date(year, first, 1), month_end(year, first + 2), f"Q{quarter} {year}", "quarter")


def half_period(year: int, half: int) -> Period:
    first = 1 if half == 1 else 7
    return Period(date(year, first, 1), month_end(year, first + 5), f"H{half} {year}", "half")


SEASONS = {"spring": 3, "summer": 6, "fall": 9, "autumn": 9, "winter": 12}  # first month (meteorological)


def season_period(year: int, season: str) -> Period:
    """Three months from the season's first (northern hemisphere); winter YEAR is December of the year
    before to February of YEAR. The label gives the dates, so the reading is visible."""
    start = date(year - 1 if season == "winter" else year, SEASONS[season], 1)
    end_month = add_months(start, 2)
    return Period(start, month_end(end_month.year, end_month.month), f"{season} {year}", "custom")


def year_period(year: int) -> Period:
    return Period(date(year, 1, 1), date(year, 12, 31), str(year), "year")


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


def week_around(day: date, weekend: bool = False) -> Period:
    """The Monday-to-Sunday week holding `day`, or its Saturday and Sunday. A Monday's weekend is the
    one just before it ("the weekend of Memorial Day")."""
    start = week_start(day)
    if not weekend:
        return Period(start, start + timedelta(days=6), f"the week of {day.isoformat()}", "week")
    saturday = start - timedelta(days=2) if day.weekday() == 0 else start + timedelta(days=5)
    return Period(saturday, saturday + timedelta(days=1), f"the weekend of {day.isoformat()}", "custom")


def nth_week(month: Period, nth: str, weekend: bool = False) -> Period:
    """"The second week of March": days 8-14 (the last: its last seven days); "the first weekend of
    March": its first Saturday and the Sunday after. The same for a quarter or a year."""
    n = ORDINALS[nth] if nth != "last" else 0
    if weekend:
        first_saturday = month.start + timedelta(days=(5 - month.start.weekday()) % 7)
        last_saturday = month.end - timedelta(days=(month.end.weekday() - 5) % 7)
        saturday = first_saturday + timedelta(days=7 * (n - 1)) if n else last_saturday
        start, end = saturday, saturday + timedelta(days=1)
    else:
        start = month.start + timedelta(days=7 * (n - 1)) if n else month.end - timedelta(days=6)
        end = start + timedelta(days=6)
    label = f"the {nth} {'weekend' if weekend else 'week'} of {month.label}"
    return Period(start, end, label, "custom", month.relative)


# ---------------------------------------------------------------------------------------------------------
# Scanning text for period expressions.

_MONTH = r"(?P<{0}>" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<{0}>[0-3]?\d)(?:st|nd|rd|th)?"
_YEAR = r"(?P<{0}>(?:19|20)\d\d)"
_NUM = r"(?P<{0}>\d+|" + "|".join(NUMBER_WORDS) + r")"
_UNIT = r"(?P<{0}>days?|weeks?|months?|quarters?|years?)"


def _g(pattern: str, name: str) -> str:
    return pattern.format(name)


@dataclass(frozen=True)
class RawPoint:
    """A period expression found in the text; `rebuild(year)` re-resolves it when a range gives the year."""

    start_idx: int
    end_idx: int
    period: Period
    has_year: bool = True
    rebuild: Callable[[int], Period] | None = None


def _latest(build: Callable[[int], Period], ref: date) -> Period:
    """The latest instance (by year) that has started by the reference date (next year's first: a
    winter starts in the December before its year)."""
    chosen = next(p for p in (build(ref.year + 1), build(ref.year), build(ref.year - 1)) if p.start <= ref)
    return replace(chosen, relative=True)


def _number(text: str) -> int:
    return int(text) if text.isdigit() else NUMBER_WORDS[text]


def _day_date(year: int, month: int, day: int) -> Period:
    d = date(year, month, day)
    return Period(d, d, d.isoformat(), "day")


def _safe(build: Callable[[], Period]) -> Period | None:
    try:
        return build()
    except ValueError:  # 31 February and the like
        return None


def _relative_unit(unit: str, ref: date, which: str) -> Period:
    """"last|this <unit>": calendar units around the reference date."""
    unit = unit.rstrip("s")
    if unit == "day":
        day = ref - timedelta(days=1) if which == "last" else ref
        return Period(day, day, "yesterday" if which == "last" else "today", "day", True)
    if unit == "week":
        start = week_start(ref)
        if which == "last":
            start -= timedelta(days=7)
            return Period(start, start + timedelta(days=6), "last week", "week", True)
        return Period(start, ref, "this week", "week", True)
    if unit == "month":
        if which == "last":
            p = month_period(*ym(add_months(ref.replace(day=1), -1)))
            return replace(p, label=f"last month ({p.label})", relative=True)
        p = month_period(ref.year, ref.month)
        return replace(p, end=min(p.end, ref), label=f"this month ({p.label})", relative=True)
    if unit == "quarter":
        current = quarter_period(ref.year, ref.month, by_month=True)
        if which == "last":
            p = current.previous()
            return replace(p, label=f"last quarter ({p.label})", relative=True)
        return replace(current, end=min(current.end, ref), label=f"this quarter ({current.label})", relative=True)
    if unit == "year":
        if which == "last":
            p = year_period(ref.year - 1)
            return replace(p, label=f"last year ({p.label})", relative=True)
        p = year_period(ref.year)
        return replace(p, end=min(p.end, ref), label=f"this year ({p.label})", relative=True)
    raise ValueError(unit)


def _rolling(n: int, unit: str, ref: date) -> Period:
    unit = unit.rstrip("s")
    if unit == "day":
        start = ref - timedelta(days=n - 1)
    elif unit == "week":
        start = ref - timedelta(days=7 * n - 1)
    else:
        months = {"month": 1, "quarter": 3, "year": 12}[unit] * n
        start = add_months(ref, -months) + timedelta(days=1)
    label = f"the last {n} {unit}{'s' if n != 1 else ''}" if n != 1 else f"the past {unit}"
    return Period(start, ref, label, "custom", True)


def _ago(n: int, unit: str, ref: date) -> Period:
    unit = unit.rstrip("s")
    if unit == "month":
        p = month_period(*ym(add_months(ref.replace(day=1), -n)))
    elif unit == "quarter":
        p = quarter_period(*ym(add_months(ref.replace(day=1), -3 * n)), by_month=True)
    elif unit == "year":
        p = year_period(ref.year - n)
    elif unit == "week":
        start = week_start(ref) - timedelta(days=7 * n)
        p = Period(start, start + timedelta(days=6), f"the week of {start.isoformat()}", "week")
    else:
        d = ref - timedelta(days=n)
        p = _day_date(d.year, d.month, d.day)
    return replace(p, label=f"{n} {unit}{'s' if n != 1 else ''} ago ({p.label})", relative=True)


_PATTERNS: list[tuple[re.Pattern[str], Callable[[re.Match, date], RawPoint | None]]] = []


def _pattern(regex: str):
    def register(fn: Callable[[re.Match, date], RawPoint | None]):
        _PATTERNS.append((re.compile(regex), fn))
        return fn
    return register


def _raw(m: re.Match, period: Period | None, has_year: bool = True,
         rebuild: Callable[[int], Period] | None = None) -> RawPoint | None:
    if period is None:
        return None
    return RawPoint(m.start(), m.end(), period, has_year, rebuild)


# Order matters: longer, more specific expressions first; matched spans are consumed.

# "between the 1st and (the) 15th of March 2025", "from the 3rd to the 10th of May": days of one month
@_pattern(r"\b(?:between|from)\s+(?:the\s+)?" + _g(_DAY, "d1") + r"\s+(?:and|to|until|through|-)\s+(?:the\s+)?"
          + _g(_DAY, "d2") + r"(?:\s+of)?\s+" + _g(_MONTH, "m") + r"(?:,?\s+" + _g(_YEAR, "y") + r")?\b")
def _days_of_a_month(m: re.Match, ref: date) -> RawPoint | None:
    month, first_day, last_day = MONTHS[m["m"]], int(m["d1"]), int(m["d2"])
    if not 1 <= first_day <= last_day <= 31:
        return None

    def build(year: int) -> Period:
        end = min(last_day, calendar.monthrange(year, month)[1])
        start, stop = date(year, month, min(first_day, end)), date(year, month, end)
        return Period(start, stop, f"{start.isoformat()} to {stop.isoformat()}", "custom")
    if m["y"]:
        return _raw(m, build(int(m["y"])))
    return _raw(m, _latest(build, ref), has_year=False, rebuild=build)


@_pattern(r"\b(?P<y>(?:19|20)\d\d)-(?P<m>[01]\d)-(?P<d>[0-3]\d)\b")
def _iso_day(m: re.Match, ref: date) -> RawPoint | None:
    return _raw(m, _safe(lambda: _day_date(int(m["y"]), int(m["m"]), int(m["d"]))))


@_pattern(r"\b(?P<y>(?:19|20)\d\d)-(?P<m>[01]\d)\b")
def _iso_month(m: re.Match, ref: date) -> RawPoint | None:
    month = int(m["m"])
    return _raw(m, month_period(int(m["y"]), month) if 1 <= month <= 12 else None)


@_pattern(r"\b" + _g(_DAY, "d") + r"(?:\s+of)?\s+" + _g(_MONTH, "m") + r",?\s+" + _g(_YEAR, "y") + r"\b")
def _day_month_year(m: re.Match, ref: date) -> RawPoint | None:
    return _raw(m, _safe(lambda: _day_date(int(m["y"]), MONTHS[m["m"]], int(m["d"]))))


@_pattern(r"\b" + _g(_MONTH, "m") + r"\s+" + _g(_DAY, "d") + r",?\s+" + _g(_YEAR, "y") + r"\b")
def _month_day_year(m: re.Match, ref: date) -> RawPoint | None:
    return _raw(m, _safe(lambda: _day_date(int(m["y"]), MONTHS[m["m"]], int(m["d"]))))


@_pattern(r"\b(?:the\s+)?(?P<n>first|second|1st|2nd)\s+half\s+(?:of\s+)?" + _g(_YEAR, "y") + r"\b"
          r"|\bh(?P<h>[12])\s+(?:of\s+)?" + _g(_YEAR, "y2") + r"\b")
def _half(m: re.Match, ref: date) -> RawPoint | None:
    half = ORDINALS[m["n"]] if m["n"] else int(m["h"])
    return _raw(m, half_period(int(m["y"] or m["y2"]), half))


# "the second quarter of last year", "Q2 last year", "H1 this year", "the first half of last year"
@_pattern(r"\b(?:(?:the\s+)?(?P<o>first|second|third|fourth|1st|2nd|3rd|4th)\s+(?P<u>quarter|half)|q(?P<q>[1-4])"
          r"|h(?P<h>[12]))\s+(?:of\s+)?(?:the\s+)?(?P<w>last|previous|prior|this|current)\s+year\b")
def _part_of_relative_year(m: re.Match, ref: date) -> RawPoint | None:
    year = ref.year - 1 if m["w"] in ("last", "previous", "prior") else ref.year
    if m["u"] == "half" or m["h"]:
        n = int(m["h"]) if m["h"] else ORDINALS[m["o"]]
        p = half_period(year, n) if n in (1, 2) else None
    else:
        p = quarter_period(year, int(m["q"]) if m["q"] else ORDINALS[m["o"]])
    if p is None:
        return None
    p = replace(p, end=min(p.end, ref)) if p.start <= ref <= p.end else p
    return _raw(m, replace(p, relative=True))


# "last weekend": the Saturday and Sunday before the reference date's week (Monday to Sunday);
# "this weekend": that week's own (still to come on a weekday)
@_pattern(r"\b(?P<w>last|previous|past|this)\s+weekend\b")
def _relative_weekend(m: re.Match, ref: date) -> RawPoint | None:
    saturday = week_start(ref) + timedelta(days=5) - timedelta(days=0 if m["w"] == "this" else 7)
    sunday = saturday + timedelta(days=1)
    end = min(sunday, ref) if saturday <= ref else sunday
    return _raw(m, Period(saturday, end, f"{m['w']} weekend", "custom", True))


@_pattern(r"\b(?:the\s+)?(?P<s>spring|summer|fall|autumn|winter)\s+(?:of\s+)?" + _g(_YEAR, "y") + r"\b")
def _season_year(m: re.Match, ref: date) -> RawPoint | None:
    return _raw(m, season_period(int(m["y"]), m["s"]))


# A bare season ("fall" alone is also a verb: "did spending fall").
@_pattern(r"\b(?:in\s+the\s+|over\s+the\s+|during\s+the\s+|this\s+|last\s+)?(?P<s>spring|summer|autumn|winter)\b")
def _season(m: re.Match, ref: date) -> RawPoint | None:
    def build(year: int) -> Period:
        return season_period(year, m["s"])
    chosen = _latest(build, ref)
    if m.group(0).startswith("last") and chosen.end >= ref:  # "last summer": the one before the current
        chosen = replace(build(chosen.end.year - 1), relative=True)
    return _raw(m, chosen, has_year=False, rebuild=build)


@_pattern(r"\bq(?P<q>[1-4])\s*(?:of\s+|,\s*|'|-)?(?P<y>(?:19|20)\d\d)\b|\b(?P<y2>(?:19|20)\d\d)\s*-?\s*q(?P<q2>[1-4])\b"
          r"|\b(?:the\s+)?(?P<o>first|second|third|fourth|1st|2nd|3rd|4th)\s+quarter\s+(?:of\s+)?(?P<y3>(?:19|20)\d\d)\b")
def _quarter_year(m: re.Match, ref: date) -> RawPoint | None:
    quarter = int(m["q"] or m["q2"] or ORDINALS[m["o"]])
    return _raw(m, quarter_period(int(m["y"] or m["y2"] or m["y3"]), quarter))


@_pattern(r"\b" + _g(_MONTH, "m") + r"(?:\s+of)?,?\s+" + _g(_YEAR, "y") + r"\b")
def _month_year(m: re.Match, ref: date) -> RawPoint | None:
    return _raw(m, month_period(int(m["y"]), MONTHS[m["m"]]))


@_pattern(r"\b(?:(?:the\s+)?(?:last|past|previous|prior)\s+)" + _g(_NUM, "n") + r"\s+" + _g(_UNIT, "u") + r"\b")
def _last_n(m: re.Match, ref: date) -> RawPoint | None:
    n = _number(m["n"])
    return _raw(m, _rolling(n, m["u"], ref) if n > 0 else None)


@_pattern(r"\b" + _g(_NUM, "n") + r"\s+" + _g(_UNIT, "u") + r"\s+ago\b")
def _n_ago(m: re.Match, ref: date) -> RawPoint | None:
    return _raw(m, _ago(_number(m["n"]), m["u"], ref))


@_pattern(r"\b(?:(?:the|over\s+the)\s+)?past\s+(?P<u>week|month|quarter|year)\b")
def _past_unit(m: re.Match, ref: date) -> RawPoint | None:
    return _raw(m, _rolling(1, m["u"], ref))


@_pattern(r"\b(?P<w>last|previous|prior|this|current|the\s+current)\s+(?P<u>week|month|quarter|year)\b"
          r"(?!\s+of\s+(?:the\s+)?(?:[a-z]+\s+)?(?:\d|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))")
def _calendar_unit(m: re.Match, ref: date) -> RawPoint | None:
    which = "last" if m["w"] in ("last", "previous", "prior") else "this"
    return _raw(m, _relative_unit(m["u"], ref, which))


@_pattern(r"\b(?P<u>year|month|quarter)[\s-]to[\s-]date\b|\b(?P<a>ytd|mtd|qtd)\b|\bso\s+far\s+this\s+(?P<u2>year|month|quarter)\b")
def _to_date_unit(m: re.Match, ref: date) -> RawPoint | None:
    unit = m["u"] or m["u2"] or {"ytd": "year", "mtd": "month", "qtd": "quarter"}[m["a"]]
    p = _relative_unit(unit, ref, "this")
    return _raw(m, replace(p, label=f"{unit} to date"))


@_pattern(r"\b(?P<w>yesterday|today)\b")
def _yesterday(m: re.Match, ref: date) -> RawPoint | None:
    return _raw(m, _relative_unit("day", ref, "last" if m["w"] == "yesterday" else "this"))


@_pattern(r"\b(?:last|previous)\s+" + _g(_MONTH, "m") + r"(?![\w])")
def _last_named_month(m: re.Match, ref: date) -> RawPoint | None:
    month = MONTHS[m["m"]]
    year = ref.year if month < ref.month else ref.year - 1
    p = month_period(year, month)
    return _raw(m, replace(p, label=f"last {calendar.month_name[month]} ({p.label})", relative=True))


@_pattern(r"\b(?:fy|fiscal(?:\s+year)?\s*)(?P<y>(?:19|20)\d\d)\b")
def _fiscal_year(m: re.Match, ref: date) -> RawPoint | None:
    return _raw(m, year_period(int(m["y"])))


@_pattern(r"\b" + _g(_DAY, "d") + r"(?:\s+of)?\s+" + _g(_MONTH, "m") + r"(?![\w])")
def _day_month(m: re.Match, ref: date) -> RawPoint | None:
    month, day = MONTHS[m["m"]], int(m["d"])
    if not 1 <= day <= calendar.monthrange(2024, month)[1]:
        return None
    def build(year: int) -> Period:
        return _safe(lambda: _day_date(year, month, day)) or _day_date(year, month, day - 1)
    return _raw(m, _latest(build, ref), has_year=False, rebuild=build)


@_pattern(r"\b" + _g(_MONTH, "m") + r"\s+" + _g(_DAY, "d") + r"\b(?!\s*(?:days?|weeks?|months?|years?|%))")
def _month_day(m: re.Match, ref: date) -> RawPoint | None:
    return _day_month(m, ref)


@_pattern(r"\bq(?P<q>[1-4])\b|\b(?:the\s+)?(?P<o>first|second|third|fourth|1st|2nd|3rd|4th)\s+quarter\b")
def _quarter(m: re.Match, ref: date) -> RawPoint | None:
    quarter = int(m["q"]) if m["q"] else ORDINALS[m["o"]]
    def build(year: int) -> Period:
        return quarter_period(year, quarter)
    return _raw(m, _latest(build, ref), has_year=False, rebuild=build)


# A bare month name; "may" and "march" also are ordinary words, so they need a date-like neighbour.
@_pattern(r"(?:(?<=\bin\s)|(?<=\bsince\s)|(?<=\bfor\s)|(?<=\bduring\s)|(?<=\bfrom\s)|(?<=\bto\s)|(?<=\band\s)"
          r"|(?<=\bvs\s)|(?<=\bvs\.\s)|(?<=\bversus\s)|(?<=\buntil\s)|(?<=\bbefore\s)|(?<=\bafter\s)"
          r"|(?<=\bbetween\s)|(?<=\bthrough\s)|(?<=\bwith\s)|(?<=\bof\s)|(?<=\bthan\s)|(?<=\bor\s)"
          r"|(?<=\bin\searly\s)|(?<=\bin\slate\s)|(?<=\bthis\s))(?P<m>may|march)\b"
          r"|\b(?P<m2>january|jan|february|feb|april|apr|june|jun|july|jul|august|aug|september|sept|sep"
          r"|october|oct|november|nov|december|dec)\b")
def _month(m: re.Match, ref: date) -> RawPoint | None:
    month = MONTHS[m["m"] or m["m2"]]
    def build(year: int) -> Period:
        return month_period(year, month)
    return _raw(m, _latest(build, ref), has_year=False, rebuild=build)


@_pattern(r"(?<![\d$.,])(?P<y>(?:19|20)\d\d)(?![\d%]|\.\d|,\d)")
def _year(m: re.Match, ref: date) -> RawPoint | None:
    return _raw(m, year_period(int(m["y"])))


# ---------------------------------------------------------------------------------------------------------
# Combining points into ranges.

@dataclass(frozen=True)
class Found:
    """A period found in the text, with the span it came from."""

    start_idx: int
    end_idx: int
    period: Period


_JOINERS = ("to", "until", "till", "through", "thru", "-", "–")
_WEEK_OF = re.compile(r"\b(?:the\s+)?(?:(?P<nth>first|second|third|fourth|1st|2nd|3rd|4th|last)\s+)?"
                      r"(?P<unit>week|weekend)\s+of\s+(?:the\s+)?$")
_SINCE = re.compile(r"\b(?:since|from|starting|after|as\s+of)\s*$")
_BETWEEN = re.compile(r"\b(?:between|from)\s*$")
_BEFORE = re.compile(r"\b(?:before|until|till|up\s+to|prior\s+to|through)\s*$")
_AFTER = re.compile(r"\bafter\s*$")


def scan(text: str, ref: date) -> list[RawPoint]:
    """Every period expression in `text` (lower case), leftmost first, without overlaps."""
    taken: list[tuple[int, int]] = []
    points: list[RawPoint] = []
    for pattern, build in _PATTERNS:
        for m in pattern.finditer(text):
            if any(m.start() < e and s < m.end() for s, e in taken):
                continue
            try:
                point = build(m, ref)
            except (ValueError, OverflowError):  # "the last 99999 years" reaches before year 1
                point = None
            if point is not None:
                taken.append((point.start_idx, point.end_idx))
                points.append(point)
    return sorted(points, key=lambda p: p.start_idx)


def _range_label(a: Period, b: Period, start: date, end: date) -> str:
    return f"{a.label} to {b.label}" if (a.kind, b.kind) != ("day", "day") else \
        f"{start.isoformat()} to {end.isoformat()}"


def _join(a: RawPoint, b: RawPoint) -> Period:
    """`a` to `b`, lending a year from the one that has it to the one that lacks it."""
    pa, pb = a.period, b.period
    if not a.has_year and b.has_year and a.rebuild:
        pa = a.rebuild(pb.start.year)
        if pa.start > pb.end:
            pa = a.rebuild(pb.start.year - 1)
    elif a.has_year and not b.has_year and b.rebuild:
        pb = b.rebuild(pa.start.year)
        if pb.end < pa.start:
            pb = b.rebuild(pa.start.year + 1)
    elif not a.has_year and not b.has_year and a.rebuild:
        pa = a.rebuild(pb.start.year)
        if pa.start > pb.end:
            pa = a.rebuild(pb.start.year - 1)
    start, end = min(pa.start, pb.start), max(pa.end, pb.end)
    relative = pa.relative or pb.relative
    return Period(start, end, _range_label(pa, pb, start, end), "custom", relative)


_LIST_SEPARATOR = re.compile(r"^\s*(?:,|and|or|&|\+|, and|, or|vs\.?|versus)\s*$")


def _lend_years(text: str, points: list[RawPoint]) -> list[RawPoint]:
    """"January, February and March 2024", "Q1 or Q2 2024": the year said last belongs to the bare
    months or quarters listed before it (else each would be the latest one: January 2025)."""
    points = list(points)
    for i in range(len(points) - 2, -1, -1):
        p, q = points[i], points[i + 1]
        if p.has_year or not p.rebuild or not q.has_year or not _LIST_SEPARATOR.search(text[p.end_idx:q.start_idx]):
            continue
        lent = p.rebuild(q.period.start.year)
        if lent.start > q.period.start:  # "December and January 2025": the December before
            lent = p.rebuild(q.period.start.year - 1)
        points[i] = RawPoint(p.start_idx, p.end_idx, replace(lent, relative=False), True, p.rebuild)
    return points


def find_periods(text: str, ref: date, first: date | None = None, *, join_ranges: bool = True) -> list[Found]:
    """The periods named in `text`, in order. "between X and Y" and "X to Y" become one range unless
    join_ranges is false (a comparison reads them as two periods); "since X" runs to the reference
    date; "before X" starts at `first` (the data's start)."""
    text = text.lower()
    floor = first or date(1900, 1, 1)
    points = _lend_years(text, scan(text, ref))
    found: list[Found] = []
    i = 0
    while i < len(points):
        p = points[i]
        before = text[:p.start_idx]
        joined = False
        if i + 1 < len(points):
            q = points[i + 1]
            joiner = text[p.end_idx:q.start_idx].strip()
            joined = joiner in _JOINERS or (joiner == "and" and _BETWEEN.search(before) is not None)
            if joined and join_ranges:
                found.append(Found(p.start_idx, q.end_idx, _join(p, q)))
                i += 2
                continue
        period = p.period
        week_of = _WEEK_OF.search(before)
        weekend = bool(week_of) and week_of["unit"] == "weekend"
        if week_of and period.kind == "day" and not week_of["nth"]:  # "the weekend of July 4th 2025"
            found.append(Found(week_of.start(), p.end_idx, week_around(period.start, weekend)))
            i += 1
            continue
        if week_of and period.kind in ("month", "quarter", "year") and week_of["nth"]:  # "the first week of May"
            found.append(Found(week_of.start(), p.end_idx, nth_week(period, week_of["nth"], weekend)))
            i += 1
            continue
        if joined:
            pass  # "from 2024 to 2025" in a comparison: two plain periods, not "since 2024"
        elif _AFTER.search(before):
            period = Period(period.end + timedelta(days=1), ref, f"after {period.label}", "custom", True)
        elif _SINCE.search(before):
            period = Period(period.start, ref, f"since {period.label}", "custom", True)
        elif _BEFORE.search(before):
            word = _BEFORE.search(before).group(0).strip()
            end = period.start - timedelta(days=1) if word.startswith(("before", "prior")) else period.end
            period = Period(floor, end, f"{word} {period.label}", "custom", period.relative)
        found.append(Found(p.start_idx, p.end_idx, period))
        i += 1
    return found
