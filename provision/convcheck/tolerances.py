"""Per-dtype tolerances (torch-free), with the reasoning behind each number.

Every comparison is against a float64 reference computed from the *same cast inputs*, so the only
error measured is the kernel's own: accumulation error plus the final rounding to the output
dtype. Errors are normalised by the largest *sum of |terms|* of any output element, i.e. the same
convolution computed on |x|, |w|, |b| (|dy|). That is the scale of the standard error bound of a
sum, |fl(Σ t) - Σ t| ≤ γ_L·Σ|t|, so a legitimate result with heavy cancellation (a bias gradient
summing ±terms to nearly zero) is not failed, while the metric is never looser than MIOpenDriver's
normalisation by max|ref| (Σ|t| ≥ |Σ t|). Two metrics:

* ``nrms`` = sqrt(mean((out - ref)²)) / scale — the MIOpenDriver ``rms_range`` shape; wide drift.
* ``nmax`` = max|out - ref| / scale — a few wrong elements (an indexing bug) that the RMS would
  average away.

Unit roundoff u: fp32 2^-24 ≈ 6.0e-8, fp16 2^-11 ≈ 4.9e-4, bf16 2^-8 ≈ 3.9e-3.

* fp16 / bf16: rounding the output once costs at most u·|ref| ≤ u·scale. ``nmax`` may reach 8u
  (fp16 4e-3, bf16 3e-2), ``nrms`` 2u (fp16 1e-3, bf16 8e-3): room for fp32 accumulation in any
  order and for Winograd/FFT transforms, far below MIOpenDriver's own defaults (fp16 8.2e-3,
  bf16 6.56e-2, normalised by the smaller max|ref|). A dropped or doubled tap moves an element by
  about one term, i.e. ~1/L of the scale, which ``nmax`` sees for the fan-ins used here.
* fp32: TF32 is switched off (with it the error per term is 2^-11, about 4e-5 of the scale for a
  fan-in of 144, and the check fails — on purpose). ``nrms`` 1.5e-6 is MIOpenDriver's fp32
  tolerance; ``nmax`` 1.5e-5 is 10x that, the factor MIOpenDriver grants implicit GEMM.
* Weight and bias gradients reduce over N·P·Q (much longer sums): tolerances x2, as
  MIOpenDriver does for WrW.
* Integer data (``data == "int"``): inputs are small integers, all products and sums are exact
  integers; the check is exact: each element must equal the float64 result rounded to the test
  dtype — within 0.5 while that result is an exactly representable integer (|v| ≤ 2048 fp16,
  256 bf16, 2^24 fp32), so any off-by-one is caught; beyond that range within one ulp (a
  different but exact summation order may round the other way).
"""

from __future__ import annotations

TOLERANCES: dict[str, dict[str, float]] = {
    "fp32": {"nrms": 1.5e-6, "nmax": 1.5e-5},
    "fp16": {"nrms": 1e-3, "nmax": 4e-3},
    "bf16": {"nrms": 8e-3, "nmax": 3e-2},
}

# Passes that reduce over the batch and spatial dims get twice the tolerance.
REDUCTION_PASS_FACTOR = {"fwd": 1.0, "bwd_data": 1.0, "bwd_weight": 2.0, "bwd_bias": 2.0}

# Largest integer magnitude below which every integer is exactly representable.
EXACT_INTEGER_LIMIT = {"fp32": 2**24, "fp16": 2048, "bf16": 256}


def tolerance(dtype: str, pass_name: str) -> dict[str, float]:
    """The ``nrms`` / ``nmax`` limits for ``dtype`` and pass."""
    factor = REDUCTION_PASS_FACTOR[pass_name]
    return {k: v * factor for k, v in TOLERANCES[dtype].items()}
