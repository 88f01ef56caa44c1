"""Fleet benchmark: `provision upgrade --yes` on a container lab of N hosts, with the fleet artifact cache (default)
or without it (`--no-cache`, every host downloads from the mirror itself, as AMD's installers and plain apt do).

For each N it brings up a fresh lab of N upgrade hosts (Ubuntu 24.04-sim W6800 and Debian 12 MI210 in turn),
resets the mirror's byte counters, runs the CLI with a fresh controller cache and PROVISION_RUNS_DIR, and records:

- upstream bytes and requests (the lab mirror's /_lab/stats), split into .deb, .whl and the rest (lists, keys);
- wall time of the run, each host's state, phase durations (report.json) and per-phase medians;
- CPU seconds: the controller's process tree (RUSAGE_CHILDREN of this process: the CLI, ansible-playbook and
  its workers, ssh, pip) and the lab containers (cgroup cpu.stat usage_usec, read before and after), and the
  controller's CPU seconds per host.

    python bench/bench_fleet.py                          # N = 1, 2, 4, 8 with the cache, once
    python bench/bench_fleet.py --repeat 3               # three passes over N = 1, 2, 4, 8; medians per N
    python bench/bench_fleet.py --sizes 1,2 --no-cache   # the N x baseline
    python bench/bench_fleet.py --sizes 1,8 --first-address 127.0.0.210 --lab-dir .lab/bench \
        --out bench/results/fleet.json                   # writes fleet.json and fleet.md

With --repeat R the sizes run in R interleaved passes (1, 2, 4, 8, 1, 2, 4, 8, ...), so a slow spell of the machine
hits every N alike; the summary gives the median per N and checks the issue's goals on the medians:

- upstream bytes for the largest N at most 1.05 x those for N=1;
- wall time for the largest N at most 1.25 x max(N=1 wall, CPU seconds of all processes in the run / cores).

The lab hosts have no GPU; the verification suite runs on the CPU. Run it on a quiet machine: the lab shares the
controller's CPUs.
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
PHASES = ["preflight", "stage", "remove", "driver", "stack", "reboot", "torch", "fallback", "verify"]


def phase_order(phase: str) -> int:
    return PHASES.index(phase) if phase in PHASES else len(PHASES)


def host_table(row: dict[str, Any]) -> str:
    """Where one run's time went, per host and phase (seconds from the run report)."""
    phases = sorted({p for host in row["hosts"].values() for p in host["phases"]}, key=phase_order)
    lines = [f"Per host, pass {row.get('pass', 1)}, N={row['n']} (wall {row['wall_s']} s)", "",
             "| host | state | total s | " + " | ".join(phases) + " |", "|---" * (3 + len(phases)) + "|"]
    for name, host in row["hosts"].items():
        lines.append(f"| {name} | {host['state']} | {host['duration_s']} | "
                     + " | ".join(str(host["phases"].get(p, "-")) for p in phases) + " |")
    return "\n".join(lines) + "\n"


