"""`provision check` against the container lab: real SSH, the real facts module, the shared planner.
GPUs are simulated at the boundary the product reads on a real host (sysfs tree, KFD topology, lspci,
rocminfo), so the plans below are what the same hosts with real cards would get."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.lab.conftest import LabHandle


def provision(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "provision", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


def test_check_plans_every_lab_host_and_changes_nothing(lab: LabHandle, tmp_path: Path) -> None:
    before = {h: lab.ok(h, "dpkg -l | sha256sum; cat /etc/profile.d/*.sh | sha256sum") for h in lab.addresses}
    # The W6800 host simulates a newer Ubuntu HWE kernel than amdgpu-dkms 30.10 builds for: a second copy of
    # /proc/sys/kernel/osrelease (containers share the controller's kernel), read by the same facts module.
    w6800_name = next(h for h in lab.addresses if "w6800" in h)
    lab.ok(w6800_name, "printf '6.17.0-8-generic\\n' > /run/osrelease-hwe")
    inventory = tmp_path / "lab.ini"
    inventory.write_text(lab.inventory.read_text().replace(
        f"{w6800_name} ansible_host=", f"{w6800_name} rocm_preflight_kernel_release_file=/run/osrelease-hwe "
        "ansible_host=", 1))
    result = provision("check", "--hosts", str(inventory), "--json")
    assert result.returncode == 0, result.stderr
    hosts = json.loads(result.stdout)["hosts"]
    assert set(hosts) == set(lab.addresses)
    by_gpu = {h["preflight"]["gpus"][0]["pci_id"]: h["preflight"] for h in hosts.values()}

    navi10 = by_gpu["1002:731f"]
    gpu = navi10["gpus"][0]
    assert (gpu["gfx"], gpu["gfx_runtime"]) == ("gfx1010", "gfx1030")  # the override the profile sets
    assert navi10["rocm"]["version"] == "5.2.0" and navi10["rocm"]["install_method"] == "amdgpu-install"
    assert navi10["plan"]["action"] == "fallback"
    # its users' torch 1.13.1+rocm5.2 carries no gfx1010 code: the override it needs is kept, and the plan says why
    assert navi10["plan"]["env_remove"] == []
    assert any("HSA_OVERRIDE_GFX_VERSION=10.3.0 is kept" in r for r in navi10["plan"]["reasons"])
    assert navi10["plan"]["search"]["miopen_release"] == "2.17"

    w6800 = by_gpu["1002:73a3"]
    assert w6800["os"]["key"] == "ubuntu-24.04" and w6800["kernel"] == "6.17.0-8-generic"
    assert w6800["plan"]["action"] == "blocked"
    assert "outside the kernels amdgpu-dkms 30.10 supports on ubuntu-24.04 (6.8 or 6.14)" in w6800["plan"]["reasons"][0]

    rx7900 = by_gpu["1002:744c"]
    assert [g["role"] for g in rx7900["gpus"]] == ["compute", "igpu"]
    assert rx7900["plan"]["action"] == "blocked" and "Instinct-only" in rx7900["plan"]["reasons"][0]
    # the Raphael iGPU beside it: hidden by the 7900 XTX's UUID (KFD unique_id / rocminfo Uuid) once unblocked
    assert any("ROCR_VISIBLE_DEVICES=GPU-0aac02dbebd629ee" in w for w in rx7900["plan"]["warnings"])
    assert any("iommu=pt" in w for w in rx7900["plan"]["warnings"])

    mi210 = by_gpu["1002:740f"]
    assert mi210["rocm"]["version"] is None and mi210["plan"]["action"] == "upgrade"
    assert mi210["kernel"] == "6.1.0-41-amd64"  # Debian 12's series: inside the window

    after = {h: lab.ok(h, "dpkg -l | sha256sum; cat /etc/profile.d/*.sh | sha256sum") for h in lab.addresses}
    assert after == before


def test_unreachable_host_fails_the_run_but_not_the_others(lab: LabHandle, tmp_path: Path) -> None:
    inventory = tmp_path / "lab.ini"
    text = lab.inventory.read_text()
    # one more workstation on an address where nothing listens
    inventory.write_text(text.replace("[workstations:vars]", "ws-gone ansible_host=127.0.0.250\n\n[workstations:vars]"))
    result = provision("check", "--hosts", str(inventory), "--json")
    assert result.returncode == 1
    hosts = json.loads(result.stdout)["hosts"]
    assert hosts["ws-gone"]["status"] == "unreachable" and hosts["ws-gone"]["preflight"] is None
    assert all(h["preflight"] for name, h in hosts.items() if name != "ws-gone")
