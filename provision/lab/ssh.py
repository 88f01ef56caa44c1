"""The lab's throwaway SSH key, its known_hosts file, and waiting for a host's sshd."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from provision.lab import proc
from provision.lab.errors import LabError


def ensure_key(path: Path) -> str:
    """Create an ed25519 key without passphrase once; return the public key line."""
    if not path.exists():
        keygen = proc.require_tool("ssh-keygen", "openssh-client")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        proc.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "rocm-provision-lab", "-f", str(path)],
                 what="generating the lab's ssh key")
    return path.with_name(path.name + ".pub").read_text().strip()


def banner(address: str, port: int, timeout: float = 1.0) -> str | None:
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            data = sock.recv(256)
    except OSError:
        return None
    text = data.decode(errors="replace").strip()
    return text if text.startswith("SSH-") else None


def wait_for_sshd(address: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if banner(address, port):
            return
        time.sleep(0.1)
    raise LabError(f"sshd on {address}:{port} did not answer within {timeout:.0f} s")


def known_hosts_line(address: str, port: int, host_key: str) -> str:
    parts = host_key.split()
    if len(parts) < 2:
        raise LabError(f"unexpected ssh host key for {address}: {host_key!r}")
    return f"[{address}]:{port} {parts[0]} {parts[1]}"
