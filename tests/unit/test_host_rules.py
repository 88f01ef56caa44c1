"""One test per domain rule of issue 17 (sources: provision/data/pins.yaml, gpus.yaml, env_vars.yaml).
Hardware that cannot exist here (EFI variables, KFD, a host's keyring) is simulated at the files the facts
module reads; the gpg output is real gpg's."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from provision import hostrules
from provision.catalog import catalog
from provision.identify import identify, parse_kfd_properties
from provision.inventory import spec_from_vars
from provision.planner import plan_host
from provision.preflight import evaluate
from provision.specs import HostSpec
from tests.sources import load_source
from tests.unit.test_planner import DEBIAN_12, UBUNTU_2404, lspci
from tests.unit.test_preflight import raw_facts, simulated_sysfs

facts_module = load_source("plugins/modules/rocm_host_facts.py")
PASTES = Path(__file__).parents[1] / "fixtures" / "pastes"
XTX_UUID = "GPU-0aac02dbebd629ee"  # what rocminfo printed for the RX 7900 XTX of ROCm/ROCm#2866


# ---------------------------------------------------------------- iGPU beside a discrete GPU


def test_igpu_beside_dgpu_with_uuid_is_hidden_by_rocr_visible_devices() -> None:
    rocminfo = (PASTES / "navi31-rx7900xtx-rocm-2866.rocminfo.txt").read_text()
    ident = identify(lspci=lspci("744c", "164e"), rocminfo=rocminfo)
    assert [g.role for g in ident.gpus][:2] == ["compute", "igpu"]
    assert ident.compute[0].uuid == XTX_UUID
    plan = plan_host(HostSpec(), ident, UBUNTU_2404)
    assert plan.action == "upgrade"
    assert plan.env == {"ROCR_VISIBLE_DEVICES": XTX_UUID}
    assert any("Raphael" in r and f"ROCR_VISIBLE_DEVICES={XTX_UUID}" in r for r in plan.reasons)
    assert any("disable the integrated GPU in the BIOS" in w for w in plan.warnings)


def test_igpu_beside_dgpu_without_uuid_is_blocked_with_the_bios_advice() -> None:
    ident = identify(lspci=lspci("744c", "164e"))  # no rocminfo, no KFD: no UUID known
    plan = plan_host(HostSpec(), ident, UBUNTU_2404)
    assert plan.action == "blocked"
    assert "disable the integrated GPU in the BIOS" in plan.reasons[0]
    assert "GPU-XX" in plan.reasons[0] and "index may change order" in plan.reasons[0]


def test_kfd_unique_id_gives_the_uuid_and_the_override_note_names_the_igpu() -> None:
    """An RX 6700 XT (gfx1031, runs as 10.3.0) beside a Raphael iGPU; KFD nodes as sysfs shows them."""
    kfd = [parse_kfd_properties("simd_count 80\ngfx_target_version 100301\nvendor_id 4098\ndevice_id 29663\n"
                                "unique_id 12345678901234567\n", 1),
           parse_kfd_properties("simd_count 4\ngfx_target_version 100306\nvendor_id 4098\ndevice_id 5710\n"
                                "unique_id 0\n", 2)]
    ident = identify(kfd=[n for n in kfd if n])
    assert ident.compute[0].uuid == f"GPU-{12345678901234567:016x}"
    assert [g.uuid for g in ident.gpus if g.role == "igpu"] == [None]
    plan = plan_host(HostSpec(allow_unsupported_os=True), ident, UBUNTU_2404)
    assert plan.action == "upgrade-with-override"
    assert plan.env["ROCR_VISIBLE_DEVICES"] == f"GPU-{12345678901234567:016x}"
    assert any("HSA_OVERRIDE_GFX_VERSION=10.3.0 applies to every GPU" in r for r in plan.reasons)


def test_rocminfo_gpu_xx_is_no_uuid() -> None:
    rocminfo = (PASTES / "navi10-rx5700xt-rocm-887.rocminfo.txt").read_text()
    assert all(g.uuid is None for g in identify(rocminfo=rocminfo).gpus)


# ---------------------------------------------------------------- kernel window of amdgpu-dkms 30.10


@pytest.mark.parametrize(("kernel", "blocked"), [("6.1.0-41-amd64", False), ("6.12.48+deb12-amd64", True),
                                                  ("6.17.0-8-generic", True)])
def test_kernel_outside_the_driver_window_blocks_before_anything_is_removed(tmp_path: Path, kernel: str,
                                                                           blocked: bool) -> None:
    simulated_sysfs(tmp_path, "740f", 90010)  # MI210: supported on Debian 12
    debian = 'ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\nPRETTY_NAME="Debian GNU/Linux 12"\n'
    result = evaluate(raw_facts(tmp_path, os_release=debian, kernel=kernel), spec_from_vars("ws1", {}))
    assert (result["plan"]["action"] == "blocked") is blocked
    if blocked:
        reason = result["plan"]["reasons"][0]
        assert kernel in reason and "(6.1)" in reason and "#5110" in reason
        assert "provision_install_driver: false" in reason
        inbox = evaluate(raw_facts(tmp_path, os_release=debian, kernel=kernel),
                         spec_from_vars("ws1", {"provision_install_driver": "false"}))
        assert inbox["plan"]["action"] == "upgrade"  # the suggested setting changes the outcome


def test_kernel_window_per_os_names_the_kernels_that_work() -> None:
    problems, _ = hostrules.kernel_window({"kernel": "6.16.3-061603-generic"}, "ubuntu-24.04")
    assert "(6.8 or 6.14)" in problems[0]
    assert hostrules.kernel_window({"kernel": "6.14.0-29-generic"}, "ubuntu-24.04") == ([], [])
    assert hostrules.kernel_window({"kernel": "5.15.0-163-generic"}, "ubuntu-22.04") == ([], [])
    assert hostrules.kernel_series("6.8.0-88-generic") == "6.8"


# ---------------------------------------------------------------- Secure Boot: MOK present, not enrolled


def _efivar(root: Path, name: str, payload: bytes) -> None:
    efivars = root / "firmware" / "efi" / "efivars"
    efivars.mkdir(parents=True, exist_ok=True)
    (efivars / name).write_bytes(b"\x07\x00\x00\x00" + payload)


def test_mok_not_enrolled_blocks_the_reboot(tmp_path: Path) -> None:
    """MokListRT/MokNew simulated under the sysfs root: the EFI variables mokutil --test-key reads."""
    sysfs = tmp_path / "sys"
    simulated_sysfs(sysfs, "73a3", 100300)
    cert = tmp_path / "MOK.der"
    cert.write_bytes(b"0\x82\x03\x1dDER certificate of the DKMS MOK")

    class NoMokutil:
        def get_bin_path(self, _name: str) -> None:
            return None

    _efivar(sysfs, "MokListRT-605dab50-e046-4300-abb6-3dd810dd8b23", b"another enrolled key")
    state = facts_module.mok_enrolled(NoMokutil(), str(sysfs), [str(cert)])
    assert state == {str(cert): "not-enrolled"}
    raw = raw_facts(sysfs, secure_boot="enabled", mok_keys=[str(cert)], mok_enrolled=state)
    result = evaluate(raw, spec_from_vars("ws1", {}))
    assert result["plan"]["action"] == "blocked"
    reason = result["plan"]["reasons"][0]
    assert "is not enrolled" in reason and f"mokutil --import {cert}" in reason
    _efivar(sysfs, "MokNew-605dab50-e046-4300-abb6-3dd810dd8b23", cert.read_bytes())
    pending = facts_module.mok_enrolled(NoMokutil(), str(sysfs), [str(cert)])
    assert pending == {str(cert): "pending"}
    reason = evaluate({**raw, "mok_enrolled": pending}, spec_from_vars("ws1", {}))["plan"]["reasons"][0]
    assert "MokManager" in reason
    _efivar(sysfs, "MokListRT-605dab50-e046-4300-abb6-3dd810dd8b23", b"xx" + cert.read_bytes())
    enrolled = facts_module.mok_enrolled(NoMokutil(), str(sysfs), [str(cert)])
    assert enrolled == {str(cert): "enrolled"}
    fine = evaluate({**raw, "mok_enrolled": enrolled}, spec_from_vars("ws1", {}))
    assert fine["plan"]["action"] == "upgrade"
    assert not any("MOK" in w or "Machine Owner Key" in w for w in fine["plan"]["warnings"])


# ---------------------------------------------------------------- AMD's key expired


@pytest.fixture(scope="module")
def expired_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A real OpenPGP key made with a clock set to 2021, valid one year: expired now (as AMD's was in 2023)."""
    home = tmp_path_factory.mktemp("gnupg")
    os.chmod(home, 0o700)
    gpg = ["gpg", "--batch", "--homedir", str(home), "--faked-system-time", "20210101T000000"]
    subprocess.run([*gpg, "--passphrase", "", "--quick-gen-key", "ROCm Release Manager (test)", "rsa2048",
                    "sign", "2022-01-01"], check=True, capture_output=True, timeout=120)
    exported = subprocess.run(["gpg", "--batch", "--homedir", str(home), "--export"], check=True,
                              capture_output=True, timeout=60).stdout
    keyring = home / "rocm.gpg"
    keyring.write_bytes(exported)
    colons = subprocess.run(["gpg", "--batch", "--homedir", str(home), "--show-keys", "--with-colons",
                             str(keyring)], check=True, capture_output=True, text=True, timeout=60).stdout
    fpr = next(line.split(":")[9] for line in colons.splitlines() if line.startswith("fpr:"))
    return colons, fpr


