"""From a finished playbook run (host progress + set_stats data) to the per-host report document."""

from __future__ import annotations

import getpass
import json
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

from provision import __version__, pins
from provision.report import SCHEMA_VERSION, summarise
from provision.runner import RunResult


def _state(command: str, name: str, run: RunResult, preflight: dict[str, Any] | None,
           verification: dict[str, Any] | None, check_mode: bool,
           search: dict[str, Any] | None = None) -> tuple[str, str]:
    host = run.hosts[name]
    if host.status == "unreachable":
        return "unreachable", host.message or "the host could not be reached over SSH"
    if host.status == "failed":
        return f"failed-at-{host.phase}", host.message or f"a task failed during {host.phase}"
    if preflight is None:
        return "skipped", "the run ended before this host was planned"
    action = preflight["plan"]["action"]
    if action == "blocked":
        return "blocked", "; ".join(preflight["plan"]["reasons"])
    if command == "check" or check_mode:
        return "planned", f"would {action}" + (" (check mode: nothing changed)" if check_mode else "")
    if command == "verify":
        verdict = (verification or {}).get("verdict")
        return ("done", "verification passed") if verdict == "pass" else (
            "failed-at-verify", f"verification verdict: {verdict or 'no result'}")
    if action == "fallback":
        return "fallback-applied", "kept its ROCm stack; fallback profile applied" + _search_text(search)
    return "done", f"{action} finished"


def _search_text(search: dict[str, Any] | None) -> str:
    if not search:
        return ""
    env = " ".join(f"{k}={v}" for k, v in (search.get("env") or {}).items()) or "nothing"
    return (f"; the starting profile did not verify, the workaround search found {env} "
            f"({search.get('trials')} trials) and the host verified with it")


def _versions(rocm: dict[str, Any] | None, verification: dict[str, Any] | None = None) -> dict[str, Any]:
    """ROCm / driver versions from preflight's `rocm` block or the after-run facts; torch from verification."""
    rocm = rocm or {}
    packages = rocm.get("packages") or {}
    version = rocm.get("version")
    if version is None and packages:
        from provision.preflight import rocm_state

        version = rocm_state({"packages": packages, "rocm": rocm.get("rocm") or {}}).version
    torch = ((verification or {}).get("torch") or {}).get("version")
    return {k: v for k, v in {"rocm": version, "amdgpu-dkms": packages.get("amdgpu-dkms"), "torch": torch}.items() if v}


def _verification(stats: dict[str, Any] | None) -> dict[str, Any] | None:
    """The host's verification: the suite's own JSON (fetched to the controller) when it is there."""
    if not stats:
        return None
    path = Path(str(stats.get("json") or ""))
    doc: dict[str, Any] = {}
    if path.is_file():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            doc = {}
    keep = ("name", "status", "time_s", "tflops", "peak_fraction", "error", "reproducible")
    return {
        "verdict": doc.get("verdict", stats.get("verdict")),
        "summary": doc.get("summary") or {"pass": stats.get("passed"), "fail": stats.get("failed"),
                                          "crash": stats.get("crashed")},
        "device": doc.get("device"),
        "torch": doc.get("torch") or stats.get("torch"),
        "gpus": doc.get("gpus", []),
        "conv_library": doc.get("conv_library"),
        "env": doc.get("env", {}),
        "json": str(path) if path.is_file() else None,
        "cases": [{k: c.get(k) for k in keep} for c in doc.get("cases", [])],
        "detection_floors": doc.get("detection_floors"),
        # The lab's simulated GPU runtime names its GPUs "... [simulated]": the report carries that mark.
        "simulated": any("[simulated" in str(g.get("name")) for g in doc.get("gpus", [])),
    }


def _converged(state: str, reason: str, converged: dict[str, Any] | None,
               verification: dict[str, Any] | None) -> tuple[str, dict[str, Any] | None]:
    """A converged host (nothing to do): say when it was last verified, and show that verification."""
    if not converged or state not in ("done", "fallback-applied", "planned"):
        return reason, verification
    when = converged.get("verified_at") or "an earlier run"
    if state == "planned":
        return f"converged: nothing to do (last verified at {when})", verification
    recorded = converged.get("verification") or {}
    if verification is None and recorded:
        verification = {
            "verdict": recorded.get("verdict"),
            "summary": {"pass": recorded.get("passed"), "fail": recorded.get("failed"),
                        "crash": recorded.get("crashed"), "total": recorded.get("total")},
            "device": {"type": recorded.get("device")},
            "torch": {"version": recorded.get("torch")},
            "gpus": [], "conv_library": None, "env": {}, "json": None, "cases": [],
            "verified_at": converged.get("verified_at"),
        }
    return (f"converged: nothing changed since the run that verified it at {when} "
            "(`provision upgrade --reverify` runs the full path again)"), verification


