#!/usr/bin/python
"""Old /opt/rocm-X.Y.Z trees: deleted only when everything in them came from a package, else moved aside."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rocm_leftover_trees
short_description: Remove old /opt/rocm-X.Y.Z trees only when every file in them came from a package
description:
  - Works on the versioned ROCm trees under O(root) (C(rocm-X.Y) or C(rocm-X.Y.Z), real directories, older than
    O(keep_release); every one when O(keep_release) is empty).
  - O(state=snapshot), run before the old packages are purged, records in O(record) every path under those trees
    that a dpkg file list (C(<dpkg_info_dir>/*.list), one installed path per line) names, with its package. The
    record only grows (a run interrupted after the purge still has it).
  - O(state=clean), run after the purge. A tree that an installed package still lists is kept. Otherwise every
    file and link in it must be in the record (it came from a package) or match one of O(generated) (a file
    programs generate there, such as Python's C(__pycache__/*.pyc)); then the tree is deleted. A tree holding
    anything else (a user's file, a tarball install) is moved whole to C(<backup_dir>/<UTC time>/<tree>), with
    owners, modes and links kept, and reported with the files that made it so. Nothing else is ever deleted.
options:
  state:
    description: snapshot (before the purge) or clean (after it).
    type: str
    choices: [snapshot, clean]
    required: true
  root:
    description: Where the versioned trees are.
    type: path
    default: /opt
  keep_release:
    description: Trees of this release and newer are never touched; empty means every versioned tree.
    type: str
    default: ""
  dpkg_info_dir:
    description: dpkg's database of file lists.
    type: path
    default: /var/lib/dpkg/info
  record:
    description: The JSON file holding the paths dpkg listed under the trees before the purge.
    type: path
    default: /var/lib/rocm-provision/rocm_remove/dpkg-owned.json
  generated:
    description: Glob patterns (relative to a tree, C(**) for any depth) of files programs generate in a tree.
    type: list
    elements: str
    default: ["**/__pycache__/*.pyc"]
  backup_dir:
    description: Where a tree with files of unknown origin is moved.
    type: path
    default: /var/backups/rocm-provision/rocm_remove
author: rocm-provision
"""

EXAMPLES = r"""
- name: Record which files under old /opt/rocm-X.Y.Z trees came from packages, before they are purged
  rocm.provision.rocm_leftover_trees:
    state: snapshot
    keep_release: 7.0.0

- name: Delete old trees holding only packaged or generated files; move the others aside
  rocm.provision.rocm_leftover_trees:
    state: clean
    keep_release: 7.0.0
  register: leftovers
"""

RETURN = r"""
trees:
  description: One entry per versioned tree looked at, C({path, action, reason, foreign, foreign_count, backup});
    C(action) is removed, moved, kept or would-remove / would-move in check mode (recorded for a snapshot).
  type: list
  elements: dict
  returned: always
"""

import errno
import fnmatch
import json
import os
import re
import shutil
import tempfile
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule

TREE = re.compile(r"^rocm-([0-9]+)\.([0-9]+)(?:\.([0-9]+))?$")
SHOW = 10  # foreign files named in a message


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"[0-9]+", text)[:3])


def trees(root: str, keep_release: str) -> list[str]:
    out = []
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    keep = _version(keep_release) if keep_release else None
    for name in names:
        match = TREE.match(name)
        path = os.path.join(root, name)
        if not match or os.path.islink(path) or not os.path.isdir(path):
            continue
        version = tuple(int(g or 0) for g in match.groups())
        if keep is None or version < keep + (0,) * (3 - len(keep)):
            out.append(path)
    return out


def dpkg_paths(info_dir: str, prefixes: list[str]) -> dict[str, str]:
    """Paths under `prefixes` (or a prefix itself) named by a dpkg file list -> the package listing it."""
    found: dict[str, str] = {}
    if not prefixes:
        return found
    heads = tuple(p + "/" for p in prefixes)
    try:
        names = sorted(os.listdir(info_dir))
    except FileNotFoundError:
        return found
    for name in names:
        if not name.endswith(".list"):
            continue
        package = name[: -len(".list")]
        try:
            with open(os.path.join(info_dir, name), encoding="utf-8", errors="surrogateescape") as handle:
                for line in handle:
                    path = line.rstrip("\n")
                    if path in prefixes or path.startswith(heads):
                        found.setdefault(path, package)
        except OSError:
            continue
    return found


def load_record(path: str) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    paths = data.get("paths") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in paths.items()} if isinstance(paths, dict) else {}


