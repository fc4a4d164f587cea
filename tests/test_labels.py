"""Label presets (counts, distinct names and colours, the usual colours kept) and label files."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamseg.errors import ModelError
from streamseg.labels import (
    _ADE20K_PALETTE,
    _COCO_STUFF_PALETTE,
    PRESETS,
    _distinct,
    _triples,
    parse_label_file,
    resolve_labels,
)
from streamseg.overlay import voc_colors


@pytest.mark.parametrize(
    ("preset", "count", "index", "name", "color"),
    [
        ("voc", 21, 15, "person", (192, 128, 128)),
        ("cityscapes", 19, 11, "person", (220, 20, 60)),
        ("ade20k", 150, 12, "person", (150, 5, 61)),
        ("coco-stuff", 171, 0, "person", (0, 192, 64)),
    ],
)
def test_preset_counts_names_and_colours(preset: str, count: int, index: int, name: str, color: tuple) -> None:
    labels = PRESETS[preset]
    assert len(labels) == count
    assert labels[index] == (name, color)
    names = [n for n, _ in labels]
    colors = [c for _, c in labels]
    assert len(set(names)) == count, "two classes share a name"
    assert len(set(colors)) == count, "two classes share a colour"
    assert all(n == n.strip() and n for n in names)
    assert all(len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c) for c in colors)


def test_the_usual_palettes_are_kept_but_for_their_repeats() -> None:
    assert [c for _, c in PRESETS["voc"]] == voc_colors(21)
    for preset, flat, repeats in (("ade20k", _ADE20K_PALETTE, 1), ("coco-stuff", _COCO_STUFF_PALETTE, 9)):
        usual = _triples(flat)
        assert len(usual) == len(PRESETS[preset])
        assert len(usual) - len(set(usual)) == repeats
        changed = [i for i, (_, c) in enumerate(PRESETS[preset]) if c != usual[i]]
        assert len(changed) == repeats
        # a repeat is replaced, never the first class that had the colour
        assert all(usual[i] in usual[:i] for i in changed)


def test_a_replaced_repeat_is_far_from_every_other_colour() -> None:
    colors = _distinct([(10, 10, 10), (10, 10, 10), (250, 250, 250)])
    assert colors[0] == (10, 10, 10) and colors[2] == (250, 250, 250)
    assert min(sum(abs(a - b) for a, b in zip(colors[1], c, strict=True)) for c in (colors[0], colors[2])) >= 255


@pytest.mark.parametrize("spec", ["VOC", "voc", "Cityscapes", "ADE20K", "coco_stuff", "COCO-Stuff", "cocostuff"])
def test_preset_names_ignore_case_and_separators(spec: str) -> None:
    assert resolve_labels(spec) in PRESETS.values()


def test_label_file_with_and_without_colours(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("background\n\ntraffic light 250 170 30\nroad,128,64,128\nsky #4682B4\nperson\n")
    labels = parse_label_file(path)
    assert labels == (
        ("background", voc_colors(5)[0]),
        ("traffic light", (250, 170, 30)),
        ("road", (128, 64, 128)),
        ("sky", (70, 130, 180)),
        ("person", voc_colors(5)[4]),
    )
    assert resolve_labels(str(path)) == labels


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "names no classes"),
        ("\n  \n", "names no classes"),
        ("road\ncar\nroad\n", ":3: class 'road' is also on line 1"),
        ("road 300 0 0\n", ":1: colour (300, 0, 0) has a channel above 255"),
        ("#ff0000\n", ":1: a colour without a class name"),
    ],
)
def test_bad_label_files(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "labels.txt"
    path.write_text(text)
    with pytest.raises(ModelError, match=error.replace("(", r"\(").replace(")", r"\)")):
        parse_label_file(path)


def test_unknown_preset_and_missing_file() -> None:
    with pytest.raises(ModelError, match=r"--labels pascal: neither a preset \(voc \(21\), cityscapes \(19\)"):
        resolve_labels("pascal")
    with pytest.raises(ModelError, match="neither a preset"):
        resolve_labels("/nonexistent/labels.txt")


def test_a_binary_label_file_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "labels.bin"
    path.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ModelError, match="cannot read the label file"):
        parse_label_file(path)
