"""Where the lab keeps its state (PROVISION_LAB_DIR, default ~/.cache/rocm-provision/lab)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

ENV_LAB_DIR = "PROVISION_LAB_DIR"


def default_lab_dir() -> Path:
    env = os.environ.get(ENV_LAB_DIR)
    if env:
        return Path(env).expanduser().resolve()
    return (Path.home() / ".cache" / "rocm-provision" / "lab").resolve()


@dataclass(frozen=True)
class LabPaths:
    root: Path

    @property
    def lab_id(self) -> str:
        """Short id of this lab dir: container names and labels carry it, so two lab dirs never collide."""
        return hashlib.sha256(str(self.root).encode()).hexdigest()[:8]

    @property
    def state(self) -> Path:
        return self.root / "lab.json"

    @property
    def inventory(self) -> Path:
        return self.root / "lab.ini"

    @property
    def known_hosts(self) -> Path:
        return self.root / "ssh" / "known_hosts"

    @property
    def ssh_key(self) -> Path:
        return self.root / "ssh" / "id_ed25519"

    @property
    def containers_conf(self) -> Path:
        return self.root / "containers.conf"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def mirror(self) -> Path:
        return self.root / "mirror"

    @property
    def gnupg(self) -> Path:
        return self.root / "gnupg"

    @property
    def gnupg_rogue(self) -> Path:
        return self.root / "gnupg-rogue"

    @property
    def build(self) -> Path:
        return self.root / "build"

    @property
    def wheel_cache(self) -> Path:
        return self.root / "cache" / "wheels"

    @property
    def hosts(self) -> Path:
        return self.root / "hosts"

    @property
    def mirror_log(self) -> Path:
        return self.root / "mirror.log"

    @property
    def mirror_faults(self) -> Path:
        return self.root / "mirror-faults.json"
