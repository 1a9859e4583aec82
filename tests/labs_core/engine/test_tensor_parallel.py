"""Tensor parallelism on CPU: a 2-process gloo group gives the same greedy tokens as one process."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from labs_core.engine.tensor_parallel import ShardPlan, TensorParallelError
from tests.labs_core.engine.harness import load, make_engine, request, run_to_completion
from tests.support import build_tiny_llama

PROMPTS = [[101, 2050, 3301, 45, 990, 7], [12, 13, 14], list(range(200, 260))]
NEW_TOKENS = [20, 12, 9]


class Config:
    """What ShardPlan reads of a transformers config."""

    def __init__(self, model_type="llama", heads=8, kv=2, hidden=64, intermediate=128, vocab=1000):
        self.model_type, self.num_attention_heads, self.num_key_value_heads = model_type, heads, kv
        self.hidden_size, self.intermediate_size, self.vocab_size = hidden, intermediate, vocab
        self.head_dim = hidden // heads


def test_each_rank_holds_its_heads_and_replicates_kv_heads_when_too_few():
    plans = [ShardPlan.of(Config(heads=8, kv=2), rank, 4) for rank in range(4)]
    assert [p.q_rows() for p in plans] == [slice(0, 16), slice(16, 32), slice(32, 48), slice(48, 64)]
    # Query heads 0-3 use KV head 0, heads 4-7 KV head 1: ranks 0-1 hold KV head 0, ranks 2-3 head 1.
    assert [p.kv_rows() for p in plans] == [slice(0, 8), slice(0, 8), slice(8, 16), slice(8, 16)]
    assert all(p.local_kv_heads == 1 for p in plans)
    two = [ShardPlan.of(Config(heads=8, kv=4), rank, 2) for rank in range(2)]
    assert [p.kv_rows() for p in two] == [slice(0, 16), slice(16, 32)] and two[0].local_kv_heads == 2


def test_vocabulary_that_does_not_divide_is_padded_on_the_last_rank():
    plans = [ShardPlan.of(Config(vocab=1001), rank, 2) for rank in range(2)]
    assert [p.vocab_rows() for p in plans] == [slice(0, 501), slice(501, 1001)]
    assert plans[0].split("lm_head.weight") == (0, slice(0, 501))
    assert plans[0].split("model.layers.3.self_attn.o_proj.weight") == (1, slice(0, 32))
    assert plans[0].split("model.layers.3.self_attn.o_proj.bias") is None  # added once, after the sum
    assert plans[0].split("model.norm.weight") is None


@pytest.mark.parametrize("config, message", [
    (Config(model_type="gpt2"), "not 'gpt2'"),
    (Config(heads=6, kv=2), "6 attention heads"),
    (Config(heads=8, kv=3), "3 KV heads"),
])
def test_models_that_cannot_split_are_refused_with_the_reason(config, message):
    with pytest.raises(TensorParallelError, match=message):
        ShardPlan.of(config, 0, 4)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank: int, world: int, port: int, model_dir: str, out: str, from_checkpoint: bool,
              run_ahead: bool = False, fuse: bool = False) -> None:
    """One rank: rank 0 runs the engine, the others follow its steps."""
    import torch.distributed as dist
    from transformers import AutoTokenizer

    from labs_core.engine.engine import EngineConfig, LLMEngine
    from labs_core.engine.model_runner import ModelRunner
    from labs_core.engine.tensor_parallel import StepChannel, TensorParallel, follow, load_sharded, shard_model

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        tp = TensorParallel(rank, world)
        if from_checkpoint:
            model = load_sharded(model_dir, tp, torch.float32, "cpu")
        else:
            model = load(Path(model_dir))[0]
            shard_model(model, tp)
        attention = model.model.layers[0].self_attn
        assert attention.q_proj.out_features == model.config.hidden_size // world  # this rank's heads only
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        channel = StepChannel(tp)
        if rank != 0:
            follow(model, channel, "cpu")
            assert ("forward" in attention.q_proj.__dict__) == fuse  # fused when rank 0 said so
            # Every collective was waited for (an unwaited one stays in torch's registry, holding its
            # tensors: a leak that grows with each step).
            assert torch._C._distributed_c10d._get_work_registry_size() == 0
            return
        runner = ModelRunner(model, 4, 256, "cpu", (tokenizer.eos_token_id,), steps=channel)
        if fuse:
            assert runner.fuse_projections() == 2 * model.config.num_hidden_layers
        engine = LLMEngine(runner, tokenizer, EngineConfig(block_size=4, max_model_len=1024, run_ahead=run_ahead),
                           eos_token_ids=[tokenizer.eos_token_id])
        results = run_to_completion(engine, [request(f"r{i}", p, max_tokens=n, temperature=0, ignore_eos=True)
                                             for i, (p, n) in enumerate(zip(PROMPTS, NEW_TOKENS))])
        channel.stop()
        assert (engine.steps_ahead > 0) == run_ahead
        Path(out).write_text(json.dumps({rid: r.token_ids[0] for rid, r in results.items()}))
    finally:
        dist.destroy_process_group()


def single_process_tokens(model_dir: Path) -> dict[str, list[int]]:
    model, tokenizer = load(model_dir)
    results = run_to_completion(make_engine(model, tokenizer, run_ahead=False),
                                [request(f"r{i}", p, max_tokens=n, temperature=0, ignore_eos=True)
                                 for i, (p, n) in enumerate(zip(PROMPTS, NEW_TOKENS))])
    return {rid: r.token_ids[0] for rid, r in results.items()}


def tensor_parallel_tokens(model_dir: Path, world: int, tmp_path: Path, from_checkpoint: bool,
                           run_ahead: bool = False, fuse: bool = False) -> dict[str, list[int]]:
    out = tmp_path / "tokens.json"
    mp.start_processes(rank_main, args=(world, free_port(), str(model_dir), str(out), from_checkpoint, run_ahead,
                                        fuse),
                       nprocs=world, start_method="spawn")
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def qwen_like_dir(tmp_path_factory, tokenizer_dir):
    """Qwen2: q/k/v biases, an untied LM head, one KV head (replicated on both ranks)."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    out = tmp_path_factory.mktemp("qwen-like")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=1024,
                         eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False, initializer_range=0.3)
    torch.manual_seed(3)
    Qwen2ForCausalLM(config).save_pretrained(out)
    for item in Path(tokenizer_dir).iterdir():
        shutil.copy(item, out / item.name)
    return out


