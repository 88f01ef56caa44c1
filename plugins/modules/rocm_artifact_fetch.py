#!/usr/bin/python
"""Download package files once into a content-addressed cache on the controller (resume, checksum, retries)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rocm_artifact_fetch
short_description: Download artifacts once into a content-addressed cache (HTTP Range resume, checksum, retries)
description:
  - Downloads each artifact (a URL with its checksum, as C(apt-get install --print-uris) prints them) into
    C(cache_dir/<algo>/<hex>), once for the whole fleet. A file already in the cache is checked and kept.
  - An interrupted download leaves C(<hex>.part) behind and is resumed with an HTTP Range request; a server that
    ignores Range starts the file again.
  - A file whose checksum differs from the expected one is deleted and retried; after the last try the artifact is
    reported with a message naming the URL, the expected and the received checksum.
  - Runs where the files should land, normally on the controller (C(delegate_to) C(localhost) with C(run_once)).
author:
  - rocm-provision developers
requirements:
  - requests (in the Python that runs the module)
notes:
  - Supports check mode; nothing is downloaded, the result says what would be.
  - Two runs sharing one cache fetch each file once (a lock file per artifact).
options:
  artifacts:
    description:
      - Artifacts to fetch, each C({url, checksum, size?, filename?}); C(checksum) is C(ALGO:hex)
        (SHA256, SHA512, SHA1 or MD5Sum, as apt prints them).
    type: list
    elements: dict
    required: true
  cache_dir:
    description: Cache root; files land in C(<cache_dir>/<algo>/<hex>). C(~) is expanded.
    type: path
    required: true
  retries:
    description: Tries per artifact (network errors and checksum mismatches).
    type: int
    default: 3
  timeout:
    description: Seconds to wait for the server (connect and each read).
    type: int
    default: 60
  url_username:
    description: User name for HTTP basic authentication (a repository that needs credentials).
    type: str
  url_password:
    description: Password for HTTP basic authentication.
    type: str
  progress_file:
    description:
      - When set, JSON lines C({"done", "total", "file", "files_done", "files_total", "time"}) are appended
        while downloading, for a progress bar.
    type: path
  fail_on_error:
    description:
      - Fail the task when an artifact cannot be fetched. C(false) reports the errors per artifact in
        C(errors), so each host can fail alone for the artifacts it needs.
    type: bool
    default: true
"""

EXAMPLES = r"""
# rocm_packages: what `apt-get install --print-uris` and the repository's Packages index say, e.g.
#   - url: https://repo.radeon.com/rocm/apt/5.2/pool/main/r/rocm-core/rocm-core_5.2.0.50200-65_amd64.deb
#     checksum: "SHA256:<the SHA256 field of its Packages entry>"
#     size: <its Size field>
- name: Download the package files once for the whole batch into the controller's cache
  rocm.provision.rocm_artifact_fetch:
    artifacts: "{{ rocm_packages }}"
    cache_dir: ~/.cache/rocm-provision/artifacts
    progress_file: /tmp/rocm-download.jsonl
    fail_on_error: false
  register: fetched
  run_once: true
  delegate_to: localhost
  become: false

- name: Fail the hosts whose packages could not be fetched
  ansible.builtin.assert:
    that: fetched.errors | length == 0
    fail_msg: "{{ fetched.errors.values() | join('; ') }}"
"""

RETURN = r"""
paths:
  description: Cache path of every artifact that is in the cache, by checksum.
  returned: always
  type: dict
  sample: {"SHA256:<hex>": "/home/admin/.cache/rocm-provision/artifacts/sha256/<hex>"}
errors:
  description: The error message of every artifact that could not be fetched, by checksum.
  returned: always
  type: dict
  sample: {"SHA256:<hex>": "https://repo.radeon.com/rocm/apt/7.0/pool/main/...: HTTP 404 Not Found (after 3 tries)"}
downloaded:
  description: Checksums downloaded by this run (would be downloaded, in check mode).
  returned: always
  type: list
  elements: str
downloaded_bytes:
  description: Bytes received from the servers by this run.
  returned: always
  type: int
cached:
  description: How many artifacts were already in the cache.
  returned: always
  type: int
cache_dir:
  description: The cache root, C(~) expanded.
  returned: always
  type: str
"""

import fcntl
import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.rocm.provision.plugins.module_utils.download import (
    CHUNK,
    Progress,
    TryAgain,
    file_digest,
    retry,
)

try:
    import requests
    HAS_REQUESTS = True
except ImportError:  # pragma: no cover - reported by the module
    HAS_REQUESTS = False

ALGOS = {"sha256": "sha256", "sha512": "sha512", "sha1": "sha1", "md5sum": "md5", "md5": "md5"}


class FetchError(Exception):
    """One artifact could not be fetched; the message says which and why."""


