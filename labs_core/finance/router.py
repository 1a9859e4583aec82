"""Is this chat message a question about the business's own transactions? (rules, no LLM)

Both errors cost: a captured message never reaches the model (it gets the exact answer, or "I could
not understand ..." with what can be computed), and a missed one lets the model answer a question
about the user's money with figures of its own. So general money questions ("what is compound
interest?"), prices in general, advice, news about the data's merchants (public companies) and
creative requests pass through, and a message is a data question when it asks about *our* money (a
first-person pronoun or one of the user's accounts with a money word), moves money between the
data's accounts, names something from the data with a counting word, uses a ledger phrase ("total
spend in 2024", "the priciest charge", "recurring payments"), or pairs a ledger word, a "$"/"k"
amount or compared names with a period the data covers. Measured in tests/labs_core/finance/
(router_set_v2.jsonl and two sets it was not tuned on; docs/finance.md has the figures).
"""

from __future__ import annotations

import re
from datetime import date

from labs_core.finance.entities import ACCOUNT, EMPTY, Vocabulary, normalize
from labs_core.finance.periods import find_periods

_ANY_DATE = date(2000, 1, 1)  # any reference date will do: only whether a period is named matters
MAX_CHARS = 400  # data questions are short; long messages are documents, code or instructions

CREATIVE = re.compile(r"\b(write|compose|draft|poem|poems|haiku|story|stories|song|lyrics|joke|jokes|essay|limerick|"
                      r"translate|translation|rap|rhyme|sonnet|tweet|slogan|email|letter|script|fiction|pretend|"
                      r"imagine|role-?play)\b")
CODE = re.compile(r"\b(python|javascript|sql|code|function|regex|excel formula|spreadsheet formula|pandas|script|"
                  r"api|json)\b")
ADVICE = re.compile(r"\b(how (?:do|can|should|could|would|might) (?:i|we|you|one|people)|how to|should (?:i|we)|tips|"
                    r"(?:do|does|will) (?:i|we) (?:need|have) to|when (?:do|should|must|can) (?:i|we)|"
                    r"advice|advise|ideas?|ways to|best way|recommend\w*|suggest\w*|help me (?:save|budget|plan|cut)|"
                    r"is it (?:worth|better|good|wise)|pros and cons|strategy|strategies|plan for)\b")
CONCEPT = re.compile(r"^(?:what(?: is|'s| are| does)|define|why (?:is|are|do|does)|who (?:is|was|founded)|"
                     r"when (?:was|did) \w+ (?:founded|start)|how (?:do|does|is|are)\b(?! (?:my|our)))\b"
                     r"|\b(?:explain|define|definition of|meaning of|what does .+ mean|difference between|"
                     r"tell me about|history of|describe)\b")
GENERAL_MONEY_TOPICS = re.compile(r"\b(stock|stocks|shares|crypto|bitcoin|inflation|interest rates?|mortgage rates?|"
                                  r"economy|recession|gdp|the market|markets|crisis|exchange rate|"
                                  r"salary negotiation|retire\w*|"
                                  r"loan|loans|credit score)\b")
# Prices of things in general, and what businesses in general should do: not about the data.
GENERAL_PRICE = re.compile(r"\bhow much (?:is|are|does|do|would|will|should|can) (?:a|an|one|the typical|the average|"
                           r"it cost|\w+ (?:usually|typically|normally))\b|\b(?:should|ought to|typical(?:ly)? for|"
                           r"usually|in general)\b")
# "tell me", "give me", "show me": the user, but not a sign that the question is about their money.
ME_VERBS = re.compile(r"\b(?:tell|give|show|help|let|remind) me\b")
# "income tax in the US": the country, not "us".
THE_US = re.compile(r"\bthe u\.?s\.?a?\.?(?!\w)")
PERSONAL = re.compile(r"\b(i|we|my|our|me|us|i've|we've|i'd|we'd|mine|ours|i'm|we're)\b")
MONEY = re.compile(r"\b(spend|spent|spending|expenses?|expenditures?|costs?|paid|pay|pays|paying|payments?|charges?|"
                   r"charged|bills?|purchases?|purchased|bought|buy|buying|income|revenue|earn|earned|earnings|made|received|"
                   r"profit|profits|net|cash ?flow|money|finances|financial|transactions?|subscriptions?|recurring|"
                   r"refunds?|refunded|transfers?|sales|sale|invoices?|outgoings|budget|saved|save|fees|orders?|"
                   r"profitable|profitability|margins?|burn rate|break even|in the (?:red|black))\b")
