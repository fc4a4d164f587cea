"""streamseg/backends/tensorrt/ on CPU: the driver check, and the backend's orchestration of
TensorRT and pycuda proven against the strict fake in tests/support/fake_tensorrt.py.

The fake computes with ONNX Runtime on the bytes the backend left in fake device memory, so equal
outputs mean the right bytes went to the right addresses with the right shapes, dtypes and streams.
What this cannot prove (kernels, precision, real timings) is the GPU validation's job.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from streamseg.backends.onnxruntime import OnnxRuntimeBackend
from streamseg.backends.tensorrt import (
    CalibrationBatches,
    CalibrationConfig,
    TensorRTBackend,
    TensorRTConfig,
    build_engine,
)
from streamseg.backends.tensorrt import build as build_module
from streamseg.cli import main
from streamseg.contract import LoadedModel, expected_input_shape, load_model, sha256_file
from streamseg.engines import EngineKey, cached_key, sidecar_path
from streamseg.errors import BackendError, ModelError
from streamseg.hardware import cuda_driver
from streamseg.postprocess import to_class_maps
from tests.support import fake_tensorrt
from tests.support.fake_tensorrt import FakeGPU

# TensorRT >= 10.1 deprecates implicit-quantization INT8 (calibrators); the fake warns as it does.
pytestmark = pytest.mark.filterwarnings("ignore:Deprecated in TensorRT 10.1:DeprecationWarning")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGPU]:
    """The fake TensorRT and pycuda on a fake GPU, with the backend's driver check saying 'present'."""
    fake = fake_tensorrt.install(monkeypatch)
    monkeypatch.setattr(build_module, "cuda_driver", lambda: "12.6")
    yield fake
    assert fake.context_depth() == 0, "CUDA contexts pushed and never popped"
    assert fake.pending() == [], "stream work enqueued and never synchronized"
    assert fake.swallowed == [], "exceptions TensorRT's trampolines would have swallowed"


@pytest.fixture
def no_driver(monkeypatch: pytest.MonkeyPatch) -> FakeGPU:
    """The fakes installed on this host as it is: no CUDA driver, and the backend's real driver check."""
    if cuda_driver() is not None:
        pytest.skip("this host has a CUDA driver; the driverless path is shown on hosts without one")
    return fake_tensorrt.install(monkeypatch, driver=False)


@pytest.fixture
def model(make_model: Callable[..., LoadedModel]) -> LoadedModel:
    """The tiny NCHW 1x1-conv model of tests/conftest.py: input (N,3,8,12) -> logits (N,3,8,12)."""
    return make_model()


def settings(tmp_path: Path, **kwargs: Any) -> TensorRTConfig:
    return TensorRTConfig(cache_dir=str(tmp_path / "engines"), **kwargs)


def frames(model: LoadedModel, n: int, seed: int = 0) -> np.ndarray:
    shape = expected_input_shape(model.contract, n)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)  # type: ignore[arg-type]


def reweigh(model: LoadedModel) -> None:
    """Change the ONNX file's bytes (negated weights) without touching its contract."""
    assert model.onnx_path is not None
    proto = onnx.load(str(model.onnx_path))
    (w,) = [t for t in proto.graph.initializer if t.name == "w"]
    w.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(w), "w"))
    onnx.save(proto, str(model.onnx_path))


def calibration_folder(path: Path, n: int) -> Path:
    path.mkdir()
    rng = np.random.default_rng(7)
    for i in range(n):
        assert cv2.imwrite(str(path / f"{i:03d}.png"), rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    return path


def messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == logger]


# --- the driver check ----------------------------------------------------------------------------------


def test_unavailable_on_this_host() -> None:
    assert TensorRTBackend.unavailable_reason("auto") is not None
    assert TensorRTBackend.unavailable_reason("cpu") == "TensorRT runs on NVIDIA GPUs only (model.device is cpu)"


def test_without_a_driver_nothing_tensorrt_is_touched(no_driver: FakeGPU, model: LoadedModel, tmp_path: Path) -> None:
    """tensorrt and pycuda importable, no driver: refused before the call that would kill the process."""
    assert (
        TensorRTBackend.unavailable_reason("cuda") == "no CUDA driver (libcuda.so.1 not found): not touching TensorRT"
    )
    with (
        pytest.raises(BackendError, match=r"^tensorrt: no CUDA driver"),
        TensorRTBackend(model, "cuda", 0, 2, settings(tmp_path)),
    ):
        pass
    key = EngineKey("0" * 64, "10", "gpu", "8.9", "fp16", 1, 2, 2)
    assert model.onnx_path is not None
    with pytest.raises(BackendError, match="cannot build a TensorRT engine: no CUDA driver"):
        build_engine(model.onnx_path, "input", (3, 8, 12), key, settings(tmp_path))
    assert no_driver.count("Runtime.deserialize_cuda_engine") == 0
    assert no_driver.calls == []  # not even a Builder, a Runtime or pycuda.init
    assert not (tmp_path / "engines").exists()


