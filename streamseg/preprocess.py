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
    """``preprocess`` for frames in either pixel format. I420 frames are resized plane by plane and
    converted at model resolution, never to a full-resolution BGR copy; the tensor equals the BGR
    path's up to rounding (tests/test_preprocess.py)."""
    if all(f.pixel_format == "bgr24" for f in frames):
        return preprocess([f.image for f in frames], spec, out)
    n, h, w = len(frames), spec.height, spec.width
    shape = (n, 3, h, w) if spec.layout == "NCHW" else (n, h, w, 3)
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"preprocess: out must be float32 {shape}, got {out.dtype} {out.shape}")
    mean = np.asarray(spec.mean, np.float32)
    inv_std = 1.0 / np.asarray(spec.std, np.float32)
    for i, f in enumerate(frames):
        if f.pixel_format == "yuv420p":
            pixels = resize_to_rgb(f.image, w, h, spec.color == "RGB")
        else:  # a BGR stream batched with I420 ones (a camera beside files)
            small = (
                f.image if f.image.shape[:2] == (h, w) else cv2.resize(f.image, (w, h), interpolation=cv2.INTER_LINEAR)
            )
            pixels = (small[..., ::-1] if spec.color == "RGB" else small).astype(np.float32)
        pixels -= mean
        pixels *= inv_std
        if spec.layout == "NCHW":
            out[i] = pixels.transpose(2, 0, 1)
        else:
            out[i] = pixels
    return out