def test_two_ranks_give_the_tokens_of_one_process_llama_split_in_memory(tmp_path_factory, tokenizer_dir, tmp_path):
    model_dir = build_tiny_llama(tmp_path_factory.mktemp("tp-llama"), tokenizer_dir, seed=1, initializer_range=0.3,
                                 attention_bias=True)
    assert tensor_parallel_tokens(model_dir, 2, tmp_path, False) == single_process_tokens(model_dir)


def test_two_ranks_give_the_tokens_of_one_process_qwen2_read_shard_by_shard(qwen_like_dir, tmp_path):
    assert tensor_parallel_tokens(qwen_like_dir, 2, tmp_path, True) == single_process_tokens(qwen_like_dir)


def test_two_ranks_running_ahead_with_fused_projections_give_the_tokens_of_one_process(qwen_like_dir, tmp_path):
    """Run-ahead: rank 0 feeds the tokens it drew on its device to the next step; the other ranks get
    them by a broadcast (without it they would embed placeholder ids and the tokens would differ).
    Fusion: every rank fuses its own q/k/v and gate/up shards when rank 0's runner says so."""
    assert tensor_parallel_tokens(qwen_like_dir, 2, tmp_path, True, run_ahead=True, fuse=True) == \
        single_process_tokens(qwen_like_dir)


def idle_rank(rank: int, port: int, out: str) -> None:
    """Rank 0 stays idle past the collective timeout, sends one step, then dies; rank 1 records what
    its waits gave."""
    import datetime
    import time

    from labs_core.engine import tp_group
    from labs_core.engine.tensor_parallel import StepChannel

    tp_group.COLLECTIVE_TIMEOUT = datetime.timedelta(seconds=2)
    channel = StepChannel(tp_group.join(tp_group.GroupSpec(2, port, Path("."), torch.float32, "cpu"), rank))
    if rank == 0:
        time.sleep(4)  # an idle server: no step for twice the collective timeout
        channel.send(("step", ()))
        time.sleep(1)
        os._exit(0)  # dies without its stop message
    got = [channel.receive()]
    started = time.monotonic()
    try:
        channel.receive()
    except RuntimeError:
        got.append(time.monotonic() - started)
    Path(out).write_text(json.dumps(got))
    # Out without the interpreter's teardown: the process group's destructor, its peer gone, could
    # abort the process after the figures were written ("terminate called without an active
    # exception", SIGABRT; once in a fresh-clone CI run), which start_processes reports as a failure.
    os._exit(0)


def test_a_rank_waits_out_an_idle_rank0_and_fails_at_once_when_it_dies(tmp_path):
    out = tmp_path / "waits.json"
    mp.start_processes(idle_rank, args=(free_port(), str(out)), nprocs=2, start_method="spawn")
    step, failed_after = json.loads(out.read_text())
    assert step == ["step", []] and failed_after < 10  # not the idle timeout: the closed socket


def child_pids(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


@pytest.mark.slow
def test_core_serves_a_model_over_two_ranks_and_stopping_it_ends_them(tmp_path_factory, tokenizer_dir):
    """LABS_TENSOR_PARALLEL_SIZE=2 on CPU: the engine process is rank 0 and starts rank 1; gRPC
    clients get the tokens of one process; stopping the core ends both."""
    import time

    import grpc

    from labs_core.proto import generation_pb2 as g
    from labs_core.proto import generation_pb2_grpc
    from tests.support import CoreThread, core_settings

    model_dir = build_tiny_llama(tmp_path_factory.mktemp("tp-served"), tokenizer_dir, seed=1, initializer_range=0.3)
    settings = core_settings(model_dir, model={"served_name": "tiny"}, embeddings={"embedding_model": ""},
                             engine={"tensor_parallel_size": 2})
    with CoreThread(settings) as core:
        backend = core.server.state.registry.find("tiny").obj.backend
        assert type(backend).__name__ == "EngineProcess"
        followers = child_pids(backend.process.pid)
        assert len(followers) == 1
        with grpc.insecure_channel(core.address) as channel:
            stub = generation_pb2_grpc.GenerationStub(channel)
            served = {}
            for i, ids in enumerate(PROMPTS):
                request = g.GenerateRequest(prompt_token_ids=ids, sampling=g.SamplingParams(
                    max_tokens=NEW_TOKENS[i], temperature=0, ignore_eos=True))
                served[f"r{i}"] = [t for r in stub.Generate(request) for t in r.token_ids]
    assert served == single_process_tokens(model_dir)
    deadline = time.monotonic() + 30
    while not all(gone(pid) for pid in followers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(gone(pid) for pid in followers)