# "how much did we make": income, though "make" alone is not a money word ("did we make the deadline");
# "how much cash did we burn" (not calories).
MADE_MONEY = re.compile(r"\bhow much (?:money )?(?:did|do|have|has|will|would|could) (?:we|i|you) "
                        r"(?:make|made|bring in|lose|lost)\b"
                        r"|\b(?:cash|money) (?:did|do|have|has) (?:we|i) burn|\bburn(?:ed|t|ing)? (?:through )?(?:our |my |the )?"
                        r"(?:cash|money)\b")
# "our best month", "who is our biggest client", "how many customers do we have": rankings and counts
# of the data's months or payers, though no money word is said
RANKED_TIME = re.compile(r"\b(?:best|worst|strongest|weakest)\s+(?:month|quarter|year|week|day)s?\b")
PAYERS = re.compile(r"\b(?:(?:biggest|largest|top|best|main|most valuable|highest[- ]paying)\s+(?:\d+\s+)?"
                    r"(?:customers?|clients?|vendors?|suppliers?)|how many (?:different |distinct |unique |paying )?"
                    r"(?:customers|clients|vendors|suppliers))\b")
# Time spent is not money spent.
SPENT_TIME = re.compile(r"\bspen[dt]\w* (?:(?:the|a|an|my|our|some|more|less|too much|all|most of|few|several|whole|"
                        r"entire|way too much|so much|"
                        r"\d+|two|three|four|five) )+(?:weekend|day|days|time|hours?|night|nights|evenings?|"
                        r"mornings?|afternoons?|summer|holidays?|vacation|life|energy|effort|years?|months?|weeks?)\b"
                        r"(?! ago| of (?:the )?(?:\d|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))"
                        r"|\bspen[dt]\w* (?:time|hours|ages|forever)\b"
                        r"|\bpa(?:y|id|ying|ys) (?:\w+ ){0,2}"
                        r"(?:attention|a visit|a compliment|tribute|respects?|heed)\b")
# The ledger's own figures, as a change is asked about ("spending month over month", "the yoy change in revenue")
_LEDGER_MEASURE = r"(?:spending|income|revenue|expenses|profit|sales|costs)"
LEDGER_PHRASES = re.compile(r"\b(transactions?|total (?:spend|spending|expenses|income|revenue|costs?)|"
                            r"total of (?:all )?(?:our |my |the )?(?:transfers|payments|expenses|spending|income|"
                            r"revenue|sales|refunds|purchases|charges|fees)|"
                            r"(?:largest|biggest|smallest|top|highest|most expensive|priciest|costliest|cheapest) "
                            r"(?:\d+ )?(?:single )?(?:expenses?|purchases?|transactions?|payments?|charges?|bills?|"
                            r"merchants?|vendors?|categories|clients?)|spending by|expenses by|income by|"
                            r"revenue by|financial summary|recurring (?:payments?|charges?|expenses?)|"
                            r"unusual (?:transactions?|expenses?|charges?|payments?)|net income|cash ?flow|"
                            r"(?:moved?|moving|transfer(?:red)?|shifted|swept) (?:\w+ ){0,3}between (?:our |my |the )?"
                            r"(?:own )?accounts|"
                            r"monthly (?:spend|spending|expenses|income|average)|"
                            r"(?:percent(?:age)?|share|proportion) of (?:our |my |the |total )?(?:expenses|spending|"
                            r"income|revenue|costs|sales)|"
                            r"how (?:is|are) (?:my|our|the) (?:business|studio|company|finances) doing|"
                            r"(?:income|revenue) (?:vs\.?|versus|and|against|compared to) "
                            r"(?:expenses|spending|costs)|"
                            + _LEDGER_MEASURE + r" (?:month over month|year over year|yoy|mom))\b")
# "what's the month over month change in revenue": opens like a definition, but only a ledger has one
LEDGER_CHANGE = re.compile(r"\b(?:month over month|month-over-month|year over year|year-over-year|yoy|mom) "
                           r"(?:change|growth|increase|decrease|difference)s? in (?:our |my |the )?" + _LEDGER_MEASURE
                           + r"\b")
# Someone else's money: "the total spend of the US government", "the biggest expense for small businesses".
THIRD_PARTY = re.compile(r"\b(?:of|for|by|in) (?:the |a |an |most |many |small |big |large |typical |average |other |"
                         r"american |british |)?(?:us|u\.s\.?|uk|government|governments|country|countries|states?|"
                         r"compan(?:y|ies)|businesses|startups|firms|industry|industries|people|americans|households|"
                         r"families|consumers|restaurants?|baker(?:y|ies)|sector|economy|world)\b")
