"""The host lock module (plugins/modules/rocm_host_lock.py), run as Ansible runs it: a Python
process reading its arguments from a JSON file. Many runs racing for one lock: exactly one wins."""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.sources import load_source

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "plugins" / "modules" / "rocm_host_lock.py"
filters = load_source("plugins/filter/provision_lock.py")
provision_lock_owner, provision_pid_alive = filters.provision_lock_owner, filters.provision_pid_alive


def lock(tmp: Path, run_id: str, **args: Any) -> dict[str, Any]:
    params = {"path": str(tmp / "host.lock"), "owner": {"run_id": run_id, "controller": "ctl", "pid": 42,
                                                         "user": "alice"}, **args}
    argfile = tmp / f"args-{run_id}.json"
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": params}))
    done = subprocess.run([sys.executable, str(MODULE), str(argfile)], capture_output=True, text=True, check=False)
    return json.loads(done.stdout)


def test_racing_runs_exactly_one_takes_the_lock(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda i: lock(tmp_path, f"run-{i}"), range(12)))
    winners = [r for r in results if r["acquired"]]
    assert len(winners) == 1, results
    holder = json.loads((tmp_path / "host.lock").read_text())
    assert holder["run_id"] == winners[0]["holder"]["run_id"]
    assert all(r["holder"]["run_id"] == holder["run_id"] for r in results if not r["acquired"])


def test_takeover_is_compare_and_swap_and_release_only_by_the_holder(tmp_path: Path) -> None:
    assert lock(tmp_path, "a")["acquired"]
    assert lock(tmp_path, "a")["acquired"]  # the same run keeps it
    refused = lock(tmp_path, "b")
    assert not refused["acquired"] and refused["holder"]["run_id"] == "a"
    assert not lock(tmp_path, "b", takeover_run_id="zzz")["acquired"]  # a stale view of the holder: refused
    took = lock(tmp_path, "b", takeover_run_id="a", takeover_reason="its pid is gone")
    assert took["acquired"] and took["took_over"]["run_id"] == "a" and "its pid is gone" in took["message"]
    assert not lock(tmp_path, "a", state="absent")["changed"]  # a's release leaves b's lock alone
    assert (tmp_path / "host.lock").exists()
    assert lock(tmp_path, "b", state="absent")["changed"]
    assert not (tmp_path / "host.lock").exists()


def test_a_lock_older_than_max_age_is_taken_over(tmp_path: Path) -> None:
    (tmp_path / "host.lock").write_text(json.dumps({"run_id": "old", "controller": "elsewhere", "pid": 1,
                                                    "user": "bob", "started_epoch": time.time() - 7200}))
    assert not lock(tmp_path, "new", max_age=86400)["acquired"]
    took = lock(tmp_path, "new", max_age=3600)
    assert took["acquired"] and "older than the maximum age of 3600 s" in took["message"]


def test_check_mode_writes_nothing(tmp_path: Path) -> None:
    result = lock(tmp_path, "a", _ansible_check_mode=True)
    assert result["acquired"] and not (tmp_path / "host.lock").exists()


def test_owner_and_pid_filters() -> None:
    owner = provision_lock_owner("")
    assert owner["run_id"] == provision_lock_owner(None)["run_id"]  # stable within one process
    assert provision_lock_owner("ctl:run-1")["run_id"] == "ctl:run-1"
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert not provision_pid_alive(dead.pid)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        assert not provision_pid_alive(sleeper.pid)  # alive, but not an Ansible process: a reused pid
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not provision_pid_alive("nonsense") and not provision_pid_alive(0)
    me = os.getpid()
    start = provision_lock_owner("")["pid_start"]  # this process (not a worker): its own start time
    assert provision_pid_alive(me, start)
    assert not provision_pid_alive(me, str(int(start) + 1))  # same pid, another process: the pid was reused


def test_max_age_refuses_booleans_words_and_numbers_below_an_hour(tmp_path: Path) -> None:
    for bad in (True, False, 0, 60, "yes", "soon"):
        result = lock(tmp_path, "a", max_age=bad)
        assert result.get("failed") and "max_age (provision_lock_max_age)" in result["msg"], (bad, result)
        assert not (tmp_path / "host.lock").exists()
    assert lock(tmp_path, "a", max_age="3600")["acquired"]


