"""streamseg/zones.py: exact class shares inside polygons, ground square metres through a
homography, zone outlines on the overlay, validation as one line, and a real run's JSONL and series."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.path import Path as MplPath
from prometheus_client.parser import text_string_to_metric_families

from streamseg.config import parse_config
from streamseg.errors import ConfigError
from streamseg.overlay import draw_zones, zone_thickness
from streamseg.pipeline import Pipeline
from streamseg.zones import (
    HomographyConfig,
    ZoneConfig,
    ZoneMeter,
    map_points,
    pixel_ground_area,
    polygon_area,
    rasterize,
)

# --- rasterization: a pixel is in iff its centre is ----------------------------------------------


def centres_inside(polygon: list[tuple[float, float]], shape: tuple[int, int]) -> np.ndarray:
    """The reference: matplotlib's point-in-polygon on every pixel centre (normalized coordinates)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    pts = np.c_[((xx + 0.5) / w).ravel(), ((yy + 0.5) / h).ravel()]
    return np.asarray(MplPath(polygon).contains_points(pts)).reshape(h, w)


@pytest.mark.parametrize("seed", range(6))
def test_a_polygon_mask_equals_the_pixel_centre_test(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # A star (non-convex) with random radii: no centre lies on an edge but by accident of measure 0.
    n = int(rng.integers(3, 9))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(0.1, 0.45, n)
    polygon = [(0.5 + r * np.cos(a), 0.5 + r * np.sin(a)) for r, a in zip(radii, angles, strict=True)]
    shape = (int(rng.integers(20, 90)), int(rng.integers(20, 90)))
    expected = centres_inside(polygon, shape)
    assert expected.any()
    np.testing.assert_array_equal(rasterize(polygon, shape), expected)


def test_a_triangle_counts_the_pixels_whose_centres_it_holds() -> None:
    triangle = [(0.1, 0.13), (0.93, 0.31), (0.37, 0.88)]
    got = rasterize(triangle, (48, 64))
    assert int(got.sum()) == int(centres_inside(triangle, (48, 64)).sum())
    # and the count is close to the area: the error is at most the pixels the edges pass through
    assert abs(got.sum() - polygon_area(triangle) * 48 * 64) < 2 * (48 + 64)


def test_centres_on_an_edge_belong_to_the_left_and_top_zone_only() -> None:
    # width 4: pixel centres at x = 0.125, 0.375, 0.625, 0.875; edges exactly through centres 0 and 2
    left = [(0.125, 0.0), (0.625, 0.0), (0.625, 1.0), (0.125, 1.0)]
    np.testing.assert_array_equal(rasterize(left, (2, 4)), [[True, True, False, False]] * 2)
    # two zones sharing an edge partition the picture: no pixel counted twice, none lost
    a = [(0.0, 0.0), (0.4, 0.0), (0.6, 1.0), (0.0, 1.0)]
    b = [(0.4, 0.0), (1.0, 0.0), (1.0, 1.0), (0.6, 1.0)]
    ma, mb = rasterize(a, (37, 53)), rasterize(b, (37, 53))
    assert not (ma & mb).any() and (ma | mb).all()


def test_the_whole_picture_is_every_pixel() -> None:
    assert rasterize([(0, 0), (1, 0), (1, 1), (0, 1)], (7, 11)).all()


# --- exact class shares ---------------------------------------------------------------------------


def zone(name: str, polygon: list[tuple[float, float]], ground: bool = False) -> ZoneConfig:
    return ZoneConfig(name=name, polygon=polygon, ground=ground)


def rect_map() -> np.ndarray:
    """40 x 60 map: class 1 in rows 10-29 of columns 0-19, class 2 in columns 45-59."""
    cm = np.zeros((40, 60), np.uint8)
    cm[10:30, 0:20] = 1
    cm[:, 45:60] = 2
    return cm


def test_a_half_plane_zone_gets_exact_ratios() -> None:
    meter = ZoneMeter([zone("left", [(0, 0), (0.5, 0), (0.5, 1), (0, 1)])], num_classes=3)
    (areas,) = meter.measure(rect_map())
    # left half: columns 0-29, 40 x 30 = 1200 pixels; 20 x 20 = 400 of class 1, none of class 2
    assert areas.zone == "left" and areas.pixels == 1200
    assert areas.ratios.tolist() == [800 / 1200, 400 / 1200, 0.0]
    assert areas.square_meters is None and areas.zone_square_meters is None


def test_each_zone_is_counted_on_its_own_pixels() -> None:
    zones = [
        zone("right", [(0.5, 0), (1, 0), (1, 1), (0.5, 1)]),
        zone("band", [(0, 0.25), (1, 0.25), (1, 0.5), (0, 0.5)]),  # rows 10-19, all columns
    ]
    right, band = ZoneMeter(zones, 3).measure(rect_map())
    assert (right.pixels, right.ratios.tolist()) == (1200, [600 / 1200, 0.0, 600 / 1200])
    assert (band.pixels, band.ratios.tolist()) == (600, [250 / 600, 200 / 600, 150 / 600])


def test_masks_are_built_once_per_map_shape() -> None:
    tri = [(0.0, 0.0), (1.0, 0.0), (0.0, 0.9)]  # no pixel centre on its slanted edge at 10x10 or 4x4
    meter = ZoneMeter([zone("z", tri)], 2)
    meter.measure(np.zeros((10, 10), np.uint8))
    first = meter._rasters((10, 10))
    meter.measure(np.ones((10, 10), np.uint8))
    assert meter._rasters((10, 10)) is first
    (small,) = meter.measure(np.ones((4, 4), np.uint8))
    assert small.pixels == int(centres_inside(tri, (4, 4)).sum())


def test_a_zone_smaller_than_a_pixel_reports_zeros_not_nan() -> None:
    (areas,) = ZoneMeter([zone("dot", [(0.01, 0.01), (0.02, 0.01), (0.02, 0.02)])], 2).measure(
        np.ones((4, 4), np.uint8)
    )
    assert areas.pixels == 0 and areas.ratios.tolist() == [0.0, 0.0]


# --- square metres --------------------------------------------------------------------------------

CORNERS = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]


