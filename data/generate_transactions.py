"""Generates data/all_transactions.csv: two years (2024-2025) of a small design studio's transactions.

Standard library only and seeded, so that running it again gives the committed file byte for byte
(tests/labs_core/finance/test_data_file.py checks this). Amounts are built in integer cents so that
no float rounding can creep into the file. data/README.md documents the columns and the sign convention.

    python data/generate_transactions.py                 # rewrites data/all_transactions.csv
    python data/generate_transactions.py --out /tmp/x.csv
"""

from __future__ import annotations

import argparse
import calendar
import csv
import random
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

SEED = 20240101
START = date(2024, 1, 1)
END = date(2025, 12, 31)
CURRENCY = "USD"
COLUMNS = ("date", "description", "merchant", "category", "amount", "account", "currency", "type")

CHECKING = "Business Checking"
CARD = "Business Credit Card"
SAVINGS = "Business Savings"
PAYPAL = "PayPal"

# Seasonality of client work: busy autumn and spring, quiet summer and late December.
INCOME_SEASON = {1: 0.9, 2: 0.95, 3: 1.1, 4: 1.1, 5: 1.0, 6: 0.9, 7: 0.7, 8: 0.75, 9: 1.05, 10: 1.2, 11: 1.25,
                 12: 1.15}
# Electricity: air conditioning in summer, heating in winter.
POWER_SEASON = {1: 1.5, 2: 1.4, 3: 1.1, 4: 0.9, 5: 0.9, 6: 1.3, 7: 1.7, 8: 1.7, 9: 1.2, 10: 0.9, 11: 1.1, 12: 1.4}


@dataclass(frozen=True)
class Row:
    day: date
    description: str
    merchant: str
    category: str
    cents: int  # signed: income positive, spending negative
    account: str
    type: str

    def as_csv(self) -> list[str]:
        sign = "-" if self.cents < 0 else ""
        whole, frac = divmod(abs(self.cents), 100)
        return [self.day.isoformat(), self.description, self.merchant, self.category, f"{sign}{whole}.{frac:02d}",
                self.account, CURRENCY, self.type]


