"""The lab's wheel directory in AMD's shape, and a PEP 503 index for the dependencies.

- `rocm/manylinux/rocm-rel-7.0/` is a plain directory listing (the mirror server's own, as repo.radeon.com's is)
  of exactly the pins' four files (provision/data/pins.yaml: names, versions, `linux_x86_64` platform tag), with the
  lab's Python tag: the lab hosts run Python 3.11 (Debian 12 userland), so `cp311` stands where AMD has `cp312`.
  torch is this machine's CPU torch wheel re-packaged under AMD's name and version (METADATA, torch/version.py,
  the dist-info directory and RECORD rewritten, and the ROCm build's pytorch-triton-rocm requirement added), so
  `torch.__version__` reads AMD's `2.8.0+rocm7.0.0.git64359f59`; its code is still the CPU build
  (`torch.version.hip` is None). torchvision, torchaudio and pytorch_triton_rocm are tiny stand-ins with AMD's
  names and versions and the Requires-Dist of the public wheels.
- `pypi/simple/` is a PEP 503 index of the dependencies (pip-downloaded once on the controller), where a fleet's
  dependency index (provision_pypi_index_url) would be.
And the fake torch 1.13 wheel for the old venvs."""

from __future__ import annotations

import base64
import contextlib
import glob
import hashlib
import html
import io
import os
import re
import shutil
import sys
import urllib.parse
import zipfile
from dataclasses import dataclass
from pathlib import Path

from provision import pins
from provision.lab import proc
from provision.lab.errors import LabError

ENV_TORCH_WHEEL = "PROVISION_LAB_TORCH_WHEEL"
DEFAULT_GLOB = "/opt/wheels/torch-*+cpu-cp311-cp311-*.whl"
WHEEL_DIR = "rocm/manylinux/rocm-rel-7.0"
PYPI_DIR = "pypi/simple"
LAB_PYTHON = "3.11"  # the lab hosts' python3 (Debian 12); AMD's set is cp312
OLD_TORCH_VERSION = "1.13.1+rocm5.2"
RECIPE = "2"  # bump when the re-packaging changes

# Requires-Dist of the public wheels (PyPI METADATA of torchvision, torchaudio 2.8.0 and triton 3.4.0); the ROCm
# torch build requires its triton (download.pytorch.org's and AMD's ROCm torch wheels carry this requirement).
STANDIN_REQUIRES = {
    "torchvision": ["numpy", "torch", "pillow!=8.3.*,>=5.3.0"],
    "torchaudio": ["torch"],
    "pytorch_triton_rocm": ["setuptools>=40.8.0"],
}
TORCH_EXTRA_REQUIRES = 'pytorch-triton-rocm=={triton}; platform_system == "Linux"'


@dataclass(frozen=True)
class WheelSet:
    torch_wheel: Path | None
    torch_version: str | None
    files: tuple[str, ...]            # the pinned files, in the wheel directory
    deps: tuple[str, ...] = ()        # the dependencies, in the simple index
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


def lab_file(pin_file: str, python: str = LAB_PYTHON) -> str:
    """The pin's file name (decoded) with the lab's Python tag in place of AMD's."""
    tag = "cp" + python.replace(".", "")
    return re.sub(r"-cp3\d+-cp3\d+-", f"-{tag}-{tag}-", urllib.parse.unquote(pin_file), count=1)


