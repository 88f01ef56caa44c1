"""Shared by the collection's controller-side download modules (rocm_artifact_fetch, torch_venv_wheel_fetch):
the JSON-line progress file that `provision upgrade` turns into a progress bar, file digests, and the retry loop.

Modules import it the Ansible way:
    from ansible_collections.rocm.provision.plugins.module_utils.download import Progress, file_digest, retry
Standard library only."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import TypeVar

CHUNK = 1 << 20
T = TypeVar("T")


class Progress:
    """Appends JSON lines `{file, done, total, files_done, files_total, time}` to `path` (nothing when `path` is
    empty): at most one line per `interval` seconds, unless forced (a file's last line). `files_total` None: the
    number of files is not known in advance (pip brings the pins' dependencies along)."""

    def __init__(self, path: str | None, files_total: int | None, interval: float = 0.5) -> None:
        self.path = path
        self.files_total = files_total
        self.files_done = 0
        self.interval = interval
        self.last = 0.0

    def write(self, name: str, done: int, total: int | None, force: bool = False) -> None:
        if not self.path:
            return
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        line = {"file": name, "done": done, "total": total, "files_done": self.files_done,
                "files_total": self.files_total, "time": time.time()}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")


def file_digest(path: str, algo: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.new(algo)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class TryAgain(Exception):
    """An attempt failed in a way another try may fix (e.g. a checksum mismatch after a cut connection); the message
    says what happened. `retry` raises it with the last failure once the tries are used up."""


def retry(attempt: Callable[[int], T], tries: int, transient: tuple[type[BaseException], ...] = (), *,
          label: str = "", pause: Callable[[int], float] = lambda n: min(2.0 ** n, 10.0),
          sleep: Callable[[float], None] = time.sleep) -> T:
    """`attempt(n)` for n = 1..tries until one returns. An attempt that raises TryAgain is tried again at once; one
    that raises a `transient` exception (a network error) after `pause(n)` seconds. When every try failed, raises
    TryAgain with the last failure (prefixed by `label`, e.g. the URL) and "(after N tries)"."""
    tries = max(1, int(tries))
    last = ""
    for n in range(1, tries + 1):
        try:
            return attempt(n)
        except TryAgain as exc:
            last = str(exc)
        except transient as exc:
            last = f"{label}{exc.__class__.__name__}: {exc}"
            if n < tries:
                sleep(pause(n))
    raise TryAgain(f"{last} (after {tries} tries)")
