#!/usr/bin/python
"""The host lock: at most one upgrade run per host, taken atomically, released or taken over by run id."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rocm_host_lock
short_description: Take, take over or release the rocm-provision host lock
description:
  - O(state=present) creates O(path) atomically (O_CREAT|O_EXCL) holding JSON C({run_id, boot_id, pid_ns, controller,
    pid, pid_start, user, started, started_epoch}). A lock of the same run is kept. A lock older than O(max_age)
    seconds is taken over. A lock whose run id is O(takeover_run_id) is replaced (a compare-and-swap, once the
    controller proved its holder gone). Otherwise nothing is written and C(acquired) is false,
    with the holder in C(holder).
  - O(state=absent) removes the lock only when its run id is O(owner.run_id); another run's lock is left alone.
  - Every change happens under an flock on C(<path>.guard), so two runs never both win. A guard that cannot be
    opened fails the module (no lock, no run).
options:
  path:
    description: The lock file.
    type: path
    default: /var/lib/rocm-provision/host.lock
  state:
    description: present takes (or keeps) the lock, absent releases it.
    type: str
    choices: [present, absent]
    default: present
  owner:
    description: This run, C({run_id, boot_id, pid_ns, controller, pid, pid_start, user}); pid_start is the pid's
      start time, boot_id and pid_ns name the controller (never its host name).
    type: dict
    required: true
  max_age:
    description: A lock older than this many seconds is stale and taken over. An integer of at least 3600 (a
      younger live run could be mid-install); booleans and anything smaller are refused.
    type: raw
    default: 86400
  takeover_run_id:
    description: Replace the lock if, and only if, it still belongs to this run id.
    type: str
    default: ""
  takeover_reason:
    description: Why the takeover is safe, for the message.
    type: str
    default: ""
author: rocm-provision
notes:
  - Supports check mode; it reports what it would do and writes nothing.
"""

EXAMPLES = r"""
- name: Take the host lock for this run
  rocm.provision.rocm_host_lock:
    owner: "{{ '' | rocm.provision.provision_lock_owner }}"
  register: host_lock

- name: Stop when another run holds it
  ansible.builtin.fail:
    msg: "held by run {{ host_lock.holder.run_id }} of {{ host_lock.holder.user }}@{{ host_lock.holder.controller }}"
  when: not host_lock.acquired

- name: Release it at the end (only if this run still holds it)
  rocm.provision.rocm_host_lock:
    owner: "{{ '' | rocm.provision.provision_lock_owner }}"
    state: absent
"""

RETURN = r"""
acquired:
  description: Whether this run holds the lock now (always false for O(state=absent)).
  returned: always
  type: bool
holder:
  description:
    - The lock's record C({run_id, controller, pid, pid_start, user, started, started_epoch}) after the call;
      another run's record when the lock was refused; null when nobody holds it.
  returned: always
  type: dict
took_over:
  description: The record of the run whose lock was taken over, or null.
  returned: always
  type: dict
message:
  description: What happened, for the user.
  returned: always
  type: str
  sample: /var/lib/rocm-provision/host.lock is held by another run
age_s:
  description: Age in seconds of another run's lock that was refused.
  returned: when the lock is held by another run and was not taken over
  type: int
path:
  description: The lock file.
  returned: always
  type: str
"""

import contextlib
import errno
import fcntl
import json
import os
import time
from datetime import datetime, timezone  # hosts may run Python 3.10, before datetime.UTC
from typing import Any

from ansible.module_utils.basic import AnsibleModule

MIN_MAX_AGE = 3600  # seconds: a lock younger than this may belong to a run that is installing right now


def max_age_of(value: Any) -> int:
    """The max age as an integer of at least MIN_MAX_AGE; ValueError for a boolean, a word or a smaller number."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{value!r} is not a number of seconds")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a number of seconds") from None
    if number < MIN_MAX_AGE:
        raise ValueError(f"{number} s is less than {MIN_MAX_AGE} s: a run that young may still be working on the "
                         "host, so its lock is never taken over on age alone")
    return number


def _read(path: str) -> dict[str, Any] | None:
    """The lock's holder, {} for an unreadable lock, None when there is no lock."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    if "started_epoch" not in data:
        with contextlib.suppress(OSError):
            data["started_epoch"] = os.stat(path).st_mtime
    return data


