"""Isolation overhead benchmark: the same cases (a) in one process, (b) through the isolated suite,
(c) optionally with one fresh worker interpreter per case. Wall clock of whole commands, so every
mode pays its own interpreter start, torch import and device initialisation.

    python bench/bench_isolation.py --device cuda --per-case --out bench/results/isolation.json

Goal (issue 5): (b) / (a) <= 1.2.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CASES = "2d-conv-*-r3s*,fam-"  # 44 fwd+bwd cases of the full profile (2D 3x3 matrix + solver families)


def _in_process(device: str, profile: str, filt: str) -> int:
    """Mode (a): run every case in this one process (no isolation at all)."""
    sys.path.insert(0, str(REPO))
    from provision.convcheck import cases, hostinfo
    from provision.convcheck.execute import run_case

    hello = hostinfo.describe(device)
    kind = "gpu" if hello["device"] == "cuda" else "cpu"
    selected = [c for c in cases.select(cases.generate(profile, kind), filt) if not c.skip_reason]
    statuses = [run_case(c, hello["device"])["status"] for c in selected]
    sys.stdout.write(json.dumps({"cases": len(selected), "pass": statuses.count("pass")}) + "\n")
    return 0


def _timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    return time.perf_counter() - t0, proc


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    p.add_argument("--profile", default="full", choices=("quick", "full"))
    p.add_argument("--cases", default=DEFAULT_CASES)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--per-case", action="store_true", help="also time mode (c), one fresh worker per case")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--inprocess-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.inprocess_child:
        return _in_process(args.device, args.profile, args.cases)

    py = sys.executable
    common = ["--device", args.device, "--profile", args.profile, "--cases", args.cases]
    modes = {
        "a_in_process": [py, str(Path(__file__).resolve()), "--inprocess-child", *common],
        "b_isolated_suite": [py, "-m", "provision.convcheck", *common, "--quiet"],
    }
    if args.per_case:
        modes["c_worker_per_case"] = [py, "-m", "provision.convcheck", *common, "--quiet", "--worker-per-case"]
    times: dict[str, list[float]] = {m: [] for m in modes}
    info: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        _timed(modes["a_in_process"])  # warm-up: page cache, driver/JIT caches; not counted
        for i in range(args.repeat):
            for mode, cmd in modes.items():
                if mode == "c_worker_per_case" and i > 0:
                    continue  # slow; once is enough
                run_cmd = [*cmd, "--json", f"{tmp}/{mode}.json"] if mode != "a_in_process" else cmd
                seconds, proc = _timed(run_cmd)
                times[mode].append(seconds)
                if mode == "a_in_process":
                    info["a"] = json.loads(proc.stdout.strip().splitlines()[-1])
                else:
                    doc = json.loads(Path(f"{tmp}/{mode}.json").read_text())
                    info[mode] = {"cases": doc["summary"]["total"], "pass": doc["summary"]["pass"],
                                  "workers_started": doc["summary"]["workers_started"],
                                  "device": (doc["gpus"] or [{"name": doc["device"]["type"]}])[0]["name"]}
    med = {m: statistics.median(v) for m, v in times.items()}
    result = {
        "command": " ".join(["python", "bench/bench_isolation.py", *sys.argv[1:]]),
        "cases": info.get("a", {}).get("cases"),
        "device": info.get("b_isolated_suite", {}).get("device"),
        "runs_s": {m: [round(t, 2) for t in v] for m, v in times.items()},
        "median_s": {m: round(t, 2) for m, t in med.items()},
        "ratio_isolated_vs_in_process": round(med["b_isolated_suite"] / med["a_in_process"], 3),
        "details": info,
    }
    if "c_worker_per_case" in med:
        result["ratio_per_case_vs_in_process"] = round(med["c_worker_per_case"] / med["a_in_process"], 3)
    text = json.dumps(result, indent=1)
    sys.stdout.write(text + "\n")
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
