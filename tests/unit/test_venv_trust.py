"""rocm_venv_trust (plugins/modules/rocm_venv_trust.py), run as Ansible runs it, on venv-shaped trees: who could
change the code a venv runs. (The lab test of the verification's user is in tests/roles/test_roles_on_lab.py.)"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "plugins" / "modules" / "rocm_venv_trust.py"


def trust(tmp: Path, venv: Path, **args: Any) -> dict[str, Any]:
    argfile = tmp / "args.json"
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"path": str(venv), **args}}))
    env = dict(os.environ, PYTHONPATH=str(REPO / "collections"))  # its module_utils, as the collection ships them
    done = subprocess.run([sys.executable, str(MODULE), str(argfile)], capture_output=True, text=True, check=False,
                          env=env)
    return json.loads(done.stdout)


def venv(tmp: Path) -> Path:
    """The layout `python -m venv` makes: bin/python a link to the system interpreter, site-packages with a .pth."""
    root = tmp / "venvs" / "torch"
    site = root / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "bin" / "python").symlink_to("/usr/bin/python3")  # root's, as on a host
    (root / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (site / "distutils-precedence.pth").write_text("import os\n")
    for path in [tmp, tmp / "venvs", *[p for p in root.rglob("*")], root]:
        os.lchown(path, 0, 0)
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def test_a_root_owned_venv_is_root_only_and_one_user_file_anywhere_is_not(tmp_path: Path) -> None:
    root = venv(tmp_path)
    result = trust(tmp_path, root)
    assert result["root_only"] and result["owner"] == "root" and result["uid"] == 0, result
    pth = root / "lib" / "python3.11" / "site-packages" / "distutils-precedence.pth"
    os.chown(pth, 1000, 1000)
    result = trust(tmp_path, root)
    assert not result["root_only"] and result["writable_by_others"] == [f"{pth} (owner uid 1000)"]
    os.chown(pth, 0, 1000)
    pth.chmod(0o664)
    assert trust(tmp_path, root)["writable_by_others"] == [f"{pth} (writable by group gid 1000)"]
    os.chown(pth, 0, 0)
    (root / "bin" / "python").unlink()
    (root / "bin" / "python").symlink_to(tmp_path / "venvs" / "python3")  # an interpreter in a user's directory
    (tmp_path / "venvs" / "python3").write_text("")
    os.chown(tmp_path / "venvs" / "python3", 1000, 1000)
    assert f"{tmp_path / 'venvs' / 'python3'} (owner uid 1000)" in trust(tmp_path, root)["writable_by_others"]
    os.chown(tmp_path / "venvs" / "python3", 0, 0)
    (tmp_path / "venvs").chmod(0o777)  # someone could rename the venv away and put theirs in its place
    assert "writable by others" in trust(tmp_path, root)["writable_by_others"][0]


def test_a_users_venv_is_named_by_its_owner(tmp_path: Path) -> None:
    root = venv(tmp_path)
    for path in [root, *root.rglob("*")]:
        os.lchown(path, 1000, 1000)
    result = trust(tmp_path, root)
    assert result["uid"] == 1000 and not result["root_only"]


def test_fix_makes_rocm_provisions_own_venv_root_owned_and_world_readable(tmp_path: Path) -> None:
    root = venv(tmp_path)
    script = root / "bin" / "torchrun"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o770)
    os.chown(script, 1000, 1000)
    private = root / "lib" / "python3.11" / "site-packages" / "secret.py"
    private.write_text("")
    private.chmod(0o600)
    result = trust(tmp_path, root, fix=True)
    assert result["changed"] and result["root_only"], result
    assert stat.S_IMODE(script.stat().st_mode) == 0o755 and script.stat().st_uid == 0
    assert stat.S_IMODE(private.stat().st_mode) == 0o644
    assert not trust(tmp_path, root, fix=True)["changed"]  # idempotent
