"""The package's layering, read from the modules' import statements (every ``import`` anywhere in a
module, lazy ones inside functions included), so a forbidden import added back fails here.

- nothing in ``streamseg.backends`` imports the CLI's ``doctor``, the training code's ``evaluate``
  or ``train``, the CLI or the pipeline: backends sit below all of them (the driver probe lives in
  ``hardware``, the confusion matrix in ``scoring``);
- the engine cache (``streamseg.engines``) does not import the video reader (``streamseg.media``);
- the backend interface (``backends/base.py``) names no torch type: GPU tensors are the GPU
  stage's business (``streamseg.gpu``, ``streamseg.stages``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import streamseg

PACKAGE = Path(streamseg.__file__).parent

# (importer prefix, forbidden module prefixes)
RULES: list[tuple[str, tuple[str, ...]]] = [
    (
        "streamseg.backends",
        ("streamseg.doctor", "streamseg.evaluate", "streamseg.train", "streamseg.cli", "streamseg.pipeline"),
    ),
    ("streamseg.engines", ("streamseg.media",)),
    ("streamseg.backends.base", ("streamseg.gpu", "streamseg.models._torch", "torch")),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool) -> set[str]:
    """Absolute names of every module ``source`` imports (``from . import x`` counts as ``pkg.x``)."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


def violations(module: str, names: set[str]) -> list[str]:
    """One line per forbidden module that ``module`` imports (by any of ``names``)."""
    out = []
    for importer, forbidden in RULES:
        if module == importer or module.startswith(importer + "."):
            for bad in forbidden:
                hits = sorted(n for n in names if n == bad or n.startswith(bad + "."))
                if hits:
                    out.append(f"{module} imports {hits[0]} ({importer} must not import {bad})")
    return out


def all_modules() -> list[tuple[str, Path]]:
    return sorted((module_name(p), p) for p in PACKAGE.rglob("*.py"))


def test_the_package_keeps_its_layers() -> None:
    found = []
    for module, path in all_modules():
        found += violations(module, imports_of(path.read_text(), module, path.name == "__init__.py"))
    assert found == []


def test_the_rules_cover_real_modules() -> None:
    """Each importer the rules name exists, so a renamed module cannot make a rule silently vacuous."""
    names = {m for m, _ in all_modules()}
    for importer, _ in RULES:
        assert importer in names, importer


@pytest.mark.parametrize(
    ("module", "is_package", "source", "expected"),
    [
        ("streamseg.backends.tensorrt.gate", False, "from ...evaluate import scores", "streamseg.evaluate"),
        (
            "streamseg.backends.tensorrt.build",
            False,
            "def f():\n    from ...doctor import cuda_driver",
            "streamseg.doctor",
        ),
        ("streamseg.backends.tensorrt", True, "from ... import doctor", "streamseg.doctor"),
        ("streamseg.backends.onnxruntime", False, "import streamseg.evaluate as e", "streamseg.evaluate"),
        ("streamseg.engines", False, "def f():\n    from .media import VideoInput", "streamseg.media"),
        ("streamseg.backends.base", False, "from ..models._torch import Tensor", "streamseg.models._torch"),
        ("streamseg.backends.base", False, "import torch", "torch"),
    ],
)
def test_a_forbidden_import_is_caught(module: str, is_package: bool, source: str, expected: str) -> None:
    (line,) = violations(module, imports_of(source, module, is_package))
    assert f"must not import {expected}" in line


def test_allowed_imports_pass() -> None:
    for module, source in [
        ("streamseg.backends.tensorrt.gate", "from ...scoring import scores"),
        ("streamseg.backends.tensorrt.build", "from ...hardware import cuda_driver"),
        ("streamseg.evaluate", "from .backends import select_backend"),
        ("streamseg.backends.tensorrt.calibration", "from ...media import VideoInput"),
    ]:
        assert violations(module, imports_of(source, module, False)) == []
