#!/usr/bin/python
"""Download pinned wheel sets once into a cache on the controller (pip download for the hosts' platform)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: torch_venv_wheel_fetch
short_description: Download each distinct pinned wheel set once into a cache (pip download, sha256 recorded)
description:
  - "For every set (find-links URL, the hosts' Python X.Y and platform, the pinned C(name==version) list), runs
    C(pip download --no-index --find-links URL --only-binary=:all: --platform P --python-version X.Y
    --implementation cp) once into C(cache_dir/wheels/<key>) and records every wheel's sha256 in
    C(manifest.json). A set whose manifest is complete is not downloaded again."
  - Runs where pip should download, normally on the controller (C(delegate_to) C(localhost) with C(run_once)),
    with the interpreter that runs the module.
  - Never fails for one set; errors are reported per set, so each host fails alone.
author:
  - rocm-provision developers
requirements:
  - pip (in the Python that runs the module)
notes:
  - Supports check mode; nothing is downloaded.
options:
  sets:
    description:
      - Wheel sets, each C({key, index_url, python_version, platform, requirements}); C(key) names the
        cache directory, C(requirements) is a list of C(name==version).
    type: list
    elements: dict
    required: true
  cache_dir:
    description: Cache root (C(~) is expanded); sets land in C(<cache_dir>/wheels/<key>).
    type: path
    required: true
  timeout:
    description: pip's network timeout in seconds.
    type: int
    default: 120
  index_username:
    description: User name for the wheel index (given to pip through a temporary 0600 netrc, never argv).
    type: str
  index_password:
    description: Password for the wheel index.
    type: str
  progress_file:
    description:
      - JSON lines C({file, done, total, files_done, files_total, time}) are appended to this file about
        twice a second while pip downloads (C(done) counts the bytes of the wheel being downloaded, C(total) is the
        size pip announced; a wheel's last line has C(done) = C(total) = its size; C(files_total) is null, as the
        pins' dependencies come along), for a progress bar.
    type: path
"""

EXAMPLES = r"""
- name: Download the pinned PyTorch wheel set for Python 3.12 hosts once into the controller's cache
  rocm.provision.torch_venv_wheel_fetch:
    sets:
      - key: rocm-rel-7.0-cp312
        index_url: https://repo.radeon.com/rocm/manylinux/rocm-rel-7.0/
        python_version: "3.12"
        platform: manylinux_2_28_x86_64
        requirements: ["torch==2.8.0+rocm7.0.0.git64359f59"]
    cache_dir: ~/.cache/rocm-provision
  register: wheels
  run_once: true
  delegate_to: localhost
  become: false

- name: Fail when the set could not be downloaded
  ansible.builtin.assert:
    that: wheels.sets['rocm-rel-7.0-cp312'].ok
    fail_msg: "{{ wheels.sets['rocm-rel-7.0-cp312'].error }}"
"""

RETURN = r"""
sets:
  description:
    - By key, C({ok, dir, files, error, downloaded}); C(files) is a list of C({file, name, version, sha256, size,
      path}).
  returned: always
  type: dict
cache_dir:
  description: The cache root, C(~) expanded.
  returned: always
  type: str
"""

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rocm.provision.plugins.module_utils.download import Progress, file_digest


def sha256(path: str) -> str:
    return file_digest(path, "sha256")


def describe(directory: str) -> list[dict[str, Any]]:
    out = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".whl"):
            continue
        path = os.path.join(directory, name)
        parts = urllib.parse.unquote(name)[: -len(".whl")].split("-")
        out.append({"file": name, "name": parts[0], "version": parts[1], "sha256": sha256(path),
                    "size": os.path.getsize(path), "path": path})
    return out


def cached(directory: str) -> list[dict[str, Any]] | None:
    manifest = os.path.join(directory, "manifest.json")
    try:
        with open(manifest, encoding="utf-8") as handle:
            files = json.load(handle)["files"]
    except (OSError, ValueError, KeyError):
        return None
    for item in files:
        path = os.path.join(directory, item["file"])
        if not os.path.isfile(path) or os.path.getsize(path) != item["size"]:
            return None
        item["path"] = path
    return list(files)


# pip's "  Downloading URL (12.3 MB)" line (printed whether or not its own progress bar is on)
DOWNLOADING = re.compile(r"^\s*Downloading (\S+?)(?: \((\d+(?:\.\d+)?) (bytes|kB|MB|GB)\))?\s*$")
UNITS = {"bytes": 1, "kB": 1000, "MB": 1000**2, "GB": 1000**3}


class PipProgress:
    """Follows a running `pip download`: the wheel it announced last, and how much of it sits in pip's temp dir.
    pip fetches one file at a time, so a new announcement means the one before is whole."""

    def __init__(self, path: str, tmp: str, dest: str) -> None:
        self.out = Progress(path, None)  # this class paces its own writes (watch): each one is forced
        self.tmp = tmp
        self.dest = dest
        self.file = ""
        self.total: int | None = None
        self.files_done = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def line(self, text: str) -> None:
        match = DOWNLOADING.match(text)
        if not match:
            return
        with self.lock:
            if self.file:
                self._write(finished=True)
                self.files_done += 1
            self.file = urllib.parse.unquote(match.group(1).rsplit("/", 1)[-1])
            size = match.group(2)
            self.total = int(float(size) * UNITS[match.group(3)]) if size else None

    def received(self) -> int:
        best = 0
        with contextlib.suppress(OSError):  # pip copies a finished wheel into dest
            best = os.path.getsize(os.path.join(self.dest, self.file))
        for folder, _dirs, names in os.walk(self.tmp):
            for name in names:
                if urllib.parse.unquote(name) == self.file:
                    with contextlib.suppress(OSError):  # pip may move it away meanwhile
                        best = max(best, os.path.getsize(os.path.join(folder, name)))
        return best

    def write(self, finished: bool = False) -> None:
        with self.lock:
            self._write(finished)

    def _write(self, finished: bool) -> None:
        if not self.file:
            return
        done = self.received()
        # pip announces a rounded size; once the file is whole, its own size is the total
        total = done if finished else max(self.total, done) if self.total is not None else None
        # how many files pip will fetch is known only at the end (dependencies of the pins come along): files_total None
        self.out.files_done = self.files_done
        self.out.write(self.file, done, total, force=True)

    def watch(self) -> None:
        while not self.stop.wait(0.5):
            self.write()


