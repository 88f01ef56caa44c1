"""The lab's signing keys (no passphrase) and apt repository signing (InRelease + Release.gpg)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from provision.lab import proc
from provision.lab.errors import LabError


class Signer:
    def __init__(self, homedir: Path, uid: str) -> None:
        self.gpg = proc.require_tool("gpg", "gnupg")
        self.homedir = homedir
        self.uid = uid

    def _gpg(self, *args: str, what: str, input_text: str | None = None) -> str:
        base = [self.gpg, "--homedir", str(self.homedir), "--batch", "--yes", "--no-tty",
                "--pinentry-mode", "loopback", "--passphrase", ""]
        return proc.run([*base, *args], what=what, input_text=input_text, timeout=120).stdout

    def fingerprint(self) -> str | None:
        if not self.homedir.exists():
            return None
        out = proc.run([self.gpg, "--homedir", str(self.homedir), "--batch", "--with-colons",
                        "--list-secret-keys"], what="listing the lab's gpg keys", check=False).stdout
        for line in out.splitlines():
            if line.startswith("fpr:"):
                return line.split(":")[9]
        return None

    def ensure_key(self) -> str:
        """Return the key's 40-hex fingerprint, generating an ed25519 signing key the first time."""
        fpr = self.fingerprint()
        if fpr:
            return fpr
        self.homedir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.homedir, 0o700)
        self._gpg("--quick-generate-key", self.uid, "ed25519", "sign", "0", what=f"generating the gpg key {self.uid}")
        fpr = self.fingerprint()
        if not fpr:
            raise LabError(f"gpg did not create a key in {self.homedir}")
        return fpr

    def export_armored(self) -> str:
        return self._gpg("--armor", "--export", self.ensure_key(), what="exporting the lab key")

    def export_binary(self) -> bytes:
        """The public key as a binary keyring: what `gpg --dearmor` makes, what apt's signed-by takes."""
        fpr = self.ensure_key()
        done = subprocess.run([self.gpg, "--homedir", str(self.homedir), "--batch", "--export", fpr],
                              capture_output=True, check=False)
        if done.returncode != 0 or not done.stdout:
            raise LabError(f"exporting the lab key failed: {done.stderr.decode(errors='replace')[-500:]}")
        return done.stdout

    def sign_release(self, release: Path) -> None:
        fpr = self.ensure_key()
        self._gpg("--local-user", fpr, "--digest-algo", "SHA512", "--clearsign",
                  "--output", str(release.parent / "InRelease"), str(release), what=f"signing {release}")
        self._gpg("--local-user", fpr, "--digest-algo", "SHA512", "--armor", "--detach-sign",
                  "--output", str(release.parent / "Release.gpg"), str(release), what=f"signing {release}")

    def stop_agent(self) -> None:
        gpgconf = proc.require_tool("gpgconf", "gnupg")
        proc.run([gpgconf, "--homedir", str(self.homedir), "--kill", "all"], what="stopping gpg-agent", check=False)