# Money words specific enough to make "<word> ... <period>" a data question on their own.
LEDGER_MONEY = re.compile(r"\b(spend|spent|spending|expenses|income|revenue|profit|profits|net|cash ?flow|"
                          r"transactions?|refunds?|transfers|purchases|earnings|outgoings|payments|charges|bills|"
                          r"fees|money (?:in|out)|money (?:went|came|moved)|went out|came in|inflows?|outflows?|"
                          r"c[ao]mes? out of|br(?:ing|ought|ings) in)\b")
MOVE = re.compile(r"\b(mov(?:e|ed|es|ing)|shift(?:ed|s)?|swe(?:ep|pt|eps)|put|transferr?(?:ed|ing)?|"
                  r"pa(?:y|id) (?:off|down|towards?))\b")
VERSUS = re.compile(r"\b(vs\.?|versus|compared? (?:to|with)|against)(?=\s|$)")
AMOUNT = re.compile(r"\b(?:over|above|under|below|more than|less than|at least|exceeding)\s+\$?\d")
CURRENCY_AMOUNT = re.compile(r"(?:\$|\busd ?)\d[\d,]*(?:\.\d+)?k?\b|\b\d[\d,]*(?:\.\d+)?k? ?(?:usd|dollars|bucks)\b")
SUPERLATIVE = re.compile(r"\b(largest|biggest|highest|smallest|lowest|most expensive|priciest|cheapest|costliest|"
                         r"first|last|latest|average|typical|monthly|total)\b")
# "our cash balance", "the balance of the checking account": the data's to answer (it says it has none).
BALANCE = re.compile(r"\b(balances?|cash on hand|cash position|runway|how long (?:will|would|can|does) (?:our|my|the) "
                     r"(?:cash|money) last)\b")
# "which subscriptions increased in price?": the data's recurring charges, though no "our" is said
PRICE_OF_RECURRING = re.compile(r"\b(?:subscriptions?|recurring (?:payments?|charges?|bills?)|bills)\b.*\b(?:"
                                r"increas\w*|went up|gone up|go up|raised|more expensive|changed? (?:in )?price|"
                                r"price (?:increase|change|rise|hike)s?)\b")
# "the 3 most expensive months in 2025": the data's months ranked (with a period the data covers)
RANKED_MONTHS = re.compile(r"\b(?:most expensive|costliest|priciest|biggest|highest|lowest|cheapest|top|busiest)\s+"
                           r"(?:\d+\s+)?(?:(?:spending|revenue|income|sales)\s+)?(?:months|quarters)\b")
# "show me all payments to Lee Legal": rows of a name from the data
SHOW_ROWS = re.compile(r"\b(?:show|list|display|itemi[sz]e)\b")
# "the last payment to AWS", "Acme's latest invoice": one of a data name's rows, by date.
ROW_BY_DATE = re.compile(r"\b(?:last|latest|most recent|first|earliest)\s+(?:payments?|charges?|purchases?|"
                         r"transactions?|invoices?|bills?|orders?|refunds?|deposits?|sales?)\b")
COUNTING = re.compile(r"\b(how much|how many (?:[\w'&]+ ){0,2}(?:transactions?|times|purchases?|orders?|visits?|"
                      r"rides?|charges?|payments?|refunds?|bills?|subscriptions?|trips?|meals?|sales?|invoices?|"
                      r"transfers?|expenses?|flights?|deliveries)|how often|total|spend|spent|spending|paid|pay|cost|costs|charges?|"
                      r"transactions?|purchases?|bills?|refunds?|subscriptions?|income|revenue|earned|received|"
                      r"average|amount)\b")


