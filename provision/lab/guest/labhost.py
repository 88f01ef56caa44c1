#!/usr/bin/python3
"""rocm-provision lab: generate a host's simulated GPU boundary from its declaration (runs in the container).

    labhost.py boot SEED_DIR

SEED_DIR/host.json declares the GPUs by PCI id. This writes, under the host's sysfs root (real hosts: /sys;
lab hosts: /opt/provision-lab/sys), a sysfs-shaped PCI tree (vendor, device, class, subsystem_*, revision,
config) and KFD topology nodes, /opt/provision-lab/gpus.json (read by the stand-in rocminfo), and an lspci
wrapper in /usr/local/bin that points the real pciutils lspci at the simulated tree.
"""

import json
import os
import shutil
import struct
import sys

LAB = "/opt/provision-lab"

LSPCI = """#!/bin/sh
# rocm-provision lab: the real lspci (pciutils), reading this host's simulated PCI tree.
exec /usr/bin/lspci -A linux-sysfs -O sysfs.path={root}/bus/pci "$@"
"""


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = text if isinstance(text, bytes) else text.encode()
    with open(path, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)


def config_space(gpu):
    cfg = bytearray(256)
    cls = gpu["pci_class"]
    struct.pack_into("<HHHH", cfg, 0, gpu["vendor_id"], gpu["device_id"], 0x0007, 0x0000)
    cfg[8] = gpu["revision"]
    cfg[9], cfg[10], cfg[11] = cls & 0xFF, (cls >> 8) & 0xFF, (cls >> 16) & 0xFF
    cfg[0x0C] = 0x10
    struct.pack_into("<HH", cfg, 0x2C, gpu["subsystem_vendor"], gpu["subsystem_device"])
    cfg[0x3D] = 1
    return bytes(cfg)


def pci_tree(root, gpus):
    for gpu in gpus:
        addr = gpu["address"]
        real = f"{root}/devices/pci0000:00/{addr}"
        files = {
            "vendor": f"0x{gpu['vendor_id']:04x}\n", "device": f"0x{gpu['device_id']:04x}\n",
            "class": f"0x{gpu['pci_class']:06x}\n", "subsystem_vendor": f"0x{gpu['subsystem_vendor']:04x}\n",
            "subsystem_device": f"0x{gpu['subsystem_device']:04x}\n", "revision": f"0x{gpu['revision']:02x}\n",
            "irq": "0\n", "numa_node": "-1\n", "enable": "1\n",
            "boot_vga": "1\n" if gpu is gpus[0] else "0\n",
        }
        for name, text in files.items():
            write(f"{real}/{name}", text, 0o444)
        write(f"{real}/config", config_space(gpu), 0o444)
        os.makedirs(f"{root}/bus/pci/drivers/amdgpu", exist_ok=True)
        os.symlink("../../../bus/pci/drivers/amdgpu", f"{real}/driver")
        os.makedirs(f"{root}/bus/pci/devices", exist_ok=True)
        os.symlink(f"../../../devices/pci0000:00/{addr}", f"{root}/bus/pci/devices/{addr}")
    write(f"{root}/module/amdgpu/initstate", "live\n", 0o444)


def props(pairs):
    return "".join(f"{key} {value}\n" for key, value in pairs)


