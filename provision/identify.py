"""Identify a host's GPUs from what a Linux box shows: `lspci -nn`, sysfs PCI entries, KFD topology,
`rocminfo` and `rocm_agent_enumerator` output, plus the environment.

The PCI id is the authority. gfx strings reported by the ROCm runtime can be rewritten by
HSA_OVERRIDE_GFX_VERSION, and marketing names come from a lookup table that may be missing or stale,
so both are treated as claims to check against the hardware, never as identification on their own.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from provision.catalog import AMD_VENDOR, Catalog, catalog, gfx_from_target_version, gfx_from_version

GPU_CLASSES = {"0300", "0302", "0380", "1200"}  # VGA, 3D, other display, processing accelerator
Role = Literal["compute", "igpu", "non-amd", "unknown-amd"]


# ---------------------------------------------------------------- raw observations


@dataclass(frozen=True)
class PciDevice:
    slot: str | None
    class_code: str  # "0300"
    vendor: str  # "1002"
    device: str  # "731f"
    description: str = ""

    @property
    def pci_id(self) -> str | None:
        return f"{self.vendor}:{self.device}" if self.vendor and self.device else None


@dataclass(frozen=True)
class KfdNode:
    node: int
    gfx_target_version: int
    vendor_id: int
    device_id: int
    location_id: int | None = None
    unique_id: int = 0  # KFD `unique_id`; 0 where the GPU has none (the runtime then shows "GPU-XX")


@dataclass(frozen=True)
class Agent:
    """One GPU agent block of `rocminfo` (or one line of `rocm_agent_enumerator`)."""

    name: str  # gfx string as the runtime reports it
    marketing_name: str | None = None
    chip_id: str | None = None  # PCI device id, 4 hex digits
    source: str = "rocminfo"
    uuid: str | None = None  # "GPU-<16 hex>" when the GPU has a unique id; None for rocminfo's "GPU-XX"


_LSPCI_RE = re.compile(
    r"^(?:(?P<slot>(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])\s+)?"
    r"(?P<cls_name>[^\[\]]*?)\s*\[(?P<cls>[0-9a-fA-F]{4})\]:\s*"
    r"(?P<desc>.*?)\s*\[(?P<vendor>[0-9a-fA-F]{4}):(?P<device>[0-9a-fA-F]{4})\]"
    r"(?:\s*\(rev [0-9a-fA-F]+\))?(?:\s*\(prog-if [^)]*\))?\s*$"
)


_LSPCI_PLAIN_RE = re.compile(
    r"^(?:(?P<slot>(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])\s+)?"
    r"(?P<cls_name>VGA compatible controller|3D controller|Display controller|Processing accelerators):\s*"
    r"(?P<desc>.*?)(?:\s*\(rev [0-9a-fA-F]+\))?(?:\s*\(prog-if [^)]*\))?\s*$"
)
_PLAIN_CLASS = {"VGA compatible controller": "0300", "3D controller": "0302", "Display controller": "0380",
                "Processing accelerators": "1200"}
_AMD_NAME_RE = re.compile(r"Advanced Micro Devices|\[AMD(/ATI)?\]|ATI Technologies")


def norm_slot(slot: str | None) -> str | None:
    """'0000:0a:00.0' and '0a:00.0' name the same function: drop the default PCI domain."""
    if slot is None:
        return None
    slot = slot.lower()
    return slot[5:] if slot.startswith("0000:") else slot


def _parse_plain_lspci_line(line: str) -> PciDevice | None:
    """A line of `lspci` without -nn. AMD's numeric id survives only when pci.ids has no name for it
    ("Device 73df"); otherwise only the name is left, and `device` stays empty."""
    match = _LSPCI_PLAIN_RE.match(line)
    if not match:
        return None
    desc = match["desc"].strip()
    amd = bool(_AMD_NAME_RE.search(desc))
    dev = re.search(r"\bDevice ([0-9a-fA-F]{4})\b", desc) if amd else None
    return PciDevice(slot=norm_slot(match["slot"]), class_code=_PLAIN_CLASS[match["cls_name"]],
                     vendor=AMD_VENDOR if amd else "", device=dev.group(1).lower() if dev else "", description=desc)


# No line of lspci or rocminfo output comes near this; longer lines are skipped (and said so), which keeps
# every regex below on short input: the parsers stay linear in the paste's size.
MAX_LINE = 4096
_LSPCI_START_RE = re.compile(
    r"^(?:(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]\s|"
    r"(?:VGA compatible controller|3D controller|Display controller|Processing accelerators)\b)"
)
_BLANKS_RE = re.compile(r"[ \t]+")
_WRAP_JOIN = 5  # a record wrapped by a terminal is rejoined from at most this many lines


def bounded_lines(text: str) -> list[str]:
    """The paste's lines, without any longer than MAX_LINE characters."""
    return [line for line in text.splitlines() if len(line) <= MAX_LINE]


