"""A window per stream, when a screen exists and OpenCV was built with a GUI."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from typing import Literal

import cv2
import numpy as np

from ..errors import OutputError
from ..frames import Picture, SegResult
from .base import OutputConfig, OutputKind, Sink


class DisplayOutput(OutputConfig):
    type: Literal["display"]


def display_unavailable_reason() -> str | None:
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        return "no screen (DISPLAY is not set)"
    info = cv2.getBuildInformation()
    gui = [line for line in info.splitlines() if line.strip().startswith("GUI:")]
    if not gui or "NONE" in gui[0].upper():
        return "this OpenCV has no GUI (pip install opencv-python instead of opencv-python-headless)"
    return None


class DisplaySink(Sink):
    """HighGUI is not thread-safe, so one thread owns every window."""

    wants_overlay = True

    def __init__(self) -> None:
        why = display_unavailable_reason()
        if why:
            raise OutputError(f"display output: {why}")
        self._queue: queue.Queue[tuple[str, np.ndarray] | None] = queue.Queue(maxsize=4)
        self._thread = threading.Thread(target=self._show, name="display", daemon=True)
        self._thread.start()

    def write(self, result: SegResult, picture: Picture | None) -> None:
        if picture is None:
            return
        with contextlib.suppress(queue.Full):  # a slow screen must not slow the pipeline
            # a BGR picture is the worker's buffer, reused for the next frame: the window needs its own copy
            image = picture.bgr() if picture.pixel_format != "bgr24" else picture.bgr().copy()
            self._queue.put_nowait((result.frame.stream, image))

    def _show(self) -> None:
        while (item := self._queue.get()) is not None:
            cv2.imshow(f"streamseg: {item[0]}", item[1])
            cv2.waitKey(1)
        cv2.destroyAllWindows()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(2)


KIND = OutputKind(DisplayOutput, lambda cfg, ctx: DisplaySink())
