"""provision.converge: the fingerprint of a run's inputs and the converged decision."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from provision.converge import STATE_SCHEMA, decide, fingerprint

PLAN = {"action": "fallback", "env": {"MIOPEN_DEBUG_CONV_GEMM": "0"}, "env_remove": ["HSA_OVERRIDE_GFX_VERSION"],
        "reasons": ["first run"]}
VARS = {"provision_mode": "auto", "provision_verify_device": "cpu", "provision_serial": "2"}
VERIFY = {"venv": "/opt/venvs/lab-verify-cpu", "profile": None}


def test_fingerprint_ignores_what_does_not_change_the_host() -> None:
    base = fingerprint(PLAN, VARS, VERIFY)
    # reasons and the overrides still to remove differ between the first run and a re-run of the same host
    assert fingerprint(PLAN | {"env_remove": [], "reasons": ["again"]}, VARS, VERIFY) == base
    assert fingerprint(PLAN, VARS | {"provision_serial": "50%", "provision_lab_x": 1}, VERIFY) == base
    # a default spelled out is the same input as the default
    assert fingerprint(PLAN, VARS | {"provision_verify_profile": "quick"}, VERIFY) == base


def test_fingerprint_follows_every_input_that_changes_the_host() -> None:
    base = fingerprint(PLAN, VARS, VERIFY)
    assert fingerprint(PLAN | {"env": {"MIOPEN_DEBUG_CONV_GEMM": "1"}}, VARS, VERIFY) != base
    assert fingerprint(PLAN | {"action": "upgrade"}, VARS, VERIFY) != base
    assert fingerprint(PLAN, VARS | {"provision_verify_profile": "full"}, VERIFY) != base
    assert fingerprint(PLAN, VARS | {"provision_fallback_env": {"MIOPEN_DEBUG_CONV_FFT": "0"}}, VERIFY) != base
    assert fingerprint(PLAN, VARS, VERIFY | {"venv": "/home/u/venv"}) != base


def test_decide_needs_same_fingerprint_and_same_host() -> None:
    snap = {"packages": {"rocm-core": "7.0.0"}, "opt_rocm": "/opt/rocm-7.0.0", "files": {"/etc/a": "1"}}
    recorded = {"schema": STATE_SCHEMA, "fingerprint": "F", "snapshot": snap, "recorded_at": "T",
                "verification": {"verdict": "pass"}}
    ok = decide({"recorded": recorded, "snapshot": snap}, "F")
    assert ok["converged"] and ok["verified_at"] == "T" and ok["verification"] == {"verdict": "pass"}
    assert not decide({"recorded": recorded, "snapshot": snap}, "F", force=True)["converged"]
    assert "inputs changed" in decide({"recorded": recorded, "snapshot": snap}, "G")["reason"]
    assert "no verified run" in decide({"recorded": None, "snapshot": None}, "F")["reason"]
    moved = decide({"recorded": recorded, "snapshot": snap | {"packages": {"rocm-core": "7.0.1"}}}, "F")
    assert not moved["converged"] and "packages rocm-core" in moved["reason"]
    edited = decide({"recorded": recorded, "snapshot": snap | {"files": {"/etc/a": "2", "/etc/b": "3"}}}, "F")
    assert not edited["converged"] and "files /etc/a" in edited["reason"] and "files /etc/b" in edited["reason"]


def test_a_converged_host_is_reported_with_the_verification_it_last_passed(tmp_path: Path) -> None:
    from provision import outcome, report
    from provision.runner import HostProgress, RunResult

    pre = {"plan": {"action": "fallback", "reasons": [], "warnings": [], "env": {}, "env_remove": []},
           "gpus": [], "os": None, "rocm": {"version": "5.2.0", "packages": {}}}
    converged = {"converged": True, "reason": "", "verified_at": "2026-11-26T10:17:57Z",
                 "verification": {"verdict": "pass", "passed": 30, "failed": 0, "crashed": 0, "total": 30,
                                  "device": "cpu", "torch": "2.13.0+cpu"}}
    run = RunResult(tmp_path / "run", 0, "successful", {"fb": HostProgress("fb", status="ok")},
                    {"provision_preflight": {"fb": pre}, "provision_converged": {"fb": converged}})
    now = datetime.now(UTC)
    host = outcome.build("upgrade", run, Path("lab.ini"), now, now)["hosts"][0]
    assert host["state"] == "fallback-applied" and host["converged"] and host["changed"] == 0
    assert "2026-11-26T10:17:57Z" in host["reason"] and "--reverify" in host["reason"]
    assert host["verification"]["verdict"] == "pass"
    md = report.markdown(outcome.build("upgrade", run, Path("lab.ini"), now, now))
    assert "pass (30/30 pass on cpu), converged: last verified 2026-11-26T10:17:57Z" in md
    checked = outcome.build("upgrade", run, Path("lab.ini"), now, now, check_mode=True)["hosts"][0]
    assert checked["state"] == "planned" and checked["reason"].startswith("converged: nothing to do")
