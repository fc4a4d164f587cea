"""deploy/triton/model_repository and tools/make_triton_repo.py: the Triton config of the bundled
model parses as Triton's own ModelConfig protobuf and matches the sidecar and the ONNX graph."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest

from streamseg.config import BatchConfig
from streamseg.contract import load_model, sha256_file

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "deploy" / "triton" / "model_repository" / "selfie_landscape" / "config.pbtxt"
# Triton's datatype enum names for the numpy dtypes the sidecar check uses
_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(uint8)": "TYPE_UINT8", "tensor(int64)": "TYPE_INT64"}


def _parse(path: Path) -> Any:
    pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient: pip install '.[triton]'")
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), pb2.ModelConfig()), pb2


def test_config_pbtxt_matches_sidecar_and_graph() -> None:
    cfg, pb2 = _parse(CONFIG)
    model = load_model("selfie_landscape")
    c = model.contract
    assert cfg.name == c.name
    assert cfg.platform == "onnxruntime_onnx"
    assert cfg.max_batch_size >= BatchConfig().max_batch  # the default batch fits in one request
    (inp,), (out,) = cfg.input, cfg.output
    assert (inp.name, out.name) == (c.input.name, c.output.name)
    assert c.input.layout == "NHWC" and list(inp.dims) == [c.input.height, c.input.width, 3]
    assert list(out.dims) == [c.input.height, c.input.width]  # a class map at input size
    session = ort.InferenceSession(str(model.onnx_path), providers=["CPUExecutionProvider"])
    (g_in,), (g_out,) = session.get_inputs(), session.get_outputs()
    assert g_in.name == inp.name and g_out.name == out.name
    assert [d for d in g_in.shape[1:]] == list(inp.dims) and [d for d in g_out.shape[1:]] == list(out.dims)
    assert isinstance(g_in.shape[0], str)  # a dynamic batch axis, as max_batch_size > 0 requires
    assert pb2.DataType.Name(inp.data_type) == _TYPES[g_in.type]
    assert pb2.DataType.Name(out.data_type) == _TYPES[g_out.type]
    batcher = cfg.dynamic_batching
    assert cfg.HasField("dynamic_batching") and list(batcher.preferred_batch_size)
    assert all(1 <= b <= cfg.max_batch_size for b in batcher.preferred_batch_size)
    assert 0 < batcher.max_queue_delay_microseconds <= 10_000  # bounded added latency
    assert [pb2.ModelInstanceGroup.Kind.Name(g.kind) for g in cfg.instance_group] == ["KIND_GPU"]


def test_config_check_can_fail(tmp_path: Path) -> None:
    # the parse is strict: a misspelt field is an error, not ignored
    bad = tmp_path / "config.pbtxt"
    bad.write_text(CONFIG.read_text().replace("max_batch_size", "max_batchsize"))
    with pytest.raises(Exception, match="max_batchsize"):
        _parse(bad)


@pytest.mark.parametrize("link", [False, True])
def test_make_triton_repo_writes_config_and_model(tmp_path: Path, link: bool) -> None:
    out = tmp_path / "repo"
    cmd = [sys.executable, str(ROOT / "tools" / "make_triton_repo.py"), str(out), *(["--link"] if link else [])]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    folder = out / "selfie_landscape"
    assert (folder / "config.pbtxt").read_text() == CONFIG.read_text()
    onnx = folder / "1" / "model.onnx"
    assert onnx.is_symlink() == link
    assert sha256_file(onnx) == load_model("selfie_landscape").contract.sha256
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)  # rerun: replaced
    assert again.returncode == 0, again.stderr


def test_make_triton_repo_unknown_model_is_one_line(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "tools" / "make_triton_repo.py"), str(tmp_path / "r"), "--model", "nope"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("make_triton_repo: error:")
