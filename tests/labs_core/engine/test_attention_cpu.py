"""The CPU's batched decode attention equals the per-sequence reference, grouped heads included."""

import torch

from labs_core.engine.attention import AttentionMetadata, KVCache, batched_decode_attention, reference_attention


def test_batched_decode_equals_reference():
    torch.manual_seed(0)
    blocks, block_size, kv_heads, heads, dim = 12, 4, 2, 6, 8
    kv = KVCache(keys=[torch.randn(blocks, block_size, kv_heads, dim)],
                 values=[torch.randn(blocks, block_size, kv_heads, dim)])
    lengths = [3, 9, 14]  # context after this step, the new token included
    tables = torch.tensor([[5, 0, 0, 0], [1, 7, 2, 0], [3, 4, 8, 9]], dtype=torch.int32)
    meta = AttentionMetadata(kv=kv, slot_mapping=torch.zeros(3, dtype=torch.int64), block_tables=tables,
                             context_lens=torch.tensor(lengths, dtype=torch.int32), query_lens=[1, 1, 1],
                             context_lens_host=lengths, decode_only=True)
    q = torch.randn(3, heads, dim)
    expected = reference_attention(meta, 0, q, 0.3, None, None)
    got = batched_decode_attention(meta, 0, q, 0.3)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_batched_decode_without_padding_equals_reference():
    """Sequences of one context length (one sequence, typically) attend without a mask."""
    torch.manual_seed(1)
    kv = KVCache(keys=[torch.randn(12, 4, 2, 8)], values=[torch.randn(12, 4, 2, 8)])
    tables = torch.tensor([[6, 2, 11], [1, 7, 3]], dtype=torch.int32)
    meta = AttentionMetadata(kv=kv, slot_mapping=torch.zeros(2, dtype=torch.int64), block_tables=tables,
                             context_lens=torch.tensor([10, 10], dtype=torch.int32), query_lens=[1, 1],
                             context_lens_host=[10, 10], decode_only=True)
    q = torch.randn(2, 6, 8)
    got = batched_decode_attention(meta, 0, q, 0.3)
    assert meta.extra["decode_mask"] is None
    torch.testing.assert_close(got, reference_attention(meta, 0, q, 0.3, None, None), rtol=1e-5, atol=1e-5)
