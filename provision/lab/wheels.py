"""The wheel directory (rocm/manylinux/rocm-rel-7.0/): the CPU torch wheel from disk plus its dependencies,
as a --find-links listing and a PEP 503 simple index; and the fake torch 1.13 wheel for the old venvs."""

from __future__ import annotations

import base64
import glob
import hashlib
import html
import io
import os
import re
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from provision.lab import proc
from provision.lab.errors import LabError

ENV_TORCH_WHEEL = "PROVISION_LAB_TORCH_WHEEL"
DEFAULT_GLOB = "/opt/wheels/torch-*+cpu-cp311-cp311-*.whl"
WHEEL_DIR = "rocm/manylinux/rocm-rel-7.0"
OLD_TORCH_VERSION = "1.13.1+rocm5.2"


@dataclass(frozen=True)
class WheelSet:
    torch_wheel: Path | None
    torch_version: str | None
    files: tuple[str, ...]
    note: str = ""


def find_torch_wheel() -> Path | None:
    env = os.environ.get(ENV_TORCH_WHEEL)
    if env:
        path = Path(env)
        return path if path.is_file() else None
    found = sorted(glob.glob(DEFAULT_GLOB))
    return Path(found[-1]) if found else None


def wheel_version(path: Path) -> str:
    return path.name.split("-")[1]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def gather(cache: Path) -> WheelSet:
    """Download the torch wheel's dependencies into `cache` once (pip, from PyPI on the controller)."""
    wheel = find_torch_wheel()
    if wheel is None:
        return WheelSet(None, None, (), f"no torch wheel found ({ENV_TORCH_WHEEL} or {DEFAULT_GLOB}); "
                        "the wheel directory is empty")
    stamp = cache / f".complete-{wheel.name}"
    if not stamp.exists():
        cache.mkdir(parents=True, exist_ok=True)
        partial = cache / "partial"
        shutil.rmtree(partial, ignore_errors=True)
        try:
            proc.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
                      "--dest", str(partial), str(wheel)],
                     what="gathering the torch wheel's dependencies (pip download)", timeout=900)
        except LabError as exc:
            return WheelSet(wheel, wheel_version(wheel), (), f"wheel directory incomplete: {exc}")
        for item in partial.iterdir():
            if item.name != wheel.name:
                item.replace(cache / item.name)
        shutil.rmtree(partial, ignore_errors=True)
        stamp.write_text("ok\n")
    deps = sorted(p.name for p in cache.glob("*.whl"))
    return WheelSet(wheel, wheel_version(wheel), (wheel.name, *deps))


def _link(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        dst.symlink_to(src)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def publish(wheels: WheelSet, cache: Path, mirror: Path) -> Path:
    """Place the wheels in the mirror's wheel directory and write index.html + simple/ (PEP 503)."""
    target = mirror / WHEEL_DIR
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    entries: list[tuple[str, str]] = []
    for name in wheels.files:
        src = wheels.torch_wheel if wheels.torch_wheel and name == wheels.torch_wheel.name else cache / name
        assert src is not None
        _link(src, target / name)
        entries.append((name, _sha256(src)))
    links = "\n".join(f'<a href="{html.escape(n.replace("+", "%2B"))}#sha256={h}">{html.escape(n)}</a><br>'
                      for n, h in entries)
    (target / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n<h1>rocm-rel-7.0 (lab)</h1>\n{links}\n"
                                       "</body></html>\n")
    projects: dict[str, list[tuple[str, str]]] = {}
    for name, digest in entries:
        projects.setdefault(normalize(name.split("-")[0]), []).append((name, digest))
    simple = target / "simple"
    simple.mkdir()
    rows = "\n".join(f'<a href="{p}/">{p}</a><br>' for p in sorted(projects))
    (simple / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{rows}\n</body></html>\n")
    for project, files in projects.items():
        (simple / project).mkdir()
        rows = "\n".join(f'<a href="../../{html.escape(n.replace("+", "%2B"))}#sha256={h}">{html.escape(n)}</a><br>'
                         for n, h in files)
        (simple / project / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{rows}\n</body></html>\n")
    return target


def fake_old_torch(dest_dir: Path) -> Path:
    """A tiny pure-Python wheel that pip freezes as torch==1.13.1+rocm5.2 (what the 5.2-era venvs held)."""
    name = f"torch-{OLD_TORCH_VERSION}-py3-none-any.whl"
    dist = f"torch-{OLD_TORCH_VERSION}.dist-info"
    files = {
        "torch/__init__.py": f'"""rocm-provision lab stand-in for torch {OLD_TORCH_VERSION}."""\n'
                             f'__version__ = "{OLD_TORCH_VERSION}"\nfrom torch import cuda, version  # noqa\n',
        "torch/version.py": f'__version__ = "{OLD_TORCH_VERSION}"\nhip = "5.2.21151-afdc89f8"\ncuda = None\n',
        "torch/cuda/__init__.py": "def is_available():\n    return False\n\n\ndef device_count():\n    return 0\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: torch\nVersion: {OLD_TORCH_VERSION}\n"
                            "Summary: rocm-provision lab stand-in\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: rocm-provision-lab\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
        f"{dist}/top_level.txt": "torch\n",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        record = []
        for path, text in files.items():
            data = text.encode()
            archive.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(data)}")
        record.append(f"{dist}/RECORD,,")
        archive.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = dest_dir / name
    out.write_bytes(buffer.getvalue())
    return out
