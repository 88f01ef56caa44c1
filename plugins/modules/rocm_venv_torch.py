#!/usr/bin/python
"""Read which PyTorch build the host's users run: version, HIP version and compiled GPU targets."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rocm_venv_torch
short_description: Read the torch version and compiled GPU targets of the venv a host's users run
description:
  - Takes the first of O(venvs) that holds a torch install, else looks for one under O(search) (a user's venv,
    found by its torch-*.dist-info directory), and runs that venv's Python once, with a timeout, to read
    C(torch.__version__), C(torch.version.hip) and the GPU targets the build was compiled for
    (C(torch._C._cuda_getArchFlags()), which needs no GPU, else C(torch.cuda.get_arch_list())).
  - The venv's Python runs as the owner of the venv (not as root), with a minimal environment plus the
    HSA_OVERRIDE_GFX_VERSION the host's profile sets, if any is given in O(environment). Changes nothing.
options:
  venvs:
    description: Venv directories to try first, in order (e.g. provision_verify_venv).
    type: list
    elements: path
    default: []
  search:
    description: Glob patterns of venv directories to look through when none of O(venvs) holds torch.
    type: list
    elements: str
    default: ["/home/*/venvs/*", "/home/*/.venv", "/home/*/*/.venv", "/opt/venvs/*"]
  timeout:
    description: Seconds the probe may take (importing torch can be slow on a cold disk).
    type: int
    default: 120
  environment:
    description: Extra environment for the probe (names and values).
    type: dict
    default: {}
author: rocm-provision
notes:
  - Supports check mode (it only reads).
"""

EXAMPLES = r"""
- name: Read the users' torch build (version, compiled GPU targets) as the venv's owner
  rocm.provision.rocm_venv_torch:
    venvs: [/home/alice/venvs/torch]
    timeout: 120
    environment:
      HSA_OVERRIDE_GFX_VERSION: "10.3.0"
  register: venv_torch

- name: Look for any user's venv with torch in the default places
  rocm.provision.rocm_venv_torch:
  register: venv_torch
"""

RETURN = r"""
torch:
  description:
    - What the probe found. C(path) the venv (null when none with torch was found), C(owner) and C(run_as) the
      user it ran as, C(version), C(hip), C(cuda) from torch, C(arch_list) the compiled GPU targets and
      C(arch_source) how they were read, C(dist_version) the version from the dist-info name, C(named) whether
      the venv was one of O(venvs), and C(error) when the probe could not answer (never a module failure).
  returned: always
  type: dict
  sample:
    path: /home/alice/venvs/torch
    owner: alice
    run_as: alice
    version: 1.13.1+rocm5.2
    hip: "5.2.21151-afdc89f8"
    arch_list: [gfx1030, gfx900, gfx906, gfx908, gfx90a]
    arch_source: torch._C._cuda_getArchFlags()
    dist_version: 1.13.1+rocm5.2
    named: true
"""

import glob
import json
import os
import pwd
import re
import subprocess

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rocm.provision.plugins.module_utils.venv_trust import judge

PROBE = r"""
import json, sys
out = {}
try:
    import torch
    out["version"] = str(torch.__version__)
    out["hip"] = getattr(torch.version, "hip", None)
    out["cuda"] = getattr(torch.version, "cuda", None)
    flags = None
    getter = getattr(torch._C, "_cuda_getArchFlags", None)
    if getter is not None:
        flags = getter()
    if flags:
        out["arch_list"] = sorted(set(str(flags).replace(";", " ").split()))
        out["arch_source"] = "torch._C._cuda_getArchFlags()"
    else:
        out["arch_list"] = list(torch.cuda.get_arch_list()) if hasattr(torch.cuda, "get_arch_list") else []
        out["arch_source"] = "torch.cuda.get_arch_list()"
except Exception as exc:  # report, never raise: the probe's output is the answer
    out["error"] = f"{type(exc).__name__}: {exc}"
sys.stdout.write("ROCM_PROVISION_PROBE " + json.dumps(out) + "\n")
"""


def _dist_version(venv):
    """The torch version from a venv's site-packages dist-info name, without running anything."""
    for path in sorted(glob.glob(os.path.join(venv, "lib", "python*", "site-packages", "torch-*.dist-info"))):
        match = re.match(r"torch-(.+)\.dist-info$", os.path.basename(path))
        if match:
            return match.group(1)
    return None


def _candidates(venvs, patterns):
    seen = []
    for venv in venvs:
        if venv and venv not in seen:
            seen.append(venv)
    for pattern in patterns:
        for venv in sorted(glob.glob(pattern)):
            if venv not in seen:
                seen.append(venv)
    return seen


def probe(venv, timeout, environment):
    python = os.path.join(venv, "bin", "python")
    info = {"path": venv, "how": None}
    if not os.path.exists(python):
        info["error"] = f"{python} does not exist"
        return info
    owner = pwd.getpwuid(os.stat(venv).st_uid)
    info["owner"] = owner.pw_name
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": owner.pw_dir, "LANG": "C.UTF-8",
           **{str(k): str(v) for k, v in environment.items()}}
    kwargs = {}
    if os.geteuid() == 0 and owner.pw_uid != 0:
        # A user's venv is the user's code: never run it as root.
        kwargs = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": os.getgrouplist(owner.pw_name,
                                                                                                 owner.pw_gid)}
    info["run_as"] = owner.pw_name if kwargs else pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0 and not kwargs:
        others = judge(venv)  # a root-owned venv someone else can still change is not run as root either
        if others:
            info["error"] = (f"{python} was not run: it would run as root, but someone else can change what it runs "
                             f"({', '.join(others[:3])})")
            return info
    try:
        proc = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=owner.pw_dir if os.path.isdir(owner.pw_dir) else "/", check=False, **kwargs)
    except subprocess.TimeoutExpired:
        info["error"] = f"importing torch took more than {timeout} s"
        return info
    except OSError as exc:
        info["error"] = f"could not run {python}: {exc}"
        return info
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("ROCM_PROVISION_PROBE ")), None)
    if line is None:
        info["error"] = f"{python} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-500:]}"
        return info
    info.update(json.loads(line.split(" ", 1)[1]))
    info["how"] = "ran the venv's Python"
    return info


def main():
    module = AnsibleModule(
        argument_spec={
            "venvs": {"type": "list", "elements": "path", "default": []},
            "search": {"type": "list", "elements": "str",
                       "default": ["/home/*/venvs/*", "/home/*/.venv", "/home/*/*/.venv", "/opt/venvs/*"]},
            "timeout": {"type": "int", "default": 120},
            "environment": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    p = module.params
    for venv in _candidates(p["venvs"], p["search"]):
        if _dist_version(venv) is None:
            continue
        info = probe(venv, p["timeout"], p["environment"])
        info["dist_version"] = _dist_version(venv)
        info["named"] = venv in p["venvs"]
        module.exit_json(changed=False, torch=info)
    module.exit_json(changed=False, torch={"path": None, "error": "no venv with torch found (looked in: "
                                           + ", ".join(p["venvs"] + p["search"]) + ")"})


if __name__ == "__main__":
    main()
