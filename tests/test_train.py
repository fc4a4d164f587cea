"""Training: a tiny run on real labelled frames reduces the loss; checkpoints resume."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'streamseg[train]')")

from streamseg.errors import ConfigError  # noqa: E402
from streamseg.models.checkpoint import read_checkpoint  # noqa: E402
from streamseg.train import TrainConfig, train  # noqa: E402

VIDEO = Path("/usr/share/doc/labelme-examples/examples/video_annotation/data_dataset_voc")


@pytest.fixture
def frames() -> Path:
    if not VIDEO.is_dir():
        pytest.skip("Debian package labelme-examples is not installed (tools/install-system-deps.sh installs it)")
    return VIDEO


def _cfg(data: Path, out: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        network="unet_padded",
        data=[str(data)],
        out=out,
        epochs=1,
        batch_size=5,
        lr=3e-3,
        optimizer="adamw",
        size=(64, 112),
        scale=(1.0, 1.0),
        options={"base_channels": 8},
        progress=False,
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_a_tiny_run_reduces_the_loss(frames: Path, tmp_path: Path) -> None:
    first = train(_cfg(frames, tmp_path / "a", epochs=1))
    loss1 = read_checkpoint(tmp_path / "a" / "last.pt")["loss"]
    later = train(_cfg(frames, tmp_path / "b", epochs=25))
    loss25 = read_checkpoint(tmp_path / "b" / "last.pt")["loss"]
    assert loss25 < 0.7 * loss1, (loss1, loss25)
    assert later.pixel_accuracy > first.pixel_accuracy


def test_resume_continues_from_the_checkpoint(frames: Path, tmp_path: Path) -> None:
    train(_cfg(frames, tmp_path, epochs=2))
    state = read_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 2 and "optimizer" in state and "scheduler" in state
    train(_cfg(frames, tmp_path, epochs=3, resume=True))
    assert read_checkpoint(tmp_path / "last.pt")["epoch"] == 3
    assert (tmp_path / "last.json").is_file()  # the sidecar streamseg eval/export/run use


def test_sgd_and_class_weights(frames: Path, tmp_path: Path) -> None:
    train(_cfg(frames, tmp_path, optimizer="sgd", lr=0.01, class_weights=[0.2, 1.0, 1.0]))
    with pytest.raises(ConfigError, match="2 weights for 3 classes"):
        train(_cfg(frames, tmp_path, class_weights=[1.0, 2.0]))
    with pytest.raises(ConfigError, match="unknown option"):
        train(_cfg(frames, tmp_path, options={"depth": 3}))


def test_cli_train_eval_export(frames: Path, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "streamseg", *args], capture_output=True, text=True, timeout=300)

    r = run(
        "train",
        "enet",
        "--data",
        str(frames),
        "--out",
        str(tmp_path),
        "--epochs",
        "1",
        "--size",
        "64x112",
        "--batch-size",
        "5",
    )
    assert r.returncode == 0, r.stderr
    assert "trained enet" in r.stdout

    def miu(out: str) -> float:
        return float(next(x for x in out.splitlines() if x.startswith("mean IU")).split()[-1])

    r = run("eval", str(tmp_path / "last.json"), "--data", str(frames), "--json", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    assert "backend torch selected (CPU fallback)" in r.stderr
    r_onnx = run("export", str(tmp_path / "last.pt"), "--out", str(tmp_path / "enet.onnx"))
    assert r_onnx.returncode == 0, r_onnx.stderr
    r2 = run("eval", str(tmp_path / "enet.onnx"), "--data", str(frames))
    assert r2.returncode == 0, r2.stderr
    assert "backend onnxruntime selected" in r2.stderr
    # the checkpoint (torch) and its export (ONNX Runtime) score alike on the same frames
    assert abs(miu(r.stdout) - miu(r2.stdout)) < 0.01
    r = run("train", "nosuchnet", "--data", str(frames), "--out", str(tmp_path))
    assert r.returncode == 2 and "unknown network 'nosuchnet'" in r.stderr


def test_bad_dataset_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such folder"):
        train(_cfg(tmp_path / "missing", tmp_path))
