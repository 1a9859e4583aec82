import pytest

from labs_core.engine.block_manager import BlockManager
from labs_core.engine.params import SamplingParams
from labs_core.engine.scheduler import Scheduler, SchedulerConfig
from labs_core.engine.sequence import Sequence, SequenceStatus


def seq(n, rid="r"):
    return Sequence(request_id=rid, choice_index=0, token_ids=list(range(1, n + 1)), params=SamplingParams(), seed=0)


def advance(batch):
    """What the engine does after a step: count computed tokens, append a token where sampled."""
    for i, s in enumerate(batch.seqs):
        samples = batch.samples(i)
        s.num_computed_tokens += batch.num_new_tokens[i]
        if samples:
            s.token_ids.append(0)


def test_long_prompt_is_chunked_and_decodes_mix_in():
    sched = Scheduler(SchedulerConfig(max_num_seqs=4, max_num_batched_tokens=8), BlockManager(64, 4))
    short, long = seq(3, "short"), seq(20, "long")
    sched.add(short)
    sched.add(long)
    b1 = sched.schedule()
    assert b1.num_new_tokens == [3, 5] and b1.samples(0) and not b1.samples(1)
    advance(b1)
    b2 = sched.schedule()
    assert b2.num_new_tokens == [1, 7]  # a decode and the next chunk share the budget
    advance(b2)
    b3 = sched.schedule()
    assert b3.num_new_tokens == [1, 7]
    advance(b3)
    b4 = sched.schedule()
    assert b4.num_new_tokens == [1, 1] and b4.samples(1)


def test_max_num_seqs_limits_admission():
    sched = Scheduler(SchedulerConfig(max_num_seqs=2, max_num_batched_tokens=100), BlockManager(64, 4))
    for i in range(3):
        sched.add(seq(4, str(i)))
    assert len(sched.schedule()) == 2 and len(sched.waiting) == 1


def test_preempts_newest_when_blocks_run_out_and_requeues_it_first():
    sched = Scheduler(SchedulerConfig(max_num_seqs=4, max_num_batched_tokens=100), BlockManager(4, 4))
    a, b = seq(8, "a"), seq(8, "b")
    sched.add(a)
    sched.add(b)
    advance(sched.schedule())  # both full: 4 blocks used, each needs a new block for its next token
    batch = sched.schedule()
    assert batch.preempted == [b] and batch.seqs == [a]
    assert b.status is SequenceStatus.WAITING and b.num_computed_tokens == 0 and not b.block_table
    assert sched.waiting[0] is b


def test_waiting_sequence_that_cannot_fit_holds_no_blocks():
    blocks = BlockManager(4, 4)
    sched = Scheduler(SchedulerConfig(max_num_seqs=4, max_num_batched_tokens=100), blocks)
    a = seq(12, "a")
    sched.add(a)
    advance(sched.schedule())
    big = seq(12, "big")
    sched.add(big)
    sched.schedule()
    assert big.status is SequenceStatus.WAITING and big.block_table == []


def test_later_choices_wait_for_the_first_prompt():
    sched = Scheduler(SchedulerConfig(max_num_seqs=4, max_num_batched_tokens=4), BlockManager(64, 4))
    first = seq(8, "n")
    second = seq(8, "n")
    second.waits_for = first
    sched.add(first)
    sched.add(second)
    b1 = sched.schedule()
    assert b1.seqs == [first]
    advance(b1)
    b2 = sched.schedule()
    assert b2.seqs == [first]
    advance(b2)
    b3 = sched.schedule()
    assert second in b3.seqs


def decoding(sched, *rids):
    """Sequences admitted and prefilled: from here each step is a decode for them."""
    for rid in rids:
        sched.add(seq(4, rid))
    advance(sched.schedule())


def test_a_short_prompt_arriving_alone_is_prefilled_in_a_step_of_its_own():
    sched = Scheduler(SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=64, lone_prefill_tokens=16),
                      BlockManager(64, 4))
    decoding(sched, "a", "b")
    sched.add(seq(10, "new"))
    lone = sched.schedule()
    assert [s.request_id for s in lone.seqs] == ["new"] and lone.num_new_tokens == [10] and lone.samples(0)
    advance(lone)
    after = sched.schedule()  # then everyone decodes together
    assert sorted(s.request_id for s in after.seqs) == ["a", "b", "new"] and after.is_decode_only


def test_long_prompts_and_crowds_still_share_one_mixed_step():
    config = SchedulerConfig(max_num_seqs=16, max_num_batched_tokens=64, lone_prefill_tokens=16,
                             lone_prefill_max_waiting=2)
    sched = Scheduler(config, BlockManager(128, 4))
    decoding(sched, "a")
    sched.add(seq(20, "long"))  # over lone_prefill_tokens
    batch = sched.schedule()
    assert [s.request_id for s in batch.seqs] == ["a", "long"]
    advance(batch)
    for k in range(3):  # more waiting than lone_prefill_max_waiting
        sched.add(seq(4, f"crowd{k}"))
    batch = sched.schedule()
    assert len(batch.seqs) == 5 and not batch.is_decode_only


def test_without_running_sequences_prompts_are_batched_as_before():
    sched = Scheduler(SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=64, lone_prefill_tokens=16),
                      BlockManager(64, 4))
    sched.add(seq(5, "x"))
    sched.add(seq(6, "y"))
    assert sched.schedule().num_new_tokens == [5, 6]


def test_never_two_lone_prefills_in_a_row_so_a_trickling_burst_is_batched():
    sched = Scheduler(SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=64, lone_prefill_tokens=16),
                      BlockManager(64, 4))
    decoding(sched, "a")
    sched.add(seq(4, "b"))
    first = sched.schedule()
    assert [s.request_id for s in first.seqs] == ["b"]
    advance(first)
    for rid in "cde":  # more than lone_prefill_alternate_waiting (2) came meanwhile: a burst
        sched.add(seq(4, rid))
    mixed = sched.schedule()  # the step after a lone one: everyone, the newcomers' prompts included
    assert sorted(s.request_id for s in mixed.seqs) == ["a", "b", "c", "d", "e"] and not mixed.is_decode_only


@pytest.mark.parametrize("alternate", [2, 0])
def test_after_a_lone_prefill_a_few_newcomers_alternate_with_decode_steps(alternate):
    """Steady arrivals: with one or two prompts waiting after a lone step, the running sequences
    decode alone (a graphed step) and the next prompt goes lone after it, so no mixed step (which has
    no graph) runs; alternate = 0 keeps the first rule, one mixed step."""
    sched = Scheduler(SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=64, lone_prefill_tokens=16,
                                      lone_prefill_alternate_waiting=alternate), BlockManager(64, 4))
    decoding(sched, "a")
    sched.add(seq(4, "b"))
    advance(sched.schedule())  # b alone
    sched.add(seq(4, "c"))
    sched.add(seq(4, "d"))
    kinds = []
    while sched.waiting:
        batch = sched.schedule()
        kinds.append("lone" if sched.last_was_lone else "decode" if batch.is_decode_only else "mixed")
        advance(batch)
    if alternate:
        assert kinds == ["decode", "lone", "decode", "lone"]
    else:
        assert kinds == ["mixed"]
    assert sorted(s.request_id for s in sched.running) == ["a", "b", "c", "d"]
