"""Per-host end states from a finished run: what each host's card and exit code say."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from provision import outcome, report
from provision.runner import HostProgress, RunResult


def plan(action: str) -> dict:
    return {"plan": {"action": action, "reasons": [f"{action} because"], "warnings": [], "env": {}, "env_remove": []},
            "gpus": [], "os": None, "rocm": {"version": "5.2.0", "packages": {"amdgpu-dkms": "1:5.16.9.22.20"}}}


def progress(name: str, status: str, phase: str = "stack", message: str = "") -> HostProgress:
    host = HostProgress(name, status=status, message=message)
    host.enter_phase("preflight", 0.0)
    host.enter_phase(phase, 1.0)
    host.close_phase("failed" if status == "failed" else "ok", 3.0, message)
    return host


def run_result(tmp_path: Path) -> RunResult:
    hosts = {
        "up": progress("up", "ok"),
        "fb": progress("fb", "ok", "fallback"),
        "blk": progress("blk", "ok", "preflight"),
        "bad": progress("bad", "failed", "remove", "apt-get autoremove failed"),
        "gone": HostProgress("gone", status="unreachable", message="ssh: connect to host refused"),
        "other": HostProgress("other"),  # outside --limit
    }
    stats = {
        "provision_preflight": {"up": plan("upgrade"), "fb": plan("fallback"), "blk": plan("blocked"),
                                "bad": plan("upgrade")},
        "provision_after": {"up": {"packages": {"rocm-core": "7.0.0.70000-17~22.04", "amdgpu-dkms": "1:6.14.14"}}},
        "provision_verify": {"up": {"verdict": "pass", "torch": {"version": "2.8.0+rocm7.0.0.git64359f59"}}},
    }
    return RunResult(tmp_path / "run", 2, "failed", hosts, stats)


def test_states_reasons_and_versions(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    doc = outcome.build("upgrade", run_result(tmp_path), Path("lab.ini"), now, now)
    states = {h["name"]: h["state"] for h in doc["hosts"]}
    assert states == {"up": "done", "fb": "fallback-applied", "blk": "blocked", "bad": "failed-at-remove",
                      "gone": "unreachable"}
    up = next(h for h in doc["hosts"] if h["name"] == "up")
    assert up["before"]["rocm"] == "5.2.0"
    assert up["after"] == {"rocm": "7.0.0", "amdgpu-dkms": "1:6.14.14", "torch": "2.8.0+rocm7.0.0.git64359f59"}
    bad = next(h for h in doc["hosts"] if h["name"] == "bad")
    assert bad["reason"] == "apt-get autoremove failed"
    assert [p["name"] for p in bad["phases"]] == ["preflight", "remove"]
    assert report.exit_code(doc) == 1
    assert doc["summary"]["by_state"]["failed"] == 1


def test_check_mode_plans_without_claiming_done(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    result = run_result(tmp_path)
    result.hosts = {k: v for k, v in result.hosts.items() if k in ("up", "fb")}
    doc = outcome.build("upgrade", result, Path("lab.ini"), now, now, check_mode=True)
    assert {h["state"] for h in doc["hosts"]} == {"planned"}
    assert report.exit_code(doc) == 0


def test_a_leftover_tree_moved_aside_is_in_the_report(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    result = run_result(tmp_path)
    moved = {"path": "/opt/rocm-5.2.0", "action": "moved",
             "reason": "1 file(s) there came from no package: /opt/rocm-5.2.0/share/notes.txt",
             "backup": "/var/backups/rocm-provision/rocm_remove/20261203T1Z/rocm-5.2.0"}
    result.stats["provision_remove"] = {"up": {"moved": [moved]}}
    doc = outcome.build("upgrade", result, Path("lab.ini"), now, now)
    up = next(h for h in doc["hosts"] if h["name"] == "up")
    assert up["notes"] == [f"/opt/rocm-5.2.0 was not deleted, moved to {moved['backup']}: {moved['reason']}"]
    assert "/opt/rocm-5.2.0 was not deleted, moved to" in report.markdown(doc)
