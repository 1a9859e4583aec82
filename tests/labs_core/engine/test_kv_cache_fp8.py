"""LABS_KV_CACHE_DTYPE=fp8 on the CPU engine: keys and values written as e4m3 (clamped to its range),
read back by both CPU attention paths, four times the blocks of a float32 cache in the same memory,
and greedy tokens that follow the float cache's on a tiny model."""

import torch

from labs_core.engine.attention import FP8_KV, AttentionMetadata, KVCache, batched_decode_attention, write_kv
from labs_core.engine.model_runner import KVLayout


def test_write_clamps_to_e4m3_range_and_attention_reads_it():
    cache = KVCache([torch.zeros(4, 2, 1, 8, dtype=FP8_KV)], [torch.zeros(4, 2, 1, 8, dtype=FP8_KV)])
    meta = AttentionMetadata(kv=cache, slot_mapping=torch.tensor([0, 1, 2]), block_tables=torch.tensor([[0, 1]]),
                             context_lens=torch.tensor([3]), query_lens=[1], context_lens_host=[3], decode_only=True)
    key = torch.full((3, 1, 8), 1000.0)
    value = torch.randn(3, 1, 8)
    write_kv(meta, 0, key, value)
    assert cache.keys[0].dtype == FP8_KV and torch.all(cache.keys[0].float().view(-1, 8)[:3] == 448.0)
    torch.testing.assert_close(cache.values[0].float().view(-1, 1, 8)[:3], value, rtol=0.07, atol=1e-2)
    q = torch.randn(1, 2, 8)
    out = batched_decode_attention(meta, 0, q, 0.1)
    assert out.dtype == q.dtype and torch.isfinite(out).all()


def test_fp8_layout_holds_twice_bf16s_tokens():
    bf16 = KVLayout(28, 4, 128, torch.bfloat16)
    fp8 = KVLayout(28, 4, 128, FP8_KV)
    assert bf16.bytes_per_block(16) == 2 * fp8.bytes_per_block(16)


def test_engine_with_fp8_cache_follows_the_float_cache(tiny_llama_dir):
    from labs_core.engine.builder import KVSizing, build_paged_engine
    from labs_core.engine.engine import EngineConfig
    from tests.labs_core.engine.harness import load, request, run_to_completion

    def run(kv_dtype):
        model, tokenizer = load(tiny_llama_dir)
        config = EngineConfig(block_size=16, max_num_seqs=64, max_num_batched_tokens=64, max_model_len=256)
        engine = build_paged_engine(model, tokenizer, "cpu", config, KVSizing(cpu_kv_cache_gib=0.001), [],
                                    kv_cache_dtype=kv_dtype).engine
        reqs = [request(f"r{i}", list(range(100 + i, 130 + 2 * i)), max_tokens=8, temperature=0, ignore_eos=True)
                for i in range(3)]
        tokens = {k: v.token_ids for k, v in run_to_completion(engine, reqs).items()}
        return tokens, engine.runner.kv.keys[0].dtype, len(engine.blocks.blocks)

    exact, exact_dtype, exact_blocks = run("")
    fp8, fp8_dtype, fp8_blocks = run("float8_e4m3fn")
    assert exact_dtype == torch.float32 and fp8_dtype == FP8_KV
    assert fp8_blocks >= 4 * exact_blocks - 4  # the same 0.001 GiB: e4m3 is a quarter of float32
    same = sum(a == b for k in exact for a, b in zip(exact[k], fp8[k]))
    assert same >= 0.75 * sum(len(v) for v in exact.values()), (exact, fp8)
