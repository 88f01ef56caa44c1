"""Preflight evaluation: the facts module's sysfs readers on a simulated tree, then the shared planner.
(The same module runs over SSH against the container lab in tests/lab.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.errors import InventoryError
from provision.inventory import spec_from_vars
from provision.preflight import evaluate, rocm_state
from tests.sources import load_source

facts_module = load_source("plugins/modules/rocm_host_facts.py")

UBUNTU = 'NAME="Ubuntu"\nVERSION_ID="22.04"\nVERSION_CODENAME=jammy\nID=ubuntu\nPRETTY_NAME="Ubuntu 22.04.5 LTS"\n'


def simulated_sysfs(root: Path, device: str, gfx_target_version: int) -> None:
    dev = root / "bus" / "pci" / "devices" / "0000:0a:00.0"
    dev.mkdir(parents=True)
    for name, value in (("vendor", "0x1002"), ("device", f"0x{device}"), ("class", "0x030000")):
        (dev / name).write_text(value + "\n")
    audio = root / "bus" / "pci" / "devices" / "0000:0a:00.1"
    audio.mkdir(parents=True)
    for name, value in (("vendor", "0x1002"), ("device", "0xab38"), ("class", "0x040300")):
        (audio / name).write_text(value + "\n")
    cpu = root / "class" / "kfd" / "kfd" / "topology" / "nodes" / "0"
    cpu.mkdir(parents=True)
    (cpu / "properties").write_text("cpu_cores_count 12\nsimd_count 0\ngfx_target_version 0\n")
    gpu = root / "class" / "kfd" / "kfd" / "topology" / "nodes" / "1"
    gpu.mkdir(parents=True)
    (gpu / "properties").write_text(f"cpu_cores_count 0\nsimd_count 72\ngfx_target_version {gfx_target_version}\n"
                                    f"vendor_id 4098\ndevice_id {int(device, 16)}\n")


def raw_facts(root: Path, **extra: object) -> dict:
    raw = {"pci": facts_module.pci_devices(str(root)), "kfd": facts_module.kfd_nodes(str(root)),
           "lspci": None, "rocminfo": None, "os_release": UBUNTU, "kernel": "6.8.0-45-generic",
           "kernel_headers": True, "secure_boot": "disabled", "env_overrides": [], "packages": {},
           "free_space": {"/opt": {"checked": "/opt", "free_bytes": 100 * 1024**3}}, "user_groups": {}}
    raw.update(extra)
    return raw


def test_navi10_with_rocm52_and_override_in_profile(tmp_path: Path) -> None:
    simulated_sysfs(tmp_path, "731f", 100100)
    raw = raw_facts(tmp_path, packages={"rocm-core": "5.2.0.50200-65", "amdgpu-install": "22.20.50200-1"},
                    amdgpu_install="/usr/bin/amdgpu-install",
                    env_overrides=[{"file": "/etc/profile.d/rocm.sh", "line": 1,
                                    "name": "HSA_OVERRIDE_GFX_VERSION", "value": "10.3.0"}])
    result = evaluate(raw, spec_from_vars("ws1", {}))
    assert [g["pci_id"] for g in result["gpus"]] == ["1002:731f"]  # the HDMI audio function is not a GPU
    assert result["gpus"][0]["gfx"] == "gfx1010"
    assert result["rocm"]["version"] == "5.2.0" and result["rocm"]["install_method"] == "amdgpu-install"
    assert result["plan"]["action"] == "fallback"
    assert result["plan"]["env_remove"] == ["HSA_OVERRIDE_GFX_VERSION"]


def test_w6800_upgrade_blocked_by_disk(tmp_path: Path) -> None:
    simulated_sysfs(tmp_path, "73a3", 100300)
    raw = raw_facts(tmp_path, free_space={"/opt": {"checked": "/", "free_bytes": 5 * 1024**3}})
    ok = evaluate(raw_facts(tmp_path), spec_from_vars("ws1", {}), {"/opt": 30})
    assert ok["plan"]["action"] == "upgrade"
    short = evaluate(raw, spec_from_vars("ws1", {}), {"/opt": 30})
    assert short["plan"]["action"] == "blocked"
    assert "5.0 GiB free" in short["plan"]["reasons"][0]


def test_missing_user_blocks_and_groups_are_announced(tmp_path: Path) -> None:
    simulated_sysfs(tmp_path, "73a3", 100300)
    raw = raw_facts(tmp_path, user_groups={"alice": None, "bob": ["bob"], "carol": ["carol", "video"]})
    result = evaluate(raw, spec_from_vars("ws1", {"provision_users": ["alice", "bob", "carol"]}))
    assert result["plan"]["action"] == "blocked"
    assert any("user alice (provision_users) does not exist" in r for r in result["plan"]["reasons"])
    assert any("bob is not in render and video" in w and "next login" in w for w in result["plan"]["warnings"])
    assert any("carol is not in render yet" in w for w in result["plan"]["warnings"])


def test_secure_boot_without_mok_blocks_the_driver(tmp_path: Path) -> None:
    """Secure Boot simulated by the EFI variable under the sysfs root the facts module reads."""
    simulated_sysfs(tmp_path, "73a3", 100300)
    efivars = tmp_path / "firmware" / "efi" / "efivars"
    efivars.mkdir(parents=True)
    var = efivars / "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
    var.write_bytes(b"\x06\x00\x00\x00\x01")

    class NoMokutil:
        def get_bin_path(self, _name: str) -> None:
            return None

    assert facts_module.secure_boot(NoMokutil(), str(tmp_path)) == "enabled"
    blocked = evaluate(raw_facts(tmp_path, secure_boot="enabled", mok_keys=[]), spec_from_vars("ws1", {}))
    assert blocked["plan"]["action"] == "blocked"
    assert "MOK" in blocked["plan"]["reasons"][0] and "provision_install_driver: false" in blocked["plan"]["reasons"][0]
    signed = evaluate(raw_facts(tmp_path, secure_boot="enabled", mok_keys=["/var/lib/dkms/mok.pub"]),
                      spec_from_vars("ws1", {}))
    assert signed["plan"]["action"] == "upgrade"
    assert any("/var/lib/dkms/mok.pub" in w and "enrolled" in w for w in signed["plan"]["warnings"])
    inbox = evaluate(raw_facts(tmp_path, secure_boot="enabled", mok_keys=[]),
                     spec_from_vars("ws1", {"provision_install_driver": "false"}))
    assert inbox["plan"]["action"] == "upgrade"
    assert any("in-box amdgpu driver stays" in w for w in inbox["plan"]["warnings"])
    var.write_bytes(b"\x06\x00\x00\x00\x00")
    assert facts_module.secure_boot(NoMokutil(), str(tmp_path)) == "disabled"


def test_kernel_headers_not_installable_blocks(tmp_path: Path) -> None:
    simulated_sysfs(tmp_path, "73a3", 100300)
    facts = {"kernel_headers": False, "kernel_headers_package": "linux-headers-6.8.0-45-generic"}
    blocked = evaluate(raw_facts(tmp_path, kernel_headers_candidate=None, **facts), spec_from_vars("ws1", {}))
    assert blocked["plan"]["action"] == "blocked"
    reason = blocked["plan"]["reasons"][0]
    assert "linux-headers-6.8.0-45-generic" in reason and "running kernel 6.8.0-45-generic" in reason
    assert "provision_install_driver: false" in reason
    fine = evaluate(raw_facts(tmp_path, kernel_headers_candidate="6.8.0-45.45", **facts), spec_from_vars("ws1", {}))
    assert fine["plan"]["action"] == "upgrade"
    inbox = evaluate(raw_facts(tmp_path, kernel_headers_candidate=None, **facts),
                     spec_from_vars("ws1", {"provision_install_driver": False}))
    assert inbox["plan"]["action"] == "upgrade"


def test_venv_and_opt_on_one_file_system_need_their_sum(tmp_path: Path) -> None:
    simulated_sysfs(tmp_path, "73a3", 100300)
    row = {"checked": "/", "mount": "/", "device": 2049, "free_bytes": 35 * 1024**3}
    same = raw_facts(tmp_path, free_space={"/opt": row, "/opt/venv": row})
    result = evaluate(same, spec_from_vars("ws1", {}), {"/opt": 30, "/opt/venv": 10})
    assert result["plan"]["action"] == "blocked"
    assert "mounted at / has 35.0 GiB free; the upgrade needs 40 GiB there" in result["plan"]["reasons"][0]
    small = {"checked": "/srv/small", "mount": "/srv/small", "device": 77, "free_bytes": 64 * 1024**2}
    apart = raw_facts(tmp_path, free_space={"/opt": row, "/srv/small/venv": small})
    result = evaluate(apart, spec_from_vars("ws1", {}), {"/opt": 30, "/srv/small/venv": 10})
    assert result["plan"]["reasons"][0].startswith(
        "not enough disk space: the file system mounted at /srv/small has 64.0 MiB free; the upgrade needs 10 GiB")


def test_bad_settings_reaching_a_playbook_are_refused() -> None:
    with pytest.raises(InventoryError, match="provision_mode"):
        spec_from_vars("ws1", {"provision_mode": "yolo"})


def test_rocm_version_from_opt_dirs() -> None:
    state = rocm_state({"rocm": {"dirs": {"/opt/rocm-5.2.0": None}}})
    assert state.version == "5.2.0"
