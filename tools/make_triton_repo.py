"""Write a Triton model repository for a streamseg model: deploy/triton/model_repository's
config.pbtxt plus ``<name>/1/model.onnx`` taken from the installed package (never committed).

    python tools/make_triton_repo.py OUT [--model selfie_landscape] [--link]
    tritonserver --model-repository OUT            # on the GPU server (NVIDIA's container)

The ONNX file's sha256 is checked against the sidecar before it is written, and the config's
input/output against the sidecar, so the repository cannot drift from the model streamseg checks
at start. ``--link`` makes 1/model.onnx a symbolic link to the package's file instead of a copy
(a repository on the same machine; a copy for anything mounted into a container).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from streamseg.contract import load_model, sha256_file
from streamseg.errors import StreamsegError

TEMPLATES = Path(__file__).resolve().parents[1] / "deploy" / "triton" / "model_repository"


def make_repo(out: Path, model_ref: str = "selfie_landscape", link: bool = False) -> Path:
    """Write ``out/<name>/config.pbtxt`` and ``out/<name>/1/model.onnx``; return the model folder."""
    model = load_model(model_ref)  # checks the ONNX file's sha256 against the sidecar
    name = model.contract.name
    template = TEMPLATES / name / "config.pbtxt"
    if not template.is_file():
        raise StreamsegError(f"{template}: no Triton config for model '{name}' (have: {sorted(_templates())})")
    if model.onnx_path is None:
        raise StreamsegError(f"{model.sidecar}: model '{name}' has no ONNX file")
    folder = out / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, folder / "config.pbtxt")
    target = folder / "1" / "model.onnx"
    if target.exists() or target.is_symlink():
        target.unlink()
    if link:
        os.symlink(model.onnx_path.resolve(), target)
    else:
        shutil.copyfile(model.onnx_path, target)
        if model.contract.sha256 and sha256_file(target) != model.contract.sha256:
            raise StreamsegError(f"{target}: copy does not match the sidecar's sha256")
    return folder


def _templates() -> list[str]:
    return [p.parent.name for p in TEMPLATES.glob("*/config.pbtxt")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make_triton_repo", description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="repository folder to write (created)")
    ap.add_argument("--model", default="selfie_landscape", help="bundled model name or sidecar path")
    ap.add_argument("--link", action="store_true", help="link model.onnx to the package's file instead of copying")
    args = ap.parse_args(argv)
    try:
        folder = make_repo(args.out, args.model, args.link)
    except (StreamsegError, OSError) as e:
        print(f"make_triton_repo: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {folder} (tritonserver --model-repository {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
