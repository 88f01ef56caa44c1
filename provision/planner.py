"""The planner: a pure function from what is known of a host to what will be done to it.

Plans: `upgrade` (ROCm 7.0 + PyTorch 2.8.0), `upgrade-with-override` (the same, with an
HSA_OVERRIDE_GFX_VERSION inside the GPU's own generation), `fallback` (keep the current stack,
apply the MIOpen workaround profile), `blocked` (nothing is changed; the reason says what to do),
and `undecided` while the facts that decide it have not been gathered yet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from provision import datafiles, pins
from provision.catalog import catalog, gfx_from_version
from provision.identify import Gpu, Identification
from provision.specs import HostSpec
from provision.torchbuild import TorchBuild, assumed_rocm5

Action = Literal["upgrade", "upgrade-with-override", "fallback", "blocked", "undecided"]


@dataclass(frozen=True)
class OsFacts:
    id: str  # /etc/os-release ID, e.g. "ubuntu"
    version_id: str  # e.g. "24.04"
    codename: str | None = None
    pretty_name: str | None = None

    @property
    def key(self) -> str:
        """'ubuntu-24.04', 'debian-12', 'rhel-9.6': the ids the support tables use."""
        version = self.version_id
        if self.id == "debian":
            version = version.split(".")[0]
        return f"{self.id}-{version}"


@dataclass(frozen=True)
class RocmState:
    version: str | None = None  # "5.2.0", None when no ROCm is installed
    install_method: str | None = None  # "amdgpu-install" | "apt" | None
    env_overrides: dict[str, str] = field(default_factory=dict)  # HSA_* found in profile.d / environment
    gathered: bool = False  # True once preflight looked; False means "not known yet", not "no ROCm"


@dataclass
class Plan:
    action: Action
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # to set (fallback profile / override)
    env_remove: list[str] = field(default_factory=list)  # to remove from the host's profile
    steps: list[str] = field(default_factory=list)
    # fallback: the workaround search scheduled on the host ({time_limit_s, miopen_release, ...}); None otherwise
    search: dict | None = None
    torch: dict | None = None  # fallback: the users' torch build the override decision rests on

    def to_dict(self) -> dict:
        return asdict(self)


def fallback_profile() -> dict[str, str]:
    return dict(datafiles.load("fallback")["profiles"]["default"]["env"])


def plan_host(
    spec: HostSpec,
    ident: Identification | None = None,
    os_facts: OsFacts | None = None,
    rocm: RocmState | None = None,
    torch: TorchBuild | None = None,
) -> Plan:
    """Decide one host's plan. Pure: no I/O beyond the read-only data files.

    `torch` is the users' PyTorch build (read from their venv at preflight); None on a pasted box, where the
    fallback plan assumes a public PyTorch ROCm 5.x wheel and says so."""
    plan = _plan_host(spec, ident, os_facts, rocm, torch)
    if ident is not None and plan.action not in ("blocked", "undecided"):
        plan = _hide_integrated_gpus(plan, ident)
    elif ident is not None and plan.action == "blocked":
        # say now what the iGPU will need once the other reason is resolved
        unblocked = _hide_integrated_gpus(Plan("upgrade"), ident)
        plan.warnings = _dedupe([*plan.warnings, *(f"also: {r}" for r in unblocked.reasons)])
    return plan


def _plan_host(
    spec: HostSpec,
    ident: Identification | None = None,
    os_facts: OsFacts | None = None,
    rocm: RocmState | None = None,
    torch: TorchBuild | None = None,
) -> Plan:
    rocm = rocm or RocmState()
    if spec.mode == "fallback":
        return _fallback(spec, ident, rocm, ["provision_mode is fallback: the host keeps its ROCm stack"], torch)
    if ident is None:
        return Plan("undecided", reasons=["GPUs not gathered yet: the plan is decided at preflight"]
                    + ([f"expected GPUs: {', '.join(spec.expected_gpus)}"] if spec.expected_gpus else []))

    compute = ident.compute
    if not compute:
        aside = ", ".join(f"{g.name} ({g.pci_id})" for g in ident.set_aside) or "none"
        return Plan("blocked", reasons=[f"no AMD compute GPU found (set aside: {aside})"])
    missing = [p for p in spec.expected_gpus if p not in {g.pci_id for g in compute}]
    if missing:
        found = ", ".join(g.pci_id or g.gfx_runtime or "?" for g in compute)
        return Plan("blocked", reasons=[f"expected GPUs {', '.join(missing)} not found (found: {found}); "
                                        "is this the right host?"])
    unknown = [g for g in compute if g.role == "unknown-amd"]
    if unknown:
        return Plan("blocked", reasons=[f"{g.name} ({g.pci_id}) is not in the GPU catalog, so ROCm 7.0 support "
                                        "cannot be judged; set provision_mode: fallback to keep its ROCm stack "
                                        "with the MIOpen workaround profile (an upgrade cannot be planned for a "
                                        "GPU whose gfx target is unknown)"
                                        for g in unknown])

    warnings: list[str] = []
    reasons: list[str] = []
    overrides: set[str] = set()
    cannot_run: list[Gpu] = []
    for gpu in compute:
        label = f"{gpu.name} ({gpu.pci_id or gpu.gfx_runtime}, {gpu.gfx or gpu.gfx_runtime})"
        if gpu.rocm70 == "supported":
            reasons.append(f"{label} is supported by ROCm 7.0")
        elif gpu.rocm70 == "same-isa-unofficial":
            reasons.append(f"{label} has the same ISA as a supported GPU")
            warnings.append(f"{label} is not on AMD's ROCm 7.0 support list (same ISA as a supported part)")
        elif gpu.override_gfx_version:
            overrides.add(gpu.override_gfx_version)
            reasons.append(f"{label} is not supported by ROCm 7.0; it runs as "
                           f"{gfx_from_version(gpu.override_gfx_version)} code (same generation)")
            warnings.append("HSA_OVERRIDE_GFX_VERSION is a debugging aid per AMD, not an official workaround")
        else:
            cannot_run.append(gpu)

    os_block = _os_problem(spec, os_facts, compute, warnings)
    if os_facts is None:
        needs = sorted({o for g in compute for o in (g.supported_os or _sibling_os(g))})
        if needs:
            reasons.append(f"needs one of {', '.join(needs)} (the OS is checked at preflight)")
    if cannot_run or os_block:
        why = [f"{g.name} ({g.pci_id}, {g.gfx}) is not supported by ROCm 7.0 or the PyTorch 2.8.0 ROCm wheels"
               for g in cannot_run] + ([os_block] if os_block else [])
        if spec.mode == "upgrade":
            return Plan("blocked", reasons=[*why, "provision_mode is upgrade, so the host is left as it is"])
        if os_block and not cannot_run and _os_supported(os_facts):
            return Plan("blocked", reasons=[os_block], warnings=warnings)
        return _fallback(spec, ident, rocm, why, torch)

    if len(overrides) > 1:
        return Plan("blocked", reasons=[*reasons, f"GPUs need different overrides ({', '.join(sorted(overrides))}) "
                                        "but HSA_OVERRIDE_GFX_VERSION applies to every GPU of a process"])
    if overrides and any(not g.override_gfx_version for g in compute):
        return Plan("blocked", reasons=[*reasons, "one GPU needs HSA_OVERRIDE_GFX_VERSION and another must not "
                                        "have it; it applies to every GPU of a process"])

    env: dict[str, str] = {}
    env_remove = _stale_overrides(rocm, ident)
    action: Action = "upgrade"
    if overrides:
        action = "upgrade-with-override"
        env["HSA_OVERRIDE_GFX_VERSION"] = overrides.pop()
        env_remove = [v for v in env_remove if v != "HSA_OVERRIDE_GFX_VERSION"]
    if rocm.version:
        reasons.append(f"ROCm {rocm.version} ({rocm.install_method or 'unknown method'}) will be removed first")
    steps = ["preflight", *(["remove"] if rocm.version else []), "driver", "reboot" if spec.allow_reboot else
             "reboot (not allowed: pending)", "stack", "torch", "verify"]
    if not spec.allow_reboot:
        warnings.append("provision_allow_reboot is false: the new amdgpu driver loads only after a manual reboot")
    return Plan(action, reasons=reasons, warnings=_dedupe(warnings), env=env, env_remove=env_remove, steps=steps)


def _hide_integrated_gpus(plan: Plan, ident: Identification) -> Plan:
    """An iGPU beside a discrete GPU: the ROCm runtime enumerates both (AMD tells users to disable the iGPU in
    the BIOS). Hidden from every ROCm process with ROCR_VISIBLE_DEVICES listing the discrete GPUs by UUID when
    each has one; blocked with the BIOS advice when one has none (an index may change order, so it is never
    used). Sources: rocm70-install.md "Integrated GPUs"; ROCm/ROCm#4390 (Granite Ridge iGPU as gfx1036)."""
    igpus = [g for g in ident.gpus if g.role == "igpu"]
    compute = ident.compute
    if not igpus or not compute:
        return plan
    names = ", ".join(f"{g.name} ({g.pci_id or g.gfx_runtime}, {g.gfx or g.gfx_runtime})" for g in igpus)
    override = plan.env.get("HSA_OVERRIDE_GFX_VERSION")
    override_note = (f"; HSA_OVERRIDE_GFX_VERSION={override} applies to every GPU the runtime sees, the iGPU "
                     "included" if override else "")
    missing = [g for g in compute if not g.uuid]
    if missing:
        lacking = ", ".join(f"{g.name} ({g.pci_id or g.gfx_runtime})" for g in missing)
        return Plan("blocked", reasons=[
            f"the integrated GPU {names} sits beside the discrete GPU(s) and the ROCm runtime enumerates both "
            f"(AMD: the runtime may crash even when told to omit the iGPU){override_note}; it cannot be hidden "
            f"with ROCR_VISIBLE_DEVICES because {lacking} has no unique id (rocminfo shows Uuid GPU-XX), and a "
            "device index may change order between boots; disable the integrated GPU in the BIOS/UEFI setup "
            "(AMD's advice), then run again",
            *plan.reasons], warnings=plan.warnings)
    visible = ",".join(g.uuid for g in compute if g.uuid)
    env = {**plan.env, "ROCR_VISIBLE_DEVICES": visible}
    reasons = [*plan.reasons,
               f"the integrated GPU {names} is hidden from ROCm by ROCR_VISIBLE_DEVICES={visible} in the host's "
               f"profile (the discrete GPU(s) by UUID): the runtime would otherwise enumerate it too{override_note}"]
    warnings = [*plan.warnings,
                f"AMD's advice for a discrete GPU beside an integrated one is to disable the integrated GPU in the "
                f"BIOS/UEFI setup; ROCR_VISIBLE_DEVICES hides {names} from ROCm processes that read the profile only"]
    env_remove = [v for v in plan.env_remove if v != "ROCR_VISIBLE_DEVICES"]
    return Plan(plan.action, reasons=reasons, warnings=_dedupe(warnings), env=env, env_remove=env_remove,
                steps=plan.steps)


