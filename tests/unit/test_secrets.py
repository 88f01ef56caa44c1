"""Mirror credentials in the inventory (provision_repo_username / provision_repo_password): validated,
never echoed: not in a validation error, not in `hosts validate` (table or JSON)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provision.errors import InventoryError
from provision.inventory import spec_from_vars

SECRET = "Sup3r-s3cret-mirror-Pw"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "provision", *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def test_credentials_are_accepted_and_masked() -> None:
    spec = spec_from_vars("ws1", {"provision_repo_username": "lab-user", "provision_repo_password": SECRET})
    assert spec.repo_password is not None and spec.repo_password.get_secret_value() == SECRET
    assert SECRET not in json.dumps(spec.to_vars()) and SECRET not in repr(spec)


@pytest.mark.parametrize(("variables", "needle"), [
    ({"provision_repo_username": "lab", "provision_repo_password": SECRET + " x"}, "provision_repo_password"),
    ({"provision_repo_username": "lab", "provision_repo_password": SECRET + "\n"}, "provision_repo_password"),
    ({"provision_repo_password": SECRET}, "go together"),
    ({"provision_repo_username": "lab:x", "provision_repo_password": SECRET}, "provision_repo_username"),
])
def test_bad_credentials_are_refused_without_echoing_the_password(variables: dict, needle: str) -> None:
    with pytest.raises(InventoryError) as info:
        spec_from_vars("ws1", variables)
    assert needle in str(info.value)
    assert SECRET not in str(info.value)


def test_hosts_validate_never_shows_the_password(tmp_path: Path) -> None:
    inventory = tmp_path / "lab.yml"
    inventory.write_text(f"all:\n  hosts:\n    ws1:\n      ansible_host: 10.0.0.1\n"
                         f"      provision_repo_username: lab\n      provision_repo_password: {SECRET}\n")
    for args in ([], ["--json"]):
        result = run_cli("hosts", "validate", "--hosts", str(inventory), *args)
        assert result.returncode == 0, result.stdout + result.stderr
        assert SECRET not in result.stdout + result.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text(inventory.read_text().replace(SECRET, f"'{SECRET} with spaces'"))
    result = run_cli("hosts", "validate", "--hosts", str(bad))
    assert result.returncode == 2 and "provision_repo_password" in result.stdout + result.stderr
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize("url", ["provision_repo_base_url", "provision_wheel_index_url", "provision_key_url"])
def test_credentials_never_go_over_plain_http_even_when_http_is_allowed(tmp_path: Path, url: str) -> None:
    mirror = "https://mirror.lab.example/radeon"
    urls = {"provision_repo_base_url": mirror, "provision_key_url": f"{mirror}/rocm/rocm.gpg.key",
            "provision_wheel_index_url": f"{mirror}/rocm/manylinux/rocm-rel-7.0/"}
    urls[url] = urls[url].replace("https://", "http://")
    inventory = tmp_path / "lab.yml"
    lines = "".join(f"      {k}: {v}\n" for k, v in urls.items())
    inventory.write_text(f"all:\n  hosts:\n    ws1:\n      ansible_host: 10.0.0.1\n{lines}"
                         f"      provision_allow_insecure_http: true\n"
                         f"      provision_repo_username: lab\n      provision_repo_password: {SECRET}\n")
    result = run_cli("hosts", "validate", "--hosts", str(inventory))
    told = result.stdout + result.stderr
    assert result.returncode == 2 and "provision_repo_password" in told and f"({url})" in told, told
    assert "plain http://" in told and SECRET not in told
    # without credentials the same http URL is accepted, since provision_allow_insecure_http says so
    inventory.write_text(inventory.read_text().replace("      provision_repo_username: lab\n", "")
                         .replace(f"      provision_repo_password: {SECRET}\n", ""))
    assert run_cli("hosts", "validate", "--hosts", str(inventory)).returncode == 0
    # ... and a loopback mirror (an SSH tunnel, the container lab) may get them: nothing leaves the machine
    assert spec_from_vars("ws1", {"provision_repo_base_url": "http://127.0.0.1:8080", "provision_allow_insecure_http":
                                  True, "provision_repo_username": "lab", "provision_repo_password": SECRET})
