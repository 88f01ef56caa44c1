"""Staging AMD's PyTorch wheel set as AMD publishes it, through the torch_venv role's real `stage` entry point.

The stand-ins copy the outside world's shape, not our code's beliefs:
- the four wheels are named exactly as provision/data/pins.yaml names AMD's files (cp312-cp312-linux_x86_64, local
  versions +rocm7.0.0.git..., linked as %2B), from rocm70-install.md section 4.1 and its wheel-tag correction;
- they are served as a plain directory listing (Python's http.server writes one, as repo.radeon.com's
  rocm-rel-7.0/ is), not a PEP 503 index;
- their Requires-Dist are those of the public torch 2.8.0 / torchvision / torchaudio / triton wheels, and the
  dependencies are served from a separate PEP 503 simple index under the file names PyPI gives them (manylinux
  tags for the compiled ones).
If our belief about the tags (linux_x86_64 vs manylinux) or the layout were wrong, the default-settings test fails.
Faults: a missing dependency, a sha256 that differs from the pin, a listing page that is HTML garbage, and an index
that answers 404 or hangs each fail the host at staging with one line naming the file or URL, and nothing on the
host is removed."""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import os
import subprocess
import sys
import threading
import urllib.parse
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from provision import pins

REPO = Path(__file__).resolve().parents[2]

# Requires-Dist of the public wheels (PyPI METADATA of torch 2.8.0, torchvision, torchaudio 2.8.0, triton 3.4.0),
# with the ROCm build's pytorch-triton-rocm pin that AMD's and download.pytorch.org's ROCm torch wheels carry.
TORCH_REQUIRES = [
    "filelock", "typing-extensions>=4.10.0", 'setuptools; python_version >= "3.12"', "sympy>=1.13.3", "networkx",
    "jinja2", "fsspec", 'pytorch-triton-rocm==3.4.0+rocm7.0.0.gitf9e5bf54; platform_system == "Linux"',
]
REQUIRES = {
    "torch": TORCH_REQUIRES,
    "torchvision": ["numpy", "torch", "pillow!=8.3.*,>=5.3.0"],
    "torchaudio": ["torch"],
    "pytorch_triton_rocm": ["setuptools>=40.8.0"],
}
# Dependencies as PyPI names their files (pure ones py3-none-any; compiled ones manylinux-tagged, cp312).
DEPENDENCIES = {
    "filelock": ("filelock-3.19.1-py3-none-any.whl", []),
    "typing-extensions": ("typing_extensions-4.15.0-py3-none-any.whl", []),
    "setuptools": ("setuptools-80.9.0-py3-none-any.whl", []),
    "sympy": ("sympy-1.14.0-py3-none-any.whl", ["mpmath<1.4,>=1.1.0"]),
    "mpmath": ("mpmath-1.3.0-py3-none-any.whl", []),
    "networkx": ("networkx-3.5-py3-none-any.whl", []),
    "jinja2": ("jinja2-3.1.6-py3-none-any.whl", ["MarkupSafe>=2.0"]),
    "markupsafe": ("markupsafe-3.0.2-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", []),
    "fsspec": ("fsspec-2025.9.0-py3-none-any.whl", []),
    "numpy": ("numpy-2.3.3-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", []),
    "pillow": ("pillow-11.3.0-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", []),
}


def make_wheel(path: Path, requires: list[str]) -> None:
    """A valid wheel named `path.name` (name, version and tags from the name), with these Requires-Dist."""
    parts = path.name[: -len(".whl")].split("-")
    name, version, tags = parts[0], parts[1], parts[2:]
    info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    wheel_tags = "".join(f"Tag: {py}-{abi}-{plat}\n" for py in tags[0].split(".") for abi in tags[1].split(".")
                         for plat in tags[2].split("."))
    files = {f"{name}/__init__.py": f"__version__ = {version!r}\n".encode(), f"{info}/METADATA": metadata.encode(),
             f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n{wheel_tags}".encode()}
    record = [f"{m},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}"
              for m, d in files.items()] + [f"{info}/RECORD,,"]
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in files.items():
            archive.writestr(member, data)
        archive.writestr(f"{info}/RECORD", "\n".join(record) + "\n")


@dataclass
class Server:
    """A local HTTP server over a directory; `fault` makes it answer 404, hang, or send garbage for a path prefix."""

    root: Path
    fault: dict[str, str] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""
    hits: list[str] = field(default_factory=list)

    def start(self) -> None:
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits.append(self.path)
                for prefix, kind in server.fault.items():
                    if self.path.startswith(prefix):
                        if kind == "404":
                            self.send_error(404)
                            return
                        if kind == "hang":
                            server.release.wait(60)
                            return
                        if kind == "garbage":
                            body = b"<html><body><h1>502 Bad Gateway</h1><p>upstream \x00\xff<</body"
                            self.send_response(200)
                            self.send_header("Content-Type", "text/html")
                            self.send_header("Content-Length", str(len(body)))
                            self.end_headers()
                            self.wfile.write(body)
                            return
                super().do_GET()

            def log_message(self, *args: object) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(self.root)))
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Indexes:
    amd: Server        # serves /rocm/manylinux/rocm-rel-7.0/ as a directory listing
    pypi: Server       # serves /simple/ (PEP 503)
    wheel_dir: Path

    @property
    def listing_url(self) -> str:
        return f"{self.amd.url}/rocm/manylinux/rocm-rel-7.0/"

    @property
    def simple_url(self) -> str:
        return f"{self.pypi.url}/simple/"


