"""Which GPU targets the host's PyTorch carries: read from the users' venv at preflight, or assumed from
what public wheels carry (provision/data/gpu_runtime.yaml) when no venv can be read, and said so."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from provision import datafiles

Source = Literal["venv", "dist-info", "assumed"]


@dataclass(frozen=True)
class TorchBuild:
    version: str | None  # "1.13.1+rocm5.2"; None when nothing is known
    targets: tuple[str, ...] | None  # gfx targets the build carries; None: unknown
    source: Source
    path: str | None = None  # the venv read
    note: str = ""  # how the targets were learned, for the report
    problems: list[str] = field(default_factory=list)

    @property
    def miopen_release(self) -> str | None:
        """The MIOpen release (major.minor) a ROCm wheel bundles, from its local version label."""
        label = (self.version or "").partition("+")[2]
        table: dict[str, str] = datafiles.load("gpu_runtime").get("bundled_miopen") or {}
        for prefix, release in table.items():
            if label.startswith(prefix):
                return str(release)
        return None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["targets"] = list(self.targets) if self.targets is not None else None
        data["miopen_release"] = self.miopen_release
        return data


def public_targets(version: str | None) -> tuple[tuple[str, ...], str] | None:
    """(targets, description) of the public wheel series a version's label belongs to, or None."""
    label = (version or "").partition("+")[2]
    for row in datafiles.load("gpu_runtime")["torch_builds"]:
        if label.startswith(row["label_prefix"]):
            return tuple(row["targets"]), str(row["description"])
    return None


def assumed_rocm5() -> TorchBuild:
    """A pasted box: no venv to read. Assume a public PyTorch ROCm 5.x wheel (the field report's 1.13.1+rocm5.2)."""
    row = next(r for r in datafiles.load("gpu_runtime")["torch_builds"] if r["label_prefix"] == "rocm5.")
    return TorchBuild(None, tuple(row["targets"]), "assumed",
                      note=f"no venv was read: assumed {row['description']}, which carry "
                           f"{', '.join(row['targets'])} only")


def from_probe(probe: dict[str, Any] | None) -> TorchBuild | None:
    """What rocm_venv_torch read on the host (None: the probe did not run)."""
    if not probe:
        return None
    path = probe.get("path")
    version = probe.get("version") or probe.get("dist_version")
    problems = [str(probe["error"])] if probe.get("error") else []
    arch = [a.split(":")[0] for a in probe.get("arch_list") or [] if str(a).startswith("gfx")]
    if probe.get("version") and arch:
        return TorchBuild(version, tuple(sorted(set(arch))), "venv", path,
                          note=f"read from {path} ({probe.get('arch_source') or 'torch'}, as {probe.get('run_as')})",
                          problems=problems)
    known = public_targets(version)
    if known:
        targets, description = known
        how = "its torch did not report its targets" if probe.get("version") else "its torch could not be run"
        return TorchBuild(version, targets, "dist-info", path,
                          note=f"{path}: torch {version}; {how}, so the targets of {description} are assumed",
                          problems=problems)
    return TorchBuild(version, None, "dist-info" if version else "assumed", path,
                      note=f"{path or 'no venv'}: the GPU targets of torch {version or '?'} are unknown",
                      problems=problems)
