"""Case generation: every axis the issue names is covered, names are unique, filters work."""

from __future__ import annotations

import pytest

from provision.convcheck import cases


@pytest.fixture(scope="module", params=["gpu", "cpu"])
def full(request: pytest.FixtureRequest) -> list[cases.ConvCase]:
    return cases.generate("full", request.param)


def test_full_matrix_covers_every_axis(full: list[cases.ConvCase]) -> None:
    assert {c.dim for c in full} == {1, 2, 3}
    assert {c.kernel for c in full} >= {1, 3, 5, 7}
    assert {c.stride for c in full} >= {1, 2}
    assert {c.dilation for c in full} >= {1, 2}
    assert {c.dtype for c in full} == {"fp32", "fp16", "bf16"}
    assert {c.layout for c in full} == {"nchw", "channels_last"}
    assert {c.data for c in full} == {"int", "randn"}
    assert any(c.groups == 2 for c in full)
    assert any(c.groups == c.c_in > 1 for c in full), "no depthwise case"
    assert any(c.transposed and c.output_padding > 0 for c in full), "no transposed case with output padding"
    assert {c.family for c in full} >= {"gemm", "winograd", "implicit_gemm", "direct", "fft"}
    assert all(set(c.passes) == set(cases.PASSES) for c in full)


def test_full_has_reproducers_large_batch_and_big_workspace() -> None:
    gpu = cases.generate("full", "gpu")
    tags = {t for c in gpu for t in c.tags}
    for issue in ("ROCm/MIOpen#1566", "ROCm/MIOpen#2522", "ROCm/MIOpen#3540", "ROCm/MIOpen#3076", "ROCm/MIOpen#1621"):
        assert issue in tags
    assert any(c.n >= 256 for c in gpu if "large-batch" in c.tags)
    big = [c for c in gpu if ">2GiB workspace" in c.tags]
    assert big and all(c.im2col_bytes() > 2 * 2**30 for c in big)


def test_cpu_skips_only_the_huge_cases_and_says_why() -> None:
    cpu = cases.generate("full", "cpu")
    skipped = [c for c in cpu if c.skip_reason]
    assert skipped and all("CPU" in c.skip_reason for c in skipped)
    assert all(c.name.startswith("repro-") for c in skipped)
    assert all(c.flops() < 5e7 for c in cpu if not c.skip_reason)


def test_quick_is_a_small_subset_that_still_covers_the_axes() -> None:
    quick = cases.generate("quick", "gpu")
    assert 20 <= len(quick) < 60
    assert {c.dtype for c in quick} == {"fp32", "fp16", "bf16"}
    assert {c.dim for c in quick} == {1, 2, 3}
    assert {c.family for c in quick} >= {"gemm", "winograd", "implicit_gemm", "direct", "fft"}
    assert any(c.transposed for c in quick) and any(c.layout == "channels_last" for c in quick)


def test_names_unique_and_roundtrip(full: list[cases.ConvCase]) -> None:
    assert len({c.name for c in full}) == len(full)
    for c in full[:50]:
        assert cases.ConvCase.from_dict(c.to_dict()) == c


def test_flops_formula_matches_miopen_driver_count() -> None:
    # MIOpenDriver flopCnt = 2·N·C·R·S·K·Ho·Wo / G for `conv -n 1 -c 1 -H 24 -W 24 -k 1 -y 3 -x 3 -p 1 -q 1`
    c = next(c for c in cases.generate("quick", "gpu") if c.name.startswith("repro-miopen1566"))
    assert c.out_size() == (24, 24)
    assert c.flops() == 2 * 1 * 1 * 9 * 1 * 24 * 24
    t = cases.ConvCase(name="t", dim=2, n=2, c_in=4, c_out=6, size=(5, 5), kernel=3, stride=2, transposed=True,
                       output_padding=1, groups=2)
    assert t.out_size() == (10, 10)
    assert t.flops() == 2 * 2 * 4 * 3 * 9 * 25


def test_select_globs_substrings_and_exclusions() -> None:
    quick = cases.generate("quick", "cpu")
    fams = cases.select(quick, "fam-")
    assert fams and all(c.name.startswith("fam-") for c in fams)
    no_fp32 = cases.select(quick, "fam-,!fp32")
    assert no_fp32 and all("fp32" not in c.name for c in no_fp32)
    assert cases.select(quick, "3d-*-bf16-*") == [c for c in quick if c.dim == 3 and c.dtype == "bf16"]
    assert cases.select(quick, "no-such-case") == []
    assert cases.select(quick, None) == quick


def test_invalid_case_rejected() -> None:
    bad = cases.ConvCase(name="bad", dim=2, n=1, c_in=3, c_out=4, size=(8, 8), kernel=3, groups=2)
    with pytest.raises(ValueError, match="groups"):
        bad.validate()
