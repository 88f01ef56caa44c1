"""rocm_remove's leftover-tree module (plugins/modules/rocm_leftover_trees.py), run as Ansible runs it,
on a directory tree shaped like a host: /opt/rocm-X.Y.Z trees and a dpkg database whose file lists have dpkg's
own format (one installed path per line, starting with `/.`, as in any /var/lib/dpkg/info/<package>.list).
The same module runs against a lab host's real dpkg in the rocm_remove Molecule scenario."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "plugins" / "modules" / "rocm_leftover_trees.py"

PACKAGED = {  # package -> files it installs under /opt/rocm-5.2.0 (directories are listed too, as dpkg does)
    "rocm-core": ["lib/librocm-core.so.1", ".info/version"],
    "rocm-smi-lib": ["libexec/rocm_smi/rocm_smi.py", "bin/rocm-smi"],
}


class Host:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.opt = root / "opt"
        self.info = root / "var/lib/dpkg/info"
        self.record = root / "var/lib/rocm-provision/rocm_remove/dpkg-owned.json"
        self.backup = root / "var/backups/rocm-provision/rocm_remove"
        self.info.mkdir(parents=True)

    def install(self, package: str, tree: str, files: list[str]) -> None:
        base = self.opt / tree
        listed = {"/.", "/opt", str(base)}
        for rel in files:
            path = base / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{package} {rel}\n")
            listed.add(str(path))
            parent = path.parent
            while parent != self.opt:
                listed.add(str(parent))
                parent = parent.parent
        # the module is told where "/" is only through its paths: list the test's real paths
        (self.info / f"{package}.list").write_text("\n".join(sorted(listed)) + "\n")

    def purge(self, package: str) -> None:
        """What `dpkg --purge` does to the files: removes them and the list, leaves directories others hold."""
        for line in (self.info / f"{package}.list").read_text().splitlines():
            path = Path(line)
            if path.is_file() and self.opt in path.parents:
                path.unlink()
        (self.info / f"{package}.list").unlink()

    def run(self, state: str, **args: Any) -> dict[str, Any]:
        params = {"state": state, "root": str(self.opt), "keep_release": "7.0.0", "dpkg_info_dir": str(self.info),
                  "record": str(self.record), "backup_dir": str(self.backup), **args}
        argfile = self.root / "args.json"
        argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": params}))
        done = subprocess.run([sys.executable, str(MODULE), str(argfile)], capture_output=True, text=True,
                              check=False)
        return json.loads(done.stdout)


def _host(tmp_path: Path) -> Host:
    host = Host(tmp_path)
    for package, files in PACKAGED.items():
        host.install(package, "rocm-5.2.0", files)
    host.install("rocm-core7", "rocm-7.0.0", ["lib/librocm-core.so.1"])
    (host.opt / "rocm-5.2.0" / "libexec/rocm_smi/__pycache__").mkdir()
    (host.opt / "rocm-5.2.0" / "libexec/rocm_smi/__pycache__/rocm_smi.cpython-310.pyc").write_bytes(b"\x6f\x0d")
    return host


def test_a_tree_with_a_users_file_is_moved_aside_whole_never_deleted(tmp_path: Path) -> None:
    host = _host(tmp_path)
    notes = host.opt / "rocm-5.2.0" / "share" / "kevin-notes.txt"
    notes.parent.mkdir(parents=True)
    notes.write_text("my tuned MIOpen settings\n")
    assert host.run("snapshot")["changed"]
    for package in PACKAGED:
        host.purge(package)

    result = host.run("clean")
    assert result["changed"]
    [tree] = result["trees"]
    assert tree["action"] == "moved" and tree["foreign"] == [str(notes)] and tree["foreign_count"] == 1
    warned = json.dumps(result.get("warnings", []))  # ansible-core 2.19 sends a warning as a structured event
    assert "kevin-notes.txt" in warned and tree["backup"] in warned, result
    kept = Path(tree["backup"]) / "share" / "kevin-notes.txt"
    assert kept.read_text() == "my tuned MIOpen settings\n"
    assert Path(tree["backup"]).parent.parent == host.backup  # <backup_dir>/<UTC time>/rocm-5.2.0
    assert not (host.opt / "rocm-5.2.0").exists()
    assert (host.opt / "rocm-7.0.0/lib/librocm-core.so.1").exists()  # the kept release is never looked at
    assert not host.run("clean")["changed"]  # idempotent


def test_a_tree_of_packaged_and_generated_files_only_is_deleted(tmp_path: Path) -> None:
    host = _host(tmp_path)
    host.run("snapshot")
    # rocm-core's purge failed to take two of its files away (say, a dpkg killed mid-purge): they came from a
    # package, so they may go; the .pyc is Python's byte code cache for the packaged rocm_smi.py.
    (host.info / "rocm-core.list").unlink()
    host.purge("rocm-smi-lib")

    result = host.run("clean")
    assert [t["action"] for t in result["trees"]] == ["removed"], result
    assert not (host.opt / "rocm-5.2.0").exists() and not host.backup.exists()
    # the record forgets the tree once it is gone, and a second run changes nothing
    assert not any("rocm-5.2.0" in p for p in json.loads(host.record.read_text())["paths"])
    assert not host.run("clean")["changed"]


def test_without_the_record_a_leftover_is_moved_not_deleted(tmp_path: Path) -> None:
    host = _host(tmp_path)  # no snapshot: nothing proves where the files came from
    (host.info / "rocm-core.list").unlink()
    (host.info / "rocm-smi-lib.list").unlink()
    [tree] = host.run("clean")["trees"]
    assert tree["action"] == "moved" and tree["foreign_count"] == 4
    assert (Path(tree["backup"]) / "lib/librocm-core.so.1").exists()


def test_a_tree_an_installed_package_still_lists_is_kept_and_check_mode_changes_nothing(tmp_path: Path) -> None:
    host = _host(tmp_path)
    host.run("snapshot")
    host.purge("rocm-smi-lib")
    [tree] = host.run("clean")["trees"]
    assert tree["action"] == "kept" and "rocm-core" in tree["reason"]

    host.purge("rocm-core")
    (host.opt / "rocm-5.2.0" / "mine.txt").write_text("x")
    checked = host.run("clean", _ansible_check_mode=True)
    assert checked["changed"] and checked["trees"][0]["action"] == "would-move"
    assert (host.opt / "rocm-5.2.0" / "mine.txt").exists() and not host.backup.exists()


def test_only_versioned_rocm_trees_older_than_the_kept_release(tmp_path: Path) -> None:
    host = Host(tmp_path)
    for name in ("rocm-5.2.0", "rocm-5.7", "rocm-7.0.0", "rocm-7.1.0", "rocm-tools", "rocm-5.2.0-backup"):
        (host.opt / name).mkdir(parents=True)
    os.symlink(host.opt / "rocm-5.7", host.opt / "rocm-4.5.2")
    result = host.run("clean")
    assert sorted(Path(t["path"]).name for t in result["trees"]) == ["rocm-5.2.0", "rocm-5.7"]
    assert all(t["action"] == "removed" for t in result["trees"])  # empty trees
    assert sorted(p.name for p in host.opt.iterdir()) == ["rocm-4.5.2", "rocm-5.2.0-backup", "rocm-7.0.0",
                                                          "rocm-7.1.0", "rocm-tools"]
