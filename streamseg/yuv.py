"""I420 pictures (the decoder's own YUV 4:2:0 planes) without a detour through BGR.

A 1080p frame converted to BGR after decoding and back to YUV before encoding costs two
full-resolution colour conversions, about a third of the CPU per frame. Frames therefore stay in
I420 from the decoder to the encoder; the model input is resized from the planes and converted at
model resolution, and the overlay is painted on the planes. The colour matrix is OpenCV's I420
one (ITU-R BT.601, studio swing 16-235), so ``i420_to_bgr`` and everything here agree with
``cv2.cvtColor(..., COLOR_YUV2BGR_I420)`` up to rounding.

Layout: one contiguous uint8 (H * 3 / 2, W) array: the (H, W) luma plane, then U and V, each
(H / 2, W / 2) stored row after row. H and W are even.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import cv2
import numpy as np

# BT.601 studio swing, as OpenCV's YUV2BGR_I420 uses it: RGB = M @ (Y - 16, U - 128, V - 128),
# as (3, 4) affine matrices for cv2.transform (which rounds and saturates like the conversion).
_M = np.array([[1.164, 0.0, 1.596], [1.164, -0.391, -0.813], [1.164, 2.018, 0.0]], np.float64)
_RGB_FROM_YUV = np.hstack([_M, -(_M @ np.array([[16.0], [128.0], [128.0]]))])
_BGR_FROM_YUV = np.ascontiguousarray(_RGB_FROM_YUV[::-1])


def planes(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y (H, W), U and V (H/2, W/2) planes of a packed I420 array (writes go through)."""
    h, w = data.shape[0] * 2 // 3, data.shape[1]
    if not data.flags.c_contiguous:
        raise ValueError("I420 planes need a contiguous array")
    flat = data.reshape(-1)  # a view: a chroma plane need not start on a row of the packed array (H/2 odd)
    n, c = h * w, (h // 2) * (w // 2)
    return data[:h], flat[n : n + c].reshape(h // 2, w // 2), flat[n + c :].reshape(h // 2, w // 2)


def i420_size(data: np.ndarray) -> tuple[int, int]:
    """(height, width) of the picture."""
    return data.shape[0] * 2 // 3, data.shape[1]


def i420_to_bgr(data: np.ndarray, dst: np.ndarray | None = None) -> np.ndarray:
    """Full-resolution BGR (H, W, 3), for the outputs that need it (PNG, JPEG, windows)."""
    if dst is None:
        return np.asarray(cv2.cvtColor(data, cv2.COLOR_YUV2BGR_I420))
    cv2.cvtColor(data, cv2.COLOR_YUV2BGR_I420, dst=dst)
    return dst


def bgr_to_i420(image: np.ndarray) -> np.ndarray:
    """BGR -> packed I420; an odd last row or column is dropped (4:2:0 needs even sizes)."""
    h, w = image.shape[:2]
    image = image[: h - h % 2, : w - w % 2]
    return np.asarray(cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2YUV_I420))


def empty_i420(height: int, width: int) -> np.ndarray:
    return np.empty((height * 3 // 2, width), np.uint8)


def resize_i420(data: np.ndarray, width: int, height: int, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """Each plane resized on its own: a scaled picture without converting it (even sizes)."""
    width, height = width - width % 2, height - height % 2
    out = empty_i420(height, width)
    for src, dst in zip(planes(data), planes(out), strict=True):
        cv2.resize(src, (dst.shape[1], dst.shape[0]), dst=dst, interpolation=interpolation)
    return out


def hstack_i420(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two pictures of one height side by side, plane by plane."""
    h, w = i420_size(left)
    out = empty_i420(h, w + i420_size(right)[1])
    for a, b, dst in zip(planes(left), planes(right), planes(out), strict=True):
        np.concatenate((a, b), axis=1, out=dst)
    return out


def crop_i420(data: np.ndarray, x0: int, x1: int) -> np.ndarray:
    """A copy of the columns [x0, x1) (even bounds) as a picture of its own."""
    h, _ = i420_size(data)
    out = empty_i420(h, x1 - x0)
    for i, (src, dst) in enumerate(zip(planes(data), planes(out), strict=True)):
        k = 1 if i == 0 else 2
        dst[:] = src[:, x0 // k : x1 // k]
    return out


def paste_i420(data: np.ndarray, part: np.ndarray, x0: int) -> None:
    """Write ``part`` (as tall as ``data``) into ``data`` from column ``x0`` (even). In place."""
    for i, (src, dst) in enumerate(zip(planes(part), planes(data), strict=True)):
        k = 1 if i == 0 else 2
        dst[:, x0 // k : x0 // k + src.shape[1]] = src


def bgr_colors_to_yuv(colors_bgr: np.ndarray) -> np.ndarray:
    """(K, 3) BGR colours -> (K, 3) uint8 (Y, U, V), converted by OpenCV itself so a painted pixel
    converts back to the colour ``i420_to_bgr`` would give."""
    k = len(colors_bgr)
    block = np.repeat(np.repeat(np.asarray(colors_bgr, np.uint8)[:, None, :], 2, axis=0), 2, axis=1)  # (2K, 2, 3)
    yuv = planes(np.asarray(cv2.cvtColor(np.ascontiguousarray(block), cv2.COLOR_BGR2YUV_I420)))
    out = np.empty((k, 3), np.uint8)
    out[:, 0] = yuv[0][::2, 0]
    out[:, 1] = yuv[1][:, 0]
    out[:, 2] = yuv[2][:, 0]
    return out


def resize_to_rgb(data: np.ndarray, width: int, height: int, rgb: bool) -> np.ndarray:
    """The picture resized (bilinear) to (height, width) and converted there: uint8 (h, w, 3), RGB
    or BGR. Resizing the planes first and converting the small picture costs a fraction of
    converting the full frame (0.2 ms against 3 ms at 1080p), and matches it to within a few levels:
    luma is resized as the BGR path resizes its pixels, and chroma is sampled where that path's
    bilinear resize would have read OpenCV's nearest-upsampled chroma (``_chroma_maps``)."""
    y, u, v = planes(data)
    mx, my = _chroma_maps(y.shape[0], y.shape[1], height, width)
    small = [cv2.resize(y, (width, height), interpolation=cv2.INTER_LINEAR)]
    small += [cv2.remap(c, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) for c in (u, v)]
    return np.asarray(cv2.transform(cv2.merge(small), _RGB_FROM_YUV if rgb else _BGR_FROM_YUV))


def _chroma_axis(src: int, dst: int) -> np.ndarray:
    """Half-resolution chroma coordinates along one axis: the BGR path's bilinear resize of ``src``
    full-resolution pixels to ``dst`` reads pixels i and i + 1 at weight f, where a full-resolution
    pixel p has the chroma of half-resolution sample p // 2; so an odd i blends samples i // 2 and
    i // 2 + 1 at weight f, and an even i reads sample i // 2 alone."""
    sx = np.clip((np.arange(dst) + 0.5) * (src / dst) - 0.5, 0, src - 1)
    i = np.floor(sx).astype(np.int64)
    u = np.where(i % 2 == 1, i // 2 + (sx - i), i // 2)
    out: np.ndarray = np.minimum(u, src // 2 - 1).astype(np.float32)
    return out


@functools.lru_cache(maxsize=16)
def _chroma_maps(src_h: int, src_w: int, dst_h: int, dst_w: int) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap's (x, y) maps for one frame size and model size (cached: streams keep their size)."""
    mx = np.ascontiguousarray(np.broadcast_to(_chroma_axis(src_w, dst_w)[None, :], (dst_h, dst_w)))
    my = np.ascontiguousarray(np.broadcast_to(_chroma_axis(src_h, dst_h)[:, None], (dst_h, dst_w)))
    mx.flags.writeable = my.flags.writeable = False
    return mx, my


def edit_as_bgr(data: np.ndarray, box: tuple[int, int, int, int], draw: Callable[[np.ndarray, int, int], None]) -> None:
    """Run a BGR drawing function on the box (x0, y0, x1, y1) of an I420 picture, in place: the box
    (widened to even edges) is converted to BGR, drawn on, and converted back. For small things
    drawn with OpenCV (legend, labels); ``draw`` gets the BGR box and its top-left (x, y) in the frame."""
    h, w = i420_size(data)
    x0, y0 = max(0, box[0] - box[0] % 2), max(0, box[1] - box[1] % 2)
    x1, y1 = min(w, box[2] + box[2] % 2), min(h, box[3] + box[3] % 2)
    if x1 <= x0 or y1 <= y0:
        return
    roi = empty_i420(y1 - y0, x1 - x0)
    src = planes(data)
    dst = planes(roi)
    dst[0][:] = src[0][y0:y1, x0:x1]
    for i in (1, 2):
        dst[i][:] = src[i][y0 // 2 : y1 // 2, x0 // 2 : x1 // 2]
    bgr = i420_to_bgr(roi)
    draw(bgr, x0, y0)
    back = planes(bgr_to_i420(bgr))
    src[0][y0:y1, x0:x1] = back[0]
    for i in (1, 2):
        src[i][y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = back[i]
