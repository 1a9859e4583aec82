"""Readers for the deployment files, for tests that check them without a Docker engine or a cluster:
Dockerfiles (instructions), .dockerignore (matching), compose files (YAML with compose's `!reset` and
`!override` tags, and compose's merge of several files), Kubernetes manifests (multi-document YAML)."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILES = sorted(DEPLOY.glob("docker-compose*.yml"))
DOCKERFILES = sorted(DEPLOY.glob("Dockerfile.*"))
LABS_VAR = re.compile(r"\bLABS_[A-Z0-9_]+\b")
# Read by labs_core/config.py itself (which file to load), so not settings of their own.
CONFIG_FILE_VARS = ("LABS_CONFIG", "LABS_ENV_FILE")


# --- Dockerfiles ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def dockerfile_instructions(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, args = text.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, f"{path}: dangling line continuation"
    return out


def stages(path: Path) -> list[list[Instruction]]:
    """Instructions split per build stage (each FROM starts one); ARGs before the first FROM dropped."""
    result: list[list[Instruction]] = []
    for ins in dockerfile_instructions(path):
        if ins.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def final_stage(path: Path) -> list[Instruction]:
    return stages(path)[-1]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def env_of(instructions: list[Instruction]) -> dict[str, str]:
    """ENV key=value pairs of a stage (the `ENV key value` legacy form is rejected)."""
    env: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "ENV":
            for item in shlex.split(ins.args):
                key, sep, value = item.partition("=")
                assert sep, f"ENV {ins.args!r}: use key=value"
                env[key] = value
    return env


def single(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
    return found[0]


def healthcheck_argv(instructions: list[Instruction]) -> list[str]:
    args = single(instructions, "HEALTHCHECK").args
    _, sep, command = args.partition("CMD ")
    assert sep, f"HEALTHCHECK without CMD: {args}"
    return exec_form(command)


def healthcheck_options(instructions: list[Instruction]) -> dict[str, str]:
    args = single(instructions, "HEALTHCHECK").args.partition("CMD ")[0]
    return dict(item.lstrip("-").split("=", 1) for item in args.split())


def copy_sources(path: Path) -> list[str]:
    """Build-context paths COPY'd by any stage (not COPY --from=another stage)."""
    sources: list[str] = []
    for ins in dockerfile_instructions(path):
        if ins.keyword not in ("COPY", "ADD"):
            continue
        words = shlex.split(ins.args)
        if any(w.startswith("--from") for w in words):
            continue
        paths = [w for w in words if not w.startswith("--")]
        sources.extend(paths[:-1])
    return sources


# --- .dockerignore -------------------------------------------------------------------------------

def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip().rstrip("/") for line in lines if line.strip() and not line.strip().startswith("#")]


def dockerignored(relpath: str, patterns: list[str] | None = None) -> bool:
    """Docker's rule: a path is excluded when a pattern matches it or one of its parent folders.
    (`**/` matches zero or more folders; no `!` exceptions are used in our file.)"""
    patterns = dockerignore_patterns() if patterns is None else patterns
    assert not any(p.startswith("!") for p in patterns), "exceptions are not modelled here"
    parts = Path(relpath).parts
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        variants = {pattern, pattern[3:]} if pattern.startswith("**/") else {pattern}
        for candidate in candidates:
            if any(fnmatch.fnmatchcase(candidate, v) for v in variants):
                return True
    return False


# --- Compose ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reset:
    """Compose's `!reset`: remove the attribute inherited from earlier files."""


@dataclass(frozen=True)
class Override:
    """Compose's `!override`: replace the attribute instead of merging it."""

    value: Any


class ComposeLoader(yaml.SafeLoader):
    pass


def _node_value(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


ComposeLoader.add_constructor("!reset", lambda loader, node: Reset())
ComposeLoader.add_constructor("!override", lambda loader, node: Override(_node_value(loader, node)))


def load_compose(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), ComposeLoader)


def merge_compose(base: Any, override: Any) -> Any:
    """Compose's merge of a later file onto an earlier one: mappings merge key by key, sequences
    append (our files only override scalars and mappings), `!reset` removes, `!override` replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            if isinstance(value, Reset):
                merged.pop(key, None)
            elif isinstance(value, Override):
                merged[key] = value.value
            elif key in merged:
                merged[key] = merge_compose(merged[key], value)
            else:
                merged[key] = value
        return merged
    if isinstance(base, list) and isinstance(override, list):
        return base + override
    return override


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def container_ports(service: dict[str, Any]) -> list[int]:
    """Container side of each `ports` entry ("[ip:]host:container")."""
    return [int(str(p).split(":")[-1].split("/")[0]) for p in service.get("ports", [])]


def gpu_reservations(service: dict[str, Any]) -> list[dict[str, Any]]:
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    return [d for d in devices if d.get("driver") == "nvidia" or "gpu" in d.get("capabilities", [])]


def duration_s(text: str) -> float:
    """Compose durations: 45s, 10m, 1m30s."""
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(text)):
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    assert total > 0, f"cannot read duration {text!r}"
    return total


# --- Kubernetes ----------------------------------------------------------------------------------

def k8s_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in k8s_documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def container_env(container: dict[str, Any]) -> dict[str, Any]:
    """name -> value, or the valueFrom mapping."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# --- The project ---------------------------------------------------------------------------------

def console_scripts() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def module_path(module: str) -> Path | None:
    """The repo file `python -m module` runs, if the module is the repo's."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__main__.py"):
        if candidate.is_file():
            return candidate
    return None


def requirements_script() -> Any:
    """deploy/pyproject_requirements.py as a module (deploy/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("pyproject_requirements", DEPLOY / "pyproject_requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def real_env_vars() -> set[str]:
    from labs_core.config import env_names

    return set(env_names()) | set(CONFIG_FILE_VARS)


def deploy_text_files() -> list[Path]:
    files = [*DOCKERFILES, *COMPOSE_FILES, *K8S.glob("*.yaml"), *DEPLOY.glob("*.env.example"),
             ROOT / "docs" / "deploy.md"]
    return [f for f in files if f.is_file()]
