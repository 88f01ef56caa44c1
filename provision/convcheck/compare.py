"""Compare a device result with its float64 reference (see ``tolerances`` for the rules)."""

from __future__ import annotations

from typing import Any

import torch

from provision.convcheck.tolerances import EXACT_INTEGER_LIMIT, tolerance

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _ulp(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Spacing of ``dtype`` numbers at each |value| (values in float64)."""
    mag = values.abs().clamp_min(torch.finfo(dtype).tiny)
    return torch.pow(2.0, torch.floor(torch.log2(mag)) - _mantissa_bits(dtype))


def _mantissa_bits(dtype: torch.dtype) -> int:
    return {torch.float32: 23, torch.float16: 10, torch.bfloat16: 7}[dtype]


def compare(out: torch.Tensor, ref: torch.Tensor, dtype: str, data: str, pass_name: str,
            magnitude: torch.Tensor | None = None) -> dict[str, Any]:
    """Metrics and verdict for one pass.

    ``out`` is the device result, ``ref`` the float64 reference and ``magnitude`` the same
    computation on absolute values (the sum of |terms| of each output); errors are normalised by
    its largest element (by max|ref| when it is not given).
    """
    got = out.detach().to("cpu", torch.float64)
    ref = ref.detach().to("cpu", torch.float64)
    result: dict[str, Any] = {"elements": ref.numel()}
    if got.shape != ref.shape:
        return {**result, "ok": False, "reason": f"shape {tuple(got.shape)} != reference {tuple(ref.shape)}"}
    if ref.numel() == 0:
        return {**result, "ok": True}
    finite = torch.isfinite(got)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        return {**result, "ok": False, "reason": f"{bad} non-finite values"}
    diff = (got - ref).abs()
    mag_max = float(magnitude.detach().abs().max()) if magnitude is not None and magnitude.numel() else 0.0
    scale = max(mag_max, float(ref.abs().max()), 1e-30)
    nrms = float(torch.sqrt((diff * diff).mean())) / scale
    nmax = float(diff.max()) / scale
    result.update({"nrms": nrms, "nmax": nmax, "max_abs_err": float(diff.max()),
                   "max_abs_ref": float(ref.abs().max()), "scale": scale})
    if data == "int":
        tdt = TORCH_DTYPES[dtype]
        ref_q = ref.to(tdt).to(torch.float64)
        err = (got - ref_q).abs()
        exact_range = ref_q.abs() <= EXACT_INTEGER_LIMIT[dtype]
        allowed = torch.where(exact_range, torch.full_like(ref_q, 0.5), _ulp(ref_q, tdt))
        wrong = err > allowed
        n_wrong = int(wrong.sum())
        result.update({"mode": "exact", "mismatches": n_wrong, "bitwise_equal": bool((err == 0).all())})
        if n_wrong:
            idx = int(torch.nonzero(wrong.flatten())[0])
            result.update({
                "ok": False,
                "reason": f"{n_wrong} elements differ from the exact result "
                          f"(first at flat index {idx}: got {float(got.flatten()[idx])}, "
                          f"expected {float(ref_q.flatten()[idx])})",
            })
        else:
            result["ok"] = True
        return result
    tol = tolerance(dtype, pass_name)
    result.update({"mode": "normalised", "tolerance": tol})
    failures = [f"{k} {result[k]:.3g} > {tol[k]:.3g}" for k in ("nrms", "nmax") if result[k] > tol[k]]
    result["ok"] = not failures
    if failures:
        result["reason"] = "; ".join(failures)
    return result
