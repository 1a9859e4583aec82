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


def test_constraints_hold_on_the_fallback_too(parts):
    """Models only generate can serve get structured output as well: schema, regex and choice outputs
    are valid whatever the random model prefers, with ignore_eos and min_tokens ending at the grammar."""
    import dataclasses
    import json
    import re

    import jsonschema_rs

    from labs_core.structured import spec

    model, tokenizer = parts
    backend = GenerateBackend(model, tokenizer, max_waiting=4, eos_token_ids=[tokenizer.eos_token_id])
    schema = {"type": "object", "additionalProperties": False, "required": ["name", "n"],
              "properties": {"name": {"type": "string", "maxLength": 8}, "n": {"type": "integer", "minimum": 3}}}
    ids = tokenizer("Answer:")["input_ids"]

    def constrained(rid, constraint, **params):
        params = {"max_tokens": 80, "temperature": 1.0, "seed": 2, **params}
        return dataclasses.replace(request(rid, ids, **params), constraint=constraint)

    text, tokens, done, finish, _ = run(backend, constrained("j", spec.json_schema(schema), ignore_eos=True,
                                                             min_tokens=50))
    jsonschema_rs.validate(schema, json.loads(text))
    assert finish == "stop" and done.usage.completion_tokens == len(tokens) < 80
    text, *_ = run(backend, constrained("r", spec.Constraint("regex", r"[0-9]{2}-[a-z]{3}")))
    assert re.fullmatch(r"[0-9]{2}-[a-z]{3}", text)
    text, *_ = run(backend, constrained("c", spec.choice(["red", "green"]), temperature=0.0))
    assert text in ("red", "green")


def test_logit_bias_on_the_fallback(parts):
    model, tokenizer = parts
    backend = GenerateBackend(model, tokenizer, max_waiting=4, eos_token_ids=[tokenizer.eos_token_id])
    ids = list(range(600, 620))
    _, free, *_ = run(backend, request("f", ids, max_tokens=5, temperature=0, ignore_eos=True))
    _, forced, *_ = run(backend, request("b", ids, max_tokens=5, temperature=0, ignore_eos=True,
                                         logit_bias=((77, 100.0),)))
    _, banned, *_ = run(backend, request("n", ids, max_tokens=5, temperature=0, ignore_eos=True,
                                         logit_bias=tuple((t, -100.0) for t in sorted(set(free)))))
    assert forced == [77] * 5 and not set(banned) & set(free)
