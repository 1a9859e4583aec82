"""The engine against transformers generate, under batching, preemption, prefix caching and aborts."""

import dataclasses
import random

import pytest

from tests.labs_core.engine.harness import both_step_modes, collect, hf_greedy, load, make_engine, request, run_to_completion
from tests.support import build_tiny_llama


@pytest.fixture(autouse=True, params=[False, True], ids=["in-step", "run-ahead"])
def step_mode(request, monkeypatch):
    """Every test runs with steps read at once and with one decode step run ahead (as on CUDA)."""
    return both_step_modes(request, monkeypatch)


@pytest.fixture(scope="module")
def peaked_llama(tmp_path_factory, tokenizer_dir):
    """A tiny Llama with large weights, so its greedy choices are clear-cut (no near ties)."""
    return build_tiny_llama(tmp_path_factory.mktemp("peaked"), tokenizer_dir, seed=1, initializer_range=0.3)


@pytest.fixture(scope="module")
def reference(peaked_llama):
    return load(peaked_llama)[0]


@pytest.fixture()
def engine_parts(peaked_llama):
    return load(peaked_llama)


def prompts(count, seed=0, lo=3, hi=60):
    rng = random.Random(seed)
    return [[rng.randrange(100, 40000) for _ in range(rng.randrange(lo, hi))] for _ in range(count)]


def test_single_request_matches_generate(engine_parts, reference):
    model, tokenizer = engine_parts
    ids = prompts(1)[0]
    out = run_to_completion(make_engine(model, tokenizer), [request("a", ids, max_tokens=24, temperature=0,
                                                                     ignore_eos=True)])
    assert out["a"].token_ids[0] == hf_greedy(reference, ids, 24)
    assert out["a"].finish[0] == "length"
    assert out["a"].done.usage.completion_tokens == 24


def test_sixteen_concurrent_requests_match_generate(engine_parts, reference):
    model, tokenizer = engine_parts
    engine = make_engine(model, tokenizer, max_num_batched_tokens=64)  # forces chunked prefill too
    batch = prompts(16, seed=2)
    lengths = [5 + 3 * i for i in range(16)]
    out = run_to_completion(engine, [request(f"r{i}", p, max_tokens=n, temperature=0, ignore_eos=True)
                                     for i, (p, n) in enumerate(zip(batch, lengths))])
    for i, (p, n) in enumerate(zip(batch, lengths)):
        assert out[f"r{i}"].token_ids[0] == hf_greedy(reference, p, n), f"request {i}"
    assert engine.blocks.num_used_blocks == 0


def test_preemption_under_tiny_block_budget_keeps_outputs(engine_parts, reference):
    model, tokenizer = engine_parts
    engine = make_engine(model, tokenizer, num_blocks=24, max_model_len=96)
    batch = prompts(6, seed=3, lo=10, hi=30)
    out = run_to_completion(engine, [request(f"r{i}", p, max_tokens=30, temperature=0, ignore_eos=True)
                                     for i, p in enumerate(batch)])
    assert engine.scheduler.num_preemptions > 0, "the budget was meant to force preemption"
    for i, p in enumerate(batch):
        assert out[f"r{i}"].token_ids[0] == hf_greedy(reference, p, 30)
    assert engine.blocks.num_used_blocks == 0


def test_preemption_keeps_seeded_sampling(engine_parts):
    model, tokenizer = engine_parts
    batch = prompts(6, seed=4, lo=10, hi=30)
    reqs = lambda: [request(f"r{i}", p, max_tokens=30, temperature=0.9, top_p=0.9, seed=i, ignore_eos=True)
                    for i, p in enumerate(batch)]
    roomy = run_to_completion(make_engine(model, tokenizer), reqs())
    tight_engine = make_engine(model, tokenizer, num_blocks=24, max_model_len=96)
    tight = run_to_completion(tight_engine, reqs())
    assert tight_engine.scheduler.num_preemptions > 0
    assert {k: v.token_ids for k, v in roomy.items()} == {k: v.token_ids for k, v in tight.items()}


