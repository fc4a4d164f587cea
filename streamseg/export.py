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
) -> ParityReport | InstanceParityReport:
    """Export, check parity on a batch of 2 (which also proves the batch axis is dynamic), and
    write ``out`` and its sidecar. Raises ModelError, writing nothing, when parity fails. Instance
    networks (Mask R-CNN) go to :func:`export_instances`."""
    net, meta = load_network(checkpoint)
    net.eval()
    info = network_info(meta.network)
    if info.task == "instances":
        if not argmax:
            raise ConfigError(f"usage: --logits: {meta.network} gives instances, not per-pixel logits")
        return export_instances(checkpoint, out, opset)
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


# --- instance networks (Mask R-CNN) -----------------------------------------------------------------


@dataclass(frozen=True)
class InstanceParityReport:
    detections: int  # what torch and ONNX Runtime both found on the parity image
    max_box_diff: float  # pixels
    max_score_diff: float
    max_mask_diff: float  # mask probability
    mask_agreement: float  # pixels on the same side of the mask threshold, over all detections' masks


def _parity_image(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth random shapes in 0..1 (RGB, NCHW): noise would give an untrained detector nothing to find
    and a trained one nothing it knows; blobs give both a few boxes to compare."""
    import cv2

    rng = np.random.default_rng(seed)
    image = np.full((h, w, 3), 0.5, np.float32)
    for _ in range(6):
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        axes = (int(rng.integers(w // 16 + 1, w // 4 + 2)), int(rng.integers(h // 16 + 1, h // 4 + 2)))
        cv2.ellipse(image, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, rng.uniform(0, 1, 3).tolist(), -1)
    return image.transpose(2, 0, 1)[None].copy()


def export_instances(
    checkpoint: Path,
    out: Path,
    opset: int = 17,
    max_box_diff: float = 0.5,
    max_score_diff: float = 1e-3,
    max_mask_diff: float = 1e-3,
    seed: int = 0,
) -> InstanceParityReport:
    """Export an instance network at its fixed input (1, 3, H, W) with outputs boxes, labels, scores,
    masks; check parity against torch on one image (same detections: labels equal, boxes, scores and
    mask probabilities within the limits; the share of mask pixels on the same side of 0.5 is
    reported, not gated: an untrained head's probabilities sit at 0.5, where 1e-6 flips a pixel)
    and write ``out`` and its sidecar. Raises ModelError, writing nothing,
    when parity fails.

    The graph holds ONNX RoiAlign (opset >= 16: torchvision exports aligned=False as
    ``output_half_pixel``) and NonMaxSuppression; TensorRT 10 has both as native layers (not
    executed here), with the detection count a data-dependent output shape.
    """
    import warnings

    from .models.maskrcnn import ExportWrapper

    net, meta = load_network(checkpoint)
    net.eval()
    h, w = meta.height, meta.width
    x = _parity_image(h, w, seed)
    wrapper = ExportWrapper(net).eval()
    with torch.inference_mode():
        ref = [t.numpy() for t in wrapper(torch.from_numpy(x))]
    names = ["boxes", "labels", "scores", "masks"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "final.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on data-dependent control flow
            torch.onnx.export(
                wrapper,
                (torch.from_numpy(x),),
                str(path),
                input_names=["input"],
                output_names=names,
                dynamic_axes={n: {0: "detections"} for n in names},
                opset_version=max(opset, 16),
                dynamo=False,
            )
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = [np.asarray(a) for a in sess.run(names, {"input": x})]
        k = ref[2].shape[0]
        if got[2].shape[0] != k or not np.array_equal(got[1], ref[1]):
            raise ModelError(
                f"export {meta.network}: parity failed: torch found {k} detections (labels {ref[1].tolist()[:10]}), "
                f"ONNX Runtime {got[2].shape[0]} ({got[1].tolist()[:10]}); nothing written"
            )
        diffs = [float(np.abs(g.astype(np.float64) - r).max()) if k else 0.0 for g, r in zip(got, ref, strict=True)]
        agreement = float(((got[3] >= 0.5) == (ref[3] >= 0.5)).mean()) if k else 1.0
        report = InstanceParityReport(k, diffs[0], diffs[2], diffs[3], agreement)
        log.info(
            "parity %s: %d detections, max |box diff| %.3g px, |score diff| %.3g, |mask diff| %.3g (agreement %.5f)",
            meta.network,
            k,
            report.max_box_diff,
            report.max_score_diff,
            report.max_mask_diff,
            agreement,
        )
        if diffs[0] > max_box_diff or diffs[2] > max_score_diff or diffs[3] > max_mask_diff:
            raise ModelError(
                f"export {meta.network}: parity failed: max |box diff| {diffs[0]:.3g} px (limit {max_box_diff}), "
                f"|score diff| {diffs[2]:.3g} (limit {max_score_diff}), |mask probability diff| {diffs[3]:.3g} "
                f"(limit {max_mask_diff}); nothing written"
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(path.read_bytes())
    sidecar = sidecar_dict(meta, onnx=out.name, sha256=sha256_file(out))
    sidecar["source"] = f"{meta.source}; exported from {checkpoint.name} by streamseg export"
    out.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return report
