"""Static checks over everything the project ships or documents: no unauthenticated repository, no
`curl | sh`, no certificate or signature checks turned off, and no shell in the roles and playbooks
where a templated value could be parsed as shell (issue: faults, bad input and attacks)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCANNED = ["roles", "playbooks", "provision", "scripts", "molecule", "examples", "docs", "plugins", "README.md",
           "inventory.example", "ansible.cfg", "bench"]
SUFFIXES = {".py", ".yml", ".yaml", ".j2", ".sh", ".md", ".cfg", ".ini", ".txt", ".example", ".list", ".sources", ""}

# Each pattern, and what it would let through.
FORBIDDEN: dict[str, str] = {
    r"trusted\s*=\s*yes": "an apt source that skips signature checks",
    r"\[\s*trusted": "an apt source option block trusting a repository",
    r"allow[_-]unauthenticated": "apt installing unsigned packages",
    r"AllowInsecureRepositories|AllowDowngradeToInsecureRepositories": "apt accepting unsigned repositories",
    r"\b(curl|wget)\b[^\n|]*\|\s*(sudo\s+)?(ba|z|da)?sh\b": "a script piped from the network into a shell",
    r"validate_certs\s*[:=]\s*(false|no|0)\b": "TLS certificates not checked",
    r"gpgcheck\s*=\s*0|--nogpgcheck|--no-gpg-check": "packages not signature-checked",
    r"--trusted-host\b": "pip trusting a host without TLS",
    r"\bapt-key\s+add\b": "a key trusted for every repository (apt-key)",
}

# The lab seeds ws-navi10's legacy before-state (an amdgpu-install 22.20 host whose key went in with apt-key),
# which the upgrade must clean up: that state is reproduced on purpose, and documented.
ALLOWED: dict[str, set[str]] = {
    r"\bapt-key\s+add\b": {"provision/lab/seed.py", "docs/lab.md"},
}


def shipped_files() -> list[Path]:
    files: list[Path] = []
    for name in SCANNED:
        path = REPO / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += [p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES
                      and "__pycache__" not in p.parts and ".molecule" not in p.parts]
    return sorted(files)


def test_the_scan_covers_the_shipped_tree() -> None:
    files = shipped_files()
    names = {p.relative_to(REPO).parts[0] for p in files}
    assert {"roles", "playbooks", "provision", "docs", "README.md"} <= names
    assert len(files) > 100


@pytest.mark.parametrize("pattern", FORBIDDEN, ids=list(FORBIDDEN.values()))
def test_no_insecure_repository_or_download(pattern: str) -> None:
    regex = re.compile(pattern, re.IGNORECASE)
    hits = []
    for path in shipped_files():
        text = path.read_text(errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if regex.search(line) and str(path.relative_to(REPO)) not in ALLOWED.get(pattern, set()):
                hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not hits, f"{FORBIDDEN[pattern]}:\n" + "\n".join(hits)


def test_the_patterns_catch_what_they_are_for() -> None:
    samples = {
        "deb [trusted=yes] http://x/ jammy main": r"trusted\s*=\s*yes",
        "curl -fsSL https://x/install.sh | sudo bash": r"\b(curl|wget)\b[^\n|]*\|\s*(sudo\s+)?(ba|z|da)?sh\b",
        "    validate_certs: false": r"validate_certs\s*[:=]\s*(false|no|0)\b",
        "apt-get install --allow-unauthenticated rocm": r"allow[_-]unauthenticated",
        "dnf install --nogpgcheck rocm": r"gpgcheck\s*=\s*0|--nogpgcheck|--no-gpg-check",
    }
    for line, pattern in samples.items():
        assert re.search(pattern, line, re.IGNORECASE), line


SHELL_MODULES = re.compile(r"^[ \t]*-?[ \t]*(ansible\.builtin\.)?(shell|raw)[ \t]*:", re.MULTILINE)
FREE_FORM_TEMPLATE = re.compile(
    r"^[ \t]*-?[ \t]*(ansible\.builtin\.)?command[ \t]*:[ \t]*[^\s{][^\n]*\{\{", re.MULTILINE
)


def test_roles_and_playbooks_run_no_shell_strings() -> None:
    """Tasks take argv lists: an inventory value can never be parsed by a shell on the host.
    (Molecule's own check helpers are test code and are not shipped to hosts.)"""
    hits = []
    for top in ("roles", "playbooks", "provision/lab/playbooks"):
        for path in sorted((REPO / top).rglob("*.yml")):
            if "molecule" in path.parts:
                continue
            text = path.read_text()
            for regex in (SHELL_MODULES, FREE_FORM_TEMPLATE):
                hits += [f"{path.relative_to(REPO)}: {m.group(0).strip()}" for m in regex.finditer(text)]
    assert not hits, "shell or templated free-form command in a task:\n" + "\n".join(hits)
