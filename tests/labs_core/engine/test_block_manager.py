from labs_core.engine.block_manager import BlockManager
from labs_core.engine.params import SamplingParams
from labs_core.engine.sequence import Sequence


def seq(tokens):
    return Sequence(request_id="r", choice_index=0, token_ids=list(tokens), params=SamplingParams(), seed=0)


def computed(bm, s, n):
    bm.allocate(s, n)
    s.num_computed_tokens = n
    bm.register_computed(s)


def test_allocate_and_free_counts():
    bm = BlockManager(num_blocks=8, block_size=4)
    s = seq(range(10))
    bm.allocate(s, 10)
    assert len(s.block_table) == 3 and bm.num_free_blocks == 5
    bm.free_sequence(s)
    assert bm.num_free_blocks == 8 and s.block_table == []


def test_prefix_hit_after_compute_only():
    bm = BlockManager(num_blocks=8, block_size=4)
    a = seq(range(12))
    bm.allocate(a, 12)  # allocated, not yet computed: must not be served to others
    b = seq(range(12))
    assert bm.match_prefix(b) == 0
    a.num_computed_tokens = 12
    bm.register_computed(a)
    c = seq(list(range(8)) + [99, 98, 97])
    assert bm.match_prefix(c) == 8
    assert c.block_table == a.block_table[:2]
    assert bm.blocks[a.block_table[0]].ref_count == 2


def test_freed_blocks_keep_their_hash_until_reused():
    bm = BlockManager(num_blocks=4, block_size=4)
    a = seq(range(9))
    computed(bm, a, 9)
    bm.free_sequence(a)
    b = seq(range(9))
    assert bm.match_prefix(b) == 8
    assert bm.num_free_blocks == 2


def test_eviction_drops_stale_hash_and_confirms_tokens():
    bm = BlockManager(num_blocks=2, block_size=2)
    a = seq([1, 2, 3])
    computed(bm, a, 3)
    bm.free_sequence(a)
    other = seq([7, 8, 9, 10])
    bm.allocate(other, 4)  # reuses both freed blocks
    assert bm.hash_to_block == {}
    b = seq([1, 2, 3])
    assert bm.match_prefix(b) == 0


def test_at_least_one_token_left_to_compute():
    bm = BlockManager(num_blocks=8, block_size=4)
    a = seq(range(8))
    computed(bm, a, 8)
    b = seq(range(8))
    assert bm.match_prefix(b) == 4  # the second block would leave nothing to compute


def test_prefix_caching_off():
    bm = BlockManager(num_blocks=8, block_size=4, enable_prefix_caching=False)
    a = seq(range(8))
    computed(bm, a, 8)
    assert bm.match_prefix(seq(range(9))) == 0
