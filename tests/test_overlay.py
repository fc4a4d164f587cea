"""streamseg/overlay.py against straightforward numpy references: nearest upscaling by index
arithmetic, per-pixel alpha blending, and a palette that never invents colors."""

from __future__ import annotations

import numpy as np
import pytest

from streamseg.overlay import Scratch, blend, colorize, draw_legend, make_palette, render

NAMES = ["background", "person", "car"]
COLORS_RGB = [(0, 0, 0), (255, 56, 56), (10, 200, 30)]

# The 21 PASCAL VOC classes and their usual colors.
VOC_NAMES = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]
VOC_COLORS = [
    ((c >> 0 & 1) << 7 | (c >> 3 & 1) << 6, (c >> 1 & 1) << 7 | (c >> 4 & 1) << 6, (c >> 2 & 1) << 7) for c in range(21)
]


def centre_index(src: int, dst: int) -> np.ndarray:
    """Output pixel i takes the source pixel under its centre: floor((i + 0.5) * src / dst).

    Where the centre falls exactly on a source boundary either neighbour is right (OpenCV's fixed
    point picks one or the other); the references here refuse such sizes (odd sources never tie).
    """
    num = (2 * np.arange(dst) + 1) * src
    assert not (num % (2 * dst) == 0).any(), f"{src} -> {dst} has exact ties; pick an odd source size"
    return num // (2 * dst)


