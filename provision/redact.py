"""Secrets out of every message, log line and report: credentials in URLs (`scheme://user:password@host`) and
any value of a secret inventory variable the run knows about. One function, used wherever text leaves the
program (CLI messages, inventory problems, run reports, the runner's per-host messages)."""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
# scheme://user:password@ (also a bare password `scheme://password@`); user and password stop at the
# characters RFC 3986 does not allow there unencoded.
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,30}://)([^\s/?#@'\"]{1,1024})@")
_known: set[str] = set()


def remember(*secrets: object) -> None:
    """Values to mask wherever they appear (a mirror password read from the inventory)."""
    for secret in secrets:
        text = secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret
        if isinstance(text, str) and len(text) >= 4:
            _known.add(text)


def _userinfo(match: re.Match[str]) -> str:
    user, colon, _password = match.group(2).partition(":")
    return f"{match.group(1)}{user}:{MASK}@" if colon else f"{match.group(1)}{MASK}@"


def text(value: str) -> str:
    """`value` with URL credentials and remembered secrets masked."""
    out = _URL_CREDENTIALS.sub(_userinfo, value)
    for secret in sorted(_known, key=len, reverse=True):
        if secret in out:
            out = out.replace(secret, MASK)
    return out


def deep(value: Any) -> Any:
    """`text` applied to every string of a JSON-like structure (keys included)."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return {deep(k) if isinstance(k, str) else k: deep(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [deep(v) for v in value]
    return value
