"""Planner decisions for the cases users hit in practice, starting with the seed report's box."""

from __future__ import annotations

from provision.identify import identify
from provision.planner import OsFacts, RocmState, plan_host
from provision.specs import HostSpec

UBUNTU_2404 = OsFacts("ubuntu", "24.04", "noble", "Ubuntu 24.04.3 LTS")
UBUNTU_2204 = OsFacts("ubuntu", "22.04", "jammy")
UBUNTU_2004 = OsFacts("ubuntu", "20.04", "focal", "Ubuntu 20.04.6 LTS")
DEBIAN_12 = OsFacts("debian", "12", "bookworm")
RHEL_96 = OsFacts("rhel", "9.6")

NAMES = {
    "731f": "Navi 10 [Radeon RX 5600 OEM/5600 XT / 5700/5700 XT]",
    "73a3": "Navi 21 GL-XL [Radeon PRO W6800]",
    "73bf": "Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]",
    "73df": "Navi 22 [Radeon RX 6700/6700 XT/6750 XT / 6800M/6850M XT]",
    "744c": "Navi 31 [Radeon RX 7900 XT/7900 XTX/7900 GRE/7900M]",
    "740f": "Aldebaran/MI200 [Instinct MI210]",
    "164e": "Raphael",
}


def lspci(*ids: str) -> str:
    lines = []
    for n, dev in enumerate(ids, start=3):
        cls = "VGA compatible controller [0300]" if dev != "740f" else "Display controller [0380]"
        lines.append(f"{n:02x}:00.0 {cls}: Advanced Micro Devices, Inc. [AMD/ATI] {NAMES[dev]} [1002:{dev}] (rev c1)")
    lines.append("00:1f.3 Audio device [0403]: Intel Corporation Device [8086:7ad0] (rev 11)")
    return "\n".join(lines)


def rocminfo(gfx: str, chip_hex: str) -> str:
    return f"""*******
Agent 1
*******
  Name:                    AMD Ryzen 5 3600 6-Core Processor
  Device Type:             CPU
*******
Agent 2
*******
  Name:                    {gfx}
  Marketing Name:          AMD Radeon RX 5600 XT
  Vendor Name:             AMD
  Device Type:             GPU
  Chip ID:                 {int(chip_hex, 16)}(0x{chip_hex})
"""


def test_seed_report_box_is_navi10_under_override_and_falls_back() -> None:
    ident = identify(lspci=lspci("731f"), rocminfo=rocminfo("gfx1030", "731f"))
    gpu = ident.compute[0]
    assert (gpu.pci_id, gpu.gfx, gpu.gfx_runtime, gpu.family) == ("1002:731f", "gfx1010", "gfx1030", "RDNA1")
    assert ident.override == "10.3.0"
    assert any("crosses GPU generations" in d for d in gpu.diagnosis)
    plan = plan_host(HostSpec(), ident, UBUNTU_2204, RocmState("5.2.0", "amdgpu-install", gathered=True))
    assert plan.action == "fallback"
    assert any("not supported by ROCm 7.0" in r for r in plan.reasons)
    # No venv was read (a pasted box): a public PyTorch ROCm 5.x wheel is assumed, which carries no gfx1010
    # code, so the override is what lets that PyTorch reach the GPU: kept, and the plan says so.
    assert plan.env_remove == []
    assert any("HSA_OVERRIDE_GFX_VERSION=10.3.0 is kept" in r and "no gfx1010 code" in r for r in plan.reasons)
    assert any("assumed public PyTorch ROCm 5.x wheels" in w and "gfx900, gfx906, gfx908, gfx90a, gfx1030" in w
               for w in plan.warnings)
    assert plan.env["MIOPEN_DEBUG_CONV_GEMM"] == "0"
    assert "HSA_OVERRIDE_GFX_VERSION" not in plan.env  # the profile does not set it; the host's own file keeps it
    assert plan.search is not None and plan.search["miopen_release"] == "2.17"
    assert "search (if needed)" in plan.steps


