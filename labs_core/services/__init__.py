"""Thin gRPC servicers: they convert proto <-> engine types (convert.py) and route; no logic."""