def test_a_guard_that_cannot_be_opened_fails_the_host_no_lock_no_run(tmp_path: Path) -> None:
    (tmp_path / "host.lock.guard").mkdir()  # root can open any file; a directory in its place it cannot
    result = lock(tmp_path, "a")
    assert result.get("failed") and not result["acquired"], result
    assert "cannot open the lock guard" in result["msg"] and "not worked on" in result["msg"]
    assert not (tmp_path / "host.lock").exists()
    (tmp_path / "host.lock.guard").rmdir()
    (tmp_path / "host.lock.guard").symlink_to(tmp_path / "elsewhere")  # nor a link someone planted
    assert lock(tmp_path, "a").get("failed")
    assert not (tmp_path / "elsewhere").exists()


ME = {"boot_id": "6f0b0d3a-0000-4000-8000-000000000001", "pid_ns": "pid:[4026531836]"}


def _dead_pid() -> tuple[int, str]:
    proc = subprocess.Popen(["sleep", "0"])
    start = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[-1].split()[19]
    proc.wait()
    return proc.pid, start


def test_holder_is_gone_only_when_it_provably_ran_here_and_its_process_is_gone() -> None:
    gone = filters.provision_lock_holder_gone
    pid, start = _dead_pid()
    holder = {"run_id": "r1", "controller": "ws-ctl", "pid": pid, "pid_start": start, **ME}
    assert gone(holder, {"run_id": "r2", "controller": "ws-ctl", **ME})["gone"]
    # a clone with the same host name (another boot id) or a container on this kernel (another pid namespace)
    clone = gone({**holder, "boot_id": "6f0b0d3a-0000-4000-8000-000000000002"}, {"controller": "ws-ctl", **ME})
    assert not clone["gone"] and "another controller" in clone["why"]
    container = gone({**holder, "pid_ns": "pid:[4026532999]"}, {"controller": "ws-ctl", **ME})
    assert not container["gone"] and "pid namespace" in container["why"]
    # a lock of the old format (host name only) cannot be proven gone; nor one without a start time
    assert not gone({"run_id": "r1", "controller": "ws-ctl", "pid": pid}, {"controller": "ws-ctl", **ME})["gone"]
    assert not gone({**holder, "pid_start": ""}, ME)["gone"]
    me = provision_lock_owner("")
    alive = gone({**me, "run_id": "someone"}, me)  # this very process: alive
    assert not alive["gone"] and "still runs" in alive["why"]


def _lock_play(tmp: Path) -> subprocess.CompletedProcess[str]:
    play = tmp / "lock.yml"
    play.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.include_role:\n"
                    "        name: rocm.provision.rocm_preflight\n        tasks_from: lock\n")
    inventory = tmp / "hosts.ini"
    inventory.write_text(f"ws1 ansible_connection=local ansible_python_interpreter={sys.executable} "
                         f"rocm_preflight_lock_path={tmp / 'host.lock'}\n")
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    return subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory), str(play)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)


def test_two_controllers_with_the_same_host_name_never_take_each_others_lock(tmp_path: Path) -> None:
    """The other controller is a clone of this one (same host name, same user): simulated at the boundary the
    role reads, the lock file it left on the host. Its pid does not run here, which proves nothing about it."""
    pid, start = _dead_pid()
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    other = {"run_id": "clone-run", "controller": socket.gethostname(), "user": getpass.getuser(), "pid": pid,
             "pid_start": start, "boot_id": "0" * 8 + boot[8:], "pid_ns": os.readlink("/proc/self/ns/pid"),
             "started": "2026-12-03T10:00:00+00:00", "started_epoch": time.time() - 60}
    (tmp_path / "host.lock").write_text(json.dumps(other))
    refused = _lock_play(tmp_path)
    assert refused.returncode != 0, refused.stdout[-3000:]
    assert "host locked by another upgrade: run clone-run" in refused.stdout
    assert "taken from another controller" in refused.stdout
    assert json.loads((tmp_path / "host.lock").read_text())["run_id"] == "clone-run"  # left alone

    # the same lock, left by a run of this very controller (its boot id) whose process is gone: taken over
    (tmp_path / "host.lock").write_text(json.dumps({**other, "boot_id": boot}))
    took = _lock_play(tmp_path)
    assert took.returncode == 0, took.stdout[-3000:]
    assert "WARNING: took over" in took.stdout and "no longer runs on this controller" in took.stdout
    holder = json.loads((tmp_path / "host.lock").read_text())
    assert holder["run_id"] != "clone-run" and holder["boot_id"] == boot and len(holder["run_id"]) == 32
