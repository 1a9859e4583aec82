"""The Kubernetes manifests, checked without a cluster: they parse, kustomize's inputs exist, probes point
at the ports and paths the services really serve, GPUs are requested, the grace period outlasts the
drain, the gateway lists real core pods, and secrets and config are wired to real variables."""

from __future__ import annotations

import re

import pytest
import yaml

from labs_core.config import Settings
from tests.deploy.manifests import (K8S, ROOT, console_scripts, container_env, k8s_documents, k8s_object,
                                    real_env_vars)

KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())
CORE_LABELS = {"app.kubernetes.io/name": "labs", "app.kubernetes.io/component": "core"}
GATEWAY_LABELS = {"app.kubernetes.io/name": "labs", "app.kubernetes.io/component": "gateway"}


def core_set() -> dict:
    return k8s_object("StatefulSet", "labs-core")


def gateway_deployment() -> dict:
    return k8s_object("Deployment", "labs-gateway")


def only_container(workload: dict) -> dict:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


def named_port(container: dict, name: str) -> int:
    return next(p["containerPort"] for p in container["ports"] if p["name"] == name)


def test_every_manifest_parses_and_is_listed_in_the_kustomization():
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    examples = {name for name in files if name.endswith(".example.yaml")}
    # The Secret with placeholder keys is an example: applied as is, it would open the API to anyone.
    assert examples == {"secret.example.yaml"}
    assert set(KUSTOMIZATION["resources"]) == files - examples
    kinds = {d["kind"] for d in k8s_documents()}
    assert {"Namespace", "Secret", "Service", "StatefulSet", "Deployment", "PodDisruptionBudget"} <= kinds
    for doc in k8s_documents():
        assert doc["apiVersion"] and doc["metadata"]["name"]


def test_configmap_is_generated_from_a_valid_labs_toml(tmp_path):
    (generator,) = KUSTOMIZATION["configMapGenerator"]
    assert generator["name"] == "labs-config" and generator["files"] == ["labs.toml"]
    # Unknown keys or bad values raise; no .env from the working directory may leak in.
    settings = Settings.load(environ={}, toml_path=K8S / "labs.toml", env_file=tmp_path / "none.env")
    assert settings.core.grpc_port == named_port(only_container(core_set()), "grpc")
    assert settings.gateway.port == named_port(only_container(gateway_deployment()), "http")
    assert list(settings.gateway.core_address) == container_env(only_container(gateway_deployment()))[
        "LABS_CORE_ADDRESS"].split(",")


@pytest.mark.parametrize("workload", [core_set, gateway_deployment], ids=["core", "gateway"])
def test_config_is_mounted_where_labs_config_points(workload):
    obj = workload()
    container = only_container(obj)
    config_path = container_env(container)["LABS_CONFIG"]
    volumes = {v["name"]: v for v in obj["spec"]["template"]["spec"]["volumes"]}
    mount = next(m for m in container["volumeMounts"] if config_path.startswith(m["mountPath"] + "/"))
    assert volumes[mount["name"]]["configMap"]["name"] == "labs-config"
    assert config_path.rsplit("/", 1)[1] == "labs.toml"  # the generator's key


@pytest.mark.parametrize("workload,script", [(core_set, "labs-core"), (gateway_deployment, "labs-gateway")],
                         ids=["core", "gateway"])
def test_commands_are_console_scripts_and_images_are_kustomized(workload, script):
    container = only_container(workload())
    assert container["command"] == [script] and script in console_scripts()
    assert container["image"] in {i["name"] for i in KUSTOMIZATION["images"]}
    for handler in (container.get("lifecycle", {}).get("preStop", {}),):
        if "exec" in handler:
            assert handler["exec"]["command"][0] == "sleep"  # coreutils, in the python:slim base


