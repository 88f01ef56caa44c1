"""Fault injection for tests and demonstrations (torch-free parsing; effects run in the worker).

Selected with ``PROVISION_CONVCHECK_FAULTS`` (or ``--inject-faults``), a JSON list of rules::

    [{"cases": "2d-conv-*-fp16-*", "kind": "abort", "pass": "fwd",
      "unless": {"MIOPEN_DEBUG_CONV_GEMM": "0"}, "once_file": "/tmp/x"}]

* ``cases``: glob on the case name (a term without ``*?[`` is a substring).
* ``kind``: ``abort`` (print a real ROCm fault line, then SIGABRT, as ROCr does), ``segv``,
  ``hang``, ``hip_error`` (raise the "illegal memory access" RuntimeError HIP raises),
  ``gpu_assert`` (a real out-of-bounds index kernel on the device), ``wrong`` (corrupt one
  element of the pass's result).
* ``unless``: env vars that make the fault go away (a dict: all must match; a list of dicts:
  any one suffices). This models a MIOpen solver that misbehaves until it is disabled.
* ``once_file``: fire only when this file does not exist yet, then create it (a flaky fault).
* ``pass``: which pass misbehaves (default ``fwd``).

Everything else (worker, crash classification, retries, workaround search) is the real path.
"""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass
from typing import Any

ENV_VAR = "PROVISION_CONVCHECK_FAULTS"
KINDS = ("abort", "segv", "hang", "hip_error", "gpu_assert", "wrong")

# What ROCr prints before it aborts on a GPU page fault (runtime.cpp), verbatim format.
ROCM_FAULT_LINE = (
    "Memory access fault by GPU node-1 (Agent handle: 0x55d1c0f7a2b0) on address 0x7f3a5c000000. "
    "Reason: Page not present or supervisor privilege."
)
HIP_ERROR_TEXT = (
    "HIP error: an illegal memory access was encountered\n"
    "HIP kernel errors might be asynchronously reported at some other API call, so the stacktrace "
    "below might be incorrect.\nFor debugging consider passing AMD_SERIALIZE_KERNEL=3"
)


@dataclass(frozen=True)
class FaultRule:
    cases: str
    kind: str
    pass_name: str = "fwd"
    unless: tuple[tuple[tuple[str, str], ...], ...] = ()
    once_file: str = ""

    def matches(self, case_name: str, pass_name: str, env: dict[str, str]) -> bool:
        pattern = self.cases if any(ch in self.cases for ch in "*?[") else f"*{self.cases}*"
        if pass_name != self.pass_name or not fnmatch.fnmatchcase(case_name, pattern):
            return False
        if any(all(env.get(k) == v for k, v in alt) for alt in self.unless):
            return False
        if self.once_file:
            if os.path.exists(self.once_file):
                return False
            with open(self.once_file, "w", encoding="utf-8") as fh:
                fh.write("fired\n")
        return True


def parse(spec: str) -> list[FaultRule]:
    """Parse the JSON rule list; raises ValueError on a malformed spec."""
    try:
        raw: Any = json.loads(spec)
    except json.JSONDecodeError as exc:
        raise ValueError(f"fault spec is not JSON: {exc}") from exc
    if isinstance(raw, dict):
        raw = [raw]
    rules = []
    for item in raw:
        kind = item.get("kind")
        if kind not in KINDS:
            raise ValueError(f"fault kind must be one of {KINDS}, got {kind!r}")
        unless = item.get("unless", [])
        alts = [unless] if isinstance(unless, dict) else list(unless)
        rules.append(FaultRule(
            cases=str(item.get("cases", "*")),
            kind=kind,
            pass_name=str(item.get("pass", "fwd")),
            unless=tuple(tuple(sorted((str(k), str(v)) for k, v in alt.items())) for alt in alts),
            once_file=str(item.get("once_file", "")),
        ))
    return rules


def from_env(env: dict[str, str] | None = None) -> list[FaultRule]:
    spec = (env if env is not None else os.environ).get(ENV_VAR, "")
    return parse(spec) if spec.strip() else []
