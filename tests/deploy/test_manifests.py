"""Offline checks of deploy/: Kubernetes manifests against the vendored strict schemas, the
cross-references between them and the Dockerfile, and the compose file's shape.

The schemas (deploy/schemas/k8s-strict.json) are the Kubernetes OpenAPI definitions as strict
JSON schemas (unknown fields rejected), cut down to the kinds used here; see
deploy/schemas/vendor_k8s_schemas.py.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = ROOT / "deploy" / "schemas" / "k8s-strict.json"
COMPOSE = ROOT / "deploy" / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"


@cache
def _bundle() -> dict[str, Any]:
    return json.loads(SCHEMAS.read_text())


def _kind_key(doc: dict[str, Any]) -> str:
    return f"{doc['apiVersion']}/{doc['kind']}"


def _errors(doc: dict[str, Any]) -> list[str]:
    """Schema violations of one manifest (empty when valid)."""
    bundle = _bundle()
    key = _kind_key(doc)
    assert key in bundle["kinds"], f"no vendored schema for {key}"
    schema = {
        "$schema": bundle["$schema"],
        "$ref": "#/$defs/" + bundle["kinds"][key],
        "$defs": bundle["$defs"],
    }
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(doc)
    ]


@cache
def _docs() -> tuple[dict[str, Any], ...]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d is not None)
    return tuple(docs)


def _one(kind: str) -> dict[str, Any]:
    found = [d for d in _docs() if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return copy.deepcopy(found[0])


def _container(dep: dict[str, Any]) -> dict[str, Any]:
    containers = dep["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _dockerfile_instruction(name: str) -> str:
    """Argument of the last ``name`` instruction of the Dockerfile's final stage."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())  # join continuation lines
    values = re.findall(rf"^{name}\s+(.+)$", text, flags=re.M)
    assert values, f"Dockerfile has no {name}"
    return values[-1].strip()


# ---------------------------------------------------------------- schema validation


def test_every_manifest_is_a_known_kind() -> None:
    kinds = sorted(_kind_key(d) for d in _docs())
    assert kinds == [
        "apps/v1/Deployment",
        "autoscaling/v2/HorizontalPodAutoscaler",
        "policy/v1/PodDisruptionBudget",
        "v1/Service",
    ]


@pytest.mark.parametrize("doc", _docs(), ids=lambda d: d["kind"])
def test_manifest_matches_kubernetes_schema(doc: dict[str, Any]) -> None:
    assert _errors(doc) == []


@pytest.mark.parametrize(
    ("kind", "mutate", "fragment"),
    [
        # unknown field (a typo) is rejected: the schemas are strict
        ("Deployment", lambda d: _container(d).update(readinesProbe={}), "readinesProbe"),
        # grpc probe port must be an integer
        (
            "Deployment",
            lambda d: _container(d)["livenessProbe"]["grpc"].update(port="grpc"),
            "livenessProbe",
        ),
        # required field missing
        ("Deployment", lambda d: _container(d).pop("name"), "name"),
        ("Service", lambda d: d["spec"]["ports"][0].pop("port"), "port"),
        ("HorizontalPodAutoscaler", lambda d: d["spec"].pop("maxReplicas"), "maxReplicas"),
        ("PodDisruptionBudget", lambda d: d["spec"].update(maxUnavailabel=1), "maxUnavailabel"),
    ],
)
def test_schema_rejects_broken_manifests(kind: str, mutate: Any, fragment: str) -> None:
    """The validator is not vacuous: each broken copy fails, naming the bad field."""
    doc = _one(kind)
    mutate(doc)
    errors = _errors(doc)
    assert errors, f"broken {kind} passed validation"
    assert any(fragment in e for e in errors), errors


# ---------------------------------------------------------------- cross-references


def test_deployment_selector_selects_its_pods() -> None:
    dep = _one("Deployment")
    selector = dep["spec"]["selector"]["matchLabels"]
    assert _matches(selector, dep["spec"]["template"]["metadata"]["labels"])
    assert set(dep["spec"]["selector"]) == {"matchLabels"}


def test_headless_service_targets_the_grpc_port() -> None:
    dep, svc = _one("Deployment"), _one("Service")
    assert svc["spec"]["clusterIP"] == "None", "client-side balancing needs a headless Service"
    assert _matches(svc["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"])
    ports = {p["name"]: p["containerPort"] for p in _container(dep)["ports"]}
    (svc_port,) = svc["spec"]["ports"]
    target = svc_port["targetPort"]
    assert (ports[target] if isinstance(target, str) else target) == ports["grpc"]
    assert svc_port["port"] == ports["grpc"]
    assert svc_port["appProtocol"] == "grpc"


def test_probes_use_grpc_health_on_the_container_port() -> None:
    dep = _one("Deployment")
    container = _container(dep)
    grpc_port = {p["name"]: p["containerPort"] for p in container["ports"]}["grpc"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        spec = container[probe]
        assert spec["grpc"]["port"] == grpc_port, probe
        assert spec.get("grpc", {}).get("service", "") == "", "overall server health"
    # the startup probe allows a cold JIT; liveness must not kill a pod that is merely busy
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
    liveness = container["livenessProbe"]
    assert liveness["timeoutSeconds"] * liveness["failureThreshold"] >= 10


def test_pdb_covers_the_deployment_pods_and_allows_a_drain() -> None:
    dep, pdb = _one("Deployment"), _one("PodDisruptionBudget")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert _matches(pdb["spec"]["selector"]["matchLabels"], labels)
    hpa = _one("HorizontalPodAutoscaler")
    if "minAvailable" in pdb["spec"]:
        assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"], "would block drains"
    else:
        assert 1 <= pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]


