"""Run every Molecule scenario (`molecule test`) against the container lab, so `./scripts/test` covers them.

Role scenarios run from their role's directory, top-level ones from the repository root. All share one lab
dir ($PROVISION_MOLECULE_LAB_DIR, default <repo>/.lab/molecule): one cached base image and one mirror, each
scenario on its own loopback addresses (127.0.0.50-69). The lab is taken down at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DURATIONS: list[str] = []

SCENARIOS = [
    pytest.param(REPO / "roles" / "rocm_preflight", "default", id="rocm_preflight/default"),
    pytest.param(REPO / "roles" / "rocm_remove", "default", id="rocm_remove/default"),
    pytest.param(REPO / "roles" / "rocm_install", "default", id="rocm_install/default"),
    pytest.param(REPO / "roles" / "torch_venv", "default", id="torch_venv/default"),
    pytest.param(REPO / "roles" / "fallback_profile", "default", id="fallback_profile/default"),
    pytest.param(REPO / "roles" / "conv_verify", "default", id="conv_verify/default"),
    pytest.param(REPO, "upgrade-52-to-70", id="upgrade-52-to-70"),
    pytest.param(REPO, "fallback-gfx1010", id="fallback-gfx1010"),
    pytest.param(REPO, "fresh-workstation", id="fresh-workstation"),
]

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def lab_dir() -> Path:
    return Path(os.environ.get("PROVISION_MOLECULE_LAB_DIR") or REPO / ".lab" / "molecule").resolve()


def _env() -> dict[str, str]:
    # molecule runs ansible-playbook, ansible-config, ... from PATH: the venv's first.
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                PROVISION_MOLECULE_LAB_DIR=str(lab_dir()), ANSIBLE_NOCOLOR="1", NO_COLOR="1", PY_COLORS="0",
                ANSIBLE_FORCE_COLOR="0")


@pytest.fixture(scope="module")
def molecule_lab() -> Iterator[Path]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed: the Molecule scenarios need the container lab (scripts/setup)")
    if not (BIN / "molecule").exists():
        pytest.skip("molecule is not installed in this venv (pip install -e '.[dev]')")
    yield lab_dir()
    subprocess.run([sys.executable, "-m", "provision", "lab", "down", "--lab-dir", str(lab_dir())],
                   cwd=REPO, env=_env(), capture_output=True, text=True, check=False, timeout=300)


@pytest.mark.parametrize(("project", "scenario"), SCENARIOS)
def test_molecule_scenario(molecule_lab: Path, project: Path, scenario: str) -> None:
    start = time.monotonic()
    done = subprocess.run([str(BIN / "molecule"), "test", "-s", scenario], cwd=project, env=_env(),
                          capture_output=True, text=True, check=False, timeout=900)
    seconds = time.monotonic() - start
    DURATIONS.append(f"molecule test -s {scenario} ({project.relative_to(REPO) or '.'}): {seconds:.0f} s"
                     f"{'' if done.returncode == 0 else ' FAILED'}")
    assert done.returncode == 0, f"molecule test -s {scenario} failed:\n{done.stdout[-12000:]}\n{done.stderr[-6000:]}"
