"""Base image (Debian 12 minbase via mmdebstrap, built once, cached) and the simulated-Ubuntu images."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from provision.lab import proc
from provision.lab.errors import LabError
from provision.lab.podman import Podman

RECIPE_VERSION = "3"
SUITE = "bookworm"
PACKAGES = (
    "python3", "python3-venv", "python3-apt", "ca-certificates", "openssh-server", "sudo", "pciutils",
    "gnupg", "curl", "kmod", "procps", "iproute2", "xz-utils", "less", "apt-utils",
)
# Hooks run on the controller with the chroot as $1. Host keys are removed so every container makes its own;
# `render` is the group udev creates on a real host (ROCm users are added to render and video).
HOOKS = (
    'rm -f "$1"/etc/ssh/ssh_host_*',
    'chroot "$1" groupadd -f -r render',
    'mkdir -p "$1"/run/sshd "$1"/opt/provision-lab',
)
DPKG_OPTS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)
BASE_REPO = "localhost/rocm-provision-lab-debian12"

UBUNTU_SIM: dict[str, dict[str, str]] = {
    "ubuntu2404-sim": {"version": "24.04", "full": "24.04.3 LTS (Noble Numbat)", "codename": "noble",
                       "pretty": "Ubuntu 24.04.3 LTS"},
    "ubuntu2204-sim": {"version": "22.04", "full": "22.04.5 LTS (Jammy Jellyfish)", "codename": "jammy",
                       "pretty": "Ubuntu 22.04.5 LTS"},
}


def recipe_hash() -> str:
    text = "\n".join([RECIPE_VERSION, SUITE, *PACKAGES, *HOOKS, *DPKG_OPTS])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def base_tag() -> str:
    return f"{BASE_REPO}:{recipe_hash()}"


def ensure_base_image(podman: Podman, images_dir: Path) -> tuple[str, bool]:
    """Return (tag, built): import the cached tarball or build it with mmdebstrap when neither exists."""
    tag = base_tag()
    if podman.image_exists(tag):
        return tag, False
    images_dir.mkdir(parents=True, exist_ok=True)
    tarball = images_dir / f"debian12-{recipe_hash()}.tar"
    if not tarball.exists():
        mmdebstrap = proc.require_tool("mmdebstrap", "mmdebstrap")
        partial = tarball.with_suffix(".tar.partial")
        args: list[str] = [mmdebstrap, "--variant=minbase", "--format=tar", "--skip=cleanup/apt/lists",
                           f"--include={','.join(PACKAGES)}"]
        args += [f"--dpkgopt={opt}" for opt in DPKG_OPTS]
        args += [f"--customize-hook={hook}" for hook in HOOKS]
        args += [SUITE, str(partial)]
        try:
            proc.run(args, what="building the lab's Debian 12 base image (mmdebstrap)", timeout=1200)
        except LabError:
            shutil.rmtree(partial, ignore_errors=True) if partial.is_dir() else partial.unlink(missing_ok=True)
            raise
        partial.rename(tarball)
    podman.run(["import", "--change", 'CMD ["/bin/bash"]', str(tarball), tag],
               what="importing the base image into podman", timeout=600)
    return tag, True


def os_release(kind: str) -> str:
    info = UBUNTU_SIM[kind]
    return (
        "# rocm-provision lab: SIMULATED Ubuntu. Userland and apt archive come from the lab's base image;\n"
        "# only this file and /etc/lsb-release say Ubuntu, so Ansible and the product take the Ubuntu path.\n"
        f'PRETTY_NAME="{info["pretty"]}"\nNAME="Ubuntu"\nVERSION_ID="{info["version"]}"\n'
        f'VERSION="{info["full"]}"\nVERSION_CODENAME={info["codename"]}\nID=ubuntu\nID_LIKE=debian\n'
        'HOME_URL="https://www.ubuntu.com/"\nSUPPORT_URL="https://help.ubuntu.com/"\n'
        'BUG_REPORT_URL="https://bugs.launchpad.net/ubuntu/"\n'
        f"UBUNTU_CODENAME={info['codename']}\nLOGO=ubuntu-logo\n"
    )


def lsb_release(kind: str) -> str:
    info = UBUNTU_SIM[kind]
    return (f"DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE={info['version']}\nDISTRIB_CODENAME={info['codename']}\n"
            f'DISTRIB_DESCRIPTION="{info["pretty"]}"\n')


def ensure_os_image(podman: Podman, base: str, kind: str) -> str:
    """The image for an OS kind: the base itself for Debian 12, a derived image for the simulated Ubuntus."""
    if kind == "debian12":
        return base
    if kind not in UBUNTU_SIM:
        raise LabError(f"unknown lab OS kind {kind!r}")
    digest = hashlib.sha256((base + os_release(kind) + lsb_release(kind)).encode()).hexdigest()[:12]
    tag = f"localhost/rocm-provision-lab-{kind}:{digest}"
    if podman.image_exists(tag):
        return tag
    work = f"rocm-provision-lab-build-{digest}"
    podman.run(["rm", "-f", work], what="removing a stale build container", check=False)
    podman.run(["create", "--name", work, base, "true"], what=f"creating the {kind} image")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            osr = Path(tmp) / "os-release"
            osr.write_text(os_release(kind))
            lsb = Path(tmp) / "lsb-release"
            lsb.write_text(lsb_release(kind))
            podman.run(["cp", str(osr), f"{work}:/usr/lib/os-release"], what=f"writing {kind} os-release")
            podman.run(["cp", str(lsb), f"{work}:/etc/lsb-release"], what=f"writing {kind} lsb-release")
        podman.run(["commit", "--quiet", work, tag], what=f"committing the {kind} image")
    finally:
        podman.run(["rm", "-f", work], what="removing the build container", check=False)
    return tag
