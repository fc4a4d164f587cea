"""The processing stage: the GPU stage (torch) equals the CPU stage (numpy/OpenCV) on the same
frames and the same real model output: class maps and area ratios exactly, overlays within 1.

Everything runs on torch's CPU device here (the math is the same kernels' math); the CUDA
parametrization is marked ``gpu`` and skips with the reason where there is no GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamseg.backends.onnxruntime import OnnxRuntimeBackend
from streamseg.config import TemporalConfig
from streamseg.contract import LoadedModel, load_model
from streamseg.errors import BackendError
from streamseg.frames import Frame
from streamseg.media import VideoInput
from streamseg.overlay import Scratch, make_palette
from streamseg.overlay import blend as cpu_blend
from streamseg.postprocess import to_class_maps
from streamseg.preprocess import preprocess_frames
from streamseg.stages import CpuStage, OverlaySpec, Processed
from streamseg.temporal import TemporalFilter

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'streamseg[torch]')")

from streamseg.backends.torch import TorchBackend  # noqa: E402
from streamseg.gpu import TorchStage, to_numpy  # noqa: E402

DEVICES = [
    pytest.param("cpu"),
    pytest.param(
        "cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]
    ),
]


@pytest.fixture(scope="module")
def people(bikes: Path) -> list[np.ndarray]:
    """Frames 32-35 of the sample clip: cyclists the bundled model finds (a quarter of each frame)."""
    video = VideoInput(str(bikes))
    images = []
    try:
        for image, _ in video.frames():
            images.append(image)
            if len(images) == 36:
                break
    finally:
        video.close()
    return images[32:]


def frames_of(images: list[np.ndarray], stream: str = "s", start: int = 0) -> tuple[Frame, ...]:
    return tuple(Frame(stream, start + i, i / 25, float(i), 0.0, img) for i, img in enumerate(images))


def assert_same(cpu: list[Processed], dev: list[Processed], frames: tuple[Frame, ...], spec: OverlaySpec) -> None:
    assert len(cpu) == len(dev) == len(frames)
    for c, d, f in zip(cpu, dev, frames, strict=True):
        assert np.array_equal(c.class_map, d.class_map)
        assert d.area_ratio.dtype == np.float64 and np.array_equal(c.area_ratio, d.area_ratio)
        assert c.overlay is None  # the CPU stage leaves the overlay to the stream's worker
        want = cpu_blend(f.image.copy(), c.class_map, spec.palette, spec.alpha, Scratch())
        assert d.overlay is not None and d.overlay.shape == f.image.shape
        assert np.abs(d.overlay.astype(int) - want.astype(int)).max() <= 1


@pytest.mark.parametrize("device", DEVICES)
def test_the_torch_stage_equals_the_cpu_stage_on_the_bundled_model(device: str, people: list[np.ndarray]) -> None:
    """Two streams of different sizes in one batch; the model's real output, postprocessed both ways."""
    model = load_model("selfie_landscape")
    c = model.contract
    palette = make_palette(c.class_names, [k.color for k in c.classes])
    spec = OverlaySpec(palette, 0.5, blend=True)
    big = [cv2.resize(img, (1280, 720), interpolation=cv2.INTER_LINEAR) for img in people[2:]]
    frames = frames_of(people[:2], "a") + frames_of(big, "b")
    cpu, dev = CpuStage(c), TorchStage(device, c, spec)
    x_cpu, x_dev = cpu.preprocess(frames), dev.preprocess(frames)
    assert x_dev.device.type == device and tuple(x_dev.shape) == x_cpu.shape
    # OpenCV resizes uint8 in fixed point, torch in float: at most about one grey level apart
    assert np.abs(to_numpy(x_dev) - x_cpu).max() <= 1.01 / 255
    with OnnxRuntimeBackend(model, "cpu", 0, 4) as ort:
        output = ort.infer(x_cpu)
        on_device = ort.infer(np.ascontiguousarray(to_numpy(x_dev)))
    got_cpu = cpu.postprocess(frames, output)
    assert all(p.area_ratio[1] > 0.1 for p in got_cpu)  # the cyclists are found: the overlay is not empty
    assert_same(got_cpu, dev.postprocess(frames, torch.from_numpy(output).to(device)), frames, spec)
    # the whole GPU path (its own preprocessing) labels nearly every pixel as the CPU path does
    agreement = (to_class_maps(on_device, c) == to_class_maps(output, c)).mean()
    assert agreement >= 0.995, agreement


