"""Compare a device result with its float64 reference (the error model is in ``tolerances``).

A pass's check is a list of ``Check`` criteria on d = out - target. Each says whether a result
fails and, from the same arrays, the smallest uniform relative error e of the result
(out = ref·(1+e)) that it flags: the pass's ``detection_floor`` is the smallest over its criteria.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from provision.convcheck.tolerances import (
    ACCUMULATION_FACTOR,
    ACCUMULATION_ROUNDOFF,
    EXACT_INTEGER_LIMIT,
    EXACT_INTEGER_SLACK,
    MARGIN_MAX,
    MARGIN_RMS,
    UNIT_ROUNDOFF,
)

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _ulp(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Spacing of ``dtype`` numbers at each |value| (values in float64)."""
    mag = values.abs().clamp_min(torch.finfo(dtype).tiny)
    return torch.pow(2.0, torch.floor(torch.log2(mag)) - _mantissa_bits(dtype))


def _mantissa_bits(dtype: torch.dtype) -> int:
    return {torch.float32: 23, torch.float16: 10, torch.bfloat16: 7}[dtype]


def _rms(t: torch.Tensor) -> float:
    return float(torch.sqrt((t * t).mean()))


@dataclass(frozen=True)
class Check:
    """One criterion: ``elementwise`` flags any |out_i - target_i| > allowed_i; otherwise it flags
    rms(out - target) > limit (a float64 scalar tensor in ``allowed``)."""

    name: str
    target: torch.Tensor
    allowed: torch.Tensor
    elementwise: bool

    def excess(self, out: torch.Tensor) -> torch.Tensor:
        """Per element |d|/allowed (elementwise) or the one-element rms(d)/limit; > 1 fails."""
        d = (out - self.target).abs()
        if self.elementwise:
            return torch.where(d == 0, torch.zeros_like(d), d / self.allowed)
        return (torch.sqrt((d * d).mean()) / self.allowed).reshape(1)

    def flags(self, out: torch.Tensor) -> bool:
        return bool((self.excess(out) > 1).any())

    def floor(self, ref: torch.Tensor) -> float:
        """Smallest e ≥ 0 such that ``flags(ref·(1+e))``: d(e) = δ + e·ref with δ = ref - target."""
        delta = ref - self.target
        if self.elementwise:
            # |δ_i + e·r_i| > a_i first for e_i = (a_i - δ_i·sign(r_i)) / |r_i|.
            live = ref != 0
            if not bool(live.any()):
                return math.inf
            r, dl, a = ref[live], delta[live], self.allowed[live]
            e = (a - dl * torch.sign(r)) / r.abs()
            return max(0.0, float(e.min()))
        # rms(δ + e·r)² = A·e² + 2B·e + C reaches limit² at the positive root.
        a_, b_, c_ = float((ref * ref).mean()), float((delta * ref).mean()), float((delta * delta).mean())
        limit2 = float(self.allowed) ** 2
        if a_ == 0:
            return math.inf
        if c_ >= limit2:
            return 0.0
        return max(0.0, (-b_ + math.sqrt(b_ * b_ - a_ * (c_ - limit2))) / a_)


def model_error(ref: torch.Tensor, rss: torch.Tensor, dtype: str, terms: int, *, rounding: bool = True
                ) -> torch.Tensor:
    """σ of every element (``tolerances``): u_d·(|r| + rss) + factor·u_acc·(√K·rss + rms(rss)).

    ``rounding=False`` leaves out u_d·|r| (an exactly representable result is not rounded)."""
    u = UNIT_ROUNDOFF[dtype]
    acc = ACCUMULATION_FACTOR * ACCUMULATION_ROUNDOFF
    sigma = (u + acc * math.sqrt(max(terms, 1))) * rss + acc * _rms(rss)
    return sigma + u * ref.abs() if rounding else sigma