def split_checksum(checksum: str) -> tuple[str, str]:
    algo, _, hexdigest = checksum.partition(":")
    key = algo.strip().lower()
    if key not in ALGOS or not hexdigest or any(c not in "0123456789abcdefABCDEF" for c in hexdigest):
        raise FetchError(f"checksum {checksum!r} is not ALGO:hex with ALGO one of SHA256, SHA512, SHA1, MD5Sum")
    return ALGOS[key], hexdigest.lower()


def download(session: Any, url: str, part: str, size: int | None, timeout: int, progress: Progress,
             name: str) -> int:
    """Fetch url into part (resuming what is there); returns the bytes received."""
    have = os.path.getsize(part) if os.path.exists(part) else 0
    headers = {"Range": f"bytes={have}-"} if have and (size is None or have < size) else {}
    if have and size is not None and have >= size:
        return 0  # complete already; the checksum decides
    received = 0
    with session.get(url, headers=headers, stream=True, timeout=timeout) as response:
        if response.status_code == 416:  # the part is not a prefix of this file: start again
            os.unlink(part)
            return download(session, url, part, size, timeout, progress, name)
        if response.status_code not in (200, 206):
            raise FetchError(f"{url}: HTTP {response.status_code} {response.reason}")
        mode = "ab" if response.status_code == 206 and have else "wb"
        done = have if mode == "ab" else 0
        total = size if size is not None else (int(response.headers.get("Content-Length", 0)) + done or None)
        with open(part, mode) as handle:
            for block in response.iter_content(CHUNK):
                handle.write(block)
                received += len(block)
                done += len(block)
                progress.write(name, done, total)
        progress.write(name, done, total, force=True)
    return received


def fetch_one(session: Any, item: dict[str, Any], cache_dir: str, retries: int, timeout: int,
              progress: Progress) -> tuple[str, int]:
    """Returns (cache path, bytes received); raises FetchError."""
    url = str(item["url"])
    algo, expected = split_checksum(str(item["checksum"]))
    size = int(item["size"]) if item.get("size") not in (None, "") else None
    name = str(item.get("filename") or url.rsplit("/", 1)[-1])
    directory = os.path.join(cache_dir, algo)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    final = os.path.join(directory, expected)
    part = final + ".part"
    with open(final + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs sharing the cache fetch a file once
        if os.path.exists(final):
            if file_digest(final, algo) == expected:
                return final, 0
            os.unlink(final)  # damaged in the cache: fetch it again
        received = 0

        def attempt(_n: int) -> tuple[str, int]:
            nonlocal received
            received += download(session, url, part, size, timeout, progress, name)
            got = file_digest(part, algo)
            if got == expected:
                os.chmod(part, 0o644)
                os.replace(part, final)
                return final, received
            os.unlink(part)
            raise TryAgain(f"{url}: {algo} mismatch: expected {expected}, got {got} "
                           f"({os.path.basename(name)}); the file was deleted")

        try:
            return retry(attempt, retries, (requests.RequestException,), label=f"{url}: ")
        except TryAgain as exc:
            raise FetchError(str(exc)) from None


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "artifacts": {"type": "list", "elements": "dict", "required": True},
            "cache_dir": {"type": "path", "required": True},
            "retries": {"type": "int", "default": 3},
            "timeout": {"type": "int", "default": 60},
            "url_username": {"type": "str"},
            "url_password": {"type": "str", "no_log": True},
            "progress_file": {"type": "path"},
            "fail_on_error": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    if not HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib("requests"))
    params = module.params
    cache_dir = os.path.expanduser(params["cache_dir"])
    paths: dict[str, str] = {}
    errors: dict[str, str] = {}
    downloaded: list[str] = []
    cached = 0
    total_bytes = 0
    unique: dict[str, dict[str, Any]] = {}
    for item in params["artifacts"]:
        if not item.get("url") or not item.get("checksum"):
            module.fail_json(msg=f"every artifact needs url and checksum: {item}")
        unique.setdefault(str(item["checksum"]), item)
    progress = Progress(params["progress_file"], len(unique))
    session = requests.Session()
    if params["url_username"]:
        session.auth = (params["url_username"], params["url_password"] or "")
    for checksum, item in unique.items():
        try:
            algo, hexdigest = split_checksum(checksum)
        except FetchError as exc:
            errors[checksum] = str(exc)
            continue
        final = os.path.join(cache_dir, algo, hexdigest)
        if module.check_mode:
            if os.path.exists(final):
                paths[checksum] = final
                cached += 1
            else:
                downloaded.append(checksum)
            continue
        try:
            path, received = fetch_one(session, item, cache_dir, params["retries"], params["timeout"], progress)
        except (FetchError, OSError) as exc:
            errors[checksum] = str(exc)
            continue
        paths[checksum] = path
        total_bytes += received
        if received:
            downloaded.append(checksum)
        else:
            cached += 1
        progress.files_done += 1
    result = {"changed": bool(downloaded), "paths": paths, "errors": errors, "downloaded": downloaded,
              "downloaded_bytes": total_bytes, "cached": cached, "cache_dir": cache_dir}
    if errors and params["fail_on_error"]:
        module.fail_json(msg="could not fetch into the artifact cache: " + "; ".join(errors.values()), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