def test_expired_key_is_refused_with_its_date(expired_key: tuple[str, str]) -> None:
    colons, fpr = expired_key
    assert hostrules.key_expiry(colons, fpr, time.time()) == (True, "2022-01-01")
    assert hostrules.key_expiry(colons, fpr, 1_600_000_000 + 3 * 10**7) == (False, "2022-01-01")
    raw = {"apt_keys": [{"file": "/etc/apt/trusted.gpg.d/rocm.gpg", "colons": colons}]}
    problems, warnings = hostrules.host_keys(raw, fpr, time.time(), upgrade=False)
    assert "expired on 2022-01-01" in problems[0] and "EXPKEYSIG" in problems[0] and not warnings
    problems, warnings = hostrules.host_keys(raw, fpr, time.time(), upgrade=True)
    assert not problems and "replaces it" in warnings[0]
    plugin = load_source("plugins/filter/provision_keys.py")
    with pytest.raises(Exception, match="expired on 2022-01-01"):
        plugin.provision_key_unexpired(colons, fpr, "https://mirror.example/rocm.gpg.key")
    assert plugin.provision_key_unexpired(colons, fpr, "u", now=1_600_000_000 + 3 * 10**7) == "2022-01-01"


# ---------------------------------------------------------------- users' venvs outside 6.2-7.0


