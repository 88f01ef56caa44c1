"""The fleet artifact cache on the container lab: `provision upgrade` fetches every ROCm package file and the
wheel set from the mirror once for all hosts (the mirror's own byte counters say so), a converged re-run
fetches nothing, and a tampered wheel stops only its host, at the stage, before ROCm 5.2 is removed.

Real SSH, real apt against the signed mirror, real pip; the hardware the lab cannot have (dkms, reboot, a GPU)
is simulated at the boundary the roles read, as in test_upgrade_e2e.py. The lab lives in its own dir
($PROVISION_ARTIFACT_LAB_DIR, default <repo>/.lab/artifact-cache) on 127.0.0.100-103."""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provision.lab.lab import Lab
from tests.lab.conftest import REPO, LabShell, fresh_fleet

pytestmark = [pytest.mark.lab]

HOSTS = [("ca-w6800-a", "ws-w6800-ubuntu2404-sim", "127.0.0.100"),
         ("ca-w6800-b", "ws-w6800-ubuntu2404-sim", "127.0.0.101"),
         ("ca-7900xtx", "ws-7900xtx", "127.0.0.102"),
         ("ca-mi210", "ws-mi210", "127.0.0.103")]
WHEEL_DIR = "rocm/manylinux/rocm-rel-7.0"


@dataclass
class CacheLab(LabShell):
    lab: Lab
    addresses: dict[str, str]
    inventory: Path
    base_url: str
    tmp: Path

    def stats(self, reset: bool = False) -> dict[str, dict[str, int]]:
        path = "/_lab/stats/reset" if reset else "/_lab/stats"
        with urllib.request.urlopen(self.base_url + path, timeout=10) as answer:
            data = json.load(answer)
        return {} if reset else data["paths"]

    def upgrade(self, *args: str, cache: Path, timeout: float = 1500) -> tuple[subprocess.CompletedProcess[str], dict]:
        runs = self.tmp / "runs"
        env = dict(os.environ, COLUMNS="200", NO_COLOR="1", PROVISION_RUNS_DIR=str(runs))
        inventory = self.tmp / f"{cache.name}.ini"
        inventory.write_text(self.inventory.read_text().replace(
            "[workstations:vars]", f"[workstations:vars]\nprovision_cache_dir={cache}"))
        done = subprocess.run([sys.executable, "-m", "provision", "upgrade", "--hosts", str(inventory), "--yes",
                               *args], capture_output=True, text=True, env=env, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL, cwd=REPO)
        found = sorted(runs.glob("*-upgrade"))
        assert found, f"no run was recorded (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        report = json.loads((found[-1] / "report.json").read_text())
        return done, {h["name"]: h for h in report["hosts"]}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def served(paths: dict[str, dict[str, int]], suffix: str) -> dict[str, int]:
    return {p: v["requests"] for p, v in paths.items() if p.endswith(suffix) and v["bytes"] > 0}


@pytest.fixture(scope="module")
def cache_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CacheLab]:
    lab, result = fresh_fleet(
        Path(os.environ.get("PROVISION_ARTIFACT_LAB_DIR") or REPO / ".lab" / "artifact-cache").resolve(), HOSTS,
        "artifact-cache fleet")
    tmp = tmp_path_factory.mktemp("artifact-cache")
    # Default settings: no sha256 pinned (AMD publishes none); the first fetch records the fleet's lock file
    # (tmp/rocm-provision.lock, beside the inventories the runs use) and later runs are held to it.
    inventory = tmp / "lab.ini"
    inventory.write_text(result.inventory.read_text())
    handle = CacheLab(lab, {h.name: h.address for h in result.hosts}, inventory, result.base_url, tmp)
    try:
        yield handle
    finally:
        lab.down()


def tampered_index(lab: CacheLab) -> tuple[str, dict[str, tuple[str, str]]]:
    """A copy of the wheel directory whose torch wheel and one of its dependencies were changed (its index lists the
    changed files' hashes, as a compromised mirror would). Returns (URL, {file: (sha256 before, sha256 now)})."""
    source = lab.lab.paths.mirror / WHEEL_DIR
    target = lab.lab.paths.mirror / "rocm" / "manylinux" / "tampered"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    links = []
    changed: dict[str, tuple[str, str]] = {}
    wheels = sorted(source.glob("*.whl"))
    # a dependency of the pins, when the lab's wheel directory carries one (its CPU torch stand-in may come alone;
    # the dependency case then rests on tests/unit/test_wheel_lock_fetch.py, real pip against a local index)
    dependency = next((w for w in wheels if not w.name.startswith(("torch-", "."))), None)
    for wheel in wheels:
        data = wheel.read_bytes()
        if wheel.name.startswith("torch-") or wheel == dependency:  # (the .complete marker is not a wheel)
            before = hashlib.sha256(data).hexdigest()
            data += b"tampered"  # still a readable zip (trailing bytes), another sha256
            changed[wheel.name] = (before, hashlib.sha256(data).hexdigest())
        (target / wheel.name).write_bytes(data)
        href = html.escape(wheel.name.replace("+", "%2B"))
        links.append(f'<a href="{href}#sha256={hashlib.sha256(data).hexdigest()}">{html.escape(wheel.name)}</a><br>')
    (target / "index.html").write_text("<html><body>\n" + "\n".join(links) + "\n</body></html>\n")
    return f"{lab.base_url}/rocm/manylinux/tampered/", changed