def test_hpa_scales_the_deployment_on_cpu() -> None:
    dep, hpa = _one("Deployment"), _one("HorizontalPodAutoscaler")
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == (
        dep["apiVersion"],
        dep["kind"],
        dep["metadata"]["name"],
    )
    assert hpa["spec"]["minReplicas"] <= dep["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["minReplicas"] >= 2, "one pod is no redundancy"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    # Utilization is a share of the request, so every container must request CPU
    assert _container(dep)["resources"]["requests"]["cpu"]


def test_resources_and_thread_budget() -> None:
    container = _container(_one("Deployment"))
    res = container["resources"]
    for key in ("cpu", "memory"):
        assert res["requests"][key] and res["limits"][key], key
    # env taken from limits.cpu needs a CPU limit, and sizes Numba's pool to it
    env = {e["name"]: e for e in container.get("env", [])}
    ref = env["NUMBA_NUM_THREADS"]["valueFrom"]["resourceFieldRef"]
    assert ref["resource"] == "limits.cpu"


def test_pod_runs_as_the_image_user_and_port() -> None:
    dep = _one("Deployment")
    pod = dep["spec"]["template"]["spec"]
    uid, _, gid = _dockerfile_instruction("USER").partition(":")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == uid
    assert str(pod["securityContext"]["runAsGroup"]) == (gid or uid)
    ports = {p["name"]: p["containerPort"] for p in _container(dep)["ports"]}
    assert str(ports["grpc"]) == _dockerfile_instruction("EXPOSE")
    assert _container(dep)["securityContext"]["allowPrivilegeEscalation"] is False


def test_every_object_shares_name_and_labels() -> None:
    dep = _one("Deployment")
    for doc in _docs():
        assert doc["metadata"]["name"] == dep["metadata"]["name"], doc["kind"]
        assert doc["metadata"]["labels"] == dep["metadata"]["labels"], doc["kind"]


def test_health_checks_run_the_server_probe_module() -> None:
    """The Dockerfile and compose health checks call a module that exists and is a probe."""
    compose = yaml.safe_load(COMPOSE.read_text())
    commands = [_dockerfile_instruction("HEALTHCHECK")]
    commands += [" ".join(svc["healthcheck"]["test"]) for svc in compose["services"].values()]
    for command in commands:
        module = re.search(r"-m\s+([\w.]+)", command)
        assert module, command
        spec = importlib.util.find_spec(module[1])
        assert spec is not None, f"{module[1]} (from {command!r}) is not importable"
        assert "grpc_health" in Path(spec.origin).read_text(), "not a gRPC health probe"


# ---------------------------------------------------------------- examples (deploy/k8s/examples)

EXAMPLES = K8S / "examples"


@cache
def _example_docs() -> tuple[dict[str, Any], ...]:
    docs = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d is not None)
    return tuple(docs)


@pytest.mark.parametrize("doc", _example_docs(), ids=lambda d: d["metadata"]["name"])
def test_example_manifest_matches_kubernetes_schema(doc: dict[str, Any]) -> None:
    assert _errors(doc) == []


def test_shared_memory_sidecar_shares_an_in_memory_volume() -> None:
    from deconv_server.config import ENV_VARS

    (dep,) = [d for d in _example_docs() if d["metadata"]["name"] == "app-with-deconv"]
    pod = dep["spec"]["template"]["spec"]
    assert _matches(
        dep["spec"]["selector"]["matchLabels"], dep["spec"]["template"]["metadata"]["labels"]
    )
    (volume,) = [
        v["name"] for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"
    ]
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"app", "deconv"}
    mounts = {
        n: {m["name"]: m["mountPath"] for m in c["volumeMounts"]} for n, c in containers.items()
    }
    assert mounts["app"][volume] == mounts["deconv"][volume]
    env = {e["name"]: e.get("value") for e in containers["deconv"]["env"]}
    assert env[ENV_VARS["shared_memory_dir"]] == mounts["deconv"][volume]
    uid, _, _ = _dockerfile_instruction("USER").partition(":")
    assert str(pod["securityContext"]["runAsUser"]) == uid  # both containers: one file owner


# ---------------------------------------------------------------- compose


def test_compose_runs_three_replicas_of_the_image_without_a_proxy() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert len(services) == 3, "three replicas, and nothing in front of them"
    exposed = int(_dockerfile_instruction("EXPOSE"))
    images = {svc["image"] for svc in services.values()}
    assert len(images) == 1, images
    host_ports = []
    for name, svc in services.items():
        assert svc.get("build", {}).get("context") == "..", name
        assert "healthcheck" not in svc or svc["healthcheck"].get("disable") is not True, name
        (port,) = svc["ports"]
        host, _, container = port.rpartition(":")
        assert int(container) == exposed, name
        host_ports.append(host)
        aliases = svc["networks"]["default"]["aliases"]
        assert "deconv" in aliases, "one DNS name for all replicas (dns:///deconv:50051)"
    assert len(set(host_ports)) == 3, host_ports