def machine() -> dict[str, Any]:
    """What the numbers were measured on: cores, memory, kernel."""
    memory = next((int(line.split()[1]) // 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:")), 0)
    return {"cores": os.cpu_count(), "memory_mib": memory, "kernel": os.uname().release,
            "cpu": next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("model name")), "")}


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
    work = work / f"n{n}-{time.monotonic_ns()}"
    work.mkdir(parents=True)
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
        spent: dict[str, float] = {}  # a phase the run enters twice (stack around the reboot) counts once, summed
        for phase in host.get("phases", []):
            if phase.get("duration_s") is not None:
                spent[phase["name"]] = round(spent.get(phase["name"], 0.0) + float(phase["duration_s"]), 2)
        per_host[host["name"]] = {"state": host["state"], "duration_s": host.get("duration_s"), "phases": spent}
        for name, seconds in spent.items():
            phases.setdefault(name, []).append(seconds)
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
    lines = ["| pass | N | cache | exit | states | upstream bytes | x N=1 | .deb | .whl | other | wall s "
             "| stage s (median) | CPU s controller | CPU s containers | controller CPU s/host |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['upstream_bytes'] / base[r['cache']]:.3f}" if base.get(r["cache"]) else "-"
        s = r["upstream_split"]
        lines.append(f"| {r.get('pass', 1)} | {r['n']} | {'on' if r['cache'] else 'off'} | {r['exit_code']} "
                     f"| {', '.join(r['states'])} "
                     f"| {r['upstream_bytes']:,} | {ratio} | {s['deb']:,} | {s['whl']:,} | {s['other']:,} "
                     f"| {r['wall_s']} | {r['phase_median_s'].get('stage', '-')} | {r['cpu_s']['controller']} "
                     f"| {r['cpu_s']['lab_containers']} | {r['cpu_s']['controller_per_host']} |")
    return "\n".join(lines) + "\n"


def median(rows: list[dict[str, Any]], pick: Any) -> float:
    return float(statistics.median(pick(r) for r in rows))


def summarise(rows: list[dict[str, Any]], cores: int) -> dict[str, Any]:
    """Medians per N over the passes, and the issue's goals checked on them."""
    per_n: dict[int, dict[str, Any]] = {}
    for n in sorted({r["n"] for r in rows}):
        mine = [r for r in rows if r["n"] == n]
        phase_names = sorted({p for r in mine for p in r["phase_median_s"]}, key=phase_order)
        per_n[n] = {
            "runs": len(mine),
            "all_exit_0": all(r["exit_code"] == 0 for r in mine),
            "wall_s": [r["wall_s"] for r in mine],
            "wall_median_s": round(median(mine, lambda r: r["wall_s"]), 1),
            "cpu_total_median_s": round(median(mine, lambda r: r["cpu_s"]["total"]), 1),
            "cpu_bound_median_s": round(median(mine, lambda r: r["cpu_s"]["total"]) / cores, 1),
            "controller_cpu_per_host_median_s": round(median(mine, lambda r: r["cpu_s"]["controller_per_host"]), 2),
            "upstream_bytes_median": int(median(mine, lambda r: r["upstream_bytes"])),
            "phase_median_s": {p: round(median([r for r in mine if p in r["phase_median_s"]],
                                               lambda r, p=p: r["phase_median_s"][p]), 1) for p in phase_names},
        }
    goals: dict[str, Any] = {}
    largest = max(per_n)
    if 1 in per_n and largest > 1:
        one, big = per_n[1], per_n[largest]
        ratio = big["upstream_bytes_median"] / one["upstream_bytes_median"]
        goals["upstream_bytes"] = {"n": largest, "ratio": round(ratio, 4), "limit": 1.05, "met": ratio <= 1.05}
        bound = max(one["wall_median_s"], big["cpu_bound_median_s"])
        goals["wall_time"] = {"n": largest, "wall_median_s": big["wall_median_s"], "bound_s": round(bound, 1),
                              "ratio": round(big["wall_median_s"] / bound, 3), "limit": 1.25,
                              "met": big["wall_median_s"] <= 1.25 * bound}
    return {"cores": cores, "per_n": per_n, "goals": goals}


def summary_table(summary: dict[str, Any]) -> str:
    per_n = summary["per_n"]
    phases = sorted({p for row in per_n.values() for p in row["phase_median_s"]}, key=phase_order)
    lines = [f"Medians per N ({summary['cores']} cores)", "",
             "| N | runs | wall s (each) | wall s median | CPU s total | CPU s ÷ cores | controller CPU s/host "
             "| upstream bytes | " + " | ".join(f"{p} s" for p in phases) + " |",
             "|---" * (8 + len(phases)) + "|"]
    for n, row in per_n.items():
        lines.append(f"| {n} | {row['runs']} | {', '.join(str(w) for w in row['wall_s'])} | {row['wall_median_s']} "
                     f"| {row['cpu_total_median_s']} | {row['cpu_bound_median_s']} "
                     f"| {row['controller_cpu_per_host_median_s']} | {row['upstream_bytes_median']:,} | "
                     + " | ".join(str(row["phase_median_s"].get(p, "-")) for p in phases) + " |")
    goals = summary["goals"]
    if goals:
        b, w = goals["upstream_bytes"], goals["wall_time"]
        lines += ["", f"- upstream bytes N={b['n']} / N=1: {b['ratio']} (limit {b['limit']}): "
                      f"{'met' if b['met'] else 'NOT met'}",
                  f"- wall N={w['n']} {w['wall_median_s']} s / max(N=1 wall, CPU s ÷ cores) {w['bound_s']} s = "
                  f"{w['ratio']} (limit {w['limit']}): {'met' if w['met'] else 'NOT met'}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,2,4,8", help="comma-separated host counts (default 1,2,4,8)")
    parser.add_argument("--repeat", type=int, default=1, help="passes over the sizes, interleaved (default 1)")
    parser.add_argument("--no-cache", action="store_true", help="provision_artifact_cache=false (the N x baseline)")
    parser.add_argument("--first-address", default="127.0.0.100", help="first lab address (N consecutive ones)")
    parser.add_argument("--lab-dir", default=str(REPO / ".lab" / "bench-fleet"))
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "fleet.json"),
                        help="JSON results; a Markdown table is written beside it (.md)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rows = []
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    cores = os.cpu_count() or 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        for number in range(1, args.repeat + 1):
            for n in sizes:
                row = {"pass": number,
                       **run_one(n, not args.no_cache, args.first_address, Path(args.lab_dir).resolve(), Path(tmp))}
                rows.append(row)
                sys.stderr.write(f"pass {number}/{args.repeat} N={n} cache={'on' if row['cache'] else 'off'}: "
                                 f"{row['upstream_bytes']:,} bytes, {row['wall_s']} s, exit {row['exit_code']}\n")
                summary = summarise(rows, cores)  # written after every run: a long benchmark keeps what it measured
                out.write_text(json.dumps({"command": " ".join(sys.argv), "machine": machine(), "summary": summary,
                                           "rows": rows}, indent=2) + "\n")
                largest = [r for r in rows if r["n"] == max(sizes)]
                text = table(rows) + "\n" + summary_table(summary) + ("\n" + host_table(largest[-1]) if largest else "")
                out.with_suffix(".md").write_text(text)
    sys.stdout.write(text)
    met = all(goal["met"] for goal in summary["goals"].values())
    return 0 if all(r["exit_code"] == 0 for r in rows) and met else 1


if __name__ == "__main__":
    sys.exit(main())
