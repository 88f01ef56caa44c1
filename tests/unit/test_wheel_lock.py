"""The artifact lock file's rules (plugins/module_utils/wheel_lock.py): trust on first use, then every file of a
set must have the recorded sha256, wherever it is fetched from; a user's pinned sha256 wins; an update is said."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.sources import load_source

lock_mod = load_source("plugins/module_utils/wheel_lock.py")

PINS = [{"name": "torch", "version": "2.8.0+rocm7.0.0.git64359f59"}]
TORCH = "torch-2.8.0+rocm7.0.0.git64359f59-cp312-cp312-linux_x86_64.whl"
DEP = "filelock-3.20.0-py3-none-any.whl"


def files(torch: str = "a" * 64, dep: str = "b" * 64, extra: bool = False) -> list[dict]:
    out = [{"file": TORCH, "sha256": torch, "source": "pin", "size": 10},
           {"file": DEP, "sha256": dep, "source": "dependency", "size": 2}]
    if extra:
        out.append({"file": "evil-1.0-py3-none-any.whl", "sha256": "e" * 64, "source": "dependency", "size": 1})
    return out


def test_first_fetch_records_then_a_changed_wheel_or_dependency_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "rocm-provision.lock")
    sig = lock_mod.signature(PINS, "3.12", ["linux_x86_64", "manylinux_2_28_x86_64"])
    lock = lock_mod.load(path)
    assert lock_mod.check(lock, sig, "torch 2.8.0 for cp312", files(), {}) == ([], [])
    lock_mod.save(path, lock)
    saved = json.loads(Path(path).read_text())
    assert saved["files"][TORCH]["sha256"] == "a" * 64 and saved["files"][DEP]["source"] == "dependency"

    again = lock_mod.load(path)
    assert lock_mod.check(again, sig, "x", files(), {})[0] == []
    problems, _ = lock_mod.check(lock_mod.load(path), sig, "x", files(torch="c" * 64), {})
    assert problems == [f"{TORCH}: sha256 {'c' * 64}, the lock file says {'a' * 64}"]
    problems, _ = lock_mod.check(lock_mod.load(path), sig, "x", files(dep="d" * 64), {})
    assert problems == [f"{DEP}: sha256 {'d' * 64}, the lock file says {'b' * 64}"]
    problems, _ = lock_mod.check(lock_mod.load(path), sig, "x", files(extra=True), {})
    assert problems and "evil-1.0-py3-none-any.whl: not in the lock file's set" in problems[0]


def test_another_index_url_or_another_set_does_not_escape_the_recorded_hashes(tmp_path: Path) -> None:
    path = str(tmp_path / "rocm-provision.lock")
    lock = lock_mod.load(path)
    lock_mod.check(lock, lock_mod.signature(PINS, "3.12", ["linux_x86_64"]), "x", files(), {})
    lock_mod.save(path, lock)
    # a set never fetched before (another Python) that shares a file name: that file must still match
    other = lock_mod.signature(PINS, "3.11", ["linux_x86_64"])
    problems, _ = lock_mod.check(lock_mod.load(path), other, "y", files(dep="d" * 64), {})
    assert problems == [f"{DEP}: sha256 {'d' * 64}, the lock file says {'b' * 64}"]


def test_pins_win_and_update_is_on_purpose_and_said(tmp_path: Path) -> None:
    path = str(tmp_path / "rocm-provision.lock")
    sig = lock_mod.signature(PINS, "3.12", ["linux_x86_64"])
    lock = lock_mod.load(path)
    lock_mod.check(lock, sig, "x", files(), {})
    lock_mod.save(path, lock)
    lock = lock_mod.load(path)
    problems, notes = lock_mod.check(lock, sig, "x", files(torch="f" * 64), {TORCH: "f" * 64})
    assert problems == [] and "your pinned sha256" in notes[0]
    assert lock["files"][TORCH]["sha256"] == "f" * 64
    lock = lock_mod.load(path)
    problems, notes = lock_mod.check(lock, sig, "x", files(dep="9" * 64), {}, update=True)
    assert problems == [] and notes == [f"updated: {DEP}: sha256 {'9' * 64}, the lock file says {'b' * 64}"]
    assert lock["files"][DEP]["sha256"] == "9" * 64


def test_an_unreadable_lock_file_is_an_error_not_an_empty_lock(tmp_path: Path) -> None:
    path = tmp_path / "rocm-provision.lock"
    path.write_text("{ not json")
    with pytest.raises(lock_mod.LockFileError, match="cannot be read"):
        lock_mod.load(str(path))
    path.write_text(json.dumps({"version": 99, "files": {}, "sets": {}}))
    with pytest.raises(lock_mod.LockFileError, match="not a rocm-provision lock file"):
        lock_mod.load(str(path))


def test_verify_sets_refuses_a_set_and_names_the_file_and_both_hashes(tmp_path: Path) -> None:
    path = str(tmp_path / "rocm-provision.lock")
    spec = {"k1": {"pins": PINS, "python_version": "3.12", "platforms": ["linux_x86_64"]}}
    first = {"k1": {"ok": True, "files": files(), "dir": "/c/k1", "downloaded": True}}
    written, notes = lock_mod.verify_sets(path, spec, first)
    assert written and first["k1"]["ok"] and "recorded 2 wheel(s)" in notes[0]
    cached = {"k1": {"ok": True, "files": files(dep="d" * 64), "dir": "/c/k1", "downloaded": False}}
    written, _ = lock_mod.verify_sets(path, spec, cached)
    assert not written and not cached["k1"]["ok"]
    assert f"{DEP}: sha256 {'d' * 64}, the lock file says {'b' * 64}" in cached["k1"]["error"]
    assert "from the controller's cache /c/k1" in cached["k1"]["error"] and "--update-lock" in cached["k1"]["error"]
    # the user pins torch's sha256: that pin wins over the lock, and the lock follows it
    pinned = {"k1": {"pins": [{**PINS[0], "sha256": "f" * 64}], "python_version": "3.12",
                     "platforms": ["linux_x86_64"]}}
    mine = [{**f, "name": f["file"].split("-")[0], "version": f["file"].split("-")[1]} for f in files(torch="f" * 64)]
    result = {"k1": {"ok": True, "files": mine, "dir": "/c/k1", "downloaded": True}}
    lock_mod.verify_sets(path, pinned, result)
    assert result["k1"]["ok"], result


def test_two_indexes_giving_different_bytes_in_one_run_are_both_refused_on_first_use(tmp_path: Path) -> None:
    path = str(tmp_path / "rocm-provision.lock")
    spec = {"good": {"pins": PINS, "python_version": "3.12", "platforms": ["linux_x86_64"]},
            "evil": {"pins": PINS, "python_version": "3.12", "platforms": ["linux_x86_64"]}}
    results = {"evil": {"ok": True, "files": files(torch="e" * 64), "dir": "/c/evil", "downloaded": True},
               "good": {"ok": True, "files": files(), "dir": "/c/good", "downloaded": True}}
    written, _ = lock_mod.verify_sets(path, spec, results)
    assert not results["evil"]["ok"] and not results["good"]["ok"]
    assert f"{TORCH}: this run got it with 2 different sha256s" in results["evil"]["error"]
    # nothing of a refused set is trusted
    assert not written and not Path(path).exists()


def test_once_recorded_each_source_is_judged_by_the_lock_alone(tmp_path: Path) -> None:
    path = str(tmp_path / "rocm-provision.lock")
    spec = {"good": {"pins": PINS, "python_version": "3.12", "platforms": ["linux_x86_64"]},
            "evil": {"pins": PINS, "python_version": "3.12", "platforms": ["linux_x86_64"]}}
    lock_mod.verify_sets(path, {"good": spec["good"]}, {"good": {"ok": True, "files": files(), "downloaded": True}})
    results = {"evil": {"ok": True, "files": files(torch="e" * 64), "dir": "/c/evil", "downloaded": True},
               "good": {"ok": True, "files": files(), "dir": "/c/good", "downloaded": True}}
    lock_mod.verify_sets(path, spec, results)
    assert results["good"]["ok"] and not results["evil"]["ok"]
    assert "the lock file says" in results["evil"]["error"]
