"""``--find-workaround``: find the narrowest set of MIOpen solver switches that makes every case pass.

Torch-free. Each candidate env set runs in a *fresh* worker (MIOpen reads its env vars when it
loads), through ``runner``.

What "narrowest" means: a switch's cost is what it turns off. A single solver switch costs 1; a
family switch (``MIOPEN_DEBUG_CONV_<FAMILY>=0``) costs what its whole family holds (at least
``FAMILY_MIN_COST``, so a family without single-solver switches, GEMM or FFT, is still broad). The
answer minimises that cost, not the number of variables.

Order of trials:

1. the baseline (which failures reproduce);
2. each family alone, on the failing cases;
3. each single solver inside a family that helped, on the cases that family fixed;
4. for cases nothing single fixes: pairs of families; for a pair that helps, each single solver of
   one family together with the other family, then pairs of single solvers across the two
   families (narrow+narrow), so a case that needs two switches at once gets two narrow ones when
   two narrow ones suffice;
5. a weighted greedy set cover (new cases per unit of cost), one verification of the union on the
   failing and the passing cases, then minimisation that tries to drop the broadest switch first.

Only names the host's MIOpen release reads are tried (``miopen_releases`` of each ladder entry, the
same field as in provision/data/env_vars.yaml). ``deadline`` bounds the search (a monotonic time):
once it passes no new candidate is tried, and the report says the search was cut short.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.convcheck.cases import ConvCase

LADDER_FILE = Path(__file__).with_name("workarounds.json")
FAMILY_MIN_COST = 8  # a family switch without narrow switches (GEMM, FFT) still turns off a whole algorithm

# Runs cases with extra env vars in a fresh worker; returns case name -> status.
Runner = Callable[[list[ConvCase], dict[str, str]], dict[str, str]]
# Called after every trial with (trials done, the trial's purpose).
Progress = Callable[[int, str], None]


def load_ladder(miopen_release: str | None = None) -> list[dict[str, Any]]:
    """The ladder, restricted to names ``miopen_release`` reads (None: names every listed release reads)."""
    data = json.loads(LADDER_FILE.read_text(encoding="utf-8"))
    ladder = list(data["ladder"])
    known = list(data.get("miopen_releases", {}))
    return [e for e in ladder if reads(e, miopen_release, known)]


def known_releases() -> dict[str, str]:
    """MIOpen releases the ladder knows: release -> what ships it."""
    return dict(json.loads(LADDER_FILE.read_text(encoding="utf-8")).get("miopen_releases", {}))


def reads(entry: dict[str, Any], release: str | None, known: list[str]) -> bool:
    releases = entry.get("miopen_releases") or []
    if release is None:
        return all(r in releases for r in known)
    return release_key(release) in {release_key(r) for r in releases}


def release_key(version: str) -> str:
    """'2.17.0' / '2.17' / '21700' -> '2.17' (major.minor: patch releases keep their env names)."""
    text = str(version).strip()
    if text.isdigit() and len(text) >= 4:
        number = int(text)
        return f"{number // 10000}.{number // 100 % 100}"
    parts = text.split(".")
    return ".".join(parts[:2])


@dataclass
class _Candidate:
    env: dict[str, str]
    level: str  # solver | family | pair
    fixed: set[str] = field(default_factory=set)


def switch_costs(ladder: list[dict[str, Any]]) -> dict[str, int]:
    """Cost of each switch: 1 for a single solver, the size of its family (>= FAMILY_MIN_COST) for a family."""
    family_size: dict[str, int] = {}
    for entry in ladder:
        if entry["level"] == "solver":
            family_size[entry["family"]] = family_size.get(entry["family"], 0) + 1
    costs: dict[str, int] = {}
    for entry in ladder:
        for name in entry["env"]:
            if entry["level"] == "family":
                costs[name] = max(FAMILY_MIN_COST, family_size.get(entry["family"], 0) + 1)
            else:
                costs[name] = 1
    return costs


def _passing(statuses: dict[str, str]) -> set[str]:
    return {name for name, status in statuses.items() if status == "pass"}


def search(
    failing: list[ConvCase],
    runner: Runner,
    ladder: list[dict[str, Any]] | None = None,
    regression: list[ConvCase] | None = None,
    deadline: float | None = None,
    progress: Progress | None = None,
    miopen_release: str | None = None,
) -> dict[str, Any]:
    """Search the ladder for env vars that fix ``failing`` without breaking ``regression``."""
    ladder = ladder if ladder is not None else load_ladder(miopen_release)
    costs = switch_costs(ladder)
    regression = [c for c in (regression or []) if c.name not in {f.name for f in failing}]
    trials: list[dict[str, Any]] = []
    started = time.monotonic()
    cut_short = [False]

    def out_of_time() -> bool:
        if deadline is not None and time.monotonic() >= deadline:
            cut_short[0] = True
        return cut_short[0]

    def trial(cases: list[ConvCase], env: dict[str, str], purpose: str) -> set[str]:
        t0 = time.monotonic()
        statuses = runner(cases, env)
        passed = _passing(statuses)
        trials.append({"purpose": purpose, "env": env, "cases": len(cases), "passed": sorted(passed),
                       "failed": sorted(set(statuses) - passed), "seconds": round(time.monotonic() - t0, 2)})
        if progress:
            progress(len(trials), purpose)
        return passed

    base = trial(failing, {}, "baseline")
    still = [c for c in failing if c.name not in base]
    result: dict[str, Any] = {"not_reproduced": sorted(c.name for c in failing if c.name in base), "trials": trials,
                              "miopen_release": miopen_release, "names_tried_from": len(ladder)}
    if not still:
        return {**result, "status": "none-needed", "env": {}, "fixes": {}, "unfixed": [], "cut_short": False,
                "seconds": round(time.monotonic() - started, 2)}
    names = {c.name for c in still}
    by_name = {c.name: c for c in still}

    candidates: list[_Candidate] = []
    families = [e for e in ladder if e["level"] == "family"]
    solvers_of: dict[str, list[dict[str, Any]]] = {}
    for entry in ladder:
        if entry["level"] == "solver":
            solvers_of.setdefault(entry["family"], []).append(entry)

    family_fixes: dict[str, set[str]] = {}
    for entry in families:
        if out_of_time():
            break
        fixed = trial(still, entry["env"], f"family {entry['family']}") & names
        family_fixes[entry["family"]] = fixed
        if fixed:
            candidates.append(_Candidate(dict(entry["env"]), "family", fixed))
    for fam, fam_fixed in family_fixes.items():
        for entry in solvers_of.get(fam, []) if fam_fixed else []:
            if out_of_time():
                break
            subset = [by_name[n] for n in sorted(fam_fixed)]
            fixed = trial(subset, entry["env"], f"solver in {fam}") & names
            if fixed:
                candidates.append(_Candidate(dict(entry["env"]), "solver", fixed))

    uncovered = names - set().union(*(c.fixed for c in candidates))
    if uncovered and not out_of_time():
        # Cases no single switch fixes need two or more at once: start from every family off, keep the
        # families needed, then narrow each kept family to the single solvers needed (delta debugging,
        # halving), so such a case gets narrow switches across families whenever narrow ones suffice.
        combo = _combination([by_name[n] for n in sorted(uncovered)], families, solvers_of, trial, out_of_time)
        if combo is not None:
            candidates.append(combo)
            uncovered -= combo.fixed

    chosen = _cover(candidates, names, costs)
    env: dict[str, str] = {}
    for cand in chosen:
        env.update(cand.env)
    check_cases = still + regression

    def verifies(candidate_env: dict[str, str], purpose: str) -> bool:
        return trial(check_cases, candidate_env, purpose) >= {c.name for c in check_cases}

    verified = bool(env) and verifies(env, "verify union")
    if verified and len(env) > 1:
        # Broadest first: dropping a family is worth more than dropping a single solver.
        for var in sorted(env, key=lambda k: (-costs.get(k, 1), k)):
            if out_of_time():
                break
            smaller = {k: v for k, v in env.items() if k != var}
            if smaller and verifies(smaller, f"minimise: drop {var}"):
                env = smaller
    covered = set().union(*(c.fixed for c in chosen)) if chosen else set()
    fixes = {name: sorted(k for cand in chosen if name in cand.fixed for k in cand.env if k in env)
             for name in sorted(covered)}
    status = "found" if verified and covered == names else ("partial" if covered else "not-found")
    return {
        **result,
        "status": status,
        "env": env,
        "cost": sum(costs.get(k, 1) for k in env),
        "verified": verified,
        "fixes": fixes,
        "unfixed": sorted(names - covered),
        "cut_short": cut_short[0],
        "seconds": round(time.monotonic() - started, 2),
        "profile": "".join(f"export {k}={v}\n" for k, v in env.items()),
    }


def _combination(cases: list[ConvCase], families: list[dict[str, Any]],
                 solvers_of: dict[str, list[dict[str, Any]]],
                 trial: Callable[[list[ConvCase], dict[str, str], str], set[str]],
                 out_of_time: Callable[[], bool]) -> _Candidate | None:
    """The smallest switch set found by delta debugging that makes ``cases`` pass together, or None."""
    names = {c.name for c in cases}
    env = {k: v for f in families for k, v in f["env"].items()}
    if not env or trial(cases, env, "combination: every family off") < names:
        return None
    kept = list(families)
    for fam in families:  # keep only the families needed
        if out_of_time():
            break
        rest = [f for f in kept if f is not fam]
        smaller = {k: v for f in rest for k, v in f["env"].items()}
        if smaller and trial(cases, smaller, f"combination: without family {fam['family']}") >= names:
            kept = rest
    env = {k: v for f in kept for k, v in f["env"].items()}
    for fam in kept:  # replace each family by the single solvers needed
        narrow = solvers_of.get(fam["family"], [])
        if not narrow or out_of_time():
            continue
        base = {k: v for k, v in env.items() if k not in fam["env"]}
        every = {k: v for entry in narrow for k, v in entry["env"].items()}
        if trial(cases, {**base, **every}, f"combination: {fam['family']} as single solvers") < names:
            continue
        needed = _shrink(cases, base, narrow, trial, out_of_time, fam["family"])
        env = {**base, **{k: v for entry in needed for k, v in entry["env"].items()}}
    return _Candidate(env, "pair", set(names))


def _shrink(cases: list[ConvCase], base: dict[str, str], entries: list[dict[str, Any]],
            trial: Callable[[list[ConvCase], dict[str, str], str], set[str]], out_of_time: Callable[[], bool],
            family: str) -> list[dict[str, Any]]:
    """A small subset of ``entries`` that, with ``base``, still makes ``cases`` pass: halves are dropped while
    the cases pass without them, then single entries (a light ddmin; the full set is known to pass)."""
    names = {c.name for c in cases}

    def passes(subset: list[dict[str, Any]], what: str) -> bool:
        env = {**base, **{k: v for e in subset for k, v in e["env"].items()}}
        return trial(cases, env, f"combination: {family} {what}") >= names

    needed = list(entries)
    chunk = len(needed) // 2
    while chunk >= 1:
        i = 0
        while i < len(needed):
            if out_of_time():
                return needed
            rest = needed[:i] + needed[i + chunk:]
            if rest and passes(rest, f"without {len(needed) - len(rest)} of {len(needed)} single solvers"):
                needed = rest
            else:
                i += chunk
        if chunk == 1:
            break
        chunk //= 2
    return needed


def _cover(candidates: list[_Candidate], names: set[str], costs: dict[str, int]) -> list[_Candidate]:
    """Weighted greedy set cover: most new cases per unit of new cost; ties go to solver, family, pair."""
    rank = {"solver": 0, "family": 1, "pair": 2}
    remaining = set(names)
    chosen: list[_Candidate] = []
    chosen_vars: set[str] = set()
    while remaining:
        useful = [c for c in candidates if c.fixed & remaining]
        if not useful:
            break
        best = max(useful, key=lambda c, left=frozenset(remaining), have=frozenset(chosen_vars): (
            len(c.fixed & left) / (sum(costs.get(k, 1) for k in c.env if k not in have) or 0.5), -rank[c.level]))
        chosen.append(best)
        chosen_vars |= set(best.env)
        remaining -= best.fixed
    return chosen
