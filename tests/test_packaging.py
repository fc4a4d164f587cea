"""The package as a new user gets it: the wheel, pip-installed in a fresh venv outside the checkout,
runs a pipeline with the bundled model by name from an empty directory, with no extras."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ("selfie_landscape.onnx", "selfie_landscape.json", "NOTICE")

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    work: Path  # an empty directory outside the checkout, the cwd of every command

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        # No PYTHONPATH: only the venv's site-packages may supply streamseg.
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        exe = self.venv / "bin" / args[0]
        return subprocess.run(
            [str(exe), *args[1:]], cwd=self.work, env=env, capture_output=True, text=True, timeout=timeout
        )


def _setuptools_can_build() -> bool:
    try:
        return int(version("setuptools").split(".")[0]) >= 77
    except (PackageNotFoundError, ValueError):
        return False


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    pytest.importorskip("build", reason="python -m build is not installed (pip install -e '.[dev]')")
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    # sdist first, then the wheel from the sdist (build's default): the wheel cannot pick up stale
    # files from a build/ folder, and the sdist is proven to carry the model too. Without isolation
    # when this venv's setuptools is new enough: no download, seconds instead of tens of seconds.
    cmd = [sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)]
    if _setuptools_can_build():
        cmd.insert(3, "--no-isolation")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=base)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (wheel,) = dist.glob("streamseg-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    work = base / "work"
    work.mkdir()
    inst = Installed(wheel, venv, work)
    # Dependencies come from the package index (or pip's cache); no extras, so no torch.
    r = inst.run("pip", "install", "-q", "--disable-pip-version-check", str(wheel), timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return inst


def test_wheel_carries_the_bundled_model(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as z:
        names = set(z.namelist())
    for name in BUNDLED:
        assert f"streamseg/bundled/selfie_landscape/{name}" in names
    assert not any(n.startswith("tests/") for n in names)


def test_base_install_has_no_torch_and_imports_from_the_venv(installed: Installed) -> None:
    code = (
        "import importlib.util, json, sys, streamseg\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnxruntime', 'tensorrt', 'gi'))\n"
        "print(json.dumps([streamseg.__file__, importlib.util.find_spec('torch') is None, heavy]))\n"
    )
    r = installed.run("python", "-c", code)
    assert r.returncode == 0, r.stderr
    where, no_torch, heavy = json.loads(r.stdout)
    assert Path(where).is_relative_to(installed.venv), where  # the wheel's copy, not the checkout
    assert no_torch
    assert heavy == []


def test_models_lists_the_bundled_model_from_the_wheel(installed: Installed) -> None:
    r = installed.run("streamseg", "models")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("selfie_landscape: ")
    (file_line,) = [line for line in r.stdout.splitlines() if line.strip().startswith("file ")]
    assert Path(file_line.split()[-1]).is_relative_to(installed.venv), file_line


def test_init_validate_run_with_the_bundled_model_by_name(installed: Installed) -> None:
    r = installed.run("streamseg", "init", "--source", "synthetic")
    assert r.returncode == 0, r.stderr
    pipeline = installed.work / "pipeline.yaml"
    text = pipeline.read_text()
    assert "path: selfie_landscape" in text
    pipeline.write_text(text.replace("port: 8080 ", "port: 0    "))  # a free port: tests share the machine
    r = installed.run("streamseg", "validate", "pipeline.yaml")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("pipeline.yaml: ok (1 source(s), model selfie_landscape"), r.stdout
    r = installed.run("streamseg", "run", "pipeline.yaml", "--max-frames", "30")
    assert r.returncode == 0, r.stderr
    assert "with onnxruntime" in r.stdout and "pattern=30" in r.stdout
    records = [json.loads(line) for line in (installed.work / "out" / "stats.jsonl").read_text().splitlines()]
    assert len(records) == 30
    assert (installed.work / "out" / "pattern.mp4").stat().st_size > 0


def test_eval_without_the_train_extra_is_one_line_naming_it(installed: Installed) -> None:
    assert installed.run("python", "-c", "import PIL").returncode != 0, "the base install should not bring Pillow"
    data = installed.work / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    cv2.imwrite(str(data / "images" / "a.png"), np.zeros((36, 64, 3), np.uint8))
    cv2.imwrite(str(data / "masks" / "a.png"), np.zeros((36, 64), np.uint8))
    r = installed.run("streamseg", "eval", "selfie_landscape", "--data", "data")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        "streamseg: error: reading PNG masks (eval, train) needs the Python module 'PIL.Image': "
        "pip install 'streamseg[train]'"
    )
    assert "Traceback" not in r.stderr


def test_run_on_the_users_own_file(installed: Installed) -> None:
    clip = ROOT / "samples" / "bikes.mp4"
    if not clip.exists():
        pytest.skip("samples/bikes.mp4 is missing (make samples)")
    (installed.work / "my clip.mp4").write_bytes(clip.read_bytes())
    r = installed.run("streamseg", "init", "--uri", "my clip.mp4", "own.yaml")
    assert r.returncode == 0, r.stderr
    own = installed.work / "own.yaml"
    own.write_text(own.read_text().replace("port: 8080 ", "port: 0    ").replace("out/", "own-out/"))
    r = installed.run("streamseg", "run", "own.yaml", "--max-frames", "20")
    assert r.returncode == 0, r.stderr
    lines = (installed.work / "own-out" / "stats.jsonl").read_text().splitlines()
    assert len(lines) == 20
    records = [json.loads(line) for line in lines]
    assert [r["frame"] for r in records] == list(range(20))
    assert len({r["stream"] for r in records}) == 1


def test_a_phantom_class_is_refused_by_the_base_install(installed: Installed) -> None:
    # The class-count check reads the graph with the onnx package: it must be part of the base install.
    src = installed.venv.glob("lib/python*/site-packages/streamseg/bundled/selfie_landscape")
    (folder,) = list(src)
    own = installed.work / "phantom"
    own.mkdir()
    (own / "selfie_landscape.onnx").write_bytes((folder / "selfie_landscape.onnx").read_bytes())
    sidecar = json.loads((folder / "selfie_landscape.json").read_text())
    sidecar["classes"] = [*sidecar["classes"], {"name": "ghost", "color": [0, 255, 0]}]
    (own / "phantom.json").write_text(json.dumps(sidecar))
    pipeline = installed.work / "phantom.yaml"
    pipeline.write_text(
        "sources: [{name: a, uri: 'synthetic://?width=64&height=36&frames=2'}]\n"
        "model: {path: phantom/phantom.json}\nhttp: {enabled: false}\n"
    )
    r = installed.run("streamseg", "validate", "phantom.yaml")
    assert r.returncode == 2, r.stdout + r.stderr
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("streamseg: error:")]
    assert "phantom.json" in line and "classes" in line, line
    assert "Traceback" not in r.stderr
