"""Checks on an inventory's files before ansible-core reads them: every file regular (a FIFO, device or socket
is refused at once), each under a size cap, and every YAML file composed (not constructed: no tag is ever
resolved, no object built) so that a syntax error is reported with file:line and an alias bomb is refused by
counting the nodes its aliases would expand to, without expanding them.

The files looked at are the ones ansible-core would read for this source: the inventory file itself, or every
file under an inventory directory, plus `group_vars/` and `host_vars/` beside the inventory file."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import yaml

from provision.errors import InventoryError, Problem

FILE_MAX_BYTES = 2 * 1024 * 1024  # a 200-host inventory with all its group_vars is well under 100 kB
TOTAL_MAX_BYTES = 16 * 1024 * 1024
MAX_FILES = 5000
YAML_MAX_NODES = 200_000  # nodes a YAML file may expand to through its aliases (a 2,000-host file: ~20,000)
YAML_SUFFIXES = {".yml", ".yaml", ".json", ""}
_SKIP_SUFFIXES = {".md", ".txt", ".orig", ".bak", ".retry", ".pyc", ".swp", ".cfg"}


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _files(source: Path) -> Iterator[Path]:
    roots = [source]
    if source.is_file() or not source.is_dir():
        roots += [source.parent / "group_vars", source.parent / "host_vars"]
    for root in roots:
        if root.is_dir():
            for base, dirs, names in os.walk(root, followlinks=False):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if not name.startswith("."):
                        yield Path(base) / name
        elif root == source or root.exists():
            yield root


def _problem(path: Path, message: str, line: int | None = None, allowed: str | None = None) -> Problem:
    return Problem(message, file=f"{path}:{line}" if line else str(path), allowed=allowed)


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Nodes the document expands to when every alias is replaced by its anchor's subtree; stops past `limit`.
    Shared subtrees are counted once per reference (that is what construction builds) but visited once."""
    memo: dict[int, int] = {}
    order: list[yaml.Node] = []
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    seen: set[int] = set()
    while stack:  # post-order without recursion (deep nesting cannot exhaust the Python stack)
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for child in _children(node):
            if id(child) not in seen:
                stack.append((child, False))
    for node in order:
        total = 1 + sum(memo.get(id(c), 1) for c in _children(node))
        memo[id(node)] = min(total, limit + 1)
    return memo.get(id(root), 1)


_STANDARD_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq",
                                                      "timestamp", "merge", "binary", "set", "omap", "value")}
_ANSIBLE_TAGS = {"!vault", "!unsafe", "!vault-encrypted"}


def _foreign_tags(root: yaml.Node) -> list[yaml.Node]:
    """Nodes with a tag neither YAML's core schema nor Ansible (!vault, !unsafe) defines: a
    `!!python/object/apply:` or `!include` is refused here; no tag is ever resolved or run."""
    found, stack, seen = [], [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.tag not in _STANDARD_TAGS and node.tag not in _ANSIBLE_TAGS:
            found.append(node)
        stack.extend(_children(node))
    return found


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_yaml(path: Path, text: str) -> list[Problem]:
    if text.lstrip().startswith("$ANSIBLE_VAULT"):
        return []  # a vaulted file: ansible-core decrypts it (or says it needs the vault password)
    try:
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        return [_problem(path, f"is not valid YAML: {what}", line, "YAML that ansible-core can read")]
    except yaml.YAMLError as exc:
        return [_problem(path, f"is not valid YAML: {exc}", None, "YAML that ansible-core can read")]
    problems = []
    for doc in documents:
        for node in (_foreign_tags(doc) if doc is not None else [])[:3]:
            problems.append(_problem(path, f"uses the YAML tag {node.tag!r}, which this tool refuses (it never "
                                     "constructs or runs tagged objects)", node.start_mark.line + 1,
                                     "plain YAML values, !vault and !unsafe"))
        if doc is not None and _expanded_size(doc, YAML_MAX_NODES) > YAML_MAX_NODES:
            problems.append(_problem(
                path, f"its aliases expand to more than {YAML_MAX_NODES} values (an alias bomb?): refused without "
                "expanding them", doc.start_mark.line + 1, "YAML whose anchors and aliases stay small"))
    return problems


def check_file(source: str | os.PathLike[str]) -> None:
    """The same checks for one variables file (`-e @FILE`): regular, within the cap, YAML that stays small."""
    check(source, only=True)


def check(source: str | os.PathLike[str], only: bool = False) -> None:
    """Raise InventoryError (exit 2) naming each file that ansible-core must not be given."""
    path = Path(source)
    problems: list[Problem] = []
    total = 0
    for count, file in enumerate([path] if only else _files(path)):
        if count >= MAX_FILES:
            problems.append(_problem(path, f"holds more than {MAX_FILES} files: refused", None,
                                     "an inventory directory of hand-written files"))
            break
        try:
            info = os.lstat(file)
        except OSError as exc:
            problems.append(_problem(file, f"cannot be read: {exc.strerror}"))
            continue
        if stat.S_ISLNK(info.st_mode):
            try:
                info = os.stat(file)
            except OSError as exc:
                problems.append(_problem(file, f"is a broken link: {exc.strerror}"))
                continue
        if stat.S_ISDIR(info.st_mode):
            continue
        if not stat.S_ISREG(info.st_mode):
            problems.append(_problem(file, f"is {_kind(info.st_mode)}, not a regular file: refused",
                                     allowed="regular files"))
            continue
        if info.st_size > FILE_MAX_BYTES:
            problems.append(_problem(file, f"is {info.st_size} bytes, more than the {FILE_MAX_BYTES} an inventory "
                                     "file may have: refused", allowed=f"files up to {FILE_MAX_BYTES} bytes"))
            continue
        total += info.st_size
        if total > TOTAL_MAX_BYTES:
            problems.append(_problem(path, f"its files hold more than {TOTAL_MAX_BYTES} bytes: refused"))
            break
        if file.suffix.lower() in _SKIP_SUFFIXES:
            continue
        is_vars = only or any(part in ("group_vars", "host_vars") for part in file.parts)
        if file.suffix.lower() in (".yml", ".yaml", ".json") or (is_vars and file.suffix == ""):
            from provision.safeinput import read_text

            try:
                text = read_text(file, "inventory", FILE_MAX_BYTES)
            except Exception as exc:  # InputError: raced into a special file or grew
                problems.append(_problem(file, str(exc)))
                continue
            problems += _check_yaml(file, text)
    if problems:
        raise InventoryError(problems)
