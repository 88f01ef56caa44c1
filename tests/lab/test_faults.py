"""Faults, bad input and attacks on the container lab: one `provision upgrade` over a small fleet where every
host carries a different fault, and each must end with its own clear message while the others carry on.

  ws-ok          a Debian 12 MI210 workstation whose user is in neither render nor video: upgraded, user added;
                 it upgrades from a mirror path that demands HTTP Basic credentials (provision_repo_username /
                 provision_repo_password): apt, the key download, the controller's cache and pip must send them
  ws-inject      the RX 5600 XT fallback host, with a fallback env value full of shell metacharacters
  ws-smallfs     provision_venv on a 64 MiB file system (a real tmpfs mounted in the container)
  ws-noheaders   no linux-headers package for the running kernel in its apt sources (the lab archive, which
                 serves the stand-in headers, is taken out of the host's sources)
  ws-secureboot  Secure Boot on (simulated: the SecureBoot EFI variable under the host's simulated sysfs
                 root, which the preflight reads as it reads /sys on a real host), no MOK, and a user that
                 does not exist

Secrets ride along on the same run: every host has `ansible_become_password` set to a sentinel (the lab
connects as root; sudo never prompts, but the password still travels through Ansible), ws-ok's mirror
password is another, and neither may show up in any file of the run directory, in a process list on the
controller or on a host while the run goes, or in a log. Both are kept the way the README advises, in Ansible
Vault: the group_vars file with the become password is `ansible-vault encrypt`ed, the mirror password is a
`!vault` value made by `ansible-vault encrypt_string`; the run gets `--vault-password-file`, so validation,
the planner and the playbook run all read them decrypted. Hardware that cannot exist in a container
(Secure Boot, the amdgpu build) is simulated at the boundary the production code reads; the playbooks
run unchanged."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from provision.lab.lab import Lab
from provision.lab.seed import SYSFS_ROOT
from tests.lab.conftest import REPO, TIMINGS, LabShell, fresh_fleet
from tests.lab.test_upgrade_e2e import latest_report, users_venv

FIRST = 140  # 127.0.0.140.. : away from the other lab tests' addresses
HOSTS = {  # name: lab template
    "ws-ok": "ws-mi210",
    "ws-inject": "ws-navi10",
    "ws-smallfs": "ws-mi210-smallfs",
    "ws-noheaders": "ws-mi210",
    "ws-secureboot": "ws-mi210",
}
SENTINEL = "S3ntinel-become-Pw-7f3a9c"
VAULT_PASSWORD = "S3ntinel-vault-Pw-93be10"
MIRROR_USER, MIRROR_SECRET = "labuser", "S3ntinel-mirror-Pw-41d0e2"
# A value that passes validation (one line, a name allowed with provision_allow_unknown_env) but would run
# commands if any shell on the host parsed it instead of reading it.
HOSTILE = "$(touch /tmp/pwned) ;touch /tmp/pwned2 `touch /tmp/pwned3` 'q' \"dq\" \\ $HOME|tee /tmp/pwned4 &"
SB_VAR = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


@dataclass
class Faults(LabShell):
    lab: Lab
    addresses: dict[str, str]
    inventory: Path
    runs: Path
    result: subprocess.CompletedProcess[str]
    report: dict
    controller_ps: list[str] = field(default_factory=list)
    host_ps: dict[str, str] = field(default_factory=dict)
    data_before: dict[str, str] = field(default_factory=dict)
    auth_counts: dict[str, int] = field(default_factory=dict)

    def host(self, name: str) -> dict:
        return next(h for h in self.report["hosts"] if h["name"] == name)


def lab_dir() -> Path:
    return Path(os.environ.get("PROVISION_LAB_FAULTS_DIR", str(REPO / ".lab" / "faults"))).resolve()


def write_inventory(lab: Lab, tmp: Path, base_url: str) -> Path:
    """The lab's inventory, plus each fault's settings the way a user writes them (group_vars, host_vars)."""
    inventory = tmp / "lab.ini"
    inventory.write_text(lab.paths.inventory.read_text())
    vault_pass = tmp / "vault-pass.txt"
    vault_pass.write_text(VAULT_PASSWORD + "\n")
    vault_pass.chmod(0o600)
    vault = [str(Path(sys.executable).with_name("ansible-vault"))]
    (tmp / "group_vars").mkdir()
    (tmp / "group_vars" / "workstations.yml").write_text(yaml.safe_dump({"ansible_become_password": SENTINEL}))
    subprocess.run([*vault, "encrypt", "--vault-password-file", str(vault_pass),
                    str(tmp / "group_vars" / "workstations.yml")], check=True, capture_output=True, timeout=60)
    vaulted_password = subprocess.run([*vault, "encrypt_string", "--vault-password-file", str(vault_pass),
                                       "--stdin-name", "provision_repo_password"], input=MIRROR_SECRET, text=True,
                                      check=True, capture_output=True, timeout=60).stdout
    host_vars = tmp / "host_vars"
    host_vars.mkdir()
    (host_vars / "ws-inject.yml").write_text(yaml.safe_dump({
        "provision_allow_unknown_env": True, "provision_fallback_env": {"LAB_PROBE": HOSTILE}}))
    auth = f"{base_url}/_auth/{MIRROR_USER}"
    (host_vars / "ws-ok.yml").write_text(yaml.safe_dump({
        "provision_repo_base_url": auth, "provision_key_url": f"{auth}/rocm/rocm.gpg.key",
        "provision_wheel_index_url": f"{auth}/rocm/manylinux/rocm-rel-7.0/",
        "provision_repo_username": MIRROR_USER}) + vaulted_password)
    for path in (tmp / "group_vars" / "workstations.yml", host_vars / "ws-ok.yml"):
        assert SENTINEL not in path.read_text() and MIRROR_SECRET not in path.read_text()
    (host_vars / "ws-smallfs.yml").write_text(yaml.safe_dump({"provision_venv": "/srv/small/torch-rocm70"}))
    (host_vars / "ws-secureboot.yml").write_text(yaml.safe_dump({"provision_users": ["researcher", "ghost"]}))
    return inventory


def prepare_hosts(shell: LabShell) -> None:
    # ws-ok: its user is in neither GPU group before the upgrade.
    shell.ok("ws-ok", "gpasswd -d researcher render || true; gpasswd -d researcher video || true; "
                      "! id -nG researcher | grep -qw -e render -e video")
    # ws-noheaders: the only source of linux-headers-<kernel> (the lab archive) is gone, lists included.
    shell.ok("ws-noheaders", "rm -f /etc/apt/sources.list.d/rocm-provision-lab-archive.list "
                             "/var/lib/apt/lists/*lab-archive* && "
                             "! apt-cache policy linux-headers-$(uname -r) | grep -q 'Candidate: [0-9]'")
    # ws-secureboot: EFI variable SecureBoot = 1 (4 attribute bytes, then the value), under the simulated sysfs.
    efivars = f"{SYSFS_ROOT}/firmware/efi/efivars"
    shell.ok("ws-secureboot", f"mkdir -p {efivars} && printf '\\007\\000\\000\\000\\001' > {efivars}/{SB_VAR}")
    for name in HOSTS:  # a process-list recorder on each host, stopped after the run
        shell.ok(name, "rm -f /tmp/pwned* /root/ps.log; nohup sh -c 'while [ ! -e /root/ps.stop ]; do "
                       "ps -eo args >> /root/ps.log; sleep 0.3; done' </dev/null >/dev/null 2>&1 &")


def user_data(shell: LabShell) -> dict[str, str]:
    """What users keep on each host: home directories and the old torch venv (ws-inject), by content hash."""
    out = {}
    for name in HOSTS:
        before = json.loads(shell.ok(name, "cat /opt/provision-lab/before-state.json"))
        venv = (before.get("old_venv") or {}).get("path", "")
        out[name] = shell.ok(name, f"find /home {venv} -type f 2>/dev/null | sort | xargs -r sha256sum | sha256sum")
    return out


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faults]:
    lab, up = fresh_fleet(lab_dir(), [(name, template, f"127.0.0.{FIRST + i}")
                                      for i, (name, template) in enumerate(HOSTS.items())], "fault fleet")
    shell = LabShell()
    shell.lab, shell.addresses = lab, {h.name: h.address for h in up.hosts}
    tmp = tmp_path_factory.mktemp("faults")
    base_url = up.base_url
    inventory = write_inventory(lab, tmp, base_url)
    register = urllib.request.Request(f"{base_url}/_lab/auth", method="POST",
                                      data=json.dumps({"user": MIRROR_USER, "password": MIRROR_SECRET}).encode())
    urllib.request.urlopen(register, timeout=10).close()
    users_venv(lab.paths.inventory, "ws-inject")
    prepare_hosts(shell)
    data_before = user_data(shell)

    runs = tmp / "runs"
    controller_ps: list[str] = []
    stop = threading.Event()

    def record_ps() -> None:
        while not stop.is_set():
            controller_ps.append(subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True,
                                                check=False).stdout)
            stop.wait(0.3)

    recorder = threading.Thread(target=record_ps, daemon=True)
    recorder.start()
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", PROVISION_RUNS_DIR=str(runs),
               ANSIBLE_LOG_PATH=str(tmp / "ansible.log"))
    start = time.monotonic()
    try:
        result = subprocess.run([sys.executable, "-m", "provision", "upgrade", "--hosts", str(inventory), "--yes",
                                 "--vault-password-file", str(tmp / "vault-pass.txt")],
                                capture_output=True, text=True, env=env, timeout=1500, check=False,
                                stdin=subprocess.DEVNULL, cwd=REPO)
    finally:
        stop.set()
        recorder.join()
    TIMINGS.append(f"fault fleet upgrade run: {time.monotonic() - start:.1f} s")
    host_ps = {}
    for name in HOSTS:
        shell.ok(name, "touch /root/ps.stop; sleep 1")
        host_ps[name] = shell.ok(name, "cat /root/ps.log")
    with urllib.request.urlopen(f"{base_url}/_lab/auth", timeout=10) as answer:
        auth_counts = json.load(answer)["users"][MIRROR_USER]
    handle = Faults(lab, shell.addresses, inventory, runs, result, latest_report(runs, "upgrade"),
                    controller_ps, host_ps, data_before, auth_counts)
    try:
        yield handle
    finally:
        lab.down()


def test_each_fault_ends_its_host_with_a_clear_message(faults: Faults) -> None:
    out = faults.result.stdout + faults.result.stderr
    # blocked hosts are "as planned": the run succeeds for the others and exits 0
    assert faults.result.returncode == 0, out[-6000:]
    states = {h["name"]: h["state"] for h in faults.report["hosts"]}
    assert states == {"ws-ok": "done", "ws-inject": "fallback-applied", "ws-smallfs": "blocked",
                      "ws-noheaders": "blocked", "ws-secureboot": "blocked"}, out[-6000:]

    small = faults.host("ws-smallfs")["reason"]
    assert re.search(r"file system mounted at /srv/small has [0-9.]+ MiB free; the upgrade needs 0\.25 GiB there "
                     r"for /srv/small/torch-rocm70", small), small

    headers = faults.host("ws-noheaders")["reason"]
    kernel = faults.ok("ws-noheaders", "uname -r").strip()
    assert f"linux-headers-{kernel} is not installable" in headers and f"running kernel {kernel}" in headers
    assert "provision_install_driver: false" in headers, headers

    secure = faults.host("ws-secureboot")["reason"]
    assert "Secure Boot is on" in secure and "Machine Owner Key (MOK)" in secure, secure
    assert "user ghost (provision_users) does not exist" in secure, secure

    for name in ("ws-smallfs", "ws-noheaders", "ws-secureboot"):  # refused before anything changed
        assert faults.host(name)["changed"] == 0, faults.host(name)
        assert faults.ssh(name, "test -e /etc/apt/sources.list.d/rocm.list").returncode != 0
        assert not faults.ok(name, "dpkg-query -W -f '${Package}\\n' 'rocm*' 2>/dev/null || true").strip()
    # the report's text carries each host's reason too
    md = (sorted(faults.runs.glob("*-upgrade"))[-1] / "report.md").read_text()
    assert "Machine Owner Key" in md and f"linux-headers-{kernel}" in md and "/srv/small" in md


def test_user_without_gpu_groups_is_added_and_told(faults: Faults) -> None:
    assert {"render", "video"} <= set(faults.ok("ws-ok", "id -nG researcher").split())
    warnings = faults.host("ws-ok")["plan"]["warnings"]
    assert any("researcher is not in render and video yet" in w and "next login" in w for w in warnings), warnings


def test_user_data_is_intact(faults: Faults) -> None:
    assert user_data(faults) == faults.data_before


def test_hostile_env_value_lands_literally_and_runs_nothing(faults: Faults) -> None:
    """The value went through the planner, the fallback profile's two files and a login shell."""
    login = faults.ok("ws-inject", "bash -lc 'printf %s \"$LAB_PROBE\"'")
    assert login == HOSTILE
    env_file = faults.ok("ws-inject", "sh -c 'set -a; . /etc/rocm-provision/fallback.env; set +a; "
                                      "printf %s \"$LAB_PROBE\"'")
    assert env_file == HOSTILE
    for name in HOSTS:
        assert faults.ok(name, "ls /tmp/pwned* 2>/dev/null || true").strip() == "", f"{name}: a command ran"
        assert faults.ssh(name, "test -e /root/pwned4 -o -e /pwned4").returncode != 0


