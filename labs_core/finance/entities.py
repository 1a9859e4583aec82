"""Finding the data's own categories, merchants and accounts in a question (standard library only).

The vocabulary is built from the loaded file, so a new merchant in the CSV is recognised without a
code change. Each name gets a few aliases (plural/singular, "&" as "and", the distinctive first word
of a multi-word merchant, the account name without "Business"), plus a small table of everyday words
for categories ("dining" -> Meals) that only applies when that category exists in the data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

CATEGORY = "category"
MERCHANT = "merchant"
ACCOUNT = "account"
TYPE = "type"

# Everyday words for common category names; used only for categories present in the data.
CATEGORY_SYNONYMS: dict[str, tuple[str, ...]] = {
    "meals": ("food", "dining", "eating out", "eat out", "ate out", "dine out", "dined out", "dining out",
              "restaurants", "restaurant", "lunches", "lunch", "coffee", "meals and entertainment"),
    "travel": ("trips", "trip", "flights", "flight", "hotels", "hotel", "rides", "taxis", "taxi", "parking",
               "airfare"),
    "software": ("saas", "software subscriptions", "apps", "cloud services"),
    "office supplies": ("supplies", "stationery", "office supply"),
    "professional services": ("professional fees", "contractors", "freelancers", "consultants"),
    "rent": ("office rent", "studio rent", "lease"),
    "utilities": ("utility bills", "electricity", "water bill", "power bill"),
    "telecom": ("phone", "internet", "phone and internet", "mobile", "cell phone", "telephone"),
    "payroll": ("salaries", "salary", "wages"),
    "taxes": ("tax", "estimated taxes", "tax payments", "sales tax", "sales taxes", "income tax", "income taxes",
              "state tax", "state taxes", "federal tax", "federal taxes"),
    "marketing": ("advertising", "ads", "ad spend", "adverts"),
    "equipment": ("hardware", "computers", "gear"),
    "fuel": ("gas", "gasoline", "petrol"),
    "shipping": ("postage", "couriers", "courier", "deliveries"),
    "bank fees": ("bank charges", "banking fees", "account fees", "fees", "fee", "service fees", "service charges"),
    "education": ("training", "courses", "books", "learning"),
    "client payments": ("client income", "clients", "invoices", "invoice payments", "client revenue"),
    "sales": ("shop sales", "product sales", "online sales"),
    "insurance": ("insurance premiums",),
}
# Everyday names for some merchants; used only for merchants present in the data.
MERCHANT_SYNONYMS: dict[str, tuple[str, ...]] = {
    "aws": ("amazon web services",),
    "microsoft": ("microsoft 365", "office 365"),
    "irs": ("internal revenue service",),
    "apple icloud": ("icloud",),
}
# Words for flights: the data's airlines when it has some (by their descriptions: data.py), else the
# travel category's synonyms take them
AIRLINE_WORDS = ("flights", "flight", "airfare", "airfares", "airlines", "airline", "plane tickets", "air travel")
# Words that mean a transaction type rather than a category or merchant.
TYPE_WORDS: dict[str, tuple[str, ...]] = {
    "refund": ("refunds", "refund", "refunded", "returns", "reimbursements", "money back"),
    "transfer": ("transfers", "transfer", "internal transfers"),
}
# First words too common to stand for a multi-word merchant on their own ("Blue Door Bistro" is not "blue").
COMMON_WORDS = frozenset("""
a an the my our all any big best blue black green red white city state national first new old main corner
office whole internal general united american global metro north south east west central home house golden
grand great little royal summit harbor park lee smith bank pine star sun moon open free fast good market
shop store meta""".split())
CORPORATE_SUFFIXES = ("llp", "llc", "inc", "inc.", "corp", "corp.", "corporation", "co", "co.", "ltd", "ltd.",
                      "company", "plc", "gmbh")
ACCOUNT_QUALIFIERS = ("business", "personal", "main", "joint", "company")


# Everyday words one letter away from a name in the data ("apply" / Apple, "user" / Uber): never read
# as a misspelt name. Fuzzy matching also skips words shorter than 5 letters.
NOT_TYPOS = frozenset("""
apply apples ample shall shelf smell spell sell slick stack black slacks snack cheval chevy dealt delta
delay della deals dealer media metal meter notice notion nation notions zooms adobes staple stable
stapler starch stars start stark started starts states statement stated station status statue
amazing amazed lifted lines linked united unite unity untied unit units hilly hilts hilton
banker bankers baked bakery baking means taxed client invoice launch
uber user users under upper udder order orders older folder figure finger fiery first lower lover
lyric lying flyer chase chased chaser cause chose chess dental rental mental denial gusty gutsy gust
carry canvas candy canal canoe mail mails maillot square spotty spotted spottily sport sports
""".split())
MAX_FUZZY_WORDS = 3


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance (a transposition counts 1), or limit + 1 once it exceeds limit."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = ca != cb
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]


def typo_limit(word: str) -> int:
    """Edits allowed for a misspelt name: none under 5 letters, 1 up to 7, 2 from 8."""
    return 0 if len(word) < 5 else 1 if len(word) < 8 else 2


@dataclass(frozen=True)
class Entity:
    kind: str  # category, merchant, account, type
    values: tuple[str, ...]  # names as they appear in the data (or the type); one alias may name several
    start: int
    end: int
    alias: str


def normalize(text: str) -> str:
    """Lower case, straight quotes, single spaces: what aliases are matched against."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    return re.sub(r"\s+", " ", text)


