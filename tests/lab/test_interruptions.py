"""Interrupted upgrades on the container lab: hosts lost, packages failing, runs stopped or racing. Nothing is
lost, every host says where it stopped, the others carry on, and the next run finishes the job.

One fleet, few runs (each upgrade costs minutes):

  ws-postinst  ROCm 5.2 (W6800, simulated Ubuntu 24.04): rocm-core's postinst fails in run 1
  ws-killed    ROCm 5.2 (W6800, simulated Ubuntu 24.04): its container is stopped while dpkg installs ROCm 7.0
  ws-healthy   fresh MI210 on Debian 12: upgrades in run 1; in the last run a second `provision upgrade`
               races the first for it and must be refused by the host lock
  ws-gone      an address nobody answers on

Run 1 has all four faults at once. Then a run on ws-postinst is stopped with SIGINT and one on ws-killed with
SIGTERM, both during the stage step, at the same time (two runs on two hosts: the locks are per host). The last
run takes over the locks those left behind and converges, while the mirror's apt repositories go down right
after the new packages were staged, and a concurrent run on ws-healthy is refused.

Hardware and faults that cannot be made real in a container are simulated at the boundary the product reads:
the failing and the blocking maintainer scripts are the lab's stand-in rocm-core package (fault switches
under /etc/provision-lab, docs/lab.md), the lost host is `podman stop` of its container. The playbooks,
SSH, apt and dpkg are real and unchanged."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from provision.lab.lab import Lab
from provision.lab.podman import Podman
from tests.lab.conftest import REPO, TIMINGS, LabShell, fresh_fleet

FIRST = os.environ.get("PROVISION_LAB_INTERRUPT_FIRST_ADDRESS", "127.0.0.160")
HOSTS = {"ws-postinst": "ws-w6800-ubuntu2404-sim", "ws-killed": "ws-w6800-ubuntu2404-sim", "ws-healthy": "ws-mi210"}
LOCK = "/var/lib/rocm-provision/host.lock"
SWITCHES = "/etc/provision-lab"
APT_POOLS = ("/rocm/apt", "/amdgpu", "/graphics", "/lab-archive")  # the wheels (/rocm/manylinux) stay up
# The new stack's packages a host must have on disk before its old ROCm may go (name prefix of the .deb)
NEW_DEBS = ("rocm_7.0.0", "rocm-core_7.0.0", "hip-runtime-amd_7.0", "miopen-hip_3.5.0", "rocblas_5.0.0",
            "amdgpu-dkms_1%3a6.14.14", "libdrm-amdgpu-amdgpu1_1%3a2.4.125")


def address(offset: int) -> str:
    base = FIRST.rsplit(".", 1)
    return f"{base[0]}.{int(base[1]) + offset}"


def lab_dir() -> Path:
    return Path(os.environ.get("PROVISION_LAB_INTERRUPT_DIR", str(REPO / ".lab" / "interrupt"))).resolve()


@dataclass
class Fleet(LabShell):
    lab: Lab
    addresses: dict[str, str]
    inventory: Path
    tmp: Path
    base_url: str
    data_before: dict[str, str] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)  # what each step left for the next one

    def container(self, host: str) -> str:
        return self.lab.container_name(host)

    def podman(self, *args: str) -> None:
        Podman(self.lab.paths.containers_conf).run(list(args), what=f"podman {' '.join(args)}")

    def lock(self, host: str) -> dict[str, Any] | None:
        done = self.ssh(host, f"cat {LOCK}")
        return json.loads(done.stdout) if done.returncode == 0 else None

    def fault(self, mode: str, path: str = "") -> None:
        query = f"mode={mode}" + (f"&path={path}" if path else "")
        with urllib.request.urlopen(f"{self.base_url}/_lab/fault?{query}", timeout=10) as resp:
            assert resp.status == 200


@dataclass
class Run:
    proc: subprocess.Popen[str]
    runs: Path
    log: Path
    started: float = field(default_factory=time.monotonic)

    def wait(self, timeout: float = 1200) -> int:
        return self.proc.wait(timeout=timeout)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def run_dir(self, command: str = "upgrade") -> Path | None:
        found = sorted(self.runs.glob(f"*-{command}")) if self.runs.is_dir() else []
        return found[-1] if found else None

    def report(self) -> dict[str, Any]:
        run_dir = self.run_dir()
        assert run_dir is not None and (run_dir / "report.json").is_file(), self.output[-4000:]
        return json.loads((run_dir / "report.json").read_text())

    def host(self, name: str) -> dict[str, Any]:
        return next(h for h in self.report()["hosts"] if h["name"] == name)

    def events(self) -> list[dict[str, Any]]:
        """ansible-runner's job events of the upgrade playbook so far (written while it runs)."""
        run_dir = self.run_dir()
        out = []
        for path in run_dir.glob("artifacts/*/job_events/*.json") if run_dir else []:
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue  # being written
        return sorted(out, key=lambda e: int(e.get("counter") or 0))

    def host_events(self, host: str, kind: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events() if (e.get("event_data") or {}).get("host") == host
                and (kind is None or e.get("event") == kind)]

    def lock_id(self) -> str:
        """The start of this run's id in the host lock (run directory:random hex, no host name)."""
        run_dir = self.run_dir()
        assert run_dir is not None
        return f"{run_dir.name}:"


