"""The GPU paths on real hardware. Skipped with the reason where there is no NVIDIA GPU, CUDA
driver, TensorRT or pycuda; CI has none of them, so these run only on GPU hosts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamseg.backends.tensorrt import TensorRTBackend, TensorRTConfig
from streamseg.backends.torch import TorchConfig
from streamseg.contract import load_model
from streamseg.postprocess import to_class_maps

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'streamseg[train]')")

from streamseg.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from streamseg.backends.torch import TorchBackend  # noqa: E402
from streamseg.export import export_onnx  # noqa: E402
from streamseg.gpu import TorchStage  # noqa: E402
from streamseg.models import build  # noqa: E402
from streamseg.models.checkpoint import CheckpointMeta, save_checkpoint  # noqa: E402
from streamseg.overlay import voc_colors  # noqa: E402

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch")
_TRT_MISSING = TensorRTBackend.unavailable_reason("cuda")
needs_tensorrt = pytest.mark.skipif(_TRT_MISSING is not None, reason=str(_TRT_MISSING))


@pytest.fixture
def linknet(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = build("linknet", 4).eval()
    meta = CheckpointMeta("linknet", 4, ["a", "b", "c", "d"], voc_colors(4), 256, 448)
    save_checkpoint(tmp_path / "linknet.pt", model, meta)
    export_onnx(tmp_path / "linknet.pt", tmp_path / "linknet.onnx")
    return tmp_path


def _batch(n: int) -> np.ndarray:
    return np.random.default_rng(n).standard_normal((n, 3, 256, 448)).astype(np.float32)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize(("fp16", "graphs"), [(False, False), (True, False), (True, True)])
def test_torch_cuda_matches_cpu(linknet: Path, fp16: bool, graphs: bool) -> None:
    model = load_model(str(linknet / "linknet.json"))
    with TorchBackend(model, "cpu", 0, 4) as cpu:
        want = cpu.infer(_batch(4))
    with TorchBackend(model, "cuda", 0, 4, TorchConfig(fp16=fp16, cuda_graphs=graphs)) as gpu:
        assert gpu.description.startswith("torch (cuda")
        assert isinstance(gpu.stage(), TorchStage)  # the pipeline pre/post-processes on the GPU
        got = gpu.infer(_batch(4))
        again = gpu.infer(_batch(4))  # a replayed CUDA graph gives the same answer
    assert np.array_equal(got, again)
    agreement = (got == want).mean()
    assert agreement >= (0.99 if fp16 else 0.9999), agreement


@pytest.mark.gpu
@pytest.mark.tensorrt
@needs_tensorrt
def test_tensorrt_engine_matches_onnxruntime(linknet: Path, tmp_path: Path) -> None:
    model = load_model(str(linknet / "linknet.onnx"))
    settings = TensorRTConfig(precision="fp16", cache_dir=str(tmp_path / "engines"))
    with TensorRTBackend(model, "cuda", 0, 4, settings) as trt, OnnxRuntimeBackend(model, "cpu", 0, 4) as ort:
        assert trt.built and (tmp_path / "engines").is_dir()
        for n in (1, 3, 4):
            got = to_class_maps(trt.infer(_batch(n)), model.contract)
            want = to_class_maps(ort.infer(_batch(n)), model.contract)
            assert (got == want).mean() >= 0.99
    with TensorRTBackend(model, "cuda", 0, 4, settings) as again:
        assert not again.built  # the cached engine's key matched
