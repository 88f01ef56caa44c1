"""``--find-workaround``: find a minimal set of MIOpen solver switches that makes every case pass.

Torch-free. Each candidate env set runs in a *fresh* worker (MIOpen reads its env vars when it
loads), through ``runner``. Order: solver families first (``MIOPEN_DEBUG_CONV_<FAMILY>=0``), then
the single solvers inside each family that helped, then pairs of families for cases no single
switch fixes. A greedy set cover picks the switches (narrow solver switches preferred over whole
families), the union is verified in one run, and then each switch is dropped if the rest still
pass, so the answer is 1-minimal and ready to become the host's fallback profile.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from provision.convcheck.cases import ConvCase

LADDER_FILE = Path(__file__).with_name("workarounds.json")

# Runs cases with extra env vars in a fresh worker; returns case name -> status.
Runner = Callable[[list[ConvCase], dict[str, str]], dict[str, str]]


def load_ladder() -> list[dict[str, Any]]:
    return list(json.loads(LADDER_FILE.read_text(encoding="utf-8"))["ladder"])


def _passing(statuses: dict[str, str]) -> set[str]:
    return {name for name, status in statuses.items() if status == "pass"}


def search(
    failing: list[ConvCase],
    runner: Runner,
    ladder: list[dict[str, Any]] | None = None,
    regression: list[ConvCase] | None = None,
) -> dict[str, Any]:
    """Search the ladder for env vars that fix ``failing`` without breaking ``regression``."""
    ladder = ladder if ladder is not None else load_ladder()
    regression = [c for c in (regression or []) if c.name not in {f.name for f in failing}]
    trials: list[dict[str, Any]] = []

    def trial(cases: list[ConvCase], env: dict[str, str], purpose: str) -> set[str]:
        statuses = runner(cases, env)
        passed = _passing(statuses)
        trials.append({"purpose": purpose, "env": env, "cases": len(cases),
                       "passed": sorted(passed), "failed": sorted(set(statuses) - passed)})
        return passed

    base = trial(failing, {}, "baseline")
    still = [c for c in failing if c.name not in base]
    result: dict[str, Any] = {"not_reproduced": sorted(c.name for c in failing if c.name in base), "trials": trials}
    if not still:
        return {**result, "status": "none-needed", "env": {}, "fixes": {}, "unfixed": []}
    names = {c.name for c in still}

    candidates: list[tuple[dict[str, str], str, set[str]]] = []  # (env, level, fixed case names)
    families = [e for e in ladder if e["level"] == "family"]
    family_fixes: dict[str, set[str]] = {}
    for entry in families:
        fixed = trial(still, entry["env"], f"family {entry['family']}") & names
        family_fixes[entry["family"]] = fixed
        if fixed:
            candidates.append((dict(entry["env"]), "family", fixed))
    for entry in ladder:
        if entry["level"] != "solver" or not family_fixes.get(entry["family"]):
            continue
        subset = [c for c in still if c.name in family_fixes[entry["family"]]]
        fixed = trial(subset, entry["env"], f"solver in {entry['family']}") & names
        if fixed:
            candidates.append((dict(entry["env"]), "solver", fixed))
    uncovered = names - set().union(*(c[2] for c in candidates)) if candidates else set(names)
    if uncovered:
        rest = [c for c in still if c.name in uncovered]
        for a, b in itertools.combinations(families, 2):
            env = {**a["env"], **b["env"]}
            fixed = trial(rest, env, f"families {a['family']}+{b['family']}") & uncovered
            if fixed:
                candidates.append((env, "pair", fixed))
                uncovered -= fixed
            if not uncovered:
                break

    chosen = _cover(candidates, names)
    env: dict[str, str] = {}
    for cand in chosen:
        env.update(cand[0])
    check_cases = still + regression

    def verifies(candidate_env: dict[str, str], purpose: str) -> bool:
        return trial(check_cases, candidate_env, purpose) >= {c.name for c in check_cases}

    verified = bool(env) and verifies(env, "verify union")
    if verified and len(env) > 1:
        for var in list(env)[::-1]:
            smaller = {k: v for k, v in env.items() if k != var}
            if smaller and verifies(smaller, f"minimise: drop {var}"):
                env = smaller
    covered = set().union(*(c[2] for c in chosen)) if chosen else set()
    fixes = {name: sorted(k for cand in chosen if name in cand[2] for k in cand[0]) for name in sorted(covered)}
    status = "found" if verified and covered == names else ("partial" if covered else "not-found")
    return {
        **result,
        "status": status,
        "env": env,
        "verified": verified,
        "fixes": fixes,
        "unfixed": sorted(names - covered),
        "profile": "".join(f"export {k}={v}\n" for k, v in env.items()),
    }


def _cover(candidates: list[tuple[dict[str, str], str, set[str]]],
           names: set[str]) -> list[tuple[dict[str, str], str, set[str]]]:
    """Greedy set cover; ties go to fewer variables, then solver before family before pair."""
    rank = {"solver": 0, "family": 1, "pair": 2}
    remaining = set(names)
    chosen = []
    while remaining:
        best = max(
            candidates,
            key=lambda c: (len(c[2] & remaining), -len(c[0]), -rank[c[1]]),
            default=None,
        )
        if best is None or not best[2] & remaining:
            break
        chosen.append(best)
        remaining -= best[2]
    return chosen