def test_old_rocm_venvs_are_listed(tmp_path: Path) -> None:
    venv = tmp_path / "home" / "researcher" / "venvs" / "torch113"
    version_py = venv / "lib" / "python3.10" / "site-packages" / "torch" / "version.py"
    version_py.parent.mkdir(parents=True)
    # torch/version.py as the torch 1.13.1+rocm5.2 wheel writes it
    version_py.write_text("__version__ = '1.13.1+rocm5.2'\ndebug = False\ncuda = None\n"
                          "git_version = '49444c3e546bf240bed24a101e747422d1f8a0ee'\nhip = '5.2.21151-afdc89f8'\n")
    new = tmp_path / "opt" / "torch-rocm7.0" / "lib" / "python3.12" / "site-packages" / "torch" / "version.py"
    new.parent.mkdir(parents=True)
    new.write_text("__version__ = '2.8.0+rocm7.0.0.git64359f59'\nhip = '7.0.51831-a3e329ad8'\n")
    found = facts_module.torch_venvs([str(tmp_path / "home/*/*/*/lib/python3*/site-packages/torch/version.py"),
                                      str(tmp_path / "opt/*/lib/python3*/site-packages/torch/version.py")])
    assert {v["torch"] for v in found} == {"1.13.1+rocm5.2", "2.8.0+rocm7.0.0.git64359f59"}
    old = hostrules.old_venvs({"torch_venvs": found})
    assert old == [{"venv": str(venv), "torch": "1.13.1+rocm5.2", "rocm": "5.2"}]
    sysfs = tmp_path / "sys"
    simulated_sysfs(sysfs, "73a3", 100300)
    result = evaluate(raw_facts(sysfs, torch_venvs=found), spec_from_vars("ws1", {}))
    assert result["old_venvs"] == old
    assert any(str(venv) in w and "6.2 to 7.0" in w for w in result["plan"]["warnings"])


# ---------------------------------------------------------------- several GPUs: iommu=pt