def test_build_engine_command_without_a_driver_is_a_one_line_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streamseg", "build-engine", "selfie_landscape", "--cache-dir", str(tmp_path / "e")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("streamseg: error: build-engine: "), done.stderr
    assert done.stdout == ""
    assert not (tmp_path / "e").exists()


# --- build, load, infer --------------------------------------------------------------------------------


def test_build_then_infer_matches_onnx_runtime(
    gpu: FakeGPU, model: LoadedModel, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="streamseg")
    engines = tmp_path / "engines"
    with TensorRTBackend(model, "cuda", 0, 4, settings(tmp_path)) as trt, OnnxRuntimeBackend(model, "cpu", 0, 4) as ort:
        assert isinstance(trt, TensorRTBackend) and trt.built
        assert trt.engine_path == engines / "tiny-fp16.engine" and trt.engine_path.is_file()
        assert model.onnx_path is not None
        assert cached_key(trt.engine_path) == EngineKey(
            onnx_sha256=sha256_file(model.onnx_path),
            tensorrt_version=fake_tensorrt.VERSION,
            gpu_name=gpu.name,
            compute_capability="8.9",
            precision="fp16",
            min_batch=1,
            opt_batch=4,
            max_batch=4,
            dla_core=None,
        )
        assert (engines / "timing.cache").read_bytes().startswith(fake_tensorrt.TIMING_MAGIC)
        (built,) = gpu.engines_built
        assert built["flags"] == ["FP16"] and built["device_type"] == "GPU" and built["calibration"] is None
        assert built["profiles"] == [{"input": [[1, 3, 8, 12], [4, 3, 8, 12], [4, 3, 8, 12]]}]
        assert built["workspace"] == 1024 << 20
        for n in (1, 3, 4):
            x = frames(model, n, seed=n)
            start = len(gpu.executions)
            out = trt.infer(x)
            expected = ort.infer(x)
            assert out.dtype == np.float32 and out.shape == (n, 3, 8, 12)
            np.testing.assert_array_equal(out, expected)
            np.testing.assert_array_equal(to_class_maps(out, model.contract), to_class_maps(expected, model.contract))
            runs = gpu.executions[start:]
            assert [shapes["input"] for _, shapes in runs] == (
                [(1, 3, 8, 12)] if n == 1 else [(n // 2, 3, 8, 12), (n - n // 2, 3, 8, 12)]
            )
            assert len({stream for stream, _ in runs}) == len(runs)  # halves on two streams
    assert gpu.count("Builder.build_serialized_network") == 1
    assert gpu.count("Runtime.deserialize_cuda_engine") == 1
    backend_log = [m for _, m in messages(caplog, "streamseg.backends.tensorrt")]
    assert "build: Building engine (3 steps)" in backend_log  # TensorRT's progress monitor
    assert gpu.count("IProgressMonitor.step_complete") == 3
    assert any(m.startswith("engine ") and "pixel agreement 1.0000" in m for m in backend_log)  # the gate ran
    trt_log = messages(caplog, "streamseg.tensorrt")  # TensorRT's ILogger, routed into Python logging
    assert (logging.INFO, "ONNX IR version 8, opset 13") in trt_log
    assert (logging.DEBUG, "parsed 2 nodes") in trt_log  # VERBOSE
    assert (logging.INFO, f"built a fake engine: FP16 on {gpu.name}") in trt_log


def test_fp32_and_int64_class_maps(gpu: FakeGPU, make_model: Callable[..., LoadedModel], tmp_path: Path) -> None:
    """No precision flag for fp32, and an integer output comes back as the engine's dtype."""
    model = make_model({"kind": "class_map"})
    with (
        TensorRTBackend(model, "cuda", 0, 2, settings(tmp_path, precision="fp32")) as trt,
        OnnxRuntimeBackend(model, "cpu", 0, 2) as ort,
    ):
        x = frames(model, 2)
        out = trt.infer(x)
        assert out.dtype == np.int64 and out.shape == (2, 8, 12)
        np.testing.assert_array_equal(out, ort.infer(x))
    assert gpu.engines_built[-1]["flags"] == []


def test_batch_beyond_the_profile_is_refused(gpu: FakeGPU, model: LoadedModel, tmp_path: Path) -> None:
    with TensorRTBackend(model, "cuda", 0, 4, settings(tmp_path)) as trt:
        assert isinstance(trt, TensorRTBackend)
        shapes_set = gpu.count("IExecutionContext.set_input_shape")
        with pytest.raises(BackendError, match="batch of 5 exceeds max_batch 4"):
            trt.infer(frames(model, 5))
        with pytest.raises(BackendError, match=r"batch 5 is outside the engine's profile 1\.\.4"):
            trt._infer(frames(model, 5))
        assert gpu.count("IExecutionContext.set_input_shape") == shapes_set  # TensorRT never saw it


def test_second_load_reuses_the_engine(gpu: FakeGPU, model: LoadedModel, tmp_path: Path) -> None:
    with TensorRTBackend(model, "cuda", 0, 4, settings(tmp_path)):
        pass
    with (
        TensorRTBackend(model, "cuda", 0, 4, settings(tmp_path)) as again,
        OnnxRuntimeBackend(model, "cpu", 0, 4) as ort,
    ):
        assert isinstance(again, TensorRTBackend) and not again.built
        x = frames(model, 4)
        np.testing.assert_array_equal(again.infer(x), ort.infer(x))
    assert gpu.count("Builder.build_serialized_network") == 1
    assert gpu.count("Runtime.deserialize_cuda_engine") == 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ("onnx", "onnx_sha256"),
        ("gpu", "gpu_name"),
        ("compute capability", "compute_capability"),
        ("max batch", "max_batch"),
        ("opt batch", "opt_batch"),
    ],
)
def test_changed_key_rebuilds_and_says_why(
    gpu: FakeGPU, model: LoadedModel, tmp_path: Path, caplog: pytest.LogCaptureFixture, change: str, field: str
) -> None:
    with TensorRTBackend(model, "cuda", 0, 4, settings(tmp_path)):
        pass
    max_batch, opt_batch = 4, None
    if change == "onnx":
        reweigh(model)
    elif change == "gpu":
        gpu.name = "NVIDIA Other GPU"
    elif change == "compute capability":
        gpu.compute_capability = (9, 0)  # the old engine would not even deserialize here
    elif change == "max batch":
        max_batch, opt_batch = 8, 4
    else:
        opt_batch = 2
    caplog.set_level(logging.INFO, logger="streamseg")
    with TensorRTBackend(model, "cuda", 0, max_batch, settings(tmp_path, opt_batch=opt_batch)) as trt:
        assert isinstance(trt, TensorRTBackend) and trt.built
        with OnnxRuntimeBackend(model, "cpu", 0, max_batch) as ort:
            x = frames(model, 2)
            np.testing.assert_array_equal(trt.infer(x), ort.infer(x))  # the new weights, not the old engine's
    assert gpu.count("Builder.build_serialized_network") == 2
    (why,) = [m for _, m in messages(caplog, "streamseg.engines") if "building it" in m]
    assert f"{field}: cached " in why and why.count("cached") == 1


