"""Semi-supervised training: Souly et al.'s (K + 1)-class discriminator, Hung et al.'s label-map
discriminator and DecoupledNet's image-level labels, on a tiny synthetic dataset; bad flags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'streamseg[train]')")
Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed (pip install 'streamseg[train]')")

from streamseg.errors import ConfigError  # noqa: E402
from streamseg.export import export_onnx  # noqa: E402
from streamseg.models import build  # noqa: E402
from streamseg.models.checkpoint import load_network, read_checkpoint  # noqa: E402
from streamseg.semi import _fake_terms, drop_fake_class, mixing_layers  # noqa: E402
from streamseg.train import TrainConfig, train  # noqa: E402

CLASSES = ["background", "square", "disc"]
H, W = 32, 48


def _write_dataset(root: Path, n: int, seed: int, masks: bool = True) -> Path:
    """n images with a bright square (class 1) and a dark disc (class 2) at random places."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    if masks:
        (root / "masks").mkdir()
        (root / "class_names.txt").write_text("\n".join(CLASSES) + "\n")
    for i in range(n):
        image = np.full((H, W, 3), 120, np.uint8)
        mask = np.zeros((H, W), np.uint8)
        y, x = rng.integers(2, 14, 2)
        image[y : y + 12, x : x + 12] = (230, 230, 230)
        mask[y : y + 12, x : x + 12] = 1
        cy, cx = int(rng.integers(8, 24)), int(rng.integers(30, 42))
        cv2.circle(image, (cx, cy), 6, (20, 20, 20), -1)
        cv2.circle(mask, (cx, cy), 6, 2, -1)
        cv2.imwrite(str(root / "images" / f"{i:03d}.png"), image)
        if masks:
            Image.fromarray(mask, mode="L").save(root / "masks" / f"{i:03d}.png")
    return root


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    return _write_dataset(tmp_path / "labelled", 2, 0), _write_dataset(tmp_path / "unlabelled", 3, 1, masks=False)


def _cfg(labelled: Path, out: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        network="segnet",
        data=[str(labelled)],
        out=out,
        epochs=2,  # 2 images, batch 2: one step per epoch
        batch_size=2,
        lr=1e-3,
        optimizer="adamw",
        size=(H, W),
        scale=(1.0, 1.0),
        options={"base_channels": 4},
        progress=False,
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


@pytest.mark.slow
def test_souly_trains_a_k_plus_1_discriminator_and_saves_the_k_class_network(
    data: tuple[Path, Path], tmp_path: Path
) -> None:
    labelled, unlabelled = data
    train(_cfg(labelled, tmp_path / "run", unlabeled=[str(unlabelled)], semi="souly"))
    state = read_checkpoint(tmp_path / "run" / "last.pt")
    assert state["epoch"] == 2 and state["meta"]["num_classes"] == 3
    assert state["train_model"]["classifier.weight"].shape[0] == 4  # background, square, disc, fake
    assert state["model"]["classifier.weight"].shape[0] == 3
    assert torch.equal(state["model"]["classifier.weight"], state["train_model"]["classifier.weight"][:3])
    assert "generator" in state["semi"]
    model, _ = load_network(tmp_path / "run" / "last.pt")
    assert model.eval()(torch.zeros(1, 3, H, W)).shape == (1, 3, H, W)
    report = export_onnx(tmp_path / "run" / "last.pt", tmp_path / "souly.onnx", argmax=False)
    assert report.max_abs_logit_diff < 1e-3
    import onnxruntime as ort

    out = ort.InferenceSession(str(tmp_path / "souly.onnx")).run(None, {"input": np.zeros((1, 3, H, W), np.float32)})
    assert out[0].shape == (1, 3, H, W)


@pytest.mark.slow
def test_hung_trains_the_network_and_a_label_map_discriminator(data: tuple[Path, Path], tmp_path: Path) -> None:
    labelled, unlabelled = data
    train(_cfg(labelled, tmp_path / "run", unlabeled=[str(unlabelled)], semi="hung"))
    state = read_checkpoint(tmp_path / "run" / "last.pt")
    assert state["semi"]["steps"] == 2 and "discriminator" in state["semi"]
    assert state["model"]["classifier.weight"].shape[0] == 3 and "train_model" not in state
    report = export_onnx(tmp_path / "run" / "last.pt", tmp_path / "hung.onnx")
    assert report.label_agreement >= 0.999


@pytest.mark.slow
def test_decouplednet_learns_from_image_level_labels(tmp_path: Path) -> None:
    labelled = _write_dataset(tmp_path / "labelled", 2, 0)
    image_labelled = _write_dataset(tmp_path / "image_labelled", 3, 1)
    cfg = _cfg(
        labelled,
        tmp_path / "run",
        network="decouplednet",
        size=(96, 128),
        options={"base_channels": 4, "fc_kernel": 3},
        image_labelled=[str(image_labelled)],
    )
    train(cfg)
    model, meta = load_network(tmp_path / "run" / "last.pt")
    assert meta.num_classes == 3 and "image-labelled" in meta.source
    assert model.eval()(torch.zeros(1, 3, 96, 128)).shape == (1, 3, 96, 128)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["souly", "hung"])
