"""Turn the raw facts the `rocm_host_facts` module gathers on a host into a preflight result:
identified GPUs, OS, current ROCm, checks, and the plan. The CLI and the Ansible filter plugin both
call `evaluate`, so a plan is made by one piece of code whichever way the playbooks are run."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from provision import hostrules, pins, torchbuild
from provision.identify import KfdNode, PciDevice, identify, norm_slot, parse_kfd_properties
from provision.osfacts import os_facts_from_text
from provision.planner import RocmState, plan_host
from provision.pythonsource import decide as decide_python
from provision.specs import HostSpec

SCHEMA_VERSION = 1
GIB = 1024**3


def rocm_state(raw: dict[str, Any]) -> RocmState:
    packages: dict[str, str] = raw.get("packages") or {}
    version = None
    for name, pkg_version in sorted(packages.items()):
        if name.startswith("rocm-core"):
            match = re.match(r"(\d+\.\d+\.\d+)", pkg_version)
            version = match.group(1) if match else pkg_version
            break
    if version is None:
        for path, info in sorted((raw.get("rocm") or {}).get("dirs", {}).items()):
            match = re.match(r"(\d+\.\d+\.\d+)", info or Path(path).name.removeprefix("rocm-"))
            if match:
                version = match.group(1)
    method = None
    if version:
        method = "amdgpu-install" if raw.get("amdgpu_install") or "amdgpu-install" in packages else "apt"
    overrides = {e["name"]: e["value"] for e in raw.get("env_overrides") or [] if e["name"].startswith("HSA_")}
    return RocmState(version=version, install_method=method, env_overrides=overrides, gathered=True)


def _pci(raw: dict[str, Any]) -> list[PciDevice]:
    out = []
    for dev in raw.get("pci") or []:
        vendor, device, cls = (str(dev.get(k) or "").lower().removeprefix("0x") for k in ("vendor", "device", "class"))
        class_code = cls.rjust(6, "0")[:4]
        if vendor and device and class_code in ("0300", "0302", "0380", "1200"):
            out.append(PciDevice(slot=norm_slot(dev.get("slot")), class_code=class_code, vendor=vendor, device=device))
    return out


def _kfd(raw: dict[str, Any]) -> list[KfdNode]:
    nodes = [parse_kfd_properties(n.get("properties", ""), int(n.get("node", 0))) for n in raw.get("kfd") or []]
    return [n for n in nodes if n]


def _output(raw: dict[str, Any], key: str) -> str | None:
    result = raw.get(key)
    if isinstance(result, dict) and result.get("rc") == 0:
        return result.get("stdout")
    return None


def _size(count: float) -> str:
    return f"{count / GIB:.1f} GiB" if count >= GIB else f"{count / 1024**2:.1f} MiB"


def _space_problems(raw: dict[str, Any], min_free_gib: dict[str, float]) -> list[str]:
    """One problem per file system short of what the paths on it need together (the venv and /opt may share one)."""
    free_space = raw.get("free_space") or {}
    by_fs: dict[Any, list[tuple[str, float, dict[str, Any]]]] = {}
    for path, need in min_free_gib.items():
        row = free_space.get(path)
        if row:
            by_fs.setdefault(row.get("device", path), []).append((path, float(need), row))
    problems = []
    for rows in by_fs.values():
        need = sum(n for _, n, _ in rows)
        free = rows[0][2]["free_bytes"]
        if free < need * GIB:
            mount = rows[0][2].get("mount") or rows[0][2].get("checked")
            paths = " and ".join(f"{p} ({n:g} GiB)" for p, n, _ in rows)
            problems.append(
                f"not enough disk space: the file system mounted at {mount} has {_size(free)} free; "
                f"the upgrade needs {need:g} GiB there for {paths}; free space there or set provision_venv "
                "to a path on a larger file system"
            )
    return problems


def _driver_checks(raw: dict[str, Any], spec: HostSpec) -> tuple[list[str], list[str]]:
    """Secure Boot and kernel headers: what the amdgpu-dkms build needs (only when the driver is installed)."""
    problems: list[str] = []
    warnings: list[str] = []
    kernel = raw.get("kernel_running") or raw.get("kernel")
    if raw.get("secure_boot") == "enabled":
        if not spec.install_driver:
            warnings.append("Secure Boot is on; the amdgpu-dkms driver is not installed (provision_install_driver "
                            "is false), so the in-box amdgpu driver stays")
        elif hostrules.secure_boot_mok(raw)[0]:
            problems += hostrules.secure_boot_mok(raw)[0]
        elif any(state == "enrolled" for state in (raw.get("mok_enrolled") or {}).values()):
            pass
        elif raw.get("mok_keys"):
            warnings.append(f"Secure Boot is on: DKMS signs amdgpu with {raw['mok_keys'][0]}; that key must be "
                            "enrolled (mokutil --import, then confirm at the next boot) or the module will not load")
        else:
            problems.append(
                "Secure Boot is on and no Machine Owner Key (MOK) for DKMS is set up (neither "
                "/var/lib/shim-signed/mok/MOK.der nor /var/lib/dkms/mok.pub exists), so the amdgpu-dkms module "
                "would be built unsigned and refused by the kernel; enroll a MOK for DKMS (mokutil --import, then "
                "confirm at the next boot), or set provision_install_driver: false to keep the in-box amdgpu driver"
            )
    if spec.install_driver:
        os_facts = os_facts_from_text(raw["os_release"]) if raw.get("os_release") else None
        problems += hostrules.kernel_window(raw, os_facts.key if os_facts else None)[0]
    if raw.get("kernel_headers") or not spec.install_driver:
        return problems, warnings
    package = raw.get("kernel_headers_package") or f"linux-headers-{kernel}"
    if "kernel_headers_candidate" in raw and not raw["kernel_headers_candidate"]:
        problems.append(
            f"kernel headers for the running kernel {kernel} are not installed and {package} is not "
            "installable from this host's apt sources (apt-cache policy shows no candidate), so the "
            f"amdgpu-dkms driver cannot be built; install {package} (run apt-get update first if the lists "
            "are old), boot a kernel whose headers are available, or set provision_install_driver: false "
            "to keep the in-box amdgpu driver"
        )
    else:
        warnings.append(f"kernel headers for {kernel} are not installed; the install step adds {package}")
    return problems, warnings


def checks(raw: dict[str, Any], spec: HostSpec, min_free_gib: dict[str, float],
           upgrade: bool = True) -> tuple[list[str], list[str]]:
    """(blocking problems, warnings) found by preflight beyond the plan itself. `upgrade`: the plan installs
    the new stack, so the driver's needs are checked; a fallback host keeps its driver."""
    problems: list[str] = _space_problems(raw, min_free_gib)
    warnings: list[str] = []
    if upgrade:
        driver_problems, driver_warnings = _driver_checks(raw, spec)
        problems += driver_problems
        warnings += driver_warnings
    for user, groups in (raw.get("user_groups") or {}).items():
        if groups is None:
            problems.append(f"user {user} (provision_users) does not exist on the host; create it or take it "
                            "out of provision_users")
        elif not {"render", "video"} <= set(groups):
            missing = " and ".join(sorted({"render", "video"} - set(groups)))
            warnings.append(f"user {user} is not in {missing} yet; the install step adds them (effective at "
                            f"{user}'s next login)")
    key_problems, key_warnings = hostrules.host_keys(raw, pins.repo()["key_fingerprint"], time.time(), upgrade)
    problems += key_problems if not upgrade else []
    warnings += key_warnings + (key_problems if upgrade else [])
    if upgrade:
        warnings += hostrules.old_venv_warning(hostrules.old_venvs(raw))
    lspci = raw.get("lspci")
    if lspci is None:
        warnings.append("lspci is not installed; GPUs were identified from sysfs only")
    return problems, warnings


