#!/usr/bin/python
"""Read-only facts a ROCm upgrade decision needs, gathered on the host with the standard library."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rocm_host_facts
short_description: Gather GPU, ROCm, OS and environment facts for a ROCm upgrade decision
description:
  - Reads PCI and KFD topology entries under O(sysfs_root), runs C(lspci -nn) and C(rocminfo) when present,
    reads /etc/os-release, ROCm packages and apt sources, env overrides in /etc/environment and /etc/profile.d,
    Secure Boot state, kernel headers, free disk and users' groups. Changes nothing.
options:
  sysfs_root:
    description: Root of the sysfs tree to read PCI and KFD entries from (C(/sys) on a real host).
    type: path
    default: /sys
  paths:
    description: Paths whose file system's free space is reported (e.g. /opt and the venv's parent).
    type: list
    elements: path
    default: [/opt]
  users:
    description: Users whose group membership is reported.
    type: list
    elements: str
    default: []
  kernel_headers_package:
    description:
      - Name of the kernel headers package for the running kernel; C({kernel}) stands for its release.
        Whether apt can install it (a candidate in the host's apt lists) is reported.
    type: str
    default: linux-headers-{kernel}
  python:
    description:
      - What the Python decision needs (provision/pythonsource.py). C(candidates) are interpreters (commands or
        paths) whose X.Y is reported; C(version) is the X.Y the venv needs; C(deadsnakes_url) is probed (its
        C(dists/<codename>/Release)) on Ubuntu when no candidate is that version; C(standalone_url) (the pinned
        tarball) is probed when C(standalone_bin) is not that version. Probes are HTTP HEAD requests from the host
        with a 10 s timeout.
    type: dict
    default: {}
  kernel_release_file:
    description:
      - File holding the running kernel's release (C(/proc/sys/kernel/osrelease) on a real host, the same text as
        C(uname -r)); judged against the amdgpu-dkms kernel window. The container lab points it at a simulated copy.
    type: path
    default: /proc/sys/kernel/osrelease
  venv_globs:
    description: Glob patterns of PyTorch installs (C(.../site-packages/torch/version.py)) reported as users' venvs.
    type: list
    elements: str
    default: []
author: rocm-provision
notes:
  - Read-only; supports check mode. The controller-side half, the plan, is the
    P(rocm.provision.provision_preflight#filter) filter.
"""

EXAMPLES = r"""
- name: Gather the facts a ROCm upgrade decision needs
  rocm.provision.rocm_host_facts:
    paths: [/opt, /home]
    users: [researcher]
  register: facts

- name: Plan the host from them (on the controller, with the rocm-provision planner)
  ansible.builtin.set_fact:
    plan: "{{ facts.rocm_host | rocm.provision.provision_preflight(inventory_hostname, {}) }}"
"""

RETURN = r"""
rocm_host:
  description:
    - The raw facts, for the P(rocm.provision.provision_preflight#filter) filter. Keys include C(pci) and C(kfd)
      (sysfs entries), C(lspci) and C(rocminfo) (command output or null), C(os_release), C(kernel),
      C(kernel_headers), C(secure_boot), C(mok_keys), C(env_overrides) (HSA_/MIOPEN_/HIP_... settings by file),
      C(packages) (dpkg), C(apt_sources), C(rocm) (C(/opt/rocm-*) versions), C(dkms_amdgpu), C(free_space) (by
      path) and C(user_groups) (by user).
  returned: always
  type: dict
  contains:
    schema_version:
      description: Version of this layout.
      type: int
      sample: 1
    kernel:
      description: The running kernel's release.
      type: str
      sample: 6.8.0-45-generic
"""

import contextlib
import glob
import grp
import json
import os
import pwd
import re
import urllib.error
import urllib.request

from ansible.module_utils.basic import AnsibleModule

ENV_PREFIXES = ("HSA_", "MIOPEN_", "HIP_", "AMD_", "ROCR_", "PYTORCH_MIOPEN", "ROCM_")
SECURE_BOOT_VAR = "firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
# Where a DKMS build finds a Machine Owner Key to sign modules with (Ubuntu's shim-signed; Debian's dkms).
MOK_LIST_VAR = "firmware/efi/efivars/MokListRT-605dab50-e046-4300-abb6-3dd810dd8b23"
MOK_NEW_VAR = "firmware/efi/efivars/MokNew-605dab50-e046-4300-abb6-3dd810dd8b23"
KEYRINGS = ("/etc/apt/keyrings/rocm.gpg", "/etc/apt/trusted.gpg.d/rocm.gpg", "/usr/share/keyrings/rocm.gpg",
            "/etc/apt/trusted.gpg.d/rocm.asc", "/etc/apt/trusted.gpg")
