"""A synthetic fleet run built with the real report data model, for the report tests and for looking at the page.

Nothing here renders: each host's preflight comes from `provision.preflight.evaluate` on simulated sysfs facts
(the facts module's own readers, as in tests/unit/test_preflight.py), its verification is a
`provision.convcheck.report.build` document over the suite's real 30 quick GPU cases written to disk as the role
fetches it, its timing goes through `HostProgress` as ansible-runner's events feed it, and `provision.outcome.build`
turns all that into the report, as after a real `provision upgrade`. Hosts end in every state a fleet sees: done,
fallback-applied, blocked, failed at stack, failed at verify (a crash and a miscompare), unreachable, converged,
and done with a reboot pending (provision_allow_reboot false).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from provision import outcome
from provision.convcheck import cases as conv_cases
from provision.convcheck import report as conv_report
from provision.inventory import spec_from_vars
from provision.preflight import evaluate
from provision.runner import HostProgress, RunResult
from tests.unit.test_preflight import raw_facts, simulated_sysfs

HOSTILE = "<script>alert('x')</script>"
ROCM52 = {"rocm-core": "5.2.0.50200-65", "amdgpu-dkms": "1:5.16.9.22.20-1438746~20.04"}
ROCM70 = {"rocm-core": "7.0.0.70000-17~24.04", "amdgpu-dkms": "1:6.14.14.30100000-2212064.24.04"}
TORCH = "2.8.0+rocm7.0.0.git64359f59"
# (PCI device, gfx_target_version, the GPU name rocminfo / torch report, its arch, the torch its venv runs):
# Navi 21 W6800 and Aldebaran MI210 upgraded; Navi 10 keeps ROCm 5.2 and its PyTorch 1.13.1 (the fallback)
GPUS = {"w6800": ("73a3", 100300, "AMD Radeon PRO W6800", "gfx1030", TORCH),
        "mi210": ("740f", 90010, "AMD Instinct MI210", "gfx90a", TORCH),
        "navi10": ("731f", 100100, "AMD Radeon RX 5700 XT", "gfx1010", "1.13.1+rocm5.2")}
CRASH = ("Memory access fault by GPU node-1 (Agent handle: 0x55d0c1b2e490) on address 0x7f2a4c000000. "
         "Reason: Page not present or supervisor privilege.")
MISMATCH = "forward: max |diff| 3.1e-01 at (0, 3, 7, 7) > tolerance 2.4e-02 (fp16, 9 ulp)"


def _preflight(tmp: Path, kind: str, **extra: Any) -> dict[str, Any]:
    root = tmp / f"sysfs-{kind}-{len(list(tmp.glob('sysfs-*')))}"
    device, target, *_ = GPUS[kind]
    simulated_sysfs(root, device, target)
    return evaluate(raw_facts(root, **extra), spec_from_vars("ws", {}), {"/opt": 30})


def _verification(tmp: Path, name: str, kind: str, rng: random.Random, bad: dict[int, str]) -> dict[str, Any]:
    """The suite's JSON for one host, written where conv_verify fetches it; the set_stats record pointing at it."""
    _, _, gpu, arch, torch = GPUS[kind]
    selected = conv_cases.generate("quick", "gpu")
    results = []
    for i, case in enumerate(selected):
        status = bad.get(i, "pass")
        achieved = rng.uniform(0.5, 22.0)  # TFLOP/s, the range these GPUs reach on small convolutions
        time_s = round(max(case.flops() / achieved / 1e12, 2e-5), 6)
        tflops = round(case.flops() / time_s / 1e12, 3) if status == "pass" else None
        results.append({"name": case.name, "status": status, "time_s": time_s, "tflops": tflops,
                        "error": CRASH if status == "crash" else MISMATCH if status == "fail" else None})
    hip = "7.0.51831" if torch == TORCH else "5.2.21151-afdc89f8"
    hello = {"device": "cuda", "gpus": [{"name": gpu, "arch": arch}], "torch": torch, "hip": hip,
             "hostname": name, "platform": "Linux-6.8.0-45-generic-x86_64", "python": "3.12.3",
             "conv_library": {"name": "MIOpen", "version": "3.5.0"}}
    doc = conv_report.build(hello=hello, results=results, cases=selected, profile="quick", device_requested="auto",
                            env={"MIOPEN_USER_DB_PATH": "/opt/rocm-provision/miopen"},
                            started_at="2026-11-26T06:20:00Z", finished_at="2026-11-26T06:21:10Z", duration_s=70.0,
                            workers_started=1 + sum(1 for s in bad.values() if s == "crash"))
    path = tmp / "verify" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    conv_report.write_json(doc, str(path))
    s = doc["summary"]
    return {"verdict": doc["verdict"], "passed": s["pass"], "failed": s["fail"], "crashed": s["crash"],
            "json": str(path)}


def _timed(host: HostProgress, start: datetime, phases: list[tuple[str, float]], status: str = "ok",
           message: str = "") -> None:
    """Feed the host's phases as ansible-runner's events would: a task result with start/end stamps each."""
    now = 0.0
    when = start
    for i, (phase, seconds) in enumerate(phases):
        host.started = host.started if host.started is not None else now
        host.enter_phase(phase, now)
        last = i == len(phases) - 1
        end = when + timedelta(seconds=seconds)
        host.record_result({"start": when.isoformat(), "end": end.isoformat(), "duration": seconds}, now + seconds)
        now += seconds + 3.0  # waiting for the other hosts between tasks
        when = end + timedelta(seconds=3.0)
        if last and status != "ok":
            host.status, host.message, host.finished = status, message, now
            host.close_phase(status, now, message)
    if status == "ok":
        host.status, host.finished = "ok", now
        host.close_phase("ok", now)


