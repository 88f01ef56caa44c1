"""The lab's re-packaging of a CPU torch wheel under AMD's name and version (provision/lab/wheels.py), on a small
wheel laid out like PyPI's torch (torch/version.py, a dist-info with METADATA, WHEEL and RECORD): the result is a
valid wheel that pip installs and whose torch.__version__ and installed metadata read AMD's version."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import urllib.parse
import zipfile
from pathlib import Path

from provision import pins
from provision.lab import wheels

CPU_VERSION = "2.13.0+cpu"


def cpu_torch(path: Path) -> Path:
    info = f"torch-{CPU_VERSION}.dist-info"
    files = {
        "torch/__init__.py": "from torch.version import __version__ as __version__\n",
        "torch/version.py": f"__version__ = '{CPU_VERSION}'\ndebug = False\nhip = None\n",
        f"{info}/METADATA": f"Metadata-Version: 2.4\nName: torch\nVersion: {CPU_VERSION}\nRequires-Dist: filelock\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: setuptools\nRoot-Is-Purelib: false\n"
                         "Tag: cp311-cp311-manylinux_2_28_x86_64\n",
        f"{info}/licenses/LICENSE": "BSD\n",
    }
    record = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, text in files.items():
            archive.writestr(member, text)
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
            record.append(f"{member},sha256={digest},{len(text.encode())}")
        archive.writestr(f"{info}/RECORD", "\n".join([*record, f"{info}/RECORD,,"]) + "\n")
    return path


def test_repackaged_torch_installs_and_reads_amds_version(tmp_path: Path) -> None:
    torch_pin = next(p for p in pins.torch()["packages"] if p["name"] == "torch")
    triton = next(p for p in pins.torch()["packages"] if p["name"] == "pytorch_triton_rocm")
    name = wheels.lab_file(torch_pin["file"])
    # AMD's file name, only the Python tag is the lab's
    assert name == urllib.parse.unquote(torch_pin["file"]).replace("-cp312-cp312-", "-cp311-cp311-")
    dest = tmp_path / name
    wheels.repackage_torch(cpu_torch(tmp_path / "src.whl"), dest, torch_pin["version"], "cp311-cp311-linux_x86_64",
                           triton["version"])
    with zipfile.ZipFile(dest) as archive:
        names = archive.namelist()
        info = f"torch-{torch_pin['version']}.dist-info"
        assert f"{info}/METADATA" in names and not [n for n in names if CPU_VERSION in n]
        assert "Tag: cp311-cp311-linux_x86_64" in archive.read(f"{info}/WHEEL").decode()
        metadata = archive.read(f"{info}/METADATA").decode()
        assert f"Version: {torch_pin['version']}" in metadata
        assert f"Requires-Dist: pytorch-triton-rocm=={triton['version']}" in metadata
        for line in archive.read(f"{info}/RECORD").decode().splitlines():  # every hash is the member's own
            member, digest, size = line.rsplit(",", 2)
            if digest:
                data = archive.read(member)
                assert digest == "sha256=" + base64.urlsafe_b64encode(
                    hashlib.sha256(data).digest()).rstrip(b"=").decode() and int(size) == len(data), member
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target",
                    str(target), str(dest)], check=True, env=dict(os.environ, PIP_CONFIG_FILE=os.devnull))
    probe = ("import importlib.metadata as m, torch; print(torch.__version__, m.version('torch'))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path,
                         env=dict(os.environ, PYTHONPATH=str(target))).stdout.split()
    assert out == [torch_pin["version"], torch_pin["version"]]


def test_standins_carry_amds_names_and_the_public_requirements(tmp_path: Path) -> None:
    for pin in pins.torch()["packages"]:
        if pin["name"] == "torch":
            continue
        dest = tmp_path / wheels.lab_file(pin["file"])
        wheels.standin_wheel(dest, wheels.STANDIN_REQUIRES[pin["name"]])
        with zipfile.ZipFile(dest) as archive:
            metadata = archive.read(f"{pin['name']}-{pin['version']}.dist-info/METADATA").decode()
        assert f"Version: {pin['version']}" in metadata and "lab stand-in" in metadata