def test_changed_precision_is_a_separate_engine(gpu: FakeGPU, model: LoadedModel, tmp_path: Path) -> None:
    with TensorRTBackend(model, "cuda", 0, 2, settings(tmp_path)):
        pass
    with TensorRTBackend(model, "cuda", 0, 2, settings(tmp_path, precision="fp32")) as trt:
        assert isinstance(trt, TensorRTBackend) and trt.built
        assert trt.engine_path.name == "tiny-fp32.engine"
    assert sorted(p.name for p in (tmp_path / "engines").glob("*.engine")) == ["tiny-fp16.engine", "tiny-fp32.engine"]
    assert gpu.timing_cache_hits == 0  # a different build, but the timing cache file was loaded into it
    assert gpu.count("IBuilderConfig.create_timing_cache") == 2


def test_timing_cache_carries_over_to_the_next_build(gpu: FakeGPU, model: LoadedModel, tmp_path: Path) -> None:
    with TensorRTBackend(model, "cuda", 0, 2, settings(tmp_path)):
        pass
    sidecar_path(tmp_path / "engines" / "tiny-fp16.engine").unlink()  # same build again
    with TensorRTBackend(model, "cuda", 0, 2, settings(tmp_path)) as trt:
        assert isinstance(trt, TensorRTBackend) and trt.built
    assert gpu.timing_cache_hits == 1


