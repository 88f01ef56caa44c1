"""The lab mirror's optional HTTP Basic requirement (/_auth/USER/...), which the credential tests rely on
to prove that apt, the key download and pip really send the mirror's credentials."""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from provision.lab.server import make_server


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "rocm").mkdir()
    (tmp_path / "rocm" / "rocm.gpg.key").write_text("key\n")
    server = make_server(str(tmp_path), 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def get(url: str, auth: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_auth_path_needs_the_registered_password(mirror: str) -> None:
    url = f"{mirror}/_auth/lab/rocm/rocm.gpg.key"
    assert get(url)[0] == 401  # no user registered yet: refused, never served
    body = json.dumps({"user": "lab", "password": "pa55-Word!"}).encode()
    urllib.request.urlopen(urllib.request.Request(f"{mirror}/_lab/auth", data=body, method="POST"), timeout=10)
    assert get(url)[0] == 401
    assert get(url, "lab:wrong")[0] == 401
    assert get(url, "other:pa55-Word!")[0] == 401
    assert get(url, "lab:pa55-Word!") == (200, b"key\n")
    assert get(f"{mirror}/rocm/rocm.gpg.key") == (200, b"key\n")  # the plain tree stays open
    counts = json.loads(get(f"{mirror}/_lab/auth")[1])["users"]["lab"]
    assert counts == {"refused": 4, "accepted": 1}
