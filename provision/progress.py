"""Live per-host progress: a Rich table on a terminal, one plain line per change otherwise.

While the controller downloads into its artifact cache (ROCm packages, the wheel set), the modules append JSON
lines to a progress file (`provision_progress_file`); the view follows it and shows a progress bar under the
table, or a plain line every few seconds when stderr is not a terminal.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from provision.runner import HostProgress

STATUS_STYLE = {"ok": "green", "running": "cyan", "failed": "red", "unreachable": "red", "pending": "dim"}
PLAIN_EVERY_S = 10.0  # without a terminal, a download line at most this often


@dataclass
class Download:
    """The newest line of a download progress file."""

    file: str
    done: int
    total: int | None
    files_done: int
    files_total: int | None
    time: float

    @property
    def complete(self) -> bool:
        return self.total is not None and self.done >= self.total

    def describe(self) -> str:
        size = f"{_mb(self.done)} of {_mb(self.total)} MB" if self.total else f"{_mb(self.done)} MB"
        percent = f"{100 * self.done // self.total}% " if self.total else ""
        if self.files_total:
            count = f", file {min(self.files_done + 1, self.files_total)} of {self.files_total}"
        else:  # a wheel set: how many files come with the pins is known only at the end
            count = f", file {self.files_done + 1}"
        return f"controller download: {self.file} {percent}({size}{count})"


def _mb(n: int | None) -> str:
    return f"{(n or 0) / 1e6:,.1f}"


class DownloadFollower:
    """Reads a progress file's new lines; `latest` is the newest well-formed one (or None before any)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = ""
        self.latest: Download | None = None

    def poll(self) -> Download | None:
        try:
            with self.path.open(encoding="utf-8") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
                self._offset = handle.tell()
        except OSError:
            return self.latest
        lines = (self._partial + chunk).split("\n")
        self._partial = lines.pop()  # a line still being written
        for line in lines:
            try:
                raw = json.loads(line)
                self.latest = Download(str(raw["file"]), int(raw["done"]),
                                       None if raw.get("total") is None else int(raw["total"]),
                                       int(raw.get("files_done") or 0),
                                       None if raw.get("files_total") is None else int(raw["files_total"]),
                                       float(raw.get("time") or time.time()))
            except (ValueError, KeyError, TypeError):
                continue
        return self.latest


class ProgressView:
    def __init__(self, hosts: dict[str, HostProgress], title: str, console: Console | None = None,
                 downloads: Path | None = None) -> None:
        self.hosts = hosts
        self.title = title
        self.console = console or Console(stderr=True, emoji=False)
        self.tty = self.console.is_terminal and sys.stderr.isatty()
        self._live: Live | None = None
        self._last: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()
        self._downloads = DownloadFollower(downloads) if downloads else None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._printed: tuple[str, int, float] = ("", -1, 0.0)  # file, done, when: the last plain download line

    def table(self) -> Table:
        table = Table(title=self.title, expand=False)
        for col in ("host", "phase", "task", "elapsed", "status"):
            table.add_column(col, overflow="fold")
        for h in sorted(self.hosts.values(), key=lambda x: x.name):
            style = STATUS_STYLE.get(h.status, "")
            # host and task names come from the inventory and the playbooks: text, never markup
            table.add_row(Text(h.name), Text(h.phase), Text(h.task), f"{h.elapsed:5.1f}s", f"[{style}]{h.status}[/]")
        return table

    def download_line(self) -> RenderableType | None:
        latest = self._downloads.poll() if self._downloads else None
        if latest is None or (latest.complete and time.time() - latest.time > 5):
            return None
        grid = Table.grid(padding=(0, 1))
        grid.add_row(ProgressBar(total=latest.total, completed=latest.done, width=30), latest.describe())
        return grid

    def __rich__(self) -> RenderableType:
        line = self.download_line()
        return Group(self.table(), line) if line is not None else self.table()

    def update(self, host: HostProgress) -> None:
        if self._live is not None:
            self._live.refresh()
            return
        key = (host.phase, host.status)
        with self._lock:
            if self._last.get(host.name) == key:
                return
            self._last[host.name] = key
        from provision.redact import text as redact

        self.console.print(redact(f"{host.name}: {host.phase} {host.status}"
                                  + (f" - {host.message}" if host.message else "")), markup=False, highlight=False)

    def print_download(self) -> None:
        """Without a terminal: the first download line, then one every 10 s while the download moves on."""
        latest = self._downloads.poll() if self._downloads else None
        if latest is None:
            return
        with self._lock:
            file, done, when = self._printed
            now = time.monotonic()
            if file and (now - when < PLAIN_EVERY_S or (latest.file, latest.done) == (file, done)):
                return
            self._printed = (latest.file, latest.done, now)
        self.console.print(latest.describe(), markup=False, highlight=False)

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            self.print_download()

    def __enter__(self) -> ProgressView:
        if self.tty:
            self._live = Live(self, console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        elif self._downloads is not None:
            self._watcher = threading.Thread(target=self._watch, name="download-progress", daemon=True)
            self._watcher.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
            self.print_download()  # where the download ended, if the last line did not say it yet
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(et, ev, tb)
