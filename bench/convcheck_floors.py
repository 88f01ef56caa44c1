"""Detection floors of a convcheck run, before and after the error-model tolerances (issue 15).

    python bench/convcheck_floors.py --after bench/results/h200-full-floors.json \
        --before bench/results/h200-full.json

``--after``: a report with per-pass ``detection_floor`` (schema ≥ 1.1.0): worst and median floor per
dtype and pass, passes above the goal, and how close the real kernels came to the limits
(largest ``rms_ratio`` / ``max_ratio``). ``--before``: a schema 1.0.0 report of the same cases
(old Σ|terms| normalisation), whose floors are recomputed from what it recorded: a normalised pass
fails a uniform relative error e once e·max|ref|/scale > tolerance.nmax, i.e. floor =
nmax × scale / max_abs_ref (the nrms criterion is left out: the old report has no rms of the
reference; it can only lower a floor by the ratio (nrms/nmax)·(max|ref|/rms|ref|), about 1x for
fp16/bf16 and 0.4x for fp32); an exact pass allowed 0.5 per integer, floor = 0.5 / max_abs_ref
(0.5 / the exact-integer limit when the result goes beyond it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provision.convcheck.cases import DTYPES, PASSES
from provision.convcheck.tolerances import EXACT_INTEGER_LIMIT, FLOOR_GOAL


def _floors_after(doc: dict[str, Any]) -> dict[tuple[str, str], list[float]]:
    out: dict[tuple[str, str], list[float]] = {}
    for case in doc["cases"]:
        for p, rec in case.get("passes", {}).items():
            if rec.get("mode") in ("model", "exact") and rec.get("detection_floor") is not None:
                out.setdefault((case["params"]["dtype"], p), []).append(rec["detection_floor"])
    return out


def _floors_before(doc: dict[str, Any]) -> dict[tuple[str, str], list[float]]:
    out: dict[tuple[str, str], list[float]] = {}
    for case in doc["cases"]:
        dtype = case["params"]["dtype"]
        for p, rec in case.get("passes", {}).items():
            if rec.get("mode") == "normalised" and rec.get("max_abs_ref"):
                floor = rec["tolerance"]["nmax"] * rec["scale"] / rec["max_abs_ref"]
            elif rec.get("mode") == "exact" and rec.get("max_abs_ref"):
                floor = 0.5 / min(rec["max_abs_ref"], EXACT_INTEGER_LIMIT[dtype])
            else:
                continue
            out.setdefault((dtype, p), []).append(floor)
    return out


def _headroom(doc: dict[str, Any]) -> dict[tuple[str, str], tuple[float, float]]:
    out: dict[tuple[str, str], tuple[float, float]] = {}
    for case in doc["cases"]:
        for p, rec in case.get("passes", {}).items():
            if rec.get("mode") == "model":
                key = (case["params"]["dtype"], p)
                rms, mx = out.get(key, (0.0, 0.0))
                out[key] = (max(rms, rec["rms_ratio"]), max(mx, rec["max_ratio"]))
    return out


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.3g} %"


def table(after: dict[str, Any], before: dict[str, Any] | None) -> list[str]:
    fa = _floors_after(after)
    fb = _floors_before(before) if before else {}
    head = _headroom(after)
    cols = ["dtype", "pass", "goal"]
    if before:
        cols += ["before: worst", "before: median", "before: above goal"]
    cols += ["after: worst", "after: median", "after: above goal", "largest rms_ratio / max_ratio (limits 4 / 16)"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for dt in DTYPES:
        for p in PASSES:
            if (dt, p) not in fa:
                continue
            goal = FLOOR_GOAL[dt]
            row = [dt, p, f"≤ {_pct(goal)}"]
            if before:
                b = fb.get((dt, p), [])
                row += [_pct(max(b)) if b else "-", _pct(statistics.median(b)) if b else "-",
                        f"{sum(v > goal for v in b)} / {len(b)}"]
            a = fa[(dt, p)]
            rms, mx = head.get((dt, p), (0.0, 0.0))
            row += [_pct(max(a)), _pct(statistics.median(a)), f"{sum(v > goal for v in a)} / {len(a)}",
                    f"{rms:.2f} / {mx:.2f}"]
            lines.append("| " + " | ".join(row) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--after", required=True, help="convcheck JSON with detection floors (schema >= 1.1.0)")
    parser.add_argument("--before", help="convcheck JSON of the same cases under the old tolerances (schema 1.0.0)")
    args = parser.parse_args(argv)
    after = json.loads(Path(args.after).read_text())
    before = json.loads(Path(args.before).read_text()) if args.before else None
    s = after["summary"]
    sys.stdout.write(f"after: {args.after}: {s['pass']}/{s['total']} pass, {after['duration_s']:.1f} s, "
                     f"verdict {after['verdict']}\n\n")
    sys.stdout.write("\n".join(table(after, before)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