def test_prefix_cache_same_output_fewer_computed_tokens(engine_parts):
    model, tokenizer = engine_parts
    system = prompts(1, seed=5, lo=40, hi=41)[0]
    questions = prompts(4, seed=6, lo=3, hi=8)
    reqs = lambda: [request(f"q{i}", system + q, max_tokens=8, temperature=0, ignore_eos=True)
                    for i, q in enumerate(questions)]
    cold_engine = make_engine(model, tokenizer, prefix_caching=False)
    cold = run_to_completion(cold_engine, reqs())
    warm_engine = make_engine(model, tokenizer, prefix_caching=True)
    run_to_completion(warm_engine, [request("warmup", system + [7], max_tokens=1, temperature=0)])
    before = warm_engine.metrics.prompt_tokens_total
    warm = run_to_completion(warm_engine, reqs())
    computed_warm = warm_engine.metrics.prompt_tokens_total - before
    assert {k: v.token_ids for k, v in cold.items()} == {k: v.token_ids for k, v in warm.items()}
    assert computed_warm <= cold_engine.metrics.prompt_tokens_total - 4 * 36
    assert all(warm[f"q{i}"].done.usage.cached_tokens >= 36 for i in range(4))


def test_n_choices_share_the_prompt_and_differ(engine_parts):
    model, tokenizer = engine_parts
    engine = make_engine(model, tokenizer)
    ids = prompts(1, seed=7, lo=30, hi=31)[0]
    out = run_to_completion(engine, [request("n", ids, n=3, max_tokens=12, temperature=1.0, seed=3, ignore_eos=True)])
    choices = out["n"].token_ids
    assert sorted(choices) == [0, 1, 2] and all(len(c) == 12 for c in choices.values())
    assert len({tuple(c) for c in choices.values()}) > 1, "choices should differ"
    assert out["n"].done.usage.completion_tokens == 36
    assert engine.blocks.prefix_hits >= 2 * 28  # choices 1 and 2 reused choice 0's full prompt blocks


def test_cancel_half_of_twenty(engine_parts):
    model, tokenizer = engine_parts
    engine = make_engine(model, tokenizer)
    batch = prompts(20, seed=8)
    for i, p in enumerate(batch):
        engine.add_request(request(f"r{i}", p, max_tokens=40, temperature=0, ignore_eos=True))
    results = {}
    for _ in range(3):
        collect(results, engine.step())
    assert len(engine.scheduler.running) == 20
    for i in range(0, 20, 2):
        aborted = engine.abort_request(f"r{i}")
        assert aborted[0][1][-1].usage.completion_tokens > 0
        results.pop(f"r{i}", None)
    collect(results, sum((engine.step() for _ in range(200) if engine.has_work), []))
    assert not engine.has_work
    assert sorted(results) == sorted(f"r{i}" for i in range(1, 20, 2))
    assert all(len(r.token_ids[0]) == 40 and r.done for r in results.values())
    assert engine.blocks.num_used_blocks == 0 and not engine.scheduler.running


def test_same_seed_same_text_and_different_seed_differs(engine_parts):
    model, tokenizer = engine_parts
    ids = prompts(1, seed=9)[0]
    run = lambda seed: run_to_completion(make_engine(model, tokenizer),
                                         [request("s", ids, max_tokens=20, temperature=1.0, seed=seed,
                                                  ignore_eos=True)])["s"].token_ids[0]
    assert run(42) == run(42)
    assert run(42) != run(43)


def test_stop_string_across_token_boundaries(engine_parts):
    model, tokenizer = engine_parts
    ids = prompts(1, seed=10)[0]
    free = run_to_completion(make_engine(model, tokenizer), [request("f", ids, max_tokens=30, temperature=0,
                                                                      ignore_eos=True)])["f"]
    text = free.text[0]
    assert len(text) > 12
    stop = text[5:9]  # four characters, generally spanning token boundaries
    out = run_to_completion(make_engine(model, tokenizer), [request("s", ids, max_tokens=30, temperature=0,
                                                                     ignore_eos=True, stop=(stop,))])["s"]
    assert out.text[0] == text[:text.index(stop)]
    assert out.finish[0] == "stop"


