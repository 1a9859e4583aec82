"""LABS_QUANTIZATION on each device and checkpoint: what it resolves to, and what is refused (with
a message that names the setting and what to use instead)."""

import pytest

from labs_core.errors import PreconditionFailed
from labs_core.quant.modes import resolve


@pytest.mark.parametrize("mode,device,gguf,method,expected", [
    ("auto", "cuda", None, "", "none"),
    ("auto", "cuda:1", None, "awq", "awq"),
    ("int4", "cuda", None, "gptq", "gptq"),
    ("int4", "cuda", None, "", "int4"),
    ("fp8", "cuda", None, "", "fp8"),
    ("fp8", "cuda", "m.Q4_0.gguf", "", "fp8"),
    ("auto", "cuda", "m.Q4_0.gguf", "", "gguf"),  # its 4-bit blocks kept, the rest bf16
    ("int4", "cuda", "m.Q4_K_M.gguf", "", "int4"),  # its 4-bit blocks kept, the rest rounded to int4
    ("none", "cuda", "m.Q4_0.gguf", "", "none"),
    ("awq", "cuda", None, "awq", "awq"),
    ("auto", "cuda", None, "fp8", "none"),  # other methods: transformers' own loading
    ("auto", "cpu", "m.Q4_1.gguf", "", "int4"),  # the CPU rules (quantize_cpu.py) are unchanged
    ("int8", "cpu", None, "", "int8"),
])
def test_resolves(mode, device, gguf, method, expected):
    assert resolve(mode, device, gguf, method) == expected


@pytest.mark.parametrize("mode,device,method,message", [
    ("fp8", "cpu", "", "needs a CUDA GPU"),
    ("awq", "cpu", "", "needs a CUDA GPU"),
    ("int8", "cuda", "", "CPU only"),
    ("awq", "cuda", "", "carries no quantization"),
    ("gptq", "cuda", "awq", "carries awq"),
    ("fp8", "cuda", "awq", "use auto or int4"),
    ("none", "cuda", "gptq", "use auto or int4"),
    ("int2", "cuda", "", "choose one of"),
])
def test_refused_with_the_reason(mode, device, method, message):
    with pytest.raises(PreconditionFailed, match=message):
        resolve(mode, device, None, method)


def test_the_setting_accepts_the_gpu_values(tmp_path, monkeypatch):
    from labs_core.config import ConfigError, Settings

    monkeypatch.chdir(tmp_path)  # no labs.toml around

    def load(value):
        return Settings.load(environ={"LABS_QUANTIZATION": value}, env_file=tmp_path / ".env")

    for value in ("fp8", "awq", "gptq", "int4"):
        assert load(value).model.quantization == value
    with pytest.raises(ConfigError, match="LABS_QUANTIZATION"):
        load("fp4")