def _record_line(member: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{member},sha256={digest},{len(data)}"


def repackage_torch(source: Path, dest: Path, version: str, tag: str, triton: str) -> None:
    """Write the CPU torch wheel `source` as torch `version` with wheel tag `tag` to `dest`: METADATA's Version
    (plus the triton requirement), torch/version.py's __version__, the dist-info directory's name and WHEEL's Tag
    rewritten, RECORD rebuilt (unchanged files keep their recorded hashes, changed ones get new ones)."""
    with zipfile.ZipFile(source) as zin:
        old_info = next(n.split("/", 1)[0] for n in zin.namelist() if n.endswith(".dist-info/METADATA"))
        new_info = f"torch-{version}.dist-info"
        record = {line.split(",", 1)[0]: line for line in zin.read(f"{old_info}/RECORD").decode().splitlines()
                  if line.strip()}
        partial = dest.with_name(dest.name + ".part")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zout:
            lines: list[str] = []
            for info in zin.infolist():
                name = info.filename
                if name == f"{old_info}/RECORD":
                    continue
                target = new_info + name[len(old_info):] if name.startswith(old_info + "/") else name
                data = zin.read(name)
                changed = True
                if name == f"{old_info}/METADATA":
                    text = re.sub(r"(?m)^Version: .*$", f"Version: {version}", data.decode(), count=1)
                    text = text.replace("\nRequires-Dist: ", "\nRequires-Dist: "
                                        + TORCH_EXTRA_REQUIRES.format(triton=triton) + "\nRequires-Dist: ", 1)
                    data = text.encode()
                elif name == f"{old_info}/WHEEL":
                    data = re.sub(r"(?m)^Tag: .*$", f"Tag: {tag}", data.decode()).encode()
                elif name == "torch/version.py":
                    data = re.sub(r"(?m)^__version__ = .*$", f"__version__ = '{version}'", data.decode()).encode()
                else:
                    changed = False
                out = zipfile.ZipInfo(target, info.date_time)
                out.external_attr = info.external_attr
                out.compress_type = zipfile.ZIP_DEFLATED
                zout.writestr(out, data, compresslevel=1)
                old = record.get(name)
                lines.append(_record_line(target, data) if changed or old is None
                             else target + "," + old.split(",", 1)[1])
            lines.append(f"{new_info}/RECORD,,")
            zout.writestr(f"{new_info}/RECORD", "\n".join(lines) + "\n")
    partial.replace(dest)


def standin_wheel(dest: Path, requires: list[str]) -> None:
    """A tiny wheel named `dest.name` (AMD's name, version and tags) whose package says it is a lab stand-in."""
    name, version, py, abi, plat = dest.name[: -len(".whl")].split("-")
    info = f"{name}-{version}.dist-info"
    package = name.replace("pytorch_triton_rocm", "triton")
    files = {
        f"{package}/__init__.py": f'"""rocm-provision lab stand-in for {name} {version}."""\n'
                                  f"__version__ = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                            "Summary: rocm-provision lab stand-in (AMD's name and version, no code)\n"
                            + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: rocm-provision-lab\nRoot-Is-Purelib: false\n"
                         f"Tag: {py}-{abi}-{plat}\n",
        f"{info}/top_level.txt": f"{package}\n",
    }
    record = []
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, text in files.items():
            archive.writestr(member, text.encode())
            record.append(_record_line(member, text.encode()))
        record.append(f"{info}/RECORD,,")
        archive.writestr(f"{info}/RECORD", "\n".join(record) + "\n")


def gather(cache: Path) -> WheelSet:
    """Build the pinned files (cp311) and download their dependencies into `cache` once (pip, on the controller)."""
    wheel = find_torch_wheel()
    if wheel is None:
        return WheelSet(None, None, (), (), f"no torch wheel found ({ENV_TORCH_WHEEL} or {DEFAULT_GLOB}); "
                        "the wheel directory is empty")
    packages = {p["name"]: p for p in pins.torch()["packages"]}
    files = {name: lab_file(p["file"]) for name, p in packages.items()}
    stamp = cache / f".complete-{RECIPE}-{wheel.name}"
    pinned_dir, deps_dir = cache / "pinned", cache / "deps"
    if not stamp.exists():
        shutil.rmtree(cache, ignore_errors=True)
        pinned_dir.mkdir(parents=True)
        tag = "-".join(files["torch"][: -len(".whl")].split("-")[2:])
        repackage_torch(wheel, pinned_dir / files["torch"], packages["torch"]["version"], tag,
                        packages["pytorch_triton_rocm"]["version"])
        for name, requires in STANDIN_REQUIRES.items():
            standin_wheel(pinned_dir / files[name], requires)
        partial = cache / "partial"
        try:
            proc.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
                      "--dest", str(partial), *(str(pinned_dir / f) for f in files.values())],
                     what="gathering the pinned wheels' dependencies (pip download)", timeout=900)
        except LabError as exc:
            return WheelSet(wheel, packages["torch"]["version"], (), (), f"wheel directory incomplete: {exc}")
        deps_dir.mkdir()
        for item in partial.iterdir():
            if item.name not in files.values():
                item.replace(deps_dir / item.name)
        shutil.rmtree(partial, ignore_errors=True)
        stamp.write_text("ok\n")
    deps = sorted(p.name for p in deps_dir.glob("*.whl"))
    return WheelSet(wheel, packages["torch"]["version"], tuple(files.values()), tuple(deps))


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
    """Place the pinned files in the mirror's wheel directory (no index.html: the server lists the directory,
    as AMD's does) and the dependencies in a PEP 503 index at pypi/simple/."""
    target = mirror / WHEEL_DIR
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name in wheels.files:
        _link(cache / "pinned" / name, target / name)
    simple = mirror / PYPI_DIR
    shutil.rmtree(simple, ignore_errors=True)
    simple.mkdir(parents=True)
    projects: dict[str, list[tuple[str, str]]] = {}
    for name in wheels.deps:
        projects.setdefault(normalize(name.split("-")[0]), []).append((name, _sha256(cache / "deps" / name)))
    rows = "\n".join(f'<a href="{p}/">{p}</a><br>' for p in sorted(projects))
    (simple / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{rows}\n</body></html>\n")
    for project, entries in projects.items():
        (simple / project).mkdir()
        for name, _digest in entries:
            _link(cache / "deps" / name, simple / project / name)
        links = "\n".join(f'<a href="{html.escape(urllib.parse.quote(n))}#sha256={h}">{html.escape(n)}</a><br>'
                          for n, h in entries)
        (simple / project / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{links}\n</body></html>\n")
    with contextlib.suppress(FileNotFoundError):
        (target / "index.html").unlink()
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
