"""The Triton kernels against the plain-torch reference, run by Triton's interpreter on the CPU
(TRITON_INTERPRET=1, set in tests/conftest.py): random paged caches, ragged lengths, GQA, chunked
prefill over cached context, sliding windows, soft-capping, split decode."""

import random

import pytest
import torch

triton = pytest.importorskip("triton")

from labs_core.engine.attention import AttentionMetadata, KVCache, reference_attention  # noqa: E402
from labs_core.engine.attention_triton import TritonBackend  # noqa: E402
from tests.support import patch_triton_interpreter  # noqa: E402

patch_triton_interpreter()

HEADS, KV_HEADS, DIM, BLOCK = 4, 2, 16, 4


def paged_case(query_lens, context_lens, seed=0, num_blocks=64):
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randn(num_blocks, BLOCK, KV_HEADS, DIM, generator=gen)
    values = torch.randn(num_blocks, BLOCK, KV_HEADS, DIM, generator=gen)
    rng = random.Random(seed)
    free = list(range(num_blocks))
    rng.shuffle(free)
    tables = [[free.pop() for _ in range(-(-ctx // BLOCK))] for ctx in context_lens]
    width = max(len(t) for t in tables)
    meta = AttentionMetadata(
        kv=KVCache([keys], [values]), slot_mapping=torch.zeros(0, dtype=torch.int64),
        block_tables=torch.tensor([t + [0] * (width - len(t)) for t in tables], dtype=torch.int32),
        context_lens=torch.tensor(context_lens, dtype=torch.int32), query_lens=list(query_lens),
        context_lens_host=list(context_lens), decode_only=all(n == 1 for n in query_lens))
    q = torch.randn(sum(query_lens), HEADS, DIM, generator=gen)
    return meta, q


@pytest.mark.parametrize("window,softcap", [(None, None), (5, None), (None, 7.0)])
def test_prefill_kernel_matches_reference(window, softcap):
    query_lens, context_lens = [7, 1, 70, 3], [7, 9, 90, 20]  # fresh prompt, decode, chunk after cache, ...
    meta, q = paged_case(query_lens, context_lens)
    backend = TritonBackend()
    backend.prefill_block_m = backend.prefill_block_n = 16
    meta.extra["tiles"] = backend.prefill_tiles(query_lens, torch.device("cpu"))
    got = backend.attend(meta, 0, q, 0.25, window, softcap)
    expected = reference_attention(meta, 0, q, 0.25, window, softcap)
    torch.testing.assert_close(got, expected, atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize("splits", [1, 4])
@pytest.mark.parametrize("window,softcap", [(None, None), (6, None), (None, 5.0)])
def test_decode_kernel_matches_reference(splits, window, softcap):
    context_lens = [1, 5, 33, 70]
    meta, q = paged_case([1] * 4, context_lens, seed=1)
    meta.extra["num_splits"] = splits
    backend = TritonBackend()
    backend.decode_block_n = 16
    got = backend.attend(meta, 0, q, 0.3, window, softcap)
    expected = reference_attention(meta, 0, q, 0.3, window, softcap)
    torch.testing.assert_close(got, expected, atol=2e-4, rtol=2e-4)


def test_num_splits_fills_the_gpu_without_tiny_splits():
    assert TritonBackend.num_splits(256, 4, 4096, 132) == 1
    assert TritonBackend.num_splits(1, 4, 4096, 132) == 16
    assert TritonBackend.num_splits(1, 4, 300, 132) == 1


def test_engine_with_triton_backend_matches_reference_engine(tiny_llama_dir):
    """The runner's Triton metadata path (tiles, splits) end to end, on the interpreter."""
    from tests.labs_core.engine.harness import load, make_engine, request, run_to_completion

    def run(use_triton):
        model, tokenizer = load(tiny_llama_dir)
        engine = make_engine(model, tokenizer, max_num_batched_tokens=24)
        if use_triton:
            engine.runner.attention_backend = TritonBackend()
            engine.runner.attention_backend.prefill_block_m = engine.runner.attention_backend.prefill_block_n = 16
            engine.runner.attention_backend.decode_block_n = 16
        reqs = [request(f"r{i}", list(range(200 + i, 230 + 3 * i)), max_tokens=5, temperature=0, ignore_eos=True)
                for i in range(3)]
        return {k: v.token_ids for k, v in run_to_completion(engine, reqs).items()}

    assert run(True) == run(False)


def as_fp8(meta):
    """The same case with an e4m3 cache (LABS_KV_CACHE_DTYPE=fp8)."""
    kv = meta.kv
    meta.kv = KVCache([k.to(torch.float8_e4m3fn) for k in kv.keys], [v.to(torch.float8_e4m3fn) for v in kv.values])
    return meta


@pytest.mark.parametrize("decode", [True, False])
def test_kernels_read_an_fp8_cache_as_the_reference_does(decode):
    """Both kernels convert e4m3 K/V to the queries' type as they load them: the same product as
    the reference on the same cache, and within e4m3's rounding of the float cache's."""
    query_lens, context_lens = ([1] * 4, [1, 5, 33, 70]) if decode else ([7, 1, 70, 3], [7, 9, 90, 20])
    meta, q = paged_case(query_lens, context_lens, seed=2)
    exact = reference_attention(meta, 0, q, 0.3, None, None)
    meta = as_fp8(meta)
    backend = TritonBackend()
    backend.prefill_block_m = backend.prefill_block_n = backend.decode_block_n = 16
    meta.extra["tiles"] = backend.prefill_tiles(query_lens, torch.device("cpu"))
    meta.extra["num_splits"] = 2
    got = backend.attend(meta, 0, q, 0.3, None, None)
    torch.testing.assert_close(got, reference_attention(meta, 0, q, 0.3, None, None), atol=2e-4, rtol=2e-4)
    assert (got - exact).norm() / exact.norm() < 0.06  # e4m3: 3 mantissa bits