def test_postprocess_of_other_frames_uploads_them_again(people: list[np.ndarray]) -> None:
    """The kept uploads belong to the batch last preprocessed; other frames are not blended with them."""
    model = load_model("selfie_landscape")
    c = model.contract
    spec = OverlaySpec(make_palette(c.class_names, [k.color for k in c.classes]), 0.4, blend=True)
    first, second = frames_of(people[:2], "a"), frames_of(people[2:], "b")
    cpu, dev = CpuStage(c), TorchStage("cpu", c, spec)
    dev.preprocess(first)
    with OnnxRuntimeBackend(model, "cpu", 0, 2) as ort:
        output = ort.infer(cpu.preprocess(second))
    assert_same(cpu.postprocess(second, output), dev.postprocess(second, torch.from_numpy(output)), second, spec)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_torch_backend_output_stays_a_device_tensor_and_equals_the_cpu_path(
    device: str, layout: str, make_model: Callable[..., LoadedModel]
) -> None:
    """The torch backend behind both stages: a tensor in gives a tensor out (no side channel);
    frames at the model's size make preprocessing exact, so everything downstream is equal."""
    model = make_model({"kind": "class_map", "layout": layout})
    c = model.contract
    spec = OverlaySpec(make_palette(c.class_names, [k.color for k in c.classes]), 0.5, blend=True)
    rng = np.random.default_rng(3)
    frames = frames_of([rng.integers(0, 256, (8, 12, 3), dtype=np.uint8) for _ in range(3)])
    with TorchBackend(model, device, 0, 4) as backend:
        dev = TorchStage(device, c, spec)
        x = dev.preprocess(frames)
        out = backend.infer(x)
        assert isinstance(out, torch.Tensor) and out.device.type == device and out.dtype == torch.uint8
        got = dev.postprocess(frames, out)
    with TorchBackend(model, "cpu", 0, 4) as backend:
        cpu = backend.stage(spec)
        assert isinstance(cpu, CpuStage)  # torch on the CPU keeps numpy pre/post-processing
        x_cpu = cpu.preprocess(frames)
        out_cpu = backend.infer(x_cpu)
        assert isinstance(out_cpu, np.ndarray)
        want = cpu.postprocess(frames, out_cpu)
    assert np.array_equal(to_numpy(x), x_cpu)
    assert len({p.class_map.tobytes() for p in want}) == 3 and all(np.count_nonzero(p.area_ratio) > 1 for p in want)
    assert_same(want, got, frames, spec)


@pytest.mark.parametrize("device", DEVICES)
def test_i420_frames_on_the_torch_stage_equal_their_bgr_on_the_cpu_stage(
    device: str, make_model: Callable[..., LoadedModel]
) -> None:
    """Decoded I420 goes up as it is and becomes BGR on the device, as cv2.cvtColor makes it (frames
    at the model's size: no resize, so the CPU stage's results are equal, not just close)."""
    model = make_model({"kind": "class_map", "height": 16, "width": 24})
    c = model.contract
    spec = OverlaySpec(make_palette(c.class_names, [k.color for k in c.classes]), 0.5, blend=True)
    rng = np.random.default_rng(5)
    bgr = [cv2.resize(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8), (24, 16)) for _ in range(2)]
    planes = [cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420) for img in bgr]
    i420 = tuple(Frame("y", i, 0.0, 0.0, 0.0, p, "yuv420p") for i, p in enumerate(planes))
    as_bgr = frames_of([cv2.cvtColor(p, cv2.COLOR_YUV2BGR_I420) for p in planes], "y")
    with TorchBackend(model, device, 0, 4) as backend:
        dev = TorchStage(device, c, spec)
        got = dev.postprocess(i420, backend.infer(dev.preprocess(i420)))
        want_dev = dev.postprocess(as_bgr, backend.infer(dev.preprocess(as_bgr)))
    cpu = CpuStage(c)
    with TorchBackend(model, "cpu", 0, 4) as backend:
        want = cpu.postprocess(as_bgr, backend.infer(cpu.preprocess(as_bgr)))
    for g, w in zip(got, want_dev, strict=True):  # the device's conversion is OpenCV's: identical results
        assert np.array_equal(g.class_map, w.class_map) and np.array_equal(g.overlay, w.overlay)
    assert_same(want, got, as_bgr, spec)
    mixed = (i420[0], as_bgr[1])  # a file's I420 beside a camera's BGR in one batch
    assert np.array_equal(to_numpy(dev.preprocess(mixed)), to_numpy(dev.preprocess(as_bgr)))
    # the CPU stage takes I420 through preprocess_frames (planes resized, then converted: chroma is
    # interpolated, not repeated as OpenCV's full-size conversion does, so it is close, not equal)
    assert np.array_equal(cpu.preprocess(i420), preprocess_frames(i420, c.input))


