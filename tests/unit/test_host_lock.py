"""The host lock module (plugins/modules/rocm_host_lock.py), run as Ansible runs it: a Python
process reading its arguments from a JSON file. Many runs racing for one lock: exactly one wins."""

from __future__ import annotations

import json
import os
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
