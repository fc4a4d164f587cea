"""Per-class masks as COCO RLE (``postprocess.rle``), for systems downstream of the JSONL.

Each exported class's mask is encoded with pycocotools (``pip install 'streamseg[rle]'``) as
``{"size": [h, w], "counts": "..."}``, the compressed string COCO tools read back with
``pycocotools.mask.decode``. The masks are the class map at the model's resolution, not the
frame's: that is the resolution the model decided at (upscaling adds no information, only bytes:
a 1920x1080 frame has 56x the pixels of a 256x144 map); a consumer scales with nearest neighbour
to the frame size the record's stream has.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from ._deps import require
from .config import RleConfig
from .errors import ConfigError

Rle = dict[str, object]  # {"size": [h, w], "counts": str}


def mask_api() -> ModuleType:
    """``pycocotools.mask``, or the one-line error naming the extra."""
    return require("pycocotools.mask", "rle", "mask export as COCO RLE (postprocess.rle)")


def encode(mask: np.ndarray, api: ModuleType | None = None) -> Rle:
    """A boolean or 0/1 (h, w) mask -> COCO compressed RLE with ``counts`` as str (JSON-ready)."""
    api = api or mask_api()
    rle = api.encode(np.asfortranarray(mask, dtype=np.uint8))
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]], "counts": counts.decode("ascii")}


class RleEncoder:
    """Encodes the configured classes of a stream's class maps on every ``every``-th frame."""

    def __init__(self, cfg: RleConfig | None, class_names: list[str], model_name: str = "") -> None:
        self.cfg = cfg
        self._classes: list[tuple[str, int]] = []
        self._api: ModuleType | None = None
        if cfg is None:
            return
        unknown = [n for n in cfg.classes if n not in class_names]
        if unknown:
            raise ConfigError(
                f"postprocess.rle.classes: {', '.join(unknown)} is not a class of model {model_name} "
                f"({', '.join(class_names)})"
            )
        self._classes = [(n, class_names.index(n)) for n in cfg.classes]
        self._api = mask_api()  # at start-up: a missing extra fails before any stream opens

    def encode(self, frame_index: int, class_map: np.ndarray) -> dict[str, Rle] | None:
        """Per configured class, the RLE of ``class_map == class``; None when off or not this frame."""
        if self.cfg is None or frame_index % self.cfg.every:
            return None
        return {name: encode(class_map == k, self._api) for name, k in self._classes}
