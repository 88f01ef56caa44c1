"""Converged hosts: skip the work whose inputs did not change since the run that last verified the host.

After a host passes verification, `playbooks/upgrade.yml` records on it (rocm_preflight `record`, module
`rocm_host_state`) a state file holding a fingerprint of the run's inputs and a snapshot of what that run
left on the host (dpkg versions of the ROCm packages, the /opt/rocm target, hashes of the venv's torch
version file, the env profile, the apt sources and the shipped verification suite). The next run's preflight
reads it back with a fresh snapshot; a host whose fingerprint and snapshot both match is *converged* and the
stage/remove/install/venv/profile/verify plays skip it. Anything else takes the full path, verification
included: a changed input (plan, any `provision_*` setting, the verify venv/profile/device, the pins and
catalogs, the roles and the suite's code) or a changed host (a package upgraded by hand, an edited profile).
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

STATE_SCHEMA = 1
# Settings that change how a run goes, not what the host ends up with.
_RUN_ONLY = ("provision_serial", "provision_max_fail_percent", "provision_lock_max_age")
# What the fingerprint hashes of the tool itself: of the rocm.provision collection the roles, the playbook and
# the plugins (modules and filters); of this package the suite and the data files.
_TREE = ("roles", "playbooks/upgrade.yml", "plugins")
_PACKAGE_TREE = ("convcheck", "data")


@cache
def tree_hash(root: str) -> str:
    """sha256 over the files that decide what a run does to a host (read once per controller process);
    `root` is the collection's root."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for base, entries, prefix in ((Path(root), _TREE, ""), (package, _PACKAGE_TREE, "provision/")):
        for entry in entries:
            path = base / entry
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for file in files:
                if "__pycache__" in file.parts or "molecule" in file.parts or not file.is_file():
                    continue
                digest.update(f"{prefix}{file.relative_to(base)}".encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def package_root() -> Path:
    """The rocm.provision collection's root (roles/, playbooks/, plugins/): inside the installed package, or the
    checkout's link tree."""
    from provision.runner import collection_root

    return collection_root()


def fingerprint(plan: dict[str, Any], provision_vars: dict[str, Any], verify: dict[str, Any],
                root: str | None = None) -> str:
    """The inputs of a host's run, as one sha256: the plan's action and env, the validated `provision_*`
    settings (defaults from the pins included), the verification settings, and the tool's own files."""
    from provision.inventory import spec_from_vars

    settings = {k: v for k, v in provision_vars.items() if k.startswith("provision_") and k not in _RUN_ONLY
                and not k.startswith("provision_lab_")}
    spec = spec_from_vars("host", settings).to_vars()
    doc = {
        "schema": STATE_SCHEMA,
        "action": plan.get("action"),
        "env": plan.get("env") or {},
        "spec": spec,
        "verify": verify,
        "tree": tree_hash(str(root or package_root())),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def decide(state: dict[str, Any] | None, expected: str, *, force: bool = False) -> dict[str, Any]:
    """Whether a host is converged, from `rocm_host_state`'s answer (`recorded` and a fresh `snapshot`).

    Returns {converged, reason, verified_at, verification}; `reason` says why the full path is taken."""
    recorded = (state or {}).get("recorded")
    out: dict[str, Any] = {"converged": False, "reason": "", "verified_at": None, "verification": None}
    if force:
        out["reason"] = "forced (--reverify / rocm_preflight_force)"
    elif not isinstance(recorded, dict):
        out["reason"] = "no verified run recorded on the host"
    elif recorded.get("schema") != STATE_SCHEMA:
        out["reason"] = "the state file is from another version of the tool"
    elif recorded.get("fingerprint") != expected:
        out["reason"] = "the inputs changed since the last verified run (settings, plan, pins or roles)"
    elif recorded.get("snapshot") != (state or {}).get("snapshot"):
        before, now = recorded.get("snapshot") or {}, (state or {}).get("snapshot") or {}
        what = sorted(_differences(before, now))
        out["reason"] = "the host changed since the last verified run: " + ", ".join(what[:5])
    else:
        out.update(converged=True, reason="converged: nothing changed since the verified run",
                   verified_at=recorded.get("recorded_at"), verification=recorded.get("verification"))
    return out


def _differences(before: dict[str, Any], now: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for key in set(before) | set(now):
        a, b = before.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found |= {f"{key} {k}" for k in set(a) | set(b) if a.get(k) != b.get(k)}
        elif a != b:
            found.add(key)
    return found
