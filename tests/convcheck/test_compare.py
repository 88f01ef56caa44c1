"""Comparison against the float64 reference: exact integer mode, the error-model checks, detection floors."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from provision.convcheck.compare import compare  # noqa: E402
from provision.convcheck.tolerances import MARGIN_MAX, MARGIN_RMS, UNIT_ROUNDOFF  # noqa: E402

TDT = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _ints(shape: tuple[int, ...], seed: int = 0, hi: int = 300) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-hi, hi, shape, generator=g).to(torch.float64)


def _randn(shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_exact_mode_accepts_correct_rounding_and_catches_off_by_one(dtype: str) -> None:
    ref = _ints((4, 8, 6, 6))
    out = ref.to(TDT[dtype])
    assert compare(out, ref, dtype, "int", "fwd")["ok"]
    wrong = out.clone()
    wrong[1, 2, 3, 4] += 1
    r = compare(wrong, ref, dtype, "int", "fwd")
    small = abs(float(ref[1, 2, 3, 4])) < 256  # an off-by-one is representable there in every dtype
    if small:
        assert not r["ok"] and r["mismatches"] == 1 and "flat index" in r["reason"]


def test_rounding_to_the_dtype_passes_and_a_uniform_error_of_a_few_ulps_fails() -> None:
    ref = _randn((8, 32, 16, 16))
    for dtype, u in UNIT_ROUNDOFF.items():
        assert compare(ref.to(TDT[dtype]), ref, dtype, "randn", "fwd")["ok"], dtype
        # a uniform relative error of 64 u (bf16 25 %, fp16 3 %, fp32 3.8e-6) is beyond the model
        r = compare(ref * (1 + 64 * u), ref, dtype, "randn", "fwd")
        assert not r["ok"] and "rms error" in r["reason"], dtype


def test_one_wrong_element_that_the_rms_would_hide_fails() -> None:
    ref = _randn((8, 32, 16, 16))
    bad = ref.to(torch.float16)
    bad[0, 0, 0, 0] += 0.1
    r = compare(bad, ref, "fp16", "randn", "fwd")
    assert not r["ok"] and r["rms_ratio"] < MARGIN_RMS and r["max_ratio"] > MARGIN_MAX
    assert "1 elements off" in r["reason"] and "flat index 0" in r["reason"]


def test_tf32_sized_error_fails_fp32_but_passes_fp16() -> None:
    g = torch.Generator().manual_seed(2)
    ref = torch.randn(4, 16, 8, 8, generator=g, dtype=torch.float64)
    noisy = ref * (1 + 2.0**-11 * torch.randn(ref.shape, generator=g, dtype=torch.float64))
    assert not compare(noisy.float(), ref, "fp32", "randn", "fwd")["ok"]
    assert compare(noisy.half(), ref, "fp16", "randn", "fwd")["ok"]


def test_cancellation_is_judged_against_the_size_of_the_terms() -> None:
    # A bias gradient that sums ±terms to almost zero: fp32 summation error is tiny relative to the
    # terms but large relative to the result; with the terms' root-sum-square it must not fail.
    terms = torch.tensor([1e4, -1e4 + 0.01], dtype=torch.float64)
    ref = terms.sum().reshape(1)
    out = terms.float().sum().reshape(1)
    assert not compare(out, ref, "fp32", "randn", "bwd_bias")["ok"]  # one term of size |ref|: spurious
    rss = terms.square().sum().sqrt().reshape(1)
    r = compare(out, ref, "fp32", "randn", "bwd_bias", rss=rss, terms=2)
    assert r["ok"]
    assert r["detection_floor"] > 0.01  # and it says that such a sum cannot see a 1 % error


def test_long_reductions_keep_their_power() -> None:
    """The error model grows like √K in fp32 only: a weight gradient over 10^5 terms still sees 5 % in
    bf16 and 0.1 % in fp32 (the old Σ|t| normalisation could not: the issue's 1.1x scaled gradient)."""
    ref = _randn((64, 64, 3, 3))
    rss = ref.abs() * 0 + float(ref.square().mean().sqrt())  # zero-mean terms: rss ~ rms of the result
    for dtype, goal in (("bf16", 0.05), ("fp16", 0.05), ("fp32", 1e-3)):
        r = compare(ref.to(TDT[dtype]), ref, dtype, "randn", "bwd_weight", rss=rss, terms=100_000)
        assert r["ok"] and r["detection_floor"] < goal, (dtype, r["detection_floor"])
        assert not compare(ref * 1.1, ref, dtype, "randn", "bwd_weight", rss=rss, terms=100_000)["ok"]


def test_non_finite_and_shape_mismatch_fail() -> None:
    ref = torch.ones(2, 3, dtype=torch.float64)
    out = torch.ones(2, 3)
    out[0, 0] = float("nan")
    assert "non-finite" in compare(out, ref, "fp32", "randn", "fwd")["reason"]
    out[0, 0] = float("inf")
    assert "non-finite" in compare(out, ref, "fp16", "int", "fwd")["reason"]
    assert "shape" in compare(torch.ones(3, 2), ref, "fp32", "randn", "fwd")["reason"]


@pytest.mark.parametrize(("dtype", "data"), [(d, m) for d in ("fp32", "fp16", "bf16") for m in ("randn", "int")])
def test_detection_floor_is_where_the_verdict_flips(dtype: str, data: str) -> None:
    """The reported floor is the check's own: ref·(1+e) passes just below it and fails just above."""
    if data == "int":
        ref = _ints((3, 5, 7, 7), seed=3, hi=4 if dtype == "bf16" else 40)
        ref[0, 0, 0, 0] = 3001.0 if dtype != "bf16" else 301.0  # one element beyond the exact-integer range
        rss = ref.abs() + 2
    else:
        ref = _randn((3, 5, 7, 7), seed=4)
        rss = ref.abs() + 0.5
    kw = {"rss": rss, "terms": 50}
    floor = compare(ref, ref, dtype, data, "fwd", **kw)["detection_floor"]
    assert floor is not None and 0 < floor < 0.5
    assert compare(ref * (1 + floor * (1 - 1e-6)), ref, dtype, data, "fwd", **kw)["ok"]
    assert not compare(ref * (1 + floor * (1 + 1e-6)), ref, dtype, data, "fwd", **kw)["ok"]


def test_an_all_zero_result_has_no_floor() -> None:
    ref = torch.zeros(4, 4, dtype=torch.float64)
    r = compare(ref.float(), ref, "fp32", "randn", "bwd_bias")
    assert r["ok"] and r["detection_floor"] is None
    assert not math.isinf(r["rms_ratio"])
