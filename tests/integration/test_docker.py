"""The CPU image (deploy/docker/Dockerfile), built and run for real with Debian's Docker.

No registry is used: the base image is a Debian bookworm made by debootstrap and `docker import`,
the wheels are built on the host (`pip wheel`) and installed in the image from a wheelhouse in the
build context. The daemon runs under a temporary folder and touches nothing of the host's
network (no iptables, no bridge); the container runs with `--network none`, so /metrics and
/healthz are read from inside it with `docker exec` (and by Docker's own HEALTHCHECK).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import av
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = "/usr/bin/docker"  # Debian's client; the one in /usr/local/bin cannot build here
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "streamseg-test"
BASE_TAG = "local/debian:bookworm"
IMAGE = "streamseg:test"

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def _debian_mirror() -> str:
    """The bookworm mirror apt is configured with (deb822 .sources or one-line .list files)."""
    files = [*sorted(Path("/etc/apt/sources.list.d").glob("*")), Path("/etc/apt/sources.list")]
    for f in files:
        if not f.is_file():
            continue
        text = f.read_text(errors="replace")
        for m in re.finditer(r"^URIs:\s*(\S+)\s*\nSuites:\s*([^\n]*)", text, re.M):
            if "bookworm" in m.group(2).split() and m.group(1).rstrip("/").endswith("/debian"):
                return m.group(1)
        for m in re.finditer(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", text, re.M):
            if m.group(1).rstrip("/").endswith("/debian"):
                return m.group(1)
    return "http://deb.debian.org/debian"


class Docker:
    """A private dockerd: its own data root, exec root and socket under one temporary folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.sock = folder / "sock"
        self.log = folder / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True, stdin: IO[bytes] | None = None
    ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [DOCKER, "-H", f"unix://{self.sock}", *args], stdin=stdin, capture_output=True, text=True, timeout=timeout
        )
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def start(self) -> None:
        d = self.folder
        cmd = [
            "dockerd", "--iptables=false", "--ip-masq=false", "--bridge=none",
            "--data-root", str(d / "root"), "--exec-root", str(d / "exec"),
            "--pidfile", str(d / "pid"), "-H", f"unix://{self.sock}",
        ]  # fmt: skip
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.sock.exists() and self("info", check=False, timeout=10).returncode == 0:
                return
            time.sleep(0.2)
        tail = self.log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"dockerd did not start (exit {self.proc.poll()}): {tail}")

    def stop(self) -> None:
        """Stop the daemon by its pid (it stops its containerd), then unmount what it left."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        prefix = str(self.folder) + "/"
        with open("/proc/self/mounts") as f:
            mounts = [line.split()[1] for line in f if line.split()[1].startswith(prefix)]
        for m in sorted(mounts, key=len, reverse=True):  # deepest first: exec/netns/default, root
            if subprocess.run(["umount", m], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def docker() -> Iterator[Docker]:
    missing = [t for t in ("dockerd", DOCKER, "debootstrap") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"Docker cannot start: {', '.join(missing)} missing (apt-get install docker.io debootstrap)")
    if os.geteuid() != 0:
        pytest.skip("Docker cannot start: dockerd needs root")
    # A short path: containerd's sockets live under the exec root (108 bytes at most).
    d = Docker(Path(tempfile.mkdtemp(prefix="ssd-", dir="/tmp")))
    try:
        d.start()
    except RuntimeError as e:
        d.stop()
        pytest.skip(f"Docker cannot start: {e}")
    try:
        yield d
    finally:
        d.stop()


def _base_rootfs() -> Path:
    """A minimal bookworm root file system as a tarball, cached between runs (~30 s to make)."""
    mirror = _debian_mirror()
    tarball = CACHE / f"debian-bookworm-minbase-{re.sub(r'[^A-Za-z0-9]+', '_', mirror)}.tar"
    if tarball.exists():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        rootfs = Path(tmp) / "rootfs"
        r = subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if r.returncode != 0:
            pytest.fail(f"debootstrap bookworm from {mirror} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        part = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(part), "."], check=True, timeout=300)
        part.rename(tarball)
    return tarball


def _wheelhouse(dest: Path) -> None:
    """streamseg's wheel (always fresh) and its dependencies' wheels (cached) for the image's
    Python: Debian bookworm's CPython 3.11, so the host must build with a 3.11 too."""
    if sys.version_info[:2] != (3, 11) or sys.implementation.name != "cpython":
        pytest.skip(f"the image's Python is CPython 3.11; these tests run on {sys.version.split()[0]}")
    cached = CACHE / "wheels"
    cached.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--find-links", str(cached), "-w", str(dest), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    for whl in dest.glob("*.whl"):
        if not whl.name.startswith("streamseg-"):
            shutil.copy2(whl, cached / whl.name)