UPGRADE = [("preflight", 9.0), ("stage", 140.0), ("remove", 35.0), ("driver", 180.0), ("stack", 160.0),
           ("torch", 95.0), ("verify", 70.0), ("preflight", 2.0)]


def fleet(tmp: Path, count: int, seed: int = 16) -> dict[str, Any]:
    """The report document of a synthetic `provision upgrade` of `count` hosts."""
    rng = random.Random(seed)
    started = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
    pre = {"w6800": _preflight(tmp, "w6800", packages=ROCM52),
           "mi210": _preflight(tmp, "mi210"),
           "navi10": _preflight(tmp, "navi10", packages={**ROCM52, "amdgpu-install": "22.20.50200-1"},
                                amdgpu_install="/usr/bin/amdgpu-install",
                                env_overrides=[{"file": "/etc/profile.d/rocm.sh", "line": 1,
                                                "name": "HSA_OVERRIDE_GFX_VERSION", "value": "10.3.0"}]),
           "blocked": _preflight(tmp, "w6800", packages=ROCM52,
                                 free_space={"/opt": {"checked": "/", "free_bytes": 5 * 1024**3}})}
    assert pre["w6800"]["plan"]["action"] == "upgrade" and pre["navi10"]["plan"]["action"] == "fallback"
    assert pre["blocked"]["plan"]["action"] == "blocked"
    hosts: dict[str, HostProgress] = {}
    stats: dict[str, dict[str, Any]] = {k: {} for k in ("provision_preflight", "provision_after", "provision_verify",
                                                        "provision_converged", "provision_reboot_pending")}
    width = len(str(count))
    for i in range(count):
        # a few long names, as sites name hosts by model and OS: the summary must still fit the window
        name = f"ws-{i + 1:0{width}d}" + ("-w6800-ubuntu2404-bay3" if i % 50 == 49 else "")
        host = hosts[name] = HostProgress(name)
        t0 = started + timedelta(seconds=rng.uniform(0, 4))
        jitter = rng.uniform(0.8, 1.3)
        kind = "mi210" if i % 3 == 2 else "w6800"
        upgrade = [(p, round(s * jitter, 1)) for p, s in UPGRADE]
        if i % 40 == 7:  # never answered
            _timed(host, t0, [("preflight", 10.1)], "unreachable",
                   "Failed to connect to the host via ssh: ssh: connect to host 10.0.3.47 port 22: No route to host")
            continue
        if i % 10 == 5:
            stats["provision_preflight"][name] = pre["blocked"]
            _timed(host, t0, [("preflight", round(8 * jitter, 1)), ("preflight", 2.0)])
            stats["provision_after"][name] = {"packages": ROCM52, "rocm": {}}
            continue
        if i % 6 == 1:
            stats["provision_preflight"][name] = pre["navi10"]
            _timed(host, t0, [("preflight", 9.0), ("fallback", round(12 * jitter, 1)), ("verify", 64.0),
                              ("preflight", 2.0)])
            stats["provision_verify"][name] = _verification(tmp, name, "navi10", rng, {})
            host.changed = 8
            stats["provision_after"][name] = {"packages": ROCM52, "rocm": {}}
            continue
        stats["provision_preflight"][name] = pre[kind]
        if i % 25 == 3:
            message = ("E: Sub-process /usr/bin/dpkg returned an error code (1)" if i != 3 else
                       f"dpkg: error processing package rocm-llvm (--configure): {HOSTILE}")
            _timed(host, t0, upgrade[:5], "failed", message)
            host.changed = 9
            continue
        if i % 30 == 13:  # converged: a verified earlier run, nothing to do
            stats["provision_converged"][name] = {
                "converged": True, "reason": "", "verified_at": "2026-11-25T18:02:11Z",
                "verification": {"verdict": "pass", "passed": 30, "failed": 0, "crashed": 0, "total": 30,
                                 "device": "cuda", "torch": TORCH}}
            _timed(host, t0, [("preflight", 11.0), ("preflight", 2.0)])
            stats["provision_after"][name] = {"packages": ROCM70, "rocm": {}}
            continue
        if i % 20 == 11:  # verification failed: a crash and a miscompare
            bad = {rng.randrange(30): "crash", 27: "fail"}
            verify = _verification(tmp, name, kind, rng, bad)
            stats["provision_verify"][name] = verify
            _timed(host, t0, upgrade[:7], "failed",
                   f"convolution verification fail on {name} (venv /opt/rocm-provision/venv, device cuda, torch "
                   f"{TORCH}): {verify['passed']} passed, {verify['failed']} failed, {verify['crashed']} crashed")
            host.changed = 21
            stats["provision_after"][name] = {"packages": ROCM70, "rocm": {}}
            continue
        _timed(host, t0, upgrade)
        host.changed = 21 + i % 3
        skipped = {29: "skipped"} if i % 9 == 4 else {}
        stats["provision_verify"][name] = _verification(tmp, name, kind, rng, skipped)
        stats["provision_after"][name] = {"packages": ROCM70, "rocm": {}}
        if i % 8 == 2:
            stats["provision_reboot_pending"][name] = True
    finished = started + timedelta(seconds=max(h.span for h in hosts.values()) + 30)
    run = RunResult(tmp / "20261126T060000Z-upgrade", 2, "failed", hosts, stats)
    return outcome.build("upgrade", run, Path("site/hosts.ini"), started, finished)
