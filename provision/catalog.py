"""The GPU catalog: PCI id -> chip -> gfx target -> family -> ROCm 7.0 status (data: provision/data/gpus.yaml)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Literal

from provision import datafiles

AMD_VENDOR = "1002"

Rocm70Status = Literal["supported", "same-isa-unofficial", "unsupported"]
Segment = Literal["radeon", "radeon-pro", "instinct", "apu"]


@dataclass(frozen=True)
class Chip:
    chip: str
    name: str
    gfx: str
    gfx_target_version: int | None
    family: str
    generic: str | None
    integrated: bool
    override_gfx_version: str | None
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Device:
    pci_id: str  # "1002:731f"
    name: str
    segment: Segment
    rocm70: Rocm70Status
    os_profile: str | None
    chip: Chip
    sources: tuple[str, ...]

    @property
    def supported_os(self) -> tuple[str, ...]:
        return catalog().os_profile(self.os_profile)


def normalise_pci_id(value: str) -> str:
    """'731F', '0x731f', '1002:731f' -> '1002:731f'. Raises ValueError on anything else."""
    text = value.strip().lower()
    match = re.fullmatch(r"(?:(0x)?([0-9a-f]{4}):)?(0x)?([0-9a-f]{4})", text)
    if not match:
        raise ValueError(f"not a PCI id: {value!r} (expected vendor:device in hex, e.g. 1002:731f)")
    vendor = match.group(2) or AMD_VENDOR
    return f"{vendor}:{match.group(4)}"


def gfx_from_version(version: str) -> str:
    """An HSA_OVERRIDE_GFX_VERSION value ('10.3.0') -> the gfx target it selects ('gfx1030')."""
    match = re.fullmatch(r"\s*(\d+)\.(\d+)\.(\d+)\s*", version)
    if not match:
        raise ValueError(f"not a gfx version: {version!r} (expected MAJOR.MINOR.STEPPING, e.g. 10.3.0)")
    major, minor, stepping = (int(g) for g in match.groups())
    if major > 63 or minor > 255 or stepping > 255:
        raise ValueError(f"gfx version out of range: {version!r}")
    return f"gfx{major}{minor:x}{stepping:x}"


def gfx_from_target_version(value: int) -> str:
    """KFD `gfx_target_version` (100300) -> 'gfx1030', decoded like rocm_agent_enumerator does."""
    major, rest = divmod(value, 10000)
    minor, stepping = divmod(rest, 100)
    return f"gfx{major}{minor:x}{stepping:x}"


class Catalog:
    def __init__(self, data: dict) -> None:
        self.sources: dict[str, str] = dict(data.get("sources", {}))
        self._os_profiles: dict[str, tuple[str, ...]] = {
            name: tuple(body.get("os", [])) for name, body in data.get("os_profiles", {}).items()
        }
        self.chips: list[Chip] = []
        self._devices: dict[str, Device] = {}
        for row in data["chips"]:
            chip = Chip(
                chip=row["chip"],
                name=row["name"],
                gfx=row["gfx"],
                gfx_target_version=row.get("gfx_target_version"),
                family=row["family"],
                generic=row.get("generic"),
                integrated=bool(row.get("integrated", False)),
                override_gfx_version=row.get("override_gfx_version"),
                sources=tuple(row.get("sources", [])),
            )
            self.chips.append(chip)
            for dev in row.get("devices", []):
                pci_id = normalise_pci_id(str(dev["pci_id"]))
                self._devices[pci_id] = Device(
                    pci_id=pci_id,
                    name=dev["name"],
                    segment=dev["segment"],
                    rocm70=dev["rocm70"],
                    os_profile=dev.get("os_profile"),
                    chip=chip,
                    sources=tuple(dev.get("sources", [])),
                )

    def device(self, pci_id: str) -> Device | None:
        """The catalogued device, or None (also for a string that is no PCI id, as a hostile paste may hold)."""
        try:
            return self._devices.get(normalise_pci_id(pci_id))
        except ValueError:
            return None

    def devices(self) -> list[Device]:
        return list(self._devices.values())

    def chip_for_gfx(self, gfx: str) -> Chip | None:
        for chip in self.chips:
            if chip.gfx == gfx and not chip.integrated:
                return chip
        for chip in self.chips:
            if chip.gfx == gfx:
                return chip
        return None

    def os_profile(self, name: str | None) -> tuple[str, ...]:
        if name is None:
            return ()
        return self._os_profiles.get(name, ())


@cache
def catalog() -> Catalog:
    return Catalog(datafiles.load("gpus"))
