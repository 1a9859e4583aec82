"""Constrained decoding in the engine with random weights: the output is valid because of the
mask, not the model. Mixed batches, both step modes, n > 1, and aborts while compiling."""

import dataclasses
import json
import re

import jsonschema_rs
import pytest

from labs_core.structured import spec
from tests.labs_core.engine.harness import both_step_modes, load, make_engine, request, run_to_completion

PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age", "tags", "ok"],
          "properties": {"name": {"type": "string", "maxLength": 10},
                         "age": {"type": "integer", "minimum": 0, "maximum": 150},
                         "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
                         "ok": {"type": "boolean"}}}


@pytest.fixture(autouse=True, params=[False, True], ids=["in-step", "run-ahead"])
def step_mode(request, monkeypatch):
    return both_step_modes(request, monkeypatch)


@pytest.fixture(scope="module")
def parts(tiny_llama_dir):
    return load(tiny_llama_dir)


def constrained(rid, tokenizer, constraint, **params):
    params = {"max_tokens": 120, "temperature": 1.0, **params}
    r = request(rid, tokenizer("Answer:")["input_ids"], **params)
    return dataclasses.replace(r, constraint=constraint)


def test_schema_regex_choice_and_plain_mixed_in_one_batch(parts):
    model, tokenizer = parts
    reqs = [constrained(f"s{i}", tokenizer, spec.json_schema(PERSON), seed=i) for i in range(4)]
    regex = spec.Constraint("regex", r"[0-9]{3}-[a-z]{2,5}")
    reqs += [constrained(f"r{i}", tokenizer, regex, seed=i) for i in range(3)]
    reqs += [constrained(f"c{i}", tokenizer, spec.choice(["red", "green", "blue"]), seed=i) for i in range(3)]
    plain = [constrained(f"p{i}", tokenizer, None, temperature=0.0, max_tokens=12, ignore_eos=True) for i in range(2)]
    engine = make_engine(model, tokenizer)
    out = run_to_completion(engine, reqs + plain)
    validator = jsonschema_rs.validator_for(PERSON)
    for i in range(4):
        assert out[f"s{i}"].finish[0] == "stop"
        assert validator.is_valid(json.loads(out[f"s{i}"].text[0])), out[f"s{i}"].text[0]
    for i in range(3):
        assert re.fullmatch(r"[0-9]{3}-[a-z]{2,5}", out[f"r{i}"].text[0])
        assert out[f"c{i}"].text[0] in ("red", "green", "blue")
    alone = run_to_completion(make_engine(model, tokenizer), [dataclasses.replace(p) for p in plain])
    for p in plain:  # the constrained rows change nothing for their neighbours
        assert out[p.request_id].token_ids == alone[p.request_id].token_ids
    assert engine.blocks.num_used_blocks == 0


def test_n_choices_each_follow_the_grammar_and_seeds_repeat(parts):
    model, tokenizer = parts
    r = constrained("n", tokenizer, spec.json_schema(PERSON), n=3, seed=5)
    first = run_to_completion(make_engine(model, tokenizer), [r])["n"]
    again = run_to_completion(make_engine(model, tokenizer), [dataclasses.replace(r)])["n"]
    assert first.text == again.text
    for i in range(3):
        jsonschema_rs.validate(PERSON, json.loads(first.text[i]))


def test_grammar_ends_generation_even_with_ignore_eos(parts):
    model, tokenizer = parts
    r = constrained("g", tokenizer, spec.Constraint("grammar", 'root ::= "yes" | "no"'), ignore_eos=True,
                    min_tokens=5)
    out = run_to_completion(make_engine(model, tokenizer), [r])["g"]
    assert out.text[0] in ("yes", "no") and out.finish[0] == "stop"


def test_abort_while_compiling_frees_everything(parts):
    model, tokenizer = parts
    engine = make_engine(model, tokenizer)
    schema = {**PERSON, "properties": {**PERSON["properties"], "x": {"type": "string", "maxLength": 7}}}
    engine.add_request(constrained("a", tokenizer, spec.json_schema(schema)))
    events = engine.abort_request("a")
    assert events and events[0][1][-1].usage.completion_tokens == 0
    for _ in range(100):
        if not engine.has_work:
            break
        assert engine.step() == []
    assert not engine.has_work and engine.blocks.num_used_blocks == 0


def test_bad_constraints_name_the_field():
    from labs_core.errors import InvalidRequest

    for bad in (spec.Constraint("regex", "(ab", "regex"), spec.json_schema('{"type": "foo"}'),
                spec.Constraint("grammar", "root ::= x", "grammar"), spec.json_schema("[1"), spec.choice([])):
        with pytest.raises(InvalidRequest) as info:
            spec.check(bad)
        assert info.value.param == bad.param


