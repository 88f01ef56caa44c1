"""Per-host seed directory (mounted read-only at /opt/provision-lab/seed) and the before-state scripts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from provision.lab import standins, wheels
from provision.lab.hosts import KERNELS, LAB_USER, SSH_PORT, HostSpec
from provision.lab.mirror import KEY_PATH, LAB_ARCHIVE

SEED_MOUNT = "/opt/provision-lab/seed"
SYSFS_ROOT = "/opt/provision-lab/sys"
KERNEL_RELEASE_FILE = "/opt/provision-lab/proc/sys/kernel/osrelease"  # written by guest/labhost.py
OLD_VENV = f"/home/{LAB_USER}/venvs/torch113"
MARKER = f"{OLD_VENV}/lab-data/results-2023.csv"
SEEDED_STAMP = "/var/lib/provision-lab/seeded"

BOOT = """#!/bin/sh
# rocm-provision lab host entrypoint: simulated GPUs, root's authorized key, host keys, then sshd.
set -e
python3 {seed}/labhost.py boot {seed}
install -d -m 700 /root/.ssh
install -m 600 {seed}/authorized_keys /root/.ssh/authorized_keys
ssh-keygen -A >/dev/null
mkdir -p /run/sshd
exec /usr/sbin/sshd -D -e -o ListenAddress={address}:{port} -o PasswordAuthentication=no -o UseDNS=no
"""

COMMON = """#!/bin/bash
# rocm-provision lab: seed the before-state of {name} ({before}). Runs once, as root, in the container.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
BASE={base}
[ -e {stamp} ] && exit 0
# Only the lab's own lists: Debian's lists are already in the image and are kept.
lab_update() {{ apt-get update -qq -o Dir::Etc::SourceList=/dev/null -o APT::Get::List-Cleanup=0; }}

# The distro kernel packages for the controller's kernel (containers share it) come from the lab archive.
install -d /usr/share/keyrings
curl -fsS "$BASE/{key}" | gpg --dearmor > /usr/share/keyrings/rocm-provision-lab-archive.gpg
echo "deb [signed-by=/usr/share/keyrings/rocm-provision-lab-archive.gpg] $BASE/{archive} {archive_suite} main" \\
    > /etc/apt/sources.list.d/rocm-provision-lab-archive.list
id -u {user} >/dev/null 2>&1 || useradd -m -s /bin/bash {user}
"""

BEFORE: dict[str, str] = {
    "amdgpu-install-legacy": """
# 5.2-era wiki: trust the key with apt-key, add the legacy `ubuntu` suite, then amdgpu-install 22.20.
curl -fsS "$BASE/{key}" | apt-key add - 2>/dev/null
echo "deb [arch=amd64] $BASE/rocm/apt/5.2/ ubuntu main" > /etc/apt/sources.list.d/rocm.list
curl -fsS -o /tmp/amdgpu-install.deb "$BASE/amdgpu-install/22.20/ubuntu/focal/amdgpu-install_22.20.50200-1_all.deb"
apt-get install -y -q -o Dpkg::Options::=--force-confold /tmp/amdgpu-install.deb >/dev/null
rm -f /tmp/amdgpu-install.deb
lab_update
amdgpu-install -y --usecase=rocm,mllib >/dev/null
""",
    "apt-signed-by": """
# AMD's 5.2 package-manager instructions: dearmored key in /etc/apt/keyrings, signed-by, rocm-pin-600.
install -d -m 0755 /etc/apt/keyrings
curl -fsS "$BASE/{key}" | gpg --dearmor > /etc/apt/keyrings/rocm.gpg
echo "deb [arch=amd64 signed-by=/etc/apt/keyrings/rocm.gpg] $BASE/amdgpu/22.20/ubuntu jammy main" \\
    > /etc/apt/sources.list.d/amdgpu.list
echo "deb [arch=amd64 signed-by=/etc/apt/keyrings/rocm.gpg] $BASE/rocm/apt/5.2 jammy main" \\
    > /etc/apt/sources.list.d/rocm.list
printf 'Package: *\\nPin: release o=repo.radeon.com\\nPin-Priority: 600\\n' > /etc/apt/preferences.d/rocm-pin-600
lab_update
apt-get install -y -q amdgpu-dkms rocm-hip-sdk rocm-ml-libraries >/dev/null
""",
    "apt-trusted-gpg-d": """
