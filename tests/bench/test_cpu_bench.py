"""bench/cpu_bench.py's arithmetic: per-stream decode rates, wrong token counts reported, the table."""

from bench.cpu_bench import ModeFigures, Stream, markdown, parse_args, summarize_streams, total_tok_s


def test_streams_summarized_and_short_streams_reported():
    streams = [Stream(sent=0.0, first=0.1, last=1.1, tokens=11, core_ttft_ms=90.0),
               Stream(sent=0.0, first=0.2, last=2.2, tokens=11, core_ttft_ms=110.0),
               Stream(sent=0.0, first=0.2, last=0.3, tokens=3)]
    rate, ttft, core_ttft, errors = summarize_streams(streams, expected=11)
    assert rate == 7.5  # the median of 10 tok/s and 5 tok/s
    assert round(ttft) == 150 and core_ttft == 100.0
    assert errors == ["3 tokens, not 11"]
    assert total_tok_s(streams[:2]) == 22 / 2.2


def test_table_rows_compare_with_hf():
    args = parse_args(["--modes", "int8", "--concurrency", "16"])
    row = ModeFigures("int8", ready_s=[12.0, 6.5], one_stream_tok_s=30.0, ttft_ms=120.0, core_ttft_ms=100.0,
                      concurrent_tok_s={16: 100.0})
    table = markdown(args, hf_tok_s=10.0, prompt_tokens=40, rows=[row], first_ready_s=12.0)
    assert "| int8 | 6.5 | 30.0 (3.00x) | 120 (100) | 100.0 (10.0x) | 0  |" in table


def test_mode_entries_carry_core_settings():
    from bench.cpu_bench import mode_env

    assert mode_env("int4") == {"LABS_QUANTIZATION": "int4"}
    assert mode_env("int4:LABS_CPU_DECODE=false+OMP_NUM_THREADS=1") == {
        "LABS_QUANTIZATION": "int4", "LABS_CPU_DECODE": "false", "OMP_NUM_THREADS": "1"}
    import pytest

    with pytest.raises(ValueError, match="KEY=VALUE"):
        mode_env("int4:LABS_CPU_DECODE")
