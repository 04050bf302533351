"""The map pages' pure JavaScript (motion, camera, reconnect policy, wording) under node:test."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

UI = Path(__file__).resolve().parents[2] / "map_ui"


def test_map_ui_unit_tests_pass() -> None:
    """`node --test map_ui/test/` passes (the same suite `npm test` runs)."""
    node = shutil.which("node")
    assert node, "Node.js is required (it builds the map pages too)"
    result = subprocess.run(
        [node, "--test", "test/"], cwd=UI, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout and "# pass 0" not in result.stdout
