"""`provision upgrade` end to end on the container lab: a mixed fleet (upgrade, fallback, blocked,
unreachable), a converged re-run, --check, --retry-failed, and the report host by host.

Hardware that cannot exist in a container (the amdgpu dkms build, reboots, a GPU for the convolution
suite) is simulated at the boundary the roles read (role variables the lab inventory sets, the lab's
stand-in packages, CPU torch); the production playbooks run unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.conftest import FIRST_ADDRESS, LabHandle


def provision(*args: str, runs: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", PROVISION_RUNS_DIR=str(runs))
    return subprocess.run([sys.executable, "-m", "provision", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False, stdin=subprocess.DEVNULL)


def latest_report(runs: Path, command: str) -> dict:
    run_dir = sorted(runs.glob(f"*-{command}"))[-1]
    return json.loads((run_dir / "report.json").read_text())


def users_venv(inventory: Path, host: str) -> None:
    """The fallback host verifies in its users' venv: the lab's stand-in for it (as `provision demo` does)."""
    playbook = Path(sys.executable).with_name("ansible-playbook")
    done = subprocess.run([str(playbook), "-i", str(inventory), "--limit", host,
                           str(Path(__file__).parents[2] / "provision" / "lab" / "playbooks" / "users_venv.yml")],
                          capture_output=True, text=True, timeout=600, check=False, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


@pytest.fixture(scope="module")
def fleet(lab: LabHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabHandle, Path, Path]]:
    """Fresh before-states (other modules change hosts), plus one host that does not answer."""
    lab.lab.down()
    lab.result = lab.lab.up(hosts=4, first_address=FIRST_ADDRESS)
    lab.addresses = {h.name: h.address for h in lab.result.hosts}
    tmp = tmp_path_factory.mktemp("fleet")
    inventory = tmp / "lab.ini"
    inventory.write_text(lab.inventory.read_text().replace(
        "[workstations:vars]", "ws-gone ansible_host=127.0.0.251\n\n[workstations:vars]"))
    users_venv(lab.inventory, "ws-navi10")
    yield lab, inventory, tmp / "runs"


def test_check_mode_changes_nothing(fleet: tuple[LabHandle, Path, Path]) -> None:
    lab, inventory, runs = fleet
    before = {h: lab.ok(h, "dpkg -l | sha256sum; ls /etc/apt/sources.list.d /etc/profile.d") for h in lab.addresses}
    result = provision("upgrade", "--hosts", str(inventory), "--check", "--limit", "!ws-gone", runs=runs)
    assert result.returncode == 0, result.stdout + result.stderr
    doc = latest_report(runs, "upgrade")
    assert {h["state"] for h in doc["hosts"]} <= {"planned", "blocked"}
    after = {h: lab.ok(h, "dpkg -l | sha256sum; ls /etc/apt/sources.list.d /etc/profile.d") for h in lab.addresses}
    assert after == before


def test_mixed_fleet_upgrade(fleet: tuple[LabHandle, Path, Path]) -> None:
    lab, inventory, runs = fleet
    marker_before = lab.before_state("ws-navi10")
    result = provision("upgrade", "--hosts", str(inventory), "--yes", runs=runs)
    assert result.returncode == 1, result.stdout + result.stderr  # ws-gone is unreachable
    doc = latest_report(runs, "upgrade")
    states = {h["name"]: h for h in doc["hosts"]}
    assert states["ws-gone"]["state"] == "unreachable"
    assert states["ws-7900xtx"]["state"] == "blocked"
    assert "Instinct-only" in states["ws-7900xtx"]["reason"]
    for name in ("ws-mi210", "ws-w6800-ubuntu2404-sim"):
        host = states[name]
        assert host["state"] == "done", host
        assert host["after"]["rocm"] == "7.0.0", host["after"]
        assert host["verification"]["verdict"] in ("pass",), host["verification"]
    assert states["ws-w6800-ubuntu2404-sim"]["before"]["rocm"] == "5.2.0"
    navi = states["ws-navi10"]
    assert navi["state"] == "fallback-applied" and navi["after"]["rocm"] == "5.2.0"
    # on the hosts themselves
    assert "rocm-core" in lab.ok("ws-mi210", "dpkg -l rocm-core | tail -1") and \
        "7.0.0" in lab.ok("ws-mi210", "dpkg-query -W -f '${Version}' rocm-core")
    env = lab.ok("ws-navi10", "bash -lc env")
    assert "MIOPEN_DEBUG_CONV_GEMM=0" in env and "HSA_OVERRIDE_GFX_VERSION" not in env
    venv = marker_before["old_venv"]
    assert lab.ok("ws-navi10", f"sha256sum {venv['marker']}").split()[0] == venv["marker_sha256"]
    assert lab.ok("ws-navi10", f"{venv['path']}/bin/pip freeze").split() == venv["pip_freeze"]
    for name in ("report.html", "report.md", "junit.xml"):
        assert (sorted(runs.glob("*-upgrade"))[-1] / name).is_file()
    # each host's own time, summed from the start/end stamps of its task results: the blocked host stopped after
    # preflight (it comes back only for the last two plays), the upgraded ones ran the whole path
    blocked, upgraded = states["ws-7900xtx"], states["ws-mi210"]
    assert 0 < blocked["duration_s"] < upgraded["duration_s"] / 3, (blocked["duration_s"], upgraded["duration_s"])
    assert upgraded["duration_s"] <= upgraded["span_s"] <= doc["run"]["duration_s"]
    # containers cannot reboot (the lab sets provision_allow_reboot=false): the new driver waits, the report says so
    assert upgraded["reboot_pending"] and not navi["reboot_pending"] and not blocked["reboot_pending"]
    page = (sorted(runs.glob("*-upgrade"))[-1] / "report.html").read_text()
    assert "Reboot pending on 2 host(s)" in page, page[:3000]


def test_converged_rerun_changes_nothing(fleet: tuple[LabHandle, Path, Path]) -> None:
    _, inventory, runs = fleet
    result = provision("upgrade", "--hosts", str(inventory), "--yes", "--limit", "!ws-gone", runs=runs)
    assert result.returncode == 0, result.stdout + result.stderr
    doc = latest_report(runs, "upgrade")
    changed = {h["name"]: h["changed"] for h in doc["hosts"] if h["state"] != "blocked"}
    assert changed and all(v == 0 for v in changed.values()), changed


def test_retry_failed_after_fixing_the_host(fleet: tuple[LabHandle, Path, Path]) -> None:
    lab, inventory, runs = fleet
    # "fix" ws-gone: a fifth lab host (another RX 5600 XT workstation) now answers on its address
    up = lab.lab.up(hosts=5, first_address=FIRST_ADDRESS)
    fifth = up.hosts[-1]
    users_venv(lab.inventory, fifth.name)
    text = inventory.read_text().replace(
        "ws-gone ansible_host=127.0.0.251",
        f"ws-gone ansible_host={fifth.address} provision_verify_venv=/opt/venvs/lab-verify-cpu")
    inventory.write_text(text)
    result = provision("upgrade", "--hosts", str(inventory), "--yes", "--retry-failed", runs=runs)
    assert "retrying: ws-gone" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    doc = latest_report(runs, "upgrade")
    assert [h["name"] for h in doc["hosts"]] == ["ws-gone"]
    assert doc["hosts"][0]["state"] == "fallback-applied"
