"""Live per-host progress: a Rich table on a terminal, one plain line per change otherwise."""

from __future__ import annotations

import sys
import threading
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table

from provision.runner import HostProgress

STATUS_STYLE = {"ok": "green", "running": "cyan", "failed": "red", "unreachable": "red", "pending": "dim"}


class ProgressView:
    def __init__(self, hosts: dict[str, HostProgress], title: str, console: Console | None = None) -> None:
        self.hosts = hosts
        self.title = title
        self.console = console or Console(stderr=True)
        self.tty = self.console.is_terminal and sys.stderr.isatty()
        self._live: Live | None = None
        self._last: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def table(self) -> Table:
        table = Table(title=self.title, expand=False)
        for col in ("host", "phase", "task", "elapsed", "status"):
            table.add_column(col, overflow="fold")
        for h in sorted(self.hosts.values(), key=lambda x: x.name):
            style = STATUS_STYLE.get(h.status, "")
            table.add_row(h.name, h.phase, h.task, f"{h.elapsed:5.1f}s", f"[{style}]{h.status}[/]")
        return table

    def update(self, host: HostProgress) -> None:
        if self._live is not None:
            self._live.update(self.table())
            return
        key = (host.phase, host.status)
        with self._lock:
            if self._last.get(host.name) == key:
                return
            self._last[host.name] = key
        self.console.print(f"{host.name}: {host.phase} {host.status}" + (f" - {host.message}" if host.message else ""),
                           markup=False, highlight=False)

    def __enter__(self) -> ProgressView:
        if self.tty:
            self._live = Live(self.table(), console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.update(self.table())
            self._live.__exit__(et, ev, tb)
