"""The fleet's artifact lock file (`rocm-provision.lock`, beside the inventory): the sha256 of every wheel a wheel
set brought (the pins and the dependencies pip resolved), recorded the first time the set is fetched (trust on
first use) and required of every later fetch, wherever the files come from. Reviewed and committed like any lock
file; `provision upgrade --update-lock` rewrites it on purpose. A pin's own sha256 (set by the user) wins."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any

LOCK_VERSION = 1
ABOUT = ("rocm-provision's artifact lock file: the sha256 of every wheel the fleet installs, recorded when a wheel "
         "set was first fetched. Review it and commit it with your inventory; a file whose sha256 differs is refused. "
         "`provision upgrade --update-lock` rewrites it on purpose.")


class LockFileError(Exception):
    """The lock file cannot be read or written: a message naming the file and what to do."""


def signature(pins: list[dict[str, Any]], python_version: str, platforms: list[str]) -> str:
    """What a set is, independent of where it is fetched from: its pins (name==version), Python and platforms.
    Changing the index URL therefore does not start a new, unchecked set."""
    wanted = sorted(f"{str(p.get('name', '')).lower()}=={p.get('version', '')}" for p in pins)
    text = json.dumps({"pins": wanted, "python": str(python_version), "platforms": sorted(platforms)})
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def load(path: str) -> dict[str, Any]:
    """The lock file's content; an empty lock when the file does not exist yet."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return {"version": LOCK_VERSION, "about": ABOUT, "files": {}, "sets": {}}
    except (OSError, ValueError) as exc:
        raise LockFileError(f"the lock file {path} cannot be read ({exc}); fix it from version control, or move it "
                            "away and run again to record the wheels anew") from exc
    if not isinstance(data, dict) or data.get("version") != LOCK_VERSION or not isinstance(data.get("files"), dict) \
            or not isinstance(data.get("sets"), dict):
        raise LockFileError(f"the lock file {path} is not a rocm-provision lock file of version {LOCK_VERSION}")
    return data


def save(path: str, lock: dict[str, Any]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".rocm-provision.lock.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"version": LOCK_VERSION, "about": ABOUT,
                       "files": dict(sorted(lock["files"].items())), "sets": dict(sorted(lock["sets"].items()))},
                      handle, indent=1, sort_keys=True)
            handle.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        raise LockFileError(f"the lock file {path} cannot be written ({exc})") from exc


def check(lock: dict[str, Any], sig: str, describe: str, files: list[dict[str, Any]],
          pinned: dict[str, str], update: bool = False) -> tuple[list[str], list[str]]:
    """Compare a fetched set with the lock and record what is new in `lock` (in memory).

    `files`: [{file, sha256, source?, url?}]; `pinned`: {file name: sha256 the user pinned} (already checked
    against the file by the caller: those win over the lock). Returns (problems, notes): a problem refuses the set
    (unless `update`, which records the files as they are now and turns each problem into a note)."""
    problems: list[str] = []
    notes: list[str] = []
    recorded = lock["files"]
    for item in files:
        name, got = str(item["file"]), str(item["sha256"])
        entry = recorded.get(name)
        if name in pinned:
            if entry and entry.get("sha256") != got:
                notes.append(f"{name}: the lock file said sha256 {entry.get('sha256')}; your pinned sha256 {got} wins")
            continue
        if entry and entry.get("sha256") != got:
            problems.append(f"{name}: sha256 {got}, the lock file says {entry.get('sha256')}")
    known = lock["sets"].get(sig)
    if known is not None:
        names = {str(item["file"]) for item in files}
        before = set(known.get("files") or [])
        problems += [f"{name}: not in the lock file's set ({describe}): the index now gives a file it did not"
                     for name in sorted(names - before) if name not in pinned]
        problems += [f"{name}: in the lock file's set ({describe}) but no longer given by the index"
                     for name in sorted(before - names)]
    if update:
        notes += [f"updated: {p}" for p in problems]
        problems = []
    if problems:
        return problems, notes
    for item in files:
        recorded[str(item["file"])] = {"sha256": str(item["sha256"]), "source": str(item.get("source") or ""),
                                       "size": int(item.get("size") or 0)}
    lock["sets"][sig] = {"describe": describe, "files": sorted(str(item["file"]) for item in files)}
    return problems, notes


