#!/usr/bin/python
"""Fetch pinned wheel sets once into a cache on the controller: the pinned files by their exact names from a
directory listing (AMD's layout), their dependencies resolved by pip from a PEP 503 index, every sha256 recorded."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: torch_venv_wheel_fetch
short_description: Fetch each distinct pinned wheel set once into a cache (exact pinned files, resolved dependencies)
description:
  - >-
    For every set, reads the wheel directory C(index_url) as a plain directory listing (the layout of
    U(https://repo.radeon.com/rocm/manylinux/rocm-rel-7.0/)), takes each pinned wheel by its exact file name (the
    pin's C(file), with the pin's Python tag replaced by the set's when they differ; without C(file), the one
    wheel of that name and version whose tags fit the set's Python and platforms), downloads it, and checks a
    pinned sha256.
  - >-
    Then resolves the pins' dependencies with C(pip download --only-binary=:all: --platform P... --python-version
    X.Y --implementation cp --index-url PYPI --find-links <the pinned wheels>) into the same directory, and writes
    C(manifest.json) with every wheel's sha256, size and source. A set whose manifest is complete is not fetched
    again, so every host of a run (and later runs) gets the same bytes; every cached file is re-hashed before
    use, and a file whose sha256 differs from the manifest's fails that set and is not used.
  - >-
    Runs where the downloads should happen (normally C(delegate_to: localhost) with C(run_once)), with the
    interpreter that runs the module. Check mode downloads nothing.
  - >-
    Never fails for one set: a set's error is one line naming the file or URL, so each host fails alone.
options:
  sets:
    description: Wheel sets, each C({key, index_url, pypi_index_url, python_version, platforms, pins}); C(key)
      names the cache directory, C(pins) is a list of C({name, version, file?, sha256?}), C(platforms) a list of
      wheel platform tags (first the pins' own, e.g. C(linux_x86_64), then the dependencies', e.g.
      C(manylinux_2_28_x86_64)).
    type: list
    elements: dict
    required: true
  cache_dir:
    description: Cache root (C(~) is expanded); sets land in C(<cache_dir>/wheels/<key>).
    type: path
    required: true
  timeout:
    description: Network timeout in seconds (listing, downloads, pip's C(--timeout)).
    type: int
    default: 120
  retries:
    description: pip's C(--retries) for the dependency index.
    type: int
    default: 2
  index_username:
    description: User name for C(credentials_host) (given to pip through a temporary 0600 netrc, never argv).
    type: str
  index_password:
    description: Password for C(credentials_host).
    type: str
  credentials_host:
    description: The only host the credentials are sent to (the wheel index's and the dependency index's, when
      they are on it).
    type: str
  lock_file:
    description: The fleet's artifact lock file (C(rocm-provision.lock) beside the inventory). Every set fetched or
      taken from the cache is held to it (module_utils C(wheel_lock)); a file whose sha256 differs from the
      recorded one, or a set whose files differ from the recorded ones, fails that set, naming the file and both
      hashes; what is new is recorded (trust on first use). Unset, no lock file.
    type: path
  lock_update:
    description: Record the files as they are now, replacing what differs (on purpose, C(--update-lock)).
    type: bool
    default: false
  progress_file:
    description: JSON lines C({file, done, total, files_done, files_total, time}) are appended to this file while
      wheels download (C(done) counts the bytes of the wheel being downloaded, C(total) its size; a wheel's last
      line has C(done) = C(total) = its size; C(files_total) is null, as the pins' dependencies come along), for a
      progress bar.
    type: path
author:
  - rocm-provision developers
requirements:
  - pip (in the Python that runs the module)
notes:
  - Supports check mode; nothing is downloaded.
"""

