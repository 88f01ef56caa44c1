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


def _solver_model(broken: dict[str, list[str]], calls: list[dict[str, str]]) -> workaround.Runner:
    """MIOpen-like: case X hits the listed switches' solvers; a solver is off when its own switch or its
    family's switch is 0 (the ladder's family field says which family a switch belongs to)."""
    family_switch = {e["family"]: next(iter(e["env"])) for e in workaround.load_ladder() if e["level"] == "family"}
    family_of = {next(iter(e["env"])): e["family"] for e in workaround.load_ladder()}

    def off(switch: str, env: dict[str, str]) -> bool:
        return env.get(switch) == "0" or env.get(family_switch[family_of[switch]]) == "0"

    def run(run_cases: list[cases.ConvCase], env: dict[str, str]) -> dict[str, str]:
        calls.append(env)
        return {c.name: "pass" if all(off(s, env) for s in broken.get(c.name, [])) else "crash" for c in run_cases}

    return run


def test_two_narrow_solvers_and_a_family_give_exactly_three_switches() -> None:
    """Two broken single solvers in different families plus a broken family with no single-solver switches."""
    a, b, c, ok = QUICK[0], QUICK[1], QUICK[2], QUICK[3]
    broken = {a.name: ["MIOPEN_DEBUG_CONV_DIRECT_OCL_WRW2"], b.name: ["MIOPEN_DEBUG_AMD_WINOGRAD_RXS_F3X2"],
              c.name: ["MIOPEN_DEBUG_CONV_GEMM"]}
    res = workaround.search([a, b, c], _solver_model(broken, []), regression=[ok], miopen_release="3.5")
    assert res["status"] == "found" and res["verified"], res
    assert res["env"] == {"MIOPEN_DEBUG_CONV_DIRECT_OCL_WRW2": "0", "MIOPEN_DEBUG_AMD_WINOGRAD_RXS_F3X2": "0",
                          "MIOPEN_DEBUG_CONV_GEMM": "0"}
    assert res["fixes"] == {a.name: ["MIOPEN_DEBUG_CONV_DIRECT_OCL_WRW2"],
                            b.name: ["MIOPEN_DEBUG_AMD_WINOGRAD_RXS_F3X2"], c.name: ["MIOPEN_DEBUG_CONV_GEMM"]}


def test_a_case_that_needs_two_narrow_switches_at_once_gets_two_narrow_ones() -> None:
    """One case hits two broken solvers in two families (fwd in one, wrw in the other): no single switch
    fixes it; the family pair does, and so does the pair of narrow switches, which must be the answer."""
    a, ok = QUICK[0], QUICK[1]
    broken = {a.name: ["MIOPEN_DEBUG_CONV_DIRECT_OCL_WRW2", "MIOPEN_DEBUG_AMD_WINOGRAD_RXS_F2X3_G1"]}
    calls: list[dict[str, str]] = []
    res = workaround.search([a], _solver_model(broken, calls), regression=[ok], miopen_release="2.17")
    assert res["status"] == "found", res
    assert res["env"] == {"MIOPEN_DEBUG_CONV_DIRECT_OCL_WRW2": "0", "MIOPEN_DEBUG_AMD_WINOGRAD_RXS_F2X3_G1": "0"}
    assert res["cost"] == 2
    purposes = [t["purpose"] for t in res["trials"]]
    assert "combination: every family off" in purposes
    assert len(purposes) < 40  # halving, not one trial per single solver and pair


def test_a_case_that_needs_three_switches_at_once() -> None:
    """A case whose fwd, bwd-data and bwd-weight passes each hit another broken solver (GEMM family, a direct
    and a Winograd solver): no single switch nor pair fixes it; the answer is still the three switches."""
    a, ok = QUICK[0], QUICK[1]
    broken = {a.name: ["MIOPEN_DEBUG_CONV_GEMM", "MIOPEN_DEBUG_CONV_DIRECT_OCL_WRW2",
                       "MIOPEN_DEBUG_AMD_WINOGRAD_RXS_F3X2"]}
    res = workaround.search([a], _solver_model(broken, []), regression=[ok], miopen_release="2.17")
    assert res["status"] == "found", res
    assert res["env"] == {"MIOPEN_DEBUG_CONV_GEMM": "0", "MIOPEN_DEBUG_CONV_DIRECT_OCL_WRW2": "0",
                          "MIOPEN_DEBUG_AMD_WINOGRAD_RXS_F3X2": "0"}