def long_line_note(text: str | None, what: str) -> list[str]:
    count = sum(1 for line in (text or "").splitlines() if len(line) > MAX_LINE)
    return [f"{count} line(s) of the {what} input longer than {MAX_LINE} characters were skipped "
            f"(no real {what} line is that long)"] if count else []


def _squeeze(line: str) -> str:
    """One space for each run of blanks: the regexes then see no long ambiguous runs (linear matching)."""
    return _BLANKS_RE.sub(" ", line).strip()


def _continues(line: str) -> bool:
    """A line a terminal broke off the one before: not a record start and not an indented `lspci -v` detail
    line (those start with a tab or several blanks; a broken-off line starts with a character or one blank)."""
    return (bool(line) and not _LSPCI_START_RE.match(line.strip()) and not line.startswith(("\t", "  "))
            and not (line.startswith(" ") and len(line) > 1 and line[1].isspace()))


def _lspci_records(text: str) -> list[str]:
    """Lines of lspci output, with records a terminal wrapped mid-token joined back (as the terminal broke
    them: nothing added): an `lspci -nn` record that does not parse takes the lines after it until it does;
    a plain `lspci` record takes the broken-off lines that follow it."""
    lines = [line.rstrip("\r") for line in bounded_lines(text)]
    out: list[str] = []
    i = 0
    while i < len(lines):
        line, step = _squeeze(lines[i]), 1
        if not _LSPCI_RE.match(line) and _LSPCI_START_RE.match(line):
            joined = lines[i]
            for k in range(1, _WRAP_JOIN):
                if i + k >= len(lines) or not _continues(lines[i + k]) or len(joined) > MAX_LINE:
                    break
                joined += lines[i + k]
                if _LSPCI_RE.match(_squeeze(joined)):
                    line, step = _squeeze(joined), k + 1
                    break
                if not re.search(r"\[[0-9a-fA-F]{4}\]:", joined):  # plain lspci: take every broken-off line
                    line, step = _squeeze(joined), k + 1
        out.append(line)
        i += step
    return out


def parse_lspci(text: str) -> list[PciDevice]:
    """Display-class devices from `lspci -nn` output (other PCI functions are ignored). Lines of plain
    `lspci` are kept too, with whatever id they still carry. Lines a terminal wrapped are joined back."""
    found = []
    for line in _lspci_records(text):
        match = _LSPCI_RE.match(line)
        if not match:
            plain = _parse_plain_lspci_line(line)
            if plain:
                found.append(plain)
            continue
        if match["cls"].lower() not in GPU_CLASSES:
            continue
        found.append(
            PciDevice(
                slot=norm_slot(match["slot"]),
                class_code=match["cls"].lower(),
                vendor=match["vendor"].lower(),
                device=match["device"].lower(),
                description=match["desc"].strip(),
            )
        )
    return found


def _read(path: Path) -> str | None:
    from provision.safeinput import read_small_regular

    text = read_small_regular(path)
    return text.strip() if text is not None else None


def read_sysfs_pci(root: Path) -> list[PciDevice]:
    """Display-class devices under `<root>/bus/pci/devices` (root is `/sys` on a real host)."""
    base = root / "bus" / "pci" / "devices"
    found = []
    for entry in sorted(base.glob("*")) if base.is_dir() else []:
        vendor, device, cls = (_read(entry / n) for n in ("vendor", "device", "class"))
        if not (vendor and device and cls):
            continue
        class_code = cls.lower().removeprefix("0x").rjust(6, "0")[:4]
        if class_code not in GPU_CLASSES:
            continue
        found.append(
            PciDevice(
                slot=norm_slot(entry.name),
                class_code=class_code,
                vendor=vendor.lower().removeprefix("0x"),
                device=device.lower().removeprefix("0x"),
            )
        )
    return found