def test_queue_bound_refuses_and_loses_nothing(engine_parts):
    from labs_core.errors import QueueFull

    model, tokenizer = engine_parts
    engine = make_engine(model, tokenizer, max_num_seqs=2, max_waiting=3)
    batch = prompts(8, seed=11)
    admitted, refused = [], []
    for i, p in enumerate(batch):
        try:
            engine.add_request(request(f"r{i}", p, max_tokens=5, temperature=0, ignore_eos=True))
            admitted.append(f"r{i}")
        except QueueFull:
            refused.append(f"r{i}")
    assert len(admitted) == 5 and len(refused) == 3
    results = run_to_completion(engine, [])
    assert sorted(results) == sorted(admitted)
    assert all(len(r.token_ids[0]) == 5 for r in results.values())


def test_context_too_long_is_refused(engine_parts):
    from labs_core.errors import ContextTooLong

    model, tokenizer = engine_parts
    engine = make_engine(model, tokenizer, max_model_len=64)
    with pytest.raises(ContextTooLong):
        engine.add_request(request("x", list(range(100, 160)), max_tokens=10))


def test_min_tokens_bans_eos_until_reached(engine_parts):
    model, tokenizer = engine_parts
    eos = tokenizer.eos_token_id
    ids = prompts(1, seed=12)[0]
    out = run_to_completion(make_engine(model, tokenizer), [
        request("m", ids, max_tokens=12, min_tokens=12, temperature=0, stop_token_ids=tuple(range(0, 49152, 2)))])
    tokens = out["m"].token_ids[0]
    assert len(tokens) == 12 and all(t % 2 == 1 for t in tokens[:11]) and eos not in tokens[:11]


def test_logit_bias_forces_bans_and_leaves_other_rows_alone(engine_parts):
    """OpenAI's logit_bias: +100 makes one token every draw (greedy or sampled), -100 bans the
    greedy choice; a request without a bias in the same batch keeps its greedy tokens."""
    model, tokenizer = engine_parts
    ids = prompts(1, seed=13)[0]
    free = run_to_completion(make_engine(model, tokenizer), [request("g", ids, max_tokens=6, temperature=0,
                                                                     ignore_eos=True)])["g"].token_ids[0]
    out = run_to_completion(make_engine(model, tokenizer), [
        request("forced", ids, max_tokens=6, temperature=1.0, seed=3, ignore_eos=True, logit_bias=((1234, 100.0),)),
        request("banned", ids, max_tokens=6, temperature=0, ignore_eos=True,
                logit_bias=tuple((t, -100.0) for t in sorted(set(free)))),
        request("plain", ids, max_tokens=6, temperature=0, ignore_eos=True)])
    assert out["forced"].token_ids[0] == [1234] * 6
    assert not set(out["banned"].token_ids[0]) & set(free)
    assert out["plain"].token_ids[0] == free


def test_run_ahead_launches_decode_steps_early_and_changes_nothing(engine_parts, step_mode):
    """Seeded sampling, logprobs, stop strings and EOS under both modes: same tokens, same text;
    in run-ahead mode most decode steps were queued before the previous tokens were read."""
    model, tokenizer = engine_parts
    batch = prompts(6, seed=11)
    requests = [request(f"r{i}", p, max_tokens=20 + i, temperature=0.9, seed=i, logprobs=True, top_logprobs=2,
                        stop=("e",) if i % 2 else ()) for i, p in enumerate(batch)]
    engine = make_engine(model, tokenizer)
    out = run_to_completion(engine, requests)
    again = run_to_completion(make_engine(model, tokenizer, run_ahead=not step_mode), [
        request(r.request_id, r.prompt_ids, **dataclasses.asdict(r.params)) for r in requests])
    for r in requests:
        assert out[r.request_id].token_ids == again[r.request_id].token_ids
        assert out[r.request_id].text == again[r.request_id].text
        assert out[r.request_id].finish == again[r.request_id].finish
    assert engine.blocks.num_used_blocks == 0
    if step_mode:
        assert engine.steps_ahead >= 15
    else:
        assert engine.steps_ahead == 0