VENV_GLOBS = ("/home/*/*/lib/python3*/site-packages/torch/version.py",
              "/home/*/*/*/lib/python3*/site-packages/torch/version.py",
              "/opt/*/lib/python3*/site-packages/torch/version.py",
              "/srv/*/lib/python3*/site-packages/torch/version.py")
MOK_KEYS = ("/var/lib/shim-signed/mok/MOK.der", "/var/lib/dkms/mok.pub")


def read(path, limit=65536):
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(limit)
    except OSError:
        return None


def pci_devices(root):
    out = []
    for entry in sorted(glob.glob(os.path.join(root, "bus", "pci", "devices", "*"))):
        item = {"slot": os.path.basename(entry)}
        for name in ("vendor", "device", "class"):
            value = read(os.path.join(entry, name))
            item[name] = value.strip() if value else None
        out.append(item)
    return out


def kfd_nodes(root):
    out = []
    base = os.path.join(root, "class", "kfd", "kfd", "topology", "nodes")
    for entry in sorted(glob.glob(os.path.join(base, "*"))):
        text = read(os.path.join(entry, "properties"))
        if text is not None and os.path.basename(entry).isdigit():
            out.append({"node": int(os.path.basename(entry)), "properties": text})
    return out


def env_overrides():
    found = []
    files = ["/etc/environment", *sorted(glob.glob("/etc/profile.d/*.sh"))]
    for path in files:
        text = read(path) or ""
        for number, line in enumerate(text.splitlines(), 1):
            match = re.match(r"^\s*(?:export\s+)?([A-Z_][A-Z0-9_]*)=(.*)$", line)
            if match and match.group(1).startswith(ENV_PREFIXES):
                value = match.group(2).strip().strip("'\"")
                found.append({"file": path, "line": number, "name": match.group(1), "value": value})
    return found


def dpkg_packages(module):
    dpkg = module.get_bin_path("dpkg-query")
    if not dpkg:
        return {}
    patterns = ["rocm-core*", "rocm", "rocm-hip-runtime*", "amdgpu-dkms", "amdgpu-install", "miopen-hip*",
                "rocminfo*", "rocblas*"]
    _rc, out, _ = module.run_command([dpkg, "-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\n", *patterns])
    packages = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[2][1:2] == "i":  # installed, whether held (hi) or not (ii)
            packages[parts[0]] = parts[1]
    return packages


def apt_sources():
    found = []
    for path in [*sorted(glob.glob("/etc/apt/sources.list.d/*")), "/etc/apt/sources.list"]:
        text = read(path) or ""
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        if any("radeon" in ln or "/rocm/" in ln or "/amdgpu/" in ln for ln in lines):
            found.append({"file": path, "lines": lines})
    return found


def secure_boot(module, root):
    """enabled / disabled / unknown / not-efi: mokutil on a real /sys, else the EFI variable under sysfs_root."""
    mokutil = module.get_bin_path("mokutil") if os.path.realpath(root) == "/sys" else None
    if mokutil:
        _rc, out, err = module.run_command([mokutil, "--sb-state"])
        text = (out + err).lower()
        if "secureboot enabled" in text:
            return "enabled"
        if "secureboot disabled" in text:
            return "disabled"
    try:
        with open(os.path.join(root, SECURE_BOOT_VAR), "rb") as fh:
            data = fh.read()
        return "enabled" if data and data[-1] == 1 else "disabled"
    except OSError:
        return "unknown" if os.path.isdir(os.path.join(root, "firmware", "efi")) else "not-efi"


def _read_bytes(path, limit=1 << 20):
    try:
        with open(path, "rb") as fh:
            return fh.read(limit)
    except OSError:
        return None


def mok_enrolled(module, root, keys):
    """Per MOK file: enrolled / pending / not-enrolled / unknown. mokutil --test-key on a real /sys; under a
    simulated sysfs root, the same EFI variables mokutil reads (MokListRT enrolled, MokNew pending)."""
    out = {}
    real = os.path.realpath(root) == "/sys"
    mokutil = module.get_bin_path("mokutil") if real else None
    for key in keys:
        if mokutil:
            _rc, text, err = module.run_command([mokutil, "--test-key", key])
            text = (text + err).lower()
            if "is already enrolled" in text:
                out[key] = "enrolled"
            elif "already in the enrollment request" in text:
                out[key] = "pending"
            elif "is not enrolled" in text:
                out[key] = "not-enrolled"
            else:
                out[key] = "unknown"
            continue
        cert = _read_bytes(key)
        enrolled = _read_bytes(os.path.join(root, MOK_LIST_VAR))
        pending = _read_bytes(os.path.join(root, MOK_NEW_VAR))
        if real or not cert or (enrolled is None and pending is None):
            out[key] = "unknown"
        elif enrolled and cert in enrolled:
            out[key] = "enrolled"
        elif pending and cert in pending:
            out[key] = "pending"
        else:
            out[key] = "not-enrolled"
    return out


