"""The artifact lock file with the real wheel fetch module, run by real Ansible (ad-hoc, as the role runs it on
the controller) and real pip against a local wheel index: with default settings (no sha256 pinned) the first
fetch records the pinned wheel and its dependency; later a tampered wheel, a tampered dependency and a cached
file changed in place are each refused, naming the file and both sha256s; --update-lock accepts on purpose.
(That the refusal comes before anything is removed on a host is the stage's order: tests/lab/test_artifact_cache.)"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_download_progress import DEP, WHEEL, make_wheel

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def index(tmp_path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    wheels = {WHEEL: make_wheel(tmp_path / WHEEL, "demo_pkg", 200_000, requires="dep-pkg"),
              DEP: make_wheel(tmp_path / DEP, "dep_pkg", 100_000)}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = self.path.rsplit("/", 1)[-1]
            body = wheels.get(name) or ("<html><body>" + "".join(f'<a href="{n}">{n}</a>' for n in wheels)
                                        + "</body></html>").encode()
            self.send_response(200)
            if name not in wheels:
                self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", wheels
    httpd.shutdown()


def fetch(tmp: Path, url: str, cache: str, **extra: Any) -> dict[str, Any]:
    # the pinned wheel from the directory listing, its dependency from the simple index (the server answers both)
    spec = {"key": "k1", "index_url": url, "pypi_index_url": url + "simple/", "python_version": "3.11",
            "platforms": ["linux_x86_64", "manylinux_2_28_x86_64"],
            "pins": [{"name": "demo-pkg", "version": "1.0", "file": WHEEL}]}
    args = {"sets": [spec], "cache_dir": str(tmp / cache), "lock_file": str(tmp / "rocm-provision.lock"), **extra}
    # the checkout's ansible.cfg: the rocm.provision collection through collections/, as the role runs it
    # ansible-core's own minimal callback with JSON results (the json callback lives in ansible.posix, which the
    # lean install does not carry): `localhost | SUCCESS => {...}`
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal", ANSIBLE_CALLBACK_RESULT_FORMAT="json",
               ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"))
    done = subprocess.run([str(Path(sys.executable).with_name("ansible")), "localhost", "-c", "local",
                           "-e", f"ansible_python_interpreter={sys.executable}",
                           "-m", "rocm.provision.torch_venv_wheel_fetch", "-a", json.dumps(args)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    head, sep, result = done.stdout.partition(" => ")
    assert sep and head.startswith("localhost | "), f"{done.stdout}{done.stderr}"
    return json.loads(result)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_lock_file_refuses_a_tampered_wheel_dependency_and_cached_file(index: tuple[str, dict[str, bytes]],
                                                                        tmp_path: Path) -> None:
    url, wheels = index
    first = fetch(tmp_path, url, "cache-1")
    assert first["sets"]["k1"]["ok"], first["sets"]
    lock = json.loads((tmp_path / "rocm-provision.lock").read_text())
    assert {n: f["sha256"] for n, f in lock["files"].items()} == {WHEEL: sha(wheels[WHEEL]), DEP: sha(wheels[DEP])}
    assert any("trust on first use" in n for n in first["lock_notes"])
    original = dict(wheels)

    for name in (DEP, WHEEL):  # the index now serves other bytes under the same name; a new cache downloads them
        wheels.clear()
        wheels.update(original)
        wheels[name] = original[name] + b"tampered"  # still a readable zip, another sha256
        refused = fetch(tmp_path, url, f"cache-{name[:4]}")["sets"]["k1"]
        assert not refused["ok"], refused
        assert f"{name}: sha256 {sha(wheels[name])}, the lock file says {sha(original[name])}" in refused["error"]
        assert "Nothing was installed or removed" in refused["error"]
        assert not (tmp_path / f"cache-{name[:4]}" / "wheels" / "k1").exists(), "the bad set stays out of the cache"

    # the first cache, one file changed in place (same size): refused by the re-hash before the lock is asked
    cached = tmp_path / "cache-1" / "wheels" / "k1" / DEP
    body = bytearray(cached.read_bytes())
    body[-50] ^= 0xFF
    cached.write_bytes(bytes(body))
    refused = fetch(tmp_path, url, "cache-1")["sets"]["k1"]
    assert not refused["ok"] and f"{DEP}: sha256 {sha(bytes(body))}, recorded {sha(original[DEP])}" in refused["error"]

    # on purpose: --update-lock takes the dependency as it is now, and says so
    updated = fetch(tmp_path, url, "cache-upd", lock_update=True)
    assert updated["sets"]["k1"]["ok"] and any(n.startswith(f"updated: {WHEEL}") for n in updated["lock_notes"])
    lock = json.loads((tmp_path / "rocm-provision.lock").read_text())
    assert lock["files"][WHEEL]["sha256"] == sha(wheels[WHEEL])