EXAMPLES = r"""
- name: Download the pinned PyTorch wheel set for Python 3.12 hosts once into the controller's cache
  rocm.provision.torch_venv_wheel_fetch:
    sets:
      - key: rocm-rel-7.0-cp312
        index_url: https://repo.radeon.com/rocm/manylinux/rocm-rel-7.0/
        pypi_index_url: https://pypi.org/simple/
        python_version: "3.12"
        platforms: [linux_x86_64, manylinux_2_28_x86_64]
        pins:
          - name: torch
            version: 2.8.0+rocm7.0.0.git64359f59
            file: torch-2.8.0%2Brocm7.0.0.git64359f59-cp312-cp312-linux_x86_64.whl
    cache_dir: ~/.cache/rocm-provision
  register: wheels
  run_once: true
  delegate_to: localhost
  become: false

- name: Fail when the set could not be downloaded
  ansible.builtin.assert:
    that: wheels.sets['rocm-rel-7.0-cp312'].ok
    fail_msg: "{{ wheels.sets['rocm-rel-7.0-cp312'].error }}"
"""

RETURN = r"""
sets:
  description: By key, C({ok, dir, files, error, downloaded, python_tag_note}); C(files) is a list of C({file, name,
    version, sha256, size, path, source, url}) (C(source) is C(pin) or C(dependency)).
  returned: always
  type: dict
cache_dir:
  description: The cache root, C(~) expanded.
  returned: always
  type: str
lock_written:
  description: Whether the artifact lock file was written (something new recorded, or updated on purpose).
  returned: always
  type: bool
lock_notes:
  description: What the lock file recorded or changed, for the user.
  returned: always
  type: list
  elements: str
"""

import base64
import contextlib
import html.parser
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rocm.provision.plugins.module_utils.download import Progress, file_digest
from ansible_collections.rocm.provision.plugins.module_utils.wheel_lock import LockFileError, verify_sets


class FetchError(Exception):
    """One line that says what failed and names the file or URL."""


def sha256(path: str) -> str:
    return file_digest(path, "sha256")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_parts(filename: str) -> dict[str, Any] | None:
    """PEP 427 file name -> {name, version, python, abi, platform} (tag parts split on '.'), or None."""
    name = urllib.parse.unquote(filename)
    if not name.endswith(".whl"):
        return None
    parts = name[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):
        return None
    return {"name": parts[0], "version": parts[1], "python": set(parts[-3].split(".")),
            "abi": set(parts[-2].split(".")), "platform": set(parts[-1].split("."))}


