"""The error model and tolerances of the comparison (torch-free): every number, why, and where from.

Every comparison is against a float64 reference computed from the *same cast inputs*, so the only
error measured is the kernel's own. Each output element is a sum of K terms t (products x·w, or
gradient terms gy·w, gy·x, gy), K = ``reduction_length`` of the pass (``cases.ConvCase``). Besides
the reference r the worker computes ``rss``, the same convolution on the squared inputs, i.e. the
root of Σt² for every element (sqrt(conv(x², w²) + b²) for the forward, likewise for the gradients).

Error model: the expected error of an element is

    σ = u_d·(|r| + rss) + ACCUMULATION_FACTOR · u_acc · (√K · rss + rms(rss))

* u_d·|r| — rounding the result to the test dtype once (round to nearest: ≤ u_d·|r|).
* u_d·rss — rounding intermediates to the test dtype at the size of the terms: the transformed
  tiles a Winograd/FFT kernel feeds to fp16/bf16 matrix units, partial sums of a split reduction
  stored in the test dtype. It also keeps the model sane where r cancels to ~0.
* u_acc·√K·rss — accumulation in fp32 (u_acc = 2^-24; MIOpen, cuDNN and the CPU accumulate fp16
  and bf16 convolutions in fp32). Rounding errors of a sum of zero-mean terms add up like a random
  walk, so the error grows like √K·rss, not like the worst-case bound K·u·Σ|t| (Higham & Mary, "A New
  Approach to Probabilistic Rounding Error Analysis", SIAM J. Sci. Comput. 41(5), 2019, and "Sharper
  Probabilistic Backward Error Analysis for Basic Linear Algebra Kernels with Random Data", SIAM J.
  Sci. Comput. 42(5), 2020: for zero-mean data the error is about u·Σ|t| whatever K). Since
  √K·rss ≥ Σ|t| (Cauchy–Schwarz) this term covers that too. The factor 4 (ACCUMULATION_FACTOR) leaves
  room for the transforms of Winograd and FFT kernels, whose error is several times that of a direct
  sum (Barabasz, Anderson, Soodhalter, Gregg, "Error Analysis and Improving the Accuracy of Winograd
  Convolution for Deep Neural Networks", ACM TOMS 46(4), 2020). The rms(rss) part is the error an
  FFT kernel spreads over the whole tensor (also where an element has no terms and rss = 0).

Unit roundoff u_d: fp32 2^-24 ≈ 6.0e-8, fp16 2^-11 ≈ 4.9e-4, bf16 2^-8 ≈ 3.9e-3. TF32 is off for
fp32 (its 2^-11 per term would fail the fp32 check — on purpose).

Checks of random-normal data (``data == "randn"``), both scale with the error, not with a bound:

* ``rms_ratio`` = rms(out - r) / rms(σ) ≤ MARGIN_RMS (4): the drift of the whole tensor, the
  MIOpen test-driver shape (RMS of the difference against the size of the result; MIOpenDriver's own
  rms_range normalises by max|r| with fp16 8.2e-3 and bf16 6.56e-2, i.e. about 67·u_d in units of
  the result's RMS for Gaussian data — ours is 8·u_d, tight enough to see a uniform 5 % error in bf16).
* ``max_ratio`` = max |out - r| / σ ≤ MARGIN_MAX (16): single wrong elements (an indexing bug, a
  dropped tap, a shifted row) that the RMS averages away.

Measured on an H200 with cuDNN 9.19 (bench/results/h200-full-floors.json, 881 cases): the largest
rms_ratio is 0.86 and the largest max_ratio 5.75 (an fp16 depthwise 3D grad-input), i.e. 4.7x and 2.8x
below the margins; the bf16 and fp16 errors there are 1-2 roundings of the result, the fp32 ones (Winograd
weight gradients) up to ~200 u·max|r|. The worst detection floors that follow: bf16 4.4 %, fp16 0.55 %,
fp32 0.048 % (BENCHMARKS.md). The CPU full profile passes as well (but for a known torch CPU bug).

Integer data (``data == "int"``): inputs are small integers, every product and partial sum is an
exact integer, and the result is compared with the float64 result rounded to the test dtype. While
that result is an exactly representable integer (|v| ≤ 2048 fp16, 256 bf16, 2^24 fp32) the allowed
deviation is min(0.5, MARGIN_MAX·σ') with σ' = σ without the u_d·|r| term (rounding an exactly
representable integer costs nothing): any off-by-one is caught, and only kernels with inexact
transforms (FFT, Winograd F(4,3)) get the model's room. Beyond that range one ulp of the test
dtype (a different but exact summation order may round the other way).

Each checked pass reports its ``detection_floor``: the smallest uniform relative error of the
result (out = r·(1+e)) that its own check flags, derived from the check's own arrays in
``compare.Check.floor``.
"""

from __future__ import annotations

# Unit roundoff (half an ulp at 1) of each test dtype.
UNIT_ROUNDOFF = {"fp32": 2.0**-24, "fp16": 2.0**-11, "bf16": 2.0**-8}

# Accumulation precision: fp32 for every dtype tested here.
ACCUMULATION_ROUNDOFF = 2.0**-24

# Room for Winograd / FFT transforms over a plain sum (Barabasz et al. 2020).
ACCUMULATION_FACTOR = 4.0

# Limits of the two random-data checks, in units of the model error σ.
MARGIN_RMS = 4.0
MARGIN_MAX = 16.0

# Largest integer magnitude below which every integer is exactly representable.
EXACT_INTEGER_LIMIT = {"fp32": 2**24, "fp16": 2048, "bf16": 256}

# Largest deviation ever allowed for an exactly representable integer result.
EXACT_INTEGER_SLACK = 0.5

# What a check must see: a uniform relative error of the result this large fails every checked pass
# (issue 15: 5 % in fp16/bf16, 0.1 % in fp32). The run's summary flags worst floors above it.
FLOOR_GOAL = {"fp32": 1e-3, "fp16": 0.05, "bf16": 0.05}


def limits() -> dict[str, float]:
    """The limits of the random-data checks (the same for every dtype and pass: σ carries both)."""
    return {"rms_ratio": MARGIN_RMS, "max_ratio": MARGIN_MAX}