def _variants(name: str) -> set[str]:
    base = normalize(name)
    return {v for v in (base, base.replace(" & ", " and "), base.replace("&", " and ").replace("  ", " "),
                        base.replace("'", "")) if v}


def _plural_forms(word: str) -> set[str]:
    out = {word}
    if word.endswith("ies"):
        out.add(word[:-3] + "y")
    elif word.endswith("es") and word[:-2].endswith(("x", "s", "sh", "ch")):
        out.add(word[:-2])
    elif word.endswith("s") and not word.endswith("ss"):
        out.add(word[:-1])
    elif word.endswith("y"):
        out.add(word[:-1] + "ies")
    else:
        out.add(word + "s")
    return out


class Vocabulary:
    """Aliases -> (kind, names) for one data file. Full names are strong; derived aliases (plurals,
    first words, synonyms) are weak and never override a strong one."""

    def __init__(self, categories: Iterable[str] = (), merchants: Iterable[str] = (), accounts: Iterable[str] = (),
                 airlines: Iterable[str] = ()):
        self.categories = tuple(sorted(set(categories)))
        self.merchants = tuple(sorted(set(merchants)))
        self.accounts = tuple(sorted(set(accounts)))
        self._strong: dict[str, tuple[str, list[str]]] = {}
        self._weak: dict[str, tuple[str, list[str]]] = {}
        for kind, words in TYPE_WORDS.items():
            for word in words:
                self._add(word, TYPE, kind)
        for merchant in self.merchants:
            self._merchant_aliases(merchant)
        for airline in sorted(set(airlines) & set(self.merchants)):  # before the categories' synonyms
            for word in AIRLINE_WORDS:
                self._add(word, MERCHANT, airline, weak=True)
        for account in self.accounts:
            self._account_aliases(account)
        for category in self.categories:
            self._category_aliases(category)
        self.aliases: dict[str, tuple[str, tuple[str, ...]]] = {
            alias: (kind, tuple(names)) for alias, (kind, names) in {**self._weak, **self._strong}.items()}
        # Names a misspelling may stand for: merchant names and their distinctive first words.
        self._fuzzy: dict[tuple[str, int], list[str]] = {}
        for alias, (kind, _) in self.aliases.items():
            if kind == MERCHANT and typo_limit(alias.replace(" ", "")) and alias not in NOT_TYPOS:
                self._fuzzy.setdefault((alias[0], len(alias.split())), []).append(alias)
        ordered = sorted(self.aliases, key=len, reverse=True)
        self._pattern = re.compile(
            r"(?<![\w'&])(" + "|".join(re.escape(a) for a in ordered) + r")(?:'s)?(?![\w&])") if ordered else None

    def _add(self, alias: str, kind: str, name: str, *, weak: bool = False) -> None:
        alias = alias.strip()
        if len(alias) < 2:
            return
        table = self._weak if weak else self._strong
        if alias in table:
            existing_kind, names = table[alias]
            if existing_kind == kind and name not in names:
                names.append(name)  # e.g. "google" -> Google Ads and Google Workspace
            return
        table[alias] = (kind, [name])

    def _merchant_aliases(self, merchant: str) -> None:
        for variant in _variants(merchant):
            self._add(variant, MERCHANT, merchant)
        words = normalize(merchant).split()
        if len(words) > 1 and words[-1] in CORPORATE_SUFFIXES:
            self._add(" ".join(words[:-1]), MERCHANT, merchant, weak=True)
        for extra in MERCHANT_SYNONYMS.get(normalize(merchant), ()):
            self._add(extra, MERCHANT, merchant, weak=True)
        if len(words) > 1:  # "whole food" for Whole Foods
            for last in _plural_forms(words[-1]):
                self._add(" ".join([*words[:-1], last]), MERCHANT, merchant, weak=True)
        first = words[0] if words else ""
        if len(words) > 1 and len(first) >= 4 and first not in COMMON_WORDS:
            self._add(first, MERCHANT, merchant, weak=True)
            self._add(first.replace("'", ""), MERCHANT, merchant, weak=True)

    def _account_aliases(self, account: str) -> None:
        for variant in _variants(account):
            self._add(variant, ACCOUNT, account)
            self._add(variant + " account", ACCOUNT, account)
        words = normalize(account).split()
        if len(words) > 1 and words[0] in ACCOUNT_QUALIFIERS:
            rest = " ".join(words[1:])
            self._add(rest, ACCOUNT, account, weak=True)
            self._add(rest + " account", ACCOUNT, account, weak=True)
            if rest == "credit card":
                self._add("card", ACCOUNT, account, weak=True)

    def _category_aliases(self, category: str) -> None:
        key = normalize(category)
        if key in ("transfer", "transfers"):
            return  # the transfer type covers it
        for variant in _variants(category):
            self._add(variant, CATEGORY, category)
            words = variant.split()
            for last in _plural_forms(words[-1]):
                self._add(" ".join([*words[:-1], last]), CATEGORY, category, weak=True)
        for extra in CATEGORY_SYNONYMS.get(key, ()):
            self._add(extra, CATEGORY, category, weak=True)

    def find(self, text: str) -> list[Entity]:
        """Every alias in `text` (already normalized), leftmost-longest, without overlaps."""
        if self._pattern is None:
            return []
        found = []
        for m in self._pattern.finditer(text):
            kind, names = self.aliases[m.group(1)]
            found.append(Entity(kind, names, m.start(), m.end(), m.group(1)))
        found += self._misspelt(text, found)
        return sorted(found, key=lambda e: e.start)

    def _misspelt(self, text: str, found: list[Entity]) -> list[Entity]:
        """Merchants written with a small typo ("Starbuks", "amazn", "Chipotel"): runs
        of 1-3 words not already matched, within typo_limit edits of a name with the same first letter
        and the same number of words. Linear in the text: a few candidates per word."""
        words = [(m.start(), m.end(), m.group(0)) for m in re.finditer(r"[a-z][a-z'&.-]*", text)]
        taken = [(e.start, e.end) for e in found]
        out: list[Entity] = []
        for i in range(len(words)):
            for n in range(MAX_FUZZY_WORDS, 0, -1):
                if i + n > len(words):
                    continue
                start, end = words[i][0], words[i + n - 1][1]
                if any(start < e and s < end for s, e in taken):
                    continue
                phrase = " ".join(w for _, _, w in words[i:i + n])
                limit = typo_limit(phrase.replace(" ", ""))
                if not limit or phrase in NOT_TYPOS or phrase in self.aliases:
                    continue
                best = None
                for alias in self._fuzzy.get((phrase[0], n), ()):
                    distance = edit_distance(phrase, alias, min(limit, typo_limit(alias.replace(" ", ""))))
                    if distance <= min(limit, typo_limit(alias.replace(" ", ""))) and (best is None or distance < best[0]):
                        best = (distance, alias)
                if best is not None:
                    kind, names = self.aliases[best[1]]
                    out.append(Entity(kind, names, start, end, best[1]))
                    taken.append((start, end))
                    break
        return out


EMPTY = Vocabulary()