def describe(directory: str, sources: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    out = []
    for name in sorted(os.listdir(directory)):
        parts = wheel_parts(name)
        if parts is None:
            continue
        path = os.path.join(directory, name)
        origin = sources.get(name, {"source": "dependency", "url": ""})
        out.append({"file": name, "name": parts["name"], "version": parts["version"], "sha256": sha256(path),
                    "size": os.path.getsize(path), "path": path, **origin})
    return out


class CacheTampered(Exception):
    """A cached wheel no longer has the sha256 recorded when it was downloaded."""


def cached(directory: str) -> list[dict[str, Any]] | None:
    """The cached set's files, each re-hashed now (a size can stay the same while the bytes change); None when
    the set is not (completely) cached. A file whose bytes changed since the download raises CacheTampered."""
    manifest = os.path.join(directory, "manifest.json")
    try:
        with open(manifest, encoding="utf-8") as handle:
            files = json.load(handle)["files"]
    except (OSError, ValueError, KeyError):
        return None
    changed = []
    for item in files:
        path = os.path.join(directory, item["file"])
        if not os.path.isfile(path):
            return None
        got = sha256(path)
        if got != item.get("sha256"):
            changed.append(f"{item['file']}: sha256 {got}, recorded {item.get('sha256')}")
        item["path"] = path
    if changed:
        raise CacheTampered(
            f"the controller's cached wheel set {directory} changed after it was downloaded: {'; '.join(changed)}. "
            "It was not used; find out who changed it, then delete that directory to download the set again")
    return list(files)


class Links(html.parser.HTMLParser):
    """The href of every <a> in a page (a directory listing, as Apache, nginx or python -m http.server write it)."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)


class Http:
    """GETs with a timeout and, for the credentials host only, basic auth."""

    def __init__(self, timeout: int, host: str | None, username: str | None, password: str | None) -> None:
        self.timeout = timeout
        self.host = host
        self.auth = None
        if username:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self.auth = f"Basic {token}"

    def open(self, url: str, what: str) -> Any:
        request = urllib.request.Request(url, headers={"User-Agent": "rocm-provision"})
        if self.auth and urllib.parse.urlsplit(url).hostname == self.host:
            request.add_header("Authorization", self.auth)
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            raise FetchError(f"{what} {url} answered HTTP {exc.code} {exc.reason}") from exc
        except TimeoutError as exc:
            raise FetchError(f"{what} {url} did not answer within {self.timeout} s") from exc
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise FetchError(f"{what} {url} did not answer within {self.timeout} s") from exc
            raise FetchError(f"{what} {url} cannot be reached: {reason}") from exc


def read_listing(http: Http, url: str) -> dict[str, str]:
    """{decoded wheel file name: absolute URL} of a directory listing page."""
    if not url.endswith("/"):
        url += "/"
    try:
        with http.open(url, "wheel index") as answer:
            body = answer.read(16 * 1024 * 1024)
    except TimeoutError as exc:
        raise FetchError(f"wheel index {url} did not answer within {http.timeout} s") from exc
    parser = Links()
    try:
        parser.feed(body.decode("utf-8", errors="replace"))
        parser.close()
    except (ValueError, AssertionError) as exc:
        raise FetchError(f"wheel index {url} is not a readable HTML directory listing ({exc})") from exc
    files: dict[str, str] = {}
    for href in parser.hrefs:
        absolute = urllib.parse.urljoin(url, href.split("#", 1)[0])
        name = urllib.parse.unquote(absolute.rsplit("/", 1)[-1])
        if name.endswith(".whl"):
            files[name] = absolute
    if not files:
        raise FetchError(f"wheel index {url} is not a directory listing of wheels (the page links no .whl file)")
    return files


MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_(\w+)$")
LEGACY = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}  # PEP 600's aliases


def expand_platforms(platforms: list[str]) -> list[str]:
    """pip takes --platform tags literally (it only widens manylinux2014/2010), so a glibc 2.28 target is given
    every manylinux tag it runs: manylinux_2_28 ... manylinux_2_5 and the legacy aliases (PEP 600)."""
    out: list[str] = []
    for platform in platforms:
        match = MANYLINUX.match(platform)
        if not match:
            out.append(platform)
            continue
        major, minor, arch = int(match.group(1)), int(match.group(2)), match.group(3)
        for lower in range(minor, 4, -1) if major == 2 else [minor]:
            out.append(f"manylinux_{major}_{lower}_{arch}")
            if major == 2 and lower in LEGACY and arch in ("x86_64", "i686"):
                out.append(f"{LEGACY[lower]}_{arch}")
    return list(dict.fromkeys(out))


def python_tag(version: str) -> str:
    return "cp" + version.replace(".", "")


def wanted_file(pin: dict[str, Any], python_version: str) -> str | None:
    """The pin's file name (decoded), its Python tag replaced by the set's (cp312 -> cp311 in the lab)."""
    if not pin.get("file"):
        return None
    name = urllib.parse.unquote(str(pin["file"]))
    tag = python_tag(python_version)
    return re.sub(r"-cp3\d+-cp3\d+-", f"-{tag}-{tag}-", name, count=1)


def pick(pin: dict[str, Any], listing: dict[str, str], python_version: str, platforms: list[str],
         index_url: str) -> str:
    exact = wanted_file(pin, python_version)
    if exact is not None:
        if exact in listing:
            return exact
        raise FetchError(f"{exact} is not in the wheel index {index_url} (it lists {len(listing)} wheels)")
    tag = python_tag(python_version)
    fits = [name for name, parts in ((n, wheel_parts(n)) for n in listing) if parts
            and normalize(parts["name"]) == normalize(str(pin["name"])) and parts["version"] == str(pin["version"])
            and (parts["python"] & {tag, "py3"}) and (parts["platform"] & {*platforms, "any"})]
    if not fits:
        raise FetchError(f"no wheel {pin['name']}=={pin['version']} for {tag} and {', '.join(platforms)} in the "
                         f"wheel index {index_url}")
    return sorted(fits)[0]


def download(http: Http, url: str, dest: str, progress_file: str | None, files_done: int) -> None:
    name = os.path.basename(dest)
    done = 0
    last = 0.0
    with http.open(url, "wheel") as answer, open(dest + ".part", "wb") as handle:
        total = int(answer.headers.get("Content-Length") or 0) or None
        while True:
            try:
                block = answer.read(1 << 20)
            except TimeoutError as exc:
                raise FetchError(f"wheel {url} stopped arriving (no data for {http.timeout} s)") from exc
            if not block:
                break
            handle.write(block)
            done += len(block)
            if progress_file and time.time() - last >= 0.5:
                last = time.time()
                progress_line(progress_file, name, done, total, files_done)
    if total is not None and done != total:
        raise FetchError(f"wheel {url} ended after {done} of {total} bytes")
    os.replace(dest + ".part", dest)
    if progress_file:
        progress_line(progress_file, name, done, done, files_done)


def progress_line(path: str, name: str, done: int, total: int | None, files_done: int) -> None:
    line = {"file": name, "done": done, "total": total, "files_done": files_done, "files_total": None,
            "time": time.time()}
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")


# pip's "  Downloading URL (12.3 MB)" line (printed whether or not its own progress bar is on)
DOWNLOADING = re.compile(r"^\s*Downloading (\S+?)(?: \((\d+(?:\.\d+)?) (bytes|kB|MB|GB)\))?\s*$")
UNITS = {"bytes": 1, "kB": 1000, "MB": 1000**2, "GB": 1000**3}


class PipProgress:
    """Follows a running `pip download`: the wheel it announced last, and how much of it sits in pip's temp dir.
    pip fetches one file at a time, so a new announcement means the one before is whole."""

    def __init__(self, path: str, tmp: str, dest: str) -> None:
        self.out = Progress(path, None)  # this class paces its own writes (watch): each one is forced
        self.tmp = tmp
        self.dest = dest
        self.file = ""
        self.total: int | None = None
        self.files_done = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def line(self, text: str) -> None:
        match = DOWNLOADING.match(text)
        if not match:
            return
        with self.lock:
            if self.file:
                self._write(finished=True)
                self.files_done += 1
            self.file = urllib.parse.unquote(match.group(1).rsplit("/", 1)[-1])
            size = match.group(2)
            self.total = int(float(size) * UNITS[match.group(3)]) if size else None

    def received(self) -> int:
        best = 0
        with contextlib.suppress(OSError):  # pip copies a finished wheel into dest
            best = os.path.getsize(os.path.join(self.dest, self.file))
        for folder, _dirs, names in os.walk(self.tmp):
            for name in names:
                if urllib.parse.unquote(name) == self.file:
                    with contextlib.suppress(OSError):  # pip may move it away meanwhile
                        best = max(best, os.path.getsize(os.path.join(folder, name)))
        return best

    def write(self, finished: bool = False) -> None:
        with self.lock:
            self._write(finished)

    def _write(self, finished: bool) -> None:
        if not self.file:
            return
        done = self.received()
        # pip announces a rounded size; once the file is whole, its own size is the total
        total = done if finished else max(self.total, done) if self.total is not None else None
        # how many files pip will fetch is known only at the end (dependencies of the pins come along): files_total None
        self.out.files_done = self.files_done
        self.out.write(self.file, done, total, force=True)

    def watch(self) -> None:
        while not self.stop.wait(0.5):
            self.write()


def run_pip(argv: list[str], env: dict[str, str], progress_file: str | None, dest: str,
            files_done: int = 0) -> tuple[int, str]:
    """Run pip; with a progress file, follow its output and temp dir while it downloads. Returns (exit, output)."""
    if not progress_file:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
        return done.returncode, done.stdout + done.stderr
    tmp = dest + ".tmp"  # pip's own temp dir (TMPDIR) while following it: the progress reads it
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp, mode=0o700)
    progress = PipProgress(progress_file, tmp, dest)
    progress.files_done = files_done
    watcher = threading.Thread(target=progress.watch, daemon=True)
    lines: list[str] = []
    try:
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=dict(env, TMPDIR=tmp)) as pip:
            watcher.start()
            assert pip.stdout is not None
            for text in pip.stdout:
                lines.append(text)
                progress.line(text)
            code = pip.wait()
        progress.stop.set()
        watcher.join()
        if code == 0:
            progress.write(finished=True)
    finally:
        progress.stop.set()
        shutil.rmtree(tmp, ignore_errors=True)
    return code, "".join(lines)


PIP_ERROR = re.compile(r"^ERROR: (.*)$")
# pip -vv: an index page it could not read ("timed out", "404 Client Error ...", "connection error: ...")
PIP_FETCH_FAILED = re.compile(r"Could not fetch URL (\S+?):? (.*?) - skipping")


def pip_reason(output: str, pypi: str) -> str:
    """pip's first ERROR line, plus the first index page it could not read, as one line."""
    lines = output.strip().splitlines()
    errors = [m.group(1).strip() for m in (PIP_ERROR.match(line) for line in lines) if m]
    first = errors[0] if errors else (lines[-1].strip() if lines else "no output")
    failed = [m for m in (PIP_FETCH_FAILED.search(line) for line in lines) if m]
    where = f" ({failed[0].group(1)}: {failed[0].group(2).strip()})" if failed else ""
    return f"resolving the pinned wheels' dependencies from {pypi} failed: {first}{where}"


def fetch(spec: dict[str, Any], root: str, timeout: int, check: bool, netrc: str, http: Http,
          progress_file: str | None = None, retries: int = 2) -> dict[str, Any]:
    key = str(spec["key"])
    directory = os.path.join(root, "wheels", key)
    try:
        files = cached(directory)
    except CacheTampered as exc:
        return {"ok": False, "dir": directory, "files": [], "downloaded": False, "error": str(exc)}
    pins_python = str(spec.get("pins_python") or spec["python_version"])
    note = ""
    if pins_python != str(spec["python_version"]):
        tag = python_tag(str(spec["python_version"]))
        note = (f"the pinned files' Python tag {python_tag(pins_python)} was replaced by {tag}: the set is for "
                f"Python {spec['python_version']} (provision_torch_python), while AMD's files need Python "
                f"{pins_python}; names, versions, platform tags and the staging path are the pins'")
    if files is not None:
        return {"ok": True, "dir": directory, "files": files, "downloaded": False, "error": "", "python_tag_note": note}
    if check:
        return {"ok": True, "dir": directory, "files": [], "downloaded": True, "error": "",
                "note": "check mode: would download", "python_tag_note": note}
    partial = directory + ".part"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial, mode=0o755)
    index_url = str(spec["index_url"])
    pypi = str(spec["pypi_index_url"])
    platforms = [str(p) for p in spec["platforms"]]
    try:
        listing = read_listing(http, index_url)
        sources: dict[str, dict[str, str]] = {}
        for number, pin in enumerate(spec["pins"]):
            name = pick(pin, listing, str(spec["python_version"]), platforms, index_url)
            dest = os.path.join(partial, name)
            download(http, listing[name], dest, progress_file, number)
            sources[name] = {"source": "pin", "url": listing[name]}
            pinned = str(pin.get("sha256") or "").lower()
            if pinned:
                got = sha256(dest)
                if got != pinned:
                    raise FetchError(f"{name}: sha256 {got}, pinned {pinned} (from {listing[name]})")
        requirements = os.path.join(partial, "requirements.txt")
        with open(requirements, "w", encoding="utf-8") as handle:
            handle.write("".join(f"{pin['name']}=={pin['version']}\n" for pin in spec["pins"]))
        argv = [sys.executable, "-m", "pip", "download", "--only-binary=:all:"]
        for platform in expand_platforms(platforms):
            argv += ["--platform", platform]
        argv += ["--python-version", str(spec["python_version"]), "--implementation", "cp",
                 "--index-url", pypi, "--find-links", partial, "--progress-bar", "off", "--timeout", str(timeout),
                 "--retries", str(retries), "--disable-pip-version-check", "--no-input", "-vv", "--dest", partial,
                 "-r", requirements]
        env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, NETRC=netrc)
        for var in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX"):
            env.pop(var, None)  # the controller's own pip settings must not add or hide an index
        code, output = run_pip(argv, env, progress_file, partial, len(spec["pins"]))
        if code != 0:
            raise FetchError(pip_reason(output, pypi))
        os.unlink(requirements)
    except (FetchError, OSError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        reason = str(exc) if isinstance(exc, FetchError) else f"{exc.__class__.__name__}: {exc}"
        return {"ok": False, "dir": directory, "files": [], "downloaded": False, "error": reason,
                "python_tag_note": note}
    files = describe(partial, sources)
    with open(os.path.join(partial, "manifest.json"), "w", encoding="utf-8") as handle:
        json.dump({"index_url": index_url, "pypi_index_url": pypi, "python_version": spec["python_version"],
                   "platforms": platforms, "pins": spec["pins"], "python_tag_note": note,
                   "files": [{k: v for k, v in f.items() if k != "path"} for f in files]}, handle, indent=2)
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(partial, directory)
    for item in files:
        item["path"] = os.path.join(directory, item["file"])
    return {"ok": True, "dir": directory, "files": files, "downloaded": True, "error": "", "python_tag_note": note}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "sets": {"type": "list", "elements": "dict", "required": True},
            "cache_dir": {"type": "path", "required": True},
            "timeout": {"type": "int", "default": 120},
            "retries": {"type": "int", "default": 2},
            "index_username": {"type": "str"},
            "index_password": {"type": "str", "no_log": True},
            "credentials_host": {"type": "str"},
            "progress_file": {"type": "path"},
            "lock_file": {"type": "path"},
            "lock_update": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    params = module.params
    root = os.path.expanduser(params["cache_dir"])
    results: dict[str, Any] = {}
    netrc = os.devnull
    host = params["credentials_host"]
    if params["index_username"] and host:
        fd, netrc = tempfile.mkstemp(prefix="torch-venv-netrc-")
        with os.fdopen(fd, "w") as handle:  # mkstemp: mode 0600
            handle.write(f"machine {host} login {params['index_username']} password {params['index_password'] or ''}\n")
        module.add_cleanup_file(netrc)
    http = Http(params["timeout"], host, params["index_username"], params["index_password"])
    for spec in params["sets"]:
        missing = [k for k in ("key", "index_url", "pypi_index_url", "python_version", "platforms", "pins")
                   if not spec.get(k)]
        if missing:
            module.fail_json(msg=f"wheel set {spec.get('key')} lacks {', '.join(missing)}")
        if spec["key"] in results:
            continue
        try:
            results[spec["key"]] = fetch(spec, root, params["timeout"], module.check_mode, netrc, http,
                                         params["progress_file"], params["retries"])
        except OSError as exc:
            results[spec["key"]] = {"ok": False, "dir": "", "files": [], "downloaded": False,
                                    "error": f"{exc.__class__.__name__}: {exc}"}
    lock_written, lock_notes = False, []
    if module.params["lock_file"]:
        specs = {str(spec["key"]): spec for spec in module.params["sets"]}
        try:
            lock_written, lock_notes = verify_sets(module.params["lock_file"], specs, results,
                                                   update=module.params["lock_update"], check_mode=module.check_mode)
        except LockFileError as exc:
            module.fail_json(msg=f"{exc}. Nothing was removed.", sets=results)
        for result in results.values():
            if result.get("lock_mismatch") and result.get("downloaded") and not module.check_mode:
                shutil.rmtree(result["dir"], ignore_errors=True)  # fetch it again next time, not these bytes
    module.exit_json(changed=any(r["downloaded"] for r in results.values()), sets=results, cache_dir=root,
                     lock_file=module.params["lock_file"], lock_written=lock_written, lock_notes=lock_notes)


if __name__ == "__main__":
    main()
