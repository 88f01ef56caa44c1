"""Simulated GPU models: what a lab host declares per PCI device, in the values real sysfs/KFD/rocminfo show."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

AMD_VENDOR = 0x1002


@dataclass(frozen=True)
class GpuModel:
    device_id: int  # PCI device id, e.g. 0x731f
    marketing_name: str  # rocminfo "Marketing Name"
    chip: str  # codename as the KFD node name shows it
    gfx: str  # LLVM target, e.g. gfx1010
    gfx_target_version: int  # KFD property, e.g. 100100
    compute_units: int
    pci_class: int  # 0x030000 VGA, 0x038000 display controller (Instinct)
    revision: int
    subsystem_vendor: int
    subsystem_device: int
    max_clock_mhz: int
    vram_mib: int
    wave_front_size: int
    integrated: bool = False
    unique_id: int = 0  # KFD unique_id; rocminfo shows "GPU-%016x" from it, "GPU-XX" when 0

    @property
    def pci_id(self) -> str:
        return f"{AMD_VENDOR:04x}:{self.device_id:04x}"


MODELS: dict[int, GpuModel] = {
    m.device_id: m
    for m in (
        GpuModel(0x731F, "AMD Radeon RX 5600 XT", "navi10", "gfx1010", 100100, 36, 0x030000, 0xC1,
                 0x1DA2, 0xE411, 1750, 6144, 32),
        GpuModel(0x73A3, "AMD Radeon PRO W6800", "navi21", "gfx1030", 100300, 60, 0x030000, 0x00,
                 0x1002, 0x0E1E, 2555, 32768, 32),
        # Unique ids as a real RX 7900 XTX (ROCm/ROCm#2866) and MI210 (rocprofiler-compute#95) show them in
        # rocminfo; the RDNA1/RDNA2 parts and the Raphael iGPU show "GPU-XX" there (no unique id).
        GpuModel(0x744C, "Radeon RX 7900 XTX", "navi31", "gfx1100", 110000, 96, 0x030000, 0xC8,
                 0x1002, 0x0E3B, 2482, 24576, 32, unique_id=0x0AAC02DBEBD629EE),
        GpuModel(0x740F, "AMD Instinct MI210", "aldebaran", "gfx90a", 90010, 104, 0x038000, 0x02,
                 0x1002, 0x0C34, 1700, 65536, 64, unique_id=0x880B91D040DA15D8),
        GpuModel(0x164E, "AMD Radeon Graphics", "raphael", "gfx1036", 100306, 2, 0x030000, 0xC1,
                 0x1043, 0x8877, 2200, 512, 32, integrated=True),
    )
}


@dataclass(frozen=True)
class GpuSlot:
    """One simulated device at a PCI address (bus number; device 00, function 0)."""

    device_id: int
    bus: int

    @property
    def model(self) -> GpuModel:
        return MODELS[self.device_id]

    @property
    def address(self) -> str:
        return f"0000:{self.bus:02x}:00.0"

    def declaration(self) -> dict[str, Any]:
        """The per-device entry of the host's gpus.json (read by the in-container generator and rocminfo)."""
        data = asdict(self.model)
        data.update(
            address=self.address,
            vendor_id=AMD_VENDOR,
            pci_id=self.model.pci_id,
            location_id=self.bus << 8,
        )
        return data


def describe(slots: tuple[GpuSlot, ...]) -> str:
    parts = [f"{s.model.marketing_name} ({s.model.pci_id}, {s.model.gfx})" for s in slots]
    return " + ".join(parts) if parts else "no GPU"
