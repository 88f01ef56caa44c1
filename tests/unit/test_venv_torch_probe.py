"""rocm_venv_torch (the preflight's read of the users' torch build) against stand-in venvs on this machine:
the venv's own Python runs the probe; a broken torch still yields the version from its dist-info."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from provision import torchbuild

MODULE = Path(__file__).parents[2] / "plugins" / "modules" / "rocm_venv_torch.py"


def _module() -> ModuleType:
    collections = str(Path(__file__).parents[2] / "collections")  # its module_utils, as the collection ships them
    if collections not in sys.path:
        sys.path.append(collections)
    spec = importlib.util.spec_from_file_location("rocm_venv_torch", MODULE)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _venv(root: Path, torch_init: str, version: str) -> Path:
    """A venv-shaped directory: bin/python is this interpreter, site-packages holds a stand-in torch."""
    venv = root / "venv"
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (site / "torch").mkdir(parents=True)
    (site / "torch" / "__init__.py").write_text(torch_init)
    (site / f"torch-{version}.dist-info").mkdir()
    (venv / "bin").mkdir()
    (venv / "bin" / "python").write_text(f"#!/bin/sh\nPYTHONPATH={site} exec {sys.executable} \"$@\"\n")
    os.chmod(venv / "bin" / "python", 0o755)
    return venv


ROCM52 = '''__version__ = "1.13.1+rocm5.2"
class version:
    hip = "5.2.21151-afdc89f8"
    cuda = None
class _C:
    @staticmethod
    def _cuda_getArchFlags():
        return "gfx900 gfx906 gfx908 gfx90a gfx1030"
class cuda:
    @staticmethod
    def get_arch_list():
        return []
'''


def test_probe_reads_version_and_targets_from_the_venvs_own_python(tmp_path: Path) -> None:
    venv = _venv(tmp_path, ROCM52, "1.13.1+rocm5.2")
    info = _module().probe(str(venv), 60, {"HSA_OVERRIDE_GFX_VERSION": "10.3.0"})
    assert info["version"] == "1.13.1+rocm5.2" and info["arch_source"] == "torch._C._cuda_getArchFlags()"
    build = torchbuild.from_probe({**info, "dist_version": "1.13.1+rocm5.2"})
    assert build is not None and build.source == "venv" and "gfx1010" not in (build.targets or ())
    assert build.miopen_release == "2.17"


def test_a_torch_that_cannot_run_still_gives_its_version(tmp_path: Path) -> None:
    venv = _venv(tmp_path, "raise ImportError('libamdhip64.so: cannot open shared object file')\n", "1.13.1+rocm5.2")
    mod = _module()
    info = mod.probe(str(venv), 60, {})
    assert "libamdhip64.so" in info["error"]
    info["dist_version"] = mod._dist_version(str(venv))
    build = torchbuild.from_probe(info)
    assert build is not None and build.source == "dist-info" and build.version == "1.13.1+rocm5.2"
    assert build.targets == ("gfx900", "gfx906", "gfx908", "gfx90a", "gfx1030")  # the public wheels' targets


def test_a_root_owned_venv_someone_else_can_change_is_not_run_as_root(tmp_path: Path) -> None:
    venv = _venv(tmp_path, ROCM52 + "open(__file__ + '.ran', 'w').close()\n", "1.13.1+rocm5.2")
    init = next(venv.glob("lib/python*/site-packages/torch/__init__.py"))
    os.chown(init, 1000, 1000)  # the venv is root's (this test runs as root), one file of it a user's
    info = _module().probe(str(venv), 60, {})
    assert "was not run: it would run as root, but someone else can change what it runs" in info["error"], info
    assert f"{init} (owner uid 1000)" in info["error"]
    assert not Path(str(init) + ".ran").exists() and "version" not in info
