"""The compose files, checked without a Docker engine: they parse, the CPU override really removes the
GPU, the gateway waits for a healthy core at the address and port the core binds, healthchecks run real
commands, and keys come from the env file, never from the files or images."""

from __future__ import annotations

import re

import pytest

from labs_core.config import read_dotenv
from labs_core.healthcheck import parse_args as healthcheck_args
from tests.deploy.manifests import (COMPOSE_FILES, DEPLOY, ROOT, Reset, compose_env, container_ports, duration_s,
                                    env_of, final_stage, gpu_reservations, healthcheck_argv, load_compose,
                                    merge_compose, real_env_vars)

BASE = DEPLOY / "docker-compose.yml"
CPU = DEPLOY / "docker-compose.cpu.yml"
MULTI = DEPLOY / "docker-compose.multi-gpu.yml"
POSTGRES = DEPLOY / "docker-compose.postgres.yml"
TENSOR_PARALLEL = DEPLOY / "docker-compose.tensor-parallel.yml"
ENV_EXAMPLE = DEPLOY / "labs.env.example"
SECRETS = ("LABS_API_KEYS", "LABS_ADMIN_KEY", "LABS_CORE_TOKEN")


def effective(*paths):
    config: dict = {}
    for path in paths:
        config = merge_compose(config, load_compose(path))
    return config


def cores(config: dict) -> dict[str, dict]:
    return {name: s for name, s in config["services"].items()
            if s.get("build", {}).get("dockerfile", "").endswith("Dockerfile.core")}


def gateway(config: dict) -> dict:
    return config["services"]["gateway"]


# Every complete setup a user can start: (files given to `docker compose -f`).
SETUPS = {"gpu": (BASE,), "cpu": (BASE, CPU), "multi-gpu": (MULTI,), "tensor-parallel": (BASE, TENSOR_PARALLEL)}


def test_the_files_are_the_ones_documented():
    assert set(COMPOSE_FILES) == {BASE, CPU, MULTI, POSTGRES, TENSOR_PARALLEL}
    docs = (ROOT / "docs" / "deploy.md").read_text()
    for path in COMPOSE_FILES:
        assert f"deploy/{path.name}" in docs


@pytest.mark.parametrize("files", SETUPS.values(), ids=SETUPS.keys())
def test_builds_point_at_real_dockerfiles_and_context(files):
    for service in effective(*files)["services"].values():
        build = service["build"]
        context = (DEPLOY / build["context"]).resolve()
        assert context == ROOT
        assert (context / build["dockerfile"]).is_file()


@pytest.mark.parametrize("files", SETUPS.values(), ids=SETUPS.keys())
def test_gateway_waits_for_healthy_cores_at_their_bound_address(files):
    config = effective(*files)
    services = cores(config)
    gw = gateway(config)
    addresses = compose_env(gw)["LABS_CORE_ADDRESS"].split(",")
    assert len(addresses) == len(services) >= 1
    for address in addresses:
        host, port = address.rsplit(":", 1)
        assert host in services, f"{address}: no core service {host}"
        env = compose_env(services[host])
        assert env["LABS_GRPC_HOST"] == "0.0.0.0"
        assert env["LABS_GRPC_PORT"] == port
        assert gw["depends_on"][host] == {"condition": "service_healthy"}


@pytest.mark.parametrize("files", SETUPS.values(), ids=SETUPS.keys())
def test_published_ports_are_the_ones_the_services_bind(files):
    config = effective(*files)
    gw = gateway(config)
    assert compose_env(gw)["LABS_HOST"] == "0.0.0.0"
    assert container_ports(gw) == [int(compose_env(gw)["LABS_PORT"])]
    for core in cores(config).values():
        for port in container_ports(core):
            assert port == int(compose_env(core)["LABS_GRPC_PORT"])


