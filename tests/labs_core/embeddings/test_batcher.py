"""The micro-batcher with a fake encode function: grouping, order, limits, failures, cancellation."""

import asyncio
import threading
import time

import numpy as np
import pytest

from labs_core.embeddings.batcher import MicroBatcher
from labs_core.errors import ModelUnavailable


class FakeEncoder:
    """Row i of a batch = [hash-ish of text, batch size]; records batches and their threads."""

    def __init__(self, delay_s: float = 0.0, fail_on: str | None = None):
        self.batches: list[list[str]] = []
        self.threads: set[int] = set()
        self.delay_s = delay_s
        self.fail_on = fail_on

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.batches.append(list(texts))
        self.threads.add(threading.get_ident())
        if self.fail_on in texts:
            raise RuntimeError("boom")
        time.sleep(self.delay_s)
        return np.array([[float(sum(map(ord, t))), float(len(texts))] for t in texts], dtype=np.float32)


def value(text: str) -> float:
    return float(sum(map(ord, text)))


async def test_concurrent_requests_share_batches_and_get_their_own_rows():
    encoder = FakeEncoder(delay_s=0.01)
    batcher = MicroBatcher(encoder, window_s=0.005, max_batch=64)
    texts = [[f"req{i}-a", f"req{i}-b"] for i in range(20)]
    results = await asyncio.gather(*(batcher.encode(t) for t in texts))
    for given, rows in zip(texts, results):
        assert rows[:, 0].tolist() == [value(t) for t in given]
    assert len(encoder.batches) < 20 and max(len(b) for b in encoder.batches) > 2
    assert sum(len(b) for b in encoder.batches) == 40
    assert len(encoder.threads) == 1 and threading.get_ident() not in encoder.threads
    assert batcher.stats.inputs == 40 and batcher.stats.batches == len(encoder.batches)
    await batcher.close()


async def test_max_batch_one_and_no_window_encodes_one_by_one():
    encoder = FakeEncoder()
    batcher = MicroBatcher(encoder, window_s=0, max_batch=1)
    results = await asyncio.gather(*(batcher.encode([f"t{i}"]) for i in range(5)))
    assert [b for b in encoder.batches] == [[f"t{i}"] for i in range(5)]
    assert all(r[0, 1] == 1.0 for r in results)
    await batcher.close()


async def test_large_request_is_split_at_max_batch_and_reassembled_in_order():
    encoder = FakeEncoder()
    batcher = MicroBatcher(encoder, window_s=0.001, max_batch=4)
    texts = [f"x{i}" for i in range(10)]
    rows = await batcher.encode(texts)
    assert rows[:, 0].tolist() == [value(t) for t in texts]
    assert max(len(b) for b in encoder.batches) <= 4 and sum(map(len, encoder.batches)) == 10
    await batcher.close()


async def test_a_failing_batch_fails_its_requests_and_the_batcher_goes_on():
    encoder = FakeEncoder(fail_on="bad")
    batcher = MicroBatcher(encoder, window_s=0.005, max_batch=8)
    results = await asyncio.gather(batcher.encode(["bad"]), batcher.encode(["ok"]), return_exceptions=True)
    assert any(isinstance(r, RuntimeError) for r in results)
    rows = await batcher.encode(["fine"])
    assert rows[0, 0] == value("fine")
    await batcher.close()


async def test_cancelled_request_is_not_encoded():
    encoder = FakeEncoder(delay_s=0.05)
    batcher = MicroBatcher(encoder, window_s=0, max_batch=1)
    first = asyncio.create_task(batcher.encode(["first"]))
    await asyncio.sleep(0.01)  # "first" is running in the worker
    gone = asyncio.create_task(batcher.encode(["gone"]))
    await asyncio.sleep(0)
    gone.cancel()
    await first
    assert (await batcher.encode(["after"]))[0, 0] == value("after")
    assert ["gone"] not in encoder.batches
    await batcher.close()


async def test_closed_batcher_refuses():
    batcher = MicroBatcher(FakeEncoder(), window_s=0, max_batch=4)
    await batcher.encode(["x"])
    await batcher.close()
    with pytest.raises(ModelUnavailable):
        await batcher.encode(["y"])


async def test_lone_request_does_not_wait_for_the_window_but_company_does():
    encoder = FakeEncoder(delay_s=0.1)
    batcher = MicroBatcher(encoder, window_s=0.5, max_batch=64)
    started = time.perf_counter()
    await batcher.encode(["alone"])
    assert time.perf_counter() - started < 0.3
    busy = asyncio.create_task(batcher.encode(["x"]))  # runs at once: nobody else is in flight
    await asyncio.sleep(0.03)
    first = asyncio.create_task(batcher.encode(["a"]))  # queued behind "x", with company
    await asyncio.sleep(0.15)  # "x" is done; the window for "a" is open
    second = asyncio.create_task(batcher.encode(["b"]))
    await asyncio.gather(busy, first, second)
    assert encoder.batches[-2:] == [["x"], ["a", "b"]]
    await batcher.close()
