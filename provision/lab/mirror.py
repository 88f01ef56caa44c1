"""Build the mirror tree (laid out like repo.radeon.com, signed with the lab key) and run its server."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from provision.lab import standins, wheels
from provision.lab.debs import BuiltDeb, DebSpec, SuiteInfo, build_deb, write_suite
from provision.lab.errors import LabError
from provision.lab.gpg import Signer
from provision.lab.paths import LabPaths

MIRROR_RECIPE = "6"
ORIGIN = "repo.radeon.com"  # what AMD's pin file matches (Pin: release o=repo.radeon.com)
LAB_ORIGIN = "rocm-provision-lab"
KEY_PATH = "rocm/rocm.gpg.key"
ROGUE_REPO = "rogue/rocm/apt/7.0"
LAB_ARCHIVE = "lab-archive"
LAB_UID = "rocm-provision lab repository signing key <lab@rocm-provision.invalid>"
ROGUE_UID = "rogue key, NOT the lab's (apt must refuse it) <rogue@rocm-provision.invalid>"


@dataclass(frozen=True)
class MirrorBuild:
    base_url: str
    fingerprint: str
    rogue_fingerprint: str
    kernel: str
    rebuilt: bool


def recipe() -> str:
    """MIRROR_RECIPE plus a hash of the code that makes the packages (stand-ins, deb builder, guest scripts),
    so changing a stand-in rebuilds the mirror and re-seeds the hosts without anyone bumping a number."""
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for path in [here / "standins.py", here / "debs.py", *sorted((here / "guest").iterdir())]:
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"{MIRROR_RECIPE}-{digest.hexdigest()[:12]}"


def signers(paths: LabPaths) -> tuple[Signer, Signer]:
    return Signer(paths.gnupg, LAB_UID), Signer(paths.gnupg_rogue, ROGUE_UID)


def _repo(root: Path, rel: str, suites: dict[str, list[DebSpec]], label: str, signer: Signer,
          archs: tuple[str, ...] = ("amd64",), origin: str = ORIGIN) -> None:
    repo_root = root / rel
    for suite, specs in suites.items():
        built: list[BuiltDeb] = [build_deb(spec, repo_root) for spec in specs]
        write_suite(repo_root, SuiteInfo(origin, label, suite, archs), built, signer)


def build(paths: LabPaths, base_url: str) -> MirrorBuild:
    """Build (or reuse) the mirror tree for `base_url`; every URL baked into a package uses it."""
    lab, rogue = signers(paths)
    fpr = lab.ensure_key()
    rogue_fpr = rogue.ensure_key()
    kernel = platform.release()
    expected = {"recipe": recipe(), "base_url": base_url, "fingerprint": fpr, "rogue": rogue_fpr,
                "kernel": kernel}
    root = paths.mirror
    manifest = root / ".lab-build.json"
    if manifest.exists():
        try:
            if json.loads(manifest.read_text()) == expected:
                return MirrorBuild(base_url, fpr, rogue_fpr, kernel, rebuilt=False)
        except ValueError:
            pass
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    try:
        _build_tree(root, base_url, lab, rogue, kernel)
    finally:
        lab.stop_agent()
        rogue.stop_agent()
    manifest.write_text(json.dumps(expected, indent=2) + "\n")
    return MirrorBuild(base_url, fpr, rogue_fpr, kernel, rebuilt=True)


def _build_tree(root: Path, base_url: str, lab: Signer, rogue: Signer, kernel: str) -> None:
    (root / KEY_PATH).parent.mkdir(parents=True, exist_ok=True)
    (root / KEY_PATH).write_text(lab.export_armored())
    keyring = lab.export_binary()
    (root / "rogue").mkdir(parents=True, exist_ok=True)
    (root / "rogue" / "rogue.gpg.key").write_text(rogue.export_armored())

    r52 = standins.rocm_packages(standins.R52, standins.R52_REVISION)
    _repo(root, "rocm/apt/5.2", {suite: r52 for suite in standins.R52_SUITES}, "ROCm 5.2", lab)
    dkms_2220 = standins.amdgpu_dkms(standins.AMDGPU_2220_VERSION)
    _repo(root, "amdgpu/22.20/ubuntu", {s: dkms_2220 for s in standins.AMDGPU_2220_SUITES}, "amdgpu 22.20", lab,
          ("amd64", "i386"))
    for suite in standins.AMDGPU_2220_SUITES:
        build_deb(standins.amdgpu_install_2220(base_url, suite), root,
                  dest=root / "amdgpu-install" / "22.20" / "ubuntu" / suite)

    r70 = {s: standins.rocm_packages(standins.R70, standins.R70_REVISIONS[s]) for s in standins.R70_SUITES}
    _repo(root, "rocm/apt/7.0", r70, "ROCm 7.0", lab)
    _repo(root, "graphics/7.0/ubuntu", {s: standins.graphics_packages(s) for s in standins.R70_SUITES},
          "graphics 7.0", lab, ("amd64", "i386"))
    _repo(root, "amdgpu/30.10/ubuntu",
          {s: standins.amdgpu_dkms(standins.AMDGPU_3010_VERSIONS[s]) for s in standins.R70_SUITES},
          "amdgpu 30.10", lab, ("amd64", "i386"))
    for suite in standins.R70_SUITES:
        build_deb(standins.amdgpu_install_70(base_url, suite, keyring), root,
                  dest=root / "amdgpu-install" / "7.0" / "ubuntu" / suite)

    _repo(root, LAB_ARCHIVE, {"bookworm": standins.kernel_packages(kernel, ubuntu=False),
                              "jammy": standins.kernel_packages(kernel, ubuntu=True),
                              "noble": standins.kernel_packages(kernel, ubuntu=True)},
          "rocm-provision lab archive (distro kernel packages)", lab, origin=LAB_ORIGIN)
    # The decoy: a copy of the 7.0 jammy suite signed by a key nobody trusts.
    _repo(root, ROGUE_REPO, {"jammy": r70["jammy"][:1]}, "rogue", rogue)


# --- the server process -------------------------------------------------------------------------------

def server_script() -> Path:
    return Path(__file__).with_name("server.py")


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers (sshd, the mirror) set SO_REUSEADDR, so connections in TIME_WAIT do not make a port busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(preferred: int | None) -> int:
    if preferred and port_free(preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def healthy(port: int, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_lab/health", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def pid_is_server(pid: int, root: Path) -> bool:
    """True when `pid` is alive and is the mirror server of the lab whose tree is `root` (by its command line).

    Several labs run side by side (tests, benchmarks) and pids get reused, so "some server.py" is not enough:
    stopping or reusing another lab's mirror would break that lab."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if not any(part.endswith(b"provision/lab/server.py") for part in cmdline):
        return False
    want = str(root).encode()
    return any(a == b"--root" and b == want for a, b in itertools.pairwise(cmdline))