def test_multi_gpu_host_gets_the_iommu_advice_unless_set(tmp_path: Path) -> None:
    kfd = [parse_kfd_properties(f"simd_count 416\ngfx_target_version 90010\nvendor_id 4098\ndevice_id 29711\n"
                                f"location_id {n * 256}\n", n) for n in (1, 2)]
    assert hostrules.multi_gpu_iommu({"cmdline": "BOOT_IMAGE=/vmlinuz ro quiet"}, 2)[0].count("iommu=pt") == 1
    assert hostrules.multi_gpu_iommu({"cmdline": "ro quiet iommu=pt"}, 2) == []
    assert hostrules.multi_gpu_iommu({"cmdline": "ro"}, 1) == []
    raw = raw_facts(tmp_path, os_release=None, pci=[{"slot": f"0000:{b}:00.0", "vendor": "0x1002",
                                                      "device": "0x740f", "class": "0x038000"} for b in ("03", "83")])
    raw["kfd"] = [{"node": n.node, "properties": f"simd_count 416\ngfx_target_version 90010\nvendor_id 4098\n"
                   f"device_id 29711\nlocation_id {n.node * 256}\n"} for n in kfd if n]
    result = evaluate(raw, spec_from_vars("ws1", {}))
    assert len(result["gpus"]) == 2 and any("iommu=pt" in w for w in result["plan"]["warnings"])


# ---------------------------------------------------------------- dropped GPUs and recent APUs


@pytest.mark.parametrize(("pci_id", "gfx"), [("67df", "gfx803"), ("67ef", "gfx803"), ("699f", "gfx803"),
                                             ("69af", "gfx904")])
def test_dropped_gpus_are_catalogued_and_fall_back(pci_id: str, gfx: str) -> None:
    device = catalog().device(pci_id)
    assert device is not None and device.chip.gfx == gfx and device.rocm70 == "unsupported"
    ident = identify(pci=[], lspci=f"01:00.0 VGA compatible controller [0300]: Advanced Micro Devices, Inc. "
                                   f"[AMD/ATI] {device.name} [1002:{pci_id}] (rev e7)")
    assert ident.compute[0].role == "compute"
    plan = plan_host(HostSpec(), ident, DEBIAN_12)
    assert plan.action == "fallback" and not any("not in the GPU catalog" in r for r in plan.reasons)
    upgrade = plan_host(HostSpec(mode="upgrade"), ident, DEBIAN_12)
    assert upgrade.action == "blocked" and "provision_mode is upgrade" in upgrade.reasons[-1]


@pytest.mark.parametrize(("pci_id", "gfx"), [("1900", "gfx1103"), ("1901", "gfx1103"), ("1114", "gfx1152"),
                                             ("1902", "gfx1152"), ("1506", "gfx1037"), ("163f", "gfx1033"),
                                             ("164f", "gfx1103")])
def test_recent_apus_are_set_aside_never_unknown(pci_id: str, gfx: str) -> None:
    device = catalog().device(pci_id)
    assert device is not None and device.chip.gfx == gfx and device.chip.integrated
    ident = identify(lspci=f"c5:00.0 VGA compatible controller [0300]: Advanced Micro Devices, Inc. [AMD/ATI] "
                           f"{device.name} [1002:{pci_id}] (rev c1)")
    assert [g.role for g in ident.gpus] == ["igpu"]
    plan = plan_host(HostSpec(), ident, UBUNTU_2404)
    assert plan.action == "blocked" and "set aside" in plan.reasons[0]
    assert "unknown" not in " ".join(plan.reasons)


def test_unknown_gpu_suggests_only_a_setting_that_changes_the_outcome() -> None:
    ident = identify(lspci="03:00.0 VGA compatible controller [0300]: Advanced Micro Devices, Inc. [AMD/ATI] "
                           "Device [1002:7fff] (rev c1)")
    plan = plan_host(HostSpec(), ident, UBUNTU_2404)
    assert plan.action == "blocked" and "provision_mode: fallback" in plan.reasons[0]
    assert "provision_mode: upgrade" not in plan.reasons[0] and "or upgrade" not in plan.reasons[0]
    assert plan_host(HostSpec(mode="upgrade"), ident, UBUNTU_2404).action == "blocked"  # upgrade would not help
    assert plan_host(HostSpec(mode="fallback"), ident, UBUNTU_2404).action == "fallback"  # fallback does


def test_old_venvs_are_listed_in_the_report(tmp_path: Path) -> None:
    from provision import report
    from tests.unit.test_report import sample

    doc = sample()
    doc["hosts"][0]["old_venvs"] = [{"venv": "/home/researcher/venvs/torch113", "torch": "1.13.1+rocm5.2",
                                     "rocm": "5.2"}]
    text = report.markdown(doc)
    assert "`/home/researcher/venvs/torch113` (torch 1.13.1+rocm5.2)" in text and "older than 6.2" in text
