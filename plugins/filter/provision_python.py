"""Filter `provision_python_probe`: what rocm_host_facts looks at on a host for the Python decision
(provision/pythonsource.py), from the host's provision_* settings."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError


def provision_python_probe(provision_vars: dict[str, Any], host: str) -> dict[str, Any]:
    try:
        from provision.ansible_values import plain
        from provision.errors import ProvisionError
        from provision.inventory import spec_from_vars
        from provision.pythonsource import probe_request
    except ImportError as exc:  # pragma: no cover - depends on how Ansible was installed
        raise AnsibleFilterError(
            f"the rocm_preflight role needs the rocm-provision package in the Python that runs Ansible: {exc}"
        ) from exc
    try:
        return probe_request(spec_from_vars(str(host), plain(provision_vars)))
    except ProvisionError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"provision_python_probe": provision_python_probe}
