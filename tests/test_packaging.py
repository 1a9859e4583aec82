"""Clients install without torch: importing the contract, the config (and the gateway and CLI,
once present) must never import torch, transformers or pandas."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "pandas", "sentence_transformers")


def imports_of(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=ROOT)
    return set(out.stdout.split())


def test_contract_and_config_import_without_torch():
    loaded = imports_of("import labs_core, labs_core.config, labs_core.errors\n"
                        "from labs_core.proto import generation_pb2_grpc, models_pb2_grpc, embeddings_pb2_grpc, "
                        "finance_pb2_grpc, server_pb2_grpc")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_cli_imports_without_torch():
    loaded = imports_of("import labs_cli.main, labs_cli.repl, labs_cli.ask, labs_cli.admin, labs_cli.launch")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_cli_help_and_config_run_without_torch():
    """`labs --help` and `labs config` in one process: neither may pull in torch, transformers or pandas."""
    loaded = imports_of("from labs_cli.main import main\n"
                        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
                        "assert main(['config']) == 0\n"
                        "assert main(['--show-config']) == 0")
    assert "labs_cli" in loaded and not loaded & set(HEAVY), loaded & set(HEAVY)


def test_gateway_imports_and_builds_without_torch():
    loaded = imports_of("import labs_gateway, labs_gateway.server\n"
                        "from labs_core.config import Settings\n"
                        "app = labs_gateway.create_app(Settings())\n"
                        "assert app.state.gateway is not None")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_base_dependencies_exclude_heavy_packages():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for group in ("dependencies",):
        deps = " ".join(project[group]).lower()
        assert not any(h.replace("_", "-") in deps for h in HEAVY)
    for extra in ("gateway", "cli"):
        deps = " ".join(project["optional-dependencies"][extra]).lower()
        assert not any(h.replace("_", "-") in deps for h in HEAVY), extra
