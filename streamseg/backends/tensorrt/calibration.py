"""INT8 calibration: the frames (``CalibrationBatches``, from an image folder or a video) and the
entropy calibrator TensorRT pulls them through. Kept out of ``streamseg.engines`` so the engine
cache does not import the video reader."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ...contract import InputSpec
from ...errors import ConfigError
from ...preprocess import preprocess
from ...progress import Steps

log = logging.getLogger(__package__)

_KEY = "model.tensorrt.calibration"


class CalibrationBatches:
    """INT8 calibration input: preprocessed float32 batches of exactly ``batch`` frames.

    TensorRT asks for full batches; a last partial batch is dropped (calibration statistics do
    not need every frame, and padding would bias them toward the padding).
    """

    def __init__(self, images: list[np.ndarray], spec: InputSpec, batch: int) -> None:
        # Bad calibration data is a configuration error (exit 2), named by its key, not a backend failure.
        if batch < 1:
            raise ConfigError(f"{_KEY}.batch: must be >= 1, got {batch}")
        if len(images) < batch:
            raise ConfigError(f"{_KEY}.data: INT8 calibration needs at least {batch} frames, got {len(images)}")
        self.images, self.spec, self.batch = images, spec, batch

    def __len__(self) -> int:
        return len(self.images) // self.batch

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """The shape of every batch: the input spec's layout at ``batch`` frames."""
        s = self.spec
        return (self.batch, 3, s.height, s.width) if s.layout == "NCHW" else (self.batch, s.height, s.width, 3)

    def __iter__(self) -> Iterator[np.ndarray]:
        # TensorRT pulls these while it calibrates: the bar (or 5 % log lines) shows how far it got.
        with Steps(len(self) * self.batch, "INT8 calibration", "frame", log) as steps:
            for i in range(len(self)):
                yield preprocess(self.images[i * self.batch : (i + 1) * self.batch], self.spec)
                steps.update(self.batch)

    @classmethod
    def from_folder(cls, folder: Path, spec: InputSpec, batch: int, limit: int = 500) -> CalibrationBatches:
        try:
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))
        except OSError as e:
            raise ConfigError(f"{_KEY}.data: INT8 calibration: cannot list {folder}: {e.strerror}") from None
        images: list[np.ndarray] = []
        for path in files:  # ``limit`` counts frames read, not files: an unreadable one is skipped
            if len(images) >= limit:
                break
            if (img := cv2.imread(str(path), cv2.IMREAD_COLOR)) is not None:
                images.append(img)
        if not images:
            raise ConfigError(f"{_KEY}.data: INT8 calibration: no readable images in {folder}")
        return cls(images, spec, batch)

    @classmethod
    def from_video(cls, uri: str, spec: InputSpec, batch: int, limit: int = 500) -> CalibrationBatches:
        from ...media import VideoInput, describe_error
        from ...uri import redact

        try:
            video = VideoInput(uri, timeout=(10.0, 10.0))
        except Exception as e:  # FFmpeg errors of every kind
            why = describe_error(e)
            raise ConfigError(f"{_KEY}.data: INT8 calibration: cannot open {redact(uri)}: {why}") from None
        images = []
        try:
            for image, _ in video.frames():
                images.append(image)
                if len(images) >= limit:
                    break
        finally:
            video.close()
        return cls(images, spec, batch)


def calibrator(trt: Any, batches: CalibrationBatches, cache: Path) -> Any:
    """INT8 entropy calibrator fed with preprocessed frames; the cache makes rebuilds skip calibration.

    TensorRT calls these methods from C++ where an escaping Python exception aborts the process
    (the trampolines are ``noexcept``), so each one catches its own failure: ``get_batch`` ends the
    calibration and keeps the error in ``self.error`` for ``build_engine`` to raise after the build.
    """
    from ..cuda_buffers import allocate, new_stream, to_device

    class _Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._it = iter(batches)
            self._buf = allocate(batches.shape, np.dtype(np.float32))
            self._stream = new_stream()
            self.error: BaseException | None = None

        def get_batch_size(self) -> int:
            return batches.batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            try:
                batch = next(self._it, None)
                if batch is None:
                    return None
                np.copyto(self._buf.host, batch)
                to_device(self._buf, self._stream, batch.nbytes)
                # TensorRT reads the pointer as soon as this returns, on a stream of its own.
                self._stream.synchronize()
                return [self._buf.address]
            except Exception as e:
                self.error = e
                return None

        def read_calibration_cache(self) -> bytes | None:
            try:
                return cache.read_bytes() if cache.is_file() else None
            except OSError as e:
                log.warning("INT8 calibration cache %s unreadable (%s): calibrating again", cache, e)
                return None

        def write_calibration_cache(self, data: Any) -> None:
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_name(cache.name + ".tmp")
                tmp.write_bytes(bytes(data))
                tmp.replace(cache)
                log.info("INT8 calibration cache written to %s", cache)
            except OSError as e:
                log.warning("INT8 calibration cache %s not written: %s", cache, e)

    return _Calibrator()
