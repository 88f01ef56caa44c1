"""The lab's simulated GPU runtime (provision/lab/guest/gpusim.py) under the real verification suite: what a
torch 1.13.1+rocm5.2 venv does on an RX 5600 XT (gfx1010), from the public facts in gpu_runtime.yaml only.
No container needed: the runtime is activated through sitecustomize in a CPU torch interpreter."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).parents[2]
RX5600XT = {"gfx": "gfx1010", "marketing_name": "AMD Radeon RX 5600 XT", "vram_mib": 6144, "compute_units": 36,
            "integrated": False}
FOUND = {"MIOPEN_DEBUG_CONV_GEMM": "0", "MIOPEN_DEBUG_CONV_DIRECT_OCL_WRW2": "0",
         "MIOPEN_DEBUG_AMD_WINOGRAD_RXS_F3X2": "0"}


@pytest.fixture(scope="module")
def simenv(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("gpusim")
    shutil.copy(REPO / "provision" / "lab" / "guest" / "gpusim.py", root / "rocm_provision_gpusim.py")
    (root / "sitecustomize.py").write_text("import rocm_provision_gpusim\nrocm_provision_gpusim.install()\n")
    (root / "gpus.json").write_text(json.dumps({"gpus": [RX5600XT]}))
    data = yaml.safe_load((REPO / "provision" / "data" / "gpu_runtime.yaml").read_text())
    (root / "config.json").write_text(json.dumps({"torch": "1.13.1+rocm5.2", "hip": "5.2.21151-afdc89f8",
                                                  "host_json": str(root / "gpus.json"), "data": data}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIOPEN_", "HSA_"))}
    env.update(PYTHONPATH=f"{root}{os.pathsep}{REPO}", ROCM_PROVISION_GPUSIM_CONFIG=str(root / "config.json"))
    return env


def _python(env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def test_simulated_torch_build_carries_no_gfx1010_code(simenv: dict[str, str]) -> None:
    probe = ("import torch, json; print(json.dumps([str(torch.__version__), torch.cuda.get_arch_list(), "
             "torch._C._cuda_getArchFlags(), torch.cuda.get_device_properties(0).gcnArchName]))")
    plain = json.loads(_python(simenv, probe).stdout.splitlines()[-1])
    assert plain[0] == "1.13.1+rocm5.2" and "gfx1010" not in plain[1] and "gfx1030" in plain[1]
    assert plain[3] == "gfx1010"  # no override: the runtime reports the hardware
    over = json.loads(_python({**simenv, "HSA_OVERRIDE_GFX_VERSION": "10.3.0"}, probe).stdout.splitlines()[-1])
    assert over[3] == "gfx1030"
    # without the override, the first GPU kernel fails as HIP does when a build has no code for the target
    bad = _python(simenv, "import torch; torch.randn(4, device='cuda')")
    assert bad.returncode != 0 and "HIP error: invalid device function" in bad.stderr


def test_simulated_faults_follow_the_miopen_switches(simenv: dict[str, str], tmp_path: Path) -> None:
    cases = "2d-conv-n4c16k32-24x24-r1s1,2d-conv-n4c16k32-24x24-r3s1d1g2"

    def suite(extra: dict[str, str]) -> dict[str, str]:
        out = tmp_path / f"r{len(extra)}.json"
        subprocess.run([sys.executable, "-m", "provision.convcheck", "--device", "auto", "--cases", cases,
                        "--no-timing", "--no-retry", "--json", str(out), "--quiet"],
                       env={**simenv, "HSA_OVERRIDE_GFX_VERSION": "10.3.0", **extra}, capture_output=True,
                       text=True, timeout=300, check=False)
        doc = json.loads(out.read_text())
        assert "[simulated" in doc["gpus"][0]["name"] and doc["conv_library"]["version"] == "2.17.0"
        return {c["name"].split("-24x24-")[1][:8]: c["status"] for c in doc["cases"]}

    assert suite({}) == {"r1s1d1g1": "pass", "r3s1d1g2": "crash"}  # GemmBwdRest / ConvOclBwdWrW2 fault
    assert suite(FOUND) == {"r1s1d1g1": "pass", "r3s1d1g2": "pass"}
