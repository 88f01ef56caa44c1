"""Time the workaround search (``python -m provision.convcheck --find-workaround``) on the quick profile.

Three MIOpen-like faults are injected (the suite's fault backend, ``--inject-faults``): two broken single
solvers in different families (a direct WrW solver that aborts the process, a Winograd solver that returns
a wrong result) and a broken family without single-solver switches (GEMM, aborting). The search runs on
the real device path (fresh worker per trial, real kernels, real crash isolation); only the faults and
their switch conditions are simulated. The expected answer is exactly the three narrow switches.

    python bench/bench_workaround.py --device cuda --out bench/results/workaround-search.json

What it does not measure: MIOpen itself (on a CUDA machine cuDNN runs the convolutions; MIOpen's own
Find/compile time per trial on a ROCm host comes on top), and solver switches that change the speed.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RULES = [
    {"cases": "fam-direct-2d-conv-*gdw-*", "kind": "abort", "pass": "bwd_weight",
     "unless": [{"MIOPEN_DEBUG_CONV_DIRECT_OCL_WRW2": "0"}, {"MIOPEN_DEBUG_CONV_DIRECT": "0"}]},
    {"cases": "fam-winograd-2d-conv-*-fp32-*", "kind": "wrong",
     "unless": [{"MIOPEN_DEBUG_AMD_WINOGRAD_RXS_F3X2": "0"}, {"MIOPEN_DEBUG_CONV_WINOGRAD": "0"}]},
    {"cases": "fam-gemm-2d", "kind": "abort", "unless": {"MIOPEN_DEBUG_CONV_GEMM": "0"}},
]
EXPECTED = {"MIOPEN_DEBUG_CONV_DIRECT_OCL_WRW2": "0", "MIOPEN_DEBUG_AMD_WINOGRAD_RXS_F3X2": "0",
            "MIOPEN_DEBUG_CONV_GEMM": "0"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--miopen-release", default="3.5")
    parser.add_argument("--cases", help="limit the suite to these cases (the suite's --cases syntax)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "r.json"
        cmd = [sys.executable, "-m", "provision.convcheck", "--device", args.device, "--profile", args.profile,
               "--find-workaround", "--miopen-release", args.miopen_release, "--inject-faults", json.dumps(RULES),
               "--json", str(report), "--no-timing", *(["--cases", args.cases] if args.cases else [])]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.monotonic() - t0
        sys.stderr.write(proc.stderr[-4000:])
        doc = json.loads(report.read_text()) if report.is_file() else {}
    wa = doc.get("workaround") or {}
    trials = wa.get("trials") or []
    suite_s = (doc.get("duration_s") or wall) - (wa.get("seconds") or 0.0)
    result = {
        "command": " ".join([*cmd[1:3], "..."]),
        "device": (doc.get("gpus") or [{}])[0].get("name") if doc.get("gpus") else args.device,
        "torch": (doc.get("torch") or {}).get("version"),
        "python": platform.python_version(),
        "profile": args.profile,
        "cases": (doc.get("summary") or {}).get("total"),
        "rc": proc.returncode,
        "wall_s": round(wall, 1),
        "first_run_s": round(suite_s, 1),
        "search_s": wa.get("seconds"),
        "trials": len(trials),
        "trial_s_median": sorted(t["seconds"] for t in trials)[len(trials) // 2] if trials else None,
        "status": wa.get("status"),
        "env": wa.get("env"),
        "expected_env": EXPECTED,
        "exact": wa.get("env") == EXPECTED,
        "cost": wa.get("cost"),
        "fixes": wa.get("fixes"),
        "trial_purposes": [t["purpose"] for t in trials],
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    keys = ("device", "wall_s", "search_s", "trials", "status", "exact")
    sys.stdout.write(json.dumps({k: result[k] for k in keys}) + "\n")
    return 0 if result["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