def test_contract_that_no_longer_fits_the_cached_engine(gpu: FakeGPU, model: LoadedModel, tmp_path: Path) -> None:
    """The key covers the ONNX file, not its sidecar: an edited sidecar is caught by the contract check
    before TensorRT is asked for the shapes it implies."""
    with TensorRTBackend(model, "cuda", 0, 2, settings(tmp_path)):
        pass
    doc = json.loads(model.sidecar.read_text())
    doc["input"]["width"] = 16
    model.sidecar.write_text(json.dumps(doc))
    edited = load_model(str(model.sidecar))
    shapes_set = gpu.count("IExecutionContext.set_input_shape")
    with (
        pytest.raises(ModelError, match=r"input: sidecar says NCHW 8x16 .* has shape \(N,3,8,12\)"),
        TensorRTBackend(edited, "cuda", 0, 2, settings(tmp_path)),
    ):
        pass
    assert gpu.count("IExecutionContext.set_input_shape") == shapes_set


def test_rebuild_false_refuses_before_deserializing(gpu: FakeGPU, model: LoadedModel, tmp_path: Path) -> None:
    with TensorRTBackend(model, "cuda", 0, 4, settings(tmp_path)):
        pass
    with (
        pytest.raises(BackendError, match=r"max_batch: cached 4, needed 2.*tensorrt\.rebuild is false"),
        TensorRTBackend(model, "cuda", 0, 2, settings(tmp_path, rebuild=False)),
    ):
        pass
    assert gpu.count("Builder.build_serialized_network") == 1
    assert gpu.count("Runtime.deserialize_cuda_engine") == 1


def test_accuracy_gate_refuses_a_wrong_engine(gpu: FakeGPU, model: LoadedModel, tmp_path: Path) -> None:
    gpu.corrupt_outputs = True
    engine = tmp_path / "engines" / "tiny-fp16.engine"
    with (
        pytest.raises(BackendError, match=r"pixel agreement with ONNX Runtime 0\.\d+ is below tensorrt.min_agreement"),
        TensorRTBackend(model, "cuda", 0, 4, settings(tmp_path)),
    ):
        pass
    assert engine.is_file() and not sidecar_path(engine).exists()  # never reused
    gpu.corrupt_outputs = False
    with TensorRTBackend(model, "cuda", 0, 4, settings(tmp_path)) as trt:
        assert isinstance(trt, TensorRTBackend) and trt.built
    assert cached_key(engine) is not None


def test_infer_from_another_thread(gpu: FakeGPU, model: LoadedModel, tmp_path: Path) -> None:
    """CUDA contexts are per thread: the backend pushes its own around every call."""
    results: dict[str, Any] = {}
    with TensorRTBackend(model, "cuda", 0, 4, settings(tmp_path)) as trt, OnnxRuntimeBackend(model, "cpu", 0, 4) as ort:
        x = frames(model, 3)

        def work() -> None:
            try:
                results["out"] = trt.infer(x)
                results["depth"] = gpu.context_depth()
            except BaseException as e:
                results["error"] = e

        worker = threading.Thread(target=work)
        worker.start()
        worker.join(30)
        assert "error" not in results, results.get("error")
        np.testing.assert_array_equal(results["out"], ort.infer(x))
        assert results["depth"] == 0


# --- INT8 ----------------------------------------------------------------------------------------------


def test_int8_calibrates_through_device_memory_then_reuses_its_cache(
    gpu: FakeGPU, model: LoadedModel, tmp_path: Path
) -> None:
    folder = calibration_folder(tmp_path / "calibration", 12)
    calibration = CalibrationConfig(data=str(folder), frames=12, batch=4)
    s = settings(tmp_path, precision="int8", calibration=calibration)
    with TensorRTBackend(model, "cuda", 0, 2, s) as trt, OnnxRuntimeBackend(model, "cpu", 0, 2) as ort:
        assert isinstance(trt, TensorRTBackend) and trt.built and trt.engine_path.name == "tiny-int8.engine"
        x = frames(model, 2)
        np.testing.assert_array_equal(trt.infer(x), ort.infer(x))
    # Calibration batches of 4 while the inference profile tops out at 2: TensorRT read exactly the
    # preprocessed frames, at the pointer get_batch returned, in the calibration profile's shape.
    expected = list(CalibrationBatches.from_folder(folder, model.contract.input, 4, 12))
    assert len(gpu.calibration_reads) == len(expected) == 3
    for read, batch in zip(gpu.calibration_reads, expected, strict=True):
        np.testing.assert_array_equal(read, batch)
    assert gpu.count("IInt8Calibrator.get_batch") == 4  # three batches, then None
    assert gpu.count("IInt8Calibrator.write_calibration_cache") == 1
    built = gpu.engines_built[-1]
    assert built["flags"] == ["FP16", "INT8"] and built["calibration"]["source"] == "batches"
    (cache,) = (tmp_path / "engines").glob("*.calib")
    assert cache.name.startswith("tiny-int8-") and cache.read_bytes().startswith(fake_tensorrt.CALIBRATION_HEADER)

    # A rebuild (another batch profile) takes the scales from the cache: TensorRT asks for no batch.
    with TensorRTBackend(model, "cuda", 0, 3, s) as trt:
        assert isinstance(trt, TensorRTBackend) and trt.built
    assert gpu.count("IInt8Calibrator.read_calibration_cache") == 2
    assert gpu.count("IInt8Calibrator.get_batch") == 4
    assert gpu.engines_built[-1]["calibration"]["source"] == "cache"

    # Another ONNX file must not inherit those scales: it calibrates again, into a cache of its own.
    reweigh(model)
    with TensorRTBackend(model, "cuda", 0, 3, s):
        pass
    assert gpu.count("IInt8Calibrator.get_batch") == 8
    assert gpu.engines_built[-1]["calibration"]["source"] == "batches"
    assert len(list((tmp_path / "engines").glob("*.calib"))) == 2