def _os_supported(os_facts: OsFacts | None) -> bool:
    return os_facts is not None and os_facts.key in pins.supported_os()


def _os_problem(spec: HostSpec, os_facts: OsFacts | None, compute: list[Gpu], warnings: list[str]) -> str | None:
    if os_facts is None:
        return None
    table = pins.supported_os()
    row = table.get(os_facts.key)
    if row is None:
        return f"{os_facts.pretty_name or os_facts.key} is not an OS ROCm 7.0 installs on"
    if row.get("implemented") is False:
        return f"{os_facts.key} is supported by ROCm 7.0 but this tool's roles implement Ubuntu and Debian only so far"
    for gpu in compute:
        allowed = gpu.supported_os or _sibling_os(gpu)
        if allowed and os_facts.key not in allowed:
            text = (f"AMD supports {gpu.name} with ROCm 7.0 only on {', '.join(allowed)}; "
                    f"{os_facts.key} is not among them")
            if os_facts.key == "debian-12":
                text += " (Debian 12 is an Instinct-only OS for ROCm 7.0)"
            if spec.allow_unsupported_os:
                warnings.append(text + "; going ahead because provision_allow_unsupported_os is true")
                continue
            return text + "; set provision_allow_unsupported_os: true to upgrade anyway, or provision_mode: fallback"
    return None


