"""Filter `provision_data`: the project's versioned data files (pins, GPU catalog, env-var catalog,
fallback profile) for the roles, read by the same loader the CLI uses:
`{{ 'pins' | rocm.provision.provision_data }}`."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.rocm.provision.plugins.plugin_utils.controller import require_provision


def provision_data(name: str) -> dict[str, Any]:
    require_provision()
    from provision import datafiles
    from provision.errors import ProvisionError

    try:
        return datafiles.load(str(name))
    except ProvisionError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"provision_data": provision_data}
