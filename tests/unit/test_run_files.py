"""The controller's run files: a shared runs directory keeps its mode, and a run that raises gives the process
its umask back."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from provision.runner import PlaybookRun


def _report(runs: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1", PROVISION_RUNS_DIR=str(runs))
    return subprocess.run([sys.executable, "-m", "provision", "report"], capture_output=True, text=True, env=env,
                          timeout=60, check=False)


def test_report_leaves_a_shared_runs_directory_as_it_is(tmp_path: Path) -> None:
    shared = tmp_path / "team-runs"
    shared.mkdir()
    os.chmod(shared, 0o2775)  # a directory a team shares on purpose (setgid, group-writable)
    done = _report(shared)
    assert done.returncode == 2 and "no run with a report" in done.stderr
    assert stat.S_IMODE(shared.stat().st_mode) == 0o2775


def test_a_new_runs_directory_is_private(tmp_path: Path) -> None:
    fresh = tmp_path / "state" / "runs"
    _report(fresh)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700


def test_umask_is_restored_when_the_run_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISION_RUNS_DIR", str(tmp_path / "runs"))
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("ws1 ansible_connection=local\n")
    # ansible-runner itself raises on extra vars it cannot serialise: a real failure after the umask was set
    run = PlaybookRun("check.yml", inventory, hosts=["ws1"], extravars={"bad": {1, 2}})
    before = os.umask(0o022)
    try:
        with pytest.raises(TypeError):
            run.run()
        assert os.umask(0o022) == 0o022, "the run's umask 077 leaked into the process"
    finally:
        os.umask(before)
