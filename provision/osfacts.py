"""OS facts from an /etc/os-release file (a pasted one, or the local machine's), read with `distro`."""

from __future__ import annotations

import tempfile
from pathlib import Path

import distro

from provision.errors import InputError
from provision.planner import OsFacts


def os_facts_from_text(text: str) -> OsFacts:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "os-release"
        path.write_text(text, encoding="utf-8")
        return os_facts_from_file(path)


def os_facts_from_file(path: Path) -> OsFacts:
    info = distro.LinuxDistribution(
        include_lsb=False,
        os_release_file=str(path),
        distro_release_file="/nonexistent",
        include_uname=False,
        include_oslevel=False,
    )
    os_id, version = info.id(), info.version(best=False)
    if not os_id or not version:
        raise InputError(f"{path}: not an os-release file (needs ID= and VERSION_ID=)")
    return OsFacts(
        id=os_id,
        version_id=info.os_release_attr("version_id") or version,
        codename=info.codename() or info.os_release_attr("version_codename") or None,
        pretty_name=info.os_release_attr("pretty_name") or None,
    )
