"""Class maps -> pictures people watch. Pure functions over numpy arrays, with reusable scratch.

Speed comes from three choices: colorize at model resolution through a lookup table, upscale
one 4-channel image with nearest neighbour (labels are never interpolated, and 4-channel pixels
are one 32-bit word for OpenCV), and reuse full-size buffers between frames (fresh 6 MB arrays
cost page faults on every frame).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from .frames import Picture
from .postprocess import nearest_index
from .yuv import bgr_colors_to_yuv, crop_i420, edit_as_bgr, empty_i420, hstack_i420, i420_size, paste_i420, planes

BACKGROUND_NAMES = frozenset({"background", "_background_", "bg"})


@dataclass(frozen=True, slots=True)
class Palette:
    """Class colors as a 256-entry BGRA lookup table; A is 255 for painted classes, 0 for see-through."""

    names: tuple[str, ...]
    colors_bgr: tuple[tuple[int, int, int], ...]
    lut: np.ndarray  # (256, 4) uint8
    # the same colours for I420 pictures: (256, 2) luma and alpha, (256, 4) U, V, alpha, 0 (one
    # 32-bit word per pixel, which OpenCV's nearest resize moves fastest)
    lut_y: np.ndarray
    lut_uv: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.names)


def make_palette(
    names: Sequence[str], colors_rgb: Sequence[Sequence[int]], transparent: Sequence[str] | None = None
) -> Palette:
    """Build a palette; ``transparent=None`` leaves classes named like 'background' unpainted."""
    if len(names) != len(colors_rgb):
        raise ValueError(f"make_palette: {len(names)} names but {len(colors_rgb)} colors")
    see_through = {n for n in names if n.lower() in BACKGROUND_NAMES} if transparent is None else set(transparent)
    unknown = see_through - set(names)
    if unknown:
        raise ValueError(f"transparent names unknown classes: {', '.join(sorted(unknown))}")
    lut = np.zeros((256, 4), np.uint8)
    bgr = tuple((int(c[2]), int(c[1]), int(c[0])) for c in colors_rgb)
    for i, (name, color) in enumerate(zip(names, bgr, strict=True)):
        lut[i, :3] = color
        lut[i, 3] = 0 if name in see_through else 255
    yuv = bgr_colors_to_yuv(lut[:, :3])
    lut_y = np.ascontiguousarray(np.stack((yuv[:, 0], lut[:, 3]), axis=1))
    lut_uv = np.zeros((256, 4), np.uint8)
    lut_uv[:, 0], lut_uv[:, 1], lut_uv[:, 2] = yuv[:, 1], yuv[:, 2], lut[:, 3]
    return Palette(tuple(names), bgr, lut, lut_y, lut_uv)


def voc_colors(n: int) -> list[tuple[int, int, int]]:
    """The PASCAL VOC palette (RGB, bit-interleaved), so class i looks as it does in VOC tools."""
    colors = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colors.append((r, g, b))
    return colors


@dataclass
class Scratch:
    """Full-size work buffers reused across frames of one size. Not shared between threads."""

    _bufs: dict[tuple[str, tuple[int, ...]], np.ndarray] = field(default_factory=dict)

    def get(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        key = (name, shape)
        buf = self._bufs.get(key)
        if buf is None:
            if len(self._bufs) > 16:  # the stream changed size; drop stale buffers
                self._bufs.clear()
            buf = self._bufs[key] = np.empty(shape, np.uint8)
        return buf


def colorize(
    class_map: np.ndarray, palette: Palette, width: int, height: int, scratch: Scratch | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Class map -> (BGR color image, painted mask) at (height, width), nearest-neighbour upscaled.

    Both results live in ``scratch`` when given: use them before the next call.
    """
    scratch = scratch or Scratch()
    big = _upscaled_bgra(class_map, palette, width, height, scratch)
    color = scratch.get("bgr", (height, width, 3))
    cv2.cvtColor(big, cv2.COLOR_BGRA2BGR, dst=color)
    mask = scratch.get("mask", (height, width))
    cv2.extractChannel(big, 3, dst=mask)
    return color, mask


