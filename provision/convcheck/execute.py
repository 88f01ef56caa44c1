"""Run one case on the device and check it against float64 (runs inside the worker; imports torch).

Inputs are drawn in float64, cast to the test dtype, and the reference is computed in float64
from those *cast* values, so only the kernel's error is measured. Big cases draw their inputs on
the device and bring back only what the sampled reference needs.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
import time
import zlib
from collections.abc import Callable
from typing import Any

import torch

from provision.convcheck import faults
from provision.convcheck.cases import ConvCase
from provision.convcheck.compare import TORCH_DTYPES, compare

aten = torch.ops.aten

# RuntimeError texts after which the device context is unusable: report, then let the worker die.
FATAL_ERROR_MARKERS = (
    "illegal memory access", "device-side assert", "hip error", "cuda error", "hiperror",
    "unspecified launch failure", "misaligned address", "illegal instruction", "hsa_status_error",
)

TIMING_BUDGET_S = 0.02  # per pass, after warm-up
MAX_TIMING_REPS = 10


class _Conv:
    """The convolution call of one case, with its arguments fixed."""

    def __init__(self, case: ConvCase) -> None:
        d = case.dim
        self.case = case
        self.stride = [case.stride] * d
        self.padding = list(case.pad)
        self.dilation = [case.dilation] * d
        self.output_padding = [case.output_padding] * d

    def forward(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        c = self.case
        return aten.convolution(x, w, b, self.stride, self.padding, self.dilation, c.transposed,
                                self.output_padding, c.groups)

    def backward(self, gy: torch.Tensor, x: torch.Tensor, w: torch.Tensor,
                 mask: tuple[bool, bool, bool]) -> tuple[Any, Any, Any]:
        c = self.case
        return aten.convolution_backward(gy, x, w, [c.c_out], self.stride, self.padding, self.dilation,
                                         c.transposed, self.output_padding, c.groups, list(mask))


def _memory_format(case: ConvCase) -> torch.memory_format:
    if case.layout != "channels_last":
        return torch.contiguous_format
    return torch.channels_last if case.dim == 2 else torch.channels_last_3d


def _shapes(case: ConvCase) -> dict[str, tuple[int, ...]]:
    k = (case.kernel,) * case.dim
    w = (case.c_in, case.c_out // case.groups, *k) if case.transposed else (case.c_out, case.c_in // case.groups, *k)
    return {"x": (case.n, case.c_in, *case.size), "w": w, "b": (case.c_out,),
            "gy": (case.n, case.c_out, *case.out_size())}


def _draw(name: str, shape: tuple[int, ...], case: ConvCase, gen: torch.Generator, device: str,
          dtype: torch.dtype, fan_in: int) -> torch.Tensor:
    if case.data == "int":
        # Small integers: every product and sum is an exact integer.
        hi = {"x": 2, "w": 1, "b": 2, "gy": 1}[name]
        if case.dtype == "bf16":
            hi = 1
        return torch.randint(-hi, hi + 1, shape, generator=gen, device=device, dtype=dtype)
    t = torch.randn(shape, generator=gen, device=device, dtype=dtype)
    if name == "w":
        t = t / math.sqrt(fan_in)
    if name == "gy":
        t = t + _channel_mean(case, device, dtype)
    return t


def _channel_mean(case: ConvCase, device: str, dtype: torch.dtype) -> torch.Tensor:
    """A mean of ±3/√(N·P·Q) per output channel for the random output gradient.

    The bias gradient is a plain sum of N·P·Q zero-mean terms; a sum that cancels to far below its
    terms (condition Σ|t|/|Σt| large) hides any relative error below u_acc times that condition.
    With this mean every channel's sum is about 3 standard deviations away from 0, while the
    weight and input gradients keep zero-mean terms (the mean is a small fraction of the spread)."""
    count = case.reduction_length("bwd_bias")
    signs = 1.0 - 2.0 * (torch.arange(case.c_out, device=device) % 2).to(dtype)
    return (3.0 / math.sqrt(count) * signs).reshape(1, case.c_out, *([1] * case.dim))


def make_inputs(case: ConvCase, device: str) -> dict[str, torch.Tensor]:
    """Inputs in the test dtype and layout on ``device`` (drawn on CPU in float64 unless the case is big)."""
    shapes = _shapes(case)
    fan_in = (case.c_in // case.groups) * case.kernel**case.dim
    seed = zlib.crc32(case.name.encode())
    tdt = TORCH_DTYPES[case.dtype]
    draw_on_device = case.reference != "cpu"
    gen = torch.Generator(device=device if draw_on_device else "cpu")
    gen.manual_seed(seed)
    fmt = _memory_format(case)
    out = {}
    for key in ("x", "w", "b", "gy"):
        if draw_on_device:
            t = _draw(key, shapes[key], case, gen, device, tdt, fan_in)
        else:
            t = _draw(key, shapes[key], case, gen, "cpu", torch.float64, fan_in).to(tdt).to(device)
        if key != "b":
            t = t.contiguous(memory_format=fmt)
        out[key] = t
    return out


def _is_fatal(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(m in text for m in FATAL_ERROR_MARKERS)


def _inject(rules: list[faults.FaultRule], case: ConvCase, pass_name: str, device: str) -> bool:
    """Apply a crash-type fault for this pass; return True when the pass's result must be corrupted."""
    for rule in rules:
        if not rule.matches(case.name, pass_name, dict(os.environ)):
            continue
        if rule.kind == "wrong":
            return True
        if rule.kind == "abort":
            sys.stderr.write(faults.ROCM_FAULT_LINE + "\n")
            sys.stderr.flush()
            os.abort()
        if rule.kind == "segv":
            ctypes.string_at(0)
        if rule.kind == "hang":
            time.sleep(3600)
        if rule.kind == "hip_error":
            raise RuntimeError(faults.HIP_ERROR_TEXT)
        if rule.kind == "gpu_assert":
            # A real out-of-bounds index kernel: on a GPU this trips a device-side assert.
            table = torch.zeros(16, device=device)
            index = torch.full((1,), 1 << 30, dtype=torch.long, device=device)
            float(table[index].sum())
            if device.startswith("cuda"):
                torch.cuda.synchronize()
    return False


