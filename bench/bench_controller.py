"""Controller overhead and Ansible tuning on converged hosts: `provision upgrade --yes` against the same
playbook run with plain `ansible-playbook`, `provision --help`, and A/B runs of Ansible settings.

Every case is a whole command timed by wall clock; rounds are interleaved (round 1 runs every case once,
then round 2, ...) so that load from other work on the machine falls on all cases alike; the table shows
medians. The hosts must already be converged (run `provision upgrade --hosts INV --yes` once first).

    provision lab up --hosts 4 --first-address 127.0.0.160 --lab-dir .lab/hD
    provision upgrade --hosts .lab/hD/lab.ini --yes        # converge the hosts (the fallback host needs
                                                            # provision/lab/playbooks/users_venv.yml first)
    python bench/bench_controller.py --inventory .lab/hD/lab.ini --rounds 3 \
        [--mitogen /path/with/ansible_mitogen] --out bench/results/controller.json

Goals (issue "Fleet speed"): provision upgrade / ansible-playbook <= 1.1 on converged hosts;
`provision --help` < 0.3 s; a converged re-run <= 15 % of the first run (tests/lab/test_converged.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          check=False, timeout=1800)
    return time.perf_counter() - start, done.returncode, (done.stdout + done.stderr)[-2000:]


def cases(inventory: Path, runs: Path, mitogen: Path | None, with_check: bool, with_ab: bool
          ) -> dict[str, tuple[list[str], dict[str, str]]]:
    base = dict(os.environ, PROVISION_RUNS_DIR=str(runs), NO_COLOR="1", COLUMNS="200", ANSIBLE_NOCOLOR="1",
                PATH=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]))
    playbook = [str(BIN / "ansible-playbook"), "-i", str(inventory), "playbooks/upgrade.yml",
                "-e", f"conv_verify_fetch_dir={runs / 'verify'}"]
    out: dict[str, tuple[list[str], dict[str, str]]] = {
        "provision upgrade --yes": ([sys.executable, "-m", "provision", "upgrade", "--hosts", str(inventory),
                                     "--yes"], base),
        "ansible-playbook upgrade.yml": (playbook, base),
    }
    if with_check:
        out["provision check"] = ([sys.executable, "-m", "provision", "check", "--hosts", str(inventory)], base)
        out["ansible-playbook check.yml"] = (
            [str(BIN / "ansible-playbook"), "-i", str(inventory), "playbooks/check.yml"], base)
    if with_ab:
        out["A/B: pipelining off"] = (playbook, dict(base, ANSIBLE_PIPELINING="False"))
        out["A/B: forks 1"] = (playbook, dict(base, ANSIBLE_FORKS="1"))
        out["A/B: strategy free"] = (playbook, dict(base, ANSIBLE_STRATEGY="free"))
        out["A/B: fact cache jsonfile + gathering smart"] = (playbook, dict(
            base, ANSIBLE_CACHE_PLUGIN="jsonfile", ANSIBLE_CACHE_PLUGIN_CONNECTION=str(runs / "facts"),
            ANSIBLE_GATHERING="smart"))
        if mitogen is not None:
            out["A/B: mitogen_linear"] = (playbook, dict(
                base, ANSIBLE_STRATEGY="mitogen_linear",
                ANSIBLE_STRATEGY_PLUGINS=str(mitogen / "ansible_mitogen" / "plugins" / "strategy"),
                PYTHONPATH=os.pathsep.join([str(mitogen), str(REPO)])))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inventory", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--help-runs", type=int, default=10)
    parser.add_argument("--mitogen", type=Path, help="a directory holding ansible_mitogen (an unpacked wheel)")
    parser.add_argument("--no-check", action="store_true", help="leave out the check playbook")
    parser.add_argument("--no-ab", action="store_true", help="leave out the A/B runs of Ansible settings")
    parser.add_argument("--out", type=Path,
                        default=REPO / "bench" / "results" / f"controller-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json")
    args = parser.parse_args()

    runs = Path(tempfile.mkdtemp(prefix="bench-controller-"))
    table = cases(args.inventory.resolve(), runs, args.mitogen, not args.no_check, not args.no_ab)
    samples: dict[str, list[float]] = {name: [] for name in table}
    rcs: dict[str, list[int]] = {name: [] for name in table}
    for round_no in range(args.rounds):
        for name, (argv, env) in table.items():
            seconds, rc, tail = _timed(argv, env)
            samples[name].append(round(seconds, 3))
            rcs[name].append(rc)
            sys.stderr.write(f"round {round_no + 1}: {name}: {seconds:.2f} s rc={rc}\n")
            if rc not in (0, 1):
                sys.stderr.write(tail + "\n")
    helps = []
    for _ in range(args.help_runs):
        seconds, _rc, _ = _timed([str(BIN / "provision"), "--help"], dict(os.environ, COLUMNS="120"))
        helps.append(round(seconds, 3))

    med = {name: statistics.median(v) for name, v in samples.items()}
    ansible = med["ansible-playbook upgrade.yml"]
    doc: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "rounds": args.rounds,
        "cases": {name: {"samples_s": samples[name], "median_s": round(med[name], 3), "rc": rcs[name],
                         "vs_ansible_playbook": round(med[name] / ansible, 3)} for name in table},
        "help": {"samples_s": helps, "median_s": round(statistics.median(helps), 3)},
        "overhead_ratio": round(med["provision upgrade --yes"] / ansible, 3),
    }
    if "provision check" in med:
        doc["check_overhead_ratio"] = round(med["provision check"] / med["ansible-playbook check.yml"], 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")

    lines = [f"Converged hosts, {args.rounds} interleaved rounds, medians ({doc['machine']['cpus']} CPUs)", "",
             "| case | median s | samples s | vs ansible-playbook upgrade.yml |", "|---|---|---|---|"]
    for name in table:
        lines.append(f"| {name} | {med[name]:.2f} | {', '.join(f'{s:.2f}' for s in samples[name])} | "
                     f"{med[name] / ansible:.2f}x |")
    lines.append(f"| provision --help (median of {len(helps)}) | {doc['help']['median_s']:.3f} | "
                 f"{', '.join(f'{s:.2f}' for s in helps)} | - |")
    sys.stdout.write("\n".join(lines) + f"\n\nresults: {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
