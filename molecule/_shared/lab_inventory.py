#!/usr/bin/env python3
"""Molecule inventory source for the container lab (linked as `hosts` into each scenario's inventory).

Lists the hosts of the running scenario (names from $MOLECULE_INSTANCE_CONFIG) with exactly the variables
the lab's generated inventory (lab.ini) gives them: connection settings (the lab key and known_hosts, port
2222, root) and every provision_* variable (mirror URL, key URL/fingerprint, sysfs root, torch pin, ...).
The lab dir is $PROVISION_MOLECULE_LAB_DIR, else <repo>/.lab/molecule. Standard library only.
"""

from __future__ import annotations

import ast
import json
import os
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def lab_dir() -> Path:
    return Path(os.environ.get("PROVISION_MOLECULE_LAB_DIR") or REPO / ".lab" / "molecule").resolve()


def _value(text: str) -> object:
    # the same rule as Ansible's INI inventory: a Python literal where it parses, else the string
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_lab_ini(path: Path) -> tuple[dict[str, dict[str, object]], dict[str, object]]:
    hosts: dict[str, dict[str, object]] = {}
    group_vars: dict[str, object] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if section.endswith(":vars"):
            key, _, value = line.partition("=")
            group_vars[key.strip()] = _value(value.strip())
        elif section:
            name, *pairs = shlex.split(line)
            hosts[name] = {k: _value(v) for k, _, v in (p.partition("=") for p in pairs)}
    return hosts, group_vars


def scenario_hosts() -> list[str]:
    config = os.environ.get("MOLECULE_INSTANCE_CONFIG")
    if not config or not Path(config).is_file():
        return []
    try:
        data = json.loads(Path(config).read_text() or "[]")
    except ValueError:
        return []
    return [str(item["instance"]) for item in data if isinstance(item, dict) and "instance" in item]


def main() -> int:
    out: dict[str, object] = {"_meta": {"hostvars": {}}}
    if "--host" in sys.argv:
        sys.stdout.write("{}\n")
        return 0
    ini = lab_dir() / "lab.ini"
    wanted = scenario_hosts()
    if ini.is_file() and wanted:
        hosts, group_vars = parse_lab_ini(ini)
        connection = {k: v for k, v in group_vars.items() if k.startswith("ansible_")}
        present = [h for h in wanted if h in hosts]
        out["workstations"] = {"hosts": present, "vars": group_vars}
        # host level, so they win over the connection settings Molecule writes for the same hosts
        out["_meta"] = {"hostvars": {h: {**connection, **hosts[h]} for h in present}}
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
