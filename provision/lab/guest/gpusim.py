"""rocm-provision LAB ONLY: a simulated ROCm GPU runtime under a CPU build of torch.

Installed into a lab host's venv (as ``rocm_provision_gpusim`` with a ``.pth`` line that activates it); it
patches torch's device layer, the boundary the verification suite calls, after torch is imported:

* the build looks like the ROCm wheel it stands in for (``torch.__version__``, ``torch.version.hip``), and
  ``torch.cuda.get_arch_list()`` / ``torch._C._cuda_getArchFlags()`` give the gfx targets that wheel carries;
* the host's simulated GPU (its seed's host.json, the same declaration its sysfs/KFD/rocminfo come from) is
  visible; ``HSA_OVERRIDE_GFX_VERSION`` changes the runtime's target, not the hardware;
* a build with no code for the runtime's target fails its first GPU tensor ("HIP error: invalid device
  function"); "cuda" tensors are CPU tensors underneath;
* convolutions on GPU tensors that reach a solver the data file says faults for (code target, hardware)
  print ROCr's fault line and abort, unless a MIOpen switch turns that solver off (its own or its family's).

Every fact comes from the data file (provision/data/gpu_runtime.yaml, copied beside this module as JSON),
never from what the product expects. GPU names carry "[simulated]" so reports can say so.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

CONFIG_ENV = "ROCM_PROVISION_GPUSIM_CONFIG"
FALSE_TOKENS = ("0", "no", "false", "disable", "disabled", "off")  # MIOpen env.hpp
ROCR_FAULT_LINE = ("Memory access fault by GPU node-1 (Agent handle: 0x55d1c0f7a2b0) on address 0x7f3a5c000000. "
                   "Reason: Page not present or supervisor privilege.")
_TAG = "_rocm_provision_sim_gpu"


def _config() -> dict[str, Any] | None:
    path = os.environ.get(CONFIG_ENV) or str(Path(__file__).with_suffix(".json"))
    try:
        return dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def gfx_of_version(value: str) -> str:
    """HSA_OVERRIDE_GFX_VERSION '10.3.0' -> 'gfx1030' (major, minor and stepping in hex, as KFD names targets)."""
    major, minor, stepping = (int(p) for p in value.strip().split("."))
    return f"gfx{major}{minor:x}{stepping:x}"


class Runtime:
    """What the simulated host's torch sees, from the config and the environment."""

    def __init__(self, config: dict[str, Any], env: dict[str, str] | None = None) -> None:
        env = dict(os.environ if env is None else env)
        self.data: dict[str, Any] = config["data"]
        self.torch_version: str = config["torch"]
        self.hip: str | None = config.get("hip")
        host = json.loads(Path(config["host_json"]).read_text(encoding="utf-8"))
        self.gpus = [g for g in host.get("gpus", []) if not g.get("integrated")]
        self.hardware = [g["gfx"] for g in self.gpus]
        override = env.get("HSA_OVERRIDE_GFX_VERSION", "").strip()
        self.runtime = [gfx_of_version(override) if override else g for g in self.hardware]
        label = self.torch_version.partition("+")[2]
        builds = [b for b in self.data["torch_builds"] if label.startswith(b["label_prefix"])]
        self.targets: list[str] = list(builds[0]["targets"]) if builds else []
        miopen = next((v for k, v in self.data.get("bundled_miopen", {}).items() if label.startswith(k)), None)
        self.miopen = miopen
        self.env = env

    @property
    def has_code(self) -> bool:
        return bool(self.runtime) and all(t in self.targets for t in self.runtime)

    def miopen_version_int(self) -> int | None:
        if not self.miopen:
            return None
        major, minor = (int(p) for p in str(self.miopen).split("."))
        return major * 10000 + minor * 100

    def switched_off(self, switches: list[str]) -> bool:
        return any(self.env.get(s, "").strip().lower() in FALSE_TOKENS and self.env.get(s, "").strip()
                   for s in switches)

    def fault_for(self, pass_name: str, dims: int, kernel: int, stride: int, groups: int,
                  transposed: bool) -> dict[str, Any] | None:
        """The data file's fault a convolution of this shape reaches on this host, or None."""
        for rule in self.data.get("solver_faults", []):
            if pass_name not in rule["passes"]:
                continue
            if not any(rt == rule["code_target"] and hw in rule["hardware"]
                       for rt, hw in zip(self.runtime, self.hardware, strict=False)):
                continue
            a = rule.get("applies", {})
            if dims not in a.get("dims", [dims]) or transposed != a.get("transposed", transposed):
                continue
            if kernel < a.get("min_kernel", 0) or ("kernel" in a and kernel != a["kernel"]):
                continue
            if ("stride" in a and stride != a["stride"]) or ("groups" in a and groups != a["groups"]):
                continue
            if self.switched_off(rule["switches"]):
                continue
            return dict(rule)
        return None


def _fault(rule: dict[str, Any]) -> None:
    sys.stderr.write(ROCR_FAULT_LINE + "\n")
    sys.stderr.flush()
    os.abort()


