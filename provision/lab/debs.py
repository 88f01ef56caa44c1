"""Tiny stand-in .deb packages (dpkg-deb) and signed apt repository indexes (Packages, Release)."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from provision.lab import proc
from provision.lab.gpg import Signer

MAINTAINER = "rocm-provision lab <lab@rocm-provision.invalid>"


@dataclass(frozen=True)
class FileEntry:
    content: str | bytes
    mode: int = 0o644


@dataclass
class DebSpec:
    name: str
    version: str
    depends: list[str] = field(default_factory=list)
    arch: str = "amd64"
    description: str = ""
    section: str = "devel"
    files: dict[str, FileEntry] = field(default_factory=dict)  # absolute path -> content
    symlinks: dict[str, str] = field(default_factory=dict)  # absolute path -> target
    conffiles: list[str] = field(default_factory=list)
    scripts: dict[str, str] = field(default_factory=dict)  # postinst/prerm/postrm -> shell body
    extra_control: dict[str, str] = field(default_factory=dict)

    @property
    def filename(self) -> str:
        version = self.version.split(":", 1)[-1]
        return f"{self.name}_{version}_{self.arch}.deb"

    def pool_dir(self) -> str:
        prefix = self.name[:4] if self.name.startswith("lib") else self.name[0]
        return f"pool/main/{prefix}/{self.name}"

    def control(self, installed_kib: int) -> dict[str, str]:
        fields = {
            "Package": self.name,
            "Version": self.version,
            "Architecture": self.arch,
            "Maintainer": MAINTAINER,
            "Installed-Size": str(installed_kib),
            "Section": self.section,
            "Priority": "optional",
        }
        if self.depends:
            fields["Depends"] = ", ".join(self.depends)
        fields.update(self.extra_control)
        summary = self.description or f"{self.name} (rocm-provision lab stand-in)"
        fields["Description"] = f"{summary}\n Small stand-in built by the rocm-provision lab; not AMD's package."
        return fields


def render_control(fields: dict[str, str]) -> str:
    return "".join(f"{key}: {value}\n" for key, value in fields.items())


@dataclass(frozen=True)
class BuiltDeb:
    spec: DebSpec
    path: Path  # absolute path of the .deb in the pool
    control: dict[str, str]


def build_deb(spec: DebSpec, repo_root: Path, dest: Path | None = None) -> BuiltDeb:
    """Build `spec` into repo_root/pool/... (or `dest`); reuse the file when it exists (same name = same build)."""
    out_dir = dest if dest is not None else repo_root / spec.pool_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / spec.filename
    with tempfile.TemporaryDirectory(prefix="lab-deb-") as tmp:
        staging = Path(tmp) / "root"
        debian = staging / "DEBIAN"
        debian.mkdir(parents=True)
        size = 0
        for path, entry in spec.files.items():
            target = staging / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            data = entry.content.encode() if isinstance(entry.content, str) else entry.content
            target.write_bytes(data)
            target.chmod(entry.mode)
            size += len(data)
        for path, link in spec.symlinks.items():
            target = staging / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(link)
        control = spec.control(max(1, size // 1024))
        (debian / "control").write_text(render_control(control))
        if spec.conffiles:
            (debian / "conffiles").write_text("".join(f"{c}\n" for c in spec.conffiles))
        for script, body in spec.scripts.items():
            script_path = debian / script
            script_path.write_text(f"#!/bin/sh\nset -e\n{body.strip()}\nexit 0\n")
            script_path.chmod(0o755)
        if not out.exists():
            dpkg_deb = proc.require_tool("dpkg-deb", "dpkg")
            proc.run([dpkg_deb, "--root-owner-group", "-Zgzip", "--build", str(staging), str(out)],
                     what=f"building the stand-in package {spec.filename}")
    return BuiltDeb(spec, out, control)


def _hashes(data: bytes) -> dict[str, str]:
    return {
        "MD5sum": hashlib.md5(data).hexdigest(),
        "SHA1": hashlib.sha1(data).hexdigest(),
        "SHA256": hashlib.sha256(data).hexdigest(),
    }


def packages_text(debs: list[BuiltDeb], repo_root: Path) -> str:
    stanzas = []
    for deb in sorted(debs, key=lambda d: (d.spec.name, d.spec.version)):
        data = deb.path.read_bytes()
        fields = dict(deb.control)
        description = fields.pop("Description")
        fields["Filename"] = str(deb.path.relative_to(repo_root))
        fields["Size"] = str(len(data))
        fields.update(_hashes(data))
        fields["Description"] = description
        stanzas.append(render_control(fields))
    return "\n".join(stanzas)


@dataclass(frozen=True)
class SuiteInfo:
    origin: str
    label: str
    suite: str
    archs: tuple[str, ...] = ("amd64",)
    component: str = "main"


def write_suite(repo_root: Path, info: SuiteInfo, debs: list[BuiltDeb], signer: Signer) -> Path:
    """Write dists/<suite>/ (Packages, Packages.gz per arch, Release, InRelease, Release.gpg)."""
    dist = repo_root / "dists" / info.suite
    if dist.exists():
        shutil.rmtree(dist)
    index_files: dict[str, bytes] = {}
    for arch in info.archs:
        wanted = [d for d in debs if d.spec.arch in (arch, "all")]
        text = packages_text(wanted, repo_root).encode()
        rel = f"{info.component}/binary-{arch}"
        index_files[f"{rel}/Packages"] = text
        index_files[f"{rel}/Packages.gz"] = gzip.compress(text, mtime=0)
    for rel, data in index_files.items():
        path = dist / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    date = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S UTC")
    lines = [
        f"Origin: {info.origin}",
        f"Label: {info.label}",
        f"Suite: {info.suite}",
        f"Codename: {info.suite}",
        f"Date: {date}",
        f"Architectures: {' '.join(info.archs)}",
        f"Components: {info.component}",
        "Description: rocm-provision lab mirror (stand-in packages, signed with the lab key)",
    ]
    for label, algo in (("MD5Sum", "md5"), ("SHA1", "sha1"), ("SHA256", "sha256")):
        lines.append(f"{label}:")
        for rel, data in sorted(index_files.items()):
            lines.append(f" {hashlib.new(algo, data).hexdigest()} {len(data):>16} {rel}")
    release = dist / "Release"
    release.write_text("\n".join(lines) + "\n")
    signer.sign_release(release)
    return dist
