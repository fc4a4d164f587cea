"""The one door for optional imports: ``require`` imports a module or raises a one-line
MissingDependencyError naming what to install (the extra, or a system package for PyGObject)."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError


def require(module: str, extra: str | None, purpose: str, install: str | None = None) -> ModuleType:
    """``importlib.import_module(module)``, or MissingDependencyError for ``purpose``.

    ``extra`` is the streamseg extra that provides the module (None for a base dependency);
    ``install`` replaces the pip hint where pip cannot help (``apt-get install python3-gi``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        name = e.name if isinstance(e, ModuleNotFoundError) else None
        if name is not None and (module == name or module.startswith(name + ".")):
            raise MissingDependencyError(module, extra, purpose, install) from None
        # Installed but unimportable: one of its own imports is missing, or a shared library (pycuda
        # without a CUDA driver, torch with a broken install). Said as such, still on one line.
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        detail = f" (it does not import: {first})"
        raise MissingDependencyError(module, extra, purpose, install, detail) from None
