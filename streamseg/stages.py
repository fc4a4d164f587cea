"""The processing stage around a backend's ``infer``: frames -> input tensor, output -> class maps,
area ratios and (where the stage draws it) the overlay.

``Pipeline._loop`` reads batch -> ``stage.preprocess`` -> ``backend.infer`` -> ``stage.postprocess``.
The backend picks its stage (``Backend.stage``): ``CpuStage`` here (numpy and OpenCV) for every
backend that takes host arrays, ``gpu.TorchStage`` for torch on CUDA, whose tensors stay on the
device from preprocess to postprocess (the value ``infer`` returns is what postprocess reads; no
attribute carries it). Both give the same class maps and area ratios for the same frames and model
output (tests/test_stages.py).

With temporal smoothing (``postprocess.temporal``) the class maps are smoothed per stream on the
CPU, and the area ratios are those of the smoothed maps, whichever stage runs.

Frames NVDEC decoded stay on the GPU (pixel format "nv12_device") only for a stage that says it
takes them there (``takes_device_frames``, read by the pipeline before it opens the streams). The
CPU stage still accepts them, downloading each one: correct, but a copy over the bus per frame.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

import numpy as np

from .contract import ModelContract
from .frames import Frame
from .overlay import Palette
from .postprocess import area_ratios, to_class_maps
from .preprocess import preprocess_frames

if TYPE_CHECKING:
    from .instances import Instance
    from .temporal import TemporalFilter

log = logging.getLogger(__name__)

T = TypeVar("T")  # the stage's tensor: what preprocess makes, infer takes and returns, postprocess reads


@dataclass(frozen=True, slots=True)
class Processed:
    """One frame after postprocess: what the pipeline builds its ``SegResult`` from."""

    class_map: np.ndarray  # uint8 (h, w) class indices at the model's output resolution, C-contiguous
    area_ratio: np.ndarray  # float64 (num_classes,): each class's share of the class map's pixels
    overlay: np.ndarray | None = None  # BGR uint8 (H, W, 3) blended where the frame was; None: the worker draws it
    instances: tuple[Instance, ...] = ()  # an instance model's detections (the class map is painted from them)

    def __post_init__(self) -> None:
        cm, ratios, ov = self.class_map, self.area_ratio, self.overlay
        if cm.dtype != np.uint8 or cm.ndim != 2 or not cm.flags.c_contiguous:
            raise ValueError(f"Processed: expected a C-contiguous uint8 (h, w) class map, got {cm.dtype} {cm.shape}")
        if ratios.dtype != np.float64 or ratios.ndim != 1:
            raise ValueError(
                f"Processed: expected float64 (num_classes,) area ratios, got {ratios.dtype} {ratios.shape}"
            )
        if ov is not None and (ov.dtype != np.uint8 or ov.ndim != 3 or ov.shape[2] != 3):
            raise ValueError(f"Processed: expected a uint8 (H, W, 3) BGR overlay, got {ov.dtype} {ov.shape}")


@dataclass(frozen=True, slots=True)
class OverlaySpec:
    """What a stage needs to blend the overlay where the frames are (the GPU stage does, for mode
    'blend'); other modes, the legend and zone outlines are drawn by the stream's output worker."""

    palette: Palette
    alpha: float
    blend: bool  # blend here: overlay.mode is 'blend' and some output wants the overlay


class Stage(abc.ABC, Generic[T]):
    """Pre- and post-processing for one backend, in the form its ``infer`` takes and gives.

    Not thread-safe: the pipeline loop is its one caller, one batch at a time.
    """

    def __init__(self, contract: ModelContract, temporal: TemporalFilter | None = None) -> None:
        self.contract = contract
        self.temporal = temporal  # None: no smoothing (postprocess.temporal.mode none)

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """Where the stage runs, for the start-up log: 'cpu', 'cuda:0', ..."""

    @property
    def takes_device_frames(self) -> bool:
        """Frames on a device (NVDEC's "nv12_device") go into ``preprocess`` without a trip through
        host memory: sources hand them over as decoded. False: they would be downloaded here."""
        return False

    @abc.abstractmethod
    def preprocess(self, frames: Sequence[Frame]) -> T:
        """The batch's input tensor: resized, channel-ordered, normalized and laid out as the
        contract says; float32 (N, 3, h, w) or (N, h, w, 3)."""

    @abc.abstractmethod
    def postprocess(self, frames: Sequence[Frame], output: T) -> list[Processed]:
        """Per frame of the batch, in order: class map (smoothed when asked), area ratios, overlay."""

    @property
    def smoothing(self) -> bool:
        return self.temporal is not None and self.temporal.active

    def _class_maps(self, frames: Sequence[Frame], output: np.ndarray) -> np.ndarray:
        """Host class maps (N, h, w) from a host output, smoothed per stream when asked."""
        if self.temporal is not None:
            return self.temporal.class_maps(frames, output)  # to_class_maps when its mode is none
        return to_class_maps(output, self.contract)


class CpuStage(Stage[np.ndarray]):
    """numpy and OpenCV on the host. The overlay is left to each stream's output worker, which
    draws it on its own thread, in parallel with the next batch."""

    _told_download = False  # device frames were logged once

    @property
    def description(self) -> str:
        return "cpu"

    def preprocess(self, frames: Sequence[Frame]) -> np.ndarray:
        if not self._told_download and any(f.on_device for f in frames):
            self._told_download = True
            log.warning(
                "the CPU stage downloads each GPU-decoded frame (stream %s): correct but slow; "
                "NVDEC pays off with a stage on the GPU",
                next(f.stream for f in frames if f.on_device),
            )
        # I420 frames are resized plane by plane and converted at model resolution, never to full-size
        # BGR; a device frame is downloaded once as I420 (Frame.host_image), and outputs reuse that copy
        return preprocess_frames(frames, self.contract.input)

    def postprocess(self, frames: Sequence[Frame], output: np.ndarray) -> list[Processed]:
        n = self.contract.num_classes
        maps = self._class_maps(frames, output)
        out = []
        for cmap in maps:
            cmap = np.ascontiguousarray(cmap)
            out.append(Processed(cmap, area_ratios(cmap, n)))
        return out