def apt_keys(module):
    """`gpg --show-keys --with-colons` of each keyring that may hold AMD's key (validity dates included)."""
    gpg = module.get_bin_path("gpg")
    found = []
    if not gpg:
        return found
    for path in [*KEYRINGS, *sorted(glob.glob("/etc/apt/trusted.gpg.d/*rocm*"))]:
        if not os.path.isfile(path) or any(e["file"] == path for e in found):
            continue
        rc, out, _err = module.run_command([gpg, "--batch", "--no-options", "--homedir", "/nonexistent",
                                            "--show-keys", "--with-colons", path])
        if rc == 0:
            found.append({"file": path, "colons": out[-20000:]})
    return found


def torch_venvs(patterns):
    """PyTorch installs found by `patterns`: their version and the HIP version they were built for."""
    found = []
    for pattern in patterns:
        for path in sorted(glob.glob(pattern))[:50]:
            text = read(path, 4096) or ""
            version = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)", text, re.MULTILINE)
            hip = re.search(r"^hip\s*(?::\s*\S+)?\s*=\s*['\"]([^'\"]+)", text, re.MULTILINE)
            venv = path.split("/lib/python3")[0]
            if version and not any(v["path"] == venv for v in found):
                found.append({"path": venv, "torch": version.group(1), "hip": hip.group(1) if hip else None})
    return found


def apt_candidate(module, package):
    """The version apt would install of `package` from the host's current lists, or None."""
    policy = module.get_bin_path("apt-cache")
    if not policy:
        return None
    rc, out, _err = module.run_command([policy, "policy", "--", package])
    match = re.search(r"^\s*Candidate:\s*(\S+)", out, re.MULTILINE) if rc == 0 else None
    return match.group(1) if match and match.group(1) != "(none)" else None


def run_text(module, argv, timeout=60):
    path = module.get_bin_path(argv[0])
    if not path:
        return None
    wrapper = module.get_bin_path("timeout")
    cmd = ([wrapper, str(timeout)] if wrapper else []) + [path] + argv[1:]
    rc, out, err = module.run_command(cmd)
    return {"rc": rc, "stdout": out[-200000:], "stderr": err[-4000:]}


def rocminfo_login(module):
    """rocminfo as a user's login shell runs it, so profile.d overrides show (as they do for users)."""
    candidates = ["/opt/rocm/bin/rocminfo", *sorted(glob.glob("/opt/rocm-*/bin/rocminfo"))]
    binary = next((c for c in candidates if os.access(c, os.X_OK)), None) or module.get_bin_path("rocminfo")
    if not binary:
        return None
    bash = module.get_bin_path("bash")
    timeout = module.get_bin_path("timeout")
    cmd = ([timeout, "60"] if timeout else []) + [bash, "-lc", 'exec "$0"', binary]
    rc, out, err = module.run_command(cmd)
    return {"rc": rc, "stdout": out[-200000:], "stderr": err[-4000:], "binary": binary}


def free_space(paths):
    out = {}
    for path in paths:
        probe = path
        while probe and not os.path.exists(probe):
            probe = os.path.dirname(probe.rstrip("/")) or "/"
        st = os.statvfs(probe)
        mount = os.path.realpath(probe)
        while mount != "/" and not os.path.ismount(mount):
            mount = os.path.dirname(mount)
        out[path] = {"checked": probe, "free_bytes": st.f_bavail * st.f_frsize, "mount": mount,
                     "device": os.stat(probe).st_dev}
    return out


def user_groups(users):
    out = {}
    for user in users:
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            out[user] = None
            continue
        names = {g.gr_name for g in grp.getgrall() if user in g.gr_mem}
        with contextlib.suppress(KeyError):
            names.add(grp.getgrgid(entry.pw_gid).gr_name)
        out[user] = sorted(names)
    return out


def rocm_dirs():
    versions = {}
    for path in sorted(glob.glob("/opt/rocm-*")):
        info = read(os.path.join(path, ".info", "version"))
        versions[path] = info.strip() if info else None
    link = os.path.realpath("/opt/rocm") if os.path.islink("/opt/rocm") else None
    return {"dirs": versions, "opt_rocm_link": link}


