"""Wrong answers the suite must see, injected at the aten.convolution / convolution_backward boundary.

The production path runs unchanged (``execute.run_case`` on the CPU, the quick profile's small
cases); a dispatch mode rewrites what ``aten.convolution`` / ``aten.convolution_backward`` return
for the device-dtype calls (fp32/fp16/bf16), never the float64 reference. Each scenario targets
one case: that case must fail in exactly the corrupted pass, every other case and pass must pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from provision.convcheck import cases  # noqa: E402
from provision.convcheck.execute import run_case  # noqa: E402

aten = torch.ops.aten
BWD_INDEX = {"bwd_data": 0, "bwd_weight": 1, "bwd_bias": 2}

Args = tuple[Any, ...]
Hook = Callable[[Any, Args], Any]


@dataclass(frozen=True)
class Scenario:
    """``fwd`` / ``bwd``: (op, args) -> result replacing the device call; ``pass_name``: the pass it breaks."""

    ident: str
    case: str  # case-name prefix (unique in the quick CPU profile)
    pass_name: str
    fwd: Hook | None = None
    bwd: Hook | None = None


def _scale(pass_name: str, factor: float) -> dict[str, Hook]:
    if pass_name == "fwd":
        return {"fwd": lambda op, a: op(*a) * factor}

    def bwd(op: Any, a: Args) -> Any:
        out = list(op(*a))
        out[BWD_INDEX[pass_name]] = out[BWD_INDEX[pass_name]] * factor
        return tuple(out)

    return {"bwd": bwd}


def _one_element(pass_name: str, amount: Callable[[Any], float]) -> dict[str, Hook]:
    def bump(t: Any) -> Any:
        t = t.clone()
        flat = t.view(-1) if t.is_contiguous() else t.reshape(-1)
        flat[flat.numel() // 2 + 1] += amount(t)
        return flat.view(t.shape) if t.is_contiguous() else flat.reshape(t.shape)

    if pass_name == "fwd":
        return {"fwd": lambda op, a: bump(op(*a))}

    def bwd(op: Any, a: Args) -> Any:
        out = list(op(*a))
        out[BWD_INDEX[pass_name]] = bump(out[BWD_INDEX[pass_name]])
        return tuple(out)

    return {"bwd": bwd}


def _bias_without_last_sample(op: Any, a: Args) -> Any:
    gx, gw, gb = op(*a)
    gy = a[0]
    dims = [0, *range(2, gy.dim())]
    return gx, gw, gb - gy[-1:].sum(dim=dims).to(gb.dtype)


def _transposed_weight_fwd(op: Any, a: Args) -> Any:
    x, w, *rest = a
    return op(x, w.transpose(-2, -1).contiguous(), *rest)


def _transposed_weight_bwd(op: Any, a: Args) -> Any:
    gy, x, w, *rest = a
    gx, _, _ = op(gy, x, w.transpose(-2, -1).contiguous(), *rest)
    _, gw, gb = op(*a)
    return gx, gw, gb


def _shift_one_pixel(op: Any, a: Args) -> Any:
    return torch.roll(op(*a), shifts=1, dims=-1)


def _of_max(fraction: float) -> Callable[[Any], float]:
    return lambda t: fraction * float(t.abs().max())


SCALE_TARGETS = {
    ("fp32", "fwd"): "1d-conv-n2c4k8-32-r1s1d1g1-nchw-fp32-randn",
    ("fp32", "bwd_data"): "2d-conv-n2c4k8-10x10-r7s1d2g1-channels_last-fp32-randn",
    ("fp32", "bwd_weight"): "fam-gemm-",
    ("fp32", "bwd_bias"): "3d-conv-n2c4k8-6x6x6-r1s1d1g1-nchw-fp32-randn",
    ("fp16", "fwd"): "1d-conv-n2c4k8-32-r3s1d1g2-nchw-fp16-randn",
    ("fp16", "bwd_data"): "2d-conv-n2c4k8-10x10-r3s1d1g2-channels_last-fp16-int",
    ("fp16", "bwd_weight"): "3d-tconv-n2c4k8-6x6x6-r3s2d1g1-op1-nchw-fp16-randn",
    ("fp16", "bwd_bias"): "large-batch-",
    ("bf16", "fwd"): "1d-tconv-n2c4k8-32-r3s1d2gdw-op1-nchw-bf16-randn",
    ("bf16", "bwd_data"): "2d-conv-n2c4k8-10x10-r5s2d1gdw-nchw-bf16-randn",
    ("bf16", "bwd_weight"): "3d-tconv-n2c4k8-6x6x6-r3s1d2gdw-op1-channels_last-bf16-randn",
    ("bf16", "bwd_bias"): "1d-conv-n2c4k8-32-r5s2d1gdw-nchw-bf16-int",
}

SCENARIOS = [
    *(Scenario(f"5%-scale-{dt}-{p}", name, p, **_scale(p, 1.05)) for (dt, p), name in SCALE_TARGETS.items()),
    Scenario("bias-grad-misses-last-sample", "fam-igemm-2d-conv-n2c8k8-12x12-r3s1d1g1-channels_last-bf16",
             "bwd_bias", bwd=_bias_without_last_sample),
    Scenario("one-element-off-by-1%-of-max-fp16", "fam-winograd-2d-conv-n2c8k8-12x12-r3s1d1g1-nchw-fp16", "fwd",
             **_one_element("fwd", _of_max(0.01))),
    Scenario("one-element-off-by-1e-4-of-max-fp32", "fam-direct-2d-conv-n2c8k8-12x12-r3s1d1gdw", "bwd_data",
             **_one_element("bwd_data", _of_max(1e-4))),
    Scenario("one-element-off-by-one-int-fp32", "3d-conv-n2c4k8-6x6x6-r7s1d2g1-channels_last-fp32-int", "bwd_weight",
             **_one_element("bwd_weight", lambda t: 1.0)),
    Scenario("one-element-off-by-one-int-bf16", "3d-conv-n2c4k8-6x6x6-r5s2d1gdw-nchw-bf16-int", "bwd_data",
             **_one_element("bwd_data", lambda t: 1.0)),
    Scenario("transposed-weight-fwd", "fam-winograd-2d-conv-n2c8k8-12x12-r3s1d1g1-nchw-fp32", "fwd",
             fwd=_transposed_weight_fwd),
    Scenario("transposed-weight-grad-input", "repro-miopen142-", "bwd_data", bwd=_transposed_weight_bwd),
    Scenario("output-shifted-one-pixel-fp32", "fam-direct-2d-conv-n1c3k8-32x32-r7s2d1g1", "fwd",
             fwd=_shift_one_pixel),
    Scenario("output-shifted-one-pixel-fp16-int", "2d-tconv-n2c4k8-10x10-r3s2d1g1-op1-nchw-fp16-int", "fwd",
             fwd=_shift_one_pixel),
]


class _Inject(TorchDispatchMode):
    """Replace the device-dtype convolution calls' results (the float64 reference runs untouched)."""

    def __init__(self, scenario: Scenario | None) -> None:
        super().__init__()
        self.scenario = scenario
        self.calls = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Args = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        s = self.scenario
        if s is not None and not kwargs and args and getattr(args[0], "dtype", None) != torch.float64:
            if func is aten.convolution.default and s.fwd is not None:
                self.calls += 1
                return s.fwd(func, args)
            if func is aten.convolution_backward.default and s.bwd is not None:
                self.calls += 1
                return s.bwd(func, args)
        return func(*args, **kwargs)


