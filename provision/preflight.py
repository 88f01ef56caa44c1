"""Turn the raw facts the `rocm_host_facts` module gathers on a host into a preflight result:
identified GPUs, OS, current ROCm, checks, and the plan. The CLI and the Ansible filter plugin both
call `evaluate`, so a plan is made by one piece of code whichever way the playbooks are run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from provision.identify import KfdNode, PciDevice, identify, norm_slot, parse_kfd_properties
from provision.osfacts import os_facts_from_text
from provision.planner import RocmState, plan_host
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


def checks(raw: dict[str, Any], spec: HostSpec, min_free_gib: dict[str, float]) -> tuple[list[str], list[str]]:
    """(blocking problems, warnings) found by preflight beyond the plan itself."""
    problems: list[str] = []
    warnings: list[str] = []
    for path, need in min_free_gib.items():
        row = (raw.get("free_space") or {}).get(path)
        if row and row["free_bytes"] < need * GIB:
            problems.append(f"{path} has {row['free_bytes'] / GIB:.1f} GiB free; the upgrade needs {need:g} GiB there")
    if raw.get("secure_boot") == "enabled":
        warnings.append("Secure Boot is on: the amdgpu-dkms module loads only if its signing key is enrolled (MOK)")
    if not raw.get("kernel_headers"):
        warnings.append(f"kernel headers for {raw.get('kernel')} are not installed; the install step adds them")
    for user, groups in (raw.get("user_groups") or {}).items():
        if groups is None:
            problems.append(f"user {user} (provision_users) does not exist on the host")
        elif not {"render", "video"} <= set(groups):
            warnings.append(f"user {user} is not in render and video yet; the install step adds them")
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
    plan = plan_host(spec, ident, os_facts, rocm)
    problems, warnings = checks(raw, spec, min_free_gib or {})
    if plan.action in ("upgrade", "upgrade-with-override") and problems:
        plan.action = "blocked"
        plan.reasons = [*problems, *plan.reasons]
    plan.warnings = [*plan.warnings, *warnings]
    return {
        "schema_version": SCHEMA_VERSION,
        **ident.to_dict(),
        "os": (os_facts.__dict__ | {"key": os_facts.key}) if os_facts else None,
        "kernel": raw.get("kernel"),
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
    }