def parse_kfd_properties(text: str, node: int = 0) -> KfdNode | None:
    """One KFD topology node's `properties` file; None for CPU-only nodes."""
    props: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            props[parts[0]] = int(parts[1])
    gfx = props.get("gfx_target_version", 0)
    if gfx == 0 or props.get("simd_count", 1) == 0:
        return None
    return KfdNode(
        node=node,
        gfx_target_version=gfx,
        vendor_id=props.get("vendor_id", 0),
        device_id=props.get("device_id", 0),
        location_id=props.get("location_id"),
        unique_id=max(props.get("unique_id", 0), 0),
    )


def read_kfd(root: Path) -> list[KfdNode]:
    """GPU nodes of `<root>/class/kfd/kfd/topology/nodes/*/properties`."""
    base = root / "class" / "kfd" / "kfd" / "topology" / "nodes"
    nodes = []
    entries = sorted(base.glob("*"), key=lambda p: int(p.name) if p.name.isdigit() else 0) if base.is_dir() else []
    for entry in entries:
        text = _read(entry / "properties")
        if text is None or not entry.name.isdigit():
            continue
        parsed = parse_kfd_properties(text, int(entry.name))
        if parsed:
            nodes.append(parsed)
    return nodes


_UUID_RE = re.compile(r"gpu-[0-9a-f]{16}")


def uuid_from_unique_id(unique_id: int) -> str | None:
    """KFD `unique_id` -> the runtime's agent UUID ("GPU-" and 16 hex digits, as rocminfo prints it)."""
    return f"GPU-{unique_id:016x}" if 0 < unique_id < 2**64 else None


_FIELD_RE = re.compile(r"^[ \t]*(?P<key>[A-Za-z][A-Za-z0-9 ()#_-]*?):(?P<value>.*)$")
_ROCMINFO_TOP_RE = re.compile(r"^(?:\*{3,}|={3,}|Agent\s+\d+\s*$|HSA |ROCk |\*\*\* Done|[A-Za-z][A-Za-z0-9 .()#_/-]*:)")


def _rocminfo_lines(text: str) -> list[str]:
    """rocminfo lines with those a terminal wrapped joined back: a line at column 0 that is none of rocminfo's
    own top-level lines continues the indented line before it (nothing added between them)."""
    out: list[str] = []
    for raw in bounded_lines(text):
        line = raw.rstrip("\r")
        if (out and line and not line[0].isspace() and out[-1][:1].isspace() and not _ROCMINFO_TOP_RE.match(line)
                and len(out[-1]) + len(line) <= MAX_LINE):
            out[-1] += line
        else:
            out.append(line)
    return out


def _rocminfo_blocks(text: str) -> list[dict[str, str]]:
    """Split rocminfo output into agent blocks: at `Agent N` headers, or, for pastes that lost their
    headers, at each agent-level `Name:` line (ISA and pool `Name:` lines are indented deeper)."""
    lines = _rocminfo_lines(text)
    has_headers = any(re.match(r"^\s*Agent\s+\d+\s*$", line) for line in lines)
    agent_indent = min(
        (len(line) - len(line.lstrip()) for line in lines if re.match(r"^\s*(Name|Device Type):", line)),
        default=0,
    )
    blocks: list[dict[str, str]] = []
    current: dict[str, str] | None = None if has_headers else {}
    if current is not None:
        blocks.append(current)
    for line in lines:
        if re.match(r"^\s*Agent\s+\d+\s*$", line):
            current = {}
            blocks.append(current)
            continue
        match = _FIELD_RE.match(line)
        if current is None or not match:
            continue
        indent = len(line) - len(line.lstrip())
        if not has_headers and match["key"] == "Name" and indent == agent_indent and current:
            current = {}
            blocks.append(current)
        if indent == agent_indent and match["key"] not in current:
            current[match["key"]] = match["value"].strip()
    return [b for b in blocks if b]


def parse_rocminfo(text: str) -> list[Agent]:
    """GPU agents of `rocminfo` output, in order. CPU agents are skipped."""
    agents = []
    for block in _rocminfo_blocks(text):
        name = block.get("Name", "").strip()
        device_type = block.get("Device Type", "GPU" if name.startswith("gfx") or "Chip ID" in block else "")
        if device_type.upper() != "GPU":
            continue
        chip = block.get("Chip ID", "")
        hex_match = re.search(r"\(0x([0-9a-fA-F]+)\)", chip)
        dec_match = re.fullmatch(r"\s*(\d+)\s*", chip)
        chip_id = None
        if hex_match and len(hex_match.group(1)) <= 4:
            chip_id = hex_match.group(1).lower().rjust(4, "0")
        elif dec_match and len(dec_match.group(1)) <= 5 and int(dec_match.group(1)) <= 0xFFFF:
            chip_id = f"{int(dec_match.group(1)):04x}"
        uuid = block.get("Uuid", "").strip().lower()
        agents.append(Agent(name=name, marketing_name=block.get("Marketing Name") or None, chip_id=chip_id,
                            uuid=f"GPU-{uuid[4:]}" if _UUID_RE.fullmatch(uuid) else None))
    return agents


