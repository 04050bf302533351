"""The Dockerfile: hadolint-clean, non-root, and the images the manifests deploy.

The image is not built here (no Docker daemon in the test environment);
these checks read the Dockerfile and the .dockerignore.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.deploy.dockerfile import (
    DOCKERFILE,
    DOCKERIGNORE,
    copied_sources,
    documented_images,
    effective,
    exec_form,
    ignore_patterns,
    ignored,
    stages,
)
from tests.deploy.manifests import ROOT, gateway, render, tool, workloads

KEPT_OUT = [
    ".git/HEAD",
    ".venv/bin/python",
    ".tracking/dev-jwt-secret",
    "map_ui/node_modules/maplibre-gl/package.json",
    "map_ui/dist/rider.html",
    "bench/results/throughput.json",
    "loadtest/results/load.html",
    "tests/unit/test_trip.py",
    "docs/img/ops-dashboard.png",
    "k8s/base/deployment.yaml",
    "tracking/__pycache__/cli.cpython-311.pyc",
    "dump.rdb",
]


def hadolint(dockerfile: Path, home: Path) -> subprocess.CompletedProcess[str]:
    # HOME and XDG_CONFIG_HOME empty: no user's hadolint.yaml relaxes the rules.
    return subprocess.run(
        [str(tool("hadolint")), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=home,
        env={"HOME": str(home), "XDG_CONFIG_HOME": str(home)},
    )


def test_hadolint_finds_nothing(tmp_path: Path) -> None:
    """hadolint reports no error, warning or note on the Dockerfile."""
    result = hadolint(DOCKERFILE, tmp_path)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_hadolint_would_report_a_latest_base(tmp_path: Path) -> None:
    """The lint can fail: an unpinned base image is reported."""
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text().replace("python:3.11.14-slim-bookworm", "python"))
    result = hadolint(broken, tmp_path)
    assert result.returncode != 0 and "DL3006" in result.stdout, result.stdout


def test_default_target_is_the_gateway_running_as_the_deployments_user() -> None:
    """The last stage (plain `docker build`) is the gateway: numeric non-root USER,
    the uid the Deployment runs as, `tracking` as entrypoint, the port it serves."""
    all_stages = stages(DOCKERFILE.read_text())
    final = all_stages[-1]
    assert final.name == "runtime"
    user = effective(all_stages, "runtime", "USER")
    assert user is not None and user.isdigit() and int(user) != 0
    gw = gateway(render("production"))
    assert gw is not None
    assert gw.pod["securityContext"]["runAsUser"] == int(user)
    (container,) = gw.pod["containers"]
    entrypoint = exec_form(effective(all_stages, "runtime", "ENTRYPOINT") or "")
    assert container["command"] == entrypoint
    assert container["args"] == exec_form(final.last("CMD") or "")
    assert final.last("EXPOSE") == str(container["ports"][0]["containerPort"])


def test_loadtest_target_runs_as_the_jobs_user() -> None:
    """The loadtest stage runs locust as the uid of the locust Jobs."""
    all_stages = stages(DOCKERFILE.read_text())
    user = effective(all_stages, "loadtest", "USER")
    assert user is not None and user.isdigit() and int(user) != 0
    for w in workloads(render("loadtest")):
        assert w.pod["securityContext"]["runAsUser"] == int(user), w.name


def test_manifests_deploy_the_images_the_dockerfile_builds() -> None:
    """The gateway and locust images are the names the Dockerfile's build commands
    tag, each target for its own workloads (the tag is the kustomization's)."""
    documented = documented_images(DOCKERFILE.read_text())
    assert set(documented) == {"runtime", "loadtest"}
    expected = {"dev": "runtime", "production": "runtime", "loadtest": "loadtest"}
    for target, stage in expected.items():
        image, _ = documented[stage]
        own = {
            c["image"].rsplit(":", 1)[0]
            for w in workloads(render(target))
            for c in w.containers()
            if c["image"].startswith("ghcr.io/")
        }
        assert own == {image}, (target, own)


def test_no_build_stage_reaches_the_runtime_image() -> None:
    """The runtime image starts from a slim Python base and copies only the
    virtualenv and the built pages from the build stages."""
    all_stages = stages(DOCKERFILE.read_text())
    by_name = {s.name: s for s in all_stages}
    chain = []
    stage = by_name["runtime"]
    while True:
        chain.append(stage)
        if stage.base not in by_name:
            break
        stage = by_name[stage.base]
    assert chain[-1].base.startswith("python:3.11") and "slim" in chain[-1].base
    copies = [args for s in chain for args in s.all("COPY")]
    assert all(c.startswith("--from=") for c in copies), copies
    assert not any(
        name == "RUN" and "apt-get" in args for s in chain for name, args in s.instructions
    )


def test_dockerignore_keeps_the_context_to_what_the_build_copies() -> None:
    """Everything COPY takes is in the build context; the checkout's junk is not."""
    patterns = ignore_patterns(DOCKERIGNORE.read_text())
    for source in copied_sources(DOCKERFILE.read_text()):
        assert (ROOT / source).exists(), source
        assert not ignored(patterns, source), source
    for path in KEPT_OUT:
        assert ignored(patterns, path), path


@pytest.mark.parametrize(
    ("dockerignore", "leaked"),
    [
        ("node_modules\n.venv\n", ".git/HEAD"),
        ("*\n!map_ui/\n", "map_ui/node_modules/maplibre-gl/package.json"),
    ],
    ids=["no-allow-list", "all-of-map_ui"],
)
def test_dockerignore_check_reports_a_leak(dockerignore: str, leaked: str) -> None:
    """The .dockerignore check can fail: a path let through is seen as such."""
    assert not ignored(ignore_patterns(dockerignore), leaked)