def _norm(name: str) -> str:
    return "".join("-" if c in "-_." else c for c in name.lower())


def pinned_files(files: list[dict[str, Any]], pins: list[dict[str, Any]]) -> tuple[dict[str, str], list[str]]:
    """({file: sha256} of the set's files a pin with a user-set sha256 names and matches, [problems of those it
    names and does not match])."""
    wanted = {(_norm(str(p.get("name", ""))), str(p.get("version", ""))): str(p["sha256"]).lower()
              for p in pins if p.get("sha256")}
    out, bad = {}, []
    for item in files:
        key = (_norm(str(item.get("name", ""))), str(item.get("version", "")))
        if key not in wanted:
            continue
        if str(item.get("sha256")) == wanted[key]:
            out[str(item["file"])] = wanted[key]
        else:
            bad.append(f"{item['file']}: sha256 {item.get('sha256')}, pinned {wanted[key]}")
    return out, bad


def _pins(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The set's pins; a set described by `requirements` (name==version) has them without sha256."""
    if spec.get("pins"):
        return list(spec["pins"])
    return [{"name": r.split("==", 1)[0], "version": r.split("==", 1)[-1]} for r in spec.get("requirements") or []]


def verify_sets(path: str, specs: dict[str, dict[str, Any]], results: dict[str, dict[str, Any]], *,
                update: bool = False, check_mode: bool = False) -> tuple[bool, list[str]]:
    """Hold every fetched set (`results[key]`: {ok, files, dir, downloaded, error}) to the lock file at `path`.
    A set that differs gets ok false and an error naming each file, the sha256 it has and the one the lock file
    records. Returns (whether the lock file was written, notes for the user)."""
    lock = load(path)
    before = json.dumps(lock, sort_keys=True)
    notes: list[str] = []
    # one file name, different bytes from two sources in this very run: trust neither on first use
    seen: dict[str, set[str]] = {}
    for result in results.values():
        for item in result.get("files") or [] if result.get("ok") else []:
            seen.setdefault(str(item["file"]), set()).add(str(item["sha256"]))
    for key, result in results.items():
        if not result.get("ok") or not result.get("files"):
            continue
        spec = specs[key]
        pins = _pins(spec)
        platforms = [str(p) for p in (spec.get("platforms") or [spec.get("platform", "")])]
        sig = signature(pins, str(spec.get("python_version", "")), platforms)
        describe = (", ".join(f"{p.get('name')}=={p.get('version')}" for p in pins)
                    + f" for Python {spec.get('python_version')} ({', '.join(platforms)})")
        pinned, pin_problems = pinned_files(result["files"], pins)
        # (a file the lock file already records is judged by the lock file alone)
        clash = [f"{name}: this run got it with {len(seen[name])} different sha256s from different indexes"
                 for name in sorted(str(i["file"]) for i in result["files"]) if len(seen[name]) > 1
                 and name not in pinned and name not in lock["files"]]
        if pin_problems or (clash and not update):
            problems, said = pin_problems + clash, []
        else:
            problems, said = check(lock, sig, describe, result["files"], pinned, update)
        notes += said
        if problems:
            where = "downloaded now" if result.get("downloaded") else f"from the controller's cache {result.get('dir')}"
            result.update(ok=False, error=(
                f"the wheel set {describe} ({where}) does not match the lock file {path}: {'; '.join(problems)}. "
                "Nothing was installed or removed. If you changed the pins or the index on purpose, run "
                "`provision upgrade --update-lock` (or set provision_artifact_lock_update=true), then review the "
                "lock file's diff before you commit it"))
            result["lock_mismatch"] = True
    after = json.dumps(lock, sort_keys=True)
    if after == before:
        return False, notes
    new = sorted(set(lock["files"]) - set(json.loads(before)["files"]))
    if new:
        notes.append(f"recorded {len(new)} wheel(s) in {path} (trust on first use): review and commit it")
    if not check_mode:
        save(path, lock)
    return True, notes
