"""The Dockerfiles and .dockerignore, checked without a Docker engine: what they copy exists and reaches
the build context, what they run exists, what they set is real, and the gateway image stays torch-free."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.deploy.manifests import (DEPLOY, ROOT, copy_sources, dockerfile_instructions, dockerignored, env_of,
                                    exec_form, final_stage, healthcheck_argv, healthcheck_options, module_path,
                                    console_scripts, real_env_vars, requirements_script, single)

CORE = DEPLOY / "Dockerfile.core"
GATEWAY = DEPLOY / "Dockerfile.gateway"
requirements = requirements_script().requirements
HEAVY = ("torch", "transformers", "pandas", "sentence-transformers", "accelerate")


def package_present(name: str) -> bool:
    return (ROOT / name / "__init__.py").is_file()


def skip_unmerged_gateway(path: Path) -> None:
    if path == GATEWAY and not package_present("labs_gateway"):
        pytest.skip("labs_gateway is not on this branch yet")


def test_both_dockerfiles_exist():
    assert CORE.is_file() and GATEWAY.is_file()


@pytest.mark.parametrize("path", [CORE, GATEWAY], ids=["core", "gateway"])
def test_copy_sources_exist_and_are_not_dockerignored(path):
    skip_unmerged_gateway(path)
    sources = copy_sources(path)
    assert "pyproject.toml" in sources and "labs_core" in sources and "labs.toml" in sources
    # pip needs the readme pyproject.toml names, or the install fails inside the build.
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["readme"]
    assert readme in sources
    for source in sources:
        assert (ROOT / source).exists(), f"{path.name}: COPY {source} does not exist"
        assert not dockerignored(source), f"{path.name}: COPY {source} is excluded by .dockerignore"


def test_dockerignore_keeps_the_context_small_and_secret_free():
    for path in (".venv", ".venv/lib/python3.11", "tests", "tests/deploy/test_compose.py", ".git", "bench",
                 "docs", "data/all_transactions.csv", ".env", "deploy/labs.env", "labs_core/__pycache__",
                 "labs_core/proto/__pycache__/x.pyc", ".pytest_cache", "labs.egg-info"):
        assert dockerignored(path), path
    for path in ("labs_core/server.py", "labs_core/proto/generation_pb2.py", "pyproject.toml", "labs.toml",
                 "deploy/pyproject_requirements.py"):
        assert not dockerignored(path), path


def test_dockerignore_matcher_is_not_vacuous():
    assert dockerignored("a/b/__pycache__/c.pyc", ["**/__pycache__"])
    assert dockerignored("__pycache__", ["**/__pycache__"])
    assert not dockerignored("labs_core/x.py", ["**/__pycache__", "tests"])
    assert dockerignored("tests/x.py", ["tests"])


@pytest.mark.parametrize("path,script", [(CORE, "labs-core"), (GATEWAY, "labs-gateway")], ids=["core", "gateway"])
def test_cmd_is_a_console_script_of_this_project(path, script):
    cmd = exec_form(single(final_stage(path), "CMD").args)
    assert cmd == [script]
    target = console_scripts()[script]
    module = target.split(":")[0]
    if path == GATEWAY and not package_present("labs_gateway"):
        pytest.skip("labs_gateway is not on this branch yet")
    assert module_path(module) is not None, f"{target}: no module {module} in the repo"
    function = target.split(":")[1]
    assert re.search(rf"^def {function}\(", module_path(module).read_text(), re.M), target


def test_core_healthcheck_runs_the_healthcheck_module():
    argv = healthcheck_argv(final_stage(CORE))
    assert argv[:3] == ["python", "-m", "labs_core.healthcheck"]
    assert module_path("labs_core.healthcheck") is not None
    # The flags it passes are ones the module accepts.
    from labs_core.healthcheck import parse_args

    parse_args(argv[3:])
    options = healthcheck_options(final_stage(CORE))
    # Long enough for a first model load; the probe's own timeout below the check's.
    assert options["start-period"].endswith("s") and int(options["start-period"][:-1]) >= 300
    assert float(argv[argv.index("--timeout") + 1]) < int(options["timeout"].rstrip("s"))


def test_gateway_healthcheck_calls_health_on_the_gateway_port():
    argv = healthcheck_argv(final_stage(GATEWAY))
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "<healthcheck>", "exec")
    assert "/health'" in argv[2] and "LABS_PORT" in argv[2]


@pytest.mark.parametrize("path", [CORE, GATEWAY], ids=["core", "gateway"])
def test_image_runs_as_non_root_and_binds_all_interfaces(path):
    stage = final_stage(path)
    users = [i.args for i in stage if i.keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    # The CMD comes after USER, so the service never runs as root.
    keywords = [i.keyword for i in stage]
    assert keywords.index("USER") < keywords.index("CMD")
    env = env_of(stage)
    host_var, port_var = ("LABS_GRPC_HOST", "LABS_GRPC_PORT") if path == CORE else ("LABS_HOST", "LABS_PORT")
    assert env[host_var] == "0.0.0.0"
    assert single(stage, "EXPOSE").args == env[port_var]
    assert env["LABS_CONFIG"] == "/app/labs.toml"
    assert any(i.keyword == "COPY" and i.args.endswith("labs.toml /app/labs.toml") for i in stage)


@pytest.mark.parametrize("path", [CORE, GATEWAY], ids=["core", "gateway"])
def test_labs_variables_are_real_and_no_secrets_are_baked_in(path):
    env = env_of(dockerfile_instructions(path))
    text = path.read_text()
    assert set(re.findall(r"\bLABS_[A-Z0-9_]+\b", text)) <= real_env_vars()
    for secret in ("LABS_API_KEYS", "LABS_ADMIN_KEY", "LABS_CORE_TOKEN"):
        assert secret not in env


def test_core_image_has_a_hf_cache_volume_and_preloads():
    stage = final_stage(CORE)
    env = env_of(stage)
    assert env["LABS_PRELOAD_ON_START"] == "true"
    volume = single(stage, "VOLUME").args
    assert env["HF_HOME"] in volume


def test_core_image_installs_pinned_torch_from_the_chosen_index_and_the_default_models():
    text = CORE.read_text()
    args = {i.args.split("=", 1)[0]: i.args.split("=", 1)[1].strip('"') for i in dockerfile_instructions(CORE)
            if i.keyword == "ARG" and "=" in i.args}
    assert args["TORCH_INDEX"] == "cu128"
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["TORCH_VERSION"])
    assert 'torch==${TORCH_VERSION}' in text and "whl/${TORCH_INDEX}" in text
    makefile = (ROOT / "Makefile").read_text()
    assert args["MODEL_PACKAGES"] in makefile, "model packages differ from the Makefile's"


def test_requirements_split_keeps_torch_out_of_the_gateway():
    pyproject = ROOT / "pyproject.toml"
    gateway = " ".join(requirements(pyproject, ["gateway"])).lower()
    core = " ".join(requirements(pyproject, ["core"])).lower()
    assert not any(h in gateway for h in HEAVY), gateway
    assert "starlette" in gateway and "uvicorn" in gateway and "grpcio" in gateway
    assert "torch" in core and "transformers" in core and "grpcio-health-checking" in core
    # The `all` extra refers to the project itself; it expands rather than naming `labs[...]`.
    everything = requirements(pyproject, ["all"])
    assert not any(r.startswith("labs[") for r in everything)
    assert set(requirements(pyproject, ["core"])) <= set(everything)


def test_requirements_script_runs_as_the_dockerfile_runs_it(tmp_path):
    out = subprocess.run([sys.executable, str(DEPLOY / "pyproject_requirements.py"), str(ROOT / "pyproject.toml"),
                          "gateway"], capture_output=True, text=True, check=True, cwd=tmp_path).stdout.split("\n")
    assert "starlette>=0.40" in out
    bad = subprocess.run([sys.executable, str(DEPLOY / "pyproject_requirements.py"), str(ROOT / "pyproject.toml"),
                          "nope"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode != 0 and "no extra 'nope'" in bad.stderr
