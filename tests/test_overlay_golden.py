"""Golden images of the three overlay modes, legend included: a small synthetic frame and a class
map with known regions, rendered by ``render`` and compared with PNGs in tests/golden/ (±1 per
channel). Look at a golden when it changes: the picture is the specification.

Regenerate after a deliberate change (then look at the new PNGs before committing them):

    STREAMSEG_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_overlay_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamseg.overlay import make_palette, render
from streamseg.postprocess import area_ratios

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("STREAMSEG_UPDATE_GOLDEN") == "1"
HEIGHT, WIDTH = 120, 200  # small, yet tall enough for a legend (text ~7 px)


def scene() -> tuple[np.ndarray, np.ndarray]:
    """(BGR frame, 24x40 class map): a blue-green gradient; a person (1) standing right of
    centre and a car (2) at the bottom left, each cell of the map 5x5 pixels."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    frame = np.dstack([x * 255 // (WIDTH - 1), y * 255 // (HEIGHT - 1), np.full_like(x, 96)]).astype(np.uint8)
    cmap = np.zeros((24, 40), np.uint8)
    cmap[4:22, 24:31] = 1  # person: 18x7 cells
    cmap[15:22, 3:17] = 2  # car: 7x14 cells
    return frame, cmap


PALETTE = make_palette(["background", "person", "car"], [(0, 0, 0), (255, 56, 56), (10, 200, 30)])


@pytest.mark.parametrize("mode", ["blend", "mask", "side-by-side"])
def test_overlay_matches_golden(mode: str, tmp_path: Path) -> None:
    frame, cmap = scene()
    ratios = area_ratios(cmap, PALETTE.num_classes)
    assert ratios.tolist() == [736 / 960, 126 / 960, 98 / 960]  # the known regions, exactly
    out = render(frame.copy(), cmap, PALETTE, mode, 0.5, ratios)
    path = GOLDEN / f"overlay-{mode}.png"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        cv2.imwrite(str(path), out)
        pytest.skip(f"wrote {path}: look at it before committing")
    expected = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert expected is not None, f"{path} is missing: run with STREAMSEG_UPDATE_GOLDEN=1"
    assert out.shape == expected.shape
    diff = np.abs(out.astype(np.int16) - expected.astype(np.int16))
    if diff.max() > 1:
        actual = tmp_path / path.name
        cv2.imwrite(str(actual), out)
        bad = np.argwhere(diff.max(axis=2) > 1)
        pytest.fail(f"{mode}: {len(bad)} pixels differ by up to {diff.max()} (first at y,x={bad[0]}); got {actual}")


def test_golden_regions_are_where_the_map_says() -> None:
    """Guards the goldens themselves: in mask mode the person and car blocks are their colors
    exactly (away from the legend), and everything else is black."""
    expected = cv2.imread(str(GOLDEN / "overlay-mask.png"), cv2.IMREAD_COLOR)
    assert expected is not None
    person, car = PALETTE.colors_bgr[1], PALETTE.colors_bgr[2]
    assert (expected[20:110, 120:155] == person).all()  # map rows 4:22, cols 24:31, 5 px each
    assert (expected[75:110, 15:85] == car).all()
    assert (expected[110:, :] == 0).all() and (expected[:, 155:] == 0).all()
