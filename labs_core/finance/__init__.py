"""Exact answers to questions about the business's transactions (docs/finance.md).

question --parse.py--> FinanceQuery --compute.py (pandas)--> FinanceResult --render.py--> answer text

- data.py: load and check the CSV, reload it when it changes (the only pandas entry besides compute.py)
- periods.py, entities.py: date ranges and the data's own names found in a question (stdlib only)
- parse.py: the rules that turn a question into a typed FinanceQuery; router.py: is a chat message one?
- engine.py: the entry point the servicer and the chat hook share; chat.py: the chat short-circuit
- convert.py: FinanceResult -> FinanceQueryResponse

Nothing here is imported by the gateway or the CLI: pandas stays in the core.
"""
