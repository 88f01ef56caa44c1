"""podman with the settings these machines need, from a containers.conf the lab writes itself."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from provision.lab import proc
from provision.lab.errors import LabError

CONTAINERS_CONF = """\
# Written by `provision lab`: podman settings that work on hosts without crun/cgroup v2 and without
# CAP_SYS_RESOURCE (see docs/lab.md). Used through CONTAINERS_CONF for every podman call of the lab.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

LABEL_LAB = "io.rocm-provision.lab"
LABEL_HOST = "io.rocm-provision.lab.host"


class Podman:
    def __init__(self, conf_path: Path) -> None:
        self.binary = proc.require_tool("podman", "podman runc")
        proc.require_tool("runc", "runc")
        self.conf_path = conf_path
        conf_path.parent.mkdir(parents=True, exist_ok=True)
        if not conf_path.exists() or conf_path.read_text() != CONTAINERS_CONF:
            conf_path.write_text(CONTAINERS_CONF)
        self.env = dict(os.environ, CONTAINERS_CONF=str(conf_path))

    def run(
        self, args: Sequence[str | Path], *, what: str, check: bool = True, timeout: float | None = 600
    ) -> subprocess.CompletedProcess[str]:
        return proc.run([self.binary, *args], what=what, env=self.env, check=check, timeout=timeout)

    def image_exists(self, ref: str) -> bool:
        return self.run(["image", "exists", ref], what="podman image exists", check=False).returncode == 0

    def containers(self, lab_id: str) -> list[dict[str, object]]:
        out = self.run(
            ["ps", "-a", "--filter", f"label={LABEL_LAB}={lab_id}", "--format", "json"],
            what="listing the lab's containers",
        ).stdout
        data = json.loads(out or "[]")
        if not isinstance(data, list):
            raise LabError(f"podman ps returned unexpected JSON: {out[:200]}")
        return data

    def exec(
        self, container: str, args: Sequence[str], *, what: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return self.run(["exec", container, *args], what=what, check=check, timeout=timeout)
