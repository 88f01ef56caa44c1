"""Peak-throughput table (``peaks.json``) and the fraction-of-peak computation (torch-free)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

PEAKS_FILE = Path(__file__).with_name("peaks.json")


@cache
def table() -> list[dict[str, Any]]:
    return list(json.loads(PEAKS_FILE.read_text(encoding="utf-8"))["gpus"])


def lookup(device_name: str, arch: str = "") -> dict[str, Any] | None:
    """The peak entry for a GPU: by name substring first, then by architecture (e.g. ``gfx1030``)."""
    for entry in table():
        if any(m.lower() in device_name.lower() for m in entry["match"]):
            return entry
    base_arch = arch.split(":")[0]
    for entry in table():
        if base_arch and base_arch in entry["arch"]:
            return entry
    return None


def fraction(tflops: float | None, dtype: str, entry: dict[str, Any] | None) -> float | None:
    """Achieved / peak for ``dtype``; None when either side is unknown."""
    if tflops is None or entry is None:
        return None
    peak = entry["tflops"].get(dtype)
    if not peak:
        return None
    return tflops / peak