def test_override_removed_only_when_the_venv_does_not_need_it() -> None:
    """A torch build read from the venv that carries gfx1010 code itself: the generation-crossing override goes."""
    from provision.torchbuild import TorchBuild

    ident = identify(lspci=lspci("731f"), rocminfo=rocminfo("gfx1030", "731f"))
    rocm = RocmState("5.2.0", "amdgpu-install", {"HSA_OVERRIDE_GFX_VERSION": "10.3.0"}, gathered=True)
    own = TorchBuild("2.1.0+custom", ("gfx1010", "gfx1030"), "venv", "/home/u/venv", note="read from /home/u/venv")
    plan = plan_host(HostSpec(), ident, UBUNTU_2204, rocm, own)
    assert plan.action == "fallback" and plan.env_remove == ["HSA_OVERRIDE_GFX_VERSION"]
    assert any("carries gfx1010 code itself" in r for r in plan.reasons)
    # the same box whose venv holds the public 1.13.1+rocm5.2 wheel (read on the host): kept
    public = TorchBuild("1.13.1+rocm5.2", ("gfx1030", "gfx900", "gfx906", "gfx908", "gfx90a"), "venv", "/v")
    plan = plan_host(HostSpec(), ident, UBUNTU_2204, rocm, public)
    assert plan.env_remove == [] and plan.torch and plan.torch["miopen_release"] == "2.17"
    # a venv whose targets are unknown: the override is kept, with the reason
    unknown = TorchBuild("2.0.0+weird", None, "dist-info", "/v", note="unknown")
    plan = plan_host(HostSpec(), ident, UBUNTU_2204, rocm, unknown)
    assert plan.env_remove == [] and any("is not known" in r for r in plan.reasons)


def test_no_profile_name_outside_the_hosts_miopen_release() -> None:
    """A name MIOpen 2.17 (ROCm 5.2) does not read never reaches a ROCm 5.2 host's profile."""
    ident = identify(lspci=lspci("731f"), rocminfo=rocminfo("gfx1030", "731f"))
    spec = HostSpec(fallback_env={"MIOPEN_DEBUG_CONV_CK_IGEMM_FWD_V6R1_DLOPS_NCHW": "0"})
    plan = plan_host(spec, ident, UBUNTU_2204, RocmState("5.2.0", "apt", gathered=True))
    assert "MIOPEN_DEBUG_CONV_CK_IGEMM_FWD_V6R1_DLOPS_NCHW" not in plan.env
    assert any("not read by MIOpen 2.17" in w for w in plan.warnings)


def test_navi10_forced_upgrade_is_blocked() -> None:
    plan = plan_host(HostSpec(mode="upgrade"), identify(lspci=lspci("731f")), UBUNTU_2404)
    assert plan.action == "blocked"
    assert any("provision_mode is upgrade" in r for r in plan.reasons)


def test_w6800_on_ubuntu_2404_upgrades() -> None:
    plan = plan_host(HostSpec(), identify(lspci=lspci("73a3")), UBUNTU_2404, RocmState("5.2.0", "apt", gathered=True))
    assert plan.action == "upgrade"
    assert plan.warnings == []
    assert "remove" in plan.steps and "torch" in plan.steps


def test_rx6800xt_upgrades_with_a_warning() -> None:
    plan = plan_host(HostSpec(), identify(lspci=lspci("73bf")), UBUNTU_2404)
    assert plan.action == "upgrade"
    assert any("not on AMD's ROCm 7.0 support list" in w for w in plan.warnings)


def test_radeon_on_debian12_is_flagged() -> None:
    plan = plan_host(HostSpec(), identify(lspci=lspci("744c")), DEBIAN_12)
    assert plan.action == "blocked"
    assert any("Instinct-only" in r and "provision_allow_unsupported_os" in r for r in plan.reasons)
    allowed = plan_host(HostSpec(allow_unsupported_os=True), identify(lspci=lspci("744c")), DEBIAN_12)
    assert allowed.action == "upgrade"
    assert any("Instinct-only" in w for w in allowed.warnings)


