#!/usr/bin/python3
"""rocm-provision lab stand-in for rocminfo / rocm_agent_enumerator.

Reads the host's simulated agents from /opt/provision-lab/gpus.json and prints them in rocminfo's format.
Honours HSA_OVERRIDE_GFX_VERSION like the real runtime: every GPU agent reports the overridden target.
"""

import json
import os
import re
import sys

ROCM_VERSION = "@ROCM_VERSION@"
RUNTIME_VERSION = "@RUNTIME_VERSION@"
KMD_VERSION = "@KMD_VERSION@"
GPUS_JSON = os.environ.get("PROVISION_LAB_GPUS_JSON", "/opt/provision-lab/gpus.json")


def override_gfx(real: str) -> str:
    value = os.environ.get("HSA_OVERRIDE_GFX_VERSION", "").strip()
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", value)
    if not match:
        return real
    major, minor, step = (int(g) for g in match.groups())
    return f"gfx{major}{minor}{step:x}"


def line(label, value, indent=2):
    return f"{' ' * indent}{label:<{27 - indent}}{value!s:<35}"


def hexv(value):
    return f"{value}(0x{value:x})"


def cpu_agent(cpu, number):
    out = ["*******                  ", f"Agent {number:<19}", "*******                  "]
    out += [line("Name:", cpu["name"]), line("Uuid:", "CPU-XX"), line("Marketing Name:", cpu["name"]),
            line("Vendor Name:", "CPU"), line("Feature:", "None specified"), line("Profile:", "FULL_PROFILE"),
            line("Float Round Mode:", "NEAR"), line("Max Queue Number:", hexv(0)),
            line("Queue Min Size:", hexv(0)), line("Queue Max Size:", hexv(0)), line("Queue Type:", "MULTI"),
            line("Node:", 0), line("Device Type:", "CPU"), line("Cache Info:", ""),
            line("L1:", "32768(0x8000) KB", 4), line("Chip ID:", hexv(0)), line("ASIC Revision:", hexv(0)),
            line("Cacheline Size:", hexv(64)), line("Max Clock Freq. (MHz):", cpu.get("clock_mhz", 4500)),
            line("BDFID:", 0), line("Internal Node ID:", 0), line("Compute Unit:", cpu["cores"]),
            line("SIMDs per CU:", 0), line("Shader Engines:", 0), line("Shader Arrs. per Eng.:", 0),
            line("WatchPts on Addr. Ranges:", 1), line("Features:", "None"), line("Pool Info:", ""),
            line("Pool 1", "", 4), line("Segment:", "GLOBAL; FLAGS: FINE GRAINED", 6),
            line("ISA Info:", "")]
    return out


def gpu_agent(gpu, number, node):
    gfx = override_gfx(gpu["gfx"])
    cu = gpu["compute_units"]
    simd_per_cu = 4 if gpu["gfx"].startswith("gfx9") else 2
    wave = gpu["wave_front_size"]
    out = ["*******                  ", f"Agent {number:<19}", "*******                  "]
    out += [line("Name:", gfx), line("Uuid:", f"GPU-{gpu['unique_id']:016x}" if gpu.get("unique_id") else "GPU-XX"),
            line("Marketing Name:", gpu["marketing_name"]),
            line("Vendor Name:", "AMD"), line("Feature:", "KERNEL_DISPATCH"), line("Profile:", "BASE_PROFILE"),
            line("Float Round Mode:", "NEAR"), line("Max Queue Number:", hexv(128)),
            line("Queue Min Size:", hexv(64)), line("Queue Max Size:", hexv(131072)),
            line("Queue Type:", "MULTI"), line("Node:", node), line("Device Type:", "GPU"),
            line("Cache Info:", ""), line("L1:", "16(0x10) KB", 4), line("L2:", "4096(0x1000) KB", 4),
            line("Chip ID:", hexv(gpu["device_id"])), line("ASIC Revision:", hexv(0)),
            line("Cacheline Size:", hexv(64)), line("Max Clock Freq. (MHz):", gpu["max_clock_mhz"]),
            line("BDFID:", gpu["location_id"]), line("Internal Node ID:", node), line("Compute Unit:", cu),
            line("SIMDs per CU:", simd_per_cu), line("Shader Engines:", 4), line("Shader Arrs. per Eng.:", 2),
            line("WatchPts on Addr. Ranges:", 4), line("Features:", "KERNEL_DISPATCH "),
            line("Fast F16 Operation:", "TRUE"), line("Wavefront Size:", hexv(wave)),
            line("Workgroup Max Size:", hexv(1024)), line("Max Waves Per CU:", hexv(32)),
            line("Max Work-item Per CU:", hexv(1024)), line("Pool Info:", ""), line("Pool 1", "", 4),
            line("Segment:", "GLOBAL; FLAGS: COARSE GRAINED", 6),
            line("Size:", f"{gpu['vram_mib'] * 1024}(0x{gpu['vram_mib'] * 1024:x}) KB", 6),
            line("ISA Info:", ""), line("ISA 1", "", 4), line("Name:", f"amdgcn-amd-amdhsa--{gfx}", 6),
            line("Machine Models:", "HSA_LARGE", 6), line("Profiles:", "HSA_BASE", 6)]
    return out


def load():
    try:
        with open(GPUS_JSON, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError:
        return None


def enumerator(data):
    names = ["gfx000"] + [override_gfx(gpu["gfx"]) for gpu in data["gpus"]]
    sys.stdout.write("\n".join(names) + "\n")
    return 0


def main():
    data = load()
    if os.path.basename(sys.argv[0]) == "rocm_agent_enumerator":
        return enumerator(data) if data else 1
    if not data or not data.get("gpus"):
        sys.stdout.write("ROCk module is NOT loaded, possibly no GPU devices\n")
        return 1
    out = [f"ROCk module version {KMD_VERSION} is loaded" if KMD_VERSION else "ROCk module is loaded",
           "=====================    ", "HSA System Attributes    ", "=====================    ",
           line("Runtime Version:", RUNTIME_VERSION, 0), line("System Timestamp Freq.:", "1000.000000MHz", 0),
           line("Sig. Max Wait Duration:", "18446744073709551615 (0xFFFFFFFFFFFFFFFF) (timestamp count)", 0),
           line("Machine Model:", "LARGE", 0), line("System Endianness:", "LITTLE", 0), "",
           "==========               ", "HSA Agents               ", "==========               "]
    out += cpu_agent(data["cpu"], 1)
    for index, gpu in enumerate(data["gpus"]):
        out += gpu_agent(gpu, index + 2, index + 1)
    out.append("*** Done ***             ")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
