"""Label sets for models from elsewhere: the presets of the common datasets, or a file.

``import-model`` names a preset (``voc``, ``cityscapes``, ``ade20k``, ``coco-stuff``) or a text file
with one class per line. Each preset carries the colours its dataset's tools draw with:

- VOC (21): background + the 20 PASCAL VOC classes, the VOC bit-interleaved palette.
- Cityscapes (19): the 19 evaluation classes in train-ID order, the official colours of
  cityscapesScripts' ``labels.py``.
- ADE20K (150): the SceneParsing benchmark's 150 classes (objectInfo150 order, "other" excluded), the
  CSAIL palette as mmsegmentation ships it.
- COCO-Stuff (171): the 164k release's 80 thing + 91 stuff classes in train-ID order (the 182 raw IDs
  less the 11 thing IDs COCO never used), the palette mmsegmentation ships. 171 is what COCO-Stuff
  models (DeepLab, mmsegmentation, Detectron2) predict.

Two classes never share a colour: the ADE20K palette repeats one entry and the COCO-Stuff one nine;
each repeat gets the colour of a coarse grid farthest from the colours in use (``_distinct``), so every
class can be told apart on the overlay. A preset is a tuple of (name, RGB) pairs; this module imports nothing heavy.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import ModelError
from .overlay import voc_colors

Label = tuple[str, tuple[int, int, int]]


def _names(text: str) -> list[str]:
    """Class names written compactly, separated by '|' (names may hold spaces)."""
    return text.split("|")


_VOC_NAMES = _names(
    "background|aeroplane|bicycle|bird|boat|bottle|bus|car|cat|chair|cow|diningtable|dog|horse|motorbike|"
    "person|pottedplant|sheep|sofa|train|tvmonitor"
)

_CITYSCAPES: tuple[Label, ...] = (
    ("road", (128, 64, 128)),
    ("sidewalk", (244, 35, 232)),
    ("building", (70, 70, 70)),
    ("wall", (102, 102, 156)),
    ("fence", (190, 153, 153)),
    ("pole", (153, 153, 153)),
    ("traffic light", (250, 170, 30)),
    ("traffic sign", (220, 220, 0)),
    ("vegetation", (107, 142, 35)),
    ("terrain", (152, 251, 152)),
    ("sky", (70, 130, 180)),
    ("person", (220, 20, 60)),
    ("rider", (255, 0, 0)),
    ("car", (0, 0, 142)),
    ("truck", (0, 0, 70)),
    ("bus", (0, 60, 100)),
    ("train", (0, 80, 100)),
    ("motorcycle", (0, 0, 230)),
    ("bicycle", (119, 11, 32)),
)

_ADE20K_NAMES = _names(
    "wall|building|sky|floor|tree|ceiling|road|bed|windowpane|grass|cabinet|sidewalk|person|earth|door|table|"
    "mountain|plant|curtain|chair|car|water|painting|sofa|shelf|house|sea|mirror|rug|field|armchair|seat|fence|"
    "desk|rock|wardrobe|lamp|bathtub|railing|cushion|base|box|column|signboard|chest of drawers|counter|sand|"
    "sink|skyscraper|fireplace|refrigerator|grandstand|path|stairs|runway|case|pool table|pillow|screen door|"
    "stairway|river|bridge|bookcase|blind|coffee table|toilet|flower|book|hill|bench|countertop|stove|palm|"
    "kitchen island|computer|swivel chair|boat|bar|arcade machine|hovel|bus|towel|light|truck|tower|"
    "chandelier|awning|streetlight|booth|television receiver|airplane|dirt track|apparel|pole|land|bannister|"
    "escalator|ottoman|bottle|buffet|poster|stage|van|ship|fountain|conveyer belt|canopy|washer|plaything|"
    "swimming pool|stool|barrel|basket|waterfall|tent|bag|minibike|cradle|oven|ball|food|step|tank|"
    "trade name|microwave|pot|animal|bicycle|lake|dishwasher|screen|blanket|sculpture|hood|sconce|vase|"
    "traffic light|tray|ashcan|fan|pier|crt screen|plate|monitor|bulletin board|shower|radiator|glass|clock|flag"
)

# Flattened RGB triples, in class order.
_ADE20K_PALETTE = (
    120, 120, 120, 180, 120, 120, 6, 230, 230, 80, 50, 50, 4, 200, 3, 120, 120, 80, 140, 140, 140, 204, 5, 255,
    230, 230, 230, 4, 250, 7, 224, 5, 255, 235, 255, 7, 150, 5, 61, 120, 120, 70, 8, 255, 51, 255, 6, 82,
    143, 255, 140, 204, 255, 4, 255, 51, 7, 204, 70, 3, 0, 102, 200, 61, 230, 250, 255, 6, 51, 11, 102, 255,
    255, 7, 71, 255, 9, 224, 9, 7, 230, 220, 220, 220, 255, 9, 92, 112, 9, 255, 8, 255, 214, 7, 255, 224,
    255, 184, 6, 10, 255, 71, 255, 41, 10, 7, 255, 255, 224, 255, 8, 102, 8, 255, 255, 61, 6, 255, 194, 7,
    255, 122, 8, 0, 255, 20, 255, 8, 41, 255, 5, 153, 6, 51, 255, 235, 12, 255, 160, 150, 20, 0, 163, 255,
    140, 140, 140, 250, 10, 15, 20, 255, 0, 31, 255, 0, 255, 31, 0, 255, 224, 0, 153, 255, 0, 0, 0, 255,
    255, 71, 0, 0, 235, 255, 0, 173, 255, 31, 0, 255, 11, 200, 200, 255, 82, 0, 0, 255, 245, 0, 61, 255,
    0, 255, 112, 0, 255, 133, 255, 0, 0, 255, 163, 0, 255, 102, 0, 194, 255, 0, 0, 143, 255, 51, 255, 0,
    0, 82, 255, 0, 255, 41, 0, 255, 173, 10, 0, 255, 173, 255, 0, 0, 255, 153, 255, 92, 0, 255, 0, 255,
    255, 0, 245, 255, 0, 102, 255, 173, 0, 255, 0, 20, 255, 184, 184, 0, 31, 255, 0, 255, 61, 0, 71, 255,
    255, 0, 204, 0, 255, 194, 0, 255, 82, 0, 10, 255, 0, 112, 255, 51, 0, 255, 0, 194, 255, 0, 122, 255,
    0, 255, 163, 255, 153, 0, 0, 255, 10, 255, 112, 0, 143, 255, 0, 82, 0, 255, 163, 255, 0, 255, 235, 0,
    8, 184, 170, 133, 0, 255, 0, 255, 92, 184, 0, 255, 255, 0, 31, 0, 184, 255, 0, 214, 255, 255, 0, 112,
    92, 255, 0, 0, 224, 255, 112, 224, 255, 70, 184, 160, 163, 0, 255, 153, 0, 255, 71, 255, 0, 255, 0, 163,
    255, 204, 0, 255, 0, 143, 0, 255, 235, 133, 255, 0, 255, 0, 235, 245, 0, 255, 255, 0, 122, 255, 245, 0,
    10, 190, 212, 214, 255, 0, 0, 204, 255, 20, 0, 255, 255, 255, 0, 0, 153, 255, 0, 41, 255, 0, 255, 204,
    41, 0, 255, 41, 255, 0, 173, 0, 255, 0, 245, 255, 71, 0, 255, 122, 0, 255, 0, 255, 184, 0, 92, 255,
    184, 255, 0, 0, 133, 255, 255, 214, 0, 25, 194, 194, 102, 255, 0, 92, 0, 255,
)  # fmt: skip

_COCO_STUFF_NAMES = _names(
    "person|bicycle|car|motorcycle|airplane|bus|train|truck|boat|traffic light|fire hydrant|stop sign|"
    "parking meter|bench|bird|cat|dog|horse|sheep|cow|elephant|bear|zebra|giraffe|backpack|umbrella|handbag|"
    "tie|suitcase|frisbee|skis|snowboard|sports ball|kite|baseball bat|baseball glove|skateboard|surfboard|"
    "tennis racket|bottle|wine glass|cup|fork|knife|spoon|bowl|banana|apple|sandwich|orange|broccoli|carrot|"
    "hot dog|pizza|donut|cake|chair|couch|potted plant|bed|dining table|toilet|tv|laptop|mouse|remote|"
    "keyboard|cell phone|microwave|oven|toaster|sink|refrigerator|book|clock|vase|scissors|teddy bear|"
    "hair drier|toothbrush|banner|blanket|branch|bridge|building-other|bush|cabinet|cage|cardboard|carpet|"
    "ceiling-other|ceiling-tile|cloth|clothes|clouds|counter|cupboard|curtain|desk-stuff|dirt|door-stuff|"
    "fence|floor-marble|floor-other|floor-stone|floor-tile|floor-wood|flower|fog|food-other|fruit|"
    "furniture-other|grass|gravel|ground-other|hill|house|leaves|light|mat|metal|mirror-stuff|moss|mountain|"
    "mud|napkin|net|paper|pavement|pillow|plant-other|plastic|platform|playingfield|railing|railroad|river|"
    "road|rock|roof|rug|salad|sand|sea|shelf|sky-other|skyscraper|snow|solid-other|stairs|stone|straw|"
    "structural-other|table|tent|textile-other|towel|tree|vegetable|wall-brick|wall-concrete|wall-other|"
    "wall-panel|wall-stone|wall-tile|wall-wood|water-other|waterdrops|window-blind|window-other|wood"
)

_COCO_STUFF_PALETTE = (
    0, 192, 64, 0, 192, 64, 0, 64, 96, 128, 192, 192, 0, 64, 64, 0, 192, 224, 0, 192, 192, 128, 192, 64,
    0, 192, 96, 128, 192, 64, 128, 32, 192, 0, 0, 224, 0, 0, 64, 0, 160, 192, 128, 0, 96, 128, 0, 192,
    0, 32, 192, 128, 128, 224, 0, 0, 192, 128, 160, 192, 128, 128, 0, 128, 0, 32, 128, 32, 0, 128, 0, 128,
    64, 128, 32, 0, 160, 0, 0, 0, 0, 192, 128, 160, 0, 32, 0, 0, 128, 128, 64, 128, 160, 128, 160, 0,
    0, 128, 0, 192, 128, 32, 128, 96, 128, 0, 0, 128, 64, 0, 32, 0, 224, 128, 128, 0, 0, 192, 0, 160,
    0, 96, 128, 128, 128, 128, 64, 0, 160, 128, 224, 128, 128, 128, 64, 192, 0, 32, 128, 96, 0, 128, 0, 192,
    0, 128, 32, 64, 224, 0, 0, 0, 64, 128, 128, 160, 64, 96, 0, 0, 128, 192, 0, 128, 160, 192, 224, 0,
    0, 128, 64, 128, 128, 32, 192, 32, 128, 0, 64, 192, 0, 0, 32, 64, 160, 128, 128, 64, 64, 128, 0, 160,
    64, 32, 128, 128, 192, 192, 0, 0, 160, 192, 160, 128, 128, 192, 0, 128, 0, 96, 192, 32, 0, 128, 64, 128,
    64, 128, 96, 64, 160, 0, 0, 64, 0, 192, 128, 224, 64, 32, 0, 0, 192, 128, 64, 128, 224, 192, 160, 0,
    0, 192, 0, 192, 128, 96, 192, 96, 128, 0, 64, 128, 64, 0, 96, 64, 224, 128, 128, 64, 0, 192, 0, 224,
    64, 96, 128, 128, 192, 128, 64, 0, 224, 192, 224, 128, 128, 192, 64, 192, 0, 96, 192, 96, 0, 128, 64, 192,
    0, 128, 96, 0, 224, 0, 64, 64, 64, 128, 128, 224, 0, 96, 0, 64, 192, 192, 0, 128, 224, 128, 224, 0,
    64, 192, 64, 128, 128, 96, 128, 32, 128, 64, 0, 192, 0, 64, 96, 0, 160, 128, 192, 0, 64, 128, 64, 224,
    0, 32, 128, 192, 128, 192, 0, 64, 224, 128, 160, 128, 192, 128, 0, 128, 64, 32, 128, 32, 64, 192, 0, 128,
    64, 192, 32, 0, 160, 64, 64, 0, 0, 192, 192, 160, 0, 32, 64, 64, 128, 128, 64, 192, 160, 128, 160, 64,
    64, 128, 0, 192, 192, 32, 128, 96, 192, 64, 0, 128, 64, 64, 32, 0, 224, 192, 192, 0, 0, 192, 64, 160,
    0, 96, 192, 192, 128, 128, 64, 64, 160, 128, 224, 192, 192, 128, 64, 192, 64, 32, 128, 96, 64, 192, 0, 192,
    0, 192, 32, 64, 224, 64, 64, 0, 64, 128, 192, 160, 64, 96, 64, 64, 128, 192, 0, 192, 160, 192, 224, 64,
    64, 128, 64, 128, 192, 32, 192, 32, 192, 64, 64, 192, 0, 64, 32, 64, 160, 192, 192, 64, 64, 128, 64, 160,
    64, 32, 192, 192, 192, 192, 0, 64, 160, 192, 160, 192, 192, 192, 0, 128, 64, 96, 192, 32, 64, 192, 64, 128,
    64, 192, 96, 64, 160, 64, 64, 64, 0,
)  # fmt: skip


def _triples(flat: tuple[int, ...]) -> list[tuple[int, int, int]]:
    return [(flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3)]


def _distinct(colors: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """The palette with each repeated entry (the first keeps it) replaced by the colour of a coarse
    grid farthest from every colour in use, so the two classes look different on the overlay."""
    levels = (0, 64, 128, 192, 255)
    grid = [(r, g, b) for r in levels for g in levels for b in levels]
    used: set[tuple[int, int, int]] = set()
    taken = set(colors)  # the palette's later entries too: a replacement must not look like them either
    out = []
    for color in colors:
        if color in used:
            color = max(
                (c for c in grid if c not in taken),
                key=lambda c: min(sum(abs(a - b) for a, b in zip(c, u, strict=True)) for u in taken),
            )
            taken.add(color)
        used.add(color)
        out.append(color)
    return out


def _preset(names: list[str], colors: list[tuple[int, int, int]]) -> tuple[Label, ...]:
    return tuple(zip(names, _distinct(colors), strict=True))


PRESETS: dict[str, tuple[Label, ...]] = {
    "voc": _preset(_VOC_NAMES, voc_colors(21)),
    "cityscapes": _CITYSCAPES,
    "ade20k": _preset(_ADE20K_NAMES, _triples(_ADE20K_PALETTE)),
    "coco-stuff": _preset(_COCO_STUFF_NAMES, _triples(_COCO_STUFF_PALETTE)),
}

_HEX = re.compile(r"#([0-9a-fA-F]{6})$")
_RGB = re.compile(r"^(.*?)[\s,]+(\d{1,3})[\s,]+(\d{1,3})[\s,]+(\d{1,3})$")


def parse_label_file(path: Path) -> tuple[Label, ...]:
    """One class per line: ``name``, ``name R G B`` (or commas) or ``name #rrggbb``; blank lines are
    skipped. Classes without a colour take the VOC palette's colour of their index."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ModelError(f"{path}: cannot read the label file: {why}") from None
    entries: list[tuple[int, str, tuple[int, int, int] | None]] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        color: tuple[int, int, int] | None = None
        hexed = _HEX.search(line)
        rgb = _RGB.match(line)
        if hexed:
            value = int(hexed.group(1), 16)
            color = (value >> 16, (value >> 8) & 255, value & 255)
            line = line[: hexed.start()].rstrip(" \t,")
        elif rgb:
            channels = tuple(int(rgb.group(i)) for i in (2, 3, 4))
            if any(c > 255 for c in channels):
                raise ModelError(f"{path}:{lineno}: colour {channels} has a channel above 255")
            color = (channels[0], channels[1], channels[2])
            line = rgb.group(1).strip()
        if not line:
            raise ModelError(f"{path}:{lineno}: a colour without a class name")
        entries.append((lineno, line, color))
    if not entries:
        raise ModelError(f"{path}: the label file names no classes (one per line)")
    names = [name for _, name, _ in entries]
    seen: dict[str, int] = {}
    for lineno, name, _ in entries:
        if name in seen:
            raise ModelError(f"{path}:{lineno}: class '{name}' is also on line {seen[name]}")
        seen[name] = lineno
    palette = voc_colors(len(names))
    return tuple((name, color or palette[i]) for i, (_, name, color) in enumerate(entries))


def resolve_labels(spec: str) -> tuple[Label, ...]:
    """A preset name (case and ``_``/``-`` do not matter) or the path of a label file."""
    key = spec.strip().lower().replace("_", "-")
    if key in ("cocostuff", "coco-stuff-171"):
        key = "coco-stuff"
    if key in PRESETS:
        return PRESETS[key]
    path = Path(spec)
    if path.is_file():
        return parse_label_file(path)
    raise ModelError(
        f"--labels {spec}: neither a preset ({', '.join(f'{k} ({len(v)})' for k, v in PRESETS.items())}) "
        "nor a label file"
    )
