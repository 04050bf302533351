"""Our own rules over rendered manifests, beyond what the API schema can say.

Each rule takes the rendered objects and returns its problems, one line
each, naming the object: an empty list means the rule holds. A rule checks
what is there; the rules about the gateway (probes, shutdown, autoscaler,
budget, Ingress, the Redis policy) apply when the objects hold the gateway
Deployment. The tests feed each rule broken objects too, so that every rule
is seen to fail.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

from tests.deploy.manifests import (
    GATEWAY,
    REDIS,
    Obj,
    Workload,
    config_data,
    env_entries,
    find,
    gateway,
    name_of,
    selects,
    workloads,
)
from tests.deploy.pod_rules import images, probes, resources, security, shutdown

Rule = Callable[[list[Obj]], list[str]]

REDIS_PORT = 6379


def config(setting_names: frozenset[str]) -> Rule:
    """The rule over the gateway's environment, given the settings' env names."""

    def rule(objs: list[Obj]) -> list[str]:
        """The gateway's ConfigMap keys and TRACKING_* variables are settings; the
        JWT secret comes from a Secret only; Redis's URL is set exactly once."""
        gw = gateway(objs)
        if gw is None:
            return []
        problems = []
        for c in gw.pod["containers"]:
            for source in c.get("envFrom", []):
                ref = source.get("configMapRef")
                if ref and not find(objs, "ConfigMap", ref["name"]):
                    problems.append(f"{gw.name}: envFrom ConfigMap {ref['name']} is not rendered")
            data = config_data(objs, gw)
            env = env_entries(c)
            for key in sorted(data):
                if key not in setting_names:
                    problems.append(f"ConfigMap key {key} is not a setting of tracking/settings.py")
                if key in env:
                    problems.append(f"{key} is both in the ConfigMap and in env (env wins)")
            for key in sorted(env):
                if key.startswith("TRACKING_") and key not in setting_names:
                    problems.append(f"{gw.name}: env {key} is not a setting")
            if "TRACKING_JWT_SECRET" in data:
                problems.append("TRACKING_JWT_SECRET is in a ConfigMap: it belongs in a Secret")
            secret = env.get("TRACKING_JWT_SECRET", {}).get("valueFrom", {}).get("secretKeyRef")
            if secret is None:
                problems.append(f"{gw.name}: TRACKING_JWT_SECRET does not come from a Secret")
            for name, entry in env.items():
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["key"] != name:
                    problems.append(f"{gw.name}: env {name} reads Secret key {ref['key']}")
            if ("TRACKING_REDIS_URL" in data) + ("TRACKING_REDIS_URL" in env) != 1:
                problems.append(f"{gw.name}: TRACKING_REDIS_URL is not set exactly once")
        return problems

    return rule


def secrets(objs: list[Obj]) -> list[str]:
    """No Secret is rendered: secrets are created in the cluster, never kept in git."""
    return [f"{name_of(o)}: a Secret in the manifests" for o in find(objs, "Secret")]


def _admits(rule: Obj, port: int, labels: dict[str, str]) -> bool:
    ports = rule.get("ports")
    if ports and not any(p.get("port") == port for p in ports):
        return False
    peers = rule.get("from")
    if not peers:
        return True  # no `from`: every source
    return any(
        "ipBlock" in peer or "namespaceSelector" in peer or selects(peer.get("podSelector"), labels)
        for peer in peers
    )


