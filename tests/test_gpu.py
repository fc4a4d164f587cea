"""GPU pre/post-processing equals the CPU functions: labels exactly, overlay pixels within 1.

The same tests run on every torch device present: always the CPU (proving the math), and CUDA
where a GPU is there (marked ``gpu``; skipped with the reason elsewhere)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'streamseg[torch]')")

from streamseg import gpu  # noqa: E402
from streamseg.contract import InputSpec  # noqa: E402
from streamseg.overlay import Scratch, make_palette  # noqa: E402
from streamseg.overlay import blend as cpu_blend  # noqa: E402
from streamseg.postprocess import area_ratios as cpu_area_ratios  # noqa: E402
from streamseg.postprocess import resize_labels as cpu_resize_labels  # noqa: E402
from streamseg.preprocess import preprocess as cpu_preprocess  # noqa: E402

DEVICES = [
    pytest.param("cpu"),
    pytest.param(
        "cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]
    ),
]


def _frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    import cv2

    return cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)  # smooth, like a picture


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("src", "dst"),
    [((144, 256), (1080, 1920)), ((144, 256), (272, 640)), ((37, 51), (1000, 333)), ((60, 60), (60, 60))],
)
def test_resize_labels_exact(device: str, src: tuple[int, int], dst: tuple[int, int]) -> None:
    labels = np.random.default_rng(1).integers(0, 21, src, dtype=np.uint8)
    got = gpu.to_numpy(gpu.resize_labels(torch.from_numpy(labels).to(device), *dst))
    assert np.array_equal(got, cpu_resize_labels(labels, dst[1], dst[0]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("color", ["RGB", "BGR"])
def test_preprocess_matches_cpu(device: str, layout: str, color: str) -> None:
    spec = InputSpec(
        name="input",
        layout=layout,
        height=144,
        width=256,
        color=color,  # type: ignore[arg-type]
        mean=(123.7, 116.3, 103.5),
        std=(58.4, 57.1, 57.4),
    )
    frames = [_frame(1080, 1920, 0), _frame(1080, 1920, 1)]
    want = cpu_preprocess(frames, spec)
    got = gpu.to_numpy(gpu.preprocess(torch.from_numpy(np.stack(frames)).to(device), spec))
    assert got.shape == want.shape and got.dtype == np.float32
    # OpenCV resizes uint8 in fixed point, torch in float: at most about one grey level apart
    assert np.abs(got - want).max() <= 1.01 / min(spec.std)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("classes", [2, 21])
def test_area_ratios_exact(device: str, classes: int) -> None:
    labels = np.random.default_rng(classes).integers(0, classes, (144, 256), dtype=np.uint8)
    got = gpu.to_numpy(gpu.area_ratios(torch.from_numpy(labels).to(device), classes))
    assert np.array_equal(got, cpu_area_ratios(labels, classes))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("classes", [2, 21])
def test_blend_within_one(device: str, classes: int) -> None:
    names = ["background"] + [f"c{i}" for i in range(1, classes)]
    colors = [(0, 0, 0)] + [((37 * i) % 256, (91 * i) % 256, (151 * i) % 256) for i in range(1, classes)]
    palette = make_palette(names, colors)
    frame = _frame(1080, 1920, 3)
    labels = np.random.default_rng(4).integers(0, classes, (144, 256), dtype=np.uint8)
    want = cpu_blend(frame.copy(), labels, palette, 0.5, Scratch())
    got = gpu.to_numpy(gpu.blend(torch.from_numpy(frame).to(device), torch.from_numpy(labels).to(device), palette, 0.5))
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1
    background = cpu_resize_labels(labels, 1920, 1080) == 0
    assert np.array_equal(got[background], frame[background])  # see-through class untouched, exactly


@pytest.mark.parametrize("device", DEVICES)
def test_device_frames_batch_of_mixed_sizes(device: str) -> None:
    """The pipeline's device path: frames of two sizes up, ratios and overlays down."""
    palette = make_palette(["background", "person"], [(0, 0, 0), (255, 56, 56)])
    spec = InputSpec(name="input", layout="NHWC", height=144, width=256, color="RGB", std=(255.0, 255.0, 255.0))
    images = [_frame(272, 640, 5), _frame(720, 1280, 6)]
    path = gpu.DeviceFrames(torch.device(device), spec, palette, 0.5, blend_overlay=True)
    x = path.preprocess(images)
    assert np.abs(gpu.to_numpy(x) - cpu_preprocess(images, spec)).max() <= 1.01 / 255
    labels = (x[..., 0] > 0.5).to(torch.uint8)  # any class map on the device will do
    done = path.finish(labels, 2)
    for image, cmap, (ratios, overlay) in zip(images, gpu.to_numpy(labels), done, strict=True):
        assert np.array_equal(ratios, cpu_area_ratios(cmap, 2))
        want = cpu_blend(image.copy(), cmap, palette, 0.5, Scratch())
        assert overlay is not None and np.abs(overlay.astype(int) - want.astype(int)).max() <= 1
