"""The torch_venv, fallback_profile and conv_verify roles and the fallback/verify playbooks against real
lab hosts over SSH: converge, converge again (changed=0), then check the host's real state.

    .venv/bin/pytest tests/roles -m lab            # about 4 minutes with the base image cached
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.roles.conftest import RolesLab

pytestmark = [pytest.mark.lab, pytest.mark.slow]

NAVI10 = "ws-navi10"           # fallback host: RX 5600 XT, ROCm 5.2, profile sets HSA_OVERRIDE_GFX_VERSION=10.3.0
W6800 = "ws-w6800-ubuntu2404-sim"
X7900 = "ws-7900xtx"
MI210 = "ws-mi210"
VENV = "/opt/venvs/torch-rocm70"        # the lab inventory's provision_venv
VERIFY_VENV = "/opt/venvs/lab-verify-cpu"  # CPU torch beside navi10's stand-in 1.13 venv (see test_fallback_playbook)
BACKUP = "/var/backups/rocm-provision/fallback_profile"
FAULT = {"cases": "fam-gemm", "kind": "wrong", "unless": {"MIOPEN_DEBUG_CONV_GEMM": "0"}}
ODD = "a b'\"$(touch /tmp/pwned)`id`;x\\y $HOME %p"


def _old_venv_intact(lab: RolesLab, host: str) -> None:
    before = json.loads(lab.ok(host, "cat /opt/provision-lab/before-state.json"))
    old = before["old_venv"]
    got = lab.ok(host, f"sha256sum {old['marker']}").split()[0]
    assert got == old["marker_sha256"], "the old venv's user data changed"
    freeze = lab.ok(host, f"{old['path']}/bin/python -m pip freeze --all 2>/dev/null || true")
    assert "torch==1.13.1+rocm5.2" in freeze


def _converge_twice(lab: RolesLab, playbook: str, host: str, **kw: object) -> None:
    first = lab.playbook(playbook, host, **kw)  # type: ignore[arg-type]
    assert first.rc == 0 and first.failed(host) == 0, first.out[-3000:] + first.err[-2000:]
    second = lab.playbook(playbook, host, **kw)  # type: ignore[arg-type]
    assert second.rc == 0, second.out[-3000:] + second.err[-2000:]
    assert second.changed(host) == 0, f"not idempotent: {second.stats}"


# --- fallback_profile -------------------------------------------------------------------------------------------

def test_fallback_profile_check_mode_changes_nothing(roles_lab: RolesLab) -> None:
    run = roles_lab.playbook("fallback_profile.yml", NAVI10, check=True)
    assert run.rc == 0, run.out[-3000:]
    assert run.changed(NAVI10) > 0  # it says what it would do ...
    roles_lab.ok(NAVI10, "test ! -e /etc/profile.d/rocm-provision-fallback.sh")  # ... and does none of it
    roles_lab.ok(NAVI10, "grep -q '^export HSA_OVERRIDE_GFX_VERSION=10.3.0' /etc/profile.d/rocm.sh")


def test_fallback_profile_on_navi10(roles_lab: RolesLab) -> None:
    original = roles_lab.ok(NAVI10, "cat /etc/profile.d/rocm.sh")
    _converge_twice(roles_lab, "fallback_profile.yml", NAVI10)

    env = roles_lab.login_env(NAVI10)
    assert env.get("MIOPEN_DEBUG_CONV_GEMM") == "0"
    assert env.get("MIOPEN_DEBUG_CONV_DIRECT_OCL_WRW2") == "0"
    assert "HSA_OVERRIDE_GFX_VERSION" not in env
    # The user's file is kept, the line commented out with the marker, the original backed up byte for byte.
    edited = roles_lab.ok(NAVI10, "cat /etc/profile.d/rocm.sh")
    assert "# rocm-provision fallback_profile: disabled" in edited
    assert "export PATH=$PATH:/opt/rocm/bin" in edited
    assert roles_lab.ok(NAVI10, f"cat {BACKUP}/etc/profile.d/rocm.sh") == original
    # The simulated runtime now sees the real ISA, and the env file holds the same values for systemd.
    assert "gfx1010" in roles_lab.ok(NAVI10, "bash -lc rocminfo")
    envfile = roles_lab.ok(NAVI10, "cat /etc/rocm-provision/fallback.env")
    assert 'MIOPEN_DEBUG_CONV_GEMM="0"' in envfile and "HSA_OVERRIDE" not in envfile.split("\n", 6)[-1]
    _old_venv_intact(roles_lab, NAVI10)


def test_fallback_profile_quotes_odd_values_and_absent(roles_lab: RolesLab) -> None:
    odd = {"fallback_profile_allow_unknown_env": True,
           "fallback_profile_env": {"MIOPEN_DEBUG_CONV_GEMM": 0, "ODD_VALUE": ODD, "EMPTY_VALUE": ""}}
    _converge_twice(roles_lab, "fallback_profile.yml", X7900, extravars=odd)
    env = roles_lab.login_env(X7900)
    assert env["ODD_VALUE"] == ODD and env["EMPTY_VALUE"] == "" and env["MIOPEN_DEBUG_CONV_GEMM"] == "0"
    sourced = roles_lab.ok(X7900, "set -a; . /etc/rocm-provision/fallback.env; printf %s \"$ODD_VALUE\"")
    assert sourced == ODD
    roles_lab.ok(X7900, "test ! -e /tmp/pwned")

    # A name outside the env-var catalog is refused unless allowed.
    bad = roles_lab.playbook("fallback_profile.yml", X7900,
                             extravars={"fallback_profile_env": {"MIOPEN_DEBUG_CONV_DET": "1"}})
    assert bad.rc != 0 and any("env-var catalog" in m for m in bad.messages(X7900))

    absent = {"fallback_profile_state": "absent"}
    _converge_twice(roles_lab, "fallback_profile.yml", X7900, extravars=absent)
    roles_lab.ok(X7900, "test ! -e /etc/profile.d/rocm-provision-fallback.sh"
                        " && test ! -e /etc/rocm-provision/fallback.env")
    assert "ODD_VALUE" not in roles_lab.login_env(X7900)


# --- torch_venv -------------------------------------------------------------------------------------------------

def test_torch_venv_hashed_install(roles_lab: RolesLab) -> None:
    version, sha = roles_lab.wheel_sha256()
    pin = {"provision_torch_packages": [{"name": "torch", "version": version, "sha256": sha}]}
    _converge_twice(roles_lab, "torch_venv.yml", MI210, extravars=pin)

    probe = "'import json, torch; print(json.dumps([torch.__version__, torch.version.hip]))'"
    got = json.loads(roles_lab.ok(MI210, f"cd / && {VENV}/bin/python -c {probe}"))
    # AMD's version, but the CPU build underneath: no HIP (the lab inventory turns the HIP check off)
    assert got == [version, None]
    record = json.loads(roles_lab.ok(MI210, f"cat {VENV}/rocm-provision/install.json"))
    torch = [w for w in record["wheels"] if w["name"] == "torch"]
    assert torch and torch[0]["sha256"] == sha and record["sha256_pinned"] == ["torch"]
    assert all(len(w["sha256"]) == 64 for w in record["wheels"])
    assert f"--hash=sha256:{sha}" in roles_lab.ok(MI210, f"cat {VENV}/rocm-provision/requirements-hashed.txt")
    roles_lab.ok(MI210, f"test ! -e {VENV}/rocm-provision/wheelhouse")


def test_torch_venv_refuses_wrong_sha256_and_foreign_dirs(roles_lab: RolesLab) -> None:
    version, _ = roles_lab.wheel_sha256()
    wrong = {"provision_venv": "/opt/venvs/wrong-hash",
             "provision_torch_packages": [{"name": "torch", "version": version, "sha256": "0" * 64}]}
    run = roles_lab.playbook("torch_venv.yml", W6800, extravars=wrong)
    assert run.rc != 0 and any("do not match the pinned sha256" in m for m in run.messages(W6800))
    roles_lab.ok(W6800, "! /opt/venvs/wrong-hash/bin/python -c 'import torch' 2>/dev/null")

    # The old venv on navi10 is someone else's: never touched, even when provision_venv points at it.
    old = "/home/researcher/venvs/torch113"
    run = roles_lab.playbook("torch_venv.yml", NAVI10, extravars={"provision_venv": old})
    assert run.rc != 0 and any("was not created by rocm-provision" in m for m in run.messages(NAVI10))
    _old_venv_intact(roles_lab, NAVI10)


def test_torch_venv_needs_cp312_python_for_the_rocm_pins(roles_lab: RolesLab) -> None:
    # The production pins' Python (cp312) on a host that has only Python 3.11: the W6800 stand-in says Ubuntu 24.04,
    # so the default source is the OS's python3.12 package, which its (Debian 12) apt does not have. A clear stop
    # naming Python 3.12, nothing made (the preflight probes the source and blocks such a host before anything is
    # removed; see tests/unit/test_python_source.py).
    run = roles_lab.playbook("torch_venv.yml", W6800, extravars={
        "provision_venv": "/opt/venvs/rocm-pins", "provision_torch_python": "3.12", "torch_venv_python": ""})
    said = run.messages(W6800)
    assert run.rc != 0 and any("Python 3.12" in m or "'python3.12'" in m for m in said), said
    roles_lab.ok(W6800, "test ! -e /opt/venvs/rocm-pins")


# --- conv_verify and the playbooks ------------------------------------------------------------------------------

def test_verify_playbook(roles_lab: RolesLab, tmp_path: Path) -> None:
    version, sha = roles_lab.wheel_sha256()
    roles_lab.playbook("torch_venv.yml", MI210, extravars={
        "provision_torch_packages": [{"name": "torch", "version": version, "sha256": sha}]})
    _converge_twice(roles_lab, "playbooks/verify.yml", MI210, extravars={"conv_verify_fetch_dir": str(tmp_path)})
    run = roles_lab.playbook("playbooks/verify.yml", MI210, extravars={"conv_verify_fetch_dir": str(tmp_path)})
    summary = run.custom["provision_verify"][MI210]
    assert summary["verdict"] == "pass" and summary["failed"] == 0 and summary["crashed"] == 0
    doc = json.loads((tmp_path / f"{MI210}.json").read_text())
    assert doc["verdict"] == "pass" and doc["device"]["type"] == "cpu" and doc["torch"]["version"] == version
    assert summary["json"] == str(tmp_path / f"{MI210}.json")
    # The shipped suite reports what each check could still miss, per pass and worst per dtype and pass.
    assert all(r["detection_floor"] > 0 for c in doc["cases"] for r in c["passes"].values())
    assert set(doc["detection_floors"]) == {"fp32", "fp16", "bf16"}

    # A failing verification fails the host with the reason; conv_verify_fail_on_error: false records it.
    # The fault model here: GEMM-family cases go wrong unless MIOPEN_DEBUG_CONV_GEMM=0 (no profile on this host).
    inject = {"conv_verify_fetch_dir": str(tmp_path), "conv_verify_extra_args": [
        "--cases", "fam-", "--inject-faults", json.dumps([FAULT])]}
    bad = roles_lab.playbook("playbooks/verify.yml", MI210, extravars=inject)
    assert bad.rc != 0, bad.out[-2000:]
    told = bad.messages(MI210)
    assert any("convolution verification fail" in m and "fam-gemm" in m for m in told), told
    lenient = roles_lab.playbook("playbooks/verify.yml", MI210,
                                 extravars={**inject, "conv_verify_fail_on_error": False})
    assert lenient.rc == 0 and lenient.custom["provision_verify"][MI210]["verdict"] == "fail"


def test_fallback_playbook_on_navi10(roles_lab: RolesLab, tmp_path: Path) -> None:
    # navi10 keeps ROCm 5.2; its users' venv is the lab's stand-in torch 1.13, which cannot run convolutions.
    # So the lab verifies in a separate CPU torch venv (conv_verify_venv), with the fallback profile in force.
    # First the host as its owner left it: test_fallback_profile_on_navi10 applied the role's default profile,
    # which comments the override out; taking the profile away with restore_removed puts it back.
    roles_lab.playbook("fallback_profile.yml", NAVI10, extravars={"fallback_profile_state": "absent",
                                                                  "fallback_profile_restore_removed": True})
    assert roles_lab.login_env(NAVI10).get("HSA_OVERRIDE_GFX_VERSION") == "10.3.0"
    roles_lab.playbook("torch_venv.yml", NAVI10, extravars={"provision_venv": VERIFY_VENV})
    # The same injected GEMM fault as in test_verify_playbook: it goes away only with the profile in force.
    extra = {"conv_verify_venv": VERIFY_VENV, "conv_verify_fetch_dir": str(tmp_path),
             "conv_verify_extra_args": ["--inject-faults", json.dumps([FAULT])]}
    _converge_twice(roles_lab, "playbooks/fallback.yml", NAVI10, extravars=extra)
    doc = json.loads((tmp_path / f"{NAVI10}.json").read_text())
    assert doc["verdict"] == "pass"
    # The preflight could not tell what this CPU torch carries, and an override the users' torch may need is
    # never removed on a guess: it stays, in the suite's environment and in a login shell.
    assert doc["env"].get("MIOPEN_DEBUG_CONV_GEMM") == "0" and doc["env"].get("HSA_OVERRIDE_GFX_VERSION") == "10.3.0"
    assert roles_lab.login_env(NAVI10).get("HSA_OVERRIDE_GFX_VERSION") == "10.3.0"
    _old_venv_intact(roles_lab, NAVI10)
    # Only hosts planned `fallback` are touched.
    for other in (W6800, MI210):
        roles_lab.ok(other, "test ! -e /etc/profile.d/rocm-provision-fallback.sh")


# --- least privilege: a user's venv never runs as root -----------------------------------------------------------

PROBE = "/home/researcher/venvs/pth-probe"
MARKERS = "/var/tmp/rocm-provision-pth-ran-as-"


def test_verification_runs_a_users_venv_as_its_owner_never_as_root(roles_lab: RolesLab, tmp_path: Path) -> None:
    """A venv owned by the lab user whose site-packages holds a .pth that Python runs at start-up: it writes a
    marker named after the uid it ran as. The verification must run it as its owner, and never as root."""
    version, sha = roles_lab.wheel_sha256()
    roles_lab.playbook("torch_venv.yml", MI210, extravars={
        "provision_torch_packages": [{"name": "torch", "version": version, "sha256": sha}]})
    # rocm-provision's own venv: root-owned, world-readable, nothing in it writable by group or others
    roles_lab.ok(MI210, f"test \"$(stat -c %U {VENV})\" = root")
    loose = roles_lab.ok(MI210, f"find {VENV} ! -type l \\( -perm /022 -o ! -perm -444 -o ! -user root \\) | head -3")
    assert loose == "", loose

    site = roles_lab.ok(MI210, f"ls -d {VENV}/lib/python3*/site-packages").strip()
    uid = roles_lab.ok(MI210, "id -u researcher").strip()
    roles_lab.ok(MI210, f"rm -rf {PROBE} {MARKERS}*; su researcher -s /bin/sh -c '"
                        f"python3 -m venv --without-pip {PROBE} && cd {PROBE}/lib/python3*/site-packages && "
                        f"echo {site} > lab-torch.pth && "
                        f"echo \"import os; open(\\\"{MARKERS}%d\\\" % os.getuid(), \\\"w\\\").close()\" > marker.pth'")
    roles_lab.ok(MI210, f"test \"$(stat -c %U {PROBE})\" = researcher")

    run = roles_lab.playbook("playbooks/verify.yml", MI210,
                             extravars={"conv_verify_venv": PROBE, "conv_verify_fetch_dir": str(tmp_path)})
    assert run.rc == 0, run.out[-3000:] + run.err[-2000:]
    assert run.custom["provision_verify"][MI210]["verdict"] == "pass"
    roles_lab.ok(MI210, f"test -e {MARKERS}{uid}")  # the .pth did run (so the test can see where) ...
    roles_lab.ok(MI210, f"test ! -e {MARKERS}0")  # ... and never as root

    # asked to run it as root anyway: refused, nothing run
    forced = roles_lab.playbook("playbooks/verify.yml", MI210, extravars={
        "conv_verify_venv": PROBE, "conv_verify_fetch_dir": str(tmp_path), "conv_verify_user": "root"})
    assert forced.rc != 0 and any("would run as root, but someone else can change what it runs" in m
                                  for m in forced.messages(MI210)), forced.messages(MI210)
    roles_lab.ok(MI210, f"test ! -e {MARKERS}0")
