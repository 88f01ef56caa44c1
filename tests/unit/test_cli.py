"""The CLI as a user runs it: real processes, real files, exit codes and output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from provision import __version__

PASTES = Path(__file__).parent.parent / "fixtures" / "pastes"
SEED_LSPCI = "0a:00.0 VGA compatible controller [0300]: Advanced Micro Devices, Inc. [AMD/ATI] Navi 10 " \
             "[Radeon RX 5600 OEM/5600 XT / 5700/5700 XT] [1002:731f] (rev ca)\n"
SEED_ROCMINFO = """*******
Agent 2
*******
  Name:                    gfx1030
  Marketing Name:          AMD Radeon RX 5600 XT
  Device Type:             GPU
  Chip ID:                 29471(0x731f)
"""


def run(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "provision", *args], input=stdin, capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=60)


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0 and __version__ in result.stdout and "pins" in result.stdout


def test_help_teaches_with_examples() -> None:
    for args in (["--help"], ["gpus", "identify", "--help"], ["hosts", "validate", "--help"]):
        result = run(*args)
        assert result.returncode == 0
        assert "Usage" in result.stdout
    assert "lspci -nn" in run("gpus", "identify", "--help").stdout
    assert "Example" in run("hosts", "validate", "--help").stdout


def test_identify_seed_box_from_stdin_and_file(tmp_path: Path) -> None:
    info = tmp_path / "rocminfo.txt"
    info.write_text(SEED_ROCMINFO)
    result = run("gpus", "identify", "--lspci", "-", "--rocminfo", str(info), "--json", stdin=SEED_LSPCI)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    gpu = data["gpus"][0]
    assert (gpu["pci_id"], gpu["gfx"], gpu["gfx_runtime"]) == ("1002:731f", "gfx1010", "gfx1030")
    assert data["override"] == "10.3.0"
    assert data["plan"]["action"] == "fallback"
    table = run("gpus", "identify", "--lspci", "-", "--rocminfo", str(info), stdin=SEED_LSPCI)
    assert "gfx1010 (runtime: gfx1030)" in table.stdout
    assert "HSA_OVERRIDE_GFX_VERSION is in force" in table.stdout
    assert "fallback" in table.stdout


def test_identify_examples_seed_box_keeps_the_override_and_schedules_the_search() -> None:
    """The field report's box as pasted (examples/seed-box): no venv to read, so the public PyTorch ROCm 5.x
    wheels' targets are assumed (and said); they carry no gfx1010 code, so the override stays."""
    box = Path(__file__).parents[2] / "examples" / "seed-box"
    result = run("gpus", "identify", "--lspci", str(box / "lspci.txt"), "--rocminfo", str(box / "rocminfo.txt"),
                 "--os-release", str(box / "os-release"), "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)["plan"]
    assert plan["action"] == "fallback" and plan["env_remove"] == []
    assert "HSA_OVERRIDE_GFX_VERSION" not in plan["env"]
    assert plan["search"] and plan["torch"]["source"] == "assumed"
    assert plan["torch"]["targets"] == ["gfx900", "gfx906", "gfx908", "gfx90a", "gfx1030"]
    assert any("assumed public PyTorch ROCm 5.x wheels" in w for w in plan["warnings"])
    assert any("is kept" in r for r in plan["reasons"])


def test_identify_with_os_release(tmp_path: Path) -> None:
    osr = tmp_path / "os-release"
    osr.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
                   'VERSION_CODENAME=bookworm\nID=debian\n')
    lspci = "03:00.0 VGA compatible controller [0300]: Advanced Micro Devices, Inc. [AMD/ATI] Navi 31 " \
            "[Radeon RX 7900 XT/7900 XTX] [1002:744c] (rev c8)\n"
    result = run("gpus", "identify", "--lspci", "-", "--os-release", str(osr), "--json", stdin=lspci)
    data = json.loads(result.stdout)
    assert data["os"]["key"] == "debian-12"
    assert data["plan"]["action"] == "blocked"


def test_identify_needs_an_input() -> None:
    result = run("gpus", "identify")
    assert result.returncode == 2 and "--lspci" in result.stderr and "Traceback" not in result.stderr