def redis_policy(objs: list[Obj]) -> list[str]:
    """A NetworkPolicy selects the Redis pods and admits the Redis port only from
    the gateway (and from Redis itself); the dev Redis is among the pods selected."""
    if gateway(objs) is None:
        return []
    policies = [
        p
        for p in find(objs, "NetworkPolicy")
        if selects(p["spec"].get("podSelector"), REDIS)
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not policies:
        return ["no NetworkPolicy selects the Redis pods"]
    problems = []
    strangers = [
        w for w in workloads(objs) if not (selects({"matchLabels": GATEWAY}, w.labels))
    ] + [
        # a pod of the namespace that is neither gateway nor Redis
        Workload({"kind": "Pod", "metadata": {"name": "other"}}, {}, {"app": "other"}),
    ]
    for policy in policies:
        rules = policy["spec"].get("ingress", [])
        if not any(_admits(r, REDIS_PORT, GATEWAY) for r in rules):
            problems.append(f"{name_of(policy)}: the gateway may not reach Redis")
        for w in strangers:
            if selects({"matchLabels": REDIS}, w.labels):
                continue
            if any(_admits(r, REDIS_PORT, w.labels) for r in rules):
                problems.append(f"{name_of(policy)}: {w.name} may reach Redis too")
    for w in workloads(objs):
        if selects({"matchLabels": REDIS}, w.labels) and not any(
            selects(p["spec"].get("podSelector"), w.labels) for p in policies
        ):
            problems.append(f"{w.name}: its Redis pods are under no NetworkPolicy")
    return problems


def autoscaler(objs: list[Obj]) -> list[str]:
    """An HPA scales the gateway Deployment that exists, on CPU it requests, and
    the Deployment leaves its replica count to it."""
    gw = gateway(objs)
    if gw is None:
        return []
    problems = []
    hpas = find(objs, "HorizontalPodAutoscaler")
    if not hpas:
        problems.append("no HorizontalPodAutoscaler")
    for hpa in hpas:
        ref = hpa["spec"]["scaleTargetRef"]
        targets = [
            o
            for o in find(objs, ref["kind"], ref["name"])
            if o["apiVersion"] == ref.get("apiVersion", o["apiVersion"])
        ]
        if not targets:
            problems.append(f"{name_of(hpa)}: no {ref['kind']}/{ref['name']} to scale")
        low, high = hpa["spec"].get("minReplicas", 1), hpa["spec"]["maxReplicas"]
        if not 1 <= low <= high:
            problems.append(f"{name_of(hpa)}: minReplicas {low}, maxReplicas {high}")
    if not any(
        h["spec"]["scaleTargetRef"]["name"] == gw.obj["metadata"]["name"]
        and h["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        for h in hpas
    ):
        problems.append(f"{gw.name}: no HorizontalPodAutoscaler scales it")
    if "replicas" in gw.obj["spec"]:
        problems.append(f"{gw.name}: sets replicas, which every apply resets under the HPA")
    return problems


def disruption_budget(objs: list[Obj]) -> list[str]:
    """A PodDisruptionBudget selects the gateway's pods and still lets a drain
    evict one of them at the HPA's minimum."""
    gw = gateway(objs)
    if gw is None:
        return []
    pdbs = [
        p for p in find(objs, "PodDisruptionBudget") if selects(p["spec"]["selector"], gw.labels)
    ]
    if not pdbs:
        return [f"no PodDisruptionBudget selects the pods of {gw.name}"]
    problems = []
    minimum = min(
        (h["spec"].get("minReplicas", 1) for h in find(objs, "HorizontalPodAutoscaler")),
        default=1,
    )
    for pdb in pdbs:
        spec = pdb["spec"]
        if spec.get("maxUnavailable") in (0, "0%"):
            problems.append(f"{name_of(pdb)}: maxUnavailable 0 blocks every drain")
        min_available = spec.get("minAvailable")
        if isinstance(min_available, int) and min_available >= minimum:
            problems.append(
                f"{name_of(pdb)}: minAvailable {min_available} with {minimum} replicas "
                "blocks every drain"
            )
    return problems


def _has_port(service: Obj, port: Obj) -> bool:
    return any(
        ("name" in port and p.get("name") == port["name"])
        or ("number" in port and p["port"] == port["number"])
        for p in service["spec"].get("ports", [])
    )


def services(objs: list[Obj]) -> list[str]:
    """Every Service selects the pods of a workload, and its target ports are
    ports of those pods."""
    problems = []
    for svc in find(objs, "Service"):
        selector = svc["spec"].get("selector")
        pods = [
            w for w in workloads(objs) if selector and selects({"matchLabels": selector}, w.labels)
        ]
        if not pods:
            problems.append(f"{name_of(svc)}: selects no pods")
            continue
        for port in svc["spec"].get("ports", []):
            target = port.get("targetPort", port["port"])
            if not any(
                target in (p.get("name"), p["containerPort"])
                for w in pods
                for c in w.containers()
                for p in c.get("ports", [])
            ):
                problems.append(f"{name_of(svc)}: targetPort {target!r} is no port of its pods")
    return problems


def ingress(objs: list[Obj]) -> list[str]:
    """Ingresses route to a Service port that exists, on the host of the share
    links (TRACKING_PUBLIC_URL), with TLS when that URL is https; no placeholder
    host is left."""
    gw = gateway(objs)
    if gw is None:
        return []
    problems = []
    ingresses = find(objs, "Ingress")
    if not ingresses:
        problems.append("no Ingress")
    public_url = config_data(objs, gw).get("TRACKING_PUBLIC_URL", "")
    public = urlsplit(public_url)
    for ing in ingresses:
        tls_hosts = {
            h for t in ing["spec"].get("tls", []) if t.get("secretName") for h in t["hosts"]
        }
        for rule in ing["spec"].get("rules", []):
            host = rule.get("host", "")
            if host.endswith(".invalid") or not host:
                problems.append(f"{name_of(ing)}: host {host!r} is a placeholder")
            if host != public.hostname:
                problems.append(f"{name_of(ing)}: host {host!r} is not that of {public_url!r}")
            if public.scheme == "https" and host not in tls_hosts:
                problems.append(f"{name_of(ing)}: no TLS for {host!r} behind an https URL")
            for path in rule.get("http", {}).get("paths", []):
                backend = path["backend"]["service"]
                found = find(objs, "Service", backend["name"])
                if not found:
                    problems.append(f"{name_of(ing)}: no Service {backend['name']}")
                elif not _has_port(found[0], backend["port"]):
                    problems.append(
                        f"{name_of(ing)}: Service {backend['name']} has no port {backend['port']}"
                    )
    return problems


_RUN_TIME = re.compile(r"(\d+)\s*([hms]?)")


def _seconds(duration: str) -> float:
    """Locust's run time syntax (`90`, `60s`, `10m`, `1h30m`) in seconds."""
    return float(
        sum(int(n) * {"h": 3600, "m": 60}.get(u, 1) for n, u in _RUN_TIME.findall(duration))
    )


def _option(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


def jobs(objs: list[Obj]) -> list[str]:
    """Every Job ends by itself (a deadline); the locust master waits for as many
    workers as the worker Job runs, and its deadline covers the wait, the run time
    and the report window."""
    problems = []
    for job in find(objs, "Job"):
        if "activeDeadlineSeconds" not in job["spec"]:
            problems.append(f"{name_of(job)}: no activeDeadlineSeconds")
        if "backoffLimit" not in job["spec"]:
            problems.append(f"{name_of(job)}: no backoffLimit")
    by_component = {w.labels.get("app.kubernetes.io/component"): w for w in workloads(objs)}
    master, worker = by_component.get("locust-master"), by_component.get("locust-worker")
    if master is None or worker is None:
        return problems
    args = master.pod["containers"][0].get("args", [])
    expected = int(_option(args, "--expect-workers") or 1)
    for field in ("parallelism", "completions"):
        if worker.obj["spec"].get(field, 1) != expected:
            problems.append(
                f"{worker.name}: {field} is not the master's --expect-workers {expected}"
            )
    run_time = _option(args, "-t") or _option(args, "--run-time")
    run_time = run_time or config_data(objs, master).get("LOCUST_RUN_TIME")
    if run_time is None:
        problems.append(f"{master.name}: no run time: the run would not end")
    else:
        needed = (
            _seconds(run_time)
            + float(_option(args, "--autoquit") or 0)
            + float(_option(args, "--expect-workers-max-wait") or 0)
        )
        deadline = master.obj["spec"].get("activeDeadlineSeconds", 0)
        if deadline < needed:
            problems.append(f"{master.name}: activeDeadlineSeconds {deadline} < {needed:g} s")
    return problems


def all_rules(setting_names: frozenset[str]) -> dict[str, Rule]:
    """Every rule, by name."""
    return {
        "probes": probes,
        "resources": resources,
        "images": images,
        "shutdown": shutdown,
        "security": security,
        "config": config(setting_names),
        "secrets": secrets,
        "redis_policy": redis_policy,
        "autoscaler": autoscaler,
        "disruption_budget": disruption_budget,
        "services": services,
        "ingress": ingress,
        "jobs": jobs,
    }
