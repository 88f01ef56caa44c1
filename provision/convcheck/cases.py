"""Convolution cases: the matrix, the solver-family shapes, the known reproducers.

Torch-free: the orchestrator generates and filters cases and sends them to the worker as JSON.
Every case runs forward, grad input, grad weight and grad bias.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import asdict, dataclass, field
from typing import Any

DTYPES = ("fp32", "fp16", "bf16")
PASSES = ("fwd", "bwd_data", "bwd_weight", "bwd_bias")
PROFILES = ("quick", "full")

# Bytes per element of each test dtype.
ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


@dataclass(frozen=True)
class ConvCase:
    """One convolution problem, forward and backward, in one dtype and memory layout."""

    name: str
    dim: int
    n: int
    c_in: int
    c_out: int
    size: tuple[int, ...]
    kernel: int
    stride: int = 1
    padding: tuple[int, ...] = ()
    dilation: int = 1
    groups: int = 1
    transposed: bool = False
    output_padding: int = 0
    dtype: str = "fp32"
    layout: str = "nchw"  # "nchw" or "channels_last"
    data: str = "randn"  # "randn" or "int" (small integers: exact comparison)
    reference: str = "cpu"  # "cpu" (whole problem), "batch-sample", "row-tile"
    family: str = ""  # MIOpen solver family this shape is chosen to reach, if any
    tags: tuple[str, ...] = ()
    note: str = ""
    skip_reason: str = ""  # set when the case is listed but not run on this device
    passes: tuple[str, ...] = field(default=PASSES)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size)
        d["padding"] = list(self.padding)
        d["tags"] = list(self.tags)
        d["passes"] = list(self.passes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConvCase:
        d = dict(d)
        for key in ("size", "padding", "tags", "passes"):
            d[key] = tuple(d[key])
        return cls(**d)

    @property
    def pad(self) -> tuple[int, ...]:
        return self.padding or (self.dilation * (self.kernel - 1) // 2,) * self.dim

    def out_size(self) -> tuple[int, ...]:
        k_eff = self.dilation * (self.kernel - 1) + 1
        if self.transposed:
            return tuple(
                (i - 1) * self.stride - 2 * p + k_eff + self.output_padding
                for i, p in zip(self.size, self.pad, strict=True)
            )
        return tuple((i + 2 * p - k_eff) // self.stride + 1 for i, p in zip(self.size, self.pad, strict=True))

    def flops(self) -> int:
        """2·N·K·(C/G)·R·S·P·Q of the underlying convolution (the same count for all three passes).

        For a transposed convolution the underlying convolution maps the output back to the input,
        so its K is ``c_in``, its C is ``c_out`` and its P·Q is the transposed input's size.
        """
        taps = self.kernel**self.dim
        if self.transposed:
            return 2 * self.n * self.c_in * (self.c_out // self.groups) * taps * math.prod(self.size)
        return 2 * self.n * self.c_out * (self.c_in // self.groups) * taps * math.prod(self.out_size())

    def reduction_length(self, pass_name: str) -> int:
        """Terms summed into one element of a pass's result, at most (the K of ``tolerances``).

        Forward: (C/G)·taps plus the bias; grad input: (K/G)·taps; grad weight: N times the spatial
        size of the tensor the gradient slides over (the output of a convolution, the input of a
        transposed one); grad bias: N times the output's spatial size."""
        taps = self.kernel**self.dim
        if pass_name == "fwd":
            return (self.c_in // self.groups) * taps + 1
        if pass_name == "bwd_data":
            return (self.c_out // self.groups) * taps
        if pass_name == "bwd_weight":
            return self.n * math.prod(self.size if self.transposed else self.out_size())
        if pass_name == "bwd_bias":
            return self.n * math.prod(self.out_size())
        raise ValueError(f"unknown pass {pass_name!r}")

    def im2col_bytes(self) -> int:
        """Workspace of a per-sample im2col GEMM (MIOpen GemmFwdRest): C·R·S·P·Q elements."""
        taps = self.kernel**self.dim
        spatial = math.prod(self.size if self.transposed else self.out_size())
        channels = self.c_out if self.transposed else self.c_in
        return channels * taps * spatial * ELEMENT_BYTES[self.dtype]

    def validate(self) -> None:
        if self.dim not in (1, 2, 3) or len(self.size) != self.dim or len(self.pad) != self.dim:
            raise ValueError(f"{self.name}: bad dimensionality")
        if self.c_in % self.groups or self.c_out % self.groups:
            raise ValueError(f"{self.name}: channels not divisible by groups")
        if self.transposed and not (self.output_padding < max(self.stride, self.dilation)):
            raise ValueError(f"{self.name}: output_padding must be smaller than stride or dilation")
        if min(self.out_size()) < 1:
            raise ValueError(f"{self.name}: empty output")
        if self.dtype not in DTYPES or self.layout not in ("nchw", "channels_last"):
            raise ValueError(f"{self.name}: bad dtype or layout")
        if self.layout == "channels_last" and self.dim == 1:
            raise ValueError(f"{self.name}: channels_last needs 2D or 3D")


# --------------------------------------------------------------------------------------------
# Sizes: GPU shapes are big enough to pick real library kernels; CPU shapes keep the quick
# profile well under a minute on two cores.

_MATRIX_SIZES = {
    # device kind -> (n, c_in, c_out, spatial extent per dim)
    "gpu": (4, 16, 32, {1: 256, 2: 24, 3: 10}),
    "cpu": (2, 4, 8, {1: 32, 2: 10, 3: 6}),
}


def _name(prefix: str, c: dict[str, Any]) -> str:
    kind = "tconv" if c["transposed"] else "conv"
    size = "x".join(str(s) for s in c["size"])
    op = f"-op{c['output_padding']}" if c["transposed"] else ""
    g = "dw" if c["groups"] == c["c_in"] and c["groups"] > 1 else str(c["groups"])
    return (
        f"{prefix}{c['dim']}d-{kind}-n{c['n']}c{c['c_in']}k{c['c_out']}-{size}-r{c['kernel']}"
        f"s{c['stride']}d{c['dilation']}g{g}{op}-{c['layout']}-{c['dtype']}-{c['data']}"
    )


def _matrix_case(
    device_kind: str, dim: int, kernel: int, stride: int, dilation: int, groups: str, transposed: bool,
    dtype: str, layout: str, data: str,
) -> ConvCase:
    n, c_in, c_out, extent = _MATRIX_SIZES[device_kind]
    g = {"1": 1, "2": 2, "dw": c_in}[groups]
    op = 1 if transposed and (stride > 1 or dilation > 1) else 0
    spec: dict[str, Any] = {
        "dim": dim, "n": n, "c_in": c_in, "c_out": c_out, "size": (extent[dim],) * dim, "kernel": kernel,
        "stride": stride, "dilation": dilation, "groups": g, "transposed": transposed,
        "output_padding": op, "dtype": dtype, "layout": layout if dim > 1 else "nchw", "data": data,
    }
    return ConvCase(name=_name("", spec), **spec)


_KERNELS = (1, 3, 5, 7)
_GROUPS = ("1", "2", "dw")

# Quick: per dimension, a handful of geometries that together use every value of every axis.
_QUICK_GEOMETRIES = (
    # kernel, stride, dilation, groups, transposed
    (1, 1, 1, "1", False),
    (3, 1, 1, "2", False),
    (5, 2, 1, "dw", False),
    (7, 1, 2, "1", False),
    (3, 2, 1, "1", True),
    (3, 1, 2, "dw", True),
)


def _matrix(profile: str, device_kind: str) -> list[ConvCase]:
    out: list[ConvCase] = []
    i = 0
    for dim in (1, 2, 3):
        if profile == "quick":
            geoms = list(_QUICK_GEOMETRIES)
        else:
            geoms = [
                (k, s, d, g, t)
                for k in _KERNELS for s in (1, 2) for d in (1, 2) for g in _GROUPS for t in (False, True)
            ]
        for geom in geoms:
            dtypes = (DTYPES[i % 3],) if profile == "quick" else DTYPES
            for dtype in dtypes:
                layout = "channels_last" if i % 2 else "nchw"
                data = "int" if (i // 2) % 2 else "randn"
                out.append(_matrix_case(device_kind, dim, *geom, dtype=dtype, layout=layout, data=data))
                i += 1
    return out


def _special(
    prefix: str, device_kind: str, gpu: dict[str, Any], cpu: dict[str, Any] | None, **common: Any
) -> ConvCase:
    """A named case with GPU shape ``gpu``; on CPU use ``cpu`` (shrunk) or mark it skipped."""
    base: dict[str, Any] = {
        "dim": 2, "stride": 1, "dilation": 1, "groups": 1, "transposed": False, "output_padding": 0,
        "layout": "nchw", "data": "randn", "dtype": "fp32",
    }
    base.update(common)
    skip = ""
    if device_kind == "cpu":
        if cpu is None:
            skip = "too large for a CPU run (runs on GPUs only)"
            spec = {**base, **gpu}
        else:
            spec = {**base, **gpu, **cpu, "reference": "cpu"}
    else:
        spec = {**base, **gpu}
    spec["size"] = tuple(spec["size"])
    spec["padding"] = tuple(spec.get("padding", ()))
    spec["tags"] = tuple(spec.get("tags", ()))
    if "passes" in spec:
        spec["passes"] = tuple(spec["passes"])
    return ConvCase(name=prefix + _name("", spec), skip_reason=skip, **spec)


def _families(device_kind: str) -> list[ConvCase]:
    """Shapes chosen so each MIOpen solver family is applicable (conv-verification.md §3, fft.cpp)."""
    small = {"n": 2, "c_in": 8, "c_out": 8, "size": (12, 12)}
    return [
        _special("fam-gemm-", device_kind,
                 {"n": 8, "c_in": 64, "c_out": 64, "size": (28, 28), "kernel": 1}, small,
                 family="gemm", note="1x1 stride 1: GemmFwd1x1_0_1 / GemmBwd1x1 / GemmWrw1x1"),
        _special("fam-winograd-", device_kind,
                 {"n": 8, "c_in": 64, "c_out": 64, "size": (28, 28), "kernel": 3}, {**small, "kernel": 3},
                 family="winograd", note="3x3 stride 1 fp32: ConvBinWinogradRxSf2x3g1 / RxSf3x2"),
        _special("fam-winograd-", device_kind,
                 {"n": 8, "c_in": 64, "c_out": 64, "size": (28, 28), "kernel": 3, "dtype": "fp16"},
                 {**small, "kernel": 3}, family="winograd", note="3x3 stride 1 fp16: Winograd RxS / Fury"),
        _special("fam-igemm-", device_kind,
                 {"n": 16, "c_in": 64, "c_out": 128, "size": (28, 28), "kernel": 3, "dtype": "fp16",
                  "layout": "channels_last"}, {**small, "kernel": 3},
                 family="implicit_gemm", note="fp16 NHWC: CK / xdlops implicit GEMM"),
        _special("fam-igemm-", device_kind,
                 {"n": 16, "c_in": 64, "c_out": 128, "size": (28, 28), "kernel": 3, "dtype": "bf16",
                  "layout": "channels_last"}, {**small, "kernel": 3},
                 family="implicit_gemm", note="bf16 NHWC: CK / xdlops implicit GEMM"),
        _special("fam-direct-", device_kind,
                 {"n": 2, "c_in": 3, "c_out": 64, "size": (224, 224), "kernel": 7, "stride": 2},
                 {"n": 1, "c_in": 3, "c_out": 8, "size": (32, 32), "kernel": 7, "stride": 2},
                 family="direct", note="7x7 c3 224x224 k64 stride 2 pad 3: ConvAsm7x7c3h224w224k64u2v2p3q3f1"),
        _special("fam-direct-", device_kind,
                 {"n": 4, "c_in": 32, "c_out": 32, "size": (28, 28), "kernel": 3, "groups": 32},
                 {**small, "kernel": 3, "groups": 8}, family="direct",
                 note="depthwise 3x3: direct / naive solvers"),
        _special("fam-fft-", device_kind,
                 {"n": 16, "c_in": 32, "c_out": 32, "size": (28, 28), "kernel": 5},
                 {"n": 2, "c_in": 8, "c_out": 8, "size": (14, 14), "kernel": 5},
                 family="fft", note="fp32 NCHW 5x5 pad 2 stride 1, 28x28, (N·C)%16==0: MIOpen fft solver"),
    ]


def _reproducers(profile: str, device_kind: str) -> list[ConvCase]:
    """Known crash / wrong-result reproducers (conv-verification.md §3.5)."""
    quick = [
        _special("repro-miopen1566-", device_kind,
                 {"n": 1, "c_in": 1, "c_out": 1, "size": (24, 24), "kernel": 3}, {},
                 tags=("ROCm/MIOpen#1566",), note="gfx1030 ROCm 5.1 wrong forward results"),
        _special("repro-miopen2522-", device_kind,
                 {"n": 1, "c_in": 260, "c_out": 308, "size": (35, 35), "kernel": 3, "stride": 2,
                  "padding": (0, 0), "dtype": "fp16"},
                 {"c_in": 20, "c_out": 12, "size": (15, 15)},
                 tags=("ROCm/MIOpen#2522", "ROCm/MIOpen#2546"),
                 note="ConvOclDirectFwdGen fp16 out-of-bounds (ROCm 5.3)"),
        _special("repro-miopen142-", device_kind,
                 {"n": 4, "c_in": 32, "c_out": 32, "size": (20, 20), "kernel": 3, "padding": (1, 0)},
                 {"n": 1, "c_in": 4, "c_out": 4, "size": (8, 8)},
                 tags=("ROCm/MIOpen#142",), family="winograd",
                 note="ConvBinWinogradRxSf2x3 with asymmetric padding"),
    ]
    if profile == "quick":
        return quick
    return [
        *quick,
        _special("repro-miopen264-", device_kind,
                 {"n": 8, "c_in": 64, "c_out": 64, "size": (28, 28), "kernel": 7}, {"n": 1, "c_in": 4,
                                                                                    "c_out": 4, "size": (10, 10)},
                 tags=("ROCm/MIOpen#264",), family="winograd", note="multi-pass Winograd 7x7 fault"),
        _special("repro-miopen3540a-", device_kind,
                 {"n": 1024, "c_in": 256, "c_out": 1, "size": (32, 32), "kernel": 5, "reference": "batch-sample"},
                 None, tags=("ROCm/MIOpen#3540",), family="gemm",
                 note="GemmBwdRest memory access fault (gfx103x, ROCm 6.3)"),
        _special("repro-miopen3540b-", device_kind,
                 {"n": 4, "c_in": 256, "c_out": 256, "size": (32, 32), "kernel": 3},
                 None, tags=("ROCm/MIOpen#3540",), family="direct",
                 note="ConvOclBwdWrW2<n> weight-gradient memory access fault (gfx103x)"),
        _special("repro-miopen3076-", device_kind,
                 {"n": 256, "c_in": 64, "c_out": 64, "size": (224, 224), "kernel": 3,
                  "reference": "batch-sample"},
                 None, tags=("ROCm/MIOpen#3076", "ROCm/MIOpen#3081", ">2GiB tensors"), family="gemm",
                 note="vgg16 conv1_2 with tensors > 2 GiB: GEMM 32-bit offsets (fixed MIOpen 3.2 / ROCm 6.2)"),
        _special("repro-miopen1621-", device_kind,
                 {"n": 1, "c_in": 128, "c_out": 16, "size": (1760, 1760), "kernel": 3, "dtype": "fp16",
                  "reference": "row-tile"},
                 None, tags=("ROCm/MIOpen#1621", ">2GiB workspace"), family="gemm",
                 note="GemmFwdRest with a 7.1 GiB im2col workspace (gfx1030, ROCm 5.1): the GEMM fault class"),
    ]


def _large(profile: str, device_kind: str) -> list[ConvCase]:
    if profile == "quick":
        gpu = {"n": 128, "c_in": 32, "c_out": 32, "size": (28, 28), "kernel": 3, "dtype": "fp16",
               "layout": "channels_last"}
    else:
        gpu = {"n": 256, "c_in": 64, "c_out": 64, "size": (56, 56), "kernel": 3, "dtype": "fp16",
               "layout": "channels_last", "reference": "batch-sample"}
    return [
        _special("large-batch-", device_kind, gpu, {"n": 16, "c_in": 4, "c_out": 4, "size": (8, 8)},
                 tags=("large-batch",), note="large batch"),
    ]


def generate(profile: str, device_kind: str) -> list[ConvCase]:
    """All cases of ``profile`` ("quick"/"full") for a ``device_kind`` ("gpu"/"cpu")."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}")
    if device_kind not in ("gpu", "cpu"):
        raise ValueError(f"unknown device kind {device_kind!r}")
    cases = [*_matrix(profile, device_kind), *_families(device_kind), *_reproducers(profile, device_kind),
             *_large(profile, device_kind)]
    seen: set[str] = set()
    unique: list[ConvCase] = []
    for case in cases:
        case.validate()
        if case.name not in seen:
            seen.add(case.name)
            unique.append(case)
    return unique


def select(cases: list[ConvCase], pattern: str | None) -> list[ConvCase]:
    """Filter by ``--cases``: comma-separated shell globs on case names (a term without ``*?[`` is a
    substring match); a term starting with ``!`` excludes."""
    if not pattern:
        return list(cases)
    include: list[str] = []
    exclude: list[str] = []
    for term in (t.strip() for t in pattern.split(",")):
        if not term:
            continue
        target = exclude if term.startswith("!") else include
        term = term.lstrip("!")
        target.append(term if any(ch in term for ch in "*?[") else f"*{term}*")

    def keep(name: str) -> bool:
        if include and not any(fnmatch.fnmatchcase(name, p) for p in include):
            return False
        return not any(fnmatch.fnmatchcase(name, p) for p in exclude)

    return [c for c in cases if keep(c.name)]