def _corrupt(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    flat = t.view(-1) if t.is_contiguous() else t.reshape(-1)
    flat[flat.numel() // 2] += 8.0
    return flat.view(t.shape) if t.is_contiguous() else flat.reshape(t.shape)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time_pass(fn: Callable[[], Any], device: str) -> float:
    """Seconds per call after warm-up (GPU events on CUDA/HIP; wall clock on CPU)."""
    if not device.startswith("cuda"):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    fn()  # warm-up beyond the correctness call (which paid for Find / kernel compilation)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    one = start.elapsed_time(end) / 1e3
    reps = max(1, min(MAX_TIMING_REPS, int(TIMING_BUDGET_S / max(one, 1e-6))))
    if reps == 1:
        return one
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / reps


Triple = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _ref_passes(conv: _Conv, r: dict[str, torch.Tensor], mask: tuple[bool, bool, bool]) -> dict[str, Any]:
    """Float64 forward + backward of ``r`` (CPU tensors)."""
    y = conv.forward(r["x"], r["w"], r["b"])
    gx, gw, gb = conv.backward(r["gy"], r["x"], r["w"], mask)
    return {"fwd": y, "bwd_data": gx, "bwd_weight": gw, "bwd_bias": gb}


def _with_squares(conv: _Conv, r: dict[str, torch.Tensor], mask: tuple[bool, bool, bool]
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Reference results and the root of the same computation on squared inputs (sqrt(Σ t²) of the
    terms of every output element: the scale of the model error in ``tolerances``)."""
    ref = _ref_passes(conv, r, mask)
    sq = _ref_passes(conv, {k: v * v for k, v in r.items()}, mask)
    return ref, {p: None if v is None else v.sqrt() for p, v in sq.items()}


def _reference(case: ConvCase, conv: _Conv, t: dict[str, torch.Tensor],
               got: dict[str, torch.Tensor]) -> dict[str, Triple | None]:
    """(device result, float64 reference, float64 rss) per pass; None: only checked finite."""
    if case.reference == "cpu":
        r = {k: v.detach().to("cpu", torch.float64) for k, v in t.items()}
        ref, rss = _with_squares(conv, r, (True, True, True))
        return {p: (got[p], ref[p], rss[p]) for p in ("fwd", "bwd_data", "bwd_weight", "bwd_bias")}
    if case.reference == "batch-sample":
        # Samples are independent in fwd and grad-input: check the first, middle and last sample
        # (the last ones sit past the 2 GiB offsets where 32-bit indexing breaks).
        idx = sorted({0, case.n // 2, case.n - 1})
        r = {"x": t["x"][idx], "gy": t["gy"][idx], "w": t["w"], "b": t["b"]}
        r = {k: v.to("cpu", torch.float64) for k, v in r.items()}
        ref, rss = _with_squares(conv, r, (True, False, False))
        return {"fwd": (got["fwd"][idx], ref["fwd"], rss["fwd"]),
                "bwd_data": (got["bwd_data"][idx], ref["bwd_data"], rss["bwd_data"]),
                "bwd_weight": None, "bwd_bias": None}
    if case.reference == "row-tile":
        return {"fwd": _row_tiles(case, t, got["fwd"]), "bwd_data": None, "bwd_weight": None, "bwd_bias": None}
    raise ValueError(f"unknown reference mode {case.reference!r}")


def _row_tiles(case: ConvCase, t: dict[str, torch.Tensor], y_dev: torch.Tensor, rows: int = 8) -> Triple:
    """Forward reference on three bands of output rows (top, middle, bottom) of a 2D convolution."""
    if case.dim != 2 or case.transposed:
        raise ValueError("row-tile reference supports 2D forward convolutions only")
    p_h, p_w = case.pad
    s, d, k = case.stride, case.dilation, case.kernel
    out_h = y_dev.shape[2]
    height = case.size[0]
    w = t["w"].to("cpu", torch.float64)
    b = t["b"].to("cpu", torch.float64)
    got, ref, sq = [], [], []
    for a in sorted({0, max(0, out_h // 2 - rows // 2), max(0, out_h - rows)}):
        e = min(out_h, a + rows)
        lo, hi = a * s - p_h, (e - 1) * s - p_h + d * (k - 1) + 1
        crop = t["x"][:, :, max(lo, 0):min(hi, height), :].to("cpu", torch.float64)
        crop = torch.nn.functional.pad(crop, (0, 0, max(0, -lo), max(0, hi - height)))
        for src, sink in ((crop, ref), (crop * crop, sq)):
            wb = (w, b) if sink is ref else (w * w, b * b)
            sink.append(aten.convolution(src, wb[0], wb[1], [s, s], [0, p_w], [d, d], False, [0, 0], case.groups))
        got.append(y_dev[:, :, a:e, :])
    return torch.cat(got, dim=2), torch.cat(ref, dim=2), torch.cat(sq, dim=2).sqrt()


def _conv_backend(case: ConvCase, t: dict[str, torch.Tensor], conv: _Conv) -> str:
    try:
        backend = torch._C._select_conv_backend(
            t["x"], t["w"], t["b"], conv.stride, conv.padding, conv.dilation, case.transposed,
            conv.output_padding, case.groups, None)
    except (AttributeError, RuntimeError, TypeError):
        return "unknown"
    return str(backend).rsplit(".", 1)[-1]


def run_case(case: ConvCase, device: str, rules: list[faults.FaultRule] | None = None,
             timing: bool = True) -> dict[str, Any]:
    """Run ``case`` on ``device`` and return its result record (never raises for case errors)."""
    rules = rules or []
    t_start = time.perf_counter()
    result: dict[str, Any] = {"name": case.name, "status": "error", "passes": {}}
    try:
        conv = _Conv(case)
        t = make_inputs(case, device)
        result["conv_backend"] = _conv_backend(case, t, conv)
        corrupt = {p: _inject(rules, case, p, device) for p in ("fwd",)}
        y = conv.forward(t["x"], t["w"], t["b"])
        _sync(device)
        for p in ("bwd_data", "bwd_weight", "bwd_bias"):
            corrupt[p] = _inject(rules, case, p, device)
        gx, gw, gb = conv.backward(t["gy"], t["x"], t["w"], (True, True, True))
        _sync(device)
        got = {"fwd": y, "bwd_data": gx, "bwd_weight": gw, "bwd_bias": gb}
        got = {p: _corrupt(v) if corrupt[p] else v for p, v in got.items()}
        result["output_channels_last"] = bool(y.dim() > 3 and y.is_contiguous(memory_format=_memory_format(case))
                                              and case.layout == "channels_last")
        pairs = _reference(case, conv, t, got)
        for p in case.passes:
            pair = pairs[p]
            if pair is None:
                finite = bool(torch.isfinite(got[p]).all())
                result["passes"][p] = {"ok": finite, "mode": "finite-only", "detection_floor": None,
                                       **({} if finite else {"reason": "non-finite values"})}
            else:
                result["passes"][p] = compare(pair[0], pair[1], case.dtype, case.data, p, rss=pair[2],
                                              terms=case.reduction_length(p))
        if timing:
            _add_timing(case, conv, t, device, result)
        failed = [p for p, r in result["passes"].items() if not r["ok"]]
        result["status"] = "fail" if failed else "pass"
        if failed:
            result["error"] = "; ".join(f"{p}: {result['passes'][p].get('reason', 'mismatch')}" for p in failed)
    except torch.cuda.OutOfMemoryError as exc:
        result.update({"status": "skipped", "error": f"out of device memory: {str(exc).splitlines()[0]}"})
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    except (RuntimeError, ValueError, IndexError, TypeError, NotImplementedError) as exc:
        result.update({"status": "error", "error": f"{type(exc).__name__}: {exc}"[:2000],
                       "fatal": _is_fatal(exc)})
    result["time_s"] = round(time.perf_counter() - t_start, 4)
    return result


def _add_timing(case: ConvCase, conv: _Conv, t: dict[str, torch.Tensor], device: str,
                result: dict[str, Any]) -> None:
    flops = case.flops()
    timed = {
        "fwd": lambda: conv.forward(t["x"], t["w"], t["b"]),
        "bwd_data": lambda: conv.backward(t["gy"], t["x"], t["w"], (True, False, False)),
        "bwd_weight": lambda: conv.backward(t["gy"], t["x"], t["w"], (False, True, True)),
    }
    total_time = 0.0
    for p, fn in timed.items():
        seconds = _time_pass(fn, device)
        total_time += seconds
        entry = result["passes"].setdefault(p, {})
        entry["time_ms"] = round(seconds * 1e3, 4)
        entry["tflops"] = round(flops / seconds / 1e12, 4) if seconds > 0 else None
    result["flops"] = flops
    result["tflops"] = round(3 * flops / total_time / 1e12, 4) if total_time > 0 else None
