"""OutputPacer: a busy engine process sends each stream's tokens merged, at most every interval; a
light one sends every step. Merged or not, the serving side receives the same text and tokens."""

import socket
import threading

from labs_core.engine import wire
from labs_core.engine.output_pacer import OutputPacer
from labs_core.engine.outputs import ChoiceDelta, RequestDone, Timings, TokenLogprob, Usage
from labs_core.engine.worker import EngineLoop
from tests.labs_core.engine.harness import collect, load, make_engine, request
from tests.support import build_tiny_llama


def done() -> RequestDone:
    return RequestDone(Usage(prompt_tokens=2, completion_tokens=3), Timings())


def test_held_deltas_merge_per_choice_and_done_stays_last():
    pacer = OutputPacer(interval_s=0.01, busy_sequences=1)
    pacer.add([("a", [ChoiceDelta(0, text="x", token_ids=[1], logprobs=[TokenLogprob(1, "x", -0.5)]),
                      ChoiceDelta(1, text="p", token_ids=[9]),
                      ChoiceDelta(0, text="y", token_ids=[2], logprobs=[TokenLogprob(2, "y", -0.1)])])], now=0.0)
    pacer.add([("b", [ChoiceDelta(0, text="q", token_ids=[5])])], now=0.001)
    pacer.add([("a", [ChoiceDelta(1, text="r", token_ids=[8], finish_reason="length"),
                      ChoiceDelta(0, text="z", token_ids=[3], finish_reason="stop", stop_reason="END"), done()])],
              now=0.002)
    held = dict(pacer.take())
    first, second, last = held["a"]
    assert (first.index, first.text, first.token_ids, first.finish_reason) == (0, "xyz", [1, 2, 3], "stop")
    assert [lp.token_id for lp in first.logprobs] == [1, 2] and first.stop_reason == "END"
    assert (second.index, second.text, second.token_ids, second.finish_reason) == (1, "pr", [9, 8], "length")
    assert isinstance(last, RequestDone)
    assert [(e.text, e.token_ids) for e in held["b"]] == [("q", [5])]
    assert pacer.take() == []


def test_a_finished_choice_is_never_extended():
    pacer = OutputPacer(interval_s=1.0, busy_sequences=1)
    pacer.add([("a", [ChoiceDelta(0, text="x", token_ids=[1], finish_reason="stop")])], now=0.0)
    pacer.add([("a", [ChoiceDelta(0, text="", token_ids=[])])], now=0.0)
    assert [e.text for e in dict(pacer.take())["a"]] == ["x", ""]


def test_light_load_sends_every_step_and_heavy_load_waits_for_the_interval():
    pacer = OutputPacer(interval_s=0.010, busy_sequences=64)
    assert not pacer.due(running=200, now=0.0)  # nothing held
    pacer.add([("a", [ChoiceDelta(0, text="x", token_ids=[1])])], now=1.000)
    assert pacer.due(running=63, now=1.000)
    assert not pacer.due(running=64, now=1.009)
    assert pacer.due(running=64, now=1.010)
    pacer.take()
    pacer.add([("a", [ChoiceDelta(0, text="y", token_ids=[2])])], now=2.000)  # the clock restarts
    assert not pacer.due(running=100, now=2.005)
    assert OutputPacer(interval_s=0.0).due(running=1000) is False  # nothing held: nothing due


def test_an_aborted_request_loses_its_held_events():
    pacer = OutputPacer(interval_s=1.0)
    pacer.add([("a", [ChoiceDelta(0, text="x", token_ids=[1])]), ("b", [ChoiceDelta(0, text="y", token_ids=[2])])])
    pacer.drop("a")
    assert [rid for rid, _ in pacer.take()] == ["b"]


def test_paced_engine_loop_delivers_what_the_engine_made(tmp_path, tokenizer_dir):
    """The engine process's loop with pacing on for any load: fewer frames, same tokens and text."""
    model, tokenizer = load(build_tiny_llama(tmp_path, tokenizer_dir, seed=3))
    requests = [request(f"r{i}", [100 + i, 200 + i, 300 + i], max_tokens=12, ignore_eos=True,
                        temperature=0.0) for i in range(6)]

    reference: dict = {}
    engine = make_engine(model, tokenizer)
    for r in requests:
        engine.add_request(r)
    steps = 0
    while engine.has_work:
        collect(reference, engine.step())
        steps += 1

    serving, engine_side = socket.socketpair()
    loop = EngineLoop(make_engine(model, tokenizer), wire.Channel(engine_side), stream_interval_s=3600.0)
    loop.pacer.busy_sequences = 1  # paced whatever the load: only the figures and going idle flush
    thread = threading.Thread(target=loop.run)
    thread.start()
    for r in requests:
        serving.sendall(wire.frame(("add", r)))
    serving.settimeout(30)
    reader, outs, got = wire.FrameReader(), [], {}
    while sum(r.done is not None for r in got.values()) < len(requests):
        for message in reader.feed(serving.recv(1 << 20)):
            if message[0] == "out" and message[1]:
                outs.append(message)
                collect(got, [(rid, [wire.unpack_event(item) for item in items]) for rid, items in message[1]])
    serving.sendall(wire.frame(("stop",)))
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert steps >= 12 and len(outs) <= 3  # the first step's (sent with the first figures), then the rest
    assert {rid: r.token_ids for rid, r in got.items()} == {rid: r.token_ids for rid, r in reference.items()}
    assert {rid: r.text for rid, r in got.items()} == {rid: r.text for rid, r in reference.items()}
    assert all(r.finish == {0: "length"} for r in got.values())
    serving.close()
    engine_side.close()