def _upscaled_bgra(class_map: np.ndarray, palette: Palette, width: int, height: int, scratch: Scratch) -> np.ndarray:
    small = np.take(palette.lut, class_map, axis=0)  # (h, w, 4); np.take is ~10x faster than lut[map]
    big = scratch.get("bgra", (height, width, 4))
    cv2.resize(small, (width, height), dst=big, interpolation=cv2.INTER_NEAREST_EXACT)  # as resize_labels
    return big


def _painted_rows_cols(painted: np.ndarray, size: int, src: int) -> tuple[int, int]:
    """Full-resolution [start, stop) of the output pixels whose nearest source index falls in the
    model-resolution span where ``painted`` is true."""
    idx = np.flatnonzero(painted)
    index = nearest_index(src, size)
    start = int(np.searchsorted(index, idx[0], side="left"))
    stop = int(np.searchsorted(index, idx[-1], side="right"))
    return start, stop


def blend(
    image: np.ndarray, class_map: np.ndarray, palette: Palette, alpha: float, scratch: Scratch | None = None
) -> np.ndarray:
    """Alpha-blend class colors over painted pixels. Writes into ``image`` and returns it.

    Work is confined to the bounding box of the painted pixels (found at model resolution), and
    the mask pass is skipped when every pixel in that box is painted.
    """
    scratch = scratch or Scratch()
    h, w = image.shape[:2]
    painted_small: np.ndarray = np.take(palette.lut[:, 3], class_map) > 0
    rows = np.asarray(painted_small.any(axis=1))
    cols = np.asarray(painted_small.any(axis=0))
    if not rows.any():
        return image  # nothing to paint (e.g. only background in view)
    y0, y1 = _painted_rows_cols(rows, h, class_map.shape[0])
    x0, x1 = _painted_rows_cols(cols, w, class_map.shape[1])
    if y0 >= y1 or x0 >= x1:
        return image  # shrinking the map skipped every painted row or column: no output pixel is painted
    big = _upscaled_bgra(class_map, palette, w, h, scratch)
    region = image[y0:y1, x0:x1]
    rh, rw = y1 - y0, x1 - x0
    # views into full-size scratch buffers: the box changes every frame, the buffers must not
    color = scratch.get("bgr", (h, w, 3))[:rh, :rw]
    cv2.cvtColor(big[y0:y1, x0:x1], cv2.COLOR_BGRA2BGR, dst=color)
    if painted_small.all():
        cv2.addWeighted(region, 1.0 - alpha, color, alpha, 0.0, dst=region)
        return image
    mask = scratch.get("mask", (h, w))[:rh, :rw]
    cv2.extractChannel(big[y0:y1, x0:x1], 3, dst=mask)
    mixed = scratch.get("mixed", (h, w, 3))[:rh, :rw]
    cv2.addWeighted(region, 1.0 - alpha, color, alpha, 0.0, dst=mixed)
    cv2.copyTo(mixed, mask, region)
    return image