class Ledger:
    """Collects rows; spending and refunds get their sign here so that callers pass magnitudes."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.rows: list[Row] = []

    def expense(self, day: date, description: str, merchant: str, category: str, cents: int, account: str) -> None:
        if START <= day <= END:
            self.rows.append(Row(day, description, merchant, category, -abs(cents), account, "expense"))

    def income(self, day: date, description: str, merchant: str, category: str, cents: int, account: str) -> None:
        if START <= day <= END:
            self.rows.append(Row(day, description, merchant, category, abs(cents), account, "income"))

    def refund(self, day: date, description: str, merchant: str, category: str, cents: int, account: str) -> None:
        if START <= day <= END:
            self.rows.append(Row(day, description, merchant, category, abs(cents), account, "refund"))

    def transfer(self, day: date, source: str, target: str, cents: int, what: str = "Transfer") -> None:
        if START <= day <= END:
            self.rows.append(Row(day, f"{what} to {target}", "Internal Transfer", "Transfer", -abs(cents), source,
                                 "transfer"))
            self.rows.append(Row(day, f"{what} from {source}", "Internal Transfer", "Transfer", abs(cents), target,
                                 "transfer"))

    def ref(self, n: int = 6) -> str:
        return "".join(self.rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(n))


def months() -> list[tuple[int, int]]:
    return [(y, m) for y in range(START.year, END.year + 1) for m in range(1, 13)]


def day_in(year: int, month: int, day: int) -> date:
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


def weekday_before(d: date) -> date:
    """Payroll and ACH runs move to the Friday before a weekend."""
    while d.weekday() >= 5:
        d -= timedelta(days=1)
    return d


def every_day() -> list[date]:
    return [START + timedelta(days=i) for i in range((END - START).days + 1)]


def cents(rng: random.Random, low: float, high: float) -> int:
    return rng.randint(round(low * 100), round(high * 100))


def subscriptions(book: Ledger) -> None:
    """Fixed monthly and annual charges (software, rent, insurance, phone, ...)."""
    rng = book.rng
    monthly = [
        # merchant, category, description, day, cents 2024, cents 2025, account, first, last (inclusive months)
        ("Adobe", "Software", "ADOBE *CREATIVE CLOUD", 5, 8999, 8999, CARD, None, None),
        ("Google Workspace", "Software", "GOOGLE *WORKSPACE", 1, 3600, 4200, CARD, None, None),
        ("Slack", "Software", "SLACK T0123 PRO", 10, 2625, 2625, CARD, None, None),
        ("Zoom", "Software", "ZOOM.US 888-799-9666", 12, 1599, 1599, CARD, None, None),
        ("Figma", "Software", "FIGMA MONTHLY", 15, 4500, 4500, CARD, None, None),
        ("Dropbox", "Software", "DROPBOX*PLUS", 8, 1999, 1999, CARD, None, (2024, 9)),
        ("GitHub", "Software", "GITHUB INC", 3, 2100, 2100, CARD, None, None),
        ("QuickBooks", "Software", "INTUIT *QBOOKS ONLINE", 20, 9000, 9900, CARD, None, None),
        ("Notion", "Software", "NOTION LABS INC", 17, 2000, 2000, CARD, (2024, 4), None),
        ("Apple iCloud", "Software", "APPLE.COM/BILL ICLOUD 2TB", 11, 999, 999, CARD, None, None),
        ("Spotify", "Software", "SPOTIFY USA BUSINESS", 26, 1699, 1899, CARD, None, None),
        ("Canva", "Software", "CANVA* PRO SUBSCRIPTION", 14, 1499, 1499, CARD, (2025, 2), None),
        ("Mailchimp", "Marketing", "MAILCHIMP *MONTHLY", 6, 3500, 3500, CARD, None, None),
        ("LinkedIn", "Marketing", "LINKEDIN PREMIUM", 21, 5999, 5999, CARD, None, None),
        ("Comcast Business", "Telecom", "COMCAST BUSINESS INTERNET", 9, 11999, 11999, CHECKING, None, None),
        ("Verizon Wireless", "Telecom", "VERIZON WIRELESS PAYMENT", 24, 8500, 8500, CHECKING, None, None),
        ("Hiscox", "Insurance", "HISCOX BUSINESS INSURANCE", 18, 14250, 14975, CHECKING, None, None),
        ("State Farm", "Insurance", "STATE FARM AUTO POLICY", 22, 11800, 11800, CHECKING, None, None),
        ("Parkside Properties", "Rent", "PARKSIDE PROPERTIES STUDIO RENT", 1, 245000, 255000, CHECKING, None, None),
        ("Gusto", "Payroll", "GUSTO PAYROLL SERVICE FEE", 2, 4600, 4600, CHECKING, None, None),
    ]
    for merchant, category, description, dom, c24, c25, account, first, last in monthly:
        for year, month in months():
            if first and (year, month) < first or last and (year, month) > last:
                continue
            book.expense(day_in(year, month, dom), description, merchant, category, c24 if year == 2024 else c25,
                         account)
    # Annual charges.
    for year in (2024, 2025):
        book.expense(date(year, 1, 14), "MICROSOFT*365 BUSINESS ANNUAL", "Microsoft", "Software", 9999, CARD)
        book.expense(date(year, 3, 3), "HISCOX CYBER POLICY ANNUAL", "Hiscox", "Insurance", 78000, CHECKING)
        book.expense(date(year, 2, 1), "CHASE INK ANNUAL FEE", "Chase", "Bank Fees", 9500, CARD)
        book.expense(date(year, 6, 30), "OREILLY MEDIA ANNUAL", "O'Reilly Media", "Education", 49900, CARD)
        book.expense(date(year, 11, 4), "GODADDY DOMAINS RENEWAL", "GoDaddy", "Software", cents(rng, 180, 240), CARD)
    # AWS bills vary with usage; one misconfigured month in August 2025 is a genuine outlier.
    for year, month in months():
        amount = 341287 if (year, month) == (2025, 8) else cents(rng, 78, 165)
        book.expense(day_in(year, month, 2), "AMAZON WEB SERVICES AWS.AMAZON.CO", "AWS", "Software", amount, CARD)


def payroll_and_taxes(book: Ledger) -> None:
    rng = book.rng
    for year, month in months():
        net = 215000 if year == 2024 else 230000
        for dom in (15, calendar.monthrange(year, month)[1]):
            book.expense(weekday_before(date(year, month, dom)), "GUSTO NET PAY J.RIVERA", "Gusto", "Payroll", net,
                         CHECKING)
        # Bank service fee, waived in months with a high balance.
        if rng.random() < 0.6:
            book.expense(day_in(year, month, 28), "MONTHLY SERVICE FEE", "Chase", "Bank Fees", 1500, CHECKING)
        if rng.random() < 0.25:
            book.expense(day_in(year, month, rng.randint(3, 26)), "OUTGOING WIRE FEE", "Chase", "Bank Fees", 2500,
                         CHECKING)
        # Interest on savings.
        book.income(day_in(year, month, 31), "INTEREST PAYMENT", "Chase", "Interest", cents(rng, 8, 34), SAVINGS)
    # Estimated taxes: federal and state, four times a year.
    for year, month, dom in ((2024, 1, 16), (2024, 4, 15), (2024, 6, 17), (2024, 9, 16), (2025, 1, 15),
                             (2025, 4, 15), (2025, 6, 16), (2025, 9, 15)):
        book.expense(date(year, month, dom), "IRS USATAXPYMT ESTIMATED", "IRS", "Taxes", cents(rng, 3200, 4100),
                     CHECKING)
        book.expense(date(year, month, dom), "STATE TAX BOARD EST PMT", "State Tax Board", "Taxes",
                     cents(rng, 850, 1050), CHECKING)
    # The accountant: quarterly bookkeeping and the yearly tax return.
    for year in (2024, 2025):
        for month in (1, 4, 7, 10):
            book.expense(date(year, month, 25), "BAKER & CO CPA BOOKKEEPING", "Baker & Co CPA",
                         "Professional Services", 45000, CHECKING)
        book.expense(date(year, 3, 28), "BAKER & CO CPA TAX RETURN", "Baker & Co CPA", "Professional Services",
                     185000, CHECKING)


def utilities(book: Ledger) -> None:
    rng = book.rng
    for year, month in months():
        base = rng.uniform(105, 135) * POWER_SEASON[month]
        book.expense(day_in(year, month, 12), "CITY POWER & LIGHT", "City Power & Light", "Utilities",
                     round(base * 100), CHECKING)
        if month % 2 == 0:
            book.expense(day_in(year, month, 19), "METRO WATER DISTRICT", "Metro Water", "Utilities",
                         cents(rng, 38, 62), CHECKING)


def variable_spending(book: Ledger) -> None:
    """Day-to-day purchases with weekday and seasonal patterns."""
    rng = book.rng
    for day in every_day():
        weekday = day.weekday() < 5
        december = day.month == 12
        # Coffee: most working days.
        if rng.random() < (0.85 if weekday else 0.45):
            book.expense(day, f"STARBUCKS STORE {rng.randint(10000, 19999)}", "Starbucks", "Meals",
                         cents(rng, 3.95, 14.50), CARD)
        # Lunches and client meals.
        if weekday and rng.random() < (0.6 if december else 0.45):
            merchant = rng.choice(("Chipotle", "Corner Deli", "Sakura Sushi", "Blue Door Bistro", "DoorDash"))
            low, high = {"Chipotle": (9, 32), "Corner Deli": (8, 24), "Sakura Sushi": (24, 95),
                         "Blue Door Bistro": (38, 140), "DoorDash": (18, 65)}[merchant]
            description = {"Chipotle": "CHIPOTLE ONLINE", "Corner Deli": "CORNER DELI & MARKET",
                           "Sakura Sushi": "SAKURA SUSHI BAR", "Blue Door Bistro": "BLUE DOOR BISTRO",
                           "DoorDash": f"DOORDASH*{book.ref(5)}"}[merchant]
            book.expense(day, description, merchant, "Meals", cents(rng, low, high), CARD)
        # Rides.
        if rng.random() < (0.4 if weekday else 0.15):
            merchant = "Uber" if rng.random() < 0.7 else "Lyft"
            book.expense(day, f"{merchant.upper()} *TRIP {book.ref(4)}", merchant, "Travel", cents(rng, 9, 48), CARD)
            if rng.random() < 0.03:
                book.refund(day + timedelta(days=2), f"{merchant.upper()} *TRIP REFUND", merchant, "Travel",
                            cents(rng, 5, 15), CARD)
        # Snacks and coffee beans for the studio.
        if day.weekday() in (0, 3) and rng.random() < 0.85:
            book.expense(day, "WHOLE FOODS MARKET #10432", "Whole Foods", "Meals", cents(rng, 18, 96), CARD)
        # Parking downtown on client visits.
        if weekday and rng.random() < 0.25:
            book.expense(day, f"PARKMOBILE {rng.randint(100000, 999999)}", "ParkMobile", "Travel",
                         cents(rng, 3, 22), CARD)
        # Fuel, about weekly.
        if rng.random() < 0.2:
            merchant = "Shell" if rng.random() < 0.6 else "Chevron"
            book.expense(day, f"{merchant.upper()} OIL {rng.randint(1000, 9999)}", merchant, "Fuel",
                         cents(rng, 38, 74), CARD)
        # Office supplies, with returns.
        if weekday and rng.random() < 0.3:
            merchant = rng.choices(("Amazon", "Staples", "Office Depot"), weights=(6, 2, 1))[0]
            amount = cents(rng, 11, 160)
            description = {"Amazon": f"AMZN Mktp US*{book.ref(6)}", "Staples": "STAPLES STORE 0417",
                           "Office Depot": "OFFICE DEPOT #2291"}[merchant]
            book.expense(day, description, merchant, "Office Supplies", amount, CARD)
            if rng.random() < 0.07:
                book.refund(day + timedelta(days=rng.randint(4, 15)), f"{merchant.upper()} RETURN CREDIT", merchant,
                            "Office Supplies", amount, CARD)
        # Shipping client deliverables and prints.
        if weekday and rng.random() < 0.07:
            merchant = rng.choice(("FedEx", "UPS", "USPS"))
            book.expense(day, f"{merchant.upper()} {rng.randint(100000, 999999)}", merchant, "Shipping",
                         cents(rng, 8, 68), CARD)
        # Freelancers on Upwork, busier in the high season.
        if weekday and rng.random() < 0.035 * INCOME_SEASON[day.month]:
            book.expense(day, f"UPWORK -{rng.randint(100000000, 999999999)}", "Upwork", "Professional Services",
                         cents(rng, 150, 900), CARD)
        # Stock photos and fonts.
        if weekday and rng.random() < 0.03:
            book.expense(day, "SHUTTERSTOCK IMAGES", "Shutterstock", "Software", cents(rng, 9, 49), CARD)


def marketing(book: Ledger) -> None:
    rng = book.rng
    for year, month in months():
        push = 1.6 if month in (10, 11) else 1.0
        book.expense(day_in(year, month, 28), "GOOGLE *ADS", "Google Ads", "Marketing",
                     round(rng.uniform(140, 320) * push * 100), CARD)
        if month in (3, 9, 10, 11):
            book.expense(day_in(year, month, rng.randint(5, 25)), "META ADS FACEBK", "Meta Ads", "Marketing",
                         cents(rng, 120, 480), CARD)
        if rng.random() < 0.3:
            book.expense(day_in(year, month, rng.randint(2, 27)), "VISTAPRINT ORDER", "Vistaprint", "Marketing",
                         cents(rng, 35, 210), CARD)


def travel_and_equipment(book: Ledger) -> None:
    """Conference trips (spring and autumn), hardware purchases, and the genuine outliers."""
    rng = book.rng
    trips = [(2024, 3, 11), (2024, 4, 22), (2024, 10, 7), (2024, 11, 12), (2025, 3, 17), (2025, 4, 28),
             (2025, 6, 9), (2025, 10, 13), (2025, 11, 10)]
    for year, month, dom in trips:
        start = date(year, month, dom)
        airline = rng.choice(("Delta", "United"))
        booked = start - timedelta(days=rng.randint(18, 40))
        fare = cents(rng, 280, 640)
        book.expense(booked, f"{airline.upper()} AIR {rng.randint(1000000, 9999999)}", airline, "Travel", fare, CARD)
        if (year, month) == (2025, 6):  # trip cancelled: the fare comes back, no hotel
            book.refund(booked + timedelta(days=9), f"{airline.upper()} AIR REFUND", airline, "Travel", fare, CARD)
            continue
        hotel = rng.choice(("Marriott", "Hilton", "Airbnb"))
        nights = rng.randint(2, 4)
        book.expense(start + timedelta(days=nights), f"{hotel.upper()} {book.ref(5)}", hotel, "Travel",
                     nights * cents(rng, 165, 260), CARD)
    # Equipment.
    for day, merchant, description, amount in (
            (date(2024, 2, 20), "Apple", "APPLE STORE R102 MACBOOK PRO", 349900),
            (date(2024, 5, 7), "Dell", "DELL MONITOR U2723QE", 62999),
            (date(2024, 9, 18), "Best Buy", "BEST BUY 00012", 18999),
            (date(2025, 1, 27), "B&H Photo", "B&H PHOTO 800-606-6969", 124500),
            (date(2025, 4, 3), "Apple", "APPLE.COM/US IPAD PRO", 109900),
            (date(2025, 9, 22), "Best Buy", "BEST BUY 00012", 27999)):
        book.expense(day, description, merchant, "Equipment", amount, CARD)
    # Genuine outliers against a merchant's own history.
    book.expense(date(2024, 6, 11), "AMZN Mktp US*STANDDESK", "Amazon", "Office Supplies", 124999, CARD)
    book.expense(date(2024, 10, 8), "DELTA AIR 0062145593 INTL", "Delta", "Travel", 198040, CARD)
    book.expense(date(2025, 11, 28), "BLUE DOOR BISTRO TEAM DINNER", "Blue Door Bistro", "Meals", 115000, CARD)
    for day, amount in ((date(2024, 8, 14), 38000), (date(2025, 2, 12), 42500), (date(2025, 5, 19), 420000)):
        book.expense(day, "LEE LEGAL LLP RETAINER", "Lee Legal LLP", "Professional Services", amount, CHECKING)
    # A one-off software refund.
    book.refund(date(2025, 1, 9), "ADOBE *REFUND", "Adobe", "Software", 8999, CARD)


CLIENTS = (
    # name, typical invoice range in dollars, invoices per month
    ("Acme Corp", (1800, 4200), 1.0),
    ("Northwind Traders", (900, 2600), 0.9),
    ("Globex Corporation", (2200, 5500), 0.6),
    ("Initech", (700, 1900), 0.8),
    ("Bluebird Bakery", (350, 1100), 0.5),
    ("Harbor Dental", (500, 1500), 0.6),
    ("Summit Realty", (650, 2200), 0.7),
    ("Pinecrest Schools", (1200, 3000), 0.4),
)


PRODUCTS = (("BRAND KIT TEMPLATE", 19, 39), ("UI ICON PACK", 12, 24), ("LOGO DESIGN COURSE", 49, 79),
            ("PITCH DECK TEMPLATE", 15, 29))


def income(book: Ledger) -> None:
    rng = book.rng
    invoice = 1040
    for year, month in months():
        season = INCOME_SEASON[month]
        for client, (low, high), rate in CLIENTS:
            count = sum(1 for _ in range(3) if rng.random() < rate * season / 3 * 1.2)
            for _ in range(count):
                invoice += 1
                day = weekday_before(day_in(year, month, rng.randint(1, 28)))
                book.income(day, f"ACH CREDIT {client.upper()} INV-{invoice}", client, "Client Payments",
                            cents(rng, low, high), CHECKING)
    # The year's largest project, paid in December 2025.
    book.income(date(2025, 12, 15), "WIRE IN GLOBEX CORPORATION REBRAND", "Globex Corporation", "Client Payments",
                2850000, CHECKING)
    for day in every_day():
        # Template shop sales paid out by Stripe on business days.
        if day.weekday() < 5 and rng.random() < 0.9:
            book.income(day, f"STRIPE TRANSFER ST-{book.ref(8)}", "Stripe", "Sales",
                        round(rng.uniform(25, 260) * INCOME_SEASON[day.month] * 100), CHECKING)
        # Course and template sales on Gumroad, paid into PayPal one sale at a time.
        for _ in range(rng.choices((0, 1, 2, 3, 4, 5), weights=(1, 3, 4, 4, 3, 2))[0]):
            product, low, high = rng.choice(PRODUCTS)
            book.income(day, f"GUMROAD SALE {product}", "Gumroad", "Sales",
                        round(rng.uniform(low, high) * INCOME_SEASON[day.month] * 100), PAYPAL)


def transfers(book: Ledger) -> None:
    """Moves between own accounts: savings, the card's monthly payment, PayPal sweeps."""
    card_spend: dict[tuple[int, int], int] = {}
    for row in book.rows:
        if row.account == CARD and row.type in ("expense", "refund"):
            key = (row.day.year, row.day.month)
            card_spend[key] = card_spend.get(key, 0) - row.cents
    paypal: dict[tuple[int, int], int] = {}
    for row in book.rows:
        if row.account == PAYPAL:
            key = (row.day.year, row.day.month)
            paypal[key] = paypal.get(key, 0) + row.cents
    for year, month in months():
        book.transfer(day_in(year, month, 5), CHECKING, SAVINGS, 100000 if year == 2024 else 150000)
        previous = (year - 1, 12) if month == 1 else (year, month - 1)
        if previous in card_spend:
            book.transfer(day_in(year, month, 7), CHECKING, CARD, card_spend[previous], "Card payment")
        if previous in paypal:
            book.transfer(day_in(year, month, 3), PAYPAL, CHECKING, paypal[previous], "PayPal sweep")


def generate(seed: int = SEED) -> list[Row]:
    book = Ledger(random.Random(seed))
    subscriptions(book)
    payroll_and_taxes(book)
    utilities(book)
    variable_spending(book)
    marketing(book)
    travel_and_equipment(book)
    income(book)
    transfers(book)
    # Sort by date only; Python's sort is stable, so rows of one day keep their generation order.
    return sorted(book.rows, key=lambda row: row.day)


def write(rows: list[Row], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(row.as_csv() for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("all_transactions.csv"))
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    rows = generate(args.seed)
    write(rows, args.out)
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
