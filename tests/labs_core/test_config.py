import pytest

from labs_core.config import ConfigError, Settings, env_names, read_dotenv


def load(tmp_path, environ=None, toml=None, dotenv=None, cli=None):
    toml_path = None
    if toml is not None:
        toml_path = tmp_path / "labs.toml"
        toml_path.write_text(toml)
    env_file = tmp_path / ".env"
    if dotenv is not None:
        env_file.write_text(dotenv)
    return Settings.load(cli, environ=environ or {}, toml_path=toml_path, env_file=env_file)


def test_precedence_cli_over_env_over_dotenv_over_toml_over_default(tmp_path):
    toml = "[sampling]\ntemperature = 0.1\ntop_p = 0.5\ntop_k = 7\nmax_new_tokens = 9\n"
    dotenv = "LABS_TOP_P=0.6\nLABS_TOP_K=8\nLABS_MAX_NEW_TOKENS=10\n"
    environ = {"LABS_TOP_K": "11", "LABS_MAX_NEW_TOKENS": "12"}
    s = load(tmp_path, environ, toml, dotenv, cli={"sampling.max_new_tokens": 13})
    assert s.sampling.temperature == 0.1 and s.sources["sampling.temperature"].kind == "labs.toml"
    assert s.sampling.top_p == 0.6 and s.sources["sampling.top_p"].kind == ".env"
    assert s.sampling.top_k == 11 and s.sources["sampling.top_k"].kind == "env"
    assert s.sampling.max_new_tokens == 13 and s.sources["sampling.max_new_tokens"].kind == "cli"
    assert s.sampling.repetition_penalty == 1.0 and s.sources["sampling.repetition_penalty"].kind == "default"


@pytest.mark.parametrize("name,value,needle", [
    ("LABS_DO_SAMPLE", "maybe", "LABS_DO_SAMPLE"),
    ("LABS_TRUST_REMOTE_CODE", "2", "not a boolean"),
    ("LABS_TORCH_DTYPE", "bf17", "bf16, fp16, fp32"),
    ("LABS_MAX_NEW_TOKENS", "ten", "not an integer"),
    ("LABS_TEMPERATURE", "nan", "finite"),
    ("LABS_TEMPERATURE", "3", "above the maximum"),
    ("LABS_PORT", "70000", "LABS_PORT"),
    ("LABS_INT4_LAYOUT", "bogus", "auto, exact"),
    ("LABS_PDL", "maybe", "auto, kernels, false"),
])
def test_bad_values_are_errors_naming_the_variable(tmp_path, name, value, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        load(tmp_path, {name: value})
    assert name in str(info.value)


@pytest.mark.parametrize("text,expected", [("true", True), ("0", False), ("YES", True), ("off", False)])
def test_booleans(tmp_path, text, expected):
    assert load(tmp_path, {"LABS_PRELOAD_ON_START": text}).model.preload_on_start is expected


def test_dtype_is_case_insensitive_and_lists_split(tmp_path):
    s = load(tmp_path, {"LABS_TORCH_DTYPE": "BF16", "LABS_CORE_ADDRESS": "a:1, b:2"})
    assert s.model.torch_dtype == "bf16"
    assert s.gateway.core_address == ("a:1", "b:2")


def test_unknown_toml_key_and_section_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown setting 'temprature'"):
        load(tmp_path, toml="[sampling]\ntemprature = 1\n")
    with pytest.raises(ConfigError, match=r"unknown section \[nope\]"):
        load(tmp_path, toml="[nope]\nx = 1\n")


def test_repo_labs_toml_loads_and_matches_code_defaults():
    from pathlib import Path

    repo_toml = Path(__file__).resolve().parents[2] / "labs.toml"
    from_file = Settings.load(environ={}, toml_path=repo_toml, env_file="/nonexistent")
    assert from_file == Settings(), "labs.toml and the code defaults drifted apart"


def test_secrets_are_masked_in_describe(tmp_path):
    s = load(tmp_path, {"LABS_API_KEYS": "team:sk-123", "LABS_CORE_TOKEN": "tok"})
    shown = {row.env: row.shown_value for row in s.describe()}
    assert shown["LABS_API_KEYS"] == "***" and shown["LABS_CORE_TOKEN"] == "***"
    assert "sk-123" not in repr(s.describe()[0].shown_value)


def test_every_seed_knob_has_its_variable():
    names = env_names()
    for var in ("LABS_MODEL", "LABS_MAX_NEW_TOKENS", "LABS_TEMPERATURE", "LABS_TOP_P", "LABS_TOP_K", "LABS_DO_SAMPLE",
                "LABS_REPETITION_PENALTY", "LABS_DEVICE_MAP", "LABS_TORCH_DTYPE", "LABS_TRUST_REMOTE_CODE",
                "LABS_HOST", "LABS_PORT", "LABS_EMBEDDING_MODEL", "LABS_EMBEDDING_DEVICE", "LABS_PRELOAD_ON_START",
                "LABS_CORE_ADDRESS", "LABS_GRPC_PORT"):
        assert var in names


def test_dotenv_parsing(tmp_path):
    path = tmp_path / ".env"
    path.write_text("# comment\nexport LABS_A='x y'\nLABS_B=\"q\"\nLABS_C=plain # trailing\n\n")
    assert read_dotenv(path) == {"LABS_A": "x y", "LABS_B": "q", "LABS_C": "plain"}
    path.write_text("garbage line\n")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        read_dotenv(path)