def parse_agent_enumerator(text: str) -> list[Agent]:
    """`rocm_agent_enumerator` output: one gfx target per GPU (the old CPU line `gfx000` is skipped)."""
    names = [line.strip().split(":")[0] for line in text.splitlines() if line.strip().startswith("gfx")]
    return [Agent(name=n, source="rocm_agent_enumerator") for n in names if n != "gfx000"]


def parse_env(text: str) -> dict[str, str]:
    """KEY=VALUE pairs from `env` output, /etc/environment or a profile.d snippet (`export` allowed)."""
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            continue
        try:
            words = shlex.split(value, comments=True)
        except ValueError:
            words = [value]
        env[key] = words[0] if len(words) == 1 else " ".join(words)
    return env


# ---------------------------------------------------------------- identification


@dataclass
class Gpu:
    pci_id: str | None
    slot: str | None
    name: str
    role: Role
    chip: str | None = None
    gfx: str | None = None  # the hardware's target (from the PCI id or KFD)
    gfx_runtime: str | None = None  # what the ROCm runtime reports (may be overridden)
    family: str | None = None
    segment: str | None = None
    rocm70: str | None = None
    supported_os: list[str] = field(default_factory=list)
    override_gfx_version: str | None = None  # catalog's same-family override, if any
    uuid: str | None = None  # the runtime's agent UUID (ROCR_VISIBLE_DEVICES accepts it); None when it has none
    evidence: list[str] = field(default_factory=list)
    diagnosis: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Identification:
    gpus: list[Gpu]
    override: str | None = None  # HSA_OVERRIDE_GFX_VERSION in force (from env, or inferred)
    override_source: str | None = None  # "environment" | "inferred from rocminfo"
    notes: list[str] = field(default_factory=list)

    @property
    def compute(self) -> list[Gpu]:
        return [g for g in self.gpus if g.role in ("compute", "unknown-amd")]

    @property
    def set_aside(self) -> list[Gpu]:
        return [g for g in self.gpus if g.role in ("igpu", "non-amd")]

    def to_dict(self) -> dict:
        return {
            "gpus": [g.to_dict() for g in self.gpus],
            "override": self.override,
            "override_source": self.override_source,
            "notes": list(self.notes),
        }


def gpu_from_lspci_name(description: str, amd: bool, cat: Catalog) -> Gpu:
    """A GPU seen only by name (plain `lspci`): match the chip's name ("Navi 21") from the catalog."""
    if not amd:
        return Gpu(pci_id=None, slot=None, name=description or "non-AMD display device", role="non-amd")
    lowered = description.lower()
    for chip in sorted(cat.chips, key=lambda c: -len(c.name.split(" (")[0])):
        short = chip.name.split(" (")[0].lower()
        if re.search(rf"\b{re.escape(short)}\b", lowered):
            gpu = _gpu_from_gfx(chip.gfx, description, cat)
            gpu.gfx, gpu.gfx_runtime = chip.gfx, None
            gpu.diagnosis = [f"identified from the lspci name only ({chip.name}); run `lspci -nn` for the PCI id"]
            return gpu
    return Gpu(pci_id=None, slot=None, name=description, role="unknown-amd",
               diagnosis=["AMD display device without a PCI id or a known chip name; run `lspci -nn`"])


def gpu_from_pci(pci_id: str, slot: str | None, description: str, cat: Catalog) -> Gpu:
    vendor = pci_id.split(":")[0]
    if vendor != AMD_VENDOR:
        return Gpu(pci_id=pci_id, slot=slot, name=description or "non-AMD display device", role="non-amd")
    dev = cat.device(pci_id)
    if dev is None:
        return Gpu(
            pci_id=pci_id,
            slot=slot,
            name=description or "AMD device not in the catalog",
            role="unknown-amd",
            diagnosis=[f"{pci_id} is not in the GPU catalog; its gfx target is unknown"],
        )
    chip = dev.chip
    return Gpu(
        pci_id=pci_id,
        slot=slot,
        name=dev.name,
        role="igpu" if chip.integrated else "compute",
        chip=chip.name,
        gfx=chip.gfx,
        family=chip.family,
        segment=dev.segment,
        rocm70=dev.rocm70,
        supported_os=list(dev.supported_os),
        override_gfx_version=chip.override_gfx_version,
    )