def _target(scenario: Scenario, quick: list[cases.ConvCase]) -> cases.ConvCase:
    found = [c for c in quick if c.name.startswith(scenario.case)]
    assert len(found) == 1, f"{scenario.ident}: {scenario.case!r} matches {[c.name for c in found]}"
    return found[0]


@pytest.fixture(scope="module")
def sweep() -> dict[str, Any]:
    """Every quick CPU case once: the targeted ones with their scenario, the rest untouched."""
    quick = cases.generate("quick", "cpu")
    by_case = {_target(s, quick).name: s for s in SCENARIOS}
    assert len(by_case) == len(SCENARIOS), "two scenarios target the same case"
    results: dict[str, Any] = {}
    for case in quick:
        mode = _Inject(by_case.get(case.name))
        with mode:
            result = run_case(case, "cpu", timing=False)
        results[case.name] = {"result": result, "calls": mode.calls, "case": case}
    return {"results": results, "by_case": by_case}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.ident)
def test_injected_error_fails_the_right_case_and_pass(scenario: Scenario, sweep: dict[str, Any]) -> None:
    name = next(n for n, s in sweep["by_case"].items() if s is scenario)
    entry = sweep["results"][name]
    result = entry["result"]
    assert entry["calls"] == 1, "the injection did not reach the convolution call"
    failed = {p for p, r in result["passes"].items() if not r["ok"]}
    assert result["status"] == "fail" and failed == {scenario.pass_name}, (name, result.get("error"))
    assert result["error"].startswith(f"{scenario.pass_name}: ")
    if scenario.ident.startswith("5%-scale"):
        floor = result["passes"][scenario.pass_name]["detection_floor"]
        assert floor is not None and floor < 0.05


def test_every_case_without_an_injection_passes(sweep: dict[str, Any]) -> None:
    untouched = {n: e for n, e in sweep["results"].items() if n not in sweep["by_case"]}
    assert len(untouched) >= 8
    bad = {n: e["result"].get("error") for n, e in untouched.items() if e["result"]["status"] != "pass"}
    assert not bad
