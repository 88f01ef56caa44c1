"""The lab's host specs: what each container simulates (OS, GPUs, how ROCm 5.2 got there, user data)."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Literal

from provision.lab.errors import LabUsageError
from provision.lab.gpus import GpuSlot, describe

OsKind = Literal["debian12", "ubuntu2404-sim", "ubuntu2204-sim"]
BeforeState = Literal["amdgpu-install-legacy", "apt-signed-by", "apt-trusted-gpg-d", "fresh"]

OS_LABEL: dict[str, str] = {
    "debian12": "Debian 12",
    "ubuntu2404-sim": "Ubuntu 24.04 (simulated: Debian 12 userland, Ubuntu os-release)",
    "ubuntu2204-sim": "Ubuntu 22.04 (simulated: Debian 12 userland, Ubuntu os-release)",
}
BEFORE_LABEL: dict[str, str] = {
    "amdgpu-install-legacy": "ROCm 5.2 via amdgpu-install 22.20, legacy `ubuntu` suite, key trusted with apt-key",
    "apt-signed-by": "ROCm 5.2 via plain apt, signed-by=/etc/apt/keyrings/rocm.gpg, rocm-pin-600",
    "apt-trusted-gpg-d": "ROCm 5.2 via plain apt, key in /etc/apt/trusted.gpg.d",
    "fresh": "fresh workstation, no ROCm at all",
}
SSH_PORT = 2222
LAB_USER = "researcher"


@dataclass(frozen=True)
class HostSpec:
    name: str
    os: OsKind
    gpus: tuple[GpuSlot, ...]
    before: BeforeState
    hsa_override: str | None = None  # a /etc/profile.d file exports HSA_OVERRIDE_GFX_VERSION
    old_venv: bool = False  # a torch 1.13 venv with user data that must survive
    address: str = ""
    cpu_name: str = "AMD Ryzen 9 5950X 16-Core Processor"
    cpu_cores: int = 16
    template: str = ""  # the TEMPLATES entry a renamed host (`named_hosts`) was made from; "" = its own name
    small_fs: str | None = None  # a 64 MiB tmpfs mounted here (a nearly full file system for the venv)
    kernel_release: str | None = None  # the running kernel it simulates; None: the OS's usual one (KERNELS)

    def describe(self) -> str:
        bits = [OS_LABEL[self.os], describe(self.gpus), BEFORE_LABEL[self.before]]
        if self.hsa_override:
            bits.append(f"profile sets HSA_OVERRIDE_GFX_VERSION={self.hsa_override}")
        if self.old_venv:
            bits.append("old torch 1.13.1+rocm5.2 venv with user data")
        if self.small_fs:
            bits.append(f"a {SMALL_FS_MIB} MiB file system at {self.small_fs}")
        if self.kernel_release:
            bits.append(f"running kernel {self.kernel_release}")
        return "; ".join(bits)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("template")  # bookkeeping only: the other fields say what the host is
        if not data["small_fs"]:
            data.pop("small_fs")  # absent unless set, so existing hosts keep their spec hash
        if not data["kernel_release"]:
            data.pop("kernel_release")
        data["gpus"] = [slot.declaration() for slot in self.gpus]
        data["cpu"] = {"name": data.pop("cpu_name"), "cores": data.pop("cpu_cores"), "clock_mhz": 4500}
        data["description"] = self.describe()
        return data

    def spec_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:16]


TEMPLATES: tuple[HostSpec, ...] = (
    HostSpec("ws-navi10", "debian12", (GpuSlot(0x731F, 0x03),), "amdgpu-install-legacy",
             hsa_override="10.3.0", old_venv=True, cpu_name="AMD Ryzen 7 3700X 8-Core Processor", cpu_cores=8),
    HostSpec("ws-w6800-ubuntu2404-sim", "ubuntu2404-sim", (GpuSlot(0x73A3, 0x03),), "apt-signed-by"),
    HostSpec("ws-7900xtx", "debian12", (GpuSlot(0x744C, 0x03), GpuSlot(0x164E, 0x0E)), "apt-trusted-gpg-d",
             cpu_name="AMD Ryzen 9 7950X 16-Core Processor"),
    HostSpec("ws-mi210", "debian12", (GpuSlot(0x740F, 0x03),), "fresh", cpu_name="AMD EPYC 7313 16-Core Processor"),
)

# Hosts for fault tests, added by name only (`named_hosts`), never by `lab up --hosts N`.
FAULT_TEMPLATES: tuple[HostSpec, ...] = (
    replace(TEMPLATES[3], name="ws-mi210-smallfs", small_fs="/srv/small"),
    # Ubuntu 24.04 with a newer HWE kernel than amdgpu-dkms 30.10 builds for (6.8 / 6.14): blocked at preflight.
    replace(TEMPLATES[1], name="ws-w6800-hwe-kernel", kernel_release="6.17.0-8-generic"),
)
# The running kernel each simulated OS usually has (inside amdgpu-dkms 30.10's window, pins.yaml supported_os):
# Debian 12's 6.1 series, Ubuntu 24.04's GA 6.8, Ubuntu 22.04's GA 5.15.
KERNELS: dict[str, str] = {"debian12": "6.1.0-41-amd64", "ubuntu2404-sim": "6.8.0-88-generic",
                           "ubuntu2204-sim": "5.15.0-163-generic"}
SMALL_FS_MIB = 64


def default_hosts(count: int, first_address: str) -> list[HostSpec]:
    """`count` hosts cycling through the templates, on consecutive loopback addresses from `first_address`."""
    if count < 1 or count > 32:
        raise LabUsageError(f"--hosts must be between 1 and 32 (got {count})")
    try:
        first = ipaddress.IPv4Address(first_address)
    except ValueError as exc:
        raise LabUsageError(f"--first-address {first_address!r} is not an IPv4 address") from exc
    last = first + (count - 1)
    loopback = ipaddress.IPv4Network("127.0.0.0/8")
    if first not in loopback or last not in loopback or (int(first) & 0xFF == 1 and first.packed[1:3] == b"\0\0"):
        raise LabUsageError(
            f"lab hosts must use loopback addresses in 127.0.0.0/8 other than 127.0.0.1 (the mirror's); "
            f"{first}..{last} is not allowed"
        )
    specs: list[HostSpec] = []
    for index in range(count):
        template = TEMPLATES[index % len(TEMPLATES)]
        round_ = index // len(TEMPLATES)
        name = template.name if round_ == 0 else f"{template.name}-{round_ + 1}"
        specs.append(replace(template, name=name, address=str(first + index)))
    return specs


def named_hosts(requests: Sequence[tuple[str, str, str]]) -> list[HostSpec]:
    """Hosts `(name, template, address)`: a template's before-state under another name and address."""
    by_name = {t.name: t for t in (*TEMPLATES, *FAULT_TEMPLATES)}
    specs: list[HostSpec] = []
    for name, template, address in requests:
        if template not in by_name:
            raise LabUsageError(f"unknown host template {template!r}; pick one of {', '.join(by_name)}")
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", name):
            raise LabUsageError(f"host name {name!r} must be lowercase letters, digits and dashes")
        default_hosts(1, address)  # the same address checks as `up`
        specs.append(replace(by_name[template], name=name, address=address,
                             template="" if name == template else template))
    names = [s.name for s in specs]
    addresses = [s.address for s in specs]
    if len(set(names)) != len(names) or len(set(addresses)) != len(addresses):
        raise LabUsageError("each added host needs its own name and address")
    return specs
