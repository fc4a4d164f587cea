"""I420 pictures: conversions, the model input and the overlay equal the BGR path's up to the
colour-space rounding (streamseg.yuv)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from streamseg.contract import InputSpec
from streamseg.frames import Frame
from streamseg.overlay import Scratch, draw_zones, draw_zones_i420, make_palette, render, voc_colors
from streamseg.preprocess import preprocess, preprocess_frames
from streamseg.yuv import bgr_colors_to_yuv, bgr_to_i420, hstack_i420, i420_to_bgr, planes, resize_i420


def natural_i420(h: int = 180, w: int = 320, seed: int = 0) -> np.ndarray:
    """A smooth picture (gradients and blobs), as decoded video is: 4:2:0 loses nothing of it."""
    rng = np.random.default_rng(seed)
    small = rng.integers(30, 225, (h // 20, w // 20, 3), dtype=np.uint8)
    bgr = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return bgr_to_i420(bgr)


def test_planes_are_views_of_the_packed_array() -> None:
    data = np.zeros((6 * 3 // 2, 8), np.uint8)
    y, u, v = planes(data)
    assert (y.shape, u.shape, v.shape) == ((6, 8), (3, 4), (3, 4))
    u[:] = 1
    v[:] = 2
    # H/2 = 3 is odd: U ends mid-row of the packed array, so the planes are cut from the flat buffer
    flat = data.reshape(-1)
    assert (flat[:48] == 0).all() and (flat[48:60] == 1).all() and (flat[60:] == 2).all()


def test_palette_colours_convert_back_to_themselves() -> None:
    colors = np.array(voc_colors(21), np.uint8)[:, ::-1]
    yuv = bgr_colors_to_yuv(colors)
    packed = np.zeros((len(colors) * 3, 2), np.uint8)  # each colour as a 2x2 I420 picture
    for i, (yy, uu, vv) in enumerate(yuv):
        pic = np.concatenate([np.full((2, 2), yy, np.uint8), np.array([[uu, vv]], np.uint8)])
        packed[3 * i : 3 * i + 3] = pic
        back = i420_to_bgr(pic)[0, 0].astype(int)
        assert np.abs(back - colors[i]).max() <= 2, (i, back, colors[i])


def test_resize_and_hstack_keep_planes_apart() -> None:
    data = natural_i420()
    small = resize_i420(data, 160, 90)
    assert small.shape == (90 * 3 // 2, 160)
    want = cv2.resize(i420_to_bgr(data), (160, small.shape[0] * 2 // 3), interpolation=cv2.INTER_AREA)
    assert np.abs(i420_to_bgr(small).astype(int) - want).mean() < 5
    both = hstack_i420(data, data)
    assert np.array_equal(i420_to_bgr(both)[:, 320:], i420_to_bgr(data))


SPEC = InputSpec(
    name="x", height=72, width=128, layout="NCHW", color="RGB", mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4)
)


@pytest.mark.parametrize("spec", [SPEC, SPEC.model_copy(update={"layout": "NHWC", "color": "BGR", "height": 71})])
def test_model_input_from_i420_equals_bgr_path_within_rounding(spec: InputSpec) -> None:
    data = natural_i420()
    frame = Frame("s", 0, 0.0, 0.0, 0.0, data, "yuv420p")
    got = preprocess_frames([frame], spec)
    want = preprocess([i420_to_bgr(data)], spec)
    levels = np.abs(got - want) * np.asarray(spec.std, np.float32).reshape((3, 1, 1) if spec.layout == "NCHW" else (3,))
    assert got.shape == want.shape
    # rounding in a different order (planes resized, then converted); chroma sampled where the BGR
    # path's resize reads OpenCV's nearest-upsampled chroma
    assert levels.max() <= 4.0 and levels.mean() < 0.6, (levels.max(), levels.mean())


def test_mixed_batch_of_bgr_and_i420_frames() -> None:
    data = natural_i420()
    bgr = i420_to_bgr(data)
    frames = [Frame("a", 0, 0.0, 0.0, 0.0, data, "yuv420p"), Frame("b", 0, 0.0, 0.0, 0.0, bgr)]
    got = preprocess_frames(frames, SPEC)
    assert np.allclose(got[1], preprocess([bgr], SPEC)[0], atol=1e-4)
    assert np.abs(got[0] - got[1]).max() * 58 <= 4.0


def test_frame_rejects_a_bad_i420_array() -> None:
    with pytest.raises(ValueError, match=r"Frame s#3: expected uint8 \(H \* 3 / 2, W\) I420"):
        Frame("s", 3, 0.0, 0.0, 0.0, np.zeros((10, 7), np.uint8), "yuv420p")
    f = Frame("s", 0, 0.0, 0.0, 0.0, np.zeros((270, 320), np.uint8), "yuv420p")
    assert f.size == (180, 320) and f.bgr().shape == (180, 320, 3)


def _class_map(h: int = 36, w: int = 64) -> np.ndarray:
    cm = np.zeros((h, w), np.uint8)
    cm[5:30, 10:40] = 15  # person
    cm[20:34, 45:60] = 7  # car
    return cm


PALETTE = make_palette([f"c{i}" if i else "background" for i in range(21)], voc_colors(21))


def _differences(got: np.ndarray, want: np.ndarray, class_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel differences away from class edges, and all of them."""
    h, w = want.shape[:2]
    big = cv2.resize(class_map, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
    edges = cv2.dilate(cv2.Canny(big * 10, 1, 1), np.ones((5, 5), np.uint8)) > 0
    d = np.abs(got.astype(int) - want.astype(int)).max(axis=2)
    return d[~edges], d


@pytest.mark.parametrize("mode", ["blend", "mask", "side-by-side"])
@pytest.mark.parametrize("legend", [False, True])
def test_overlay_on_i420_equals_bgr_overlay_within_rounding(mode: str, legend: bool) -> None:
    data = natural_i420()
    bgr = i420_to_bgr(data)
    cm = _class_map()
    ratios = np.bincount(cm.ravel(), minlength=21) / cm.size
    want = render(bgr.copy(), cm, PALETTE, mode, 0.5, ratios, legend, Scratch())
    got = render(data.copy(), cm, PALETTE, mode, 0.5, ratios, legend, Scratch(), "yuv420p")
    got_bgr = i420_to_bgr(got)
    assert got_bgr.shape == want.shape
    # what a viewer of the video gets either way: the BGR overlay goes through 4:2:0 before x264
    seen = i420_to_bgr(bgr_to_i420(want))
    inner, every = _differences(got_bgr, seen, np.hstack([cm, cm]) if mode == "side-by-side" else cm)
    assert np.percentile(inner, 99) <= 3 and inner.mean() < 1.0, (np.percentile(inner, 99), inner.mean())
    # class edges: one colour per 2x2 block, painted or blended in a different order
    assert np.percentile(every, 99) <= (16 if legend else 8), np.percentile(every, 99)


def test_overlay_on_i420_is_not_the_frame_unchanged() -> None:
    data = natural_i420()
    cm = _class_map()
    got = render(data.copy(), cm, PALETTE, "blend", 0.5, None, False, Scratch(), "yuv420p")
    person = i420_to_bgr(got)[60:140, 60:200].astype(int)
    before = i420_to_bgr(data)[60:140, 60:200].astype(int)
    want = np.round(before * 0.5 + np.array(PALETTE.colors_bgr[15]) * 0.5)
    assert np.abs(person - want).mean() < 2.0 and np.abs(person - before).mean() > 20


@pytest.mark.parametrize("size", [(180, 320), (270, 480)])  # H/2 odd at 270: U starts mid-row
def test_zones_on_i420_look_like_zones_on_bgr(size: tuple[int, int]) -> None:
    data = natural_i420(*size)
    door = [(0.1, 0.2), (0.5, 0.2), (0.5, 0.8), (0.1, 0.8)]
    zones = [("door", door), ("lane", [(0.6, 0.5), (0.95, 0.9), (0.6, 0.9)])]
    want = planes(bgr_to_i420(draw_zones(i420_to_bgr(data), zones)))  # what the encoder got before
    got = planes(draw_zones_i420(data.copy(), zones))
    before = planes(data)
    outline = want[0] != before[0]  # where the BGR drawing put an outline or a label
    assert (np.abs(want[0].astype(int) - before[0].astype(int)) > 20).sum() > 300  # there at all
    # luma: the same polylines at full resolution, the labels through BGR: equal up to rounding
    assert np.abs(got[0].astype(int) - want[0].astype(int)).max() <= 2
    # chroma: drawn at half resolution in the zone colour, where 4:2:0 of the BGR drawing averaged
    # a 1-pixel line with its 2x2 block; off the outlines nothing changes
    ch, cw = got[1].shape
    on_line = outline[: 2 * ch, : 2 * cw].reshape(ch, 2, cw, 2).any(axis=(1, 3))  # chroma samples under it
    # outlines and label text (the labels' boxes go through BGR and back: a level or two elsewhere)
    near = cv2.dilate(on_line.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    for g, wnt, old in zip(got[1:], want[1:], before[1:], strict=True):
        changed = np.abs(g.astype(int) - old.astype(int)) > 3
        assert not (changed & ~near).any()  # nothing coloured away from the outlines and labels
        moved = np.abs(wnt.astype(int) - old.astype(int)) > 4
        assert changed[moved].mean() > 0.8  # coloured where the BGR drawing coloured


@pytest.mark.parametrize("mode", ["blend", "side-by-side"])
def test_overlay_on_i420_when_half_the_height_is_odd(mode: str) -> None:
    data = natural_i420(270, 480)
    bgr = i420_to_bgr(data)
    cm = _class_map()
    want = i420_to_bgr(bgr_to_i420(render(bgr.copy(), cm, PALETTE, mode, 0.5, None, True, Scratch())))
    got = i420_to_bgr(render(data.copy(), cm, PALETTE, mode, 0.5, None, True, Scratch(), "yuv420p"))
    inner, every = _differences(got, want, np.hstack([cm, cm]) if mode == "side-by-side" else cm)
    assert np.percentile(inner, 99) <= 3 and np.percentile(every, 99) <= 16


def test_bundled_model_labels_from_i420_agree_with_the_bgr_path(bikes: Path) -> None:
    """On the bundled clip, through the bundled model: what the I420 path changes in the labels is
    the model's own sensitivity to rounding, a few boundary pixels (measured: 99.9 % agree)."""
    av = pytest.importorskip("av")
    from streamseg.backends import select_backend
    from streamseg.contract import load_model
    from streamseg.postprocess import to_class_maps

    model = load_model("selfie_landscape")
    c = model.contract
    agree = []
    with select_backend("onnxruntime", [], model, "cpu", 1, 1) as backend, av.open(str(bikes)) as video:
        for i, f in enumerate(video.decode(video=0)):
            if i % 10:
                continue
            data = f.to_ndarray(format="yuv420p")
            got = to_class_maps(
                backend.infer(preprocess_frames([Frame("s", i, 0.0, 0.0, 0.0, data, "yuv420p")], c.input)), c
            )
            want = to_class_maps(backend.infer(preprocess([i420_to_bgr(data)], c.input)), c)
            agree.append(float((got == want).mean()))
    assert len(agree) == 25
    assert np.mean(agree) >= 0.998 and min(agree) >= 0.99, (np.mean(agree), min(agree))
