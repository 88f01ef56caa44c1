"""Untrusted or broken sources are refused before anything is removed: one `provision upgrade` over four ROCm 5.2
hosts, each with its own fault, on the container lab.

- ws-refuse-fpr:     the key at the key URL is not the pinned fingerprint
- ws-refuse-signer:  the key checks out against its pin, but the repository is signed by a different key
- ws-refuse-index:   the mirror answers garbage for the signed indexes (dists/)
- ws-refuse-payload: the indexes are fine, the mirror answers garbage for the packages themselves (pool/)

Each host gets a mirror URL of its own (the lab mirror's /_as/<label>/ alias), so a fault hits that host alone.
Every host must stop in the stage phase with a message naming its fault, keep ROCm 5.2 installed and its
user's files, and the run must exit 1.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.conftest import FIRST_ADDRESS, LabHandle
from tests.lab.test_upgrade_e2e import latest_report, provision

pytestmark = [pytest.mark.lab, pytest.mark.slow]

TEMPLATE = "ws-w6800-ubuntu2404-sim"  # ROCm 5.2 from plain apt; planned for the upgrade
HOSTS = ("ws-refuse-fpr", "ws-refuse-signer", "ws-refuse-index", "ws-refuse-payload")
EXPECTED = {
    "ws-refuse-fpr": r"not the pinned",
    "ws-refuse-signer": r"NO_PUBKEY|signatures couldn't be verified|not signed|invalid signature",
    "ws-refuse-index": r"(?i)clearsigned|hash sum mismatch|not signed|NODATA|invalid|failed to fetch",
    "ws-refuse-payload": r"(?i)hash sum mismatch|sha256",
}
USER_FILE = "/home/researcher/refusal-canary.txt"


def _mirror(base_url: str, query: str) -> None:
    with urllib.request.urlopen(f"{base_url}/_lab/fault?{query}", timeout=10) as answer:
        assert answer.status == 200


def _rocm_packages(lab: LabHandle, host: str) -> str:
    return lab.ok(host, "dpkg-query -W -f '${Package} ${Version} ${Status}\\n' | grep -E '^(rocm|hip|amdgpu)' | sort")


@pytest.fixture(scope="module")
def refusal_fleet(lab: LabHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabHandle, Path, Path]]:
    first = ipaddress.ip_address(FIRST_ADDRESS) + 10
    up = lab.lab.add([(name, TEMPLATE, str(first + i)) for i, name in enumerate(HOSTS)])
    lab.addresses.update({h.name: h.address for h in up.hosts})
    base = up.base_url.rstrip("/")
    rogue = lab.lab.load_state()["key"]["rogue_fingerprint"]
    per_host = {
        "ws-refuse-fpr": "provision_key_fingerprint=" + "0123456789ABCDEF" * 2 + "01234567",
        "ws-refuse-signer": f"provision_key_url={base}/rogue/rogue.gpg.key provision_key_fingerprint={rogue}",
        "ws-refuse-index": f"provision_repo_base_url={base}/_as/refuse-index",
        "ws-refuse-payload": f"provision_repo_base_url={base}/_as/refuse-payload",
    }
    lines = []
    for line in up.inventory.read_text().splitlines():
        name = line.split(" ", 1)[0]
        lines.append(f"{line} {per_host[name]}" if name in per_host else line)
    inventory = tmp_path_factory.mktemp("refusals") / "lab.ini"
    inventory.write_text("\n".join(lines) + "\n")
    _mirror(base, "mode=garbage&path=/_as/refuse-index/rocm/apt/7.0/dists")
    _mirror(base, "mode=garbage&path=/_as/refuse-index/amdgpu/30.10/ubuntu/dists")
    _mirror(base, "mode=garbage&path=/_as/refuse-payload/rocm/apt/7.0/pool")
    _mirror(base, "mode=garbage&path=/_as/refuse-payload/amdgpu/30.10/ubuntu/pool")
    try:
        yield lab, inventory, inventory.parent / "runs"
    finally:
        _mirror(base, "mode=none")
        lab.lab.remove(list(HOSTS))
        for name in HOSTS:
            lab.addresses.pop(name, None)


def test_untrusted_or_broken_sources_are_refused_before_anything_is_removed(
        refusal_fleet: tuple[LabHandle, Path, Path]) -> None:
    lab, inventory, runs = refusal_fleet
    before = {}
    for host in HOSTS:
        lab.ok(host, f"echo 'results of a week of training' > {USER_FILE}")
        before[host] = _rocm_packages(lab, host)
        assert "rocm-core 5.2" in before[host], before[host]

    result = provision("upgrade", "--hosts", str(inventory), "--yes", "--limit", ",".join(HOSTS), runs=runs)
    assert result.returncode == 1, result.stdout + result.stderr

    hosts = {h["name"]: h for h in latest_report(runs, "upgrade")["hosts"]}
    assert set(hosts) == set(HOSTS)
    for host in HOSTS:
        record = hosts[host]
        assert record["state"] == "failed-at-stage", (host, record["state"], record["reason"])
        assert re.search(EXPECTED[host], record["reason"]), (host, record["reason"])
        # nothing removed: the 5.2 packages are exactly as before, the user's files are there
        assert _rocm_packages(lab, host) == before[host], host
        assert lab.ok(host, f"cat {USER_FILE}").strip() == "results of a week of training"
        # and no source trusts anything without a signature check
        sources = lab.ok(host, "cat /etc/apt/sources.list.d/*.list 2>/dev/null || true")
        assert "trusted=yes" not in sources
    # the faults of one host's mirror reached no other host: each stopped with its own reason
    assert len({hosts[h]["reason"] for h in HOSTS}) == len(HOSTS)
