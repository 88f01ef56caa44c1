"""Where a host's venv Python (3.12 for AMD's cp312-only torch 2.8.0 set) comes from, decided at preflight, so a
host without one is `blocked` before anything is removed.

Sources (provision_python_source; pins.yaml `python` says per OS what `auto` picks, with its sources):
- system: the OS's own python3.12 (Ubuntu 24.04).
- deadsnakes: python3.12 + python3.12-venv from ppa:deadsnakes/ppa (Ubuntu 22.04; Ubuntu only).
- standalone: the pinned python-build-standalone CPython (the build uv installs), fetched once through the
  controller's cache from provision_python_standalone_url (a mirror of the release directory for air-gapped labs).
- path: provision_python, an interpreter already on the host.
Debian 12 ships 3.11 and has no 3.12 package, so `auto` finds no source there: the host is blocked with the
settings to change. A source that must be downloaded is probed from the host (HTTP HEAD) by rocm_host_facts."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from provision import pins
from provision.specs import HostSpec

SOURCES = ("auto", "system", "deadsnakes", "standalone")


@dataclass
class PythonDecision:
    source: str                 # system | deadsnakes | standalone | path | none
    version: str                # the X.Y the venv needs
    interpreter: str | None     # already on the host, or where the source puts it
    install: bool               # the interpreter step installs it (before anything is removed)
    problem: str | None         # set: the host is blocked, with this reason
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def required_version(spec: HostSpec) -> str:
    return spec.torch_python or str(pins.python()["version"])


def standalone_url(spec: HostSpec) -> str:
    data = pins.python()["standalone"]
    base = (spec.python_standalone_url or data["base_url"]).rstrip("/")
    return f"{base}/{data['release']}/{data['file'].replace('+', '%2B')}"


def standalone_bin(version: str) -> str:
    return f"{pins.python()['standalone']['install_dir']}/bin/python{version}"


def _have(facts: dict[str, Any], candidate: str, version: str) -> str | None:
    found = (facts.get("interpreters") or {}).get(candidate)
    return found["path"] if found and found.get("version") == version else None


def _fix(version: str) -> str:
    return (f"set provision_python_source to standalone (the pinned CPython {version} build; "
            "provision_python_standalone_url for a mirror), or provision_python to a Python "
            f"{version} on the host, or provision_mode: fallback")


def decide(os_key: str | None, facts: dict[str, Any] | None, spec: HostSpec) -> PythonDecision:
    """The source and interpreter for this host, or the reason it has none. `facts` is rocm_host_facts' `python`
    (None: not gathered, e.g. an older module: nothing is blocked, the venv role checks again)."""
    version = required_version(spec)
    wanted = f"python{version}"
    if spec.python:
        source = "path"
    elif spec.python_source == "auto":
        source = str(pins.python()["by_os"].get(os_key or "", "")) or "none"
    else:
        source = spec.python_source
    if facts is None:
        return PythonDecision(source, version, None, False, None, "Python facts not gathered; checked at install")
    if source == "path":
        assert spec.python is not None
        found = (facts.get("interpreters") or {}).get(spec.python)
        if not found:
            return PythonDecision(source, version, None, False,
                                  f"provision_python={spec.python} does not run on this host; point it at a Python "
                                  f"{version} or unset it and choose provision_python_source", "")
        if found.get("version") != version:
            return PythonDecision(source, version, found.get("path"), False,
                                  f"provision_python={spec.python} is Python {found.get('version')}, but the wheel set "
                                  f"is for Python {version} (provision_torch_python; AMD's torch 2.8.0 set is cp312 "
                                  "only); point provision_python at a Python "
                                  f"{version}", "")
        return PythonDecision(source, version, found["path"], False, None, f"provision_python ({found['path']})")
    present = _have(facts, wanted, version)
    if source in ("system", "deadsnakes", "none") and present:
        return PythonDecision("system" if source == "none" else source, version, present, False, None,
                              f"{wanted} is on the host ({present})")
    if source == "none":
        os_name = os_key or "this OS"
        python3 = (facts.get("interpreters") or {}).get("python3") or {}
        has = f"Python {python3['version']}" if python3.get("version") else "no python3"
        return PythonDecision(source, version, None, False,
                              f"{os_name} has no Python {version} package (it has {has}) and AMD's torch 2.8.0 "
                              f"wheels need Python {version}; no Python source is configured: {_fix(version)}", "")
    if source == "system":
        if facts.get("apt_candidate"):
            return PythonDecision(source, version, f"/usr/bin/{wanted}", True, None,
                                  f"{wanted} {facts['apt_candidate']} from the OS's apt sources")
        return PythonDecision(source, version, None, False,
                              f"provision_python_source=system but the host has no {wanted} and apt offers none; "
                              f"use deadsnakes (Ubuntu 22.04) or {_fix(version)}", "")
    if source == "deadsnakes":
        if not (os_key or "").startswith("ubuntu-"):
            return PythonDecision(source, version, None, False,
                                  f"provision_python_source=deadsnakes, but the deadsnakes PPA publishes for Ubuntu "
                                  f"only and this host is {os_key or 'not Ubuntu'}; {_fix(version)}", "")
        probe = facts.get("deadsnakes") or {}
        if facts.get("apt_candidate") or probe.get("ok"):
            return PythonDecision(source, version, f"/usr/bin/{wanted}", True, None,
                                  f"{wanted} from {pins.python()['deadsnakes']['ppa']}, installed before anything "
                                  "is removed")
        return PythonDecision(source, version, None, False,
                              f"provision_python_source=deadsnakes, but {probe.get('url') or 'the PPA'} cannot be "
                              f"reached from the host ({probe.get('error') or 'not probed'}); allow access to it, or "
                              f"{_fix(version)}", "")
    # standalone
    target = standalone_bin(version)
    if _have(facts, target, version):
        return PythonDecision(source, version, target, False, None, f"the pinned standalone CPython ({target})")
    probe = facts.get("standalone") or {}
    if probe.get("ok"):
        return PythonDecision(source, version, target, True, None,
                              f"the pinned standalone CPython from {probe['url']}, unpacked to "
                              f"{pins.python()['standalone']['install_dir']} before anything is removed")
    return PythonDecision(source, version, None, False,
                          f"provision_python_source=standalone, but {probe.get('url') or standalone_url(spec)} "
                          f"cannot be reached from the host ({probe.get('error') or 'not probed'}); set "
                          "provision_python_standalone_url to a reachable mirror of the release directory, or "
                          "provision_python to a Python "
                          f"{version} on the host", "")


def probe_request(spec: HostSpec) -> dict[str, Any]:
    """The `python` option of rocm_host_facts for this spec: what to look at on the host."""
    version = required_version(spec)
    candidates = [f"python{version}", "python3"] + ([spec.python] if spec.python else [])
    request: dict[str, Any] = {"version": version, "candidates": candidates}
    if not spec.python and spec.python_source in ("auto", "deadsnakes"):
        request["deadsnakes_url"] = pins.python()["deadsnakes"]["url"]
    if not spec.python and spec.python_source == "standalone":
        request["standalone_bin"] = standalone_bin(version)
        request["standalone_url"] = standalone_url(spec)
    return request