def _sibling_os(gpu: Gpu) -> list[str]:
    """OS list of the supported parts of the same chip, for same-ISA and override GPUs."""
    siblings = [d for d in catalog().devices() if d.chip.name == gpu.chip and d.rocm70 == "supported"]
    if not siblings and gpu.override_gfx_version:
        target = catalog().chip_for_gfx(gfx_from_version(gpu.override_gfx_version))
        siblings = [d for d in catalog().devices() if target and d.chip == target and d.rocm70 == "supported"]
    out: list[str] = []
    for dev in siblings:
        out += [o for o in dev.supported_os if o not in out]
    return out


def _stale_overrides(rocm: RocmState, ident: Identification | None) -> list[str]:
    """HSA_OVERRIDE_GFX_VERSION set on the host that crosses the GPU's generation: to be removed."""
    value = rocm.env_overrides.get("HSA_OVERRIDE_GFX_VERSION") or (ident.override if ident else None)
    if not value or ident is None:
        return []
    try:
        forced = catalog().chip_for_gfx(gfx_from_version(value))
    except ValueError:
        return ["HSA_OVERRIDE_GFX_VERSION"]
    for gpu in ident.compute:
        hw = catalog().chip_for_gfx(gpu.gfx) if gpu.gfx else None
        if hw and forced and hw.generic != forced.generic:
            return ["HSA_OVERRIDE_GFX_VERSION"]
    return []