def start(paths: LabPaths, port: int) -> int:
    if not port_free(port):
        raise LabError(f"127.0.0.1:{port} is already in use, so the lab mirror cannot listen there; "
                       f"stop what listens there or pass another --mirror-port")
    log = paths.mirror_log.open("ab")
    try:
        child = subprocess.Popen(
            [sys.executable, str(server_script()), "--root", str(paths.mirror), "--port", str(port),
             "--faults", str(paths.mirror_faults)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
        )
    finally:
        log.close()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if child.poll() is not None:
            tail = paths.mirror_log.read_text(errors="replace").strip().splitlines()[-10:]
            raise LabError("the lab mirror server exited at start; its log says:\n" + "\n".join(tail))
        if healthy(port, timeout=1):
            return child.pid
        time.sleep(0.1)
    stop(child.pid)
    raise LabError(f"the lab mirror server did not answer on 127.0.0.1:{port} within 15 s (log: {paths.mirror_log})")


def stop(pid: int, root: Path) -> bool:
    if not pid_is_server(pid, root):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and pid_is_server(pid, root):
        time.sleep(0.05)
    if pid_is_server(pid, root):
        os.kill(pid, signal.SIGKILL)
    return True


def publish_wheels(paths: LabPaths) -> wheels.WheelSet:
    found = wheels.gather(paths.wheel_cache)
    wheels.publish(found, paths.wheel_cache, paths.mirror)
    return found
