"""The controller's download progress, end to end on this machine: torch_venv_wheel_fetch runs a real
`pip download` from a local find-links server that sends a wheel slowly, its progress file shows the wheel part
way and then whole, and the CLI's live view turns such a file into a progress bar (terminal) or a plain line
every few seconds (log)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest
from rich.console import Console

from provision import progress as progress_mod
from provision.progress import DownloadFollower, ProgressView
from provision.runner import HostProgress
from tests.sources import load_source

REPO = Path(__file__).resolve().parents[2]
WHEEL = "demo_pkg-1.0-py3-none-any.whl"
DEP = "dep_pkg-1.0-py3-none-any.whl"  # a dependency of the pinned wheel: pip fetches it after WHEEL


def load_module() -> ModuleType:
    return load_source("plugins/modules/torch_venv_wheel_fetch.py")


def make_wheel(path: Path, name: str, size: int, requires: str = "") -> bytes:
    """A valid pure-Python wheel of about `size` bytes (random, so it does not compress)."""
    info = f"{name}-1.0.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 1.0\n"
    files = {f"{name}/__init__.py": b"", f"{name}/blob.bin": os.urandom(size),
             f"{info}/METADATA": (metadata + (f"Requires-Dist: {requires}\n" if requires else "")).encode(),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for member, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{member},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for member, data in files.items():
            archive.writestr(member, data)
        archive.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path.read_bytes()


@pytest.fixture
def slow_index(tmp_path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    wheels = {WHEEL: make_wheel(tmp_path / WHEEL, "demo_pkg", 3_000_000, requires="dep-pkg"),
              DEP: make_wheel(tmp_path / DEP, "dep_pkg", 1_500_000)}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = self.path.rsplit("/", 1)[-1]
            if name in wheels:
                body = wheels[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for start in range(0, len(body), 100_000):  # about 3 s in all
                    self.wfile.write(body[start:start + 100_000])
                    self.wfile.flush()
                    time.sleep(0.1)
                return
            page = ("<html><body>" + "".join(f'<a href="{n}">{n}</a>' for n in wheels) + "</body></html>").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", wheels
    httpd.shutdown()


def test_wheel_download_writes_progress_part_way_and_whole(slow_index: tuple[str, dict[str, bytes]],
                                                            tmp_path: Path) -> None:
    url, wheels = slow_index
    mod = load_module()
    progress_file = tmp_path / "progress.jsonl"
    # the pinned wheel from the directory listing (the module's own download), its dependency through pip
    spec = {"key": "k1", "index_url": url, "pypi_index_url": url + "simple/", "python_version": "3.12",
            "platforms": ["linux_x86_64", "manylinux_2_28_x86_64"],
            "pins": [{"name": "demo_pkg", "version": "1.0", "file": WHEEL}]}
    result = mod.fetch(spec, str(tmp_path / "cache"), 30, False, os.devnull, mod.Http(30, None, None, None),
                       str(progress_file))
    assert result["ok"], result["error"]
    assert {f["file"]: f["sha256"] for f in result["files"]} == {
        name: hashlib.sha256(body).hexdigest() for name, body in wheels.items()}
    lines = [json.loads(line) for line in progress_file.read_text().splitlines()]
    assert [line["file"] for line in lines] == sorted((line["file"] for line in lines), key=[WHEEL, DEP].index)
    for index, (name, body) in enumerate(wheels.items()):  # the pinned wheel, then its dependency
        mine = [line for line in lines if line["file"] == name]
        # pip announced the size (rounded), and the bytes were seen arriving part way
        assert all(abs(line["total"] - len(body)) < 100_000 and line["done"] <= line["total"] for line in mine)
        assert all(line["files_done"] == index and line["files_total"] is None for line in mine)
        assert mine[-1]["done"] == mine[-1]["total"] == len(body), mine[-3:]  # a wheel's last line: whole
    assert any(0 < line["done"] < len(wheels[WHEEL]) for line in lines if line["file"] == WHEEL), lines
    assert not list((tmp_path / "cache" / "wheels").glob("*.tmp")), "pip's temp dir is cleaned up"


def test_follower_reads_only_whole_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    follower = DownloadFollower(path)
    assert follower.poll() is None  # no file yet
    path.write_text('{"file": "a.deb", "done": 5, "total": 10, "files_done": 0, "files_total": 2, "time": 1}\n'
                    'not json\n{"file": "b.deb", "do')
    latest = follower.poll()
    assert latest is not None and (latest.file, latest.done, latest.total) == ("a.deb", 5, 10)
    with path.open("a") as handle:
        handle.write('ne": 7, "total": null, "files_done": 1, "files_total": 2, "time": 2}\n')
    latest = follower.poll()
    assert latest is not None and (latest.file, latest.done, latest.total, latest.files_done) == ("b.deb", 7, None, 1)
    assert latest.describe() == "controller download: b.deb (0.0 MB, file 2 of 2)"


def line(path: Path, done: int, total: int = 200_000_000, name: str = "torch.whl") -> None:
    with path.open("a") as handle:
        handle.write(json.dumps({"file": name, "done": done, "total": total, "files_done": 0, "files_total": 3,
                                 "time": time.time()}) + "\n")


def test_terminal_view_shows_a_progress_bar_under_the_hosts(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    line(path, 50_000_000)
    hosts = {"ws-01": HostProgress("ws-01")}
    console = Console(file=io.StringIO(), force_terminal=True, width=140, color_system=None)
    view = ProgressView(hosts, "upgrade", console, downloads=path)
    console.print(view)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "ws-01" in text
    assert "controller download: torch.whl 25% (50.0 of 200.0 MB, file 1 of 3)" in text
    assert "━" in text  # the bar itself


def test_log_view_prints_a_download_line_at_most_every_interval(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_mod, "PLAIN_EVERY_S", 0.3)
    path = tmp_path / "p.jsonl"
    console = Console(file=io.StringIO(), force_terminal=False, width=140)
    view = ProgressView({}, "upgrade", console, downloads=path)
    assert not view.tty
    view.print_download()  # nothing downloaded yet: nothing said
    line(path, 10_000_000)
    view.print_download()
    line(path, 20_000_000)
    view.print_download()  # too soon after the last line
    time.sleep(0.35)
    view.print_download()
    view.print_download()  # nothing new
    said = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert said == ["controller download: torch.whl 5% (10.0 of 200.0 MB, file 1 of 3)",
                    "controller download: torch.whl 10% (20.0 of 200.0 MB, file 1 of 3)"]


def test_a_cached_wheel_changed_in_place_is_refused_not_trusted_on_its_size(
        slow_index: tuple[str, dict[str, bytes]], tmp_path: Path) -> None:
    url, wheels = slow_index
    mod = load_module()
    spec = {"key": "k1", "index_url": url, "pypi_index_url": url + "simple/", "python_version": "3.12",
            "platforms": ["linux_x86_64", "manylinux_2_28_x86_64"],
            "pins": [{"name": "demo_pkg", "version": "1.0", "file": WHEEL}]}
    http = mod.Http(30, None, None, None)
    first = mod.fetch(spec, str(tmp_path / "cache"), 30, False, os.devnull, http)
    assert first["ok"] and first["downloaded"], first["error"]
    again = mod.fetch(spec, str(tmp_path / "cache"), 30, False, os.devnull, http)
    assert again["ok"] and not again["downloaded"]  # an intact cache is used as it is
    cached = tmp_path / "cache" / "wheels" / "k1" / WHEEL
    body = bytearray(cached.read_bytes())
    body[-100] ^= 0xFF  # same size, other bytes
    cached.write_bytes(bytes(body))
    refused = mod.fetch(spec, str(tmp_path / "cache"), 30, False, os.devnull, http)
    assert not refused["ok"] and not refused["downloaded"]
    expected, got = hashlib.sha256(wheels[WHEEL]).hexdigest(), hashlib.sha256(body).hexdigest()
    assert f"{WHEEL}: sha256 {got}, recorded {expected}" in refused["error"]
    assert cached.exists(), "the evidence is kept for the user to look at"