def test_resume_in_a_semi_supervised_mode_goes_on_as_an_unbroken_run(
    data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    import streamseg.train

    labelled, unlabelled = data
    semi: dict[str, object] = {"unlabeled": [str(unlabelled)], "semi": mode, "epochs": 3}
    train(_cfg(labelled, tmp_path / "unbroken", **semi))
    save = streamseg.train.save_checkpoint

    def save_then_die(*args: object, **state: object) -> None:
        save(*args, **state)  # type: ignore[arg-type]
        if state["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(streamseg.train, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(labelled, tmp_path / "broken", **semi))
    monkeypatch.undo()
    train(_cfg(labelled, tmp_path / "broken", resume=True, **semi))
    a = read_checkpoint(tmp_path / "unbroken" / "last.pt")
    b = read_checkpoint(tmp_path / "broken" / "last.pt")
    other = "generator" if mode == "souly" else "discriminator"
    parts = [(a["model"], b["model"]), (a["semi"][other], b["semi"][other])]
    if mode == "souly":
        parts.append((a["train_model"], b["train_model"]))
    for x, y in parts:
        for k in x:
            assert torch.equal(x[k], y[k]), k
    assert a["loss"] == b["loss"]


def test_hung_self_training_starts_after_semi_start_steps() -> None:
    from streamseg.contract import InputSpec
    from streamseg.semi import HungObjective, _Unlabelled

    spec = InputSpec(name="input", layout="NCHW", height=H, width=W, color="RGB", mean=(0, 0, 0), std=(1, 1, 1))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(2)]
    pool = _Unlabelled(images, 2, spec, (H, W), (1.0, 1.0), False, torch.device("cpu"))
    objective = HungObjective(pool, 3, torch.device("cpu"), semi_start=1)
    model = build("segnet", 3, base_channels=4)
    x, y = torch.randn(2, 3, H, W), torch.randint(0, 3, (2, H, W))
    objective.loss(model, x, y, rng)
    assert objective.last["semi"] == 0.0  # step 0: not yet
    objective.after_step(model)
    objective.loss(model, x, y, rng)
    assert objective.last["semi"] > 0  # step 1: an untrained discriminator is confident enough (> 0.2) everywhere


def test_generated_batches_leave_batch_norm_running_statistics_alone() -> None:
    from streamseg.semi import frozen_bn_statistics

    torch.manual_seed(0)
    model = build("segnet", 4, base_channels=4).train()
    bn = model.conv1_1.bn
    before = bn.running_mean.clone()
    with frozen_bn_statistics(model):
        model(torch.randn(2, 3, H, W) * 5 + 3)
    assert torch.equal(bn.running_mean, before) and bn.momentum == 0.1
    model(torch.randn(2, 3, H, W) * 5 + 3)
    assert not torch.equal(bn.running_mean, before)


def test_fake_terms() -> None:
    logits = torch.zeros(1, 4, 1, 2)
    logits[0, 3, 0, 0] = 20.0  # pixel 0: surely fake; pixel 1: p_fake = 1/4
    is_fake, not_fake = _fake_terms(logits)
    assert float(is_fake[0, 0, 0]) < 1e-6 and abs(float(not_fake[0, 0, 0]) - (20 - np.log(3))) < 1e-4
    assert abs(float(is_fake[0, 0, 1]) - np.log(4)) < 1e-6
    assert abs(float(not_fake[0, 0, 1]) - np.log(4 / 3)) < 1e-6


@pytest.mark.parametrize(("network", "options"), [("segnet", {"base_channels": 4}), ("enet", {})])
def test_dropping_the_fake_class_keeps_the_other_logits(network: str, options: dict[str, object]) -> None:
    torch.manual_seed(0)
    model = build(network, 4, **options).eval()
    plain = drop_fake_class(model, network, 3, options, (32, 48))
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        assert torch.allclose(plain(x), model(x)[:, :3], atol=1e-5)


def test_networks_that_mix_classes_are_refused_up_front(data: tuple[Path, Path], tmp_path: Path) -> None:
    assert mixing_layers("fcn8s", 3, {"base_channels": 4}) == ["upscore2.weight", "upscore_pool4.weight"]
    assert mixing_layers("fcn8s", 3, {"base_channels": 4, "fixed_upsampling": True}) == []
    labelled, unlabelled = data
    with pytest.raises(ConfigError, match="fixed_upsampling=True"):
        train(_cfg(labelled, tmp_path / "run", network="fcn8s", unlabeled=[str(unlabelled)], semi="souly"))
    assert not (tmp_path / "run").exists()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamseg", "train", *args], capture_output=True, text=True)


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (["--unlabeled", "{tmp}/missing", "--semi", "hung"], "--unlabeled {tmp}/missing: no such folder"),
        (["--unlabeled", "{tmp}/empty", "--semi", "hung"], "--unlabeled {tmp}/empty: no images"),
        (["--unlabeled", "{unlabelled}", "--semi", "goodfellow"], "invalid choice: 'goodfellow'"),
        (["--unlabeled", "{unlabelled}"], "--unlabeled needs --semi"),
        (["--semi", "souly"], "--semi souly needs --unlabeled DIR"),
        (["--image-labelled", "{labelled}"], "image-level labels train decouplednet only"),
    ],
)
def test_bad_flags_are_one_line_errors(data: tuple[Path, Path], tmp_path: Path, flags: list[str], error: str) -> None:
    labelled, unlabelled = data
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here\n")
    fill = {"tmp": str(tmp_path), "unlabelled": str(unlabelled), "labelled": str(labelled)}
    args = ["segnet", "--data", str(labelled), "--out", str(tmp_path / "run"), "--size", "32x48", "--epochs", "1"]
    r = _cli(*args, "--option", "base_channels=4", *(f.format(**fill) for f in flags))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and error.format(**fill) in lines[0], r.stderr
    assert not (tmp_path / "run").exists()


def test_decouplednet_refuses_unlabelled_images(data: tuple[Path, Path], tmp_path: Path) -> None:
    labelled, unlabelled = data
    r = _cli("decouplednet", "--data", str(labelled), "--out", str(tmp_path / "run"), "--unlabeled", str(unlabelled))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "give --image-labelled DIR" in r.stderr