def run_pip(argv: list[str], env: dict[str, str], progress_file: str | None, dest: str) -> tuple[int, str]:
    """Run pip; with a progress file, follow its output and temp dir while it downloads. Returns (exit, output)."""
    if not progress_file:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
        return done.returncode, done.stdout + done.stderr
    tmp = dest + ".tmp"  # pip's own temp dir (TMPDIR) while following it: the progress reads it
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp, mode=0o700)
    progress = PipProgress(progress_file, tmp, dest)
    watcher = threading.Thread(target=progress.watch, daemon=True)
    lines: list[str] = []
    try:
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=dict(env, TMPDIR=tmp)) as pip:
            watcher.start()
            assert pip.stdout is not None
            for text in pip.stdout:
                lines.append(text)
                progress.line(text)
            code = pip.wait()
        progress.stop.set()
        watcher.join()
        if code == 0:
            progress.write(finished=True)
    finally:
        progress.stop.set()
        shutil.rmtree(tmp, ignore_errors=True)
    return code, "".join(lines)


def fetch(spec: dict[str, Any], root: str, timeout: int, check: bool, netrc: str,
          progress_file: str | None = None) -> dict[str, Any]:
    key = str(spec["key"])
    directory = os.path.join(root, "wheels", key)
    files = cached(directory)
    if files is not None:
        return {"ok": True, "dir": directory, "files": files, "downloaded": False, "error": ""}
    if check:
        return {"ok": True, "dir": directory, "files": [], "downloaded": True, "error": "",
                "note": "check mode: would download"}
    partial = directory + ".part"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial, mode=0o755)
    requirements = os.path.join(partial, "requirements.txt")
    with open(requirements, "w", encoding="utf-8") as handle:
        handle.write("\n".join(spec["requirements"]) + "\n")
    argv = [sys.executable, "-m", "pip", "download", "--no-index", "--find-links", str(spec["index_url"]),
            "--only-binary=:all:", "--platform", str(spec["platform"]), "--python-version",
            str(spec["python_version"]), "--implementation", "cp", "--progress-bar", "off", "--timeout",
            str(timeout), "--disable-pip-version-check", "--no-input", "--dest", partial, "-r", requirements]
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, NETRC=netrc)
    code, output = run_pip(argv, env, progress_file, partial)
    if code != 0:
        tail = " | ".join(output.strip().splitlines()[-6:])
        shutil.rmtree(partial, ignore_errors=True)
        return {"ok": False, "dir": directory, "files": [], "downloaded": False,
                "error": f"pip download from {spec['index_url']} failed (exit {code}): {tail}"}
    os.unlink(requirements)
    files = describe(partial)
    with open(os.path.join(partial, "manifest.json"), "w", encoding="utf-8") as handle:
        json.dump({"index_url": spec["index_url"], "python_version": spec["python_version"],
                   "platform": spec["platform"], "requirements": spec["requirements"],
                   "files": [{k: v for k, v in f.items() if k != "path"} for f in files]}, handle, indent=2)
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(partial, directory)
    for item in files:
        item["path"] = os.path.join(directory, item["file"])
    return {"ok": True, "dir": directory, "files": files, "downloaded": True, "error": ""}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "sets": {"type": "list", "elements": "dict", "required": True},
            "cache_dir": {"type": "path", "required": True},
            "timeout": {"type": "int", "default": 120},
            "index_username": {"type": "str"},
            "index_password": {"type": "str", "no_log": True},
            "progress_file": {"type": "path"},
        },
        supports_check_mode=True,
    )
    root = os.path.expanduser(module.params["cache_dir"])
    results: dict[str, Any] = {}
    netrc = os.devnull
    if module.params["index_username"]:
        fd, netrc = tempfile.mkstemp(prefix="torch-venv-netrc-")
        with os.fdopen(fd, "w") as handle:  # mkstemp: mode 0600
            for spec in module.params["sets"]:
                host = urllib.parse.urlsplit(str(spec.get("index_url", ""))).hostname
                if host:
                    handle.write(f"machine {host} login {module.params['index_username']} "
                                 f"password {module.params['index_password'] or ''}\n")
        module.add_cleanup_file(netrc)
    for spec in module.params["sets"]:
        missing = [k for k in ("key", "index_url", "python_version", "platform", "requirements") if not spec.get(k)]
        if missing:
            module.fail_json(msg=f"wheel set {spec} lacks {', '.join(missing)}")
        if spec["key"] in results:
            continue
        try:
            results[spec["key"]] = fetch(spec, root, module.params["timeout"], module.check_mode, netrc,
                                         module.params["progress_file"])
        except OSError as exc:
            results[spec["key"]] = {"ok": False, "dir": "", "files": [], "downloaded": False,
                                    "error": f"{exc.__class__.__name__}: {exc}"}
    module.exit_json(changed=any(r["downloaded"] for r in results.values()), sets=results, cache_dir=root)


if __name__ == "__main__":
    main()
