"""Recognise how a worker died from its exit status and captured stderr (torch-free)."""

from __future__ import annotations

import re
import signal
from typing import Any

# conv-verification.md §5: ROCr's VM-fault handler, then abort().
MEMORY_FAULT = re.compile(
    r"Memory access fault by GPU node-(?P<node>\d+) \(Agent handle: (?P<agent>0x[0-9a-fA-F]+)\) "
    r"on address (?P<address>0x[0-9a-fA-F]+|\(nil\))(?P<inexact>\(may not be exact address\))?\. "
    r"Reason: (?P<reason>[^.\n]+)\.?"
)
HW_EXCEPTION = re.compile(r"HW Exception by GPU node-(?P<node>\d+).*?reason ?:(?P<reason>[^\n]*)")
HSA_STATUS = re.compile(r"(?P<status>HSA_STATUS_ERROR_\w+)(?::\s*(?P<text>[^\n]*))?")
HIP_ERROR = re.compile(r"(?P<code>hipError\w+)")
HIP_RUNTIME = re.compile(r"(?P<kind>HIP|CUDA) error: (?P<text>[^\n]+)")
FATAL_PYTHON = re.compile(r"Fatal Python error: (?P<text>[^\n]+)")
GPU_CORE_DUMP = re.compile(r"GPU core dump (?:created: (?P<file>\S+)|failed)")


def signal_name(returncode: int | None) -> str | None:
    """``-6`` -> ``SIGABRT``; shells report 128+N, which is mapped too."""
    if returncode is None:
        return None
    num = -returncode if returncode < 0 else (returncode - 128 if 128 < returncode < 160 else 0)
    if num <= 0:
        return None
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def classify(returncode: int | None, stderr: str, timed_out: bool = False) -> dict[str, Any]:
    """A crash record: ``kind`` plus the details matched in ``stderr``.

    Kinds, most specific first: ``gpu_memory_fault``, ``gpu_hw_exception``, ``hsa_error``,
    ``hip_error``, ``cuda_error``, ``hang``, ``signal``, ``exit``.
    """
    rec: dict[str, Any] = {"returncode": returncode, "signal": signal_name(returncode), "timed_out": timed_out}
    lines: list[str] = []
    if m := MEMORY_FAULT.search(stderr):
        rec.update(kind="gpu_memory_fault", gpu_node=int(m["node"]), address=m["address"],
                   reason=m["reason"].strip())
        lines.append(m.group(0))
    if m := HW_EXCEPTION.search(stderr):
        rec.setdefault("kind", "gpu_hw_exception")
        rec.setdefault("reason", m["reason"].strip())
        lines.append(m.group(0))
    if m := HSA_STATUS.search(stderr):
        rec.setdefault("kind", "hsa_error")
        rec["hsa_status"] = m["status"]
        lines.append(m.group(0))
    if m := HIP_ERROR.search(stderr):
        rec.setdefault("kind", "hip_error")
        rec["hip_error"] = m["code"]
        lines.append(m.group(0))
    if m := HIP_RUNTIME.search(stderr):
        rec.setdefault("kind", "hip_error" if m["kind"] == "HIP" else "cuda_error")
        rec.setdefault("reason", m["text"].strip())
        lines.append(m.group(0))
    if m := GPU_CORE_DUMP.search(stderr):
        rec["gpu_core_dump"] = m.group(0)
    if m := FATAL_PYTHON.search(stderr):
        lines.append(m.group(0))
    if timed_out:
        rec.setdefault("kind", "hang")
    elif rec["signal"]:
        rec.setdefault("kind", "signal")
    else:
        rec.setdefault("kind", "exit")
    rec["lines"] = lines
    rec["summary"] = summarise(rec)
    return rec


def summarise(rec: dict[str, Any]) -> str:
    """One line for humans, e.g. ``GPU memory access fault on node-1 (Page not present ...); SIGABRT``."""
    kind = rec.get("kind")
    parts = []
    if kind == "gpu_memory_fault":
        parts.append(f"GPU memory access fault on node-{rec['gpu_node']} ({rec['reason']})")
    elif kind == "gpu_hw_exception":
        parts.append(f"GPU HW exception ({rec.get('reason', '')})")
    elif kind == "hsa_error":
        parts.append(rec["hsa_status"])
    elif kind in ("hip_error", "cuda_error"):
        parts.append(rec.get("hip_error") or rec.get("reason") or kind)
    elif kind == "hang":
        parts.append("hang (killed after the per-case timeout)")
    if rec.get("signal") and kind != "hang":
        parts.append(rec["signal"])
    elif kind == "exit":
        parts.append(f"exit status {rec['returncode']}")
    return "; ".join(parts) or "unknown"