def _gpu_from_gfx(gfx: str, name: str | None, cat: Catalog) -> Gpu:
    chip = cat.chip_for_gfx(gfx)
    if chip is None:
        return Gpu(pci_id=None, slot=None, name=name or gfx, role="unknown-amd", gfx_runtime=gfx,
                   diagnosis=[f"{gfx} is not in the GPU catalog"])
    siblings = [d for d in cat.devices() if d.chip == chip]
    status = "same-isa-unofficial" if any(d.rocm70 == "supported" for d in siblings) else "unsupported"
    return Gpu(
        pci_id=None,
        slot=None,
        name=name or chip.name,
        role="igpu" if chip.integrated else "compute",
        chip=chip.name,
        gfx_runtime=gfx,
        family=chip.family,
        rocm70=status,
        override_gfx_version=chip.override_gfx_version,
        diagnosis=[
            "identified from the runtime's gfx name only, which HSA_OVERRIDE_GFX_VERSION can rewrite; "
            "confirm with `lspci -nn`"
        ],
    )


def identify(
    *,
    lspci: str | None = None,
    sysfs_root: Path | None = None,
    pci: list[PciDevice] | None = None,
    kfd: list[KfdNode] | None = None,
    rocminfo: str | None = None,
    agents: str | None = None,
    env: dict[str, str] | None = None,
    cat: Catalog | None = None,
) -> Identification:
    """Merge every available observation into one list of GPUs, PCI ids first."""
    cat = cat or catalog()
    gpus: list[Gpu] = []
    by_id: dict[str, list[Gpu]] = {}

    def add_pci(devs: list[PciDevice], source: str) -> None:
        for dev in devs:
            if dev.pci_id is None:
                gpu = gpu_from_lspci_name(dev.description, dev.vendor == AMD_VENDOR, cat)
                gpu.slot = dev.slot
                gpu.evidence.append(source)
                gpus.append(gpu)
                continue
            same = [g for g in by_id.get(dev.pci_id, []) if g.slot == dev.slot or None in (g.slot, dev.slot)]
            if same:
                same[0].evidence.append(source)
                same[0].slot = same[0].slot or dev.slot
                continue
            gpu = gpu_from_pci(dev.pci_id, dev.slot, dev.description, cat)
            gpu.evidence.append(source)
            gpus.append(gpu)
            by_id.setdefault(dev.pci_id, []).append(gpu)

    notes: list[str] = []
    if lspci is not None:
        parsed = parse_lspci(lspci)
        add_pci(parsed, "lspci")
        notes += long_line_note(lspci, "lspci")
        if any(not _LSPCI_RE.match(line) for line in _lspci_records(lspci) if _LSPCI_PLAIN_RE.match(line)):
            notes.append("this is `lspci` output without -nn: vendor:device ids are missing or partial; "
                         "paste `lspci -nn` so every GPU is identified by its PCI id")
    if sysfs_root is not None:
        pci = [*(pci or []), *read_sysfs_pci(sysfs_root)]
        kfd = [*(kfd or []), *read_kfd(sysfs_root)]
    if pci:
        add_pci(pci, "sysfs")
    if kfd:
        for node in kfd:
            pci_id = f"{node.vendor_id:04x}:{node.device_id:04x}"
            kfd_gfx = gfx_from_target_version(node.gfx_target_version)
            targets = [g for g in by_id.get(pci_id, []) if "kfd" not in g.evidence]
            if not targets:
                add_pci([PciDevice(None, "0300", f"{node.vendor_id:04x}", f"{node.device_id:04x}")], "kfd")
                targets = by_id[pci_id][-1:]
            else:
                targets[0].evidence.append("kfd")
            gpu = targets[0]
            if gpu.gfx and gpu.gfx != kfd_gfx:
                gpu.diagnosis.append(f"KFD reports {kfd_gfx} for {pci_id} but the catalog says {gpu.gfx}")
            gpu.gfx = gpu.gfx or kfd_gfx
            gpu.uuid = gpu.uuid or uuid_from_unique_id(node.unique_id)

    runtime_agents = (parse_rocminfo(rocminfo) if rocminfo is not None else []) or (
        parse_agent_enumerator(agents) if agents is not None else []
    )
    _attach_agents(gpus, by_id, runtime_agents, cat)

    result = Identification(gpus=gpus, notes=notes)
    _diagnose_override(result, env or {}, cat)
    return result


