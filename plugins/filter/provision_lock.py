"""Filters for the host lock, evaluated on the controller:

- `provision_lock_owner`: this run as the lock records it, `{run_id, boot_id, pid_ns, controller, pid, pid_start,
  user}`. `{{ rocm_preflight_lock_run_id | provision_lock_owner }}`; an empty run id gets a random one, the same in
  every task of one ansible-playbook process. The controller is known by its boot id and pid namespace (where its
  pids mean something), never by its host name: cloned VMs and containers share host names.
- `provision_lock_holder_gone`: `{gone, why}`: whether a lock's holder is provably gone: it ran on this controller
  (same boot id and pid namespace) and its process (pid and start time) no longer runs.
- `provision_pid_alive`: whether a pid on this controller is still the process that took the lock.
"""

from __future__ import annotations

import contextlib
import getpass
import multiprocessing
import os
import secrets
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


def boot_id() -> str:
    """The kernel's random id of this boot (proc(5): /proc/sys/kernel/random/boot_id); '' when unknown."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def pid_namespace() -> str:
    """This process's pid namespace (`pid:[inode]`): containers on one kernel share the boot id, not this."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _random_run_id(pid: int, start: str) -> str:
    """A random id for one ansible-playbook process, shared by its task workers through a private file."""
    folder = Path(os.environ.get("XDG_RUNTIME_DIR") or Path.home() / ".cache") / "rocm-provision" / "run-ids"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{boot_id() or 'boot'}-{pid}-{start}"
    token = secrets.token_hex(16)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip() or token
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    for old in folder.iterdir():  # ids of processes that are gone
        parts = old.name.rsplit("-", 2)
        if len(parts) == 3 and old != path and not provision_pid_alive(parts[1], parts[2]):
            with contextlib.suppress(OSError):
                old.unlink()
    return token


def provision_lock_owner(run_id: Any) -> dict[str, Any]:
    pid = _playbook_pid()
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    start = _start_ticks(pid)
    return {"run_id": str(run_id or "") or _random_run_id(pid, start), "boot_id": boot_id(),
            "pid_ns": pid_namespace(), "controller": socket.gethostname(), "pid": pid, "pid_start": start,
            "user": user}


def provision_lock_holder_gone(holder: Any, owner: Any) -> dict[str, Any]:
    """Whether the holder of a lock is provably gone, and why (or why that cannot be proven)."""
    holder = holder if isinstance(holder, dict) else {}
    owner = owner if isinstance(owner, dict) else {}
    if not holder.get("run_id"):
        return {"gone": False, "why": "the lock names no run"}
    if not holder.get("boot_id") or holder.get("boot_id") != owner.get("boot_id"):
        return {"gone": False, "why": "it was taken from another controller, or before this controller's last boot "
                                      f"(boot id {holder.get('boot_id') or 'unknown'}), whatever its host name"}
    if not holder.get("pid_ns") or holder.get("pid_ns") != owner.get("pid_ns"):
        return {"gone": False, "why": "it was taken from another pid namespace (another container) of this machine"}
    start = str(holder.get("pid_start") or "")
    if not start or start == "0":
        return {"gone": False, "why": "its process start time is unknown"}
    if provision_pid_alive(holder.get("pid"), start):
        return {"gone": False, "why": f"its ansible-playbook (pid {holder.get('pid')}) still runs on this controller"}
    return {"gone": True, "why": f"its ansible-playbook (pid {holder.get('pid')}, started at tick {start}) no longer "
                                 f"runs on this controller (boot id {owner.get('boot_id')})"}


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
        return {"provision_lock_owner": provision_lock_owner, "provision_lock_holder_gone": provision_lock_holder_gone,
                "provision_pid_alive": provision_pid_alive}
