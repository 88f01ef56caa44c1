#!/usr/bin/python
"""Who may change a venv's code: its owner, and whether anyone but root could change what root would run."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rocm_venv_trust
short_description: Tell a venv's owner and whether anyone but root can change the code it runs
description:
  - Reads the venv O(path) without running anything in it. Reports its owner (the user a verification runs as)
    and C(root_only), true when root alone can change what C(bin/python) would run, that is when the venv, every
    directory above it, every file and directory in it, and the interpreter C(bin/python) resolves to (with the
    directories above that) are owned by root and writable by no group but root's and by no others. Python runs
    any C(.pth) file in site-packages at start-up, so one user-writable file or directory anywhere in the venv is
    enough to run that user's code.
  - With O(fix=true) (for a venv rocm-provision made itself, as root) every file and directory in the venv is
    given to root:root, group and other write bits are taken off and read (and search, for directories and
    executables) bits are given to all, so the venv is root-owned and world-readable; then it is judged again.
options:
  path:
    description: The venv's directory.
    type: path
    required: true
  fix:
    description: Make the venv root-owned and world-readable first (only for rocm-provision's own venv).
    type: bool
    default: false
author: rocm-provision
"""

EXAMPLES = r"""
- name: Who owns the venv, and can anyone but root change what it runs?
  rocm.provision.rocm_venv_trust:
    path: /home/researcher/venvs/torch113
  register: trust

- name: Make rocm-provision's own venv root-owned and world-readable, then judge it
  rocm.provision.rocm_venv_trust:
    path: /opt/torch-rocm7.0
    fix: true
"""

RETURN = r"""
exists:
  description: Whether the venv directory exists.
  type: bool
  returned: always
owner:
  description: The venv directory's owner (user name, or the uid as text when it has no name).
  type: str
  returned: always
uid:
  description: The venv directory's owner's uid.
  type: int
  returned: always
root_only:
  description: True when nobody but root can change what the venv runs.
  type: bool
  returned: always
writable_by_others:
  description: Up to 10 paths that someone other than root could change, each with who (C(path (uid 1000))).
  type: list
  elements: str
  returned: always
"""

import os
import pwd
import stat
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rocm.provision.plugins.module_utils.venv_trust import judge

SHOW = 10


def fix(venv: str) -> bool:
    """root:root, no group/other write, world-readable (and searchable/executable where the owner may). Returns
    whether anything changed."""
    changed = False
    for folder, dirs, files in os.walk(venv):
        for path in [folder] + [os.path.join(folder, n) for n in dirs + files]:
            st = os.lstat(path)
            if st.st_uid != 0 or st.st_gid != 0:
                os.lchown(path, 0, 0)
                changed = True
            if stat.S_ISLNK(st.st_mode):
                continue
            mode = stat.S_IMODE(st.st_mode)
            want = (mode & ~0o022) | 0o444
            if stat.S_ISDIR(st.st_mode) or mode & 0o100:
                want |= 0o111
            if want != mode:
                os.chmod(path, want)
                changed = True
    return changed


def main() -> None:
    module = AnsibleModule(
        argument_spec={"path": {"type": "path", "required": True}, "fix": {"type": "bool", "default": False}},
        supports_check_mode=True,
    )
    venv = module.params["path"]
    result: dict[str, Any] = {"changed": False, "path": venv, "exists": os.path.isdir(venv), "owner": "",
                              "uid": -1, "root_only": False, "writable_by_others": []}
    if not result["exists"]:
        module.exit_json(**result)
    if module.params["fix"] and not module.check_mode:
        try:
            result["changed"] = fix(venv)
        except OSError as exc:
            module.fail_json(msg=f"cannot make {venv} root-owned and world-readable: {exc}", **result)
    st = os.stat(venv)
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    others = judge(venv)
    result.update(owner=owner, uid=st.st_uid, root_only=not others, writable_by_others=others[:SHOW],
                  writable_count=len(others))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