def nearest(class_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize by index arithmetic, pixel centres aligned."""
    h, w = class_map.shape
    return class_map[centre_index(h, height)][:, centre_index(w, width)]


def colors_in(image: np.ndarray) -> set[tuple[int, int, int]]:
    """The distinct BGR colors of a picture."""
    packed = np.unique(
        image[..., 0].astype(np.uint32) | image[..., 1].astype(np.uint32) << 8 | image[..., 2].astype(np.uint32) << 16
    )
    return {(int(v) & 255, int(v) >> 8 & 255, int(v) >> 16) for v in packed}


def reference_blend(
    image: np.ndarray, class_map: np.ndarray, colors_bgr: np.ndarray, painted: np.ndarray, alpha: float
):
    labels = nearest(class_map, *image.shape[:2])
    mixed = np.rint(image * (1 - alpha) + colors_bgr[labels] * alpha)
    return np.where(painted[labels][..., None], mixed, image).astype(np.uint8)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(4)


def test_palette_is_bgra_with_see_through_background() -> None:
    p = make_palette(NAMES, COLORS_RGB)
    assert p.colors_bgr == ((0, 0, 0), (56, 56, 255), (30, 200, 10))
    assert p.lut[:3].tolist() == [[0, 0, 0, 0], [56, 56, 255, 255], [30, 200, 10, 255]]
    assert not p.lut[3:].any()
    assert make_palette(NAMES, COLORS_RGB, transparent=[]).lut[0, 3] == 255
    assert make_palette(NAMES, COLORS_RGB, transparent=["car"]).lut[:3, 3].tolist() == [255, 255, 0]


@pytest.mark.parametrize(
    ("names", "colors", "transparent", "error"),
    [
        (["a", "b"], [(0, 0, 0)], None, "2 names but 1 colors"),
        (["a", "b"], [(0, 0, 0), (1, 1, 1)], ["c", "d"], "transparent names unknown classes: c, d"),
    ],
)
def test_palette_errors(
    names: list[str], colors: list[tuple[int, int, int]], transparent: list[str] | None, error: str
):
    with pytest.raises(ValueError, match=error):
        make_palette(names, colors, transparent)


@pytest.mark.parametrize(("height", "width"), [(36, 48), (37, 53), (271, 481), (1, 1)])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_blend_matches_reference(rng: np.random.Generator, height: int, width: int, alpha: float) -> None:
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    cmap = rng.integers(0, 3, (9, 15), dtype=np.uint8)
    p = make_palette(NAMES, COLORS_RGB)
    expected = reference_blend(image, cmap, np.array(p.colors_bgr), p.lut[:3, 3] == 255, alpha)
    out = blend(image.copy(), cmap, p, alpha)
    assert out.shape == image.shape
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_blend_writes_into_the_image(rng: np.random.Generator) -> None:
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    before = image.copy()
    out = blend(image, np.ones((4, 6), np.uint8), make_palette(NAMES, COLORS_RGB), 0.5)
    assert out is image
    assert not np.array_equal(image, before)


def test_blend_when_shrinking_skips_every_painted_pixel(rng: np.random.Generator) -> None:
    # A 9x9 map shown at 3x3 reads source rows/cols 1, 4, 7: a class painted only at (0, 0)
    # reaches no output pixel, and the painted box is empty.
    image = rng.integers(0, 256, (3, 3, 3), dtype=np.uint8)
    cmap = np.zeros((9, 9), np.uint8)
    cmap[0, 0] = 1
    p = make_palette(NAMES, COLORS_RGB)
    out = blend(image.copy(), cmap, p, 0.5)
    np.testing.assert_array_equal(out, reference_blend(image, cmap, np.array(p.colors_bgr), p.lut[:3, 3] == 255, 0.5))
    np.testing.assert_array_equal(out, image)


def test_transparent_classes_leave_pixels_unchanged_exactly(rng: np.random.Generator) -> None:
    image = rng.integers(0, 256, (45, 80, 3), dtype=np.uint8)
    cmap = rng.integers(0, 3, (9, 15), dtype=np.uint8)
    p = make_palette(NAMES, COLORS_RGB, transparent=["background", "car"])
    out = blend(image.copy(), cmap, p, 0.7)
    labels = nearest(cmap, 45, 80)
    see_through = labels != 1
    assert see_through.any() and (~see_through).any()
    np.testing.assert_array_equal(out[see_through], image[see_through])
    assert (out[~see_through] != image[~see_through]).any()


def test_all_transparent_is_identity(rng: np.random.Generator) -> None:
    image = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    p = make_palette(NAMES, COLORS_RGB, transparent=NAMES)
    np.testing.assert_array_equal(blend(image.copy(), rng.integers(0, 3, (7, 9), dtype=np.uint8), p, 0.5), image)


@pytest.mark.parametrize(("height", "width"), [(360, 640), (37, 53), (1080, 1920)])
def test_mask_mode_only_uses_palette_colors(rng: np.random.Generator, height: int, width: int) -> None:
    cmap = rng.integers(0, 21, (143, 255), dtype=np.uint8)  # odd: no ties (see centre_index)
    p = make_palette(VOC_NAMES, VOC_COLORS)
    image = np.zeros((height, width, 3), np.uint8)
    out = render(image, cmap, p, "mask", 0.5, legend=False)
    np.testing.assert_array_equal(out, np.array(p.colors_bgr, np.uint8)[nearest(cmap, height, width)])
    assert colors_in(out) <= set(p.colors_bgr)


def test_colorize_mask_marks_painted_pixels(rng: np.random.Generator) -> None:
    cmap = rng.integers(0, 3, (5, 9), dtype=np.uint8)
    color, mask = colorize(cmap, make_palette(NAMES, COLORS_RGB), 25, 15)
    assert color.shape == (15, 25, 3) and mask.shape == (15, 25)
    np.testing.assert_array_equal(mask, np.where(nearest(cmap, 15, 25) == 0, 0, 255))


def test_twenty_one_classes(rng: np.random.Generator) -> None:
    p = make_palette(VOC_NAMES, VOC_COLORS)
    assert p.num_classes == 21
    assert len(set(p.colors_bgr)) == 21
    cmap = np.arange(21, dtype=np.uint8).reshape(3, 7)
    out = render(np.zeros((30, 70, 3), np.uint8), cmap, p, "mask", 0.5, legend=False)
    assert colors_in(out) == set(p.colors_bgr)
    ratios = np.full(21, 1 / 21)
    image = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
    assert render(image, cmap, p, "blend", 0.5, ratios).shape == (360, 640, 3)


def test_side_by_side_keeps_the_input_on_the_left(rng: np.random.Generator) -> None:
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    before = image.copy()
    cmap = rng.integers(0, 3, (8, 12), dtype=np.uint8)
    p = make_palette(NAMES, COLORS_RGB)
    out = render(image, cmap, p, "side-by-side", 0.5, legend=False)
    assert out.shape == (37, 106, 3)
    np.testing.assert_array_equal(out[:, :53], before)
    np.testing.assert_array_equal(out[:, 53:], blend(before.copy(), cmap, p, 0.5))
    np.testing.assert_array_equal(image, before)


def _legend_change(image: np.ndarray, ratios: np.ndarray | None) -> np.ndarray:
    p = make_palette(VOC_NAMES, VOC_COLORS)
    return draw_legend(image.copy(), p, ratios) != image


@pytest.mark.parametrize(("height", "width"), [(360, 640), (1080, 1920), (271, 481)])
def test_legend_draws_in_the_top_left_only(rng: np.random.Generator, height: int, width: int) -> None:
    image = rng.integers(60, 256, (height, width, 3), dtype=np.uint8)
    changed = _legend_change(image, rng.dirichlet(np.ones(21))).any(axis=2)
    ys, xs = np.nonzero(changed)
    assert len(ys) > 100
    assert ys.max() < height // 2 and xs.max() < width // 2
    assert changed[: height // 8, : width // 8].any()


def test_render_legend_flag(rng: np.random.Generator) -> None:
    image = rng.integers(60, 256, (360, 640, 3), dtype=np.uint8)
    cmap = rng.integers(0, 3, (9, 15), dtype=np.uint8)
    p = make_palette(NAMES, COLORS_RGB)
    ratios = np.array([0.5, 0.3, 0.2])
    with_legend = render(image.copy(), cmap, p, "blend", 0.5, ratios, legend=True)
    without = render(image.copy(), cmap, p, "blend", 0.5, ratios, legend=False)
    diff = (with_legend != without).any(axis=2)
    assert diff.any()
    assert not diff[180:, :].any() and not diff[:, 320:].any()


@pytest.mark.parametrize("mode", ["blend", "mask", "side-by-side"])
@pytest.mark.parametrize(("height", "width"), [(1, 1), (1, 7), (5, 1), (3, 2), (23, 17)])
def test_tiny_frames_render_and_skip_the_legend(height: int, width: int, mode: str) -> None:
    image = np.full((height, width, 3), 128, np.uint8)
    cmap = np.array([[0, 1], [2, 1]], np.uint8)
    p = make_palette(NAMES, COLORS_RGB)
    ratios = np.array([0.25, 0.5, 0.25])
    with_legend = render(image.copy(), cmap, p, mode, 0.5, ratios, legend=True, scratch=Scratch())
    without = render(image.copy(), cmap, p, mode, 0.5, ratios, legend=False, scratch=Scratch())
    assert with_legend.shape == ((height, 2 * width, 3) if mode == "side-by-side" else (height, width, 3))
    np.testing.assert_array_equal(with_legend, without)


def test_scratch_reuse_across_sizes(rng: np.random.Generator) -> None:
    scratch = Scratch()
    p = make_palette(NAMES, COLORS_RGB)
    cmap = rng.integers(0, 3, (8, 12), dtype=np.uint8)
    for height, width in [(40, 60), (41, 61), (40, 60)] * 8:
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        out = render(image.copy(), cmap, p, "blend", 0.4, legend=False, scratch=scratch)
        np.testing.assert_array_equal(out, blend(image.copy(), cmap, p, 0.4))


def test_unknown_mode() -> None:
    with pytest.raises(ValueError, match="unknown overlay mode 'sparkle'"):
        render(
            np.zeros((4, 4, 3), np.uint8), np.zeros((2, 2), np.uint8), make_palette(NAMES, COLORS_RGB), "sparkle", 0.5
        )


def _legend_geometry(height: int, width: int) -> tuple[tuple[int, int, int, int] | None, list[int]]:
    """Draw a 3-row legend (capitals and digits only: no descenders) on flat grey; return the
    darkened box (y0, y1, x0, x1) inclusive, or None when nothing was drawn, and the pixel height
    of each row of white text, measured on the picture."""
    grey = 150
    image = np.full((height, width, 3), grey, np.uint8)
    p = make_palette(["SKY", "ROAD", "CAR"], COLORS_RGB, transparent=[])
    draw_legend(image, p, np.array([0.125, 0.5, 0.375]))
    changed = (image != grey).any(axis=2)
    if not changed.any():
        return None, []
    ys, xs = np.nonzero(changed)
    box = (int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max()))
    white = (image >= 200).all(axis=2).any(axis=1)
    runs, start = [], None
    for y, on in enumerate([*white, False]):
        if on and start is None:
            start = y
        elif not on and start is not None:
            runs.append(y - start)
            start = None
    return box, runs


def _assert_inside(box: tuple[int, int, int, int], height: int, width: int) -> None:
    y0, y1, x0, x1 = box
    assert y0 >= 2 and x0 >= 2 and y1 <= height - 3 and x1 <= width - 3, (box, height, width)


@pytest.mark.parametrize(
    ("height", "width", "rows"),
    [(90, 160, 3), (180, 320, 3), (360, 640, 3), (1080, 1920, 3), (2160, 3840, 3)],
)
def test_legend_text_scales_with_the_frame_and_stays_inside(height: int, width: int, rows: int) -> None:
    box, runs = _legend_geometry(height, width)
    assert box is not None
    _assert_inside(box, height, width)
    assert len(runs) == rows
    # capitals measured on the picture: ~2.5 % of the height, never below 7 px (legible)
    low, high = max(6, 0.02 * height), max(10, 0.033 * height)
    assert all(low <= r <= high for r in runs), (runs, low, high)
    assert box[1] - box[0] <= 0.6 * height  # the picture stays visible
    if height >= 2160:
        assert min(runs) >= 45  # not tiny at 4K (the old legend drew 24 px capitals there)


@pytest.mark.parametrize(("height", "width"), [(1600, 90), (90, 100), (60, 320), (2160, 120), (30, 400)])
def test_legend_on_awkward_frames_is_whole_or_absent(height: int, width: int) -> None:
    box, runs = _legend_geometry(height, width)
    if box is None:
        return
    _assert_inside(box, height, width)
    assert runs and min(runs) >= 5  # a shrunk font stays legible
    y0, y1, x0, x1 = box
    image = np.full((height, width, 3), 150, np.uint8)
    draw_legend(image, make_palette(["SKY", "ROAD", "CAR"], COLORS_RGB, transparent=[]), np.array([0.1, 0.5, 0.4]))
    edges = np.concatenate([image[y0 : y1 + 1, x1], image[y1, x0 : x1 + 1]])
    assert (edges == 50).all()  # the text never reaches the box's right or bottom edge (not clipped)


def test_side_by_side_draws_the_legend_on_the_blend_only(rng: np.random.Generator) -> None:
    image = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
    cmap = rng.integers(0, 3, (9, 15), dtype=np.uint8)
    p = make_palette(NAMES, COLORS_RGB)
    out = render(image.copy(), cmap, p, "side-by-side", 0.5, np.array([0.5, 0.3, 0.2]))
    np.testing.assert_array_equal(out[:, :640], image)
    assert (out[:, 640:] != blend(image.copy(), cmap, p, 0.5)).any()