@pytest.fixture(scope="session")
def image(docker: Docker, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Build the CPU image from a context laid out as the Dockerfile documents."""
    with _base_rootfs().open("rb") as tar:
        docker("import", "-", BASE_TAG, stdin=tar, timeout=300)

    ctx = tmp_path_factory.mktemp("context")
    shutil.copy2(ROOT / ".dockerignore", ctx / ".dockerignore")
    shutil.copytree(ROOT / "deploy" / "docker", ctx / "deploy" / "docker")
    _wheelhouse(ctx / "wheelhouse")
    (ctx / "junk.bin").write_bytes(b"\0" * 1024)  # .dockerignore must keep this out of the image

    t0 = time.monotonic()
    docker(
        "build", "--network", "host", "--build-arg", f"BASE_IMAGE={BASE_TAG}",
        "-f", "deploy/docker/Dockerfile", "-t", IMAGE, str(ctx), timeout=900,
    )  # fmt: skip
    build_s = time.monotonic() - t0
    size = int(docker("image", "inspect", IMAGE, "--format", "{{.Size}}").stdout)
    base = int(docker("image", "inspect", BASE_TAG, "--format", "{{.Size}}").stdout)
    print(f"\nimage {IMAGE}: {size / 1e6:.0f} MB (base {base / 1e6:.0f} MB), built in {build_s:.1f} s")
    return IMAGE


def test_image_contents(docker: Docker, image: str) -> None:
    cfg = docker("image", "inspect", image, "--format", "{{.Config.User}}|{{json .Config.Healthcheck.Test}}").stdout
    user, health = cfg.strip().split("|")
    assert user and user.split(":")[0] not in ("", "0", "root"), f"the image runs as {user!r}"
    assert "/healthz" in health
    # The bundled model is inside (package data of the wheel) and torch is not.
    r = docker("run", "--rm", "--network", "none", image, "models")
    assert "selfie_landscape" in r.stdout
    probe = (
        "import importlib.util, os; print(importlib.util.find_spec('torch') is None, os.getuid(),"
        " os.path.exists('/junk.bin'))"
    )
    r = docker("run", "--rm", "--network", "none", "--entrypoint", "python3", image, "-c", probe)
    assert r.stdout.split() == ["True", "10001", "False"], r.stdout


PIPELINE = """\
name: docker-test
sources:
  - name: synth
    uri: synthetic://?width=320&height=180&fps=15
    realtime: true
  - name: bikes
    uri: /samples/bikes.mp4
    realtime: true
    loop: true
model: {path: selfie_landscape, backend: onnxruntime}
outputs:
  - {type: video, path: "{stream}.mp4"}
  - {type: jsonl, path: stats.jsonl}
http: {host: 0.0.0.0, port: 8080}
"""

FETCH = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"


def test_container_runs_pipeline(docker: Docker, image: str, clip: Path, tmp_path: Path) -> None:
    config, out = tmp_path / "config", tmp_path / "out"
    config.mkdir()
    out.mkdir()
    out.chmod(0o777)  # the container's user (10001) writes the outputs
    (config / "pipeline.yaml").write_text(PIPELINE)
    name = f"streamseg-test-{os.getpid()}"
    t0 = time.monotonic()
    docker(
        "run", "-d", "--name", name, "--network", "none",
        "-v", f"{config}:/config:ro", "-v", f"{out}:/out", "-v", f"{clip}:/samples/bikes.mp4:ro",
        image,
    )  # fmt: skip
    try:
        # Docker's own HEALTHCHECK (python3 → /healthz) must report healthy; its first probe runs
        # after the 10 s interval.
        status = ""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            status = docker("inspect", name, "--format", "{{.State.Status}} {{.State.Health.Status}}").stdout.strip()
            if status != "running starting":
                break
            time.sleep(1)
        healthy_s = time.monotonic() - t0
        assert status == "running healthy", f"{status}\n{docker('logs', name, check=False).stderr[-3000:]}"

        health = docker("exec", name, "python3", "-c", FETCH, "http://127.0.0.1:8080/healthz").stdout
        assert '"status": "ok"' in health and '"synth": "up"' in health and '"bikes": "up"' in health, health
        metrics = docker("exec", name, "python3", "-c", FETCH, "http://127.0.0.1:8080/metrics").stdout
        for stream in ("synth", "bikes"):
            m = re.search(rf'^streamseg_frames_processed_total\{{stream="{stream}"\}} (\S+)$', metrics, re.M)
            assert m is not None and float(m.group(1)) > 0, f"no frames processed for {stream}"
        assert re.search(r'^streamseg_build_info\{.*backend="onnxruntime".*\} 1\.0$', metrics, re.M), metrics[:2000]

        # docker stop sends SIGTERM: streamseg finalizes its outputs and exits 0.
        t1 = time.monotonic()
        docker("stop", "-t", "30", name, timeout=60)
        stop_s = time.monotonic() - t1
        code = docker("inspect", name, "--format", "{{.State.ExitCode}}").stdout.strip()
        logs = docker("logs", name).stderr
        assert code == "0", f"exit {code}\n{logs[-3000:]}"
    finally:
        docker("rm", "-f", name, check=False)
    print(f"\ncontainer healthy after {healthy_s:.1f} s, stopped in {stop_s:.1f} s")

    # Each overlay file on the mounted volume decodes whole: every frame the log says was written.
    written = dict(re.findall(r"finalized (\w+)\.mp4 \((\d+) frames\)", logs))
    assert set(written) == {"synth", "bikes"}, logs[-3000:]
    for stream, frames in written.items():
        with av.open(str(out / f"{stream}.mp4")) as c:
            decoded = sum(1 for _ in c.decode(video=0))
        assert decoded == int(frames) > 0, f"{stream}.mp4: decoded {decoded} of {frames} frames"
    assert (out / "stats.jsonl").stat().st_size > 0