def start(fleet: Fleet, name: str, *args: str) -> Run:
    runs = fleet.tmp / f"runs-{name}"
    log = fleet.tmp / f"{name}.log"
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", PROVISION_RUNS_DIR=str(runs))
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "provision", "upgrade", "--hosts", str(fleet.inventory),
                                 "--yes", *args], stdout=out, stderr=subprocess.STDOUT, text=True, env=env,
                                stdin=subprocess.DEVNULL, cwd=REPO)
    return Run(proc, runs, log)


def wait_for(check: Callable[[], bool], what: str, run: Run | None = None, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if run is not None and run.proc.poll() is not None:
            pytest.fail(f"the run ended (rc {run.proc.returncode}) before {what}:\n{run.output[-4000:]}")
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}" + (f":\n{run.output[-4000:]}" if run else ""))


def started_phase(run: Run, host: str, word: str) -> bool:
    return any(word in str((e.get("event_data") or {}).get("task_path") or "")
               for e in run.host_events(host, "runner_on_start"))


def task_ok(run: Run, host: str, task: str) -> bool:
    return any(str((e.get("event_data") or {}).get("task") or "").endswith(task)
               for e in run.host_events(host, "runner_on_ok"))


def user_data(shell: LabShell) -> dict[str, str]:
    """Users' files (home directories) on each host, by content hash."""
    return {name: shell.ok(name, "find /home -type f | sort | xargs -r sha256sum | sha256sum") for name in HOSTS}


def staged_or_old(shell: LabShell, host: str) -> tuple[bool, bool]:
    """(old ROCm 5.2 still installed, every package of the new stack on the host's disk)."""
    old = "5.2.0" in shell.ok(host, "dpkg-query -W -f '${Version}' rocm-core 2>/dev/null || true")
    debs = shell.ok(host, "ls /var/cache/apt/archives/").split()
    staged = all(any(f.startswith(prefix) for f in debs) for prefix in NEW_DEBS)
    return old, staged


def ansible_left(inventory: Path) -> list[str]:
    """Controller processes still working on this fleet's inventory (ansible-playbook and its workers)."""
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=False).stdout
    return [line for line in ps.splitlines() if str(inventory) in line and "ansible" in line]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    lab, up = fresh_fleet(lab_dir(), [(name, template, address(i)) for i, (name, template) in enumerate(HOSTS.items())],
                          "interruption fleet")
    tmp = tmp_path_factory.mktemp("interrupt")
    inventory = tmp / "lab.ini"
    inventory.write_text(lab.paths.inventory.read_text().replace(
        "[workstations:vars]", f"ws-gone ansible_host={address(9)}\n\n[workstations:vars]"))
    handle = Fleet(lab, {h.name: h.address for h in up.hosts}, inventory, tmp, up.base_url)
    for name in HOSTS:  # a user's own work, which no fault may touch
        handle.ok(name, "id researcher >/dev/null 2>&1 || useradd -m researcher; install -d -o researcher "
                        "/home/researcher/thesis && head -c 4096 /dev/urandom > /home/researcher/thesis/data.bin")
    handle.data_before = user_data(handle)
    # A background job (`pytest … &`, nohup, some CI runners) inherits SIGINT ignored, and so would the runs
    # started here; a user's Ctrl-C reaches a foreground process whose SIGINT is not ignored.
    sigint = signal.getsignal(signal.SIGINT)
    if sigint is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield handle
    finally:
        signal.signal(signal.SIGINT, sigint)
        handle.fault("none")
        lab.down()


