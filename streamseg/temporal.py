"""Temporal smoothing of the model output, per stream, against mask flicker.

Two modes (``postprocess.temporal``), both at model resolution, before areas, zones and overlay:

- ``majority``: each pixel takes the label most of the last ``k`` class maps of its stream agree
  on (the current one included; a tie goes to the current label). Works for any model. A
  one-frame flicker disappears for k >= 3; a real change shows after ceil(k/2) frames (k // 2
  frames late).
- ``ema``: an exponential average of the per-class probabilities, ``p = alpha * x + (1 - alpha) * p``,
  then argmax. Needs scores: models whose output kind is logits (softmaxed first) or
  probabilities. A class-map model has no scores to average; that is a config error.

A stream's state starts afresh when its frames change size, its frame index does not rise (a new
source under the same name) or its frames stop for longer than ``reset_gap_s`` (a reconnect):
labels from before a gap describe a scene that may be gone.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .config import TemporalConfig
from .contract import ModelContract
from .errors import ConfigError
from .frames import Frame
from .postprocess import to_class_maps


@dataclass
class _StreamState:
    key: tuple[int, int]  # the frame size the state belongs to
    index: int
    capture_time: float
    ring: deque[np.ndarray] = field(default_factory=deque)  # majority: the last k class maps
    probs: np.ndarray | None = None  # ema: the averaged probabilities, (h, w, C) float32


def majority(maps: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """Per-pixel majority label of ``maps`` (each uint8 (h, w)); ties go to the last map's label.

    Counts per class are k * C comparisons, vectorized; for two classes that is one sum.
    """
    current = maps[-1]
    if len(maps) == 1:
        return current
    stack = np.stack(maps)  # (k, h, w)
    if num_classes == 2:
        ones = np.count_nonzero(stack, axis=0)  # votes for class 1
        twice = 2 * ones
        k = stack.shape[0]
        out = np.where(twice > k, 1, np.where(twice < k, 0, current)).astype(np.uint8)
        return out
    classes = np.arange(num_classes, dtype=np.uint8)[:, None, None]  # (C, 1, 1)
    counts = (stack[None] == classes[:, None]).sum(axis=1, dtype=np.int32)  # (C, h, w) votes
    counts = 2 * counts + (current[None] == classes)  # + 1/2 vote: the current label wins ties
    voted: np.ndarray = np.argmax(counts, axis=0).astype(np.uint8)
    return voted


def _probabilities(scores: np.ndarray, kind: str, layout: str) -> np.ndarray:
    """One frame's scores (C, h, w) or (h, w, C) -> float32 probabilities (h, w, C)."""
    x = scores.astype(np.float32, copy=False)
    if layout == "NCHW":
        x = np.moveaxis(x, 0, -1)
    if kind == "logits":
        x = x - x.max(axis=-1, keepdims=True)
        np.exp(x, out=x)
        x /= x.sum(axis=-1, keepdims=True)
    return x


class TemporalFilter:
    """The class maps of a batch, smoothed per stream as ``postprocess.temporal`` says.

    ``class_maps(frames, output)`` replaces ``postprocess.to_class_maps(output, contract)``; with
    mode ``none`` it is exactly that. Not thread-safe: the pipeline loop is its one caller.
    """

    def __init__(self, cfg: TemporalConfig, contract: ModelContract) -> None:
        if cfg.mode == "ema" and contract.output.kind == "class_map":
            raise ConfigError(
                f"postprocess.temporal.mode: ema averages probabilities, but model {contract.name} outputs "
                "a class map; use mode: majority"
            )
        self.cfg = cfg
        self.contract = contract
        self._streams: dict[str, _StreamState] = {}

    @property
    def active(self) -> bool:
        return self.cfg.mode != "none"

    def class_maps(self, frames: Sequence[Frame], output: np.ndarray) -> np.ndarray:
        """uint8 class maps (N, h, w) for the batch's frames, each smoothed with its stream's past."""
        c = self.contract
        if self.cfg.mode == "ema":
            maps = [self._ema(self._state(f), row) for f, row in zip(frames, output, strict=True)]
            return np.stack(maps)
        maps_now = to_class_maps(output, c)
        if self.cfg.mode == "none":
            return maps_now
        out = np.empty_like(maps_now)
        for i, (f, cmap) in enumerate(zip(frames, maps_now, strict=True)):
            st = self._state(f)
            st.ring.append(cmap.copy())  # the batch's array is reused by some backends
            while len(st.ring) > self.cfg.k:
                st.ring.popleft()
            out[i] = majority(st.ring, c.num_classes)
        return out

    def _ema(self, st: _StreamState, scores: np.ndarray) -> np.ndarray:
        x = _probabilities(scores, self.contract.output.kind, self.contract.input.layout)
        if st.probs is None or st.probs.shape != x.shape:
            st.probs = x.copy()
        else:
            a = self.cfg.alpha
            st.probs *= 1.0 - a
            st.probs += a * x
        labels: np.ndarray = np.argmax(st.probs, axis=-1).astype(np.uint8)
        return labels

    def _state(self, f: Frame) -> _StreamState:
        key = (f.image.shape[0], f.image.shape[1])
        st = self._streams.get(f.stream)
        if (
            st is None
            or st.key != key
            or f.index <= st.index
            or f.capture_time - st.capture_time > self.cfg.reset_gap_s
        ):
            st = self._streams[f.stream] = _StreamState(key, f.index, f.capture_time)
        st.index, st.capture_time = f.index, f.capture_time
        return st
