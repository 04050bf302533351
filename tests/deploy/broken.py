"""Deliberately broken manifests: one mutation per way a rule must fail.

Each `Broken` case names a rendered target, the rule (tests/deploy/rules.py)
that must catch the break, a mutation applied to a copy of the rendered
objects, and words the rule's report must contain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tests.deploy.manifests import REDIS, Obj, find, gateway, selects, workloads


@dataclass(frozen=True)
class Broken:
    target: str
    rule: str
    mutation: Callable[[list[Obj]], None]
    words: str


def _gw(objs: list[Obj]) -> Obj:
    gw = gateway(objs)
    assert gw is not None
    container: Obj = gw.pod["containers"][0]
    return container


def _pod(objs: list[Obj]) -> Obj:
    gw = gateway(objs)
    assert gw is not None
    return gw.pod


def _config(objs: list[Obj]) -> dict[str, str]:
    name = _gw(objs)["envFrom"][0]["configMapRef"]["name"]
    data: dict[str, str] = find(objs, "ConfigMap", name)[0]["data"]
    return data


def _redis(objs: list[Obj]) -> Obj:
    w = next(w for w in workloads(objs) if selects({"matchLabels": REDIS}, w.labels))
    container: Obj = w.pod["containers"][0]
    return container


def _one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    return find(objs, kind, name)[0]


def _redis_ingress(objs: list[Obj]) -> Obj:
    rule: Obj = _one(objs, "NetworkPolicy", "tracking-redis")["spec"]["ingress"][0]
    return rule


def _backend(objs: list[Obj]) -> Obj:
    backend: Obj = _one(objs, "Ingress")["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    return backend


def _job(objs: list[Obj], name: str) -> Obj:
    spec: Obj = _one(objs, "Job", name)["spec"]
    return spec


# probes


def gateway_without_readiness(objs: list[Obj]) -> None:
    del _gw(objs)["readinessProbe"]


def liveness_on_readyz(objs: list[Obj]) -> None:
    _gw(objs)["livenessProbe"]["httpGet"]["path"] = "/readyz"


def gateway_without_startup_probe(objs: list[Obj]) -> None:
    del _gw(objs)["startupProbe"]


def probe_on_an_undeclared_port(objs: list[Obj]) -> None:
    _gw(objs)["readinessProbe"]["httpGet"]["port"] = "web"


def redis_without_liveness(objs: list[Obj]) -> None:
    del _redis(objs)["livenessProbe"]


def locust_master_without_readiness(objs: list[Obj]) -> None:
    del _job(objs, "locust-master")["template"]["spec"]["containers"][0]["readinessProbe"]


# resources


def no_memory_limit(objs: list[Obj]) -> None:
    del _gw(objs)["resources"]["limits"]["memory"]


def redis_without_requests(objs: list[Obj]) -> None:
    del _redis(objs)["resources"]["requests"]


def cpu_request_over_limit(objs: list[Obj]) -> None:
    _gw(objs)["resources"]["requests"]["cpu"] = "4"


# images


def latest_tag(objs: list[Obj]) -> None:
    _gw(objs)["image"] = "ghcr.io/tracking/tracking-gateway:latest"


def no_tag(objs: list[Obj]) -> None:
    _gw(objs)["image"] = "ghcr.io/tracking/tracking-gateway"


def redis_without_tag(objs: list[Obj]) -> None:
    _redis(objs)["image"] = "redis"


# shutdown


def short_grace_period(objs: list[Obj]) -> None:
    _pod(objs)["terminationGracePeriodSeconds"] = 12


def drain_longer_than_grace(objs: list[Obj]) -> None:
    _config(objs)["TRACKING_DRAIN_TIMEOUT_S"] = "60"


def no_prestop(objs: list[Obj]) -> None:
    del _gw(objs)["lifecycle"]


# security


def writable_root(objs: list[Obj]) -> None:
    _gw(objs)["securityContext"]["readOnlyRootFilesystem"] = False


def root_user(objs: list[Obj]) -> None:
    _gw(objs)["securityContext"]["runAsUser"] = 0


def capabilities_kept(objs: list[Obj]) -> None:
    del _gw(objs)["securityContext"]["capabilities"]


def service_account_token(objs: list[Obj]) -> None:
    _pod(objs)["automountServiceAccountToken"] = True


def no_tmp_volume(objs: list[Obj]) -> None:
    del _gw(objs)["volumeMounts"]


def redis_may_escalate(objs: list[Obj]) -> None:
    _redis(objs)["securityContext"]["allowPrivilegeEscalation"] = True


# config


def misspelt_setting(objs: list[Obj]) -> None:
    _config(objs)["TRACKING_REDIS_CLUSTR"] = "on"


def secret_in_configmap(objs: list[Obj]) -> None:
    _config(objs)["TRACKING_JWT_SECRET"] = "hunter2"


def secret_as_literal(objs: list[Obj]) -> None:
    env = _gw(objs)["env"]
    env[0] = {"name": "TRACKING_JWT_SECRET", "value": "hunter2"}


def no_redis_url(objs: list[Obj]) -> None:
    del _config(objs)["TRACKING_REDIS_URL"]


def redis_url_twice(objs: list[Obj]) -> None:
    _config(objs)["TRACKING_REDIS_URL"] = "redis://redis:6379/0"


# secrets


def secret_object(objs: list[Obj]) -> None:
    objs.append(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "tracking-secrets"},
            "data": {"TRACKING_JWT_SECRET": "aHVudGVyMg=="},
        }
    )


# the Redis NetworkPolicy


def no_redis_policy(objs: list[Obj]) -> None:
    objs.remove(_one(objs, "NetworkPolicy", "tracking-redis"))


def redis_open_to_every_pod(objs: list[Obj]) -> None:
    _redis_ingress(objs)["from"].append({"podSelector": {}})


def redis_open_to_everyone(objs: list[Obj]) -> None:
    del _redis_ingress(objs)["from"]


def redis_closed_to_the_gateway(objs: list[Obj]) -> None:
    del _redis_ingress(objs)["from"][0]


# autoscaler


def hpa_targets_a_missing_deployment(objs: list[Obj]) -> None:
    _one(objs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] = "gateway"


def deployment_sets_replicas(objs: list[Obj]) -> None:
    _one(objs, "Deployment")["spec"]["replicas"] = 2


def hpa_min_over_max(objs: list[Obj]) -> None:
    _one(objs, "HorizontalPodAutoscaler")["spec"]["minReplicas"] = 30


# disruption budget


def pdb_selects_nothing(objs: list[Obj]) -> None:
    labels = _one(objs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
    labels["app.kubernetes.io/component"] = "gatewy"


def pdb_blocks_drains(objs: list[Obj]) -> None:
    spec = _one(objs, "PodDisruptionBudget")["spec"]
    del spec["maxUnavailable"]
    spec["minAvailable"] = 1


# services


def service_selects_nothing(objs: list[Obj]) -> None:
    selector = _one(objs, "Service", "tracking-gateway")["spec"]["selector"]
    selector["app.kubernetes.io/component"] = "gatewy"


def service_targets_a_missing_port(objs: list[Obj]) -> None:
    _one(objs, "Service", "locust-master")["spec"]["ports"][0]["targetPort"] = "zmq"


# ingress


def ingress_to_a_missing_service(objs: list[Obj]) -> None:
    _backend(objs)["service"]["name"] = "gateway"


def ingress_to_a_missing_port(objs: list[Obj]) -> None:
    _backend(objs)["service"]["port"] = {"name": "https"}


def placeholder_host(objs: list[Obj]) -> None:
    _one(objs, "Ingress")["spec"]["rules"][0]["host"] = "tracking.invalid"


def share_links_elsewhere(objs: list[Obj]) -> None:
    _config(objs)["TRACKING_PUBLIC_URL"] = "https://track.example.org"


def no_tls(objs: list[Obj]) -> None:
    del _one(objs, "Ingress")["spec"]["tls"]


# jobs


def fewer_workers_than_expected(objs: list[Obj]) -> None:
    _job(objs, "locust-worker")["parallelism"] = 3


def master_without_deadline(objs: list[Obj]) -> None:
    del _job(objs, "locust-master")["activeDeadlineSeconds"]


def deadline_before_the_run_ends(objs: list[Obj]) -> None:
    _job(objs, "locust-master")["activeDeadlineSeconds"] = 600


def no_run_time(objs: list[Obj]) -> None:
    del _one(objs, "ConfigMap")["data"]["LOCUST_RUN_TIME"]


BROKEN = [
    Broken("dev", "probes", gateway_without_readiness, "readinessProbe"),
    Broken("dev", "probes", liveness_on_readyz, "livenessProbe must GET /healthz"),
    Broken("dev", "probes", gateway_without_startup_probe, "startupProbe"),
    Broken("dev", "probes", probe_on_an_undeclared_port, "not a container port"),
    Broken("dev", "probes", redis_without_liveness, "livenessProbe"),
    Broken("loadtest", "probes", locust_master_without_readiness, "readinessProbe"),
    Broken("dev", "resources", no_memory_limit, "no memory limit"),
    Broken("dev", "resources", redis_without_requests, "no cpu request"),
    Broken("dev", "resources", cpu_request_over_limit, "cpu request 4 > limit"),
    Broken("dev", "images", latest_tag, "`latest`"),
    Broken("production", "images", no_tag, "no tag"),
    Broken("dev", "images", redis_without_tag, "no tag"),
    Broken("dev", "shutdown", short_grace_period, "terminationGracePeriodSeconds 12"),
    Broken("dev", "shutdown", drain_longer_than_grace, "drain 60 s"),
    Broken("dev", "shutdown", no_prestop, "no preStop sleep"),
    Broken("dev", "security", writable_root, "readOnlyRootFilesystem"),
    Broken("dev", "security", root_user, "runAsUser 0"),
    Broken("dev", "security", capabilities_kept, "drop ALL"),
    Broken("dev", "security", service_account_token, "automountServiceAccountToken"),
    Broken("dev", "security", no_tmp_volume, "TMPDIR=/tmp is not on a writable volume"),
    Broken("dev", "security", redis_may_escalate, "allowPrivilegeEscalation"),
    Broken("dev", "config", misspelt_setting, "TRACKING_REDIS_CLUSTR is not a setting"),
    Broken("dev", "config", secret_in_configmap, "TRACKING_JWT_SECRET is in a ConfigMap"),
    Broken("production", "config", secret_as_literal, "does not come from a Secret"),
    Broken("dev", "config", no_redis_url, "TRACKING_REDIS_URL is not set exactly once"),
    Broken("production", "config", redis_url_twice, "both in the ConfigMap and in env"),
    Broken("dev", "secrets", secret_object, "a Secret in the manifests"),
    Broken("dev", "redis_policy", no_redis_policy, "no NetworkPolicy selects the Redis pods"),
    Broken("dev", "redis_policy", redis_open_to_every_pod, "may reach Redis too"),
    Broken("production", "redis_policy", redis_open_to_everyone, "may reach Redis too"),
    Broken("dev", "redis_policy", redis_closed_to_the_gateway, "the gateway may not reach"),
    Broken("dev", "autoscaler", hpa_targets_a_missing_deployment, "no Deployment/gateway"),
    Broken("dev", "autoscaler", deployment_sets_replicas, "sets replicas"),
    Broken("production", "autoscaler", hpa_min_over_max, "minReplicas 30, maxReplicas 20"),
    Broken("dev", "disruption_budget", pdb_selects_nothing, "no PodDisruptionBudget selects"),
    Broken("dev", "disruption_budget", pdb_blocks_drains, "blocks every drain"),
    Broken("dev", "services", service_selects_nothing, "selects no pods"),
    Broken("loadtest", "services", service_targets_a_missing_port, "targetPort 'zmq'"),
    Broken("dev", "ingress", ingress_to_a_missing_service, "no Service gateway"),
    Broken("production", "ingress", ingress_to_a_missing_port, "has no port"),
    Broken("dev", "ingress", placeholder_host, "placeholder"),
    Broken("production", "ingress", share_links_elsewhere, "is not that of"),
    Broken("production", "ingress", no_tls, "no TLS"),
    Broken("loadtest", "jobs", fewer_workers_than_expected, "parallelism is not the master's"),
    Broken("loadtest", "jobs", master_without_deadline, "no activeDeadlineSeconds"),
    Broken("loadtest", "jobs", deadline_before_the_run_ends, "activeDeadlineSeconds 600 <"),
    Broken("loadtest", "jobs", no_run_time, "no run time"),
]