def test_faults_in_one_run_stop_only_their_hosts(fleet: Fleet) -> None:
    """Run 1: unreachable from the start, a failing postinst, a host lost while dpkg runs, and a healthy host."""
    fleet.ok("ws-postinst", f"mkdir -p {SWITCHES} && touch {SWITCHES}/fail-postinst")
    fleet.ok("ws-killed", f"mkdir -p {SWITCHES} && touch {SWITCHES}/hold-postinst")
    began = time.monotonic()
    run = start(fleet, "run1")
    wait_for(lambda: fleet.ssh("ws-killed", f"test -e {SWITCHES}/postinst-held").returncode == 0,
             "ws-killed's dpkg to reach rocm-core's postinst", run, timeout=900)
    fleet.podman("stop", "-t", "1", fleet.container("ws-killed"))  # the host dies mid-install
    rc = run.wait()
    TIMINGS.append(f"run 1 (four faults): {time.monotonic() - began:.1f} s")
    out = run.output
    assert rc == 1, out[-6000:]
    states = {h["name"]: (h["state"], h["reason"]) for h in run.report()["hosts"]}
    assert states["ws-gone"][0] == "unreachable", states
    assert states["ws-healthy"][0] == "done", states
    assert run.host("ws-healthy")["after"]["rocm"] == "7.0.0"
    # the failing postinst: stopped in the stack phase, at the ROCm install, with apt's own words
    state, reason = states["ws-postinst"]
    assert state == "failed-at-stack", states
    assert "rocm" in reason and ("dpkg" in reason or "failed" in reason), reason
    postinst = [e for e in run.host_events("ws-postinst", "runner_on_failed")]
    assert postinst and "Install ROCm 7.0" in postinst[-1]["event_data"]["task"], postinst[-1:]
    assert "failing on purpose" in json.dumps(postinst[-1]["event_data"]["res"])
    # the lost host: unreachable, and the report says in which phase it was lost
    state, reason = states["ws-killed"]
    assert state in ("unreachable", "failed-at-stack"), states
    assert reason, states
    assert run.host("ws-killed")["phases"][-1]["name"] == "stack", run.host("ws-killed")["phases"]

    fleet.podman("start", fleet.container("ws-killed"))
    wait_for(lambda: fleet.ssh("ws-killed", "true").returncode == 0, "ws-killed's sshd after the restart")
    fleet.ok("ws-killed", f"rm -f {SWITCHES}/hold-postinst")
    for host in ("ws-postinst", "ws-killed"):
        old, staged = staged_or_old(fleet, host)
        assert old or staged, f"{host}: ROCm 5.2 is gone and the new stack is not on its disk"
        assert staged, host  # the stage step downloads everything before the old stack is removed
    # dpkg's record of where each host stopped: rocm-core 7.0 installed but not configured
    assert "half-configured" in fleet.ok("ws-postinst", "dpkg-query -W -f '${Status}' rocm-core")
    assert fleet.ok("ws-killed", "dpkg-query -W -f '${Status}' rocm-core").strip() != "install ok installed"
    assert user_data(fleet) == fleet.data_before
    # locks: released on the healthy host and (by provision, after the run) on the failed one; the lost host
    # keeps the lock of run 1, whose ansible-playbook is gone
    assert fleet.lock("ws-healthy") is None and fleet.lock("ws-postinst") is None
    lock = fleet.lock("ws-killed")
    assert lock is not None and lock["run_id"].startswith(run.lock_id()), lock
    assert lock["controller"] == socket.gethostname() and lock["user"] and lock["started"], lock
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert lock["boot_id"] == boot and lock["pid_ns"] == os.readlink("/proc/self/ns/pid"), lock
    fleet.results["run1_lock"] = lock


