"""The real worker path on CPU with injected faults: crashes are recorded, workers replaced, runs go on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from provision.convcheck import cases, faults
from provision.convcheck.pool import WorkerSpec, run_suite

pytest.importorskip("torch")

QUICK = cases.generate("quick", "cpu")
A, B, C, D = QUICK[:4]


def _spec(tmp_path: Path, rules: list[dict[str, Any]] | None = None) -> WorkerSpec:
    env = {faults.ENV_VAR: json.dumps(rules)} if rules else {}
    return WorkerSpec(device="cpu", env=env, log_dir=tmp_path, startup_timeout=120, timing=False)


def test_abort_mid_case_is_recorded_worker_replaced_and_run_goes_on(tmp_path: Path) -> None:
    streamed: list[dict[str, Any]] = []
    rules = [{"cases": B.name, "kind": "abort", "pass": "fwd"}]
    run = run_suite([A, B, C, D], _spec(tmp_path, rules), timeout=60, sink=streamed.append)
    status = {r["name"]: r for r in run.results}
    assert [status[c.name]["status"] for c in (A, B, C, D)] == ["pass", "crash", "pass", "pass"]
    crash = status[B.name]["crash"]
    assert crash["kind"] == "gpu_memory_fault" and crash["signal"] == "SIGABRT"
    assert status[B.name]["reproducible"] == "deterministic"
    assert status[B.name]["retry"]["status"] == "crash"
    # first worker, the retry worker (it died too), then one more for C and D: replaced only on death
    assert run.workers_started == 3
    # the crash was streamed before the retry result and before the cases after it
    names = [r["name"] for r in streamed]
    assert names.index(B.name) < names.index(C.name)
    assert next(r for r in streamed if r["name"] == B.name).get("retry") is None


def test_flaky_crash_is_told_apart_and_retry_worker_is_reused(tmp_path: Path) -> None:
    rules = [{"cases": A.name, "kind": "segv", "pass": "bwd_data", "once_file": str(tmp_path / "fired")}]
    run = run_suite([A, B, C], _spec(tmp_path, rules), timeout=60)
    first = run.results[0]
    assert first["status"] == "crash" and first["crash"]["signal"] == "SIGSEGV"
    assert first["reproducible"] == "flaky" and first["retry"]["status"] == "pass"
    assert [r["status"] for r in run.results[1:]] == ["pass", "pass"]
    assert run.workers_started == 2


def test_hang_is_killed_by_timeout(tmp_path: Path) -> None:
    rules = [{"cases": B.name, "kind": "hang"}]
    run = run_suite([A, B, C], _spec(tmp_path, rules), timeout=8, retry=False)
    hung = run.results[1]
    assert hung["status"] == "timeout" and hung["crash"]["kind"] == "hang"
    assert hung["crash"]["signal"] == "SIGKILL"
    assert run.results[2]["status"] == "pass"


def test_poisoned_context_error_replaces_the_worker(tmp_path: Path) -> None:
    rules = [{"cases": A.name, "kind": "hip_error", "pass": "bwd_weight"}]
    run = run_suite([A, B], _spec(tmp_path, rules), timeout=60, retry=False)
    a = run.results[0]
    assert a["status"] == "error" and a["fatal"] and "illegal memory access" in a["error"]
    assert a["crash"]["kind"] == "hip_error"
    assert run.results[1]["status"] == "pass"
    assert run.workers_started == 2


def test_wrong_values_are_a_fail_not_a_crash(tmp_path: Path) -> None:
    rules = [{"cases": A.name, "kind": "wrong", "pass": "bwd_data"}]
    run = run_suite([A], _spec(tmp_path, rules), timeout=60)
    assert run.results[0]["status"] == "fail"
    assert not run.results[0]["passes"]["bwd_data"]["ok"] and run.results[0]["passes"]["fwd"]["ok"]
    assert run.workers_started == 1


def test_orchestrator_never_imports_torch(tmp_path: Path) -> None:
    code = (
        "import sys, json\n"
        "from provision.convcheck import cli\n"
        f"rc = cli.main(['--device', 'cpu', '--cases', {A.name!r}, '--quiet',"
        f" '--json', {str(tmp_path / 'r.json')!r}])\n"
        "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert json.loads(out.stdout.splitlines()[-1]) == {"rc": 0, "torch": False}
