"""Fleet benchmark: `provision upgrade --yes` on a container lab of N hosts, with the fleet artifact cache (default)
or without it (`--no-cache`, every host downloads from the mirror itself, as AMD's installers and plain apt do).

For each N it brings up a fresh lab of N upgrade hosts (Ubuntu 24.04-sim W6800 and Debian 12 MI210 in turn),
resets the mirror's byte counters, runs the CLI with a fresh controller cache and PROVISION_RUNS_DIR, and records:

- upstream bytes and requests (the lab mirror's /_lab/stats), split into .deb, .whl and the rest (lists, keys);
- wall time of the run, each host's state, phase durations (report.json) and per-phase medians;
- CPU seconds: the controller's process tree (RUSAGE_CHILDREN of this process: the CLI, ansible-playbook and
  its workers, ssh, pip) and the lab containers (cgroup cpu.stat usage_usec, read before and after), and the
  controller's CPU seconds per host.

    python bench/bench_fleet.py                          # N = 1, 2, 4, 8 with the cache
    python bench/bench_fleet.py --sizes 1,2 --no-cache   # the N x baseline
    python bench/bench_fleet.py --sizes 1,8 --first-address 127.0.0.100 --lab-dir .lab/bench \
        --out bench/results/fleet.json                   # writes fleet.json and fleet.md

Goal (issue "Fleet speed"): upstream bytes for N=8 at most 1.05 x those for N=1. The lab hosts have no GPU;
the verification suite runs on the CPU. Run it on a quiet machine: the lab shares the controller's CPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from provision.lab.lab import Lab  # noqa: E402
from provision.lab.podman import Podman  # noqa: E402

TEMPLATES = ["ws-w6800-ubuntu2404-sim", "ws-mi210"]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def container_cpu(lab: Lab) -> float:
    """CPU seconds the lab's containers have used so far (cgroup v2 cpu.stat usage_usec, or v1 cpuacct.usage)."""
    podman = Podman(lab.paths.containers_conf)
    total = 0.0
    for container in podman.containers(lab.paths.lab_id):
        out = podman.run(["inspect", "--format", "{{.State.CgroupPath}}", str(container["Id"])],
                         what="reading a container's cgroup", check=False).stdout.strip()
        if not out:
            continue
        stat = Path("/sys/fs/cgroup") / out.lstrip("/") / "cpu.stat"  # cgroup v2
        v1 = Path("/sys/fs/cgroup/cpuacct") / out.lstrip("/") / "cpuacct.usage"  # cgroup v1 (podman's cgroupfs)
        if stat.is_file():
            for line in stat.read_text().splitlines():
                if line.startswith("usage_usec "):
                    total += int(line.split()[1]) / 1e6
        elif v1.is_file():
            total += int(v1.read_text().split()[0]) / 1e9
    return total