def python_version(module, candidate):
    """{path, version} of an interpreter (command or path), or None when it does not run."""
    path = candidate if candidate.startswith("/") else module.get_bin_path(candidate)
    if not path or not os.access(path, os.X_OK):
        return None
    rc, out, _err = module.run_command([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    return {"path": os.path.realpath(path), "version": out.strip()} if rc == 0 else None


def reach(url, timeout=10):
    """Whether an HTTP HEAD of `url` answers 2xx/3xx from this host: {url, ok, error}."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "rocm-provision"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return {"url": url, "ok": True, "error": "", "status": answer.status}
    except urllib.error.HTTPError as exc:
        return {"url": url, "ok": False, "error": f"HTTP {exc.code} {exc.reason}"}
    except (TimeoutError, urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return {"url": url, "ok": False, "error": f"{reason}"}


def python_facts(module, wanted):
    if not wanted:
        return None
    version = str(wanted.get("version") or "")
    found = {c: python_version(module, c) for c in wanted.get("candidates") or []}
    has = any(v and v["version"] == version for v in found.values())
    out = {"version": version, "interpreters": found, "apt_candidate": apt_candidate(module, f"python{version}"),
           "deadsnakes": None, "standalone": None}
    os_release = read("/etc/os-release") or ""
    ids = dict(re.findall(r'^([A-Z_]+)="?([^"\n]*)"?$', os_release, re.MULTILINE))
    if wanted.get("deadsnakes_url") and not has and ids.get("ID") == "ubuntu" and ids.get("VERSION_CODENAME"):
        out["deadsnakes"] = reach(f"{wanted['deadsnakes_url'].rstrip('/')}/dists/{ids['VERSION_CODENAME']}/Release")
    standalone_bin = wanted.get("standalone_bin")
    if standalone_bin:
        found[standalone_bin] = python_version(module, standalone_bin)
    if wanted.get("standalone_url") and (found.get(standalone_bin) or {}).get("version") != version:
        out["standalone"] = reach(wanted["standalone_url"])
    return out


def main():
    module = AnsibleModule(
        argument_spec={
            "sysfs_root": {"type": "path", "default": "/sys"},
            "paths": {"type": "list", "elements": "path", "default": ["/opt"]},
            "users": {"type": "list", "elements": "str", "default": []},
            "kernel_headers_package": {"type": "str", "default": "linux-headers-{kernel}"},
            "python": {"type": "dict", "default": {}},
            "kernel_release_file": {"type": "path", "default": "/proc/sys/kernel/osrelease"},
            "venv_globs": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    root = module.params["sysfs_root"]
    release = os.uname().release
    headers_package = module.params["kernel_headers_package"].replace("{kernel}", release)
    mok_files = [path for path in MOK_KEYS if os.path.isfile(path)]
    facts = {
        "schema_version": 1,
        "sysfs_root": root,
        "pci": pci_devices(root),
        "kfd": kfd_nodes(root),
        "lspci": run_text(module, ["lspci", "-nn"]),
        "rocminfo": rocminfo_login(module),
        "os_release": read("/etc/os-release"),
        "kernel": (read(module.params["kernel_release_file"], 256) or release).strip(),
        "kernel_running": release,  # uname -r: the kernel whose headers DKMS builds against
        "cmdline": (read("/proc/cmdline", 4096) or "").strip(),
        "kernel_headers": os.path.isdir(f"/lib/modules/{release}/build"),
        "kernel_headers_package": headers_package,
        "kernel_headers_candidate": apt_candidate(module, headers_package),
        "secure_boot": secure_boot(module, root),
        "mok_keys": mok_files,
        "mok_enrolled": mok_enrolled(module, root, mok_files),
        "apt_keys": apt_keys(module),
        "torch_venvs": torch_venvs(list(VENV_GLOBS) + module.params["venv_globs"]),
        "env_overrides": env_overrides(),
        "packages": dpkg_packages(module),
        "apt_sources": apt_sources(),
        "amdgpu_install": module.get_bin_path("amdgpu-install"),
        "rocm": rocm_dirs(),
        "dkms_amdgpu": sorted(os.path.basename(p) for p in glob.glob("/var/lib/dkms/amdgpu/*")),
        "free_space": free_space(module.params["paths"]),
        "user_groups": user_groups(module.params["users"]),
        "python": python_facts(module, module.params["python"]),
    }
    json.dumps(facts)  # fail here, not in the controller, if something is not serialisable
    module.exit_json(changed=False, rocm_host=facts)


if __name__ == "__main__":
    main()
