"""User-controlled text is printed as typed (never read as Rich markup or emoji codes), and URL credentials
never leave the program. Run through the installed console script, as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from provision import redact

PROVISION = shutil.which("provision") or str(Path(__file__).parents[2] / ".venv" / "bin" / "provision")


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="300", NO_COLOR="1")
    return subprocess.run([PROVISION, *args], capture_output=True, text=True, input=stdin, env=env, timeout=60,
                          check=False)


@pytest.mark.parametrize("hostile", ["[bold]x[/bold]", "[/x]", ":end: :smile:", "[link=file:///etc]y[/link]"])
def test_markup_in_a_paste_is_printed_literally(tmp_path: Path, hostile: str) -> None:
    os_release = tmp_path / "os-release"
    os_release.write_text(f'ID=ubuntu\nVERSION_ID="24.04"\nPRETTY_NAME="{hostile}"\n')
    lspci = tmp_path / f"lspci{hostile.replace('/', '_')}.txt"
    lspci.write_text("03:00.0 VGA compatible controller [0300]: Advanced Micro Devices, Inc. [AMD/ATI] "
                     f"{hostile} [1002:744c] (rev c8)\n")
    result = run("gpus", "identify", "--lspci", str(lspci), "--os-release", str(os_release))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert hostile in result.stdout  # as typed: not styled away, no emoji substituted


def test_markup_in_a_missing_file_name_is_printed_literally(tmp_path: Path) -> None:
    name = str(tmp_path / "[red]no[/red] :end:.txt")
    result = run("gpus", "identify", "--lspci", name)
    assert result.returncode == 2 and name in result.stderr and "Traceback" not in result.stderr


def test_url_credentials_are_masked() -> None:
    assert redact.text("GET https://lab:s3cr3t-pw@mirror.example/rocm failed") == \
        "GET https://lab:***@mirror.example/rocm failed"
    assert redact.text("http://tokenonly@host/x") == "http://***@host/x"
    assert redact.deep({"m": ["ftp://u:p@h/"]}) == {"m": ["ftp://u:***@h/"]}
    redact.remember("hunter2-long")
    assert redact.text("password hunter2-long was refused") == "password *** was refused"


def test_inventory_with_url_password_never_echoes_it(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("ws1 ansible_host=127.0.0.5 provision_repo_base_url=https://lab:Sup3rSecret@mirror.example\n")
    result = run("hosts", "validate", "--hosts", str(inventory))
    assert result.returncode == 2
    assert "Sup3rSecret" not in result.stdout + result.stderr
    assert "provision_repo_base_url" in result.stderr and "***" in result.stderr
    as_json = run("hosts", "validate", "--hosts", str(inventory), "--json")
    assert "Sup3rSecret" not in as_json.stdout + as_json.stderr


def test_reports_never_hold_url_credentials(tmp_path: Path) -> None:
    """A failing task's message that quotes a URL with credentials (as apt's or pip's errors do)."""
    from provision import report
    from tests.unit.test_report import sample

    doc = sample()
    doc["hosts"][1]["reason"] = "E: Failed to fetch https://labuser:Hunter2-pw@mirror.example/rocm/apt/7.0 401"
    doc["hosts"][1]["phases"][1]["message"] = doc["hosts"][1]["reason"]
    for path in report.write(doc, tmp_path):
        text = path.read_text()
        assert "Hunter2-pw" not in text, path.name
        assert "labuser:***@mirror.example" in text, path.name