def _record(owner: dict[str, Any]) -> dict[str, Any]:
    now = time.time()
    return {"run_id": str(owner.get("run_id") or ""), "boot_id": str(owner.get("boot_id") or ""),
            "pid_ns": str(owner.get("pid_ns") or ""), "controller": str(owner.get("controller") or ""),
            "pid": int(owner.get("pid") or 0), "pid_start": str(owner.get("pid_start") or ""),
            "user": str(owner.get("user") or ""),
            "started": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017
            "started_epoch": now}


def _write(path: str, record: dict[str, Any], *, replace: bool) -> None:
    text = json.dumps(record, sort_keys=True) + "\n"
    if replace:
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        target = tmp
    else:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        target = path
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    if replace:
        os.replace(target, path)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": "/var/lib/rocm-provision/host.lock"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "owner": {"type": "dict", "required": True},
            "max_age": {"type": "raw", "default": 86400},
            "takeover_run_id": {"type": "str", "default": ""},
            "takeover_reason": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    path = module.params["path"]
    owner = module.params["owner"]
    run_id = str(owner.get("run_id") or "")
    if not run_id:
        module.fail_json(msg="rocm_host_lock: owner.run_id is empty; the lock needs a run id")
    try:
        max_age = max_age_of(module.params["max_age"])
    except ValueError as exc:
        module.fail_json(msg=f"rocm_host_lock: max_age (provision_lock_max_age): {exc}; set a number of seconds of at "
                             f"least {MIN_MAX_AGE} (default 86400)")
    result: dict[str, Any] = {"changed": False, "path": path, "acquired": False, "holder": None, "took_over": None,
                              "message": ""}
    directory = os.path.dirname(path)
    if not module.check_mode:
        os.makedirs(directory, mode=0o755, exist_ok=True)
    guard_path = f"{path}.guard"
    guard = None
    try:
        if module.check_mode:  # nothing is written: a guard that is not there yet is not needed
            with contextlib.suppress(OSError):
                guard = os.open(guard_path, os.O_RDWR)
        else:
            try:
                guard = os.open(guard_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as exc:
                why = exc.strerror or str(exc)
                module.fail_json(msg=f"rocm_host_lock: cannot open the lock guard {guard_path} ({why}): without it "
                                     "two runs could both take the lock, so this host is not worked on; make it a "
                                     "plain file root can write (or remove it)", **result)
        if guard is not None:
            fcntl.flock(guard, fcntl.LOCK_EX)
        holder = _read(path)
        if module.params["state"] == "absent":
            if holder is not None and holder.get("run_id") == run_id:
                if not module.check_mode:
                    os.unlink(path)
                result.update(changed=True, message=f"released {path}")
            else:
                result.update(holder=holder, message="not held by this run; left alone" if holder else "not held")
            module.exit_json(**result)

        if holder is None:
            if not module.check_mode:
                try:
                    _write(path, _record(owner), replace=False)
                except OSError as exc:
                    if exc.errno != errno.EEXIST:
                        raise
                    holder = _read(path)  # a writer that does not take the guard (an older version) won
            if holder is None:
                result.update(changed=True, acquired=True, holder=_record(owner), message=f"took {path}")
                module.exit_json(**result)
        assert holder is not None
        if holder.get("run_id") == run_id:
            result.update(acquired=True, holder=holder, message=f"{path} is already held by this run")
            module.exit_json(**result)
        age = time.time() - float(holder.get("started_epoch") or 0)
        reason = ""
        if module.params["takeover_run_id"] and holder.get("run_id") == module.params["takeover_run_id"]:
            reason = module.params["takeover_reason"] or "the controller says its holder is gone"
        elif age > max_age:
            reason = f"it is {int(age)} s old, older than the maximum age of {max_age} s"
        if not reason:
            result.update(holder=holder, age_s=int(age), message=f"{path} is held by another run")
            module.exit_json(**result)
        if not module.check_mode:
            _write(path, _record(owner), replace=True)
        result.update(changed=True, acquired=True, holder=_record(owner), took_over=holder,
                      message=(f"took over {path} from run {holder.get('run_id') or '(unreadable lock)'} of "
                               f"{holder.get('user') or '?'}@{holder.get('controller') or '?'} "
                               f"(pid {holder.get('pid') or '?'}, since {holder.get('started') or '?'}): {reason}"))
        module.exit_json(**result)
    except OSError as exc:
        module.fail_json(msg=f"rocm_host_lock: {path}: {exc.strerror or exc}", **result)
    finally:
        if guard is not None:
            os.close(guard)


if __name__ == "__main__":
    main()
