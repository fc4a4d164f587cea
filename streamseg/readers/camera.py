"""Local cameras (``/dev/videoN``, an index) through OpenCV."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from ..config import SourceConfig
from ..errors import SourceError
from ..uri import SourceURI
from .base import Reader


class CameraReader:
    """Local cameras through OpenCV (V4L2 on Linux); timeouts keep a dead device from hanging."""

    def __init__(self, target: str, open_s: float, read_s: float) -> None:
        index: int | str = int(target) if target.isdigit() else target
        ms = [int(open_s * 1000), int(read_s * 1000)]
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms[0], cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms[1]]
        self._cap = cv2.VideoCapture(index, cv2.CAP_ANY, params)
        if not self._cap.isOpened():
            raise SourceError(f"{target}: cannot open camera")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 else None

    def frames(self) -> Iterator[tuple[np.ndarray, float | None]]:
        while True:
            ok, image = self._cap.read()
            if not ok or image is None:
                return
            yield image, None

    def close(self) -> None:
        self._cap.release()


def open_camera(uri: SourceURI, cfg: SourceConfig) -> Reader:
    return CameraReader(uri.target, cfg.timeouts.open_s, cfg.timeouts.read_s)