@pytest.mark.parametrize("files", SETUPS.values(), ids=SETUPS.keys())
def test_healthchecks_run_the_images_commands(files):
    config = effective(*files)
    core_image_check = healthcheck_argv(final_stage(DEPLOY / "Dockerfile.core"))
    for core in cores(config).values():
        test = core["healthcheck"]["test"]
        assert test[0] == "CMD" and test[1:] == core_image_check
        healthcheck_args(test[4:])  # flags the module accepts
        assert duration_s(core["healthcheck"]["start_period"]) >= 300
    test = gateway(config)["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    compile(test[3], "<healthcheck>", "exec")
    port = compose_env(gateway(config))["LABS_PORT"]
    assert f"http://127.0.0.1:{port}/health'" in test[3]


@pytest.mark.parametrize("files", SETUPS.values(), ids=SETUPS.keys())
def test_stop_grace_outlasts_the_drain(files):
    for service in cores(effective(*files)).values():
        drain = float(compose_env(service)["LABS_DRAIN_TIMEOUT_S"])
        assert service["stop_signal"] == "SIGTERM"
        assert duration_s(service["stop_grace_period"]) > drain + 5


@pytest.mark.parametrize("files", SETUPS.values(), ids=SETUPS.keys())
def test_volumes_keep_the_hf_cache_and_mount_data_and_config(files):
    config = effective(*files)
    hf_home = env_of(final_stage(DEPLOY / "Dockerfile.core"))["HF_HOME"]
    for core in cores(config).values():
        mounts = {v.split(":")[1]: v.split(":")[0] for v in core["volumes"]}
        assert mounts[hf_home] in config["volumes"], "the HF cache must be a named volume"
        assert (DEPLOY / mounts["/app/labs.toml"]).resolve() == ROOT / "labs.toml"
        csv = compose_env(core)["LABS_FINANCE_CSV"]
        assert csv.startswith("/app/data/") and "/app/data" in mounts
        assert (DEPLOY / mounts["/app/data"]).resolve() == ROOT / "data"
        assert compose_env(core)["LABS_CONFIG"] == "/app/labs.toml"


def test_gpu_setup_reserves_a_gpu_and_cpu_override_removes_it():
    gpu = cores(effective(BASE))["core"]
    assert gpu_reservations(gpu) == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert compose_env(gpu)["LABS_DEVICE"] == "cuda"
    assert isinstance(load_compose(CPU)["services"]["core"]["deploy"], Reset)
    cpu = cores(effective(BASE, CPU))["core"]
    assert gpu_reservations(cpu) == [] and "deploy" not in cpu
    assert compose_env(cpu)["LABS_DEVICE"] == "cpu"
    assert cpu["build"]["args"]["TORCH_INDEX"] == "cpu"
    assert cpu["build"]["dockerfile"] == gpu["build"]["dockerfile"]
    assert cpu["image"] != gpu["image"], "CPU and CUDA images must not share a tag"


def test_tensor_parallel_override_reserves_as_many_gpus_as_ranks():
    core = cores(effective(BASE, TENSOR_PARALLEL))["core"]
    (device,) = gpu_reservations(core)
    assert device["count"] == int(compose_env(core)["LABS_TENSOR_PARALLEL_SIZE"]) == 2
    assert core["ipc"] == "host" and compose_env(core)["LABS_DEVICE"] == "cuda"


def test_multi_gpu_pins_one_distinct_gpu_per_core():
    services = cores(effective(MULTI))
    assert len(services) >= 2
    pinned = []
    for core in services.values():
        (device,) = gpu_reservations(core)
        assert "count" not in device
        assert len(device["device_ids"]) == 1
        pinned.append(device["device_ids"][0])
        assert compose_env(core)["LABS_DEVICE"] == "cuda"
    assert len(set(pinned)) == len(pinned)


@pytest.mark.parametrize("files", SETUPS.values(), ids=SETUPS.keys())
def test_keys_come_from_the_env_file_only(files):
    for name, service in effective(*files)["services"].items():
        assert service["env_file"] == "labs.env", name
        assert not set(SECRETS) & set(compose_env(service)), f"{name}: secrets belong in labs.env"


def test_every_labs_variable_in_compose_files_is_real():
    for path in COMPOSE_FILES:
        used = set(re.findall(r"\bLABS_[A-Z0-9_]+\b", path.read_text()))
        assert used <= real_env_vars(), f"{path.name}: {used - real_env_vars()}"


def test_env_example_has_placeholders_and_real_variables(tmp_path):
    text = ENV_EXAMPLE.read_text()
    values = read_dotenv(ENV_EXAMPLE)  # the same parser the core uses for .env files
    assert set(values) <= real_env_vars()
    # Commented-out suggestions must be real variables too.
    suggested = set(re.findall(r"^#\s*(LABS_[A-Z0-9_]+)=", text, re.M))
    assert suggested and suggested <= real_env_vars(), suggested - real_env_vars()
    assert {"LABS_API_KEYS", "LABS_ADMIN_KEY"} <= set(values)
    for key in SECRETS:
        if key in values:
            assert "REPLACE_ME" in values[key], f"{key} must be a placeholder"
    # The real file is git-ignored and left out of the build context.
    assert "labs.env" in (DEPLOY / ".gitignore").read_text().split()
    # The values parse as settings (a bad boolean or number would stop the containers).
    from labs_core.config import Settings

    settings = Settings.load(environ={}, env_file=ENV_EXAMPLE, toml_path=ROOT / "labs.toml")
    assert settings.gateway.api_keys == (values["LABS_API_KEYS"],)


def test_postgres_override_shares_one_store_between_two_gateways():
    config = effective(BASE, POSTGRES)
    pg = config["services"]["postgres"]
    assert pg["env_file"] == "postgres.env" and "POSTGRES_PASSWORD" not in pg.get("environment", {})
    assert "ports" not in pg, "the database stays on the compose network"
    assert "postgres.env" in (DEPLOY / ".gitignore").read_text().split()
    example = read_dotenv(DEPLOY / "postgres.env.example")
    assert set(example) == {"POSTGRES_PASSWORD"} and "REPLACE_ME" in example["POSTGRES_PASSWORD"]
    gateways = {name: s for name, s in config["services"].items() if name.startswith("gateway")}
    assert len(gateways) == 2
    published = set()
    for name, service in gateways.items():
        assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}, name
        assert service["depends_on"]["core"] == {"condition": "service_healthy"}, name
        assert service["env_file"] == "labs.env" and not set(SECRETS) & set(compose_env(service))
        assert compose_env(service)["LABS_CORE_ADDRESS"] == compose_env(gateway(config))["LABS_CORE_ADDRESS"]
        published.update(p.split(":")[0] for p in service["ports"])
    assert published == {"8000", "8001"}
    suggested = re.findall(r"^#\s*LABS_STORE=(\S+)", ENV_EXAMPLE.read_text(), re.M)
    assert suggested and suggested[0].startswith("postgresql://labs:") and suggested[0].endswith("@postgres:5432/labs")
