"""Host rules a lab admin trips on, judged from the raw facts `rocm_host_facts` gathers: the amdgpu-dkms kernel
window, a Machine Owner Key that is not enrolled, AMD's signing key expired on the host, users' venvs whose
PyTorch is built for a ROCm outside the new driver's user-space window, and AMD's iommu=pt advice for hosts with
several GPUs. Each rule's source is cited next to its data in provision/data/pins.yaml."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from provision import pins

Problems = tuple[list[str], list[str]]  # (blocking problems, warnings)


def kernel_series(release: str) -> str | None:
    """'6.8.0-79-generic' -> '6.8'; '6.1.0-37-amd64' -> '6.1'; None for anything else."""
    match = re.match(r"(\d{1,3})\.(\d{1,3})(?:[.\-+~_]|\Z)", release or "")
    return f"{int(match[1])}.{int(match[2])}" if match else None


def kernel_window(raw: dict[str, Any], os_key: str | None) -> Problems:
    """Block a host whose running kernel is outside the series amdgpu-dkms 30.10 builds for on its OS."""
    release = str(raw.get("kernel") or "")
    row = pins.supported_os().get(os_key or "")
    if not release or not row or not row.get("kernels"):
        return [], []
    window = [str(k) for k in row["kernels"]]
    series = kernel_series(release)
    if series is not None and any(series == k or release.startswith(k + ".") or release.startswith(k + "-")
                                  for k in window):
        return [], []
    driver = pins.all_pins()["amdgpu_driver"]["version"]
    works = " or ".join(window)
    return [
        f"the running kernel {release} is outside the kernels amdgpu-dkms {driver} supports on {os_key} "
        f"({works}): its DKMS build fails on newer kernels and leaves dpkg half-configured (AMD, ROCm issues "
        f"#5110 and #5624); nothing was changed. Boot a {works} kernel (install it, make it the default boot "
        "entry, reboot) and run again, or set provision_install_driver: false to keep the in-box amdgpu driver"
    ], []


def secure_boot_mok(raw: dict[str, Any]) -> Problems:
    """A MOK that exists but is not enrolled: the reboot would come up without amdgpu. Block it."""
    states: dict[str, str] = raw.get("mok_enrolled") or {}
    not_enrolled = {path: state for path, state in states.items() if state in ("not-enrolled", "pending")}
    if raw.get("secure_boot") != "enabled" or not not_enrolled:
        return [], []
    path, state = next(iter(not_enrolled.items()))
    pending = (" (an enrollment request is pending: it is confirmed only at the console, in MokManager, at "
               "the next boot)" if state == "pending" else "")
    return [
        f"Secure Boot is on and DKMS would sign amdgpu with {path}, but that key is not enrolled{pending} "
        "(mokutil --test-key): the host would reboot into a kernel that refuses the amdgpu-dkms module and "
        f"come up without a GPU driver. Enroll it first (mokutil --import {path}, reboot, confirm the "
        "enrollment in MokManager at the console) and run again, or set provision_install_driver: false to "
        "keep the in-box amdgpu driver"
    ], []


def _date(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d")


def key_expiry(colons: str, fingerprint: str, now: float) -> tuple[bool, str | None]:
    """(expired, expiry date) of the key with `fingerprint` in `gpg --with-colons` output: the pub record's own
    expiry (field 7) against `now`; gpg's validity `e` (field 2, judged on gpg's clock) only where no date is given."""
    want = fingerprint.upper().replace(" ", "")
    current: list[str] | None = None
    for line in colons.splitlines():
        fields = line.split(":")
        if fields[0] == "pub":
            current = fields
        elif fields[0] == "fpr" and current is not None and len(fields) > 9:
            if fields[9].upper() == want:
                expires = int(current[6]) if len(current) > 6 and current[6].isdigit() else None
                expired = expires <= now if expires is not None else (len(current) > 1 and current[1] == "e")
                return expired, _date(expires) if expires else None
            current = None
    return False, None


def host_keys(raw: dict[str, Any], fingerprint: str, now: float, upgrade: bool) -> Problems:
    """AMD's key already on the host, expired: apt refuses the ROCm lists with EXPKEYSIG until it is replaced."""
    warnings: list[str] = []
    problems: list[str] = []
    for entry in raw.get("apt_keys") or []:
        expired, date = key_expiry(str(entry.get("colons") or ""), fingerprint, now)
        if not expired:
            continue
        text = (f"AMD's repository key {fingerprint} in {entry.get('file')} expired on {date or 'an unknown date'}"
                "; apt refuses the ROCm repositories signed with it (EXPKEYSIG)")
        if upgrade:
            warnings.append(text + "; the upgrade replaces it with the key fetched from provision_key_url, which "
                            "is refused too if it is expired")
        else:
            problems.append(text + "; fetch AMD's current key (same fingerprint, new dates) into that file, or "
                            "run the upgrade, which replaces it")
    return problems, warnings


def _rocm_of(torch_version: str, hip: str | None) -> str | None:
    match = re.search(r"\+rocm(\d+\.\d+)", torch_version or "")
    if match:
        return match[1]
    match = re.match(r"(\d+\.\d+)", hip or "")
    return match[1] if match else None


def _older(version: str, floor: str) -> bool:
    return tuple(int(p) for p in version.split(".")) < tuple(int(p) for p in floor.split("."))


def old_venvs(raw: dict[str, Any]) -> list[dict[str, str]]:
    """Venvs whose PyTorch was built for a ROCm below the 30.10 driver's user-space window (6.2-7.0)."""
    window = pins.all_pins()["amdgpu_driver"]["user_space_window"]
    out = []
    for venv in raw.get("torch_venvs") or []:
        rocm = _rocm_of(str(venv.get("torch") or ""), venv.get("hip"))
        if rocm and _older(rocm, str(window["min"])):
            out.append({"venv": str(venv.get("path")), "torch": str(venv.get("torch")), "rocm": rocm})
    return out


def old_venv_warning(venvs: list[dict[str, str]]) -> list[str]:
    if not venvs:
        return []
    window = pins.all_pins()["amdgpu_driver"]["user_space_window"]
    driver = pins.all_pins()["amdgpu_driver"]["version"]
    listed = "; ".join(f"{v['venv']} (torch {v['torch']}, ROCm {v['rocm']})" for v in venvs)
    return [f"after the upgrade the amdgpu {driver} driver supports ROCm user space {window['min']} to "
            f"{window['max']} only; these users' venvs carry PyTorch for an older ROCm and are left untouched, "
            f"outside that window: {listed}; move their users to provision_venv or rebuild them against ROCm "
            f"{window['min']} or newer"]


def multi_gpu_iommu(raw: dict[str, Any], gpu_count: int) -> list[str]:
    """AMD's iommu=pt advice for several GPUs, unless the running kernel's command line has it already."""
    args = [str(a) for a in pins.all_pins().get("multi_gpu_kernel_args") or []]
    cmdline = str(raw.get("cmdline") or "").split()
    missing = [a for a in args if a not in cmdline]
    if gpu_count < 2 or not missing:
        return []
    return [f"this host has {gpu_count} AMD GPUs: AMD's system requirements say systems with several GPUs may "
            f"need {' '.join(missing)} on the kernel command line to prevent application hangs; add it to "
            "GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub and reboot, if applications hang"]
