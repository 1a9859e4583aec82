"""The batch-1 GEMV kernel against F.linear, run by Triton's interpreter on the CPU, and the rule
for which products it takes (one row, on CUDA, once switched on)."""

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")

from labs_core.engine import gemv  # noqa: E402
from tests.support import patch_triton_interpreter  # noqa: E402

patch_triton_interpreter()


@pytest.mark.parametrize("n,k,bias", [(37, 300, False), (64, 1024, True), (5, 1500, True)])
def test_kernel_matches_linear(n, k, bias):
    gen = torch.Generator().manual_seed(n + k)
    x = torch.randn(k, generator=gen)
    w = torch.randn(n, k, generator=gen)
    b = torch.randn(n, generator=gen) if bias else None
    got = gemv.launch_gemv(x, w, b)
    assert got.shape == (n,)
    torch.testing.assert_close(got, F.linear(x, w, b), rtol=1e-4, atol=1e-4)


def test_products_it_takes(monkeypatch):
    w = torch.randn(8, 16)
    monkeypatch.setattr(gemv.switch, "allowed", True)
    with gemv.batch_one():
        assert gemv.switch.on
        assert not gemv.takes(torch.randn(1, 16), w), "CPU tensors stay with F.linear"
        x = torch.randn(1, 1, 16)
        torch.testing.assert_close(gemv.linear(x, w), F.linear(x, w))
    assert not gemv.switch.on, "only inside batch_one (the batch-1 decode graph)"
    assert not gemv.takes(torch.randn(1, 16), w)


def test_use_gemv_routes_plain_linears_and_unfuse_restores_them():
    from labs_core.engine.fusion import unfuse_projections

    model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    x = torch.randn(3, 16)
    before = model(x)
    assert gemv.use_gemv(model) == 2
    torch.testing.assert_close(model(x), before)
    unfuse_projections(model)
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_fusion_is_checked_on_the_first_layer_and_keeps_logits(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    from labs_core.engine.builder import fuse_if_exact
    from labs_core.engine.fusion import unfuse_projections

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    ids = torch.tensor([[5, 17, 300, 42, 7]])
    with torch.inference_mode():
        before = model(input_ids=ids).logits
    assert fuse_if_exact(model, model.config.vocab_size) == 2 * model.config.num_hidden_layers
    with torch.inference_mode():
        torch.testing.assert_close(model(input_ids=ids).logits, before, rtol=1e-5, atol=1e-5)
    unfuse_projections(model)
