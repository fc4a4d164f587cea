"""`streamseg export`: a trained checkpoint -> ONNX with a dynamic batch axis, optionally with the
argmax in the graph (uint8 class map out), plus its sidecar, and a parity check against torch
that fails the export when ONNX Runtime disagrees."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .contract import sha256_file
from .errors import ConfigError, ModelError
from .models import network_info
from .models._torch import Tensor, nn, torch
from .models.checkpoint import load_network, sidecar_dict

log = logging.getLogger(__name__)


class _ArgmaxHead(nn.Module):
    """Logits -> uint8 class map inside the graph: the engine returns 1 byte per pixel, not C floats."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        out = self.net(x)
        labels: Tensor = out.argmax(dim=1).to(torch.uint8)
        return labels


@dataclass(frozen=True)
class ParityReport:
    max_abs_logit_diff: float
    label_agreement: float
    batch: int


def _export(module: nn.Module, path: Path, height: int, width: int, output: str, opset: int) -> None:
    dummy = torch.zeros(1, 3, height, width)
    try:
        torch.onnx.export(
            module,
            (dummy,),
            str(path),
            input_names=["input"],
            output_names=[output],
            dynamic_axes={"input": {0: "batch"}, output: {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    except RuntimeError as e:  # which opsets this torch writes is torch's to say
        if "opset" not in str(e):
            raise
        raise ConfigError(f"usage: --opset {opset}: {str(e).splitlines()[0]}") from None


def _ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"input": x})
    return np.asarray(out)


def export_onnx(
    checkpoint: Path,
    out: Path,
    argmax: bool = True,
    opset: int = 17,
    max_diff: float = 1e-3,
    min_agreement: float = 0.999,
    seed: int = 0,
) -> ParityReport:
    """Export, check parity on a batch of 2 (which also proves the batch axis is dynamic), and
    write ``out`` and its sidecar. Raises ModelError, writing nothing, when parity fails."""
    net, meta = load_network(checkpoint)
    net.eval()
    info = network_info(meta.network)
    h, w = meta.height, meta.width
    if info.fixed_input and (h, w) != info.input_size:
        raise ModelError(f"{checkpoint}: {meta.network} exports only at {info.input_size} (adaptive pooling)")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, h, w)).astype(np.float32)
    with torch.inference_mode():
        ref = net(torch.from_numpy(x))
        ref = (ref[0] if isinstance(ref, tuple) else ref).numpy()
    ref_labels = ref.argmax(1)
    with tempfile.TemporaryDirectory() as tmp:
        logits_path = Path(tmp) / "logits.onnx"
        _export(net, logits_path, h, w, "logits", opset)
        got = _ort_run(logits_path, x)
        if got.shape != ref.shape:
            raise ModelError(f"export {meta.network}: ONNX output {got.shape}, torch {ref.shape}")
        diff = float(np.abs(got - ref).max())
        final = Path(tmp) / "final.onnx"
        if argmax:
            _export(_ArgmaxHead(net), final, h, w, "classmap", opset)
            labels = _ort_run(final, x)
            if labels.dtype != np.uint8:
                raise ModelError(f"export {meta.network}: class map is {labels.dtype}, expected uint8")
        else:
            final = logits_path
            labels = got.argmax(1)
        agreement = float((labels == ref_labels).mean())
        report = ParityReport(diff, agreement, 2)
        log.info("parity %s: max |logit diff| %.3g, label agreement %.5f", meta.network, diff, agreement)
        if diff > max_diff or agreement < min_agreement:
            raise ModelError(
                f"export {meta.network}: parity failed: max |logit diff| {diff:.3g} (limit {max_diff}), "
                f"label agreement {agreement:.5f} (limit {min_agreement}); nothing written"
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(final.read_bytes())
    sidecar = sidecar_dict(
        meta, onnx=out.name, output_kind="class_map" if argmax else "logits", sha256=sha256_file(out)
    )
    sidecar["source"] = f"{meta.source}; exported from {checkpoint.name} by streamseg export"
    out.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return report