def is_finance_question(text: str, vocabulary: Vocabulary | None,
                        span: tuple[date, date] | None = None) -> bool:
    """True when `text` asks about the transactions data (see the module docstring for the rules).
    `span` (the data's first and last dates) lets "<money word> in <period>" count only for periods
    the data covers: "income in 2024" is a data question, "income tax in 1913" is not."""
    t = normalize(text).strip()
    if not t or len(t) > MAX_CHARS:
        return False
    if CREATIVE.search(t) or CODE.search(t):
        return False
    asks_amount = re.search(r"\b(how much|how many)\b", t) is not None
    if ADVICE.search(t) and not asks_amount:
        return False
    if ADVICE.search(t) and re.search(r"\bshould\b", t):
        return False  # "how much should I save" is advice, not data
    personal = PERSONAL.search(THE_US.sub(" ", ME_VERBS.sub(" ", t))) is not None
    vocabulary = vocabulary or EMPTY
    entities = vocabulary.find(t)
    # "the savings account", "our checking": the user's own account, not accounts in general.
    accounts = any(e.kind == ACCOUNT and re.search(r"\b(?:the|our|my)\s+$", t[:e.start]) for e in entities)
    money_text = SPENT_TIME.sub(" ", t)
    money = MONEY.search(money_text) is not None or MADE_MONEY.search(t) is not None
    in_data = _names_data_period(t, span)
    # A name from the data, a ledger word and a period the data covers: "what's the net transfer
    # flow for PayPal in 2024?" asks about the data even though it opens like a definition.
    specific = bool(entities) and in_data and LEDGER_MONEY.search(money_text) is not None
    # "what is the total spend in 2024", "what's the total of all transfers to savings": a ledger phrase
    # with a period the data covers or one of its names opens like a definition but asks for figures.
    specific = specific or (LEDGER_PHRASES.search(money_text) is not None and (in_data or bool(entities))
                            and not GENERAL_PRICE.search(t) and not THIRD_PARTY.search(t))
    specific = specific or (LEDGER_CHANGE.search(t) is not None and not THIRD_PARTY.search(t))
    if not (personal or specific or (accounts and money)) and (CONCEPT.search(t) or GENERAL_PRICE.search(t)):
        return False
    if GENERAL_MONEY_TOPICS.search(t) and not personal:
        return False
    if (personal or accounts) and money:
        return True
    if MOVE.search(t) and any(e.kind == ACCOUNT for e in entities) and not is_general(t):
        return True  # "how much did we move into savings", "what did we shift from checking to the card"
    if LEDGER_PHRASES.search(money_text) or LEDGER_CHANGE.search(t):
        return True
    if entities and COUNTING.search(money_text):
        return True
    if PRICE_OF_RECURRING.search(t) and not (THIRD_PARTY.search(t) or ADVICE.search(t) or GENERAL_MONEY_TOPICS.search(t)
                                             or re.match(r"\s*why\b", t)):
        return True  # "which subscriptions increased in price?"
    if RANKED_MONTHS.search(t) and in_data and not THIRD_PARTY.search(t):
        return True  # "what were the 3 most expensive months in 2025?"
    if entities and money and SHOW_ROWS.search(t):
        return True  # "show me all payments to Lee Legal"
    if entities and ROW_BY_DATE.search(t):
        return True  # "when was the last payment to AWS?"
    if personal and (RANKED_TIME.search(t) or PAYERS.search(t)) and not ADVICE.search(t):
        return True  # "what was our best month ever?", "who is our biggest client?"
    if BALANCE.search(t) and (accounts or personal) and not ADVICE.search(t):
        return True  # "what is our cash balance?": a model would make one up
    if money and AMOUNT.search(t):
        return True  # "any charges over $2,500 this year?"
    if CURRENCY_AMOUNT.search(t) and in_data:
        return True  # "anything above $10k in 2024?"
    if LEDGER_MONEY.search(money_text) and in_data:
        return True  # "income in 2024", "what came out of PayPal in 2025?"
    if in_data and (accounts or (len(entities) >= 2 and VERSUS.search(t))):
        return True  # "Uber vs Lyft last year"; a merchant and a year alone may be news ("what did Apple release")
    if entities and in_data and money and SUPERLATIVE.search(t):
        return True  # "biggest Amazon order in 2025"
    if personal and entities and SUPERLATIVE.search(t):
        return True  # "our priciest meal", "our typical monthly rent"
    return False


def is_general(text: str) -> bool:
    """A definition, advice, creative or code request, or a general money topic: never about the data
    on its own, whatever names it contains."""
    t = normalize(text).strip()
    return any(p.search(t) for p in (CREATIVE, CODE, ADVICE, CONCEPT, GENERAL_MONEY_TOPICS, GENERAL_PRICE))


def _names_data_period(t: str, span: tuple[date, date] | None) -> bool:
    """A period the data covers (any period when the span is unknown)."""
    reference = span[1] if span else _ANY_DATE
    for found in find_periods(t, reference):
        if span is None or (found.period.start <= span[1] and found.period.end >= span[0]):
            return True
    return False