def save_record(path: str, paths: dict[str, str]) -> None:
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".dpkg-owned-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"about": "paths dpkg listed under old /opt/rocm-X.Y.Z trees before rocm_remove purged them",
                   "paths": dict(sorted(paths.items()))}, handle, indent=0)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _match(parts: list[str], pattern: list[str]) -> bool:
    """Component-wise glob: `**` stands for any number of directories, other parts match one component."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match(parts[i:], pattern[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _match(parts[1:], pattern[1:])


def generated(rel: str, patterns: list[str]) -> bool:
    parts = rel.split("/")
    return any(_match(parts, pattern.split("/")) for pattern in patterns)


def foreign_files(tree: str, owned: dict[str, str], patterns: list[str]) -> list[str]:
    """Files and links in `tree` that neither came from a package nor are known generated files."""
    out = []
    for folder, dirs, files in os.walk(tree):
        entries = list(files) + [d for d in dirs if os.path.islink(os.path.join(folder, d))]
        for name in entries:
            path = os.path.join(folder, name)
            if path in owned or generated(os.path.relpath(path, tree), patterns):
                continue
            out.append(path)
    return sorted(out)


def _copy_keeping_owners(src: str, dst: str) -> None:
    shutil.copytree(src, dst, symlinks=True, copy_function=shutil.copy2)
    for folder, dirs, files in os.walk(src):
        for name in [".", *dirs, *files]:
            source = os.path.normpath(os.path.join(folder, name))
            st = os.lstat(source)
            os.lchown(os.path.join(dst, os.path.relpath(source, src)), st.st_uid, st.st_gid)


def move_aside(tree: str, backup_root: str, stamp: str) -> str:
    target_dir = os.path.join(backup_root, stamp)
    os.makedirs(target_dir, mode=0o700, exist_ok=True)
    target = os.path.join(target_dir, os.path.basename(tree))
    n = 1
    while os.path.lexists(target):
        n += 1
        target = os.path.join(target_dir, f"{os.path.basename(tree)}.{n}")
    try:
        os.rename(tree, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_keeping_owners(tree, target)  # another file system: copy whole, then remove the original
        shutil.rmtree(tree)
    return target


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["snapshot", "clean"], "required": True},
            "root": {"type": "path", "default": "/opt"},
            "keep_release": {"type": "str", "default": ""},
            "dpkg_info_dir": {"type": "path", "default": "/var/lib/dpkg/info"},
            "record": {"type": "path", "default": "/var/lib/rocm-provision/rocm_remove/dpkg-owned.json"},
            "generated": {"type": "list", "elements": "str", "default": ["**/__pycache__/*.pyc"]},
            "backup_dir": {"type": "path", "default": "/var/backups/rocm-provision/rocm_remove"},
        },
        supports_check_mode=True,
    )
    p = module.params
    found = trees(p["root"], p["keep_release"])
    record = load_record(p["record"])

    if p["state"] == "snapshot":
        merged = dict(record)
        for path, package in dpkg_paths(p["dpkg_info_dir"], found).items():
            merged.setdefault(path, package)
        changed = merged != record
        if changed and not module.check_mode:
            save_record(p["record"], merged)
        module.exit_json(changed=changed, trees=[{"path": t, "action": "recorded"} for t in found],
                         recorded=len(merged))

    installed = dpkg_paths(p["dpkg_info_dir"], found)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    results: list[dict[str, Any]] = []
    for tree in found:
        holders = sorted({pkg for path, pkg in installed.items() if path == tree or path.startswith(tree + "/")})
        if holders:
            results.append({"path": tree, "action": "kept", "foreign": [], "foreign_count": 0, "backup": "",
                            "reason": f"installed package(s) still list files there: {', '.join(holders[:5])}"})
            continue
        foreign = foreign_files(tree, record, p["generated"])
        entry: dict[str, Any] = {"path": tree, "foreign": foreign[:SHOW], "foreign_count": len(foreign),
                                 "backup": ""}
        if not foreign:
            entry.update(action="would-remove" if module.check_mode else "removed",
                         reason="every file in it came from a package or is a generated file")
            if not module.check_mode:
                shutil.rmtree(tree)
        else:
            shown = ", ".join(foreign[:SHOW]) + (f" and {len(foreign) - SHOW} more" if len(foreign) > SHOW else "")
            entry["reason"] = f"{len(foreign)} file(s) there came from no package: {shown}"
            if module.check_mode:
                entry["action"] = "would-move"
            else:
                try:
                    entry["backup"] = move_aside(tree, p["backup_dir"], stamp)
                except OSError as exc:
                    module.fail_json(msg=f"could not move {tree} aside to {p['backup_dir']}: {exc}; nothing in it "
                                         "was deleted", trees=results)
                entry["action"] = "moved"
                module.warn(f"{tree} was not deleted: {entry['reason']}. It was moved whole to {entry['backup']}; "
                            "look there and delete it when you are sure nothing in it is needed")
        results.append(entry)

    gone = [t for t in found if not os.path.exists(t)]
    if gone and not module.check_mode:
        kept = {k: v for k, v in record.items() if not any(k == t or k.startswith(t + "/") for t in gone)}
        if kept != record:
            save_record(p["record"], kept)
    changed = any(r["action"] != "kept" for r in results)
    module.exit_json(changed=changed, trees=results)


if __name__ == "__main__":
    main()
