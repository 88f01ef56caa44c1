"""Comparison against the float64 reference: exact integer mode and normalised errors."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from provision.convcheck.compare import compare  # noqa: E402
from provision.convcheck.tolerances import TOLERANCES, tolerance  # noqa: E402


def _ints(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-300, 300, shape, generator=g).to(torch.float64)


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_exact_mode_accepts_correct_rounding_and_catches_off_by_one(dtype: str) -> None:
    tdt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    ref = _ints((4, 8, 6, 6))
    out = ref.to(tdt)
    assert compare(out, ref, dtype, "int", "fwd")["ok"]
    wrong = out.clone()
    wrong[1, 2, 3, 4] += 1
    r = compare(wrong, ref, dtype, "int", "fwd")
    small = abs(float(ref[1, 2, 3, 4])) < 256  # an off-by-one is representable there in every dtype
    if small:
        assert not r["ok"] and r["mismatches"] == 1 and "flat index" in r["reason"]


def test_normalised_mode_catches_one_wrong_element_that_rms_would_hide() -> None:
    g = torch.Generator().manual_seed(1)
    ref = torch.randn(8, 32, 16, 16, generator=g, dtype=torch.float64)
    out = ref.to(torch.float16)
    assert compare(out, ref, "fp16", "randn", "fwd")["ok"]
    bad = out.clone()
    bad[0, 0, 0, 0] += 0.1
    r = compare(bad, ref, "fp16", "randn", "fwd")
    assert not r["ok"] and "nmax" in r["reason"] and r["nrms"] < TOLERANCES["fp16"]["nrms"]


def test_tf32_sized_error_fails_fp32_but_passes_fp16() -> None:
    g = torch.Generator().manual_seed(2)
    ref = torch.randn(4, 16, 8, 8, generator=g, dtype=torch.float64)
    noisy = ref * (1 + 2.0**-11 * torch.randn(ref.shape, generator=g, dtype=torch.float64))
    assert not compare(noisy.float(), ref, "fp32", "randn", "fwd")["ok"]
    assert compare(noisy.half(), ref, "fp16", "randn", "fwd")["ok"]


def test_cancellation_is_judged_against_the_sum_of_magnitudes() -> None:
    # A bias gradient that sums ±terms to almost zero: fp32 summation error is tiny relative to the
    # terms but large relative to the result; it must not fail.
    terms = torch.tensor([1e4, -1e4 + 0.01], dtype=torch.float64)
    ref = terms.sum().reshape(1)
    out = terms.float().sum().reshape(1)
    assert not compare(out, ref, "fp32", "randn", "bwd_bias")["ok"]  # max|ref| normalisation: spurious
    assert compare(out, ref, "fp32", "randn", "bwd_bias", magnitude=terms.abs().sum().reshape(1))["ok"]


def test_non_finite_and_shape_mismatch_fail() -> None:
    ref = torch.ones(2, 3, dtype=torch.float64)
    out = torch.ones(2, 3)
    out[0, 0] = float("nan")
    assert "non-finite" in compare(out, ref, "fp32", "randn", "fwd")["reason"]
    assert "shape" in compare(torch.ones(3, 2), ref, "fp32", "randn", "fwd")["reason"]


def test_weight_gradients_get_twice_the_tolerance() -> None:
    assert tolerance("fp16", "bwd_weight")["nrms"] == 2 * tolerance("fp16", "fwd")["nrms"]
