"""engine/pdl.py: when programmatic dependent launch is on, and the launch options it gives the kernels
(the launches themselves need a Hopper GPU: bench/quant_bench.py --pdl false,auto measures them)."""

import torch
import torch._inductor.config as inductor

from labs_core.engine import pdl


@inductor.patch({"triton.enable_pdl": False})  # (a config module: patched its own way, restored after)
def test_off_on_the_cpu_and_the_compiled_forward_left_alone():
    assert not pdl.supported("cpu")
    assert pdl.enable(True, "cpu") is False
    assert pdl.launch() == {} and pdl.launch(3584, 2) == {}
    assert inductor.triton.enable_pdl is False


def test_needs_hopper(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert not pdl.supported("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert pdl.supported("cuda") is pdl.HAS_GDC


def test_launch_options_cover_a_row_in_lines(monkeypatch):
    monkeypatch.setattr(pdl.state, "on", True)
    assert pdl.launch() == {"PDL": True, "launch_pdl": True}
    bf16 = pdl.launch(3584, 2)  # 7,168 bytes: 56 lines of 64 elements, hinted as 64
    assert bf16 == {"PDL": True, "launch_pdl": True, "LINE": 64, "LINES": 64}
    fp8 = pdl.launch(18944, 1)  # 148 lines of 128
    assert (fp8["LINE"], fp8["LINES"]) == (128, 256)
    int4 = pdl.launch(3584 // 8, 4)  # int32 words: 14 lines of 32
    assert (int4["LINE"], int4["LINES"]) == (32, 16)
    assert pdl.launch(10, 2)["LINES"] == 1


@inductor.patch({"triton.enable_pdl": False})
def test_compiled_forward_follows_the_switch(monkeypatch):
    monkeypatch.setattr(pdl, "supported", lambda device: True)
    monkeypatch.setattr(pdl.state, "on", False)
    assert pdl.enable(True, "cuda", compiled=True) and inductor.triton.enable_pdl is True
    assert pdl.enable(True, "cuda", compiled=False) and inductor.triton.enable_pdl is False  # (LABS_PDL=kernels)
    assert not pdl.enable(False, "cuda") and inductor.triton.enable_pdl is False
    assert pdl.launch() == {}