def test_run_ahead_queues_constrained_forwards_early_and_changes_nothing(parts, step_mode):
    """Same seeded tokens whether the step ahead's sampling waited for the grammars or not."""
    model, tokenizer = parts
    reqs = [constrained(f"s{i}", tokenizer, spec.json_schema(PERSON), seed=i) for i in range(3)]
    reqs.append(constrained("plain", tokenizer, None, max_tokens=30, seed=9, ignore_eos=True))
    engine = make_engine(model, tokenizer)
    out = run_to_completion(engine, reqs)
    other = make_engine(model, tokenizer, run_ahead=not step_mode)
    again = run_to_completion(other, [dataclasses.replace(r) for r in reqs])
    for r in reqs:
        assert out[r.request_id].token_ids == again[r.request_id].token_ids
    for i in range(3):
        jsonschema_rs.validate(PERSON, json.loads(out[f"s{i}"].text[0]))
    assert (engine.steps_ahead >= 10) if step_mode else engine.steps_ahead == 0
    assert engine.blocks.num_used_blocks == 0


def run_collecting(engine, req):
    """(token ids, answer text, reasoning text, finish) of a one-choice request."""
    from labs_core.engine.outputs import ChoiceDelta

    engine.add_request(req)
    ids, text, reasoning, finish = [], "", "", None
    while engine.has_work:
        for _, events in engine.step():
            for e in events:
                if isinstance(e, ChoiceDelta):
                    ids += e.token_ids
                    text, reasoning = text + e.text, reasoning + e.reasoning_text
                    finish = e.finish_reason or finish
    return ids, text, reasoning, finish


def test_a_thinking_model_thinks_freely_then_answers_in_the_constrained_form(parts):
    """When the prompt opened a thinking block, the grammar waits for the end-of-reasoning token:
    the thinking is what the model would say anyway (stop tokens aside), the answer after it follows
    the schema. A random model never says </think>: a token it draws (seeded) stands in for it."""
    from labs_core.engine.choice_stream import ReasoningTags

    model, tokenizer = parts
    prompt = tokenizer("Answer:")["input_ids"]
    free = run_to_completion(make_engine(model, tokenizer),
                             [request("free", prompt, max_tokens=12, seed=3, ignore_eos=True)])["free"]
    drawn = free.token_ids[0]
    k = next(i for i in range(2, len(drawn)) if drawn[i] not in drawn[:i] and tokenizer.decode([drawn[i]]).strip()
             and tokenizer.encode(tokenizer.decode([drawn[i]]), add_special_tokens=False) == [drawn[i]]
             and tokenizer.decode([drawn[i]]) not in tokenizer.decode(drawn[:i]))
    assert tokenizer.eos_token_id not in drawn[:k + 1]
    end_tag = tokenizer.decode([drawn[k]])

    def thinking(rid, max_tokens=120):
        return dataclasses.replace(request(rid, prompt, max_tokens=max_tokens, seed=3),
                                   constraint=spec.json_schema(PERSON), reasoning=ReasoningTags("<think>", end_tag),
                                   prompt_text_tail="Answer:<think>\n")

    ids, text, reasoning, finish = run_collecting(make_engine(model, tokenizer), thinking("t"))
    assert ids[:k + 1] == drawn[:k + 1]  # thought freely up to and with the end token
    assert reasoning.strip() == tokenizer.decode(drawn[:k]).strip()
    jsonschema_rs.validate(PERSON, json.loads(text))
    assert finish == "stop"

    cut = run_collecting(make_engine(model, tokenizer), thinking("c", max_tokens=k))
    assert cut[0] == drawn[:k] and cut[1] == "" and cut[3] == "length"  # still thinking when cut: no answer

    opened_elsewhere = dataclasses.replace(thinking("n"), prompt_text_tail="Answer:")  # no block opened
    ids, text, _, finish = run_collecting(make_engine(model, tokenizer), opened_elsewhere)
    jsonschema_rs.validate(PERSON, json.loads(text))  # constrained from the first token
    assert text.lstrip().startswith("{") and tokenizer.decode(ids, skip_special_tokens=True).strip() == text.strip()


def test_json_object_mode_takes_objects_only():
    """response_format json_object: a JSON object at the top (any members), not any JSON value; the
    builtin JSON grammar let the default model answer "[null]"."""
    import xgrammar as xgr

    grammar = spec.to_grammar(spec.Constraint("json_object", "", "response_format"))
    accepts = xgr.testing._is_grammar_accept_string
    assert accepts(grammar, '{"a": [1, {"b": null}], "c": "x", "d": 1.5e3, "e": true}')
    assert accepts(grammar, "{}")
    for not_an_object in ("[null]", "[]", "1", '"x"', "null"):
        assert not accepts(grammar, not_an_object), not_an_object