def test_mi210_on_debian12_upgrades() -> None:
    assert plan_host(HostSpec(), identify(lspci=lspci("740f")), DEBIAN_12).action == "upgrade"


def test_gfx1031_upgrades_with_same_generation_override() -> None:
    plan = plan_host(HostSpec(), identify(lspci=lspci("73df")), UBUNTU_2204)
    assert plan.action == "upgrade-with-override"
    assert plan.env == {"HSA_OVERRIDE_GFX_VERSION": "10.3.0"}


def test_igpu_is_set_aside() -> None:
    ident = identify(lspci=lspci("744c", "164e"))
    assert [g.role for g in ident.gpus] == ["compute", "igpu"]
    # no UUID known for the 7900 XTX (lspci only): the iGPU cannot be hidden, so BIOS advice (test_host_rules)
    assert plan_host(HostSpec(), ident, UBUNTU_2404).action == "blocked"
    only_igpu = plan_host(HostSpec(), identify(lspci=lspci("164e")), UBUNTU_2404)
    assert only_igpu.action == "blocked" and "no AMD compute GPU" in only_igpu.reasons[0]


def test_override_cannot_serve_two_generations() -> None:
    plan = plan_host(HostSpec(), identify(lspci=lspci("73df", "744c")), UBUNTU_2404)
    assert plan.action == "blocked"


def test_expected_gpus_guard_against_the_wrong_host() -> None:
    plan = plan_host(HostSpec(expected_gpus=["1002:740f"]), identify(lspci=lspci("744c")), UBUNTU_2404)
    assert plan.action == "blocked" and "right host" in plan.reasons[0]


def test_os_rocm7_cannot_install_on_falls_back() -> None:
    plan = plan_host(HostSpec(), identify(lspci=lspci("73a3")), UBUNTU_2004)
    assert plan.action == "fallback"
    assert any("not an OS ROCm 7.0 installs on" in r for r in plan.reasons)


def test_rhel_is_named_but_not_yet_implemented() -> None:
    plan = plan_host(HostSpec(), identify(lspci=lspci("73a3")), RHEL_96)
    assert plan.action == "blocked" and "Ubuntu and Debian only" in plan.reasons[0]


def test_user_fallback_env_is_merged_over_the_profile() -> None:
    spec = HostSpec(mode="fallback", fallback_env={"MIOPEN_FIND_MODE": "NORMAL", "MIOPEN_DEBUG_CONV_GEMM": "1"})
    plan = plan_host(spec, identify(lspci=lspci("73a3")), UBUNTU_2404, RocmState("5.2.0", "apt", gathered=True))
    assert plan.action == "fallback"
    assert plan.env["MIOPEN_FIND_MODE"] == "NORMAL" and plan.env["MIOPEN_DEBUG_CONV_GEMM"] == "1"


def test_no_facts_means_undecided() -> None:
    assert plan_host(HostSpec()).action == "undecided"
    assert plan_host(HostSpec(mode="fallback")).action == "fallback"


def test_reboot_not_allowed_is_a_warning() -> None:
    plan = plan_host(HostSpec(allow_reboot=False), identify(lspci=lspci("73a3")), UBUNTU_2404)
    assert plan.action == "upgrade"
    assert any("manual reboot" in w for w in plan.warnings)


def test_run_level_settings_reach_the_preflight_without_being_refused() -> None:
    """`provision upgrade --serial 2 --max-fail-percent 25` passes these to every host's preflight."""
    from provision.inventory import spec_from_vars

    spec = spec_from_vars("ws1", {"provision_mode": "auto", "provision_serial": "2",
                                  "provision_max_fail_percent": 25})
    assert spec.mode == "auto"