def _attach_agents(gpus: list[Gpu], by_id: dict[str, list[Gpu]], agents: list[Agent], cat: Catalog) -> None:
    unmatched: list[Agent] = []
    for agent in agents:
        target = None
        if agent.chip_id:
            pci_id = f"{AMD_VENDOR}:{agent.chip_id}"
            candidates = [g for g in by_id.get(pci_id, []) if g.gfx_runtime is None]
            if candidates:
                target = candidates[0]
            elif not by_id.get(pci_id):
                target = gpu_from_pci(pci_id, None, agent.marketing_name or "", cat)
                gpus.append(target)
                by_id.setdefault(pci_id, []).append(target)
        if target is None:
            unmatched.append(agent)
            continue
        target.gfx_runtime = agent.name or None
        target.uuid = target.uuid or agent.uuid
        target.evidence.append(agent.source)
    # Agents without a Chip ID: pair them in order with AMD GPUs that have no runtime name yet.
    open_gpus = [g for g in gpus if g.role != "non-amd" and g.gfx_runtime is None]
    for agent in unmatched:
        if not agent.name:
            continue
        if open_gpus and (len(open_gpus) == 1 or _same_kind(open_gpus[0], agent, cat)):
            gpu = open_gpus.pop(0)
            gpu.gfx_runtime = agent.name
            gpu.uuid = gpu.uuid or agent.uuid
            gpu.evidence.append(agent.source)
        else:
            gpu = _gpu_from_gfx(agent.name, agent.marketing_name, cat)
            gpu.uuid = agent.uuid
            gpu.evidence.append(agent.source)
            gpus.append(gpu)


def _same_kind(gpu: Gpu, agent: Agent, cat: Catalog) -> bool:
    chip = cat.chip_for_gfx(agent.name)
    return chip is None or (gpu.role == "igpu") == chip.integrated


def _diagnose_override(result: Identification, env: dict[str, str], cat: Catalog) -> None:
    env_value = env.get("HSA_OVERRIDE_GFX_VERSION")
    if env_value:
        result.override, result.override_source = env_value.strip(), "environment"
        try:
            forced = gfx_from_version(env_value)
            result.notes.append(
                f"HSA_OVERRIDE_GFX_VERSION={env_value} is set: the runtime treats every GPU as {forced}"
            )
        except ValueError as exc:
            result.notes.append(f"HSA_OVERRIDE_GFX_VERSION={env_value!r} is invalid ({exc}); ROCm rejects it")
    for gpu in result.gpus:
        if not (gpu.gfx and gpu.gfx_runtime) or gpu.gfx == gpu.gfx_runtime:
            continue
        runtime_chip = cat.chip_for_gfx(gpu.gfx_runtime)
        text = (
            f"runtime reports {gpu.gfx_runtime} but the hardware ({gpu.pci_id or 'KFD'}) is {gpu.gfx}: "
            "an HSA_OVERRIDE_GFX_VERSION is in force"
        )
        hw_chip = cat.chip_for_gfx(gpu.gfx)
        if runtime_chip and hw_chip and runtime_chip.generic != hw_chip.generic:
            text += (
                f"; it crosses GPU generations ({hw_chip.family} -> {runtime_chip.family}), "
                "a known cause of 'Memory access fault by GPU node'"
            )
        gpu.diagnosis.append(text)
        if result.override is None:
            result.override_source = "inferred from the runtime's gfx name"
            result.override = _version_for_gfx(gpu.gfx_runtime)
    for gpu in result.gpus:
        if gpu.role == "non-amd":
            gpu.diagnosis.append("not an AMD GPU: set aside")
        elif gpu.role == "igpu":
            gpu.diagnosis.append("integrated GPU: set aside, not used as the compute GPU")


def _version_for_gfx(gfx: str) -> str | None:
    """'gfx1030' -> '10.3.0' (inverse of gfx_from_version for the usual 4-digit targets)."""
    match = re.fullmatch(r"gfx(\d{1,2})([0-9a-f])([0-9a-f])", gfx)
    if not match:
        return None
    return f"{int(match[1])}.{int(match[2], 16)}.{int(match[3], 16)}"