def test_core_requests_a_gpu_and_probes_grpc_health_on_its_port():
    container = only_container(core_set())
    resources = container["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1 and resources["requests"]["nvidia.com/gpu"] == 1
    env = container_env(container)
    port = named_port(container, "grpc")
    assert env["LABS_GRPC_HOST"] == "0.0.0.0" and int(env["LABS_GRPC_PORT"]) == port
    assert env["LABS_PRELOAD_ON_START"] == "true" and env["LABS_DEVICE"] == "cuda"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": port}, probe
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, "room for a first model load"


def test_headless_core_service_matches_the_pods():
    service = k8s_object("Service", "labs-core")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == CORE_LABELS
    assert core_set()["spec"]["template"]["metadata"]["labels"] == CORE_LABELS
    assert core_set()["spec"]["serviceName"] == "labs-core"
    (port,) = service["spec"]["ports"]
    assert port["port"] == named_port(only_container(core_set()), "grpc") and port["targetPort"] == "grpc"


def test_gateway_lists_existing_core_pods_by_stable_name():
    statefulset = core_set()
    service = statefulset["spec"]["serviceName"]
    port = named_port(only_container(statefulset), "grpc")
    addresses = container_env(only_container(gateway_deployment()))["LABS_CORE_ADDRESS"].split(",")
    expected = [f"labs-core-{i}.{service}:{port}" for i in range(statefulset["spec"]["replicas"])]
    assert addresses == expected


def test_gateway_probes_health_and_ready_on_its_port():
    container = only_container(gateway_deployment())
    env = container_env(container)
    assert env["LABS_HOST"] == "0.0.0.0" and int(env["LABS_PORT"]) == named_port(container, "http")
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    service = k8s_object("Service", "labs-gateway")
    assert service["spec"]["selector"] == GATEWAY_LABELS
    assert gateway_deployment()["spec"]["template"]["metadata"]["labels"] == GATEWAY_LABELS
    assert service["spec"]["ports"][0]["targetPort"] == "http"


@pytest.mark.parametrize("workload", [core_set, gateway_deployment], ids=["core", "gateway"])
def test_grace_period_outlasts_prestop_plus_drain(workload):
    spec = workload()["spec"]["template"]["spec"]
    container = only_container(workload())
    drain = float(container_env(only_container(core_set()))["LABS_DRAIN_TIMEOUT_S"])
    pre_stop = float(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert spec["terminationGracePeriodSeconds"] > pre_stop + drain + 5


def test_rolling_updates_never_drop_below_capacity():
    strategy = gateway_deployment()["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0 and strategy["rollingUpdate"]["maxSurge"] >= 1
    assert core_set()["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    core_pdb = k8s_object("PodDisruptionBudget", "labs-core")
    assert core_pdb["spec"]["maxUnavailable"] == 1 and core_pdb["spec"]["selector"]["matchLabels"] == CORE_LABELS


def test_secrets_are_placeholders_and_references_resolve():
    secret = k8s_object("Secret", "labs-secrets")
    data = secret["stringData"]
    assert set(data) <= real_env_vars()
    assert all("REPLACE_ME" in value for value in data.values())
    for workload in (core_set(), gateway_deployment()):
        for name, value in container_env(only_container(workload)).items():
            if isinstance(value, dict) and "secretKeyRef" in value:
                ref = value["secretKeyRef"]
                assert ref["name"] == "labs-secrets" and ref["key"] in data and ref["key"] == name
            else:
                assert name not in data, f"{name} must come from the Secret"


def test_pods_run_as_the_images_non_root_user():
    for workload in (core_set(), gateway_deployment()):
        context = workload["spec"]["template"]["spec"]["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == 10001
    dockerfile = (ROOT / "deploy" / "Dockerfile.core").read_text()
    assert "--uid 10001" in dockerfile


def test_hf_cache_is_a_persistent_volume_per_core():
    statefulset = core_set()
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    container = only_container(statefulset)
    mount = next(m for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"])
    assert mount["mountPath"] == container_env(container)["HF_HOME"]


def test_every_labs_variable_in_the_manifests_is_real():
    for path in K8S.glob("*.yaml"):
        used = set(re.findall(r"\bLABS_[A-Z0-9_]+\b", path.read_text()))
        assert used <= real_env_vars(), f"{path.name}: {used - real_env_vars()}"