def test_minimisation_drops_the_broad_switch_first() -> None:
    """Union {family, narrow} where either alone suffices: the family goes, the narrow switch stays."""
    a = QUICK[0]
    ladder = [
        {"level": "family", "family": "direct", "env": {"MIOPEN_DEBUG_CONV_DIRECT": "0"}},
        {"level": "solver", "family": "direct", "env": {"MIOPEN_DEBUG_CONV_DIRECT_OCL_WRW2": "0"}},
        {"level": "family", "family": "gemm", "env": {"MIOPEN_DEBUG_CONV_GEMM": "0"}},
    ]

    # The case passes with the narrow switch, or with DIRECT and GEMM together: the cover may take the
    # family pair first if it ranks it so; minimisation must still end on the narrow switch alone.
    def runner(run_cases: list[cases.ConvCase], env: dict[str, str]) -> dict[str, str]:
        ok = env.get("MIOPEN_DEBUG_CONV_DIRECT_OCL_WRW2") == "0" or (
            env.get("MIOPEN_DEBUG_CONV_DIRECT") == "0" and env.get("MIOPEN_DEBUG_CONV_GEMM") == "0")
        return {c.name: "pass" if ok else "crash" for c in run_cases}

    res = workaround.search([a], runner, ladder=ladder)
    assert res["env"] == {"MIOPEN_DEBUG_CONV_DIRECT_OCL_WRW2": "0"}
    drops = [t["purpose"] for t in res["trials"] if t["purpose"].startswith("minimise")]
    broad = ("minimise: drop MIOPEN_DEBUG_CONV_DIRECT", "minimise: drop MIOPEN_DEBUG_CONV_GEMM")
    assert drops == [] or drops[0] in broad


def test_only_names_the_hosts_miopen_release_reads_are_tried() -> None:
    """ROCm 5.2's MIOpen 2.17 has no FURY / CK / group-conv switches: the search never sets them there."""
    a = QUICK[0]
    broken = {a.name: ["MIOPEN_DEBUG_CONV_IMPLICIT_GEMM_ASM_FWD_GTC_XDLOPS"]}
    calls: list[dict[str, str]] = []
    workaround.search([a], _solver_model(broken, calls), miopen_release="2.17")
    tried = {k for env in calls for k in env}
    assert "MIOPEN_DEBUG_CONV_IMPLICIT_GEMM_ASM_FWD_GTC_XDLOPS" in tried
    assert not tried & {"MIOPEN_DEBUG_CONV_CK_IGEMM_FWD_V6R1_DLOPS_NCHW", "MIOPEN_DEBUG_AMD_WINOGRAD_FURY_RXS_F2X3",
                        "MIOPEN_DEBUG_GROUP_CONV_IMPLICIT_GEMM_HIP_FWD_XDLOPS"}
    assert {e["env"].popitem()[0] for e in workaround.load_ladder("2.17.0")} == {
        e["env"].popitem()[0] for e in workaround.load_ladder("21700")}


def test_ladder_releases_match_the_env_catalog() -> None:
    """workarounds.json ships with the suite; its release lists must say what env_vars.yaml says (one truth)."""
    from provision.envcatalog import env_catalog

    cat = env_catalog()
    for entry in json.loads(workaround.LADDER_FILE.read_text())["ladder"]:
        (name,) = entry["env"]
        var = cat.get(name)
        assert var is not None and var.miopen_releases is not None, name
        assert sorted(var.miopen_releases) == sorted(entry["miopen_releases"]), name
        assert all(src in cat.sources for src in var.miopen_releases.values()), name


def test_the_deadline_cuts_the_search_short_and_says_so() -> None:
    a = QUICK[0]
    broken = {a.name: ["MIOPEN_DEBUG_CONV_DIRECT_OCL_WRW2"]}
    res = workaround.search([a], _solver_model(broken, []), deadline=0.0)
    assert res["cut_short"] is True and len(res["trials"]) == 1  # only the baseline ran
    assert res["status"] == "not-found"


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
