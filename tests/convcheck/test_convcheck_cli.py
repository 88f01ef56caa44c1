"""The command line as a host runs it: exit codes, verdicts, JSON schema, streamed JSONL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from provision.convcheck import faults

from .conftest import run_cli, validate

pytest.importorskip("torch")


def test_quick_on_cpu_passes_and_matches_schema(tmp_path: Path, schema: dict[str, Any]) -> None:
    out = tmp_path / "quick.json"
    proc = run_cli("--device", "cpu", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert validate(doc, schema) == []
    assert doc["verdict"] == "pass" and doc["device"] == {"requested": "cpu", "type": "cpu", "runtime": None}
    assert doc["summary"]["total"] == doc["summary"]["pass"] >= 20
    assert doc["env"]["PYTORCH_MIOPEN_SUGGEST_NHWC"] == "1"
    assert doc["env"]["HSA_DISABLE_COREDUMP_ON_EXCEPTION"] == "1"
    assert "VERDICT: PASS" in proc.stdout
    # every checked pass says what it could still miss; the summary gives the worst per dtype and pass
    passes = [r for c in doc["cases"] for r in c["passes"].values()]
    assert passes and all(isinstance(r["detection_floor"], float) and r["detection_floor"] > 0 for r in passes)
    assert set(doc["detection_floors"]) == {"fp32", "fp16", "bf16"}
    worst = max(r["detection_floor"] for c in doc["cases"] if c["params"]["dtype"] == "bf16"
                for r in c["passes"].values())
    assert worst == max(cell["worst"] for cell in doc["detection_floors"]["bf16"].values())
    assert "detection floor" in proc.stdout and "bf16 (goal ≤ 5 %)" in proc.stdout
    lines = (tmp_path / "quick.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["type"] == "host" and len(lines) == 1 + doc["summary"]["total"]


def test_auto_without_gpu_is_not_a_pass(tmp_path: Path, schema: dict[str, Any]) -> None:
    out = tmp_path / "auto.json"
    proc = run_cli("--cases", "fam-gemm", "--json", str(out), env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 3
    doc = json.loads(out.read_text())
    assert validate(doc, schema) == []
    assert doc["verdict"] == "no-gpu" and doc["device"]["type"] == "cpu" and doc["gpus"] == []
    assert "NO-GPU" in proc.stdout


def test_cuda_requested_without_gpu(tmp_path: Path) -> None:
    proc = run_cli("--device", "cuda", "--json", str(tmp_path / "x.json"), env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 3 and "no GPU" in proc.stderr
    assert json.loads((tmp_path / "x.json").read_text())["verdict"] == "no-gpu"


def test_usage_errors_exit_2() -> None:
    assert run_cli("--profile", "huge").returncode == 2
    assert run_cli("--device", "cpu", "--cases", "no-such-case").returncode == 2
    assert run_cli("--inject-faults", "{not json").returncode == 2
    helptext = run_cli("--help")
    assert helptext.returncode == 0 and "exit status" in helptext.stdout and "no GPU" in helptext.stdout


def test_crash_in_the_middle_still_yields_a_complete_report(tmp_path: Path, schema: dict[str, Any]) -> None:
    out = tmp_path / "crash.json"
    rules = [{"cases": "fam-winograd", "kind": "abort", "pass": "fwd"}]
    proc = run_cli("--device", "cpu", "--cases", "fam-", "--json", str(out),
                   env={faults.ENV_VAR: json.dumps(rules)})
    assert proc.returncode == 1
    doc = json.loads(out.read_text())
    assert validate(doc, schema) == []
    crashed = [c for c in doc["cases"] if c["status"] == "crash"]
    assert crashed and all(c["crash"]["kind"] == "gpu_memory_fault" for c in crashed)
    assert all(c["status"] == "pass" for c in doc["cases"] if "winograd" not in c["name"])
    assert "GPU memory access fault" in proc.stdout and "VERDICT: FAIL" in proc.stdout


def test_list_needs_no_worker() -> None:
    proc = run_cli("--list", "--profile", "full", "--cases", "repro-")
    assert proc.returncode == 0 and "repro-miopen1621" in proc.stdout