def _fallback(spec: HostSpec, ident: Identification | None, rocm: RocmState, reasons: list[str],
              torch: TorchBuild | None = None) -> Plan:
    env = fallback_profile()
    env.update(spec.fallback_env)
    build = torch if torch is not None else assumed_rocm5()
    warnings: list[str] = [f"torch build: {build.note}"] if build.source != "venv" else []
    warnings += [f"reading the users' torch: {p}" for p in build.problems]
    env_remove, why = _override_decision(rocm, ident, build)
    reasons = [*reasons, *why]
    if env_remove:
        env.pop("HSA_OVERRIDE_GFX_VERSION", None)
    if rocm.gathered and rocm.version is None:
        warnings.append("no ROCm installation was found; the profile only helps once a ROCm stack is present")
    from provision.envcatalog import env_catalog

    release = build.miopen_release or env_catalog().miopen_release(rocm.version)
    dropped = env_catalog().not_read_by(list(env), release)
    for name in dropped:
        env.pop(name)
        warnings.append(f"{name} is not read by MIOpen {release} (the host's release): left out of the profile")
    search = {"time_limit_s": spec.verify_search_time_limit, "miopen_release": release,
              "when": "the verification with the starting profile has failing, crashing or hanging cases"}
    reasons.append("starting profile: " + (" ".join(f"{k}={v}" for k, v in env.items()) or "none")
                   + "; if the verification fails, the host searches for the narrowest MIOpen switches "
                   f"(MIOpen {release or 'release unknown: names every catalogued release reads'}), writes them "
                   "into the profile and verifies again")
    return Plan("fallback", reasons=reasons, warnings=warnings, env=env, env_remove=env_remove,
                steps=["preflight", "fallback", "verify", "search (if needed)", "verify"], search=search,
                torch=build.to_dict())


def _override_decision(rocm: RocmState, ident: Identification | None, build: TorchBuild) -> tuple[list[str], list[str]]:
    """(names to remove, reasons) for the host's HSA_OVERRIDE_GFX_VERSION, from what its torch carries."""
    value = rocm.env_overrides.get("HSA_OVERRIDE_GFX_VERSION") or (ident.override if ident else None)
    if not value or ident is None:
        return [], []
    try:
        forced = gfx_from_version(value)
    except ValueError:
        return ["HSA_OVERRIDE_GFX_VERSION"], [f"HSA_OVERRIDE_GFX_VERSION={value} is not a valid gfx version and "
                                              "will be removed"]
    targets = set(build.targets or ())
    torch_text = f"torch {build.version}" if build.version else "the assumed torch build"
    hardware = sorted({g.gfx for g in ident.compute if g.gfx})
    if build.targets is not None and hardware and not set(hardware) <= targets and forced in targets:
        missing = ", ".join(h for h in hardware if h not in targets)
        return [], [f"HSA_OVERRIDE_GFX_VERSION={value} is kept: {torch_text} carries no {missing} code "
                    f"(it carries {', '.join(sorted(targets))}); the override makes it load {forced} code, without "
                    "it every GPU kernel fails ('invalid device function')"]
    if build.targets is not None and hardware and set(hardware) <= targets:
        if _stale_overrides(rocm, ident):
            return ["HSA_OVERRIDE_GFX_VERSION"], [
                f"HSA_OVERRIDE_GFX_VERSION={value} will be removed: {torch_text} carries {', '.join(hardware)} code "
                "itself, and the override crosses GPU generations"]
        return [], [f"HSA_OVERRIDE_GFX_VERSION={value} is kept: it stays within the GPU's generation"]
    if _stale_overrides(rocm, ident):
        return [], [f"HSA_OVERRIDE_GFX_VERSION={value} is kept although it crosses GPU generations: what "
                    f"{torch_text} carries is not known, and removing an override the venv needs stops every GPU "
                    "kernel; the verification shows whether it works"]
    return [], []


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
