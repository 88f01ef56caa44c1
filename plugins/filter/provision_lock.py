"""Filters for the host lock, evaluated on the controller:

- `provision_lock_owner`: this run as the lock records it, `{run_id, controller, pid, user}`.
  `{{ rocm_preflight_lock_run_id | provision_lock_owner }}`; an empty run id is derived from the
  ansible-playbook process (controller, pid and its start time), the same in every task of one run.
- `provision_pid_alive`: whether a pid on this controller is still the process that took the lock.
"""

from __future__ import annotations

import getpass
import multiprocessing
import os
import socket
from pathlib import Path
from typing import Any


def _playbook_pid() -> int:
    """The ansible-playbook process: the parent of a task worker, or this process when not in a worker."""
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None and parent.pid else os.getpid()


def _start_ticks(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "0"
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22, starttime


def provision_lock_owner(run_id: Any) -> dict[str, Any]:
    pid = _playbook_pid()
    host = socket.gethostname()
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    start = _start_ticks(pid)
    return {"run_id": str(run_id or "") or f"{host}:{pid}:{start}", "controller": host, "pid": pid,
            "pid_start": start, "user": user}


def provision_pid_alive(pid: Any, start: Any = "") -> bool:
    """True while `pid` runs here and is the same process: its start time is `start` (from /proc/PID/stat),
    or, when that is unknown, it is an Ansible (or provision) process. Pids wrap around (pid_max is often
    32768), so a reused pid counts as gone."""
    try:
        number = int(pid)
    except (TypeError, ValueError):
        return False
    if number <= 0:
        return False
    try:
        os.kill(number, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if start and str(start) != "0" and Path(f"/proc/{number}/stat").exists():
        return _start_ticks(number) == str(start)
    try:
        cmdline = Path(f"/proc/{number}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return True  # no /proc to tell: trust the pid
    return b"ansible" in cmdline or b"provision" in cmdline


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"provision_lock_owner": provision_lock_owner, "provision_pid_alive": provision_pid_alive}
