"""What the worker reports about its host, torch build, GPUs and the conv library it loaded."""

from __future__ import annotations

import os
import platform
import socket
import sys
from typing import Any

import torch

_LIB_MARKERS = {"MIOpen": "libMIOpen", "cuDNN": "libcudnn"}


def resolve_device(requested: str) -> tuple[str, str]:
    """Map ``auto|cuda|cpu`` to a torch device string; second item is an error text or ''."""
    if requested == "cpu":
        return "cpu", ""
    if torch.cuda.is_available():
        return "cuda", ""
    if requested == "cuda":
        return "none", "no GPU visible to torch (torch.cuda.is_available() is False)"
    return "cpu", ""


def loaded_libraries(markers: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Shared libraries matching ``markers`` that this process has mapped (from /proc/self/maps)."""
    markers = markers or _LIB_MARKERS
    found: dict[str, list[str]] = {name: [] for name in markers}
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            paths = {line.split()[-1] for line in fh if "/" in line}
    except OSError:
        return found
    for path in sorted(paths):
        base = os.path.basename(path)
        for name, marker in markers.items():
            if base.startswith(marker) and path not in found[name]:
                found[name].append(path)
    return found


def _warm_up(device: str) -> None:
    """One small conv forward + backward so the conv library is loaded and initialised."""
    x = torch.randn(1, 4, 8, 8, device=device, requires_grad=True)
    w = torch.randn(4, 4, 3, 3, device=device, requires_grad=True)
    torch.nn.functional.conv2d(x, w, padding=1).sum().backward()
    if device == "cuda":
        torch.cuda.synchronize()


def _version_text(v: int | None) -> str | None:
    if v is None:
        return None
    if v >= 10000:  # cuDNN 9: 90100 -> 9.1.0 ; MIOpen via hipified API: 30400 -> 3.4.0
        return f"{v // 10000}.{v // 100 % 100}.{v % 100}"
    return str(v)


def configure(device: str) -> dict[str, Any]:
    """Numerics settings for a correctness run: TF32 off, default (non-benchmark) algorithm choice."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    return {
        "allow_tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "allow_tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_enabled": torch.backends.cudnn.enabled,
        "threads": torch.get_num_threads(),
    }


def describe(requested: str) -> dict[str, Any]:
    """The worker's hello: device resolution, versions, GPUs, loaded conv library."""
    device, error = resolve_device(requested)
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "hip": getattr(torch.version, "hip", None),
        "cuda": torch.version.cuda,
        "device_requested": requested,
        "device": device,
        "gpu_runtime": "rocm" if getattr(torch.version, "hip", None) else ("cuda" if torch.version.cuda else None),
        "gpus": [],
        "conv_library": None,
        "error": error,
    }
    if device == "none":
        return info
    info["settings"] = configure(device)
    _warm_up(device)
    if device == "cuda":
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            arch = getattr(p, "gcnArchName", "") if info["gpu_runtime"] == "rocm" else f"sm_{p.major}{p.minor}"
            info["gpus"].append({"index": i, "name": p.name, "arch": arch, "total_memory_bytes": p.total_memory,
                                 "multiprocessors": p.multi_processor_count})
        name = "MIOpen" if info["gpu_runtime"] == "rocm" else "cuDNN"
        raw = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        info["conv_library"] = {
            "name": name,
            "version": _version_text(raw),
            "version_raw": raw,
            "loaded": loaded_libraries().get(name, []),
        }
    else:
        info["conv_library"] = {"name": "aten-cpu", "version": torch.__version__, "version_raw": None,
                                "loaded": [], "mkldnn": torch.backends.mkldnn.is_available()}
    return info