@pytest.mark.parametrize("device", DEVICES)
def test_smoothing_happens_on_the_cpu_for_both_stages(device: str, make_model: Callable[..., LoadedModel]) -> None:
    """With temporal smoothing the maps and ratios are the smoothed ones on either stage, and the
    overlay is left to the worker (drawn from the smoothed map)."""
    model = make_model({"kind": "class_map"})
    c = model.contract
    cfg = TemporalConfig(mode="majority", k=3)
    spec = OverlaySpec(make_palette(c.class_names, [k.color for k in c.classes]), 0.5, blend=True)
    cpu, dev = CpuStage(c, TemporalFilter(cfg, c)), TorchStage(device, c, spec, TemporalFilter(cfg, c))
    rng = np.random.default_rng(9)
    image = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
    steady = rng.integers(0, 3, (1, 8, 12)).astype(np.uint8)
    smoothed_any = False
    for i in range(5):
        frames = (Frame("s", i, i / 25, i / 25, 0.0, image),)
        labels = steady.copy()
        if i == 3:  # a one-frame flicker: majority voting removes it
            labels = (labels + 1) % 3
        want = cpu.postprocess(frames, labels)
        got = dev.postprocess(frames, torch.from_numpy(labels).to(device))
        assert np.array_equal(want[0].class_map, got[0].class_map)
        assert np.array_equal(want[0].area_ratio, got[0].area_ratio)
        assert got[0].overlay is None
        smoothed_any |= not np.array_equal(want[0].class_map, labels[0])
    assert smoothed_any