# Plain apt with the key dropped into /etc/apt/trusted.gpg.d (trusted for every repository).
curl -fsS "$BASE/{key}" | gpg --dearmor > /etc/apt/trusted.gpg.d/rocm.gpg
echo "deb [arch=amd64] $BASE/amdgpu/22.20/ubuntu focal main" > /etc/apt/sources.list.d/amdgpu.list
echo "deb [arch=amd64] $BASE/rocm/apt/5.2 focal main" > /etc/apt/sources.list.d/rocm.list
printf 'Package: *\\nPin: release o=repo.radeon.com\\nPin-Priority: 600\\n' > /etc/apt/preferences.d/rocm-pin-600
lab_update
apt-get install -y -q amdgpu-dkms rocm-hip-runtime rocm-ml-libraries >/dev/null
""",
    "fresh": """
lab_update
""",
}

ROCM52_USER = """
usermod -a -G render,video {user}
cat > /etc/profile.d/rocm.sh <<'PROFILE'
# ROCm 5.2 environment, as the lab's old setup notes had it.
export PATH=$PATH:/opt/rocm/bin:/opt/rocm/opencl/bin
PROFILE
"""

OVERRIDE = """
echo 'export HSA_OVERRIDE_GFX_VERSION={override}' >> /etc/profile.d/rocm.sh
"""

OLD_VENV_SCRIPT = """
# A user's PyTorch 1.13 (ROCm 5.2) venv holding data that must survive the upgrade.
sudo -u {user} python3 -m venv {venv}
sudo -u {user} {venv}/bin/pip install -q --no-index --find-links {seed} "torch=={torch}"
sudo -u {user} mkdir -p {marker_dir}
sudo -u {user} sh -c 'printf "epoch,loss\\n1,0.93\\n2,0.71\\nseeded %s\\n" "$(date -u +%FT%TZ)" > {marker}'
"""

RECORD = """
python3 - <<'PY'
import hashlib, json, os, subprocess
state = {{"host": "{name}", "before": "{before}", "rocm": {rocm}, "old_venv": None}}
if os.path.isdir("{venv}"):
    freeze = subprocess.run(["{venv}/bin/pip", "freeze"], capture_output=True, text=True, check=True).stdout
    with open("{marker}", "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    state["old_venv"] = {{"path": "{venv}", "marker": "{marker}", "marker_sha256": digest,
                         "pip_freeze": freeze.split()}}
os.makedirs("/opt/provision-lab", exist_ok=True)
with open("/opt/provision-lab/before-state.json", "w") as handle:
    json.dump(state, handle, indent=2)
PY
mkdir -p "$(dirname {stamp})" && touch {stamp}
"""


def archive_suite(spec: HostSpec) -> str:
    return {"debian12": "bookworm", "ubuntu2404-sim": "noble", "ubuntu2204-sim": "jammy"}[spec.os]


def seed_script(spec: HostSpec, base_url: str) -> str:
    values = {"name": spec.name, "before": spec.before, "base": base_url, "stamp": SEEDED_STAMP, "key": KEY_PATH,
              "archive": LAB_ARCHIVE, "archive_suite": archive_suite(spec), "user": LAB_USER, "venv": OLD_VENV,
              "seed": SEED_MOUNT, "torch": wheels.OLD_TORCH_VERSION, "marker": MARKER,
              "marker_dir": str(Path(MARKER).parent), "override": spec.hsa_override or "",
              "rocm": repr(None if spec.before == "fresh" else standins.R52.version)}
    parts = [COMMON, BEFORE[spec.before]]
    if spec.before != "fresh":
        parts.append(ROCM52_USER)
        if spec.hsa_override:
            parts.append(OVERRIDE)
    if spec.old_venv:
        parts.append(OLD_VENV_SCRIPT)
    parts.append(RECORD)
    return "".join(part.format(**values) for part in parts)


def write_seed_dir(directory: Path, spec: HostSpec, base_url: str, public_key: str) -> None:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    host = spec.to_json()
    host["sysfs_root"] = SYSFS_ROOT
    host["kernel_release"] = spec.kernel_release or KERNELS[spec.os]
    (directory / "host.json").write_text(json.dumps(host, indent=2) + "\n")
    (directory / "authorized_keys").write_text(public_key + "\n")
    guest = Path(__file__).with_name("guest")
    shutil.copy(guest / "labhost.py", directory / "labhost.py")
    (directory / "boot.sh").write_text(BOOT.format(seed=SEED_MOUNT, address=spec.address, port=SSH_PORT))
    (directory / "seed.sh").write_text(seed_script(spec, base_url))
    if spec.old_venv:
        wheels.fake_old_torch(directory)
    for path in directory.iterdir():
        path.chmod(0o755 if path.suffix in (".sh", ".py") else 0o644)
