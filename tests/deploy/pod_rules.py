"""Rules about each pod: probes, resources, images, shutdown, security.

A rule takes the rendered objects and returns its problems, one line each,
naming the object; an empty list means it holds (see tests/deploy/rules.py).
"""

from __future__ import annotations

from tests.deploy.manifests import (
    Obj,
    config_data,
    env_entries,
    gateway,
    prestop_sleep_s,
    quantity,
    workloads,
)

SHUTDOWN_MARGIN_S = 5.0
"""Time past preStop + drain for uvicorn's last steps (lifespan shutdown, exit)."""
DEFAULT_DRAIN_TIMEOUT_S = 10.0
"""TRACKING_DRAIN_TIMEOUT_S when the ConfigMap leaves it out (tracking/settings.py)."""
DEFAULT_GRACE_S = 30
"""Kubernetes' terminationGracePeriodSeconds when a pod leaves it out."""
READINESS_PATH = "/readyz"
LIVENESS_PATH = "/healthz"


def _probe_port(probe: Obj) -> str | int | None:
    for kind in ("httpGet", "tcpSocket", "grpc"):
        if kind in probe:
            port: str | int = probe[kind]["port"]
            return port
    return None


def probes(objs: list[Obj]) -> list[str]:
    """Servers (containers with ports) have readiness and liveness probes on their
    own ports; the gateway's readiness asks Redis (/readyz), its liveness does not
    (/healthz, so a Redis outage restarts nothing), and it has a startup probe."""
    problems = []
    gw = gateway(objs)
    for w in workloads(objs):
        for c in w.containers():
            where = f"{w.name} container {c['name']}"
            ports = c.get("ports", [])
            declared = {p.get("name") for p in ports} | {p["containerPort"] for p in ports}
            if ports:
                for kind in ("readinessProbe", "livenessProbe"):
                    if kind not in c:
                        problems.append(f"{where}: a server without a {kind}")
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                port = _probe_port(c.get(kind, {}))
                if port is not None and port not in declared:
                    problems.append(f"{where}: {kind} port {port!r} is not a container port")
            if gw is not None and w.obj is gw.obj:
                ready = c.get("readinessProbe", {}).get("httpGet", {}).get("path")
                alive = c.get("livenessProbe", {}).get("httpGet", {}).get("path")
                if ready != READINESS_PATH:
                    problems.append(f"{where}: readinessProbe must GET {READINESS_PATH}")
                if alive != LIVENESS_PATH:
                    problems.append(
                        f"{where}: livenessProbe must GET {LIVENESS_PATH}, not {alive!r} "
                        "(liveness must not depend on Redis)"
                    )
                if "startupProbe" not in c:
                    problems.append(f"{where}: no startupProbe (the road graph loads first)")
    return problems


def resources(objs: list[Obj]) -> list[str]:
    """Every container requests and limits cpu and memory, requests within limits."""
    problems = []
    for w in workloads(objs):
        for c in w.containers():
            where = f"{w.name} container {c['name']}"
            res = c.get("resources", {})
            for resource in ("cpu", "memory"):
                request = res.get("requests", {}).get(resource)
                limit = res.get("limits", {}).get(resource)
                if request is None:
                    problems.append(f"{where}: no {resource} request")
                if limit is None:
                    problems.append(f"{where}: no {resource} limit")
                if request is not None and limit is not None:
                    if quantity(request) > quantity(limit):
                        problems.append(f"{where}: {resource} request {request} > limit {limit}")
    return problems


def images(objs: list[Obj]) -> list[str]:
    """Every image has a fixed tag (or a digest): never none, never `latest`."""
    problems = []
    for w in workloads(objs):
        for c in w.containers():
            image = c.get("image", "")
            if "@sha256:" in image:
                continue
            last = image.rsplit("/", 1)[-1]
            tag = last.split(":", 1)[1] if ":" in last else None
            if tag is None:
                problems.append(f"{w.name} container {c['name']}: image {image!r} has no tag")
            elif tag == "latest":
                problems.append(f"{w.name} container {c['name']}: image {image!r} is `latest`")
    return problems


def shutdown(objs: list[Obj]) -> list[str]:
    """The gateway sleeps in preStop, and the grace period covers that sleep, the
    drain (TRACKING_DRAIN_TIMEOUT_S from its ConfigMap) and a margin."""
    gw = gateway(objs)
    if gw is None:
        return []
    problems = []
    data = config_data(objs, gw)
    drain_s = float(data.get("TRACKING_DRAIN_TIMEOUT_S", DEFAULT_DRAIN_TIMEOUT_S))
    grace_s = gw.pod.get("terminationGracePeriodSeconds", DEFAULT_GRACE_S)
    for c in gw.pod["containers"]:
        sleep_s = prestop_sleep_s(c)
        if sleep_s is None:
            problems.append(f"{gw.name} container {c['name']}: no preStop sleep")
            sleep_s = 0.0
        needed = sleep_s + drain_s + SHUTDOWN_MARGIN_S
        if grace_s < needed:
            problems.append(
                f"{gw.name}: terminationGracePeriodSeconds {grace_s} < preStop {sleep_s:g} s "
                f"+ drain {drain_s:g} s + margin {SHUTDOWN_MARGIN_S:g} s"
            )
    return problems


def _pod_or_container(pod_ctx: Obj, ctx: Obj, key: str) -> object:
    return ctx.get(key, pod_ctx.get(key))


def security(objs: list[Obj]) -> list[str]:
    """Every container runs as a non-root uid on a read-only root filesystem, with
    no privilege escalation, no capabilities, the runtime's seccomp profile and no
    service account token; HOME and TMPDIR point into a mounted volume."""
    problems = []
    for w in workloads(objs):
        pod_ctx = w.pod.get("securityContext", {})
        if w.pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{w.name}: automountServiceAccountToken is not false")
        for c in w.containers():
            where = f"{w.name} container {c['name']}"
            ctx = c.get("securityContext", {})
            if _pod_or_container(pod_ctx, ctx, "runAsNonRoot") is not True:
                problems.append(f"{where}: runAsNonRoot is not true")
            uid = _pod_or_container(pod_ctx, ctx, "runAsUser")
            if not isinstance(uid, int) or uid == 0:
                problems.append(f"{where}: runAsUser {uid!r} is not a non-root uid")
            if ctx.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem is not true")
            if ctx.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if ctx.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{where}: capabilities do not drop ALL")
            seccomp = _pod_or_container(pod_ctx, ctx, "seccompProfile")
            if not isinstance(seccomp, dict) or seccomp.get("type") != "RuntimeDefault":
                problems.append(f"{where}: seccompProfile is not RuntimeDefault")
            mounts = [m["mountPath"] for m in c.get("volumeMounts", []) if not m.get("readOnly")]
            for var in ("HOME", "TMPDIR"):
                value = env_entries(c).get(var, {}).get("value")
                if value and not any(value == m or value.startswith(m + "/") for m in mounts):
                    problems.append(f"{where}: {var}={value} is not on a writable volume")
    gw = gateway(objs)
    if gw is not None:
        for c in gw.pod["containers"]:
            if not any(m["mountPath"] == "/tmp" for m in c.get("volumeMounts", [])):
                problems.append(f"{gw.name} container {c['name']}: no writable /tmp")
    return problems
