"""deploy/: the Prometheus scrape config and alert rules are valid, and every alert fires."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def test_deploy_config_and_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (tools/install-system-deps.sh installs prometheus)")
    deploy = Path(__file__).resolve().parents[1] / "deploy"
    for args in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ):
        r = subprocess.run([promtool, *args], cwd=deploy, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
