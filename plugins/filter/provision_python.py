"""Filter `provision_python_probe`: what the rocm_host_facts module should probe on a host for the Python 3.12
decision (provision/pythonsource.py), from the host's `provision_*` settings."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.rocm.provision.plugins.plugin_utils.controller import require_provision


def provision_python_probe(provision_vars: dict[str, Any], host: str) -> dict[str, Any]:
    require_provision()
    from provision.ansible_values import plain
    from provision.errors import ProvisionError
    from provision.inventory import spec_from_vars
    from provision.pythonsource import probe_request

    try:
        return probe_request(spec_from_vars(str(host), plain(provision_vars)))
    except ProvisionError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"provision_python_probe": provision_python_probe}
