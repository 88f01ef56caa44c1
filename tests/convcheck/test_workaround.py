"""Workaround search: the logic with a fake runner, and end-to-end with the fault-injection backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provision.convcheck import cases, faults, workaround

from .conftest import run_cli

QUICK = cases.generate("quick", "cpu")


def _fake_runner(fixed_by: dict[str, list[dict[str, str]]], calls: list[dict[str, str]]) -> workaround.Runner:
    """Case X passes when the env contains all vars of any alternative in fixed_by[X]."""

    def run(run_cases: list[cases.ConvCase], env: dict[str, str]) -> dict[str, str]:
        calls.append(env)
        out = {}
        for c in run_cases:
            alts = fixed_by.get(c.name)
            ok = alts is None or any(all(env.get(k) == v for k, v in alt.items()) for alt in alts)
            out[c.name] = "pass" if ok else "crash"
        return out

    return run


def test_prefers_single_solvers_over_whole_families() -> None:
    a, b, ok = QUICK[0], QUICK[1], QUICK[2]
    fixed_by = {
        a.name: [{"MIOPEN_DEBUG_CONV_DIRECT": "0"}, {"MIOPEN_DEBUG_CONV_DIRECT_OCL_WRW2": "0"}],
        b.name: [{"MIOPEN_DEBUG_CONV_WINOGRAD": "0"}, {"MIOPEN_DEBUG_AMD_WINOGRAD_RXS_F2X3": "0"}],
    }
    calls: list[dict[str, str]] = []
    res = workaround.search([a, b], _fake_runner(fixed_by, calls), regression=[ok])
    assert res["status"] == "found" and res["verified"]
    assert res["env"] == {"MIOPEN_DEBUG_CONV_DIRECT_OCL_WRW2": "0", "MIOPEN_DEBUG_AMD_WINOGRAD_RXS_F2X3": "0"}
    assert res["fixes"][a.name] == ["MIOPEN_DEBUG_CONV_DIRECT_OCL_WRW2"]
    # families were tried before single solvers, and single solvers only inside helpful families
    fam_idx = max(i for i, e in enumerate(calls) if e == {"MIOPEN_DEBUG_CONV_FFT": "0"})
    assert all(len(e) == 1 and "MIOPEN_DEBUG_CONV_FFT" not in e for e in calls[fam_idx + 1:] if len(e) == 1)
    assert not any("IMPLICIT_GEMM_" in k for e in calls for k in e)
    assert "export MIOPEN_DEBUG_CONV_DIRECT_OCL_WRW2=0\n" in res["profile"]


def test_case_that_needs_two_families_and_minimisation() -> None:
    a = QUICK[0]
    fixed_by = {a.name: [{"MIOPEN_DEBUG_CONV_GEMM": "0", "MIOPEN_DEBUG_CONV_WINOGRAD": "0"}]}
    res = workaround.search([a], _fake_runner(fixed_by, []))
    assert res["status"] == "found"
    assert res["env"] == {"MIOPEN_DEBUG_CONV_GEMM": "0", "MIOPEN_DEBUG_CONV_WINOGRAD": "0"}


def test_regression_breakage_is_not_reported_as_found() -> None:
    a, other = QUICK[0], QUICK[1]

    def runner(run_cases: list[cases.ConvCase], env: dict[str, str]) -> dict[str, str]:
        gemm_off = env.get("MIOPEN_DEBUG_CONV_GEMM") == "0"
        return {c.name: ("pass" if (c is a) == gemm_off else "fail") for c in run_cases}

    res = workaround.search([a], runner, regression=[other])
    assert res["status"] != "found" and not res["verified"]


def test_nothing_to_do_when_failure_does_not_reproduce() -> None:
    res = workaround.search([QUICK[0]], lambda cs, env: {c.name: "pass" for c in cs})
    assert res["status"] == "none-needed" and res["not_reproduced"] == [QUICK[0].name]


def test_ladder_uses_only_real_miopen_names() -> None:
    ladder = workaround.load_ladder()
    names = [k for e in ladder for k in e["env"]]
    assert "MIOPEN_DEBUG_CONV_DET" not in names
    assert all(n.startswith("MIOPEN_DEBUG_") for n in names) and all(e["source"] for e in ladder)
    families = [e for e in ladder if e["level"] == "family"]
    assert ladder[: len(families)] == families, "families must come first"
    assert {e["family"] for e in families} == {"gemm", "winograd", "implicit_gemm", "direct", "fft"}


@pytest.mark.slow
def test_find_workaround_end_to_end_with_fault_backend(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    crash_case, wrong_case, good = QUICK[3], QUICK[4], QUICK[5]
    rules = [
        {"cases": crash_case.name, "kind": "abort", "pass": "bwd_weight",
         # like MIOpen: the solver's own switch or its family's switch turns it off
         "unless": [{"MIOPEN_DEBUG_CONV_DIRECT_OCL_WRW2": "0"}, {"MIOPEN_DEBUG_CONV_DIRECT": "0"}]},
        {"cases": wrong_case.name, "kind": "wrong", "unless": {"MIOPEN_DEBUG_CONV_GEMM": "0"}},
    ]
    out = tmp_path / "r.json"
    proc = run_cli("--device", "cpu", "--cases", ",".join(c.name for c in (crash_case, wrong_case, good)),
                   "--find-workaround", "--json", str(out), env={faults.ENV_VAR: json.dumps(rules)})
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(out.read_text())
    status = {c["name"]: c["status"] for c in doc["cases"]}
    assert status == {crash_case.name: "crash", wrong_case.name: "fail", good.name: "pass"}
    wa = doc["workaround"]
    assert wa["status"] == "found"
    assert wa["env"] == {"MIOPEN_DEBUG_CONV_DIRECT_OCL_WRW2": "0", "MIOPEN_DEBUG_CONV_GEMM": "0"}
    assert "workaround search: found" in proc.stdout
    purposes = [t["purpose"] for t in wa["trials"]]
    assert purposes.index("family direct") < purposes.index("solver in direct")
    assert all(t["env"].get("MIOPEN_USER_DB_PATH") is None for t in wa["trials"])  # the search's own vars only