def mirror(base_url: str, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(base_url + path, timeout=10) as answer:
        data = json.load(answer)
    assert isinstance(data, dict)
    return data


def split_bytes(stats: dict[str, Any]) -> dict[str, int]:
    out = {"deb": 0, "whl": 0, "other": 0}
    for path, row in stats["paths"].items():
        kind = "deb" if path.endswith(".deb") else "whl" if path.endswith(".whl") else "other"
        out[kind] += int(row["bytes"])
    return out


def run_one(n: int, cache: bool, first_address: str, lab_dir: Path, work: Path) -> dict[str, Any]:
    lab = Lab(lab_dir)
    lab.down()
    base = [int(x) for x in first_address.split(".")]
    hosts = [(f"bench-{i + 1:02d}", TEMPLATES[i % len(TEMPLATES)], ".".join(map(str, [*base[:3], base[3] + i])))
             for i in range(n)]
    up = lab.add(hosts)
    inventory = work / f"n{n}-{'cache' if cache else 'nocache'}.ini"
    extra = f"provision_artifact_cache={'true' if cache else 'false'}\nprovision_cache_dir={work / f'cache-n{n}'}"
    inventory.write_text(up.inventory.read_text().replace("[workstations:vars]", f"[workstations:vars]\n{extra}"))
    runs = work / f"runs-n{n}"
    mirror(up.base_url, "/_lab/stats/reset")
    cpu_lab0, cpu_ctl0 = container_cpu(lab), children_cpu()
    start = time.monotonic()
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", PROVISION_RUNS_DIR=str(runs))
    done = subprocess.run([sys.executable, "-m", "provision", "upgrade", "--hosts", str(inventory), "--yes"],
                          capture_output=True, text=True, env=env, cwd=REPO, check=False, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - start
    cpu_ctl, cpu_lab = children_cpu() - cpu_ctl0, container_cpu(lab) - cpu_lab0
    stats = mirror(up.base_url, "/_lab/stats")
    report = json.loads((sorted(runs.glob("*-upgrade"))[-1] / "report.json").read_text())
    phases: dict[str, list[float]] = {}
    per_host = {}
    for host in report["hosts"]:
        per_host[host["name"]] = {"state": host["state"], "duration_s": host.get("duration_s"),
                                  "phases": {p["name"]: p.get("duration_s") for p in host.get("phases", [])}}
        for phase in host.get("phases", []):
            if phase.get("duration_s") is not None:
                phases.setdefault(phase["name"], []).append(float(phase["duration_s"]))
    lab.down()
    return {
        "n": n, "cache": cache, "exit_code": done.returncode, "wall_s": round(wall, 1),
        "upstream_bytes": int(stats["total_bytes"]), "upstream_requests": int(stats["total_requests"]),
        "upstream_split": split_bytes(stats),
        "states": sorted({h["state"] for h in per_host.values()}),
        "phase_median_s": {k: round(statistics.median(v), 1) for k, v in phases.items()},
        "hosts": per_host,
        "cpu_s": {"controller": round(cpu_ctl, 1), "lab_containers": round(cpu_lab, 1),
                  "total": round(cpu_ctl + cpu_lab, 1), "controller_per_host": round(cpu_ctl / n, 2)},
        "stderr_tail": done.stderr[-2000:] if done.returncode else "",
    }


def table(rows: list[dict[str, Any]]) -> str:
    base = {r["cache"]: r["upstream_bytes"] for r in rows if r["n"] == 1}
    lines = ["| N | cache | exit | states | upstream bytes | x N=1 | .deb | .whl | other | wall s | stage s (median) "
             "| CPU s controller | CPU s containers | controller CPU s/host |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['upstream_bytes'] / base[r['cache']]:.3f}" if base.get(r["cache"]) else "-"
        s = r["upstream_split"]
        lines.append(f"| {r['n']} | {'on' if r['cache'] else 'off'} | {r['exit_code']} | {', '.join(r['states'])} "
                     f"| {r['upstream_bytes']:,} | {ratio} | {s['deb']:,} | {s['whl']:,} | {s['other']:,} "
                     f"| {r['wall_s']} | {r['phase_median_s'].get('stage', '-')} | {r['cpu_s']['controller']} "
                     f"| {r['cpu_s']['lab_containers']} | {r['cpu_s']['controller_per_host']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,2,4,8", help="comma-separated host counts (default 1,2,4,8)")
    parser.add_argument("--no-cache", action="store_true", help="provision_artifact_cache=false (the N x baseline)")
    parser.add_argument("--first-address", default="127.0.0.100", help="first lab address (N consecutive ones)")
    parser.add_argument("--lab-dir", default=str(REPO / ".lab" / "bench-fleet"))
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "fleet.json"),
                        help="JSON results; a Markdown table is written beside it (.md)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        for n in sizes:
            row = run_one(n, not args.no_cache, args.first_address, Path(args.lab_dir).resolve(), Path(tmp))
            rows.append(row)
            sys.stderr.write(f"N={n} cache={'on' if row['cache'] else 'off'}: {row['upstream_bytes']:,} bytes, "
                             f"{row['wall_s']} s, exit {row['exit_code']}\n")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=2) + "\n")
    out.with_suffix(".md").write_text(table(rows))
    sys.stdout.write(table(rows))
    return 0 if all(r["exit_code"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