def evaluate(raw: dict[str, Any], spec: HostSpec, min_free_gib: dict[str, float] | None = None) -> dict[str, Any]:
    """The preflight result for one host (JSON-ready)."""
    ident = identify(
        lspci=_output(raw, "lspci"),
        pci=_pci(raw),
        kfd=_kfd(raw),
        rocminfo=_output(raw, "rocminfo"),
        env={e["name"]: e["value"] for e in raw.get("env_overrides") or []},
    )
    os_facts = os_facts_from_text(raw["os_release"]) if raw.get("os_release") else None
    rocm = rocm_state(raw)
    plan = plan_host(spec, ident, os_facts, rocm, torchbuild.from_probe(raw.get("venv_torch")))
    problems, warnings = checks(raw, spec, min_free_gib or {}, plan.action in ("upgrade", "upgrade-with-override"))
    python = decide_python(os_facts.key if os_facts else None, raw.get("python"), spec)
    if plan.action in ("upgrade", "upgrade-with-override") and python.problem:
        problems.append(python.problem)
    if plan.action in ("upgrade", "upgrade-with-override") and problems:
        plan.action = "blocked"
        plan.reasons = [*problems, *plan.reasons]
    plan.warnings = [*plan.warnings, *warnings,
                     *hostrules.multi_gpu_iommu(raw, len([g for g in ident.gpus if g.role != "non-amd"]))]
    return {
        "schema_version": SCHEMA_VERSION,
        **ident.to_dict(),
        "os": (os_facts.__dict__ | {"key": os_facts.key}) if os_facts else None,
        "kernel": raw.get("kernel"),
        "old_venvs": hostrules.old_venvs(raw),
        "secure_boot": raw.get("secure_boot"),
        "rocm": {
            "version": rocm.version,
            "install_method": rocm.install_method,
            "packages": raw.get("packages") or {},
            "apt_sources": raw.get("apt_sources") or [],
            "env_overrides": raw.get("env_overrides") or [],
            "dkms_amdgpu": raw.get("dkms_amdgpu") or [],
        },
        "plan": plan.to_dict(),
        "python": python.to_dict(),
    }