def pin_files() -> dict[str, str]:
    """{name: the file name on disk} of the pinned set, decoded from pins.yaml's URL form."""
    return {p["name"]: urllib.parse.unquote(p["file"]) for p in pins.torch()["packages"]}


def build_indexes(tmp: Path, drop: tuple[str, ...] = ()) -> tuple[Path, Path]:
    amd_root = tmp / "amd"
    wheel_dir = amd_root / "rocm/manylinux/rocm-rel-7.0"
    wheel_dir.mkdir(parents=True)
    for name, filename in pin_files().items():
        make_wheel(wheel_dir / filename, REQUIRES[name])
    # other files AMD's directory holds (rocm70-install.md 4.1): must not be picked
    make_wheel(wheel_dir / "torch-2.8.0+rocm7.0.0.lw.git64359f59-cp310-cp310-linux_x86_64.whl", [])
    make_wheel(wheel_dir / "torchvision-0.23.0+rocm7.0.0.git824e8c87-cp310-cp310-linux_x86_64.whl", [])
    simple = tmp / "pypi" / "simple"
    simple.mkdir(parents=True)
    rows = []
    for project, (filename, requires) in DEPENDENCIES.items():
        if project in drop:
            continue
        (simple / project).mkdir()
        make_wheel(simple / project / filename, requires)
        digest = hashlib.sha256((simple / project / filename).read_bytes()).hexdigest()
        (simple / project / "index.html").write_text(
            f'<!DOCTYPE html><html><body><a href="{html.escape(filename)}#sha256={digest}">{html.escape(filename)}'
            "</a></body></html>\n")
        rows.append(f'<a href="{project}/">{project}</a>')
    (simple / "index.html").write_text("<!DOCTYPE html><html><body>" + "".join(rows) + "</body></html>\n")
    return amd_root, wheel_dir


@pytest.fixture
def indexes(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Indexes]:
    drop = getattr(request, "param", ())
    amd_root, wheel_dir = build_indexes(tmp_path, drop)
    amd, pypi = Server(amd_root), Server(tmp_path / "pypi")
    amd.start()
    pypi.start()
    yield Indexes(amd, pypi, wheel_dir)
    amd.stop()
    pypi.stop()


def stage(tmp_path: Path, idx: Indexes, extra: dict[str, Any] | None = None) -> tuple[int, str, Path]:
    """Run the torch_venv role's `stage` entry point on this machine (ansible_connection=local), default settings
    but for where the indexes, the controller cache and the host's wheelhouse are. Returns (rc, output, stage dir)."""
    stage_dir = tmp_path / "host-wheels"
    sentinel = tmp_path / "host-old-venv" / "keep.txt"
    sentinel.parent.mkdir(exist_ok=True)
    sentinel.write_text("users' old venv\n")
    playbook = tmp_path / "stage.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.include_role:\n        name: torch_venv\n        tasks_from: stage\n")
    variables = {"provision_wheel_index_url": idx.listing_url, "provision_pypi_index_url": idx.simple_url,
                 "provision_cache_dir": str(tmp_path / "cache"), "torch_venv_stage_dir": str(stage_dir),
                 "provision_progress_file": str(tmp_path / "progress.jsonl"), **(extra or {})}
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"ws-01 ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(REPO / "roles"),
               ANSIBLE_FILTER_PLUGINS=str(REPO / "plugins" / "filter"), ANSIBLE_STDOUT_CALLBACK="default",
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))
    done = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory),
                           "-e", f"@{tmp_path / 'vars.json'}", str(playbook)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=600, check=False)
    assert sentinel.read_text() == "users' old venv\n", "staging touched the host's existing files"
    return done.returncode, done.stdout + done.stderr, stage_dir


def failure_line(output: str) -> str:
    """The assert's message of the failed host (one line)."""
    lines = [ln for ln in output.splitlines() if "Wheel staging failed" in ln]
    assert lines, output[-3000:]
    return lines[0]