def patch(torch: Any, rt: Runtime) -> None:
    from torch.overrides import TorchFunctionMode

    version = torch.torch_version.TorchVersion(rt.torch_version)
    torch.__version__ = version
    torch.version.__version__ = version
    torch.version.hip = rt.hip
    torch.version.cuda = None

    def check_code() -> None:
        if not rt.has_code:
            raise RuntimeError(
                f"{rt.data['override']['invalid_device_function']}\nHIP kernel errors might be asynchronously "
                "reported at some other API call, so the stacktrace below might be incorrect.")

    def fix(value: Any) -> tuple[Any, bool]:
        if isinstance(value, str) and value.startswith("cuda"):
            return "cpu", True
        if isinstance(value, torch.device) and value.type == "cuda":
            return torch.device("cpu"), True
        return value, False

    def tagged(value: Any) -> bool:
        if isinstance(value, torch.Tensor):
            return bool(getattr(value, _TAG, False))
        if isinstance(value, list | tuple):
            return any(tagged(v) for v in value)
        return False

    def tag(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            with contextlib.suppress(AttributeError, RuntimeError):
                setattr(value, _TAG, True)
        elif isinstance(value, list | tuple):
            for v in value:
                tag(v)

    aten = torch.ops.aten
    conv, conv_bwd = aten.convolution, aten.convolution_backward
    conv_ops = {conv, conv.default, conv_bwd, conv_bwd.default}
    to_cpu = {torch.Tensor.cpu}

    def conv_shape(args: tuple[Any, ...]) -> tuple[int, int, int, int, bool]:
        weight = args[1] if len(args) > 1 else None
        dims = weight.dim() - 2 if isinstance(weight, torch.Tensor) else 2
        kernel = max(weight.shape[2:]) if isinstance(weight, torch.Tensor) and weight.dim() > 2 else 1
        return dims, kernel, int(max(args[3])), int(args[8]), bool(args[6])

    class SimDevice(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
            kwargs = dict(kwargs or {})
            gpu = False
            new_args = []
            for a in args:
                a, hit = fix(a)
                gpu |= hit
                new_args.append(a)
            for k, v in list(kwargs.items()):
                kwargs[k], hit = fix(v)
                gpu |= hit
            on_gpu = gpu or (tagged(new_args) or tagged(list(kwargs.values())))
            asked_cpu = any(isinstance(a, str) and a == "cpu" for a in args) or str(kwargs.get("device", "")) == "cpu"
            explicit_cpu = func in to_cpu or (asked_cpu and not gpu)
            if gpu:
                check_code()
            if on_gpu and func in conv_ops and len(new_args) >= 9:
                if func in (conv_bwd, conv_bwd.default):
                    grad, x, w = new_args[0], new_args[1], new_args[2]
                    dims, kernel, stride, groups, transposed = conv_shape((x, w, None, *new_args[4:]))
                    mask = new_args[10] if len(new_args) > 10 else [True, True, True]
                    for name, wanted in (("bwd_data", mask[0]), ("bwd_weight", mask[1])):
                        rule = wanted and rt.fault_for(name, dims, kernel, stride, groups, transposed)
                        if rule:
                            _fault(rule)
                    del grad
                else:
                    dims, kernel, stride, groups, transposed = conv_shape(tuple(new_args))
                    rule = rt.fault_for("fwd", dims, kernel, stride, groups, transposed)
                    if rule:
                        _fault(rule)
            out = func(*new_args, **kwargs)
            if on_gpu and not explicit_cpu:
                tag(out)
            return out

    class Generator(torch._C.Generator):
        def __new__(cls, device: Any = "cpu") -> Any:
            device, hit = fix(device)
            if hit:
                check_code()
            return super().__new__(cls, device)

    class Event:
        def __init__(self, enable_timing: bool = False, **_: Any) -> None:
            self.t = 0.0

        def record(self, stream: Any = None) -> None:
            self.t = time.perf_counter()

        def synchronize(self) -> None:
            return None

        def elapsed_time(self, end: Event) -> float:
            return (end.t - self.t) * 1000.0

    class Props:
        def __init__(self, gpu: dict[str, Any], runtime: str) -> None:
            self.name = f"{gpu['marketing_name']} [simulated: rocm-provision lab GPU runtime]"
            self.gcnArchName = runtime
            self.total_memory = int(gpu.get("vram_mib", 1024)) * 1024 * 1024
            self.multi_processor_count = int(gpu.get("compute_units", 1))
            self.major, self.minor = 0, 0

    torch.Generator = Generator
    cuda = torch.cuda
    cuda.is_available = lambda: bool(rt.gpus)
    cuda.device_count = lambda: len(rt.gpus)
    cuda.get_arch_list = lambda: list(rt.targets) if rt.gpus else []
    torch._C._cuda_getArchFlags = lambda: " ".join(rt.targets)
    cuda.get_device_properties = lambda i=0: Props(rt.gpus[int(getattr(i, "index", i) or 0)],
                                                   rt.runtime[int(getattr(i, "index", i) or 0)])
    cuda.get_device_name = lambda i=0: cuda.get_device_properties(i).name
    cuda.synchronize = lambda device=None: None
    cuda.empty_cache = lambda: None
    cuda.Event = Event
    cuda.current_device = lambda: 0
    cudnn = torch.backends.cudnn
    cudnn.is_available = lambda: rt.miopen is not None
    cudnn.version = rt.miopen_version_int
    SimDevice().__enter__()


class _Finder(importlib.abc.MetaPathFinder):
    """Patches torch right after it is imported (so importing this module costs nothing else)."""

    def __init__(self, rt_factory: Any) -> None:
        self.rt_factory = rt_factory

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "torch":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original = loader.exec_module
        factory = self.rt_factory

        def exec_module(module: Any) -> None:
            original(module)
            patch(module, factory())

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Activate for this interpreter when a config is present (the .pth line calls this)."""
    config = _config()
    if config is None or "torch" in sys.modules:
        return
    sys.meta_path.insert(0, _Finder(lambda: Runtime(config)))