def nv12_of(i420: np.ndarray) -> np.ndarray:
    """NVDEC's layout of the same planes: luma, then U and V interleaved."""
    h, w = i420.shape[0] * 2 // 3, i420.shape[1]
    u, v = i420[h:].reshape(2, h // 2, w // 2)
    return np.concatenate([i420[:h], np.stack([u, v], axis=-1).reshape(h // 2, w)])


def device_frames_of(planes: list[np.ndarray], device: str, stream: str = "s") -> tuple[Frame, ...]:
    """Frames as the NVDEC source makes them: NV12 tensors on ``device`` (pixel format nv12_device)."""
    return tuple(
        Frame(stream, i, i / 25, float(i), 0.0, torch.from_numpy(nv12_of(p)).to(device), "nv12_device")
        for i, p in enumerate(planes)
    )


def i420_frames_of(planes: list[np.ndarray], stream: str = "s") -> tuple[Frame, ...]:
    return tuple(Frame(stream, i, i / 25, float(i), 0.0, p, "yuv420p") for i, p in enumerate(planes))


@pytest.mark.parametrize("device", DEVICES)
def test_nv12_device_frames_on_the_torch_stage_equal_the_same_pictures_as_i420(
    device: str, people: list[np.ndarray]
) -> None:
    """NVDEC frames (NV12 tensors, here on torch's CPU device) beside host I420 and BGR frames in one
    batch: the same input tensor, class maps, ratios and overlays as the host I420 frames of the same
    pictures, and never a copy to the host; the CPU stage on those I420 frames within its known
    tolerance (its chroma is resampled from the planes, not repeated)."""
    model = load_model("selfie_landscape")
    c = model.contract
    spec = OverlaySpec(make_palette(c.class_names, [k.color for k in c.classes]), 0.5, blend=True)
    planes = [cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420) for img in people[:3]]
    big = cv2.cvtColor(cv2.resize(people[3], (1280, 720), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2YUV_I420)
    on_device = (*device_frames_of(planes[:2], device, "a"), *device_frames_of([big], device, "b"))
    host = (*i420_frames_of(planes[:2], "a"), *i420_frames_of([big], "b"))
    camera = Frame("c", 0, 0.0, 0.0, 0.0, people[2])  # a BGR camera in the same batch
    mixed = (on_device[0], host[1], camera, on_device[2])
    mixed_host = (host[0], host[1], camera, host[2])
    dev = TorchStage(device, c, spec)
    x_dev = dev.preprocess(on_device)
    assert x_dev.device.type == device and torch.equal(x_dev, dev.preprocess(host))
    x = dev.preprocess(mixed)
    assert torch.equal(x, dev.preprocess(mixed_host))
    with OnnxRuntimeBackend(model, "cpu", 0, 4) as ort:
        output = ort.infer(np.ascontiguousarray(to_numpy(x)))
    dev.preprocess(mixed)  # the uploads the blend reads are the batch's own
    got = dev.postprocess(mixed, torch.from_numpy(output).to(device))
    want = TorchStage(device, c, spec).postprocess(mixed_host, torch.from_numpy(output).to(device))
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g.class_map, w.class_map) and np.array_equal(g.area_ratio, w.area_ratio)
        assert g.overlay is not None and np.array_equal(g.overlay, w.overlay)
    assert all(f._host is None for f in on_device)  # no frame went through host memory
    cpu = CpuStage(c)
    with OnnxRuntimeBackend(model, "cpu", 0, 4) as ort:
        on_cpu = cpu.postprocess(mixed_host, ort.infer(cpu.preprocess(mixed_host)))
    assert all(p.area_ratio[1] > 0.1 for p in on_cpu)  # the cyclists are found
    for g, w in zip(got, on_cpu, strict=True):
        assert (g.class_map == w.class_map).mean() >= 0.995
        assert np.abs(g.area_ratio - w.area_ratio).max() <= 0.005


def test_the_cpu_stage_downloads_device_frames_and_says_so_once(
    people: list[np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    """Correct but slow: the input equals the I420 frames' exactly; one warning for the whole run."""
    c = load_model("selfie_landscape").contract
    planes = [cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420) for img in people]
    cpu = CpuStage(c)
    with caplog.at_level(logging.WARNING, logger="streamseg.stages"):
        for i in range(2):
            frames = device_frames_of(planes, "cpu", f"s{i}")
            assert np.array_equal(cpu.preprocess(frames), cpu.preprocess(i420_frames_of(planes)))
            assert all(f._host is not None for f in frames)  # downloaded once, kept for the outputs
    assert caplog.messages == [
        "the CPU stage downloads each GPU-decoded frame (stream s0): correct but slow; "
        "NVDEC pays off with a stage on the GPU"
    ]
    assert not CpuStage(c).takes_device_frames and TorchStage("cpu", c).takes_device_frames


def test_a_numpy_backend_refuses_device_tensors(make_model: Callable[..., LoadedModel]) -> None:
    model = make_model()
    with OnnxRuntimeBackend(model, "cpu", 0, 2) as ort:
        assert isinstance(ort.stage(), CpuStage)
        with pytest.raises(BackendError, match="onnxruntime: takes numpy batches only, got Tensor"):
            ort.infer(torch.zeros((1, 3, 8, 12)))


def test_an_out_of_range_class_index_is_refused_on_the_torch_stage(make_model: Callable[..., LoadedModel]) -> None:
    """A class index the model does not have would count in the next frame's bins of the batched histogram."""
    model = make_model({"kind": "class_map"})
    frames = frames_of([np.zeros((8, 12, 3), np.uint8)] * 2)
    labels = torch.zeros((2, 8, 12), dtype=torch.uint8)
    labels[0, 0, 0] = 3
    with pytest.raises(BackendError, match="produced class index 3 but has 3 classes"):
        TorchStage("cpu", model.contract).postprocess(frames, labels)


@pytest.mark.parametrize(
    ("class_map", "ratios", "overlay", "error"),
    [
        (np.zeros((4, 5), np.int64), np.zeros(2), None, r"uint8 \(h, w\) class map, got int64"),
        (np.zeros((1, 4, 5), np.uint8), np.zeros(2), None, r"class map, got uint8 \(1, 4, 5\)"),
        (np.zeros((5, 4), np.uint8).T, np.zeros(2), None, "C-contiguous"),
        (np.zeros((4, 5), np.uint8), np.zeros(2, np.float32), None, "float64 .* got float32"),
        (np.zeros((4, 5), np.uint8), np.zeros(2), np.zeros((4, 5), np.uint8), r"BGR overlay, got uint8 \(4, 5\)"),
    ],
)
def test_processed_checks_what_it_holds(
    class_map: np.ndarray, ratios: np.ndarray, overlay: np.ndarray | None, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        Processed(class_map, ratios, overlay)
