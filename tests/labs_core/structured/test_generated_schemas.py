"""120 generated JSON Schemas (nested objects, bounded arrays, enums, anyOf, number ranges, string
patterns and formats), each answered by a tiny random model through the engine in mixed batches:
every output parses and validates with jsonschema (jsonschema-rs)."""

import dataclasses
import json
import random

import jsonschema_rs
import pytest

from labs_core.structured import spec
from tests.labs_core.engine.harness import load, make_engine, request, run_to_completion

COUNT = 120
BATCH = 24


def gen_schema(rng: random.Random, depth: int = 0) -> dict:
    kinds = ["string", "integer", "number", "boolean", "enum", "pattern", "format", "null"]
    if depth < 3:
        kinds += ["object", "array", "anyOf"] * 2
    kind = rng.choice(kinds)
    if kind == "string":
        lo = rng.randrange(0, 4)
        return {"type": "string", "minLength": lo, "maxLength": lo + rng.randrange(0, 12)}
    if kind == "integer":
        lo = rng.randrange(-1000, 1000)
        return {"type": "integer", "minimum": lo, "maximum": lo + rng.randrange(0, 5000)}
    if kind == "number":
        lo = rng.uniform(-100, 100)
        return {"type": "number", "minimum": round(lo, 2), "maximum": round(lo + rng.uniform(0.5, 1000), 2)}
    if kind == "boolean":
        return {"type": "boolean"}
    if kind == "null":
        return {"type": "null"}
    if kind == "enum":
        return {"enum": rng.sample(["red", "green", "blue", 1, 2.5, None, True, "a b", "ü"], rng.randrange(1, 5))}
    if kind == "pattern":
        return {"type": "string", "pattern": rng.choice([r"^[a-z]{1,8}$", r"^[0-9]{3}-[0-9]{2}$", r"^(yes|no)$",
                                                         r"^[A-Z][a-z]{0,5}$"])}
    if kind == "format":
        return {"type": "string", "format": rng.choice(["date", "email", "uuid", "ipv4", "date-time"])}
    if kind == "object":
        names = rng.sample(["id", "name", "tags", "meta", "x", "y", "items", "kind"], rng.randrange(1, 5))
        props = {n: gen_schema(rng, depth + 1) for n in names}
        required = [n for n in names if rng.random() < 0.7]
        return {"type": "object", "properties": props, "required": required, "additionalProperties": False}
    if kind == "array":
        lo = rng.randrange(0, 3)
        return {"type": "array", "items": gen_schema(rng, depth + 1), "minItems": lo, "maxItems": lo + rng.randrange(0, 4)}
    return {"anyOf": [gen_schema(rng, depth + 1) for _ in range(rng.randrange(2, 4))]}


@pytest.fixture(scope="module")
def parts(tiny_llama_dir):
    return load(tiny_llama_dir)


def test_generated_schemas_always_validate(parts):
    model, tokenizer = parts
    rng = random.Random(17)
    schemas = [gen_schema(rng) for _ in range(COUNT)]
    prompt = tokenizer("Answer in JSON:")["input_ids"]
    failures = []
    for start in range(0, COUNT, BATCH):
        engine = make_engine(model, tokenizer)
        reqs = []
        for i in range(start, min(start + BATCH, COUNT)):
            r = request(f"s{i}", prompt, max_tokens=600, temperature=1.0, seed=i)
            reqs.append(dataclasses.replace(r, constraint=spec.json_schema(schemas[i])))
        reqs.append(request("plain", prompt, max_tokens=8, temperature=0.0, ignore_eos=True))  # a mixed batch
        out = run_to_completion(engine, reqs)
        for i in range(start, min(start + BATCH, COUNT)):
            text = out[f"s{i}"].text[0]
            try:
                value = json.loads(text)
                if out[f"s{i}"].finish[0] != "stop" or not jsonschema_rs.validator_for(schemas[i]).is_valid(value):
                    failures.append((schemas[i], text))
            except ValueError:
                failures.append((schemas[i], text))
        assert len(out["plain"].token_ids[0]) == 8
    assert not failures, failures[:3]
