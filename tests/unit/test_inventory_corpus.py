"""The bad-inventory corpus: every case fails validation with exit code 2 and a message that names
the file, host, variable, bad value and what is allowed. Nothing is contacted: these hosts do not exist."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

CORPUS = Path(__file__).parent.parent / "fixtures" / "bad_inventories"
CASES = yaml.safe_load((CORPUS / "cases.yaml").read_text())


def test_corpus_has_at_least_twenty_cases() -> None:
    assert len(CASES) >= 20


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "provision", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=60)


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_bad_inventory_is_refused_clearly(case: dict) -> None:
    result = run_cli("hosts", "validate", "--hosts", str(CORPUS / case["file"]))
    text = result.stdout + result.stderr
    assert result.returncode == 2, text
    assert "Traceback" not in text
    assert case["file"] in text
    for needle in case["expect"]:
        assert needle in text, f"{needle!r} missing from:\n{text}"


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    inv = tmp_path / "lab.ini"
    inv.write_text("[lab]\nws1 ansible_host=10.0.0.1 provision_mode=yolo\n"
                   "ws2 ansible_host=10.0.0.2 provision_venv=rel/path provision_allow_reboot=maybe\n")
    result = run_cli("hosts", "validate", "--hosts", str(inv))
    assert result.returncode == 2
    assert "3 problems" in result.stderr
    for needle in ("host ws1", "provision_mode", "host ws2", "provision_venv", "provision_allow_reboot"):
        assert needle in result.stderr


def test_host_vars_file_is_named_as_the_origin(tmp_path: Path) -> None:
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "ws1.yml").write_text("provision_venv: not/absolute\n")
    inv = tmp_path / "lab.ini"
    inv.write_text("[lab]\nws1 ansible_host=10.0.0.1\n")
    result = run_cli("hosts", "validate", "--hosts", str(inv))
    assert result.returncode == 2
    assert "host_vars/ws1.yml" in result.stderr
