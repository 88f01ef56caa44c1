"""rocm_artifact_fetch's download core against a real local HTTP server that honours Range requests (as
repo.radeon.com's servers do; the lab mirror does not): an interrupted download resumes from its .part file,
a server that ignores Range starts over, and a file whose sha256 is wrong is deleted and reported with the URL,
the expected and the received hash."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

from tests.sources import load_source

REPO = Path(__file__).resolve().parents[2]
BODY = bytes(range(256)) * 4096  # 1 MiB
RANGES: list[str] = []


def load_module() -> ModuleType:
    return load_source("plugins/modules/rocm_artifact_fetch.py")


class Handler(BaseHTTPRequestHandler):
    honour_range = True

    def do_GET(self) -> None:
        header = self.headers.get("Range")
        RANGES.append(header or "")
        start = int(header.split("=")[1].rstrip("-")) if header and self.honour_range else 0
        body = BODY[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    RANGES.clear()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/pkg_1.0_amd64.deb"
    httpd.shutdown()
    Handler.honour_range = True


def fetch(mod: ModuleType, url: str, cache: Path, checksum: str) -> tuple[str, int]:
    import requests

    item = {"url": url, "checksum": checksum, "size": len(BODY), "filename": "pkg_1.0_amd64.deb"}
    result: tuple[str, int] = mod.fetch_one(requests.Session(), item, str(cache), 2, 10, mod.Progress(None, 1))
    return result


def test_interrupted_download_resumes_from_the_part_file(server: str, tmp_path: Path) -> None:
    mod = load_module()
    digest = hashlib.sha256(BODY).hexdigest()
    (tmp_path / "sha256").mkdir()
    (tmp_path / "sha256" / f"{digest}.part").write_bytes(BODY[:300_000])  # what a cut connection left
    path, received = fetch(mod, server, tmp_path, f"SHA256:{digest}")
    assert RANGES == ["bytes=300000-"]
    assert received == len(BODY) - 300_000
    assert Path(path).read_bytes() == BODY
    assert not (tmp_path / "sha256" / f"{digest}.part").exists()
    # a second fetch is served from the cache: no request at all
    assert fetch(mod, server, tmp_path, f"SHA256:{digest}") == (path, 0) and len(RANGES) == 1


def test_server_ignoring_range_starts_the_file_again(server: str, tmp_path: Path) -> None:
    mod = load_module()
    Handler.honour_range = False
    digest = hashlib.sha256(BODY).hexdigest()
    (tmp_path / "sha256").mkdir()
    (tmp_path / "sha256" / f"{digest}.part").write_bytes(b"x" * 1000)
    path, received = fetch(mod, server, tmp_path, f"SHA256:{digest}")
    assert received == len(BODY) and Path(path).read_bytes() == BODY


def test_checksum_mismatch_is_deleted_and_named(server: str, tmp_path: Path) -> None:
    mod = load_module()
    wrong = "0" * 64
    with pytest.raises(mod.FetchError) as info:
        fetch(mod, server, tmp_path, f"SHA256:{wrong}")
    message = str(info.value)
    assert server in message and wrong in message and hashlib.sha256(BODY).hexdigest() in message
    assert not list((tmp_path / "sha256").glob(f"{wrong}*.part")) and not (tmp_path / "sha256" / wrong).exists()