def test_mirror_credentials_are_used(faults: Faults) -> None:
    """ws-ok upgraded (see the first test) from a path that refuses requests without its credentials."""
    assert faults.host("ws-ok")["state"] == "done"
    assert faults.auth_counts["accepted"] > 0, faults.auth_counts
    conf = faults.ok("ws-ok", "stat -c '%a %U' /etc/apt/auth.conf.d/rocm-provision.conf").split()
    assert conf == ["600", "root"], conf
    assert faults.ok("ws-ok", "ls /opt/venvs/torch-rocm70/rocm-provision/").count("netrc") == 0
    assert faults.ssh("ws-ok", "test -e /opt/venvs/torch-rocm70/rocm-provision/tmp/netrc").returncode != 0
    # the other hosts were given no credentials
    assert faults.ssh("ws-inject", "test -e /etc/apt/auth.conf.d/rocm-provision.conf").returncode != 0


@pytest.mark.parametrize("secret", [SENTINEL, MIRROR_SECRET, VAULT_PASSWORD],
                         ids=["become-password", "mirror-password", "vault-password"])
def test_secrets_appear_nowhere(faults: Faults, secret: str) -> None:
    run_dir = sorted(faults.runs.glob("*-upgrade"))[-1]
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert files and any(p.name == "report.json" for p in files)
    leaks = [str(p) for p in files if secret.encode() in p.read_bytes()]
    assert not leaks, f"the secret is in {leaks}"
    log = faults.inventory.parent / "ansible.log"
    assert log.exists() and secret not in log.read_text(errors="replace")
    assert secret not in faults.result.stdout + faults.result.stderr
    assert len(faults.controller_ps) > 5
    assert not [s for s in faults.controller_ps if secret in s], "the secret is in a controller process list"
    for name, text in faults.host_ps.items():
        assert text.count("\n") > 10, f"{name}: the process recorder did not run"
        assert secret not in text, f"{name}: the secret is in a process list"


