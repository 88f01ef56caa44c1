"""Who could change the code a venv runs (shared by rocm_venv_trust and rocm_venv_torch): every path someone
other than root could change, from the venv's parents down to every file, and the interpreter it resolves to."""

from __future__ import annotations

import os
import stat


def _who(st: os.stat_result) -> str:
    """'' when only root can change this entry (through its own permissions), else who else can."""
    if st.st_uid != 0:
        return f"owner uid {st.st_uid}"
    if stat.S_ISLNK(st.st_mode):
        return ""  # a link's own mode means nothing; its owner and its directory decide
    if st.st_mode & stat.S_IWOTH and not (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX):
        return "writable by others"
    if st.st_mode & stat.S_IWGRP and st.st_gid != 0:
        return f"writable by group gid {st.st_gid}"
    return ""


def _ancestors(path: str) -> list[str]:
    out = []
    current = os.path.dirname(os.path.abspath(path))
    while True:
        out.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            return out
        current = parent


def judge(venv: str) -> list[str]:
    """Paths someone other than root could change, with who."""
    found: list[str] = []

    def look(path: str) -> None:
        try:
            st = os.lstat(path)
        except OSError:
            return
        who = _who(st)
        if who:
            found.append(f"{path} ({who})")

    for path in [*_ancestors(venv), venv]:
        look(path)
    for folder, dirs, files in os.walk(venv):
        for name in dirs + files:
            look(os.path.join(folder, name))
    python = os.path.join(venv, "bin", "python")
    real = os.path.realpath(python)
    if os.path.commonpath([os.path.abspath(venv), real]) != os.path.abspath(venv):
        for path in [*_ancestors(real), real]:
            look(path)
    return found
