"""Fixture for the role tests: a lab of its own (default <repo>/.lab/roles-test on 127.0.0.70..), brought up
once per session and taken down at the end, plus helpers to run the role playbooks and read their recap.

PROVISION_ROLES_LAB_DIR / PROVISION_ROLES_LAB_ADDRESS move it; PROVISION_ROLES_LAB_KEEP=1 leaves it up
(and reuses a lab that is already up there) for quicker reruns."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from provision.lab.lab import Lab
from tests.lab.conftest import LabShell

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
TIMINGS: list[str] = []


@dataclass
class Run:
    rc: int
    stats: dict[str, dict[str, int]]
    custom: dict[str, Any]
    out: str
    err: str
    seconds: float

    def changed(self, host: str) -> int:
        return self.stats.get(host, {}).get("changed", -1)

    def failed(self, host: str) -> int:
        s = self.stats.get(host, {})
        return s.get("failures", 0) + s.get("unreachable", 0)

    def messages(self, host: str) -> list[str]:
        """Every failure message for `host` (for assertions on what the user is told)."""
        doc = json.loads(self.out) if self.out.strip().startswith("{") else {}
        out = []
        for play in doc.get("plays", []):
            for task in play.get("tasks", []):
                res = task.get("hosts", {}).get(host, {})
                if res.get("failed"):
                    out.append(str(res.get("msg", "")))
        return out


@dataclass
class RolesLab(LabShell):
    lab: Lab
    inventory: Path
    addresses: dict[str, str] = field(default_factory=dict)

    def login_env(self, host: str) -> dict[str, str]:
        """The environment a login shell gets on `host` (bash -lc env), NUL-separated so odd values survive."""
        raw = self.ok(host, "bash -lc 'env -0' | base64 -w0")
        import base64

        pairs = base64.b64decode(raw).decode().split("\0")
        return dict(p.split("=", 1) for p in pairs if "=" in p)

    def playbook(self, playbook: str | Path, limit: str, *extra: str, check: bool = False,
                 extravars: dict[str, Any] | None = None, timeout: float = 900) -> Run:
        path = Path(playbook)
        if not path.is_absolute():
            path = (PLAYBOOKS / path) if (PLAYBOOKS / path).exists() else REPO / path
        # the checkout's ansible.cfg alone (as a user runs it): the rocm.provision collection through collections/
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   # tests/callback_plugins/lab_json.py: the run as one JSON document (ansible.posix's json callback
                   # is not in the lean install)
                   ANSIBLE_CALLBACK_PLUGINS=str(REPO / "tests" / "callback_plugins"),
                   ANSIBLE_STDOUT_CALLBACK="lab_json", ANSIBLE_SHOW_CUSTOM_STATS="1",
                   ANSIBLE_LOCAL_TEMP=str(self.lab.paths.root / "ansible-tmp"),
                   PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
        args = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(self.inventory), "-l", limit,
                str(path), *(["--check"] if check else []), *extra]
        if extravars:
            args += ["-e", json.dumps(extravars)]
        start = time.monotonic()
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, env=env, cwd=REPO)
        seconds = time.monotonic() - start
        TIMINGS.append(f"{path.name} -l {limit}{' --check' if check else ''}: {seconds:.1f} s (rc {done.returncode})")
        try:
            doc = json.loads(done.stdout)
        except json.JSONDecodeError:
            doc = {}
        return Run(done.returncode, doc.get("stats", {}), doc.get("global_custom_stats", {}), done.stdout,
                   done.stderr, seconds)

    def wheel_sha256(self) -> tuple[str, str]:
        """(version, sha256) of the torch wheel the lab mirror serves."""
        wheel = next((self.lab.paths.root / "mirror" / "rocm" / "manylinux" / "rocm-rel-7.0").glob("torch-*.whl"))
        version = wheel.name.split("-")[1]
        return version, hashlib.sha256(wheel.read_bytes()).hexdigest()


def _lab_dir() -> Path:
    return Path(os.environ.get("PROVISION_ROLES_LAB_DIR", str(REPO / ".lab" / "roles-test"))).resolve()


@pytest.fixture(scope="session")
def roles_lab() -> Iterator[RolesLab]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed: the role tests need the lab (scripts/setup as root)")
    keep = os.environ.get("PROVISION_ROLES_LAB_KEEP") == "1"
    lab = Lab(_lab_dir())
    if not keep:
        lab.down()
    start = time.monotonic()
    result = lab.up(hosts=4, first_address=os.environ.get("PROVISION_ROLES_LAB_ADDRESS", "127.0.0.70"))
    TIMINGS.append(f"lab up (4 hosts): {time.monotonic() - start:.1f} s")
    if not any((lab.paths.root / "mirror" / "rocm" / "manylinux" / "rocm-rel-7.0").glob("torch-*.whl")):
        pytest.skip("the lab mirror has no torch wheel "
                    "(/opt/wheels/torch-*+cpu-cp311-*.whl or $PROVISION_LAB_TORCH_WHEEL)")
    try:
        yield RolesLab(lab, result.inventory, {h.name: h.address for h in result.hosts})
    finally:
        if not keep:
            start = time.monotonic()
            lab.down()
            TIMINGS.append(f"lab down: {time.monotonic() - start:.1f} s")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section("role test timings")
        for line in TIMINGS:
            terminalreporter.write_line(line)
