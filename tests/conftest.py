"""Shared fixtures: tiny random models built from real tokenizers, and a live core on a socket."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton kernels run on the CPU in tests (no GPU in CI)
# A shell starts background jobs with SIGINT ignored, and Python then leaves it ignored: the Ctrl-C
# tests (the REPL and `labs ask` cancelling on the server) would see nothing. Restore Python's own
# handler; the CLI subprocesses the tests start then get the default disposition too.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

from tests.support import build_tiny_llama, smollm2_tokenizer_dir  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2's tokenizer and chat template (from the GGUF package), saved as a plain HF dir."""
    return smollm2_tokenizer_dir(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    """A 2-layer random Llama with SmolLM2's tokenizer: real text in, fast on CPU."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), tokenizer_dir)


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server (tests/postgres.py); skipped only when PostgreSQL is not installed
    (`make postgres` installs it), and a failure under CI=true."""
    from tests.postgres import PostgresServer, pg_bin

    if pg_bin() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is not installed (make postgres)")
        pytest.skip("PostgreSQL is not installed (make postgres)")
    with PostgresServer() as server:
        yield server
