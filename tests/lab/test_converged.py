"""Converged re-runs on the container lab: a second `provision upgrade` on hosts a verified run left as they
are makes no change and takes a fraction of the first run's time; a changed input or a host changed by hand
takes the full path (verification included) again.

Real SSH, real apt against the lab's signed mirror, real pip, the real playbooks. What cannot exist in a
container (a GPU, the dkms build, a reboot) is simulated where the roles read it, as in test_upgrade_e2e.py.
The lab is this module's own (2 hosts: an upgrade and a fallback host), on its own addresses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provision.lab.lab import Lab
from tests.lab.conftest import REPO, LabShell

FIRST_ADDRESS = os.environ.get("PROVISION_LAB_CONVERGED_FIRST", "127.0.0.165")
LAB_DIR = Path(os.environ.get("PROVISION_LAB_CONVERGED_DIR", str(REPO / ".lab" / "converged-test"))).resolve()
FALLBACK = "ws-navi10"
UPGRADE = "ws-w6800-ubuntu2404-sim"


def provision(*args: str, runs: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", PROVISION_RUNS_DIR=str(runs))
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "provision", *args], capture_output=True, text=True, env=env,
                          timeout=1800, check=False, stdin=subprocess.DEVNULL)
    return done, time.monotonic() - start


def report(runs: Path) -> dict[str, dict[str, Any]]:
    doc = json.loads((sorted(runs.glob("*-upgrade"))[-1] / "report.json").read_text())
    return {h["name"]: h for h in doc["hosts"]}


class Fleet(LabShell):
    def __init__(self, lab: Lab, addresses: dict[str, str], inventory: Path, runs: Path) -> None:
        self.lab, self.addresses, self.inventory, self.runs = lab, addresses, inventory, runs
        self.first: dict[str, dict[str, Any]] = {}
        self.first_s = 0.0


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed: the lab tests need it (run .ci/setup-lab.sh as root)")
    lab = Lab(LAB_DIR)
    lab.down()
    up = lab.up(hosts=2, first_address=FIRST_ADDRESS)
    try:
        tmp = tmp_path_factory.mktemp("converged")
        inventory = tmp / "lab.ini"
        inventory.write_text(up.inventory.read_text())
        playbook = Path(sys.executable).with_name("ansible-playbook")
        done = subprocess.run([str(playbook), "-i", str(inventory), "--limit", FALLBACK,
                               str(REPO / "provision" / "lab" / "playbooks" / "users_venv.yml")],
                              capture_output=True, text=True, timeout=900, check=False, cwd=REPO)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        yield Fleet(lab, {h.name: h.address for h in up.hosts}, inventory, tmp / "runs")
    finally:
        lab.down()


def test_converged_rerun_changes_nothing_in_a_fraction_of_the_time(fleet: Fleet) -> None:
    first, first_s = provision("upgrade", "--hosts", str(fleet.inventory), "--yes", runs=fleet.runs)
    assert first.returncode == 0, first.stdout + first.stderr
    hosts = report(fleet.runs)
    assert hosts[UPGRADE]["state"] == "done" and hosts[FALLBACK]["state"] == "fallback-applied", hosts
    assert all(not h["converged"] and h["changed"] > 0 for h in hosts.values()), hosts
    state = json.loads(fleet.ok(UPGRADE, "cat /var/lib/rocm-provision/state.json"))
    assert state["verification"]["verdict"] == "pass" and state["snapshot"]["packages"]["rocm-core"].startswith("7.0")

    again, again_s = provision("upgrade", "--hosts", str(fleet.inventory), "--yes", runs=fleet.runs)
    assert again.returncode == 0, again.stdout + again.stderr
    hosts = report(fleet.runs)
    for name, host in hosts.items():
        assert host["converged"] and host["changed"] == 0, (name, host)
        assert host["state"] == ("fallback-applied" if name == FALLBACK else "done"), host
        assert "converged" in host["reason"] and "--reverify" in host["reason"], host
        assert host["verification"]["verdict"] == "pass", host  # the recorded verification, shown again
    assert hosts[UPGRADE]["verification"]["verified_at"] == state["recorded_at"]
    assert "converged: last verified" in again.stdout
    assert again_s <= 0.15 * first_s, f"converged re-run took {again_s:.1f} s, first run {first_s:.1f} s"


def test_changed_input_or_host_takes_the_full_path_again(fleet: Fleet) -> None:
    before = json.loads(fleet.ok(FALLBACK, "cat /var/lib/rocm-provision/state.json"))
    # an input: one more MIOpen variable in the fallback profile of the fallback host
    text = fleet.inventory.read_text().replace(
        f"{FALLBACK} ansible_host=", f"{FALLBACK} provision_fallback_env='{{\"MIOPEN_DEBUG_CONV_FFT\": \"0\"}}' "
        "ansible_host=")
    fleet.inventory.write_text(text)
    # the host: an override dropped into profile.d by hand on the upgraded host
    fleet.ok(UPGRADE, "echo 'export MIOPEN_DEBUG_CONV_WINOGRAD=0' > /etc/profile.d/zz-by-hand.sh")
    done, _ = provision("upgrade", "--hosts", str(fleet.inventory), "--yes", runs=fleet.runs)
    assert done.returncode == 0, done.stdout + done.stderr
    hosts = report(fleet.runs)
    for name in (FALLBACK, UPGRADE):
        assert not hosts[name]["converged"], hosts[name]
        assert "verify" in [p["name"] for p in hosts[name]["phases"]], hosts[name]["phases"]
        assert hosts[name]["verification"]["json"], hosts[name]["verification"]  # a fresh report was fetched
    assert "MIOPEN_DEBUG_CONV_FFT=0" in fleet.ok(FALLBACK, "bash -lc env")
    after = json.loads(fleet.ok(FALLBACK, "cat /var/lib/rocm-provision/state.json"))
    assert after["fingerprint"] != before["fingerprint"] and after["recorded_at"] >= before["recorded_at"]

    # and converged again, with the new inputs; --reverify forces the full path on a converged host
    done, _ = provision("upgrade", "--hosts", str(fleet.inventory), "--yes", runs=fleet.runs)
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(h["converged"] and h["changed"] == 0 for h in report(fleet.runs).values())
    done, _ = provision("upgrade", "--hosts", str(fleet.inventory), "--yes", "--limit", UPGRADE, "--reverify",
                        runs=fleet.runs)
    assert done.returncode == 0, done.stdout + done.stderr
    host = report(fleet.runs)[UPGRADE]
    assert not host["converged"] and host["verification"]["json"], host