def checks(ref: torch.Tensor, dtype: str, data: str, rss: torch.Tensor | None = None, terms: int = 1
           ) -> list[Check]:
    """The criteria of one pass (float64 CPU tensors). ``rss``: root of the sum of squared terms of
    every element (|ref| when not given: one term each); ``terms``: the reduction length K."""
    rss = ref.abs() if rss is None else rss
    if data == "int":
        tdt = TORCH_DTYPES[dtype]
        ref_q = ref.to(tdt).to(torch.float64)
        exact_range = ref_q.abs() <= EXACT_INTEGER_LIMIT[dtype]
        room = (MARGIN_MAX * model_error(ref, rss, dtype, terms, rounding=False)).clamp_max(EXACT_INTEGER_SLACK)
        allowed = torch.where(exact_range, room, _ulp(ref_q, tdt))
        return [Check("exact", ref_q, allowed, elementwise=True)]
    sigma = model_error(ref, rss, dtype, terms)
    rms_sigma = _rms(sigma)
    return [
        Check("rms_ratio", ref, torch.tensor(MARGIN_RMS * rms_sigma, dtype=torch.float64), elementwise=False),
        Check("max_ratio", ref, MARGIN_MAX * sigma, elementwise=True),
    ]


def detection_floor(ref: torch.Tensor, crit: list[Check]) -> float | None:
    """Smallest uniform relative error of the result that any criterion flags (None: none can)."""
    floor = min((c.floor(ref) for c in crit), default=math.inf)
    return None if math.isinf(floor) else floor


def compare(out: torch.Tensor, ref: torch.Tensor, dtype: str, data: str, pass_name: str,
            rss: torch.Tensor | None = None, terms: int = 1) -> dict[str, Any]:
    """Metrics, verdict and detection floor for one pass.

    ``out`` is the device result, ``ref`` the float64 reference, ``rss`` the root of the same
    computation on squared inputs and ``terms`` the reduction length (see ``tolerances``).
    """
    got = out.detach().to("cpu", torch.float64)
    ref = ref.detach().to("cpu", torch.float64)
    result: dict[str, Any] = {"elements": ref.numel()}
    if got.shape != ref.shape:
        return {**result, "ok": False,
                "reason": f"{pass_name}: shape {tuple(got.shape)} != reference {tuple(ref.shape)}"}
    if ref.numel() == 0:
        return {**result, "ok": True}
    finite = torch.isfinite(got)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        return {**result, "ok": False, "reason": f"{bad} non-finite values"}
    rss = None if rss is None else rss.detach().to("cpu", torch.float64)
    crit = checks(ref, dtype, data, rss, terms)
    diff = (got - ref).abs()
    result.update({"max_abs_err": float(diff.max()), "max_abs_ref": float(ref.abs().max()),
                   "rms_ref": _rms(ref), "rel_rms_err": _rms(diff) / max(_rms(ref), 1e-300), "terms": terms})
    floor = detection_floor(ref, crit)
    reasons: list[str] = []
    if data == "int":
        check = crit[0]
        excess = check.excess(got)
        wrong = excess > 1
        n_wrong = int(wrong.sum())
        result.update({"mode": "exact", "mismatches": n_wrong, "bitwise_equal": bool((got == check.target).all())})
        if n_wrong:
            idx = int(torch.nonzero(wrong.flatten())[0])
            reasons.append(f"{n_wrong} elements differ from the exact result (first at flat index {idx}: got "
                           f"{float(got.flatten()[idx])}, expected {float(check.target.flatten()[idx])})")
    else:
        rms_check, max_check = crit
        rms_ratio = float(rms_check.excess(got)[0]) * MARGIN_RMS
        per_element = max_check.excess(got)
        idx = int(per_element.flatten().argmax())
        max_ratio = float(per_element.flatten()[idx]) * MARGIN_MAX
        result.update({"mode": "model", "rms_ratio": rms_ratio, "max_ratio": max_ratio,
                       "limits": {"rms_ratio": MARGIN_RMS, "max_ratio": MARGIN_MAX}})
        if rms_ratio > MARGIN_RMS:
            reasons.append(f"rms error {rms_ratio:.3g}x the model error > {MARGIN_RMS:g} "
                           f"({result['rel_rms_err']:.3g} of the result's rms)")
        if max_ratio > MARGIN_MAX:
            n_wrong = int((per_element > 1).sum())
            reasons.append(f"{n_wrong} elements off by more than {MARGIN_MAX:g}x the model error (worst "
                           f"{max_ratio:.3g}x at flat index {idx}: got {float(got.flatten()[idx]):.6g}, "
                           f"expected {float(ref.flatten()[idx]):.6g})")
    result["detection_floor"] = floor
    result["ok"] = not reasons
    if reasons:
        result["reason"] = "; ".join(reasons)
    return result
