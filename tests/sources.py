"""Load a file of the repository that is not in a Python package (a collection module, a filter plugin) for a test."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
# The checkout's collections path: plugins import shared code as ansible_collections.rocm.provision.plugins...
COLLECTIONS = REPO / "collections"


def load_source(relative: str) -> ModuleType:
    """The module at REPO/relative, executed fresh (e.g. "plugins/modules/rocm_artifact_fetch.py")."""
    if str(COLLECTIONS) not in sys.path:
        sys.path.append(str(COLLECTIONS))
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
