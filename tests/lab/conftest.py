"""The lab fixture: one lab for the whole test session, brought up once and torn down at the end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from provision.lab.lab import Lab, UpResult

REPO = Path(__file__).resolve().parents[2]
# Test hosts live on their own addresses, away from a user's default lab (127.0.0.2..); the session lab takes
# FIRST_ADDRESS and the next 9 (modules add hosts from FIRST_ADDRESS + 10).
FIRST_ADDRESS = os.environ.get("PROVISION_LAB_TEST_FIRST_ADDRESS", "127.0.0.20")
TIMINGS: list[str] = []


class LabShell:
    """Commands on lab hosts over the lab's own SSH key and known_hosts (needs `lab` and `addresses`)."""

    lab: Lab
    addresses: dict[str, str]

    def ssh(self, host: str, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        paths = self.lab.paths
        args = ["ssh", "-p", "2222", "-i", str(paths.ssh_key), "-o", f"UserKnownHostsFile={paths.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"root@{self.addresses[host]}", command]
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)

    def ok(self, host: str, command: str, timeout: float = 120) -> str:
        done = self.ssh(host, command, timeout)
        assert done.returncode == 0, f"{host}: `{command}` failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        return done.stdout


@dataclass
class LabHandle(LabShell):
    lab: Lab
    result: UpResult
    addresses: dict[str, str] = field(default_factory=dict)

    @property
    def inventory(self) -> Path:
        return self.result.inventory

    @property
    def base_url(self) -> str:
        return self.result.base_url

    def ansible(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        ansible = Path(sys.executable).with_name("ansible")
        env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_PIPELINING="1", ANSIBLE_FORKS="8",
                   ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_LOCAL_TEMP=str(self.lab.paths.root / "ansible-tmp"))
        return subprocess.run([str(ansible), "-i", str(self.inventory), *args], capture_output=True, text=True,
                              timeout=timeout, check=False, env=env)

    def before_state(self, host: str) -> dict[str, object]:
        data = json.loads(self.ok(host, "cat /opt/provision-lab/before-state.json"))
        assert isinstance(data, dict)
        return data


def lab_dir() -> Path:
    return Path(os.environ.get("PROVISION_LAB_TEST_DIR", str(REPO / ".lab" / "test"))).resolve()


def fresh_fleet(directory: Path, hosts: Sequence[tuple[str, str, str]], what: str) -> tuple[Lab, UpResult]:
    """A lab of its own for one test module, in `directory`: (name, template, address) hosts brought up from
    nothing but the cached base image, after whatever an earlier run left there is taken down. Skips without
    podman; the time taken goes to the session's lab timings."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed: the lab tests need it (scripts/setup)")
    lab = Lab(directory)
    lab.down()
    began = time.monotonic()
    up = lab.add(list(hosts))
    TIMINGS.append(f"{what} up, {len(hosts)} hosts: {time.monotonic() - began:.1f} s")
    return lab, up


@pytest.fixture(scope="session")
def lab() -> Iterator[LabHandle]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed: the lab tests need it (run .ci/setup-lab.sh as root)")
    handle_lab = Lab(lab_dir())
    handle_lab.down()  # start from nothing but the cached base image and wheels
    start = time.monotonic()
    result = handle_lab.up(hosts=4, first_address=FIRST_ADDRESS)
    seconds = time.monotonic() - start
    TIMINGS.append(f"lab up, 4 hosts from the cached base image: {seconds:.1f} s "
                   f"({', '.join(f'{k} {v:.1f} s' for k, v in result.seconds.items())})")
    handle = LabHandle(handle_lab, result, {h.name: h.address for h in result.hosts})
    try:
        yield handle
    finally:
        start = time.monotonic()
        handle_lab.down()
        TIMINGS.append(f"lab down: {time.monotonic() - start:.1f} s")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section("lab timings")
        for line in TIMINGS:
            terminalreporter.write_line(line)
