"""The container lab, end to end: hosts over real SSH, the signed mirror, simulated GPUs, before-states.

Tests run in file order: the destructive ones (uninstall, down) come last.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from provision import pins
from provision.lab.cli import app
from provision.lab.lab import Lab

from .conftest import FIRST_ADDRESS, TIMINGS, LabHandle

pytestmark = [pytest.mark.lab, pytest.mark.slow]

NAVI10 = "ws-navi10"
W6800 = "ws-w6800-ubuntu2404-sim"
XTX = "ws-7900xtx"
MI210 = "ws-mi210"
LAB_UPDATE = "apt-get update -o Dir::Etc::SourceList=/dev/null -o APT::Get::List-Cleanup=0"


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        data: bytes = resp.read()
        return data


def _inventory(path: Path) -> dict[str, dict[str, object]]:
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(path)])
    variables = VariableManager(loader=loader, inventory=inventory)
    return {h.name: variables.get_vars(host=h) for h in inventory.get_hosts()}


def test_up_writes_an_inventory_users_could_have_written(lab: LabHandle) -> None:
    hosts = _inventory(lab.inventory)
    assert sorted(hosts) == sorted([NAVI10, W6800, XTX, MI210])
    text = lab.inventory.read_text()
    assert text.startswith("# rocm-provision LAB inventory")
    for name, hostvars in hosts.items():
        assert hostvars["ansible_host"] == lab.addresses[name]
        assert str(hostvars["ansible_host"]).startswith("127.")
        assert hostvars["ansible_port"] == 2222
        assert hostvars["ansible_user"] == "root"
        assert hostvars["provision_repo_base_url"] == lab.base_url
        assert hostvars["provision_key_url"] == f"{lab.base_url}/rocm/rocm.gpg.key"
        assert re.fullmatch(r"[0-9A-F]{40}", str(hostvars["provision_key_fingerprint"]))
        assert hostvars["provision_wheel_index_url"] == f"{lab.base_url}/rocm/manylinux/rocm-rel-7.0/"
        assert hostvars["provision_sysfs_root"] == "/opt/provision-lab/sys"
        assert hostvars["provision_users"] == ["researcher"]
        assert isinstance(hostvars["provision_expected_gpus"], list)
    assert hosts[XTX]["provision_expected_gpus"] == ["1002:744c"]  # the iGPU is simulated but not expected
    assert "provision_torch_packages" not in hosts[MI210]  # the pins' own set, with the lab's Python tag


def test_every_host_answers_fact_gathering_over_ssh(lab: LabHandle, tmp_path: Path) -> None:
    start = time.monotonic()
    done = lab.ansible("all", "-m", "ansible.builtin.setup", "--tree", str(tmp_path))
    TIMINGS.append(f"ansible setup on 4 hosts over ssh: {time.monotonic() - start:.1f} s")
    assert done.returncode == 0, done.stdout + done.stderr
    facts = {p.name: json.loads(p.read_text())["ansible_facts"] for p in tmp_path.iterdir()}
    assert sorted(facts) == sorted(lab.addresses)
    for name in (NAVI10, XTX, MI210):
        assert facts[name]["ansible_distribution"] == "Debian"
        assert facts[name]["ansible_distribution_major_version"] == "12"
    assert facts[W6800]["ansible_distribution"] == "Ubuntu"
    assert facts[W6800]["ansible_distribution_version"] == "24.04"
    assert facts[W6800]["ansible_distribution_release"] == "noble"
    assert facts[NAVI10]["ansible_hostname"] == NAVI10


def test_up_again_keeps_every_host(lab: LabHandle) -> None:
    before = lab.inventory.read_text()
    start = time.monotonic()
    again = lab.lab.up(hosts=4, first_address=FIRST_ADDRESS)
    TIMINGS.append(f"lab up again (nothing to do): {time.monotonic() - start:.1f} s")
    assert all(host.reused for host in again.hosts)
    assert again.base_url == lab.base_url
    assert lab.inventory.read_text() == before


def test_status_says_up(lab: LabHandle) -> None:
    result = CliRunner().invoke(app, ["status", "--lab-dir", str(lab.lab.paths.root)])
    assert result.exit_code == 0, result.output
    assert "lab is up" in result.output
    for name in lab.addresses:
        assert name in result.output


def test_navi10_rocminfo_sysfs_kfd_lspci(lab: LabHandle) -> None:
    login = lab.ok(NAVI10, "bash -lc rocminfo")
    assert re.search(r"^  Name:\s+gfx1030\s*$", login, re.M), login  # HSA_OVERRIDE_GFX_VERSION=10.3.0 profile
    assert re.search(r"^  Marketing Name:\s+AMD Radeon RX 5600 XT\s*$", login, re.M)
    assert re.search(r"^  Chip ID:\s+29471\(0x731f\)\s*$", login, re.M)
    assert re.search(r"^  Vendor Name:\s+AMD\s*$", login, re.M)
    assert re.search(r"^  Device Type:\s+GPU\s*$", login, re.M)
    assert "*******" in login and re.search(r"^Agent 2\s*$", login, re.M)
    plain = lab.ok(NAVI10, "env -u HSA_OVERRIDE_GFX_VERSION /opt/rocm/bin/rocminfo")
    assert re.search(r"^  Name:\s+gfx1010\s*$", plain, re.M)
    root = "/opt/provision-lab/sys"
    dev = f"{root}/bus/pci/devices/0000:03:00.0"
    assert lab.ok(NAVI10, f"cat {dev}/vendor {dev}/device {dev}/class").split() == ["0x1002", "0x731f", "0x030000"]
    props = lab.ok(NAVI10, f"cat {root}/class/kfd/kfd/topology/nodes/1/properties")
    assert "gfx_target_version 100100\n" in props
    assert "vendor_id 4098\n" in props and "device_id 29471\n" in props
    assert "cpu_cores_count 0\n" in props
    assert "cpu_cores_count 8\n" in lab.ok(NAVI10, f"cat {root}/class/kfd/kfd/topology/nodes/0/properties")
    lspci = lab.ok(NAVI10, "lspci -nn 2>/dev/null")
    assert "VGA compatible controller [0300]: Advanced Micro Devices, Inc. [AMD/ATI] Navi 10" in lspci
    assert "[1002:731f]" in lspci


def test_every_host_shows_its_declared_gpus(lab: LabHandle) -> None:
    for host in lab.lab.load_state()["hosts"]:
        name, expected = host["name"], host["gpus"]
        lspci = lab.ok(name, "lspci -nn -d 1002: 2>/dev/null")
        found = re.findall(r"\[(1002:[0-9a-f]{4})\]", lspci)
        assert found == expected, (name, lspci)
        nodes = lab.ok(name, "ls /opt/provision-lab/sys/class/kfd/kfd/topology/nodes").split()
        assert len(nodes) == len(expected) + 1
    mi210 = lab.ok(MI210, "cat /opt/provision-lab/sys/bus/pci/devices/0000:03:00.0/class")
    assert mi210.strip() == "0x038000"
    kfd = lab.ok(MI210, "cat /opt/provision-lab/sys/class/kfd/kfd/topology/nodes/1/properties")
    assert "gfx_target_version 90010\n" in kfd
    xtx = lab.ok(XTX, "/opt/rocm/bin/rocminfo")
    assert re.findall(r"^  Name:\s+(gfx\w+)", xtx, re.M) == ["gfx1100", "gfx1036"]


def test_before_states(lab: LabHandle) -> None:
    fpr = str(_inventory(lab.inventory)[NAVI10]["provision_key_fingerprint"])
    # ws-navi10: amdgpu-install 22.20 + legacy `ubuntu` suite + apt-key.
    assert fpr[-8:] in lab.ok(NAVI10, "apt-key list 2>/dev/null").replace(" ", "")
    assert " ubuntu main" in lab.ok(NAVI10, "cat /etc/apt/sources.list.d/rocm.list")
    assert lab.ok(NAVI10, "dpkg-query -W -f='${Version}' amdgpu-install") == "22.20.50200-1"
    assert lab.ok(NAVI10, "dpkg-query -W -f='${Version}' rocm-core") == "5.2.0.50200-65"
    assert lab.ok(NAVI10, "readlink -f /opt/rocm").strip() == "/opt/rocm-5.2.0"
    assert "HSA_OVERRIDE_GFX_VERSION=10.3.0" in lab.ok(NAVI10, "cat /etc/profile.d/rocm.sh")
    state = lab.before_state(NAVI10)
    venv = state["old_venv"]
    assert isinstance(venv, dict)
    assert venv["pip_freeze"] == ["torch==1.13.1+rocm5.2"]
    assert lab.ok(NAVI10, f"{venv['path']}/bin/pip freeze").split() == ["torch==1.13.1+rocm5.2"]
    # ws-w6800 (simulated Ubuntu 24.04): plain apt + signed-by + pin.
    rocm_list = lab.ok(W6800, "cat /etc/apt/sources.list.d/rocm.list")
    assert "signed-by=/etc/apt/keyrings/rocm.gpg" in rocm_list and "/rocm/apt/5.2 jammy main" in rocm_list
    assert "o=repo.radeon.com" in lab.ok(W6800, "cat /etc/apt/preferences.d/rocm-pin-600")
    assert lab.ok(W6800, "dpkg-query -W -f='${Status}' rocm-hip-sdk amdgpu-dkms").count("install ok installed") == 2
    # ws-7900xtx: key in trusted.gpg.d.
    assert lab.ssh(XTX, "test -s /etc/apt/trusted.gpg.d/rocm.gpg").returncode == 0
    assert lab.ok(XTX, "dpkg-query -W -f='${Version}' rocm-core") == "5.2.0.50200-65"
    # ws-mi210: fresh.
    assert lab.ssh(MI210, "dpkg-query -W rocm-core").returncode != 0
    assert lab.ssh(MI210, "test -e /opt/rocm").returncode != 0
    assert lab.before_state(MI210)["rocm"] is None


def test_apt_installs_a_70_standin_from_the_signed_mirror(lab: LabHandle) -> None:
    fpr = str(_inventory(lab.inventory)[MI210]["provision_key_fingerprint"])
    shown = lab.ok(MI210, f"curl -fsS {lab.base_url}/rocm/rocm.gpg.key | gpg --show-keys --with-colons")
    assert f"fpr:::::::::{fpr}:" in shown
    lab.ok(MI210, f"install -d -m 0755 /etc/apt/keyrings && curl -fsS {lab.base_url}/rocm/rocm.gpg.key "
                  "| gpg --dearmor > /etc/apt/keyrings/rocm.gpg")
    lab.ok(MI210, f"echo 'deb [arch=amd64 signed-by=/etc/apt/keyrings/rocm.gpg] {lab.base_url}/rocm/apt/7.0 "
                  "jammy main' > /etc/apt/sources.list.d/rocm.list")
    lab.ok(MI210, LAB_UPDATE)
    lab.ok(MI210, "DEBIAN_FRONTEND=noninteractive apt-get install -y rocm-core")
    assert lab.ok(MI210, "dpkg-query -W -f='${Version}' rocm-core") == "7.0.0.70000-17~22.04"
    assert lab.ok(MI210, "readlink -f /opt/rocm").strip() == "/opt/rocm-7.0.0"
    assert lab.ok(MI210, "cat /opt/rocm/.info/version").startswith("7.0.0")


def test_apt_refuses_a_repository_signed_by_another_key(lab: LabHandle) -> None:
    lab.ok(MI210, f"echo 'deb [arch=amd64 signed-by=/etc/apt/keyrings/rocm.gpg] {lab.base_url}/rogue/rocm/apt/7.0 "
                  "jammy main' > /etc/apt/sources.list.d/rogue.list")
    try:
        done = lab.ssh(MI210, LAB_UPDATE)
    finally:
        lab.ok(MI210, "rm -f /etc/apt/sources.list.d/rogue.list")
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "NO_PUBKEY" in output and "is not signed" in output, output


def test_mirror_counts_bytes_and_fails_on_purpose(lab: LabHandle) -> None:
    path = "/rocm/apt/7.0/dists/jammy/InRelease"
    size = len(_get(lab.base_url + path))
    _get(f"{lab.base_url}/_lab/stats/reset")
    lab.ok(MI210, f"curl -fsS -o /dev/null {lab.base_url}{path}")
    stats = json.loads(_get(f"{lab.base_url}/_lab/stats"))
    assert stats["paths"][path] == {"requests": 1, "bytes": size}
    assert stats["total_bytes"] == size
    try:
        _get(f"{lab.base_url}/_lab/fault?mode=down&path=/rocm/apt/7.0")
        failed = lab.ssh(MI210, LAB_UPDATE)  # apt reports a 503 as a failed fetch (a warning, exit code 0)
        assert "503" in failed.stdout + failed.stderr and "Failed to fetch" in failed.stdout + failed.stderr
        assert lab.ok(MI210, f"curl -s -o /dev/null -w '%{{http_code}}' {lab.base_url}{path}") == "503"
        _get(f"{lab.base_url}/_lab/fault?mode=garbage&path=/rocm/apt/7.0")
        good = hashlib.sha256(_get(lab.base_url + path)).hexdigest()
        _get(f"{lab.base_url}/_lab/fault?mode=none")
        assert hashlib.sha256(_get(lab.base_url + path)).hexdigest() != good
    finally:
        _get(f"{lab.base_url}/_lab/fault?mode=none")
    assert json.loads(_get(f"{lab.base_url}/_lab/fault"))["faults"] == []
    lab.ok(MI210, LAB_UPDATE)


def test_wheel_directory_is_a_listing_of_the_pins_files_with_the_lab_python_tag(lab: LabHandle) -> None:
    """The mirror's wheel directory lists exactly the pins' four files (AMD's names, versions and linux_x86_64 tag,
    %2B in the links), cp311 in place of cp312; the dependencies come from a separate PEP 503 index."""
    if not lab.lab.load_state().get("torch_version"):
        pytest.skip("no CPU torch wheel on this machine")
    listing = _get(f"{lab.base_url}/rocm/manylinux/rocm-rel-7.0/").decode()
    linked = sorted(set(re.findall(r'href="([^"]+\.whl)"', listing)))
    expected = sorted(p["file"].replace("-cp312-cp312-", "-cp311-cp311-") for p in pins.torch()["packages"])
    assert linked == expected, listing
    assert "sympy-" not in listing  # dependencies are not on AMD's page
    simple = _get(f"{lab.base_url}/pypi/simple/sympy/").decode()
    assert "sympy-" in simple and "#sha256=" in simple
    # pip on a lab host takes the re-packaged torch from the listing by AMD's version (no install)
    version = pins.torch()["expected_version"]
    done = lab.ok(MI210, "python3 -m venv /tmp/pipcheck && /tmp/pipcheck/bin/pip download --no-index -q -d /tmp/dl "
                         f"--find-links {lab.base_url}/rocm/manylinux/rocm-rel-7.0/ 'torch=={version}' --no-deps "
                         "&& ls /tmp/dl; rm -rf /tmp/dl /tmp/pipcheck", timeout=300)
    assert f"torch-{version}-cp311-cp311-linux_x86_64.whl" in done


def test_amdgpu_install_uninstall_removes_rocm_and_keeps_user_data(lab: LabHandle) -> None:
    state = lab.before_state(NAVI10)
    venv = state["old_venv"]
    assert isinstance(venv, dict)
    lab.ok(NAVI10, "amdgpu-install -y --uninstall", timeout=300)
    assert lab.ssh(NAVI10, "dpkg-query -W -f='${Status}' rocm-core | grep -q 'install ok'").returncode != 0
    assert lab.ssh(NAVI10, "dpkg-query -W -f='${Status}' miopen-hip | grep -q 'install ok'").returncode != 0
    assert lab.ssh(NAVI10, "test -e /opt/rocm").returncode != 0
    marker = lab.ok(NAVI10, f"sha256sum {venv['marker']}").split()[0]
    assert marker == venv["marker_sha256"]


def test_zz_down_removes_everything_and_is_idempotent(lab: LabHandle) -> None:
    root = lab.lab.paths.root
    first = lab.lab.down()
    assert len(first.removed_containers) == 4
    assert first.stopped_mirror
    assert not lab.inventory.exists() and not (root / "lab.json").exists()
    second = Lab(root).down()
    assert not (second.removed_containers or second.stopped_mirror or second.removed_paths)
    status = CliRunner().invoke(app, ["status", "--lab-dir", str(root)])
    assert status.exit_code == 1 and "lab is down" in status.output
    result = CliRunner().invoke(app, ["down", "--lab-dir", str(root)])
    assert result.exit_code == 0 and "already down" in result.output
