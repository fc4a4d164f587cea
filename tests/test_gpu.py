"""GPU pre/post-processing equals the CPU functions: labels exactly, overlay pixels within 1.

The same tests run on every torch device present: always the CPU (proving the math), and CUDA
where a GPU is there (marked ``gpu``; skipped with the reason elsewhere)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'streamseg[torch]')")

from streamseg import gpu  # noqa: E402
from streamseg.contract import InputSpec, ModelContract  # noqa: E402
from streamseg.frames import Frame  # noqa: E402
from streamseg.overlay import Scratch, make_palette  # noqa: E402
from streamseg.overlay import blend as cpu_blend  # noqa: E402
from streamseg.postprocess import area_ratios as cpu_area_ratios  # noqa: E402
from streamseg.postprocess import resize_labels as cpu_resize_labels  # noqa: E402
from streamseg.preprocess import preprocess as cpu_preprocess  # noqa: E402
from streamseg.stages import OverlaySpec  # noqa: E402

DEVICES = [
    pytest.param("cpu"),
    pytest.param(
        "cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]
    ),
]


def _frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
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
@pytest.mark.parametrize(("h", "w"), [(1080, 1920), (272, 640), (4, 2)])
def test_i420_to_bgr_is_opencvs(device: str, h: int, w: int) -> None:
    """Every (Y, U, V) combination OpenCV's fixed-point BT.601 can meet, byte for byte."""
    planes = np.random.default_rng(h).integers(0, 256, (h * 3 // 2, w), dtype=np.uint8)
    planes[0, :2] = (0, 255)  # the extremes of luma, where the clamps act
    got = gpu.to_numpy(gpu.i420_to_bgr(torch.from_numpy(planes).to(device)))
    assert got.dtype == np.uint8 and np.array_equal(got, cv2.cvtColor(planes, cv2.COLOR_YUV2BGR_I420))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("h", "w"), [(1080, 1920), (270, 482), (4, 2)])
def test_nv12_to_bgr_is_opencvs_and_equals_the_i420_conversion(device: str, h: int, w: int) -> None:
    """NVDEC's NV12 gives the BGR OpenCV gives, byte for byte, and the same as the I420 of the same
    planes does (so a hardware-decoded frame feeds the model what a software-decoded one does).
    270 rows: an odd number of chroma rows."""
    i420 = np.random.default_rng(h).integers(0, 256, (h * 3 // 2, w), dtype=np.uint8)
    i420[0, :2] = (0, 255)
    u, v = i420[h:].reshape(2, h // 2, w // 2)
    nv12 = np.concatenate([i420[:h], np.stack([u, v], axis=-1).reshape(h // 2, w)])
    got = gpu.to_numpy(gpu.nv12_to_bgr(torch.from_numpy(nv12).to(device)))
    assert got.dtype == np.uint8 and np.array_equal(got, cv2.cvtColor(nv12, cv2.COLOR_YUV2BGR_NV12))
    assert np.array_equal(got, gpu.to_numpy(gpu.i420_to_bgr(torch.from_numpy(i420).to(device))))


@pytest.mark.parametrize("device", DEVICES)
def test_batch_counts_keep_each_frame_in_its_own_bins(device: str) -> None:
    labels = np.random.default_rng(2).integers(0, 5, (3, 36, 64), dtype=np.uint8)
    labels[1] = 4  # one frame of a single class: its counts must not leak into the others
    got = gpu.to_numpy(gpu.batch_counts(torch.from_numpy(labels).to(device), 5))
    assert np.array_equal(got, np.stack([np.bincount(m.ravel(), minlength=5) for m in labels]))


@pytest.mark.parametrize("device", DEVICES)
def test_torch_stage_batch_of_mixed_sizes(device: str) -> None:
    """The pipeline's device path: frames of two sizes up, class maps, ratios and overlays down."""
    palette = make_palette(["background", "person"], [(0, 0, 0), (255, 56, 56)])
    contract = ModelContract.model_validate(
        {
            "name": "m",
            "onnx": "m.onnx",  # never opened: the stage reads the contract only
            "input": {"name": "input", "layout": "NHWC", "height": 144, "width": 256, "std": [255.0] * 3},
            "output": {"name": "out", "kind": "class_map"},
            "classes": [{"name": "background", "color": [0, 0, 0]}, {"name": "person", "color": [255, 56, 56]}],
        }
    )
    images = [_frame(272, 640, 5), _frame(720, 1280, 6)]
    frames = tuple(Frame("s", i, 0.0, 0.0, 0.0, img) for i, img in enumerate(images))
    stage = gpu.TorchStage(torch.device(device), contract, OverlaySpec(palette, 0.5, blend=True))
    x = stage.preprocess(frames)
    assert np.abs(gpu.to_numpy(x) - cpu_preprocess(images, contract.input)).max() <= 1.01 / 255
    labels = (x[..., 0] > 0.5).to(torch.uint8)  # any class map on the device will do
    done = stage.postprocess(frames, labels)
    for image, cmap, p in zip(images, gpu.to_numpy(labels), done, strict=True):
        assert np.array_equal(p.class_map, cmap)
        assert np.array_equal(p.area_ratio, cpu_area_ratios(cmap, 2))
        want = cpu_blend(image.copy(), cmap, palette, 0.5, Scratch())
        assert p.overlay is not None and np.abs(p.overlay.astype(int) - want.astype(int)).max() <= 1