def test_sigint_and_sigterm_leave_hosts_the_next_run_resumes(fleet: Fleet) -> None:
    """Two runs on two hosts at once, stopped in their stage step: SIGINT (Ctrl-C) to one, SIGTERM to the other."""
    fleet.ok("ws-postinst", f"rm -f {SWITCHES}/fail-postinst")
    began = time.monotonic()
    runs = {"ws-postinst": (start(fleet, "sigint", "--limit", "ws-postinst"), signal.SIGINT),
            "ws-killed": (start(fleet, "sigterm", "--limit", "ws-killed"), signal.SIGTERM)}
    for host, (run, sig) in runs.items():
        wait_for(lambda run=run, host=host: started_phase(run, host, "stage"), f"{host}'s stage step", run)
        run.proc.send_signal(sig)
    for host, (run, sig) in runs.items():
        rc = run.wait(timeout=120)
        out = run.output
        assert rc == 130, f"{sig.name}: {out[-4000:]}"
        assert "interrupted" in out and "resumes from there" in out, out[-3000:]
        entry = run.host(host)
        assert entry["state"].startswith("failed-at-"), entry
        assert entry["reason"].startswith("interrupted during"), entry
        assert report_exit(run.report()) == 1
        wait_for(lambda run=run: not ansible_left(fleet.inventory), "the run's ansible processes to end", timeout=30)
        lock = fleet.lock(host)  # left for the next run to take over: this run's ansible-playbook is gone
        assert lock is not None and lock["run_id"].startswith(run.lock_id()), lock
    # the SIGTERM run took over run 1's stale lock on ws-killed before it stopped
    takeover = [e for e in runs["ws-killed"][0].host_events("ws-killed", "runner_on_ok")
                if "took over" in json.dumps((e.get("event_data") or {}).get("res") or {})]
    assert takeover and fleet.results["run1_lock"]["run_id"] in json.dumps(takeover[0]["event_data"]["res"])
    assert user_data(fleet) == fleet.data_before
    TIMINGS.append(f"SIGINT + SIGTERM runs: {time.monotonic() - began:.1f} s")


def report_exit(doc: dict[str, Any]) -> int:
    from provision.report import exit_code

    return exit_code(doc)


def test_next_run_converges_despite_mirror_loss_and_a_racing_run(fleet: Fleet) -> None:
    """The last run: takes over the stale locks, installs from the staged packages while the apt repositories
    are down, and a second run started on ws-healthy while the first holds its lock is refused."""
    began = time.monotonic()
    run = start(fleet, "final", "--limit", "!ws-gone")
    racer: list[Run] = []
    mirror_down: list[float] = []

    def race_and_break() -> None:
        try:
            wait_for(lambda: task_ok(run, "ws-healthy", "Take the host lock"), "ws-healthy's lock", run)
            racer.append(start(fleet, "racer", "--limit", "ws-healthy"))
            wait_for(lambda: all(task_ok(run, h, "Say what was staged") for h in ("ws-postinst", "ws-killed")),
                     "both hosts staged", run)
            for pool in APT_POOLS:
                fleet.fault("down", pool)
            mirror_down.append(time.monotonic())
        except BaseException:  # reported through the assertions below
            return

    helper = threading.Thread(target=race_and_break, daemon=True)
    helper.start()
    rc = run.wait()
    helper.join(timeout=60)
    fleet.fault("none")
    TIMINGS.append(f"final run (takeovers, mirror down after staging, a racing run): {time.monotonic() - began:.1f} s")
    out = run.output
    assert rc == 0, out[-6000:]
    assert mirror_down, "the apt repositories were never taken down"
    for host in HOSTS:
        entry = run.host(host)
        assert entry["state"] == "done", entry
        assert entry["after"]["rocm"] == "7.0.0", entry
        assert fleet.ok(host, "dpkg-query -W -f '${Status}' rocm-core").strip().endswith(" ok installed")  # held
        assert fleet.lock(host) is None, host
        assert not fleet.ok(host, "dpkg --audit").strip(), host
    for host in ("ws-postinst", "ws-killed"):
        took = [e for e in run.host_events(host, "runner_on_ok")
                if "took over" in json.dumps((e.get("event_data") or {}).get("res") or {})]
        assert took, f"{host}: the interrupted run's lock was not taken over"
        # the install's package-list update ran against the dead mirror and went on with the staged packages
        updates = [e for e in run.host_events(host, "runner_on_ok")
                   if str(e["event_data"].get("task", "")).endswith("Update the ROCm package lists (only AMD's "
                                                                   "sources)")]
        assert updates and "503" in json.dumps(updates[-1]["event_data"]["res"]), host
    assert user_data(fleet) == fleet.data_before

    # the racing run: refused on ws-healthy with who holds the lock; it never got past the preflight
    assert racer, "the racing run was never started"
    other = racer[0]
    assert other.wait(timeout=300) == 1, other.output[-4000:]
    entry = other.host("ws-healthy")
    assert entry["state"] == "failed-at-preflight", entry
    assert "host locked by another upgrade" in entry["reason"] and run.lock_id() in entry["reason"], entry
    assert "remove /var/lib/rocm-provision/host.lock" in entry["reason"], entry
    assert [p["name"] for p in entry["phases"] if p["name"] != "waiting"] == ["preflight"], entry["phases"]
    roles = {str((e.get("event_data") or {}).get("role") or "") for e in other.host_events("ws-healthy")}
    assert roles <= {"rocm_preflight", ""}, roles  # no apt, no dpkg: it stopped at the lock
