"""Is this chat message a question about the business's own transactions? (rules, no LLM)

Precision matters more than recall here: a captured message never reaches the model, so general
money questions ("what is a budget?"), advice ("how can I save more?") and creative requests
("write a poem about money") must pass through. A message is a data question when it asks about
*our* money (a first-person pronoun with a money word), names something from the data (a merchant,
category or account) together with a money or counting word, or uses a phrase that only makes sense
about a ledger ("total spend in 2024", "largest expense", "recurring payments").
"""

from __future__ import annotations

import re
from datetime import date

from labs_core.finance.entities import EMPTY, Vocabulary, normalize
from labs_core.finance.periods import find_periods

_ANY_DATE = date(2000, 1, 1)  # any reference date will do: only whether a period is named matters
MAX_CHARS = 400  # data questions are short; long messages are documents, code or instructions

CREATIVE = re.compile(r"\b(write|compose|draft|poem|poems|haiku|story|stories|song|lyrics|joke|jokes|essay|limerick|"
                      r"translate|translation|rap|rhyme|sonnet|tweet|slogan|email|letter|script|fiction|pretend|"
                      r"imagine|role-?play)\b")
CODE = re.compile(r"\b(python|javascript|sql|code|function|regex|excel formula|spreadsheet formula|pandas|script|"
                  r"api|json)\b")
ADVICE = re.compile(r"\b(how (?:do|can|should|could|would|might) (?:i|we|you|one|people)|should (?:i|we)|tips|"
                    r"advice|advise|ideas?|ways to|best way|recommend\w*|suggest\w*|help me (?:save|budget|plan|cut)|"
                    r"is it (?:worth|better|good|wise)|pros and cons|strategy|strategies|plan for)\b")
CONCEPT = re.compile(r"^(?:what(?: is|'s| are| does)|define|why (?:is|are|do|does)|who (?:is|was|founded)|"
                     r"when (?:was|did) \w+ (?:founded|start))\b"
                     r"|\b(?:explain|define|definition of|meaning of|what does .+ mean|difference between|"
                     r"tell me about|history of|describe)\b")
GENERAL_MONEY_TOPICS = re.compile(r"\b(stock|stocks|shares|crypto|bitcoin|inflation|interest rates?|mortgage rates?|"
                                  r"economy|recession|gdp|the market|markets|crisis|exchange rate|"
                                  r"salary negotiation|retire\w*|"
                                  r"loan|loans|credit score)\b")
PERSONAL = re.compile(r"\b(i|we|my|our|me|us|i've|we've|i'd|we'd|mine|ours|i'm|we're)\b")
MONEY = re.compile(r"\b(spend|spent|spending|expenses?|expenditures?|costs?|paid|pay|paying|payments?|charges?|"
                   r"charged|bills?|purchases?|purchased|bought|buy|buying|income|revenue|earn|earned|earnings|made|received|"
                   r"profit|profits|net|cash ?flow|money|finances|financial|transactions?|subscriptions?|recurring|"
                   r"refunds?|refunded|transfers?|sales|invoices?|outgoings|budget|saved|fees)\b")
# Time spent is not money spent.
SPENT_TIME = re.compile(r"\bspen[dt]\w* (?:(?:the|a|an|my|our|some|more|less|too much|all|most of|few|several|"
                        r"\d+|two|three|four|five) )+(?:weekend|day|days|time|hours?|night|nights|evenings?|"
                        r"mornings?|afternoons?|summer|holidays?|vacation|life|energy|effort|years?|months?|weeks?)\b"
                        r"|\bspen[dt]\w* (?:time|hours|ages|forever)\b"
                        r"|\bpa(?:y|id|ying|ys) (?:\w+ ){0,2}"
                        r"(?:attention|a visit|a compliment|tribute|respects?|heed)\b")
LEDGER_PHRASES = re.compile(r"\b(transactions?|total (?:spend|spending|expenses|income|revenue|costs?)|"
                            r"(?:largest|biggest|smallest|top) (?:\d+ )?(?:expenses?|purchases?|transactions?|"
                            r"payments?|merchants?|vendors?|categories|clients?)|spending by|expenses by|income by|"
                            r"revenue by|financial summary|recurring (?:payments?|charges?|expenses?)|"
                            r"unusual (?:transactions?|expenses?|charges?|payments?)|net income|cash ?flow|"
                            r"monthly (?:spend|spending|expenses|income|average)|"
                            r"how (?:is|are) (?:my|our|the) (?:business|studio|company|finances) doing|"
                            r"(?:income|revenue) (?:vs\.?|versus|and|against|compared to) "
                            r"(?:expenses|spending|costs))\b")
# Money words specific enough to make "<word> ... <period>" a data question on their own.
LEDGER_MONEY = re.compile(r"\b(spend|spent|spending|expenses|income|revenue|profit|profits|net|cash ?flow|"
                          r"transactions?|refunds?|transfers|purchases|earnings|outgoings|payments)\b")
COUNTING = re.compile(r"\b(how much|how many|how often|total|spend|spent|spending|paid|pay|cost|costs|charges?|"
                      r"transactions?|purchases?|bills?|refunds?|subscriptions?|income|revenue|earned|received)\b")


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
    personal = PERSONAL.search(t) is not None
    if CONCEPT.search(t) and not personal:
        return False
    if GENERAL_MONEY_TOPICS.search(t) and not personal:
        return False
    money_text = SPENT_TIME.sub(" ", t)
    money = MONEY.search(money_text) is not None
    vocabulary = vocabulary or EMPTY
    entities = vocabulary.find(t)
    if personal and money:
        return True
    if LEDGER_PHRASES.search(money_text):
        return True
    if entities and COUNTING.search(money_text):
        return True
    if LEDGER_MONEY.search(money_text):
        reference = span[1] if span else _ANY_DATE
        for found in find_periods(t, reference):
            if span is None or (found.period.start <= span[1] and found.period.end >= span[0]):
                return True
    return False
