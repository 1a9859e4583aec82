"""RequestStream: tokens merge while the consumer is away, arrive at once when it waits."""

import asyncio

import pytest

from labs_core.engine.outputs import ChoiceDelta, RequestDone, Timings, TokenLogprob, Usage
from labs_core.engine.request_stream import RequestStream


def done() -> RequestDone:
    return RequestDone(Usage(prompt_tokens=3, completion_tokens=4), Timings())


async def test_deltas_that_wait_are_merged_per_choice_in_order():
    stream = RequestStream()
    stream.put(ChoiceDelta(0, text="a", token_ids=[1], logprobs=[TokenLogprob(1, "a", -0.1)]))
    stream.put(ChoiceDelta(1, text="x", token_ids=[7]))
    stream.put(ChoiceDelta(0, text="b", token_ids=[2], logprobs=[TokenLogprob(2, "b", -0.2)]))
    stream.put(ChoiceDelta(0, text="c", token_ids=[3], finish_reason="stop", stop_reason="END"))
    stream.put(done())
    events = await stream.take()
    assert [type(e) for e in events] == [ChoiceDelta, ChoiceDelta, RequestDone]
    first, second = events[0], events[1]
    assert (first.index, first.text, first.token_ids) == (0, "abc", [1, 2, 3])
    assert [lp.token_id for lp in first.logprobs] == [1, 2]
    assert (first.finish_reason, first.stop_reason) == ("stop", "END")
    assert (second.index, second.text, second.finish_reason) == (1, "x", None)
    assert stream.finished


async def test_a_waiting_consumer_gets_each_token_as_it_comes():
    stream = RequestStream()
    got = []

    async def consume():
        while not stream.finished:
            got.append(await stream.take())

    task = asyncio.create_task(consume())
    for i in range(3):
        await asyncio.sleep(0)
        stream.put(ChoiceDelta(0, text=str(i), token_ids=[i]))
        await asyncio.sleep(0)
    stream.put(done())
    await asyncio.wait_for(task, 1)
    assert [[e.text for e in batch if isinstance(e, ChoiceDelta)] for batch in got[:3]] == [["0"], ["1"], ["2"]]
    assert isinstance(got[-1][-1], RequestDone)


async def test_an_error_comes_after_the_events_before_it():
    stream = RequestStream()
    stream.put(ChoiceDelta(0, text="partial", token_ids=[1]))
    stream.fail(RuntimeError("engine gone"))
    assert [e.text for e in await stream.take()] == ["partial"]
    with pytest.raises(RuntimeError, match="engine gone"):
        await stream.take()
    assert stream.finished