def test_identify_missing_file_is_a_usage_error() -> None:
    result = run("gpus", "identify", "--lspci", "/nonexistent/lspci.txt")
    assert result.returncode == 2
    assert "/nonexistent/lspci.txt" in result.stderr and "Traceback" not in result.stderr


def test_identify_sysfs_tree(tmp_path: Path) -> None:
    dev = tmp_path / "bus" / "pci" / "devices" / "0000:0a:00.0"
    dev.mkdir(parents=True)
    (dev / "vendor").write_text("0x1002\n")
    (dev / "device").write_text("0x731f\n")
    (dev / "class").write_text("0x030000\n")
    node = tmp_path / "class" / "kfd" / "kfd" / "topology" / "nodes" / "1"
    node.mkdir(parents=True)
    (node / "properties").write_text("cpu_cores_count 0\nsimd_count 72\ngfx_target_version 100100\n"
                                      "vendor_id 4098\ndevice_id 29471\n")
    result = run("gpus", "identify", "--sysfs-root", str(tmp_path), "--json")
    data = json.loads(result.stdout)
    assert data["gpus"][0]["gfx"] == "gfx1010"
    assert set(data["gpus"][0]["evidence"]) == {"sysfs", "kfd"}


def test_hosts_validate_example_inventory() -> None:
    root = Path(__file__).parent.parent.parent
    result = run("hosts", "validate", "--hosts", str(root / "inventory.example"), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    plans = {h["name"]: h["plan"]["action"] for h in data["hosts"]}
    assert plans["ws-kevin"] == "fallback" and plans["ws-w6800"] == "upgrade"
    kevin = next(h for h in data["hosts"] if h["name"] == "ws-kevin")
    assert kevin["spec"]["provision_fallback_env"] == {"MIOPEN_FIND_MODE": "NORMAL"}


def test_yaml_inventory_with_group_vars(tmp_path: Path) -> None:
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "lab.yml").write_text("provision_users: [alice, bob]\nprovision_allow_reboot: no\n")
    (tmp_path / "lab.yml").write_text("lab:\n  hosts:\n    ws1:\n      ansible_host: 192.0.2.5\n"
                                      "      ansible_port: 2222\n")
    result = run("hosts", "validate", "--hosts", str(tmp_path / "lab.yml"), "--json")
    assert result.returncode == 0, result.stderr
    host = json.loads(result.stdout)["hosts"][0]
    assert host["spec"]["provision_users"] == ["alice", "bob"]
    assert host["spec"]["provision_allow_reboot"] is False
    assert host["port"] == 2222


def test_unknown_env_allowed_when_asked(tmp_path: Path) -> None:
    inv = tmp_path / "lab.yml"
    inv.write_text("all:\n  hosts:\n    ws1:\n      ansible_host: 192.0.2.5\n      provision_allow_unknown_env: true\n"
                   "      provision_fallback_env: {MIOPEN_DEBUG_CONV_DET: '0'}\n")
    result = run("hosts", "validate", "--hosts", str(inv))
    assert result.returncode == 0, result.stderr
    assert "not in the env-var catalog" in result.stdout


def test_gpus_and_env_listings() -> None:
    gpus = json.loads(run("gpus", "list", "--json").stdout)
    assert any(g["pci_id"] == "1002:731f" and g["gfx"] == "gfx1010" for g in gpus)
    env = json.loads(run("env", "list", "--json").stdout)
    assert any(v["name"] == "MIOPEN_DEBUG_CONV_GEMM" for v in env["variables"])
    assert any(v["name"] == "MIOPEN_DEBUG_CONV_DET" for v in env["not_read_by_anything"])


def test_lspci_and_sysfs_agree_on_one_gpu(tmp_path: Path) -> None:
    dev = tmp_path / "bus" / "pci" / "devices" / "0000:0a:00.0"
    dev.mkdir(parents=True)
    for name, value in (("vendor", "0x1002"), ("device", "0x731f"), ("class", "0x030000")):
        (dev / name).write_text(value + "\n")
    result = run("gpus", "identify", "--sysfs-root", str(tmp_path), "--lspci", "-", "--json", stdin=SEED_LSPCI)
    gpus = json.loads(result.stdout)["gpus"]
    assert len(gpus) == 1 and set(gpus[0]["evidence"]) == {"lspci", "sysfs"}
