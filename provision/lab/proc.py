"""Run external commands; on failure raise LabError with the command and the last lines it printed."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from provision.lab.errors import LabError

TAIL_LINES = 25


def tail(text: str, lines: int = TAIL_LINES) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def require_tool(tool: str, package: str) -> str:
    """Return the tool's path or raise a LabError that names the apt command that installs it."""
    path = shutil.which(tool)
    if path is None:
        raise LabError(
            f"`{tool}` is not installed; the lab needs it. Install it with:\n"
            f"    apt-get update && apt-get install -y {package}\n"
            f"(or run .ci/setup-lab.sh as root to install everything the lab needs)"
        )
    return path


def run(
    args: Sequence[str | Path],
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    timeout: float | None = 600,
    check: bool = True,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `args`, capture its output, and raise LabError naming `what` failed (with its last lines)."""
    argv = [str(a) for a in args]
    try:
        proc = subprocess.run(
            argv,
            env=dict(env) if env is not None else None,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=cwd,
        )
    except FileNotFoundError as exc:
        raise LabError(f"{what} failed: {argv[0]} was not found ({exc})") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{what} failed: `{shlex.join(argv)}` did not finish within {timeout:.0f} s") from exc
    if check and proc.returncode != 0:
        output = tail((proc.stdout or "") + "\n" + (proc.stderr or ""))
        raise LabError(
            f"{what} failed: `{shlex.join(argv)}` exited with {proc.returncode}; its last lines:\n{output}"
        )
    return proc
