"""The versioned JSON report and the one-screen summary (torch-free)."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import IO, Any

from provision.convcheck import SCHEMA_VERSION, floors, peaks
from provision.convcheck.cases import ConvCase

SCHEMA_FILE = Path(__file__).with_name("schema.json")
STATUSES = ("pass", "fail", "crash", "timeout", "error", "skipped")
VERDICTS = ("pass", "fail", "no-gpu", "error")
ENV_PREFIXES = ("MIOPEN_", "HSA_", "HIP_", "ROCR_", "ROCM_", "AMD_", "PYTORCH_", "CUDA_", "CUDNN_",
                "TORCH_", "HCC_", "GPU_", "OMP_", "PROVISION_CONVCHECK_")


def env_in_force(env: dict[str, str]) -> dict[str, str]:
    """The GPU/library-relevant variables the workers ran with."""
    return {k: v for k, v in sorted(env.items()) if k.startswith(ENV_PREFIXES) and not k.endswith("_FD")}


def verdict(device_requested: str, device: str, results: list[dict[str, Any]]) -> str:
    """``no-gpu`` when no GPU ran the cases (unless CPU was asked for), else pass / fail / error."""
    if device == "none" or (device == "cpu" and device_requested != "cpu"):
        return "no-gpu"
    counts = Counter(r["status"] for r in results)
    if any(counts[s] for s in ("fail", "crash", "timeout", "error")):
        return "fail"
    if not counts["pass"]:
        return "error"
    return "pass"


def _case_record(case: ConvCase | None, result: dict[str, Any], peak: dict[str, Any] | None,
                 gpu: bool) -> dict[str, Any]:
    rec: dict[str, Any] = {"name": result["name"], "status": result["status"]}
    if case is not None:
        rec["params"] = case.to_dict()
        rec["flops"] = case.flops()
    for key in ("error", "time_s", "tflops", "passes", "conv_backend", "output_channels_last", "crash", "retry",
                "reproducible"):
        if key in result:
            rec[key] = result[key]
    rec.setdefault("error", None)
    rec.setdefault("time_s", 0.0)
    rec.setdefault("tflops", None)
    rec.setdefault("passes", {})
    rec["peak_fraction"] = (peaks.fraction(rec["tflops"], case.dtype, peak)
                            if gpu and case is not None else None)
    return rec


def build(
    *, hello: dict[str, Any], results: list[dict[str, Any]], cases: list[ConvCase], profile: str,
    device_requested: str, env: dict[str, str], started_at: str, finished_at: str, duration_s: float,
    workers_started: int, workaround: dict[str, Any] | None = None, argv: list[str] | None = None,
) -> dict[str, Any]:
    from provision import __version__

    by_name = {c.name: c for c in cases}
    device = hello.get("device", "none")
    gpus = hello.get("gpus", [])
    gpu = device == "cuda" and bool(gpus)
    peak = peaks.lookup(gpus[0]["name"], gpus[0].get("arch", "")) if gpu else None
    records = [_case_record(by_name.get(r["name"]), r, peak, gpu) for r in results]
    counts = Counter(r["status"] for r in records)
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "provision.convcheck", "version": __version__, "argv": argv or []},
        "started_at": started_at,
        "finished_at": finished_at,
        "duration_s": round(duration_s, 3),
        "profile": profile,
        "device": {"requested": device_requested, "type": device, "runtime": hello.get("gpu_runtime")},
        "host": {k: hello.get(k) for k in ("hostname", "platform", "python")},
        "torch": {"version": hello.get("torch"), "hip": hello.get("hip"), "cuda": hello.get("cuda")},
        "gpus": gpus,
        "conv_library": hello.get("conv_library"),
        "settings": hello.get("settings", {}),
        "env": env_in_force(env),
        "peak": None if peak is None else {"label": peak["label"], "tflops": peak["tflops"], "source": peak["source"]},
        "cases": records,
        "summary": {"total": len(records), **{s: counts[s] for s in STATUSES}, "workers_started": workers_started},
        "detection_floors": floors.worst(records),
        "verdict": verdict(device_requested, device, records),
        "workaround": workaround,
    }


def write_json(doc: dict[str, Any], path: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    os.replace(tmp, path)


def summary_lines(doc: dict[str, Any], max_problems: int = 12) -> list[str]:
    s = doc["summary"]
    lib = doc.get("conv_library") or {}
    gpus = doc.get("gpus") or []
    where = doc["device"]["type"]
    if gpus:
        where += f" ({gpus[0]['name']}, {gpus[0]['arch']}{f' x{len(gpus)}' if len(gpus) > 1 else ''})"
    rt = doc["torch"]
    runtime = f"HIP {rt['hip']}" if rt.get("hip") else (f"CUDA {rt['cuda']}" if rt.get("cuda") else "no GPU runtime")
    lines = [
        f"convcheck {doc['schema_version']}  profile {doc['profile']} on {where}",
        f"torch {rt['version']}, {runtime}, {lib.get('name')} {lib.get('version') or ''}".rstrip(),
        f"cases {s['total']}: {s['pass']} pass, {s['fail']} fail, {s['crash']} crash, {s['timeout']} timeout, "
        f"{s['error']} error, {s['skipped']} skipped  ({s['workers_started']} worker(s), {doc['duration_s']:.1f} s)",
    ]
    problems = [c for c in doc["cases"] if c["status"] not in ("pass", "skipped")]
    for c in problems[:max_problems]:
        extra = f" [{c['reproducible']}]" if c.get("reproducible") else ""
        lines.append(f"  {c['status'].upper():7} {c['name']}: {(c.get('error') or '')[:110]}{extra}")
    if len(problems) > max_problems:
        lines.append(f"  ... and {len(problems) - max_problems} more (see the JSON)")
    skipped = [c for c in doc["cases"] if c["status"] == "skipped"]
    if skipped:
        lines.append(f"  skipped {len(skipped)}: e.g. {skipped[0]['name']}: {skipped[0].get('error')}")
    best: dict[str, dict[str, Any]] = {}
    for c in doc["cases"]:
        if c.get("tflops") and "params" in c:
            dt = c["params"]["dtype"]
            if dt not in best or c["tflops"] > best[dt]["tflops"]:
                best[dt] = c
    if best:
        peak = doc.get("peak")
        parts = []
        for dt, c in sorted(best.items()):
            frac = f" = {100 * c['peak_fraction']:.1f}% of peak" if c.get("peak_fraction") is not None else ""
            parts.append(f"{dt} {c['tflops']:.2f}{frac}")
        lines.append("best fwd+bwd TFLOP/s: " + ", ".join(parts) + (f"  (peak table: {peak['label']})" if peak else ""))
    wa = doc.get("workaround")
    if wa:
        env = " ".join(f"{k}={v}" for k, v in wa.get("env", {}).items()) or "(none)"
        lines.append(f"workaround search: {wa['status']}: {env}")
    lines += floors.text_lines(doc.get("detection_floors") or {})
    verdict_text = {"pass": "PASS", "fail": "FAIL", "no-gpu": "NO-GPU (no GPU ran these cases)", "error": "ERROR"}
    lines.append(f"VERDICT: {verdict_text[doc['verdict']]}")
    return lines


def print_summary(doc: dict[str, Any], stream: IO[str] | None = None) -> None:
    out = stream or sys.stdout
    out.write("\n".join(summary_lines(doc)) + "\n")
    out.flush()