def blend_i420(
    data: np.ndarray, class_map: np.ndarray, palette: Palette, alpha: float, scratch: Scratch | None = None
) -> np.ndarray:
    """``blend`` on an I420 picture's planes: luma at full resolution, U and V at half. Writes into
    ``data`` and returns it. Blending is linear and so is the colour conversion, so this equals
    blending in BGR up to rounding, except along class edges, where 4:2:0 has one colour per 2x2
    pixels anyway. Half the pixels of a BGR blend, and no conversion before the encoder."""
    scratch = scratch or Scratch()
    painted_small: np.ndarray = np.take(palette.lut[:, 3], class_map) > 0
    rows = np.asarray(painted_small.any(axis=1))
    cols = np.asarray(painted_small.any(axis=0))
    if not rows.any():
        return data
    every = bool(painted_small.all())
    y, u, v = planes(data)
    for name, lut, targets in (("yA", palette.lut_y, (y,)), ("uvA", palette.lut_uv, (u, v))):
        ph, pw = targets[0].shape
        y0, y1 = _painted_rows_cols(rows, ph, class_map.shape[0])
        x0, x1 = _painted_rows_cols(cols, pw, class_map.shape[1])
        if y0 >= y1 or x0 >= x1:
            continue
        small = np.take(lut, class_map, axis=0)
        big = scratch.get(name, (ph, pw, lut.shape[1]))
        cv2.resize(small, (pw, ph), dst=big, interpolation=cv2.INTER_NEAREST_EXACT)
        box = big[y0:y1, x0:x1]
        rh, rw = y1 - y0, x1 - x0
        mask = None
        if not every:
            mask = scratch.get(name + "-mask", (ph, pw))[:rh, :rw]
            cv2.extractChannel(box, len(targets), dst=mask)
        for c, plane in enumerate(targets):
            region = plane[y0:y1, x0:x1]
            color = scratch.get(f"{name}-{c}", (ph, pw))[:rh, :rw]
            cv2.extractChannel(box, c, dst=color)
            if mask is None:
                cv2.addWeighted(region, 1.0 - alpha, color, alpha, 0.0, dst=region)
            else:
                mixed = scratch.get(f"{name}-mixed", (ph, pw))[:rh, :rw]
                cv2.addWeighted(region, 1.0 - alpha, color, alpha, 0.0, dst=mixed)
                cv2.copyTo(mixed, mask, region)
    return data


def colorize_i420(class_map: np.ndarray, palette: Palette, width: int, height: int) -> np.ndarray:
    """Class map -> a new I420 picture of the class colours, like ``colorize``'s colour image."""
    out = empty_i420(height, width)
    y, u, v = planes(out)
    cv2.resize(np.take(palette.lut_y[:, 0], class_map), (width, height), dst=y, interpolation=cv2.INTER_NEAREST_EXACT)
    for c, plane in ((0, u), (1, v)):
        small = np.take(palette.lut_uv[:, c], class_map)
        cv2.resize(small, (width // 2, height // 2), dst=plane, interpolation=cv2.INTER_NEAREST_EXACT)
    return out


# Legend text: cap height ~2.5 % of the frame height, so it reads the same on a 160x90 thumbnail
# and a 4K frame, never below what Hershey glyphs need to stay legible (7 px; 6 to fit a narrow frame).
LEGEND_CAP_RATIO = 0.025
LEGEND_MIN_CAP_PX = 7
LEGEND_MAX_CAP_PX = 64
LEGEND_MAX_HEIGHT_RATIO = 0.6  # small frames show fewer rows rather than hide the picture
_HERSHEY_CAP_PX = 20  # cap height of FONT_HERSHEY_SIMPLEX at fontScale 1 (measured)


def _legend_metrics(labels: list[str], cap: float) -> tuple[float, int, int, int, int]:
    """(font scale, thickness, line pitch, padding, box width) for text of cap height ``cap``."""
    font = cap / _HERSHEY_CAP_PX
    thick = max(1, round(cap / 14))
    pad = max(2, round(cap * 0.4))
    text_w = max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, font, thick)[0][0] for t in labels)
    return font, thick, round(cap * 1.8), pad, 3 * pad + round(cap) + text_w


@dataclass(frozen=True, slots=True)
class _LegendLayout:
    order: list[int]
    labels: list[str]
    rows: int
    x0: int
    y0: int
    box_w: int
    box_h: int
    pad: int
    line: int
    swatch: int
    font: float
    thick: int


