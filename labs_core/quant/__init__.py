"""Quantized weights on the GPU: FP8 (e4m3, a scale per output channel), int4 weight-only
(W4A16, groups of 128 inputs) and int8 (GGUF Q5_0/Q5_1/Q5_K/Q6_K/Q8_0), their Triton kernels, and AWQ/GPTQ/GGUF conversion.

- formats.py: quantize, pack and dequantize (plain torch; the reference every kernel is checked against)
- kernels.py: Triton GEMV / GEMM and the `labs::quant_linear` custom op that picks one by row count
- linear.py: QuantLinear (and fused q/k/v, gate/up groups) replacing a model's nn.Linear layers
- checkpoints.py: AWQ and GPTQ tensors (qweight/qzeros/scales) converted to the int4 layout
- gguf_blocks.py: a GGUF's Q4_0 / Q4_1 / Q4_K blocks converted to the int4 layout, Q8_0 to int8 (groups of 32)
- modes.py: what LABS_QUANTIZATION means on a device for a checkpoint
"""