def test_run_directory_is_private(faults: Faults) -> None:
    run_dir = sorted(faults.runs.glob("*-upgrade"))[-1]
    for path in [faults.runs, run_dir, *run_dir.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
        else:
            assert mode & 0o077 == 0, f"{path} is readable by others ({oct(mode)})"


def test_upgraded_host_trusts_only_signed_sources(faults: Faults) -> None:
    listing = faults.ok("ws-ok", "for f in /etc/apt/sources.list /etc/apt/sources.list.d/*; do "
                                 "[ -f \"$f\" ] && sed \"s|^|$f: |\" \"$f\"; done")
    lines = [ln for ln in listing.splitlines() if ln.split(": ", 1)[-1].strip()
             and not ln.split(": ", 1)[-1].lstrip().startswith("#")]
    assert not [ln for ln in lines if re.search(r"trusted\s*=\s*yes|Trusted:\s*yes", ln, re.IGNORECASE)], listing
    rocm = [ln for ln in lines if re.search(r"/rocm/|/amdgpu/|/graphics/", ln)]
    assert rocm, listing
    by_file: dict[str, list[str]] = {}
    for ln in lines:
        by_file.setdefault(ln.split(": ", 1)[0], []).append(ln.split(": ", 1)[1])
    for source in rocm:
        path, text = source.split(": ", 1)
        if path.endswith(".sources"):
            assert any(t.lower().startswith("signed-by:") for t in by_file[path]), by_file[path]
        elif text.lstrip().startswith("deb"):
            assert "signed-by=" in text, source
    keyring = json.dumps(faults.ok("ws-ok", "ls -l /etc/apt/keyrings/ 2>/dev/null || true"))
    assert "rocm" in keyring, keyring
