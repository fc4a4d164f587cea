"""Training: a tiny run on real labelled frames reduces the loss; checkpoints resume."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
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


@pytest.mark.slow
def test_a_tiny_run_reduces_the_loss(frames: Path, tmp_path: Path) -> None:
    first = train(_cfg(frames, tmp_path / "a", epochs=1))
    loss1 = read_checkpoint(tmp_path / "a" / "last.pt")["loss"]
    later = train(_cfg(frames, tmp_path / "b", epochs=25))
    loss25 = read_checkpoint(tmp_path / "b" / "last.pt")["loss"]
    assert loss25 < 0.7 * loss1, (loss1, loss25)
    assert later.pixel_accuracy > first.pixel_accuracy


def _assert_same_state(a: object, b: object, where: str = "") -> None:
    """Two checkpoint parts (state dicts, nested) hold the same values, tensors compared exactly."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.slow
def test_resume_continues_exactly_as_an_unbroken_run(
    frames: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import streamseg.train

    train(_cfg(frames, tmp_path / "unbroken", epochs=3))
    # the same 3-epoch run, killed after its second checkpoint
    save = streamseg.train.save_checkpoint

    def save_then_die(*args: object, **state: object) -> None:
        save(*args, **state)  # type: ignore[arg-type]
        if state["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(streamseg.train, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(frames, tmp_path / "resumed", epochs=3))
    monkeypatch.undo()
    stopped = read_checkpoint(tmp_path / "resumed" / "last.pt")
    assert stopped["epoch"] == 2
    train(_cfg(frames, tmp_path / "resumed", epochs=3, resume=True))
    unbroken = read_checkpoint(tmp_path / "unbroken" / "last.pt")
    resumed = read_checkpoint(tmp_path / "resumed" / "last.pt")
    # weights, optimizer moments and schedule all picked up where they were, then went on alike
    assert resumed["epoch"] == unbroken["epoch"] == 3
    for part in ("model", "optimizer", "scheduler"):
        _assert_same_state(resumed[part], unbroken[part], part)
    assert resumed["loss"] == unbroken["loss"]
    # and the third epoch did train: the weights moved from the checkpoint they resumed from
    assert any(not torch.equal(stopped["model"][k], resumed["model"][k]) for k in stopped["model"])
    assert (tmp_path / "resumed" / "last.json").is_file()  # the sidecar streamseg eval/export/run use


def test_training_and_serving_prepare_an_image_alike(tmp_path: Path) -> None:
    """Training batches and the pipeline's input come from one function and one contract."""
    from streamseg.contract import load_model
    from streamseg.models import build
    from streamseg.models.checkpoint import CheckpointMeta, input_spec, save_checkpoint
    from streamseg.overlay import voc_colors
    from streamseg.preprocess import preprocess
    from streamseg.train import _to_tensor

    meta = CheckpointMeta(
        "unet_padded", 3, ["a", "b", "c"], voc_colors(3), 64, 112, {"base_channels": 8}, (10.0, 20.0, 30.0), (2, 3, 5)
    )
    save_checkpoint(tmp_path / "m.pt", build("unet_padded", 3, base_channels=8), meta)
    served = load_model(str(tmp_path / "m.json")).contract.input  # what `streamseg run` will use
    assert served == input_spec(meta)
    image = np.random.default_rng(0).integers(0, 256, (64, 112, 3), np.uint8)  # BGR, at the model's size
    train_x = _to_tensor([image, image[::-1]], input_spec(meta)).numpy()
    serve_x = preprocess([image, image[::-1]], served)
    assert train_x.shape == serve_x.shape == (2, 3, 64, 112)
    np.testing.assert_array_equal(train_x, serve_x)
    # and both are what the contract says: RGB order, (x - mean) / std, channels first
    rgb = image[..., ::-1].astype(np.float32)
    expected = ((rgb - np.float32([10, 20, 30])) / np.float32([2, 3, 5])).transpose(2, 0, 1)
    np.testing.assert_allclose(serve_x[0], expected, rtol=1e-6)


@pytest.mark.slow
def test_sgd_and_class_weights(frames: Path, tmp_path: Path) -> None:
    train(_cfg(frames, tmp_path, optimizer="sgd", lr=0.01, class_weights=[0.2, 1.0, 1.0]))
    with pytest.raises(ConfigError, match="2 weights for 3 classes"):
        train(_cfg(frames, tmp_path, class_weights=[1.0, 2.0]))
    with pytest.raises(ConfigError, match="unknown option"):
        train(_cfg(frames, tmp_path, options={"depth": 3}))


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize("semi", ["souly", "hung"])
def test_cli_semi_supervised_on_real_frames(frames: Path, tmp_path: Path, semi: str) -> None:
    """2 labelled street frames + the 3 others without masks, through the CLI; the export is K-class."""
    labelled, unlabelled = tmp_path / "labelled", tmp_path / "unlabelled"
    for d in ("JPEGImages", "SegmentationClassPNG"):
        (labelled / d).mkdir(parents=True)
    unlabelled.mkdir()
    (labelled / "class_names.txt").write_text((frames / "class_names.txt").read_text())
    for i, image in enumerate(sorted((frames / "JPEGImages").glob("*.jpg"))):
        if i < 2:
            (labelled / "JPEGImages" / image.name).symlink_to(image)
            mask = frames / "SegmentationClassPNG" / f"{image.stem}.png"
            (labelled / "SegmentationClassPNG" / mask.name).symlink_to(mask)
        else:
            (unlabelled / image.name).symlink_to(image)
    out = tmp_path / "run"
    args = ["enet", "--data", str(labelled), "--unlabeled", str(unlabelled), "--semi", semi, "--out", str(out)]
    args += ["--epochs", "2", "--size", "64x112", "--batch-size", "2"]
    r = subprocess.run([sys.executable, "-m", "streamseg", "train", *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "trained enet" in r.stdout
    state = read_checkpoint(out / "last.pt")
    assert state["meta"]["num_classes"] == 3 and state["epoch"] == 2 and "semi" in state
    r = subprocess.run(
        [sys.executable, "-m", "streamseg", "export", str(out / "last.pt"), "--out", str(tmp_path / "m.onnx")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    (labels,) = session.run(None, {"input": np.zeros((1, 3, 64, 112), np.float32)})
    assert labels.shape == (1, 64, 112) and labels.max() < 3
