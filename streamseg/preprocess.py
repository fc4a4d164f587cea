"""Frames -> input tensor, as the model contract asks. Pure functions."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .contract import InputSpec
from .frames import Frame
from .yuv import resize_to_rgb


def preprocess(images: Sequence[np.ndarray], spec: InputSpec, out: np.ndarray | None = None) -> np.ndarray:
    """Resize (bilinear), reorder channels and normalize BGR uint8 images into one float32 batch.

    ``out``, when given, must be a float32 array of the batch's shape and is filled and returned;
    reusing it saves a large allocation per batch.
    """
    n, h, w = len(images), spec.height, spec.width
    shape = (n, 3, h, w) if spec.layout == "NCHW" else (n, h, w, 3)
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"preprocess: out must be float32 {shape}, got {out.dtype} {out.shape}")
    resized = np.empty((n, h, w, 3), np.uint8)
    for i, img in enumerate(images):
        small = img
        if img.shape[:2] != (h, w):
            # Bilinear, as the reference runtimes do; INTER_AREA would look nicer but costs ~5x.
            small = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
        if spec.color == "RGB":
            cv2.cvtColor(small, cv2.COLOR_BGR2RGB, dst=resized[i])  # a contiguous copy converts to float fast
        else:
            resized[i] = small
    mean = np.asarray(spec.mean, np.float32)
    inv_std = 1.0 / np.asarray(spec.std, np.float32)
    if spec.layout == "NCHW":
        np.multiply(
            np.subtract(resized.transpose(0, 3, 1, 2), mean[None, :, None, None], dtype=np.float32),
            inv_std[None, :, None, None],
            out=out,
        )
    else:
        np.multiply(np.subtract(resized, mean, dtype=np.float32), inv_std, out=out)
    return out


def preprocess_frames(frames: Sequence[Frame], spec: InputSpec, out: np.ndarray | None = None) -> np.ndarray:
    """``preprocess`` for frames in any pixel format. I420 frames are resized plane by plane and
    converted at model resolution, never to a full-resolution BGR copy; the tensor equals the BGR
    path's up to rounding and chroma resampling (tests/test_yuv.py)."""
    if all(f.pixel_format == "bgr24" for f in frames):
        return preprocess([f.host_image() for f in frames], spec, out)
    # resized and in the model's channel order already: preprocess only normalizes them (a device
    # frame is taken from its host copy, downloaded as I420)
    small = [
        resize_to_rgb(f.host_image(), spec.width, spec.height, spec.color == "RGB")
        if f.host_format == "yuv420p"
        else _resized_in_order(f.host_image(), spec)
        for f in frames
    ]
    return preprocess(small, spec.model_copy(update={"color": "BGR"}), out)


def _resized_in_order(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """A BGR frame batched with I420 ones (a camera beside files): resized, in the model's order."""
    if image.shape[:2] != (spec.height, spec.width):
        image = cv2.resize(image, (spec.width, spec.height), interpolation=cv2.INTER_LINEAR)
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)) if spec.color == "RGB" else image
