"""The asyncio facade: concurrent streams, and cancellation freeing blocks within a step."""

import asyncio

import pytest

from tests.labs_core.engine.harness import both_step_modes, load, make_engine, request


@pytest.fixture(autouse=True, params=[False, True], ids=["in-step", "run-ahead"])
def step_mode(request, monkeypatch):
    """Every test runs with steps read at once and with one decode step run ahead (as on CUDA)."""
    return both_step_modes(request, monkeypatch)


@pytest.fixture()
def async_engine(tiny_llama_dir):
    from labs_core.engine.async_engine import AsyncEngine

    model, tokenizer = load(tiny_llama_dir)
    return AsyncEngine(make_engine(model, tokenizer))


async def consume(agen, limit=None):
    events = []
    async for event in agen:
        events.append(event)
        if limit is not None and len(events) >= limit:
            break
    return events


async def test_concurrent_streams_finish_with_usage(async_engine):
    from labs_core.engine.outputs import RequestDone

    results = await asyncio.gather(*(consume(async_engine.generate(
        request("same-id", [100 + i, 200, 300], max_tokens=6, temperature=0, ignore_eos=True))) for i in range(8)))
    for events in results:
        assert isinstance(events[-1], RequestDone) and events[-1].usage.completion_tokens == 6
    await async_engine.close()


async def test_cancelled_stream_frees_its_blocks(async_engine):
    engine = async_engine.engine
    task = asyncio.create_task(consume(async_engine.generate(
        request("long", list(range(100, 140)), max_tokens=500, temperature=0, ignore_eos=True))))
    for _ in range(200):
        await asyncio.sleep(0.01)
        if engine.scheduler.running:
            break
    assert engine.blocks.num_used_blocks > 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        await asyncio.sleep(0.01)
        if not engine.scheduler.running and engine.blocks.num_used_blocks == 0:
            break
    assert not engine.scheduler.running and engine.blocks.num_used_blocks == 0 and not engine.requests
    await async_engine.close()


async def test_queue_full_is_raised_at_once(tiny_llama_dir):
    from labs_core.engine.async_engine import AsyncEngine
    from labs_core.errors import QueueFull

    model, tokenizer = load(tiny_llama_dir)
    engine = AsyncEngine(make_engine(model, tokenizer, max_num_seqs=1, max_waiting=0))
    first = engine.generate(request("a", [5, 6, 7], max_tokens=50, temperature=0, ignore_eos=True))
    task = asyncio.create_task(consume(first))
    await asyncio.sleep(0)
    with pytest.raises(QueueFull):
        await consume(engine.generate(request("b", [5, 6, 7], max_tokens=5)))
    assert len((await task)) > 0
    await engine.close()