def _legend_layout(h: int, w: int, palette: Palette, ratios: np.ndarray | None, max_rows: int) -> _LegendLayout | None:
    order = [int(i) for i in (np.argsort(-ratios, kind="stable") if ratios is not None else range(palette.num_classes))]
    labels = [palette.names[i] if ratios is None else f"{palette.names[i]} {100 * ratios[i]:.1f}%" for i in order]
    labels = labels[:max_rows]
    if not labels:
        return None
    cap = float(min(LEGEND_MAX_CAP_PX, max(LEGEND_MIN_CAP_PX, LEGEND_CAP_RATIO * h)))
    font, thick, line, pad, box_w = _legend_metrics(labels, cap)
    if box_w + 2 * pad > w:  # text width is about proportional to the cap height: shrink once
        cap = max(LEGEND_MIN_CAP_PX - 1.0, cap * (w - 2 * pad) / (box_w + 2 * pad))
        font, thick, line, pad, box_w = _legend_metrics(labels, cap)
    s = round(cap)  # swatch side; a row is a swatch beside a label, descenders below it
    n = min(len(labels), int((LEGEND_MAX_HEIGHT_RATIO * h - 2 * pad - 1.4 * cap) // line) + 1)
    box_h = 2 * pad + (n - 1) * line + round(1.4 * cap)
    x0 = y0 = pad
    if n < 1 or x0 + box_w + pad > w or y0 + box_h + pad > h:
        return None
    return _LegendLayout(order, labels, n, x0, y0, box_w, box_h, pad, line, s, font, thick)


def _paint_legend(image: np.ndarray, lg: _LegendLayout, palette: Palette, dx: int = 0, dy: int = 0) -> None:
    """Draw the legend into ``image``, whose top-left pixel is the frame's (dx, dy)."""
    x0, y0 = lg.x0 - dx, lg.y0 - dy
    roi = image[y0 : y0 + lg.box_h, x0 : x0 + lg.box_w]
    np.floor_divide(roi, 3, out=roi)  # darken so text reads on any frame (in place: no temporaries)
    s, pad = lg.swatch, lg.pad
    for r in range(lg.rows):
        top = y0 + pad + r * lg.line
        cv2.rectangle(image, (x0 + pad, top), (x0 + pad + s - 1, top + s - 1), palette.colors_bgr[lg.order[r]], -1)
        cv2.putText(
            image,
            lg.labels[r],
            (x0 + 2 * pad + s, top + s),
            cv2.FONT_HERSHEY_SIMPLEX,
            lg.font,
            (255, 255, 255),
            lg.thick,
            cv2.LINE_AA,
        )


def draw_legend(image: np.ndarray, palette: Palette, ratios: np.ndarray | None, max_rows: int = 6) -> np.ndarray:
    """Draw class swatches with area % in the top-left corner, largest classes first. In place.

    Text scales with the frame height (see LEGEND_CAP_RATIO); small frames show fewer rows and a
    narrow one a slightly smaller font. A frame too small for one legible row gets no legend.
    """
    lg = _legend_layout(image.shape[0], image.shape[1], palette, ratios, max_rows)
    if lg is not None:
        _paint_legend(image, lg, palette)
    return image


def draw_legend_i420(data: np.ndarray, palette: Palette, ratios: np.ndarray | None, max_rows: int = 6) -> np.ndarray:
    """``draw_legend`` on an I420 picture: only the legend's box is converted to BGR and back."""
    h, w = i420_size(data)
    lg = _legend_layout(h, w, palette, ratios, max_rows)
    if lg is not None:
        box = (lg.x0, lg.y0, lg.x0 + lg.box_w, lg.y0 + lg.box_h)
        edit_as_bgr(data, box, lambda roi, dx, dy: _paint_legend(roi, lg, palette, dx, dy))
    return data


def render(
    image: np.ndarray,
    class_map: np.ndarray,
    palette: Palette,
    mode: str,
    alpha: float,
    ratios: np.ndarray | None = None,
    legend: bool = True,
    scratch: Scratch | None = None,
    pixel_format: str = "bgr24",
) -> np.ndarray:
    """The overlay for one frame in mode 'blend', 'mask' or 'side-by-side', in the frame's pixel
    format ('bgr24', or 'yuv420p' for packed I420: see ``streamseg.yuv``).

    'blend' writes into ``image``; 'mask' returns a scratch buffer (BGR) or a new array (I420);
    'side-by-side' returns a new array twice as wide (the original left, the blend and legend right)
    and leaves ``image`` alone.
    """
    if pixel_format == "yuv420p":
        return _render_i420(image, class_map, palette, mode, alpha, ratios, legend, scratch)
    scratch = scratch or Scratch()
    h, w = image.shape[:2]
    if mode == "blend":
        out = blend(image, class_map, palette, alpha, scratch)
    elif mode == "mask":
        out, _ = colorize(class_map, palette, w, h, scratch)
    elif mode == "side-by-side":
        out = np.empty((h, 2 * w, 3), np.uint8)
        out[:, :w] = image
        right = out[:, w:]
        right[:] = image
        blend(right, class_map, palette, alpha, scratch)
    else:
        raise ValueError(f"unknown overlay mode '{mode}' (blend, mask, side-by-side)")
    if legend:  # side by side: on the blend, so the original stays untouched
        draw_legend(out[:, w:] if mode == "side-by-side" else out, palette, ratios)
    return out


def _render_i420(
    data: np.ndarray,
    class_map: np.ndarray,
    palette: Palette,
    mode: str,
    alpha: float,
    ratios: np.ndarray | None,
    legend: bool,
    scratch: Scratch | None,
) -> np.ndarray:
    h, w = i420_size(data)
    if mode == "blend":
        out = blend_i420(data, class_map, palette, alpha, scratch)
    elif mode == "mask":
        out = colorize_i420(class_map, palette, w, h)
    elif mode == "side-by-side":
        right = blend_i420(data.copy(), class_map, palette, alpha, scratch)
        if legend:
            draw_legend_i420(right, palette, ratios)
        return hstack_i420(data, right)
    else:
        raise ValueError(f"unknown overlay mode '{mode}' (blend, mask, side-by-side)")
    if legend:
        draw_legend_i420(out, palette, ratios)
    return out


# Zone outlines in colours that stay apart from each other and from the VOC class colours'
# dark tones (BGR): yellow, cyan, magenta, orange, lime, sky, pink, white; repeated past 8.
ZONE_COLORS_BGR = (
    (0, 255, 255),
    (255, 255, 0),
    (255, 0, 255),
    (0, 140, 255),
    (0, 255, 128),
    (255, 160, 0),
    (180, 105, 255),
    (255, 255, 255),
)


def zone_thickness(height: int, width: int) -> int:
    """Outline width in pixels: 1 up to about 360p, then about one per 360 pixels of the short side."""
    return max(1, round(min(height, width) / 360))


def draw_zones(image: np.ndarray, zones: Sequence[tuple[str, Sequence[tuple[float, float]]]]) -> np.ndarray:
    """Outline each (name, polygon in normalized coordinates) and write its name at its top vertex,
    zone i in ZONE_COLORS_BGR[i % 8]; line width and text scale with the frame. In place.

    A normalized x maps to x * width - 0.5 in OpenCV's pixel-centre coordinates (the same rule as
    zones.rasterize), drawn with 4 fractional bits so small frames do not round vertices apart.
    """
    h, w = image.shape[:2]
    for name, color, pts, org, font, thick in _zone_strokes(zones, h, w):
        _stroke_zone(image, name, color, pts, org, font, thick, 0, 0)
    return image


def _zone_strokes(
    zones: Sequence[tuple[str, Sequence[tuple[float, float]]]], h: int, w: int
) -> list[tuple[str, tuple[int, int, int], np.ndarray, tuple[int, int], float, int]]:
    """Per zone: name, colour, outline (pixel coordinates), label origin, font scale, line width."""
    thick = zone_thickness(h, w)
    cap = float(min(LEGEND_MAX_CAP_PX, max(LEGEND_MIN_CAP_PX, LEGEND_CAP_RATIO * h)))
    font = cap / _HERSHEY_CAP_PX
    out = []
    for i, (name, polygon) in enumerate(zones):
        color = ZONE_COLORS_BGR[i % len(ZONE_COLORS_BGR)]
        p = np.asarray(polygon, dtype=np.float64) * (w, h) - 0.5
        top = p[int(np.argmin(p[:, 1]))]
        # beside the top vertex, above it where there is room (below the top edge otherwise)
        org = (int(np.clip(top[0] + thick + 2, 0, w - 1)), int(np.clip(top[1] - thick - 2, cap + thick + 2, h - 1)))
        out.append((name, color, p, org, font, thick))
    return out


def _stroke_zone(
    image: np.ndarray,
    name: str,
    color: tuple[int, int, int],
    p: np.ndarray,
    org: tuple[int, int],
    font: float,
    thick: int,
    dx: int,
    dy: int,
) -> None:
    """One zone's outline and label, into an image whose top-left pixel is the frame's (dx, dy)."""
    pts = np.round((p - (dx, dy)) * 16).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(image, [pts], True, color, thick, cv2.LINE_8, shift=4)
    at = (org[0] - dx, org[1] - dy)
    cv2.putText(image, name, at, cv2.FONT_HERSHEY_SIMPLEX, font, color, max(1, thick // 2 + 1), cv2.LINE_AA)


def draw_zones_i420(data: np.ndarray, zones: Sequence[tuple[str, Sequence[tuple[float, float]]]]) -> np.ndarray:
    """``draw_zones`` on an I420 picture, in place: each outline is drawn on the planes themselves
    (luma at full, chroma at half resolution, in the colour's Y, U and V), so a zone as large as the
    frame costs what it costs on BGR; only the label's small box goes through BGR and back."""
    h, w = i420_size(data)
    y, u, v = planes(data)
    for name, color, p, org, font, thick in _zone_strokes(zones, h, w):
        yy, uu, vv = (int(c) for c in bgr_colors_to_yuv(np.array([color], np.uint8))[0])
        cv2.polylines(y, [np.round(p * 16).astype(np.int32).reshape(-1, 1, 2)], True, yy, thick, cv2.LINE_8, shift=4)
        half = np.round(((p + 0.5) / 2 - 0.5) * 16).astype(np.int32).reshape(-1, 1, 2)  # pixel centres at half size
        for plane, value in ((u, uu), (v, vv)):
            cv2.polylines(plane, [half], True, value, max(1, round(thick / 2)), cv2.LINE_8, shift=4)
        text_thick = max(1, thick // 2 + 1)
        (tw, th), base = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, font, text_thick)
        box = (org[0] - 2, org[1] - th - 2, org[0] + tw + 2, org[1] + base + 2)
        label = functools.partial(_label, name=name, org=org, font=font, color=color, thick=text_thick)
        edit_as_bgr(data, (max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3])), label)
    return data


def _label(
    roi: np.ndarray,
    dx: int,
    dy: int,
    *,
    name: str,
    org: tuple[int, int],
    font: float,
    color: tuple[int, int, int],
    thick: int,
) -> None:
    cv2.putText(roi, name, (org[0] - dx, org[1] - dy), cv2.FONT_HERSHEY_SIMPLEX, font, color, thick, cv2.LINE_AA)


def draw_zone_outlines(
    picture: Picture, zones: Sequence[tuple[str, Sequence[tuple[float, float]]]], side_by_side: bool
) -> None:
    """Zone outlines on an output picture, in place, whatever its pixel format; side by side, on the
    blend (the right half), so the original stays untouched."""
    draw_on(picture, side_by_side, lambda image: draw_zones(image, zones), lambda data: draw_zones_i420(data, zones))


def draw_on(
    picture: Picture,
    side_by_side: bool,
    on_bgr: Callable[[np.ndarray], object],
    on_i420: Callable[[np.ndarray], object],
) -> None:
    """Draw on an output picture in place with the function for its pixel format; side by side, only
    on the blend (the right half)."""
    data = picture.data
    if picture.pixel_format == "bgr24":
        on_bgr(data[:, data.shape[1] // 2 :] if side_by_side else data)
    elif side_by_side:
        w = picture.size[1]
        right = crop_i420(data, w // 2, w)
        on_i420(right)
        paste_i420(data, right, w // 2)
    else:
        on_i420(data)