def test_a_scaling_homography_gives_every_pixel_s_squared() -> None:
    h, w, s = 48, 64, 0.25  # a 64 x 48 map, each pixel 0.25 m wide: 0.0625 m^2
    hom = HomographyConfig(image=CORNERS, ground=[(0, 0), (w * s, 0), (w * s, h * s), (0, h * s)])
    np.testing.assert_array_equal(pixel_ground_area(hom.matrix(), (h, w)), np.full((h, w), s * s))
    meter = ZoneMeter([zone("yard", [(0, 0), (0.5, 0), (0.5, 1), (0, 1)], ground=True)], 3, hom)
    cm = np.zeros((h, w), np.uint8)
    cm[:12, :8] = 1  # 96 pixels
    cm[:, 40:] = 2  # outside the zone
    (areas,) = meter.measure(cm)
    assert areas.square_meters is not None
    assert areas.square_meters.tolist() == [(32 * 48 - 96) * s * s, 96 * s * s, 0.0]
    assert areas.zone_square_meters == pytest.approx(w * s * h * s / 2, rel=1e-12)


def test_under_perspective_pixel_footprints_sum_to_the_mapped_polygon_area() -> None:
    # A road seen from above the camera: the image trapezoid is a 10 m x 40 m ground rectangle.
    hom = HomographyConfig(
        image=[(0.4, 0.3), (0.6, 0.3), (0.95, 0.95), (0.05, 0.95)], ground=[(0, 40), (10, 40), (10, 0), (0, 0)]
    )
    m = hom.matrix()
    road = [(0.3, 0.5), (0.7, 0.5), (0.8, 0.9), (0.2, 0.9)]
    shape = (360, 640)
    cm = np.zeros(shape, np.uint8)
    cm[: shape[0] * 7 // 10] = 1  # class 1 above y = 0.7, class 0 below
    (areas,) = ZoneMeter([zone("road", road, ground=True)], 2, hom).measure(cm)
    assert areas.square_meters is not None and areas.zone_square_meters is not None
    zone_m2 = polygon_area(map_points(m, road))
    assert areas.zone_square_meters == pytest.approx(zone_m2, rel=1e-12)
    assert areas.square_meters.sum() == pytest.approx(zone_m2, rel=0.01)
    # per class against the mapped polygon of the class's part of the zone (the cut at y = 0.7)

    def x_at(y: float, a: tuple[float, float], b: tuple[float, float]) -> float:
        return a[0] + (b[0] - a[0]) * (y - a[1]) / (b[1] - a[1])

    far = [road[0], road[1], (x_at(0.7, road[1], road[2]), 0.7), (x_at(0.7, road[0], road[3]), 0.7)]
    near = [far[3], far[2], road[2], road[3]]
    assert areas.square_meters[1] == pytest.approx(polygon_area(map_points(m, far)), rel=0.01)
    assert areas.square_meters[0] == pytest.approx(polygon_area(map_points(m, near)), rel=0.01)
    # why per-pixel weights: the far half of the zone's pixels covers much more ground than the near
    assert abs(areas.ratios[1] * zone_m2 - polygon_area(map_points(m, far))) > 0.1 * zone_m2


# --- validation: one line, file:line: key.path: message --------------------------------------------

HEAD = "sources:\n  - name: cam\n    uri: synthetic://\n"
TAIL = "model:\n  path: selfie_landscape\n"
SQUARE = "[[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]"
HOM = "    homography:\n      image: " + SQUARE + "\n      ground: [[0, 0], [8, 0], [8, 8], [0, 8]]\n"


def zones_yaml(*items: str, homography: str = "") -> str:
    return HEAD + homography + "    zones:\n" + "".join(f"      - {i}\n" for i in items) + TAIL


# (name, text, line, key path, message fragment)
BAD = [
    ("two points", zones_yaml("{name: a, polygon: [[0, 0], [1, 1]]}"), 5, "sources.0.zones.0.polygon", "at least 3"),
    ("out of range", zones_yaml("{name: a, polygon: [[0, 0], [1.5, 0], [1, 1]]}"), 5, "sources.0.zones.0.polygon.1.0",
     "less than or equal to 1"),
    ("not finite", zones_yaml("{name: a, polygon: [[0, 0], [.nan, 0], [1, 1]]}"), 5, "sources.0.zones.0.polygon.1.0",
     "finite"),
    ("collinear", zones_yaml("{name: a, polygon: [[0, 0], [0.5, 0.5], [1, 1]]}"), 5, "sources.0.zones.0.polygon",
     "polygon encloses no area"),
    ("repeated vertex", zones_yaml("{name: a, polygon: [[0, 0], [1, 0], [1, 0], [1, 1]]}"), 5,
     "sources.0.zones.0.polygon", "points 1 and 2 are the same point"),
    ("bad name", zones_yaml("{name: 'a b', polygon: " + SQUARE + "}"), 5, "sources.0.zones.0.name", "pattern"),
    ("unknown key", zones_yaml("{name: a, polygon: " + SQUARE + ", colour: red}"), 5, "sources.0.zones.0.colour",
     "unknown key"),
    ("duplicate names", zones_yaml("{name: a, polygon: " + SQUARE + "}", "{name: a, polygon: " + SQUARE + "}"), 5,
     "sources.0.zones", "zone 1: name 'a' is used twice"),
    ("ground without homography", zones_yaml("{name: a, polygon: " + SQUARE + ", ground: true}"), 5,
     "sources.0.zones", "zone 'a' is a ground zone but the stream has no homography"),
    ("homography three points", HEAD + "    homography:\n      image: [[0, 0], [1, 0], [1, 1]]\n"
     "      ground: [[0, 0], [1, 0], [1, 1], [0, 1]]\n" + TAIL, 5, "sources.0.homography.image", "at least 4"),
    ("homography points in line", HEAD + "    homography:\n      image: [[0, 0], [0.5, 0.5], [1, 1], [0, 1]]\n"
     "      ground: [[0, 0], [1, 0], [1, 1], [0, 1]]\n" + TAIL, 5, "sources.0.homography.image",
     "points [0, 1, 2] lie on one line"),
    ("homography ground in line", HEAD + "    homography:\n      image: " + SQUARE + "\n"
     "      ground: [[0, 0], [1, 0], [2, 0], [0, 1]]\n" + TAIL, 6, "sources.0.homography.ground",
     "points [0, 1, 2] lie on one line"),
    ("homography image out of range", HEAD + "    homography:\n      image: [[0, 0], [2, 0], [1, 1], [0, 1]]\n"
     "      ground: [[0, 0], [1, 0], [1, 1], [0, 1]]\n" + TAIL, 5, "sources.0.homography.image.1.0",
     "less than or equal to 1"),
    ("horizon crosses a ground zone",
     HEAD + "    homography:\n      image: [[0.4, 0.5], [0.6, 0.5], [0.9, 0.9], [0.1, 0.9]]\n"
     "      ground: [[0, 50], [10, 50], [10, 0], [0, 0]]\n"
     "    zones:\n      - {name: sky, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]], ground: true}\n" + TAIL,
     8, "sources.0.zones", "zone 'sky': the homography's horizon crosses the polygon"),
    ("overlay zones not a bool", HEAD + TAIL + "overlay: {zones: maybe}\n", 6, "overlay.zones", "valid boolean"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "key", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_zone_config_is_one_line(text: str, line: int, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "p.yaml")
    message = str(info.value)
    assert message.startswith(f"p.yaml:{line}: {key}: "), message
    assert fragment in message, message
    assert "\n" not in message


def test_good_zones_validate() -> None:
    cfg = parse_config(
        zones_yaml("{name: a, polygon: " + SQUARE + ", ground: true}", "{name: b, polygon: [[0, 0], [1, 0], [0, 1]]}",
                   homography=HOM), "p.yaml"
    )  # fmt: skip
    s = cfg.sources[0]
    assert [z.name for z in s.zones] == ["a", "b"] and s.zones[0].ground and not s.zones[1].ground
    assert s.homography is not None and cfg.overlay.zones
    assert parse_config(HEAD + TAIL, "p.yaml").sources[0].zones == []


# --- overlay ----------------------------------------------------------------------------------------


def distance_to_outline(polygon: list[tuple[float, float]], shape: tuple[int, int]) -> np.ndarray:
    """Distance in pixels from each pixel centre to the polygon's outline (OpenCV pixel coordinates)."""
    h, w = shape
    p = np.asarray(polygon) * (w, h) - 0.5
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    best = np.full(shape, np.inf)
    for a, b in zip(p, np.roll(p, -1, axis=0), strict=True):
        d = b - a
        t = np.clip(((xx - a[0]) * d[0] + (yy - a[1]) * d[1]) / (d @ d), 0, 1)
        best = np.minimum(best, np.hypot(xx - a[0] - t * d[0], yy - a[1] - t * d[1]))
    return best


def test_the_overlay_outlines_a_zone_and_leaves_the_rest() -> None:
    polygon = [(0.2, 0.2), (0.8, 0.3), (0.5, 0.85)]
    for shape in [(120, 160), (1080, 1920)]:
        image = np.full((*shape, 3), 40, np.uint8)
        before = image.copy()
        out = draw_zones(image, [("", polygon)])  # no name: only the outline
        assert out is image
        changed = (image != before).any(axis=2)
        dist = distance_to_outline(polygon, shape)
        t = zone_thickness(*shape)
        # Every point of the outline has a drawn pixel within one pixel (OpenCV's 1-pixel lines round
        # their ends to whole pixels, so the exact centre-line pixel may be its neighbour).
        near = np.zeros_like(changed)
        padded = np.pad(changed, 1)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                near |= padded[dy : dy + shape[0], dx : dx + shape[1]]
        corners = np.asarray(polygon) * (shape[1], shape[0]) - 0.5
        for a, b in zip(corners, np.roll(corners, -1, axis=0), strict=True):
            for f in np.linspace(0, 1, 400):
                x, y = np.round(a + f * (b - a)).astype(int)
                assert near[y, x], (shape, x, y)
        assert not changed[dist > t + 1].any()  # nothing away from it
    assert zone_thickness(1080, 1920) > zone_thickness(120, 160) == 1


def test_zone_names_and_colours() -> None:
    shape = (240, 320)
    image = np.zeros((*shape, 3), np.uint8)
    polygons = [[(0.1, 0.3), (0.4, 0.3), (0.4, 0.9)], [(0.6, 0.3), (0.9, 0.3), (0.9, 0.9)]]
    draw_zones(image, [("a", polygons[0]), ("b", polygons[1])])
    colours = [{tuple(c) for c in image[distance_to_outline(p, shape) < 0.3]} for p in polygons]
    assert len(colours[0]) == len(colours[1]) == 1 and colours[0] != colours[1]
    # the name sits above the top edge, inside the picture
    above = image[: int(0.3 * shape[0]) - 1, : shape[1] // 2]
    assert above.any()


# --- a real run ---------------------------------------------------------------------------------------


def test_a_run_writes_zone_ratios_and_series(tmp_path: Path) -> None:
    w, h, s = 64, 48, 0.5
    cfg = parse_config(
        f"""
sources:
  - name: cam
    uri: "synthetic://?width={w}&height={h}&frames=4"
    homography:
      image: [[0, 0], [1, 0], [1, 1], [0, 1]]
      ground: [[0, 0], [{w * s}, 0], [{w * s}, {h * s}], [0, {h * s}]]
    zones:
      - {{name: all, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]], ground: true}}
      - {{name: left, polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}}
      - {{name: right, polygon: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}}
  - name: plain
    uri: "synthetic://?width={w}&height={h}&frames=2"
model: {{path: selfie_landscape}}
outputs:
  - {{type: jsonl, path: "{tmp_path}/stats.jsonl"}}
  - {{type: snapshot, path: "{tmp_path}/snap/{{stream}}", every: 1}}
http: {{enabled: false}}
""",
        "test.yaml",
    )
    p = Pipeline(cfg)
    summary = p.run()
    assert summary.frames == {"cam": 4, "plain": 2}
    records = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    cam = [r for r in records if r["stream"] == "cam"]
    assert len(cam) == 4
    for r in cam:
        whole = r["class_area_ratio"]
        zones = r["zones"]
        assert set(zones) == {"all", "left", "right"}
        # the whole picture as a zone is the frame's own ratio; two equal halves average to it
        assert zones["all"] == whole
        for name, ratio in whole.items():
            assert (zones["left"][name] + zones["right"][name]) / 2 == pytest.approx(ratio, abs=1e-15)
        ground = r["zones_square_meters"]
        assert set(ground) == {"all"}
        assert ground["all"]["zone"] == pytest.approx(w * s * h * s, rel=1e-9)
        for name, m2 in ground["all"]["classes"].items():
            assert m2 == pytest.approx(whole[name] * w * s * h * s, rel=1e-9)
    assert all("zones" not in r and "zones_square_meters" not in r for r in records if r["stream"] == "plain")

    samples = {
        (x.name, tuple(sorted(x.labels.items()))): x.value
        for family in text_string_to_metric_families(p.metrics.exposition().decode())
        for x in family.samples
    }
    last = cam[-1]
    for zname in ("all", "left", "right"):
        for cls, ratio in last["zones"][zname].items():
            key = ("streamseg_zone_class_area_ratio", (("class", cls), ("stream", "cam"), ("zone", zname)))
            assert samples[key] == ratio
    for cls, m2 in last["zones_square_meters"]["all"]["classes"].items():
        key = ("streamseg_zone_class_area_square_meters", (("class", cls), ("stream", "cam"), ("zone", "all")))
        assert samples[key] == m2
    assert not any(k[0].startswith("streamseg_zone_") and ("stream", "plain") in k[1] for k in samples)
    # only the ground zone has square metres
    assert not any(k[0] == "streamseg_zone_class_area_square_meters" and ("zone", "left") in k[1] for k in samples)


def test_zone_series_exist_at_zero_before_the_first_frame() -> None:
    from streamseg.metrics import Metrics

    m = Metrics()
    m.add_zones("cam", [zone("a", CORNERS), zone("g", CORNERS, ground=True)], ["background", "person"])
    text = m.exposition().decode()
    assert 'streamseg_zone_class_area_ratio{class="person",stream="cam",zone="a"} 0.0' in text
    assert 'streamseg_zone_class_area_square_meters{class="person",stream="cam",zone="g"} 0.0' in text
    assert 'streamseg_zone_class_area_square_meters{class="person",stream="cam",zone="a"}' not in text


@pytest.mark.parametrize("outlines", [True, False])
def test_a_run_outlines_zones_on_the_overlay_unless_switched_off(tmp_path: Path, outlines: bool) -> None:
    import cv2

    polygon = [(0.2, 0.2), (0.8, 0.3), (0.5, 0.85)]
    syn = "synthetic://?width=160&height=120&frames=2"
    cfg = parse_config(
        f"""
sources:
  - {{name: zoned, uri: "{syn}", zones: [{{name: gate, polygon: {[list(p) for p in polygon]}}}]}}
  - {{name: plain, uri: "{syn}"}}
model: {{path: selfie_landscape}}
overlay: {{zones: {str(outlines).lower()}, legend: false}}
outputs:
  - {{type: snapshot, path: "{tmp_path}/{{stream}}", every: 1, raw: false}}
http: {{enabled: false}}
""",
        "test.yaml",
    )
    assert Pipeline(cfg).run().frames == {"zoned": 2, "plain": 2}
    for name in ("000000.png", "000001.png"):
        zoned = np.asarray(cv2.imread(str(tmp_path / "zoned" / name)), np.uint8)
        plain = np.asarray(cv2.imread(str(tmp_path / "plain" / name)), np.uint8)
        assert zoned.shape == plain.shape == (120, 160, 3)
        # the same frames: the zoned stream's overlay is the plain one with the zone drawn on it
        expected = draw_zones(plain.copy(), [("gate", polygon)]) if outlines else plain
        np.testing.assert_array_equal(zoned, expected)
        assert bool(np.any(zoned != plain)) == outlines
