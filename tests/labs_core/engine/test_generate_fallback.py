"""The generate fallback streams like the engine: same deltas, stop strings, logprobs, seeds."""

import asyncio

import pytest

from labs_core.engine.generate_fallback import GenerateBackend
from labs_core.engine.outputs import RequestDone
from tests.labs_core.engine.harness import hf_greedy, load, request


@pytest.fixture(scope="module")
def parts(tiny_llama_dir):
    return load(tiny_llama_dir)


def run(backend, req):
    async def go():
        text, tokens, done, finish, logprobs = "", [], None, None, []
        async for event in backend.generate(req):
            if isinstance(event, RequestDone):
                done = event
            else:
                text += event.text
                tokens += event.token_ids
                logprobs += event.logprobs
                finish = event.finish_reason or finish
        return text, tokens, done, finish, logprobs
    return asyncio.run(go())


def test_greedy_matches_generate_and_reports_usage(parts):
    model, tokenizer = parts
    backend = GenerateBackend(model, tokenizer, max_waiting=4, eos_token_ids=[tokenizer.eos_token_id])
    ids = list(range(400, 420))
    text, tokens, done, finish, _ = run(backend, request("a", ids, max_tokens=10, temperature=0, ignore_eos=True))
    assert tokens == hf_greedy(model, ids, 10)
    assert finish == "length" and done.usage.completion_tokens == 10 and done.usage.prompt_tokens == 20


def test_stop_string_seed_and_logprobs(parts):
    model, tokenizer = parts
    backend = GenerateBackend(model, tokenizer, max_waiting=4, eos_token_ids=[tokenizer.eos_token_id])
    ids = list(range(500, 520))
    free, *_ = run(backend, request("f", ids, max_tokens=20, temperature=0, ignore_eos=True))
    stop = free[4:8]
    text, _, _, finish, _ = run(backend, request("s", ids, max_tokens=20, temperature=0, ignore_eos=True,
                                                 stop=(stop,)))
    assert text == free[:free.index(stop)] and finish == "stop"
    a = run(backend, request("x", ids, max_tokens=8, temperature=1.0, seed=7, ignore_eos=True))
    b = run(backend, request("y", ids, max_tokens=8, temperature=1.0, seed=7, ignore_eos=True))
    assert a[1] == b[1]
    _, tokens, _, _, logprobs = run(backend, request("l", ids, max_tokens=4, temperature=0, logprobs=True,
                                                     top_logprobs=3, ignore_eos=True))
    assert [e.token_id for e in logprobs] == tokens
    assert all(len(e.top) == 3 and e.top[0].token_id == e.token_id for e in logprobs)
