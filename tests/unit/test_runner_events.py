"""How `provision upgrade` reads ansible-runner's events into each host's state, phase and message.

The events are shaped like the ones ansible-runner emits for playbooks/upgrade.yml (recorded from a lab run):
the include_role result names the entry point, so tasks of repo.yml count as `stage` when stage.yml included
them; a clean-up in `always:` after a failure leaves the host failed; loop and command failures report apt's
own error line, not "One or more items failed"."""

from __future__ import annotations

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


def test_the_workaround_search_shows_its_latest_trial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The polled follow task's retry events carry the search's progress line; the live table shows it, and a
    failure of the search's tasks counts as the fallback phase."""
    run = _run(tmp_path, monkeypatch)
    task = "Follow the workaround search"
    run._event(_ev("runner_on_start", task, role="fallback_profile"))
    line = ('{"type": "workaround-trial", "trial": 7, "purpose": "solver in direct", "elapsed_s": 31.5, '
            '"limit_s": 900}')
    run._event(_ev("runner_retry", task, role="fallback_profile", res={"stdout": line + "\n", "attempts": 7}))
    host = run.hosts["ws1"]
    assert host.task == f"{task}: trial 7 (solver in direct), 31.5 of 900 s" and host.phase == "fallback"
    run._event(_ev("runner_on_failed", "Fail with the evidence and the options", role="fallback_profile",
                   res={"msg": "no MIOpen switch set made every convolution pass on ws1"}))
    assert host.status == "failed" and host.phase == "fallback" and "no MIOpen switch set" in host.message
