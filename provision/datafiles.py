"""Load the project's versioned data files (provision/data/*.yaml), shared with the Ansible roles."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from provision.errors import ProvisionError


def data_dir() -> Path:
    """The directory holding the data files; roles read the same files from here."""
    return Path(str(resources.files("provision") / "data"))


@cache
def load(name: str) -> dict[str, Any]:
    """Parse `provision/data/<name>.yaml`. Cached: the files are read-only at run time."""
    path = data_dir() / f"{name}.yaml"
    try:
        with path.open(encoding="utf-8") as fh:
            loaded = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as exc:
        raise ProvisionError(f"cannot read data file {path}: {exc}; reinstall rocm-provision") from exc
    if not isinstance(loaded, dict) or loaded.get("schema_version") != 1:
        raise ProvisionError(f"data file {path} has an unknown layout (expected schema_version: 1)")
    return loaded
