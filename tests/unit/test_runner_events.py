"""How `provision upgrade` reads ansible-runner's events into each host's state, phase and message.

The events are shaped like the ones ansible-runner emits for playbooks/upgrade.yml (recorded from a lab run):
the include_role result names the entry point, so tasks of repo.yml count as `stage` when stage.yml included
them; a clean-up in `always:` after a failure leaves the host failed; loop and command failures report apt's
own error line, not "One or more items failed"."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from provision.runner import PlaybookRun


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PlaybookRun:
    monkeypatch.setenv("PROVISION_RUNS_DIR", str(tmp_path / "runs"))
    inventory = tmp_path / "lab.ini"
    inventory.write_text("ws1\n")
    return PlaybookRun("upgrade.yml", inventory, hosts=["ws1"])


def _ev(kind: str, task: str, role: str = "", res: dict[str, Any] | None = None, path: str = "") -> dict[str, Any]:
    data: dict[str, Any] = {"host": "ws1", "task": f"{role} : {task}" if role else task, "role": role,
                            "task_path": path, "res": res or {}}
    return {"event": kind, "event_data": data}


APT_STDERR = ("W: GPG error: http://mirror/rocm/apt/7.0 noble InRelease: The following signatures couldn't be "
              "verified because the public key is not available: NO_PUBKEY D579896F43039327\n"
              "E: The repository 'http://mirror/rocm/apt/7.0 noble InRelease' is not signed.")


def test_a_failed_stage_loop_is_reported_at_stage_with_apts_error(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    run = _run(tmp_path, monkeypatch)
    run._event(_ev("runner_on_start", "Stage the new stack"))
    run._event(_ev("runner_on_ok", "Stage the new stack", res={"include_args": {"name": "rocm_install",
                                                                                 "tasks_from": "stage"}}))
    run._event(_ev("runner_on_start", "Update the ROCm package lists", "rocm_install", path="/r/debian/repo.yml:9"))
    run._event(_ev("runner_on_failed", "Update the ROCm package lists", "rocm_install", res={
        "msg": "One or more items failed", "results": [
            {"failed": False, "rc": 0},
            {"failed": True, "rc": 100, "msg": "non-zero return code", "stderr": APT_STDERR}]}))
    run._event(_ev("runner_on_start", "Remove the scratch directory", "rocm_install", path="/r/debian/repo.yml:80"))
    run._event(_ev("runner_on_ok", "Remove the scratch directory", "rocm_install"))
    host = run.hosts["ws1"]
    assert host.status == "failed"
    assert host.phase == "stage"
    assert host.message.startswith("W: GPG error") and "NO_PUBKEY" in host.message
    assert [p["name"] for p in host.phase_records()][-1] == "stage"


def test_the_same_repo_tasks_after_the_removal_count_as_stack(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    run = _run(tmp_path, monkeypatch)
    run._event(_ev("runner_on_ok", "Install", res={"include_args": {"name": "rocm_install"}}))
    run._event(_ev("runner_on_start", "Update the ROCm package lists", "rocm_install", path="/r/debian/repo.yml:9"))
    run._event(_ev("runner_on_failed", "Install ROCm 7.0", "rocm_install", res={
        "msg": "non-zero return code", "stderr": "E: Sub-process /usr/bin/dpkg returned an error code (1)"}))
    host = run.hosts["ws1"]
    assert (host.status, host.phase) == ("failed", "stack")
    assert host.message == "E: Sub-process /usr/bin/dpkg returned an error code (1)"


def test_collection_roles_fqcn_names_are_read_as_the_roles_phases(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The playbooks name roles rocm.provision.<role>: ansible-runner then reports `role` as the role's own name and
    `resolved_role` as the FQCN (recorded from a lab `provision check`), and include_role's result names the FQCN
    as the playbook wrote it."""
    run = _run(tmp_path, monkeypatch)

    def ev(kind: str, task: str, res: dict[str, Any] | None = None, path: str = "") -> dict[str, Any]:
        return {"event": kind, "event_data": {
            "host": "ws1", "task": task, "role": "rocm_install",
            "resolved_role": "rocm.provision.rocm_install", "task_path": path, "res": res or {}}}

    run._event(_ev("runner_on_start", "Stage the new stack"))
    run._event(_ev("runner_on_ok", "Stage the new stack", res={
        "include_args": {"name": "rocm.provision.rocm_install", "tasks_from": "stage"}}))
    run._event(ev("runner_on_start", "Update the ROCm package lists", path="/c/rocm_install/tasks/debian/repo.yml:9"))
    host = run.hosts["ws1"]
    assert (host.entry, host.phase, host.task) == ("rocm_install:stage", "stage", "Update the ROCm package lists")
    run._event(_ev("runner_on_ok", "Install", res={"include_args": {"name": "rocm.provision.rocm_install"}}))
    run._event(ev("runner_on_start", "Install ROCm 7.0"))
    assert (host.phase, host.task) == ("stack", "Install ROCm 7.0")


def test_each_host_is_timed_by_its_own_tasks_not_the_whole_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real ansible-runner run on two local-connection hosts: `idle` leaves after the first play and comes back
    for the last (as a blocked host does in upgrade.yml, whose last plays run on every host), `busy` works through
    a middle play alone. The report's per-host time comes from the start/end stamps ansible-runner puts on each
    task result, so `idle` is not charged with the middle play it took no part in."""
    monkeypatch.setenv("PROVISION_RUNS_DIR", str(tmp_path / "runs"))
    inventory = tmp_path / "hosts.ini"
    local = f"ansible_connection=local ansible_python_interpreter={sys.executable}"
    inventory.write_text(f"idle {local}\nbusy {local}\n")
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.command: 'true'\n"
        "      changed_when: false\n"
        "- hosts: busy\n  gather_facts: false\n  tasks:\n"
        + "".join(f"    - name: work {i}\n      ansible.builtin.command: 'true'\n      changed_when: false\n"
                  for i in range(4))
        + "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.command: 'true'\n"
        "      changed_when: false\n")
    result = PlaybookRun(str(playbook), inventory, hosts=["idle", "busy"]).run()
    assert result.rc == 0, [p.read_text() for p in (result.run_dir / "artifacts").glob("*/stdout")]
    idle, busy = result.hosts["idle"], result.hosts["busy"]
    assert idle.first_start is not None and idle.last_end is not None  # the events carry Ansible's stamps
    assert 0 < idle.own_duration < busy.own_duration
    # idle's first and last tasks frame busy's middle play: wall time it spent waiting, not working
    assert idle.own_duration < idle.span
    assert busy.own_duration <= busy.span + 0.01
    # the same seconds, per phase, for the report's cards
    assert abs(sum(p["busy_s"] for p in busy.phase_records()) - busy.own_duration) < 0.05