def test_fleet_fetches_each_artifact_once(cache_lab: CacheLab) -> None:
    """Two hosts with the same package set: every .deb and every wheel leaves the mirror once in total; both
    upgrade; a converged re-run takes no package or wheel bytes from the mirror."""
    cache = cache_lab.tmp / "cache-fleet"
    cache_lab.stats(reset=True)
    done, hosts = cache_lab.upgrade("--limit", "ca-w6800-a,ca-w6800-b", cache=cache)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    for name in ("ca-w6800-a", "ca-w6800-b"):
        assert hosts[name]["state"] == "done", hosts[name]
        assert hosts[name]["after"]["rocm"] == "7.0.0"
        assert "7.0.0" in cache_lab.ok(name, "dpkg-query -W -f '${Version}' rocm-core")
    paths = cache_lab.stats()
    debs, wheels = served(paths, ".deb"), served(paths, ".whl")
    assert any("/rocm-core_7.0.0" in p for p in debs), sorted(paths)
    assert any("/torch-" in p for p in wheels), sorted(paths)
    assert {p: n for p, n in {**debs, **wheels}.items() if n != 1} == {}
    # the user saw the controller's download move on, and its progress file ends with each wheel whole
    assert "controller download: " in done.stderr, done.stderr[-3000:]
    run_dir = sorted((cache_lab.tmp / "runs").glob("*-upgrade"))[-1]
    lines = [json.loads(x) for x in (run_dir / "download-progress.jsonl").read_text().splitlines()]
    torch = [x for x in lines if x["file"].startswith("torch-")]
    assert torch and torch[-1]["done"] == torch[-1]["total"] > 10_000_000, torch[-3:]
    assert any(x["file"].endswith(".deb") for x in lines), lines[:5]

    cache_lab.stats(reset=True)
    done, hosts = cache_lab.upgrade("--limit", "ca-w6800-a,ca-w6800-b", cache=cache)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert {h["state"] for h in hosts.values()} == {"done"}
    paths = cache_lab.stats()
    assert served(paths, ".deb") == {} and served(paths, ".whl") == {}, sorted(paths)


def test_tampered_wheel_and_dependency_stop_their_host_before_removal(cache_lab: CacheLab) -> None:
    """Default settings, after the fleet run above recorded the lock file: ca-7900xtx's wheel index serves a torch
    wheel (and, where the lab's wheel directory has one, a dependency) changed under the same name, the index
    listing the new hashes, as a compromised mirror would. That host fails at the stage naming each file with the
    sha256 it has and the one the lock file records, and keeps ROCm 5.2; ca-mi210 (the good index) upgrades."""
    assert (cache_lab.tmp / "rocm-provision.lock").is_file(), "the fleet run recorded no lock file"
    url, changed = tampered_index(cache_lab)
    text = cache_lab.inventory.read_text()
    text = re.sub(r"(?m)^(ca-7900xtx .*)$", rf"\1 provision_wheel_index_url={url} provision_allow_unsupported_os=true",
                  text)
    cache_lab.inventory.write_text(text)
    done, hosts = cache_lab.upgrade("--limit", "ca-7900xtx,ca-mi210", cache=cache_lab.tmp / "cache-tamper")
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-2000:]
    bad_host = hosts["ca-7900xtx"]
    assert bad_host["state"] == "failed-at-stage", bad_host
    message = json.dumps(bad_host)
    for name, (recorded, got) in changed.items():
        assert f"{name}: sha256 {got}, the lock file says {recorded}" in message, message[:3000]
    assert "nothing was removed" in bad_host["reason"].lower(), bad_host["reason"]
    assert cache_lab.ok("ca-7900xtx", "dpkg-query -W -f '${Version}' rocm-core").startswith("5.2.0")
    assert "7.0" not in cache_lab.ok("ca-7900xtx", "ls /opt")
    good = hosts["ca-mi210"]
    assert good["state"] == "done", good
    assert good["after"]["rocm"] == "7.0.0"
