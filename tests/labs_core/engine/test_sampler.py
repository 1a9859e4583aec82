import math

import torch

from labs_core.engine.sampler import Sampler, SamplingTensors, filter_logits, uniform_noise


def tensors(rows, **overrides):
    base = dict(temperature=1.0, top_p=1.0, top_k=0, min_p=0.0, seed=0, position=0)
    cfg = [{**base, **r} for r in rows]
    t = SamplingTensors(
        temperature=torch.tensor([c["temperature"] for c in cfg]), top_p=torch.tensor([c["top_p"] for c in cfg]),
        top_k=torch.tensor([c["top_k"] for c in cfg]), min_p=torch.tensor([c["min_p"] for c in cfg]),
        seeds=torch.tensor([c["seed"] for c in cfg]), positions=torch.tensor([c["position"] for c in cfg]),
        all_greedy=all(c["temperature"] == 0 for c in cfg), any_top_p=any(c["top_p"] < 1 for c in cfg),
        any_top_k=any(c["top_k"] > 0 for c in cfg), any_min_p=any(c["min_p"] > 0 for c in cfg),
        max_top_logprobs=-1)
    for k, v in overrides.items():
        setattr(t, k, v)
    return t


def reference_filter(logits, temperature, top_k, top_p, min_p):
    """One row, plain Python: the set of tokens that may be drawn."""
    scaled = [x / temperature for x in logits]
    z = max(scaled)
    probs = [math.exp(x - z) for x in scaled]
    total = sum(probs)
    probs = [p / total for p in probs]
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    keep = set(order)
    if min_p:
        keep = {i for i in keep if probs[i] >= min_p * probs[order[0]]}
    if top_k:
        keep &= set(order[:top_k])
    if top_p < 1:
        kept = [i for i in order if i in keep]
        renorm = sum(probs[i] for i in kept)
        mass, allowed = 0.0, set()
        for i in kept:
            if mass >= top_p:
                break
            allowed.add(i)
            mass += probs[i] / renorm
        keep = allowed
    return keep


def test_filters_match_reference():
    gen = torch.Generator().manual_seed(0)
    for trial in range(30):
        logits = torch.randn(1, 40, generator=gen) * 3
        cfg = dict(temperature=[0.5, 1.0, 1.7][trial % 3], top_k=[0, 5, 12][trial % 3 - 1],
                   top_p=[1.0, 0.9, 0.6][(trial // 3) % 3], min_p=[0.0, 0.05][trial % 2])
        out = filter_logits(logits, tensors([cfg]))[0]
        got = {i for i in range(40) if out[i] > float("-inf")}
        assert got == reference_filter(logits[0].tolist(), **cfg), cfg


def test_noise_is_deterministic_and_position_dependent():
    a = uniform_noise(torch.tensor([5, 5]), torch.tensor([3, 4]), 1000)
    b = uniform_noise(torch.tensor([5]), torch.tensor([3]), 1000)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], a[1])
    assert 0 < a.min() and a.max() < 1 and abs(a.mean().item() - 0.5) < 0.02


def test_sampling_frequencies_follow_probabilities():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().repeat(4000, 1)
    t = tensors([dict(seed=s, position=7) for s in range(4000)])
    tokens = Sampler()(logits, t).token_ids
    freq = torch.bincount(tokens, minlength=4).float() / 4000
    assert torch.allclose(freq, probs, atol=0.03), freq


def test_greedy_rows_take_argmax_and_penalties_apply():
    logits = torch.tensor([[1.0, 3.0, 2.0], [1.0, 3.0, 2.0]])
    t = tensors([dict(temperature=0), dict(temperature=0)])
    assert Sampler()(logits, t).token_ids.tolist() == [1, 1]
    t.frequency_penalty = torch.tensor([0.0, 2.0])
    t.output_counts = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert Sampler()(logits, t).token_ids.tolist() == [1, 2]
    t.output_counts, t.frequency_penalty = None, None
    t.repetition_penalty = torch.tensor([1.0, 4.0])
    t.seen_mask = torch.tensor([[False, True, False], [False, True, False]])
    assert Sampler()(logits, t).token_ids.tolist() == [1, 2]


def test_logprobs_are_raw_model_distribution():
    logits = torch.tensor([[0.0, 1.0, 2.0]])
    t = tensors([dict(temperature=0)], max_top_logprobs=2)
    out = Sampler()(logits, t)
    expected = torch.log_softmax(logits, -1)
    assert out.token_ids.tolist() == [2]
    assert torch.allclose(out.logprobs, expected[:, 2]) and out.top_ids.tolist() == [[2, 1]]



def test_a_uniform_rounding_to_one_never_draws_a_masked_token():
    """The noise of (seed 31, position 4, token 43289) rounds to 1.0 in float32 (-log: 0); a token
    with probability 0 (cut by top-k here) must still never win the race (0 / 0 was a NaN)."""
    from labs_core.engine.sampler import Sampler, SamplingTensors, uniform_noise

    vocab = 49152
    seeds, positions = torch.tensor([31]), torch.tensor([4])
    assert uniform_noise(seeds, positions, vocab)[0, 43289] == 1.0
    logits = torch.zeros(1, vocab)
    logits[0, 7] = 5.0  # top_k = 1 keeps token 7 only
    t = SamplingTensors(temperature=torch.ones(1), top_p=torch.ones(1), top_k=torch.ones(1, dtype=torch.int64),
                        min_p=torch.zeros(1), seeds=seeds, positions=positions, all_greedy=False, any_top_p=False,
                        any_top_k=True, any_min_p=False, max_top_logprobs=-1)
    assert Sampler()(logits, t).token_ids.tolist() == [7]
