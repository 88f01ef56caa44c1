"""Lab pieces that need no podman: host specs, inventory, the rocminfo stand-in, the mirror server, CLI errors."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from provision.lab import proc, server
from provision.lab.cli import app
from provision.lab.errors import LabError, LabUsageError
from provision.lab.hosts import default_hosts
from provision.lab.inventory import InventoryInput, render

GUEST = Path(proc.__file__).with_name("guest")


def test_default_hosts_cycle_templates_on_consecutive_loopback_addresses() -> None:
    specs = default_hosts(6, "127.0.0.2")
    assert [s.name for s in specs] == ["ws-navi10", "ws-w6800-ubuntu2404-sim", "ws-7900xtx", "ws-mi210",
                                       "ws-navi10-2", "ws-w6800-ubuntu2404-sim-2"]
    assert [s.address for s in specs] == [f"127.0.0.{n}" for n in range(2, 8)]
    assert {s.model.pci_id for spec in specs for s in spec.gpus} >= {"1002:731f", "1002:73a3", "1002:744c",
                                                                     "1002:740f", "1002:164e"}


@pytest.mark.parametrize(("count", "first"), [(0, "127.0.0.2"), (33, "127.0.0.2"), (2, "10.0.0.1"),
                                              (1, "127.0.0.1"), (1, "not-an-ip")])
def test_default_hosts_refuse_bad_input(count: int, first: str) -> None:
    with pytest.raises(LabUsageError):
        default_hosts(count, first)


def test_inventory_parses_to_the_users_vocabulary(tmp_path: Path) -> None:
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    specs = default_hosts(4, "127.0.0.2")
    text = render(InventoryInput(specs, "http://127.0.0.1:8123", "A" * 40, "http://127.0.0.1:8123/rocm/rocm.gpg.key",
                                 tmp_path / "id", tmp_path / "known_hosts", tmp_path, "2.13.0+cpu"))
    path = tmp_path / "lab.ini"
    path.write_text(text)
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(path)])
    variables = VariableManager(loader=loader, inventory=inventory)
    hv = variables.get_vars(host=inventory.get_host("ws-7900xtx"))
    assert hv["ansible_host"] == "127.0.0.4" and hv["ansible_port"] == 2222
    assert hv["provision_expected_gpus"] == ["1002:744c"]
    assert "provision_torch_packages" not in hv  # the lab takes the pins' own set, with its Python tag
    assert hv["provision_torch_python"] == 3.11 or hv["provision_torch_python"] == "3.11"
    assert hv["provision_pypi_index_url"] == "http://127.0.0.1:8123/pypi/simple/"
    assert hv["torch_venv_expected_hip_prefix"] == ""
    assert hv["provision_users"] == ["researcher"]
    assert hv["provision_mode"] == "auto"
    assert hv["provision_repo_base_url"] == "http://127.0.0.1:8123"
    assert hv["provision_wheel_index_url"] == "http://127.0.0.1:8123/rocm/manylinux/rocm-rel-7.0/"
    assert "StrictHostKeyChecking=yes" in hv["ansible_ssh_common_args"]


def _rocminfo(tmp_path: Path, env: dict[str, str], argv0: str = "rocminfo") -> subprocess.CompletedProcess[str]:
    script = GUEST / "rocminfo.py"
    text = script.read_text().replace("@RUNTIME_VERSION@", "1.18").replace("@KMD_VERSION@", "6.14.14")
    target = tmp_path / argv0
    target.write_text(text)
    return subprocess.run([sys.executable, str(target)], capture_output=True, text=True, check=False,
                          env={**os.environ, **env})


def test_rocminfo_standin_prints_agents_and_honours_the_override(tmp_path: Path) -> None:
    spec = default_hosts(1, "127.0.0.2")[0]
    declaration = {"cpu": {"name": "AMD Ryzen 7 3700X 8-Core Processor", "cores": 8},
                   "gpus": [slot.declaration() for slot in spec.gpus]}
    gpus = tmp_path / "gpus.json"
    gpus.write_text(json.dumps(declaration))
    plain = _rocminfo(tmp_path, {"PROVISION_LAB_GPUS_JSON": str(gpus), "HSA_OVERRIDE_GFX_VERSION": ""})
    assert plain.returncode == 0
    assert "  Name:                    gfx1010" in plain.stdout
    assert "Chip ID:                 29471(0x731f)" in plain.stdout
    assert plain.stdout.startswith("ROCk module version 6.14.14 is loaded")
    assert plain.stdout.rstrip().endswith("*** Done ***")
    over = _rocminfo(tmp_path, {"PROVISION_LAB_GPUS_JSON": str(gpus), "HSA_OVERRIDE_GFX_VERSION": "10.3.0"})
    assert "  Name:                    gfx1030" in over.stdout
    assert "amdgcn-amd-amdhsa--gfx1030" in over.stdout
    enum = _rocminfo(tmp_path, {"PROVISION_LAB_GPUS_JSON": str(gpus), "HSA_OVERRIDE_GFX_VERSION": "9.0.10"},
                     argv0="rocm_agent_enumerator")
    assert enum.stdout.split() == ["gfx000", "gfx90a"]
    missing = _rocminfo(tmp_path, {"PROVISION_LAB_GPUS_JSON": str(tmp_path / "none.json")})
    assert missing.returncode == 1 and "ROCk module is NOT loaded" in missing.stdout


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "rocm").mkdir()
    (tmp_path / "rocm" / "file.bin").write_bytes(b"x" * 100_000)
    httpd = server.make_server(str(tmp_path), 0, faults=str(tmp_path / "faults.json"))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def test_mirror_server_counts_and_injects_faults(mirror: str) -> None:
    assert _get(f"{mirror}/rocm/file.bin") == (200, b"x" * 100_000)
    stats = json.loads(_get(f"{mirror}/_lab/stats")[1])
    assert stats["paths"]["/rocm/file.bin"] == {"requests": 1, "bytes": 100_000}
    _get(f"{mirror}/_lab/stats/reset")
    assert json.loads(_get(f"{mirror}/_lab/stats")[1])["total_bytes"] == 0
    _get(f"{mirror}/_lab/fault?mode=down&path=/rocm")
    assert _get(f"{mirror}/rocm/file.bin")[0] == 503
    _get(f"{mirror}/_lab/fault?mode=notfound&path=rocm/file.bin")
    assert _get(f"{mirror}/rocm/file.bin")[0] == 404  # the longest matching prefix wins
    _get(f"{mirror}/_lab/fault?mode=none")
    _get(f"{mirror}/_lab/fault?mode=garbage&path=/rocm")
    status, body = _get(f"{mirror}/rocm/file.bin")
    assert status == 200 and len(body) == 100_000 and body != b"x" * 100_000
    _get(f"{mirror}/_lab/fault?mode=none")
    assert json.loads(_get(f"{mirror}/_lab/fault")[1]) == {"faults": []}
    assert _get(f"{mirror}/_lab/fault?mode=explode")[0] == 400


def test_mirror_server_refuses_non_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        server.make_server("/tmp", 0, bind="0.0.0.0")


def test_failed_commands_raise_with_their_last_lines() -> None:
    with pytest.raises(LabError) as info:
        proc.run(["sh", "-c", "echo step one; echo 'E: it broke' >&2; exit 3"], what="building the thing")
    message = str(info.value)
    assert "building the thing failed" in message and "exited with 3" in message and "E: it broke" in message


def test_cli_usage_errors_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["up", "--hosts", "0", "--lab-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "--hosts must be between 1 and 32" in result.output
    assert "Traceback" not in result.output


def test_cli_missing_podman_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = CliRunner().invoke(app, ["up", "--lab-dir", str(tmp_path / "lab")])
    assert result.exit_code == 1
    assert "podman" in result.output and "apt-get install -y podman" in result.output
    assert "Traceback" not in result.output


def test_cli_status_of_a_lab_never_brought_up(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["status", "--lab-dir", str(tmp_path / "nothing")])
    assert result.exit_code == 1 and "lab is down" in result.output


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
def test_cli_busy_mirror_port_names_it(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = CliRunner().invoke(app, ["up", "--mirror-port", str(port), "--lab-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert f"127.0.0.1:{port} is already in use" in result.output