def kfd_tree(root, cpu, gpus):
    top = f"{root}/class/kfd/kfd/topology"
    write(f"{top}/generation_id", "1\n", 0o444)
    write(f"{top}/system_properties", "platform_oem 0\nplatform_id 0\nplatform_rev 0\n", 0o444)
    zero = ("caches_count", "p2p_links_count", "cpu_core_id_base", "simd_id_base", "max_waves_per_simd",
            "lds_size_in_kb", "gds_size_in_kb", "num_gws", "wave_front_size", "array_count",
            "simd_arrays_per_engine", "cu_per_simd_array", "simd_per_cu", "max_slots_scratch_cu",
            "gfx_target_version", "vendor_id", "device_id", "location_id", "domain", "drm_render_minor",
            "hive_id", "num_sdma_engines", "num_sdma_xgmi_engines", "num_sdma_queues_per_engine",
            "num_cp_queues")
    cpu_pairs = [("cpu_cores_count", cpu["cores"]), ("simd_count", 0), ("mem_banks_count", 1),
                 ("io_links_count", len(gpus))] + [(key, 0) for key in zero]
    cpu_pairs.append(("max_engine_clk_ccompute", cpu.get("clock_mhz", 4500)))
    write(f"{top}/nodes/0/properties", props(cpu_pairs), 0o444)
    write(f"{top}/nodes/0/gpu_id", "0\n", 0o444)
    write(f"{top}/nodes/0/name", "\n", 0o444)
    for index, gpu in enumerate(gpus):
        node = index + 1
        simd_per_cu = 4 if gpu["gfx"].startswith("gfx9") else 2
        pairs = [
            ("cpu_cores_count", 0), ("simd_count", gpu["compute_units"] * simd_per_cu), ("mem_banks_count", 1),
            ("caches_count", 108), ("io_links_count", 1), ("p2p_links_count", 0), ("cpu_core_id_base", 0),
            ("simd_id_base", 2147487744 + 1024 * index), ("max_waves_per_simd", 20 if simd_per_cu == 2 else 8),
            ("lds_size_in_kb", 64), ("gds_size_in_kb", 0), ("num_gws", 64),
            ("wave_front_size", gpu["wave_front_size"]), ("array_count", 4), ("simd_arrays_per_engine", 2),
            ("cu_per_simd_array", max(1, gpu["compute_units"] // 4)), ("simd_per_cu", simd_per_cu),
            ("max_slots_scratch_cu", 32), ("gfx_target_version", gpu["gfx_target_version"]),
            ("vendor_id", gpu["vendor_id"]), ("device_id", gpu["device_id"]),
            ("location_id", gpu["location_id"]), ("domain", 0), ("drm_render_minor", 128 + index),
            ("hive_id", 0), ("num_sdma_engines", 2), ("num_sdma_xgmi_engines", 0),
            ("num_sdma_queues_per_engine", 8), ("num_cp_queues", 8),
            ("max_engine_clk_fcompute", gpu["max_clock_mhz"]), ("local_mem_size", 0),
            ("fw_version", 146), ("capability", 671098880), ("debug_prop", 1495), ("sdma_fw_version", 35),
            ("unique_id", gpu.get("unique_id", 0)), ("num_xcc", 1),
            ("max_engine_clk_ccompute", cpu.get("clock_mhz", 4500)),
        ]
        write(f"{top}/nodes/{node}/properties", props(pairs), 0o444)
        write(f"{top}/nodes/{node}/gpu_id", f"{(gpu['device_id'] * 7 + node) % 65536}\n", 0o444)
        write(f"{top}/nodes/{node}/name", f"{gpu['chip']}\n", 0o444)


def boot(seed):
    with open(os.path.join(seed, "host.json"), encoding="utf-8") as handle:
        host = json.load(handle)
    root = host["sysfs_root"]
    gpus = host["gpus"]
    if os.path.isdir(root):
        shutil.rmtree(root)
    pci_tree(root, gpus)
    kfd_tree(root, host["cpu"], gpus)
    declaration = {"host": host["name"], "sysfs_root": root, "cpu": host["cpu"], "gpus": gpus,
                   "description": host["description"]}
    write(f"{LAB}/gpus.json", json.dumps(declaration, indent=2) + "\n")
    # The running kernel's release as /proc/sys/kernel/osrelease shows it (containers share the controller's
    # kernel, so each lab host declares the one it simulates; the preflight reads this copy).
    write(f"{LAB}/proc/sys/kernel/osrelease", host.get("kernel_release", os.uname().release) + "\n")
    write(f"{LAB}/host.json", json.dumps(host, indent=2) + "\n")
    write("/usr/local/bin/lspci", LSPCI.format(root=root), 0o755)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "boot":
        sys.stderr.write("usage: labhost.py boot SEED_DIR\n")
        sys.exit(2)
    sys.exit(boot(sys.argv[2]))
