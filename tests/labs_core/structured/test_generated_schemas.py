"""120 generated JSON Schemas (nested objects, bounded arrays, enums, anyOf, number ranges, string
patterns and formats), each answered by a tiny random model through the engine in mixed batches:
every output parses (strict JSON: no raw control characters) and validates with jsonschema
(jsonschema-rs). Strings are bounded: with an open length, random weights never close one."""

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
        # Bounded formats only: an email's or uri's length is open, and random weights never end one.
        return {"type": "string", "format": rng.choice(["date", "uuid", "ipv4", "date-time", "time"])}
    if kind == "object":
        names = rng.sample(["id", "name", "tags", "meta", "x", "y", "items", "kind"], rng.randrange(1, 5))
        props = {n: gen_schema(rng, depth + 1) for n in names}
        required = [n for n in names if rng.random() < 0.7]
        return {"type": "object", "properties": props, "required": required, "additionalProperties": False}
    if kind == "array":
        lo = rng.randrange(0, 3)
        return {"type": "array", "items": gen_schema(rng, depth + 1), "minItems": lo,
                "maxItems": lo + rng.randrange(0, 4)}
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
            text, finish = out[f"s{i}"].text[0], out[f"s{i}"].finish[0]
            try:
                errors = [e.message for e in jsonschema_rs.validator_for(schemas[i]).iter_errors(json.loads(text))]
            except ValueError as exc:
                errors = [f"not JSON: {exc}"]
            if errors or finish != "stop":
                failures.append((i, finish, errors[:2], json.dumps(schemas[i])[:300], text[:300]))
        assert len(out["plain"].token_ids[0]) == 8
    assert not failures, "\n".join(map(str, failures[:3]))
