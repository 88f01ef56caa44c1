"""The venv's Python 3.12, decided at preflight for each supported OS (provision/pythonsource.py): Ubuntu 24.04's
own python3.12, the deadsnakes PPA on Ubuntu 22.04, and on Debian 12 (3.11 only) the pinned standalone CPython or
provision_python; a host without a configured, reachable source is `blocked` at preflight with the reason and the
setting to change. The host-side probe (an HTTP HEAD from the host) runs here against a local server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from provision import pins
from provision.inventory import spec_from_vars
from provision.preflight import evaluate
from provision.pythonsource import decide, probe_request, standalone_bin, standalone_url
from tests.sources import load_source
from tests.unit.test_preflight import raw_facts, simulated_sysfs

facts_module = load_source("plugins/modules/rocm_host_facts.py")

OS_RELEASE = {
    "ubuntu-24.04": 'NAME="Ubuntu"\nVERSION_ID="24.04"\nVERSION_CODENAME=noble\nID=ubuntu\n',
    "ubuntu-22.04": 'NAME="Ubuntu"\nVERSION_ID="22.04"\nVERSION_CODENAME=jammy\nID=ubuntu\n',
    "debian-12": 'NAME="Debian GNU/Linux"\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\nID=debian\n',
}
# What each OS's own interpreters report (Ubuntu 24.04: 3.12; Ubuntu 22.04: 3.10; Debian 12: 3.11)
SYSTEM_PYTHON = {"ubuntu-24.04": "3.12", "ubuntu-22.04": "3.10", "debian-12": "3.11"}


def python_facts(os_key: str, **extra: Any) -> dict[str, Any]:
    version = SYSTEM_PYTHON[os_key]
    interpreters: dict[str, Any] = {"python3.12": None, "python3": {"path": f"/usr/bin/python{version}",
                                                                     "version": version}}
    if version == "3.12":
        interpreters["python3.12"] = {"path": "/usr/bin/python3.12", "version": "3.12"}
    facts = {"version": "3.12", "interpreters": interpreters, "apt_candidate": None, "deadsnakes": None,
             "standalone": None}
    facts.update(extra)
    return facts


def test_ubuntu_2404_uses_its_own_python312() -> None:
    decision = decide("ubuntu-24.04", python_facts("ubuntu-24.04"), spec_from_vars("h", {}))
    assert (decision.source, decision.interpreter, decision.install, decision.problem) == (
        "system", "/usr/bin/python3.12", False, None)


def test_ubuntu_2204_takes_deadsnakes_when_the_ppa_answers() -> None:
    facts = python_facts("ubuntu-22.04", deadsnakes={"url": "https://ppa.launchpadcontent.net/deadsnakes/ppa/ubuntu/"
                                                            "dists/jammy/Release", "ok": True, "error": ""})
    decision = decide("ubuntu-22.04", facts, spec_from_vars("h", {}))
    assert (decision.source, decision.install, decision.problem) == ("deadsnakes", True, None)
    assert decision.interpreter == "/usr/bin/python3.12"


def test_ubuntu_2204_without_the_ppa_is_blocked_naming_the_url_and_the_setting() -> None:
    url = "https://ppa.launchpadcontent.net/deadsnakes/ppa/ubuntu/dists/jammy/Release"
    facts = python_facts("ubuntu-22.04", deadsnakes={"url": url, "ok": False, "error": "timed out"})
    decision = decide("ubuntu-22.04", facts, spec_from_vars("h", {}))
    assert decision.problem and url in decision.problem and "timed out" in decision.problem
    assert "provision_python_source" in decision.problem


def test_debian_12_without_a_configured_source_is_blocked_with_the_settings_to_change() -> None:
    decision = decide("debian-12", python_facts("debian-12"), spec_from_vars("h", {}))
    assert decision.source == "none"
    assert decision.problem and "Python 3.11" in decision.problem
    assert "provision_python_source" in decision.problem and "provision_python " in decision.problem


def test_debian_12_with_the_standalone_source_reachable() -> None:
    spec = spec_from_vars("h", {"provision_python_source": "standalone",
                                "provision_python_standalone_url": "https://mirror.lab:8080/pbs"})
    url = standalone_url(spec)
    # the pinned file, under the release directory, as python-build-standalone names it (%2B for +)
    assert url == ("https://mirror.lab:8080/pbs/20251031/"
                   "cpython-3.12.12%2B20251031-x86_64-unknown-linux-gnu-install_only.tar.gz")
    decision = decide("debian-12", python_facts("debian-12", standalone={"url": url, "ok": True, "error": ""}), spec)
    assert (decision.source, decision.install, decision.problem) == ("standalone", True, None)
    assert decision.interpreter == standalone_bin("3.12")


def test_standalone_unreachable_is_blocked_naming_the_url() -> None:
    spec = spec_from_vars("h", {"provision_python_source": "standalone"})
    url = standalone_url(spec)
    facts = python_facts("debian-12", standalone={"url": url, "ok": False, "error": "HTTP 404 Not Found"})
    decision = decide("debian-12", facts, spec)
    assert decision.problem and url in decision.problem and "provision_python_standalone_url" in decision.problem


def test_deadsnakes_on_debian_is_refused() -> None:
    spec = spec_from_vars("h", {"provision_python_source": "deadsnakes"})
    decision = decide("debian-12", python_facts("debian-12"), spec)
    assert decision.problem and "Ubuntu only" in decision.problem


def test_provision_python_of_another_version_is_blocked() -> None:
    spec = spec_from_vars("h", {"provision_python": "/usr/bin/python3"})
    facts = python_facts("debian-12")
    facts["interpreters"]["/usr/bin/python3"] = {"path": "/usr/bin/python3.11", "version": "3.11"}
    decision = decide("debian-12", facts, spec)
    assert decision.problem and "is Python 3.11" in decision.problem and "provision_torch_python" in decision.problem


def test_the_lab_branch_debian_12_python311_with_the_cp311_set() -> None:
    """The lab's hosts (Debian 12 userland) cannot have Python 3.12: it rehearses with provision_torch_python=3.11
    and provision_python=/usr/bin/python3, and the decision accepts exactly that pairing."""
    spec = spec_from_vars("h", {"provision_python": "/usr/bin/python3", "provision_torch_python": "3.11"})
    facts = python_facts("debian-12")
    facts["version"] = "3.11"
    facts["interpreters"]["/usr/bin/python3"] = {"path": "/usr/bin/python3.11", "version": "3.11"}
    decision = decide("debian-12", facts, spec)
    assert (decision.source, decision.version, decision.problem) == ("path", "3.11", None)


def test_probe_request_asks_only_for_the_source_in_use() -> None:
    assert "standalone_url" not in probe_request(spec_from_vars("h", {}))
    assert probe_request(spec_from_vars("h", {}))["deadsnakes_url"] == pins.python()["deadsnakes"]["url"]
    standalone = probe_request(spec_from_vars("h", {"provision_python_source": "standalone"}))
    assert "deadsnakes_url" not in standalone and standalone["standalone_bin"].endswith("/bin/python3.12")


@pytest.mark.parametrize("bad", ["pyenv", "uv; rm -rf /", ""])
def test_python_source_is_validated(bad: str) -> None:
    from provision.errors import InventoryError

    with pytest.raises(InventoryError, match="provision_python_source"):
        spec_from_vars("h", {"provision_python_source": bad})


def test_preflight_blocks_a_debian_12_instinct_host_before_anything_is_removed(tmp_path: Path) -> None:
    simulated_sysfs(tmp_path, "740f", 90010)  # MI210, gfx90a: an Instinct card Debian 12 supports
    raw = raw_facts(tmp_path, os_release=OS_RELEASE["debian-12"], kernel="6.1.0-41-amd64",  # in the driver window
                    python=python_facts("debian-12"))
    result = evaluate(raw, spec_from_vars("ws1", {}))
    assert result["plan"]["action"] == "blocked"
    assert any("no Python 3.12 package" in r for r in result["plan"]["reasons"]), result["plan"]["reasons"]
    assert result["python"]["source"] == "none"
    raw["python"] = python_facts("debian-12", standalone={"url": "u", "ok": True, "error": ""})
    result = evaluate(raw, spec_from_vars("ws1", {"provision_python_source": "standalone"}))
    assert result["plan"]["action"] != "blocked", result["plan"]
    assert result["python"]["source"] == "standalone"


# --- the host-side probe, against a real HTTP server ---------------------------------------------------------

@pytest.fixture
def server() -> Iterator[str]:
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            if self.path.startswith("/hang"):
                release.wait(30)
                return
            self.send_response(200 if self.path.startswith("/ok") else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    release.set()
    httpd.shutdown()
    httpd.server_close()


def test_host_probe_tells_reachable_from_404_and_hang(server: str) -> None:
    assert facts_module.reach(f"{server}/ok/Release")["ok"]
    missing = facts_module.reach(f"{server}/missing")
    assert not missing["ok"] and "404" in missing["error"]
    hung = facts_module.reach(f"{server}/hang", timeout=1)
    assert not hung["ok"] and "timed out" in hung["error"]
