"""Thin route handlers: admit the caller, read and check the body, convert, call the core,
convert back. The route table is `ROUTES`; /openapi.json describes the same paths."""