def _wheel_set(staged: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the stage fetched for a host: where from, every file with its sha256, and a lab's Python-tag note."""
    if not staged:
        return None
    files = staged.get("files") or []
    return {
        "key": staged.get("key"),
        "index_url": staged.get("index_url"),
        "pypi_index_url": staged.get("pypi_index_url"),
        "python_version": staged.get("python_version"),
        "python_tag_note": staged.get("python_tag_note") or "",
        "pinned": sum(1 for f in files if f.get("source") == "pin"),
        "dependencies": sum(1 for f in files if f.get("source") != "pin"),
        "files": [{k: f.get(k) for k in ("file", "sha256", "size", "source")} for f in files],
    }


def _remove_notes(remove: dict[str, Any] | None) -> list[str]:
    """What rocm_remove moved aside instead of deleting (a leftover ROCm tree holding files of no package)."""
    notes = []
    for tree in (remove or {}).get("moved") or []:
        where = f"moved to {tree.get('backup')}" if tree.get("backup") else "would be moved aside"
        notes.append(f"{tree.get('path')} was not deleted, {where}: {tree.get('reason')}")
    return notes


def build(command: str, run: RunResult, inventory: Path, started: datetime, finished: datetime, *,
          check_mode: bool = False) -> dict[str, Any]:
    stats = run.stats or {}
    preflight_all: dict[str, Any] = stats.get("provision_preflight") or {}
    after_all: dict[str, Any] = stats.get("provision_after") or {}
    verify_all: dict[str, Any] = stats.get("provision_verify") or {}
    converged_all: dict[str, Any] = stats.get("provision_converged") or {}
    reboot_all: dict[str, Any] = stats.get("provision_reboot_pending") or {}
    wheel_sets: dict[str, Any] = stats.get("provision_wheel_sets") or {}
    remove_all: dict[str, Any] = stats.get("provision_remove") or {}
    hosts = []
    for name in sorted(run.hosts):
        progress = run.hosts[name]
        if progress.status == "pending" and name not in preflight_all:
            continue  # not in --limit
        preflight = preflight_all.get(name)
        verification = _verification(verify_all.get(name))
        search = (stats.get("provision_workaround") or {}).get(name)
        state, reason = _state(command, name, run, preflight, verification, check_mode, search)
        reason, verification = _converged(state, reason, converged_all.get(name), verification)
        hosts.append({
            "name": name,
            "state": state,
            "reason": reason,
            "notes": _remove_notes(remove_all.get(name)),
            "plan": (preflight or {}).get("plan"),
            "gpus": (preflight or {}).get("gpus", []),
            "os": (preflight or {}).get("os"),
            "before": _versions((preflight or {}).get("rocm")),
            # users' venvs with PyTorch for a ROCm below the new driver's user-space window (left untouched)
            "old_venvs": (preflight or {}).get("old_venvs", []),
            "after": _versions(after_all.get(name), verification) if name in after_all else {},
            "phases": progress.phase_records(),
            "changed": progress.changed,
            "converged": name in converged_all and state in ("done", "fallback-applied", "planned"),
            # the host's own time (its tasks' run time, waits for other hosts left out); span: first task
            # start to last task end
            "duration_s": round(progress.own_duration, 1),
            "span_s": round(progress.span, 1),
            # the new driver is installed but loads only after a reboot nobody was allowed to do
            "reboot_pending": bool(reboot_all.get(name)),
            "verification": verification,
            "workaround": search,
            "python": (preflight or {}).get("python"),
            "wheel_set": _wheel_set(wheel_sets.get(name)),
        })
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "rocm-provision", "version": __version__, "pins_version": pins.version()},
        "run": {
            "id": run.run_dir.name,
            "command": command,
            "inventory": str(inventory),
            "controller": socket.gethostname(),
            "user": getpass.getuser(),
            "started": started.isoformat(timespec="seconds"),
            "finished": finished.isoformat(timespec="seconds"),
            "duration_s": round((finished - started).total_seconds(), 1),
            "check_mode": check_mode,
            "ansible_rc": run.rc,
        },
        "summary": summarise(hosts),
        "hosts": hosts,
    }
