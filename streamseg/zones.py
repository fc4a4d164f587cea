"""Zones: named polygons on a stream's picture, and how much of each class lies inside them.

A zone is a polygon in normalized image coordinates (0..1, x right, y down), so one zone fits any
resolution. Each zone is rasterized once per class-map shape and cached; per frame, the class
pixels inside it are counted with ``np.bincount``, so the ratios are exact pixel counts of the class
map, not estimates.

Pixel rule (a pixel is in a zone iff its *centre* is): pixel (row i, column j) of an (h, w) map
covers [j/w, (j+1)/w) x [i/h, (i+1)/h) and its centre is ((j+0.5)/w, (i+0.5)/h). It belongs to the
zone iff that centre is inside the polygon by the even-odd rule, with half-open edges: a centre
exactly on a left or top edge is in, on a right or bottom edge is out. Two zones that share an edge
therefore never both count a pixel, and a zone's pixel count tends to its area times h*w.
``cv2.fillPoly`` is not used for the mask because it fills every pixel its outline touches (a
line-drawing rule, not a centre rule): adjacent zones would overlap by a pixel-wide seam and
counts would be biased upward by the perimeter.

With a homography (4 image points <-> 4 ground points in metres), ground zones also report square
metres: the zone's ground area is the area of the polygon whose vertices are mapped to the ground
(exact: a homography maps straight edges to straight edges), and per class the sum over the class's
pixels of each pixel's ground footprint, |det J(u, v)| / (w*h), with J the Jacobian of the
homography at the pixel centre (``np.bincount(labels, weights=...)``). ``ratio x zone m2`` would be
wrong under perspective: far pixels cover more ground than near ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_Unit = Annotated[float, Field(ge=0, le=1)]
_Metres = Annotated[float, Field(ge=-1e6, le=1e6)]
# Polygons smaller than this (in units of the whole picture) are a typo, not a zone: 1e-6 is one
# pixel of a 1000x1000 picture.
_MIN_AREA = 1e-6


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def polygon_area(points: Sequence[Sequence[float]] | np.ndarray) -> float:
    """Unsigned area of a simple polygon by the shoelace formula (units of its coordinates squared)."""
    p = np.asarray(points, dtype=np.float64)
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def _check_vertices(points: Sequence[Sequence[float]], what: str) -> None:
    p = np.asarray(points, dtype=np.float64)
    for i in range(len(p)):
        for j in range(i + 1, len(p)):
            if np.array_equal(p[i], p[j]):
                raise ValueError(f"{what}: points {i} and {j} are the same point {list(p[i])}")


class ZoneConfig(_Strict):
    """One named polygon on a stream's picture."""

    name: str = Field(description="zone name used in metrics and records", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    polygon: list[tuple[_Unit, _Unit]] = Field(
        min_length=3,
        max_length=256,
        description="at least 3 [x, y] vertices in normalized image coordinates (0..1, x right, y down)",
    )
    ground: bool = Field(
        False, description="a ground-plane zone: also report square metres (needs the stream's homography)"
    )

    @field_validator("polygon")
    @classmethod
    def _has_area(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        _check_vertices(v, "polygon")
        area = polygon_area(v)
        if area < _MIN_AREA:
            raise ValueError(f"polygon encloses no area ({area:.3g} of the picture; at least {_MIN_AREA:g})")
        return v


class HomographyConfig(_Strict):
    """Four image points and where they lie on the ground, in metres: a plane-to-plane map."""

    image: list[tuple[_Unit, _Unit]] = Field(
        min_length=4, max_length=4, description="4 [x, y] points in normalized image coordinates"
    )
    ground: list[tuple[_Metres, _Metres]] = Field(
        min_length=4, max_length=4, description="the same 4 points on the ground plane as [X, Y] in metres"
    )

    @field_validator("image", "ground")
    @classmethod
    def _no_three_in_line(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        _check_vertices(v, "points")
        p = np.asarray(v, dtype=np.float64)
        scale = float(np.ptp(p, axis=0).max()) or 1.0
        for skip in range(4):
            a, b, c = (p[k] for k in range(4) if k != skip)
            cross = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
            if abs(cross) < 1e-9 * scale * scale:
                others = [k for k in range(4) if k != skip]
                raise ValueError(f"points {others} lie on one line: 4 points with no 3 in line are needed")
        return v

    @model_validator(mode="after")
    def _invertible(self) -> HomographyConfig:
        m = self.matrix()
        if not np.all(np.isfinite(m)) or abs(np.linalg.det(m)) < 1e-12:
            raise ValueError("image and ground points give a degenerate homography")
        return self

    def matrix(self) -> np.ndarray:
        """The 3x3 map from normalized image coordinates to ground metres."""
        import cv2  # one door for OpenCV's solver; config validation stays light until it is needed

        src = np.asarray(self.image, dtype=np.float32)
        dst = np.asarray(self.ground, dtype=np.float32)
        return np.asarray(cv2.getPerspectiveTransform(src, dst), dtype=np.float64)


def check_zones(zones: list[ZoneConfig], homography: HomographyConfig | None) -> None:
    """Cross-zone checks of one stream: unique names; ground zones need a homography that keeps
    their whole polygon on one side of the horizon (else part of it maps to infinity)."""
    seen: set[str] = set()
    for i, z in enumerate(zones):
        if z.name in seen:
            raise ValueError(f"zone {i}: name '{z.name}' is used twice in this stream")
        seen.add(z.name)
        if not z.ground:
            continue
        if homography is None:
            raise ValueError(f"zone '{z.name}' is a ground zone but the stream has no homography")
        p = np.asarray(z.polygon, dtype=np.float64)
        w = p @ homography.matrix()[2, :2] + homography.matrix()[2, 2]
        if not (np.all(w > 1e-9) or np.all(w < -1e-9)):
            raise ValueError(
                f"zone '{z.name}': the homography's horizon crosses the polygon (part of it maps to infinity)"
            )


@dataclass(frozen=True, slots=True)
class ZoneAreas:
    """One zone's share of each class in one frame.

    ``ratios[c]`` = pixels of class c inside the zone / pixels inside the zone (0 for all classes if
    the zone covers no pixel centre at this resolution). ``square_meters[c]`` is the ground area of
    class c inside the zone and ``zone_square_meters`` the zone's ground area, for ground zones with
    a homography; otherwise None.
    """

    zone: str
    ratios: np.ndarray  # float64 (num_classes,)
    pixels: int  # pixels of the class map inside the zone
    square_meters: np.ndarray | None = None  # float64 (num_classes,)
    zone_square_meters: float | None = None

    def __post_init__(self) -> None:
        if self.ratios.ndim != 1:
            raise ValueError(f"ZoneAreas {self.zone}: expected 1-D ratios, got shape {self.ratios.shape}")
        if self.square_meters is not None and self.square_meters.shape != self.ratios.shape:
            raise ValueError(
                f"ZoneAreas {self.zone}: expected square_meters of shape {self.ratios.shape}, "
                f"got {self.square_meters.shape}"
            )


def rasterize(polygon: Sequence[Sequence[float]] | np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (h, w) mask of the pixels whose centre is inside ``polygon`` (normalized
    coordinates), by the half-open even-odd rule of the module docstring. A scanline fill: for each
    row centre, the crossings of the edges give spans of columns."""
    h, w = shape
    p = np.asarray(polygon, dtype=np.float64) * (w, h)  # to pixel units; centres at k + 0.5
    x0, y0 = p[:, 0], p[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    mask = np.zeros((h, w), dtype=bool)
    yc = np.arange(h) + 0.5
    # Edge e crosses row centre yc iff min(y) <= yc < max(y): half-open, so a vertex is counted once
    # and horizontal edges never.
    lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
    crosses = (lo[None, :] <= yc[:, None]) & (yc[:, None] < hi[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (yc[:, None] - y0[None, :]) / (y1 - y0)[None, :]
    xs = x0[None, :] + t * (x1 - x0)[None, :]
    for row in np.flatnonzero(crosses.any(axis=1)):
        xr = np.sort(xs[row, crosses[row]])
        for a, b in zip(xr[0::2], xr[1::2], strict=True):
            # Columns j with a <= j + 0.5 < b: centre on the left edge in, on the right edge out.
            j0 = max(int(np.ceil(a - 0.5)), 0)
            j1 = min(int(np.ceil(b - 0.5)), w)
            if j1 > j0:
                mask[row, j0:j1] = True
    return mask


def pixel_ground_area(matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """float64 (h, w): the ground area in m^2 of each pixel's footprint, |det J| at its centre times
    the pixel's normalized area 1/(h*w). For a homography H and w(u, v) = H[2] . (u, v, 1),
    det J = det(H) / w^3."""
    h, w = shape
    u = (np.arange(w) + 0.5) / w
    v = (np.arange(h) + 0.5) / h
    den = matrix[2, 0] * u[None, :] + matrix[2, 1] * v[:, None] + matrix[2, 2]
    area: np.ndarray = np.abs(np.linalg.det(matrix) / den**3) / (h * w)
    return area


def map_points(matrix: np.ndarray, points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """(N, 2) points mapped through a 3x3 homography."""
    p = np.asarray(points, dtype=np.float64)
    q = np.c_[p, np.ones(len(p))] @ matrix.T
    mapped: np.ndarray = q[:, :2] / q[:, 2:3]
    return mapped


@dataclass(frozen=True, slots=True)
class _Raster:
    index: np.ndarray  # flat indices of the zone's pixels in the class map
    weights: np.ndarray | None  # ground m^2 of those pixels, ground zones only


class ZoneMeter:
    """The zones of one stream, measured on its class maps. Masks are built once per map shape."""

    def __init__(
        self, zones: Sequence[ZoneConfig], num_classes: int, homography: HomographyConfig | None = None
    ) -> None:
        self.zones = tuple(zones)
        self.num_classes = num_classes
        self._matrix = homography.matrix() if homography is not None else None
        self._ground_m2 = {
            z.name: polygon_area(map_points(self._matrix, z.polygon))
            for z in self.zones
            if z.ground and self._matrix is not None
        }
        self._cache: dict[tuple[int, int], tuple[_Raster, ...]] = {}

    def _rasters(self, shape: tuple[int, int]) -> tuple[_Raster, ...]:
        cached = self._cache.get(shape)
        if cached is None:
            footprint = None
            if self._matrix is not None and self._ground_m2:
                footprint = pixel_ground_area(self._matrix, shape).ravel()
            rasters = []
            for z in self.zones:
                index = np.flatnonzero(rasterize(z.polygon, shape))
                weights = footprint[index] if footprint is not None and z.name in self._ground_m2 else None
                rasters.append(_Raster(index, weights))
            cached = self._cache[shape] = tuple(rasters)
        return cached

    def measure(self, class_map: np.ndarray) -> tuple[ZoneAreas, ...]:
        """Per zone, the exact share of each class inside it (and its m^2 for ground zones)."""
        flat = class_map.ravel()
        n = self.num_classes
        out = []
        for z, r in zip(self.zones, self._rasters((class_map.shape[0], class_map.shape[1])), strict=True):
            labels = flat[r.index]
            # Labels >= num_classes (a model emitting more than its sidecar says) are not counted.
            counts = np.bincount(labels, minlength=n)[:n]
            ratios = counts / len(r.index) if len(r.index) else np.zeros(n)
            m2 = None
            if r.weights is not None:
                m2 = np.bincount(labels, weights=r.weights, minlength=n)[:n]
            out.append(ZoneAreas(z.name, ratios, len(r.index), m2, self._ground_m2.get(z.name)))
        return tuple(out)