def test_int8_calibration_from_the_sample_clip(gpu: FakeGPU, model: LoadedModel, tmp_path: Path, bikes: Path) -> None:
    calibration = CalibrationConfig(data=str(bikes), frames=8, batch=4, cache=str(tmp_path / "bikes.calib"))
    with TensorRTBackend(model, "cuda", 0, 4, settings(tmp_path, precision="int8", calibration=calibration)):
        pass
    assert len(gpu.calibration_reads) == 2
    assert (tmp_path / "bikes.calib").is_file()  # calibration.cache, where it was asked to be


def test_int8_calibration_failure_is_reported_not_a_crash(
    gpu: FakeGPU, model: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error inside get_batch must not escape into TensorRT (that aborts the process)."""
    folder = calibration_folder(tmp_path / "calibration", 8)
    s = settings(tmp_path, precision="int8", calibration=CalibrationConfig(data=str(folder), frames=8, batch=4))

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("device went away")

    monkeypatch.setattr("streamseg.backends.cuda_buffers.to_device", broken)
    with (
        pytest.raises(BackendError, match="INT8 calibration failed: device went away"),
        TensorRTBackend(model, "cuda", 0, 2, s),
    ):
        pass
    assert not (tmp_path / "engines" / "tiny-int8.engine").exists()


# --- DLA and the command -----------------------------------------------------------------------------------


def test_dla_engine(gpu: FakeGPU, model: LoadedModel, tmp_path: Path) -> None:
    gpu.dla_cores = 2
    with TensorRTBackend(model, "cuda", 0, 2, settings(tmp_path, dla_core=1)) as trt:
        assert isinstance(trt, TensorRTBackend) and trt.engine_path.name == "tiny-fp16-dla1.engine"
        assert cached_key(trt.engine_path).dla_core == 1  # type: ignore[union-attr]
    built = gpu.engines_built[-1]
    assert built["device_type"] == "DLA" and built["dla_core"] == 1 and "GPU_FALLBACK" in built["flags"]


def test_dla_on_a_gpu_without_one(
    gpu: FakeGPU, model: LoadedModel, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        pytest.raises(BackendError, match=r"TensorRT could not build tiny\.onnx \(fp16\)"),
        TensorRTBackend(model, "cuda", 0, 2, settings(tmp_path, dla_core=0)),
    ):
        pass
    assert any("DLA core 0 requested" in m for _, m in messages(caplog, "streamseg.tensorrt"))


def test_build_engine_command(
    gpu: FakeGPU, model: LoadedModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["build-engine", str(model.sidecar), "--cache-dir", str(tmp_path / "engines"), "--max-batch", "2"]
    assert main(args) == 0
    assert capsys.readouterr().out.strip().endswith("tiny-fp16.engine: built and passed the accuracy gate")
    assert main(args) == 0
    assert capsys.readouterr().out.strip().endswith("tiny-fp16.engine: up to date (key matches)")


# --- the fake is strict: the tests above could fail ----------------------------------------------------------


class Harness:
    """A hand-written, correct use of the fake API; each test below breaks one step of it."""

    def __init__(self, fake: FakeGPU, onnx_bytes: bytes, max_batch: int = 2) -> None:
        trt, cuda = fake.trt, fake.cuda

        class Logger(trt.ILogger):  # type: ignore[misc, name-defined]
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity: Any, msg: str) -> None:
                pass

        self.fake, self.trt, self.cuda = fake, trt, cuda
        self.logger = Logger()
        builder = trt.Builder(self.logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self.logger)
        assert parser.parse(onnx_bytes)
        config = builder.create_builder_config()
        profile = builder.create_optimization_profile()
        profile.set_shape("input", (1, 3, 8, 12), (max_batch, 3, 8, 12), (max_batch, 3, 8, 12))
        config.add_optimization_profile(profile)
        self.builder, self.network, self.config = builder, network, config
        cuda.init()
        self.cuda_context = cuda.Device(0).retain_primary_context()

    def engine(self) -> Any:
        blob = self.builder.build_serialized_network(self.network, self.config)
        return None if blob is None else self.trt.Runtime(self.logger).deserialize_cuda_engine(blob)

    def buffers(self, n: int) -> dict[str, tuple[np.ndarray, Any]]:
        return {
            name: (self.cuda.pagelocked_empty((n, 3, 8, 12), np.float32), self.cuda.mem_alloc(n * 3 * 8 * 12 * 4))
            for name in ("input", "scores")
        }


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeGPU:
    return fake_tensorrt.install(monkeypatch)


@pytest.fixture
def harness(fake: FakeGPU, model: LoadedModel) -> Iterator[Harness]:
    assert model.onnx_path is not None
    h = Harness(fake, model.onnx_path.read_bytes())
    h.cuda_context.push()
    yield h
    while fake.context_depth():
        h.cuda.Context.pop()


def run(h: Harness, x: np.ndarray, skip: str = "", stream_handle: int | None = None) -> np.ndarray:
    """The correct sequence, with one step optionally left out."""
    context = h.engine().create_execution_context()
    bufs = h.buffers(len(x))
    stream = h.cuda.Stream()
    if skip != "early output shape":
        context.set_input_shape("input", x.shape)
    else:
        context.get_tensor_shape("scores")
        context.set_input_shape("input", x.shape)
    for name, (_, device) in bufs.items():
        if name != skip:
            context.set_tensor_address(name, int(device))
    np.copyto(bufs["input"][0], x)
    h.cuda.memcpy_htod_async(bufs["input"][1], bufs["input"][0], stream)
    assert context.execute_async_v3(stream.handle if stream_handle is None else stream_handle)
    h.cuda.memcpy_dtoh_async(bufs["scores"][0], bufs["scores"][1], stream)
    if skip != "synchronize":
        stream.synchronize()
    return bufs["scores"][0]


def test_fake_correct_use_computes_what_onnx_runtime_does(harness: Harness, model: LoadedModel) -> None:
    x = frames(model, 2)
    with OnnxRuntimeBackend(model, "cpu", 0, 2) as ort:
        np.testing.assert_array_equal(run(harness, x), ort.infer(x))


def test_fake_output_shape_before_input_shape(harness: Harness, model: LoadedModel) -> None:
    context = harness.engine().create_execution_context()
    assert context.get_tensor_shape("scores") == (-1, 3, 8, 12)  # what TensorRT answers
    context.set_input_shape("input", (2, 3, 8, 12))
    assert context.get_tensor_shape("scores") == (2, 3, 8, 12)
    with pytest.raises(fake_tensorrt.FakeMisuse, match="'scores' was read before set_input_shape"):
        run(harness, frames(model, 2), skip="early output shape")


def test_fake_input_shape_outside_the_profile(harness: Harness) -> None:
    context = harness.engine().create_execution_context()
    with pytest.raises(fake_tensorrt.FakeMisuse, match=r"outside the profile \(1, 3, 8, 12\)\.\.\(2, 3, 8, 12\)"):
        context.set_input_shape("input", (3, 3, 8, 12))
    with pytest.raises(fake_tensorrt.FakeMisuse, match="does not fit"):
        context.set_input_shape("input", (1, 3, 12, 8))


@pytest.mark.parametrize("name", ["input", "scores"])
def test_fake_execute_needs_every_address(harness: Harness, model: LoadedModel, name: str) -> None:
    with pytest.raises(fake_tensorrt.FakeMisuse, match=rf"no address for \['{name}'\]"):
        run(harness, frames(model, 1), skip=name)


def test_fake_execute_needs_a_live_stream(harness: Harness, model: LoadedModel) -> None:
    with pytest.raises(fake_tensorrt.FakeMisuse, match=r"execute_async_v3\(0\)"):
        run(harness, frames(model, 1), stream_handle=0)
    with pytest.raises(fake_tensorrt.FakeMisuse, match="not the handle of a live CUDA stream"):
        run(harness, frames(model, 1), stream_handle=12345)


def test_fake_addresses_must_be_allocated_and_big_enough(harness: Harness) -> None:
    context = harness.engine().create_execution_context()
    stream = harness.cuda.Stream()
    context.set_input_shape("input", (2, 3, 8, 12))
    scores = harness.cuda.mem_alloc(2 * 3 * 8 * 12 * 4)
    context.set_tensor_address("input", 0x1234)
    context.set_tensor_address("scores", int(scores))
    with pytest.raises(fake_tensorrt.FakeMisuse, match="0x1234 is not device memory"):
        context.execute_async_v3(stream.handle)
    small = harness.cuda.mem_alloc(1 * 3 * 8 * 12 * 4)  # room for one frame
    context.set_tensor_address("input", int(small))
    with pytest.raises(fake_tensorrt.FakeMisuse, match=r"needs 2304 bytes .* holds 1152"):
        context.execute_async_v3(stream.handle)
    with pytest.raises(TypeError, match="not an int"):
        context.set_tensor_address("input", harness.cuda.mem_alloc(16))  # the allocation, not int() of it


def test_fake_freed_memory_is_not_memory(harness: Harness) -> None:
    address = int(harness.cuda.mem_alloc(64))  # the DeviceAllocation is gone: so is the memory
    host = harness.cuda.pagelocked_empty((16,), np.float32)
    with pytest.raises(fake_tensorrt.FakeMisuse, match="was freed"):
        harness.cuda.memcpy_htod_async(address, host, harness.cuda.Stream())


def test_fake_async_copies_need_pinned_memory_a_stream_and_a_context(harness: Harness) -> None:
    cuda = harness.cuda
    device = cuda.mem_alloc(64)
    stream = cuda.Stream()
    with pytest.raises(fake_tensorrt.FakeMisuse, match="not page-locked"):
        cuda.memcpy_htod_async(device, np.zeros(16, np.float32), stream)
    with pytest.raises(fake_tensorrt.FakeMisuse, match="pass the Stream"):
        cuda.memcpy_htod_async(device, cuda.pagelocked_empty((16,), np.float32), None)
    with pytest.raises(fake_tensorrt.FakeMisuse, match="needs 128 bytes"):
        cuda.memcpy_dtoh_async(cuda.pagelocked_empty((32,), np.float32), device, stream)
    cuda.Context.pop()
    with pytest.raises(fake_tensorrt.FakeCudaError, match="cuMemAlloc failed: invalid device context"):
        cuda.mem_alloc(64)


def test_fake_results_arrive_only_when_the_stream_is_synchronized(harness: Harness, model: LoadedModel) -> None:
    out = run(harness, frames(model, 1), skip="synchronize")
    assert (out.view(np.uint8) == fake_tensorrt.UNINITIALIZED).all()  # still garbage


def test_fake_two_streams_on_the_same_memory_race(harness: Harness, model: LoadedModel) -> None:
    cuda = harness.cuda
    context = harness.engine().create_execution_context()
    bufs = harness.buffers(1)
    first, second = cuda.Stream(), cuda.Stream()
    context.set_input_shape("input", (1, 3, 8, 12))
    for name, (_, device) in bufs.items():
        context.set_tensor_address(name, int(device))
    cuda.memcpy_htod_async(bufs["input"][1], bufs["input"][0], first)
    with pytest.raises(fake_tensorrt.FakeMisuse, match=r"race: execute_async_v3 on stream .* memcpy_htod_async"):
        context.execute_async_v3(second.handle)


def test_fake_deserializing_without_a_driver_kills_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_tensorrt.install(monkeypatch, driver=False)
    trt = fake.trt

    class Logger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            pass

    with pytest.raises(fake_tensorrt.FakeSegfault):
        trt.Runtime(Logger()).deserialize_cuda_engine(b"any engine")
    with pytest.raises(TypeError, match="factory function returned nullptr"):
        trt.Builder(Logger())
    with pytest.raises(fake_tensorrt.FakeCudaError, match="cuInit failed"):
        fake.cuda.init()


def test_fake_interfaces_need_their_base_init(fake: FakeGPU) -> None:
    trt = fake.trt

    class Forgetful(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            pass

        def log(self, severity: Any, msg: str) -> None:
            pass

    with pytest.raises(TypeError, match=r"Forgetful.__init__\(\) must be called when overriding __init__"):
        trt.Builder(Forgetful())


def test_fake_int8_needs_a_calibrator(harness: Harness) -> None:
    harness.config.set_flag(harness.trt.BuilderFlag.INT8)
    with pytest.raises(fake_tensorrt.FakeMisuse, match="INT8 without an int8_calibrator"):
        harness.engine()


class _Calibrator:
    """A calibrator over one float32 device buffer of ``batch`` frames."""

    @staticmethod
    def make(h: Harness, batch: int, batches: int, fail: bool = False) -> Any:
        trt, cuda = h.trt, h.cuda

        class Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
            def __init__(self) -> None:
                trt.IInt8EntropyCalibrator2.__init__(self)
                self.left = batches
                self.host = cuda.pagelocked_empty((batch, 3, 8, 12), np.float32)
                self.device = cuda.mem_alloc(self.host.nbytes)
                self.stream = cuda.Stream()

            def get_batch_size(self) -> int:
                return batch

            def get_batch(self, names: list[str]) -> list[int] | None:
                if fail:
                    raise ValueError("boom")
                if not self.left:
                    return None
                self.left -= 1
                self.host[:] = self.left
                cuda.memcpy_htod_async(self.device, self.host, self.stream)
                self.stream.synchronize()
                return [int(self.device)]

            def read_calibration_cache(self) -> bytes | None:
                return None

            def write_calibration_cache(self, cache: memoryview) -> None:
                self.cache = bytes(cache)

        return Calibrator()


def test_fake_calibrates_at_the_calibration_profiles_opt_shape(harness: Harness) -> None:
    trt = harness.trt
    harness.config.set_flag(trt.BuilderFlag.INT8)
    calibrator = _Calibrator.make(harness, batch=4, batches=2)
    harness.config.int8_calibrator = calibrator
    # Without a calibration profile TensorRT calibrates at the first profile's OPT shape: batch 2, not 4.
    with pytest.raises(fake_tensorrt.FakeMisuse, match=r"get_batch_size\(\) is 4 .* OPT shape \(2, 3, 8, 12\)"):
        harness.engine()
    profile = harness.builder.create_optimization_profile()
    profile.set_shape("input", (4, 3, 8, 12), (4, 3, 8, 12), (4, 3, 8, 12))
    assert harness.config.set_calibration_profile(profile)
    assert harness.engine() is not None
    assert [float(r.max()) for r in harness.fake.calibration_reads] == [1.0, 0.0]
    assert calibrator.cache.startswith(fake_tensorrt.CALIBRATION_HEADER)


def test_fake_an_exception_in_a_calibrator_aborts(harness: Harness) -> None:
    trt = harness.trt
    harness.config.set_flag(trt.BuilderFlag.INT8)
    harness.config.int8_calibrator = _Calibrator.make(harness, batch=2, batches=1, fail=True)
    with pytest.raises(fake_tensorrt.FakeAbort, match=r"escaped IInt8Calibrator\.get_batch"):
        harness.engine()


def test_fake_profile_shapes_are_checked(harness: Harness, model: LoadedModel) -> None:
    profile = harness.builder.create_optimization_profile()
    with pytest.raises(RuntimeError, match="Shape provided for max is inconsistent"):
        profile.set_shape("input", (1, 3, 8, 12), (4, 3, 8, 12), (2, 3, 8, 12))
    wrong = harness.builder.create_optimization_profile()
    wrong.set_shape("input", (1, 3, 9, 12), (1, 3, 9, 12), (1, 3, 9, 12))
    network = harness.builder.create_network(0)
    assert model.onnx_path is not None
    assert harness.trt.OnnxParser(network, harness.logger).parse(model.onnx_path.read_bytes())
    config = harness.builder.create_builder_config()
    config.add_optimization_profile(wrong)
    assert harness.builder.build_serialized_network(network, config) is None
    assert "does not match its network dimensions (-1, 3, 8, 12)" in harness.fake.log[-1][1]


def test_fake_refuses_foreign_engine_bytes(harness: Harness) -> None:
    assert harness.trt.Runtime(harness.logger).deserialize_cuda_engine(b"\x00not an engine") is None
    assert "Magic tag does not match" in harness.fake.log[-1][1]


def test_fake_progress_monitor_must_answer_a_bool(harness: Harness) -> None:
    trt = harness.trt

    class Sloppy(trt.IProgressMonitor):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            pass

        def step_complete(self, phase_name: str, step: int) -> None:  # forgot `return True`
            pass

        def phase_finish(self, phase_name: str) -> None:
            pass

    harness.config.progress_monitor = Sloppy()
    assert harness.engine() is None  # pybind11 cannot cast None to bool: the build is cancelled
    assert harness.fake.swallowed == ["IProgressMonitor.step_complete returned None, not a bool"]