def staged_files(stage_dir: Path) -> list[str]:
    return sorted(p.name for p in stage_dir.glob("*/*.whl")) if stage_dir.exists() else []


def test_stage_fetches_amd_named_wheels_and_pypi_dependencies_with_default_settings(
        indexes: Indexes, tmp_path: Path) -> None:
    rc, output, stage_dir = stage(tmp_path, indexes)
    assert rc == 0, output[-4000:]
    staged = staged_files(stage_dir)
    for filename in pin_files().values():  # exactly AMD's files, not the cp310 or lw ones beside them
        assert filename in staged
    assert not [f for f in staged if "cp310" in f or ".lw." in f]
    for _project, (filename, _req) in DEPENDENCIES.items():
        assert filename in staged, f"dependency {filename} was not staged: {staged}"
    # the pins came from the directory listing by their %2B URLs, the dependencies from the simple index
    assert any("torch-2.8.0%2Brocm7.0.0.git64359f59-cp312-cp312-linux_x86_64.whl" in hit for hit in indexes.amd.hits)
    assert any(hit.startswith("/simple/sympy/") for hit in indexes.pypi.hits)
    # the resolved set is recorded with every sha256 in the controller cache
    manifest = json.loads(next((tmp_path / "cache" / "wheels").glob("*/manifest.json")).read_text())
    recorded = {f["file"]: f for f in manifest["files"]}
    assert set(recorded) == set(staged)
    for path in stage_dir.glob("*/*.whl"):
        assert recorded[path.name]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert {f["source"] for f in manifest["files"] if f["name"] == "torch"} == {"pin"}
    assert manifest["python_tag_note"] == ""  # a cp312 set: no tag replaced

    # a second run (another batch or host) reuses the recorded set: nothing is fetched again
    indexes.amd.hits.clear()
    indexes.pypi.hits.clear()
    rc, output, _ = stage(tmp_path, indexes)
    assert rc == 0, output[-4000:]
    assert "already cached" in output
    assert not indexes.amd.hits and not indexes.pypi.hits


@pytest.mark.parametrize("indexes", [("mpmath",)], indirect=True)
def test_missing_dependency_fails_at_staging_naming_it(indexes: Indexes, tmp_path: Path) -> None:
    rc, output, stage_dir = stage(tmp_path, indexes)
    assert rc != 0
    line = failure_line(output)
    assert "mpmath" in line and indexes.simple_url in line, line
    assert staged_files(stage_dir) == []


def test_sha256_differing_from_the_pin_fails_naming_the_file(indexes: Indexes, tmp_path: Path) -> None:
    packages = [dict(p, sha256="0" * 64) if p["name"] == "torchaudio" else p for p in pins.torch()["packages"]]
    rc, output, stage_dir = stage(tmp_path, indexes, {"provision_torch_packages": packages})
    assert rc != 0
    line = failure_line(output)
    assert pin_files()["torchaudio"] in line and "pinned " + "0" * 64 in line, line
    assert staged_files(stage_dir) == []
    assert not list((tmp_path / "cache" / "wheels").glob("*/manifest.json")), "a bad set stays out of the cache"


def test_pinned_sha256_that_matches_passes(indexes: Indexes, tmp_path: Path) -> None:
    torch_file = pin_files()["torch"]
    digest = hashlib.sha256((indexes.wheel_dir / torch_file).read_bytes()).hexdigest()
    packages = [dict(p, sha256=digest) if p["name"] == "torch" else p for p in pins.torch()["packages"]]
    rc, output, _ = stage(tmp_path, indexes, {"provision_torch_packages": packages})
    assert rc == 0, output[-4000:]
    assert "sha256 checked for torch" in output


@pytest.mark.parametrize(("where", "kind", "expect"), [
    ("amd", "garbage", "is not a directory listing of wheels"),
    ("amd", "404", "answered HTTP 404"),
    ("amd", "hang", "did not answer within 3 s"),
    ("pypi", "404", "404 Client Error"),
    ("pypi", "hang", "timed out"),
])
def test_broken_index_fails_at_staging_with_one_line_naming_the_url(
        indexes: Indexes, tmp_path: Path, where: str, kind: str, expect: str) -> None:
    server = indexes.amd if where == "amd" else indexes.pypi
    server.fault["/rocm/" if where == "amd" else "/simple/"] = kind
    # a short timeout so the hang is seen quickly; pip retries once
    rc, output, stage_dir = stage(tmp_path, indexes, {"torch_venv_pip_timeout": 3, "torch_venv_pip_retries": 0})
    assert rc != 0
    line = failure_line(output)
    assert expect in line, line
    assert (indexes.listing_url if where == "amd" else indexes.simple_url) in line, line
    assert staged_files(stage_dir) == []
