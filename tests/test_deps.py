"""streamseg/_deps.py: an optional import either works or fails in one line naming what to install."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import tomllib

from streamseg._deps import require
from streamseg.errors import MissingDependencyError

ROOT = Path(__file__).resolve().parents[1]


def test_require_returns_the_module() -> None:
    assert require("json", "train", "x").dumps([1]) == "[1]"


@pytest.mark.parametrize(
    ("module", "extra", "install", "message"),
    [
        (
            "no_such_mod_x.sub",
            "train",
            None,
            "reading masks needs the Python module 'no_such_mod_x.sub': pip install 'streamseg[train]'",
        ),
        (
            "no_such_mod_x",
            None,
            None,
            "reading masks needs the Python module 'no_such_mod_x': pip install --force-reinstall streamseg",
        ),
        (
            "no_such_mod_x",
            None,
            "apt-get install python3-gi",
            "reading masks needs the Python module 'no_such_mod_x': apt-get install python3-gi",
        ),
    ],
)
def test_missing_module_is_one_line_naming_the_install(
    module: str, extra: str | None, install: str | None, message: str
) -> None:
    with pytest.raises(MissingDependencyError) as info:
        require(module, extra, "reading masks", install)
    assert str(info.value) == message
    assert info.value.extra == extra


def test_installed_but_broken_module_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "brokenpkg_x").mkdir()
    (tmp_path / "brokenpkg_x" / "__init__.py").write_text("import no_such_inner_mod_x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingDependencyError) as info:
        require("brokenpkg_x", "torch", "the torch backend")
    assert str(info.value) == (
        "the torch backend needs the Python module 'brokenpkg_x' (it does not import: "
        "No module named 'no_such_inner_mod_x'): pip install 'streamseg[torch]'"
    )


def _named_extras() -> set[str]:
    """Every extra the package's messages and require() calls name."""
    named: set[str] = set()
    for path in (ROOT / "streamseg").rglob("*.py"):
        text = path.read_text()
        named |= set(re.findall(r"streamseg\[(\w+)\]", text))
        named |= set(re.findall(r'require\(\s*"[\w.]+",\s*"(\w+)"', text))
    return named


def test_every_named_extra_exists_in_pyproject() -> None:
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    named = _named_extras()
    assert {"torch", "train", "tensorrt"} <= named  # the scan finds the messages at all
    assert named <= extras, f"messages name extras pyproject does not define: {sorted(named - extras)}"


def test_eval_without_pillow_is_a_one_line_error_naming_train(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    cv2.imwrite(str(data / "images" / "a.png"), np.zeros((36, 64, 3), np.uint8))
    cv2.imwrite(str(data / "masks" / "a.png"), np.zeros((36, 64), np.uint8))
    # Pillow is installed in this venv; None in sys.modules makes its import fail as if it were not
    # (the wheel test runs the same command in a venv that really has no Pillow).
    code = (
        "import sys\nsys.modules['PIL'] = None\nfrom streamseg.cli import main\n"
        f"sys.exit(main(['eval', 'selfie_landscape', '--data', {str(data)!r}]))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        "streamseg: error: reading PNG masks (eval, train) needs the Python module 'PIL.Image': "
        "pip install 'streamseg[train]'"
    )
    assert "Traceback" not in r.stderr


def test_doctor_reports_a_missing_base_dependency_instead_of_failing() -> None:
    code = "import sys\nsys.modules['av'] = None\nfrom streamseg.cli import main\nsys.exit(main(['doctor']))\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (row,) = [line for line in r.stdout.splitlines() if line.startswith("pyav ")]
    assert row.split(None, 1)[1] == (
        "missing: video decoding and encoding needs the Python module 'av': pip install --force-reinstall streamseg"
    )
