"""Load a file of the repository that is not in a Python package (a role's module, a filter plugin) for a test."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_source(relative: str) -> ModuleType:
    """The module at REPO/relative, executed fresh (e.g. "roles/rocm_install/library/rocm_artifact_fetch.py")."""
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
