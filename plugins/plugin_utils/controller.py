"""The collection's controller-side requirement, checked where it is needed: the filter plugins hand the hosts'
facts to the rocm-provision planner and read its data files (pins, GPU catalog, env-var catalog), so the
`rocm-provision` Python package, of the collection's own version, must be importable by the Python that runs
Ansible. Missing or of another version, the task fails with one line saying what to install, not a traceback.

    from ansible_collections.rocm.provision.plugins.plugin_utils.controller import require_provision
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

from ansible.errors import AnsibleFilterError

PACKAGE = "rocm-provision"
_COLLECTION_ROOT = Path(__file__).resolve().parents[2]
_LINKED_ROOT = Path(__file__).parents[2]  # the collection root as Ansible found it (a checkout's link tree)


@cache
def collection_version() -> str | None:
    """This collection's version: MANIFEST.json of an installed collection, galaxy.yml of a source tree."""
    for root in (_LINKED_ROOT, _COLLECTION_ROOT):
        manifest = root / "MANIFEST.json"
        if manifest.is_file():
            return str(json.loads(manifest.read_text(encoding="utf-8"))["collection_info"]["version"])
        galaxy = root / "galaxy.yml"
        if galaxy.is_file():
            import yaml

            return str((yaml.safe_load(galaxy.read_text(encoding="utf-8")) or {}).get("version") or "") or None
    return None


def _install_hint(version: str | None) -> str:
    pin = f"=={version}" if version else ""
    return (f"install it into the Python that runs Ansible ({sys.executable}): "
            f"{sys.executable} -m pip install '{PACKAGE}{pin}'")


def require_provision() -> ModuleType:
    """The rocm-provision package, or an AnsibleFilterError that says how to install the right one."""
    version = collection_version()
    try:
        import provision
        from provision import datafiles  # noqa: F401  (another package named `provision` has no data files)
    except ImportError as exc:
        raise AnsibleFilterError(
            f"the rocm.provision collection{f' {version}' if version else ''} needs the {PACKAGE} Python package "
            f"on the controller (its planner and data files), and it cannot be imported ({exc}); "
            f"{_install_hint(version)}") from None
    found = str(getattr(provision, "__version__", "") or "")
    if version and found != version:
        raise AnsibleFilterError(
            f"the rocm.provision collection {version} needs {PACKAGE} {version} on the controller, but "
            f"{Path(provision.__file__).parent} is {PACKAGE} {found or '(unknown version)'}; "
            f"{_install_hint(version)}")
    return provision
