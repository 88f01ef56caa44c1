#!/usr/bin/python
"""Read or record the state a verified upgrade/fallback run left on a host (see provision/converge.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rocm_host_state
short_description: Read or record the converged state of a ROCm host
description:
  - C(state=read) returns the recorded state file (or null) and a fresh snapshot of what it watches. Changes nothing.
  - C(state=record) writes the state file (fingerprint, verification summary and time, snapshot of O(packages)
    and O(watch)); always a change (the host was verified again).
  - The snapshot holds dpkg versions of the packages matching O(packages), the target of /opt/rocm, and the
    sha256 of every file matching the O(watch) glob patterns (recursive C(**) allowed).
options:
  path:
    description: The state file.
    type: path
    default: /var/lib/rocm-provision/state.json
  state:
    description: C(read) or C(record).
    type: str
    choices: [read, record]
    default: read
  fingerprint:
    description: The inputs' fingerprint to record (C(state=record)).
    type: str
  verification:
    description: The verification summary to record (C(state=record)).
    type: dict
    default: {}
  packages:
    description: dpkg-query patterns whose installed versions are watched (C(state=record)).
    type: list
    elements: str
    default: []
  watch:
    description: Glob patterns of files whose content is watched (C(state=record)).
    type: list
    elements: str
    default: []
author: rocm-provision
notes:
  - Supports check mode; C(state=record) then reports the record without writing it.
"""

EXAMPLES = r"""
- name: Read the state a verified run recorded, with a fresh snapshot to compare
  rocm.provision.rocm_host_state:
  register: recorded

- name: Record the state after a verification passed
  rocm.provision.rocm_host_state:
    state: record
    fingerprint: "{{ fingerprint }}"
    verification: {verdict: pass, passed: 12, failed: 0}
    packages: [rocm-core, "amdgpu-dkms*"]
    watch: [/etc/environment, /etc/profile.d/*.sh]
"""

RETURN = r"""
recorded:
  description:
    - The state file's content C({schema, fingerprint, verification, packages, watch, snapshot, recorded_at}) (null
      when there is none, for C(state=read)); for C(state=record), what was written.
  returned: always
  type: dict
snapshot:
  description: C(state=read) only; what the recorded O(packages) and O(watch) patterns match now, to compare.
  returned: when O(state=read) and a state was recorded
  type: dict
path:
  description: The state file written.
  returned: when O(state=record)
  type: str
"""

import glob
import hashlib
import json
import os
import time

from ansible.module_utils.basic import AnsibleModule

SCHEMA = 1


def sha256(path):
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def snapshot(module, packages, watch):
    versions = {}
    dpkg = module.get_bin_path("dpkg-query")
    if dpkg and packages:
        _rc, out, _err = module.run_command([dpkg, "-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\n",
                                             *packages])
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) == 3 and parts[2][1:2] == "i":
                versions[parts[0]] = parts[1]
    files = {}
    for pattern in watch:
        for path in sorted(glob.glob(pattern, recursive=True)):
            if os.path.isfile(path) and "__pycache__" not in path:
                files[path] = sha256(path)
    rocm = os.path.realpath("/opt/rocm") if os.path.lexists("/opt/rocm") else None
    return {"packages": versions, "opt_rocm": rocm, "files": files}


def read_state(path):
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": "/var/lib/rocm-provision/state.json"},
            "state": {"type": "str", "choices": ["read", "record"], "default": "read"},
            "fingerprint": {"type": "str"},
            "verification": {"type": "dict", "default": {}},
            "packages": {"type": "list", "elements": "str", "default": []},
            "watch": {"type": "list", "elements": "str", "default": []},
        },
        required_if=[("state", "record", ["fingerprint"])],
        supports_check_mode=True,
    )
    path = module.params["path"]
    recorded = read_state(path)
    if module.params["state"] == "read":
        snap = snapshot(module, recorded.get("packages", []), recorded.get("watch", [])) if recorded else None
        module.exit_json(changed=False, recorded=recorded, snapshot=snap)
    doc = {
        "schema": SCHEMA,
        "fingerprint": module.params["fingerprint"],
        "verification": module.params["verification"],
        "packages": module.params["packages"],
        "watch": module.params["watch"],
        "snapshot": snapshot(module, module.params["packages"], module.params["watch"]),
    }
    doc["recorded_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if not module.check_mode:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    module.exit_json(changed=True, recorded=doc, path=path)


if __name__ == "__main__":
    main()
